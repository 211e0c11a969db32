//! A node: one running container of a run, reached from the harness through ports published
//! on 127.0.0.1 and from other nodes by its name on the run's networks.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::query_parameters::LogsOptions;
use futures_util::StreamExt;

use crate::docker::{self, DockerError, ExecOutput};
use crate::shared::{NodeState, POLL, Shared, log_path};
use crate::ssh::SshError;
use crate::topology::{HostSpec, NodeSpec};

/// What failed while reaching a node: the engine, for a container; SSH, for a host.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum BackendError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Ssh(#[from] SshError),
}

/// A node that did not come up, with the end of its log.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum NodeError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Backend(#[from] BackendError),
    #[error("node `{node}` failed to start: {reason}\n--- last lines of its log ---\n{log_tail}")]
    #[diagnostic(help("the full log is in {}; the topology file is {}", log.display(), topology.display()))]
    Start {
        node: String,
        reason: String,
        log_tail: String,
        log: PathBuf,
        topology: PathBuf,
    },
    #[error("the in_flight command of `{node}` failed (exit {code:?}): {output}")]
    #[diagnostic(help(
        "the topology's `in_flight` command must exit 0 and print one line per item the node holds (nothing when it holds none)"
    ))]
    InFlight {
        node: String,
        code: Option<i64>,
        output: String,
    },
}

/// The container's process state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub running: bool,
    pub paused: bool,
    pub exit_code: Option<i64>,
    /// The kernel's OOM killer ended the container's main process.
    pub oom_killed: bool,
}

#[derive(Clone)]
pub struct Node {
    name: String,
    pub(crate) shared: Arc<Shared>,
}

const EXEC_TIMEOUT: Duration = Duration::from_secs(30);

impl Node {
    pub(crate) fn new(name: &str, shared: Arc<Shared>) -> Self {
        Node {
            name: name.to_string(),
            shared,
        }
    }

    /// The node called `name`, if the run's topology has one.
    pub(crate) fn find(shared: &Arc<Shared>, name: &str) -> Option<Node> {
        shared
            .topology
            .nodes
            .contains_key(name)
            .then(|| Node::new(name, shared.clone()))
    }

    /// Every node of the run, in name order.
    pub(crate) fn all(shared: &Arc<Shared>) -> Vec<Node> {
        shared
            .topology
            .nodes
            .keys()
            .map(|n| Node::new(n, shared.clone()))
            .collect()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn spec(&self) -> &NodeSpec {
        &self.shared.topology.nodes[&self.name]
    }

    /// The existing host this node is, when it is one (`[hosts.NAME]`).
    pub fn host(&self) -> Option<&HostSpec> {
        self.spec().host.as_deref()
    }

    pub fn container(&self) -> String {
        self.shared.container_name(&self.name)
    }

    /// The host address (127.0.0.1:<port Docker chose>) of a published container port.
    pub fn host_addr(&self, port: u16) -> Option<SocketAddr> {
        self.state().ports.get(&port).copied()
    }

    /// The node's addresses on the run's networks (empty while it is not running).
    pub fn ips(&self) -> Vec<IpAddr> {
        self.state().ips
    }

    pub fn state(&self) -> NodeState {
        self.shared
            .nodes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&self.name)
            .cloned()
            .unwrap_or_default()
    }

    /// Re-reads addresses and published ports: they change when a container restarts.
    pub async fn refresh(&self) -> Result<Status, BackendError> {
        if let Some(host) = self.host() {
            return self.refresh_host(host).await;
        }
        let info = self
            .shared
            .docker
            .inspect_container(&self.container(), None)
            .await
            .map_err(DockerError::api(format!("inspect {}", self.name)))?;
        let net = info.network_settings.unwrap_or_default();
        let ips = net
            .networks
            .unwrap_or_default()
            .values()
            .filter_map(|e| e.ip_address.as_deref()?.parse().ok())
            .collect();
        let ports = docker::published_ports(net.ports);
        self.shared
            .nodes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(self.name.clone(), NodeState { ips, ports });
        let state = info.state.unwrap_or_default();
        Ok(Status {
            running: state.running.unwrap_or(false),
            paused: state.paused.unwrap_or(false),
            exit_code: state.exit_code,
            oom_killed: state.oom_killed.unwrap_or(false),
        })
    }

    /// A host's address is its topology's; its ports are its `entry`; it runs while its
    /// service's status command says so.
    async fn refresh_host(&self, host: &HostSpec) -> Result<Status, BackendError> {
        let ips = host.addresses.clone();
        self.shared
            .nodes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                self.name.clone(),
                NodeState {
                    ips,
                    ports: host.entry.clone(),
                },
            );
        let status: Vec<&str> = host.service.status.iter().map(String::as_str).collect();
        let out = self.run(&status, true, None, EXEC_TIMEOUT).await?;
        let running = out.success()
            && host
                .service
                .running_prefix
                .as_ref()
                .is_none_or(|p| out.output.trim_start().starts_with(p.as_str()));
        Ok(Status {
            running,
            paused: running
                && host.service.running_prefix.is_some()
                && out.output.contains("paused"),
            exit_code: None,
            oom_killed: false,
        })
    }

    pub async fn status(&self) -> Result<Status, BackendError> {
        self.refresh().await
    }

    /// Runs a command inside the node (at most 30 s): in its container, or on its host as the
    /// SSH user.
    pub async fn exec(&self, cmd: &[&str]) -> Result<ExecOutput, BackendError> {
        self.run(cmd, false, None, EXEC_TIMEOUT).await
    }

    /// `exec`, with `input` on the command's standard input.
    pub(crate) async fn exec_fed(
        &self,
        cmd: &[&str],
        input: Option<&[u8]>,
    ) -> Result<ExecOutput, BackendError> {
        self.run(cmd, false, input, EXEC_TIMEOUT).await
    }

    /// Runs `cmd` inside the node as root, whatever user the node runs as (e.g. firewall rules
    /// in a node that runs as `postgres`); on a host, through `sudo -n`.
    pub async fn exec_as_root(&self, cmd: &[&str]) -> Result<ExecOutput, BackendError> {
        self.run(cmd, true, None, EXEC_TIMEOUT).await
    }

    /// `exec_as_root` with a time limit of its own (a service's stop may take its timeout),
    /// and `input` on the command's standard input (a secret never goes on a command line).
    pub(crate) async fn exec_as_root_within(
        &self,
        cmd: &[&str],
        input: Option<&[u8]>,
        limit: Duration,
    ) -> Result<ExecOutput, BackendError> {
        self.run(cmd, true, input, limit).await
    }

    async fn run(
        &self,
        cmd: &[&str],
        root: bool,
        input: Option<&[u8]>,
        limit: Duration,
    ) -> Result<ExecOutput, BackendError> {
        match self.host() {
            Some(host) => Ok(self
                .shared
                .hosts
                .run(&self.name, &host.ssh, cmd, root, input, limit)
                .await?),
            None => Ok(docker::exec(
                &self.shared.docker,
                &self.container(),
                cmd,
                root.then_some("root"),
                input,
                limit,
            )
            .await?),
        }
    }

    /// The work the node holds right now, as its topology's `in_flight` command lists it (one
    /// item per line); `None` when the topology gives it no such command.
    pub async fn in_flight(&self) -> Result<Option<Vec<String>>, NodeError> {
        let Some(cmd) = &self.spec().in_flight else {
            return Ok(None);
        };
        let argv: Vec<&str> = cmd.iter().map(String::as_str).collect();
        let out = self.exec(&argv).await?;
        if !out.success() {
            return Err(NodeError::InFlight {
                node: self.name().to_string(),
                code: out.exit_code,
                output: out.output.trim().to_string(),
            });
        }
        Ok(Some(
            out.output
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect(),
        ))
    }

    /// Waits until the node's health command exits 0. Fails at once if the process exits.
    pub async fn wait_healthy(&self, timeout: Duration) -> Result<(), NodeError> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.refresh().await?;
            // A container whose process exited will not come up; a host's service may be
            // starting or restarting under its service manager, until the deadline.
            if !status.running && self.host().is_none() {
                return Err(self
                    .start_failure(format!(
                        "its process exited with code {:?}",
                        status.exit_code
                    ))
                    .await);
            }
            let health = self.spec().health.as_ref();
            let last = match health {
                _ if !status.running => "its service is not running".to_string(),
                None => return Ok(()),
                Some(health) => self.health_check(&health.cmd, deadline).await,
            };
            if last.is_empty() {
                return Ok(());
            }
            let interval = health.map_or(POLL * 5, |h| h.interval);
            if Instant::now() + interval > deadline {
                return Err(self
                    .start_failure(format!(
                        "not healthy within {timeout:?}; last check: {last}"
                    ))
                    .await);
            }
            tokio::time::sleep(interval).await;
        }
    }

    /// Runs a health command once: empty when it passed, else what it said.
    async fn health_check(&self, cmd: &[String], deadline: Instant) -> String {
        let argv: Vec<&str> = cmd.iter().map(String::as_str).collect();
        let left = deadline.saturating_duration_since(Instant::now());
        match self.run(&argv, false, None, left.max(POLL)).await {
            Ok(out) if out.success() => String::new(),
            Ok(out) => format!(
                "`{}` exited {:?}: {}",
                cmd.join(" "),
                out.exit_code,
                out.output.trim()
            ),
            Err(e) => e.to_string(),
        }
    }

    /// Waits until a one-shot node has exited 0.
    pub async fn wait_completed(&self, timeout: Duration) -> Result<(), NodeError> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.refresh().await?;
            if !status.running {
                return match status.exit_code {
                    Some(0) => Ok(()),
                    code => Err(self
                        .start_failure(format!("it exited with code {code:?}"))
                        .await),
                };
            }
            if Instant::now() > deadline {
                return Err(self
                    .start_failure(format!("it was still running after {timeout:?}"))
                    .await);
            }
            tokio::time::sleep(POLL * 5).await;
        }
    }

    async fn start_failure(&self, reason: String) -> NodeError {
        NodeError::Start {
            node: self.name.clone(),
            reason,
            log_tail: self.shared.redact(&self.log_tail(30).await),
            log: log_path(&self.shared.dir, &self.name),
            topology: self.shared.topology.path.clone(),
        }
    }

    /// The last `lines` lines of the container's output, or of a host's service journal; then
    /// of each of the node's own log files.
    pub async fn log_tail(&self, lines: usize) -> String {
        let mut text = match self.host() {
            Some(host) => match &host.service.journal {
                Some(journal) => {
                    let n = lines.to_string();
                    let mut argv: Vec<&str> = journal.iter().map(String::as_str).collect();
                    argv.extend(["-n", &n]);
                    self.exec_as_root(&argv)
                        .await
                        .map(|out| out.output)
                        .unwrap_or_default()
                }
                None => String::new(),
            },
            None => self.output_tail(lines).await,
        };
        text.push_str(&self.log_files(lines).await);
        text
    }

    async fn output_tail(&self, lines: usize) -> String {
        let mut stream = self.shared.docker.logs(
            &self.container(),
            Some(LogsOptions {
                stdout: true,
                stderr: true,
                tail: lines.to_string(),
                ..Default::default()
            }),
        );
        let mut text = String::new();
        while let Some(Ok(chunk)) = stream.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
        }
        text
    }

    /// The last `lines` lines of each file the node's `logs` names, each under a header: read
    /// over SSH on a host, copied out of a container (running or not).
    pub async fn log_files(&self, lines: usize) -> String {
        let mut text = String::new();
        for file in &self.spec().logs {
            let body = match self.host() {
                Some(_) => {
                    let n = lines.to_string();
                    match self.exec_as_root(&["tail", "-n", &n, file]).await {
                        Ok(out) => out.output,
                        Err(e) => e.to_string(),
                    }
                }
                None => match self.copy_out(file).await {
                    Ok(all) => last_lines(&all, lines),
                    Err(e) => format!("(not read: {e})\n"),
                },
            };
            text.push_str(&format!("--- {file} ---\n{body}"));
        }
        text
    }

    /// A file of the container, through the engine's archive API (a stopped container too).
    async fn copy_out(&self, path: &str) -> Result<String, String> {
        use bollard::query_parameters::DownloadFromContainerOptions;
        let mut stream = self.shared.docker.download_from_container(
            &self.container(),
            Some(DownloadFromContainerOptions {
                path: path.to_string(),
            }),
        );
        let mut tar_bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            tar_bytes.extend_from_slice(&chunk.map_err(|e| e.to_string())?);
        }
        let mut archive = tar::Archive::new(tar_bytes.as_slice());
        let mut entries = archive.entries().map_err(|e| e.to_string())?;
        let mut entry = entries
            .next()
            .ok_or("an empty archive")?
            .map_err(|e| e.to_string())?;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).map_err(|e| e.to_string())?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// The last `n` lines of `text`.
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = lines[lines.len().saturating_sub(n)..].join("\n");
    out.push('\n');
    out
}
