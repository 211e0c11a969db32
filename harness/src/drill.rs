//! Drills written in Rust, in a user's own crate: the same scenario a TOML file declares,
//! built in code and run the same way, with the same run directory and evidence.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use hadrill::{Budgets, Drill, Fault, RunOptions, SqlSpec, Step, Verdict, project_root};
//! let results = Drill::new("my-kill-primary", "db-ha")
//!     .describe("the primary is killed under SQL load")
//!     .sql(SqlSpec::default())
//!     .step(Step::at(Duration::from_secs(5)).fault(Fault::kill(["@primary"])))
//!     .budgets(Budgets { max_failover: Some(Duration::from_secs(30)), ..Budgets::default() })
//!     .run(&RunOptions::new(project_root()))
//!     .await?;
//! assert_eq!(results.verdict, Verdict::Pass, "{}", results.summary());
//! # Ok(()) }
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use crate::reference::agents::AgentsSpec;
use crate::reference::finals::ProductRead;
use crate::reference::web::WorkloadSpec;
use crate::run::RunOptions;
use crate::scenario::{
    AbortSpec, CodeWorkload, NemesisSpec, Results, Scenario, ScenarioError, ScenarioSpec, Step,
    check_names,
};
use crate::workload::sql::SqlSpec;
use crate::workload::{Observer, Workload};
use hadrill_model::{Budgets, Check};

/// A scenario built in code. Its checks follow from its workloads and budgets exactly as a
/// scenario file's do; `run` writes the same `results.json`, `history.jsonl` and pages.
#[derive(Clone)]
pub struct Drill {
    name: String,
    spec: ScenarioSpec,
    checks: Vec<Arc<dyn Check>>,
    workloads: Vec<Arc<dyn Workload>>,
    observers: Vec<Arc<dyn Observer>>,
}

impl Drill {
    /// A drill called `name` (its run directory and report row) on `topology`: a name under
    /// the project's `topologies/`, or a path to a topology file anywhere.
    pub fn new(name: impl Into<String>, topology: impl Into<String>) -> Drill {
        let spec = ScenarioSpec {
            http: None,
            upgrade: None,
            description: String::new(),
            topology: Spanned::new(0..0, topology.into()),
            workload: None,
            sql: None,
            redis: None,
            s3: None,
            agents: None,
            code_workloads: Vec::new(),
            observers: Vec::new(),
            warmup: crate::scenario::default_warmup(),
            settle: crate::scenario::default_settle(),
            steps: Vec::new(),
            nemesis: None,
            abort: None,
            budgets: Budgets::default(),
            final_read: ProductRead::default(),
            expect_fail: Vec::new(),
            variants: Vec::new(),
        };
        Drill {
            name: name.into(),
            spec,
            checks: Vec::new(),
            workloads: Vec::new(),
            observers: Vec::new(),
        }
    }

    /// What the drill shows, for the report.
    pub fn describe(mut self, description: impl Into<String>) -> Drill {
        self.spec.description = description.into();
        self
    }

    /// The web product's users and probe (`[workload]`).
    pub fn web(mut self, workload: WorkloadSpec) -> Drill {
        self.spec.workload = Some(workload);
        self
    }

    /// SQL clients, write probes and the cluster observer (`[sql]`).
    pub fn sql(mut self, sql: SqlSpec) -> Drill {
        self.spec.sql = Some(sql);
        self
    }

    /// Simulated agents of a master/worker cluster (`[agents]`).
    pub fn agents(mut self, agents: AgentsSpec) -> Drill {
        self.spec.agents = Some(agents);
        self
    }

    /// A workload of your own: it runs beside any built-in one from the warmup to the end of
    /// the settle; with a `write_kind` its acknowledged writes are held against its final read
    /// by the continuity check, with a `probe_hz` its probes decide availability, and with
    /// `agents` the reconnection check judges its agents.
    pub fn workload(mut self, workload: impl Workload) -> Drill {
        self.spec.code_workloads.push(CodeWorkload {
            name: workload.name().to_string(),
            probe_hz: workload.probe_hz(),
            write_kind: workload.write_kind().map(|k| k.to_string()),
            agents: workload.agents(),
        });
        self.workloads.push(Arc::new(workload));
        self
    }

    /// An observer of your own: it records facts (a member's role, the leader) from the
    /// warmup to the end of the settle, for the checks and for `@primary`/`@standby`.
    pub fn observer(mut self, observer: impl Observer) -> Drill {
        self.spec.observers.push(observer.name().to_string());
        self.observers.push(Arc::new(observer));
        self
    }

    /// Load before the first step and after the last.
    pub fn warmup(mut self, warmup: Duration) -> Drill {
        self.spec.warmup = warmup;
        self
    }

    pub fn settle(mut self, settle: Duration) -> Drill {
        self.spec.settle = settle;
        self
    }

    /// Stop injecting once the probe has failed this long with no success in between.
    pub fn abort_when_unavailable_for(mut self, unavailable_for: Duration) -> Drill {
        self.spec.abort = Some(AbortSpec { unavailable_for });
        self
    }

    pub fn step(mut self, step: Step) -> Drill {
        self.spec.steps.push(step);
        self
    }

    /// Random faults drawn from a seed, in place of steps.
    pub fn nemesis(mut self, nemesis: NemesisSpec) -> Drill {
        self.spec.nemesis = Some(nemesis);
        self
    }

    pub fn budgets(mut self, budgets: Budgets) -> Drill {
        self.spec.budgets = budgets;
        self
    }

    pub fn final_read(mut self, final_read: ProductRead) -> Drill {
        self.spec.final_read = final_read;
        self
    }

    /// A check of your own, judged from the history and the budgets after the built-in ones.
    /// Its result is marked `custom` in `results.json`: `hadrill check` cannot run your code
    /// again, so it keeps that verdict as saved and says so.
    pub fn check(mut self, check: impl Check + 'static) -> Drill {
        self.checks.push(Arc::new(check));
        self
    }

    /// A check this drill exists to see fail (a negative control).
    pub fn expect_fail(mut self, check: impl Into<String>) -> Drill {
        self.spec.expect_fail.push(check.into());
        self
    }

    /// The drill as scenario-file text: what its run keeps as `scenario.toml`.
    pub fn to_toml(&self) -> Result<String, ScenarioError> {
        toml::to_string(&self.spec).map_err(|e| ScenarioError::Serialise {
            drill: self.name.clone(),
            message: e.to_string(),
        })
    }

    /// Validates the drill as a scenario file is validated (the same errors, pointing into
    /// its text) and loads its topology, looked up under `root`.
    pub fn scenario(&self, root: &Path) -> Result<Scenario, ScenarioError> {
        let mut scenario = Scenario::parse(root, self.file(), self.to_toml()?, None)?;
        let builtin = check_names(&scenario.spec);
        let mut seen = BTreeSet::new();
        for c in &self.checks {
            let clash = if builtin.iter().any(|b| b == c.name()) {
                Some("is a built-in check's name")
            } else if !seen.insert(c.name()) {
                Some("is given to two checks")
            } else {
                None
            };
            if let Some(why) = clash {
                return Err(ScenarioError::CheckName {
                    drill: self.name.clone(),
                    message: format!("check name `{}` {why}", c.name()),
                    builtin: builtin.join(", "),
                });
            }
        }
        scenario.custom = self.checks.clone();
        scenario.workloads = self.workloads.clone();
        scenario.observers = self.observers.clone();
        Ok(scenario)
    }

    /// Starts the topology, drives the drill, judges it, writes the run directory with its
    /// HTML page (`index.html`) and removes everything: `hadrill run` for a drill.
    pub async fn run(self, options: &RunOptions) -> Result<Results, ScenarioError> {
        let results = self.scenario(&options.root)?.run(options).await?;
        // The verdict is saved already: a page that cannot be written is worth a warning, not
        // the loss of the results.
        match hadrill_reports::render_run(&results.run_dir) {
            Ok(page) => tracing::info!("report: {}", page.display()),
            Err(e) => tracing::warn!("cannot write the run's page: {e}"),
        }
        Ok(results)
    }

    /// Names the drill in errors and gives it its name, as a file name does a scenario's.
    fn file(&self) -> PathBuf {
        PathBuf::from(format!("{}.toml", self.name))
    }
}
