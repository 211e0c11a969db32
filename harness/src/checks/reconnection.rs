//! Reconnection of a fleet of clients (agents) after a fault dropped their connections: each
//! agent records `connect` and `disconnect` operations (role `Agent`, keyed by its name), and
//! this check measures, per fault, how long the dropped ones took to come back. Every agent is
//! accounted for, fault or not: one that tried and never connected, or was refused for longer
//! than the budget at any time, fails it by name with the refusals it got.

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
    let shut_out = shut_out(
        &per_agent,
        budgets.max_reconnect,
        all.last().map(|o| o.complete),
    );
    for s in &shut_out {
        problems.push(s.to_string());
    }
    let figures = json!({
        "agents": per_agent.len(),
        "shut_out": shut_out.iter().take(20).map(|s| json!({
            "agent": s.agent, "from_s": secs(s.from), "for_ms": s.for_ms,
            "connected_after": s.connected_after, "refusals": s.refusals,
        })).collect::<Vec<_>>(),
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
                let ms = |k: &str| w[k].as_u64().map_or("—".into(), |v| format!("{v} ms"));
                format!(
                    "#{}: {} dropped, p50 {}, p99 {}, max {}",
                    w["fault"],
                    w["dropped"],
                    ms("p50_ms"),
                    ms("p99_ms"),
                    ms("max_ms")
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
    };
    judged("reconnection", &problems, Verdict::Pass, summary, figures)
}

/// An agent that could not connect: from its first refused attempt since it was last
/// connected, for how long, and what it was told.
#[derive(Debug)]
struct ShutOut<'a> {
    agent: &'a str,
    from: Stamp,
    for_ms: u64,
    /// Whether it connected in the end.
    connected_after: bool,
    refusals: Vec<String>,
}

impl std::fmt::Display for ShutOut<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.connected_after {
            write!(
                f,
                "agent {} could not connect for {} ms from t={:.2}s",
                self.agent,
                self.for_ms,
                secs(self.from)
            )?;
        } else {
            write!(
                f,
                "agent {} never connected after t={:.2}s",
                self.agent,
                secs(self.from)
            )?;
        }
        write!(f, " (told: {})", self.refusals.join(" | "))
    }
}

/// Each agent's spans of failed connection attempts: the ones that never ended in a
/// connection, and, with a budget, the ones longer than it once the agent had been connected.
/// Fault or no fault: an agent refused for the whole run is as lost to its users as one a
/// fault dropped. Before its first connection an agent waits for the product to admit it
/// (a registry synchronised to the workers, judged by `integrity`), so only never being
/// admitted fails it here.
fn shut_out<'a>(
    per_agent: &BTreeMap<&'a str, Vec<&'a OpRecord>>,
    budget: Option<Duration>,
    end: Option<Stamp>,
) -> Vec<ShutOut<'a>> {
    let mut out = Vec::new();
    for (agent, history) in per_agent {
        let mut span: Option<(Stamp, Vec<String>)> = None;
        let mut admitted = false;
        let connects = history.iter().filter(|o| o.kind == OpKind::CONNECT);
        for o in connects {
            if o.outcome == Outcome::Ok {
                let was_admitted = std::mem::replace(&mut admitted, true);
                if let Some((from, refusals)) = span.take() {
                    let for_ms = o.complete.since(from).as_millis() as u64;
                    if was_admitted && budget.is_some_and(|b| Duration::from_millis(for_ms) > b) {
                        out.push(ShutOut {
                            agent,
                            from,
                            for_ms,
                            connected_after: true,
                            refusals,
                        });
                    }
                }
            } else {
                let (_, refusals) = span.get_or_insert_with(|| (o.invoke, Vec::new()));
                let why = o
                    .error
                    .clone()
                    .unwrap_or_else(|| format!("{:?}", o.outcome));
                if !refusals.contains(&why) && refusals.len() < 3 {
                    refusals.push(why);
                }
            }
        }
        if let Some((from, refusals)) = span {
            out.push(ShutOut {
                agent,
                from,
                for_ms: end.map_or(0, |e| e.since(from).as_millis() as u64),
                connected_after: false,
                refusals,
            });
        }
    }
    out
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

    /// No fault needed: an agent refused for the whole run, or for longer than the budget,
    /// fails the check by name with what it was told.
    #[test]
    fn every_agent_is_accounted_for_fault_or_not() {
        let refused = |agent: &str, ms: u64| {
            let mut e = op(OpKind::CONNECT, agent, ms, Outcome::Fail, None);
            if let Event::Op(o) = &mut e {
                o.error = Some("rejected: unknown key".into());
            }
            e
        };
        let budgets = Budgets {
            max_reconnect: Some(Duration::from_secs(5)),
            ..Budgets::default()
        };
        let mut events = vec![
            op(OpKind::CONNECT, "a1", 0, Outcome::Ok, None),
            refused("a2", 0),
            refused("a2", 1_000),
            op(OpKind::CONNECT, "a2", 2_000, Outcome::Ok, None),
        ];
        let r = reconnection(&events, &budgets);
        assert_eq!(r.verdict, Verdict::Pass, "{}", r.summary);
        events.extend([refused("a3", 0), refused("a3", 9_000)]);
        let r = reconnection(&events, &budgets);
        assert_eq!(r.verdict, Verdict::Fail);
        assert!(
            r.summary.starts_with(
                "agent a3 never connected after t=0.00s (told: rejected: unknown key)"
            ),
            "{}",
            r.summary
        );
        // Waiting 7 s to be admitted at first is the product's registry sync, not a drop;
        // refused as long once it had been connected is.
        events.extend([
            refused("a4", 0),
            op(OpKind::CONNECT, "a4", 7_000, Outcome::Ok, None),
        ]);
        let r = reconnection(&events, &budgets);
        assert!(!r.summary.contains("agent a4"), "{}", r.summary);
        events.extend([
            refused("a4", 8_000),
            op(OpKind::CONNECT, "a4", 15_000, Outcome::Ok, None),
        ]);
        let r = reconnection(&events, &budgets);
        assert!(
            r.summary
                .contains("agent a4 could not connect for 7001 ms from t=8.00s"),
            "{}",
            r.summary
        );
        assert!(!r.summary.contains("null"), "{}", r.summary);
    }
}
