//! The reference product's web workload: users that log in, upload, read back and check
//! their session through the load balancer, plus an availability probe and a liveness probe.
//! Every operation is recorded in the history with its outcome; nothing is judged here.
//!
//! It is bounded in operations and time and stops by itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::future::BoxFuture;
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;

use super::finals::{
    Analysed, Content, FinalState, ProductRead, WEB_READ, acknowledged, connect_db, wait_analysed,
};
use super::{license, verbs};
use crate::clock::Stamp;
use crate::workload::{Context, Endpoint, Size, Workload};
use hadrill_model::{Exchange, OpKind, Outcome, Read, Role, faults};

/// The headers in which the reference product names the app server and the release that
/// answered.
const ANSWERER: crate::classify::Answerer<'static> = crate::classify::Answerer {
    node: Some("x-served-by"),
    version: Some("x-product-version"),
};

/// The reference product answers 503 only before it stored anything (sut/src/web.rs
/// `unavailable`), and a 4xx before any work; its 500 means "may be stored".
fn definite() -> &'static crate::classify::Definite {
    use crate::classify::{Definite, StatusPattern};
    static DEFINITE: OnceLock<Definite> = OnceLock::new();
    DEFINITE.get_or_init(|| Definite(vec![StatusPattern::Class(4), StatusPattern::Code(503)]))
}

/// An exchange with the product, classified by the common rules.
fn answer(r: &Result<reqwest::Response, reqwest::Error>) -> Exchange {
    crate::classify::http(r, ANSWERER, definite())
}

/// What the clients do, as a scenario declares it under `[workload]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkloadSpec {
    /// Concurrent user sessions.
    pub users: usize,
    /// User operations per second, all users together.
    pub rate: f64,
    /// Upload sizes are drawn uniformly from this range (`"1KiB"`, `"256KiB"`).
    pub upload_size: [Size; 2],
    /// Relative weights of the user operations.
    pub mix: Mix,
    /// Availability probe frequency (20 Hz gives a 50 ms resolution at best).
    pub probe_hz: f64,
    /// Path the availability probe reads through the entry point, signed in as a user would
    /// be: `/traces`, the list of recent traces, read from the database. It fails whenever a
    /// user's read would, so availability is measured on a user's path.
    pub probe_path: String,
    /// A liveness URL probed as well, at the same frequency, and reported apart (`""`: none).
    /// It says whether a process answers, not whether a user is served, so it never decides
    /// availability: it shows how far the two differ.
    pub liveness_path: String,
    /// Node and container port the clients use (the load balancer).
    pub entry: String,
    pub entry_port: u16,
    /// Upper bound on user operations, whatever the scenario's length.
    pub max_ops: u64,
    /// How long a user operation may take before its outcome is `unknown`.
    #[serde(with = "humantime_serde")]
    pub op_timeout: Duration,
}

impl Default for WorkloadSpec {
    fn default() -> Self {
        WorkloadSpec {
            users: 4,
            rate: 20.0,
            upload_size: [Size(1 << 10), Size(256 << 10)],
            mix: Mix::default(),
            probe_hz: 20.0,
            probe_path: "/traces".into(),
            liveness_path: "/healthz".into(),
            entry: "lb".into(),
            entry_port: 80,
            max_ops: 50_000,
            op_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mix {
    pub upload: u32,
    pub read: u32,
    pub session: u32,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            upload: 3,
            read: 2,
            session: 1,
        }
    }
}

/// A cookie a user was given, kept in memory only (sessions are secrets).
#[derive(Debug, Clone)]
pub struct IssuedSession {
    pub user: String,
    pub cookie: String,
    pub issued: Stamp,
}

/// The reference product's web users as a workload: `prepare` finds the entry point, `run`
/// drives the users and the probes until stopped, and the final read tries the sessions
/// issued before a secret rotation and reads what the product holds (`FinalState`).
pub struct WebWorkload {
    spec: WorkloadSpec,
    read: ProductRead,
    entry: OnceLock<Endpoint>,
    /// The highest trace id before the load began (`FinalState::before_run_up_to`).
    before: OnceLock<i64>,
    sessions: Arc<std::sync::Mutex<Vec<IssuedSession>>>,
}

struct Ctx {
    /// The run, as every workload sees it.
    run: Context,
    spec: WorkloadSpec,
    entry: Endpoint,
    ops: AtomicU64,
    sessions: Arc<std::sync::Mutex<Vec<IssuedSession>>>,
}

impl WebWorkload {
    /// The users `spec` describes; after the run, the product is read as `read` says.
    pub fn new(spec: WorkloadSpec, read: ProductRead) -> WebWorkload {
        WebWorkload {
            spec,
            read,
            entry: OnceLock::new(),
            before: OnceLock::new(),
            sessions: Arc::default(),
        }
    }
}

impl Workload for WebWorkload {
    fn name(&self) -> &str {
        WEB_READ
    }

    fn prepare(self: Arc<Self>, ctx: Context) -> BoxFuture<'static, Result<(), String>> {
        Box::pin(async move {
            let spec = &self.spec;
            let entry = ctx.node(&spec.entry).map_err(|e| e.to_string())?;
            let _ = self.entry.set(Endpoint::of(&entry, spec.entry_port)?);
            let db = connect_db(&ctx, &self.read)
                .await
                .map_err(|e| format!("cannot read the product's database before the load: {e}"))?;
            let before: i64 = db
                .query_one("SELECT coalesce(max(id), 0)::bigint FROM traces", &[])
                .await
                .map_err(|e| format!("cannot read the product's traces before the load: {e}"))?
                .get(0);
            let _ = self.before.set(before);
            Ok(())
        })
    }

    fn run(self: Arc<Self>, ctx: Context) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            // Prepared before the run: no entry, no users.
            let Some(entry) = self.entry.get().cloned() else {
                return;
            };
            let ctx = Arc::new(Ctx {
                run: ctx.clone(),
                entry,
                ops: AtomicU64::new(0),
                sessions: self.sessions.clone(),
                spec: self.spec.clone(),
            });
            let mut tasks = JoinSet::new();
            for i in 0..ctx.spec.users {
                tasks.spawn(user(ctx.clone(), i));
            }
            tasks.spawn(probe(ctx.clone()));
            crate::tasks::join_nested(&mut tasks).await
        })
    }

    /// Steady once the probe and the users' requests have all succeeded for a while: what
    /// the product still owes (jobs analysed, old sessions refused) its final read waits for.
    fn settled(self: Arc<Self>, ctx: Context) -> BoxFuture<'static, bool> {
        Box::pin(async move { ctx.steady(|o| o.kind == OpKind::PROBE || o.role == Role::User) })
    }

    fn final_read(self: Arc<Self>, ctx: Context) -> BoxFuture<'static, Read> {
        Box::pin(async move {
            let sessions = self
                .sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            try_old_sessions(&ctx, &self.read, &sessions).await;
            let events = ctx.events();
            let licenses = if license::drills(faults(&events).iter().map(|f| &f.fault)) {
                license::read(&ctx, &self.read).await
            } else {
                Default::default()
            };
            let mut state =
                final_state(&ctx, &self.read, &self.spec, self.before.get().copied()).await?;
            state.licenses = licenses;
            serde_json::to_value(state).map_err(|e| e.to_string())
        })
    }
}

impl Ctx {
    fn done(&self) -> bool {
        self.run.is_stopped() || self.ops.load(Ordering::Relaxed) >= self.spec.max_ops
    }
}

async fn login(ctx: &Ctx, http: &reqwest::Client, name: &str) -> bool {
    let invoke = ctx.run.now();
    let r = http
        .post(format!("{}/login", ctx.entry.base))
        .json(&serde_json::json!({ "user": name }))
        .send()
        .await;
    let ex = answer(&r);
    let ok = ex.outcome == Outcome::Ok;
    if let Ok(resp) = &r
        && ok
        && let Some(cookie) = resp
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
    {
        ctx.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(IssuedSession {
                user: name.to_string(),
                cookie: cookie.split(';').next().unwrap_or_default().to_string(),
                issued: invoke,
            });
    }
    ctx.run.record(
        Role::User.named(name),
        verbs::LOGIN,
        Some(name.to_string()),
        None,
        invoke,
        ex,
    );
    ok
}

/// One user: log in, then upload, read back and check the session, at the configured rate.
async fn user(ctx: Arc<Ctx>, index: usize) {
    let name = format!("user-{index}");
    let http = ctx.entry.user_agent(ctx.spec.op_timeout);
    let pause = Duration::from_secs_f64(ctx.spec.users as f64 / ctx.spec.rate.max(0.001));
    let mut logged_in = false;
    let mut mine: Vec<(i64, String)> = Vec::new();
    let mix = ctx.spec.mix;
    let total = (mix.upload + mix.read + mix.session).max(1);
    // Stagger the users so their operations spread over the interval.
    tokio::time::sleep(pause.mul_f64(index as f64 / ctx.spec.users as f64)).await;
    while !ctx.done() {
        let started = tokio::time::Instant::now();
        ctx.ops.fetch_add(1, Ordering::Relaxed);
        if !logged_in {
            logged_in = login(&ctx, &http, &name).await;
        } else {
            let pick = rand::rng().random_range(0..total);
            if pick < mix.upload || (pick < mix.upload + mix.read && mine.is_empty()) {
                if let Some(done) = upload(&ctx, &http, &name).await {
                    mine.push(done);
                }
            } else if pick < mix.upload + mix.read {
                let (id, sha) = mine[rand::rng().random_range(0..mine.len())].clone();
                read(&ctx, &http, &name, id, &sha).await;
            } else {
                logged_in = session(&ctx, &http, &name).await;
            }
        }
        tokio::select! {
            _ = ctx.run.stopped() => break,
            _ = tokio::time::sleep_until(started + pause) => {}
        }
    }
}

async fn upload(ctx: &Ctx, http: &reqwest::Client, name: &str) -> Option<(i64, String)> {
    let [lo, hi] = ctx.spec.upload_size;
    let size = rand::rng().random_range(lo.0..=hi.0.max(lo.0)) as usize;
    let mut body = vec![0u8; size];
    rand::rng().fill(&mut body[..]);
    let sha = hex::encode(Sha256::digest(&body));
    let invoke = ctx.run.now();
    let r = http
        .post(format!("{}/traces", ctx.entry.base))
        .body(body)
        .send()
        .await;
    let mut ex = answer(&r);
    let mut id = None;
    if let Ok(resp) = r
        && ex.outcome == Outcome::Ok
    {
        match resp.json::<serde_json::Value>().await {
            Ok(v) if v["sha256"] == sha.as_str() => id = v["id"].as_i64(),
            Ok(v) => {
                ex.outcome = Outcome::Fail;
                ex.error = Some(format!("acknowledged with a different digest: {v}"));
            }
            // The 201 arrived but its body did not: it happened, and we cannot know its id.
            Err(e) => {
                ex.outcome = Outcome::Unknown;
                ex.error = Some(format!("reading the answer: {e}"));
            }
        }
    }
    ctx.run.record(
        Role::User.named(name),
        verbs::UPLOAD,
        id.map(|i| i.to_string()),
        Some(sha.clone()),
        invoke,
        ex,
    );
    id.map(|i| (i, sha))
}

async fn read(ctx: &Ctx, http: &reqwest::Client, name: &str, id: i64, sha: &str) {
    let invoke = ctx.run.now();
    let (ex, _) = read_trace(http, &ctx.entry.base, id, sha).await;
    ctx.run.record(
        Role::User.named(name),
        verbs::READ,
        Some(id.to_string()),
        Some(sha.to_string()),
        invoke,
        ex,
    );
}

/// Reads a trace's bytes and compares their digest with `sha`: the exchange, failed when the
/// bytes differ, and what was found. The workload's reads and the final verification share it.
pub(crate) async fn read_trace(
    http: &reqwest::Client,
    base: &str,
    id: i64,
    sha: &str,
) -> (Exchange, Content) {
    let r = http.get(format!("{base}/traces/{id}/content")).send().await;
    let mut ex = answer(&r);
    let content = match r {
        Ok(resp) if resp.status().is_success() => match resp.bytes().await {
            Ok(b) if hex::encode(Sha256::digest(&b)) == sha => Content::Identical,
            Ok(_) => {
                ex.outcome = Outcome::Fail;
                ex.error = Some("content differs from what was uploaded".into());
                Content::Differs
            }
            Err(e) => {
                ex.outcome = Outcome::Unknown;
                ex.error = Some(format!("reading the body: {e}"));
                Content::Unreadable(e.to_string())
            }
        },
        Ok(resp) => {
            let body = resp.text().await.unwrap_or_default();
            if body.contains("missing from the store") {
                ex.outcome = Outcome::Fail;
                Content::Missing
            } else {
                Content::Unreadable(ex.error.clone().unwrap_or_default())
            }
        }
        Err(e) => Content::Unreadable(e.to_string()),
    };
    (ex, content)
}

/// Returns whether the session is still valid (if not, the user logs in again).
async fn session(ctx: &Ctx, http: &reqwest::Client, name: &str) -> bool {
    let invoke = ctx.run.now();
    let r = http.get(format!("{}/me", ctx.entry.base)).send().await;
    let ex = answer(&r);
    let rejected = ex.status == Some(401);
    ctx.run.record(
        Role::User.named(name),
        verbs::SESSION,
        Some(name.to_string()),
        None,
        invoke,
        ex,
    );
    !rejected
}

/// The probe's session cookie and the app server that issued it.
type ProbeSession = (String, Option<String>);

/// Reads the probe path at `probe_hz` as a signed-in user, each probe on its own so a hanging
/// one never delays the next: the time resolution stays 1 / probe_hz. A rejected session (a
/// rotated secret) is not an outage: the probe signs in again and reads once more, as a user
/// would. Each probe records, as its key, the app server that issued the cookie it used, so a
/// refusal can be told from one a rotation explains. The liveness path, if any, is probed
/// beside it and recorded as `liveness`.
async fn probe(ctx: Arc<Ctx>) {
    // No cookie store: the probe keeps its one session itself, with who issued it.
    let http = ctx
        .entry
        .builder()
        .timeout(Duration::from_secs(1))
        .connect_timeout(Duration::from_secs(1))
        .build()
        .expect("HTTP client");
    let session: Arc<std::sync::Mutex<Option<ProbeSession>>> = Arc::default();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / ctx.spec.probe_hz.max(1.0)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut inflight = JoinSet::new();
    let url = format!("{}{}", ctx.entry.base, ctx.spec.probe_path);
    let liveness = (!ctx.spec.liveness_path.is_empty())
        .then(|| format!("{}{}", ctx.entry.base, ctx.spec.liveness_path));
    while !ctx.run.is_stopped() {
        tokio::select! {
            _ = ctx.run.stopped() => break,
            _ = tick.tick() => {}
        }
        let (c, h, u, session) = (ctx.clone(), http.clone(), url.clone(), session.clone());
        inflight.spawn(async move {
            let invoke = c.run.now();
            let current = session.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let read = |cookie: Option<String>| {
                let mut req = h.get(&u);
                if let Some(cookie) = cookie {
                    req = req.header("cookie", cookie);
                }
                req.send()
            };
            let mut issuer = current.as_ref().and_then(|s| s.1.clone());
            let mut r = read(current.map(|s| s.0)).await;
            if r.as_ref().is_ok_and(|r| r.status() == 401) {
                let login = h
                    .post(format!("{}/login", c.entry.base))
                    .json(&serde_json::json!({ "user": "probe" }))
                    .send()
                    .await;
                let fresh = login
                    .ok()
                    .filter(|l| l.status().is_success())
                    .and_then(|l| {
                        let node = l
                            .headers()
                            .get(ANSWERER.node.unwrap_or_default())
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string);
                        let cookie = l.headers().get("set-cookie")?.to_str().ok()?;
                        Some((cookie.split(';').next()?.to_string(), node))
                    });
                if let Some(fresh) = fresh {
                    *session.lock().unwrap_or_else(|e| e.into_inner()) = Some(fresh.clone());
                    issuer = fresh.1;
                    r = read(Some(fresh.0)).await;
                }
            }
            c.run.record(
                Role::Probe.named("probe"),
                OpKind::PROBE,
                issuer,
                None,
                invoke,
                answer(&r),
            );
        });
        if let Some(l) = &liveness {
            let (c, h, l) = (ctx.clone(), http.clone(), l.clone());
            inflight.spawn(async move {
                let invoke = c.run.now();
                let r = h.get(&l).send().await;
                c.run.record(
                    Role::Probe.named("liveness"),
                    OpKind::LIVENESS,
                    None,
                    None,
                    invoke,
                    answer(&r),
                );
            });
        }
        while let Some(done) = inflight.try_join_next() {
            crate::tasks::propagate(done);
        }
    }
    crate::tasks::join_nested(&mut inflight).await
}

/// After a rotation: every cookie issued before it, tried on every app server directly;
/// and a new login on each. Recorded as operations like any other.
async fn try_old_sessions(ctx: &Context, f: &ProductRead, sessions: &[IssuedSession]) {
    let Some(rotated) = faults(&ctx.events())
        .iter()
        .filter(|f| f.fault.name() == "rotate-secret" && f.outcome == Outcome::Ok)
        .map(|f| f.start)
        .min()
    else {
        return;
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    for node in ctx.nodes().iter().filter(|n| n.spec().role == f.app_role) {
        let Some(addr) = node.host_addr(f.app_port) else {
            continue;
        };
        for s in sessions.iter().filter(|s| s.issued < rotated) {
            let invoke = ctx.now();
            let r = http
                .get(format!("http://{addr}/me"))
                .header("cookie", &s.cookie)
                .send()
                .await;
            ctx.record(
                Role::Verifier.named("verifier"),
                verbs::OLD_SESSION,
                Some(node.name().to_string()),
                Some(s.user.clone()),
                invoke,
                answer(&r),
            );
        }
        let invoke = ctx.now();
        let r = http
            .post(format!("http://{addr}/login"))
            .json(&serde_json::json!({ "user": "verifier" }))
            .send()
            .await;
        ctx.record(
            Role::Verifier.named("verifier"),
            verbs::LOGIN,
            Some(node.name().to_string()),
            None,
            invoke,
            answer(&r),
        );
    }
}

/// Every row, its content read back through the load balancer, and its analyses.
async fn final_state(
    ctx: &Context,
    f: &ProductRead,
    spec: &WorkloadSpec,
    before: Option<i64>,
) -> Result<FinalState, String> {
    let acked = acknowledged(&ctx.events());
    let db = connect_db(ctx, f).await?;
    // Unanalysed uploads are the continuity check's to judge, not an error here.
    wait_analysed(&db, &acked, f.analysis_timeout).await?;
    let before = before.unwrap_or(0);
    let mut state = FinalState {
        before_run_up_to: before,
        ..FinalState::default()
    };
    for r in db
        .query("SELECT id, sha256 FROM traces WHERE id > $1", &[&before])
        .await
        .map_err(|e| e.to_string())?
    {
        state.rows.insert(r.get(0), r.get(1));
    }
    for r in db
        .query(
            "SELECT t.id, (SELECT count(*) FROM analyses a WHERE a.trace_id = t.id),
                    (SELECT count(*) FROM analysis_attempts x WHERE x.trace_id = t.id) FROM traces t
             WHERE t.id > $1",
            &[&before],
        )
        .await
        .map_err(|e| e.to_string())?
    {
        state.analyses.insert(
            r.get(0),
            Analysed {
                results: r.get::<_, i64>(1) as u32,
                attempts: r.get::<_, i64>(2) as u32,
            },
        );
    }
    let row = db
        .query_one(
            "SELECT coalesce(array_agg(slot ORDER BY slot), '{}'),
                    floor(extract(epoch FROM clock_timestamp()) / 2)::bigint FROM rollups",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    state.rollup_slots = row.get(0);
    state.current_slot = row.get(1);
    // A restore brings back rows and objects from two backups: whether they agree is judged.
    if hadrill_model::Restore::of(&ctx.events()).is_some() {
        state.objects = Some(super::finals::list_objects(ctx, f).await?);
    }
    let entry = Endpoint::of(
        &ctx.node(&spec.entry).map_err(|e| e.to_string())?,
        spec.entry_port,
    )?;
    let http = entry
        .builder()
        .cookie_store(true)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    http.post(format!("{}/login", entry.base))
        .json(&serde_json::json!({ "user": "verifier" }))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| format!("verifier login: {e}"))?;
    let base = entry.base;
    for (id, sha) in state.rows.clone() {
        let invoke = ctx.now();
        let (mut ex, content) = read_trace(&http, &base, id, &sha).await;
        if content != Content::Identical {
            ex.outcome = Outcome::Fail;
            ex.error = Some(format!("{content:?}"));
        }
        ctx.record(
            Role::Verifier.named("verifier"),
            OpKind::VERIFY,
            Some(id.to_string()),
            Some(sha.clone()),
            invoke,
            ex,
        );
        state.content.insert(id, content);
    }
    Ok(state)
}
