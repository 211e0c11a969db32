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

/// What a fault does to a host's service; a stop's time to exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    Kill,
    Stop(Duration),
    Start,
    Restart(Duration),
    Pause,
    Resume,
}

/// Journal keys: the service is down, or its processes are stopped.
const DOWN: &str = "service";
const PAUSED: &str = "paused";
pub(super) const NETWORK: &str = "network";
const THROTTLE: &str = "throttle";

fn host(n: &Node) -> &HostSpec {
    n.host().expect("a host fault on a host node")
}

/// Writes `undo` to the journal (hadrill's own record of what to put back) before the change.
fn journal(shared: &Shared, n: &Node, undo: Undo) -> Result<(), FaultError> {
    let j = shared
        .journal
        .as_ref()
        .ok_or_else(|| journal_error(n, std::io::Error::other("the run has no heal journal")))?;
    j.undo(undo).map_err(|e| journal_error(n, e))
}

fn undo(n: &Node, key: &str, commands: Vec<Vec<String>>) -> Undo {
    Undo {
        node: n.name().to_string(),
        key: key.to_string(),
        ssh: host(n).ssh.clone(),
        commands,
        best_effort: false,
        verify: None,
        input: None,
    }
}

/// Journals the undo `commands` of a change about to be made to host `n` under `key`: the
/// change is under way (a closing process waits for it) while the returned guard lives. With
/// `verify`, each command may find nothing to undo: the check proves the undo done.
pub(super) fn journal_undo(
    shared: &Shared,
    n: &Node,
    key: &str,
    commands: Vec<Vec<String>>,
    verify: Option<crate::journal::Verify>,
) -> Result<crate::journal::Changing, FaultError> {
    let changing = changing(n)?;
    let undo = Undo {
        best_effort: verify.is_some(),
        verify,
        ..undo(n, key, commands)
    };
    journal(shared, n, undo)?;
    Ok(changing)
}

/// Notes the change `key` of host `n` undone.
pub(super) fn journal_done(shared: &Shared, n: &Node, key: &str) -> Result<(), FaultError> {
    match &shared.journal {
        Some(j) => j.done(n.name(), key).map_err(|e| journal_error(n, e)),
        None => Err(journal_error(
            n,
            std::io::Error::other("the run has no heal journal"),
        )),
    }
}

/// A change about to be made to a host: refused once the process is closing (a signal's
/// cleanup is replaying the journal), and counted until it is done, so that cleanup waits.
pub(super) fn changing(n: &Node) -> Result<crate::journal::Changing, FaultError> {
    crate::journal::Changing::begin().ok_or_else(|| FaultError::NotOnHost {
        node: n.name().to_string(),
        fault: "change".into(),
        why: "hadrill is exiting and putting the hosts back".into(),
    })
}

fn journal_error(n: &Node, e: std::io::Error) -> FaultError {
    FaultError::Command {
        node: n.name().to_string(),
        cmd: "write the heal journal".into(),
        code: None,
        output: e.to_string(),
    }
}

/// Runs each command as root, in order, each within `limit` and fed `input`; the first that
/// fails is the fault's failure.
pub(super) async fn run_all(
    n: &Node,
    commands: &[Vec<String>],
    input: Option<&[u8]>,
    limit: Duration,
) -> Result<(), FaultError> {
    for cmd in commands {
        let argv: Vec<&str> = cmd.iter().map(String::as_str).collect();
        let out = n.exec_as_root_within(&argv, input, limit).await?;
        super::succeeded(n, &cmd.join(" "), out)?;
    }
    Ok(())
}

/// How long a service command may take: its own stop timeout and then some.
fn limit(timeout: Option<Duration>) -> Duration {
    COMMAND_LIMIT + timeout.unwrap_or_default()
}

pub(super) const COMMAND_LIMIT: Duration = Duration::from_secs(30);

pub(super) async fn service(
    shared: &Arc<Shared>,
    n: &Node,
    action: Action,
) -> Result<String, FaultError> {
    let _changing = changing(n)?;
    let s = &host(n).service;
    let name = n.name();
    match action {
        Action::Kill | Action::Stop(_) => {
            journal(shared, n, undo(n, DOWN, s.start.clone()))?;
            match action {
                Action::Stop(t) => run_all(n, &s.stop, None, limit(Some(t))).await?,
                _ => run_all(n, &s.kill, None, limit(None)).await?,
            }
            await_exit(name, EXIT_WAIT, || n.refresh()).await?;
            Ok(format!("{name}: {} is down", s.name))
        }
        Action::Start => {
            run_all(n, &s.start, None, limit(None)).await?;
            wait_running(n).await?;
            journal_done(shared, n, DOWN)?;
            Ok(format!("{name}: {} started", s.name))
        }
        Action::Restart(t) => {
            journal(shared, n, undo(n, DOWN, s.start.clone()))?;
            run_all(n, &s.stop, None, limit(Some(t))).await?;
            await_exit(name, EXIT_WAIT, || n.refresh()).await?;
            run_all(n, &s.start, None, limit(None)).await?;
            wait_running(n).await?;
            journal_done(shared, n, DOWN)?;
            Ok(format!("{name}: {} restarted", s.name))
        }
        Action::Pause => {
            let resume = missing(n, "resume", &s.resume)?;
            missing(n, "pause", &s.pause)?;
            journal(shared, n, undo(n, PAUSED, resume.to_vec()))?;
            run_all(n, &s.pause, None, limit(None)).await?;
            Ok(format!("{name}: {} paused", s.name))
        }
        Action::Resume => {
            run_all(n, missing(n, "resume", &s.resume)?, None, limit(None)).await?;
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

/// A command line of plain words (chain names, addresses, numbers) as an argument vector.
pub(super) fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

/// The command that lists the firewall's rules, chains included (`-N CHAIN`).
pub(super) fn listing() -> Vec<String> {
    words("iptables -w -S")
}

/// Adds `rules` (iptables commands) in hadrill's chains all at once: one `iptables-restore`
/// reads on its standard input the chains and jumps the firewall still lacks (as its listing
/// shows) and the rules, so a cut of many addresses is whole at one instant (one command per
/// rule took 2.4 s over SSH for an isolate of one host from eight). The sudo rules a host
/// needs name `iptables` and `iptables-restore` and nothing broader.
pub(super) async fn cut(
    shared: &Arc<Shared>,
    n: &Node,
    rules: &[String],
) -> Result<(), FaultError> {
    let _changing = changing(n)?;
    journal(shared, n, network_undo(n))?;
    let out = n.exec_as_root(&as_strs(&listing())).await?;
    let listed = super::succeeded(n, &listing().join(" "), out)?.output;
    let input = restore_input(rules, &listed);
    run_all(n, &[restore()], Some(input.as_bytes()), limit(None)).await
}

/// The command that applies a rule set at once, leaving every other rule be.
pub(super) fn restore() -> Vec<String> {
    words("iptables-restore -w --noflush")
}

/// `rules` (iptables commands appending to hadrill's chains) as `iptables-restore` reads them,
/// after the chains and jumps that `listed` (the firewall's `iptables -S`) lacks. A chain is
/// declared only when absent: declaring one flushes it, and an earlier cut's rules stay.
pub(super) fn restore_input(rules: &[String], listed: &str) -> String {
    let jumps = [(CHAIN_IN, "INPUT"), (CHAIN_OUT, "OUTPUT")];
    table_input("filter", &jumps, "-I {builtin} 1", rules, listed)
}

/// `rules` for `iptables-restore` into `table`, after each `(chain, builtin)` of `chains` that
/// `listed` (the table's `iptables -S`) lacks: the chain declared, and its jump from `builtin`
/// added where `at` says (`-I {builtin} 1` first, `-A {builtin}` last).
pub(super) fn table_input(
    table: &str,
    chains: &[(&str, &str)],
    at: &str,
    rules: &[String],
    listed: &str,
) -> String {
    let has = |line: String| listed.lines().any(|l| l.trim() == line);
    let mut input = format!("*{table}\n");
    for (chain, builtin) in chains {
        if !has(format!("-N {chain}")) {
            input.push_str(&format!(":{chain} - [0:0]\n"));
        }
        if !has(format!("-A {builtin} -j {chain}")) {
            let at = at.replace("{builtin}", builtin);
            input.push_str(&format!("{at} -j {chain}\n"));
        }
    }
    for r in rules {
        input.push_str(r.strip_prefix("iptables -w ").unwrap_or(r));
        input.push('\n');
    }
    input.push_str("COMMIT\n");
    input
}

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
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

/// The undo of a cut: every heal command, whatever each finds (a jump never added), then
/// proof that no rule of hadrill's is left.
fn network_undo(n: &Node) -> Undo {
    Undo {
        best_effort: true,
        verify: Some(crate::journal::Verify {
            argv: words("iptables -w -S"),
            absent: "HADRILL".into(),
        }),
        ..undo(n, NETWORK, heal_network())
    }
}

/// The command that lists the host's network interfaces (each a link in /sys/class/net, where
/// a bonding driver also keeps a file), as the SSH user.
pub(super) fn interfaces_command() -> Vec<String> {
    let mut argv = words("find /sys/class/net -mindepth 1 -maxdepth 1 -type l -printf");
    argv.push("%f\\n".into());
    argv
}

/// The command that takes hadrill's token bucket off `dev`: the kernel's default queueing
/// comes back, not one the host's admin had set (docs/hosts.md says so).
pub(super) fn unthrottle_command(dev: &str) -> Vec<String> {
    words(&format!("tc qdisc del dev {dev} root"))
}

/// A token bucket at `rate` on each of the host's interfaces but the loopback, as in a
/// container: what the host sends, its SSH answers included, waits for tokens. Their removal is
/// journalled first.
pub(super) async fn throttle(
    shared: &Arc<Shared>,
    n: &Node,
    rate: hadrill_model::Bandwidth,
) -> Result<(), FaultError> {
    let _changing = changing(n)?;
    let out = n.exec(&as_strs(&interfaces_command())).await?;
    let listed = super::succeeded(n, &interfaces_command().join(" "), out)?.output;
    let devs: Vec<&str> = listed.split_whitespace().filter(|d| *d != "lo").collect();
    let undo = Undo {
        best_effort: true,
        ..undo(
            n,
            THROTTLE,
            devs.iter().map(|d| unthrottle_command(d)).collect(),
        )
    };
    journal(shared, n, undo)?;
    let commands: Vec<Vec<String>> = devs.iter().map(|d| words(&super::tbf(d, rate))).collect();
    run_all(n, &commands, None, limit(None)).await
}

/// Heals the host's network: hadrill's chains removed, noted done only once the firewall
/// shows nothing of hadrill's, and its token buckets taken off as journalled, if any.
pub(super) async fn heal(shared: &Arc<Shared>, n: &Node) -> Result<String, FaultError> {
    apply(shared, n, &network_undo(n)).await?;
    if undo_pending(shared, n, THROTTLE).await? {
        return Ok("network healed (hadrill's chains and token buckets removed)".into());
    }
    Ok("network healed (hadrill's chains removed)".into())
}

/// Undoes host `n`'s change `key` as its journal holds it pending, and notes it done. False:
/// nothing of the kind is pending.
pub(super) async fn undo_pending(
    shared: &Arc<Shared>,
    n: &Node,
    key: &str,
) -> Result<bool, FaultError> {
    let Some(j) = shared.journal.as_ref() else {
        return Err(journal_error(
            n,
            std::io::Error::other("the run has no heal journal"),
        ));
    };
    let pending = crate::journal::pending(j.path())
        .map_err(|e| journal_error(n, e))?
        .undos
        .into_iter()
        .find(|u| u.node == n.name() && u.key == key);
    match pending {
        Some(u) => apply(shared, n, &u).await.map(|()| true),
        None => Ok(false),
    }
}

/// Runs `u` (commands, then its check) and notes it done.
async fn apply(shared: &Arc<Shared>, n: &Node, u: &Undo) -> Result<(), FaultError> {
    crate::journal::apply(u, &shared.hosts)
        .await
        .map_err(|e| FaultError::Command {
            node: n.name().to_string(),
            cmd: format!("undo {}", u.key),
            code: None,
            output: e,
        })?;
    journal_done(shared, n, &u.key)
}

/// Sets `secret` on the node to `value` by the product's own `commands`, fed the value on
/// their standard input. On a host, the undo is journalled first, as one: the same commands fed
/// the install's own value (read where the user keeps it when the undo runs), then the service
/// stopped and started so that it runs with it again. A restore that fails leaves the restart
/// pending with it.
pub(super) async fn rotate(
    shared: &Arc<Shared>,
    n: &Node,
    secret: &str,
    commands: &[Vec<String>],
    value: &str,
) -> Result<String, FaultError> {
    let _changing = match n.host() {
        None => None,
        Some(h) => {
            let changing = changing(n)?;
            let restart = h.service.stop.iter().chain(&h.service.start).cloned();
            let restore = Undo {
                input: Some(crate::journal::SecretInput {
                    name: secret.to_string(),
                    secrets_file: shared.topology.secrets_file.clone(),
                    fed: commands.len(),
                }),
                ..undo(
                    n,
                    &format!("secret {secret}"),
                    commands.iter().cloned().chain(restart).collect(),
                )
            };
            journal(shared, n, restore)?;
            Some(changing)
        }
    };
    run_all(n, commands, Some(value.as_bytes()), limit(None)).await?;
    Ok(format!(
        "{}: {secret} set by the product's `{}`",
        n.name(),
        commands[0].join(" ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_declares_only_the_chains_and_jumps_the_firewall_lacks() {
        let rules = ["iptables -w -A HADRILL-IN -s 10.0.0.9 -j DROP".to_string()];
        // A second cut: the chains and jumps are there, and declaring a chain would flush it.
        let listed = "-P INPUT ACCEPT\n-N HADRILL-IN\n-N HADRILL-OUT\n-A INPUT -j HADRILL-IN\n\
                      -A OUTPUT -j HADRILL-OUT\n-A HADRILL-IN -s 10.0.0.8 -j DROP\n";
        assert_eq!(
            restore_input(&rules, listed),
            "*filter\n-A HADRILL-IN -s 10.0.0.9 -j DROP\nCOMMIT\n"
        );
        // A jump someone removed is put back; the chain is not declared again.
        let listed = "-N HADRILL-IN\n-N HADRILL-OUT\n-A OUTPUT -j HADRILL-OUT\n";
        assert_eq!(
            restore_input(&rules, listed),
            "*filter\n-I INPUT 1 -j HADRILL-IN\n-A HADRILL-IN -s 10.0.0.9 -j DROP\nCOMMIT\n"
        );
    }
}
