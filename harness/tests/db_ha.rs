//! The database drills' evidence can fail for real: scenarios under `scenarios/` show the
//! db-ha topology passing; here a real second primary must be caught.

mod common;

use hadrill::model::Verdict;
use hadrill::scenario::Scenario;

/// Promoting the standby with pg_ctl while its Patroni is frozen makes two nodes accept writes
/// for 3 s; the per-member write probe must catch it and fail the run with the moment shown.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_primary_behind_a_frozen_patroni_fails_single_primary() {
    let path = common::root().join("harness/tests/fixtures/split-brain-async.toml");
    let scenario = Scenario::load(&common::root(), path.to_str().unwrap()).unwrap();
    let results = scenario.run(&common::options()).await.unwrap();
    println!("{}", results.summary());
    let check = results
        .checks
        .iter()
        .find(|c| c.check == "single-primary")
        .unwrap();
    assert_eq!(check.verdict, Verdict::Fail, "{}", check.summary);
    assert!(check.summary.contains("two primaries"), "{}", check.summary);
    // 3 s of two primaries at 10 rounds a second: most of those rounds must be caught.
    let rounds = check.figures["two_primaries"].as_u64().unwrap();
    assert!(rounds >= 10, "only {rounds} rounds with two primaries");
    assert_eq!(results.verdict, Verdict::Fail);
    // The negative control's verdict is reproduced from its saved files too.
    let recheck = hadrill::scenario::recheck(&results.run_dir).unwrap();
    assert!(recheck.differences.is_empty(), "{:?}", recheck.differences);
}
