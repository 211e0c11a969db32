//! Histories for the checks' unit tests.

use crate::clock::Stamp;
use hadrill_model::{Event, Fault, FaultRecord, OpKind, OpRecord, Outcome, Role};

/// An agent's operation at `ms`, keyed by the agent's name.
pub fn agent_op(
    kind: OpKind,
    agent: &str,
    ms: u64,
    outcome: Outcome,
    value: Option<&str>,
) -> Event {
    Event::Op(OpRecord {
        id: ms,
        client: agent.into(),
        role: Role::Agent,
        kind,
        key: Some(agent.into()),
        value: value.map(str::to_string),
        invoke: Stamp(ms * 1_000_000),
        complete: Stamp(ms * 1_000_000 + 1_000_000),
        outcome,
        error: None,
        status: None,
        node: None,
        version: None,
    })
}

/// A fault on `node` at `at_ms` that took 1 ms and succeeded.
pub fn fault_on(node: &str, id: u64, kind: Fault, at_ms: u64) -> Event {
    Event::Fault(FaultRecord::applied(
        id,
        kind,
        &[node],
        Stamp(at_ms * 1_000_000),
        Stamp(at_ms * 1_000_000 + 1_000_000),
    ))
}

pub fn kill(node: &str) -> Fault {
    Fault::Kill {
        targets: vec![node.into()],
    }
}

/// A user's operation (a probe's, for `OpKind::PROBE`) at `at_ms` that took 5 ms.
pub fn op(id: u64, kind: OpKind, at_ms: u64, outcome: Outcome) -> OpRecord {
    OpRecord {
        id,
        client: if kind == OpKind::PROBE {
            "probe".into()
        } else {
            "user-0".into()
        },
        role: if kind == OpKind::PROBE {
            Role::Probe
        } else {
            Role::User
        },
        kind,
        key: None,
        value: None,
        invoke: Stamp(at_ms * 1_000_000),
        complete: Stamp(at_ms * 1_000_000 + 5_000_000),
        outcome,
        error: (outcome != Outcome::Ok).then(|| "HTTP 503".into()),
        status: None,
        node: None,
        version: None,
    }
}
