//! Faults: typed operations on nodes and node sets, each recorded in the history with its
//! start and end on the run's clock.
//!
//! Partitions are iptables rules inside the containers, in chains of hadrill's own so `heal`
//! removes exactly what was added. The rules go on one side of the cut, so only the nodes on
//! that side need `NET_ADMIN`. A cut drops what it catches, refuses it (a TCP reset) or loses
//! each packet with a probability (`-m statistic`). A throttle is a token bucket (`tc tbf`) on
//! each of the node's interfaces. Faults inside a node have a module each: a delay proxy
//! (`delay`), a clock offset (`clock`), a full disk (`disk`), a memory limit (`memory`).
//! `heal` undoes what each node holds, as `Shared::altered` remembers it. Before a fault,
//! `aim` waits as a step's `when` asks and samples what the targets hold: what it hits.

mod aim;
mod clock;
mod delay;
mod disk;
mod host;
mod memory;
mod plan;
mod upgrade;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bollard::query_parameters::{
    KillContainerOptions, RestartContainerOptions, StopContainerOptions,
};
use futures_util::future::join_all;

use crate::docker::{DockerError, ExecOutput};
use crate::node::{BackendError, Node};
use crate::run::Run;
use crate::shared::{Change, POLL, Shared};
use hadrill_model::{
    Bandwidth, Direction, Effect, Event, Expect, Fault, FaultRecord, Outcome, Role, Selector,
};

use aim::Held;
pub use aim::When;
pub use plan::{Planned, needs, plan, preflight};

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum FaultError {
    #[error("unknown fault target `{target}`")]
    #[diagnostic(help("nodes and groups of this topology: {known}"))]
    UnknownTarget { target: String, known: String },
    #[error("cannot change the network of {nodes}: they lack the NET_ADMIN capability")]
    #[diagnostic(help(
        "add `cap_add = [\"NET_ADMIN\"]` to those nodes in {topology} (only the nodes on one side of a cut need it; a throttle needs it on each target)"
    ))]
    MissingCapability { nodes: String, topology: String },
    #[error("cannot change the network of `{node}`: it is not running")]
    NotRunning { node: String },
    #[error("`{cmd}` failed in `{node}` (exit {code:?}): {output}")]
    #[diagnostic(help(
        "the output is the command's own; cut rules need iptables in the image and a throttle needs tc (iproute2): the base image has both"
    ))]
    Command {
        node: String,
        cmd: String,
        code: Option<i64>,
        output: String,
    },
    #[error("a {shape} split needs {needs} nodes at least, and has {nodes}")]
    #[diagnostic(help("name more nodes, or groups, in the split's `nodes`"))]
    TooFewForShape {
        shape: String,
        needs: usize,
        nodes: String,
    },
    #[error("no process in `{node}` matches `{process}`")]
    #[diagnostic(help(
        "`process` is matched against each process's whole command line (`pgrep -f`); list them with `hadrill up` and `docker exec <container> ps -ef`"
    ))]
    NoSuchProcess { node: String, process: String },
    #[error("selector `@{0}` matches nothing yet")]
    #[diagnostic(help(
        "`@last-served` needs a successful user request that named the node that answered; `@previous` needs an earlier fault; `@primary` and `@standby` need the `[sql]` workload's cluster observer to have seen the roles"
    ))]
    Selector(String),
    #[error("no config file of `{node}` holds the secret {secret}")]
    #[diagnostic(help(
        "rotate-secret rewrites ${{secret:NAME}} values in the node's mounted config files"
    ))]
    SecretNotMounted { node: String, secret: String },
    #[error("the topology declares no secret {0}")]
    UnknownSecret(String),
    #[error("`{node}` was still running {waited:?} after it was told to exit")]
    #[diagnostic(help(
        "its process ignored the signal or the engine did not act; the fault is recorded as failed, not as done"
    ))]
    StillRunning { node: String, waited: Duration },
    #[error("cannot skew the clock of `{node}`: its processes do not load libfaketime")]
    #[diagnostic(help(
        "add `clock = \"faketime\"` to the node in {topology}; its programs must be dynamically linked (static binaries and Go programs read the clock without libc)"
    ))]
    NoFaketime { node: String, topology: String },
    #[error("no process of `{node}` loads libfaketime, so its clock cannot be skewed")]
    #[diagnostic(help(
        "the node's programs read the clock without libc (static binaries, Go); libfaketime cannot reach them"
    ))]
    ClockUnreachable { node: String },
    #[error(
        "will not fill `{path}` in `{node}`: it is on a filesystem of {mib} MiB, not a size-limited one"
    )]
    #[diagnostic(help(
        "give the node a size-limited filesystem for it in the topology, e.g. `tmpfs = {{ \"{path}\" = \"64m\" }}` (at most 4 GiB): filling the engine's disk would hurt everything on the host"
    ))]
    NotSizeLimited {
        node: String,
        path: String,
        mib: u64,
    },
    #[error("`{cmd}` succeeded in `{node}`, and the step expects it to fail: {output}")]
    #[diagnostic(help(
        "a step with `expect = \"failure\"` plants a failure the product must report with a non-zero exit"
    ))]
    Succeeded {
        node: String,
        cmd: String,
        output: String,
    },
    #[error("the run has no image `{image}` to upgrade to")]
    #[diagnostic(help(
        "an upgrade's image is built when the run starts: name it in the scenario's `upgrade` step (a topology image, `sut-next`, or `docker:<reference>`)"
    ))]
    NoImage { image: String },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Backend(#[from] BackendError),
    #[error("cannot {fault} host `{node}`: {why}")]
    #[diagnostic(help(
        "on existing hosts hadrill runs kill, stop, start, restart, pause, resume, partition, isolate, split, signal, exec, rotate-secret (by the product's own command), fill-disk, skew-clock (of a service that loads libfaketime), throttle and delay (docs/hosts.md)"
    ))]
    NotOnHost {
        node: String,
        fault: String,
        why: String,
    },
}

impl Run {
    /// Applies a fault and records it in the history.
    pub async fn inject(&self, fault: Fault) -> Result<FaultRecord, FaultError> {
        self.shared().inject(fault).await
    }
}

/// A node's faults, so a test reads like the domain: `run.node("app1")?.kill().await`.
impl Node {
    fn one(&self) -> Vec<String> {
        vec![self.name().to_string()]
    }

    /// SIGKILL: the process dies at once, nothing is flushed.
    pub async fn kill(&self) -> Result<FaultRecord, FaultError> {
        self.shared
            .inject(Fault::Kill {
                targets: self.one(),
            })
            .await
    }

    /// SIGTERM, then SIGKILL if still running after `timeout`.
    pub async fn stop(&self, timeout: Duration) -> Result<FaultRecord, FaultError> {
        self.shared
            .inject(Fault::Stop {
                targets: self.one(),
                timeout,
            })
            .await
    }

    pub async fn start(&self) -> Result<FaultRecord, FaultError> {
        self.shared
            .inject(Fault::Start {
                targets: self.one(),
            })
            .await
    }

    pub async fn restart(&self, timeout: Duration) -> Result<FaultRecord, FaultError> {
        self.shared
            .inject(Fault::Restart {
                targets: self.one(),
                timeout,
            })
            .await
    }

    /// Freezes every process of the node (cgroup freezer): connections stay open, nothing answers.
    pub async fn pause(&self) -> Result<FaultRecord, FaultError> {
        self.shared
            .inject(Fault::Pause {
                targets: self.one(),
            })
            .await
    }

    pub async fn resume(&self) -> Result<FaultRecord, FaultError> {
        self.shared
            .inject(Fault::Resume {
                targets: self.one(),
            })
            .await
    }

    /// Cuts the node from every other node of the run, both ways.
    pub async fn isolate(&self) -> Result<FaultRecord, FaultError> {
        self.shared.inject(Fault::isolate(self.one())).await
    }

    /// Limits what the node sends to `rate`.
    pub async fn throttle(&self, rate: Bandwidth) -> Result<FaultRecord, FaultError> {
        self.shared.inject(Fault::throttle(self.one(), rate)).await
    }
}

const CHAIN_IN: &str = "HADRILL-IN";
const CHAIN_OUT: &str = "HADRILL-OUT";
/// Creates hadrill's chains where missing and hooks them in first.
const CHAINS: &str = "iptables -w -N HADRILL-IN 2>/dev/null || true; \
     iptables -w -N HADRILL-OUT 2>/dev/null || true; \
     iptables -w -C INPUT -j HADRILL-IN 2>/dev/null || iptables -w -I INPUT 1 -j HADRILL-IN; \
     iptables -w -C OUTPUT -j HADRILL-OUT 2>/dev/null || iptables -w -I OUTPUT 1 -j HADRILL-OUT;";

impl Shared {
    fn resolve(&self, targets: &[String]) -> Result<Vec<String>, FaultError> {
        let mut out = BTreeSet::new();
        for t in targets {
            if let Some(selector) = t.strip_prefix('@') {
                out.extend(self.select(selector)?);
                continue;
            }
            let nodes = self
                .topology
                .resolve(t)
                .ok_or_else(|| FaultError::UnknownTarget {
                    target: t.clone(),
                    known: self
                        .topology
                        .nodes
                        .keys()
                        .chain(self.topology.groups.keys())
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
            out.extend(nodes);
        }
        Ok(out.into_iter().collect())
    }

    /// The nodes a selector picks now, from what the history holds.
    fn select(&self, name: &str) -> Result<Vec<String>, FaultError> {
        let events = self.history.events();
        let found = match Selector::parse(name) {
            Some(s @ (Selector::Primary | Selector::Standby)) => {
                let roles = hadrill_model::last_roles(&events);
                let want = s == Selector::Primary;
                let nodes: Vec<String> = roles
                    .into_iter()
                    .filter(|(_, role)| {
                        hadrill_model::is_primary(role) == want
                            && role != hadrill_model::UNREACHABLE
                    })
                    .map(|(n, _)| n)
                    .collect();
                (!nodes.is_empty()).then_some(nodes)
            }
            Some(Selector::LastServed) => events.iter().rev().find_map(|e| match e {
                Event::Op(o) if o.outcome == Outcome::Ok && o.role == Role::User => {
                    o.node.clone().map(|n| vec![n])
                }
                _ => None,
            }),
            Some(Selector::Previous) => events.iter().rev().find_map(|e| match e {
                Event::Fault(f) => Some(f.nodes.clone()),
                _ => None,
            }),
            None => None,
        };
        found.ok_or_else(|| FaultError::Selector(name.to_string()))
    }

    pub(crate) async fn inject(self: &Arc<Self>, fault: Fault) -> Result<FaultRecord, FaultError> {
        self.inject_aimed(fault, None).await
    }

    /// The nodes `fault` targets. A selector that matches nothing yet may once the next facts
    /// arrive (a member that answered its observer late reads as unreachable until then): it
    /// is tried again for up to `SELECTOR_WAIT`.
    async fn targets_of(&self, fault: &Fault) -> Result<Vec<String>, FaultError> {
        let deadline = Instant::now() + SELECTOR_WAIT;
        loop {
            let resolved: Result<Vec<Vec<String>>, FaultError> = fault
                .targets()
                .into_iter()
                .map(|(_, targets)| self.resolve(targets))
                .collect();
            match resolved {
                Err(FaultError::Selector(_)) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                r => return r.map(|all| all.concat()),
            }
        }
    }

    pub(crate) async fn inject_aimed(
        self: &Arc<Self>,
        fault: Fault,
        when: Option<&When>,
    ) -> Result<FaultRecord, FaultError> {
        // Targets are resolved before the clock starts: a typo is not a fault that happened.
        let nodes: Vec<String> = match &fault {
            Fault::Heal => self.altered().into_keys().collect(),
            _ => self.targets_of(&fault).await?,
        };
        if let Some(host) = nodes
            .iter()
            .find(|n| self.topology.nodes[n.as_str()].host.is_some())
            && !fault.runs_on_hosts()
        {
            return Err(FaultError::NotOnHost {
                node: host.clone(),
                fault: fault.name().to_string(),
                why: "this fault is not built for existing hosts yet".into(),
            });
        }
        let (aim, sampled) = match when {
            Some(when) => {
                let (aim, sampled) = self.aim(&nodes, when).await;
                (Some(aim), sampled)
            }
            None => (None, None),
        };
        // Sampled last, right before the fault: what it hits.
        let held = match sampled {
            Some(held) => held,
            None if fault.disturbs() => self.held(&nodes).await,
            None => Held::default(),
        };
        let id = self.fault_seq.fetch_add(1, Ordering::Relaxed) + 1;
        let t0 = Instant::now();
        let start = self.clock.now();
        let result = self.apply(&fault).await;
        let end = self.clock.now();
        let (outcome, error, notes) = match &result {
            Ok(notes) => (Outcome::Ok, None, notes.clone()),
            Err(e) => (Outcome::Fail, Some(e.to_string()), Vec::new()),
        };
        // A command whose exit the checks judge: a failure is recorded, not a failed step.
        let judged_later = matches!(
            (&fault, &result),
            (
                Fault::Exec {
                    expect: Expect::Any,
                    ..
                },
                Err(FaultError::Command { .. })
            )
        );
        let record = FaultRecord {
            id,
            fault,
            nodes,
            start,
            end,
            outcome,
            error,
            notes,
            held: held.items,
            held_unknown: held.unknown,
            aim,
        };
        tracing::info!(
            "fault #{id} {} {} at {start}: {:?} in {:.3}s",
            record.fault.name(),
            record.nodes.join(","),
            outcome,
            t0.elapsed().as_secs_f64()
        );
        self.history.record(Event::Fault(record.clone()));
        if judged_later {
            return Ok(record);
        }
        result.map(|_| record)
    }

    fn handles(self: &Arc<Self>, targets: &[String]) -> Result<Vec<Node>, FaultError> {
        Ok(self
            .resolve(targets)?
            .iter()
            .map(|n| Node::new(n, self.clone()))
            .collect())
    }

    /// Does the work; returns notes of what was observed.
    async fn apply(self: &Arc<Self>, fault: &Fault) -> Result<Vec<String>, FaultError> {
        let docker = &self.docker;
        match fault {
            Fault::Kill { targets } => {
                each(self.handles(targets)?, |n| async move {
                    if n.host().is_some() {
                        return host::service(self, &n, host::Action::Kill).await;
                    }
                    docker
                        .kill_container(
                            &n.container(),
                            Some(KillContainerOptions {
                                signal: "SIGKILL".into(),
                            }),
                        )
                        .await
                        .map_err(DockerError::api(format!("kill {}", n.name())))?;
                    let status = wait_exited(&n).await?;
                    self.forget_until_restart(n.name());
                    Ok(format!("{} exited with {:?}", n.name(), status))
                })
                .await
            }
            Fault::Stop { targets, timeout } | Fault::Restart { targets, timeout } => {
                let restart = matches!(fault, Fault::Restart { .. });
                let t = Some(timeout.as_secs_f64().ceil() as i32);
                each(self.handles(targets)?, |n| async move {
                    if n.host().is_some() {
                        let action = if restart {
                            host::Action::Restart(*timeout)
                        } else {
                            host::Action::Stop(*timeout)
                        };
                        return host::service(self, &n, action).await;
                    }
                    let what = format!("{} {}", fault.name(), n.name());
                    if restart {
                        docker
                            .restart_container(
                                &n.container(),
                                Some(RestartContainerOptions { t, signal: None }),
                            )
                            .await
                            .map_err(DockerError::api(what))?;
                        n.refresh().await?;
                        self.forget_until_restart(n.name());
                        return Ok(format!("{} restarted", n.name()));
                    }
                    docker
                        .stop_container(
                            &n.container(),
                            Some(StopContainerOptions { t, signal: None }),
                        )
                        .await
                        .map_err(DockerError::api(what))?;
                    let status = wait_exited(&n).await?;
                    self.forget_until_restart(n.name());
                    Ok(format!("{} exited with {:?}", n.name(), status))
                })
                .await
            }
            Fault::Start { targets } => {
                each(self.handles(targets)?, |n| async move {
                    if n.host().is_some() {
                        return host::service(self, &n, host::Action::Start).await;
                    }
                    docker
                        .start_container(&n.container(), None)
                        .await
                        .map_err(DockerError::api(format!("start {}", n.name())))?;
                    n.refresh().await?;
                    Ok(format!("{} started", n.name()))
                })
                .await
            }
            Fault::Pause { targets } => {
                each(self.handles(targets)?, |n| async move {
                    if n.host().is_some() {
                        return host::service(self, &n, host::Action::Pause).await;
                    }
                    docker
                        .pause_container(&n.container())
                        .await
                        .map_err(DockerError::api(format!("pause {}", n.name())))?;
                    Ok(format!("{} paused", n.name()))
                })
                .await
            }
            Fault::Resume { targets } => {
                each(self.handles(targets)?, |n| async move {
                    if n.host().is_some() {
                        return host::service(self, &n, host::Action::Resume).await;
                    }
                    docker
                        .unpause_container(&n.container())
                        .await
                        .map_err(DockerError::api(format!("resume {}", n.name())))?;
                    Ok(format!("{} resumed", n.name()))
                })
                .await
            }
            Fault::Partition {
                a,
                b,
                direction,
                effect,
            } => {
                self.cut(&self.resolve(a)?, &self.resolve(b)?, *direction, *effect)
                    .await
            }
            Fault::Isolate { targets, effect } => {
                let isolated = self.resolve(targets)?;
                let rest: Vec<String> = self
                    .topology
                    .nodes
                    .keys()
                    .filter(|n| !isolated.contains(n))
                    .cloned()
                    .collect();
                self.cut(&isolated, &rest, Direction::Both, *effect).await
            }
            Fault::Split {
                nodes,
                shape,
                effect,
            } => {
                // In the order written, each group's members by name: the order decides which
                // side a node is on.
                let mut ordered: Vec<String> = Vec::new();
                for n in nodes {
                    for m in self.resolve(std::slice::from_ref(n))? {
                        if !ordered.contains(&m) {
                            ordered.push(m);
                        }
                    }
                }
                if ordered.len() < shape.needs() {
                    return Err(FaultError::TooFewForShape {
                        shape: shape.name().into(),
                        needs: shape.needs(),
                        nodes: ordered.join(", "),
                    });
                }
                let mut notes = Vec::new();
                for (a, b) in shape.cuts(&ordered) {
                    notes.extend(self.cut(&a, &b, Direction::Both, *effect).await?);
                }
                Ok(notes)
            }
            Fault::Throttle { targets, rate } => {
                self.throttle(&self.resolve(targets)?, *rate).await
            }
            Fault::RotateSecret { secret, targets } => {
                self.rotate(secret, &self.resolve(targets)?).await
            }
            Fault::Signal {
                targets,
                process,
                signal,
            } => {
                each(self.handles(targets)?, |n| async move {
                    // pgrep leaves itself out, where a shell matching its own line would not. On
                    // a host the pattern also travels in sudo's and the remote shell's command
                    // lines: written so it does not match itself (`[w]eb` matches `web`).
                    let pattern = match n.host() {
                        Some(_) => self_excluding(process),
                        None => process.clone(),
                    };
                    let found = n.exec_as_root(&["pgrep", "-f", "--", &pattern]).await?;
                    // PID 1 is the container's init, whose command line names the service.
                    let pids: Vec<&str> = found
                        .output
                        .split_whitespace()
                        .filter(|p| *p != "1")
                        .collect();
                    if pids.is_empty() {
                        return Err(FaultError::NoSuchProcess {
                            node: n.name().to_string(),
                            process: process.clone(),
                        });
                    }
                    let mut kill = vec!["kill", "-s", signal.name()];
                    kill.extend(&pids);
                    succeeded(&n, &kill.join(" "), n.exec_as_root(&kill).await?)?;
                    Ok(format!(
                        "{}: SIG{} to {} process(es) matching `{process}` ({})",
                        n.name(),
                        signal.name(),
                        pids.len(),
                        pids.join(" ")
                    ))
                })
                .await
            }
            Fault::Exec {
                node,
                command,
                expect,
                ..
            } => {
                let mut notes = Vec::new();
                for n in self.handles(std::slice::from_ref(node))? {
                    let args: Vec<&str> = command.iter().map(String::as_str).collect();
                    let cmd = command.join(" ");
                    let out = n.exec(&args).await?;
                    let out = match expect {
                        Expect::Success | Expect::Any => succeeded(&n, &cmd, out)?,
                        Expect::Failure if out.success() => {
                            return Err(FaultError::Succeeded {
                                node: n.name().to_string(),
                                cmd,
                                output: out.output.trim().to_string(),
                            });
                        }
                        Expect::Failure => {
                            notes.push(format!(
                                "{}: exit {:?}, as expected",
                                n.name(),
                                out.exit_code
                            ));
                            out
                        }
                    };
                    notes.extend(
                        out.output
                            .lines()
                            .filter(|l| !l.trim().is_empty())
                            .map(|l| format!("{}: {}", n.name(), l.trim())),
                    );
                }
                Ok(notes)
            }
            Fault::Upgrade {
                targets,
                image,
                timeout,
            } => {
                let tag = self
                    .topology
                    .image(image)
                    .ok()
                    .and_then(|i| self.images.get(&i))
                    .map(|ready| ready.tag.clone())
                    .ok_or_else(|| FaultError::NoImage {
                        image: image.clone(),
                    })?;
                self.reinstall(targets, Some(tag), *timeout).await
            }
            Fault::Replace { targets, timeout } => self.reinstall(targets, None, *timeout).await,
            Fault::Delay {
                targets,
                port,
                latency,
                jitter,
            } => {
                let nodes = self.resolve(targets)?;
                self.need_net_admin(&nodes)?;
                let (port, latency, jitter) = (*port, *latency, *jitter);
                each(self.handles(&nodes)?, |n| async move {
                    self.running(&n).await?;
                    self.remember(n.name(), Change::Delay(port));
                    match n.host() {
                        Some(_) => delay::start_on_host(self, &n, port, latency, jitter).await,
                        None => delay::start(&n, port, latency, jitter).await,
                    }
                })
                .await
            }
            Fault::SkewClock {
                targets,
                offset,
                drift,
            } => {
                let nodes = self.resolve(targets)?;
                if let Some(node) = nodes.iter().find(|n| !self.topology.nodes[*n].faketime) {
                    return Err(FaultError::NoFaketime {
                        node: node.clone(),
                        topology: self.topology.path.display().to_string(),
                    });
                }
                each(self.handles(&nodes)?, |n| async move {
                    self.running(&n).await?;
                    self.remember(n.name(), Change::Clock);
                    self.stop_drift(n.name());
                    let note = clock::skew(self, &n, *offset).await?;
                    let Some(drift) = *drift else {
                        return Ok(note);
                    };
                    let task = clock::drift(n.clone(), *offset, drift);
                    self.drifting
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(n.name().to_string(), task);
                    Ok(format!("{note}; drifting {} a second", String::from(drift)))
                })
                .await
            }
            Fault::FillDisk { targets, path } => {
                each(self.handles(targets)?, |n| async move {
                    self.running(&n).await?;
                    let note = disk::fill(self, &n, path).await?;
                    self.remember(n.name(), Change::Disk(path.clone()));
                    Ok(note)
                })
                .await
            }
            Fault::LimitMemory { targets, headroom } => {
                each(self.handles(targets)?, |n| async move {
                    self.running(&n).await?;
                    let note = memory::limit(&n, *headroom).await?;
                    self.remember(n.name(), Change::Memory);
                    Ok(note)
                })
                .await
            }
            Fault::Heal => {
                let altered = self.altered();
                let nodes: Vec<String> = altered.keys().cloned().collect();
                let altered = &altered;
                each(self.handles(&nodes)?, |n| async move {
                    let changes = &altered[n.name()];
                    // A stopped container keeps its memory limit into its next start; the
                    // rest went with its namespace and mounts.
                    // A host's firewall is the host's, whatever its service is doing.
                    let running = n.host().is_some() || n.refresh().await?.running;
                    let mut notes = Vec::new();
                    for change in changes {
                        notes.push(match change {
                            Change::Memory => memory::lift(&n, running).await?,
                            _ if !running => continue,
                            Change::Network if n.host().is_some() => host::heal(self, &n).await?,
                            Change::Network => {
                                run_script(&n, &heal_network_script()).await?;
                                "network healed".to_string()
                            }
                            Change::Delay(port) if n.host().is_some() => {
                                delay::stop_on_host(self, &n, *port).await?
                            }
                            Change::Delay(port) => delay::stop(&n, *port).await?,
                            Change::Clock => {
                                self.stop_drift(n.name());
                                clock::reset(self, &n).await?
                            }
                            Change::Disk(path) => disk::free(self, &n, path).await?,
                        });
                    }
                    self.forget(n.name());
                    if notes.is_empty() {
                        return Ok(format!("{} not running: nothing to heal", n.name()));
                    }
                    Ok(format!("{} healed: {}", n.name(), notes.join("; ")))
                })
                .await
            }
        }
    }

    /// Rotates the secret on each of `nodes`, all to one new value: by the node's own command
    /// where its topology gives one (the value on its standard input), else by rewriting it
    /// in place (same inode, so the bind mounts see it) in every staged config file of the
    /// node that holds it. A host has no staged files: it needs its command.
    async fn rotate(
        self: &Arc<Self>,
        secret: &str,
        nodes: &[String],
    ) -> Result<Vec<String>, FaultError> {
        let old = self
            .secret(secret)
            .ok_or_else(|| FaultError::UnknownSecret(secret.to_string()))?;
        let new = self.issue_secret(secret).map_err(|e| FaultError::Command {
            node: nodes.join(", "),
            cmd: "issue a new secret".into(),
            code: None,
            output: e.to_string(),
        })?;
        let mut notes = Vec::new();
        for n in self.handles(nodes)? {
            let node = n.name().to_string();
            if let Some(commands) = self.topology.nodes[&node].rotate_secret.get(secret) {
                notes.push(host::rotate(self, &n, secret, commands, &new).await?);
                continue;
            }
            if n.host().is_some() {
                return Err(FaultError::NotOnHost {
                    node,
                    fault: "rotate-secret".into(),
                    why: format!(
                        "its entry gives no `rotate_secret = {{ {secret} = [...] }}`: the product's own command that sets the secret to the value on its standard input"
                    ),
                });
            }
            let mut changed = 0;
            for mount in &self.topology.nodes[&node].config {
                let staged = self.staged_config(&node, &mount.target);
                let text = std::fs::read_to_string(&staged).unwrap_or_default();
                if text.contains(&old) {
                    std::fs::write(&staged, text.replace(&old, &new)).map_err(|e| {
                        FaultError::Command {
                            node: node.clone(),
                            cmd: format!("rewrite {}", staged.display()),
                            code: None,
                            output: e.to_string(),
                        }
                    })?;
                    changed += 1;
                }
            }
            if changed == 0 {
                return Err(FaultError::SecretNotMounted {
                    node: node.clone(),
                    secret: secret.to_string(),
                });
            }
            notes.push(format!("{node}: {secret} rewritten in {changed} file(s)"));
        }
        Ok(notes)
    }

    fn altered(&self) -> BTreeMap<String, BTreeSet<Change>> {
        self.altered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn remember(&self, node: &str, change: Change) {
        self.altered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(node.to_string())
            .or_default()
            .insert(change);
    }

    /// A container that exits loses its network namespace (rules, limits, proxies) and its
    /// tmpfs mounts; its clock file and memory limit stay, as a skewed or small machine stays
    /// so across restarts.
    fn forget_until_restart(&self, node: &str) {
        let mut altered = self.altered.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(changes) = altered.get_mut(node) {
            changes.retain(|c| matches!(c, Change::Clock | Change::Memory));
            if changes.is_empty() {
                altered.remove(node);
            }
        }
    }

    /// Replaces each target's container (`upgrade`, `replace`): a new container, so nothing a
    /// fault changed in the old one is left.
    async fn reinstall(
        self: &Arc<Self>,
        targets: &[String],
        image: Option<String>,
        timeout: std::time::Duration,
    ) -> Result<Vec<String>, FaultError> {
        let t = timeout.as_secs_f64().ceil() as i32;
        each(self.handles(targets)?, |n| {
            let image = image.clone();
            async move {
                let done = upgrade::reinstall(&n, image.as_deref(), t).await?;
                self.forget(n.name());
                self.stop_drift(n.name());
                Ok(done)
            }
        })
        .await
    }

    fn stop_drift(&self, node: &str) {
        if let Some(task) = self
            .drifting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(node)
        {
            task.abort();
        }
    }

    /// Ends every drift: nothing may move a clock once the run is putting its hosts back.
    pub(crate) fn stop_drifts(&self) {
        let tasks = std::mem::take(&mut *self.drifting.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks.into_values() {
            task.abort();
        }
    }

    fn forget(&self, node: &str) {
        self.altered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(node);
    }

    /// A change inside a node needs it running: a stopped container has nothing to change. A
    /// host is there whatever its service is doing.
    async fn running(&self, n: &Node) -> Result<(), FaultError> {
        if n.host().is_some() || n.refresh().await?.running {
            Ok(())
        } else {
            Err(FaultError::NotRunning {
                node: n.name().to_string(),
            })
        }
    }

    /// Installs the rules of a cut between `a` and `b` on whichever side can hold them.
    async fn cut(
        self: &Arc<Self>,
        a: &[String],
        b: &[String],
        direction: Direction,
        effect: Effect,
    ) -> Result<Vec<String>, FaultError> {
        let lacking = |side: &[String]| self.lacking_net_admin(side);
        // The rules sit on side `a` (outbound) or side `b` (inbound); both cut the same traffic.
        let (ruled, other, outbound) = match (lacking(a), lacking(b)) {
            (la, _) if la.is_empty() => (a, b, true),
            (_, lb) if lb.is_empty() => (b, a, false),
            (la, _) => {
                return Err(FaultError::MissingCapability {
                    nodes: la.join(", "),
                    topology: self.topology.path.display().to_string(),
                });
            }
        };
        let mut notes = Vec::new();
        let mut peer_ips = Vec::new();
        for n in self.handles(other)? {
            // A host's addresses are its topology's: asking it over SSH, one peer after
            // another, held an isolate back 2 s. A container's are the engine's to say.
            let ips = match n.host() {
                Some(h) => h.addresses.clone(),
                None => {
                    n.refresh().await?;
                    n.ips()
                }
            };
            if ips.is_empty() {
                notes.push(format!(
                    "{} has no address (not running): not cut",
                    n.name()
                ));
            }
            peer_ips.extend(ips);
        }
        let rules = cut_rules(&peer_ips, direction, outbound, effect);
        let n_rules = rules.len();
        let applied = self
            .change_network(ruled, NetChange::Rules(&rules), |node| {
                format!("{node} holds {n_rules} rule(s): {}", effect.describe())
            })
            .await?;
        notes.extend(applied);
        Ok(notes)
    }

    /// Changes the network of each of `nodes` as root, each running, and remembers them so
    /// `heal` visits them; `note` says what each now holds. A container gets the change as one
    /// script; a host gets cut rules in one `iptables-restore`, its undo journalled first.
    async fn change_network(
        self: &Arc<Self>,
        nodes: &[String],
        change: NetChange<'_>,
        note: impl Fn(&str) -> String,
    ) -> Result<Vec<String>, FaultError> {
        let note = &note;
        let script = &match change {
            NetChange::Rules(rules) => format!("set -e; {CHAINS} {}", rules.join("; ")),
            NetChange::Throttle(rate) => format!(
                "set -e; for dev in $(ls /sys/class/net); do [ \"$dev\" = lo ] || {}; done",
                tbf("\"$dev\"", rate)
            ),
        };
        each(self.handles(nodes)?, |n| async move {
            self.running(&n).await?;
            self.remember(n.name(), Change::Network);
            match (n.host(), change) {
                (Some(_), NetChange::Rules(rules)) => host::cut(self, &n, rules).await?,
                (Some(_), NetChange::Throttle(rate)) => host::throttle(self, &n, rate).await?,
                (None, _) => run_script(&n, script).await?,
            }
            Ok(note(n.name()))
        })
        .await
    }

    fn need_net_admin(&self, nodes: &[String]) -> Result<(), FaultError> {
        let lacking = self.lacking_net_admin(nodes);
        if lacking.is_empty() {
            return Ok(());
        }
        Err(FaultError::MissingCapability {
            nodes: lacking.join(", "),
            topology: self.topology.path.display().to_string(),
        })
    }

    /// The nodes of `nodes` that cannot have their network changed from inside.
    fn lacking_net_admin(&self, nodes: &[String]) -> Vec<String> {
        nodes
            .iter()
            .filter(|n| !self.topology.nodes[n.as_str()].has_capability("NET_ADMIN"))
            .cloned()
            .collect()
    }

    /// A token bucket at `rate` on each interface of each node: what it sends waits for
    /// tokens (`throttle_params`).
    async fn throttle(
        self: &Arc<Self>,
        nodes: &[String],
        rate: Bandwidth,
    ) -> Result<Vec<String>, FaultError> {
        self.need_net_admin(nodes)?;
        self.change_network(nodes, NetChange::Throttle(rate), |node| {
            format!("{node} sends at most {}", String::from(rate))
        })
        .await
    }
}

/// A token bucket's rate and burst for `rate`: the burst is 20 ms worth (at least 16 KB, so a
/// full-size packet always fits); a packet waits at most 200 ms before it is dropped.
fn throttle_params(rate: Bandwidth) -> (u64, u64) {
    let bps = rate.bits_per_second;
    (bps, (bps / 8 / 50).max(16_000))
}

/// `tc`'s words that put the token bucket for `rate` at the root of `dev`.
fn tbf(dev: &str, rate: Bandwidth) -> String {
    let (bps, burst) = throttle_params(rate);
    format!("tc qdisc replace dev {dev} root tbf rate {bps}bit burst {burst} latency 200ms")
}

/// The iptables commands of a cut that holds traffic to and from `peer_ips` on the side that
/// holds them (`outbound`: the side a one-way cut starts from).
pub(crate) fn cut_rules(
    peer_ips: &[std::net::IpAddr],
    direction: Direction,
    outbound: bool,
    effect: Effect,
) -> Vec<String> {
    let mut matches = Vec::new();
    for ip in peer_ips {
        match (direction, outbound) {
            (Direction::Both, _) => {
                matches.push(format!("{CHAIN_IN} -s {ip}"));
                matches.push(format!("{CHAIN_OUT} -d {ip}"));
            }
            // `a` holds the rules: what it sends as a connection's initiator.
            (Direction::OneWay, true) => {
                matches.push(format!("{CHAIN_OUT} -d {ip} -m conntrack --ctdir ORIGINAL"))
            }
            // `b` holds the rules: what arrives from `a` as a connection's initiator.
            (Direction::OneWay, false) => {
                matches.push(format!("{CHAIN_IN} -s {ip} -m conntrack --ctdir ORIGINAL"))
            }
        }
    }
    let targets: &[String] = &match effect {
        Effect::Drop => vec!["-j DROP".into()],
        // TCP gets a reset, the rest a port-unreachable. Resets and ICMP pass: the refusal
        // one side's rule makes must reach through the other side's rule to its sender.
        Effect::Reset => vec![
            "-p tcp --tcp-flags RST RST -j RETURN".into(),
            "-p icmp -j RETURN".into(),
            "-p tcp -j REJECT --reject-with tcp-reset".into(),
            "-j REJECT".into(),
        ],
        Effect::Loss(p) => vec![format!(
            "-m statistic --mode random --probability {p} -j DROP"
        )],
    };
    matches
        .iter()
        .flat_map(|m| {
            targets
                .iter()
                .map(move |t| format!("iptables -w -A {m} {t}"))
        })
        .collect()
}

/// A change to a node's network: cut rules (iptables commands), or a throttle.
#[derive(Clone, Copy)]
enum NetChange<'a> {
    Rules(&'a [String]),
    Throttle(Bandwidth),
}

/// Removes hadrill's cut rules and bandwidth limits, each where present.
fn heal_network_script() -> String {
    format!(
        "set -e; {CHAINS} iptables -w -F {CHAIN_IN}; iptables -w -F {CHAIN_OUT}; \
         for dev in $(ls /sys/class/net); do \
         if [ \"$dev\" != lo ] && tc qdisc show dev \"$dev\" | grep -q '^qdisc tbf'; \
         then tc qdisc del dev \"$dev\" root; fi; done"
    )
}

async fn run_script(node: &Node, script: &str) -> Result<(), FaultError> {
    shell(node, script).await.map(|_| ())
}

/// Runs `script` as root in `node`'s shell: its output if it exited 0.
async fn shell(node: &Node, script: &str) -> Result<ExecOutput, FaultError> {
    let out = node.exec_as_root(&["sh", "-c", script]).await?;
    succeeded(node, script, out)
}

/// A pgrep pattern matching what `pattern` matches, but not a command line that carries the
/// pattern itself: its first letter or digit (not escaped) becomes a one-character class.
fn self_excluding(pattern: &str) -> String {
    let mut prev = None;
    for (i, c) in pattern.char_indices() {
        // A class of the pattern's own would take ours inside it: left as written.
        if c == '[' {
            break;
        }
        if c.is_ascii_alphanumeric() && prev != Some('\\') {
            return format!("{}[{c}]{}", &pattern[..i], &pattern[i + 1..]);
        }
        prev = Some(c);
    }
    pattern.to_string()
}

/// `s` as one shell word.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// A command's output if it exited 0; otherwise the failed step, with what it printed.
fn succeeded(node: &Node, cmd: &str, out: ExecOutput) -> Result<ExecOutput, FaultError> {
    if out.success() {
        return Ok(out);
    }
    Err(FaultError::Command {
        node: node.name().to_string(),
        cmd: cmd.to_string(),
        code: out.exit_code,
        output: out.output.trim().to_string(),
    })
}

/// How long a killed or stopped container may take to be seen exited.
const EXIT_WAIT: Duration = Duration::from_secs(30);
/// How long a step waits for its selector to match: a few observations.
const SELECTOR_WAIT: Duration = Duration::from_secs(5);

/// Waits until the container's process is gone; returns its exit code.
async fn wait_exited(node: &Node) -> Result<Option<i64>, FaultError> {
    await_exit(node.name(), EXIT_WAIT, || node.refresh()).await
}

/// Polls `status` until the process is not running. Still running after `limit` is an error:
/// the fault's effect is not confirmed, so it must not be recorded as done.
async fn await_exit<F, Fut>(
    name: &str,
    limit: Duration,
    mut status: F,
) -> Result<Option<i64>, FaultError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<crate::node::Status, BackendError>>,
{
    let deadline = Instant::now() + limit;
    loop {
        let s = status().await?;
        if !s.running {
            return Ok(s.exit_code);
        }
        if Instant::now() > deadline {
            return Err(FaultError::StillRunning {
                node: name.to_string(),
                waited: limit,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Applies `f` to every node concurrently; the first error wins, every note is kept.
async fn each<F, Fut>(nodes: Vec<Node>, f: F) -> Result<Vec<String>, FaultError>
where
    F: Fn(Node) -> Fut,
    Fut: std::future::Future<Output = Result<String, FaultError>>,
{
    join_all(nodes.into_iter().map(f))
        .await
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::Status;

    fn status(running: bool) -> Result<Status, BackendError> {
        Ok(Status {
            running,
            paused: false,
            exit_code: (!running).then_some(137),
            oom_killed: false,
        })
    }

    #[test]
    fn a_host_pattern_matches_the_process_and_not_the_commands_carrying_it() {
        assert_eq!(self_excluding("web --config"), "[w]eb --config");
        assert_eq!(self_excluding("/usr/bin/x"), "/[u]sr/bin/x");
        assert_eq!(self_excluding("\\d+ worker"), "\\d+ [w]orker");
        assert_eq!(self_excluding("9lives"), "[9]lives");
    }

    #[tokio::test]
    async fn a_process_that_never_exits_is_a_failed_fault() {
        let err = await_exit("app1", Duration::from_millis(100), || async {
            status(true)
        })
        .await
        .unwrap_err();
        assert!(
            matches!(&err, FaultError::StillRunning { node, .. } if node == "app1"),
            "{err}"
        );
        assert!(err.to_string().contains("still running"), "{err}");
    }

    #[tokio::test]
    async fn an_exit_seen_later_is_confirmed_with_its_code() {
        let mut polls = 0;
        let code = await_exit("app1", Duration::from_secs(5), || {
            polls += 1;
            let running = polls < 3;
            async move { status(running) }
        })
        .await
        .unwrap();
        assert_eq!(code, Some(137));
    }
}
