//! A workload of a user's own for a product hadrill has never seen: clients that write unique
//! keys into a Redis and a probe that reads through it, each operation recorded with an honest
//! outcome; after the run, the keys the store holds.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use hadrill::classify::{self, TcpFailure};
use hadrill::model::Read;
use hadrill::model::UNREACHABLE;
use hadrill::workload::{Answer, Client, Context, Facts, Op, held};
use hadrill::{Exchange, Observer, OpKind, Outcome, Role, Workload};
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
        connect(ctx, self.node, self.port).await
    }
}

/// A connection to the store on `node`'s published `port`.
async fn connect(
    ctx: &Context,
    node: &str,
    port: u16,
) -> Result<MultiplexedConnection, TcpFailure> {
    let addr = ctx
        .node(node)
        .map_err(|e| TcpFailure::NotSent(e.to_string()))?
        .host_addr(port)
        .ok_or_else(|| TcpFailure::NotSent(format!("{node} publishes no port {port}")))?;
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

/// One connection to the store, opened again after a failure: an operation with a value
/// `SET`s it, one without `GET`s its key.
pub struct RedisClient {
    ctx: Context,
    node: &'static str,
    port: u16,
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
}

impl RedisClient {
    pub fn new(ctx: &Context, node: &'static str, port: u16) -> RedisClient {
        RedisClient {
            ctx: ctx.clone(),
            node,
            port,
            conn: tokio::sync::Mutex::new(None),
        }
    }
}

impl Client for RedisClient {
    fn invoke<'a>(&'a self, op: &'a Op) -> BoxFuture<'a, Answer> {
        Box::pin(async move {
            let mut conn = self.conn.lock().await;
            if conn.is_none() {
                match connect(&self.ctx, self.node, self.port).await {
                    Ok(c) => *conn = Some(c),
                    Err(e) => return Answer::of(classify::tcp(&e)),
                }
            }
            let c = conn.as_mut().expect("connected above");
            let key = op.key.as_deref().unwrap_or_default();
            let result = match &op.value {
                Some(value) => c.set::<_, _, ()>(key, value).await.map(|()| None),
                None => c.get::<_, Option<String>>(key).await,
            };
            match result {
                Ok(read) => Answer {
                    exchange: ok(),
                    read,
                },
                Err(e) => {
                    *conn = None;
                    Answer::of(classify::tcp(&failure(&e)))
                }
            }
        })
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
                    let role = match connect(&ctx, node, self.port).await {
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
