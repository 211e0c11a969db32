//! Aiming a fault: waiting until its targets hold work (their topology's `in_flight`
//! command) or have agents connected, as a step's `when` asks, and recording what they held
//! just before it, for the exercise check to judge what the fault hit.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;

use crate::node::Node;
use crate::shared::Shared;
use hadrill_model::{Aim, agents_on};

/// `when = { in_flight = 1, timeout = "30s" }` on a step: fire once each target holds at
/// least `in_flight` items of work (its topology's `in_flight` command lists them), or none
/// with `in_flight = 0` (the guides' "wait for workers to go idle" before an upgrade), and, with
/// `agents`, once that many agents are connected to the targets, so the fault lands where it
/// hurts; after `timeout` it fires anyway, and the exercise check says the step hit less than
/// it meant to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct When {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agents: Option<usize>,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

/// What a fault's targets held just before it.
#[derive(Default)]
pub(super) struct Held {
    pub(super) items: BTreeMap<String, Vec<String>>,
    /// Targets whose `in_flight` command failed, and why.
    pub(super) unknown: BTreeMap<String, String>,
}

/// How often a `when` asks the targets what they hold.
const AIM_POLL: Duration = Duration::from_millis(50);

impl Shared {
    /// Waits, up to `when.timeout`, until the targets hold what `when` asks for, and says
    /// whether they did: the fault is applied either way, and the exercise check judges the
    /// record. With `in_flight`, also returns the last sample, so the fault follows the
    /// sample that met the aim with no second one in between.
    pub(super) async fn aim(
        self: &Arc<Self>,
        nodes: &[String],
        when: &When,
    ) -> (Aim, Option<Held>) {
        let t0 = Instant::now();
        let targets: BTreeSet<&str> = nodes.iter().map(String::as_str).collect();
        loop {
            let sample = match when.in_flight {
                None => None,
                Some(_) => Some(self.held(nodes).await),
            };
            let holds = match (when.in_flight, &sample) {
                (Some(n), Some(held)) => {
                    held.unknown.is_empty()
                        && !held.items.is_empty()
                        && held.items.values().all(|items| match n {
                            0 => items.is_empty(),
                            n => items.len() >= n,
                        })
                }
                _ => true,
            };
            let connected = when.agents.is_none_or(|n| {
                let now = self.clock.now();
                self.history.read(|events| agents_on(events, &targets, now)) >= n
            });
            let met = holds && connected;
            if met || t0.elapsed() >= when.timeout {
                let aim = Aim {
                    in_flight: when.in_flight,
                    agents: when.agents,
                    waited_ms: t0.elapsed().as_millis() as u64,
                    met,
                };
                return (aim, sample);
            }
            tokio::time::sleep(AIM_POLL).await;
        }
    }

    /// What each target that lists its in-flight work holds now, and why it is unknown for
    /// those whose command failed.
    pub(super) async fn held(self: &Arc<Self>, nodes: &[String]) -> Held {
        let handles: Vec<Node> = nodes.iter().map(|n| Node::new(n, self.clone())).collect();
        let found = join_all(handles.iter().map(Node::in_flight)).await;
        let mut held = Held::default();
        for (n, found) in handles.iter().zip(found) {
            match found {
                Ok(Some(items)) => {
                    held.items.insert(n.name().to_string(), items);
                }
                Ok(None) => {}
                Err(e) => {
                    held.unknown.insert(n.name().to_string(), e.to_string());
                }
            }
        }
        held
    }
}
