//! Clients: one operation on the system at a time, and how it ended by the honesty rules of
//! `crate::classify` (`ok` when it took effect, `fail` only when it certainly did not,
//! `unknown` when it may have). A workload decides what to do; its client does it; the
//! context records it (`Context::invoke`), so every operation is timed and kept the same way.

use futures_util::future::BoxFuture;

use hadrill_model::{Exchange, OpKind};

/// One operation to invoke: its kind, what it is about, and what it writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    pub kind: OpKind,
    pub key: Option<String>,
    pub value: Option<String>,
}

impl Op {
    /// A write of `value` under `key`.
    pub fn write(kind: OpKind, key: impl Into<String>, value: impl Into<String>) -> Op {
        Op {
            kind,
            key: Some(key.into()),
            value: Some(value.into()),
        }
    }

    /// A read of `key`.
    pub fn read(kind: OpKind, key: impl Into<String>) -> Op {
        Op {
            kind,
            key: Some(key.into()),
            value: None,
        }
    }
}

/// How an operation ended, and the value it read (if it read one).
#[derive(Debug, Clone)]
pub struct Answer {
    pub exchange: Exchange,
    pub read: Option<String>,
}

impl Answer {
    /// An operation that ended as `exchange` and read nothing.
    pub fn of(exchange: Exchange) -> Answer {
        Answer {
            exchange,
            read: None,
        }
    }
}

/// A client of the system: invokes one operation and says how it ended, classified by the
/// rules in `crate::classify` (HTTP, SQL and TCP each have theirs).
pub trait Client: Send + Sync {
    fn invoke<'a>(&'a self, op: &'a Op) -> BoxFuture<'a, Answer>;
}
