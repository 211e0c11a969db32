//! Scenarios: a topology, a workload, a timed script of faults and the budgets each check must
//! meet, declared in `scenarios/*.toml`; and the runner that executes one and judges it.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use toml::Spanned;

use crate::checks::{self, Traffic, database};
use crate::faults::When;
use crate::history::History;
use crate::interrupt::Abort;
use crate::reference::agents::{AgentsSpec, AgentsWorkload};
use crate::reference::finals::{self, ProductRead};
use crate::reference::web::{WebWorkload, WorkloadSpec};
use crate::reference::{self, cluster};
use crate::run::{Run, RunError, RunOptions};
use crate::topology::{Invalid, Topology, TopologyError};
use crate::workload::http::{HttpSpec, HttpWorkload};
use crate::workload::redis::RedisSpec;
use crate::workload::s3::S3Spec;
use crate::workload::sql::{SqlSpec, SqlWorkload};
use crate::workload::{Context, Keyed, Observer, Workload};
use hadrill_model::{
    AbortRecord, Budgets, Check, CheckResult, Event, Evidence, Fault, HarnessUsage, OpKind, Read,
    Verdict, faults, ops,
};
pub use hadrill_model::{NodePrivileges, Results, verdict_word};

mod abort;
mod nemesis;
mod shrink;
mod validate;

pub use abort::AbortSpec;
pub use nemesis::{Between, NemesisFault, NemesisSpec};
pub use shrink::{Shrunk, shrink};

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
    #[error("{path} cannot be read as a run's evidence: {message}")]
    #[diagnostic(help(
        "a run directory holds results.json, history.jsonl, final.json and scenario.toml as `hadrill run` wrote them; a run saved by a hadrill whose files had another shape (before final.json kept the reads by workload) cannot be re-checked by this one"
    ))]
    Evidence { path: PathBuf, message: String },
    #[error("drill `{drill}`: {message}")]
    #[diagnostic(help(
        "each check of a drill needs its own name, other than the built-in checks' ({builtin})"
    ))]
    CheckName {
        drill: String,
        message: String,
        builtin: String,
    },
    #[error("drill `{drill}` cannot be written as a scenario: {message}")]
    Serialise { drill: String, message: String },
    #[error("cannot shrink {}: {why}", run.display())]
    #[diagnostic(help(
        "shrink a failed run of a scenario with `[nemesis]`, given as its run directory (runs/<run>)"
    ))]
    Shrink { run: PathBuf, why: String },
}

/// A scenario file as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioSpec {
    pub description: String,
    pub topology: Spanned<String>,
    /// The web product's users and probe. The default workload when no `[sql]` is given.
    pub workload: Option<WorkloadSpec>,
    /// A product's own HTTP API, described declaratively: users, writes, read-backs, probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSpec>,
    /// The database workload: SQL clients, write probes, the cluster observer.
    pub sql: Option<SqlSpec>,
    /// Writes of fresh keys straight into a Redis, each read back after the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisSpec>,
    /// Objects put straight into an S3 bucket, each read back and compared after the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Spec>,
    /// Simulated agents of a master/worker cluster.
    pub agents: Option<AgentsSpec>,
    /// Workloads implemented in a user's crate (`Drill::workload`), as the drill's text
    /// records them: what drove the run and which checks its evidence supports. Only the
    /// drill's crate can run them; `hadrill check` judges their runs again from the files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub code_workloads: Vec<CodeWorkload>,
    /// Observers implemented in a user's crate (`Drill::observer`), by name, as the drill's
    /// text records them: their facts may decide a step's targets (`@primary`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub observers: Vec<String>,
    /// Load before the first step, so "before" figures exist.
    #[serde(default = "default_warmup", with = "humantime_serde")]
    pub warmup: Duration,
    /// Load after the last step, so recovery is observed.
    #[serde(default = "default_settle", with = "humantime_serde")]
    pub settle: Duration,
    /// The steps as written; a scenario with `[nemesis]` writes none and draws them instead.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Step>,
    /// Random faults drawn from a seed, in place of written steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nemesis: Option<NemesisSpec>,
    /// When to stop injecting before the script ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<AbortSpec>,
    /// The release the install must serve once the steps are done (the `upgrade` check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<UpgradeSpec>,
    #[serde(default)]
    pub budgets: Budgets,
    #[serde(default)]
    pub final_read: ProductRead,
    /// Checks this scenario exists to see fail: a negative control, such as a peer partition
    /// without the ping node, where the suite must detect the split brain. The run passes
    /// only if each of them fails.
    #[serde(default)]
    pub expect_fail: Vec<String>,
    /// The same drill on other topologies (another load balancer, other settings): each is its
    /// own test and its own row, `<scenario>@<topology>`.
    #[serde(default)]
    pub variants: Vec<Variant>,
}

/// `[upgrade]`: what an upgrade drill's steps must leave the install serving.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpgradeSpec {
    /// The release every answer after the last step must name (the workload's version
    /// header: `x-product-version` for the reference product, `[http] version` for others).
    pub to: String,
}

/// A workload from a user's code, as a drill's text names it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CodeWorkload {
    pub name: String,
    /// Its availability probe's frequency: the availability check judges its probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_hz: Option<f64>,
    /// The kind of its writes, when it reads the store back after the run: the continuity
    /// check judges them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_kind: Option<String>,
    /// Whether it runs agents: the reconnection check judges them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub agents: bool,
}

/// A scenario's drill on another topology.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    pub topology: Spanned<String>,
    /// Checks the drill exists to see fail on this topology, in place of the scenario's own
    /// `expect_fail`: a configuration kept as a negative control.
    #[serde(default)]
    pub expect_fail: Vec<String>,
    /// What the evidence showed on this topology and why, for the sign-off page's findings.
    pub finding: Option<String>,
    /// The budgets on this topology, in place of the scenario's (all of them: one not given
    /// is its default), when the evidence there justifies others.
    pub budgets: Option<Budgets>,
}

impl Variant {
    /// Its topology's name: the file's stem when the scenario gives a path.
    pub fn name(&self) -> Cow<'_, str> {
        let t = Path::new(self.topology.get_ref());
        t.file_stem().unwrap_or(t.as_os_str()).to_string_lossy()
    }
}

/// The separator of a scenario and the topology of one of its variants in a test's name.
pub const VARIANT_SEPARATOR: char = '@';

pub(crate) fn default_warmup() -> Duration {
    Duration::from_secs(3)
}

pub(crate) fn default_settle() -> Duration {
    Duration::from_secs(5)
}

/// One step: when (`at` from the workload's start, or `after` the previous step), a fault,
/// and optionally a condition to wait for.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    #[serde(
        default,
        with = "humantime_serde::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub at: Option<Duration>,
    #[serde(
        default,
        with = "humantime_serde::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub after: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<Fault>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<Wait>,
    /// Fire the fault only once its targets hold work in flight (or the timeout passed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<When>,
}

impl Step {
    /// A step `at` this long after the workload started.
    pub fn at(at: Duration) -> Step {
        Step {
            at: Some(at),
            after: None,
            fault: None,
            wait: None,
            when: None,
        }
    }

    /// A step this long after the previous one ended.
    pub fn after(after: Duration) -> Step {
        Step {
            at: None,
            after: Some(after),
            fault: None,
            wait: None,
            when: None,
        }
    }

    pub fn fault(mut self, fault: Fault) -> Step {
        self.fault = Some(fault);
        self
    }

    /// Then wait until `until` holds on `nodes` (empty: the fault's nodes), up to `timeout`.
    pub fn wait(mut self, until: Condition, nodes: &[&str], timeout: Duration) -> Step {
        self.wait = Some(Wait {
            until,
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
            timeout,
        });
        self
    }
}

/// `wait = { until = "healthy", nodes = ["app1"], timeout = "30s" }`.
#[derive(Debug, Clone, Deserialize, Serialize)]
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
    /// Every agent of `[agents]` (not counting late ones) is connected: the fault then hits a
    /// cluster in its steady state, not one still absorbing the enrolment of its fleet.
    AgentsConnected,
}

pub struct Scenario {
    pub name: String,
    pub path: PathBuf,
    pub spec: ScenarioSpec,
    pub topology: Topology,
    /// The scenario as written: kept with the run's evidence, so the verdict can be re-checked
    /// from the run directory alone.
    pub text: String,
    /// Checks from a user's code (`Drill::check`), judged after the built-in ones.
    pub custom: Vec<Arc<dyn Check>>,
    /// Workloads from a user's code (`Drill::workload`), in the order of `code_workloads`.
    pub workloads: Vec<Arc<dyn Workload>>,
    /// Observers from a user's code (`Drill::observer`).
    pub observers: Vec<Arc<dyn Observer>>,
    /// The seed the nemesis drew this run's steps from (`[nemesis]` only).
    pub seed: Option<u64>,
}

/// Every scenario of the project and every variant it declares (`<scenario>@<topology>`), in
/// name order: the default suite, one test each.
pub fn available(root: &Path) -> Vec<String> {
    #[derive(Deserialize)]
    struct Variants {
        #[serde(default)]
        variants: Vec<Variant>,
    }
    let dir = root.join("scenarios");
    let mut names = Vec::new();
    for name in crate::topology::toml_names(&dir) {
        // A file that does not parse is still listed: running it reports where it is wrong.
        let variants = std::fs::read_to_string(dir.join(format!("{name}.toml")))
            .ok()
            .and_then(|text| toml::from_str::<Variants>(&text).ok())
            .map_or_else(Vec::new, |v| v.variants);
        for v in variants {
            names.push(format!("{name}{VARIANT_SEPARATOR}{}", v.name()));
        }
        names.push(name);
    }
    names.sort();
    names
}

impl ScenarioSpec {
    /// This scenario as run on `topology`: its variant's expectations when it declares one for
    /// that topology (the span stays the variant's, so errors point at it), else the scenario's
    /// own on another topology (`--topology`).
    pub fn apply_variant(&mut self, topology: &str) {
        match self.variant(topology).cloned() {
            Some(v) => {
                self.topology = v.topology;
                self.expect_fail = v.expect_fail;
                if let Some(budgets) = v.budgets {
                    self.budgets = budgets;
                }
            }
            None => {
                let span = self.topology.span();
                self.topology = Spanned::new(span, topology.to_string());
            }
        }
    }

    /// The variant this scenario declares for `topology` (as written, or its name).
    pub fn variant(&self, topology: &str) -> Option<&Variant> {
        self.variants
            .iter()
            .find(|v| v.topology.get_ref() == topology || v.name() == topology)
    }

    /// The web workload: the declared one, or the default when the scenario declares none.
    pub fn web(&self) -> Option<Cow<'_, WorkloadSpec>> {
        match (&self.workload, &self.sql, &self.agents) {
            (Some(w), _, _) => Some(Cow::Borrowed(w)),
            (None, None, None)
                if self.code_workloads.is_empty()
                    && self.http.is_none()
                    && self.redis.is_none()
                    && self.s3.is_none() =>
            {
                Some(Cow::Owned(WorkloadSpec::default()))
            }
            _ => None,
        }
    }
}

impl Scenario {
    /// The images its `upgrade` steps install (validated when it was loaded).
    pub fn upgrade_images(&self) -> Vec<crate::images::ImageRef> {
        self.spec
            .steps
            .iter()
            .filter_map(|s| match &s.fault {
                Some(Fault::Upgrade { image, .. }) => self.topology.image(image).ok(),
                _ => None,
            })
            .collect()
    }

    /// Loads `<root>/scenarios/<name>.toml` (or a path) and the topology it names; with
    /// `<name>@<topology>`, on that topology instead, with what the scenario's variant for it
    /// declares.
    pub fn load(root: &Path, name: &str) -> Result<Scenario, ScenarioError> {
        let (name, on) = match name.rsplit_once(VARIANT_SEPARATOR) {
            Some((name, topology)) => (name, Some(topology)),
            None => (name, None),
        };
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
        let scenario = Scenario::parse(root, path, text, on)?;
        // A drill's text names workloads and observers whose code is in its crate, not in the
        // file.
        let code = (scenario.spec.code_workloads.first())
            .map(|w| ("code_workloads", "workload", w.name.as_str()))
            .or_else(|| {
                (scenario.spec.observers.first()).map(|o| ("observers", "observer", o.as_str()))
            });
        if let Some((field, what, name)) = code {
            let at = scenario.text.find(field).unwrap_or(0);
            return Err(ScenarioError::Invalid(Invalid::at(
                &scenario.path,
                &scenario.text,
                at..at + field.len(),
                format!("{field}: {what} `{name}` is implemented in a drill's crate"),
                Some(
                    "run the drill from its crate (`Drill::run`); `hadrill check <run>` judges a saved run of it again".into(),
                ),
            )));
        }
        Ok(scenario)
    }

    /// A scenario from its text, as if read from `path` (a drill built in code has no file;
    /// its text is what it serialises to), optionally on the topology `on`.
    pub(crate) fn parse(
        root: &Path,
        path: PathBuf,
        text: String,
        on: Option<&str>,
    ) -> Result<Scenario, ScenarioError> {
        let invalid = |span, message: String| {
            ScenarioError::Invalid(Invalid::at(&path, &text, span, message, None))
        };
        let mut spec: ScenarioSpec = toml::from_str(&text)
            .map_err(|e| invalid(e.span().unwrap_or(0..0), e.message().to_string()))?;
        let declared = on.is_some_and(|t| spec.variant(t).is_some());
        if let Some(on) = on {
            spec.apply_variant(on);
        }
        let topology_ref = match on {
            // Given on the command line: found as the user wrote it.
            Some(t) if !declared => t.to_string(),
            // Given in the file: a path is relative to the scenario file.
            _ => crate::topology::beside(&path, spec.topology.get_ref()),
        };
        let topology = Topology::load(root, &topology_ref).map_err(|e| {
            invalid(
                spec.topology.span(),
                format!("topology: cannot load `{}`: {e}", spec.topology.get_ref()),
            )
        })?;
        let stem = path.file_stem().unwrap_or_default().to_string_lossy();
        let scenario = Scenario {
            name: match on {
                Some(_) => format!("{stem}{VARIANT_SEPARATOR}{}", topology.name),
                None => stem.into_owned(),
            },
            path,
            spec,
            topology,
            text,
            custom: Vec::new(),
            workloads: Vec::new(),
            observers: Vec::new(),
            seed: None,
        };
        validate::check(&scenario, &scenario.text)?;
        let mut scenario = scenario;
        if let Some(seed) = scenario
            .spec
            .nemesis
            .as_ref()
            .map(|n| n.seed.unwrap_or_else(rand::random))
        {
            scenario.reseed(seed);
        }
        // Each variant is a test of the suite: a topology it cannot find is refused here, at
        // the variant, rather than when the suite reaches it.
        for v in &scenario.spec.variants {
            let name = crate::topology::beside(&scenario.path, v.topology.get_ref());
            if let Err((looked, available)) = crate::topology::locate(root, "topologies", &name) {
                return Err(ScenarioError::Invalid(Invalid::at(
                    &scenario.path,
                    &scenario.text,
                    v.topology.span(),
                    format!(
                        "variants: no topology `{}` (looked for {})",
                        v.topology.get_ref(),
                        looked.display()
                    ),
                    Some(format!("topologies: {}", available.join(", "))),
                )));
            }
        }
        Ok(scenario)
    }

    fn web(&self) -> Option<Cow<'_, WorkloadSpec>> {
        self.spec.web()
    }

    /// Draws the steps of its `[nemesis]` from `seed` (the same seed, the same schedule);
    /// nothing for a scenario without one.
    pub fn reseed(&mut self, seed: u64) {
        let Some(nemesis) = &self.spec.nemesis else {
            return;
        };
        let mut nodes: Vec<String> = Vec::new();
        for t in &nemesis.targets {
            for n in self.topology.resolve(t).unwrap_or_default() {
                if !nodes.contains(&n) {
                    nodes.push(n);
                }
            }
        }
        self.spec.steps = nemesis.schedule(&nodes, seed, self.spec.warmup);
        self.seed = Some(seed);
    }

    /// Starts the topology, drives the workload through the steps, reads the final state,
    /// judges it, writes `results.json` (with the evidence beside it: `history.jsonl`,
    /// `final.json`, `scenario.toml`) and removes the topology.
    pub async fn run(&self, options: &RunOptions) -> Result<Results, ScenarioError> {
        let wall = Instant::now();
        let meter = crate::usage::Meter::start();
        let started_at =
            humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let mut options = options.clone();
        let dir = options
            .run_dir
            .get_or_insert_with(|| new_run_dir(&options.runs_dir, &self.name))
            .clone();
        options.images.extend(self.upgrade_images());
        let started = Run::start(self.topology.clone(), &options).await;
        // A run that could not start, or hosts not ready for its faults: an `error` result.
        let errored = |e: &dyn miette::Diagnostic| {
            let mut results = errored_results(self.name.clone(), &dir, started_at.clone(), e);
            results.description = self.spec.description.clone();
            results.topology = self.topology.name.clone();
            results.wall_seconds = wall.elapsed().as_secs_f64();
            results.slots = options.slots;
            save_results(&results)?;
            Ok(results)
        };
        let mut run = match started {
            Ok(run) => run,
            Err(e) => return errored(&e),
        };
        if run.topology().is_hosts() {
            let faults: Vec<Fault> = self
                .spec
                .steps
                .iter()
                .filter_map(|s| s.fault.clone())
                .collect();
            if let Err(e) = crate::faults::preflight(&run, &faults).await {
                if let Err(t) = run.teardown().await {
                    tracing::error!("teardown after a refused run also failed: {t}");
                }
                return errored(&e);
            }
        }
        let driven = self.drive(&run).await;
        let read = Instant::now();
        let finals = self.read_finals(&run, &driven).await;
        run.shared()
            .phase("final-read", "final reads", read.elapsed());
        let events = run.history().events();
        write_evidence(run.dir(), &finals, &self.text)?;
        let judging = Instant::now();
        let mut results = self
            .results(&run, &events, &finals, driven.step_errors, started_at)
            .await;
        run.shared().phase("judging", "checks", judging.elapsed());
        let teardown = Instant::now();
        if let Err(e) = run.teardown().await {
            tracing::error!("teardown: {e}");
        }
        run.shared()
            .phase("teardown", "teardown", teardown.elapsed());
        results.phases = run.phases();
        results.harness = meter.finish().map(|h| HarnessUsage {
            load_cores: driven.load.map(|l| l.cores),
            ..h
        });
        results.wall_seconds = wall.elapsed().as_secs_f64();
        results.slots = options.slots;
        save_results(&results)?;
        Ok(results)
    }

    /// Every workload of the run, each under its name: the built-in ones the scenario
    /// declares (the reference product's from its plug-in), then the drill's own; and the
    /// agents, whose connections a step may wait for.
    fn workloads(&self) -> (Vec<Arc<dyn Workload>>, Option<Arc<AgentsWorkload>>) {
        let mut all: Vec<Arc<dyn Workload>> = Vec::new();
        if let Some(web) = self.web() {
            let read = self.spec.final_read.clone();
            all.push(Arc::new(WebWorkload::new(web.into_owned(), read)));
        }
        if let Some(http) = &self.spec.http {
            all.push(Arc::new(HttpWorkload::new(http.clone())));
        }
        if let Some(sql) = &self.spec.sql {
            all.push(Arc::new(SqlWorkload::new(sql.clone())));
        }
        if let Some(redis) = &self.spec.redis {
            all.push(Arc::new(Keyed::new(redis.clone())));
        }
        if let Some(s3) = &self.spec.s3 {
            all.push(Arc::new(Keyed::new(s3.clone())));
        }
        let agents = self
            .spec
            .agents
            .clone()
            .map(AgentsWorkload::new)
            .map(Arc::new);
        if let Some(a) = &agents {
            all.push(a.clone());
        }
        all.extend(self.workloads.iter().cloned());
        (all, agents)
    }

    /// Prepares the workloads, runs them through the warmup, the steps and the settle, and
    /// stops them; returns what went wrong with steps (a task that panicked among them) and
    /// the workloads, for their final reads.
    async fn drive(&self, run: &Run) -> Driven {
        let (workloads, agents) = self.workloads();
        let mut driven = Driven {
            step_errors: Vec::new(),
            workloads: workloads.clone(),
            load: None,
        };
        let errors = &mut driven.step_errors;
        let stop = CancellationToken::new();
        let ctx = Context::new(run.shared().clone(), stop.clone());
        let phase = |kind: &str, name: String, since: Instant| {
            run.shared().phase(kind, name, since.elapsed());
        };
        let prepared = Instant::now();
        for w in &workloads {
            if let Err(e) = w.clone().prepare(ctx.clone()).await {
                errors.push(format!("workload `{}`: {e}", w.name()));
                return driven;
            }
        }
        let names: Vec<&str> = workloads.iter().map(|w| w.name()).collect();
        phase("prepare", names.join(" "), prepared);
        let mut tasks = JoinSet::new();
        for w in &workloads {
            tasks.spawn(w.clone().run(ctx.clone()));
        }
        for o in &self.observers {
            tasks.spawn(o.clone().observe(ctx.clone()));
        }
        let t0 = Instant::now();
        let load = crate::usage::Meter::start();
        let steps_done = Arc::new(AtomicUsize::new(0));
        let progress = tokio::spawn(progress(
            run.shared().clone(),
            self.spec.steps.len(),
            steps_done.clone(),
        ));
        tokio::time::sleep(self.spec.warmup).await;
        phase("warmup", "warmup".into(), t0);
        let abort = Abort::default();
        let _listening = abort.on_interrupt();
        let watch = self
            .spec
            .abort
            .clone()
            .map(|spec| tokio::spawn(watch(run.shared().clone(), spec, abort.clone())));
        let steps = self.steps(run, &ctx, agents.as_deref(), t0, &steps_done);
        tokio::select! {
            step_errors = steps => errors.extend(step_errors),
            () = abort.requested() => {}
        }
        if let Some(w) = watch {
            w.abort();
        }
        if let Some(reason) = abort.reason() {
            errors.extend(self.stop_injecting(run, reason).await);
        }
        let settled = Instant::now();
        let name = match settle(&workloads, &ctx, self.spec.settle).await {
            Some(after) => format!(
                "settle: steady after {:.1} s of {}",
                after.as_secs_f64(),
                humantime::format_duration(self.spec.settle)
            ),
            None => "settle".into(),
        };
        phase("settle", name, settled);
        driven.load = load.finish();
        let stopped = Instant::now();
        stop.cancel();
        let panics = crate::tasks::join_all(&mut tasks).await;
        phase("stop", "workloads stopped".into(), stopped);
        progress.abort();
        driven.step_errors.extend(
            panics
                .into_iter()
                .map(|m| format!("a client, probe or observer task panicked: {m}")),
        );
        driven
    }

    /// Runs the steps in order from `t0`, the warmup's start; returns the error that ended
    /// them early, if one did.
    async fn steps(
        &self,
        run: &Run,
        ctx: &Context,
        agents: Option<&AgentsWorkload>,
        t0: Instant,
        steps_done: &AtomicUsize,
    ) -> Option<String> {
        for (i, step) in self.spec.steps.iter().enumerate() {
            let step_started = Instant::now();
            if let Some(at) = step.at {
                tokio::time::sleep_until((t0 + at).into()).await;
            }
            if let Some(after) = step.after {
                tokio::time::sleep(after).await;
            }
            let mut nodes = Vec::new();
            if let Some(fault) = &step.fault {
                tracing::info!("step {}: {}", i + 1, fault.name());
                match run
                    .shared()
                    .inject_aimed(fault.clone(), step.when.as_ref())
                    .await
                {
                    Ok(record) => nodes = record.nodes,
                    Err(e) => return Some(format!("step {}: {}: {e}", i + 1, fault.name())),
                }
            }
            if let Some(wait) = &step.wait {
                let nodes = if wait.nodes.is_empty() {
                    nodes
                } else {
                    wait.nodes.clone()
                };
                if let Err(e) = self.wait(run, ctx, wait, &nodes, agents).await {
                    return Some(format!("step {}: wait until {:?}: {e}", i + 1, wait.until));
                }
            }
            steps_done.store(i + 1, Ordering::Relaxed);
            let what = step.fault.as_ref().map_or("wait", |f| f.name());
            run.shared().phase(
                "step",
                format!("step {}: {what}", i + 1),
                step_started.elapsed(),
            );
        }
        None
    }

    /// After an abort: records it, heals what faults changed inside the nodes, resumes paused
    /// nodes and starts those a fault left down, so the install is as whole as hadrill can
    /// make it before the settle and the final read. Returns what could not be done.
    async fn stop_injecting(&self, run: &Run, reason: String) -> Vec<String> {
        tracing::warn!("aborting: {reason}");
        let shared = run.shared();
        shared.history.record(Event::Abort(AbortRecord {
            at: shared.clock.now(),
            reason,
        }));
        let mut errors = Vec::new();
        if let Err(e) = run.inject(Fault::Heal).await {
            errors.push(format!("abort: heal: {e}"));
        }
        for node in run.nodes() {
            let (paused, running) = match node.status().await {
                Ok(s) => (s.paused, s.running),
                Err(e) => {
                    errors.push(format!("abort: {}: {e}", node.name()));
                    continue;
                }
            };
            let spec = node.spec();
            let back = if paused {
                Some(Fault::resume([node.name()]))
            } else if !running && spec.autostart && !spec.once {
                Some(Fault::start([node.name()]))
            } else {
                None
            };
            if let Some(fault) = back
                && let Err(e) = run.inject(fault).await
            {
                errors.push(format!("abort: {}: {e}", node.name()));
            }
        }
        errors
    }

    async fn wait(
        &self,
        run: &Run,
        ctx: &Context,
        wait: &Wait,
        nodes: &[String],
        agents: Option<&AgentsWorkload>,
    ) -> Result<(), String> {
        match wait.until {
            Condition::AgentsConnected => {
                let (Some(agents), Some(spec)) = (agents, &self.spec.agents) else {
                    return Err("the scenario has no agents".into());
                };
                let deadline = Instant::now() + wait.timeout;
                loop {
                    let connected = agents.connected();
                    if connected >= spec.count {
                        return Ok(());
                    }
                    if Instant::now() > deadline {
                        return Err(format!(
                            "{connected} of {} agents connected after {:?}",
                            spec.count, wait.timeout
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
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
                finals::wait_all_analysed(ctx, &self.spec.final_read, wait.timeout).await
            }
        }
    }

    /// Every workload's final read (they record operations too), by workload, as
    /// `final.json` keeps them.
    async fn read_finals(&self, run: &Run, driven: &Driven) -> Finals {
        let ctx = Context::new(run.shared().clone(), CancellationToken::new());
        let mut finals = Finals::new();
        for w in &driven.workloads {
            let read = w.clone().final_read(ctx.clone()).await;
            if let Err(e) = &read {
                tracing::warn!("final read of workload `{}`: {e}", w.name());
            }
            finals.insert(w.name().to_string(), read);
        }
        finals
    }

    async fn results(
        &self,
        run: &Run,
        events: &[Event],
        finals: &Finals,
        step_errors: Vec<String>,
        started_at: String,
    ) -> Results {
        let evidence = Evidence {
            events,
            budgets: &self.spec.budgets,
            finals,
        };
        let custom = self
            .custom
            .iter()
            .filter(|c| c.applies(&evidence))
            .map(|c| CheckResult {
                custom: true,
                ..c.judge(&evidence)
            })
            .collect();
        let judged = judge(&self.spec, &evidence, step_errors, custom);
        Results {
            scenario: self.name.clone(),
            description: self.spec.description.clone(),
            topology: self.topology.name.clone(),
            run_id: run.id().to_string(),
            run_dir: run.dir().to_path_buf(),
            started_at,
            wall_seconds: 0.0,
            verdict: judged.verdict,
            error: None,
            step_errors: judged.step_errors,
            aborted: judged.aborted,
            checks: judged.checks,
            budgets: self.spec.budgets.clone(),
            faults: faults(events),
            operations: operation_counts(events),
            components: components(run).await,
            host_clocks: run.host_clocks().await,
            slots: None,
            clock_origin_unix_ms: run
                .clock()
                .wall_origin()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            git_commit: git_commit(&self.path),
            host: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_default(),
            workload: serde_json::json!({ "web": self.web(), "http": self.spec.http, "sql": self.spec.sql, "redis": self.spec.redis, "s3": self.spec.s3, "agents": self.spec.agents }),
            settings: self.topology.settings.clone(),
            finding: self
                .spec
                .variant(&self.topology.name)
                .and_then(|v| v.finding.clone()),
            seed: self.seed,
            scenario_file: Some(self.path.clone()),
            // A container's privileges; an existing host's are its own (its sudo rules).
            nodes: run
                .nodes()
                .iter()
                .filter(|n| n.host().is_none())
                .map(|n| {
                    let spec = n.spec();
                    let privileges = NodePrivileges {
                        image: spec.image.to_string(),
                        user: spec.user.clone(),
                        capabilities: spec.cap_add.clone(),
                        ports: spec
                            .ports
                            .iter()
                            .filter_map(|p| Some((*p, n.host_addr(*p)?.to_string())))
                            .collect(),
                    };
                    (n.name().to_string(), privileges)
                })
                .collect(),
            images: run
                .shared()
                .images
                .iter()
                .map(|(k, v)| (k.to_string(), format!("{} ({})", v.tag, v.id)))
                .collect(),
            phases: Vec::new(),
            harness: None,
        }
    }
}

/// What `drive` leaves for the final reads and the judge.
struct Driven {
    step_errors: Vec<String>,
    workloads: Vec<Arc<dyn Workload>>,
    /// The harness's own cost while the workloads ran.
    load: Option<HarnessUsage>,
}

/// The final reads of the system, by workload: the evidence besides the history, saved as
/// `final.json` so a run can be judged again without Docker.
pub type Finals = BTreeMap<String, Read>;

/// The checks of a run and the verdict they and the step errors give.
#[derive(Debug, Clone)]
pub struct Judged {
    pub checks: Vec<CheckResult>,
    /// The steps' errors, and an `expect_fail` naming a check that did not run.
    pub step_errors: Vec<String>,
    /// Why the run stopped injecting early, as its history records it.
    pub aborted: Option<String>,
    pub verdict: Verdict,
}

/// Judges a run from its evidence alone: the same function serves a live run and `hadrill
/// check` on a saved one, so both give the same verdicts. `custom`: the results of a drill's
/// own checks, appended to the built-in ones.
pub fn judge(
    spec: &ScenarioSpec,
    evidence: &Evidence<'_>,
    mut step_errors: Vec<String>,
    custom: Vec<CheckResult>,
) -> Judged {
    let mut checks: Vec<CheckResult> = plan(spec)
        .iter()
        .filter(|c| c.applies(evidence))
        .map(|c| c.judge(evidence))
        .collect();
    checks.extend(custom);
    for name in &spec.expect_fail {
        match checks.iter_mut().find(|c| &c.check == name) {
            Some(c) => c.expected_to_fail = true,
            None => step_errors.push(format!(
                "{EXPECT_FAIL_PROBLEM}no check `{name}` ran in this scenario"
            )),
        }
    }
    // A script that did not finish proves less than it says: never a pass.
    let aborted = hadrill_model::abort(evidence.events).map(|a| a.reason.clone());
    let verdict =
        if !step_errors.is_empty() || checks.iter().any(|c| c.effective() == Verdict::Fail) {
            Verdict::Fail
        } else if aborted.is_some() || checks.iter().any(|c| c.effective() == Verdict::Unknown) {
            Verdict::Unknown
        } else {
            Verdict::Pass
        };
    Judged {
        checks,
        step_errors,
        aborted,
        verdict,
    }
}

/// The settle after the last step: it lasts `cap`, or ends once every workload has said for
/// `SETTLED_CHECKS` running that the system is steady (`Workload::settled`), and not before
/// `hadrill_model::QUIET`. Returns when it ended early.
async fn settle(workloads: &[Arc<dyn Workload>], ctx: &Context, cap: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    let deadline = tokio::time::Instant::now() + cap;
    tokio::time::sleep(hadrill_model::QUIET.min(cap)).await;
    let steady = async {
        let mut steady_for = 0;
        loop {
            let asked = workloads.iter().map(|w| w.clone().settled(ctx.clone()));
            let all = futures_util::future::join_all(asked).await;
            steady_for = match all.iter().all(|s| *s) && !workloads.is_empty() {
                true => steady_for + 1,
                false => 0,
            };
            if steady_for >= SETTLED_CHECKS {
                return t0.elapsed();
            }
            tokio::time::sleep(SETTLED_EVERY).await;
        }
    };
    tokio::time::timeout_at(deadline, steady).await.ok()
}

/// How often the settle asks the workloads, and how many answers in a row must say steady (a
/// member flapping between two polls is not).
const SETTLED_EVERY: Duration = Duration::from_millis(250);
const SETTLED_CHECKS: usize = 3;

/// The checks a scenario runs, in order, decided by its workloads alone: the judge runs them
/// and load-time validation knows them (e.g. for `expect_fail`). Each workload brings its
/// own (the reference product's from its plug-in); the generic ones are told the workloads'
/// verbs.
fn plan(spec: &ScenarioSpec) -> Vec<Box<dyn Check>> {
    let web = spec.web();
    // The web probe measures availability when there is one, else `[http]`'s, else the routed
    // SQL probe (unless turned off), else a store's, else a code workload's: its probes alone
    // when another workload's would blur them.
    let stores_probe = |name: &str, hz: f64| (hz, Some(crate::workload::probe_client(name)));
    let probe = web
        .as_ref()
        .map(|w| (w.probe_hz, None))
        .or(spec
            .http
            .as_ref()
            .map(|h| (h.probe_hz, Some(crate::workload::http::PROBE.to_string()))))
        .or(spec
            .sql
            .as_ref()
            .filter(|s| s.probe_hz > 0.0)
            .map(|s| (s.probe_hz, None)))
        .or(spec
            .redis
            .as_ref()
            .map(|r| stores_probe(&r.name, r.probe_hz)))
        .or(spec.s3.as_ref().map(|s| stores_probe(&s.name, s.probe_hz)))
        .or(spec
            .code_workloads
            .iter()
            .filter_map(|w| w.probe_hz)
            .reduce(f64::max)
            .map(|hz| (hz, None)));
    let mut availability = probe.map(|(hz, probes_of)| checks::Availability {
        probe_period: Duration::from_secs_f64(1.0 / hz.max(1.0)),
        traffic: match (&web, &spec.http) {
            (Some(_), _) => reference::TRAFFIC,
            (None, Some(http)) => http_traffic(http),
            (None, None) => Traffic::NONE,
        },
        probes_of,
    });
    let mut plan: Vec<Box<dyn Check>> = Vec::new();
    if web.is_some() {
        plan.push(Box::new(reference::checks::WebContinuity));
        plan.extend(availability.take().map(|a| Box::new(a) as Box<dyn Check>));
        plan.push(Box::new(checks::UserRequests(reference::TRAFFIC)));
        plan.push(Box::new(checks::Drain(reference::TRAFFIC)));
        plan.push(Box::new(reference::checks::Sessions));
        plan.push(Box::new(reference::checks::Historian));
        if reference::license::drills(spec.steps.iter().filter_map(|s| s.fault.as_ref())) {
            plan.push(Box::new(reference::license::License));
        }
    }
    if let Some(http) = &spec.http {
        plan.push(Box::new(checks::writes::WriteContinuity {
            workload: http.name.clone(),
            kinds: http.write_kinds(),
        }));
        plan.extend(availability.take().map(|a| Box::new(a) as Box<dyn Check>));
        plan.push(Box::new(checks::UserRequests(http_traffic(http))));
        plan.push(Box::new(checks::Drain(http_traffic(http))));
    }
    if let Some(sql) = &spec.sql {
        if sql.clients > 0 {
            plan.push(Box::new(database::SqlContinuity));
        }
        plan.extend(availability.take().map(|a| Box::new(a) as Box<dyn Check>));
        let writes = std::iter::once(OpKind::INSERT)
            .chain(web.iter().flat_map(|_| reference::WRITES.iter().cloned()))
            .chain(spec.http.iter().flat_map(HttpSpec::write_kinds))
            .chain(
                spec.code_workloads
                    .iter()
                    .filter_map(|w| w.write_kind.clone().map(OpKind::named)),
            )
            .collect();
        plan.extend([
            Box::new(database::SinglePrimary {
                member_probe_hz: sql.member_probe_hz,
            }) as Box<dyn Check>,
            Box::new(database::Failover { writes }),
            Box::new(database::Replicas),
            Box::new(database::ReplicationClaim),
        ]);
    }
    let stores = spec
        .redis
        .iter()
        .map(|r| (&r.name, r.write_kind()))
        .chain(spec.s3.iter().map(|s| (&s.name, crate::workload::s3::PUT)));
    for (name, kind) in stores {
        plan.push(Box::new(checks::writes::WriteContinuity {
            workload: name.clone(),
            kinds: vec![kind.clone()],
        }));
        plan.push(Box::new(checks::reads::FreshReads {
            workload: name.clone(),
            writes: vec![kind],
            reads: crate::workload::keyed::READ,
        }));
    }
    for w in &spec.code_workloads {
        if let Some(kind) = &w.write_kind {
            plan.push(Box::new(checks::writes::WriteContinuity {
                workload: w.name.clone(),
                kinds: vec![OpKind::named(kind.clone())],
            }));
        }
    }
    plan.extend(availability.map(|a| Box::new(a) as Box<dyn Check>));
    plan.push(Box::new(checks::exercise::Exercise));
    if spec
        .steps
        .iter()
        .any(|s| s.fault.as_ref().and_then(Fault::marks).is_some())
    {
        plan.push(Box::new(checks::restore::Restore));
    }
    if let Some(upgrade) = &spec.upgrade {
        plan.push(Box::new(checks::upgrade::Upgrade {
            to: upgrade.to.clone(),
        }));
    }
    // Agents of the reference cluster's protocol or of a user's own: reconnection is the same.
    if spec.agents.is_some() || spec.code_workloads.iter().any(|w| w.agents) {
        plan.push(Box::new(checks::reconnection::Reconnection));
    }
    if let Some(agents) = &spec.agents {
        plan.extend([
            Box::new(cluster::AgentsContinuity) as Box<dyn Check>,
            Box::new(cluster::StatusTruth {
                expect_on: agents.expect_on.clone(),
            }),
            Box::new(cluster::Integrity {
                master: agents.master.clone(),
            }),
        ]);
    }
    plan
}

/// An `[http]` workload's users, as the request checks count them.
fn http_traffic(http: &HttpSpec) -> Traffic<'static> {
    Traffic {
        requests: Cow::Owned(http.requests()),
        login: http.login.as_ref().map(|_| crate::workload::http::LOGIN),
    }
}

/// The names of the checks a scenario runs (a name may come twice: several workloads have a
/// `continuity`; `replicas` is left out at run time when no replica is left to judge).
pub fn check_names(spec: &ScenarioSpec) -> Vec<String> {
    plan(spec).iter().map(|c| c.name().to_string()).collect()
}

/// Operations counted by kind and outcome, for the report.
fn operation_counts(events: &[Event]) -> BTreeMap<String, BTreeMap<String, usize>> {
    let word = |v: serde_json::Result<serde_json::Value>| {
        v.ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    };
    let mut counts: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for o in ops(events) {
        *counts
            .entry(word(serde_json::to_value(o.kind)))
            .or_default()
            .entry(word(serde_json::to_value(o.outcome)))
            .or_default() += 1;
    }
    counts
}

/// A fresh directory name for a run of `scenario` under `runs_dir`.
fn new_run_dir(runs_dir: &Path, scenario: &str) -> PathBuf {
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(['-', ':'], "");
    let id = uuid::Uuid::new_v4().simple().to_string();
    runs_dir.join(format!("{stamp}-{scenario}-{}", &id[..6]))
}

/// Saves what the judge needs besides the history: the final reads and the scenario as run.
fn write_evidence(dir: &Path, finals: &Finals, scenario_text: &str) -> Result<(), ScenarioError> {
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|source| ScenarioError::Write { path, source })
    };
    write(
        FINAL_FILE,
        &serde_json::to_vec_pretty(finals).expect("final reads serialise"),
    )?;
    write(SCENARIO_FILE, scenario_text.as_bytes())
}

/// How a step error about `expect_fail` begins: the judge makes it, so a re-check remakes it.
const EXPECT_FAIL_PROBLEM: &str = "expect_fail: ";

/// The saved history of a run.
pub const HISTORY_FILE: &str = "history.jsonl";
/// The saved final reads in a run directory.
pub const FINAL_FILE: &str = "final.json";
/// The scenario file as it was when the run started.
pub const SCENARIO_FILE: &str = "scenario.toml";
/// The results of a run.
pub const RESULTS_FILE: &str = "results.json";

/// Live progress while a scenario runs: the last fault and the operations so far, on a bar over
/// the steps at a terminal, else logged every 10 s so that CI logs stay short.
/// Requests the abort once the scenario's condition holds, judged from the history as it
/// grows.
async fn watch(shared: Arc<crate::shared::Shared>, spec: AbortSpec, abort: Abort) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        // Four times a second over a growing history: read in place, not copied.
        let now = shared.clock.now();
        if let Some(reason) = shared.history.read(|events| spec.reason(events, now)) {
            abort.request(reason);
            return;
        }
    }
}

async fn progress(shared: Arc<crate::shared::Shared>, steps: usize, done: Arc<AtomicUsize>) {
    let bar = crate::progress::Progress::bar("steps", steps);
    let every = if bar.shown() { 2 } else { 10 };
    let mut tick = tokio::time::interval(Duration::from_secs(every));
    loop {
        tick.tick().await;
        let events = shared.history.events();
        let mut counts = [0usize; 3];
        let mut last_fault = None;
        for e in &events {
            match e {
                Event::Op(o) => counts[o.outcome as usize] += 1,
                Event::Fault(f) => last_fault = Some(f),
                Event::Abort(_) => {}
            }
        }
        let fault = last_fault.map_or("none yet".to_string(), |f| {
            format!("#{} {} {}", f.id, f.fault.name(), f.nodes.join(","))
        });
        let done = done.load(Ordering::Relaxed);
        bar.set_position(done as u64);
        bar.status(&format!(
            "t={} steps {done}/{steps}, last fault {fault}; operations ok {} fail {} unknown {}",
            shared.clock.now(),
            counts[0],
            counts[1],
            counts[2]
        ));
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
    // Every hadrill image carries the same packages: ask any running node, all at once (with
    // this, the judging phase's median fell from 0.83 s to 0.58 s over the suite's 81 runs).
    let Some(node) = run
        .nodes()
        .into_iter()
        .find(|n| !n.spec().once && !n.ips().is_empty())
    else {
        return BTreeMap::new();
    };
    let asked = PROBES.iter().map(|(name, cmd)| {
        let node = &node;
        async move {
            let o = node.exec(&["sh", "-c", cmd]).await.ok()?;
            o.success()
                .then(|| (name.to_string(), o.output.trim().to_string()))
        }
    });
    futures_util::future::join_all(asked)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// The result of a scenario that could not run, kept in `dir` like any other.
pub fn errored_results(
    scenario: String,
    dir: &Path,
    started_at: String,
    error: &dyn miette::Diagnostic,
) -> Results {
    Results {
        scenario,
        run_dir: dir.to_path_buf(),
        started_at,
        verdict: Verdict::Error,
        error: Some(describe(error)),
        ..Results::default()
    }
}

/// Writes `results.json` into the run directory (created if the run never made it).
pub fn save_results(results: &Results) -> Result<(), ScenarioError> {
    let dir = &results.run_dir;
    let path = dir.join(RESULTS_FILE);
    std::fs::create_dir_all(dir)
        .and_then(|()| {
            // A run that never started has no history; the report still wants the file.
            let history = dir.join(HISTORY_FILE);
            if !history.exists() {
                std::fs::write(&history, "")?;
            }
            std::fs::write(
                &path,
                serde_json::to_vec_pretty(results).expect("results serialise"),
            )
        })
        .map_err(|source| ScenarioError::Write { path, source })
}

/// Reads a run directory's `results.json`.
pub fn load_results(dir: &Path) -> Result<Results, ScenarioError> {
    let path = dir.join(RESULTS_FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| ScenarioError::Read {
        path: path.clone(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| ScenarioError::Evidence {
        path,
        message: e.to_string(),
    })
}

/// A diagnostic as plain text (no colours: it goes into files and CI logs), with its source
/// line, label and help.
pub fn describe(error: &dyn miette::Diagnostic) -> String {
    let mut out = String::new();
    let handler =
        miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor());
    if handler.render_report(&mut out, error).is_err() {
        out = error.to_string();
    }
    out.trim_end().to_string()
}

/// The scenario a suite runs for `name`: on `topology` (as a variant) when one is given.
fn suite_name(name: &str, topology: Option<&str>) -> String {
    match topology {
        Some(t) => format!("{name}{VARIANT_SEPARATOR}{t}"),
        None => name.to_string(),
    }
}

/// How many of `hadrill run --jobs`'s slots a suite run of `name` takes: its topology's
/// weight; every slot ([`ALONE`]) when its outage budget is under a second; 1 when it does
/// not load (its run then says why).
pub fn weight(root: &Path, name: &str, topology: Option<&str>) -> u32 {
    Scenario::load(root, &suite_name(name, topology)).map_or(1, |s| {
        if s.spec
            .budgets
            .max_unavailability
            .is_some_and(|d| d < Duration::from_secs(1))
        {
            ALONE
        } else {
            s.topology.weight
        }
    })
}

/// The weight of a run that must have the machine to itself. A 20 Hz probe resolves an outage
/// to ±50 ms alone; two runs at once on 2 cores starved it (2026-12-04: ±160 and ±218 ms, and
/// 1.9 s and 4.2 s "unavailable" with no user request failing), so a 0 ms budget cannot be
/// judged beside another run.
pub const ALONE: u32 = u32::MAX;

/// Loads and runs one scenario of a suite, optionally on another topology. Whatever goes
/// wrong (a bad file, a node that does not start) becomes a result with verdict `error` and
/// its message, saved in a run directory like any other, so the suite carries on and the
/// sign-off page shows it.
pub async fn run_in_suite(
    root: &Path,
    name: &str,
    topology: Option<&str>,
    seed: Option<u64>,
    options: &RunOptions,
) -> Results {
    let started_at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let wall = Instant::now();
    let name = suite_name(name, topology);
    let loaded = Scenario::load(root, &name);
    let stem = Path::new(&name)
        .file_stem()
        .map_or_else(|| name.clone(), |s| s.to_string_lossy().into_owned());
    let (scenario, results) = match loaded {
        Ok(mut s) => {
            if let Some(seed) = seed {
                s.reseed(seed);
            }
            eprintln!(
                "== {} ({}): {}",
                s.name, s.topology.name, s.spec.description
            );
            let mut options = options.clone();
            let dir = new_run_dir(&options.runs_dir, &s.name);
            options.run_dir = Some(dir.clone());
            let results = s.run(&options).await;
            (Some(s), results.map_err(|e| (dir, e)))
        }
        Err(e) => (None, Err((new_run_dir(&options.runs_dir, &stem), e))),
    };
    match results {
        Ok(r) => r,
        Err((dir, e)) => {
            let mut r = errored_results(stem, &dir, started_at, &e);
            if let Some(s) = scenario {
                r.description = s.spec.description;
                r.topology = s.topology.name;
            }
            r.wall_seconds = wall.elapsed().as_secs_f64();
            if let Err(w) = save_results(&r) {
                tracing::error!("{w}");
            }
            r
        }
    }
}

/// The figures of a check that differ between two judgements, one line each.
fn figure_differences(
    check: &str,
    saved: &serde_json::Value,
    recomputed: &serde_json::Value,
) -> Vec<String> {
    let empty = serde_json::Map::new();
    let (a, b) = (
        saved.as_object().unwrap_or(&empty),
        recomputed.as_object().unwrap_or(&empty),
    );
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| {
            let show = |v: Option<&serde_json::Value>| {
                let text = v.map_or("absent".to_string(), ToString::to_string);
                match text.char_indices().nth(120) {
                    Some((i, _)) => format!("{}…", &text[..i]),
                    None => text,
                }
            };
            format!(
                "{check}.{k}: saved {}, recomputed {}",
                show(a.get(k)),
                show(b.get(k))
            )
        })
        .collect()
}

/// A saved run judged again from its evidence alone.
pub struct Recheck {
    pub saved: Results,
    /// The saved results with the checks and verdict recomputed.
    pub recomputed: Results,
    /// Where the two disagree (empty: the verdicts are reproduced).
    pub differences: Vec<String>,
    /// Checks from a drill's code, which the files cannot run again: kept as saved.
    pub kept: Vec<String>,
}

/// Recomputes every check of the run in `dir` from `history.jsonl`, `final.json` and
/// `scenario.toml`, with no Docker, and compares with its `results.json`.
pub fn recheck(dir: &Path) -> Result<Recheck, ScenarioError> {
    let saved = load_results(dir)?;
    if saved.verdict == Verdict::Error {
        // Nothing ran, so there is nothing to recompute.
        return Ok(Recheck {
            recomputed: saved.clone(),
            saved,
            differences: Vec::new(),
            kept: Vec::new(),
        });
    }
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path)
            .map(|text| (path.clone(), text))
            .map_err(|e| ScenarioError::Evidence {
                path,
                message: e.to_string(),
            })
    };
    let (path, text) = read(SCENARIO_FILE)?;
    let mut spec: ScenarioSpec = toml::from_str(&text).map_err(|e| {
        ScenarioError::Invalid(Invalid::at(
            &path,
            &text,
            e.span().unwrap_or(0..0),
            e.message().to_string(),
            None,
        ))
    })?;
    if let Some((_, topology)) = saved.scenario.rsplit_once(VARIANT_SEPARATOR) {
        spec.apply_variant(topology);
    }
    let (path, text) = read(FINAL_FILE)?;
    let finals: Finals = serde_json::from_str(&text).map_err(|e| ScenarioError::Evidence {
        path,
        message: e.to_string(),
    })?;
    let history = dir.join(HISTORY_FILE);
    let events = History::load(&history).map_err(|e| ScenarioError::Evidence {
        path: history,
        message: e.to_string(),
    })?;
    // The steps' own errors are evidence of the run, not something to recompute.
    let step_errors = saved
        .step_errors
        .iter()
        .filter(|e| !e.starts_with(EXPECT_FAIL_PROBLEM))
        .cloned()
        .collect();
    // A drill's own checks are code that is not in the run directory: they keep their saved
    // verdicts, and the recheck says which.
    let custom: Vec<CheckResult> = saved.checks.iter().filter(|c| c.custom).cloned().collect();
    let kept = custom.iter().map(|c| c.check.clone()).collect();
    let evidence = Evidence {
        events: &events,
        budgets: &spec.budgets,
        finals: &finals,
    };
    let judged = judge(&spec, &evidence, step_errors, custom);
    let mut differences = Vec::new();
    if judged.verdict != saved.verdict {
        differences.push(format!(
            "verdict: saved {}, recomputed {}",
            verdict_word(saved.verdict),
            verdict_word(judged.verdict)
        ));
    }
    let names = |cs: &[CheckResult]| cs.iter().map(|c| c.check.clone()).collect::<Vec<_>>();
    if names(&judged.checks) != names(&saved.checks) {
        differences.push(format!(
            "checks: saved {:?}, recomputed {:?}",
            names(&saved.checks),
            names(&judged.checks)
        ));
    }
    for (a, b) in saved.checks.iter().zip(&judged.checks) {
        if a.verdict != b.verdict || a.summary != b.summary {
            differences.push(format!(
                "{}: saved {} ({}), recomputed {} ({})",
                a.check,
                verdict_word(a.verdict),
                a.summary,
                verdict_word(b.verdict),
                b.summary
            ));
        }
        differences.extend(figure_differences(&a.check, &a.figures, &b.figures));
    }
    let recomputed = Results {
        verdict: judged.verdict,
        checks: judged.checks,
        step_errors: judged.step_errors,
        ..saved.clone()
    };
    Ok(Recheck {
        saved,
        recomputed,
        differences,
        kept,
    })
}
