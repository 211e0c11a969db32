//! Scenarios: a topology, a workload, a timed script of faults and the budgets each check must
//! meet, declared in `scenarios/*.toml`; and the runner that executes one and judges it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::agents::{self, AgentsFinal, AgentsSpec, Fleet};
use crate::checks::{self, Analysed, Budgets, CheckResult, Content, FinalState, Verdict};
use crate::faults::Fault;
use crate::history::{Event, OpKind, Outcome, ops};
use crate::run::{Run, RunError, RunOptions};
use crate::topology::{Invalid, Topology, TopologyError};
use crate::workload::sql::{self, SqlFinal, SqlSpec, SqlWorkload};
use crate::workload::{IssuedSession, Workload, WorkloadSpec, classify, record};

mod validate;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ScenarioError {
    #[error("scenario `{name}` not found (looked for {path})")]
    #[diagnostic(help("available scenarios: {available}"))]
    NotFound {
        name: String,
        path: PathBuf,
        available: String,
    },
    #[error("cannot read scenario file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Invalid(Box<Invalid>),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Topology(#[from] TopologyError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Run(#[from] RunError),
    #[error("cannot write results into {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A scenario file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioSpec {
    pub description: String,
    pub topology: Spanned<String>,
    /// The web product's users and probe. The default workload when no `[sql]` is given.
    pub workload: Option<WorkloadSpec>,
    /// The database workload: SQL clients, write probes, the cluster observer.
    pub sql: Option<SqlSpec>,
    /// Simulated agents of a master/worker cluster.
    pub agents: Option<AgentsSpec>,
    /// Load before the first step, so "before" figures exist.
    #[serde(default = "default_warmup", with = "humantime_serde")]
    pub warmup: Duration,
    /// Load after the last step, so recovery is observed.
    #[serde(default = "default_settle", with = "humantime_serde")]
    pub settle: Duration,
    pub steps: Vec<Step>,
    #[serde(default)]
    pub budgets: Budgets,
    #[serde(default)]
    pub final_read: FinalRead,
    /// Checks this scenario exists to see fail: a negative control, such as a peer partition
    /// without the ping node, where the suite must detect the split brain. The run passes
    /// only if each of them fails.
    #[serde(default)]
    pub expect_fail: Vec<String>,
}

fn default_warmup() -> Duration {
    Duration::from_secs(3)
}

fn default_settle() -> Duration {
    Duration::from_secs(5)
}

/// One step: when (`at` from the workload's start, or `after` the previous step), a fault,
/// and optionally a condition to wait for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    #[serde(default, with = "humantime_serde::option")]
    pub at: Option<Duration>,
    #[serde(default, with = "humantime_serde::option")]
    pub after: Option<Duration>,
    pub fault: Option<Fault>,
    pub wait: Option<Wait>,
}

/// `wait = { until = "healthy", nodes = ["app1"], timeout = "30s" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wait {
    pub until: Condition,
    /// Default: the nodes of this step's fault.
    #[serde(default)]
    pub nodes: Vec<String>,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Condition {
    /// The nodes' health checks pass.
    Healthy,
    /// Every upload acknowledged so far has its analysis.
    Analysed,
}

/// How the final state is read: the product's database and its app servers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FinalRead {
    pub database_node: String,
    pub database_port: u16,
    pub database_user: String,
    pub database_name: String,
    pub password_secret: String,
    /// App servers are the nodes with this role; old cookies are tried on each directly.
    pub app_role: String,
    pub app_port: u16,
    #[serde(with = "humantime_serde")]
    pub analysis_timeout: Duration,
}

impl Default for FinalRead {
    fn default() -> Self {
        FinalRead {
            database_node: "db".into(),
            database_port: 5432,
            database_user: "app".into(),
            database_name: "traces".into(),
            password_secret: "DB_PASSWORD".into(),
            app_role: "app".into(),
            app_port: 8080,
            analysis_timeout: Duration::from_secs(60),
        }
    }
}

pub struct Scenario {
    pub name: String,
    pub path: PathBuf,
    pub spec: ScenarioSpec,
    pub topology: Topology,
    /// The web workload when no workload is declared at all.
    default_web: WorkloadSpec,
}

/// The outcome of one run of a scenario, as written to `results.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    pub scenario: String,
    pub description: String,
    pub topology: String,
    pub run_id: String,
    pub run_dir: PathBuf,
    pub started_at: String,
    pub wall_seconds: f64,
    pub verdict: Verdict,
    /// Steps that could not be carried out (a fault refused, a wait timed out).
    pub step_errors: Vec<String>,
    pub checks: Vec<CheckResult>,
    pub budgets: Budgets,
    pub faults: Vec<crate::history::FaultRecord>,
    pub operations: BTreeMap<String, BTreeMap<String, usize>>,
    pub components: BTreeMap<String, String>,
    pub images: BTreeMap<String, String>,
    /// Wall-clock time (Unix ms) at which the run's clock read zero: maps history stamps to
    /// container log timestamps.
    pub clock_origin_unix_ms: u64,
    pub git_commit: Option<String>,
    pub host: String,
    /// The workload and probe settings the figures were measured with.
    pub workload: serde_json::Value,
    /// The topology's `[settings]` (e.g. Patroni's timing) the run was made with.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
}

/// Names of the scenarios under `<root>/scenarios`.
pub fn available(root: &Path) -> Vec<String> {
    crate::topology::toml_names(&root.join("scenarios"))
}

impl Scenario {
    /// Loads `<root>/scenarios/<name>.toml` (or a path) and the topology it names.
    pub fn load(root: &Path, name: &str) -> Result<Scenario, ScenarioError> {
        let path =
            crate::topology::locate(root, "scenarios", name).map_err(|(path, available)| {
                ScenarioError::NotFound {
                    name: name.into(),
                    path,
                    available: available.join(", "),
                }
            })?;
        let text = std::fs::read_to_string(&path).map_err(|source| ScenarioError::Read {
            path: path.clone(),
            source,
        })?;
        let invalid = |span, message: String| {
            ScenarioError::Invalid(Invalid::at(&path, &text, span, message, None))
        };
        let spec: ScenarioSpec = toml::from_str(&text)
            .map_err(|e| invalid(e.span().unwrap_or(0..0), e.message().to_string()))?;
        // A topology given as a file is found relative to the scenario file.
        let topology_ref = crate::topology::beside(&path, spec.topology.get_ref());
        let topology = Topology::load(root, &topology_ref).map_err(|e| {
            invalid(
                spec.topology.span(),
                format!("topology: cannot load `{}`: {e}", spec.topology.get_ref()),
            )
        })?;
        let scenario = Scenario {
            name: path
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
            path,
            spec,
            topology,
            default_web: WorkloadSpec::default(),
        };
        validate::check(&scenario, &text)?;
        Ok(scenario)
    }

    /// The web workload: the declared one, or the default when the scenario declares none.
    fn web(&self) -> Option<&WorkloadSpec> {
        match (&self.spec.workload, &self.spec.sql, &self.spec.agents) {
            (Some(w), _, _) => Some(w),
            (None, None, None) => Some(&self.default_web),
            _ => None,
        }
    }

    /// Starts the topology, drives the workload through the steps, reads the final state,
    /// judges it, writes `results.json` and removes the topology.
    pub async fn run(&self, options: &RunOptions) -> Result<Results, ScenarioError> {
        let wall = Instant::now();
        let started_at =
            humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let mut run = Run::start(self.topology.clone(), options).await?;
        let (step_errors, sessions, cluster) = self.drive(&run).await;
        let mut results = self
            .judge(&run, step_errors, &sessions, cluster.as_ref(), started_at)
            .await;
        if let Err(e) = run.teardown().await {
            tracing::error!("teardown: {e}");
        }
        results.wall_seconds = wall.elapsed().as_secs_f64();
        let path = run.dir().join("results.json");
        std::fs::write(
            &path,
            serde_json::to_vec_pretty(&results).expect("results serialise"),
        )
        .map_err(|source| ScenarioError::Write { path, source })?;
        Ok(results)
    }

    /// Runs the workload and the steps; returns what went wrong with steps, the sessions the
    /// users were given, and (with agents) the cluster's state read while they were connected.
    async fn drive(&self, run: &Run) -> (Vec<String>, Vec<IssuedSession>, Option<AgentsFinal>) {
        let mut errors = Vec::new();
        let web = match self
            .web()
            .map(|w| Workload::start(run, w.clone()))
            .transpose()
        {
            Ok(w) => w,
            Err(e) => return (vec![format!("workload: {e}")], Vec::new(), None),
        };
        let database = match &self.spec.sql {
            Some(spec) => match SqlWorkload::start(run, spec.clone()).await {
                Ok(w) => Some(w),
                Err(e) => {
                    if let Some(w) = web {
                        w.stop().await;
                    }
                    return (vec![format!("sql workload: {e}")], Vec::new(), None);
                }
            },
            None => None,
        };
        let fleet = self
            .spec
            .agents
            .as_ref()
            .map(|a| Fleet::start(run, a.clone()));
        let t0 = Instant::now();
        let progress = tokio::spawn(progress(run.shared().clone(), self.spec.steps.len()));
        tokio::time::sleep(self.spec.warmup).await;
        for (i, step) in self.spec.steps.iter().enumerate() {
            if let Some(at) = step.at {
                tokio::time::sleep_until((t0 + at).into()).await;
            }
            if let Some(after) = step.after {
                tokio::time::sleep(after).await;
            }
            let mut nodes = Vec::new();
            if let Some(fault) = &step.fault {
                tracing::info!("step {}: {}", i + 1, fault.name());
                match run.inject(fault.clone()).await {
                    Ok(record) => nodes = record.nodes,
                    Err(e) => {
                        errors.push(format!("step {}: {}: {e}", i + 1, fault.name()));
                        break;
                    }
                }
            }
            if let Some(wait) = &step.wait {
                let nodes = if wait.nodes.is_empty() {
                    nodes
                } else {
                    wait.nodes.clone()
                };
                if let Err(e) = self.wait(run, wait, &nodes).await {
                    errors.push(format!("step {}: wait until {:?}: {e}", i + 1, wait.until));
                    break;
                }
            }
        }
        tokio::time::sleep(self.spec.settle).await;
        let sessions = match web {
            Some(w) => w.stop().await,
            None => Vec::new(),
        };
        if let Some(d) = database {
            d.stop().await;
        }
        // The master's view is compared with the agents' while they are still connected.
        let cluster = match (fleet, &self.spec.agents) {
            (Some(f), Some(spec)) => {
                Some(agents::final_state(run, spec, f, Duration::from_secs(15)).await)
            }
            _ => None,
        };
        progress.abort();
        (errors, sessions, cluster)
    }

    async fn wait(&self, run: &Run, wait: &Wait, nodes: &[String]) -> Result<(), String> {
        match wait.until {
            Condition::Healthy => {
                for n in nodes {
                    let node = run.node(n).map_err(|e| e.to_string())?;
                    node.wait_healthy(wait.timeout)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Ok(())
            }
            Condition::Analysed => {
                let acked = acknowledged(&run.history().events());
                let db = self.connect_db(run).await?;
                let done = wait_analysed(&db, &acked, wait.timeout).await?;
                if done == acked.len() {
                    Ok(())
                } else {
                    Err(format!(
                        "{done} of {} acknowledged uploads analysed",
                        acked.len()
                    ))
                }
            }
        }
    }

    async fn connect_db(&self, run: &Run) -> Result<tokio_postgres::Client, String> {
        let f = &self.spec.final_read;
        let addr = run
            .node(&f.database_node)
            .map_err(|e| e.to_string())?
            .host_addr(f.database_port)
            .ok_or_else(|| format!("{} publishes no port {}", f.database_node, f.database_port))?;
        let password = run.secret(&f.password_secret).unwrap_or_default();
        let mut cfg = tokio_postgres::Config::new();
        cfg.host(addr.ip().to_string())
            .port(addr.port())
            .user(&f.database_user)
            .password(password)
            .dbname(&f.database_name)
            .connect_timeout(Duration::from_secs(5));
        let (client, conn) = cfg
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        Ok(client)
    }

    /// After a rotation: every cookie issued before it, tried on every app server directly;
    /// and a new login on each. Recorded as operations like any other.
    async fn try_old_sessions(&self, run: &Run, sessions: &[IssuedSession]) {
        let Some(rotated) = run
            .history()
            .faults()
            .iter()
            .filter(|f| f.fault.name() == "rotate-secret" && f.outcome == Outcome::Ok)
            .map(|f| f.start)
            .min()
        else {
            return;
        };
        let f = &self.spec.final_read;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client");
        for node in run.nodes().iter().filter(|n| n.spec().role == f.app_role) {
            let Some(addr) = node.host_addr(f.app_port) else {
                continue;
            };
            for s in sessions.iter().filter(|s| s.issued < rotated) {
                let invoke = run.clock().now();
                let r = http
                    .get(format!("http://{addr}/me"))
                    .header("cookie", &s.cookie)
                    .send()
                    .await;
                record(
                    run.shared(),
                    "verifier",
                    OpKind::OldSession,
                    Some(node.name().to_string()),
                    Some(s.user.clone()),
                    invoke,
                    classify(&r),
                );
            }
            let invoke = run.clock().now();
            let r = http
                .post(format!("http://{addr}/login"))
                .json(&serde_json::json!({ "user": "verifier" }))
                .send()
                .await;
            record(
                run.shared(),
                "verifier",
                OpKind::Login,
                Some(node.name().to_string()),
                None,
                invoke,
                classify(&r),
            );
        }
    }

    /// Every row, its content read back through the load balancer, and its analyses.
    async fn final_state(&self, run: &Run) -> Result<FinalState, String> {
        let acked = acknowledged(&run.history().events());
        let db = self.connect_db(run).await?;
        // Unanalysed uploads are the continuity check's to judge, not an error here.
        wait_analysed(&db, &acked, self.spec.final_read.analysis_timeout).await?;
        let mut state = FinalState::default();
        for r in db
            .query("SELECT id, sha256 FROM traces", &[])
            .await
            .map_err(|e| e.to_string())?
        {
            state.rows.insert(r.get(0), r.get(1));
        }
        for r in db
            .query(
                "SELECT t.id, (SELECT count(*) FROM analyses a WHERE a.trace_id = t.id),
                        (SELECT count(*) FROM analysis_attempts x WHERE x.trace_id = t.id) FROM traces t",
                &[],
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
        let spec = self.web().ok_or("the scenario has no web workload")?;
        let entry = run
            .node(&spec.entry)
            .map_err(|e| e.to_string())?
            .host_addr(spec.entry_port)
            .ok_or("the entry point publishes no port")?;
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| e.to_string())?;
        http.post(format!("http://{entry}/login"))
            .json(&serde_json::json!({ "user": "verifier" }))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("verifier login: {e}"))?;
        let base = format!("http://{entry}");
        for (id, sha) in state.rows.clone() {
            let invoke = run.clock().now();
            let (mut ex, content) = crate::workload::read_trace(&http, &base, id, &sha).await;
            if content != Content::Identical {
                ex.outcome = Outcome::Fail;
                ex.error = Some(format!("{content:?}"));
            }
            record(
                run.shared(),
                "verifier",
                OpKind::Verify,
                Some(id.to_string()),
                Some(sha.clone()),
                invoke,
                ex,
            );
            state.content.insert(id, content);
        }
        Ok(state)
    }

    async fn judge(
        &self,
        run: &Run,
        step_errors: Vec<String>,
        sessions: &[IssuedSession],
        cluster: Option<&AgentsFinal>,
        started_at: String,
    ) -> Results {
        // Every final read first (they record operations too), then one look at the history.
        let web_state = match self.web() {
            Some(_) => {
                self.try_old_sessions(run, sessions).await;
                self.final_state(run)
                    .await
                    .map_err(|e| tracing::error!("final read failed: {e}"))
                    .ok()
            }
            None => None,
        };
        let sql_state = match &self.spec.sql {
            Some(spec) => Some(sql::final_state(run, spec).await),
            None => None,
        };
        let events = run.history().events();
        let budgets = &self.spec.budgets;
        let mut checks = Vec::new();
        if let Some(web) = self.web() {
            let period = Duration::from_secs_f64(1.0 / web.probe_hz.max(1.0));
            checks.extend([
                checks::continuity(&events, web_state.as_ref(), budgets),
                checks::availability(&events, period, budgets),
                checks::sessions(&events),
                checks::historian(web_state.as_ref()),
            ]);
        }
        if let (Some(spec), Some(SqlFinal { keys, cluster })) = (&self.spec.sql, &sql_state) {
            if spec.clients > 0 {
                checks.push(checks::database::continuity(
                    &events,
                    keys.as_ref(),
                    budgets,
                ));
            }
            // With a web workload too, its probe already measured availability.
            if self.web().is_none() {
                let period = Duration::from_secs_f64(1.0 / spec.probe_hz.max(1.0));
                checks.push(checks::availability(&events, period, budgets));
            }
            checks.extend([
                checks::database::single_primary(&events, spec.member_probe_hz),
                checks::database::failover(&events, budgets),
            ]);
            checks.extend(checks::database::replicas(cluster));
        }
        if let (Some(spec), Some(state)) = (&self.spec.agents, cluster) {
            checks.extend([
                checks::cluster::reconnection(&events, budgets),
                checks::cluster::continuity(&events, state, budgets),
                checks::cluster::status_truth(&events, state, &spec.expect_on),
                checks::cluster::integrity(&events, &spec.master, state, budgets),
            ]);
        }
        let mut step_errors = step_errors;
        for name in &self.spec.expect_fail {
            match checks.iter_mut().find(|c| &c.check == name) {
                Some(c) => c.expected_to_fail = true,
                None => step_errors.push(format!(
                    "expect_fail: no check `{name}` ran in this scenario"
                )),
            }
        }
        let verdict =
            if !step_errors.is_empty() || checks.iter().any(|c| c.effective() == Verdict::Fail) {
                Verdict::Fail
            } else if checks.iter().any(|c| c.effective() == Verdict::Unknown) {
                Verdict::Unknown
            } else {
                Verdict::Pass
            };
        let mut operations: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
        for o in ops(&events) {
            let kind = serde_json::to_value(o.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let outcome = serde_json::to_value(o.outcome)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            *operations
                .entry(kind)
                .or_default()
                .entry(outcome)
                .or_default() += 1;
        }
        Results {
            scenario: self.name.clone(),
            description: self.spec.description.clone(),
            topology: self.topology.name.clone(),
            run_id: run.id().to_string(),
            run_dir: run.dir().to_path_buf(),
            started_at,
            wall_seconds: 0.0,
            verdict,
            step_errors,
            checks,
            budgets: self.spec.budgets.clone(),
            faults: run.history().faults(),
            operations,
            components: components(run).await,
            clock_origin_unix_ms: run
                .clock()
                .wall_origin()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            git_commit: git_commit(&self.path),
            host: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_default(),
            workload: serde_json::json!({ "web": self.web(), "sql": self.spec.sql, "agents": self.spec.agents }),
            settings: self.topology.settings.clone(),
            images: run
                .shared()
                .images
                .iter()
                .map(|(k, v)| (k.to_string(), format!("{} ({})", v.tag, v.id)))
                .collect(),
        }
    }
}

/// Live progress while a scenario runs: the last fault and the operations so far.
async fn progress(shared: std::sync::Arc<crate::run::Shared>, steps: usize) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tick.tick().await;
        let events = shared.history.events();
        let mut counts = [0usize; 3];
        let mut last_fault = None;
        for e in &events {
            match e {
                Event::Op(o) => counts[o.outcome as usize] += 1,
                Event::Fault(f) => last_fault = Some(f),
            }
        }
        let fault = last_fault.map_or("none yet".to_string(), |f| {
            format!("#{}/{steps} {} {}", f.id, f.fault.name(), f.nodes.join(","))
        });
        tracing::info!(
            "t={} last fault {fault}; operations ok {} fail {} unknown {}",
            shared.clock.now(),
            counts[0],
            counts[1],
            counts[2]
        );
    }
}

/// Trace ids of the acknowledged uploads.
fn acknowledged(events: &[Event]) -> Vec<i64> {
    ops(events)
        .iter()
        .filter(|o| o.kind == OpKind::Upload && o.outcome == Outcome::Ok)
        .filter_map(|o| o.key.as_ref()?.parse().ok())
        .collect()
}

/// Polls until every one of `ids` has its analysis or `timeout` passes; returns how many have.
async fn wait_analysed(
    db: &tokio_postgres::Client,
    ids: &[i64],
    timeout: Duration,
) -> Result<usize, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let done = db
            .query_one(
                "SELECT count(*) FROM analyses WHERE trace_id = ANY($1)",
                &[&ids],
            )
            .await
            .map_err(|e| e.to_string())?
            .get::<_, i64>(0) as usize;
        if done == ids.len() || Instant::now() > deadline {
            return Ok(done);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The commit of the checkout holding the scenario file, if it is in one.
fn git_commit(scenario: &Path) -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(scenario.parent()?)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Versions of the components, read from the running images.
async fn components(run: &Run) -> BTreeMap<String, String> {
    const PROBES: &[(&str, &str)] = &[
        ("haproxy", "haproxy -v | head -1"),
        ("nginx", "nginx -v 2>&1"),
        (
            "postgresql",
            "/usr/lib/postgresql/15/bin/postgres --version",
        ),
        ("redis", "redis-server --version"),
        ("seaweedfs", "weed version 2>&1 | head -1"),
        ("patroni", "patroni --version 2>&1"),
        ("etcd", "etcd --version 2>&1 | head -1"),
    ];
    let mut out = BTreeMap::new();
    // Every hadrill image carries the same packages: ask any running node.
    let Some(node) = run
        .nodes()
        .into_iter()
        .find(|n| !n.spec().once && !n.ips().is_empty())
    else {
        return out;
    };
    for (name, cmd) in PROBES {
        if let Ok(o) = node.exec(&["sh", "-c", cmd]).await
            && o.success()
        {
            out.insert(name.to_string(), o.output.trim().to_string());
        }
    }
    out
}

impl Results {
    /// The terminal summary: one line per check, measured against budget.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{:<22} {:<8} {}\n",
            self.scenario,
            verdict_word(self.verdict),
            format_args!("{:.1}s, run {}", self.wall_seconds, self.run_dir.display())
        );
        for e in &self.step_errors {
            s.push_str(&format!("  {:<20} {:<8} {e}\n", "steps", "FAIL"));
        }
        for c in &self.checks {
            let expected = if c.expected_to_fail {
                format!(" (expected to fail: {})", verdict_word(c.effective()))
            } else {
                String::new()
            };
            s.push_str(&format!(
                "  {:<20} {:<8} {}{expected}\n",
                c.check,
                verdict_word(c.verdict),
                c.summary
            ));
        }
        s
    }
}

pub fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "PASS",
        Verdict::Fail => "FAIL",
        Verdict::Unknown => "UNKNOWN",
    }
}
