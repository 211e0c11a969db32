//! Workloads drive a system and record every operation with its outcome; nothing is judged
//! here. Every workload implements `Workload`: hadrill's generic SQL clients (`sql`), the
//! reference product's web users and agents (in its plug-in), and those a
//! user's crate adds.
//!
//! A workload is bounded in operations and time and stops when told to.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use hadrill_model::{OpKind, Read};

pub mod http;
pub(crate) mod keyed;
pub mod redis;
pub mod s3;
pub mod sql;
mod template;

pub use crate::client::{Answer, Client, Op};
pub use crate::context::Context;
pub use crate::observer::{Facts, Observer};
pub(crate) use keyed::{Keyed, Pace, Store, probe_client};

/// A workload: its clients act on the system through the nodes' published ports and record
/// each operation through the context, honestly classified (see `crate::classify`); its
/// final read says what the system holds after the run, so the checks can say whether any
/// acknowledged write was lost. A run prepares every workload, runs them all from the warmup
/// to the end of the settle, stops them, then takes their final reads.
pub trait Workload: Send + Sync + 'static {
    /// Its name in the scenario text and the report; its final read is kept under it.
    fn name(&self) -> &str;

    /// The availability probe's frequency, if the workload records `OpKind::PROBE`
    /// operations (role `Probe`) for the availability check to judge; `None`: it does not.
    fn probe_hz(&self) -> Option<f64> {
        None
    }

    /// Before the load starts, e.g. creating its tables; an error ends the run with it.
    fn prepare(self: Arc<Self>, ctx: Context) -> BoxFuture<'static, Result<(), String>> {
        let _ = ctx;
        Box::pin(async { Ok(()) })
    }

    /// Drives the system until `ctx.stopped()` resolves, and returns once its clients have
    /// recorded their last operations.
    fn run(self: Arc<Self>, ctx: Context) -> BoxFuture<'static, ()>;

    /// The kind of its writes, if it makes writes whose acknowledgement must survive the run:
    /// the continuity check then holds them against `final_read`. `None`: it makes none.
    fn write_kind(&self) -> Option<OpKind> {
        None
    }

    /// Whether it runs agents: clients that each hold a connection and record
    /// `OpKind::CONNECT` and `OpKind::DISCONNECT` operations (role `Agent`, keyed by the
    /// agent's name). The reconnection check then judges how long the agents a fault dropped
    /// took to come back, whatever their protocol.
    fn agents(&self) -> bool {
        false
    }

    /// Whether the system has recovered as far as this workload can tell (its operations
    /// succeed again and have for `hadrill_model::QUIET`, every agent is back, the database
    /// members agree), so the settle may end before its cap: asked during the settle, which
    /// ends once every workload says so. By default a workload needs the whole settle.
    fn settled(self: Arc<Self>, ctx: Context) -> BoxFuture<'static, bool> {
        let _ = ctx;
        Box::pin(async { false })
    }

    /// After the run, while the topology is still up: what the system holds, as JSON its
    /// checks read back (`Evidence::final_read`), or why it could not be read. With a
    /// `write_kind`: an object of each key the store holds → the value it holds (as the
    /// workload recorded values when writing, e.g. a digest), which the continuity check
    /// holds the acknowledged writes against (`held(map)` makes one).
    fn final_read(self: Arc<Self>, ctx: Context) -> BoxFuture<'static, Read> {
        let _ = ctx;
        Box::pin(async { Err("this workload has no final read".to_string()) })
    }
}

/// Where the host's clients reach a node's HTTP port: its base URL, HTTPS with the
/// topology's CA as the only trusted root when the node serves TLS there (`tls`).
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub base: String,
    ca: Option<reqwest::Certificate>,
}

impl Endpoint {
    /// `node`'s entry on `port`; a node that serves TLS is reached on its TLS port, whatever
    /// `port` the workload names by default.
    pub fn of(node: &crate::node::Node, port: u16) -> Result<Endpoint, String> {
        let port = node.spec().http_port(port);
        let ca = match &node.spec().tls {
            Some(tls) => {
                let pem = std::fs::read(&tls.ca)
                    .map_err(|e| format!("cannot read the CA {}: {e}", tls.ca.display()))?;
                let ca = reqwest::Certificate::from_pem(&pem)
                    .map_err(|e| format!("the CA {} is not PEM: {e}", tls.ca.display()))?;
                Some(ca)
            }
            None => None,
        };
        let addr = node
            .host_addr(port)
            .ok_or_else(|| format!("{} publishes no port {port}", node.name()))?;
        let scheme = if ca.is_some() { "https" } else { "http" };
        Ok(Endpoint {
            base: format!("{scheme}://{addr}"),
            ca,
        })
    }

    /// A client builder that trusts what this endpoint serves.
    pub fn builder(&self) -> reqwest::ClientBuilder {
        let builder = reqwest::Client::builder();
        match &self.ca {
            Some(ca) => builder.add_root_certificate(ca.clone()),
            None => builder,
        }
    }

    /// An HTTP client as a user's browser is one: it keeps cookies, gives up on a request
    /// after `timeout`, and on a connection (a TLS handshake included) after a second.
    pub fn user_agent(&self, timeout: std::time::Duration) -> reqwest::Client {
        self.builder()
            .cookie_store(true)
            .timeout(timeout)
            .connect_timeout(std::time::Duration::from_secs(1))
            .build()
            .expect("HTTP client")
    }
}

/// A final read of key → value, as the continuity check of a `write_kind` reads it.
pub fn held(map: std::collections::BTreeMap<String, String>) -> Read {
    serde_json::to_value(map).map_err(|e| e.to_string())
}

/// How a write of bytes records what its read-back must show: `sha256:<hex>`.
pub(crate) fn digest(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A store's final read from each write's read-back (key, whether it was acknowledged, and
/// the value read, `None` when certainly absent, or why the read could not decide). Only an
/// acknowledged write's fate is in question: an unknown or refused one that cannot be read
/// is simply not known to be there.
pub(crate) fn store_read<K: Into<String>>(
    reads: impl IntoIterator<Item = (K, bool, Result<Option<String>, String>)>,
) -> Read {
    let mut store = hadrill_model::StoreRead::default();
    for (key, acknowledged, read) in reads {
        match read {
            Ok(Some(v)) => {
                store.held.insert(key.into(), v);
            }
            Ok(None) => {}
            Err(why) if acknowledged => {
                store.unreadable.insert(key.into(), why);
            }
            Err(_) => {}
        }
    }
    serde_json::to_value(store).map_err(|e| e.to_string())
}

/// A byte size written like `4KiB`, `1MiB`, `"512"` or `512`; saved as a number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "u64")]
pub struct Size(pub u64);

impl From<Size> for u64 {
    fn from(s: Size) -> u64 {
        s.0
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A number is bytes: what a drill built in code, or a saved scenario, writes.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Bytes(u64),
            Text(String),
        }
        let s = match Written::deserialize(d)? {
            Written::Bytes(n) => return Ok(Size(n)),
            Written::Text(s) => s,
        };
        let t = s.trim();
        let (num, mult) = [
            ("GiB", 1u64 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
            ("B", 1),
        ]
        .iter()
        .find_map(|(unit, m)| t.strip_suffix(unit).map(|n| (n.trim(), *m)))
        .unwrap_or((t, 1));
        let bytes = num.parse::<u64>().ok().and_then(|n| n.checked_mul(mult));
        bytes.map(Size).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid size `{s}`; write it like `512`, `4KiB` or `1MiB`"
            ))
        })
    }
}
