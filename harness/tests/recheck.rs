//! `hadrill check`: a saved run's verdicts follow from its files alone. The fixtures under
//! `fixtures/runs/` are real runs (history, final reads, scenario, results) as `hadrill run`
//! wrote them; judging them again, with no Docker, must give exactly the saved results, and
//! tampered evidence must not.

use std::path::{Path, PathBuf};

use hadrill::model::Verdict;
use hadrill::scenario::{self, FINAL_FILE, HISTORY_FILE};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/runs")
}

fn runs() -> Vec<PathBuf> {
    let mut runs: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("results.json").is_file())
        .collect();
    runs.sort();
    runs
}

/// A copy of a fixture run whose files a test may change.
fn scratch(run: &Path, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hadrill-recheck-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(run).unwrap().flatten() {
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    dir
}

#[test]
fn every_saved_run_is_judged_again_to_the_same_verdicts() {
    let runs = runs();
    let kinds: Vec<String> = runs
        .iter()
        .map(|r| r.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for kind in ["web", "database", "cluster", "restore"] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "no {kind} run among {kinds:?}"
        );
    }
    for run in runs {
        let recheck = scenario::recheck(&run).unwrap();
        assert!(
            recheck.differences.is_empty(),
            "{}: {:#?}",
            run.display(),
            recheck.differences
        );
        assert!(!recheck.recomputed.checks.is_empty(), "{}", run.display());
        assert_eq!(recheck.recomputed.verdict, recheck.saved.verdict);
    }
}

/// The negative control: a history that lost an acknowledged write's read-back, or final
/// reads that lost a row, are judged differently, and the re-check says where.
#[test]
fn tampered_evidence_is_caught() {
    for run in runs() {
        let name = run.file_name().unwrap().to_string_lossy().into_owned();
        let dir = scratch(&run, &name);
        // Drop every acknowledged operation's completion: the figures built on them change.
        let history = std::fs::read_to_string(dir.join(HISTORY_FILE)).unwrap();
        let kept: Vec<&str> = history
            .lines()
            .filter(|l| !l.contains(r#""outcome":"ok""#))
            .collect();
        std::fs::write(dir.join(HISTORY_FILE), kept.join("\n")).unwrap();
        let recheck = scenario::recheck(&dir).unwrap();
        assert!(
            !recheck.differences.is_empty(),
            "{name}: a history without its successful operations judged the same"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// Every check's summary, judged on a saved run as it is (mostly pass), on its history without
/// the successful operations (fail) and on an empty history (unknown), reads as prose: no
/// `null`, `None`, `NaN` or `Some(` leaks from the figures into what a release manager reads,
/// and a summary never states a success its verdict denies.
#[test]
fn every_summary_reads_as_prose_whatever_the_verdict() {
    let mut seen = Vec::new();
    for run in runs() {
        let name = run.file_name().unwrap().to_string_lossy().into_owned();
        let history = std::fs::read_to_string(run.join(HISTORY_FILE)).unwrap();
        let without_ok: Vec<&str> = history
            .lines()
            .filter(|l| !l.contains(r#""outcome":"ok""#))
            .collect();
        for (variant, text) in [
            ("as saved", history.clone()),
            ("without its successes", without_ok.join("\n")),
            ("with no history", String::new()),
        ] {
            let dir = scratch(&run, &format!("{name}-prose"));
            std::fs::write(dir.join(HISTORY_FILE), &text).unwrap();
            let recheck = scenario::recheck(&dir).unwrap();
            for c in &recheck.recomputed.checks {
                seen.push(c.verdict);
                for leak in ["null", "None", "NaN", "Some(", "inf ms"] {
                    assert!(
                        !c.summary.contains(leak),
                        "{name} {variant}: {} {:?} says `{leak}`: {}",
                        c.check,
                        c.verdict,
                        c.summary
                    );
                }
                if c.verdict == Verdict::Fail {
                    for claim in ["hold the master's files", "nothing lost", "all verified"] {
                        assert!(
                            !c.summary.contains(claim),
                            "{name} {variant}: {} fails yet says `{claim}`: {}",
                            c.check,
                            c.summary
                        );
                    }
                }
            }
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
    for v in [Verdict::Pass, Verdict::Fail, Verdict::Unknown] {
        assert!(seen.contains(&v), "no check judged {v:?}: {seen:?}");
    }
}

#[test]
fn a_run_without_its_final_reads_cannot_be_rechecked_and_says_why() {
    let run = &runs()[0];
    let dir = scratch(run, "no-final");
    std::fs::remove_file(dir.join(FINAL_FILE)).unwrap();
    let err = match scenario::recheck(&dir) {
        Ok(_) => panic!("re-checked without final.json"),
        Err(e) => scenario::describe(&e),
    };
    assert!(err.contains("final.json"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_verdict_that_does_not_follow_from_the_evidence_is_reported() {
    let run = runs()
        .into_iter()
        .find(|r| r.ends_with("database"))
        .unwrap();
    let dir = scratch(&run, "edited-verdict");
    let mut results = scenario::load_results(&dir).unwrap();
    assert_eq!(results.verdict, Verdict::Pass);
    results.checks[0].verdict = Verdict::Fail;
    results.verdict = Verdict::Fail;
    results.run_dir = dir.clone();
    scenario::save_results(&results).unwrap();
    let recheck = scenario::recheck(&dir).unwrap();
    assert!(
        recheck
            .differences
            .iter()
            .any(|d| d.starts_with("verdict: saved FAIL, recomputed PASS")),
        "{:#?}",
        recheck.differences
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `hadrill shrink` shrinks only a failed random run: a scripted run, or a random run that
/// passed, is refused with what it needs, before anything starts.
#[tokio::test]
async fn shrink_refuses_a_run_it_cannot_shrink_and_says_why() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let options = hadrill::RunOptions::new(root);
    let web = fixtures().join("web");
    let err = scenario::shrink(root, &web, &options).await.err().unwrap();
    assert!(
        err.to_string().contains("only a random schedule is shrunk"),
        "{err}"
    );
    let dir = scratch(&web, "shrink");
    let path = dir.join("results.json");
    let mut results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    results["seed"] = 7.into();
    results["scenario_file"] = "scenarios/nemesis-app-servers.toml".into();
    std::fs::write(&path, results.to_string()).unwrap();
    let err = scenario::shrink(root, &dir, &options).await.err().unwrap();
    assert!(
        err.to_string()
            .contains("its verdict is PASS with no failed check: there is nothing to shrink"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
