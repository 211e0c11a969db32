//! `ci/workflow.py`, the local runner of the workflow files, on fixture workflows: what it
//! runs, skips and passes along, and that it fails loudly where it cannot do what is written.

mod common;

use std::process::Command;

use common::root;

/// Runs the runner on a fixture; returns its exit code and what it printed.
fn workflow(fixture: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new("python3")
        .arg(root().join("ci/workflow.py"))
        .arg(root().join("harness/tests/fixtures/workflow").join(fixture))
        .args(args)
        .output()
        .expect("python3 runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn steps_run_in_order_with_matrix_env_conditions_and_artifacts() {
    let (code, out) = workflow("steps.yml", &[]);
    assert_eq!(code, 1, "one job fails, so the run fails");
    for line in [
        "build-n1: success",
        "build-n2: success",
        "fails: failure",
        "collect: success",
    ] {
        assert!(out.contains(line), "no `{line}`");
    }
    // The artifacts of both matrix jobs reach the job that needs them, with the values of
    // the workflow's, the step's and the matrix's env; the `if:` ran only on n = 2.
    assert!(out.contains("| hello 1 step-env"));
    assert!(out.contains("| hello 2 step-env"));
    assert_eq!(out.matches("| two").count(), 1);
    // After a failed step: skipped, but for `if: always()`.
    assert!(out.contains("after the failure: skipped"));
    assert!(!out.contains("| must-not-run"));
    assert!(out.contains("| cleaned-up"));
}

#[test]
fn a_job_filter_and_a_matrix_filter_run_only_what_they_name() {
    let (code, out) = workflow("steps.yml", &["--job", "build", "--matrix", "n=2"]);
    assert_eq!(code, 0, "the one job run succeeds");
    assert!(out.contains("build-n2: success"));
    assert!(!out.contains("build-n1"));
    assert!(!out.contains("fails:"));
}

#[test]
fn an_action_with_no_local_equivalent_fails_its_job() {
    let (code, out) = workflow("unknown-action.yml", &[]);
    assert_eq!(code, 1);
    assert!(
        out.contains("someone/deploy@v1 has no local equivalent"),
        "says which"
    );
    assert!(out.contains("uses-something: failure"));
    assert!(!out.contains("| must-not-run"));
}
