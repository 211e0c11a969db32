//! An existing host's wall clock against the controller's, measured over SSH at a run's start
//! and end: the history stays on the controller's one clock, and the report says how far each
//! host's own timestamps are off.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::future::join_all;

use crate::node::{BackendError, Node};
use hadrill_model::ClockReading;

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

/// One line of `hadrill up`'s report on a host's clock.
pub fn clock_line(name: &str, c: &ClockReading) -> String {
    format!(
        "{name}: clock {:+.1} ms from this machine's (± {:.1} ms)",
        c.offset_ms, c.within_ms
    )
}
