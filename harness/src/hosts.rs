//! A run over an install that already runs on its own hosts: hadrill starts nothing, reaches
//! each host over SSH, checks what the planned faults need, measures each host's clock against
//! the controller's, and at the end puts back what it changed and fetches the logs.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::future::join_all;
use serde::{Deserialize, Serialize};

use crate::node::{BackendError, Node};
use crate::shared::{Shared, log_path};

/// One host's clock against the controller's, as measured over SSH.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClockOffset {
    /// The host's wall clock minus the controller's, in milliseconds.
    pub offset_ms: f64,
    /// Half the round trip of the best sample: the offset is known to within this.
    pub within_ms: f64,
}

/// What a run learnt about its hosts: each one's clock at the start and at the end.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostsReport {
    pub start: BTreeMap<String, ClockOffset>,
    pub end: BTreeMap<String, ClockOffset>,
}

/// The file a run of hosts writes it to, in its run directory.
pub const REPORT_FILE: &str = "hosts.json";

/// How many round trips an offset is measured from: the one with the shortest wins.
const SAMPLES: usize = 5;
/// The figures' resolution: offsets that move by more than this during a run are reported.
pub const RESOLUTION_MS: f64 = 100.0;

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// The host's clock offset, bracketed: the host's reading is taken between two of ours, so
/// it lies within half the round trip of their midpoint.
pub async fn clock_offset(n: &Node) -> Result<ClockOffset, BackendError> {
    let mut best: Option<ClockOffset> = None;
    for _ in 0..SAMPLES {
        let before = now_s();
        let out = n.exec(&["date", "+%s.%N"]).await?;
        let after = now_s();
        let Ok(theirs) = out.output.trim().parse::<f64>() else {
            continue;
        };
        let sample = ClockOffset {
            offset_ms: (theirs - (before + after) / 2.0) * 1000.0,
            within_ms: (after - before) * 1000.0 / 2.0,
        };
        if best.is_none_or(|b| sample.within_ms < b.within_ms) {
            best = Some(sample);
        }
    }
    Ok(best.unwrap_or(ClockOffset {
        offset_ms: f64::NAN,
        within_ms: f64::INFINITY,
    }))
}

/// Every host's clock offset, measured concurrently.
pub async fn clock_offsets(nodes: &[Node]) -> Result<BTreeMap<String, ClockOffset>, BackendError> {
    let measured = join_all(nodes.iter().map(clock_offset)).await;
    nodes
        .iter()
        .zip(measured)
        .map(|(n, m)| Ok((n.name().to_string(), m?)))
        .collect()
}

/// Lines warning of hosts whose clock moved by more than the figures' resolution during the
/// run, or is off by more than that from the controller's.
pub fn clock_warnings(r: &HostsReport) -> Vec<String> {
    let mut out = Vec::new();
    for (host, start) in &r.start {
        if start.offset_ms.abs() > RESOLUTION_MS {
            out.push(format!(
                "{host}: clock {:+.1} ms from the controller's at the start (± {:.1} ms); the history stays on the controller's clock",
                start.offset_ms, start.within_ms
            ));
        }
        if let Some(end) = r.end.get(host) {
            let drift = end.offset_ms - start.offset_ms;
            if drift.abs() > RESOLUTION_MS {
                out.push(format!(
                    "{host}: clock drifted {drift:+.1} ms during the run (more than the figures' {RESOLUTION_MS} ms resolution)"
                ));
            }
        }
    }
    out
}

pub(crate) fn save_report(dir: &Path, r: &HostsReport) {
    match serde_json::to_string_pretty(r) {
        Ok(text) => {
            if let Err(e) = std::fs::write(dir.join(REPORT_FILE), text) {
                tracing::warn!("cannot save {REPORT_FILE}: {e}");
            }
        }
        Err(e) => tracing::warn!("cannot save {REPORT_FILE}: {e}"),
    }
}

/// How many lines of a host's journal and of each named log file are kept.
const LOG_LINES: usize = 20_000;

/// Copies each host's service journal and named log files into the run directory.
pub(crate) async fn save_logs(shared: &Shared, nodes: &[Node]) {
    join_all(nodes.iter().map(|n| async move {
        let text = shared.redact(&n.log_tail(LOG_LINES).await);
        let path = log_path(&shared.dir, n.name());
        if let Err(e) = std::fs::write(&path, text) {
            tracing::warn!("cannot save log {}: {e}", path.display());
        }
    }))
    .await;
}

/// What a host must have for the faults a run plans: a command, found on its PATH or
/// allowed by sudo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    pub command: Vec<String>,
    pub root: bool,
    /// Why: the fault that needs it.
    pub for_fault: String,
}

/// Checks each need on the host: the tool is installed, and a root command is allowed by
/// `sudo -n -l` (no password). Returns one line per missing thing.
pub async fn check_needs(n: &Node, needs: &[Need]) -> Result<Vec<String>, BackendError> {
    let mut missing = Vec::new();
    let user = n.host().map(|h| h.ssh.user.clone()).unwrap_or_default();
    for need in needs {
        let tool = need.command[0].as_str();
        let found = n
            .exec(&["sh", "-c", "command -v \"$1\"", "sh", tool])
            .await?;
        let sbin = n
            .exec(&["test", "-x", &format!("/usr/sbin/{tool}")])
            .await?
            .success()
            || n.exec(&["test", "-x", &format!("/sbin/{tool}")])
                .await?
                .success();
        if !found.success() && !sbin {
            missing.push(format!(
                "{}: `{tool}` is not installed (needed for {})",
                n.name(),
                need.for_fault
            ));
            continue;
        }
        if need.root && user != "root" {
            let mut argv = vec!["sudo", "-n", "-l", "--"];
            argv.extend(need.command.iter().map(String::as_str));
            if !n.exec(&argv).await?.success() {
                missing.push(format!(
                    "{}: sudo does not let {user} run `{}` without a password (needed for {})",
                    n.name(),
                    need.command.join(" "),
                    need.for_fault
                ));
            }
        }
    }
    Ok(missing)
}

/// One line of `hadrill up`'s report on a host's clock.
pub fn clock_line(name: &str, c: &ClockOffset) -> String {
    format!(
        "{name}: clock {:+.1} ms from this machine's (± {:.1} ms)",
        c.offset_ms, c.within_ms
    )
}
