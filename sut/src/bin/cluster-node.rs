//! `cluster-node`: one node of the master/worker cluster of SYSTEMS.md §4.
//!
//! - Every node accepts agents on 1514 (authenticated by the agent key registry), persists
//!   each agent event in the event store and acknowledges it only after the commit.
//! - The master enrols agents on 1515, accepts workers on 1516 (shared 32-character cluster
//!   key), answers `GET /cluster/healthcheck` and `GET /agents` on 55000.
//! - A worker keeps a connection to the master: every second it reports its agents (that is
//!   its keep-alive); every sync interval it sends MD5 + mtime of its synced files and takes
//!   the master's copy of each that differs (local edits are overwritten).
//! - `cluster-node control list` prints `NAME TYPE VERSION ADDRESS`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use clap::{Parser, Subcommand, ValueEnum};
use deadpool_postgres::Pool;
use hadrill_sut::cluster::{
    self, AGENT_PORT, API_PORT, AgentSeen, CLUSTER_PORT, Conn, ENROL_PORT, Msg, Registry, VERSION,
    now_ms,
};
use hadrill_sut::config::{DatabaseConfig, SslMode};
use hadrill_sut::{RETRY_PAUSE, db, hostname, init_logging, shutdown_signal};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, RwLock};

#[derive(Parser)]
#[command(
    name = "cluster-node",
    about = "hadrill reference product: master/worker cluster node"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[arg(long, value_enum)]
    role: Option<Role>,
    /// The master's host name (workers).
    #[arg(long, default_value = "master")]
    master: String,
    /// The shared cluster key: exactly 32 characters.
    #[arg(long, env = "CLUSTER_KEY", hide_env_values = true)]
    cluster_key: Option<String>,
    /// PostgreSQL URL of the event store.
    #[arg(long, env = "EVENTS_URL", hide_env_values = true)]
    events: Option<String>,
    /// Where the synced files (`etc/client.keys`, `etc/shared/…`) live.
    #[arg(long, default_value = "/var/lib/cluster")]
    data: PathBuf,
    #[arg(long, default_value_t = 2000)]
    sync_interval_ms: u64,
}

#[derive(Subcommand)]
enum Command {
    /// Cluster administration.
    Control {
        #[command(subcommand)]
        command: Control,
    },
}

#[derive(Subcommand)]
enum Control {
    /// Print every node: NAME TYPE VERSION ADDRESS.
    List {
        #[arg(long, default_value = "http://127.0.0.1:55000")]
        api: String,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Role {
    Master,
    Worker,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Worker => "worker",
        }
    }
}

/// A worker as the master knows it.
struct WorkerInfo {
    address: String,
    version: String,
    last_seen: u64,
    agents: Vec<AgentSeen>,
}

struct Node {
    name: String,
    role: Role,
    etc: PathBuf,
    cluster_key: String,
    master: String,
    sync_interval: Duration,
    registry: RwLock<Registry>,
    /// Enrolments made in memory, and how many of them are on disk.
    registry_changes: AtomicU64,
    registry_durable: Mutex<u64>,
    /// Agents connected here: id → (connection number, last keep-alive).
    agents: Mutex<BTreeMap<String, (u64, u64)>>,
    next_conn: AtomicU64,
    events: Pool,
    workers: Mutex<BTreeMap<String, WorkerInfo>>,
}

/// A worker that has not reported for this long is no longer counted as connected.
const STALE_MS: u64 = 5_000;

fn fail(msg: String) -> ! {
    eprintln!("cluster-node: {msg}");
    std::process::exit(2);
}

#[tokio::main]
async fn main() {
    init_logging();
    let cli = Cli::parse();
    if let Some(Command::Control {
        command: Control::List { api },
    }) = &cli.command
    {
        std::process::exit(control_list(api).await);
    }
    let role = cli
        .role
        .unwrap_or_else(|| fail("give --role master or --role worker".into()));
    let cluster_key = cli.cluster_key.clone().unwrap_or_default();
    if cluster_key.chars().count() != 32 {
        fail("the cluster key (CLUSTER_KEY) must be exactly 32 characters".into());
    }
    let url = cli
        .events
        .clone()
        .unwrap_or_else(|| fail("give the event store's URL (EVENTS_URL)".into()));
    let events = db::connect(&DatabaseConfig {
        url,
        sslmode: SslMode::Disable,
        sslcert: None,
        sslkey: None,
        sslrootcert: None,
        schema: "public".into(),
    })
    .unwrap_or_else(|e| fail(format!("event store: {e}")));
    let etc = cli.data.join("etc");
    let node = Arc::new(Node {
        name: hostname(),
        role,
        registry: RwLock::new(Registry::load(&etc.join("client.keys"))),
        etc,
        cluster_key,
        master: cli.master.clone(),
        sync_interval: Duration::from_millis(cli.sync_interval_ms),
        agents: Mutex::new(BTreeMap::new()),
        next_conn: AtomicU64::new(0),
        registry_changes: AtomicU64::new(0),
        registry_durable: Mutex::new(0),
        events,
        workers: Mutex::new(BTreeMap::new()),
    });
    create_event_table(&node).await;
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(listen(node.clone(), AGENT_PORT, agent));
    tasks.spawn(api(node.clone()));
    match role {
        Role::Master => {
            tasks.spawn(listen(node.clone(), ENROL_PORT, enrol));
            tasks.spawn(listen(node.clone(), CLUSTER_PORT, worker_link));
        }
        Role::Worker => {
            tasks.spawn(master_link(node.clone()));
        }
    }
    tracing::info!("{} {} {VERSION} up", role.name(), node.name);
    tokio::select! {
        _ = shutdown_signal() => tracing::info!("stopped cleanly"),
        _ = tasks.join_next() => fail("a listener stopped".into()),
    }
}

async fn create_event_table(node: &Node) {
    loop {
        let attempt = async {
            let c = node.events.get().await?;
            c.batch_execute(
                "CREATE TABLE IF NOT EXISTS agent_events (
                     agent text NOT NULL, seq bigint NOT NULL, node text NOT NULL,
                     deliveries int NOT NULL DEFAULT 1, at timestamptz NOT NULL DEFAULT now(),
                     PRIMARY KEY (agent, seq))",
            )
            .await?;
            anyhow::Ok(())
        };
        match attempt.await {
            Ok(()) => return,
            // Another node creating it at the same moment, or the store not up yet.
            Err(e) => tracing::warn!("event store not ready: {e:#}"),
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

async fn listen<F, Fut>(node: Arc<Node>, port: u16, handler: F)
where
    F: Fn(Arc<Node>, Conn) -> Fut + Send + Copy + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind(("0.0.0.0", port))
        .await
        .unwrap_or_else(|e| fail(format!("cannot listen on {port}: {e}")));
    loop {
        if let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(handler(node.clone(), Conn::new(stream)));
        }
    }
}

/// An agent's connection: authenticate, then keep-alives and events until it goes away.
async fn agent(node: Arc<Node>, mut conn: Conn) {
    let id = match conn.recv().await {
        Ok(Some(Msg::Hello { id, key })) if node.registry.read().await.check(&id, &key) => id,
        Ok(Some(Msg::Hello { id, .. })) => {
            let _ = conn
                .send(&Msg::Reject {
                    reason: format!("unknown agent {id} or wrong key"),
                })
                .await;
            return;
        }
        _ => return,
    };
    let number = node.next_conn.fetch_add(1, Ordering::Relaxed);
    node.agents
        .lock()
        .await
        .insert(id.clone(), (number, now_ms()));
    if conn
        .send(&Msg::Welcome {
            node: node.name.clone(),
        })
        .await
        .is_ok()
    {
        while let Ok(Some(msg)) = conn.recv().await {
            match msg {
                Msg::KeepAlive => {
                    if let Some(a) = node.agents.lock().await.get_mut(&id) {
                        a.1 = now_ms();
                    }
                }
                Msg::Event { seq, .. } => match store_event(&node, &id, seq).await {
                    Ok(()) => {
                        if conn.send(&Msg::Ack { seq }).await.is_err() {
                            break;
                        }
                    }
                    // Not acknowledged: the agent keeps it and sends it again.
                    Err(e) => tracing::warn!("event {id}/{seq} not stored: {e:#}"),
                },
                _ => {}
            }
        }
    }
    let mut agents = node.agents.lock().await;
    // A newer connection of the same agent may have replaced this one.
    if agents.get(&id).is_some_and(|(n, _)| *n == number) {
        agents.remove(&id);
    }
}

async fn store_event(node: &Node, agent: &str, seq: u64) -> anyhow::Result<()> {
    let c = node.events.get().await?;
    c.execute(
        "INSERT INTO agent_events (agent, seq, node) VALUES ($1, $2, $3)
         ON CONFLICT (agent, seq) DO UPDATE SET deliveries = agent_events.deliveries + 1",
        &[&agent, &(seq as i64), &node.name],
    )
    .await?;
    Ok(())
}

/// Runs file I/O (an fsync, hashing the synced files) on tokio's blocking pool: on the async
/// workers it stalled every connection and health check of the node while 2,000 agents
/// enrolled, and the load balancer took the master out.
async fn off_runtime<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("a file task of the node panicked")
}

/// Enrolment (master): the agent's id and key, the registry written durably first.
async fn enrol(node: Arc<Node>, mut conn: Conn) {
    if let Ok(Some(Msg::Enroll { name })) = conn.recv().await {
        let (id, key, change) = {
            let mut registry = node.registry.write().await;
            let (id, key) = registry.enroll(&name);
            (
                id,
                key,
                node.registry_changes.fetch_add(1, Ordering::SeqCst) + 1,
            )
        };
        let reply = match persist_registry(&node, change).await {
            Ok(()) => Msg::Enrolled { id, key },
            Err(e) => Msg::Reject {
                reason: format!("registry not written: {e}"),
            },
        };
        let _ = conn.send(&reply).await;
    }
}

/// Makes registry change number `change` durable. One write at a time, and each covers every
/// change made before it started (a group commit): a crowd of enrolments costs a few fsyncs,
/// not one each behind a lock, which had the master time out under 2,000 agents.
async fn persist_registry(node: &Node, change: u64) -> std::io::Result<()> {
    let mut durable = node.registry_durable.lock().await;
    if *durable >= change {
        return Ok(());
    }
    let (content, upto) = {
        let registry = node.registry.read().await;
        (
            registry.render(),
            node.registry_changes.load(Ordering::SeqCst),
        )
    };
    let path = node.etc.join("client.keys");
    off_runtime(move || cluster::write_durably(&path, content.as_bytes())).await?;
    *durable = upto;
    Ok(())
}

/// A worker's link (master side).
async fn worker_link(node: Arc<Node>, mut conn: Conn) {
    let name = match conn.recv().await {
        Ok(Some(Msg::Join {
            name,
            key,
            version,
            address,
        })) if key == node.cluster_key => {
            node.workers.lock().await.insert(
                name.clone(),
                WorkerInfo {
                    address,
                    version,
                    last_seen: now_ms(),
                    agents: Vec::new(),
                },
            );
            name
        }
        Ok(Some(Msg::Join { name, .. })) => {
            tracing::warn!("worker {name} refused: wrong cluster key");
            let _ = conn
                .send(&Msg::Reject {
                    reason: "wrong cluster key".into(),
                })
                .await;
            return;
        }
        _ => return,
    };
    tracing::info!("worker {name} joined");
    if conn
        .send(&Msg::Welcome {
            node: node.name.clone(),
        })
        .await
        .is_err()
    {
        return;
    }
    while let Ok(Some(msg)) = conn.recv().await {
        match msg {
            Msg::Status { agents } => {
                if let Some(w) = node.workers.lock().await.get_mut(&name) {
                    w.last_seen = now_ms();
                    w.agents = agents;
                }
            }
            Msg::Integrity { files } => {
                let etc = node.etc.clone();
                let diff = off_runtime(move || cluster::differing(&etc, &files)).await;
                if conn.send(&Msg::Files { files: diff }).await.is_err() {
                    break;
                }
            }
            _ => {}
        }
    }
    tracing::info!("worker {name} left");
}

/// The worker's permanent link to the master, re-established after any failure.
async fn master_link(node: Arc<Node>) {
    loop {
        if let Err(e) = master_session(&node).await {
            tracing::warn!("link to the master: {e:#}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn master_session(node: &Arc<Node>) -> anyhow::Result<()> {
    let stream = tokio::time::timeout(
        Duration::from_secs(2),
        TcpStream::connect((node.master.as_str(), CLUSTER_PORT)),
    )
    .await??;
    let mut conn = Conn::new(stream);
    conn.send(&Msg::Join {
        name: node.name.clone(),
        key: node.cluster_key.clone(),
        version: VERSION.into(),
        address: node.name.clone(),
    })
    .await?;
    match conn.recv().await? {
        Some(Msg::Welcome { .. }) => tracing::info!("joined the master"),
        other => anyhow::bail!("the master refused: {other:?}"),
    }
    let mut status = tokio::time::interval(Duration::from_secs(1));
    let mut sync = tokio::time::interval(node.sync_interval);
    loop {
        // A master that stops answering is noticed within a few keep-alives.
        tokio::select! {
            _ = status.tick() => {
                let agents = connected(node).await;
                conn.send(&Msg::Status { agents }).await?;
            }
            _ = sync.tick() => {
                let etc = node.etc.clone();
                let files = off_runtime(move || cluster::integrity(&etc)).await;
                conn.send(&Msg::Integrity { files }).await?;
                match tokio::time::timeout(Duration::from_secs(5), next_files(&mut conn)).await?? {
                    files if files.is_empty() => {}
                    files => apply(node, files).await?,
                }
            }
        }
    }
}

async fn next_files(conn: &mut Conn) -> anyhow::Result<BTreeMap<String, String>> {
    loop {
        match conn.recv().await? {
            Some(Msg::Files { files }) => return Ok(files),
            Some(_) => continue,
            None => anyhow::bail!("the master closed the link"),
        }
    }
}

/// The master's copies win: written over the local ones; the registry is reloaded.
async fn apply(node: &Node, files: BTreeMap<String, String>) -> anyhow::Result<()> {
    for (name, content) in &files {
        let path = cluster::synced_path(&node.etc, name)
            .ok_or_else(|| anyhow::anyhow!("the master sent a bad path {name}"))?;
        let content = content.clone();
        off_runtime(move || cluster::write_durably(&path, content.as_bytes())).await?;
    }
    tracing::info!("synced {} file(s) from the master", files.len());
    if files.contains_key("client.keys") {
        *node.registry.write().await = Registry::load(&node.etc.join("client.keys"));
    }
    Ok(())
}

async fn connected(node: &Node) -> Vec<AgentSeen> {
    node.agents
        .lock()
        .await
        .iter()
        .map(|(id, (_, seen))| AgentSeen {
            id: id.clone(),
            last_keepalive: *seen,
        })
        .collect()
}

async fn api(node: Arc<Node>) {
    let app = Router::new()
        .route("/cluster/healthcheck", get(healthcheck))
        .route("/agents", get(agents))
        .route("/files", get(files))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(node);
    let listener = TcpListener::bind(("0.0.0.0", API_PORT))
        .await
        .unwrap_or_else(|e| fail(format!("cannot listen on {API_PORT}: {e}")));
    if let Err(e) = axum::serve(listener, app).await {
        fail(format!("API: {e}"));
    }
}

/// Every node the master knows, with the agents reporting through it; a worker answers for
/// itself only.
async fn healthcheck(State(node): State<Arc<Node>>) -> Json<Value> {
    let mut nodes = vec![json!({
        "name": node.name, "type": node.role.name(), "version": VERSION,
        "address": node.name, "connected": true,
        "n_active_agents": node.agents.lock().await.len(),
    })];
    let now = now_ms();
    for (name, w) in node.workers.lock().await.iter() {
        let live = now.saturating_sub(w.last_seen) < STALE_MS;
        nodes.push(json!({
            "name": name, "type": "worker", "version": w.version, "address": w.address,
            "connected": live,
            "n_active_agents": if live { w.agents.len() } else { 0 },
        }));
    }
    Json(json!({ "nodes": nodes }))
}

/// Every enrolled agent: active where a live node reports it, else disconnected.
async fn agents(State(node): State<Arc<Node>>) -> Json<Value> {
    let now = now_ms();
    let mut seen: BTreeMap<String, (String, u64)> = BTreeMap::new();
    for (id, (_, at)) in node.agents.lock().await.iter() {
        seen.insert(id.clone(), (node.name.clone(), *at));
    }
    for (name, w) in node.workers.lock().await.iter() {
        if now.saturating_sub(w.last_seen) < STALE_MS {
            for a in &w.agents {
                seen.insert(a.id.clone(), (name.clone(), a.last_keepalive));
            }
        }
    }
    let list: Vec<Value> = node
        .registry
        .read()
        .await
        .agents
        .iter()
        .map(|(id, (name, _))| match seen.get(id) {
            Some((n, at)) => json!({"id": id, "name": name, "status": "active", "node": n, "last_keepalive": at}),
            None => json!({"id": id, "name": name, "status": "disconnected", "node": null, "last_keepalive": null}),
        })
        .collect();
    Json(json!(list))
}

/// MD5 of every synced file: what integrity convergence is judged on.
async fn files(State(node): State<Arc<Node>>) -> Json<Value> {
    let etc = node.etc.clone();
    let sums: BTreeMap<String, String> = off_runtime(move || cluster::integrity(&etc))
        .await
        .into_iter()
        .map(|(p, s)| (p, s.md5))
        .collect();
    Json(json!(sums))
}

async fn control_list(api: &str) -> i32 {
    let url = format!("{}/cluster/healthcheck", api.trim_end_matches('/'));
    let got = async {
        reqwest::get(&url)
            .await?
            .error_for_status()?
            .json::<Value>()
            .await
    };
    let body = match got.await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("cluster-node control list: {url}: {e}");
            return 1;
        }
    };
    println!("{:<12} {:<8} {:<8} ADDRESS", "NAME", "TYPE", "VERSION");
    for n in body["nodes"].as_array().into_iter().flatten() {
        println!(
            "{:<12} {:<8} {:<8} {}",
            n["name"].as_str().unwrap_or(""),
            n["type"].as_str().unwrap_or(""),
            n["version"].as_str().unwrap_or(""),
            n["address"].as_str().unwrap_or("")
        );
    }
    0
}
