//! A workload of a user's own for a product hadrill has never seen: clients that write unique
//! keys into a Redis and a probe that reads through it, each operation recorded with an honest
//! outcome; after the run, the keys the store holds.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use hadrill::classify::TcpFailure;
use hadrill::model::Read;
use hadrill::model::UNREACHABLE;
use hadrill::workload::redis::{RedisClient, connect};
use hadrill::workload::{Context, Facts, Op, held};
use hadrill::{Observer, OpKind, Role, Workload};
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;

/// The kind of the writes whose acknowledgement must survive the run.
pub const SET: OpKind = OpKind::new("set");

pub struct KvWorkload {
    /// The node and container port of the store.
    pub node: &'static str,
    pub port: u16,
    pub clients: usize,
    /// Writes per second per client.
    pub rate: f64,
}

impl KvWorkload {
    async fn connect(&self, ctx: &Context) -> Result<MultiplexedConnection, TcpFailure> {
        connect(ctx, self.node, self.port, Duration::from_secs(1)).await
    }
}

impl Workload for KvWorkload {
    fn name(&self) -> &str {
        "kv"
    }

    fn probe_hz(&self) -> Option<f64> {
        Some(20.0)
    }

    fn write_kind(&self) -> Option<OpKind> {
        Some(SET)
    }

    fn run(self: Arc<Self>, ctx: Context) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..self.clients {
                let (w, ctx) = (self.clone(), ctx.clone());
                tasks.spawn(async move { w.client(ctx, i).await });
            }
            let (w, ctx) = (self.clone(), ctx.clone());
            tasks.spawn(async move { w.probe(ctx).await });
            while tasks.join_next().await.is_some() {}
        })
    }

    fn final_read(self: Arc<Self>, ctx: Context) -> BoxFuture<'static, Read> {
        Box::pin(async move {
            let mut c = self.connect(&ctx).await.map_err(|e| e.to_string())?;
            let keys: Vec<String> = c.keys("kv:*").await.map_err(|e| e.to_string())?;
            let mut map = BTreeMap::new();
            for k in keys {
                let v: String = c.get(&k).await.map_err(|e| e.to_string())?;
                map.insert(k, v);
            }
            held(map)
        })
    }
}

impl KvWorkload {
    /// Writes `kv:<client>:<n>` = a fresh value, at the configured rate, until told to stop.
    async fn client(&self, ctx: Context, index: usize) {
        let name = format!("kv-{index}");
        let client = RedisClient::new(&ctx, self.node, self.port);
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / self.rate));
        for n in 0u64..100_000 {
            tokio::select! {
                _ = ctx.stopped() => return,
                _ = tick.tick() => {}
            }
            let key = format!("kv:{index}:{n}");
            // Unique to this write, so a store that kept another write's value is caught.
            let value = format!("{key}@{}", ctx.now().0);
            let op = Op::write(SET, key, value);
            ctx.invoke(Role::User.named(&name), &client, op).await;
        }
    }

    /// Reads through the store at 20 Hz: the availability probe.
    async fn probe(&self, ctx: Context) {
        let client = RedisClient::new(&ctx, self.node, self.port);
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        for _ in 0..100_000 {
            tokio::select! {
                _ = ctx.stopped() => return,
                _ = tick.tick() => {}
            }
            let op = Op::read(OpKind::PROBE, "kv:0:0");
            ctx.invoke(Role::Probe.named("kv-probe"), &client, op).await;
        }
    }
}

/// The stores' replication roles as facts (`INFO replication`: `role:master` or
/// `role:slave`): a failover arrangement hadrill does not know, observed from the user's
/// crate, so `@primary` picks whichever store says it is the master.
pub struct KvRoles {
    pub nodes: Vec<&'static str>,
    pub port: u16,
}

impl Observer for KvRoles {
    fn name(&self) -> &str {
        "kv-roles"
    }

    fn observe(self: Arc<Self>, ctx: Context) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let mut facts = Facts::new(self.name());
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            for _ in 0..100_000 {
                tokio::select! {
                    _ = ctx.stopped() => return,
                    _ = tick.tick() => {}
                }
                for node in &self.nodes {
                    let invoke = ctx.now();
                    let role = match connect(&ctx, node, self.port, Duration::from_secs(1)).await {
                        Ok(mut c) => redis::cmd("INFO")
                            .arg("replication")
                            .query_async::<String>(&mut c)
                            .await
                            .ok()
                            .and_then(|info| {
                                info.lines()
                                    .find_map(|l| l.strip_prefix("role:"))
                                    .map(|r| r.trim().to_string())
                            }),
                        Err(_) => None,
                    };
                    let role = role.unwrap_or_else(|| UNREACHABLE.to_string());
                    facts.saw(&ctx, OpKind::ROLE, Some(node), &role, invoke);
                }
            }
        })
    }
}
