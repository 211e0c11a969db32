//! The run's record: every operation the workload performed and every fault, on the run's
//! clock, kept in memory for the checks and appended to `history.jsonl` as it happens, so a
//! crashed run still leaves its evidence behind.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::clock::Stamp;
use crate::faults::Fault;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    Fault(FaultRecord),
    Op(OpRecord),
}

/// One client operation: what was asked, when, and what came of it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OpRecord {
    pub id: u64,
    /// `user-3`, `probe`, `verifier`…
    pub client: String,
    pub kind: OpKind,
    /// What the operation is about, e.g. a trace id or a user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// What it wrote or read, e.g. a SHA-256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub invoke: Stamp,
    pub complete: Stamp,
    /// `ok`: it happened; `fail`: it certainly did not; `unknown`: it may have (timeout, a
    /// connection dropped after the request was sent, a 502/504 from the load balancer).
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The node that answered (`X-Served-By`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum OpKind {
    Login,
    Upload,
    Read,
    Session,
    /// The availability probe: a read a user makes, through the entry point.
    Probe,
    /// A liveness URL (does a process answer?), probed beside the availability probe and
    /// reported apart: it never decides availability.
    Liveness,
    /// After the run: is an acknowledged upload still there, identical?
    Verify,
    /// After a secret rotation: is a cookie from before it rejected by an app server?
    OldSession,
    /// A SQL client inserts a unique key through the routed endpoint (the set workload).
    Insert,
    /// A SQL client reads keys it was acknowledged back through the routed endpoint.
    ReadBack,
    /// A write sent to one database node directly (key: the node; value: the probe round),
    /// to catch two nodes accepting writes at once.
    WriteProbe,
    /// The cluster observer saw a database member's role change (key: node; value: role).
    Role,
    /// The cluster observer saw the leader key change (value: holder, or `none`).
    Leader,
    /// An agent enrolled (key: agent name; value: its id).
    Enroll,
    /// An agent connected to a node (key: agent name; node: the node that welcomed it).
    Connect,
    /// An agent's connection dropped (key: agent name; node: where it was; error: why).
    Disconnect,
    /// An agent event acknowledged by a node (key: `<agent id>/<seq>`).
    Event,
    /// The digest of a cluster node's synced files changed (key: node; value: digest).
    Files,
}

/// One fault as it was applied: what, to whom, when it started and when it took effect.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FaultRecord {
    pub id: u64,
    pub fault: Fault,
    /// The nodes that were acted on, after resolving groups and selectors.
    pub nodes: Vec<String>,
    pub start: Stamp,
    pub end: Stamp,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Facts observed while applying it, e.g. a stopped process's exit code.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Fail,
    Unknown,
}

pub struct History {
    events: Mutex<Vec<Event>>,
    file: Mutex<Option<BufWriter<File>>>,
    next_op: std::sync::atomic::AtomicU64,
}

impl History {
    /// A history that also appends each event to `path` as one JSON line.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let file = File::create(path)?;
        Ok(History {
            events: Mutex::new(Vec::new()),
            file: Mutex::new(Some(BufWriter::new(file))),
            next_op: std::sync::atomic::AtomicU64::new(1),
        })
    }

    /// A fresh operation id.
    pub fn next_op_id(&self) -> u64 {
        self.next_op
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    pub fn record(&self, event: Event) {
        // One lock over both: the file keeps the order the checks saw, so a re-check of the
        // saved history judges the same sequence.
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = self.file.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            // The history must survive a crash of the harness: write through each line.
            let written = serde_json::to_writer(&mut *w, &event)
                .map_err(std::io::Error::from)
                .and_then(|()| w.write_all(b"\n"))
                .and_then(|()| w.flush());
            if let Err(e) = written {
                tracing::error!("cannot append to history.jsonl: {e}");
            }
        }
        events.push(event);
    }

    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn faults(&self) -> Vec<FaultRecord> {
        faults(&self.events())
    }

    pub fn ops(&self) -> Vec<OpRecord> {
        ops(&self.events())
    }

    /// Reads a saved history (one event per line), e.g. to re-check a run.
    pub fn load(path: &Path) -> std::io::Result<Vec<Event>> {
        std::fs::read_to_string(path)?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).map_err(std::io::Error::other))
            .collect()
    }
}

pub fn faults(events: &[Event]) -> Vec<FaultRecord> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Fault(f) => Some(f.clone()),
            Event::Op(_) => None,
        })
        .collect()
}

pub fn ops(events: &[Event]) -> Vec<OpRecord> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Op(o) => Some(o.clone()),
            Event::Fault(_) => None,
        })
        .collect()
}
