//! The watchdog that needs no next start: when the process owning runs dies without tearing
//! them down (SIGKILL, OOM, a CI runner killed), its containers and networks are removed
//! within seconds. Like testcontainers' Ryuk, but offline: a container of the base image with
//! the engine's socket, holding a TCP connection from this process; when the connection
//! drops, it removes everything labelled with this process as owner and the owner's private
//! run directories (staged secrets, under the temporary directory it mounts), then itself
//! (`reaper/watchdog.py`). One per process, started with its first run.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::CreateContainerOptions;

use crate::docker::{self, DockerError, labels};
use crate::images::{ImageBuilder, ImageError, ImageRef};
use crate::shared::{OWNER_FILE, PRIVATE_PREFIX};

const SCRIPT: &str = include_str!("reaper/watchdog.py");
const PORT: u16 = 7000;

/// The connection the watchdog holds; closed only when this process ends.
static HELD: tokio::sync::Mutex<Option<TcpStream>> = tokio::sync::Mutex::const_new(None);

#[derive(Debug, thiserror::Error)]
pub enum ReaperError {
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("the engine is not reached through a local socket ({0}); the watchdog needs one")]
    NoLocalSocket(String),
    #[error("the engine published no port for the watchdog")]
    NotPublished,
    #[error("the watchdog did not answer within {0:?}: {1}")]
    NoAnswer(Duration, String),
}

/// Makes sure a watchdog guards this process's runs (`owner`: their owner label), starting
/// one from the base image if none holds a live connection from this process.
pub async fn ensure(
    docker: &Docker,
    images: &ImageBuilder,
    owner: &str,
) -> Result<(), ReaperError> {
    let mut held = HELD.lock().await;
    if held.as_ref().is_some_and(alive) {
        return Ok(());
    }
    let image = images.ensure(&ImageRef::Base).await?.tag;
    let socket = local_socket()?;
    let name = format!(
        "hadrill-watchdog-{}",
        owner.replace(|c: char| !c.is_ascii_alphanumeric(), "-")
    );
    // A watchdog of an earlier life of this pid, or one whose connection dropped: replace it.
    let _ = docker
        .remove_container(
            &name,
            Some(bollard::query_parameters::RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await;
    let body = ContainerCreateBody {
        image: Some(image),
        cmd: Some(vec!["python3".into(), "-c".into(), SCRIPT.into()]),
        env: Some(vec![
            format!("HADRILL_OWNER={owner}"),
            format!("HADRILL_PRIVATE_PREFIX={PRIVATE_PREFIX}"),
            format!("HADRILL_OWNER_FILE={OWNER_FILE}"),
        ]),
        // Not `owner`: the watchdog must not remove itself while it reaps.
        labels: Some([(labels::WATCHDOG.to_string(), owner.to_string())].into()),
        exposed_ports: Some(vec![format!("{PORT}/tcp")]),
        host_config: Some(HostConfig {
            binds: Some(vec![
                format!("{socket}:/var/run/docker.sock"),
                // Where the runs' private directories (staged secrets) are, to remove them too.
                format!("{}:/private", std::env::temp_dir().display()),
            ]),
            port_bindings: Some(docker::publish_on_loopback([PORT])),
            auto_remove: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    };
    docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(name.clone()),
                ..Default::default()
            }),
            body,
        )
        .await
        .map_err(DockerError::api("create the watchdog container"))?;
    docker
        .start_container(&name, None)
        .await
        .map_err(DockerError::api("start the watchdog container"))?;
    let addr = docker
        .inspect_container(&name, None)
        .await
        .map_err(DockerError::api("inspect the watchdog container"))?
        .network_settings
        .map(|n| docker::published_ports(n.ports))
        .and_then(|p| p.get(&PORT).copied())
        .ok_or(ReaperError::NotPublished)?;
    let stream = tokio::task::spawn_blocking(move || connect(addr))
        .await
        .map_err(|e| ReaperError::NoAnswer(Duration::ZERO, e.to_string()))??;
    tracing::debug!("watchdog {name} guards runs of {owner}");
    *held = Some(stream);
    Ok(())
}

/// Connects until the watchdog itself says `ready` (the engine's port proxy accepts before
/// the script listens).
fn connect(addr: SocketAddr) -> Result<TcpStream, ReaperError> {
    let limit = Duration::from_secs(20);
    let t0 = Instant::now();
    let mut last = String::new();
    while t0.elapsed() < limit {
        let attempt = TcpStream::connect(addr).and_then(|s| {
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            let mut line = String::new();
            BufReader::new(&s).read_line(&mut line)?;
            if line.trim() == "ready" {
                s.set_read_timeout(None)?;
                Ok(s)
            } else {
                Err(std::io::Error::other("closed before ready"))
            }
        });
        match attempt {
            Ok(s) => return Ok(s),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(ReaperError::NoAnswer(limit, last))
}

/// The watchdog still holds the other end (it never sends after `ready`).
fn alive(s: &TcpStream) -> bool {
    if s.set_nonblocking(true).is_err() {
        return false;
    }
    let open =
        matches!(s.peek(&mut [0u8; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    let _ = s.set_nonblocking(false);
    open
}

/// The host path of the engine's socket, to mount into the watchdog.
fn local_socket() -> Result<String, ReaperError> {
    match std::env::var("DOCKER_HOST") {
        Err(_) => Ok("/var/run/docker.sock".into()),
        Ok(h) => h
            .strip_prefix("unix://")
            .map(str::to_string)
            .ok_or(ReaperError::NoLocalSocket(h)),
    }
}
