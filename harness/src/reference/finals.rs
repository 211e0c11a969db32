//! What the reference product holds after a run, and how it is read: its rows, objects,
//! analyses and roll-ups through its database and its HTTP API; after a secret rotation, the
//! sessions issued before it, tried on every app server; and, in a licence drill, the licence
//! each app server holds.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::verbs;
use crate::workload::Context;
use hadrill_model::{Event, Outcome, Restore, ops};

/// The names under which the product's final read and its cluster's are kept.
pub const WEB_READ: &str = "web";
pub const AGENTS_READ: &str = "agents";

/// How the final state is read: the product's database and its app servers.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProductRead {
    pub database_node: String,
    pub database_port: u16,
    pub database_user: String,
    pub database_name: String,
    pub password_secret: String,
    /// App servers are the nodes with this role; old cookies are tried on each directly.
    pub app_role: String,
    pub app_port: u16,
    #[serde(with = "humantime_serde")]
    pub analysis_timeout: Duration,
    /// The product's bucket, listed after a restore to find objects no row points at.
    pub bucket_node: String,
    pub bucket_port: u16,
    pub bucket: String,
    /// The start of the objects' keys; the rest is the SHA-256 a row records.
    pub bucket_prefix: String,
    pub bucket_region: String,
    pub bucket_access_key: String,
    /// The run secret holding the secret access key.
    pub bucket_secret: String,
}

impl Default for ProductRead {
    fn default() -> Self {
        ProductRead {
            database_node: "db".into(),
            database_port: 5432,
            database_user: "app".into(),
            database_name: "traces".into(),
            password_secret: "DB_PASSWORD".into(),
            app_role: "app".into(),
            app_port: 8080,
            analysis_timeout: Duration::from_secs(60),
            bucket_node: "s3".into(),
            bucket_port: 8333,
            bucket: "traces".into(),
            bucket_prefix: "traces/".into(),
            bucket_region: "us-east-1".into(),
            bucket_access_key: "hadrill".into(),
            bucket_secret: "S3_SECRET_KEY".into(),
        }
    }
}

/// What the system holds after the run, read through the product and its database.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FinalState {
    /// The highest trace id the install held before the run's load began: those rows are
    /// not the run's (an existing install keeps what earlier runs and users wrote).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub before_run_up_to: i64,
    /// Every trace row the run could have written: id → recorded SHA-256.
    pub rows: BTreeMap<i64, String>,
    /// Per row: what reading its content gave.
    pub content: BTreeMap<i64, Content>,
    /// Per row: results written (0 or 1) and attempts made by workers.
    pub analyses: BTreeMap<i64, Analysed>,
    /// The historian's roll-up slots, in order, and the slot current at the final read.
    pub rollup_slots: Vec<i64>,
    pub current_slot: i64,
    /// After a restore: the SHA-256 of every object the bucket holds (`None`: not listed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects: Option<BTreeSet<String>>,
    /// In a run that drills the licence: what each app server holds, by node.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub licenses: BTreeMap<String, Seen>,
}

/// The licence an app server serves on `GET /license`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub id: String,
    pub customer: String,
    pub expires: String,
    pub sha256: String,
}

/// What an app server was found holding after the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum Seen {
    Held(Held),
    /// It answered that it holds none (404), and why.
    Absent {
        why: String,
    },
    /// It runs but could not be asked, or gave no answer that says.
    Unreachable {
        why: String,
    },
    /// Its container is not running (the script left it down): nothing to judge.
    Down,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Content {
    Identical,
    Differs,
    Missing,
    Unreadable(String),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Analysed {
    pub results: u32,
    pub attempts: u32,
}

/// What the cluster and the store hold at the end, for the checks.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AgentsFinal {
    /// (agent id, seq) → deliveries, from the event store; None if it could not be read.
    pub events: Option<BTreeMap<String, i32>>,
    /// The agents' own view: agent name → node, just before the read.
    pub connections: BTreeMap<String, Option<String>>,
    /// The master's view: agent name → (status, node), and n_active_agents per node.
    pub master_agents: Option<BTreeMap<String, (String, Option<String>)>>,
    pub n_active: BTreeMap<String, u64>,
    /// How long until the master's view matched the agents' (None: it never did).
    pub status_converged_ms: Option<u64>,
    /// After the agents stopped (no more enrolments changing the registry): how long until
    /// every running node held the master's files (None: not within the timeout).
    pub files_in_sync_ms: Option<u64>,
}

/// The master's view agrees with the agents: every connected agent active on its node, every
/// other one not active, and the per-node counts summing to the connected agents.
pub fn status_matches(f: &AgentsFinal) -> bool {
    let Some(master) = &f.master_agents else {
        return false;
    };
    let connected = f.connections.values().filter(|n| n.is_some()).count() as u64;
    f.connections
        .iter()
        .all(|(name, node)| match (node, master.get(name)) {
            (Some(n), Some((status, seen))) => {
                status == "active" && seen.as_deref() == Some(n.as_str())
            }
            (None, Some((status, _))) => status != "active",
            (None, None) => true,
            (Some(_), None) => false,
        })
        && f.n_active.values().sum::<u64>() == connected
}

pub(super) async fn connect_db(
    ctx: &Context,
    f: &ProductRead,
) -> Result<tokio_postgres::Client, String> {
    let node = ctx.node(&f.database_node).map_err(|e| e.to_string())?;
    let password = ctx.secret(&f.password_secret).unwrap_or_default();
    crate::postgres::connect(
        &node,
        f.database_port,
        &f.database_user,
        &password,
        &f.database_name,
        Duration::from_secs(5),
    )
    .await
}

/// Trace ids of the acknowledged uploads.
pub(super) fn acknowledged(events: &[Event]) -> Vec<i64> {
    let restore = Restore::of(events);
    let ids: BTreeSet<i64> = ops(events)
        .iter()
        .filter(|o| o.kind == verbs::UPLOAD && o.outcome == Outcome::Ok)
        // Gone by design with the backup a restore brought back: nothing to wait for.
        .filter(|o| !restore.as_ref().is_some_and(|r| r.at_risk(o)))
        .filter_map(|o| o.key.as_ref()?.parse().ok())
        .collect();
    ids.into_iter().collect()
}

/// Polls until every one of `ids` has its analysis or `timeout` passes; returns how many have.
pub(super) async fn wait_analysed(
    db: &tokio_postgres::Client,
    ids: &[i64],
    timeout: Duration,
) -> Result<usize, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let done = db
            .query_one(
                "SELECT count(*) FROM analyses WHERE trace_id = ANY($1)",
                &[&ids],
            )
            .await
            .map_err(|e| e.to_string())?
            .get::<_, i64>(0) as usize;
        if done == ids.len() || Instant::now() > deadline {
            return Ok(done);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until every upload acknowledged so far has its analysis (a step's `until =
/// "analysed"`), or says how many had after `timeout`.
pub(crate) async fn wait_all_analysed(
    ctx: &Context,
    f: &ProductRead,
    timeout: Duration,
) -> Result<(), String> {
    let acked = acknowledged(&ctx.events());
    let db = connect_db(ctx, f).await?;
    let done = wait_analysed(&db, &acked, timeout).await?;
    if done == acked.len() {
        Ok(())
    } else {
        Err(format!(
            "{done} of {} acknowledged uploads analysed",
            acked.len()
        ))
    }
}

/// The SHA-256 of every object in the product's bucket, as its keys name them.
pub(super) async fn list_objects(
    ctx: &Context,
    f: &ProductRead,
) -> Result<BTreeSet<String>, String> {
    use futures_util::TryStreamExt;
    use object_store::ObjectStore;
    let bucket = crate::workload::s3::Bucket {
        region: &f.bucket_region,
        bucket: &f.bucket,
        access_key: &f.bucket_access_key,
        secret_key_secret: &f.bucket_secret,
        timeout: Duration::from_secs(30),
    };
    let fail = |e: crate::classify::TcpFailure| format!("listing the bucket: {e:?}");
    let endpoint =
        crate::workload::s3::endpoint(ctx, &f.bucket_node, f.bucket_port).map_err(fail)?;
    let store = bucket.open(ctx, &endpoint).map_err(fail)?;
    let prefix = object_store::path::Path::from(f.bucket_prefix.trim_end_matches('/'));
    let listed: Vec<object_store::ObjectMeta> = store
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(|e| format!("listing the bucket {}: {e}", f.bucket))?;
    Ok(listed
        .into_iter()
        .map(|o| {
            let key = o.location.to_string();
            key.strip_prefix(&f.bucket_prefix)
                .unwrap_or(&key)
                .to_string()
        })
        .collect())
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}
