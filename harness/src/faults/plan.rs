//! What a fault would run on each existing host, without running it: `hadrill run --plan`
//! prints it, and a run of hosts checks before it starts that each host has each tool and
//! lets sudo run each root command.

use std::collections::BTreeSet;

use super::host::{Action, heal_network};
use super::{CHAIN_IN, CHAIN_OUT, cut_rules};
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
}

/// The commands `fault` would run on the hosts of `topology`, in order. A selector
/// (`@last-served`) stands for every host it could pick. Err: what cannot run on hosts.
pub fn plan(fault: &Fault, topology: &Topology) -> Result<Vec<Planned>, String> {
    if !fault.runs_on_hosts() {
        return Err(format!(
            "`{}` is not built for existing hosts yet (hosts take kill, stop, start, restart, pause, resume, partition, isolate, split, signal, exec and heal)",
            fault.name()
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
    let mut push = |node: &str, argv: &[String], root: bool, why: String| {
        out.push(Planned {
            node: node.to_string(),
            argv: argv.to_vec(),
            root,
            why,
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
            let action = match fault {
                Fault::Kill { .. } => Action::Kill,
                Fault::Stop { .. } => Action::Stop,
                Fault::Start { .. } => Action::Start,
                Fault::Restart { .. } => Action::Restart,
                Fault::Pause { .. } => Action::Pause,
                _ => Action::Resume,
            };
            for (n, sel) in resolve(targets)? {
                let s = &host(&n)?.service;
                let (runs, undo): (Vec<&Vec<String>>, Vec<&Vec<String>>) = match action {
                    Action::Kill => (s.kill.iter().collect(), s.start.iter().collect()),
                    Action::Stop => (s.stop.iter().collect(), s.start.iter().collect()),
                    Action::Start => (s.start.iter().collect(), Vec::new()),
                    Action::Restart => (s.stop.iter().chain(&s.start).collect(), Vec::new()),
                    Action::Pause => (s.pause.iter().collect(), s.resume.iter().collect()),
                    Action::Resume => (s.resume.iter().collect(), Vec::new()),
                };
                for cmd in runs {
                    push(&n, cmd, true, format!("{name}{sel}"));
                }
                if !matches!(action, Action::Pause | Action::Resume) {
                    push(&n, &s.status, true, format!("{name}: is it running?{sel}"));
                }
                for cmd in undo {
                    push(
                        &n,
                        cmd,
                        true,
                        format!("undo of {name}, at teardown if still needed{sel}"),
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
                push(&n, &pgrep, true, format!("{name}: find `{process}`{sel}"));
                let kill = ["kill", "-s", signal.name(), "<pids>"].map(String::from);
                push(&n, &kill, true, format!("{name}{sel}"));
            }
        }
        Fault::Exec { node, command, .. } => {
            for (n, sel) in resolve(std::slice::from_ref(node))? {
                push(&n, command, false, format!("{name}{sel}"));
            }
        }
        Fault::Heal => {
            // On each host an earlier step changed: its cuts' undo, checked with that step.
            for cmd in heal_network() {
                push("(each host changed)", &cmd, true, "heal".into());
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
    push: &mut impl FnMut(&str, &[String], bool, String),
) -> Result<(), String> {
    let mut peers = Vec::new();
    for (n, _) in b {
        let h = topology.nodes[n]
            .host
            .as_deref()
            .ok_or_else(|| format!("`{n}` is not an existing host"))?;
        peers.extend(h.addresses.iter().copied());
    }
    let words = |s: &str| -> Vec<String> { s.split_whitespace().map(String::from).collect() };
    for (n, sel) in a {
        let why = |what: &str| format!("partition: {what}{sel}");
        for (chain, builtin) in [(CHAIN_IN, "INPUT"), (CHAIN_OUT, "OUTPUT")] {
            push(
                n,
                &words(&format!("iptables -w -N {chain}")),
                true,
                why("hadrill's chain"),
            );
            push(
                n,
                &words(&format!("iptables -w -C {builtin} -j {chain}")),
                true,
                why("is the jump there?"),
            );
            push(
                n,
                &words(&format!("iptables -w -I {builtin} 1 -j {chain}")),
                true,
                why("the jump, if not"),
            );
        }
        for rule in cut_rules(&peers, direction, true, effect) {
            push(n, &words(&rule), true, why("rule"));
        }
        for cmd in heal_network() {
            push(n, &cmd, true, why("undo, at heal or teardown"));
        }
    }
    Ok(())
}

/// The distinct commands (by tool and, for root, the whole command) each host needs.
pub fn needs(planned: &[Planned]) -> BTreeSet<(String, Vec<String>, bool, String)> {
    planned
        .iter()
        .map(|p| {
            // The pids of a signal are not known in advance: sudo is asked about the tool.
            let argv: Vec<String> = p.argv.iter().filter(|w| *w != "<pids>").cloned().collect();
            (p.node.clone(), argv, p.root, p.why.clone())
        })
        .collect()
}
