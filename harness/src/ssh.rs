//! Existing hosts over SSH: one multiplexed OpenSSH connection per host (the `openssh` crate
//! drives the system's `ssh`, so the user's keys, agent, config and known_hosts apply), and
//! commands sent as argument vectors the library quotes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openssh::{ControlPersist, KnownHosts, Session, SessionBuilder, Stdio};
use tokio::io::AsyncWriteExt;

use crate::docker::ExecOutput;
use crate::topology::SshTarget;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum SshError {
    #[error(
        "cannot reach host `{node}` over SSH ({}@{}:{}): {reason}",
        target.user, target.host, target.port
    )]
    #[diagnostic(help(
        "check the host is up, that `ssh -i {} -p {} -o UserKnownHostsFile={} {}@{} true` works from this machine, and that its host key is in that known_hosts file (hadrill never accepts an unknown host key)",
        target.identity.display(), target.port, target.known_hosts.display(), target.user, target.host
    ))]
    Connect {
        node: String,
        target: Box<SshTarget>,
        reason: String,
    },
    #[error("`{cmd}` on host `{node}` could not be run: {reason}")]
    Command {
        node: String,
        cmd: String,
        reason: String,
    },
    #[error("`{cmd}` on host `{node}` did not finish within {limit:?}")]
    #[diagnostic(help("the host or its network is too slow, or the command hangs"))]
    Timeout {
        node: String,
        cmd: String,
        limit: Duration,
    },
}

/// The run's SSH connections, by node, opened on first use.
pub struct Connections {
    control_dir: PathBuf,
    sessions: tokio::sync::Mutex<BTreeMap<String, Arc<Session>>>,
}

/// How long an idle master connection outlives the harness: a killed harness leaves no ssh
/// process behind for longer.
const IDLE: usize = 30;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl Connections {
    /// Control sockets go under `control_dir` (the run's private directory).
    pub fn new(control_dir: PathBuf) -> Connections {
        Connections {
            control_dir,
            sessions: tokio::sync::Mutex::new(BTreeMap::new()),
        }
    }

    async fn session(&self, node: &str, t: &SshTarget) -> Result<Arc<Session>, SshError> {
        let mut sessions = self.sessions.lock().await;
        if let Some(s) = sessions.get(node) {
            // The master ends itself after `IDLE` seconds unused (and with the network):
            // asked through its local socket, no round trip to the host.
            if s.check().await.is_ok() {
                return Ok(s.clone());
            }
            sessions.remove(node);
        }
        let session = connect(node, t, &self.control_dir).await?;
        let session = Arc::new(session);
        sessions.insert(node.to_string(), session.clone());
        Ok(session)
    }

    /// Runs `argv` on the host, as root through `sudo -n` when `root` (unless the SSH user is
    /// root), at most `limit`, with `input` on its standard input (else none): what it printed
    /// (stdout, then stderr) and its exit code.
    pub async fn run(
        &self,
        node: &str,
        target: &SshTarget,
        argv: &[&str],
        root: bool,
        input: Option<&[u8]>,
        limit: Duration,
    ) -> Result<ExecOutput, SshError> {
        let argv = command_line(target, argv, root);
        let cmd = argv.join(" ");
        if argv.is_empty() {
            return Err(SshError::Command {
                node: node.to_string(),
                cmd,
                reason: "an empty command".into(),
            });
        }
        let session = self.session(node, target).await?;
        let mut command = session.command(argv[0].as_str());
        command.args(&argv[1..]);
        let out = match tokio::time::timeout(limit, output(command, input)).await {
            Err(_) => {
                return Err(SshError::Timeout {
                    node: node.to_string(),
                    cmd,
                    limit,
                });
            }
            Ok(Err(e)) => {
                // A dropped master (the host rebooted, the network blinked): reconnect next time.
                self.sessions.lock().await.remove(node);
                return Err(SshError::Command {
                    node: node.to_string(),
                    cmd,
                    reason: error_chain(&e),
                });
            }
            Ok(Ok(out)) => out,
        };
        let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
        output.push_str(&String::from_utf8_lossy(&out.stderr));
        Ok(ExecOutput {
            exit_code: out.status.code().map(i64::from),
            output,
        })
    }

    /// Closes every connection.
    pub async fn close(&self) {
        let sessions = std::mem::take(&mut *self.sessions.lock().await);
        for (node, s) in sessions {
            if let Ok(s) = Arc::try_unwrap(s)
                && let Err(e) = s.close().await
            {
                tracing::debug!("closing the SSH connection to {node}: {e}");
            }
        }
    }
}

/// Runs `command` to its end, writing `input` (if any) to its standard input first.
async fn output(
    mut command: openssh::Command<'_>,
    input: Option<&[u8]>,
) -> Result<std::process::Output, openssh::Error> {
    let Some(input) = input else {
        return command.output().await;
    };
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().await?;
    if let Some(mut stdin) = child.stdin().take() {
        stdin
            .write_all(input)
            .await
            .map_err(openssh::Error::ChildIo)?;
        // Dropped: the command sees the end of its input.
    }
    child.wait_with_output().await
}

/// The words sent for `argv`: through `sudo -n` (never a password prompt) when it must run as
/// root and the SSH user is not root.
pub fn command_line(target: &SshTarget, argv: &[&str], root: bool) -> Vec<String> {
    let sudo = root && target.user != "root";
    let prefix: &[&str] = if sudo { &["sudo", "-n", "--"] } else { &[] };
    prefix.iter().chain(argv).map(|w| w.to_string()).collect()
}

/// A master connection to `t`, its host key checked against the topology's known_hosts only.
pub(crate) async fn connect(
    node: &str,
    t: &SshTarget,
    control_dir: &std::path::Path,
) -> Result<Session, SshError> {
    std::fs::create_dir_all(control_dir).map_err(|e| connect_error(node, t, e.to_string()))?;
    let mut b = SessionBuilder::default();
    b.user(t.user.clone())
        .port(t.port)
        .keyfile(&t.identity)
        .known_hosts_check(KnownHosts::Strict)
        .user_known_hosts_file(&t.known_hosts)
        .connect_timeout(CONNECT_TIMEOUT)
        .server_alive_interval(Duration::from_secs(5))
        .control_directory(control_dir)
        .control_persist(ControlPersist::IdleFor(
            std::num::NonZeroUsize::new(IDLE).expect("IDLE is not zero"),
        ));
    b.connect_mux(&t.host)
        .await
        .map_err(|e| connect_error(node, t, error_chain(&e)))
}

fn connect_error(node: &str, t: &SshTarget, reason: String) -> SshError {
    SshError::Connect {
        node: node.to_string(),
        target: Box::new(t.clone()),
        reason,
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(user: &str) -> SshTarget {
        SshTarget {
            host: "10.0.0.1".into(),
            port: 22,
            user: user.into(),
            identity: "id".into(),
            known_hosts: "kh".into(),
        }
    }

    #[test]
    fn root_commands_go_through_sudo_without_a_prompt_unless_the_user_is_root() {
        assert_eq!(
            command_line(
                &target("drill"),
                &["iptables", "-w", "-F", "HADRILL-IN"],
                true
            ),
            ["sudo", "-n", "--", "iptables", "-w", "-F", "HADRILL-IN"]
        );
        assert_eq!(
            command_line(&target("root"), &["iptables", "-L"], true),
            ["iptables", "-L"]
        );
        assert_eq!(
            command_line(&target("drill"), &["cat", "/tmp/x"], false),
            ["cat", "/tmp/x"]
        );
    }
}
