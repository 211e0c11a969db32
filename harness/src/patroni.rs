//! A replicated database cluster seen from outside, as evidence for the database checks: each
//! member's role (from its failover manager's REST status, Patroni's `/patroni` or one in its
//! shape, or from the member itself over SQL) and who leads (the leader key in etcd, or which
//! members hold a virtual IP), recorded in the history whenever they change; and, after the
//! run, every member's replication state.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::context::Context;
use crate::node::Node;
use crate::observer::{Facts, Observer};
use crate::postgres::Login;
use crate::shared::Shared;
use hadrill_model::{
    ClusterFinal, Event, MemberFinal, MemberStatus, OpKind, UNREACHABLE, is_primary,
};

/// Where the cluster is, as a scenario's `[sql]` section names it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSpec {
    /// Node or group of the database members.
    pub members: String,
    pub rest_port: u16,
    /// The status path, answering JSON with Patroni's `role`, `state`, `timeline` and `xlog`.
    pub rest_path: String,
    /// Where the leader is read from.
    pub leader: LeaderSource,
    /// Node or group of the DCS (etcd) members.
    pub dcs: String,
    pub dcs_port: u16,
    /// Patroni's leader key: `<namespace>/<scope>/leader`.
    pub leader_key: String,
    /// How often roles and the leader key are read.
    pub observe_hz: f64,
    /// Where each member's status is read from.
    pub status: StatusSource,
}

impl ClusterSpec {
    /// How often the observer reads the members and the leader.
    pub(crate) fn observe_period(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.observe_hz.max(1.0))
    }
}

/// Where a member's status (role, timeline, WAL position, replication) comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StatusSource {
    /// The failover manager's REST API at `rest_port`/`rest_path`: Patroni's `/patroni`, or a
    /// status endpoint answering in its shape.
    Rest,
    /// The member itself over SQL, as the `[sql]` user (`pg_is_in_recovery()`, its timeline,
    /// its WAL position, its WAL receiver): whatever manages failover, or nothing.
    Sql,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            members: "postgres".into(),
            rest_port: 8008,
            rest_path: "/patroni".into(),
            leader: LeaderSource::Etcd,
            dcs: "etcd".into(),
            dcs_port: 2379,
            leader_key: "/service/hadrill/leader".into(),
            observe_hz: 10.0,
            status: StatusSource::Rest,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LeaderSource {
    /// Patroni's leader key in etcd.
    Etcd,
    /// The members whose status says `"vip": true` (keepalived), comma-separated: two at
    /// once is a split brain.
    Vip,
    /// None recorded: the members' own answers (roles, the direct write probes) are the
    /// evidence.
    None,
}

fn member_status(v: &serde_json::Value) -> MemberStatus {
    let role = v["role"].as_str().unwrap_or("").to_string();
    let xlog = &v["xlog"];
    MemberStatus {
        wal_position: if is_primary(&role) {
            xlog["location"].as_i64()
        } else {
            xlog["replayed_location"].as_i64()
        },
        role: if is_primary(&role) {
            "primary".into()
        } else {
            role
        },
        state: v["state"].as_str().unwrap_or("").to_string(),
        timeline: v["timeline"].as_i64(),
        replication_state: v["replication_state"].as_str().map(str::to_string),
        vip: v["vip"].as_bool(),
    }
}

/// A client for status APIs that gives up after `timeout`.
pub fn http(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .build()
        .expect("HTTP client")
}

/// How the observer, the settle and the final read learn each member's status.
#[derive(Clone)]
pub(crate) struct Reader {
    spec: ClusterSpec,
    http: reqwest::Client,
    login: Login,
    timeout: Duration,
}

impl Reader {
    /// Reads as `spec` says, over SQL as `login`, giving up on a member after `timeout`.
    pub(crate) fn new(spec: &ClusterSpec, login: Login, timeout: Duration) -> Reader {
        Reader {
            spec: spec.clone(),
            http: http(timeout),
            login,
            timeout,
        }
    }

    /// A member's status, or `None` when it does not answer.
    pub(crate) async fn status(&self, node: &Node) -> Option<MemberStatus> {
        match self.spec.status {
            StatusSource::Rest => {
                let addr = node.host_addr(self.spec.rest_port)?;
                let url = format!("http://{addr}{}", self.spec.rest_path);
                Some(member_status(&get_json(&self.http, &url).await?))
            }
            StatusSource::Sql => crate::postgres::status(node, &self.login, self.timeout).await,
        }
    }
}

/// The JSON body of a GET, or `None` if there is no answer or it is not JSON.
pub async fn get_json(http: &reqwest::Client, url: &str) -> Option<serde_json::Value> {
    http.get(url).send().await.ok()?.json().await.ok()
}

/// The leader key's holder (`none` if the key is absent), from the first DCS member that
/// answers a linearizable read; `None` if none does.
async fn leader(http: &reqwest::Client, dcs: &[Node], port: u16, key: &str) -> Option<String> {
    for n in dcs {
        let Some(addr) = n.host_addr(port) else {
            continue;
        };
        let Ok(r) = http
            .post(format!("http://{addr}/v3/kv/range"))
            .json(&serde_json::json!({ "key": B64.encode(key) }))
            .send()
            .await
        else {
            continue;
        };
        let Ok(v) = r.json::<serde_json::Value>().await else {
            continue;
        };
        if v.get("header").is_none() {
            continue;
        }
        return Some(
            v["kvs"][0]["value"]
                .as_str()
                .and_then(|s| B64.decode(s).ok())
                .map_or("none".to_string(), |b| {
                    String::from_utf8_lossy(&b).into_owned()
                }),
        );
    }
    None
}

/// A cluster's view of itself as facts: each member's role (from the manager's REST API or
/// the member itself), and the leader from the DCS's leader key (or the holder of the virtual
/// IP), recorded as they change.
pub struct ClusterObserver(pub(crate) Reader);

impl Observer for ClusterObserver {
    fn name(&self) -> &str {
        "observer"
    }

    fn observe(self: Arc<Self>, ctx: Context) -> BoxFuture<'static, ()> {
        Box::pin(async move { observe(&ctx, &self.0, Facts::new(self.name())).await })
    }
}

/// Records role and leader changes until the context stops.
async fn observe(ctx: &Context, reader: &Reader, mut facts: Facts) {
    let spec = &reader.spec;
    let period = spec.observe_period();
    let nodes = |group: &str| -> Vec<Node> {
        ctx.topology()
            .resolve(group)
            .unwrap_or_default()
            .iter()
            .filter_map(|n| ctx.node(n).ok())
            .collect()
    };
    let (members, dcs) = (nodes(&spec.members), nodes(&spec.dcs));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while !ctx.is_stopped() {
        tokio::select! {
            _ = ctx.stopped() => break,
            _ = tick.tick() => {}
        }
        let invoke = ctx.now();
        let (statuses, from_etcd) = tokio::join!(
            futures_util::future::join_all(members.iter().map(|m| reader.status(m))),
            async {
                match spec.leader {
                    LeaderSource::Etcd => {
                        leader(&reader.http, &dcs, spec.dcs_port, &spec.leader_key).await
                    }
                    LeaderSource::Vip | LeaderSource::None => None,
                }
            }
        );
        let current = match spec.leader {
            LeaderSource::Etcd => from_etcd,
            LeaderSource::None => None,
            LeaderSource::Vip => {
                let holders: Vec<&str> = members
                    .iter()
                    .zip(&statuses)
                    .filter(|(_, s)| s.as_ref().and_then(|s| s.vip) == Some(true))
                    .map(|(m, _)| m.name())
                    .collect();
                Some(if holders.is_empty() {
                    "none".to_string()
                } else {
                    holders.join(",")
                })
            }
        };
        for (m, s) in members.iter().zip(statuses) {
            let role = s.map_or(UNREACHABLE.to_string(), |s| s.role);
            facts.saw(ctx, OpKind::ROLE, Some(m.name()), &role, invoke);
        }
        if let Some(current) = current {
            facts.saw(ctx, OpKind::LEADER, None, &current, invoke);
        }
    }
}

/// Each polled member as the agreement tests read it: whether it runs, and its status.
pub(crate) fn states(
    polled: &[(Node, bool, Option<MemberStatus>)],
) -> Vec<(bool, Option<&MemberStatus>)> {
    polled
        .iter()
        .map(|(_, running, s)| (*running, s.as_ref()))
        .collect()
}

/// One primary, and every other running member a replica that `follows` it.
fn one_primary(
    members: &[(bool, Option<&MemberStatus>)],
    follows: impl Fn(&MemberStatus, &MemberStatus) -> bool,
) -> bool {
    let primaries: Vec<&MemberStatus> = members
        .iter()
        .filter_map(|(_, s)| *s)
        .filter(|s| is_primary(&s.role))
        .collect();
    let [primary] = primaries[..] else {
        return false;
    };
    members
        .iter()
        .filter(|(running, _)| *running)
        .all(|(_, s)| s.is_some_and(|s| is_primary(&s.role) || follows(s, primary)))
}

/// Converged once writes have stopped: every running replica has replayed all the primary
/// wrote, on its timeline.
pub(crate) fn converged(members: &[(bool, Option<&MemberStatus>)]) -> bool {
    one_primary(members, |s, primary| {
        s.state == "running"
            && s.timeline == primary.timeline
            && s.wal_position.is_some()
            && s.wal_position == primary.wal_position
    })
}

/// Whether the members stream as they should while writes go on: every running replica
/// streams from the primary on its timeline (its WAL may trail the primary's by what is in
/// flight; `converged` waits for it to catch up once writes stop).
pub(crate) fn streaming(members: &[(bool, Option<&MemberStatus>)]) -> bool {
    one_primary(members, |s, primary| {
        s.replication_state.as_deref() == Some("streaming") && s.timeline == primary.timeline
    })
}

/// Each member of the cluster: the node, whether its container runs, and its status if it
/// answered.
pub(crate) async fn poll(
    shared: &Arc<Shared>,
    reader: &Reader,
) -> Vec<(Node, bool, Option<MemberStatus>)> {
    let mut polled = Vec::new();
    for name in shared
        .topology
        .resolve(&reader.spec.members)
        .unwrap_or_default()
    {
        let m = Node::new(&name, shared.clone());
        let running = m.refresh().await.map(|s| s.running).unwrap_or(false);
        let s = if running {
            reader.status(&m).await
        } else {
            None
        };
        polled.push((m, running, s));
    }
    polled
}

/// Polls the members until converged or `timeout`; `digest` reads a member's set table.
pub(crate) async fn settle<F, Fut>(
    shared: &Arc<Shared>,
    reader: &Reader,
    timeout: Duration,
    digest: F,
) -> ClusterFinal
where
    F: Fn(Node) -> Fut,
    Fut: std::future::Future<Output = Option<(i64, String)>>,
{
    let t0 = Instant::now();
    let events = shared.history.events();
    let (polled, converged_after) = loop {
        let polled = poll(shared, reader).await;
        if converged(&states(&polled)) {
            break (polled, Some(t0.elapsed()));
        }
        if t0.elapsed() > timeout {
            break (polled, None);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let mut out = Vec::new();
    for (node, running, status) in polled {
        let (keys, digest) = match running {
            true => digest(node.clone()).await.unzip(),
            false => (None, None),
        };
        let log = node.log_tail(100_000).await;
        out.push(MemberFinal {
            name: node.name().to_string(),
            running,
            left_down: left_down(&events, node.name()),
            status,
            keys,
            digest,
            rewind_lines: log
                .lines()
                .filter(|l| l.contains("pg_rewind") || l.contains("rewind"))
                .map(str::to_string)
                .take(20)
                .collect(),
        });
    }
    ClusterFinal {
        members: out,
        converged_after_ms: converged_after.map(|d| d.as_millis() as u64),
    }
}

/// Did the script leave `node` stopped: its last fault killed or stopped it?
fn left_down(events: &[Event], node: &str) -> bool {
    hadrill_model::faults(events)
        .iter()
        .rev()
        .find(|f| {
            f.nodes.iter().any(|n| n == node)
                && !matches!(f.fault.name(), "partition" | "heal" | "isolate" | "exec")
        })
        .is_some_and(|f| matches!(f.fault.name(), "kill" | "stop"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(role: &str, replication: Option<&str>, timeline: i64) -> MemberStatus {
        MemberStatus {
            role: role.into(),
            state: "running".into(),
            timeline: Some(timeline),
            wal_position: Some(100),
            replication_state: replication.map(str::to_string),
            vip: None,
        }
    }

    #[test]
    fn streaming_needs_one_primary_and_every_running_replica_streaming_on_its_timeline() {
        let primary = member("primary", None, 2);
        let streams = member("replica", Some("streaming"), 2);
        let stale = member("replica", Some("streaming"), 1);
        let catching_up = member("replica", Some("in archive recovery"), 2);
        assert!(streaming(&[(true, Some(&primary)), (true, Some(&streams))]));
        // A member whose container is down is not waited for.
        assert!(streaming(&[(true, Some(&primary)), (false, None)]));
        assert!(!streaming(&[(true, Some(&primary)), (true, Some(&stale))]));
        assert!(!streaming(&[
            (true, Some(&primary)),
            (true, Some(&catching_up))
        ]));
        assert!(!streaming(&[(true, Some(&primary)), (true, None)]));
        assert!(!streaming(&[
            (true, Some(&primary)),
            (true, Some(&primary))
        ]));
        assert!(!streaming(&[(true, Some(&streams))]));
        // Converged asks more once writes have stopped: the replica replayed all of it.
        assert!(converged(&[(true, Some(&primary)), (true, Some(&streams))]));
        let behind = MemberStatus {
            wal_position: Some(90),
            ..streams.clone()
        };
        assert!(streaming(&[(true, Some(&primary)), (true, Some(&behind))]));
        assert!(!converged(&[(true, Some(&primary)), (true, Some(&behind))]));
    }
}
