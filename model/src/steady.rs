//! Whether a service looks steady from its recorded operations: what lets a run's settle end
//! before its cap once the system has recovered.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::{Event, OpKind, OpRecord, Outcome, Stamp, ops};

/// How long the operations must all succeed before the system counts as steady.
pub const QUIET: Duration = Duration::from_secs(2);

/// Whether every operation `of` interest answered in the `quiet` before `now` succeeded, and
/// at least one was: the service, as those operations see it, answers again and has not
/// failed since. One that failed, or ended unknown, in that time says it is not steady yet;
/// so does a kind of operation (one user path) whose last answer was a failure, however long
/// ago: it has not been seen working again.
pub fn steady(
    events: &[Event],
    of: impl Fn(&OpRecord) -> bool,
    now: Stamp,
    quiet: Duration,
) -> bool {
    let from = Stamp(now.0.saturating_sub(quiet.as_nanos() as u64));
    let all: Vec<OpRecord> = ops(events)
        .into_iter()
        .filter(|o| o.complete <= now && of(o))
        .collect();
    let mut last: BTreeMap<&OpKind, &OpRecord> = BTreeMap::new();
    for o in &all {
        let l = last.entry(&o.kind).or_insert(o);
        if o.complete > l.complete {
            *l = o;
        }
    }
    let mut answered = all.iter().filter(|o| o.complete >= from).peekable();
    answered.peek().is_some()
        && answered.all(|o| o.outcome == Outcome::Ok)
        && last.values().all(|o| o.outcome == Outcome::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Role;

    fn op(at_ms: u64, outcome: Outcome) -> Event {
        Event::Op(OpRecord {
            id: at_ms,
            client: "probe".into(),
            role: Role::Probe,
            kind: OpKind::PROBE,
            key: None,
            value: None,
            invoke: Stamp(at_ms * 1_000_000),
            complete: Stamp((at_ms + 5) * 1_000_000),
            outcome,
            error: None,
            status: None,
            node: None,
            version: None,
        })
    }

    fn at(ms: u64) -> Stamp {
        Stamp(ms * 1_000_000)
    }

    #[test]
    fn steady_once_the_quiet_holds_only_successes() {
        let probes = |ok_from: u64| -> Vec<Event> {
            (0..100)
                .map(|i| {
                    let t = i * 50;
                    op(
                        t,
                        if t < ok_from {
                            Outcome::Fail
                        } else {
                            Outcome::Ok
                        },
                    )
                })
                .collect()
        };
        let probe = |o: &OpRecord| o.kind == OpKind::PROBE;
        let events = probes(1000);
        assert!(!steady(&events, probe, at(2500), QUIET));
        assert!(steady(&events, probe, at(3100), QUIET));
        // An unknown is not a success.
        let mut events = probes(0);
        events.push(op(4000, Outcome::Unknown));
        assert!(!steady(&events, probe, at(4900), QUIET));
        // A path whose last answer failed, long before the quiet: not seen working again.
        let mut events = probes(0);
        let mut upload = op(1000, Outcome::Fail);
        if let Event::Op(o) = &mut upload {
            o.kind = OpKind::new("upload");
        }
        events.push(upload.clone());
        assert!(!steady(&events, |_| true, at(4900), QUIET));
        if let Event::Op(o) = &mut upload {
            (o.id, o.outcome, o.invoke, o.complete) = (1501, Outcome::Ok, at(1500), at(1510));
        }
        events.push(upload);
        assert!(steady(&events, |_| true, at(4900), QUIET));
        // Nothing answered: nothing says the service is back.
        assert!(!steady(&[], probe, at(4900), QUIET));
        assert!(!steady(&probes(0), |_| false, at(4900), QUIET));
    }
}
