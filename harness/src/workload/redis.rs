//! A declarative Redis workload (`[redis]` in a scenario): writers `SET` fresh keys (or, with
//! `stream`, `XADD` entries to a stream each), a probe `GET`s through the same endpoint, and
//! after the run every write is read back (`GET`, or `XRANGE` of the entry's id), so the
//! generic continuity check holds the acknowledged ones against what the store kept.
//!
//! `RedisClient` is also a drill's to use: a user's crate drives a Redis through it.

use std::time::Duration;

use futures_util::future::BoxFuture;
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use serde::{Deserialize, Serialize};

use super::keyed::{Pace, Store};
use crate::classify::{self, TcpFailure};
use crate::workload::{Answer, Client, Context, Op};
use hadrill_model::{Exchange, OpKind};

/// Between a stream entry's stream and its id, in a write's key (`hadrill:s0#0-17`).
const ENTRY: char = '#';

/// `[redis]` in a scenario.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSpec {
    /// Its name in the report; its final read is kept under it.
    pub name: String,
    /// The node and container port of the endpoint (a Redis, a proxy, a Sentinel-managed
    /// primary's address).
    pub node: String,
    pub port: u16,
    /// Concurrent writers, and their writes per second all together.
    pub clients: usize,
    pub rate: f64,
    /// How often the probe reads: the availability resolution.
    pub probe_hz: f64,
    /// Writes become `XADD`s to the stream `<stream><writer>`, each entry with an id of its
    /// own, read back with `XRANGE`; without it, `SET`s of fresh keys.
    pub stream: Option<String>,
    /// The start of every key the workload writes.
    pub prefix: String,
    /// How long a command may take before its outcome is `unknown`.
    #[serde(with = "humantime_serde")]
    pub op_timeout: Duration,
    /// Upper bound on writes, whatever the scenario's length.
    pub max_ops: u64,
    /// Where the read after each write goes (a replica, a cache in front), node and container
    /// port; default: `node` and `port`.
    pub read_node: Option<String>,
    pub read_port: Option<u16>,
    /// Error codes (the reply's first word: `ERR`, `BUSY`) this product declares definite
    /// refusals besides Redis's own (`crate::classify::REDIS_REFUSALS`); any other error
    /// reply may follow the write.
    pub definite: Vec<String>,
}

impl Default for RedisSpec {
    fn default() -> Self {
        RedisSpec {
            name: "redis".into(),
            node: "redis".into(),
            port: 6379,
            clients: 2,
            rate: 20.0,
            probe_hz: 20.0,
            stream: None,
            prefix: "hadrill:".into(),
            op_timeout: Duration::from_secs(1),
            max_ops: 100_000,
            read_node: None,
            read_port: None,
            definite: Vec::new(),
        }
    }
}

impl RedisSpec {
    fn client_of(&self, ctx: &Context, node: &str, port: u16) -> RedisClient {
        RedisClient::new(ctx, node, port)
            .with_timeout(self.op_timeout)
            .with_definite(&self.definite)
    }

    /// The kind of its writes: `set`, or `xadd` with a stream.
    pub fn write_kind(&self) -> OpKind {
        OpKind::new(if self.stream.is_some() { "xadd" } else { "set" })
    }
}

impl Store for RedisSpec {
    fn name(&self) -> &str {
        &self.name
    }

    fn pace(&self) -> Pace {
        Pace {
            clients: self.clients,
            rate: self.rate,
            probe_hz: self.probe_hz,
            max_ops: self.max_ops,
        }
    }

    fn kind(&self) -> OpKind {
        self.write_kind()
    }

    fn client(&self, ctx: &Context) -> Box<dyn Client> {
        Box::new(self.client_of(ctx, &self.node, self.port))
    }

    fn read_client(&self, ctx: &Context) -> Box<dyn Client> {
        let node = self.read_node.as_deref().unwrap_or(&self.node);
        Box::new(self.client_of(ctx, node, self.read_port.unwrap_or(self.port)))
    }

    fn key(&self, client: usize, n: u64) -> String {
        match &self.stream {
            // Explicit ids, increasing per stream: each entry is found again by its own.
            Some(stream) => format!("{}{stream}{client}{ENTRY}0-{n}", self.prefix),
            None => format!("{}{client}:{n}", self.prefix),
        }
    }

    fn write(&self, key: String) -> Op {
        // Unique to this write, so a store that kept another write's value is caught.
        let value = format!("{key}@{}", uuid::Uuid::new_v4().simple());
        Op::write(self.write_kind(), key, value)
    }

    fn probe_key(&self) -> String {
        format!("{}probe", self.prefix)
    }
}

/// A connection to the Redis on `node`'s published `port`, giving up on connecting and on
/// each answer after `timeout`.
pub async fn connect(
    ctx: &Context,
    node: &str,
    port: u16,
    timeout: Duration,
) -> Result<MultiplexedConnection, TcpFailure> {
    let addr = ctx
        .node(node)
        .map_err(|e| TcpFailure::NotSent(e.to_string()))?
        .host_addr(port)
        .ok_or_else(|| TcpFailure::NotSent(format!("{node} publishes no port {port}")))?;
    let client = redis::Client::open(format!("redis://{addr}/"))
        .map_err(|e| TcpFailure::NotSent(e.to_string()))?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(timeout)
        .set_response_timeout(timeout);
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| TcpFailure::NotSent(format!("connect: {e}")))
}

/// Redis's errors by the honesty rules: an error reply is the server refusing the command;
/// anything else after the command was sent (a dropped connection, a timeout) may follow its
/// execution.
fn failure(e: &redis::RedisError, definite: &[String]) -> TcpFailure {
    if e.is_connection_refusal() {
        TcpFailure::NotSent(e.to_string())
    } else if e.kind() == redis::ErrorKind::IoError || e.is_timeout() || e.is_connection_dropped() {
        TcpFailure::Lost(e.to_string())
    } else if classify::redis_refusal(e.code(), definite) {
        TcpFailure::Refused(e.to_string())
    } else {
        TcpFailure::Lost(e.to_string())
    }
}

/// One connection to a Redis, opened again after a failure. An operation with a value writes
/// it (`SET key value`, or `XADD stream id v value` for a key `stream#id`); one without reads
/// the key back (`GET`, or `XRANGE stream id id`): absent is `None`.
pub struct RedisClient {
    ctx: Context,
    node: String,
    port: u16,
    timeout: Duration,
    definite: Vec<String>,
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
}

impl RedisClient {
    pub fn new(ctx: &Context, node: &str, port: u16) -> RedisClient {
        RedisClient {
            ctx: ctx.clone(),
            node: node.to_string(),
            port,
            timeout: Duration::from_secs(1),
            definite: Vec::new(),
            conn: tokio::sync::Mutex::new(None),
        }
    }

    /// Error codes the product declares definite refusals (`RedisSpec::definite`).
    pub fn with_definite(mut self, definite: &[String]) -> RedisClient {
        self.definite = definite.to_vec();
        self
    }

    /// Gives up on connecting and on each answer after `timeout` (1 s unless told).
    pub fn with_timeout(mut self, timeout: Duration) -> RedisClient {
        self.timeout = timeout;
        self
    }
}

async fn command(
    c: &mut MultiplexedConnection,
    key: &str,
    value: Option<&str>,
) -> redis::RedisResult<Option<String>> {
    match (key.split_once(ENTRY), value) {
        (Some((stream, id)), Some(v)) => c
            .xadd::<_, _, _, _, String>(stream, id, &[("v", v)])
            .await
            .map(|_| None),
        (Some((stream, id)), None) => {
            let entries: redis::streams::StreamRangeReply = c.xrange(stream, id, id).await?;
            Ok(entries
                .ids
                .into_iter()
                .find(|e| e.id == id)
                .and_then(|e| e.get("v")))
        }
        (None, Some(v)) => c.set::<_, _, ()>(key, v).await.map(|()| None),
        (None, None) => c.get(key).await,
    }
}

impl Client for RedisClient {
    fn invoke<'a>(&'a self, op: &'a Op) -> BoxFuture<'a, Answer> {
        Box::pin(async move {
            let mut conn = self.conn.lock().await;
            if conn.is_none() {
                match connect(&self.ctx, &self.node, self.port, self.timeout).await {
                    Ok(c) => *conn = Some(c),
                    Err(e) => return Answer::of(classify::tcp(&e)),
                }
            }
            let c = conn.as_mut().expect("connected above");
            let key = op.key.as_deref().unwrap_or_default();
            match command(c, key, op.value.as_deref()).await {
                Ok(read) => Answer {
                    exchange: Exchange::OK,
                    read,
                },
                Err(e) => {
                    *conn = None;
                    Answer::of(classify::tcp(&failure(&e, &self.definite)))
                }
            }
        })
    }
}
