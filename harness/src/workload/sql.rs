//! The database workload: SQL clients inserting unique keys through the routed endpoint and
//! reading them back (a set workload), a routed write probe for availability, a write probe
//! sent to every database member directly to catch two primaries, and the cluster observer.
//! Every operation is recorded; nothing is judged here.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::classify::{SqlState, sql as classify};
use crate::node::Node;
use crate::patroni::{self, ClusterObserver, ClusterSpec, Reader, StatusSource};
use crate::postgres::{Login, connect};
use crate::shared::Shared;
use crate::shared::record;
use futures_util::future::BoxFuture;
use hadrill_model::Exchange;

use crate::checks::database::streams_synchronously;
use crate::topology::Replication;
use crate::workload::{Answer, Client, Context, Observer, Op, Workload};
use hadrill_model::{OpKind, Outcome, Role};
use hadrill_model::{Read, SQL_READ, SqlFinal};

/// The table the set workload writes, and the one the probes write.
const SET_TABLE: &str = "hadrill_set";
const PROBE_TABLE: &str = "hadrill_probe";

/// `[sql]` in a scenario.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqlSpec {
    /// Node and container port of the routed endpoint (HAProxy on Patroni's `/primary`).
    pub entry: String,
    pub port: u16,
    pub user: String,
    /// The run secret holding the user's password.
    pub password_secret: String,
    pub database: String,
    /// Concurrent SQL clients (0: none, e.g. when the product's uploads are the writes), and
    /// inserts per second all together.
    pub clients: usize,
    pub rate: f64,
    /// After this many acknowledged inserts, a client reads them back.
    pub read_back_every: usize,
    /// Routed write probe frequency: the availability resolution (0: none, e.g. when the
    /// web workload's probe measures availability).
    pub probe_hz: f64,
    /// Direct write probe to each member: the single-primary resolution (≥ 10 Hz).
    pub member_probe_hz: f64,
    pub member_port: u16,
    #[serde(with = "humantime_serde")]
    pub op_timeout: Duration,
    /// Upper bound on inserts, whatever the scenario's length.
    pub max_ops: u64,
    /// How long the final read waits for replicas to catch up.
    #[serde(with = "humantime_serde")]
    pub converge_timeout: Duration,
    /// SQLSTATEs (or classes) this product declares definite refusals besides PostgreSQL's
    /// own (`crate::classify::sqlstate`); any other error may follow the commit.
    pub definite: Vec<SqlState>,
    #[serde(flatten)]
    pub cluster: ClusterSpec,
}

impl Default for SqlSpec {
    fn default() -> Self {
        SqlSpec {
            entry: "dblb".into(),
            port: 5432,
            user: "postgres".into(),
            password_secret: "DB_PASSWORD".into(),
            database: "postgres".into(),
            clients: 4,
            rate: 40.0,
            read_back_every: 10,
            probe_hz: 20.0,
            member_probe_hz: 10.0,
            member_port: 5432,
            op_timeout: Duration::from_secs(5),
            max_ops: 100_000,
            converge_timeout: Duration::from_secs(60),
            definite: Vec::new(),
            cluster: ClusterSpec::default(),
        }
    }
}

/// The SQL clients, probes and cluster observer as a workload: `prepare` creates the tables,
/// `run` drives the load until stopped, and the final read waits for the replicas to
/// converge and reads the set (`SqlFinal`).
pub struct SqlWorkload {
    spec: SqlSpec,
    password: OnceLock<String>,
}

struct Ctx {
    shared: Arc<Shared>,
    spec: SqlSpec,
    password: String,
    ops: AtomicU64,
    stop: CancellationToken,
}

impl Ctx {
    fn done(&self) -> bool {
        self.stop.is_cancelled() || self.ops.load(Ordering::Relaxed) >= self.spec.max_ops
    }

    fn entry(&self) -> Node {
        Node::new(&self.spec.entry, self.shared.clone())
    }
}

/// One statement on the open connection, or on a new one from `connect`, within `timeout`:
/// the rows it affected when it succeeded, and how it ended. A connection that fails
/// anything is dropped, so the next statement opens a fresh one.
async fn execute<F>(
    conn: &mut Option<tokio_postgres::Client>,
    connect: F,
    timeout: Duration,
    definite: &[SqlState],
    statement: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> (Option<u64>, Exchange)
where
    F: std::future::Future<Output = Result<tokio_postgres::Client, String>>,
{
    if conn.is_none() {
        match connect.await {
            Ok(c) => *conn = Some(c),
            Err(e) => return (None, refused(e)),
        }
    }
    let c = conn.as_ref().expect("connected above");
    let (rows, ex) = classify(
        tokio::time::timeout(timeout, c.execute(statement, params)).await,
        definite,
    );
    if ex.outcome != Outcome::Ok {
        *conn = None;
    }
    (rows, ex)
}

fn refused(error: String) -> Exchange {
    Exchange {
        outcome: Outcome::Fail,
        error: Some(error),
        ..Exchange::OK
    }
}

impl SqlWorkload {
    pub fn new(spec: SqlSpec) -> SqlWorkload {
        SqlWorkload {
            spec,
            password: OnceLock::new(),
        }
    }

    /// Reads the members' status as `[sql]` says, giving up on one after `timeout`.
    fn reader(&self, ctx: &Context, timeout: Duration) -> Reader {
        let login = Login {
            port: self.spec.member_port,
            user: self.spec.user.clone(),
            password: ctx.secret(&self.spec.password_secret).unwrap_or_default(),
            database: self.spec.database.clone(),
        };
        Reader::new(&self.spec.cluster, login, timeout)
    }

    fn ctx(&self, ctx: &Context) -> Arc<Ctx> {
        Arc::new(Ctx {
            shared: ctx.shared().clone(),
            password: self.password.get().cloned().unwrap_or_default(),
            ops: AtomicU64::new(0),
            stop: ctx.stop_token().clone(),
            spec: self.spec.clone(),
        })
    }
}

impl Workload for SqlWorkload {
    fn name(&self) -> &str {
        SQL_READ
    }

    /// Creates the tables through the routed endpoint.
    fn prepare(self: Arc<Self>, ctx: Context) -> BoxFuture<'static, Result<(), String>> {
        Box::pin(async move {
            let secret = &self.spec.password_secret;
            let password = ctx
                .secret(secret)
                .ok_or_else(|| format!("the topology declares no secret {secret}"))?;
            let _ = self.password.set(password);
            let sctx = self.ctx(&ctx);
            create_tables(&sctx).await?;
            if let Some(claim) = ctx.topology().replication {
                read_replication(&sctx, &ctx, claim).await;
            }
            Ok(())
        })
    }

    /// The clients, the probes and the cluster observer, until stopped.
    fn run(self: Arc<Self>, ctx: Context) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let sctx = self.ctx(&ctx);
            let mut tasks = JoinSet::new();
            for i in 0..sctx.spec.clients {
                tasks.spawn(client(sctx.clone(), ctx.clone(), i));
            }
            if sctx.spec.probe_hz > 0.0 {
                tasks.spawn(routed_probe(sctx.clone()));
            }
            for member in ctx
                .topology()
                .resolve(&sctx.spec.cluster.members)
                .unwrap_or_default()
            {
                tasks.spawn(member_probe(sctx.clone(), member));
            }
            // A member gets up to one observation period to answer, and never less than 300 ms
            // over REST; over SQL each read opens a connection (a password handshake), which a
            // busy machine was measured taking 0.9 s over: never less than 2 s.
            let floor = match sctx.spec.cluster.status {
                StatusSource::Rest => Duration::from_millis(300),
                StatusSource::Sql => Duration::from_secs(2),
            };
            let timeout = sctx.spec.cluster.observe_period().max(floor);
            let observer = Arc::new(ClusterObserver(self.reader(&ctx, timeout)));
            tasks.spawn(observer.observe(ctx.clone()));
            crate::tasks::join_nested(&mut tasks).await
        })
    }

    /// Steady once the clients' writes and the routed probe have all succeeded for a while
    /// and the members stream from one primary.
    fn settled(self: Arc<Self>, ctx: Context) -> BoxFuture<'static, bool> {
        Box::pin(async move {
            let reader = self.reader(&ctx, Duration::from_secs(1));
            ctx.steady(|o| o.kind.is_any(&[OpKind::INSERT, OpKind::PROBE]))
                && patroni::streaming(&patroni::states(
                    &patroni::poll(ctx.shared(), &reader).await,
                ))
        })
    }

    fn final_read(self: Arc<Self>, ctx: Context) -> BoxFuture<'static, Read> {
        Box::pin(async move {
            serde_json::to_value(
                final_state(&ctx, &self.spec, &self.reader(&ctx, Duration::from_secs(1))).await,
            )
            .map_err(|e| e.to_string())
        })
    }
}

async fn create_tables(ctx: &Ctx) -> Result<(), String> {
    let ddl = format!(
        "CREATE TABLE IF NOT EXISTS {SET_TABLE} (k text PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp());
         CREATE TABLE IF NOT EXISTS {PROBE_TABLE} (node text NOT NULL, round bigint NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let attempt = async {
            let c = connect_entry(ctx).await?;
            c.batch_execute(&ddl).await.map_err(|e| e.to_string())
        };
        match attempt.await {
            Ok(()) => return Ok(()),
            Err(e) if std::time::Instant::now() > deadline => {
                return Err(format!(
                    "cannot create the workload's tables through {}:{}: {e}",
                    ctx.spec.entry, ctx.spec.port
                ));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Records the primary's live replication state beside what the topology promises, once a
/// standby streams as promised (or after 30 s): one `replication` operation, key the
/// promise, value each standby's `application_name state sync_state`, or `none streaming`.
async fn read_replication(ctx: &Ctx, wctx: &Context, claim: Replication) {
    let invoke = wctx.now();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let query = "SELECT application_name, state, sync_state FROM pg_stat_replication ORDER BY 1";
    let ex = |outcome, error| Exchange {
        outcome,
        status: None,
        error,
        ..Exchange::OK
    };
    let (value, exchange) = loop {
        let read = async {
            let c = connect_entry(ctx).await?;
            let rows = c.query(query, &[]).await.map_err(|e| e.to_string())?;
            rows.iter()
                .map(|r| {
                    let field = |i| r.get::<_, Option<String>>(i);
                    match (field(0), field(1), field(2)) {
                        (Some(name), Some(state), Some(sync)) => Ok(format!("{name} {state} {sync}")),
                        // Not a superuser nor pg_read_all_stats: the columns read NULL.
                        _ => Err(format!(
                            "pg_stat_replication hides its columns from `{}`: give the `[sql]` user the pg_read_all_stats role",
                            ctx.spec.user
                        )),
                    }
                })
                .collect::<Result<Vec<String>, String>>()
        };
        let late = std::time::Instant::now() > deadline;
        match read.await {
            // A synchronous standby is named by the failover manager a moment after it
            // starts streaming: wait for it (or the deadline) before calling it asynchronous.
            Ok(standbys)
                if late
                    || standbys.iter().any(|s| {
                        streams_synchronously(s)
                            || (claim == Replication::Asynchronous && s.contains(" streaming "))
                    }) =>
            {
                let value = if standbys.is_empty() {
                    "none streaming".to_string()
                } else {
                    standbys.join("; ")
                };
                break (Some(value), ex(Outcome::Ok, None));
            }
            Err(e) if late => break (None, ex(Outcome::Unknown, Some(e))),
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    };
    wctx.record(
        Role::Observer.named("replication"),
        OpKind::REPLICATION,
        Some(claim.name().to_string()),
        value,
        invoke,
        exchange,
    );
}

async fn connect_entry(ctx: &Ctx) -> Result<tokio_postgres::Client, String> {
    let s = &ctx.spec;
    connect(
        &ctx.entry(),
        s.port,
        &s.user,
        &ctx.password,
        &s.database,
        Duration::from_secs(1),
    )
    .await
}

/// A SQL client of the set table through the routed endpoint, on one connection opened again
/// after any failure: an `INSERT` op inserts its key; a `READ_BACK` op counts how many of its
/// keys (comma-separated) the table holds, and fails unless it holds them all.
struct SqlClient {
    ctx: Arc<Ctx>,
    conn: tokio::sync::Mutex<Option<tokio_postgres::Client>>,
}

impl Client for SqlClient {
    fn invoke<'a>(&'a self, op: &'a Op) -> BoxFuture<'a, Answer> {
        Box::pin(async move {
            let ctx = &self.ctx;
            let mut conn = self.conn.lock().await;
            let key = op.key.clone().unwrap_or_default();
            if op.kind != OpKind::READ_BACK {
                let insert = format!("INSERT INTO {SET_TABLE} (k) VALUES ($1)");
                let (rows, ex) = execute(
                    &mut conn,
                    connect_entry(ctx),
                    ctx.spec.op_timeout,
                    &ctx.spec.definite,
                    &insert,
                    &[&key],
                )
                .await;
                if rows != Some(1) {
                    *conn = None;
                }
                return Answer::of(ex);
            }
            let Some(c) = conn.as_ref() else {
                return Answer::of(refused("no connection to read back on".into()));
            };
            let keys: Vec<&str> = key.split(',').collect();
            let count = format!("SELECT count(*) FROM {SET_TABLE} WHERE k = ANY($1)");
            let r = tokio::time::timeout(ctx.spec.op_timeout, c.query_one(&*count, &[&keys])).await;
            let (row, mut ex) = classify(r, &ctx.spec.definite);
            let found = row.map(|r| r.get::<_, i64>(0));
            match found {
                Some(f) if f != keys.len() as i64 => {
                    ex.outcome = Outcome::Fail;
                    ex.error = Some(format!("{f} of {} acknowledged keys found", keys.len()));
                }
                Some(_) => {}
                None => *conn = None,
            }
            Answer {
                exchange: ex,
                read: found.map(|f| f.to_string()),
            }
        })
    }
}

/// One SQL client: inserts `c<i>-<n>` keys at its share of the rate, and reads its
/// acknowledged keys back now and then.
async fn client(ctx: Arc<Ctx>, run: Context, i: usize) {
    let name = format!("sql-{i}");
    let period = Duration::from_secs_f64(ctx.spec.clients.max(1) as f64 / ctx.spec.rate.max(0.1));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let sql = SqlClient {
        ctx: ctx.clone(),
        conn: tokio::sync::Mutex::new(None),
    };
    let mut unread: Vec<String> = Vec::new();
    let mut n = 0u64;
    while !ctx.done() {
        tokio::select! {
            _ = ctx.stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        ctx.ops.fetch_add(1, Ordering::Relaxed);
        n += 1;
        let key = format!("{}c{i}-{n}", key_prefix(&ctx.shared.id));
        let insert = Op {
            kind: OpKind::INSERT,
            key: Some(key.clone()),
            value: None,
        };
        let answer = run.invoke(Role::User.named(&name), &sql, insert).await;
        if answer.exchange.outcome != Outcome::Ok {
            continue;
        }
        unread.push(key);
        if unread.len() >= ctx.spec.read_back_every.max(1) {
            let read_back = Op::read(OpKind::READ_BACK, unread.join(","));
            run.invoke(Role::User.named(&name), &sql, read_back).await;
            unread.clear();
        }
    }
}

/// The routed write probe: one insert per period through the entry point, 1 s to answer.
/// Each probe goes on its own, on an idle connection of a small pool or a new one, so that
/// one waiting on a dead path never delays the next: the resolution stays one period.
async fn routed_probe(ctx: Arc<Ctx>) {
    let period = Duration::from_secs_f64(1.0 / ctx.spec.probe_hz.max(1.0));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let idle: Arc<std::sync::Mutex<Vec<tokio_postgres::Client>>> = Arc::default();
    let mut inflight = JoinSet::new();
    let mut round = 0i64;
    while !ctx.stop.is_cancelled() {
        tokio::select! {
            _ = ctx.stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        round += 1;
        let (ctx, idle, this) = (ctx.clone(), idle.clone(), round);
        inflight.spawn(async move {
            let invoke = ctx.shared.clock.now();
            let mut conn = idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let (_, ex) = execute(
                &mut conn,
                connect_entry(&ctx),
                Duration::from_secs(1),
                &ctx.spec.definite,
                &format!("INSERT INTO {PROBE_TABLE} (node, round) VALUES ('routed', $1)"),
                &[&this],
            )
            .await;
            idle.lock().unwrap_or_else(|e| e.into_inner()).extend(conn);
            record(
                &ctx.shared,
                Role::Probe.named("sql-probe"),
                OpKind::PROBE,
                None,
                Some(this.to_string()),
                invoke,
                ex,
            );
        });
        while inflight.try_join_next().is_some() {}
    }
    while inflight.join_next().await.is_some() {}
}

/// Writes to one member directly, every member on the same schedule so that a round in which
/// two of them accept a write is two primaries at once.
async fn member_probe(ctx: Arc<Ctx>, member: String) {
    let node = Node::new(&member, ctx.shared.clone());
    let period = Duration::from_secs_f64(1.0 / ctx.spec.member_probe_hz.max(1.0));
    let timeout = period.max(Duration::from_millis(500));
    let origin = ctx.shared.clock.now();
    let mut conn: Option<tokio_postgres::Client> = None;
    let mut round: i64 = 0;
    while !ctx.stop.is_cancelled() {
        // Rounds are numbered from the run clock, so every member's round N is the same moment.
        let due = origin.as_duration() + period * round as u32;
        let now = ctx.shared.clock.now().as_duration();
        if due > now {
            tokio::select! {
                _ = ctx.stop.cancelled() => break,
                _ = tokio::time::sleep(due - now) => {}
            }
        } else if now - due > period {
            round = ((now - origin.as_duration()).as_secs_f64() / period.as_secs_f64()) as i64;
            continue;
        }
        let invoke = ctx.shared.clock.now();
        let this = round;
        round += 1;
        let connect = connect(
            &node,
            ctx.spec.member_port,
            &ctx.spec.user,
            &ctx.password,
            &ctx.spec.database,
            timeout,
        );
        let (_, mut ex) = execute(
            &mut conn,
            connect,
            timeout,
            &ctx.spec.definite,
            &format!("INSERT INTO {PROBE_TABLE} (node, round) VALUES ($1, $2)"),
            &[&member, &this],
        )
        .await;
        ex.node = Some(member.clone());
        record(
            &ctx.shared,
            Role::Probe.named("member-probe"),
            OpKind::WRITE_PROBE,
            Some(member.clone()),
            Some(this.to_string()),
            invoke,
            ex,
        );
    }
}

/// The run's own keys start with its id: an existing install's table keeps what earlier runs
/// wrote, and only this run's rows are this run's to judge.
fn key_prefix(run_id: &str) -> String {
    format!("{run_id}-")
}

/// After the workload: waits for the replicas to converge, then reads the run's keys of the
/// set through the routed endpoint (recorded as a `verify` operation) and on every member
/// directly.
async fn final_state(ctx: &Context, spec: &SqlSpec, reader: &Reader) -> SqlFinal {
    let password = ctx.secret(&spec.password_secret).unwrap_or_default();
    let mine = format!("{}%", key_prefix(&ctx.shared().id));
    let mine = &mine;
    let digest = |node: Node| {
        let password = password.clone();
        async move {
            let c = connect(
                &node,
                spec.member_port,
                &spec.user,
                &password,
                &spec.database,
                Duration::from_secs(2),
            )
            .await
            .ok()?;
            let row = c
                .query_one(
                    &*format!(
                        "SELECT count(*), coalesce(md5(string_agg(k, ',' ORDER BY k)), '') FROM {SET_TABLE} WHERE k LIKE $1"
                    ),
                    &[mine],
                )
                .await
                .ok()?;
            Some((row.get::<_, i64>(0), row.get::<_, String>(1)))
        }
    };
    let cluster = patroni::settle(ctx.shared(), reader, spec.converge_timeout, digest).await;
    let invoke = ctx.now();
    let entry = Node::new(&spec.entry, ctx.shared().clone());
    let read = async {
        let c = connect(
            &entry,
            spec.port,
            &spec.user,
            &password,
            &spec.database,
            Duration::from_secs(5),
        )
        .await?;
        match c
            .query(
                &*format!("SELECT k FROM {SET_TABLE} WHERE k LIKE $1"),
                &[mine],
            )
            .await
        {
            Ok(rows) => Ok(rows),
            // The table was created (acknowledged) before any insert: a primary without it
            // has lost it and every row in it, which is a finding, not an unreadable state.
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => {
                Ok(Vec::new())
            }
            Err(e) => Err(e.to_string()),
        }
    };
    let (keys, ex) = match read.await {
        Ok(rows) => (
            Some(
                rows.iter()
                    .map(|r| r.get::<_, String>(0))
                    .collect::<std::collections::BTreeSet<_>>(),
            ),
            Exchange::OK,
        ),
        Err(e) => (None, refused(e)),
    };
    let value = keys.as_ref().map(|k| format!("{} keys", k.len()));
    ctx.record(
        Role::Verifier.named("verifier"),
        OpKind::VERIFY,
        Some(SET_TABLE.into()),
        value,
        invoke,
        ex,
    );
    SqlFinal { keys, cluster }
}
