//! Helpers shared by the container test binaries.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};

use hadrill::{Run, RunOptions, Topology};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn options() -> RunOptions {
    let mut o = RunOptions::new(root()).with_signal_handler();
    o.runs_dir = root().join("target/test-runs");
    o
}

/// Starts a topology by name or path, panicking with the full diagnostic if it cannot.
pub async fn start(topology: &str) -> Run {
    let topology = match Topology::load(&root(), topology) {
        Ok(t) => t,
        Err(e) => panic!("{:?}", miette::Report::new(e)),
    };
    match Run::start(topology, &options()).await {
        Ok(run) => run,
        Err(e) => panic!("{:?}", miette::Report::new(e)),
    }
}

/// What a validation message fails to say: its location `file:at:` and each of `needles`.
/// Empty when it says them all.
pub fn missing_from(
    msg: &str,
    file: &str,
    at: impl std::fmt::Display,
    needles: &[&str],
) -> Vec<String> {
    let location = format!("{file}:{at}:");
    std::iter::once(location.as_str())
        .chain(needles.iter().copied())
        .filter(|want| !msg.contains(want))
        .map(|want| format!("{file}: expected `{want}` in: {msg}"))
        .collect()
}
