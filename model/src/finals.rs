//! What a database tier holds after a run (its final read), as the generic checks judge it.

use serde::{Deserialize, Serialize};

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

/// The name under which the SQL workload's final read is kept.
pub const SQL_READ: &str = "sql";

/// What the database holds after the run: the SQL workload's keys and its cluster.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SqlFinal {
    /// Keys of the set table, read through the routed endpoint; `None` if it could not be read.
    pub keys: Option<std::collections::BTreeSet<String>>,
    pub cluster: ClusterFinal,
}

/// What a store holds after the run, as a workload with writes reads it back for the
/// continuity check: each key it holds → the value it holds (as the workload recorded the
/// value when writing, e.g. a digest), and the keys whose read-back could not decide
/// (refused, timed out) with why: those are neither verified nor lost.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct StoreRead {
    pub held: std::collections::BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub unreadable: std::collections::BTreeMap<String, String>,
}

impl<'de> Deserialize<'de> for StoreRead {
    /// Either shape: `{ "held": {…}, "unreadable": {…} }`, or a plain map of key → value (what
    /// a workload that reads every key for certain saves).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            held: std::collections::BTreeMap<String, String>,
            #[serde(default)]
            unreadable: std::collections::BTreeMap<String, String>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Shape {
            Full(Full),
            Plain(std::collections::BTreeMap<String, String>),
        }
        Ok(match Shape::deserialize(d)? {
            Shape::Full(f) => StoreRead {
                held: f.held,
                unreadable: f.unreadable,
            },
            Shape::Plain(held) => StoreRead {
                held,
                unreadable: Default::default(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::StoreRead;

    #[test]
    fn a_store_read_is_a_plain_map_or_held_and_unreadable() {
        let plain: StoreRead = serde_json::from_str(r#"{"a": "1"}"#).unwrap();
        assert_eq!(plain.held["a"], "1");
        let full: StoreRead =
            serde_json::from_str(r#"{"held": {"a": "1"}, "unreadable": {"b": "HTTP 503"}}"#)
                .unwrap();
        assert_eq!(
            (full.held.len(), full.unreadable["b"].as_str()),
            (1, "HTTP 503")
        );
        let back: StoreRead = serde_json::from_value(serde_json::to_value(&full).unwrap()).unwrap();
        assert_eq!(back, full);
    }
}
