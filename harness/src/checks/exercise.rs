//! Did the faults hit what they were meant to? A kill of a worker that held no job says
//! nothing about at-least-once delivery, so a run whose fault hit nothing it could have hit is
//! `unknown`, never `pass`.
//!
//! The evidence is in each fault's record: what its targets held just before it (their
//! topology's `in_flight` command) and, when the step had a `when`, whether the wait for
//! work in flight was met.

use serde_json::json;

use hadrill_model::{Check, CheckResult, Evidence, FaultRecord, Verdict, faults};

/// Applies when some fault's targets list the work they hold, or a step aimed its fault.
pub struct Exercise;

pub const NAME: &str = "exercise";

impl Check for Exercise {
    fn name(&self) -> &str {
        NAME
    }

    fn applies(&self, evidence: &Evidence<'_>) -> bool {
        faults(evidence.events).iter().any(judged)
    }

    fn judge(&self, evidence: &Evidence<'_>) -> CheckResult {
        let faults: Vec<FaultRecord> = faults(evidence.events).into_iter().filter(judged).collect();
        let mut reached = Vec::new();
        let mut misses = Vec::new();
        for f in &faults {
            let what = format!("{} {} (#{})", f.fault.name(), f.nodes.join(","), f.id);
            let items: Vec<String> = f
                .held
                .iter()
                .flat_map(|(node, items)| items.iter().map(move |i| format!("{i} on {node}")))
                .collect();
            match &f.aim {
                Some(aim) if !aim.met => misses.push(format!(
                    "{what} was to wait for {} item(s) in flight on each target and fired \
                     without them after {} ms",
                    aim.in_flight, aim.waited_ms
                )),
                _ if !f.held_unknown.is_empty() => misses.push(format!(
                    "{what}: what its targets held is unknown: {}",
                    f.held_unknown
                        .iter()
                        .map(|(node, why)| format!("{node}: {why}"))
                        .collect::<Vec<_>>()
                        .join("; ")
                )),
                _ if items.is_empty() => misses.push(format!(
                    "{what} hit nothing: its targets held no work at the fault"
                )),
                _ => reached.push(format!("{what} hit {}", items.join(", "))),
            }
        }
        let reach = hadrill_model::hits(evidence.events);
        let figures = json!({
            "faults": faults.iter().map(|f| json!({
                "id": f.id,
                "fault": f.fault.name(),
                "nodes": f.nodes,
                "held": f.held,
                "held_unknown": f.held_unknown,
                "aim": f.aim,
                "hit": reach.iter().find(|h| h.fault == f.id),
            })).collect::<Vec<_>>(),
        });
        let (verdict, summary) = if misses.is_empty() {
            (Verdict::Pass, reached.join("; "))
        } else {
            let mut all = misses;
            all.extend(reached);
            (Verdict::Unknown, all.join("; "))
        };
        CheckResult::new(NAME, verdict, summary, figures)
    }
}

/// A fault the check can judge: one that disturbs work and whose targets list it, or an
/// aimed one.
fn judged(f: &FaultRecord) -> bool {
    f.aim.is_some() || (f.fault.disturbs() && !(f.held.is_empty() && f.held_unknown.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::fixtures::{fault_on, kill};
    use hadrill_model::{Aim, Budgets, Event};
    use std::collections::BTreeMap;

    fn judge(events: &[Event]) -> Option<CheckResult> {
        let budgets = Budgets::default();
        let finals = BTreeMap::new();
        let evidence = Evidence {
            events,
            budgets: &budgets,
            finals: &finals,
        };
        Exercise
            .applies(&evidence)
            .then(|| Exercise.judge(&evidence))
    }

    fn held(items: &[&str], aim: Option<Aim>) -> Event {
        let mut e = fault_on("worker1", 1, kill("worker1"), 5_000);
        if let Event::Fault(f) = &mut e {
            f.held.insert(
                "worker1".into(),
                items.iter().map(|s| s.to_string()).collect(),
            );
            f.aim = aim;
        }
        e
    }

    #[test]
    fn a_kill_that_hit_a_job_in_flight_passes_and_names_it() {
        let r = judge(&[held(&["trace 7"], None)]).unwrap();
        assert_eq!(r.verdict, Verdict::Pass);
        assert!(r.summary.contains("trace 7 on worker1"), "{}", r.summary);
    }

    #[test]
    fn a_kill_of_a_worker_that_held_nothing_is_unknown_not_pass() {
        let r = judge(&[held(&[], None)]).unwrap();
        assert_eq!(r.verdict, Verdict::Unknown);
        assert!(r.summary.contains("hit nothing"), "{}", r.summary);
    }

    #[test]
    fn an_aim_not_met_is_unknown_even_if_work_arrived_later() {
        let aim = Aim {
            in_flight: 1,
            waited_ms: 30_000,
            met: false,
        };
        let r = judge(&[held(&["trace 9"], Some(aim))]).unwrap();
        assert_eq!(r.verdict, Verdict::Unknown);
        assert!(r.summary.contains("after 30000 ms"), "{}", r.summary);
    }

    #[test]
    fn faults_on_nodes_that_list_no_work_are_not_judged() {
        assert!(judge(&[fault_on("app1", 1, kill("app1"), 5_000)]).is_none());
    }
}
