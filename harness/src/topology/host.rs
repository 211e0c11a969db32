//! `[hosts.NAME]`: a host of an install that already runs, reached over SSH. hadrill never
//! starts or removes it: it runs the service's own commands on it and undoes what it changed.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::{
    Ctx, DEFAULT_HEALTH_INTERVAL, DEFAULT_STARTUP_TIMEOUT, HealthCheck, NodeSpec, RawHealth,
};
use super::{HumanDuration, TopologyError};
use crate::images::ImageRef;

/// How hadrill reaches and drives one existing host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSpec {
    /// The host's addresses as its peers reach it (one per network it is on): what a partition
    /// cuts.
    pub addresses: Vec<IpAddr>,
    pub ssh: SshTarget,
    pub service: Service,
    /// A port the workloads name → where the controller reaches it.
    pub entry: BTreeMap<u16, SocketAddr>,
}

/// An SSH destination. Host keys are checked against `known_hosts`, never accepted blindly.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SshTarget {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub identity: PathBuf,
    pub known_hosts: PathBuf,
}

/// The commands that drive a host's service, each a list of argument vectors run in order
/// (as root through `sudo -n` unless the SSH user is root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub start: Vec<Vec<String>>,
    pub stop: Vec<Vec<String>>,
    pub kill: Vec<Vec<String>>,
    pub pause: Vec<Vec<String>>,
    pub resume: Vec<Vec<String>>,
    /// Exits 0 while the service runs (and, with `running_prefix`, prints that first).
    pub status: Vec<String>,
    pub running_prefix: Option<String>,
    /// A command printing the service's own output (journald's, for a systemd unit).
    pub journal: Option<Vec<String>>,
}

impl Service {
    /// A systemd unit: `systemctl` drives it, journald holds its output.
    fn systemd(unit: &str) -> Service {
        let ctl = |args: &[&str]| {
            let mut v = vec!["systemctl".to_string()];
            v.extend(args.iter().map(|a| a.to_string()));
            v.push(unit.to_string());
            vec![v]
        };
        Service {
            name: unit.to_string(),
            start: ctl(&["start"]),
            stop: ctl(&["stop"]),
            kill: ctl(&["kill", "--signal=SIGKILL"]),
            pause: ctl(&["kill", "--signal=SIGSTOP"]),
            resume: ctl(&["kill", "--signal=SIGCONT"]),
            status: ctl(&["is-active", "--quiet"]).remove(0),
            running_prefix: None,
            journal: Some(
                [
                    "journalctl",
                    "--no-pager",
                    "-o",
                    "short-iso-precise",
                    "-u",
                    unit,
                ]
                .map(String::from)
                .to_vec(),
            ),
        }
    }

    /// A runit service: `sv` drives it. A kill first sets it to run once, so runit does not
    /// bring it back: a killed service stays down until a `start`, as on any other host.
    fn runit(service: &str) -> Service {
        let sv = |args: &[&str]| {
            let mut v = vec!["sv".to_string()];
            v.extend(args.iter().map(|a| a.to_string()));
            v.push(service.to_string());
            v
        };
        Service {
            name: service.to_string(),
            start: vec![sv(&["up"])],
            stop: vec![sv(&["-w", "30", "down"])],
            kill: vec![sv(&["once"]), sv(&["kill"])],
            pause: vec![sv(&["pause"])],
            resume: vec![sv(&["cont"])],
            status: sv(&["status"]),
            running_prefix: Some("run:".into()),
            journal: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHost {
    role: Option<String>,
    /// An IP address, or a list of them.
    address: Spanned<toml::Value>,
    ssh: Spanned<RawSsh>,
    service: Spanned<RawService>,
    /// A port the workloads name → where the controller reaches it, `host:port`.
    #[serde(default)]
    entry: BTreeMap<String, Spanned<String>>,
    health: Option<RawHealth>,
    startup_timeout: Option<HumanDuration>,
    in_flight: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    logs: Vec<Spanned<String>>,
    #[serde(default)]
    rotate_secret: BTreeMap<String, Spanned<toml::Value>>,
    clock: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSsh {
    /// Where the controller connects; the host's `address` when not given.
    host: Option<String>,
    port: Option<u16>,
    user: String,
    identity: Spanned<String>,
    known_hosts: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    systemd: Option<String>,
    runit: Option<String>,
    start: Option<Spanned<toml::Value>>,
    stop: Option<Spanned<toml::Value>>,
    kill: Option<Spanned<toml::Value>>,
    pause: Option<Spanned<toml::Value>>,
    resume: Option<Spanned<toml::Value>>,
    status: Option<Spanned<Vec<String>>>,
}

const SERVICE_HELP: &str = "name a systemd unit (`service = { systemd = \"myapp\" }`), a runit service (`{ runit = \"myapp\" }`), or give the commands: `{ start = [...], stop = [...], kill = [...], pause = [...], resume = [...], status = [...] }`";

impl Ctx<'_> {
    /// The node a `[hosts.NAME]` entry declares.
    pub(super) fn host(
        &self,
        name: &str,
        raw: RawHost,
        secrets: &[String],
    ) -> Result<NodeSpec, TopologyError> {
        let field = |f: &str| format!("hosts.{name}.{f}");
        let words: Option<Vec<&str>> = match raw.address.get_ref() {
            toml::Value::String(a) => Some(vec![a.as_str()]),
            toml::Value::Array(list) => list.iter().map(toml::Value::as_str).collect(),
            _ => None,
        };
        let addresses: Option<Vec<IpAddr>> = words
            .filter(|w| !w.is_empty())
            .and_then(|w| w.iter().map(|a| a.trim().parse().ok()).collect());
        let Some(addresses) = addresses else {
            return Err(self.error(
                raw.address.span(),
                format!("{}: give the host's IP address, or a list of them", field("address")),
                Some(
                    "the addresses its peers reach it at, e.g. `address = \"10.0.0.11\"` or `[\"10.0.0.11\", \"10.1.0.11\"]`: a partition cuts these"
                        .into(),
                ),
            ));
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let file = |f: &str, v: &Spanned<String>| -> Result<PathBuf, TopologyError> {
            let p = dir.join(v.get_ref());
            if p.is_file() {
                Ok(p)
            } else {
                Err(self.error(
                    v.span(),
                    format!("{}: file `{}` does not exist", field(f), p.display()),
                    Some("paths are relative to the topology file".into()),
                ))
            }
        };
        let ssh = raw.ssh.get_ref();
        let target = SshTarget {
            host: ssh.host.clone().unwrap_or_else(|| addresses[0].to_string()),
            port: ssh.port.unwrap_or(22),
            user: ssh.user.clone(),
            identity: file("ssh.identity", &ssh.identity)?,
            known_hosts: file("ssh.known_hosts", &ssh.known_hosts)?,
        };
        if target.host.starts_with('-') || target.host.is_empty() {
            return Err(self.error(
                raw.ssh.span(),
                format!(
                    "{}: `{}` is not a host name or address",
                    field("ssh.host"),
                    target.host
                ),
                None,
            ));
        }
        let service = self.service(&field("service"), &raw.service)?;
        let mut ports = Vec::new();
        let mut entry = BTreeMap::new();
        for (port, at) in &raw.entry {
            let (Ok(p), Ok(addr)) = (port.parse::<u16>(), at.get_ref().parse::<SocketAddr>())
            else {
                return Err(self.error(
                    at.span(),
                    format!(
                        "{}: `{port} = \"{}\"` is not a port and an address",
                        field("entry"),
                        at.get_ref()
                    ),
                    Some(
                        "map the port the workloads use to where hadrill reaches it: `entry = { 80 = \"10.0.0.10:80\" }`"
                            .into(),
                    ),
                ));
            };
            ports.push(p);
            entry.insert(p, addr);
        }
        let health = raw.health.map(|h| HealthCheck {
            cmd: h.cmd,
            interval: h.interval.map_or(DEFAULT_HEALTH_INTERVAL, |d| d.0),
        });
        let empty = |c: Option<&Vec<String>>| c.is_some_and(Vec::is_empty);
        if empty(health.as_ref().map(|h| &h.cmd))
            || empty(raw.in_flight.as_ref().map(|c| c.get_ref()))
        {
            return Err(self.error(
                raw.ssh.span(),
                format!("hosts.{name}: a `health` or `in_flight` command is empty"),
                Some("give each as a list of words, e.g. `[\"curl\", \"-fsS\", \"http://127.0.0.1:8080/readyz\"]`".into()),
            ));
        }
        let logs = self.log_files(&field("logs"), &raw.logs)?;
        let rotate_secret = self.rotations(&field("rotate_secret"), &raw.rotate_secret, secrets)?;
        let mut spec = NodeSpec::attached(
            name,
            ImageRef::External(format!("host {}", addresses[0])),
            Vec::new(),
            None,
        );
        spec.role = raw.role.unwrap_or_else(|| name.to_string());
        spec.ports = ports;
        spec.health = health;
        spec.startup_timeout = raw.startup_timeout.map_or(DEFAULT_STARTUP_TIMEOUT, |d| d.0);
        spec.in_flight = raw.in_flight.map(Spanned::into_inner);
        spec.logs = logs;
        spec.rotate_secret = rotate_secret;
        spec.faketime = self.faketime(&field("clock"), &raw.clock)?;
        spec.host = Some(Box::new(HostSpec {
            addresses,
            ssh: target,
            service,
            entry,
        }));
        Ok(spec)
    }

    fn service(&self, field: &str, raw: &Spanned<RawService>) -> Result<Service, TopologyError> {
        let r = raw.get_ref();
        let mut service = match (&r.systemd, &r.runit) {
            (Some(u), None) => Service::systemd(u),
            (None, Some(s)) => Service::runit(s),
            (None, None) => Service {
                name: String::new(),
                start: Vec::new(),
                stop: Vec::new(),
                kill: Vec::new(),
                pause: Vec::new(),
                resume: Vec::new(),
                status: Vec::new(),
                running_prefix: None,
                journal: None,
            },
            (Some(_), Some(_)) => {
                return Err(self.error(
                    raw.span(),
                    format!("{field}: a service is systemd's or runit's, not both"),
                    Some(SERVICE_HELP.into()),
                ));
            }
        };
        for (name, value, slot) in [
            ("start", &r.start, &mut service.start),
            ("stop", &r.stop, &mut service.stop),
            ("kill", &r.kill, &mut service.kill),
            ("pause", &r.pause, &mut service.pause),
            ("resume", &r.resume, &mut service.resume),
        ] {
            if let Some(v) = value {
                *slot = self.commands(&format!("{field}.{name}"), v)?;
            }
        }
        if let Some(s) = &r.status {
            service.status = s.get_ref().clone();
            service.running_prefix = None;
        }
        let missing: Vec<&str> = [
            ("start", service.start.is_empty()),
            ("stop", service.stop.is_empty()),
            ("kill", service.kill.is_empty()),
            ("status", service.status.is_empty()),
        ]
        .into_iter()
        .filter_map(|(n, empty)| empty.then_some(n))
        .collect();
        if !missing.is_empty() {
            return Err(self.error(
                raw.span(),
                format!("{field}: no `{}` command", missing.join("`, `")),
                Some(SERVICE_HELP.into()),
            ));
        }
        if service.name.is_empty() {
            service.name = service.status.join(" ");
        }
        Ok(service)
    }

    /// One argument vector (`["systemctl", "start", "x"]`) or a list of them, run in order.
    pub(super) fn commands(
        &self,
        field: &str,
        v: &Spanned<toml::Value>,
    ) -> Result<Vec<Vec<String>>, TopologyError> {
        let words = |a: &toml::Value| -> Option<Vec<String>> {
            let list = a.as_array()?;
            let out: Option<Vec<String>> =
                list.iter().map(|w| w.as_str().map(String::from)).collect();
            out.filter(|o| !o.is_empty())
        };
        let parsed = match v.get_ref() {
            toml::Value::Array(items) if items.iter().all(toml::Value::is_str) => {
                words(v.get_ref()).map(|w| vec![w])
            }
            toml::Value::Array(items) => items.iter().map(words).collect(),
            _ => None,
        };
        parsed.ok_or_else(|| {
            self.error(
                v.span(),
                format!("{field}: give a command as a list of words, or a list of such commands"),
                Some(
                    "e.g. `[\"systemctl\", \"stop\", \"myapp\"]` or `[[\"sv\", \"once\", \"myapp\"], [\"sv\", \"kill\", \"myapp\"]]`"
                        .into(),
                ),
            )
        })
    }
}
