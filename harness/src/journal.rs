//! The heal journal: before hadrill changes an existing host, it writes how to undo the change
//! into the run directory; when the change is undone, it writes that too. Whatever ends the
//! run (teardown, Ctrl-C, a failed step, the harness killed), what is still pending can be
//! undone from the file alone: at teardown, by `hadrill heal <run-dir>`, or at the next start.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::docker::ExecOutput;
use crate::ssh::Connections;
use crate::topology::SshTarget;

/// The journal's file in a run directory.
pub const FILE: &str = "heal-journal.jsonl";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Entry {
    /// The process that writes the journal (`hadrill heal` leaves a live one alone).
    Owner(String),
    /// How to undo a change about to be made to `node`; `key` names the change.
    Undo(Box<Undo>),
    /// The change `key` of `node` is undone.
    Done { node: String, key: String },
}

/// The undo of one change: commands run as root on the host, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Undo {
    pub node: String,
    pub key: String,
    pub ssh: SshTarget,
    pub commands: Vec<Vec<String>>,
    /// Each command may fail (e.g. a rule that was never added): the undo is done anyway,
    /// once `verify` agrees.
    pub best_effort: bool,
    /// What proves the undo done: a command (as root) whose output must not hold a text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<Verify>,
    /// A secret the commands read on their standard input: the install's value, read when
    /// the undo runs from where the user keeps it, so the journal never holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<SecretInput>,
}

/// Where an undo finds the install's value of secret `name` (`topology::install_secret`), and
/// how many of its first commands read it; the rest read nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretInput {
    pub name: String,
    pub secrets_file: Option<PathBuf>,
    pub fed: usize,
}

/// A check that an undo took: `argv`'s output holds no `absent`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verify {
    pub argv: Vec<String>,
    pub absent: String,
}

/// Set once the process is exiting and replaying its journals (a signal): no new change may
/// start on a host, and the replay waits for the changes under way.
static CLOSING: AtomicBool = AtomicBool::new(false);
static CHANGING: AtomicUsize = AtomicUsize::new(0);

/// A change to a host under way (its journal entry and its commands).
pub struct Changing(());

impl Changing {
    /// None once the process is closing.
    pub fn begin() -> Option<Changing> {
        CHANGING.fetch_add(1, Ordering::SeqCst);
        if CLOSING.load(Ordering::SeqCst) {
            CHANGING.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Changing(()))
    }
}

impl Drop for Changing {
    fn drop(&mut self) {
        CHANGING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Refuses new changes to hosts and waits (at most `limit`) for those under way, so a
/// replay that follows undoes everything they did.
pub fn close(limit: Duration) {
    CLOSING.store(true, Ordering::SeqCst);
    let deadline = std::time::Instant::now() + limit;
    while CHANGING.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub(crate) struct Journal {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

impl Journal {
    /// Creates the journal of a run in `dir`, owned by `owner`.
    pub fn create(dir: &Path, owner: &str) -> std::io::Result<Journal> {
        let path = dir.join(FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        let j = Journal {
            path,
            file: Mutex::new(file),
        };
        j.write(&Entry::Owner(owner.to_string()))?;
        Ok(j)
    }

    fn write(&self, e: &Entry) -> std::io::Result<()> {
        let mut line = serde_json::to_string(e).map_err(std::io::Error::other)?;
        line.push('\n');
        // One write of the whole line to a file opened for appending: a reader sees it whole,
        // and a harness killed right after it has still written it.
        self.file
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write_all(line.as_bytes())
    }

    /// Notes how to undo a change before it is made.
    pub fn undo(&self, undo: Undo) -> std::io::Result<()> {
        self.write(&Entry::Undo(Box::new(undo)))
    }

    /// Notes that the change `key` of `node` is undone (or was never made).
    pub fn done(&self, node: &str, key: &str) -> std::io::Result<()> {
        self.write(&Entry::Done {
            node: node.into(),
            key: key.into(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// What a journal file says: its owner and the undos still pending, latest first.
#[derive(Debug, Default)]
pub struct Pending {
    pub owner: Option<String>,
    pub undos: Vec<Undo>,
}

pub fn pending(path: &Path) -> std::io::Result<Pending> {
    let text = std::fs::read_to_string(path)?;
    let mut out = Pending::default();
    let mut undos: Vec<Undo> = Vec::new();
    for line in text.lines() {
        // A line cut short by a crash is not an instruction.
        let Ok(entry) = serde_json::from_str::<Entry>(line) else {
            continue;
        };
        match entry {
            Entry::Owner(o) => out.owner = Some(o),
            Entry::Undo(u) => {
                undos.retain(|p| !(p.node == u.node && p.key == u.key));
                undos.push(*u);
            }
            Entry::Done { node, key } => undos.retain(|p| !(p.node == node && p.key == key)),
        }
    }
    undos.reverse();
    out.undos = undos;
    Ok(out)
}

/// Runs every pending undo of the journal at `path`, latest first, over `hosts`, and notes
/// each one done. Returns one line per undo; an undo that failed is left pending.
pub async fn replay(
    path: &Path,
    hosts: &Connections,
) -> std::io::Result<Vec<Result<String, String>>> {
    let pending = pending(path)?;
    let file = std::fs::OpenOptions::new().append(true).open(path)?;
    let journal = Journal {
        path: path.to_path_buf(),
        file: Mutex::new(file),
    };
    let mut report = Vec::new();
    for u in pending.undos {
        match apply(&u, hosts).await {
            Ok(()) => {
                journal.done(&u.node, &u.key)?;
                report.push(Ok(format!("{}: {} undone", u.node, u.key)));
            }
            Err(e) => report.push(Err(format!("{}: {} not undone: {e}", u.node, u.key))),
        }
    }
    Ok(report)
}

const UNDO_LIMIT: Duration = Duration::from_secs(60);

/// Runs an undo's commands on its host, then its check.
pub(crate) async fn apply(u: &Undo, hosts: &Connections) -> Result<(), String> {
    async fn run(
        u: &Undo,
        hosts: &Connections,
        argv: &[String],
        input: Option<&[u8]>,
    ) -> Result<ExecOutput, String> {
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        hosts
            .run(&u.node, &u.ssh, &argv, true, input, UNDO_LIMIT)
            .await
            .map_err(|e| e.to_string())
    }
    let input = match &u.input {
        None => None,
        Some(s) => Some(
            crate::topology::install_secret(&s.name, s.secrets_file.as_deref())
                .map_err(|e| format!("cannot read the install's secret {}: {e}", s.name))?
                .ok_or_else(|| {
                    format!(
                        "the install's secret {} is given neither in HADRILL_SECRET_{} nor in its secrets_file: set it and heal again",
                        s.name, s.name
                    )
                })?,
        ),
    };
    let fed = u.input.as_ref().map_or(0, |s| s.fed);
    for (i, cmd) in u.commands.iter().enumerate() {
        let input = input.as_deref().filter(|_| i < fed).map(str::as_bytes);
        let out = run(u, hosts, cmd, input).await?;
        if !out.success() && !u.best_effort {
            return Err(format!(
                "`{}` exited {:?}: {}",
                cmd.join(" "),
                out.exit_code,
                out.output.trim()
            ));
        }
    }
    if let Some(v) = &u.verify {
        let out = run(u, hosts, &v.argv, None).await?;
        if !out.success() || out.output.contains(&v.absent) {
            return Err(format!(
                "`{}` still shows `{}` afterwards (exit {:?}): {}",
                v.argv.join(" "),
                v.absent,
                out.exit_code,
                out.output.trim()
            ));
        }
    }
    Ok(())
}

/// The journals under `runs_dir` with undos pending whose owner is gone.
pub fn orphaned(runs_dir: &Path, owner_is_dead: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(runs_dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path().join(FILE))
        .filter(|p| p.is_file())
        .filter(|p| {
            pending(p).is_ok_and(|pend| {
                !pend.undos.is_empty() && pend.owner.as_deref().is_none_or(&owner_is_dead)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn undo(node: &str, key: &str) -> Undo {
        Undo {
            node: node.into(),
            key: key.into(),
            ssh: SshTarget {
                host: "10.0.0.1".into(),
                port: 22,
                user: "drill".into(),
                identity: "id".into(),
                known_hosts: "kh".into(),
            },
            commands: vec![vec!["systemctl".into(), "start".into(), node.into()]],
            best_effort: false,
            verify: None,
            input: None,
        }
    }

    #[test]
    fn pending_undos_are_those_not_done_latest_first_and_a_torn_line_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::create(dir.path(), "me").unwrap();
        j.undo(undo("app1", "service")).unwrap();
        j.undo(undo("app2", "network")).unwrap();
        j.undo(undo("db", "service")).unwrap();
        j.done("app1", "service").unwrap();
        // The same change made again after it was undone is pending again.
        j.undo(undo("app1", "service")).unwrap();
        j.done("db", "service").unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(j.path())
            .unwrap();
        f.write_all(b"{\"undo\":{\"node\":\"x\",\"ke").unwrap();
        let p = pending(j.path()).unwrap();
        assert_eq!(p.owner.as_deref(), Some("me"));
        let left: Vec<(&str, &str)> = p
            .undos
            .iter()
            .map(|u| (u.node.as_str(), u.key.as_str()))
            .collect();
        assert_eq!(left, [("app1", "service"), ("app2", "network")]);
    }

    #[test]
    fn a_journal_whose_owner_lives_is_not_orphaned() {
        let runs = tempfile::tempdir().unwrap();
        for (run, owner) in [("a", "alive"), ("b", "dead")] {
            let dir = runs.path().join(run);
            std::fs::create_dir_all(&dir).unwrap();
            Journal::create(&dir, owner)
                .unwrap()
                .undo(undo("app1", "network"))
                .unwrap();
        }
        let found = orphaned(runs.path(), |o| o == "dead");
        assert_eq!(found, [runs.path().join("b").join(FILE)]);
    }
}
