//! hadrill's reference product (the system under test): a web process, a worker and a services
//! node that follow the deployment contract of `../shared/SYSTEMS.md` §1–2, small but honest.
//! An acknowledged write is durable, sessions are signed with `SECRET_KEY`, jobs go through
//! Redis.

pub mod analysis;
pub mod cluster;
pub mod config;
pub mod db;
pub mod license;
pub mod queue;
pub mod release;
pub mod schedule;
pub mod storage;
pub mod web;
pub mod web_cli;

use std::time::Duration;

/// This node's name (the container's hostname is its topology node name).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_target(false)
        .init();
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Pause between retries of a background loop whose dependency is down.
pub const RETRY_PAUSE: Duration = Duration::from_millis(500);
