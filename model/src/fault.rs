//! Fault specs: what a step does to which nodes, as data. Executing them is the runtime's job
//! (`faults`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Fault {
    /// SIGKILL.
    Kill {
        targets: Vec<String>,
    },
    /// SIGTERM, then SIGKILL after `timeout`.
    Stop {
        targets: Vec<String>,
        #[serde(with = "humantime_serde", default = "default_stop_timeout")]
        timeout: Duration,
    },
    Start {
        targets: Vec<String>,
    },
    Restart {
        targets: Vec<String>,
        #[serde(with = "humantime_serde", default = "default_stop_timeout")]
        timeout: Duration,
    },
    Pause {
        targets: Vec<String>,
    },
    Resume {
        targets: Vec<String>,
    },
    /// Cuts `a` from `b`.
    Partition {
        a: Vec<String>,
        b: Vec<String>,
        #[serde(default)]
        direction: Direction,
    },
    /// Cuts each target from every other node.
    Isolate {
        targets: Vec<String>,
    },
    /// Removes every partition rule.
    Heal,
    /// Writes a new value of a run secret into the config files of `targets`, as the guides'
    /// rotation does ("overwrite the key on every VM"); restarting them is a separate step.
    RotateSecret {
        secret: String,
        targets: Vec<String>,
    },
    /// An operator command run inside `node`, e.g. a planned switchover through patronictl;
    /// a non-zero exit fails the step.
    Exec {
        node: String,
        command: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// Nothing passes between `a` and `b`.
    #[default]
    Both,
    /// `a` cannot reach `b`: packets `a` sends as the initiator of a connection are dropped,
    /// including on connections it already had; `b` can still open connections to `a`.
    OneWay,
}

/// Faults as a drill written in code names them; each target is a node, a group or a `@`
/// selector, as in a scenario file.
impl Fault {
    pub fn kill<S: Into<String>>(targets: impl IntoIterator<Item = S>) -> Fault {
        Fault::Kill {
            targets: names(targets),
        }
    }

    /// SIGTERM, then SIGKILL after the default 10 s.
    pub fn stop<S: Into<String>>(targets: impl IntoIterator<Item = S>) -> Fault {
        Fault::Stop {
            targets: names(targets),
            timeout: default_stop_timeout(),
        }
    }

    /// SIGTERM, then SIGKILL after the default 10 s, then start again.
    pub fn restart<S: Into<String>>(targets: impl IntoIterator<Item = S>) -> Fault {
        Fault::Restart {
            targets: names(targets),
            timeout: default_stop_timeout(),
        }
    }

    pub fn start<S: Into<String>>(targets: impl IntoIterator<Item = S>) -> Fault {
        Fault::Start {
            targets: names(targets),
        }
    }

    pub fn pause<S: Into<String>>(targets: impl IntoIterator<Item = S>) -> Fault {
        Fault::Pause {
            targets: names(targets),
        }
    }

    pub fn resume<S: Into<String>>(targets: impl IntoIterator<Item = S>) -> Fault {
        Fault::Resume {
            targets: names(targets),
        }
    }

    /// Nothing passes between `a` and `b`.
    pub fn partition<S: Into<String>, T: Into<String>>(
        a: impl IntoIterator<Item = S>,
        b: impl IntoIterator<Item = T>,
    ) -> Fault {
        Fault::Partition {
            a: names(a),
            b: names(b),
            direction: Direction::Both,
        }
    }

    pub fn isolate<S: Into<String>>(targets: impl IntoIterator<Item = S>) -> Fault {
        Fault::Isolate {
            targets: names(targets),
        }
    }
}

fn names<S: Into<String>>(targets: impl IntoIterator<Item = S>) -> Vec<String> {
    targets.into_iter().map(Into::into).collect()
}

fn default_stop_timeout() -> Duration {
    Duration::from_secs(10)
}

/// A fault target chosen when its step runs, written `@name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selector {
    /// The node that answered the last successful user request (as its workload recorded it).
    LastServed,
    /// The nodes of the previous fault.
    Previous,
    /// The database member the cluster observer last saw as primary.
    Primary,
    /// The database members the cluster observer last saw as standbys.
    Standby,
}

impl Selector {
    pub const ALL: [Selector; 4] = [
        Selector::LastServed,
        Selector::Previous,
        Selector::Primary,
        Selector::Standby,
    ];

    /// The name after the `@`.
    pub fn name(self) -> &'static str {
        match self {
            Selector::LastServed => "last-served",
            Selector::Previous => "previous",
            Selector::Primary => "primary",
            Selector::Standby => "standby",
        }
    }

    pub fn parse(name: &str) -> Option<Selector> {
        Selector::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl Fault {
    /// The fields naming what this fault acts on (nodes, groups or `@selectors`), by their
    /// names in a scenario file. `heal` has none: it acts on whatever is cut.
    pub fn targets(&self) -> Vec<(&'static str, &[String])> {
        match self {
            Fault::Kill { targets }
            | Fault::Stop { targets, .. }
            | Fault::Start { targets }
            | Fault::Restart { targets, .. }
            | Fault::Pause { targets }
            | Fault::Resume { targets }
            | Fault::Isolate { targets }
            | Fault::RotateSecret { targets, .. } => vec![("targets", targets)],
            Fault::Exec { node, .. } => vec![("node", std::slice::from_ref(node))],
            Fault::Partition { a, b, .. } => vec![("a", a), ("b", b)],
            Fault::Heal => Vec::new(),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Fault::Kill { .. } => "kill",
            Fault::Stop { .. } => "stop",
            Fault::Start { .. } => "start",
            Fault::Restart { .. } => "restart",
            Fault::Pause { .. } => "pause",
            Fault::Resume { .. } => "resume",
            Fault::Partition { .. } => "partition",
            Fault::Isolate { .. } => "isolate",
            Fault::Heal => "heal",
            Fault::RotateSecret { .. } => "rotate-secret",
            Fault::Exec { .. } => "exec",
        }
    }
}
