//! Verdicts, check results and the budgets they are judged against.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::Event;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
    /// The evidence cannot decide: never counted as a pass.
    Unknown,
    /// A scenario that could not run (a bad file, a node that did not start): no check ran.
    /// Checks themselves never say this.
    Error,
}

/// One check's verdict and its evidence.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckResult {
    pub check: String,
    pub verdict: Verdict,
    /// One line: what was measured against what was allowed.
    pub summary: String,
    pub figures: serde_json::Value,
    /// The scenario is a negative control that exists to see this check fail (e.g. a split
    /// brain without the ping node); `verdict` is then what the check found, and the run
    /// passes only if it is `fail`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expected_to_fail: bool,
    /// A check written in a user's code (`Drill::check`): `hadrill check` cannot run it again
    /// from the run's files, so it keeps its saved verdict and says so.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub custom: bool,
}

/// A check: hadrill's own (availability, continuity, single primary, failover, …) and those a
/// user adds to a drill in their own crate. It judges from the evidence alone, never from a
/// live system, so its verdict follows from what was recorded and a saved run can be judged
/// again; what cannot be decided is `Verdict::Unknown`.
pub trait Check: Send + Sync {
    /// Its name in the report; unique within the run (the continuity checks of several
    /// workloads share the name `continuity`).
    fn name(&self) -> &str;

    /// Whether there is anything for it to judge in this run (e.g. the replica check when the
    /// script left no replica running); a check that does not apply is left out, not passed.
    fn applies(&self, evidence: &Evidence<'_>) -> bool {
        let _ = evidence;
        true
    }

    fn judge(&self, evidence: &Evidence<'_>) -> CheckResult;
}

/// What a final read found, as saved with the run: the value, or why it could not be read.
pub type Read = Result<serde_json::Value, String>;

/// What every check judges from: the run's history, the scenario's budgets, and what each
/// workload's final read found after the run (by workload: `web`, `sql`, `agents`, or a code
/// workload's name).
#[derive(Debug, Clone, Copy)]
pub struct Evidence<'a> {
    pub events: &'a [Event],
    pub budgets: &'a Budgets,
    pub finals: &'a BTreeMap<String, Read>,
}

impl Evidence<'_> {
    /// The final read of `workload` as the type it was saved from; `Err`: why there is none
    /// (not read, failed, or not of that shape), to be reported as `unknown`.
    pub fn final_read<T: DeserializeOwned>(&self, workload: &str) -> Result<T, String> {
        match self.finals.get(workload) {
            None => Err(format!(
                "the final read of {workload} is missing, so nothing can be judged"
            )),
            Some(Err(why)) => Err(format!("the final read of {workload} failed: {why}")),
            Some(Ok(value)) => T::deserialize(value)
                .map_err(|e| format!("the final read of {workload} is damaged: {e}")),
        }
    }
}

impl CheckResult {
    /// A verdict, the one line that says what was measured against what was allowed, and the
    /// figures behind it.
    pub fn new(
        check: &str,
        verdict: Verdict,
        summary: String,
        figures: serde_json::Value,
    ) -> CheckResult {
        CheckResult {
            check: check.into(),
            verdict,
            summary,
            figures,
            expected_to_fail: false,
            custom: false,
        }
    }

    /// A check that had nothing to judge from, and says why.
    pub fn unknown(check: &str, why: String) -> CheckResult {
        CheckResult::new(check, Verdict::Unknown, why, serde_json::json!({}))
    }

    /// The verdict this check contributes to its run.
    pub fn effective(&self) -> Verdict {
        match (self.expected_to_fail, self.verdict) {
            (false, v) => v,
            (true, Verdict::Fail) => Verdict::Pass,
            (true, Verdict::Pass) => Verdict::Fail,
            (true, v) => v,
        }
    }
}

/// How many user requests may end a way: a count (`40`), or a fraction of the requests sent
/// from the first fault on (`"5%"`), so that a product that fails slowly (fewer attempts,
/// fewer failures) is held to the same share as one that fails fast.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RequestBudget {
    Count(u64),
    Fraction(f64),
}

impl Default for RequestBudget {
    fn default() -> Self {
        RequestBudget::Count(0)
    }
}

impl RequestBudget {
    /// How many it allows when `exposed` requests were sent from the first fault on.
    pub fn allows(self, exposed: u64) -> u64 {
        match self {
            RequestBudget::Count(n) => n,
            RequestBudget::Fraction(f) => (f * exposed as f64).floor() as u64,
        }
    }
}

impl std::fmt::Display for RequestBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestBudget::Count(n) => write!(f, "{n}"),
            RequestBudget::Fraction(x) => write!(f, "{}%", x * 100.0),
        }
    }
}

impl Serialize for RequestBudget {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            RequestBudget::Count(n) => s.serialize_u64(*n),
            RequestBudget::Fraction(_) => s.serialize_str(&self.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for RequestBudget {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Count(u64),
            Percent(String),
        }
        let bad = |s: &str| {
            serde::de::Error::custom(format!(
                "`{s}` is not a request budget: a count (`40`) or a share of the requests from the first fault on (`\"5%\"`, 0 to 100)"
            ))
        };
        match Raw::deserialize(d)? {
            Raw::Count(n) => Ok(RequestBudget::Count(n)),
            Raw::Percent(s) => match s.trim().strip_suffix('%').map(|p| p.trim().parse::<f64>()) {
                Some(Ok(p)) if (0.0..=100.0).contains(&p) => Ok(RequestBudget::Fraction(p / 100.0)),
                _ => Err(bad(&s)),
            },
        }
    }
}

/// The thresholds a scenario sets (`[budgets]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budgets {
    /// Longest unavailability after any fault.
    #[serde(
        default,
        with = "humantime_serde::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_unavailability: Option<Duration>,
    /// Web users' requests that ended `fail` (default 0), not counting the rejections the
    /// `user-requests` check names as expected (sessions refused after a secret rotation).
    #[serde(default)]
    pub max_failed_requests: RequestBudget,
    /// Web users' requests that ended `unknown`: they may or may not have taken effect
    /// (default 0).
    #[serde(default)]
    pub max_unknown_requests: RequestBudget,
    /// Acknowledged writes (uploads, commits) lost (default 0); in a database's asynchronous
    /// mode this is the RPO allowed.
    #[serde(default)]
    pub max_lost_writes: u64,
    /// From a fault that takes the primary away to the first write acknowledged through the
    /// routed endpoint.
    #[serde(
        default,
        with = "humantime_serde::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_failover: Option<Duration>,
    /// From a fault to the last of its dropped agents reconnecting.
    #[serde(
        default,
        with = "humantime_serde::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_reconnect: Option<Duration>,
    /// From a heal, a start or an operator command to every worker holding the master's files.
    #[serde(
        default,
        with = "humantime_serde::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_sync: Option<Duration>,
    /// From a fault to the last user request its targets answered: how long the load balancer
    /// kept sending users to a server the fault cut off (e.g. from its database).
    #[serde(
        default,
        with = "humantime_serde::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_drain: Option<Duration>,
    /// How old the restored backup may be when the data is destroyed: the recovery point
    /// objective of a backup and restore drill.
    #[serde(
        default,
        with = "humantime_serde::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_rpo: Option<Duration>,
    /// From the disaster to the end of the restore: the drill's restore time.
    #[serde(
        default,
        with = "humantime_serde::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_restore: Option<Duration>,
}
