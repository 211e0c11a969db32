//! Abort conditions: when a run stops injecting before its script ends, so a drill on a shared
//! environment never keeps breaking an install that is already down.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use hadrill_model::{Event, Outcome, Role, Stamp};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AbortSpec {
    /// Stop injecting once the probe has failed this long with no success in between.
    #[serde(with = "humantime_serde")]
    pub unavailable_for: Duration,
}

impl AbortSpec {
    /// Why to abort now (`now` on the run's clock), from the probes recorded so far.
    pub fn reason(&self, events: &[Event], now: Stamp) -> Option<String> {
        let since = probe_down_since(events)?;
        let down = Duration::from_nanos(now.0.saturating_sub(since.0));
        (down >= self.unavailable_for).then(|| {
            format!(
                "the probe failed for {:.1} s with no success (abort after {})",
                down.as_secs_f64(),
                humantime::format_duration(self.unavailable_for)
            )
        })
    }
}

/// When the probes began failing with no success since: the first probe that did not
/// succeed after the last one that did.
pub fn probe_down_since(events: &[Event]) -> Option<Stamp> {
    let mut probes: Vec<(Stamp, bool)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Op(o) if o.role == Role::Probe => Some((o.invoke, o.outcome == Outcome::Ok)),
            _ => None,
        })
        .collect();
    probes.sort_by_key(|(invoke, _)| *invoke);
    let mut since = None;
    for (invoke, ok) in probes {
        if ok {
            since = None;
        } else if since.is_none() {
            since = Some(invoke);
        }
    }
    since
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::fixtures::op;
    use hadrill_model::OpKind;

    fn probe(at_ms: u64, outcome: Outcome) -> Event {
        Event::Op(op(at_ms, OpKind::PROBE, at_ms, outcome))
    }

    #[test]
    fn a_probe_down_longer_than_asked_aborts_and_a_success_resets_it() {
        let spec = AbortSpec {
            unavailable_for: Duration::from_secs(2),
        };
        let ms = |m: u64| Stamp(m * 1_000_000);
        let events = vec![
            probe(0, Outcome::Ok),
            probe(100, Outcome::Fail),
            probe(1_500, Outcome::Ok),
            probe(1_600, Outcome::Unknown),
            probe(3_000, Outcome::Fail),
        ];
        assert_eq!(probe_down_since(&events), Some(ms(1_600)));
        assert_eq!(spec.reason(&events, ms(3_500)), None, "1.9 s down");
        let reason = spec.reason(&events, ms(3_700)).expect("2.1 s down");
        assert!(reason.contains("failed for 2.1 s"), "{reason}");
        assert_eq!(probe_down_since(&events[..3]), None, "up again");
        assert_eq!(spec.reason(&[], ms(10_000)), None, "no probe, no verdict");
    }
}
