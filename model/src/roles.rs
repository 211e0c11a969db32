//! Facts observers publish into the history: each database member's role as last seen.

use std::collections::BTreeMap;

use crate::op::{Event, OpKind, ops};

/// The role recorded for a member whose REST API does not answer.
pub const UNREACHABLE: &str = "unreachable";

/// Patroni 3.0 says `master`; later versions `primary`.
pub fn is_primary(role: &str) -> bool {
    matches!(role, "primary" | "master")
}

/// Each member's role as last observed in `events`.
pub fn last_roles(events: &[Event]) -> BTreeMap<String, String> {
    let mut roles = BTreeMap::new();
    for o in ops(events) {
        if o.kind == OpKind::ROLE
            && let (Some(k), Some(v)) = (o.key, o.value)
        {
            roles.insert(k, v);
        }
    }
    roles
}
