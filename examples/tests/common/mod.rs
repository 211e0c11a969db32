//! What every example drill does around its own assertions: run from hadrill's checkout, print
//! the verdicts, and judge the saved evidence again, which must give the same verdicts.

use std::path::{Path, PathBuf};

use hadrill::scenario::{Recheck, recheck};
use hadrill::{Drill, Results, RunOptions};

/// This crate's directory (its `topologies/` are a user's own).
pub fn here() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// Runs the drill; its verdict follows from the saved evidence alone.
pub async fn run(drill: Drill) -> (Results, Recheck) {
    let results = drill
        .run(&RunOptions::new(here().join("..")).with_signal_handler())
        .await
        .expect("the drill runs");
    println!("{}", results.summary());
    let again = recheck(&results.run_dir).expect("evidence readable");
    assert!(again.differences.is_empty(), "{:?}", again.differences);
    (results, again)
}
