//! Observers: facts over time (roles, the leader, a virtual IP's holder) for the checks and
//! the fault selectors.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use crate::clock::Stamp;
use crate::context::Context;
use hadrill_model::{Exchange, OpKind, Role};

/// An observer watches the system and records facts over time as operations of role
/// `Observer`: each database member's role (`OpKind::ROLE`, key: the node, value: its role),
/// the leader or the holder of a virtual IP (`OpKind::LEADER`). Checks read those facts from
/// the history (single primary, failover), and so do fault selectors: `@primary` and
/// `@standby` pick from the last `ROLE` facts, whoever recorded them, so fault execution never
/// names a failover manager. hadrill's Patroni observer is one; a user's crate adds one for
/// another manager (`Drill::observer`).
pub trait Observer: Send + Sync + 'static {
    /// The client name its facts are recorded under.
    fn name(&self) -> &str;

    /// Records facts until `ctx.stopped()` resolves (`Facts` records each when it changes).
    fn observe(self: Arc<Self>, ctx: Context) -> BoxFuture<'static, ()>;
}

/// What an observer has recorded, so that each fact is recorded when it changes, not on every
/// poll.
pub struct Facts {
    observer: String,
    last: BTreeMap<(OpKind, Option<String>), String>,
}

impl Facts {
    pub fn new(observer: &str) -> Facts {
        Facts {
            observer: observer.to_string(),
            last: Default::default(),
        }
    }

    /// Records that `kind` of `key` (e.g. the role of a node) is now `value`, if that is new;
    /// `invoke`: when the poll that saw it was sent.
    pub fn saw(
        &mut self,
        ctx: &Context,
        kind: OpKind,
        key: Option<&str>,
        value: &str,
        invoke: Stamp,
    ) {
        let slot = (kind.clone(), key.map(str::to_string));
        if self.last.get(&slot).map(String::as_str) == Some(value) {
            return;
        }
        self.last.insert(slot, value.to_string());
        let ok = Exchange {
            node: key.map(str::to_string),
            ..Exchange::OK
        };
        ctx.record(
            Role::Observer.named(&self.observer),
            kind,
            key.map(str::to_string),
            Some(value.to_string()),
            invoke,
            ok,
        );
    }
}
