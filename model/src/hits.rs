//! What each fault hit, from the history alone: the work its targets listed just before it,
//! the agents connected to them, the users' operations they had just answered, and the
//! operations in flight through the system at the fault.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::op::{Event, FaultRecord, OpKind, OpRecord, Outcome, Role, faults, ops};
use crate::stamp::Stamp;

/// How far back "the target was serving" looks: a server that answered users in the second
/// before it died was carrying their traffic when it did.
pub const SERVING_WINDOW: Duration = Duration::from_secs(1);

/// One fault's reach.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Hit {
    pub fault: u64,
    /// Items the targets listed as held (their `in_flight` command), per target.
    pub held: BTreeMap<String, Vec<String>>,
    /// Agents whose last connection before the fault was to a target.
    pub agents_connected: usize,
    /// Users' operations a target answered in the `SERVING_WINDOW` before the fault.
    pub served_before: usize,
    /// Users' operations sent before the fault and answered after it, through any node.
    pub users_in_flight: usize,
}

/// Every disturbing fault's reach, in the order of the faults.
pub fn hits(events: &[Event]) -> Vec<Hit> {
    let all = ops(events);
    faults(events)
        .iter()
        .filter(|f| f.fault.disturbs())
        .map(|f| hit(events, &all, f))
        .collect()
}

/// How many agents were connected to one of `nodes` at `at`: each agent's last connect or
/// disconnect before then says where it was.
pub fn agents_on(events: &[Event], nodes: &BTreeSet<&str>, at: Stamp) -> usize {
    let mut agents: BTreeMap<&str, bool> = BTreeMap::new();
    for e in events {
        let Event::Op(o) = e else { continue };
        if o.role != Role::Agent || o.complete > at {
            continue;
        }
        let Some(agent) = o.key.as_deref() else {
            continue;
        };
        if o.kind == OpKind::CONNECT && o.outcome == Outcome::Ok {
            let on = o.node.as_deref().is_some_and(|n| nodes.contains(n));
            agents.insert(agent, on);
        } else if o.kind == OpKind::DISCONNECT {
            agents.insert(agent, false);
        }
    }
    agents.values().filter(|on| **on).count()
}

fn hit(events: &[Event], all: &[OpRecord], f: &FaultRecord) -> Hit {
    let targets: BTreeSet<&str> = f.nodes.iter().map(String::as_str).collect();
    let on_target = |o: &OpRecord| o.node.as_deref().is_some_and(|n| targets.contains(n));
    let since = f.start.0.saturating_sub(SERVING_WINDOW.as_nanos() as u64);
    let users = || all.iter().filter(|o| o.role == Role::User);
    let served_before = users()
        .filter(|o| o.outcome == Outcome::Ok && on_target(o))
        .filter(|o| o.complete.0 >= since && o.complete <= f.start)
        .count();
    let users_in_flight = users()
        .filter(|o| o.invoke < f.start && o.complete > f.start)
        .count();
    Hit {
        fault: f.id,
        held: f.held.clone(),
        agents_connected: agents_on(events, &targets, f.start),
        served_before,
        users_in_flight,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::Fault;

    fn op(role: Role, kind: OpKind, key: &str, node: &str, from_ms: u64, to_ms: u64) -> Event {
        Event::Op(OpRecord {
            id: from_ms,
            client: key.into(),
            role,
            kind,
            key: Some(key.into()),
            value: None,
            invoke: Stamp(from_ms * 1_000_000),
            complete: Stamp(to_ms * 1_000_000),
            outcome: Outcome::Ok,
            error: None,
            status: None,
            node: Some(node.into()),
            version: None,
        })
    }

    fn kill(node: &str, at_ms: u64) -> Event {
        Event::Fault(FaultRecord::applied(
            1,
            Fault::kill([node]),
            &[node],
            Stamp(at_ms * 1_000_000),
            Stamp(at_ms * 1_000_000 + 1),
        ))
    }

    #[test]
    fn a_kill_counts_what_its_target_served_the_agents_on_it_and_what_was_in_flight() {
        let page = OpKind::new("page");
        let events = [
            op(Role::User, page.clone(), "u1", "app1", 9_000, 9_010),
            op(Role::User, page.clone(), "u2", "app2", 9_500, 9_510),
            op(Role::User, page.clone(), "u3", "app1", 7_000, 7_010),
            op(Role::User, page, "u4", "app2", 9_990, 10_200),
            op(Role::Agent, OpKind::CONNECT, "a1", "app1", 1_000, 1_001),
            op(Role::Agent, OpKind::CONNECT, "a2", "app1", 1_000, 1_001),
            op(Role::Agent, OpKind::DISCONNECT, "a2", "app1", 5_000, 5_001),
            kill("app1", 10_000),
        ];
        let h = &hits(&events)[0];
        assert_eq!(h.served_before, 1, "u1 only: u3 is older than a second");
        assert_eq!(h.agents_connected, 1, "a2 left before the kill");
        assert_eq!(h.users_in_flight, 1);
    }

    #[test]
    fn a_kill_of_an_idle_node_hit_nothing() {
        let events = [
            op(Role::User, OpKind::new("page"), "u1", "app2", 9_000, 9_010),
            kill("app1", 10_000),
        ];
        let h = &hits(&events)[0];
        assert_eq!(
            (h.served_before, h.agents_connected, h.users_in_flight),
            (0, 0, 0)
        );
    }
}
