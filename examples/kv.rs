//! A workload of a user's own for a product hadrill has never seen: clients that write unique
//! keys into a Redis and a probe that reads through it, each operation recorded with an honest
//! outcome; after the run, the keys the store holds.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use hadrill::classify::{self, TcpFailure};
use hadrill::model::Read;
use hadrill::workload::{Context, held};
use hadrill::{Exchange, OpKind, Outcome, Role, Workload};
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
        let addr = ctx
            .node(self.node)
            .map_err(|e| TcpFailure::NotSent(e.to_string()))?
            .host_addr(self.port)
            .ok_or_else(|| {
                TcpFailure::NotSent(format!("{} publishes no port {}", self.node, self.port))
            })?;
        let client = redis::Client::open(format!("redis://{addr}/"))
            .map_err(|e| TcpFailure::NotSent(e.to_string()))?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Duration::from_secs(1))
            .set_response_timeout(Duration::from_secs(1));
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| TcpFailure::NotSent(format!("connect: {e}")))
    }
}

/// Redis's errors by the honesty rules: an error reply is the server refusing the command;
/// anything else after the command was sent (a dropped connection, a timeout) may follow its
/// execution.
fn failure(e: &redis::RedisError) -> TcpFailure {
    if e.is_connection_refusal() {
        TcpFailure::NotSent(e.to_string())
    } else if e.kind() == redis::ErrorKind::IoError || e.is_timeout() || e.is_connection_dropped() {
        TcpFailure::Lost(e.to_string())
    } else {
        TcpFailure::Refused(e.to_string())
    }
}

fn ok() -> Exchange {
    Exchange {
        outcome: Outcome::Ok,
        status: None,
        error: None,
        node: None,
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
    /// Writes `kv:<client>:<n>` = a fresh value, at the configured rate, until told to stop;
    /// a client whose connection failed opens a new one.
    async fn client(&self, ctx: Context, index: usize) {
        let name = format!("kv-{index}");
        let mut conn: Option<MultiplexedConnection> = None;
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / self.rate));
        for n in 0u64..100_000 {
            tokio::select! {
                _ = ctx.stopped() => return,
                _ = tick.tick() => {}
            }
            let key = format!("kv:{index}:{n}");
            let invoke = ctx.now();
            // Unique to this write, so a store that kept another write's value is caught.
            let value = format!("{key}@{}", invoke.0);
            let result = match conn.as_mut() {
                Some(c) => c
                    .set::<_, _, ()>(&key, &value)
                    .await
                    .map_err(|e| failure(&e)),
                None => match self.connect(&ctx).await {
                    Ok(mut c) => {
                        let r = c
                            .set::<_, _, ()>(&key, &value)
                            .await
                            .map_err(|e| failure(&e));
                        conn = Some(c);
                        r
                    }
                    Err(e) => Err(e),
                },
            };
            let ex = match &result {
                Ok(()) => ok(),
                Err(e) => {
                    conn = None;
                    classify::tcp(e)
                }
            };
            ctx.record(
                Role::User.named(&name),
                SET,
                Some(key),
                Some(value),
                invoke,
                ex,
            );
        }
    }

    /// Reads through the store at 20 Hz: the availability probe.
    async fn probe(&self, ctx: Context) {
        let mut conn: Option<MultiplexedConnection> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        for _ in 0..100_000 {
            tokio::select! {
                _ = ctx.stopped() => return,
                _ = tick.tick() => {}
            }
            let invoke = ctx.now();
            if conn.is_none() {
                conn = self.connect(&ctx).await.ok();
            }
            let ex = match conn.as_mut() {
                Some(c) => match c.get::<_, Option<String>>("kv:0:0").await {
                    Ok(_) => ok(),
                    Err(e) => {
                        conn = None;
                        classify::tcp(&failure(&e))
                    }
                },
                None => classify::tcp(&TcpFailure::NotSent("cannot connect".into())),
            };
            ctx.record(
                Role::Probe.named("kv-probe"),
                OpKind::PROBE,
                None,
                None,
                invoke,
                ex,
            );
        }
    }
}
