//! The Docker engine connection and the few primitives every other module builds on.

use std::time::Duration;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{PortBinding, PortMap};
use futures_util::StreamExt;

/// Labels put on everything hadrill creates, so it can always be found and removed.
pub mod labels {
    pub const MANAGED: &str = "io.hadrill.managed";
    pub const RUN: &str = "io.hadrill.run";
    pub const NODE: &str = "io.hadrill.node";
    pub const ROLE: &str = "io.hadrill.role";
    pub const TOPOLOGY: &str = "io.hadrill.topology";
    pub const NETWORK: &str = "io.hadrill.network";
    /// `<pid>:<process start time>:<host>` of the process that owns the run, or `detached`.
    pub const OWNER: &str = "io.hadrill.owner";
    pub const RUN_DIR: &str = "io.hadrill.run-dir";
    pub const IMAGE: &str = "io.hadrill.image";
    /// On a watchdog container: the owner whose runs it removes when that process dies.
    pub const WATCHDOG: &str = "io.hadrill.watchdog";
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum DockerError {
    #[error("cannot reach the Docker engine ({host}): {source}")]
    #[diagnostic(help(
        "install and start a Docker engine (Debian: `apt-get install -y docker.io && systemctl start docker`), \
         or point DOCKER_HOST at a running one; `hadrill doctor` checks the setup"
    ))]
    Unreachable {
        host: String,
        source: bollard::errors::Error,
    },
    #[error("Docker API call `{what}` failed: {source}")]
    Api {
        what: String,
        source: bollard::errors::Error,
    },
    #[error("`{cmd}` in container {container} did not finish within {timeout:?}")]
    ExecTimeout {
        container: String,
        cmd: String,
        timeout: Duration,
    },
}

impl DockerError {
    pub fn api(what: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> DockerError {
        let what = what.into();
        move |source| DockerError::Api { what, source }
    }
}

pub fn engine_host() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
}

/// Connects and negotiates the API version down to what the engine speaks (1.41 here).
pub async fn connect() -> Result<Docker, DockerError> {
    let unreachable = |source| DockerError::Unreachable {
        host: engine_host(),
        source,
    };
    let docker = Docker::connect_with_defaults().map_err(unreachable)?;
    let docker = docker.negotiate_version().await.map_err(unreachable)?;
    docker.ping().await.map_err(unreachable)?;
    Ok(docker)
}

/// What a command run inside a container printed and how it exited.
#[derive(Debug, Clone)]
pub struct ExecOutput {
    pub exit_code: Option<i64>,
    pub output: String,
}

impl ExecOutput {
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }
}

/// Runs `cmd` inside `container` (as `user`, default the container's) and waits for it, at
/// most `timeout`.
pub async fn exec(
    docker: &Docker,
    container: &str,
    cmd: &[&str],
    user: Option<&str>,
    input: Option<&[u8]>,
    timeout: Duration,
) -> Result<ExecOutput, DockerError> {
    let run = async {
        let created = docker
            .create_exec(
                container,
                CreateExecOptions {
                    cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
                    attach_stdin: Some(input.is_some()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    user: user.map(str::to_string),
                    ..Default::default()
                },
            )
            .await
            .map_err(DockerError::api(format!("exec create in {container}")))?;
        let mut output = String::new();
        if let StartExecResults::Attached {
            output: mut out,
            input: mut stdin,
        } = docker
            .start_exec(&created.id, None)
            .await
            .map_err(DockerError::api(format!("exec start in {container}")))?
        {
            if let Some(input) = input {
                use tokio::io::AsyncWriteExt;
                stdin
                    .write_all(input)
                    .await
                    .and(stdin.shutdown().await)
                    .map_err(|e| {
                        DockerError::api(format!("exec input in {container}"))(e.into())
                    })?;
            }
            while let Some(chunk) = out.next().await {
                match chunk {
                    Ok(c) => output.push_str(&String::from_utf8_lossy(&c.into_bytes())),
                    Err(_) => break,
                }
            }
        }
        let inspect = docker
            .inspect_exec(&created.id)
            .await
            .map_err(DockerError::api(format!("exec inspect in {container}")))?;
        Ok(ExecOutput {
            exit_code: inspect.exit_code,
            output,
        })
    };
    tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| DockerError::ExecTimeout {
            container: container.to_string(),
            cmd: cmd.join(" "),
            timeout,
        })?
}

/// Port bindings publishing each container port on 127.0.0.1 only, Docker picking the host
/// port: nothing of a run is reachable from outside the machine.
pub fn publish_on_loopback(
    ports: impl IntoIterator<Item = u16>,
) -> HashMap<String, Option<Vec<PortBinding>>> {
    ports
        .into_iter()
        .map(|p| {
            (
                format!("{p}/tcp"),
                Some(vec![PortBinding {
                    host_ip: Some("127.0.0.1".into()),
                    host_port: Some(String::new()),
                }]),
            )
        })
        .collect()
}

/// Container port → its address on 127.0.0.1, from what the engine says was published.
pub fn published_ports(ports: Option<PortMap>) -> BTreeMap<u16, SocketAddr> {
    ports
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(key, bindings)| {
            let port: u16 = key.strip_suffix("/tcp")?.parse().ok()?;
            let b = bindings?.into_iter().next()?;
            let host_port: u16 = b.host_port?.parse().ok()?;
            Some((port, SocketAddr::from(([127, 0, 0, 1], host_port))))
        })
        .collect()
}
