//! What a fault would run on each existing host, without running it: `hadrill run --plan`
//! prints it, and a run of hosts checks before it starts (`preflight`) that each host has
//! each tool and lets sudo run each root command.

use std::collections::BTreeSet;

use futures_util::future::join_all;

use super::host::{
    heal_network, interfaces_command, listing, restore, restore_input, unthrottle_command, words,
};
use super::{clock, cut_rules, delay, disk};
use crate::node::{BackendError, Node};
use crate::run::{Run, RunError};
use crate::topology::{HostSpec, Topology};
use hadrill_model::{Direction, Fault};

/// One command a fault runs on a host.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Planned {
    pub node: String,
    pub argv: Vec<String>,
    /// Run as root (through `sudo -n` unless the SSH user is root).
    pub root: bool,
    /// Why: what in the fault runs it (`kill`, `undo of kill`, …), and a selector it depends on.
    pub why: String,
    /// What it reads on its standard input (a secret stands as `<…>`).
    pub input: Option<String>,
}

/// The commands `fault` would run on the hosts of `topology`, in order. A selector
/// (`@last-served`) stands for every host it could pick. Err: what cannot run on hosts.
pub fn plan(fault: &Fault, topology: &Topology) -> Result<Vec<Planned>, String> {
    if !fault.runs_on_hosts() {
        let targets: Vec<String> = fault
            .targets()
            .into_iter()
            .flat_map(|(_, t)| t.to_vec())
            .collect();
        return Err(format!(
            "`{}` of {} is not built for existing hosts yet (hosts take kill, stop, start, restart, pause, resume, partition, isolate, split, signal, exec, rotate-secret, fill-disk, skew-clock, throttle, delay and heal)",
            fault.name(),
            targets.join(", ")
        ));
    }
    let resolve = |targets: &[String]| -> Result<Vec<(String, String)>, String> {
        let mut out = Vec::new();
        for t in targets {
            if let Some(sel) = t.strip_prefix('@') {
                out.extend(
                    topology
                        .nodes
                        .keys()
                        .map(|n| (n.clone(), format!(" (if @{sel} picks it)"))),
                );
                continue;
            }
            let nodes = topology
                .resolve(t)
                .ok_or_else(|| format!("unknown fault target `{t}`"))?;
            out.extend(nodes.into_iter().map(|n| (n, String::new())));
        }
        out.sort();
        out.dedup();
        Ok(out)
    };
    let host = |n: &str| -> Result<&HostSpec, String> {
        topology.nodes[n]
            .host
            .as_deref()
            .ok_or_else(|| format!("`{n}` is not an existing host"))
    };
    let mut out = Vec::new();
    let mut push = |node: &str, argv: &[String], root: bool, why: String, input| {
        out.push(Planned {
            node: node.to_string(),
            argv: argv.to_vec(),
            root,
            why,
            input,
        })
    };
    let name = fault.name();
    match fault {
        Fault::Kill { targets }
        | Fault::Stop { targets, .. }
        | Fault::Start { targets }
        | Fault::Restart { targets, .. }
        | Fault::Pause { targets }
        | Fault::Resume { targets } => {
            for (n, sel) in resolve(targets)? {
                let s = &host(&n)?.service;
                // What the fault runs, and the undo it journals first (as `host::service`).
                let (runs, undo): (Vec<&Vec<String>>, &[Vec<String>]) = match fault {
                    Fault::Kill { .. } => (s.kill.iter().collect(), &s.start),
                    Fault::Stop { .. } => (s.stop.iter().collect(), &s.start),
                    Fault::Start { .. } => (s.start.iter().collect(), &[]),
                    Fault::Restart { .. } => (s.stop.iter().chain(&s.start).collect(), &s.start),
                    Fault::Pause { .. } => (s.pause.iter().collect(), &s.resume),
                    _ => (s.resume.iter().collect(), &[]),
                };
                for cmd in runs {
                    push(&n, cmd, true, format!("{name}{sel}"), None);
                }
                if !matches!(fault, Fault::Pause { .. } | Fault::Resume { .. }) {
                    push(
                        &n,
                        &s.status,
                        true,
                        format!("{name}: is it running?{sel}"),
                        None,
                    );
                }
                for cmd in undo {
                    push(
                        &n,
                        cmd,
                        true,
                        format!("undo of {name}, at teardown if still needed{sel}"),
                        None,
                    );
                }
            }
        }
        Fault::Partition {
            a,
            b,
            direction,
            effect,
        } => {
            let (a, b) = (resolve(a)?, resolve(b)?);
            cut(topology, &a, &b, *direction, *effect, &mut push)?;
        }
        Fault::Isolate { targets, effect } => {
            let a = resolve(targets)?;
            let b: Vec<(String, String)> = topology
                .nodes
                .keys()
                .filter(|n| !a.iter().any(|(m, _)| m == *n))
                .map(|n| (n.clone(), String::new()))
                .collect();
            cut(topology, &a, &b, Direction::Both, *effect, &mut push)?;
        }
        Fault::Split {
            nodes,
            shape,
            effect,
        } => {
            let ordered: Vec<String> = resolve(nodes)?.into_iter().map(|(n, _)| n).collect();
            for (a, b) in shape.cuts(&ordered) {
                let side = |s: Vec<String>| -> Vec<(String, String)> {
                    s.into_iter().map(|n| (n, String::new())).collect()
                };
                cut(
                    topology,
                    &side(a),
                    &side(b),
                    Direction::Both,
                    *effect,
                    &mut push,
                )?;
            }
        }
        Fault::Signal {
            targets,
            process,
            signal,
        } => {
            for (n, sel) in resolve(targets)? {
                let pgrep = ["pgrep", "-f", "--", process].map(String::from);
                push(
                    &n,
                    &pgrep,
                    true,
                    format!("{name}: find `{process}`{sel}"),
                    None,
                );
                let kill = ["kill", "-s", signal.name(), "<pids>"].map(String::from);
                push(&n, &kill, true, format!("{name}{sel}"), None);
            }
        }
        Fault::Exec { node, command, .. } => {
            for (n, sel) in resolve(std::slice::from_ref(node))? {
                push(&n, command, false, format!("{name}{sel}"), None);
            }
        }
        Fault::RotateSecret { secret, targets } => {
            for (n, sel) in resolve(targets)? {
                let h = host(&n)?;
                let commands = topology.nodes[&n].rotate_secret.get(secret).ok_or_else(|| {
                    format!(
                        "`rotate-secret` of {n}: its entry gives no `rotate_secret = {{ {secret} = [...] }}` (the product's own command that sets the secret to the value on its standard input)"
                    )
                })?;
                let new = format!("<a new value of {secret}>");
                let old = format!("<the install's {secret}, from its secrets_file>");
                for cmd in commands {
                    push(&n, cmd, true, format!("{name}{sel}"), Some(new.clone()));
                }
                for cmd in commands {
                    let why = format!("undo of {name}, at teardown{sel}");
                    push(&n, cmd, true, why, Some(old.clone()));
                }
                for cmd in h.service.stop.iter().chain(&h.service.start) {
                    let why = format!("undo of {name}: the service restarted with it{sel}");
                    push(&n, cmd, true, why, None);
                }
            }
        }
        Fault::FillDisk { targets, path } => {
            for (n, sel) in resolve(targets)? {
                host(&n)?;
                let why = |what: &str| format!("{name}: {what}{sel}");
                push(
                    &n,
                    &disk::usage_command(path),
                    false,
                    why("free space"),
                    None,
                );
                for cmd in disk::fill_commands(path, "<free bytes>") {
                    push(&n, &cmd, true, why("the filler"), None);
                }
                let undo = format!("undo of {name}, at heal or teardown{sel}");
                push(&n, &disk::free_command(path), true, undo, None);
            }
        }
        Fault::SkewClock {
            targets, offset, ..
        } => {
            for (n, sel) in resolve(targets)? {
                host(&n)?;
                if !topology.nodes[&n].faketime {
                    return Err(format!(
                        "`skew-clock` of {n}: its entry does not say `clock = \"faketime\"` (its service loads libfaketime, reading {})",
                        crate::topology::FAKETIME_FILE
                    ));
                }
                let input = offset.faketime_spec();
                push(
                    &n,
                    &clock::write_command(),
                    true,
                    format!("{name}{sel}"),
                    Some(input),
                );
                let undo = format!("undo of {name}, at heal or teardown{sel}");
                push(&n, &clock::remove_command(), true, undo, None);
            }
        }
        Fault::Throttle { targets, rate } => {
            for (n, sel) in resolve(targets)? {
                host(&n)?;
                let why = |what: &str| format!("{name}: {what}{sel}");
                push(
                    &n,
                    &interfaces_command(),
                    false,
                    why("its interfaces"),
                    None,
                );
                let tbf = words(&super::tbf("<dev>", *rate));
                push(&n, &tbf, true, why("each interface but lo"), None);
                let undo = format!("undo of {name}, at heal or teardown{sel}");
                push(&n, &unthrottle_command("<dev>"), true, undo, None);
            }
        }
        Fault::Delay {
            targets,
            port,
            latency,
            jitter,
        } => {
            for (n, sel) in resolve(targets)? {
                host(&n)?;
                let why = |what: &str| format!("{name}: {what}{sel}");
                let [install, end, unready, run] = delay::host_proxy(*port, *latency, *jitter);
                let script = "<hadrill's proxy, delay.py>".to_string();
                push(&n, &install, false, why("the proxy's script"), Some(script));
                push(
                    &n,
                    &end,
                    false,
                    why("an earlier proxy of the port ended"),
                    None,
                );
                push(&n, &unready, false, why("its ready mark cleared"), None);
                push(&n, &run, false, why("the proxy, as the SSH user"), None);
                let listing = words("iptables -w -t nat -S");
                push(
                    &n,
                    &listing,
                    true,
                    why("what hadrill's nat chain lacks"),
                    None,
                );
                let input = delay::host_redirect(*port, "");
                push(
                    &n,
                    &restore(),
                    true,
                    why("the redirect, at once"),
                    Some(input),
                );
                for cmd in delay::host_undo() {
                    let undo = format!("undo of {name}, at heal or teardown{sel}");
                    push(&n, &cmd, true, undo, None);
                }
            }
        }
        Fault::Heal => {
            // On each host an earlier step changed: its cuts' undo, checked with that step.
            for cmd in heal_network() {
                push("(each host changed)", &cmd, true, "heal".into(), None);
            }
        }
        _ => unreachable!("runs_on_hosts() admitted it"),
    }
    Ok(out)
}

/// A cut's commands on side `a`, which holds the rules (a host can always hold them).
fn cut(
    topology: &Topology,
    a: &[(String, String)],
    b: &[(String, String)],
    direction: Direction,
    effect: hadrill_model::Effect,
    push: &mut impl FnMut(&str, &[String], bool, String, Option<String>),
) -> Result<(), String> {
    let mut peers = Vec::new();
    for (n, _) in b {
        let h = topology.nodes[n]
            .host
            .as_deref()
            .ok_or_else(|| format!("`{n}` is not an existing host"))?;
        peers.extend(h.addresses.iter().copied());
    }
    for (n, sel) in a {
        let why = |what: &str| format!("partition: {what}{sel}");
        let what = why("what hadrill's chains and jumps lack");
        push(n, &listing(), true, what, None);
        // As on a firewall that lacks them all (the first cut).
        let input = restore_input(&cut_rules(&peers, direction, true, effect), "");
        push(
            n,
            &restore(),
            true,
            why("chains, jumps and rules at once"),
            Some(input),
        );
        for cmd in heal_network() {
            push(n, &cmd, true, why("undo, at heal or teardown"), None);
        }
    }
    Ok(())
}

/// The distinct commands (by tool and, for root, the whole command) each host needs.
pub fn needs(planned: &[Planned]) -> BTreeSet<(String, Vec<String>, bool, String)> {
    planned
        .iter()
        .map(|p| {
            // The pids of a signal and a filler's size are not known in advance: sudo is asked
            // about a number in their place.
            let argv: Vec<String> = p
                .argv
                .iter()
                .map(|w| match w.starts_with('<') && w.ends_with('>') {
                    true => "1".to_string(),
                    false => w.clone(),
                })
                .collect();
            (p.node.clone(), argv, p.root, p.why.clone())
        })
        .collect()
}

/// Before a run of hosts injects anything: every command its faults would run (`plan`) must
/// be installed on its host, and each root one allowed by sudo without a password. A fault
/// that cannot run on hosts at all is refused too. Nothing is changed.
pub async fn preflight(run: &Run, faults: &[Fault]) -> Result<(), RunError> {
    let mut planned = Vec::new();
    let mut problems = Vec::new();
    for f in faults {
        match plan(f, run.topology()) {
            Ok(p) => planned.extend(p),
            Err(e) => problems.push(e),
        }
    }
    let needs = needs(&planned);
    let checks = run.nodes().into_iter().map(|n| {
        let mine: Vec<_> = needs
            .iter()
            .filter(|(node, ..)| node == n.name())
            .cloned()
            .collect();
        async move { check_needs(&n, &mine).await }
    });
    for found in join_all(checks).await {
        problems.extend(found?);
    }
    if problems.is_empty() {
        return Ok(());
    }
    problems.sort();
    problems.dedup();
    Err(RunError::HostsNotReady {
        problems: problems.join("\n"),
    })
}

/// Checks each needed command on the host: its tool is installed, and a root command is
/// allowed by `sudo -n -l` (no password). Returns one line per missing thing.
async fn check_needs(
    n: &Node,
    needs: &[(String, Vec<String>, bool, String)],
) -> Result<Vec<String>, BackendError> {
    let mut missing = Vec::new();
    let user = n.host().map(|h| h.ssh.user.clone()).unwrap_or_default();
    let mut absent = BTreeSet::new();
    let tools: BTreeSet<&str> = needs.iter().map(|(_, c, ..)| c[0].as_str()).collect();
    for tool in tools {
        // On PATH, or in sbin (a user's PATH may leave sbin out; sudo's does not).
        let script = "command -v \"$1\" || test -x \"/usr/sbin/$1\" || test -x \"/sbin/$1\"";
        if !n.exec(&["sh", "-c", script, "sh", tool]).await?.success() {
            absent.insert(tool);
        }
    }
    let mut asked = BTreeSet::new();
    for (_, command, root, why) in needs {
        let tool = command[0].as_str();
        if absent.contains(tool) {
            missing.push(format!(
                "{}: `{tool}` is not installed (needed for {why})",
                n.name()
            ));
            continue;
        }
        if *root && user != "root" && asked.insert(command.clone()) {
            let mut argv = vec!["sudo", "-n", "-l", "--"];
            argv.extend(command.iter().map(String::as_str));
            if !n.exec(&argv).await?.success() {
                missing.push(format!(
                    "{}: sudo does not let {user} run `{}` without a password (needed for {why})",
                    n.name(),
                    command.join(" "),
                ));
            }
        }
    }
    Ok(missing)
}
