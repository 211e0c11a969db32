//! The reference cluster's own checks: its event store keeps every acknowledged event, its
//! master's view of the agents matches theirs, and its synced files converge.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::json;

use super::finals::{AGENTS_READ, AgentsFinal, status_matches};
use super::verbs;
use crate::checks::{judged, secs};
use crate::clock::Stamp;
use hadrill_model::{
    Budgets, Check, CheckResult, Event, Evidence, OpKind, OpRecord, Outcome, Verdict, faults, ops,
};

/// The keys (agent names) of the operations of `kind` that ended as `outcome`.
fn ops_of(events: &[Event], kind: OpKind, outcome: Outcome) -> BTreeSet<&str> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Op(o) if o.kind == kind && o.outcome == outcome => o.key.as_deref(),
            _ => None,
        })
        .collect()
}

/// Every acknowledged event is in the store; duplicates (redeliveries) are counted, and the
/// primary key makes them exactly-once in effect; a stored event no agent sent is a defect.
pub fn continuity(events: &[Event], state: &AgentsFinal, budgets: &Budgets) -> CheckResult {
    let sent: Vec<OpRecord> = ops(events)
        .into_iter()
        .filter(|o| o.kind == verbs::EVENT)
        .collect();
    let acked: BTreeSet<&str> = sent
        .iter()
        .filter(|o| o.outcome == Outcome::Ok)
        .filter_map(|o| o.key.as_deref())
        .collect();
    let unknown: BTreeSet<&str> = sent
        .iter()
        .filter(|o| o.outcome != Outcome::Ok)
        .filter_map(|o| o.key.as_deref())
        .collect();
    let Some(store) = &state.events else {
        return CheckResult::new(
            "continuity",
            Verdict::Unknown,
            format!(
                "{} acknowledged events, but the event store could not be read",
                acked.len()
            ),
            json!({ "acknowledged": acked.len() }),
        );
    };
    let lost: Vec<&&str> = acked.iter().filter(|k| !store.contains_key(**k)).collect();
    let duplicates = store.values().filter(|d| **d > 1).count();
    let unexplained: Vec<&String> = store
        .keys()
        .filter(|k| !acked.contains(k.as_str()) && !unknown.contains(k.as_str()))
        .collect();
    let figures = json!({
        "acknowledged": acked.len(),
        "verified": acked.len() - lost.len(),
        "lost": lost.len(),
        "lost_keys": lost.iter().take(50).collect::<Vec<_>>(),
        "unknown_events": unknown.len(),
        "unknown_that_took_effect": unknown.iter().filter(|k| store.contains_key(**k)).count(),
        "stored": store.len(),
        "duplicates": duplicates,
        "unexplained": unexplained.iter().take(50).collect::<Vec<_>>(),
        "budget_lost": budgets.max_lost_writes,
    });
    let mut problems = Vec::new();
    if lost.len() as u64 > budgets.max_lost_writes {
        problems.push(format!("lost {} acknowledged events", lost.len()));
    }
    if !unexplained.is_empty() {
        problems.push(format!("{} stored events no agent sent", unexplained.len()));
    }
    let summary = format!(
        "{} acknowledged, {} verified, {} lost, {} unknown, {} delivered more than once (stored once)",
        acked.len(),
        acked.len() - lost.len(),
        lost.len(),
        unknown.len(),
        duplicates
    );
    let clean = if acked.is_empty() {
        Verdict::Unknown
    } else {
        Verdict::Pass
    };
    judged("continuity", &problems, clean, summary, figures)
}

/// After the script, the master's view of every agent (active, and on which node) matches
/// the agents' real connections, and `n_active_agents` sums to the connected agents; every
/// node in `expect_on` holds agents, and every agent that tried to enrol did.
pub fn status_truth(events: &[Event], state: &AgentsFinal, expect_on: &[String]) -> CheckResult {
    let connected = state.connections.values().filter(|n| n.is_some()).count();
    let mismatches: Vec<String> = match &state.master_agents {
        None => Vec::new(),
        Some(m) => state
            .connections
            .iter()
            .filter_map(|(name, node)| {
                let seen = m.get(name);
                let ok = match (node, seen) {
                    (Some(n), Some((s, at))) => s == "active" && at.as_deref() == Some(n.as_str()),
                    (None, Some((s, _))) => s != "active",
                    (None, None) => true,
                    (Some(_), None) => false,
                };
                (!ok).then(|| format!("{name}: on {node:?}, master says {seen:?}"))
            })
            .collect(),
    };
    let figures = json!({
        "agents": state.connections.len(),
        "connected": connected,
        "n_active_agents": state.n_active,
        "n_active_sum": state.n_active.values().sum::<u64>(),
        "mismatches": mismatches.len(),
        "mismatch_detail": mismatches.iter().take(20).collect::<Vec<_>>(),
        "converged_after_ms": state.status_converged_ms,
    });
    let mut per_node: BTreeMap<&str, usize> = BTreeMap::new();
    for n in state.connections.values().flatten() {
        *per_node.entry(n.as_str()).or_default() += 1;
    }
    let empty: Vec<&String> = expect_on
        .iter()
        .filter(|n| !per_node.contains_key(n.as_str()))
        .collect();
    let enrolled: BTreeSet<&str> = ops_of(events, verbs::ENROLL, Outcome::Ok);
    let never_enrolled: Vec<&str> = ops_of(events, verbs::ENROLL, Outcome::Fail)
        .into_iter()
        .filter(|a| !enrolled.contains(a))
        .collect();
    let mut figures = figures;
    figures["agents_per_node"] = json!(per_node);
    figures["never_enrolled"] = json!(never_enrolled);
    // Enrolments refused while the master was away: each must say why.
    let all = ops(events);
    let enrol_failures: Vec<&OpRecord> = all
        .iter()
        .filter(|o| o.kind == verbs::ENROLL && o.outcome != Outcome::Ok)
        .collect();
    figures["enrolment_failures"] = json!(enrol_failures.len());
    figures["enrolment_errors"] = json!(
        enrol_failures
            .iter()
            .filter_map(|o| o.error.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .take(5)
            .collect::<Vec<_>>()
    );
    if state.master_agents.is_none() {
        return CheckResult::new(
            "status-truth",
            Verdict::Unknown,
            "the master's agent list could not be read".into(),
            figures,
        );
    }
    if !empty.is_empty() || !never_enrolled.is_empty() {
        let mut problems = Vec::new();
        if !empty.is_empty() {
            problems.push(format!("no agent on {empty:?} at the end"));
        }
        if !never_enrolled.is_empty() {
            problems.push(format!("{} agents never enrolled", never_enrolled.len()));
        }
        return CheckResult::new("status-truth", Verdict::Fail, problems.join("; "), figures);
    }
    if status_matches(state) {
        CheckResult::new(
            "status-truth",
            Verdict::Pass,
            format!(
                "{connected} connected agents, each active on its node in the master's view, n_active_agents sums to {connected} (agreed after {} ms)",
                state.status_converged_ms.unwrap_or(0)
            ),
            figures,
        )
    } else {
        CheckResult::new(
            "status-truth",
            Verdict::Fail,
            format!(
                "{} agents misreported by the master; n_active_agents sums to {}, {connected} connected",
                mismatches.len(),
                state.n_active.values().sum::<u64>()
            ),
            figures,
        )
    }
}

/// After each heal, start or operator command (e.g. a change on the master): how long until
/// every running worker holds the master's files (`max_sync`).
pub fn integrity(
    events: &[Event],
    master: &str,
    state: &AgentsFinal,
    budgets: &Budgets,
) -> CheckResult {
    let files: Vec<OpRecord> = ops(events)
        .into_iter()
        .filter(|o| o.kind == verbs::FILES)
        .collect();
    let nodes: BTreeSet<&str> = files.iter().filter_map(|o| o.key.as_deref()).collect();
    let state_at = |t: Stamp| -> BTreeMap<&str, &str> {
        let mut s = BTreeMap::new();
        for o in files.iter().filter(|o| o.invoke <= t) {
            if let (Some(k), Some(v)) = (o.key.as_deref(), o.value.as_deref()) {
                s.insert(k, v);
            }
        }
        s
    };
    let mut windows = Vec::new();
    let mut problems = Vec::new();
    let relevant: Vec<_> = faults(events)
        .into_iter()
        .filter(|f| f.outcome == Outcome::Ok && matches!(f.fault.name(), "heal" | "start" | "exec"))
        .collect();
    let all_faults = faults(events);
    for (i, f) in relevant.iter().enumerate() {
        // A change the fault makes on the master shows there within a second; convergence
        // counts from when it is seen. The registry may change again meanwhile (agents keep
        // enrolling), so "converged" is every node holding what the master holds then.
        let seen = files
            .iter()
            .find(|o| {
                o.key.as_deref() == Some(master)
                    && o.invoke >= f.end
                    && o.invoke.since(f.end) < Duration::from_secs(1)
            })
            .map_or(f.end, |o| o.invoke);
        // A node the fault started counts once it has been seen at all.
        let started: Vec<&str> = f
            .nodes
            .iter()
            .map(String::as_str)
            .filter(|n| nodes.contains(n))
            .collect();
        let converged = std::iter::once(seen)
            .chain(files.iter().map(|o| o.invoke).filter(|t| *t >= seen))
            .find(|t| {
                let s = state_at(*t);
                s.get(master).is_some_and(|m| s.values().all(|v| v == m))
                    && started.iter().all(|n| s.contains_key(n))
            });
        let ms = converged.map(|t| t.since(f.end).as_millis() as u64);
        // A change made during a partition cannot arrive before the heal that follows it.
        let next = all_faults
            .iter()
            .find(|n| n.start > f.start)
            .map(|n| n.start);
        let superseded = i + 1 < relevant.len()
            && match (converged, next) {
                (None, _) => true,
                (Some(t), Some(n)) => t > n,
                (Some(_), None) => false,
            };
        windows.push(json!({
            "fault": f.id, "kind": f.fault.name(), "nodes": f.nodes,
            "at_s": secs(f.end), "converged_ms": ms, "judged_at_next_fault": superseded,
        }));
        if superseded {
            continue;
        }
        match (ms, budgets.max_sync) {
            (None, _) => problems.push(format!(
                "fault #{}: the workers never held the master's files afterwards",
                f.id
            )),
            (Some(m), Some(b)) if Duration::from_millis(m) > b => problems.push(format!(
                "fault #{}: files converged {m} ms after it, budget {} ms",
                f.id,
                b.as_millis()
            )),
            _ => {}
        }
    }
    let in_sync_at_end = state.files_in_sync_ms.is_some();
    if !in_sync_at_end {
        problems
            .push("after the run, the running nodes did not all hold the master's files".into());
    }
    let figures = json!({
        "nodes_observed": nodes,
        "changes_observed": files.len(),
        "windows": windows,
        "in_sync_at_end": in_sync_at_end,
        "in_sync_after_agents_stopped_ms": state.files_in_sync_ms,
        "budget_ms": budgets.max_sync.map(|b| b.as_millis() as u64),
    });
    if nodes.len() < 2 {
        return CheckResult::new(
            "integrity",
            Verdict::Unknown,
            format!(
                "{} nodes' files observed; need the master and a worker",
                nodes.len()
            ),
            figures,
        );
    }
    // Figures only: whether they amount to a pass is the problems' to say.
    let summary = if windows.is_empty() {
        format!("{} nodes' files observed", nodes.len())
    } else {
        windows
            .iter()
            .filter(|w| w["judged_at_next_fault"] != true)
            .map(|w| {
                let after = match w["converged_ms"].as_u64() {
                    Some(ms) => format!("converged {ms} ms after it"),
                    None => "never converged".to_string(),
                };
                format!(
                    "#{} {}: {after}",
                    w["fault"],
                    w["kind"].as_str().unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    judged("integrity", &problems, Verdict::Pass, summary, figures)
}

/// The cluster's event store against the agents' acknowledged events (`continuity`).
pub struct AgentsContinuity;

impl Check for AgentsContinuity {
    fn name(&self) -> &str {
        "continuity"
    }

    fn judge(&self, e: &Evidence<'_>) -> CheckResult {
        match e.final_read::<AgentsFinal>(AGENTS_READ) {
            Ok(f) => continuity(e.events, &f, e.budgets),
            Err(why) => CheckResult::unknown(self.name(), why),
        }
    }
}

/// The master's view of the agents against theirs; `expect_on`: nodes that must hold agents.
pub struct StatusTruth {
    pub expect_on: Vec<String>,
}

impl Check for StatusTruth {
    fn name(&self) -> &str {
        "status-truth"
    }

    fn judge(&self, e: &Evidence<'_>) -> CheckResult {
        match e.final_read::<AgentsFinal>(AGENTS_READ) {
            Ok(f) => status_truth(e.events, &f, &self.expect_on),
            Err(why) => CheckResult::unknown(self.name(), why),
        }
    }
}

/// Convergence of the synced files on every node to the `master`'s.
pub struct Integrity {
    pub master: String,
}

impl Check for Integrity {
    fn name(&self) -> &str {
        "integrity"
    }

    fn judge(&self, e: &Evidence<'_>) -> CheckResult {
        match e.final_read::<AgentsFinal>(AGENTS_READ) {
            Ok(f) => integrity(e.events, &self.master, &f, e.budgets),
            Err(why) => CheckResult::unknown(self.name(), why),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::fixtures::{agent_op as op, fault_on};
    use hadrill_model::Fault;

    fn fault(kind: Fault, ms: u64) -> Event {
        fault_on("worker1", 1, kind, ms)
    }

    #[test]
    fn continuity_fails_on_a_lost_event_and_counts_duplicates() {
        let events = vec![
            op(verbs::EVENT, "00001/1", 10, Outcome::Ok, None),
            op(verbs::EVENT, "00001/2", 20, Outcome::Ok, None),
        ];
        let mut state = AgentsFinal {
            events: Some([("00001/1".to_string(), 2), ("00001/2".to_string(), 1)].into()),
            ..AgentsFinal::default()
        };
        let r = continuity(&events, &state, &Budgets::default());
        assert_eq!(r.verdict, Verdict::Pass, "{}", r.summary);
        assert_eq!(r.figures["duplicates"], 1);
        state.events = Some([("00001/1".to_string(), 1)].into());
        assert_eq!(
            continuity(&events, &state, &Budgets::default()).verdict,
            Verdict::Fail
        );
        state.events = Some(
            [
                ("00001/1".into(), 1),
                ("00001/2".into(), 1),
                ("00009/1".into(), 1),
            ]
            .into(),
        );
        assert_eq!(
            continuity(&events, &state, &Budgets::default()).verdict,
            Verdict::Fail
        );
    }

    #[test]
    fn status_truth_fails_when_the_master_misplaces_an_agent() {
        let mut state = AgentsFinal {
            connections: [
                ("a1".to_string(), Some("worker2".to_string())),
                ("a2".into(), None),
            ]
            .into(),
            master_agents: Some(
                [
                    (
                        "a1".to_string(),
                        ("active".to_string(), Some("worker2".to_string())),
                    ),
                    ("a2".into(), ("disconnected".into(), None)),
                ]
                .into(),
            ),
            n_active: [("worker2".to_string(), 1)].into(),
            status_converged_ms: Some(5),
            ..AgentsFinal::default()
        };
        assert_eq!(status_truth(&[], &state, &[]).verdict, Verdict::Pass);
        // A node expected to hold agents holds none.
        assert_eq!(
            status_truth(&[], &state, &["worker3".into()]).verdict,
            Verdict::Fail
        );
        // An agent that never managed to enrol.
        let refused = [op(verbs::ENROLL, "a3", 10, Outcome::Fail, None)];
        assert_eq!(status_truth(&refused, &state, &[]).verdict, Verdict::Fail);
        state
            .master_agents
            .as_mut()
            .unwrap()
            .insert("a1".into(), ("active".into(), Some("worker1".into())));
        assert_eq!(status_truth(&[], &state, &[]).verdict, Verdict::Fail);
    }

    #[test]
    fn integrity_measures_convergence_after_heal() {
        let files = |node: &str, digest: &str, ms: u64| {
            op(verbs::FILES, node, ms, Outcome::Ok, Some(digest))
        };
        let heal = fault(Fault::Heal, 5_000);
        let events = vec![
            files("master", "v1", 0),
            files("worker1", "v1", 0),
            files("master", "v2", 3_000),
            heal.clone(),
            files("worker1", "v2", 7_001),
        ];
        let budgets = Budgets {
            max_sync: Some(Duration::from_secs(3)),
            ..Budgets::default()
        };
        let synced = AgentsFinal {
            files_in_sync_ms: Some(0),
            ..AgentsFinal::default()
        };
        let r = integrity(&events, "master", &synced, &budgets);
        assert_eq!(r.verdict, Verdict::Pass, "{}", r.summary);
        assert_eq!(r.figures["windows"][0]["converged_ms"], 2_000);
        let never = integrity(&events[..4], "master", &synced, &budgets);
        assert_eq!(never.verdict, Verdict::Fail);
        // Each summary says what failed and never contradicts it, nor prints `null`.
        assert_eq!(
            never.summary,
            "fault #1: the workers never held the master's files afterwards; #1 heal: never converged"
        );
        let unsynced = integrity(&events[..2], "master", &AgentsFinal::default(), &budgets);
        assert_eq!(unsynced.verdict, Verdict::Fail);
        assert_eq!(
            unsynced.summary,
            "after the run, the running nodes did not all hold the master's files; 2 nodes' files observed"
        );
    }
}

#[cfg(test)]
mod integrity_tests {
    use super::*;
    use hadrill_model::Fault;
    use hadrill_model::{FaultRecord, Role};

    fn files(node: &str, digest: &str, ms: u64) -> Event {
        Event::Op(OpRecord {
            id: ms,
            client: "observer".into(),
            role: Role::Observer,
            kind: verbs::FILES,
            key: Some(node.into()),
            value: Some(digest.into()),
            invoke: Stamp(ms * 1_000_000),
            complete: Stamp(ms * 1_000_000),
            outcome: Outcome::Ok,
            error: None,
            status: None,
            node: None,
            version: None,
        })
    }

    fn start(node: &str, ms: u64) -> Event {
        Event::Fault(FaultRecord::applied(
            1,
            Fault::start([node]),
            &[node],
            Stamp(ms * 1_000_000),
            Stamp(ms * 1_000_000),
        ))
    }

    #[test]
    fn convergence_follows_a_master_that_keeps_changing() {
        // The master restarts, then agents enrol and its registry changes every second;
        // the worker follows a little behind and catches up.
        let mut events = vec![
            files("master", "r1", 0),
            files("w1", "r1", 0),
            start("master", 1_000),
        ];
        for (i, ms) in [1_500u64, 2_500, 3_500].iter().enumerate() {
            events.push(files("master", &format!("r{}", i + 2), *ms));
            events.push(files("w1", &format!("r{}", i + 2), ms + 800));
        }
        let synced = AgentsFinal {
            files_in_sync_ms: Some(0),
            ..AgentsFinal::default()
        };
        let r = integrity(&events, "master", &synced, &Budgets::default());
        assert_eq!(r.verdict, Verdict::Pass, "{}", r.summary);
        assert_eq!(r.figures["windows"][0]["converged_ms"], 1_300);
    }
}
