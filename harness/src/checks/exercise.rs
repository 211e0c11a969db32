//! Did the faults hit what they were meant to? A kill of a worker that held no job says
//! nothing about at-least-once delivery, so a run whose fault hit nothing it could have hit is
//! `unknown`, never `pass`.
//!
//! The evidence is in each fault's record: what its targets held just before it (their
//! topology's `in_flight` command) and, when the step had a `when`, whether the wait for
//! work in flight was met.

use serde_json::json;

use hadrill_model::{Check, CheckResult, Evidence, FaultRecord, Verdict, faults, hits};

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
        let reach = hits(evidence.events);
        let mut reached = Vec::new();
        let mut misses = Vec::new();
        for f in &faults {
            let what = format!("{} {} (#{})", f.fault.name(), f.nodes.join(","), f.id);
            let agents = reach
                .iter()
                .find(|h| h.fault == f.id)
                .map_or(0, |h| h.agents_connected);
            match judge_one(f, agents) {
                Ok(hit) => reached.push(format!("{what} hit {hit}")),
                Err(miss) => misses.push(format!("{what} {miss}")),
            }
        }
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

/// What one fault hit, or why it cannot be said to have hit what it was meant to.
fn judge_one(f: &FaultRecord, agents: usize) -> Result<String, String> {
    if let Some(aim) = f.aim.as_ref().filter(|a| !a.met) {
        let mut wanted = Vec::new();
        match aim.in_flight {
            Some(0) => wanted.push("its targets to go idle".to_string()),
            Some(n) => wanted.push(format!("{n} item(s) in flight on each target")),
            None => {}
        }
        if let Some(n) = aim.agents {
            wanted.push(format!("{n} agent(s) connected"));
        }
        return Err(format!(
            "was to wait for {} and fired without after {} ms",
            wanted.join(" and "),
            aim.waited_ms
        ));
    }
    if !f.held_unknown.is_empty() {
        let why: Vec<String> = f
            .held_unknown
            .iter()
            .map(|(node, why)| format!("{node}: {why}"))
            .collect();
        return Err(format!(
            "cannot be judged: what its targets held is unknown ({})",
            why.join("; ")
        ));
    }
    let mut hit: Vec<String> = f
        .held
        .iter()
        .flat_map(|(node, items)| items.iter().map(move |i| format!("{i} on {node}")))
        .collect();
    let aimed_at_agents = f.aim.as_ref().is_some_and(|a| a.agents.is_some());
    if aimed_at_agents && agents > 0 {
        hit.push(format!("{agents} agents connected"));
    }
    let aimed_at_idle = f.aim.as_ref().is_some_and(|a| a.in_flight == Some(0));
    if aimed_at_idle {
        return match hit.is_empty() {
            true => Ok("nothing, as aimed: its targets were idle".into()),
            false => Err(format!(
                "was aimed at idle targets and hit {}",
                hit.join(", ")
            )),
        };
    }
    if hit.is_empty() {
        let what = if aimed_at_agents {
            "no agent was connected to its targets"
        } else {
            "its targets held no work"
        };
        return Err(format!("hit nothing: {what} at the fault"));
    }
    Ok(hit.join(", "))
}

/// A fault the check can judge: one that disturbs work and whose targets list it, or an
/// aimed one.
fn judged(f: &FaultRecord) -> bool {
    f.aim.is_some() || (f.fault.disturbs() && !(f.held.is_empty() && f.held_unknown.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::fixtures::{agent_op, fault_on, kill};
    use hadrill_model::{Aim, Budgets, Event, OpKind, Outcome};
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
            in_flight: Some(1),
            agents: None,
            waited_ms: 30_000,
            met: false,
        };
        let r = judge(&[held(&["trace 9"], Some(aim))]).unwrap();
        assert_eq!(r.verdict, Verdict::Unknown);
        assert!(r.summary.contains("after 30000 ms"), "{}", r.summary);
        assert!(r.summary.contains("1 item(s) in flight"), "{}", r.summary);
    }

    /// `in_flight = 0`: a fault aimed at idle targets (an upgrade after the workers drained)
    /// passes when they held nothing, and is unknown when it fired on work anyway.
    #[test]
    fn a_fault_aimed_at_idle_targets_passes_only_if_they_held_nothing() {
        let idle = |met| Aim {
            in_flight: Some(0),
            agents: None,
            waited_ms: 120,
            met,
        };
        let r = judge(&[held(&[], Some(idle(true)))]).unwrap();
        assert_eq!(r.verdict, Verdict::Pass, "{}", r.summary);
        assert!(r.summary.contains("as aimed"), "{}", r.summary);
        let busy = judge(&[held(&["trace 3"], Some(idle(false)))]).unwrap();
        assert_eq!(busy.verdict, Verdict::Unknown, "{}", busy.summary);
        assert!(busy.summary.contains("go idle"), "{}", busy.summary);
    }

    #[test]
    fn faults_on_nodes_that_list_no_work_are_not_judged() {
        assert!(judge(&[fault_on("app1", 1, kill("app1"), 5_000)]).is_none());
    }

    #[test]
    fn a_kill_aimed_at_connected_agents_names_them_or_is_unknown_without_them() {
        let aim = Aim {
            in_flight: None,
            agents: Some(1),
            waited_ms: 40,
            met: true,
        };
        let mut kill = fault_on("cluster-worker1", 1, kill("cluster-worker1"), 5_000);
        if let Event::Fault(f) = &mut kill {
            f.aim = Some(aim);
        }
        let mut connect = agent_op(OpKind::CONNECT, "agent-1", 1_000, Outcome::Ok, None);
        if let Event::Op(o) = &mut connect {
            o.node = Some("cluster-worker1".into());
        }
        let r = judge(&[connect, kill.clone()]).unwrap();
        assert_eq!(r.verdict, Verdict::Pass, "{}", r.summary);
        assert!(r.summary.contains("1 agents connected"), "{}", r.summary);
        let alone = judge(&[kill]).unwrap();
        assert_eq!(alone.verdict, Verdict::Unknown, "{}", alone.summary);
        assert!(
            alone.summary.contains("no agent was connected"),
            "{}",
            alone.summary
        );
    }
}
