//! The run's record: every fault (and, as workloads land, every operation) on the run's clock,
//! kept in memory for the checks and appended to `history.jsonl` as it happens, so a crashed
//! run still leaves its evidence behind.

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
}

impl History {
    /// A history that also appends each event to `path` as one JSON line.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let file = File::create(path)?;
        Ok(History {
            events: Mutex::new(Vec::new()),
            file: Mutex::new(Some(BufWriter::new(file))),
        })
    }

    pub fn record(&self, event: Event) {
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
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(event);
    }

    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn faults(&self) -> Vec<FaultRecord> {
        self.events()
            .into_iter()
            .map(|e| match e {
                Event::Fault(f) => f,
            })
            .collect()
    }
}
