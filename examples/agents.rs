//! Agents of a user's own protocol: each holds a connection to a Redis and pings it; when the
//! connection drops it dials again until it is back. hadrill knows nothing of this protocol:
//! its reconnection check judges these agents from their `connect` and `disconnect` records,
//! as it judges the reference cluster's.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use hadrill::classify::tcp;
use hadrill::workload::Context;
use hadrill::workload::redis::connect;
use hadrill::{Exchange, OpKind, Role, Workload};
use redis::aio::MultiplexedConnection;

/// How often an agent pings, and how long it waits for a connection or an answer.
const PING_EVERY: Duration = Duration::from_millis(100);
const TIMEOUT: Duration = Duration::from_secs(1);
/// Bounds on an agent's dials and on the pings of one connection, whatever the run's length.
const MAX_DIALS: usize = 10_000;
const MAX_PINGS: usize = 100_000;

pub struct PingAgents {
    /// The node and container port of the Redis the agents hold connections to.
    pub node: &'static str,
    pub port: u16,
    pub agents: usize,
    /// Whether an agent dials again once its connection dropped. `false` is the defect of an
    /// agent with no retry loop, which the reconnection check must catch.
    pub reconnects: bool,
}

impl Workload for PingAgents {
    fn name(&self) -> &str {
        "ping-agents"
    }

    fn agents(&self) -> bool {
        true
    }

    fn run(self: Arc<Self>, ctx: Context) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..self.agents {
                let (a, ctx) = (self.clone(), ctx.clone());
                tasks.spawn(async move { a.agent(ctx, format!("agent-{i}")).await });
            }
            while tasks.join_next().await.is_some() {}
        })
    }
}

impl PingAgents {
    /// Dials, holds the connection while it answers, and records both ends of it.
    async fn agent(&self, ctx: Context, name: String) {
        let note = |kind, invoke, ex| {
            let me = Role::Agent.named(&name);
            ctx.record(me, kind, Some(name.clone()), None, invoke, ex);
        };
        for _ in 0..MAX_DIALS {
            let invoke = ctx.now();
            let mut conn = match connect(&ctx, self.node, self.port, TIMEOUT).await {
                Ok(conn) => {
                    let on = Exchange {
                        node: Some(self.node.to_string()),
                        ..Exchange::OK
                    };
                    note(OpKind::CONNECT, invoke, on);
                    conn
                }
                Err(e) => {
                    note(OpKind::CONNECT, invoke, tcp(&e));
                    tokio::select! {
                        _ = ctx.stopped() => return,
                        _ = tokio::time::sleep(PING_EVERY) => continue,
                    }
                }
            };
            let Some(why) = hold(&ctx, &mut conn).await else {
                return;
            };
            let dropped = Exchange {
                error: Some(why),
                ..Exchange::OK
            };
            note(OpKind::DISCONNECT, ctx.now(), dropped);
            if !self.reconnects {
                return;
            }
        }
    }
}

/// Pings until the connection fails (and says why) or the run stops (`None`).
async fn hold(ctx: &Context, conn: &mut MultiplexedConnection) -> Option<String> {
    let mut tick = tokio::time::interval(PING_EVERY);
    for _ in 0..MAX_PINGS {
        tokio::select! {
            _ = ctx.stopped() => return None,
            _ = tick.tick() => {}
        }
        if let Err(e) = redis::cmd("PING").query_async::<String>(conn).await {
            return Some(e.to_string());
        }
    }
    None
}
