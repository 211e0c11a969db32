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
    /// Cuts `a` from `b`: what the cut catches is dropped, refused or lost at random, as
    /// `effect` says.
    Partition {
        a: Vec<String>,
        b: Vec<String>,
        #[serde(default)]
        direction: Direction,
        #[serde(default)]
        effect: Effect,
    },
    /// Cuts each target from every other node.
    Isolate {
        targets: Vec<String>,
        #[serde(default)]
        effect: Effect,
    },
    /// Cuts `nodes` into the shape Jepsen's nemeses use: halves, a bridge, a ring of
    /// majorities.
    Split {
        nodes: Vec<String>,
        shape: Shape,
        #[serde(default)]
        effect: Effect,
    },
    /// Limits what each target sends, on every interface, to `rate` (a token bucket: `tc
    /// tbf`); what it receives is limited by its peers' sending.
    Throttle {
        targets: Vec<String>,
        rate: Bandwidth,
    },
    /// Holds what each target sends back on `port` for `latency` (± `jitter`, uniform)
    /// before passing it on: an in-path TCP proxy inside the node, through which new
    /// connections to the port are redirected (iptables `REDIRECT`). Connections opened before
    /// the step keep their direct path.
    Delay {
        targets: Vec<String>,
        port: u16,
        #[serde(with = "humantime_serde")]
        latency: Duration,
        #[serde(with = "humantime_serde", default)]
        jitter: Duration,
    },
    /// Sets the wall clock each target's processes read `offset` away from the true one
    /// (libfaketime, which the topology loads into the node with `clock = "faketime"`). The
    /// host's clock is never touched; monotonic clocks are left alone, as a skewed NTP leaves
    /// them.
    SkewClock {
        targets: Vec<String>,
        offset: ClockOffset,
        /// How far the offset moves per second of the run from the step on (`"+10ms"`: the
        /// clock gains 10 ms a second), applied in one-second steps until `heal`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        drift: Option<ClockOffset>,
    },
    /// Fills the filesystem holding `path` in each target with a filler file, so writes there
    /// fail with "no space left on device". Only a size-limited filesystem (a topology
    /// `tmpfs`) is filled, never the host's disk.
    FillDisk {
        targets: Vec<String>,
        path: String,
    },
    /// Limits each target's memory (its cgroup) to what it uses now plus `headroom`: what the
    /// node then allocates beyond that, the kernel's OOM killer takes back by killing one of
    /// its processes (the largest; the service itself if it is the one growing).
    LimitMemory {
        targets: Vec<String>,
        headroom: ByteSize,
    },
    /// Undoes every change inside the nodes: partition rules, bandwidth limits, delays, clock
    /// offsets, filled disks and memory limits.
    Heal,
    /// Writes a new value of a run secret into the config files of `targets`, as the guides'
    /// rotation does ("overwrite the key on every VM"); restarting them is a separate step.
    RotateSecret {
        secret: String,
        targets: Vec<String>,
    },
    /// Sends `signal` to the processes of each target whose command line matches `process`
    /// (`pgrep -f`): `STOP` hangs one process (a stuck Patroni, a wedged worker) while the
    /// node's others go on, `CONT` frees it. Matching no process fails the step.
    Signal {
        targets: Vec<String>,
        process: String,
        signal: ProcessSignal,
    },
    /// An operator command run inside `node`, e.g. a planned switchover through patronictl;
    /// a non-zero exit fails the step.
    Exec {
        node: String,
        command: Vec<String>,
        /// What its exit status must be for the step to succeed.
        #[serde(default, skip_serializing_if = "Expect::is_success")]
        expect: Expect,
        /// The command takes the backup a later one restores (its start is the recovery
        /// point), or restores it (its end is when the install is back): what the `restore`
        /// check and continuity judge by.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        marks: Option<Mark>,
    },
    /// Replaces each target's container with one of `image` (a topology image name), as
    /// installing a new release on a VM does: the same name, networks, config, environment
    /// and ports; the old one gets SIGTERM and `timeout` to stop. What the node held in its
    /// container filesystem is gone, as on a reinstall; readiness is a separate `wait`.
    Upgrade {
        targets: Vec<String>,
        image: String,
        #[serde(with = "humantime_serde", default = "default_stop_timeout")]
        timeout: Duration,
    },
    /// Replaces each target's container with a fresh one of its own image, as a lost VM is
    /// reinstalled: the same name, networks, config, environment and ports, nothing of what
    /// the old one held on disk. The old one gets SIGTERM and `timeout` to stop.
    Replace {
        targets: Vec<String>,
        #[serde(with = "humantime_serde", default = "default_stop_timeout")]
        timeout: Duration,
    },
}

/// What an operator command stands for in a backup and restore drill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mark {
    /// It takes the backup: what was acknowledged before it started must survive a restore.
    Backup,
    /// It restores the last backup: the install is back when it ends.
    Restore,
}

/// What an operator command's exit status must be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Expect {
    /// Exit 0, else the step fails.
    #[default]
    Success,
    /// A non-zero exit, e.g. a planted failure the product must report; exit 0 fails the step.
    Failure,
    /// Either: the status is recorded in the fault's record and the checks judge what follows
    /// (a re-run of a migration that a defect left half done).
    Any,
}

impl Expect {
    pub fn is_success(&self) -> bool {
        *self == Expect::Success
    }
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

/// A signal `signal` sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ProcessSignal {
    Stop,
    Cont,
    Term,
    Kill,
    Hup,
    Int,
}

impl ProcessSignal {
    /// As `kill -s` takes it.
    pub fn name(self) -> &'static str {
        match self {
            ProcessSignal::Stop => "STOP",
            ProcessSignal::Cont => "CONT",
            ProcessSignal::Term => "TERM",
            ProcessSignal::Kill => "KILL",
            ProcessSignal::Hup => "HUP",
            ProcessSignal::Int => "INT",
        }
    }
}

/// How `split` cuts a set of nodes (in their order, groups expanded as declared).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Shape {
    /// The first half (rounded down: a minority) from the rest.
    Halves,
    /// The nodes before the middle one from those after it; the middle one sees both sides.
    Bridge,
    /// Each node sees its nearest neighbours on a ring, a majority with itself, and no two
    /// see the same majority (four nodes at least).
    MajoritiesRing,
}

impl Shape {
    /// Its name in a scenario file.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Halves => "halves",
            Shape::Bridge => "bridge",
            Shape::MajoritiesRing => "majorities-ring",
        }
    }

    /// The fewest nodes the shape needs.
    pub fn needs(self) -> usize {
        match self {
            Shape::Halves => 2,
            Shape::Bridge => 3,
            Shape::MajoritiesRing => 4,
        }
    }

    /// The cuts that make the shape: pairs of sides, nothing passing between them.
    pub fn cuts(self, nodes: &[String]) -> Vec<(Vec<String>, Vec<String>)> {
        let n = nodes.len();
        if n < self.needs() {
            return Vec::new();
        }
        match self {
            Shape::Halves => vec![(nodes[..n / 2].to_vec(), nodes[n / 2..].to_vec())],
            Shape::Bridge => vec![(nodes[..n / 2].to_vec(), nodes[n / 2 + 1..].to_vec())],
            Shape::MajoritiesRing => {
                // A majority is n/2 + 1 with itself: k neighbours on each side reach it.
                let k = (n / 2).div_ceil(2);
                let mut cuts = Vec::new();
                for i in 0..n {
                    for j in i + 1..n {
                        if (j - i).min(n - (j - i)) > k {
                            cuts.push((vec![nodes[i].clone()], vec![nodes[j].clone()]));
                        }
                    }
                }
                cuts
            }
        }
    }
}

/// What a cut does to the packets it catches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum Effect {
    /// They vanish: a connection attempt hangs until the client's own timeout (a blackhole).
    #[default]
    Drop,
    /// They are refused at once: a TCP reset, an ICMP port-unreachable for anything else
    /// (resets and ICMP themselves pass, so that each refusal reaches its sender).
    Reset,
    /// Each is dropped with this probability, on its own (`{ loss = 0.3 }`); TCP retransmits,
    /// so connections slow down rather than fail.
    Loss(f64),
}

impl Effect {
    /// How it reads in a fault's record.
    pub fn describe(self) -> String {
        match self {
            Effect::Drop => "dropped".into(),
            Effect::Reset => "refused".into(),
            Effect::Loss(p) => format!("{:.0} % lost", p * 100.0),
        }
    }
}

/// A bandwidth, written as `tc` writes it: `512kbit`, `4mbit`, `1gbit` or `800bit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Bandwidth {
    pub bits_per_second: u64,
}

impl Bandwidth {
    const UNITS: [(&'static str, u64); 4] = [
        ("gbit", 1_000_000_000),
        ("mbit", 1_000_000),
        ("kbit", 1_000),
        ("bit", 1),
    ];
}

impl TryFrom<String> for Bandwidth {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        let bad =
            || format!("invalid bandwidth `{s}`: write it like `512kbit`, `4mbit` or `1gbit`");
        let (number, scale) = Bandwidth::UNITS
            .iter()
            .find_map(|(unit, scale)| s.trim().strip_suffix(unit).map(|n| (n, *scale)))
            .ok_or_else(bad)?;
        let n: u64 = number.trim().parse().map_err(|_| bad())?;
        match n.checked_mul(scale) {
            Some(bits_per_second) if bits_per_second > 0 => Ok(Bandwidth { bits_per_second }),
            _ => Err(format!(
                "bandwidth `{s}` is out of range: more than 0, at most 2^64 bit/s"
            )),
        }
    }
}

impl From<Bandwidth> for String {
    fn from(b: Bandwidth) -> String {
        let (unit, scale) = Bandwidth::UNITS
            .iter()
            .find(|(_, scale)| b.bits_per_second.is_multiple_of(*scale))
            .copied()
            .unwrap_or(("bit", 1));
        format!("{}{unit}", b.bits_per_second / scale)
    }
}

/// A size in bytes, written as Docker writes one: `512k`, `64m`, `2g` (powers of 1,024) or
/// plain bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ByteSize {
    pub bytes: u64,
}

impl ByteSize {
    const UNITS: [(char, u64); 3] = [('g', 1 << 30), ('m', 1 << 20), ('k', 1 << 10)];
}

impl TryFrom<String> for ByteSize {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        let t = s.trim().to_ascii_lowercase();
        let (number, scale) = ByteSize::UNITS
            .iter()
            .find_map(|(unit, scale)| t.strip_suffix(*unit).map(|n| (n, *scale)))
            .unwrap_or((t.as_str(), 1));
        match number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(scale))
        {
            Some(bytes) if bytes > 0 => Ok(ByteSize { bytes }),
            _ => Err(format!(
                "invalid size `{s}`: write it like `512k`, `64m` or `2g`, more than 0"
            )),
        }
    }
}

impl From<ByteSize> for String {
    fn from(b: ByteSize) -> String {
        ByteSize::UNITS
            .iter()
            .find(|(_, scale)| b.bytes.is_multiple_of(*scale))
            .map_or(b.bytes.to_string(), |(unit, scale)| {
                format!("{}{unit}", b.bytes / scale)
            })
    }
}

/// How far a skewed clock is from the true one, written `+90s`, `-2m` or `1h 30m` (no sign:
/// ahead).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClockOffset {
    pub millis: i64,
}

impl ClockOffset {
    /// As libfaketime reads it from its file: signed seconds.
    pub fn faketime_spec(self) -> String {
        format!("{:+}", self.millis as f64 / 1000.0)
    }

    /// This offset moved by `drift` for each second of `elapsed`.
    pub fn drifted(self, drift: ClockOffset, elapsed: Duration) -> ClockOffset {
        let moved = drift.millis as f64 * elapsed.as_secs_f64();
        ClockOffset {
            millis: self.millis.saturating_add(moved.round() as i64),
        }
    }
}

impl TryFrom<String> for ClockOffset {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        let t = s.trim();
        let (sign, rest) = match t.strip_prefix('-') {
            Some(rest) => (-1, rest),
            None => (1, t.strip_prefix('+').unwrap_or(t)),
        };
        let d = humantime::parse_duration(rest.trim()).map_err(|_| {
            format!("invalid clock offset `{s}`: write it like `+90s`, `-2m` or `1h 30m`")
        })?;
        match i64::try_from(d.as_millis()) {
            Ok(ms) if ms <= 10 * 365 * 86_400_000 => Ok(ClockOffset { millis: sign * ms }),
            _ => Err(format!(
                "clock offset `{s}` is out of range: at most ten years"
            )),
        }
    }
}

impl From<ClockOffset> for String {
    fn from(o: ClockOffset) -> String {
        let sign = if o.millis < 0 { "-" } else { "+" };
        let d = Duration::from_millis(o.millis.unsigned_abs());
        format!("{sign}{}", humantime::format_duration(d))
    }
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
            effect: Effect::Drop,
        }
    }

    pub fn isolate<S: Into<String>>(targets: impl IntoIterator<Item = S>) -> Fault {
        Fault::Isolate {
            targets: names(targets),
            effect: Effect::Drop,
        }
    }

    /// What each target sends limited to `rate`.
    pub fn throttle<S: Into<String>>(
        targets: impl IntoIterator<Item = S>,
        rate: Bandwidth,
    ) -> Fault {
        Fault::Throttle {
            targets: names(targets),
            rate,
        }
    }
}

impl Fault {
    /// What each target sends back on `port` held `latency` before it goes on.
    pub fn delay<S: Into<String>>(
        targets: impl IntoIterator<Item = S>,
        port: u16,
        latency: Duration,
    ) -> Fault {
        Fault::Delay {
            targets: names(targets),
            port,
            latency,
            jitter: Duration::ZERO,
        }
    }

    /// The targets' wall clocks `offset` from the true one.
    pub fn skew_clock<S: Into<String>>(
        targets: impl IntoIterator<Item = S>,
        offset: ClockOffset,
    ) -> Fault {
        Fault::SkewClock {
            targets: names(targets),
            offset,
            drift: None,
        }
    }

    /// The filesystem holding `path` in each target filled up.
    pub fn fill_disk<S: Into<String>>(targets: impl IntoIterator<Item = S>, path: &str) -> Fault {
        Fault::FillDisk {
            targets: names(targets),
            path: path.to_string(),
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
            | Fault::Isolate { targets, .. }
            | Fault::Throttle { targets, .. }
            | Fault::Signal { targets, .. }
            | Fault::Delay { targets, .. }
            | Fault::SkewClock { targets, .. }
            | Fault::FillDisk { targets, .. }
            | Fault::LimitMemory { targets, .. }
            | Fault::RotateSecret { targets, .. }
            | Fault::Upgrade { targets, .. }
            | Fault::Replace { targets, .. } => vec![("targets", targets)],
            Fault::Exec { node, .. } => vec![("node", std::slice::from_ref(node))],
            Fault::Partition { a, b, .. } => vec![("a", a), ("b", b)],
            Fault::Split { nodes, .. } => vec![("nodes", nodes)],
            Fault::Heal => Vec::new(),
        }
    }

    /// Whether it disturbs the work its targets hold, so what they held is what it hit:
    /// everything but bringing nodes back and `heal`.
    pub fn disturbs(&self) -> bool {
        !matches!(
            self,
            Fault::Start { .. } | Fault::Resume { .. } | Fault::Heal
        )
    }

    /// Whether hadrill can do it to an existing host over SSH (with the host's service commands,
    /// iptables and the operator's own commands).
    pub fn runs_on_hosts(&self) -> bool {
        matches!(
            self,
            Fault::Kill { .. }
                | Fault::Stop { .. }
                | Fault::Start { .. }
                | Fault::Restart { .. }
                | Fault::Pause { .. }
                | Fault::Resume { .. }
                | Fault::Partition { .. }
                | Fault::Isolate { .. }
                | Fault::Split { .. }
                | Fault::Signal { .. }
                | Fault::Exec { .. }
                | Fault::RotateSecret { .. }
                | Fault::FillDisk { .. }
                | Fault::SkewClock { .. }
                | Fault::Throttle { .. }
                | Fault::Delay { .. }
                | Fault::Heal
        )
    }

    /// What an operator command stands for in a backup and restore drill, if anything.
    pub fn marks(&self) -> Option<Mark> {
        match self {
            Fault::Exec { marks, .. } => *marks,
            _ => None,
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
            Fault::Throttle { .. } => "throttle",
            Fault::Split { .. } => "split",
            Fault::Signal { .. } => "signal",
            Fault::Delay { .. } => "delay",
            Fault::SkewClock { .. } => "skew-clock",
            Fault::FillDisk { .. } => "fill-disk",
            Fault::LimitMemory { .. } => "limit-memory",
            Fault::Heal => "heal",
            Fault::RotateSecret { .. } => "rotate-secret",
            Fault::Exec { .. } => "exec",
            Fault::Upgrade { .. } => "upgrade",
            Fault::Replace { .. } => "replace",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_shape_cuts_as_jepsen_draws_it() {
        let nodes: Vec<String> = ["n1", "n2", "n3", "n4", "n5"].map(String::from).to_vec();
        let names = |v: &[String]| v.join(",");
        let cuts = |shape: Shape| -> Vec<String> {
            shape
                .cuts(&nodes)
                .iter()
                .map(|(a, b)| format!("{}|{}", names(a), names(b)))
                .collect()
        };
        assert_eq!(cuts(Shape::Halves), ["n1,n2|n3,n4,n5"]);
        assert_eq!(cuts(Shape::Bridge), ["n1,n2|n4,n5"]);
        // On a ring of five each node keeps its two neighbours: itself and them, a majority.
        assert_eq!(
            cuts(Shape::MajoritiesRing),
            ["n1|n3", "n1|n4", "n2|n4", "n2|n5", "n3|n5"]
        );
        for n in 4..9 {
            let ring: Vec<String> = (0..n).map(|i| format!("n{i}")).collect();
            let cut = Shape::MajoritiesRing.cuts(&ring);
            let mut seen = Vec::new();
            for node in &ring {
                let mut sees: Vec<&String> = ring
                    .iter()
                    .filter(|o| {
                        !cut.iter().any(|(a, b)| {
                            (a[0] == **node && b[0] == **o) || (b[0] == **node && a[0] == **o)
                        })
                    })
                    .collect();
                assert!(sees.len() > n / 2, "{node} of {n} sees {sees:?}");
                sees.sort();
                assert!(
                    !seen.contains(&sees),
                    "two nodes of {n} see the same majority"
                );
                seen.push(sees);
            }
        }
        assert!(Shape::Bridge.cuts(&nodes[..2]).is_empty());
    }

    #[test]
    fn a_bandwidth_reads_as_tc_writes_it_and_round_trips() {
        let read = |s: &str| Bandwidth::try_from(s.to_string());
        assert_eq!(read("4mbit").unwrap().bits_per_second, 4_000_000);
        assert_eq!(read("512kbit").unwrap().bits_per_second, 512_000);
        assert_eq!(read("800bit").unwrap().bits_per_second, 800);
        assert_eq!(String::from(read("1500kbit").unwrap()), "1500kbit");
        assert_eq!(String::from(read("2000kbit").unwrap()), "2mbit");
        for bad in ["4", "4 MB", "mbit", "0kbit", "-1mbit", "99999999999gbit"] {
            assert!(read(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_size_reads_as_docker_writes_it_and_round_trips() {
        let read = |s: &str| ByteSize::try_from(s.to_string());
        assert_eq!(read("16m").unwrap().bytes, 16 << 20);
        assert_eq!(read("512K").unwrap().bytes, 512 << 10);
        assert_eq!(read("2g").unwrap().bytes, 2 << 30);
        assert_eq!(read("1000").unwrap().bytes, 1000);
        assert_eq!(String::from(read("2048k").unwrap()), "2m");
        assert_eq!(String::from(read("1000").unwrap()), "1000");
        for bad in ["", "m", "0m", "-1m", "16 MB", "99999999999999g"] {
            assert!(read(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_clock_offset_reads_signed_and_round_trips() {
        let read = |s: &str| ClockOffset::try_from(s.to_string());
        assert_eq!(read("+90s").unwrap().millis, 90_000);
        assert_eq!(read("90s").unwrap().millis, 90_000);
        assert_eq!(read("-2m").unwrap().millis, -120_000);
        assert_eq!(read("-1500ms").unwrap().faketime_spec(), "-1.5");
        assert_eq!(read("+1h 30m").unwrap().faketime_spec(), "+5400");
        assert_eq!(String::from(read("-2m").unwrap()), "-2m");
        assert_eq!(
            read(&String::from(read("+1h 30m").unwrap())),
            read("+1h 30m")
        );
        for bad in ["", "+", "ahead", "--1s", "+20y"] {
            assert!(read(bad).is_err(), "{bad}");
        }
        let drifted = read("+1s")
            .unwrap()
            .drifted(read("-10ms").unwrap(), Duration::from_millis(2_500));
        assert_eq!(drifted.millis, 975);
    }

    #[test]
    fn a_cut_drops_by_default_and_reads_reset_or_a_loss_rate() {
        let fault = |v| serde_json::from_value::<Fault>(v).unwrap();
        let effect = |f: Fault| match f {
            Fault::Partition { effect, .. } | Fault::Isolate { effect, .. } => effect,
            other => panic!("{other:?}"),
        };
        let cut = json!({"kind": "partition", "a": ["x"], "b": ["y"]});
        assert_eq!(effect(fault(cut)), Effect::Drop);
        let reset = json!({"kind": "isolate", "targets": ["x"], "effect": "reset"});
        assert_eq!(effect(fault(reset)), Effect::Reset);
        let lossy = json!({"kind": "isolate", "targets": ["x"], "effect": {"loss": 0.25}});
        assert_eq!(effect(fault(lossy)), Effect::Loss(0.25));
        assert_eq!(Effect::Loss(0.25).describe(), "25 % lost");
        let throttle = json!({"kind": "throttle", "targets": ["x"], "rate": "4mbit"});
        assert_eq!(
            fault(throttle),
            Fault::throttle(["x"], Bandwidth::try_from("4mbit".to_string()).unwrap())
        );
        let unknown = json!({"kind": "isolate", "targets": ["x"], "effect": "corrupt"});
        assert!(serde_json::from_value::<Fault>(unknown).is_err());
    }
}
