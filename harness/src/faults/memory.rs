//! Memory pressure: the node's cgroup limited to what it uses now plus a headroom (the
//! engine's container update); the kernel's OOM killer takes back what the node allocates
//! beyond it. Under cgroup v1 the kernel refuses a limit below what is in use, so the limit
//! starts above it.

use bollard::models::ContainerUpdateBody;

use super::{FaultError, shell};
use crate::docker::DockerError;
use crate::node::Node;
use hadrill_model::ByteSize;

/// Bytes in use and OOM kills so far, from the node's own cgroup (v2, else v1).
const USAGE: &str = "d=/sys/fs/cgroup; if [ -f $d/memory.current ]; then \
     cat $d/memory.current; grep '^oom_kill ' $d/memory.events | cut -d' ' -f2; else \
     cat $d/memory/memory.usage_in_bytes; grep '^oom_kill ' $d/memory/memory.oom_control | cut -d' ' -f2; fi";

struct Usage {
    bytes: u64,
    oom_kills: u64,
}

async fn usage(n: &Node) -> Result<Usage, FaultError> {
    let out = shell(n, USAGE).await?;
    let numbers: Vec<u64> = out
        .output
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    match numbers[..] {
        [bytes, oom_kills] => Ok(Usage { bytes, oom_kills }),
        // Kernels before 4.13 do not count OOM kills.
        [bytes] => Ok(Usage {
            bytes,
            oom_kills: 0,
        }),
        _ => Err(FaultError::Command {
            node: n.name().to_string(),
            cmd: USAGE.into(),
            code: None,
            output: out.output,
        }),
    }
}

async fn set(n: &Node, bytes: u64) -> Result<(), FaultError> {
    let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
    n.shared
        .docker
        .update_container(
            &n.container(),
            ContainerUpdateBody {
                memory: Some(bytes),
                // Memory and swap together: no swap to spill into.
                memory_swap: Some(bytes),
                ..Default::default()
            },
        )
        .await
        .map_err(DockerError::api(format!(
            "limit the memory of {}",
            n.name()
        )))?;
    Ok(())
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

pub(super) async fn limit(n: &Node, headroom: ByteSize) -> Result<String, FaultError> {
    let now = usage(n).await?;
    let limit = now.bytes + headroom.bytes;
    set(n, limit).await?;
    Ok(format!(
        "{}: memory limited to {} ({} in use + {} headroom); OOM kills in the node so far: {}",
        n.name(),
        mib(limit),
        mib(now.bytes),
        String::from(headroom),
        now.oom_kills
    ))
}

/// Lifts the limit to the engine's whole memory (the engine cannot remove a limit once set)
/// and states the OOM kills it caused.
pub(super) async fn lift(n: &Node, running: bool) -> Result<String, FaultError> {
    let total = n
        .shared
        .docker
        .info()
        .await
        .map_err(DockerError::api("read the engine's memory".to_string()))?
        .mem_total
        .and_then(|t| u64::try_from(t).ok())
        .unwrap_or(u64::MAX >> 2);
    set(n, total).await?;
    let kills = if running {
        format!("OOM kills in the node: {}", usage(n).await?.oom_kills)
    } else if n.status().await?.oom_killed {
        "the node's main process was OOM-killed".into()
    } else {
        "the node was not running".into()
    };
    Ok(format!("memory limit lifted; {kills}"))
}
