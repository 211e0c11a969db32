//! Simulated agents of a master/worker cluster (SYSTEMS.md §4): each a tokio task that enrols,
//! connects through the load balancer (or cycles through a failover list of nodes), sends
//! keep-alives and numbered events, keeps what is unacknowledged and sends it again after
//! reconnecting. Every enrolment, connect, disconnect and acknowledgement goes into the
//! history; the cluster observer records the synced files each node holds.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::finals::{AGENTS_READ, AgentsFinal, status_matches};
use super::verbs;
use crate::classify::{self, TcpFailure};
use crate::clock::Stamp;
use crate::node::Node;
use crate::patroni::get_json;
use crate::workload::{Context, Workload};
use hadrill_model::{Exchange, OpKind, Outcome, Read, Role};

/// `[agents]` in a scenario.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentsSpec {
    pub count: usize,
    /// Agents that start only after `late_after` (e.g. to see them land on a new worker).
    pub late_count: usize,
    #[serde(with = "humantime_serde")]
    pub late_after: Duration,
    /// Enrolment: node and container port (the load balancer, forwarding to the master).
    pub enrol: String,
    pub enrol_port: u16,
    /// Reporting: node and container port (the load balancer, `balance leastconn`). Several
    /// nodes (load balancers side by side, as DNS round robin gives) or several ports spread
    /// the agents over them in turn: one HAProxy holds two open files per agent within the
    /// container's limit of 20,000, and each published port is its own engine proxy, one of
    /// which held about 3,300 connections here before it died.
    #[serde(deserialize_with = "one_or_many")]
    pub report: Vec<String>,
    #[serde(alias = "report_port", deserialize_with = "one_or_many")]
    pub report_ports: Vec<u16>,
    /// Failover-list mode: no load balancer; each agent knows these nodes and moves to the
    /// next one when its connection drops.
    pub failover_list: Vec<String>,
    #[serde(with = "humantime_serde")]
    pub notify_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub event_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub reconnect_delay: Duration,
    /// A random extra delay up to this, so agents do not reconnect in lockstep.
    #[serde(with = "humantime_serde")]
    pub jitter: Duration,
    /// Agents start spread over this window.
    #[serde(with = "humantime_serde")]
    pub start_spread: Duration,
    /// Nodes that must hold agents at the end (e.g. a worker that joined during the run).
    pub expect_on: Vec<String>,
    /// The cluster's nodes (master first) whose API (`/files`, `/agents`) is read.
    pub master: String,
    pub nodes: String,
    pub api_port: u16,
    /// The event store: node, port, user, database and the secret with the password.
    pub store: String,
    pub store_port: u16,
    pub store_user: String,
    pub store_database: String,
    pub store_password_secret: String,
}

/// One value (`1514`, `"cluster-lb"`) or a list of them (`[1514, 1520]`).
fn one_or_many<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany<T> {
        One(T),
        Many(Vec<T>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(v) => vec![v],
        OneOrMany::Many(vs) => vs,
    })
}

impl AgentsSpec {
    /// Where agent `index` reports, on its `target`-th node of a failover list. Behind load
    /// balancers, the agents take the balancers in turn and, on each, its ports in turn, so
    /// every (balancer, port) pair carries its share.
    fn report_to(&self, index: usize, target: usize) -> (&str, u16) {
        let ports = &self.report_ports;
        if self.failover_list.is_empty() {
            let n = self.report.len();
            (&self.report[index % n], ports[(index / n) % ports.len()])
        } else {
            let list = &self.failover_list;
            (&list[target % list.len()], ports[index % ports.len()])
        }
    }
}

impl Default for AgentsSpec {
    fn default() -> Self {
        AgentsSpec {
            count: 200,
            late_count: 0,
            late_after: Duration::from_secs(20),
            enrol: "cluster-lb".into(),
            enrol_port: 1515,
            report: vec!["cluster-lb".into()],
            report_ports: vec![1514],
            failover_list: Vec::new(),
            expect_on: Vec::new(),
            notify_interval: Duration::from_secs(1),
            event_interval: Duration::from_secs(2),
            reconnect_delay: Duration::from_millis(500),
            jitter: Duration::from_millis(1000),
            start_spread: Duration::from_secs(3),
            master: "master".into(),
            nodes: "cluster".into(),
            api_port: 55000,
            store: "events".into(),
            store_port: 5432,
            store_user: "app".into(),
            store_database: "events".into(),
            store_password_secret: "DB_PASSWORD".into(),
        }
    }
}

/// Wire messages, as `cluster-node` speaks them (one JSON object per line).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum Msg {
    Enroll { name: String },
    Enrolled { id: String, key: String },
    Hello { id: String, key: String },
    Welcome { node: String },
    Reject { reason: String },
    KeepAlive,
    Event { seq: u64, data: String },
    Ack { seq: u64 },
}

struct Line {
    read: tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
    write: tokio::net::tcp::OwnedWriteHalf,
}

impl Line {
    async fn open(addr: std::net::SocketAddr) -> Result<Line, String> {
        let s = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr))
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| format!("connect: {e}"))?;
        let _ = s.set_nodelay(true);
        let (r, write) = s.into_split();
        Ok(Line {
            read: BufReader::new(r).lines(),
            write,
        })
    }

    /// Opens a connection, sends `m` and waits for the answer. How it failed says whether the
    /// node may have acted on `m`.
    async fn ask(addr: std::net::SocketAddr, m: &Msg) -> Result<(Line, Msg), TcpFailure> {
        let mut l = Line::open(addr).await.map_err(TcpFailure::NotSent)?;
        l.send(m).await.map_err(TcpFailure::NotSent)?;
        match tokio::time::timeout(Duration::from_secs(5), l.recv()).await {
            Ok(Ok(Msg::Reject { reason })) => {
                Err(TcpFailure::Refused(format!("rejected: {reason}")))
            }
            Ok(Ok(answer)) => Ok((l, answer)),
            Ok(Err(e)) => Err(TcpFailure::Lost(e)),
            Err(_) => Err(TcpFailure::Lost("no answer within 5 s".into())),
        }
    }

    async fn send(&mut self, m: &Msg) -> Result<(), String> {
        let mut b = serde_json::to_vec(m).map_err(|e| e.to_string())?;
        b.push(b'\n');
        self.write.write_all(&b).await.map_err(|e| e.to_string())
    }

    async fn recv(&mut self) -> Result<Msg, String> {
        match self.read.next_line().await {
            Ok(Some(l)) => serde_json::from_str(&l).map_err(|e| e.to_string()),
            Ok(None) => Err("connection closed".into()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// The simulated agents as a workload: `run` starts them and the file observer and, when
/// told to stop, reads the master's view while they are still connected, then stops them;
/// the final read waits for the synced files and reads the event store (`AgentsFinal`).
pub struct AgentsWorkload {
    spec: AgentsSpec,
    /// Each agent's current node (None while disconnected).
    connections: Arc<std::sync::Mutex<BTreeMap<String, Option<String>>>>,
    /// The master's view, read as the run stopped.
    view: std::sync::Mutex<Option<AgentsFinal>>,
}

struct Ctx {
    /// The run, as every workload sees it.
    run: Context,
    spec: AgentsSpec,
    stop: CancellationToken,
    connections: Arc<std::sync::Mutex<BTreeMap<String, Option<String>>>>,
}

impl Ctx {
    fn addr(&self, node: &str, port: u16) -> Result<std::net::SocketAddr, String> {
        self.run
            .node(node)
            .map_err(|e| e.to_string())?
            .host_addr(port)
            .ok_or_else(|| format!("{node} publishes no port {port} (not running?)"))
    }

    async fn pause(&self) {
        self.pause_for(self.spec.reconnect_delay).await
    }

    /// After the `failures`-th failed enrolment in a row. Agents back off as real ones do, so
    /// a master working through a crowd of enrolments is not buried under retries: the
    /// reconnect delay, doubling up to 16 times it.
    async fn enrol_backoff(&self, failures: u32) {
        self.pause_for(self.spec.reconnect_delay * 2u32.pow(failures.min(5) - 1))
            .await
    }

    async fn pause_for(&self, delay: Duration) {
        let jitter = self.spec.jitter.as_millis() as u64;
        let extra = if jitter > 0 {
            rand::rng().random_range(0..jitter)
        } else {
            0
        };
        tokio::select! {
            _ = self.stop.cancelled() => {}
            _ = tokio::time::sleep(delay + Duration::from_millis(extra)) => {}
        }
    }
}

fn ex(outcome: Outcome, error: Option<String>, node: Option<String>) -> Exchange {
    Exchange {
        outcome,
        error,
        node,
        ..Exchange::OK
    }
}

impl AgentsWorkload {
    pub fn new(spec: AgentsSpec) -> AgentsWorkload {
        AgentsWorkload {
            spec,
            connections: Arc::default(),
            view: std::sync::Mutex::new(None),
        }
    }

    /// Each agent and the node it is connected to now (None: disconnected).
    fn connections(&self) -> BTreeMap<String, Option<String>> {
        self.connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many agents are connected now.
    pub fn connected(&self) -> usize {
        self.connections().values().filter(|n| n.is_some()).count()
    }

    /// How long the master may take to agree with the agents, and the files to converge.
    const SETTLE: Duration = Duration::from_secs(15);
}

impl Workload for AgentsWorkload {
    fn name(&self) -> &str {
        AGENTS_READ
    }

    /// Steady once every agent, the late ones too, is connected: the master's view and the
    /// files are the final read's to wait for.
    fn settled(self: Arc<Self>, ctx: Context) -> BoxFuture<'static, bool> {
        let _ = ctx;
        let all = self.spec.count + self.spec.late_count;
        Box::pin(async move { self.connected() == all })
    }

    fn run(self: Arc<Self>, ctx: Context) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            // The agents' own stop: they stay connected until the master's view is read.
            let stop = CancellationToken::new();
            let actx = Arc::new(Ctx {
                run: ctx.clone(),
                spec: self.spec.clone(),
                stop: stop.clone(),
                connections: self.connections.clone(),
            });
            let mut tasks = JoinSet::new();
            let spec = &actx.spec;
            for i in 0..spec.count + spec.late_count {
                let late = i >= spec.count;
                let spread = spec.start_spread.as_secs_f64() * (i % spec.count.max(1)) as f64
                    / spec.count.max(1) as f64;
                let delay = Duration::from_secs_f64(spread)
                    + if late {
                        spec.late_after
                    } else {
                        Duration::ZERO
                    };
                tasks.spawn(agent(actx.clone(), format!("agent-{i:04}"), delay, i));
            }
            tasks.spawn(observe_files(actx.clone()));
            ctx.stopped().await;
            let view = master_view(&ctx, &self, Self::SETTLE).await;
            *self.view.lock().unwrap_or_else(|e| e.into_inner()) = Some(view);
            // Unacknowledged events are recorded as `unknown` as the agents stop.
            stop.cancel();
            crate::tasks::join_nested(&mut tasks).await
        })
    }

    fn final_read(self: Arc<Self>, ctx: Context) -> BoxFuture<'static, Read> {
        Box::pin(async move {
            let view = self.view.lock().unwrap_or_else(|e| e.into_inner()).take();
            let mut out = view.ok_or("the master's view was not read")?;
            let http = crate::patroni::http(Duration::from_secs(2));
            out.files_in_sync_ms = files_in_sync(&ctx, &self.spec, &http, Self::SETTLE).await;
            match event_store(&ctx, &self.spec).await {
                Ok(e) => out.events = Some(e),
                Err(e) => tracing::error!("event store read failed: {e}"),
            }
            serde_json::to_value(out).map_err(|e| e.to_string())
        })
    }
}

async fn agent(ctx: Arc<Ctx>, name: String, delay: Duration, index: usize) {
    tokio::select! {
        _ = ctx.stop.cancelled() => return,
        _ = tokio::time::sleep(delay) => {}
    }
    // Everything this agent does is recorded under its name.
    let note = |kind, key: String, value, invoke, ex| {
        ctx.run
            .record(Role::Agent.named(&name), kind, Some(key), value, invoke, ex)
    };
    // Enrolment, retried until it works.
    let mut failures = 0;
    let (id, key) = loop {
        let invoke = ctx.run.now();
        let attempt = async {
            let addr = ctx
                .addr(&ctx.spec.enrol, ctx.spec.enrol_port)
                .map_err(TcpFailure::NotSent)?;
            match Line::ask(addr, &Msg::Enroll { name: name.clone() }).await? {
                (_, Msg::Enrolled { id, key }) => Ok((id, key)),
                (_, other) => Err(TcpFailure::Lost(format!("unexpected answer {other:?}"))),
            }
        };
        let result = attempt.await;
        let (value, answer) = match &result {
            Ok((id, _)) => (Some(id.clone()), ex(Outcome::Ok, None, None)),
            Err(e) => (None, classify::tcp(e)),
        };
        note(verbs::ENROLL, name.clone(), value, invoke, answer);
        match result {
            Ok(enrolled) => break enrolled,
            Err(_) => {
                failures += 1;
                ctx.enrol_backoff(failures).await;
                if ctx.stop.is_cancelled() {
                    return;
                }
            }
        }
    };
    let mut unacked: BTreeMap<u64, Stamp> = BTreeMap::new();
    let mut seq = 0u64;
    let mut target = index;
    while !ctx.stop.is_cancelled() {
        let (node_name, port) = ctx.spec.report_to(index, target);
        let invoke = ctx.run.now();
        let hello = async {
            let addr = ctx.addr(node_name, port).map_err(TcpFailure::NotSent)?;
            let hello = Msg::Hello {
                id: id.clone(),
                key: key.clone(),
            };
            match Line::ask(addr, &hello).await? {
                (l, Msg::Welcome { node }) => Ok((l, node)),
                (_, other) => Err(TcpFailure::Lost(format!("unexpected answer {other:?}"))),
            }
        };
        let (mut line, node) = match hello.await {
            Ok(x) => x,
            Err(e) => {
                // A node that refused the key may not have synced the registry yet: try it
                // again; a node that could not be reached: the next one in the list.
                if !matches!(e, TcpFailure::Refused(_)) {
                    target += 1;
                }
                note(
                    OpKind::CONNECT,
                    name.clone(),
                    None,
                    invoke,
                    classify::tcp(&e),
                );
                ctx.pause().await;
                continue;
            }
        };
        note(
            OpKind::CONNECT,
            name.clone(),
            None,
            invoke,
            ex(Outcome::Ok, None, Some(node.clone())),
        );
        set_connection(&ctx, &name, Some(node.clone()));
        let mut why = None;
        // What was sent and not acknowledged goes again on the new connection.
        for s in unacked.keys().copied().collect::<Vec<_>>() {
            if let Err(e) = line
                .send(&Msg::Event {
                    seq: s,
                    data: String::new(),
                })
                .await
            {
                why = Some(e);
                break;
            }
        }
        let mut keepalive = tokio::time::interval(ctx.spec.notify_interval);
        let mut events = tokio::time::interval(ctx.spec.event_interval);
        events.reset();
        while why.is_none() {
            tokio::select! {
                _ = ctx.stop.cancelled() => break,
                _ = keepalive.tick() => {
                    if let Err(e) = line.send(&Msg::KeepAlive).await { why = Some(e); }
                }
                _ = events.tick() => {
                    seq += 1;
                    unacked.insert(seq, ctx.run.now());
                    if let Err(e) = line.send(&Msg::Event { seq, data: format!("event {seq} of {name}") }).await {
                        why = Some(e);
                    }
                }
                m = line.recv() => match m {
                    Ok(Msg::Ack { seq: s }) => {
                        if let Some(invoke) = unacked.remove(&s) {
                            note(verbs::EVENT, format!("{id}/{s}"), None, invoke, ex(Outcome::Ok, None, Some(node.clone())));
                        }
                    }
                    Ok(_) => {}
                    Err(e) => why = Some(e),
                },
            }
        }
        set_connection(&ctx, &name, None);
        if let Some(e) = why {
            let invoke = ctx.run.now();
            note(
                OpKind::DISCONNECT,
                name.clone(),
                None,
                invoke,
                ex(Outcome::Ok, Some(e), Some(node)),
            );
            target += 1;
            ctx.pause().await;
        }
    }
    for (s, invoke) in unacked {
        note(
            verbs::EVENT,
            format!("{id}/{s}"),
            None,
            invoke,
            ex(
                Outcome::Unknown,
                Some("not acknowledged when the run ended".into()),
                None,
            ),
        );
    }
}

fn set_connection(ctx: &Ctx, name: &str, node: Option<String>) {
    ctx.connections
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(name.to_string(), node);
}

/// Records the digest of the synced files each node holds, when it changes.
async fn observe_files(ctx: Arc<Ctx>) {
    let http = crate::patroni::http(Duration::from_millis(500));
    let nodes = ctx
        .run
        .topology()
        .resolve(&ctx.spec.nodes)
        .unwrap_or_default();
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    while !ctx.stop.is_cancelled() {
        tokio::select! {
            _ = ctx.stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        for n in &nodes {
            let invoke = ctx.run.now();
            let Ok(addr) = ctx.addr(n, ctx.spec.api_port) else {
                continue;
            };
            let Some(v) = get_json(&http, &format!("http://{addr}/files")).await else {
                continue;
            };
            let digest = hex::encode(sha2::Sha256::digest(v.to_string().as_bytes()));
            if last.get(n) != Some(&digest) {
                last.insert(n.clone(), digest.clone());
                ctx.run.record(
                    Role::Observer.named("observer"),
                    verbs::FILES,
                    Some(n.clone()),
                    Some(digest),
                    invoke,
                    ex(Outcome::Ok, None, Some(n.clone())),
                );
            }
        }
    }
}

/// Reads the master's view until it matches the agents' connections, or `timeout`.
async fn master_view(ctx: &Context, fleet: &AgentsWorkload, timeout: Duration) -> AgentsFinal {
    let http = crate::patroni::http(Duration::from_secs(2));
    let spec = &fleet.spec;
    let master = ctx.node(&spec.master).ok();
    let t0 = std::time::Instant::now();
    let mut out = AgentsFinal::default();
    loop {
        out.connections = fleet.connections();
        if let Some(addr) = master.as_ref().and_then(|m| m.host_addr(spec.api_port)) {
            let agents = async {
                let v = get_json(&http, &format!("http://{addr}/agents")).await?;
                Some(
                    v.as_array()?
                        .iter()
                        .filter_map(|a| {
                            Some((
                                a["name"].as_str()?.to_string(),
                                (
                                    a["status"].as_str()?.to_string(),
                                    a["node"].as_str().map(str::to_string),
                                ),
                            ))
                        })
                        .collect::<BTreeMap<_, _>>(),
                )
            };
            let health = async {
                let v = get_json(&http, &format!("http://{addr}/cluster/healthcheck")).await?;
                Some(
                    v["nodes"]
                        .as_array()?
                        .iter()
                        .filter_map(|n| {
                            Some((
                                n["name"].as_str()?.to_string(),
                                n["n_active_agents"].as_u64()?,
                            ))
                        })
                        .collect::<BTreeMap<_, _>>(),
                )
            };
            out.master_agents = agents.await;
            out.n_active = health.await.unwrap_or_default();
        }
        if status_matches(&out) {
            out.status_converged_ms = Some(t0.elapsed().as_millis() as u64);
            break;
        }
        if t0.elapsed() > timeout {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    out
}

/// Every event in the store: `<agent id>/<seq>` → deliveries.
async fn event_store(ctx: &Context, spec: &AgentsSpec) -> Result<BTreeMap<String, i32>, String> {
    let password = ctx.secret(&spec.store_password_secret).unwrap_or_default();
    let store = ctx.node(&spec.store).map_err(|e| e.to_string())?;
    let c = crate::postgres::connect(
        &store,
        spec.store_port,
        &spec.store_user,
        &password,
        &spec.store_database,
        Duration::from_secs(5),
    )
    .await?;
    let rows = c
        .query("SELECT agent, seq, deliveries FROM agent_events", &[])
        .await
        .map_err(|e| e.to_string())?;
    Ok::<_, String>(
        rows.iter()
            .map(|r| {
                (
                    format!("{}/{}", r.get::<_, String>(0), r.get::<_, i64>(1)),
                    r.get::<_, i32>(2),
                )
            })
            .collect(),
    )
}

/// Polls `/files` on every running node until all equal the master's, or `timeout`.
async fn files_in_sync(
    ctx: &Context,
    spec: &AgentsSpec,
    http: &reqwest::Client,
    timeout: Duration,
) -> Option<u64> {
    let t0 = std::time::Instant::now();
    let nodes: Vec<Node> = ctx
        .topology()
        .resolve(&spec.nodes)
        .unwrap_or_default()
        .iter()
        .filter_map(|n| ctx.node(n).ok())
        .collect();
    loop {
        let mut sums = Vec::new();
        for n in &nodes {
            if !n.refresh().await.is_ok_and(|s| s.running) {
                continue;
            }
            let Some(addr) = n.host_addr(spec.api_port) else {
                continue;
            };
            sums.push(get_json(http, &format!("http://{addr}/files")).await);
        }
        if sums.len() > 1 && sums.iter().all(|s| s.is_some() && *s == sums[0]) {
            return Some(t0.elapsed().as_millis() as u64);
        }
        if t0.elapsed() > timeout {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_report_port_or_several_and_the_old_name_still_reads() {
        let ports = |text: &str| toml::from_str::<AgentsSpec>(text).unwrap().report_ports;
        assert_eq!(ports(""), [1514]);
        assert_eq!(ports("report_ports = 1520"), [1520]);
        assert_eq!(ports("report_port = 1520"), [1520]);
        assert_eq!(ports("report_ports = [1514, 1520]"), [1514, 1520]);
        assert!(toml::from_str::<AgentsSpec>("report_ports = \"x\"").is_err());
    }

    #[test]
    fn agents_take_each_load_balancer_and_each_of_its_ports_in_turn() {
        let spec = |text: &str| toml::from_str::<AgentsSpec>(text).unwrap();
        let one = spec("report = \"lb\"\nreport_ports = [1514, 1520]");
        assert_eq!(one.report, ["lb"]);
        fn at(s: &AgentsSpec) -> Vec<(&str, u16)> {
            (0..4).map(|i| s.report_to(i, i)).collect()
        }
        assert_eq!(
            at(&one),
            [("lb", 1514), ("lb", 1520), ("lb", 1514), ("lb", 1520)]
        );
        let two = spec("report = [\"a\", \"b\"]\nreport_ports = [1514, 1520]");
        assert_eq!(
            at(&two),
            [("a", 1514), ("b", 1514), ("a", 1520), ("b", 1520)]
        );
        // A failover list: the agent's own port, on the node it has moved on to.
        let list = spec("failover_list = [\"m\", \"w\"]\nreport_ports = [1514, 1520]");
        assert_eq!(list.report_to(1, 1), ("w", 1520));
        assert_eq!(list.report_to(1, 2), ("m", 1520));
    }
}
