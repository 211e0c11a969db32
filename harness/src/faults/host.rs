//! Faults on an existing host, over SSH: its service's own commands (systemd, runit, or the
//! topology's), and iptables rules in hadrill's chains. Each change is written to the heal
//! journal, with its undo, before it is made.

use std::sync::Arc;
use std::time::Duration;

use super::{CHAIN_IN, CHAIN_OUT, EXIT_WAIT, FaultError, await_exit};
use crate::journal::Undo;
use crate::node::Node;
use crate::shared::{POLL, Shared};
use crate::topology::HostSpec;

/// What a fault does to a host's service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    Kill,
    Stop,
    Start,
    Restart,
    Pause,
    Resume,
}

/// Journal keys: the service is down, or its processes are stopped.
const DOWN: &str = "service";
const PAUSED: &str = "paused";
pub(super) const NETWORK: &str = "network";

fn host(n: &Node) -> &HostSpec {
    n.host().expect("a host fault on a host node")
}

/// Writes `undo` to the journal (hadrill's own record of what to put back).
pub(super) fn journal(
    shared: &Shared,
    n: &Node,
    key: &str,
    commands: Vec<Vec<String>>,
    best_effort: bool,
) -> Result<(), FaultError> {
    let Some(j) = &shared.journal else {
        return Ok(());
    };
    j.undo(Undo {
        node: n.name().to_string(),
        key: key.to_string(),
        ssh: host(n).ssh.clone(),
        commands,
        best_effort,
    })
    .map_err(|e| journal_error(n, e))
}

pub(super) fn journal_done(shared: &Shared, n: &Node, key: &str) -> Result<(), FaultError> {
    match &shared.journal {
        Some(j) => j.done(n.name(), key).map_err(|e| journal_error(n, e)),
        None => Ok(()),
    }
}

fn journal_error(n: &Node, e: std::io::Error) -> FaultError {
    FaultError::Command {
        node: n.name().to_string(),
        cmd: "write the heal journal".into(),
        code: None,
        output: e.to_string(),
    }
}

/// Runs each command as root, in order; the first that fails is the fault's failure.
pub(super) async fn run_all(n: &Node, commands: &[Vec<String>]) -> Result<(), FaultError> {
    for cmd in commands {
        let argv: Vec<&str> = cmd.iter().map(String::as_str).collect();
        let out = n.exec_as_root(&argv).await?;
        super::succeeded(n, &cmd.join(" "), out)?;
    }
    Ok(())
}

pub(super) async fn service(
    shared: &Arc<Shared>,
    n: &Node,
    action: Action,
) -> Result<String, FaultError> {
    let s = &host(n).service;
    let name = n.name();
    match action {
        Action::Kill | Action::Stop => {
            journal(shared, n, DOWN, s.start.clone(), false)?;
            run_all(
                n,
                if action == Action::Kill {
                    &s.kill
                } else {
                    &s.stop
                },
            )
            .await?;
            await_exit(name, EXIT_WAIT, || n.refresh()).await?;
            Ok(format!("{name}: {} is down", s.name))
        }
        Action::Start => {
            run_all(n, &s.start).await?;
            wait_running(n).await?;
            journal_done(shared, n, DOWN)?;
            Ok(format!("{name}: {} started", s.name))
        }
        Action::Restart => {
            journal(shared, n, DOWN, s.start.clone(), false)?;
            run_all(n, &s.stop).await?;
            await_exit(name, EXIT_WAIT, || n.refresh()).await?;
            run_all(n, &s.start).await?;
            wait_running(n).await?;
            journal_done(shared, n, DOWN)?;
            Ok(format!("{name}: {} restarted", s.name))
        }
        Action::Pause => {
            let resume = missing(n, "resume", &s.resume)?;
            missing(n, "pause", &s.pause)?;
            journal(shared, n, PAUSED, resume.to_vec(), false)?;
            run_all(n, &s.pause).await?;
            Ok(format!("{name}: {} paused", s.name))
        }
        Action::Resume => {
            run_all(n, missing(n, "resume", &s.resume)?).await?;
            journal_done(shared, n, PAUSED)?;
            Ok(format!("{name}: {} resumed", s.name))
        }
    }
}

fn missing<'a>(
    n: &Node,
    what: &str,
    cmds: &'a [Vec<String>],
) -> Result<&'a [Vec<String>], FaultError> {
    if cmds.is_empty() {
        return Err(FaultError::NotOnHost {
            node: n.name().to_string(),
            fault: what.to_string(),
            why: format!("its service declares no `{what}` command"),
        });
    }
    Ok(cmds)
}

async fn wait_running(n: &Node) -> Result<(), FaultError> {
    let deadline = tokio::time::Instant::now() + n.spec().startup_timeout;
    loop {
        if n.refresh().await?.running {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(FaultError::Command {
                node: n.name().to_string(),
                cmd: host(n).service.status.join(" "),
                code: None,
                output: format!(
                    "the service was not running {:?} after it was started",
                    n.spec().startup_timeout
                ),
            });
        }
        tokio::time::sleep(POLL.max(Duration::from_millis(100))).await;
    }
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

/// Adds `rules` (iptables commands) in hadrill's chains, creating
/// them and their jumps first, one command at a time: the sudo rules a host needs name
/// `iptables` and nothing broader.
pub(super) async fn cut(
    shared: &Arc<Shared>,
    n: &Node,
    rules: &[String],
) -> Result<(), FaultError> {
    journal(shared, n, NETWORK, heal_network(), true)?;
    for (chain, builtin) in [(CHAIN_IN, "INPUT"), (CHAIN_OUT, "OUTPUT")] {
        // Exits 1 when the chain exists already: both are fine.
        n.exec_as_root(&["iptables", "-w", "-N", chain]).await?;
        let jump = ["iptables", "-w", "-C", builtin, "-j", chain];
        if !n.exec_as_root(&jump).await?.success() {
            run_all(
                n,
                &[words(&format!("iptables -w -I {builtin} 1 -j {chain}"))],
            )
            .await?;
        }
    }
    let commands: Vec<Vec<String>> = rules.iter().map(|r| words(r)).collect();
    run_all(n, &commands).await
}

/// Removes hadrill's chains and their jumps entirely.
pub(super) fn heal_network() -> Vec<Vec<String>> {
    [
        format!("iptables -w -D INPUT -j {CHAIN_IN}"),
        format!("iptables -w -D OUTPUT -j {CHAIN_OUT}"),
        format!("iptables -w -F {CHAIN_IN}"),
        format!("iptables -w -F {CHAIN_OUT}"),
        format!("iptables -w -X {CHAIN_IN}"),
        format!("iptables -w -X {CHAIN_OUT}"),
    ]
    .iter()
    .map(|c| words(c))
    .collect()
}

/// Runs the network heal: every command, whatever each finds.
pub(super) async fn heal(shared: &Arc<Shared>, n: &Node) -> Result<String, FaultError> {
    for cmd in heal_network() {
        let argv: Vec<&str> = cmd.iter().map(String::as_str).collect();
        n.exec_as_root(&argv).await?;
    }
    journal_done(shared, n, NETWORK)?;
    Ok("network healed (hadrill's chains removed)".into())
}
