//! A drill written in Rust: SIGKILL the PostgreSQL primary under SQL writes and hold the
//! install to its failover budget. The same drill as `scenarios/kill-primary.toml`, built in
//! code; its run directory holds the same evidence and its verdict is re-checked from it.

mod common;

use std::time::Duration;

use hadrill::{Budgets, Drill, Fault, OpKind, SqlSpec, Step, Verdict};
use hadrill_examples::EveryClientRecovers;

#[tokio::test]
async fn the_standby_takes_over_within_budget_and_no_commit_is_lost() {
    let drill = Drill::new("example-kill-primary", "db-ha")
        .describe("a Rust drill: SIGKILL the primary under SQL writes")
        .sql(SqlSpec {
            clients: 4,
            rate: 40.0,
            ..SqlSpec::default()
        })
        .warmup(Duration::from_secs(5))
        .step(Step::at(Duration::ZERO).fault(Fault::kill(["@primary"])))
        .settle(Duration::from_secs(20))
        .budgets(Budgets {
            max_failover: Some(Duration::from_secs(15)),
            max_unavailability: Some(Duration::from_secs(15)),
            ..Budgets::default()
        })
        // A check of this crate's own, judged with the built-in ones.
        .check(EveryClientRecovers {
            write: OpKind::INSERT,
        });
    // Run from hadrill's checkout, for its shipped topologies and the base image's recipe.
    // The verdict follows from the saved evidence alone, as a scenario file's does; the
    // crate's own check is kept as saved (its code is not in the run's files).
    let (results, again) = common::run(drill).await;
    assert_eq!(results.verdict, Verdict::Pass, "{}", results.summary());
    let checks: Vec<&str> = results.checks.iter().map(|c| c.check.as_str()).collect();
    for check in [
        "continuity",
        "failover",
        "single-primary",
        "every-client-recovers",
    ] {
        assert!(checks.contains(&check), "{check} not judged: {checks:?}");
    }
    assert!(results.run_dir.join("index.html").is_file(), "no run page");
    assert_eq!(again.kept, ["every-client-recovers"]);
}
