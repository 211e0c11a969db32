//! A run: one topology started in containers, its clock, history and directory, and the
//! guarantee that nothing it created outlives it.
//!
//! Everything a run creates carries its labels. Teardown removes by label (not from memory),
//! so it also catches what a half-finished start left. Teardown happens on `teardown()`, on
//! drop (including a panic unwinding), and on SIGINT/SIGTERM/SIGHUP. What a SIGKILLed process
//! left is removed within seconds by its watchdog (`reaper`), and otherwise by the next run
//! once its owner process is gone.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, NetworkConnectRequest, NetworkCreateRequest,
    NetworkDisconnectRequest, NetworkingConfig,
};
use bollard::query_parameters::{
    CreateContainerOptions, ListContainersOptions, ListNetworksOptions, LogsOptions,
    RemoveContainerOptions,
};
use futures_util::future::join_all;
use futures_util::{FutureExt, StreamExt};

use crate::clock::Clock;
use crate::docker::{self, DockerError, labels};
use crate::history::History;
use crate::images::{ImageBuilder, ImageError, ImageRef, ReadyImage};
use crate::journal::Journal;
use crate::node::{BackendError, Node, NodeError};
use crate::progress::Progress;
use crate::reaper;
use crate::shared::{
    OWNER_FILE, PRIVATE_PREFIX, Shared, create_private_dir, log_path, private_dir, redact,
};
use crate::topology::{NodeSpec, Topology};
use hadrill_model::HostClock;
use hadrill_model::{Fault, Phase};

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum RunError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Image(#[from] ImageError),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Node(#[from] NodeError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Backend(#[from] BackendError),
    #[error("a dead run left hosts changed, and not all could be put back ({})", journal.display())]
    #[diagnostic(help(
        "the lines above say which change and why; fix that (the host unreachable? sudo?) and run `hadrill heal {}`",
        journal.parent().map(|p| p.display().to_string()).unwrap_or_default()
    ))]
    NotHealed { journal: PathBuf },
    #[error("the hosts are not ready for this run's faults:\n{problems}")]
    #[diagnostic(help(
        "install what is missing, and give the SSH user sudo without a password for exactly those commands (docs/hosts.md lists the sudo rules); `hadrill run --plan` prints every command each host would run"
    ))]
    HostsNotReady { problems: String },
    #[error("the install's secret {name} is not given")]
    #[diagnostic(help(
        "set HADRILL_SECRET_{name}, or add a line `{name}=…` to the file `secrets_file` names in {} (keep it readable by you only)",
        topology.display()
    ))]
    SecretNotGiven { name: String, topology: PathBuf },
    #[error("no node `{0}` in this run")]
    NoSuchNode(String),
    #[error("node `{node}` refers to `${{address:{spec}}}`, which names no address of this run")]
    #[diagnostic(help(
        "write `${{address:NETWORK:N}}` with a network of the topology and N inside its subnet, e.g. `${{address:main:250}}`"
    ))]
    BadAddress { node: String, spec: String },
    #[error("node `{node}` refers to `${{secret:{name}}}`, which the topology does not declare")]
    #[diagnostic(help("add \"{name}\" to `secrets = [...]` in {}", topology.display()))]
    UnknownSecret {
        node: String,
        name: String,
        topology: PathBuf,
    },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> RunError + 'a {
    move |source| RunError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Where runs live and how they are owned.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The project root holding `topologies/`.
    pub root: PathBuf,
    /// Parent of the run directories.
    pub runs_dir: PathBuf,
    /// A detached run (`hadrill up --detach`) is never reaped; `hadrill down` removes it.
    pub detached: bool,
    /// This run's directory (default: a fresh one under `runs_dir`, named after the topology).
    pub run_dir: Option<PathBuf>,
    /// Install a process-wide handler for SIGINT, SIGTERM and SIGHUP that removes every live
    /// run and exits with 128 + the signal. Off by default: a library must not take over its
    /// host's signals. The CLI and hadrill's own test binaries turn it on; without it, the
    /// run's watchdog still removes everything once the process is gone.
    pub handle_signals: bool,
    /// Images to have ready besides those of the topology's nodes: the releases an
    /// `upgrade` step installs.
    pub images: BTreeSet<ImageRef>,
    /// The share of a suite's slots the run holds, recorded in its results.
    pub slots: Option<hadrill_model::Slots>,
}

impl RunOptions {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let runs_dir = std::env::var_os("HADRILL_RUNS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("runs"));
        RunOptions {
            root,
            runs_dir,
            detached: false,
            run_dir: None,
            handle_signals: false,
            images: BTreeSet::new(),
            slots: None,
        }
    }

    /// The same options for a run holding `took` of a suite's `of` slots.
    pub fn with_slots(mut self, took: u32, of: u32) -> Self {
        self.slots = Some(hadrill_model::Slots { took, of });
        self
    }

    /// The same options with the process-wide signal handler on (see `handle_signals`).
    pub fn with_signal_handler(mut self) -> Self {
        self.handle_signals = true;
        self
    }
}

/// The project root: `HADRILL_ROOT`, else the nearest directory up from the current one that
/// holds `topologies/`, else the source checkout this binary was built from.
pub fn project_root() -> PathBuf {
    if let Some(root) = std::env::var_os("HADRILL_ROOT") {
        return PathBuf::from(root);
    }
    if let Ok(cwd) = std::env::current_dir() {
        for dir in cwd.ancestors() {
            if dir.join("topologies").is_dir() {
                return dir.to_path_buf();
            }
        }
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

pub struct Run {
    shared: Arc<Shared>,
    torn_down: bool,
}

/// What a teardown removed.
#[derive(Debug, Default, Clone)]
pub struct Removed {
    pub containers: usize,
    pub networks: usize,
}

impl Run {
    /// Builds missing images, starts every node in dependency order and waits until each is
    /// healthy. On failure everything started so far is removed and its logs kept.
    pub async fn start(topology: Topology, options: &RunOptions) -> Result<Run, RunError> {
        if topology.is_hosts() {
            return Run::reach(topology, options).await;
        }
        let docker = docker::connect().await?;
        // A dead run's leftovers cannot collide with this run (its names are its own), so a
        // leftover that will not go yet is reported, not a reason to refuse to start.
        match reap_dead_runs(&docker).await {
            Ok(reaped) if !reaped.is_empty() => tracing::info!(
                "reaped {} run(s) whose owner process is gone: {}",
                reaped.len(),
                reaped.join(", ")
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(
                "cannot remove a dead run's leftovers ({e}); `hadrill clean` tries again"
            ),
        }
        let builder = ImageBuilder::new(docker.clone(), &options.root);
        let checked = Instant::now();
        let mut images = BTreeMap::new();
        for image in topology.images().union(&options.images) {
            let ready = builder.ensure(image).await?;
            tracing::debug!("image {} ready ({})", ready.tag, ready.id);
            images.insert(image.clone(), ready);
        }
        let owner = if options.detached {
            "detached".to_string()
        } else {
            owner_label()
        };
        if !options.detached
            && let Err(e) = reaper::ensure(&docker, &builder, &owner).await
        {
            tracing::warn!(
                "no watchdog guards this run ({e}); if this process is killed, the next start or `hadrill clean` removes what it leaves"
            );
        }

        let images_took = checked.elapsed();
        let shared = new_shared(docker, topology, images, options, BTreeMap::new())?;
        let names: Vec<String> = shared.images.keys().map(ToString::to_string).collect();
        shared.phase("images", names.join(" "), images_took);
        let id = shared.id.clone();
        create_private_dir(&id, &owner).map_err(io_err(
            "cannot create the run's private directory",
            &private_dir(&id),
        ))?;
        for name in &shared.topology.secrets {
            shared.issue_secret(name).map_err(io_err(
                "cannot keep the run's secrets in",
                &private_dir(&id),
            ))?;
        }
        let run = Run::live(shared, options);
        let started = run.bring_up(&owner).await;
        run.or_teardown(started).await
    }

    /// A run over an install that already runs on its own hosts (`[hosts]`): nothing is
    /// started. Each host is reached over SSH and its service must be healthy; each clock is
    /// measured. Undos a dead run left pending in its heal journal are replayed first.
    async fn reach(topology: Topology, options: &RunOptions) -> Result<Run, RunError> {
        // Hosts a dead run left changed are not drilled again until they are put back.
        for journal in crate::journal::orphaned(&options.runs_dir, owner_is_dead) {
            if !heal_journal(&journal).await {
                return Err(RunError::NotHealed { journal });
            }
        }
        // The engine is never asked anything in a run of hosts; this client only exists
        // because a run holds one, and connects on first use.
        let docker =
            Docker::connect_with_defaults().map_err(|source| DockerError::Unreachable {
                host: docker::engine_host(),
                source,
            })?;
        let shared = new_shared(docker, topology, BTreeMap::new(), options, BTreeMap::new())?;
        let id = shared.id.clone();
        create_private_dir(&id, &owner_label()).map_err(io_err(
            "cannot create the run's private directory",
            &private_dir(&id),
        ))?;
        for name in &shared.topology.secrets {
            let file = shared.topology.secrets_file.as_deref();
            let value = crate::topology::install_secret(name, file)
                .map_err(io_err(
                    "cannot read the install's secrets from",
                    file.unwrap_or(Path::new("")),
                ))?
                .ok_or_else(|| RunError::SecretNotGiven {
                    name: name.clone(),
                    topology: shared.topology.path.clone(),
                })?;
            shared.keep_secret(name, value).map_err(io_err(
                "cannot keep the run's secrets in",
                &private_dir(&id),
            ))?;
        }
        let run = Run::live(shared, options);
        let reached = run.reach_hosts().await;
        run.or_teardown(reached).await
    }

    /// A run that the signal handler (if asked for) and `Drop` will clean up.
    fn live(shared: Arc<Shared>, options: &RunOptions) -> Run {
        if options.handle_signals {
            SIGNALS.call_once(install_signal_handler);
        }
        register_live(&shared.id, &shared.dir);
        Run {
            shared,
            torn_down: false,
        }
    }

    /// The run, if it started; else what failed, once everything started so far is removed.
    async fn or_teardown(mut self, started: Result<(), RunError>) -> Result<Run, RunError> {
        if let Err(e) = started {
            if let Err(t) = self.teardown().await {
                tracing::error!("teardown after a failed start also failed: {t}");
            }
            return Err(e);
        }
        Ok(self)
    }

    async fn reach_hosts(&self) -> Result<(), RunError> {
        let s = &self.shared;
        let started = Instant::now();
        let nodes = self.nodes();
        let start = crate::host_clock::clock_offsets(&nodes).await?;
        for (host, c) in &start {
            tracing::info!("{}", crate::host_clock::clock_line(host, c));
        }
        *s.host_clocks.lock().unwrap_or_else(|e| e.into_inner()) = start
            .into_iter()
            .map(|(h, start)| (h, HostClock { start, end: None }))
            .collect();
        for result in join_all(
            nodes
                .iter()
                .map(|n| n.wait_healthy(n.spec().startup_timeout)),
        )
        .await
        {
            result?;
        }
        s.phase("topology", "hosts reached", started.elapsed());
        tracing::info!(
            "{} hosts of {} reached and healthy in {:.1}s (run {})",
            nodes.len(),
            s.topology.name,
            started.elapsed().as_secs_f64(),
            s.id
        );
        Ok(())
    }

    /// For a run of existing hosts: each host's clock at the start and (measured now, the
    /// first time this is asked) at the end; a host off or drifting by more than the figures'
    /// resolution is warned about. Empty for containers.
    pub async fn host_clocks(&self) -> BTreeMap<String, HostClock> {
        let s = &self.shared;
        let measured = s
            .host_clocks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .any(|c| c.end.is_some());
        if !measured && s.topology.is_hosts() {
            let end = crate::host_clock::clock_offsets(&self.nodes())
                .await
                .unwrap_or_default();
            let mut clocks = s.host_clocks.lock().unwrap_or_else(|e| e.into_inner());
            for (host, c) in clocks.iter_mut() {
                c.end = end.get(host).copied();
                if let Some(w) = c.warning() {
                    tracing::warn!("{host}: clock {w}");
                }
            }
        }
        s.host_clocks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Puts back what the run changed on its hosts, measures their clocks again, and keeps
    /// their logs.
    async fn leave_hosts(&self) {
        let s = &self.shared;
        s.stop_drifts();
        if let Some(j) = &s.journal {
            for line in crate::journal::replay(j.path(), &s.hosts)
                .await
                .unwrap_or_else(|e| vec![Err(e.to_string())])
            {
                match line {
                    Ok(l) => tracing::info!("{l}"),
                    Err(l) => {
                        tracing::error!("{l}; `hadrill heal {}` tries again", s.dir.display())
                    }
                }
            }
        }
        let nodes = self.nodes();
        self.host_clocks().await;
        keep_logs(s, &nodes).await;
        s.hosts.close().await;
    }

    /// A run over containers hadrill did not start (testcontainers', a compose project's), so
    /// its faults apply to them: each `(node name, container id or name)` becomes a node, and
    /// every fault is recorded in the run's history as usual. Partitions need `NET_ADMIN` and
    /// iptables on one side, as in a topology. `teardown` heals any partition and leaves the
    /// containers to their owner.
    pub async fn attach(
        name: &str,
        containers: &[(&str, &str)],
        options: &RunOptions,
    ) -> Result<Run, RunError> {
        let docker = docker::connect().await?;
        let mut topology = Topology::empty(name);
        let mut adopted = BTreeMap::new();
        for (node, container) in containers {
            let info = docker
                .inspect_container(container, None)
                .await
                .map_err(DockerError::api(format!("inspect {container}")))?;
            let host = info.host_config.unwrap_or_default();
            let networks: Vec<String> = info
                .network_settings
                .and_then(|n| n.networks)
                .unwrap_or_default()
                .into_keys()
                .collect();
            for n in &networks {
                if !topology.networks.contains(n) {
                    topology.networks.push(n.clone());
                }
            }
            let image = info.config.and_then(|c| c.image).unwrap_or_default();
            topology.nodes.insert(
                node.to_string(),
                NodeSpec::attached(node, ImageRef::External(image), networks, host.cap_add),
            );
            adopted.insert(node.to_string(), info.id.unwrap_or(container.to_string()));
        }
        let shared = new_shared(docker, topology, BTreeMap::new(), options, adopted)?;
        let run = Run {
            shared,
            torn_down: false,
        };
        for node in containers.iter().map(|(n, _)| n) {
            run.node(node)?.refresh().await?;
        }
        Ok(run)
    }

    async fn bring_up(&self, owner: &str) -> Result<(), RunError> {
        let s = &self.shared;
        let started = Instant::now();
        let labels = |extra: &[(&str, &str)]| {
            let mut l: HashMap<String, String> = [
                (labels::MANAGED, "true"),
                (labels::RUN, s.id.as_str()),
                (labels::OWNER, owner),
                (labels::TOPOLOGY, s.topology.name.as_str()),
                (labels::RUN_DIR, &*s.dir.to_string_lossy()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
            l.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            l
        };
        for net in &s.topology.networks {
            s.docker
                .create_network(NetworkCreateRequest {
                    name: self.network_name(net),
                    driver: Some("bridge".into()),
                    labels: Some(labels(&[(labels::NETWORK, net)])),
                    ..Default::default()
                })
                .await
                .map_err(DockerError::api(format!("create network {net}")))?;
            let inspected = s
                .docker
                .inspect_network(&self.network_name(net), None)
                .await
                .map_err(DockerError::api(format!("inspect network {net}")))?;
            let subnet = inspected
                .ipam
                .and_then(|i| i.config)
                .into_iter()
                .flatten()
                .find_map(|c| parse_subnet(c.subnet.as_deref()?));
            if let Some(subnet) = subnet {
                s.subnets
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(net.clone(), subnet);
            }
        }
        s.phase("topology", "networks", started.elapsed());
        let waves = s.topology.start_waves();
        let bar = Progress::bar(
            format!("starting {}", s.topology.name),
            waves.iter().map(Vec::len).sum(),
        );
        for (i, wave) in waves.iter().enumerate() {
            bar.set_message(&format!(
                "wave {}/{}: {}",
                i + 1,
                waves.len(),
                wave.join(" ")
            ));
            let starts = wave.iter().map(|name| {
                let spec = &s.topology.nodes[name];
                let node_labels = labels(&[(labels::NODE, name), (labels::ROLE, &spec.role)]);
                self.start_node(spec, node_labels).inspect(|started| {
                    if started.is_ok() {
                        bar.inc();
                    }
                })
            });
            let wave_started = Instant::now();
            for result in join_all(starts).await {
                result?;
            }
            s.phase(
                "topology",
                format!("wave {}/{}: {}", i + 1, waves.len(), wave.join(" ")),
                wave_started.elapsed(),
            );
        }
        tracing::info!(
            "topology {} is up in {:.1}s (run {})",
            s.topology.name,
            started.elapsed().as_secs_f64(),
            s.id
        );
        Ok(())
    }

    fn network_name(&self, net: &str) -> String {
        format!("hadrill-{}-{net}", self.shared.id)
    }

    async fn start_node(
        &self,
        spec: &NodeSpec,
        labels: HashMap<String, String>,
    ) -> Result<(), RunError> {
        let s = &self.shared;
        let name = s.container_name(&spec.name);
        let t0 = Instant::now();
        tracing::info!("starting {} ({})", spec.name, spec.role);
        let binds = self.stage_config(spec)?;
        let port_bindings = docker::publish_on_loopback(spec.ports.iter().copied());
        // Other nodes reach this one by its topology name on every network.
        let endpoint = || EndpointSettings {
            aliases: Some(vec![spec.name.clone()]),
            ..Default::default()
        };
        let first_net = &spec.networks[0];
        let body = ContainerCreateBody {
            image: Some(s.images[&spec.image].tag.clone()),
            cmd: (!spec.command.is_empty()).then(|| spec.command.clone()),
            env: Some(
                spec.env
                    .iter()
                    .map(|(k, v)| Ok(format!("{k}={}", self.fill_secrets(v, &spec.name)?)))
                    .chain(
                        spec.clock_env()
                            .into_iter()
                            .map(|(k, v)| Ok(format!("{k}={v}"))),
                    )
                    .collect::<Result<_, RunError>>()?,
            ),
            hostname: Some(spec.name.clone()),
            user: spec.user.clone(),
            labels: Some(labels),
            exposed_ports: Some(spec.ports.iter().map(|p| format!("{p}/tcp")).collect()),
            host_config: Some(HostConfig {
                binds: Some(binds),
                port_bindings: Some(port_bindings),
                cap_add: (!spec.cap_add.is_empty()).then(|| spec.cap_add.clone()),
                // A real init as PID 1: signals reach the service, zombies are reaped.
                init: Some(true),
                network_mode: Some(self.network_name(first_net)),
                tmpfs: (!spec.tmpfs.is_empty()).then(|| {
                    spec.tmpfs
                        .iter()
                        .map(|(path, size)| (path.clone(), format!("size={size}")))
                        .collect()
                }),
                ..Default::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(
                    [(self.network_name(first_net), endpoint())]
                        .into_iter()
                        .collect(),
                ),
            }),
            ..Default::default()
        };
        s.docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.clone()),
                    ..Default::default()
                }),
                body,
            )
            .await
            .map_err(DockerError::api(format!(
                "create container for {}",
                spec.name
            )))?;
        for net in &spec.networks[1..] {
            s.docker
                .connect_network(
                    &self.network_name(net),
                    NetworkConnectRequest {
                        container: name.clone(),
                        endpoint_config: Some(endpoint()),
                    },
                )
                .await
                .map_err(DockerError::api(format!("connect {} to {net}", spec.name)))?;
        }
        if !spec.autostart {
            tracing::info!("{} created; a `start` step starts it", spec.name);
            return Ok(());
        }
        s.docker
            .start_container(&name, None)
            .await
            .map_err(DockerError::api(format!("start {}", spec.name)))?;
        let node = self.node(&spec.name)?;
        node.refresh().await?;
        let done = if spec.once {
            node.wait_completed(spec.startup_timeout).await?;
            "completed"
        } else {
            node.wait_healthy(spec.startup_timeout).await?;
            "healthy"
        };
        tracing::info!("{} {done} in {:.1}s", spec.name, t0.elapsed().as_secs_f64());
        Ok(())
    }

    /// Replaces `${secret:NAME}` with the run's secret, `${setting:NAME}` with the topology's
    /// setting (checked when the topology was parsed), and `${address:NETWORK:N}` with the N-th
    /// address of the network's subnet (e.g. a virtual IP no container is given).
    fn fill_secrets(&self, text: &str, node: &str) -> Result<String, RunError> {
        let mut out = text.to_string();
        for name in crate::topology::placeholders(text, "secret") {
            let value = self.secret(name).ok_or_else(|| RunError::UnknownSecret {
                node: node.to_string(),
                name: name.to_string(),
                topology: self.shared.topology.path.clone(),
            })?;
            out = out.replace(&format!("${{secret:{name}}}"), &value);
        }
        for (name, value) in &self.shared.topology.settings {
            out = out.replace(&format!("${{setting:{name}}}"), value);
        }
        for spec in crate::topology::placeholders(text, "address") {
            let addr = self
                .network_address(spec)
                .ok_or_else(|| RunError::BadAddress {
                    node: node.to_string(),
                    spec: spec.to_string(),
                })?;
            out = out.replace(&format!("${{address:{spec}}}"), &addr.to_string());
        }
        Ok(out)
    }

    /// `NETWORK:N`: the N-th host address of the run's network.
    fn network_address(&self, spec: &str) -> Option<std::net::Ipv4Addr> {
        let (net, n) = spec.split_once(':')?;
        let n: u32 = n.parse().ok()?;
        let (base, prefix) = *self
            .shared
            .subnets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(net)?;
        let size = 1u64 << (32 - u32::from(prefix));
        (u64::from(n) < size - 1).then(|| std::net::Ipv4Addr::from(u32::from(base) + n))
    }

    /// A secret generated for this run (`secrets = [...]` in the topology).
    pub fn secret(&self, name: &str) -> Option<String> {
        self.shared.secret(name)
    }

    /// Copies the node's config files into the run directory and returns the bind mounts.
    fn stage_config(&self, spec: &NodeSpec) -> Result<Vec<String>, RunError> {
        let mut binds = Vec::new();
        for mount in &spec.config {
            let staged = self.shared.staged_config(&spec.name, &mount.target);
            if let Some(parent) = staged.parent() {
                std::fs::create_dir_all(parent).map_err(io_err("cannot create", parent))?;
            }
            let text = std::fs::read_to_string(&mount.source)
                .map_err(io_err("cannot read config file", &mount.source))?;
            std::fs::write(&staged, self.fill_secrets(&text, &spec.name)?)
                .map_err(io_err("cannot write", &staged))?;
            // Read-only, unless the product rotates its own secrets: its command writes them.
            let mode = if spec.rotate_secret.is_empty() {
                "ro"
            } else {
                "rw"
            };
            binds.push(format!("{}:{}:{mode}", staged.display(), mount.target));
        }
        Ok(binds)
    }

    pub fn id(&self) -> &str {
        &self.shared.id
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    pub fn topology(&self) -> &Topology {
        &self.shared.topology
    }

    pub fn clock(&self) -> &Clock {
        &self.shared.clock
    }

    pub fn history(&self) -> &History {
        &self.shared.history
    }

    pub fn docker(&self) -> &Docker {
        &self.shared.docker
    }

    /// A handle on one node: `run.node("app1")?.kill().await`.
    pub fn node(&self, name: &str) -> Result<Node, RunError> {
        Node::find(&self.shared, name).ok_or_else(|| RunError::NoSuchNode(name.to_string()))
    }

    /// Every node, in name order.
    pub fn nodes(&self) -> Vec<Node> {
        Node::all(&self.shared)
    }

    /// Where the run's wall time went so far, phase by phase.
    pub fn phases(&self) -> Vec<Phase> {
        self.shared
            .phases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Captures every node's log into the run directory and removes all the run created.
    pub async fn teardown(&mut self) -> Result<Removed, DockerError> {
        if self.torn_down {
            return Ok(Removed::default());
        }
        self.torn_down = true;
        if self.shared.topology.is_hosts() {
            self.leave_hosts().await;
            let private = private_dir(&self.shared.id);
            if let Err(e) = std::fs::remove_dir_all(&private) {
                tracing::debug!("cannot remove {}: {e}", private.display());
            }
            unregister_live(&self.shared.id);
            return Ok(Removed::default());
        }
        keep_logs(&self.shared, &self.nodes()).await;
        // Containers another tool owns outlive the run: leave them as they were found.
        if !self.shared.adopted.is_empty()
            && let Err(e) = self.inject(Fault::Heal).await
        {
            tracing::warn!("cannot heal the attached containers: {e}");
        }
        let removed =
            remove_run(&self.shared.docker, &self.shared.id, Some(&self.shared.dir)).await;
        unregister_live(&self.shared.id);
        removed
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if self.torn_down {
            return;
        }
        self.torn_down = true;
        tracing::warn!(
            "run {} dropped without teardown: removing its containers",
            self.shared.id
        );
        remove_run_blocking(&self.shared.id, Some(&self.shared.dir));
        unregister_live(&self.shared.id);
    }
}

/// A run's directory, history and shared state; `adopted` names containers hadrill did not
/// start.
fn new_shared(
    docker: Docker,
    topology: Topology,
    images: BTreeMap<ImageRef, ReadyImage>,
    options: &RunOptions,
    adopted: BTreeMap<String, String>,
) -> Result<Arc<Shared>, RunError> {
    let id = uuid::Uuid::new_v4().simple().to_string()[..10].to_string();
    let dir = options.run_dir.clone().unwrap_or_else(|| {
        let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
            .to_string()
            .replace(['-', ':'], "");
        options
            .runs_dir
            .join(format!("{stamp}-{}-{id}", topology.name))
    });
    std::fs::create_dir_all(dir.join("logs"))
        .map_err(io_err("cannot create run directory", &dir))?;
    let dir = dir.canonicalize().map_err(io_err("cannot resolve", &dir))?;
    let history = History::create(&dir.join("history.jsonl"))
        .map_err(io_err("cannot create history in", &dir))?;

    let journal = match topology.is_hosts() {
        true => Some(
            Journal::create(&dir, &owner_label())
                .map_err(io_err("cannot create the heal journal in", &dir))?,
        ),
        false => None,
    };
    Ok(Arc::new(Shared {
        hosts: crate::ssh::Connections::new(private_dir(&id).join("ssh")),
        journal,
        host_clocks: Mutex::new(BTreeMap::new()),
        id,
        dir,
        clock: Clock::start(),
        docker,
        history,
        topology,
        images,
        secrets: Mutex::new(BTreeMap::new()),
        nodes: Mutex::new(BTreeMap::new()),
        altered: Mutex::new(BTreeMap::new()),
        drifting: Mutex::new(BTreeMap::new()),
        fault_seq: AtomicU64::new(0),
        phases: Mutex::new(Vec::new()),
        subnets: Mutex::new(BTreeMap::new()),
        adopted,
    }))
}

/// `172.18.0.0/16` → (172.18.0.0, 16); IPv6 subnets are not used.
fn parse_subnet(s: &str) -> Option<(std::net::Ipv4Addr, u8)> {
    let (addr, len) = s.split_once('/')?;
    let len: u8 = len.parse().ok().filter(|l| *l <= 30)?;
    Some((addr.parse().ok()?, len))
}

fn filter(label: &str, value: &str) -> HashMap<String, Vec<String>> {
    [("label".to_string(), vec![format!("{label}={value}")])]
        .into_iter()
        .collect()
}

/// Removes every container and network labelled with `run_id`, saving container logs (redacted
/// of the run's secrets) into `run_dir/logs` first when given, then the run's private directory.
pub async fn remove_run(
    docker: &Docker,
    run_id: &str,
    run_dir: Option<&Path>,
) -> Result<Removed, DockerError> {
    let containers = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filter(labels::RUN, run_id)),
            ..Default::default()
        }))
        .await
        .map_err(DockerError::api("list containers"))?;
    let removals = containers.iter().map(|c| async move {
        let id = c.id.clone().unwrap_or_default();
        let node = c
            .labels
            .as_ref()
            .and_then(|l| l.get(labels::NODE))
            .cloned()
            .unwrap_or_else(|| id.clone());
        if let Some(dir) = run_dir {
            save_log(docker, &id, &log_path(dir, &node), run_id).await;
        }
        docker
            .remove_container(
                &id,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
            .await
            .or_else(ignore_missing)
            .map_err(DockerError::api(format!("remove container {node}")))
    });
    let mut removed = Removed::default();
    for r in join_all(removals).await {
        r?;
        removed.containers += 1;
    }
    let networks = docker
        .list_networks(Some(ListNetworksOptions {
            filters: Some(filter(labels::RUN, run_id)),
        }))
        .await
        .map_err(DockerError::api("list networks"))?;
    for net in networks {
        let id = net.id.unwrap_or_default();
        remove_network(docker, &id)
            .await
            .map_err(DockerError::api(format!(
                "remove network {}",
                net.name.unwrap_or(id)
            )))?;
        removed.networks += 1;
    }
    let private = private_dir(run_id);
    if private.exists()
        && let Err(e) = std::fs::remove_dir_all(&private)
    {
        tracing::warn!("cannot remove {}: {e}", private.display());
    }
    Ok(removed)
}

/// How long a network may keep an endpoint after its containers are gone.
const ENDPOINT_GRACE: Duration = Duration::from_secs(10);

/// Removes one of a run's networks. The engine refuses with 403 "has active endpoints" while a
/// container is still attached: one someone else is removing at the same moment (the dead run's
/// watchdog, another process's reaper), or one a request sent before the listing created. What
/// is attached is the run's own, so it is removed (and its endpoint force-disconnected, in case
/// the container is already gone) and the removal tried again, for up to `ENDPOINT_GRACE`.
async fn remove_network(docker: &Docker, id: &str) -> Result<(), bollard::errors::Error> {
    let deadline = Instant::now() + ENDPOINT_GRACE;
    loop {
        match docker.remove_network(id).await.or_else(ignore_missing) {
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 403, ..
            }) if Instant::now() < deadline => {
                let attached = docker
                    .inspect_network(id, None)
                    .await
                    .ok()
                    .and_then(|n| n.containers)
                    .unwrap_or_default();
                for container in attached.into_keys() {
                    let force = RemoveContainerOptions {
                        force: true,
                        v: true,
                        ..Default::default()
                    };
                    let _ = docker.remove_container(&container, Some(force)).await;
                    let request = NetworkDisconnectRequest {
                        container,
                        force: Some(true),
                    };
                    let _ = docker.disconnect_network(id, request).await;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            done => return done,
        }
    }
}

fn ignore_missing(e: bollard::errors::Error) -> Result<(), bollard::errors::Error> {
    match e {
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        } => Ok(()),
        other => Err(other),
    }
}

async fn save_log(docker: &Docker, container: &str, path: &Path, run_id: &str) {
    let mut stream = docker.logs(
        container,
        Some(LogsOptions {
            stdout: true,
            stderr: true,
            timestamps: true,
            ..Default::default()
        }),
    );
    let mut text = Vec::new();
    while let Some(Ok(chunk)) = stream.next().await {
        text.extend_from_slice(&chunk.into_bytes());
    }
    if let Some(parent) = path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let text = redact(run_id, &String::from_utf8_lossy(&text));
    if let Err(e) = std::fs::write(path, text) {
        tracing::warn!("cannot save log {}: {e}", path.display());
    }
}

/// The same removal from synchronous code (drop, signal handler): on its own thread and
/// runtime, because the caller's runtime may be the one unwinding.
pub fn remove_run_blocking(run_id: &str, run_dir: Option<&Path>) {
    let (run_id, run_dir) = (run_id.to_string(), run_dir.map(Path::to_path_buf));
    let worker = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        // A run of hosts created nothing in the engine: what it changed is in its journal.
        if let Some(journal) = run_dir
            .as_deref()
            .map(|d| d.join(crate::journal::FILE))
            .filter(|j| j.is_file())
        {
            rt.block_on(heal_journal(&journal));
            let _ = std::fs::remove_dir_all(private_dir(&run_id));
            return Ok(Removed::default());
        }
        rt.block_on(async {
            let docker = docker::connect().await?;
            remove_run(&docker, &run_id, run_dir.as_deref()).await
        })
        .map_err(std::io::Error::other)
    });
    match worker.join() {
        Ok(Ok(r)) => tracing::info!(
            "removed {} container(s), {} network(s)",
            r.containers,
            r.networks
        ),
        Ok(Err(e)) => {
            eprintln!("hadrill: cleanup failed ({e}); run `hadrill clean` to remove leftovers")
        }
        Err(_) => {
            eprintln!("hadrill: cleanup thread panicked; run `hadrill clean` to remove leftovers")
        }
    }
}

/// How many lines of a host's journal and of each named log file are kept.
const LOG_LINES: usize = 20_000;

/// Keeps in the run directory what the engine does not: a host's service journal and log
/// files (`logs/<host>.log`), a container's own log files (`logs/<node>-files.log`, beside
/// its output, which `remove_run` keeps).
async fn keep_logs(shared: &Shared, nodes: &[Node]) {
    join_all(nodes.iter().map(|n| async move {
        let (text, path) = match n.host() {
            Some(_) => (n.log_tail(LOG_LINES).await, log_path(&shared.dir, n.name())),
            None if n.spec().logs.is_empty() => return,
            None => (
                n.log_files(LOG_LINES).await,
                shared
                    .dir
                    .join("logs")
                    .join(format!("{}-files.log", n.name())),
            ),
        };
        if let Err(e) = std::fs::write(&path, shared.redact(&text)) {
            tracing::warn!("cannot save log {}: {e}", path.display());
        }
    }))
    .await;
}

/// Replays what a heal journal holds pending, over connections of its own; prints what it
/// did. Returns whether everything was undone.
pub async fn heal_journal(journal: &Path) -> bool {
    let control = std::env::temp_dir().join(format!("hadrill-heal-{}", std::process::id()));
    let conns = crate::ssh::Connections::new(control.clone());
    let report = crate::journal::replay(journal, &conns)
        .await
        .unwrap_or_else(|e| vec![Err(format!("cannot read {}: {e}", journal.display()))]);
    conns.close().await;
    let _ = std::fs::remove_dir_all(&control);
    let mut all = true;
    for line in report {
        match line {
            Ok(l) => tracing::info!("healed {l}"),
            Err(l) => {
                all = false;
                eprintln!("hadrill: {l}");
            }
        }
    }
    all
}

/// `<pid>:<start time in clock ticks>:<host>`: the start time tells a reused pid apart.
pub(crate) fn owner_label() -> String {
    let pid = std::process::id();
    format!("{pid}:{}:{}", process_start(pid).unwrap_or(0), hostname())
}

fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 22; the command name (field 2) may hold spaces, so count after its ')'.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// Whether the process named by an owner label is gone. Runs owned on another host, or
/// detached ones, are never considered dead.
pub fn owner_is_dead(owner: &str) -> bool {
    let mut parts = owner.splitn(3, ':');
    let (Some(pid), Some(start), Some(host)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    if host != hostname() {
        return false;
    }
    let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
        return false;
    };
    process_start(pid) != Some(start)
}

/// A run known to the engine by its labels.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub id: String,
    pub topology: String,
    pub owner: String,
    pub dir: Option<PathBuf>,
    pub containers: usize,
}

/// Every run with containers or networks in the engine.
pub async fn list_runs(docker: &Docker) -> Result<Vec<RunInfo>, DockerError> {
    let mut runs: BTreeMap<String, RunInfo> = BTreeMap::new();
    let mut note = |l: &HashMap<String, String>, is_container: bool| {
        let Some(id) = l.get(labels::RUN) else { return };
        let info = runs.entry(id.clone()).or_insert_with(|| RunInfo {
            id: id.clone(),
            topology: l.get(labels::TOPOLOGY).cloned().unwrap_or_default(),
            owner: l.get(labels::OWNER).cloned().unwrap_or_default(),
            dir: l.get(labels::RUN_DIR).map(PathBuf::from),
            containers: 0,
        });
        info.containers += usize::from(is_container);
    };
    let containers = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filter(labels::MANAGED, "true")),
            ..Default::default()
        }))
        .await
        .map_err(DockerError::api("list containers"))?;
    for c in &containers {
        if let Some(l) = &c.labels {
            note(l, true);
        }
    }
    let networks = docker
        .list_networks(Some(ListNetworksOptions {
            filters: Some(filter(labels::MANAGED, "true")),
        }))
        .await
        .map_err(DockerError::api("list networks"))?;
    for n in &networks {
        if let Some(l) = &n.labels {
            note(l, false);
        }
    }
    Ok(runs.into_values().collect())
}

/// Removes the runs whose owner process died without cleaning up (e.g. SIGKILL).
pub async fn reap_dead_runs(docker: &Docker) -> Result<Vec<String>, DockerError> {
    let mut reaped = Vec::new();
    for run in list_runs(docker).await? {
        if owner_is_dead(&run.owner) {
            let dir = run.dir.as_deref().filter(|d| d.is_dir());
            remove_run(docker, &run.id, dir).await?;
            reaped.push(run.id);
        }
    }
    remove_dead_private_dirs();
    Ok(reaped)
}

/// Private directories (staged config, secret values) whose owner process is gone: its
/// watchdog could not remove them, or it had none.
fn remove_dead_private_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for dir in entries.flatten().map(|e| e.path()) {
        let ours = dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(PRIVATE_PREFIX));
        if ours
            && let Ok(owner) = std::fs::read_to_string(dir.join(OWNER_FILE))
            && owner_is_dead(&owner)
            && let Err(e) = std::fs::remove_dir_all(&dir)
        {
            tracing::warn!("cannot remove {}: {e}", dir.display());
        }
    }
}

static LIVE_RUNS: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());
static SIGNALS: Once = Once::new();

fn register_live(id: &str, dir: &Path) {
    LIVE_RUNS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id.to_string(), dir.to_path_buf());
}

fn unregister_live(id: &str) {
    LIVE_RUNS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(id);
}

/// On SIGTERM/SIGHUP (e.g. nextest timing a test out), or a second Ctrl-C, remove this
/// process's runs, then exit with the conventional 128 + signal. A first Ctrl-C during a
/// scenario's steps only asks it to stop injecting (`interrupt`).
fn install_signal_handler() {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(
                "cannot install signal handlers ({e}); an interrupted run is reaped by the next one"
            );
            return;
        }
    };
    std::thread::spawn(move || {
        for sig in signals.forever() {
            // A first Ctrl-C lets a scenario heal and judge what it recorded.
            if sig == SIGINT && crate::interrupt::first_interrupt() {
                eprintln!(
                    "\nhadrill: interrupted: stopping the faults, healing, and judging what was recorded; Ctrl-C again removes everything now"
                );
                continue;
            }
            let runs: Vec<(String, PathBuf)> = LIVE_RUNS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            eprintln!(
                "\nhadrill: interrupted; removing the containers of {} run(s)",
                runs.len()
            );
            // No host change starts from now on; those under way end before the journals are
            // replayed, so the replay undoes them too.
            crate::journal::close(Duration::from_secs(10));
            let t0 = Instant::now();
            for (id, dir) in runs {
                remove_run_blocking(&id, Some(&dir));
                eprintln!(
                    "hadrill: run {id} removed; logs in {}",
                    dir.join("logs").display()
                );
            }
            eprintln!("hadrill: cleanup took {:.1}s", t0.elapsed().as_secs_f64());
            std::process::exit(128 + sig);
        }
    });
}

/// Removes every run hadrill labelled, whoever owns it.
pub async fn clean_all(docker: &Docker) -> Result<Vec<RunInfo>, DockerError> {
    let runs = list_runs(docker).await?;
    for run in &runs {
        remove_run(docker, &run.id, run.dir.as_deref().filter(|d| d.is_dir())).await?;
    }
    remove_dead_private_dirs();
    Ok(runs)
}
