//! The SSH test bed: a container topology stood up as "VMs" (each node a container running an
//! SSH server and runit, the node's service under runit), and the `[hosts]` topology that
//! describes it as an existing install. From then on hadrill reaches it only over SSH, as it
//! reaches a user's own hosts: this is how the SSH backend is proven on a machine with no VMs.

use std::path::{Path, PathBuf};
use std::process::Command;

use bollard::query_parameters::EventsOptions;
use futures_util::StreamExt;

use crate::docker::DockerError;
use crate::run::{Run, RunError, RunOptions};
use crate::topology::{ConfigMount, HealthCheck, NodeSpec, Topology, TopologyError};

const BOOT: &str = include_str!("testbed/boot.sh");
/// The VMs' service log, a file the hosts topology names for collection.
const SERVICE_LOG: &str = "/var/log/hadrill/service.log";
/// The mark in the environment of every process the service starts: when its main process
/// ends, runit's `finish` ends every marked one, wherever it went (pg_ctl daemonizes
/// PostgreSQL into a session of its own), as systemd ends a unit's whole cgroup.
const MARK: &str = "HADRILL_SERVICE=main";
const FINISH: &str = r#"#!/bin/sh
# The service's processes, wherever they went: every one whose environment carries its mark,
# and their children (PostgreSQL's overwrite their environment with their titles).
marked=""
for e in /proc/[0-9]*/environ; do
    pid=${e#/proc/}; pid=${pid%/environ}
    [ "$pid" = "$$" ] && continue
    if tr '\0' '\n' <"$e" 2>/dev/null | grep -qx "$1"; then marked="$marked $pid"; fi
done
for pid in $marked; do
    kill -KILL "$pid" $(pgrep -P "$pid") 2>/dev/null
done
exit 0
"#;
/// The SSH user.
const USER: &str = "drill";

/// Exactly what sudo lets the SSH user run as root on a VM: the service manager, the firewall
/// and token buckets, reading processes and logs, the product's own secret command, the clock
/// offset file, ending hadrill's delay proxies, and a disk filler of hadrill's name in each of
/// the VM's size-limited filesystems only. Nothing broader (no shell).
fn sudoers(spec: &NodeSpec) -> String {
    let mut allowed = vec![
        "/usr/bin/sv".to_string(),
        "/usr/sbin/iptables".into(),
        "/usr/sbin/iptables-restore".into(),
        "/usr/sbin/tc qdisc replace dev * root tbf *".into(),
        "/usr/sbin/tc qdisc del dev * root".into(),
        "/usr/bin/pgrep".into(),
        "/usr/bin/kill".into(),
        "/usr/bin/tail".into(),
        "/usr/local/bin/web --config * config set *".into(),
        "/usr/bin/tee /tmp/hadrill-clock".into(),
        "/usr/bin/rm -f /tmp/hadrill-clock".into(),
        "/usr/bin/pkill -f ^python3 /tmp/hadrill-delay.py".into(),
    ];
    for path in spec.tmpfs.keys() {
        let filler = format!("{}/.hadrill-fill", path.trim_end_matches('/'));
        allowed.extend([
            format!("/usr/bin/fallocate -l * {filler}"),
            format!("/usr/bin/dd if=/dev/zero of={filler} bs=64k oflag=append conv=notrunc"),
            format!("/usr/bin/rm -f {filler}"),
        ]);
    }
    format!(
        "Defaults:{USER} !requiretty\n{USER} ALL=(root) NOPASSWD: {}\n",
        allowed.join(", ")
    )
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum TestBedError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Topology(#[from] TopologyError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Docker(#[from] DockerError),
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`ssh-keygen` failed: {0}")]
    #[diagnostic(help("install OpenSSH's client tools (Debian: openssh-client)"))]
    Keygen(String),
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> TestBedError + 'a {
    move |source| TestBedError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// A running test bed: its containers, and the `[hosts]` topology that reaches them.
pub struct TestBed {
    run: Run,
    dir: PathBuf,
    hosts: PathBuf,
    vms: Vec<String>,
    /// Each VM's own health check, as its `[hosts]` entry gives it.
    health: std::collections::BTreeMap<String, HealthCheck>,
}

impl TestBed {
    /// Stands `topology` up as VMs. One-shot nodes (an install step) run as they do in
    /// containers; every other node becomes a host of the generated topology.
    pub async fn start(
        root: &Path,
        topology: &str,
        options: &RunOptions,
    ) -> Result<TestBed, TestBedError> {
        let mut t = Topology::load(root, topology)?;
        let id = uuid::Uuid::new_v4().simple().to_string()[..10].to_string();
        // A private directory (0700) like a run's: a dead owner's is swept by the next run.
        let name = format!("testbed-{id}");
        let dir = crate::shared::create_private_dir(&name, &crate::run::owner_label())
            .map_err(io("cannot create", &crate::shared::private_dir(&name)))?;
        let client_key = keygen(&dir.join("id_ed25519"))?;
        let boot = write(&dir, "boot.sh", BOOT)?;
        let finish = write(&dir, "finish", &FINISH.replace("\"$1\"", &quote(MARK)))?;
        let vms: Vec<String> = t
            .nodes
            .values()
            .filter(|n| !n.once && n.autostart)
            .map(|n| n.name.clone())
            .collect();
        let mut health = std::collections::BTreeMap::new();
        for name in &vms {
            let node_dir = dir.join(name);
            std::fs::create_dir_all(&node_dir).map_err(io("cannot create", &node_dir))?;
            keygen(&node_dir.join("ssh_host_ed25519_key"))?;
            let spec = t.nodes.get_mut(name).expect("a node of the topology");
            let run = write(&node_dir, "run", &run_script(spec))?;
            let sudoers = write(&node_dir, "sudoers", &sudoers(spec))?;
            let mounts = [
                ("boot.sh", boot.clone()),
                ("run", run),
                ("finish", finish.clone()),
                ("sudoers", sudoers),
                ("authorized_keys", client_key.with_extension("pub")),
                (
                    "ssh_host_ed25519_key",
                    node_dir.join("ssh_host_ed25519_key"),
                ),
            ];
            spec.config
                .extend(mounts.into_iter().map(|(f, source)| ConfigMount {
                    source,
                    target: format!("/etc/hadrill/vm/{f}"),
                }));
            spec.command = vec!["sh".into(), "/etc/hadrill/vm/boot.sh".into()];
            // Up once runit runs the service and the service is healthy (a check that looks
            // elsewhere, like a pair's gateway's, would pass before it runs).
            let mut up = vec![
                "sh".into(),
                "-c".into(),
                "sv status main | grep -q '^run:' && exec \"$@\"".into(),
                "sh".into(),
            ];
            match spec.health.take() {
                Some(h) => {
                    up.extend(h.cmd.iter().cloned());
                    spec.health = Some(HealthCheck {
                        cmd: up,
                        interval: h.interval,
                    });
                    health.insert(name.clone(), h);
                }
                None => {
                    up.push("true".into());
                    spec.health = Some(HealthCheck {
                        cmd: up,
                        interval: std::time::Duration::from_millis(200),
                    });
                }
            }
            spec.user = None;
            spec.ports.push(22);
            // A VM's root may change its network, and read every process's environment
            // (what `finish` finds the service's processes by).
            for cap in ["NET_ADMIN", "SYS_PTRACE"] {
                if !spec.has_capability(cap) {
                    spec.cap_add.push(cap.into());
                }
            }
        }
        let run = Run::start(t, options).await?;
        let bed = TestBed {
            hosts: dir.join(format!("{}-vms.toml", run.topology().name)),
            run,
            dir,
            vms,
            health,
        };
        bed.write_hosts_topology(&client_key)?;
        Ok(bed)
    }

    /// Writes the `[hosts]` topology of the VMs, their known_hosts and the install's secrets.
    fn write_hosts_topology(&self, client_key: &Path) -> Result<(), TestBedError> {
        use toml::Value;
        let t = self.run.topology();
        let mut known_hosts = String::new();
        let mut hosts = toml::Table::new();
        for name in &self.vms {
            let node = self.run.node(name)?;
            let spec = node.spec();
            let ssh_at = node.host_addr(22).expect("a VM publishes its SSH port");
            let public =
                std::fs::read_to_string(self.dir.join(name).join("ssh_host_ed25519_key.pub"))
                    .map_err(io("cannot read", &self.dir))?;
            let key: Vec<&str> = public.split_whitespace().take(2).collect();
            known_hosts.push_str(&format!(
                "[{}]:{} {}\n",
                ssh_at.ip(),
                ssh_at.port(),
                key.join(" ")
            ));
            let mut h = toml::Table::new();
            h.insert("role".into(), Value::String(spec.role.clone()));
            h.insert(
                "address".into(),
                Value::Array(
                    node.ips()
                        .iter()
                        .map(|ip| Value::String(ip.to_string()))
                        .collect(),
                ),
            );
            let mut ssh = toml::Table::new();
            ssh.insert("host".into(), Value::String(ssh_at.ip().to_string()));
            ssh.insert("port".into(), Value::Integer(ssh_at.port().into()));
            ssh.insert("user".into(), Value::String(USER.into()));
            ssh.insert("identity".into(), Value::String(path_str(client_key)));
            ssh.insert("known_hosts".into(), Value::String("known_hosts".into()));
            h.insert("ssh".into(), Value::Table(ssh));
            let mut service = toml::Table::new();
            service.insert("runit".into(), Value::String("main".into()));
            h.insert("service".into(), Value::Table(service));
            let entry: toml::Table = spec
                .ports
                .iter()
                .filter(|p| **p != 22)
                .filter_map(|p| {
                    Some((
                        p.to_string(),
                        Value::String(node.host_addr(*p)?.to_string()),
                    ))
                })
                .collect();
            h.insert("entry".into(), Value::Table(entry));
            if let Some(health) = self.health.get(name) {
                let mut hc = toml::Table::new();
                hc.insert("cmd".into(), words(&health.cmd));
                hc.insert(
                    "interval".into(),
                    Value::String(humantime::format_duration(health.interval).to_string()),
                );
                h.insert("health".into(), Value::Table(hc));
            }
            if let Some(cmd) = &spec.in_flight {
                h.insert("in_flight".into(), words(cmd));
            }
            h.insert(
                "logs".into(),
                Value::Array(vec![Value::String(SERVICE_LOG.into())]),
            );
            if spec.faketime {
                // The VM's processes load libfaketime (the container's environment): skewing
                // it moves its whole clock, as setting a host's clock would.
                h.insert("clock".into(), Value::String("faketime".into()));
            }
            if !spec.rotate_secret.is_empty() {
                let rotations: toml::Table = spec
                    .rotate_secret
                    .iter()
                    .map(|(secret, cmds)| {
                        (
                            secret.clone(),
                            Value::Array(cmds.iter().map(|c| words(c)).collect()),
                        )
                    })
                    .collect();
                h.insert("rotate_secret".into(), Value::Table(rotations));
            }
            hosts.insert(name.clone(), Value::Table(h));
        }
        let mut top = toml::Table::new();
        top.insert(
            "description".into(),
            Value::String(format!(
                "{} as existing hosts reached over SSH (hadrill's test bed)",
                t.name
            )),
        );
        if !t.secrets.is_empty() {
            top.insert("secrets".into(), words(&t.secrets));
            top.insert("secrets_file".into(), Value::String("secrets".into()));
            let lines: String = t
                .secrets
                .iter()
                .filter_map(|s| Some(format!("{s}={}\n", self.run.secret(s)?)))
                .collect();
            write_private(&self.dir.join("secrets"), &lines)?;
        }
        if let Some(r) = t.replication {
            top.insert("replication".into(), Value::String(r.name().into()));
        }
        if !t.settings.is_empty() {
            let settings: toml::Table = t
                .settings
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            top.insert("settings".into(), Value::Table(settings));
        }
        let groups: toml::Table = t
            .groups
            .iter()
            .map(|(g, members)| {
                let kept: Vec<String> = members
                    .iter()
                    .filter(|m| self.vms.contains(m))
                    .cloned()
                    .collect();
                (g.clone(), words(&kept))
            })
            .collect();
        top.insert("groups".into(), Value::Table(groups));
        top.insert("hosts".into(), Value::Table(hosts));
        std::fs::write(self.dir.join("known_hosts"), known_hosts)
            .map_err(io("cannot write", &self.dir))?;
        let text = toml::to_string(&top).map_err(|e| TestBedError::Io {
            what: "cannot write",
            path: self.hosts.clone(),
            source: std::io::Error::other(e),
        })?;
        std::fs::write(&self.hosts, text).map_err(io("cannot write", &self.hosts))
    }

    /// The `[hosts]` topology that reaches the VMs over SSH.
    pub fn hosts_topology(&self) -> &Path {
        &self.hosts
    }

    /// The run that started the VMs (containers: for the test bed's owner only).
    pub fn run(&self) -> &Run {
        &self.run
    }

    /// The container of each VM.
    pub fn containers(&self) -> Vec<String> {
        self.vms
            .iter()
            .map(|n| self.run.shared().container_name(n))
            .collect()
    }

    /// The engine's events about the VMs' containers between two instants (Unix seconds):
    /// a drill that reached them only over SSH leaves none.
    pub async fn engine_events(&self, since: f64, until: f64) -> Result<Vec<String>, DockerError> {
        let mut filters = std::collections::HashMap::new();
        filters.insert("container".to_string(), self.containers());
        let mut stream = self.run.docker().events(Some(EventsOptions {
            since: Some(format!("{since:.9}")),
            until: Some(format!("{until:.9}")),
            filters: Some(filters),
        }));
        let mut seen = Vec::new();
        while let Some(event) = stream.next().await {
            let e = event.map_err(DockerError::api("read the engine's events"))?;
            let actor = e.actor.and_then(|a| a.attributes).unwrap_or_default();
            seen.push(format!(
                "{} {}",
                e.action.unwrap_or_default(),
                actor.get("name").cloned().unwrap_or_default()
            ));
        }
        Ok(seen)
    }

    /// Removes the VMs and the test bed's keys.
    pub async fn teardown(mut self) -> Result<(), TestBedError> {
        let _ = std::fs::remove_dir_all(&self.dir);
        self.run.teardown().await?;
        Ok(())
    }
}

impl Drop for TestBed {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The runit `run` script of a node's service: its output to the service log, its user, its
/// command line quoted word by word, its processes marked for `finish`.
fn run_script(spec: &NodeSpec) -> String {
    let quoted: Vec<String> = spec.command.iter().map(|w| quote(w)).collect();
    let mut s = String::from("#!/bin/sh\n");
    s.push_str(&format!("exec >>{SERVICE_LOG} 2>&1\ncd /\nexport {MARK}\n"));
    match &spec.user {
        Some(user) => {
            let u = quote(user);
            s.push_str(&format!(
                "export HOME=\"$(getent passwd {u} | cut -d: -f6)\"\nexec chpst -u {u} {}\n",
                quoted.join(" ")
            ));
        }
        None => s.push_str(&format!("exec {}\n", quoted.join(" "))),
    }
    s
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn words(list: &[String]) -> toml::Value {
    toml::Value::Array(list.iter().cloned().map(toml::Value::String).collect())
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn write(dir: &Path, name: &str, text: &str) -> Result<PathBuf, TestBedError> {
    let p = dir.join(name);
    std::fs::write(&p, text).map_err(io("cannot write", &p))?;
    Ok(p)
}

fn write_private(path: &Path, text: &str) -> Result<(), TestBedError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(io("cannot write", path))
}

/// A new ed25519 key pair at `path` (and `path.pub`), with no passphrase.
fn keygen(path: &Path) -> Result<PathBuf, TestBedError> {
    let out = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "hadrill-testbed",
            "-f",
        ])
        .arg(path)
        .output()
        .map_err(|e| TestBedError::Keygen(e.to_string()))?;
    if !out.status.success() {
        return Err(TestBedError::Keygen(
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    Ok(path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_runs_as_its_user_with_each_word_quoted() {
        let mut spec = NodeSpec::attached("db", crate::images::ImageRef::Base, Vec::new(), None);
        spec.command = vec!["bash".into(), "/etc/x y.sh".into(), "it's".into()];
        spec.user = Some("postgres".into());
        let s = run_script(&spec);
        assert!(
            s.contains("exec chpst -u 'postgres' 'bash' '/etc/x y.sh' 'it'\\''s'"),
            "{s}"
        );
        spec.user = None;
        assert!(run_script(&spec).ends_with("exec 'bash' '/etc/x y.sh' 'it'\\''s'\n"));
    }

    #[test]
    fn a_vms_sudo_rules_name_the_filler_of_each_of_its_small_filesystems_only() {
        let mut spec = NodeSpec::attached("s3", crate::images::ImageRef::Base, Vec::new(), None);
        assert!(!sudoers(&spec).contains("fill"));
        spec.tmpfs.insert("/data/".into(), "64m".into());
        let rules = sudoers(&spec);
        assert!(
            rules.starts_with(
                "Defaults:drill !requiretty\ndrill ALL=(root) NOPASSWD: /usr/bin/sv, "
            )
        );
        assert!(
            rules.contains(", /usr/bin/rm -f /data/.hadrill-fill"),
            "{rules}"
        );
        assert!(
            rules.contains(", /usr/bin/fallocate -l * /data/.hadrill-fill"),
            "{rules}"
        );
        assert!(!rules.contains("*/.hadrill-fill"), "{rules}");
    }
}
