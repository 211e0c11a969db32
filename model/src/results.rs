//! What a run of a scenario concludes, as `results.json` holds it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{Budgets, CheckResult, FaultRecord, Verdict};

/// The outcome of one run of a scenario, as written to `results.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Results {
    pub scenario: String,
    pub description: String,
    pub topology: String,
    pub run_id: String,
    pub run_dir: PathBuf,
    pub started_at: String,
    pub wall_seconds: f64,
    pub verdict: Verdict,
    /// Why the scenario could not run (verdict `error`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Steps that could not be carried out (a fault refused, a wait timed out).
    pub step_errors: Vec<String>,
    /// Why the run stopped injecting before its script ended: it cannot pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted: Option<String>,
    pub checks: Vec<CheckResult>,
    pub budgets: Budgets,
    pub faults: Vec<FaultRecord>,
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
    pub settings: BTreeMap<String, String>,
    /// What the evidence showed on this topology and why, as the scenario's variant states it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finding: Option<String>,
    /// The seed a random nemesis drew the faults from: `hadrill run --seed N` replays them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// The scenario file the run was loaded from (a drill built in code names its own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scenario_file: Option<PathBuf>,
    /// Each node's privileges as run: image, user, capabilities, published ports.
    pub nodes: BTreeMap<String, NodePrivileges>,
    /// Where the run's wall time went, phase by phase, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<Phase>,
    /// What the harness itself used during the run, to show it was not the bottleneck.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harness: Option<HarnessUsage>,
    /// For existing hosts: each host's wall clock against the controller's, at the start and
    /// the end of the run. The history is on the controller's clock whatever they say.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub host_clocks: BTreeMap<String, HostClock>,
    /// The run's share of a `hadrill run` suite running several scenarios at once (`None`: not
    /// recorded, e.g. a run of the test suite; the floor then counts its timeline whole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<Slots>,
}

/// A run held `took` of its suite's `of` slots: one slot of two beside another run, or every
/// slot when it needs the machine to itself. What the suite's floor is reckoned from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slots {
    pub took: u32,
    pub of: u32,
}

/// A host's clock against the controller's, measured over SSH at a run's start and end.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HostClock {
    pub start: ClockReading,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<ClockReading>,
}

/// One measurement of a host's clock: its wall clock minus the controller's, known to within
/// `within_ms` (half the round trip the reading was bracketed by).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClockReading {
    pub offset_ms: f64,
    pub within_ms: f64,
}

/// The figures' resolution: a host clock off, or drifting, by more is warned about.
pub const CLOCK_RESOLUTION_MS: f64 = 100.0;

impl HostClock {
    /// What the report must warn of: a clock off by more than the figures' resolution, or one
    /// that drifted by more during the run.
    pub fn warning(&self) -> Option<String> {
        let drift = self.end.map(|e| e.offset_ms - self.start.offset_ms);
        match drift {
            Some(d) if d.abs() > CLOCK_RESOLUTION_MS => Some(format!(
                "drifted {d:+.1} ms during the run, more than the figures' {CLOCK_RESOLUTION_MS} ms resolution"
            )),
            _ if self.start.offset_ms.abs() > CLOCK_RESOLUTION_MS => Some(format!(
                "{:+.1} ms from the controller's clock: the product's own timestamps on this host are off by that much; the history stays on the controller's clock",
                self.start.offset_ms
            )),
            _ => None,
        }
    }
}

/// The harness process's own cost over a run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HarnessUsage {
    /// CPU time (user + system) the harness used during the run.
    pub cpu_seconds: f64,
    /// That CPU time over the run's wall time: 1.0 is one core busy throughout.
    pub cores: f64,
    /// The harness's peak resident memory (over the process's life so far).
    pub peak_rss_mib: f64,
    /// Its CPU while the workloads ran (warmup to the end of settle), as a share of one core:
    /// the cost of driving and recording the load itself, without the idle waits for nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_cores: Option<f64>,
}

/// One phase of a run and its wall time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    /// What kind of phase: `images`, `topology`, `prepare`, `warmup`, `step`, `settle`,
    /// `stop`, `final-read`, `judging`, `teardown` or `rendering` (the pages, written by
    /// `hadrill run` after the run); the suite's breakdown sums by it.
    pub kind: String,
    /// Which one, e.g. `wave 2/3: app1 app2` or `step 1: kill`.
    pub name: String,
    pub seconds: f64,
}

/// What a node could do and where it could be reached, for the report's least-privilege table.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NodePrivileges {
    pub image: String,
    /// The user it runs as, when the topology names one (else the image's).
    pub user: Option<String>,
    /// Capabilities added to the engine's default set (no container is privileged).
    pub capabilities: Vec<String>,
    /// Container port → the loopback address it is published on, at the end of the run.
    pub ports: BTreeMap<u16, String>,
}

impl Default for Results {
    fn default() -> Self {
        Results {
            scenario: String::new(),
            description: String::new(),
            topology: String::new(),
            run_id: String::new(),
            run_dir: PathBuf::new(),
            started_at: String::new(),
            wall_seconds: 0.0,
            verdict: Verdict::Unknown,
            error: None,
            step_errors: Vec::new(),
            aborted: None,
            checks: Vec::new(),
            budgets: Budgets::default(),
            faults: Vec::new(),
            operations: BTreeMap::new(),
            components: BTreeMap::new(),
            images: BTreeMap::new(),
            clock_origin_unix_ms: 0,
            git_commit: None,
            host: String::new(),
            workload: serde_json::Value::Null,
            settings: BTreeMap::new(),
            finding: None,
            seed: None,
            scenario_file: None,
            nodes: BTreeMap::new(),
            phases: Vec::new(),
            harness: None,
            host_clocks: BTreeMap::new(),
            slots: None,
        }
    }
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
        if let Some(seed) = self.seed {
            s.push_str(&format!(
                "  {:<20} {:<8} faults drawn from seed {seed}: `--seed {seed}` replays them\n",
                "nemesis", ""
            ));
        }
        if let Some(e) = &self.error {
            for line in e.lines() {
                s.push_str(&format!("  {line}\n"));
            }
        }
        for e in &self.step_errors {
            s.push_str(&format!("  {:<20} {:<8} {e}\n", "steps", "FAIL"));
        }
        if let Some(reason) = &self.aborted {
            s.push_str(&format!("  {:<20} {:<8} {reason}\n", "aborted", "UNKNOWN"));
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
        Verdict::Error => "ERROR",
    }
}
