//! A run over an install that already runs on its own hosts: hadrill starts nothing, reaches
//! each host over SSH, checks what the planned faults need, measures each host's clock against
//! the controller's, and at the end puts back what it changed and fetches the logs.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::future::join_all;

use crate::node::{BackendError, Node};
use crate::run::{Run, RunError};
use hadrill_model::{ClockReading, Fault};

/// How many round trips an offset is measured from: the one with the shortest wins.
const SAMPLES: usize = 5;

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// The host's clock offset, bracketed: the host's reading is taken between two of ours, so
/// it lies within half the round trip of their midpoint. None when the host never gave a
/// reading (`date` without `%N`).
pub async fn clock_offset(n: &Node) -> Result<Option<ClockReading>, BackendError> {
    let mut best: Option<ClockReading> = None;
    for _ in 0..SAMPLES {
        let before = now_s();
        let out = n.exec(&["date", "+%s.%N"]).await?;
        let after = now_s();
        let Ok(theirs) = out.output.trim().parse::<f64>() else {
            continue;
        };
        let sample = ClockReading {
            offset_ms: (theirs - (before + after) / 2.0) * 1000.0,
            within_ms: (after - before) * 1000.0 / 2.0,
        };
        if best.is_none_or(|b| sample.within_ms < b.within_ms) {
            best = Some(sample);
        }
    }
    Ok(best)
}

/// Every host's clock offset, measured concurrently; a host that gives none is warned about
/// and left out.
pub async fn clock_offsets(nodes: &[Node]) -> Result<BTreeMap<String, ClockReading>, BackendError> {
    let measured = join_all(nodes.iter().map(clock_offset)).await;
    let mut out = BTreeMap::new();
    for (n, m) in nodes.iter().zip(measured) {
        match m? {
            Some(c) => {
                out.insert(n.name().to_string(), c);
            }
            None => tracing::warn!(
                "{}: `date +%s.%N` gave no time: its clock is not measured",
                n.name()
            ),
        }
    }
    Ok(out)
}

/// Before a run of hosts injects anything: every command its faults would run (`plan`) must
/// be installed on its host, and each root one allowed by sudo without a password. A fault
/// that cannot run on hosts at all is refused too. Nothing is changed.
pub async fn preflight(run: &Run, faults: &[Fault]) -> Result<(), RunError> {
    let mut planned = Vec::new();
    let mut problems = Vec::new();
    for f in faults {
        match crate::faults::plan(f, run.topology()) {
            Ok(p) => planned.extend(p),
            Err(e) => problems.push(e),
        }
    }
    let needs = crate::faults::needs(&planned);
    let checks = run.nodes().into_iter().map(|n| {
        let mine: Vec<_> = needs
            .iter()
            .filter(|(node, ..)| node == n.name())
            .cloned()
            .collect();
        async move { check_needs(&n, &mine).await }
    });
    for found in join_all(checks).await {
        problems.extend(found?);
    }
    if problems.is_empty() {
        return Ok(());
    }
    problems.sort();
    problems.dedup();
    Err(RunError::HostsNotReady {
        problems: problems.join("\n"),
    })
}

/// Checks each needed command on the host: its tool is installed, and a root command is
/// allowed by `sudo -n -l` (no password). Returns one line per missing thing.
async fn check_needs(
    n: &Node,
    needs: &[(String, Vec<String>, bool, String)],
) -> Result<Vec<String>, BackendError> {
    let mut missing = Vec::new();
    let user = n.host().map(|h| h.ssh.user.clone()).unwrap_or_default();
    let mut absent = BTreeSet::new();
    let tools: BTreeSet<&str> = needs.iter().map(|(_, c, ..)| c[0].as_str()).collect();
    for tool in tools {
        // On PATH, or in sbin (a user's PATH may leave sbin out; sudo's does not).
        let script = "command -v \"$1\" || test -x \"/usr/sbin/$1\" || test -x \"/sbin/$1\"";
        if !n.exec(&["sh", "-c", script, "sh", tool]).await?.success() {
            absent.insert(tool);
        }
    }
    let mut asked = BTreeSet::new();
    for (_, command, root, why) in needs {
        let tool = command[0].as_str();
        if absent.contains(tool) {
            missing.push(format!(
                "{}: `{tool}` is not installed (needed for {why})",
                n.name()
            ));
            continue;
        }
        if *root && user != "root" && asked.insert(command.clone()) {
            let mut argv = vec!["sudo", "-n", "-l", "--"];
            argv.extend(command.iter().map(String::as_str));
            if !n.exec(&argv).await?.success() {
                missing.push(format!(
                    "{}: sudo does not let {user} run `{}` without a password (needed for {why})",
                    n.name(),
                    command.join(" "),
                ));
            }
        }
    }
    Ok(missing)
}

/// One line of `hadrill up`'s report on a host's clock.
pub fn clock_line(name: &str, c: &ClockReading) -> String {
    format!(
        "{name}: clock {:+.1} ms from this machine's (± {:.1} ms)",
        c.offset_ms, c.within_ms
    )
}
