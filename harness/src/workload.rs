//! Workloads drive a system and record every operation with its outcome; nothing is judged
//! here. hadrill's own generic one is the SQL clients (`sql`); the reference product's web
//! users live with its plug-in (`crate::reference`); a user's crate adds its own by
//! implementing `Workload`.
//!
//! A workload is bounded in operations and time and stops when told to.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::clock::Stamp;
use crate::node::Node;
use crate::run::RunError;
use crate::shared::{Shared, record};
use hadrill_model::{Actor, Exchange, OpKind};

pub mod sql;

/// A workload of a user's own: its clients act on the system through the nodes' published
/// ports and record each operation through the context, honestly classified (see
/// `crate::classify`); its final read says what the system holds after the run, so hadrill's
/// generic continuity check can say whether any acknowledged write was lost.
pub trait Workload: Send + Sync + 'static {
    /// Its name in the scenario text and the report.
    fn name(&self) -> &str;

    /// The availability probe's frequency, if the workload records `OpKind::PROBE`
    /// operations (role `Probe`) for the availability check to judge; `None`: it does not.
    fn probe_hz(&self) -> Option<f64> {
        None
    }

    /// Drives the system until `ctx.stopped()` resolves.
    fn run(self: Arc<Self>, ctx: Context) -> BoxFuture<'static, ()>;

    /// The kind of its writes, if it makes writes whose acknowledgement must survive the run:
    /// the continuity check then holds them against `final_read`. `None`: it makes none.
    fn write_kind(&self) -> Option<OpKind> {
        None
    }

    /// After the run, while the topology is still up: each key the store holds and the value
    /// it holds (as the workload recorded values when writing, e.g. a digest), or why it
    /// could not be read. Called only when `write_kind` is `Some`.
    fn final_read(self: Arc<Self>, ctx: Context) -> BoxFuture<'static, FinalRead> {
        let _ = ctx;
        Box::pin(async { Err("this workload has no final read".to_string()) })
    }
}

/// What a workload's final read found: key → value, or why it could not be read.
pub type FinalRead = Result<std::collections::BTreeMap<String, String>, String>;

/// What a workload sees of the run: its nodes, its secrets, the clock and the history.
#[derive(Clone)]
pub struct Context {
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl Context {
    pub(crate) fn new(shared: Arc<Shared>, stop: CancellationToken) -> Context {
        Context { shared, stop }
    }

    /// A node of the run, e.g. to find the host address of one of its published ports.
    pub fn node(&self, name: &str) -> Result<Node, RunError> {
        Node::find(&self.shared, name).ok_or_else(|| RunError::NoSuchNode(name.to_string()))
    }

    /// A secret the topology generated for this run (e.g. a database password). Never
    /// record it: every artifact is redacted of it, but the history is evidence.
    pub fn secret(&self, name: &str) -> Option<String> {
        self.shared.secret(name)
    }

    /// Now, on the run's clock: an operation's invocation time.
    pub fn now(&self) -> Stamp {
        self.shared.clock.now()
    }

    /// Records an operation invoked at `invoke` that ended now, as `ex` says.
    pub fn record(
        &self,
        client: Actor<'_>,
        kind: OpKind,
        key: Option<String>,
        value: Option<String>,
        invoke: Stamp,
        ex: Exchange,
    ) {
        record(&self.shared, client, kind, key, value, invoke, ex);
    }

    pub fn is_stopped(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Resolves when the workload must stop.
    pub async fn stopped(&self) {
        self.stop.cancelled().await
    }
}
