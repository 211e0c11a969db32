//! Operations and faults as a run records them, on the run's clock.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::fault::Fault;
use crate::stamp::Stamp;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    Fault(FaultRecord),
    Op(OpRecord),
    /// The run stopped injecting before its script ended (an abort condition, or Ctrl-C).
    Abort(AbortRecord),
}

/// When and why a run stopped injecting faults.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AbortRecord {
    pub at: Stamp,
    pub reason: String,
}

/// One client operation: what was asked, when, and what came of it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OpRecord {
    pub id: u64,
    /// `user-3`, `probe`, `verifier`…
    pub client: String,
    pub role: Role,
    pub kind: OpKind,
    /// What the operation is about, e.g. a trace id or a user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// What it wrote or read, e.g. a SHA-256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub invoke: Stamp,
    pub complete: Stamp,
    /// `ok`: it happened; `fail`: it certainly did not; `unknown`: it may have (timeout, a
    /// connection dropped after the request was sent, a 502/504 from the load balancer).
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The protocol's status of the answer (an HTTP status), when there was one: a request
    /// answered 404 or with the wrong body was served, though it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The node that answered (e.g. named by a response header), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The product release that answered (e.g. named by a response header), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// The error `classify::http` records for an HTTP 401: the system refused the operation for
/// want of valid credentials (a session or token it does not accept).
pub const UNAUTHORIZED: &str = "HTTP 401";

impl OpRecord {
    /// Refused for want of valid credentials.
    pub fn is_unauthorized(&self) -> bool {
        self.outcome == Outcome::Fail && self.error.as_deref() == Some(UNAUTHORIZED)
    }
}

/// What an operation is, named by the workload that made it. Open: a workload adds its own
/// kinds (`OpKind::new("checkout")`) without touching the model; the constants below are the
/// kinds hadrill's generic workloads, probes and observers record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(transparent)]
pub struct OpKind(Cow<'static, str>);

impl OpKind {
    pub const fn new(name: &'static str) -> OpKind {
        OpKind(Cow::Borrowed(name))
    }

    /// A kind named at run time, e.g. from a scenario file.
    pub fn named(name: impl Into<String>) -> OpKind {
        OpKind(Cow::Owned(name.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The availability probe: a read a user makes, through the entry point.
    pub const PROBE: OpKind = OpKind::new("probe");
    /// A liveness URL (does a process answer?), probed beside the availability probe and
    /// reported apart: it never decides availability.
    pub const LIVENESS: OpKind = OpKind::new("liveness");
    /// After the run: is an acknowledged write still there, identical?
    pub const VERIFY: OpKind = OpKind::new("verify");
    /// A SQL client inserts a unique key through the routed endpoint (the set workload).
    pub const INSERT: OpKind = OpKind::new("insert");
    /// A SQL client reads keys it was acknowledged back through the routed endpoint.
    pub const READ_BACK: OpKind = OpKind::new("read-back");
    /// A write sent to one database node directly (key: the node; value: the probe round),
    /// to catch two nodes accepting writes at once.
    pub const WRITE_PROBE: OpKind = OpKind::new("write-probe");
    /// An observer saw a database member's role change (key: node; value: role).
    pub const ROLE: OpKind = OpKind::new("role");
    /// An observer saw the leader key change (value: holder, or `none`).
    pub const LEADER: OpKind = OpKind::new("leader");
    /// The primary's live replication state before the faults (key: what the topology
    /// promises, `synchronous` or `asynchronous`; value: each standby's `name state
    /// sync_state`, `; `-separated, or `none streaming`).
    pub const REPLICATION: OpKind = OpKind::new("replication");
    /// An agent connected to a node (key: agent name; node: the node that welcomed it).
    pub const CONNECT: OpKind = OpKind::new("connect");
    /// An agent's connection dropped (key: agent name; node: where it was; error: why).
    pub const DISCONNECT: OpKind = OpKind::new("disconnect");

    /// One of `kinds`.
    pub fn is_any(&self, kinds: &[OpKind]) -> bool {
        kinds.contains(self)
    }
}

impl std::fmt::Display for OpKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a client is for, so checks choose operations by purpose, not by name.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Acts as a user of the product would: its requests are what users see.
    User,
    /// Measures availability or liveness at a fixed rate.
    Probe,
    /// Records facts about the system (roles, leader, synced files) without acting on it.
    Observer,
    /// Reads the final state after the run.
    Verifier,
    /// A simulated agent of a master/worker cluster.
    Agent,
}

/// Who made an operation: its name in the history and its role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor<'a> {
    pub role: Role,
    pub name: &'a str,
}

impl Role {
    /// This role, for the client called `name`.
    pub fn named(self, name: &str) -> Actor<'_> {
        Actor { role: self, name }
    }
}

/// One fault as it was applied: what, to whom, when it started and when it took effect.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FaultRecord {
    pub id: u64,
    pub fault: Fault,
    /// The nodes that were acted on, after resolving groups and selectors.
    pub nodes: Vec<String>,
    pub start: Stamp,
    pub end: Stamp,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Facts observed while applying it, e.g. a stopped process's exit code.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// What each target held just before the fault, as its topology's `in_flight` command
    /// listed it (jobs a worker was processing, …): what the fault hit. Only targets that
    /// have such a command appear.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub held: BTreeMap<String, Vec<String>>,
    /// Targets whose `in_flight` command failed, and why: what they held is unknown.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub held_unknown: BTreeMap<String, String>,
    /// What the step meant the fault to hit (`when` in the scenario file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aim: Option<Aim>,
}

impl FaultRecord {
    /// A fault applied to `nodes` from `start` to `end` that succeeded, with nothing else
    /// recorded: how a test or a user's own history states one.
    pub fn applied(id: u64, fault: Fault, nodes: &[&str], start: Stamp, end: Stamp) -> FaultRecord {
        FaultRecord {
            id,
            fault,
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
            start,
            end,
            outcome: Outcome::Ok,
            error: None,
            notes: Vec::new(),
            held: BTreeMap::new(),
            held_unknown: BTreeMap::new(),
            aim: None,
        }
    }
}

/// A step's `when`: fire once each target holds at least `in_flight` items and at least
/// `agents` agents are connected to the targets. `waited_ms` is how long it waited and `met`
/// whether the aim was reached (the fault fires either way, and the exercise check judges it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Aim {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agents: Option<usize>,
    pub waited_ms: u64,
    pub met: bool,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Fail,
    Unknown,
}

/// How one exchange with the system ended, classified honestly by the client that made it: a
/// request that may have been processed is `unknown`, never `fail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    pub outcome: Outcome,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub node: Option<String>,
    pub version: Option<String>,
}

impl Exchange {
    /// It took effect, no more said.
    pub const OK: Exchange = Exchange {
        outcome: Outcome::Ok,
        status: None,
        error: None,
        node: None,
        version: None,
    };
}

pub fn faults(events: &[Event]) -> Vec<FaultRecord> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Fault(f) => Some(f.clone()),
            _ => None,
        })
        .collect()
}

pub fn ops(events: &[Event]) -> Vec<OpRecord> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Op(o) => Some(o.clone()),
            _ => None,
        })
        .collect()
}

/// The run's abort, if it stopped injecting early.
pub fn abort(events: &[Event]) -> Option<&AbortRecord> {
    events.iter().find_map(|e| match e {
        Event::Abort(a) => Some(a),
        _ => None,
    })
}
