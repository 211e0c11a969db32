//! What a system holds after a run (its final reads), as the checks judge it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What the system holds after the run, read through the product and its database.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FinalState {
    /// Every trace row: id → recorded SHA-256.
    pub rows: BTreeMap<i64, String>,
    /// Per row: what reading its content gave.
    pub content: BTreeMap<i64, Content>,
    /// Per row: results written (0 or 1) and attempts made by workers.
    pub analyses: BTreeMap<i64, Analysed>,
    /// The historian's roll-up slots, in order, and the slot current at the final read.
    pub rollup_slots: Vec<i64>,
    pub current_slot: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Content {
    Identical,
    Differs,
    Missing,
    Unreadable(String),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Analysed {
    pub results: u32,
    pub attempts: u32,
}

/// What a member's REST API says about it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MemberStatus {
    pub role: String,
    pub state: String,
    pub timeline: Option<i64>,
    /// Primary: WAL written; replica: WAL replayed (bytes).
    pub wal_position: Option<i64>,
    pub replication_state: Option<String>,
    /// Holds the virtual IP (status endpoints of keepalived pairs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vip: Option<bool>,
}

/// One member after the run, for the replica-health check.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MemberFinal {
    pub name: String,
    /// The container was running at the final read.
    pub running: bool,
    /// The script's last fault on this node stopped it and nothing started it again.
    pub left_down: bool,
    pub status: Option<MemberStatus>,
    /// Keys of the set table on this member, and a digest of them, read on it directly.
    pub keys: Option<i64>,
    pub digest: Option<String>,
    /// Lines of the member's log showing pg_rewind ran.
    pub rewind_lines: Vec<String>,
}

/// The cluster after the run: polled until one primary and every running replica on its
/// timeline with nothing left to replay, or `timeout`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClusterFinal {
    pub members: Vec<MemberFinal>,
    /// How long after the workload stopped the cluster converged; `None`: it did not.
    pub converged_after_ms: Option<u64>,
}

/// What the cluster and the store hold at the end, for the checks.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AgentsFinal {
    /// (agent id, seq) → deliveries, from the event store; None if it could not be read.
    pub events: Option<BTreeMap<String, i32>>,
    /// The agents' own view: agent name → node, just before the read.
    pub connections: BTreeMap<String, Option<String>>,
    /// The master's view: agent name → (status, node), and n_active_agents per node.
    pub master_agents: Option<BTreeMap<String, (String, Option<String>)>>,
    pub n_active: BTreeMap<String, u64>,
    /// How long until the master's view matched the agents' (None: it never did).
    pub status_converged_ms: Option<u64>,
    /// After the agents stopped (no more enrolments changing the registry): how long until
    /// every running node held the master's files (None: not within the timeout).
    pub files_in_sync_ms: Option<u64>,
}

/// The master's view agrees with the agents: every connected agent active on its node, every
/// other one not active, and the per-node counts summing to the connected agents.
pub fn status_matches(f: &AgentsFinal) -> bool {
    let Some(master) = &f.master_agents else {
        return false;
    };
    let connected = f.connections.values().filter(|n| n.is_some()).count() as u64;
    f.connections
        .iter()
        .all(|(name, node)| match (node, master.get(name)) {
            (Some(n), Some((status, seen))) => {
                status == "active" && seen.as_deref() == Some(n.as_str())
            }
            (None, Some((status, _))) => status != "active",
            (None, None) => true,
            (Some(_), None) => false,
        })
        && f.n_active.values().sum::<u64>() == connected
}
