//! Clock skew: the offset libfaketime reads, in a file inside the node. The node's processes
//! load libfaketime when the topology says `clock = "faketime"`; running ones re-read the
//! file within two seconds. The machine's clock is never touched. On an existing host (whose
//! service loads libfaketime), the file's removal is journalled before it is written: absent,
//! the clock is true.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::task::AbortHandle;

use std::sync::Arc;

use super::{FaultError, host, shell};
use crate::node::Node;
use crate::shared::Shared;
use crate::topology::FAKETIME_FILE;
use hadrill_model::ClockOffset;

/// The journal's key of a host's clock offset.
const KEY: &str = "clock";

/// The command that writes the offset file from its standard input, as root.
pub(super) fn write_command() -> Vec<String> {
    ["tee", FAKETIME_FILE].map(String::from).to_vec()
}

/// The command that removes it, as root: the clock true again.
pub(super) fn remove_command() -> Vec<String> {
    ["rm", "-f", FAKETIME_FILE].map(String::from).to_vec()
}

/// Writes the offset, then states what the node's clock reads and how many of its processes
/// the offset reaches (those that load libfaketime). On a host, the removal is journalled first
/// and the offset written is what is stated.
pub(super) async fn skew(
    shared: &Arc<Shared>,
    n: &Node,
    offset: ClockOffset,
) -> Result<String, FaultError> {
    if n.host().is_some() {
        let _changing = host::journal_undo(shared, n, KEY, vec![remove_command()], None)?;
        write(n, offset).await?;
        return Ok(format!(
            "{}: wall clock {} for the processes that load libfaketime ({FAKETIME_FILE})",
            n.name(),
            String::from(offset),
        ));
    }
    write(n, offset).await?;
    // PID 1 is the engine's init (static) and `$$` this shell: neither is the service.
    let script = "set -e; loaded=0; total=0; for d in /proc/[0-9]*; do p=${d#/proc/}; \
         if [ \"$p\" = 1 ] || [ \"$p\" = $$ ] || [ ! -r \"$d/maps\" ]; then continue; fi; \
         total=$((total+1)); if grep -q libfaketime \"$d/maps\" 2>/dev/null; then loaded=$((loaded+1)); fi; \
         done; echo \"$loaded $total\"; date +%s.%N";
    let out = shell(n, script).await?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let mut lines = out.output.lines();
    let counts: Vec<u32> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let read: Option<f64> = lines.next().and_then(|l| l.trim().parse().ok());
    let (loaded, total) = match counts[..] {
        [l, t] => (l, t),
        _ => (0, 0),
    };
    if loaded == 0 {
        return Err(FaultError::ClockUnreachable {
            node: n.name().to_string(),
        });
    }
    let seen = read.map_or("unread".into(), |r| format!("{:+.2} s", r - now));
    Ok(format!(
        "{}: wall clock {} (a process started now reads {seen}); {loaded} of {total} process(es) load libfaketime",
        n.name(),
        String::from(offset),
    ))
}

/// Moves the offset by `drift` a second from now on, in one-second steps, until aborted
/// (`heal`) or the node can no longer be reached (stopped, or the run torn down).
pub(super) fn drift(n: Node, start: ClockOffset, drift: ClockOffset) -> AbortHandle {
    tokio::spawn(async move {
        let t0 = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        loop {
            tick.tick().await;
            if write(&n, start.drifted(drift, t0.elapsed())).await.is_err() {
                return;
            }
        }
    })
    .abort_handle()
}

async fn write(n: &Node, offset: ClockOffset) -> Result<(), FaultError> {
    // On a host, a change under way: a closing process (a signal) refuses it and waits for it.
    let _changing = match n.host() {
        Some(_) => Some(host::changing(n)?),
        None => None,
    };
    let input = format!("{}\n", offset.faketime_spec());
    host::run_all(
        n,
        &[write_command()],
        Some(input.as_bytes()),
        host::COMMAND_LIMIT,
    )
    .await
}

/// Sets the clock true again: an offset of zero (processes that cached the file re-read it
/// within two seconds), or on a host the file removed, as journalled.
pub(super) async fn reset(shared: &Arc<Shared>, n: &Node) -> Result<String, FaultError> {
    if n.host().is_some() {
        host::run_all(n, &[remove_command()], None, host::COMMAND_LIMIT).await?;
        host::journal_done(shared, n, KEY)?;
    } else {
        write(n, ClockOffset { millis: 0 }).await?;
    }
    Ok("clock true again".into())
}
