//! Fuzzed inputs: every file a user hands hadrill (topologies, scenarios, a saved run's
//! `results.json`, `history.jsonl`, `final.json` and `scenario.toml`), mutated at random from
//! the shipped ones, must be refused with an error, never a panic. A topology or scenario
//! error that points into the file points at a line and column the file has.
//!
//! Cases per property: `PROPTEST_CASES` (default 256). `ci/fuzz.sh` runs these for a given
//! time with fresh seeds (the nightly job gives it 10 minutes). No Docker needed.

mod common;

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use hadrill::scenario::{self, Scenario};
use hadrill::topology::Topology;
use proptest::prelude::*;

/// The shipped files of `dir` (`topologies`, `scenarios`), with their text.
fn shipped(dir: &str) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(common::root().join(dir))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml") && !p.ends_with("Cargo.toml"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p.file_name().unwrap().to_string_lossy().into_owned(), text)
        })
        .collect();
    files.sort();
    files
}

/// Fragments a hand-edited TOML file plausibly gains: wrong types, empty and huge values,
/// broken quoting, tables and arrays in odd places, names that do not exist.
const FRAGMENTS: &[&str] = &[
    "\"",
    "'",
    "[",
    "]",
    "{",
    "}",
    "=",
    ",",
    "\n",
    "[[steps]]\n",
    "[nodes.x]\n",
    "0",
    "-1",
    "1e400",
    "18446744073709551616",
    "\"\"",
    "true",
    "\"0s\"",
    "\"1000000h\"",
    "\"-5s\"",
    "\"@primary\"",
    "\"@nope\"",
    "[]",
    "{}",
    "nan",
    "\"app9\"",
    "kind = \"kill\"",
    "targets = []",
    "extends = \"web-ha\"",
    "ports = [0, 65536]",
    "\u{0}",
    "é",
    "\u{feff}",
];

#[derive(Debug, Clone)]
enum Edit {
    Delete { at: usize, len: usize },
    Insert { at: usize, fragment: usize },
    Truncate { at: usize },
    Duplicate { at: usize, len: usize },
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1usize..40).prop_map(|(at, len)| Edit::Delete { at, len }),
        (any::<usize>(), 0..FRAGMENTS.len())
            .prop_map(|(at, fragment)| Edit::Insert { at, fragment }),
        any::<usize>().prop_map(|at| Edit::Truncate { at }),
        (any::<usize>(), 1usize..80).prop_map(|(at, len)| Edit::Duplicate { at, len }),
    ]
}

/// `text` with `edits` applied, each at a character boundary.
fn mutate(text: &str, edits: &[Edit]) -> String {
    let mut s = text.to_string();
    let boundary = |s: &str, at: usize| {
        let mut at = if s.is_empty() { 0 } else { at % (s.len() + 1) };
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        at
    };
    for e in edits {
        match *e {
            Edit::Delete { at, len } => {
                let a = boundary(&s, at);
                let b = boundary(&s, a + len.min(s.len() - a));
                s.replace_range(a..b, "");
            }
            Edit::Insert { at, fragment } => {
                let a = boundary(&s, at);
                s.insert_str(a, FRAGMENTS[fragment]);
            }
            Edit::Truncate { at } => {
                let a = boundary(&s, at);
                s.truncate(a);
            }
            Edit::Duplicate { at, len } => {
                let a = boundary(&s, at);
                let b = boundary(&s, a + len.min(s.len() - a));
                let copy = s[a..b].to_string();
                s.insert_str(b, &copy);
            }
        }
    }
    s
}

/// A file of its own per case, so failures can be reproduced from the kept copy.
fn write_case(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// An error that names a place in `path` must name one `text` has: `path:line:column`.
fn points_inside(rendered: &str, path: &Path, text: &str) -> Result<(), String> {
    let prefix = format!("{}:", path.display());
    let Some(rest) = rendered
        .find(&prefix)
        .map(|i| &rendered[i + prefix.len()..])
    else {
        return Ok(());
    };
    let mut parts = rest.splitn(3, ':');
    let (Some(line), Some(column)) = (parts.next(), parts.next()) else {
        return Err(format!("no line:column after the path in: {rendered}"));
    };
    let (Ok(line), Ok(column)) = (line.parse::<usize>(), column.trim().parse::<usize>()) else {
        return Ok(());
    };
    let lines = text.split('\n').count().max(1);
    if line == 0 || line > lines || column == 0 {
        return Err(format!(
            "{line}:{column} is not in the file ({lines} lines): {rendered}"
        ));
    }
    Ok(())
}

/// `load` on the file `name` of `files` with `edits` applied: it may refuse it, but an error
/// that names a place in the file names one the file has. (A panic fails the case: proptest
/// catches it and shrinks the input.)
fn refused_inside(
    files: &[(String, String)],
    file: usize,
    edits: &[Edit],
    load: impl FnOnce(&str) -> Result<(), String>,
) -> Result<(), TestCaseError> {
    let (name, text) = &files[file];
    let text = mutate(text, edits);
    let (_dir, path) = write_case(name, &text);
    match load(path.to_str().unwrap()) {
        Ok(()) => Ok(()),
        Err(rendered) => {
            prop_assert!(!rendered.is_empty());
            points_inside(&rendered, &path, &text).map_err(TestCaseError::fail)
        }
    }
}

static TOPOLOGIES: LazyLock<Vec<(String, String)>> = LazyLock::new(|| shipped("topologies"));
static SCENARIOS: LazyLock<Vec<(String, String)>> = LazyLock::new(|| shipped("scenarios"));
static SAVED_RUNS: LazyLock<Vec<PathBuf>> = LazyLock::new(saved_runs);

proptest! {
    // A case that runs for seconds is a defect too (a `hadrill check` that never ends); the
    // failing input is printed, shrunk, rather than kept in a file beside the sources.
    #![proptest_config(ProptestConfig {
        timeout: 10_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_mutated_topology_is_refused_or_loaded_never_a_panic(
        file in 0..TOPOLOGIES.len(),
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        refused_inside(&TOPOLOGIES, file, &edits, |path| {
            Topology::load(&common::root(), path).map(|_| ()).map_err(|e| e.to_string())
        })?;
    }

    #[test]
    fn a_mutated_scenario_is_refused_or_loaded_never_a_panic(
        file in 0..SCENARIOS.len(),
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        refused_inside(&SCENARIOS, file, &edits, |path| {
            Scenario::load(&common::root(), path).map(|_| ()).map_err(|e| e.to_string())
        })?;
    }

    /// `hadrill check` and `hadrill report` on a saved run whose files were damaged: an error
    /// or a verdict, never a panic.
    #[test]
    fn a_damaged_saved_run_is_checked_and_reported_without_a_panic(
        run in 0..SAVED_RUNS.len(),
        file in 0..RUN_FILES.len(),
        edits in prop::collection::vec(edit(), 1..4),
    ) {
        let source = &SAVED_RUNS[run];
        let dir = tempfile::tempdir().unwrap();
        for f in RUN_FILES {
            std::fs::copy(source.join(f), dir.path().join(f)).unwrap();
        }
        let damaged = dir.path().join(RUN_FILES[file]);
        let text = std::fs::read_to_string(&damaged).unwrap();
        std::fs::write(&damaged, mutate(&text, &edits)).unwrap();
        // An error or a verdict either way; a panic or a hang fails the case.
        let _ = scenario::recheck(dir.path());
        if let Ok(data) = hadrill_reports::RunData::load(dir.path()) {
            let _ = hadrill_reports::run_html(&data, None);
        }
    }
}

const RUN_FILES: &[&str] = &[
    "results.json",
    "history.jsonl",
    "final.json",
    "scenario.toml",
];

fn saved_runs() -> Vec<PathBuf> {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/runs");
    let mut runs: Vec<PathBuf> = std::fs::read_dir(base)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| RUN_FILES.iter().all(|f| p.join(f).is_file()))
        .collect();
    runs.sort();
    runs
}
