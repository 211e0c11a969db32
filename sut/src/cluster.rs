//! The master/worker cluster of SYSTEMS.md §4: its wire messages (one JSON object per line
//! over TCP), the agent key registry, and the integrity of synced files (MD5 + mtime, the
//! master's copy wins).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

pub const AGENT_PORT: u16 = 1514;
pub const ENROL_PORT: u16 = 1515;
pub const CLUSTER_PORT: u16 = 1516;
pub const API_PORT: u16 = 55000;
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Every message of the three protocols (agents on 1514, enrolment on 1515, cluster on 1516).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Msg {
    /// Agent → enrolment: a name; the answer is `Enrolled`.
    Enroll {
        name: String,
    },
    Enrolled {
        id: String,
        key: String,
    },
    /// Agent → node: authenticate with the enrolled id and key; the answer is `Welcome`.
    Hello {
        id: String,
        key: String,
    },
    /// Node → agent or master → worker: accepted, by this node.
    Welcome {
        node: String,
    },
    Reject {
        reason: String,
    },
    KeepAlive,
    /// Agent → node: an event with the agent's sequence number; acknowledged once durable.
    Event {
        seq: u64,
        data: String,
    },
    Ack {
        seq: u64,
    },
    /// Worker → master: join with the shared cluster key.
    Join {
        name: String,
        key: String,
        version: String,
        address: String,
    },
    /// Worker → master, every second: the agents connected to it (also its keep-alive).
    Status {
        agents: Vec<AgentSeen>,
    },
    /// Worker → master: its copies of the synced files; the answer is `Files` with the
    /// master's content of every file that differs.
    Integrity {
        files: BTreeMap<String, FileSum>,
    },
    Files {
        files: BTreeMap<String, String>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AgentSeen {
    pub id: String,
    /// Unix ms of the agent's last keep-alive.
    pub last_keepalive: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileSum {
    pub md5: String,
    pub mtime: u64,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One side of a line-delimited JSON connection.
pub struct Conn {
    lines: Lines<BufReader<OwnedReadHalf>>,
    write: OwnedWriteHalf,
}

impl Conn {
    pub fn new(stream: TcpStream) -> Conn {
        let _ = stream.set_nodelay(true);
        let (r, write) = stream.into_split();
        Conn {
            lines: BufReader::new(r).lines(),
            write,
        }
    }

    pub async fn send(&mut self, msg: &Msg) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.write.write_all(&line).await
    }

    /// The next message; `None` when the peer closed the connection.
    pub async fn recv(&mut self) -> std::io::Result<Option<Msg>> {
        match self.lines.next_line().await? {
            Some(l) => serde_json::from_str(&l)
                .map(Some)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            None => Ok(None),
        }
    }
}

/// The agent key registry (`client.keys`: `id name key` per line), kept on disk.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Registry {
    /// id → (name, key)
    pub agents: BTreeMap<String, (String, String)>,
}

impl Registry {
    pub fn parse(text: &str) -> Registry {
        let agents = text
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                Some((
                    f.next()?.to_string(),
                    (f.next()?.to_string(), f.next()?.to_string()),
                ))
            })
            .collect();
        Registry { agents }
    }

    pub fn load(path: &Path) -> Registry {
        std::fs::read_to_string(path)
            .map(|t| Registry::parse(&t))
            .unwrap_or_default()
    }

    pub fn render(&self) -> String {
        self.agents
            .iter()
            .map(|(id, (name, key))| format!("{id} {name} {key}\n"))
            .collect()
    }

    /// The agent's id and key, enrolling it if it is new (enrolment is idempotent by name).
    pub fn enroll(&mut self, name: &str) -> (String, String) {
        if let Some((id, (_, key))) = self.agents.iter().find(|(_, (n, _))| n == name) {
            return (id.clone(), key.clone());
        }
        let id = format!("{:05}", self.agents.len() + 1);
        let mut raw = [0u8; 16];
        getrandom_bytes(&mut raw);
        let key = hex::encode(raw);
        self.agents
            .insert(id.clone(), (name.to_string(), key.clone()));
        (id, key)
    }

    pub fn check(&self, id: &str, key: &str) -> bool {
        self.agents.get(id).is_some_and(|(_, k)| k == key)
    }
}

fn getrandom_bytes(buf: &mut [u8]) {
    use std::io::Read;
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(buf);
    }
}

/// Writes a file durably: a temporary file, fsync, rename.
pub fn write_durably(path: &Path, content: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(content)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// MD5 and mtime of every file under `dir`, by path relative to it.
pub fn integrity(dir: &Path) -> BTreeMap<String, FileSum> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_none_or(|x| x != "tmp")
                && let (Ok(bytes), Ok(meta)) = (std::fs::read(&p), e.metadata())
                && let Ok(rel) = p.strip_prefix(dir)
            {
                let mtime = meta
                    .modified()
                    .ok()
                    .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_secs());
                out.insert(
                    rel.to_string_lossy().into_owned(),
                    FileSum {
                        md5: hex::encode(Md5::digest(&bytes)),
                        mtime,
                    },
                );
            }
        }
    }
    out
}

/// The files of `dir` whose MD5 differs from (or is missing in) `theirs`, with content.
pub fn differing(dir: &Path, theirs: &BTreeMap<String, FileSum>) -> BTreeMap<String, String> {
    integrity(dir)
        .into_iter()
        .filter(|(p, sum)| theirs.get(p).is_none_or(|t| t.md5 != sum.md5))
        .filter_map(|(p, _)| Some((p.clone(), std::fs::read_to_string(dir.join(&p)).ok()?)))
        .collect()
}

/// A path under `dir` for a synced file name, refusing names that would leave it.
pub fn synced_path(dir: &Path, name: &str) -> Option<PathBuf> {
    let p = Path::new(name);
    p.components()
        .all(|c| matches!(c, std::path::Component::Normal(_)))
        .then(|| dir.join(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enrolment_is_idempotent_and_keys_check() {
        let mut r = Registry::default();
        let (id, key) = r.enroll("agent-1");
        assert_eq!(r.enroll("agent-1"), (id.clone(), key.clone()));
        let (id2, _) = r.enroll("agent-2");
        assert_ne!(id, id2);
        assert!(r.check(&id, &key));
        assert!(!r.check(&id, "wrong"));
        assert_eq!(Registry::parse(&r.render()), r);
    }

    #[test]
    fn only_differing_files_are_sent_and_paths_stay_inside() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.conf"), "one").unwrap();
        std::fs::write(dir.path().join("b.conf"), "two").unwrap();
        let mut theirs = integrity(dir.path());
        theirs.get_mut("b.conf").unwrap().md5 = "edited".into();
        let diff = differing(dir.path(), &theirs);
        assert_eq!(diff.keys().collect::<Vec<_>>(), ["b.conf"]);
        assert!(synced_path(dir.path(), "../etc/passwd").is_none());
        assert!(synced_path(dir.path(), "shared/x.conf").is_some());
    }
}
