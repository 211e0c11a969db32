//! The state of a started run that its nodes, faults, clients and observers share: the engine,
//! the topology, the clock, the history and what the engine last said about each node.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use bollard::Docker;

use crate::clock::{Clock, Stamp};
use crate::history::History;
use crate::images::{ImageRef, ReadyImage};
use crate::topology::Topology;
use hadrill_model::{Actor, Event, Exchange, OpKind, OpRecord, Phase};

/// How often the runtime polls the engine while it waits for a state.
pub(crate) const POLL: Duration = Duration::from_millis(20);

/// What the engine last told us about a node's container.
#[derive(Debug, Clone, Default)]
pub struct NodeState {
    pub ips: Vec<IpAddr>,
    /// Container port → host address on 127.0.0.1.
    pub ports: BTreeMap<u16, SocketAddr>,
}

/// A change a fault makes inside a node that lasts until `heal`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    /// Cut rules or a bandwidth limit.
    Network,
    /// A delay proxy in front of this port.
    Delay(u16),
    /// A clock offset.
    Clock,
    /// A filler file in the filesystem holding this path.
    Disk(String),
    /// A memory limit.
    Memory,
}

pub(crate) struct Shared {
    pub id: String,
    pub dir: PathBuf,
    pub clock: Clock,
    pub docker: Docker,
    pub history: History,
    pub topology: Topology,
    /// The images this run's nodes use, as they were when it started.
    pub images: BTreeMap<ImageRef, ReadyImage>,
    pub nodes: Mutex<BTreeMap<String, NodeState>>,
    /// The run's secrets by name (never logged or recorded).
    pub secrets: Mutex<BTreeMap<String, String>>,
    /// What faults changed inside each node, so `heal` undoes exactly that.
    pub altered: Mutex<BTreeMap<String, BTreeSet<Change>>>,
    /// The tasks moving a drifting node's clock offset, by node.
    pub drifting: Mutex<BTreeMap<String, tokio::task::AbortHandle>>,
    pub fault_seq: AtomicU64,
    /// Where the run's wall time went so far, phase by phase.
    pub phases: Mutex<Vec<Phase>>,
    /// Each network's IPv4 subnet as Docker chose it: (network address, prefix length).
    pub subnets: Mutex<BTreeMap<String, (std::net::Ipv4Addr, u8)>>,
    /// Nodes that are containers hadrill did not start (`Run::attach`): node → container id.
    /// Their owner removes them; hadrill only acts on them and heals what it did.
    pub adopted: BTreeMap<String, String>,
    /// SSH connections to the run's hosts, when its nodes are existing hosts.
    pub hosts: crate::ssh::Connections,
    /// The undo of every change made to a host, for a run of existing hosts.
    pub journal: Option<crate::journal::Journal>,
    /// Each host's clock against the controller's, for a run of existing hosts.
    pub host_clocks: Mutex<BTreeMap<String, hadrill_model::HostClock>>,
}

impl Shared {
    pub fn container_name(&self, node: &str) -> String {
        match self.adopted.get(node) {
            Some(id) => id.clone(),
            None => format!("hadrill-{}-{node}", self.id),
        }
    }

    /// The run's own copy of a node's mounted config file, secrets filled in: in the run's
    /// private directory, never in the run directory that is kept and shared.
    pub fn staged_config(&self, node: &str, target: &str) -> PathBuf {
        private_dir(&self.id)
            .join("config")
            .join(node)
            .join(target.trim_start_matches('/'))
    }

    /// The current value of secret `name`.
    /// Notes that a phase of `kind` called `name` took `took`.
    pub fn phase(&self, kind: &str, name: impl Into<String>, took: Duration) {
        self.phases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Phase {
                kind: kind.to_string(),
                name: name.into(),
                seconds: took.as_secs_f64(),
            });
    }

    pub fn secret(&self, name: &str) -> Option<String> {
        self.secrets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// A new value of secret `name`, remembered so every artifact is redacted of it.
    pub fn issue_secret(&self, name: &str) -> std::io::Result<String> {
        self.keep_secret(name, new_secret())
    }

    /// Secret `name` as the install already has it (a run of existing hosts), remembered so
    /// every artifact is redacted of it.
    pub fn keep_secret(&self, name: &str, value: String) -> std::io::Result<String> {
        remember_secret(&self.id, &value)?;
        self.secrets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), value.clone());
        Ok(value)
    }

    pub fn redact(&self, text: &str) -> String {
        redact(&self.id, text)
    }
}

/// Container log of `node` as captured into the run directory.
pub fn log_path(run_dir: &Path, node: &str) -> PathBuf {
    run_dir.join("logs").join(format!("{node}.log"))
}

/// Records an operation invoked at `invoke` that ended now, as `ex` says.
pub(crate) fn record(
    shared: &Shared,
    client: Actor<'_>,
    kind: OpKind,
    key: Option<String>,
    value: Option<String>,
    invoke: Stamp,
    ex: Exchange,
) {
    let h = &shared.history;
    h.record(Event::Op(OpRecord {
        id: h.next_op_id(),
        client: client.name.to_string(),
        role: client.role,
        kind,
        key,
        value,
        invoke,
        complete: shared.clock.now(),
        outcome: ex.outcome,
        error: ex.error,
        status: ex.status,
        node: ex.node,
        version: ex.version,
    }));
}

/// Where a run keeps what no kept artifact may hold: its staged config files (secrets filled
/// in) and the values of its secrets. Outside the run directory (which is kept, attached to
/// tickets, uploaded by CI), readable by the user only, removed with the run's containers.
pub fn private_dir(run_id: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{PRIVATE_PREFIX}{run_id}"))
}

const SECRETS_FILE: &str = "secrets";
/// The owner label of the process the run belongs to, so a dead owner's directory is found.
pub const OWNER_FILE: &str = "owner";
/// What private directories are named, `hadrill-<run id>`.
pub const PRIVATE_PREFIX: &str = "hadrill-";

/// Creates the run's private directory (mode 0700), recording its owner.
pub fn create_private_dir(run_id: &str, owner: &str) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = private_dir(run_id);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    std::fs::write(dir.join(OWNER_FILE), owner)?;
    Ok(dir)
}

/// 32 random bytes as hex, like the guides' `SECRET_KEY`.
fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random source failed");
    hex::encode(bytes)
}

fn remember_secret(run_id: &str, value: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = private_dir(run_id);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(dir.join(SECRETS_FILE))?;
    writeln!(f, "{value}")
}

/// `text` with every value any secret of the run ever had replaced by `[redacted secret]`.
pub fn redact(run_id: &str, text: &str) -> String {
    let values =
        std::fs::read_to_string(private_dir(run_id).join(SECRETS_FILE)).unwrap_or_default();
    values
        .lines()
        .filter(|v| !v.is_empty())
        .fold(text.to_string(), |t, v| t.replace(v, "[redacted secret]"))
}
