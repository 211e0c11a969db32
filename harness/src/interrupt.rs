//! Stopping a run early. A scenario's abort condition, or a first Ctrl-C, asks the run to stop
//! injecting: it heals, brings back what its faults took down, and judges what was recorded.
//! A second Ctrl-C (or SIGTERM) removes everything at once (the run's signal handler).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

/// A run's request to stop injecting, and why (the first reason given wins).
#[derive(Clone, Default)]
pub struct Abort {
    token: CancellationToken,
    reason: Arc<Mutex<Option<String>>>,
}

impl Abort {
    pub fn request(&self, reason: impl Into<String>) {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(|| reason.into());
        self.token.cancel();
    }

    /// Resolves once an abort is requested.
    pub async fn requested(&self) {
        self.token.cancelled().await
    }

    pub fn reason(&self) -> Option<String> {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Until the guard drops, a first Ctrl-C requests this abort.
    pub fn on_interrupt(&self) -> Listening {
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        LISTENING
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((id, self.clone()));
        Listening(id)
    }
}

/// Keeps an abort listening for Ctrl-C.
pub struct Listening(u64);

impl Drop for Listening {
    fn drop(&mut self) {
        LISTENING
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(id, _)| *id != self.0);
    }
}

static LISTENING: Mutex<Vec<(u64, Abort)>> = Mutex::new(Vec::new());
static NEXT: AtomicU64 = AtomicU64::new(0);
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// The first interrupt: asks every listening run to stop injecting. `false` if this is not
/// the first, or no run listens: then the caller removes everything at once.
pub(crate) fn first_interrupt() -> bool {
    if INTERRUPTED.swap(true, Ordering::SeqCst) {
        return false;
    }
    let listening = LISTENING.lock().unwrap_or_else(|e| e.into_inner());
    for (_, abort) in listening.iter() {
        abort.request("interrupted (Ctrl-C)");
    }
    !listening.is_empty()
}

/// Whether the user interrupted this process: a suite runs no further scenario.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}
