//! What a workload, an observer or a client sees of the run.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::client::{Answer, Client, Op};
use crate::clock::Stamp;
use crate::node::Node;
use crate::run::RunError;
use crate::shared::{Shared, record};
use crate::topology::Topology;
use hadrill_model::{Actor, Event, Exchange, OpKind, OpRecord};

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

    /// Every node of the run, in name order.
    pub fn nodes(&self) -> Vec<Node> {
        Node::all(&self.shared)
    }

    /// The run's topology, e.g. to resolve a group of nodes.
    pub fn topology(&self) -> &Topology {
        &self.shared.topology
    }

    /// Everything recorded so far, in order.
    pub fn events(&self) -> Vec<Event> {
        self.shared.history.events()
    }

    /// Whether every operation `of` interest answered in the last `hadrill_model::QUIET`
    /// succeeded, and one was (`hadrill_model::steady`): what a workload's `settled` asks.
    pub fn steady(&self, of: impl Fn(&OpRecord) -> bool) -> bool {
        let now = self.now();
        self.shared
            .history
            .read(|events| hadrill_model::steady(events, of, now, hadrill_model::QUIET))
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

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The token that stops the workload, for its clients to watch.
    pub(crate) fn stop_token(&self) -> &CancellationToken {
        &self.stop
    }

    /// Invokes `op` through `client` as `actor` and records it: invoked now, completed when
    /// the client answers, with the value it wrote, or else the value it read.
    pub async fn invoke(&self, actor: Actor<'_>, client: &dyn Client, op: Op) -> Answer {
        let invoke = self.now();
        let answer = client.invoke(&op).await;
        let value = op.value.or_else(|| answer.read.clone());
        self.record(
            actor,
            op.kind,
            op.key,
            value,
            invoke,
            answer.exchange.clone(),
        );
        answer
    }

    pub fn is_stopped(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Resolves when the workload must stop.
    pub async fn stopped(&self) {
        self.stop.cancelled().await
    }
}
