//! The run's record: every operation the workload performed and every fault, on the run's
//! clock, kept in memory for the checks and appended to `history.jsonl` as it happens, so a
//! crashed run still leaves its evidence behind.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;

use hadrill_model::{Event, FaultRecord, OpRecord, faults, ops};

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

    /// `f` over the events so far, under the lock: for a look that needs no copy.
    pub fn read<T>(&self, f: impl FnOnce(&[Event]) -> T) -> T {
        f(&self.events.lock().unwrap_or_else(|e| e.into_inner()))
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
