//! The job queue: a Redis Stream read through a consumer group, at-least-once. The same
//! Redis holds the maintenance flag.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamReadOptions, StreamReadReply,
};
use redis::{AsyncCommands, RedisError};

pub const STREAM: &str = "traces:jobs";
pub const GROUP: &str = "analysers";
/// Set while uploads are paused (`web maintenance on`). In Redis rather than the database, so
/// that every app server of either release sees it at once, needing no schema change, and it
/// stays readable while a migration holds the tables locked.
pub const MAINTENANCE: &str = "web:maintenance";

#[derive(Clone)]
pub struct Queue {
    conn: ConnectionManager,
}

/// One analysis job as read from the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub entry: String,
    pub trace_id: i64,
    pub object_key: String,
}

impl Queue {
    /// Connects; later, a lost connection is re-established on the next command.
    pub async fn connect(url: &str) -> Result<Self, RedisError> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            // Longer than a blocking read's 1 s.
            .set_response_timeout(Duration::from_secs(3))
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_with_config(client, config).await?;
        Ok(Queue { conn })
    }

    pub async fn ping(&self) -> Result<(), RedisError> {
        let mut c = self.conn.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut c)
            .await
            .map(|_| ())
    }

    /// Appends a job; returns once Redis acknowledged it (durable with `appendfsync always`).
    pub async fn enqueue(&self, trace_id: i64, object_key: &str) -> Result<String, RedisError> {
        let mut c = self.conn.clone();
        c.xadd(
            STREAM,
            "*",
            &[
                ("trace_id", trace_id.to_string()),
                ("key", object_key.to_string()),
            ],
        )
        .await
    }

    pub async fn maintenance(&self) -> Result<bool, RedisError> {
        let mut c = self.conn.clone();
        c.exists(MAINTENANCE).await
    }

    pub async fn set_maintenance(&self, on: bool) -> Result<(), RedisError> {
        let mut c = self.conn.clone();
        if on {
            c.set(MAINTENANCE, "on").await
        } else {
            c.del(MAINTENANCE).await
        }
    }

    pub async fn ensure_group(&self) -> Result<(), RedisError> {
        let mut c = self.conn.clone();
        match c
            .xgroup_create_mkstream::<_, _, _, ()>(STREAM, GROUP, "0")
            .await
        {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => other,
        }
    }

    /// New jobs for `consumer`, waiting up to `block`.
    pub async fn read(&self, consumer: &str, block: Duration) -> Result<Vec<Job>, RedisError> {
        let mut c = self.conn.clone();
        let opts = StreamReadOptions::default()
            .group(GROUP, consumer)
            .count(4)
            .block(block.as_millis() as usize);
        let reply: Option<StreamReadReply> = c.xread_options(&[STREAM], &[">"], &opts).await?;
        Ok(reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .filter_map(|id| job(&id.id, &id.map))
            .collect())
    }

    /// Takes over jobs another consumer read but did not acknowledge for `min_idle`
    /// (its worker died).
    pub async fn claim_stale(
        &self,
        consumer: &str,
        min_idle: Duration,
    ) -> Result<Vec<Job>, RedisError> {
        let mut c = self.conn.clone();
        let reply: StreamAutoClaimReply = c
            .xautoclaim_options(
                STREAM,
                GROUP,
                consumer,
                min_idle.as_millis() as usize,
                "0-0",
                StreamAutoClaimOptions::default().count(16),
            )
            .await?;
        Ok(reply
            .claimed
            .iter()
            .filter_map(|id| job(&id.id, &id.map))
            .collect())
    }

    pub async fn ack(&self, entry: &str) -> Result<(), RedisError> {
        let mut c = self.conn.clone();
        c.xack::<_, _, _, ()>(STREAM, GROUP, &[entry]).await
    }
}

fn job(entry: &str, map: &std::collections::HashMap<String, redis::Value>) -> Option<Job> {
    let field = |k: &str| -> Option<String> { redis::from_redis_value(map.get(k)?).ok() };
    Some(Job {
        entry: entry.to_string(),
        trace_id: field("trace_id")?.parse().ok()?,
        object_key: field("key")?,
    })
}
