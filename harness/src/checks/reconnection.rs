//! Reconnection of a fleet of clients (agents) after a fault dropped their connections: each
//! agent records `connect` and `disconnect` operations (role `Agent`, keyed by its name), and
//! this check measures, per fault, how long the dropped ones took to come back.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use super::{judged, secs};
use crate::clock::Stamp;
use hadrill_model::{
    Budgets, Check, CheckResult, Event, Evidence, OpKind, OpRecord, Outcome, Verdict, faults, ops,
    percentile,
};

/// Every agent whose connection dropped after a fault reconnects, within `max_reconnect`;
/// p50/p99/max and the slowest agents per fault.
pub fn reconnection(events: &[Event], budgets: &Budgets) -> CheckResult {
    let all = ops(events);
    let mut per_agent: BTreeMap<&str, Vec<&OpRecord>> = BTreeMap::new();
    for o in all
        .iter()
        .filter(|o| o.kind.is_any(&[OpKind::CONNECT, OpKind::DISCONNECT]))
    {
        per_agent
            .entry(o.key.as_deref().unwrap_or(""))
            .or_default()
            .push(o);
    }
    let fs: Vec<_> = faults(events)
        .into_iter()
        .filter(|f| f.outcome == Outcome::Ok)
        .collect();
    let mut windows = Vec::new();
    let mut problems = Vec::new();
    for (i, f) in fs.iter().enumerate() {
        let until = fs.get(i + 1).map_or(Stamp(u64::MAX), |n| n.start);
        let mut delays: Vec<(u64, &str)> = Vec::new();
        let mut never = Vec::new();
        for (agent, history) in &per_agent {
            // Dropped during this fault's window...
            let Some(drop) = history
                .iter()
                .find(|o| o.kind == OpKind::DISCONNECT && o.invoke >= f.start && o.invoke < until)
            else {
                continue;
            };
            // ...and connected again after it.
            match history.iter().find(|o| {
                o.kind == OpKind::CONNECT && o.outcome == Outcome::Ok && o.invoke >= drop.invoke
            }) {
                Some(c) => delays.push((c.complete.since(f.start).as_millis() as u64, agent)),
                None => never.push(*agent),
            }
        }
        if delays.is_empty() && never.is_empty() {
            continue;
        }
        delays.sort();
        let ms: Vec<u64> = delays.iter().map(|d| d.0).collect();
        let max = ms.last().copied();
        windows.push(json!({
            "fault": f.id,
            "kind": f.fault.name(),
            "nodes": f.nodes,
            "at_s": secs(f.start),
            "dropped": delays.len() + never.len(),
            "reconnected": delays.len(),
            "never_reconnected": never.len(),
            "p50_ms": percentile(&ms, 0.5),
            "p99_ms": percentile(&ms, 0.99),
            "max_ms": max,
            "slowest": delays.iter().rev().take(10).map(|(ms, a)| json!({"agent": a, "ms": ms})).collect::<Vec<_>>(),
        }));
        if !never.is_empty() {
            problems.push(format!(
                "fault #{}: {} agents never reconnected (e.g. {})",
                f.id,
                never.len(),
                never.iter().take(3).copied().collect::<Vec<_>>().join(", ")
            ));
        }
        if let (Some(b), Some(m)) = (budgets.max_reconnect, max)
            && Duration::from_millis(m) > b
        {
            problems.push(format!(
                "fault #{}: the slowest agent reconnected after {m} ms, budget {} ms",
                f.id,
                b.as_millis()
            ));
        }
    }
    let figures = json!({
        "agents": per_agent.len(),
        "windows": windows,
        "budget_ms": budgets.max_reconnect.map(|b| b.as_millis() as u64),
    });
    if per_agent.is_empty() {
        return CheckResult::new(
            "reconnection",
            Verdict::Unknown,
            "no agent connected".into(),
            figures,
        );
    }
    let summary = match windows.as_slice() {
        [] => format!("{} agents; no fault dropped a connection", per_agent.len()),
        ws => ws
            .iter()
            .map(|w| {
                format!(
                    "#{}: {} dropped, p50 {} ms, p99 {} ms, max {} ms",
                    w["fault"], w["dropped"], w["p50_ms"], w["p99_ms"], w["max_ms"]
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
    };
    judged("reconnection", &problems, Verdict::Pass, summary, figures)
}

/// `reconnection` as a scenario's check.
pub struct Reconnection;

impl Check for Reconnection {
    fn name(&self) -> &str {
        "reconnection"
    }

    fn judge(&self, e: &Evidence<'_>) -> CheckResult {
        reconnection(e.events, e.budgets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::fixtures::{agent_op as op, fault_on, kill};
    use hadrill_model::Fault;

    fn fault(kind: Fault, ms: u64) -> Event {
        fault_on("worker1", 1, kind, ms)
    }

    #[test]
    fn reconnection_measures_dropped_agents_and_fails_on_one_that_never_returns() {
        let mut events = vec![
            op(OpKind::CONNECT, "a1", 0, Outcome::Ok, None),
            op(OpKind::CONNECT, "a2", 0, Outcome::Ok, None),
            fault(kill("worker1"), 1_000),
            op(OpKind::DISCONNECT, "a1", 1_500, Outcome::Ok, None),
            op(OpKind::CONNECT, "a1", 3_000, Outcome::Ok, None),
        ];
        let budgets = Budgets {
            max_reconnect: Some(Duration::from_secs(5)),
            ..Budgets::default()
        };
        let r = reconnection(&events, &budgets);
        assert_eq!(r.verdict, Verdict::Pass, "{}", r.summary);
        assert_eq!(r.figures["windows"][0]["max_ms"], 2_001);
        events.push(op(OpKind::DISCONNECT, "a2", 1_600, Outcome::Ok, None));
        assert_eq!(reconnection(&events, &budgets).verdict, Verdict::Fail);
        let tight = Budgets {
            max_reconnect: Some(Duration::from_secs(1)),
            ..Budgets::default()
        };
        assert_eq!(reconnection(&events[..5], &tight).verdict, Verdict::Fail);
    }
}
