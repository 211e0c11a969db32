//! Operations and faults as a run records them, on the run's clock.

use serde::{Deserialize, Serialize};

use crate::clock::Stamp;
use crate::model::fault::Fault;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    Fault(FaultRecord),
    Op(OpRecord),
}

/// One client operation: what was asked, when, and what came of it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OpRecord {
    pub id: u64,
    /// `user-3`, `probe`, `verifier`…
    pub client: String,
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
    /// The node that answered (`X-Served-By`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum OpKind {
    Login,
    Upload,
    Read,
    Session,
    /// The availability probe: a read a user makes, through the entry point.
    Probe,
    /// A liveness URL (does a process answer?), probed beside the availability probe and
    /// reported apart: it never decides availability.
    Liveness,
    /// After the run: is an acknowledged upload still there, identical?
    Verify,
    /// After a secret rotation: is a cookie from before it rejected by an app server?
    OldSession,
    /// A SQL client inserts a unique key through the routed endpoint (the set workload).
    Insert,
    /// A SQL client reads keys it was acknowledged back through the routed endpoint.
    ReadBack,
    /// A write sent to one database node directly (key: the node; value: the probe round),
    /// to catch two nodes accepting writes at once.
    WriteProbe,
    /// The cluster observer saw a database member's role change (key: node; value: role).
    Role,
    /// The cluster observer saw the leader key change (value: holder, or `none`).
    Leader,
    /// An agent enrolled (key: agent name; value: its id).
    Enroll,
    /// An agent connected to a node (key: agent name; node: the node that welcomed it).
    Connect,
    /// An agent's connection dropped (key: agent name; node: where it was; error: why).
    Disconnect,
    /// An agent event acknowledged by a node (key: `<agent id>/<seq>`).
    Event,
    /// The digest of a cluster node's synced files changed (key: node; value: digest).
    Files,
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
pub struct Exchange {
    pub outcome: Outcome,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub node: Option<String>,
}

pub fn faults(events: &[Event]) -> Vec<FaultRecord> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Fault(f) => Some(f.clone()),
            Event::Op(_) => None,
        })
        .collect()
}

pub fn ops(events: &[Event]) -> Vec<OpRecord> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Op(o) => Some(o.clone()),
            Event::Fault(_) => None,
        })
        .collect()
}
