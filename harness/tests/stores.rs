//! `[redis]`, `[s3]` and multipart `[http]` against real containers: writes straight into a
//! store, an unknown outcome kept apart from acknowledged and lost, and the negative controls
//! that empty the store behind the workload's back.

mod common;

use hadrill::model::{Verdict, ops};
use hadrill::{CheckResult, Outcome, Results};

async fn run_fixture(file: &str) -> Results {
    let path = common::root().join("harness/tests/fixtures").join(file);
    let scenario = match hadrill::scenario::Scenario::load(&common::root(), path.to_str().unwrap())
    {
        Ok(s) => s,
        Err(e) => panic!("{:?}", miette::Report::new(e)),
    };
    let results = scenario.run(&common::options()).await.unwrap();
    println!("{}", results.summary());
    results
}

/// The continuity check of the workload called `name`.
fn continuity<'a>(results: &'a Results, name: &str) -> &'a CheckResult {
    results
        .checks
        .iter()
        .find(|c| c.check == "continuity" && c.figures["workload"] == name)
        .unwrap_or_else(|| panic!("no continuity of {name}: {}", results.summary()))
}

/// Each store paused in turn: writes in flight on it end unknown, and each store's continuity
/// counts them neither as acknowledged nor as lost, while every acknowledged write is read
/// back and verified.
#[tokio::test(flavor = "multi_thread")]
async fn redis_and_s3_keep_unknown_writes_apart_from_acknowledged_and_lost() {
    let results = run_fixture("stores-pause.toml").await;
    for fresh in results.checks.iter().filter(|c| c.check == "fresh-reads") {
        assert_eq!(fresh.verdict, Verdict::Pass, "{}", fresh.summary);
    }
    let events = hadrill::history::History::load(&results.run_dir.join("history.jsonl")).unwrap();
    let writes = ops(&events);
    for (store, kind) in [("redis", "set"), ("s3", "put")] {
        let check = continuity(&results, store);
        let figures = &check.figures["kinds"][kind];
        let count = |outcome| {
            writes
                .iter()
                .filter(|o| o.kind.as_str() == kind && o.outcome == outcome)
                .count() as u64
        };
        assert!(
            count(Outcome::Unknown) > 0,
            "no {kind} ended unknown: {figures}"
        );
        assert_eq!(
            figures["acknowledged"].as_u64(),
            Some(count(Outcome::Ok)),
            "{figures}"
        );
        assert_eq!(figures["lost"].as_u64(), Some(0), "{figures}");
        assert_eq!(
            figures["verified"].as_u64(),
            Some(count(Outcome::Ok)),
            "{figures}"
        );
        assert_eq!(check.verdict, Verdict::Pass, "{}", check.summary);
    }
    // Availability is the Redis probe's alone: the S3 probe answering through the Redis's
    // 3 s pause must not hide it.
    let availability = results
        .checks
        .iter()
        .find(|c| c.check == "availability")
        .unwrap();
    let worst = availability.figures["worst_unavailable_ms"]
        .as_u64()
        .unwrap();
    assert!(worst >= 2_500, "{}", availability.summary);
}

/// The negative control: `FLUSHALL` behind the workload's back loses every stream entry
/// acknowledged before it, and continuity fails naming them (as the scenario expects).
#[tokio::test(flavor = "multi_thread")]
async fn redis_continuity_fails_when_the_store_is_emptied_behind_its_back() {
    let results = run_fixture("stores-flush.toml").await;
    let check = continuity(&results, "redis");
    assert_eq!(check.verdict, Verdict::Fail, "{}", check.summary);
    let xadd = &check.figures["kinds"]["xadd"];
    assert!(xadd["lost"].as_u64().unwrap() > 0, "{xadd}");
    assert!(
        xadd["lost_keys"][0]
            .as_str()
            .unwrap()
            .starts_with("hadrill:events:"),
        "{xadd}"
    );
    // A read that follows its write across the FLUSHALL (about 2 % of runs) is stale, as it
    // should be: fresh-reads may fail too; every other check holds.
    for c in results.checks.iter().filter(|c| c.check != "continuity") {
        assert!(
            c.verdict == Verdict::Pass || c.check == "fresh-reads",
            "{}: {}",
            c.check,
            c.summary
        );
    }
}

/// The negative control of `fresh-reads`: writes to a Redis read back at once from its
/// asynchronous replica, cut from it for 3 s. Reads that miss a write acknowledged before
/// they began are named; the pause drill above, reading from the primary, passes the same
/// check.
#[tokio::test(flavor = "multi_thread")]
async fn reads_from_a_lagging_replica_are_caught_stale() {
    let results = run_fixture("stale-replica-reads.toml").await;
    let check = results
        .checks
        .iter()
        .find(|c| c.check == "fresh-reads")
        .unwrap();
    assert_eq!(check.verdict, Verdict::Fail, "{}", check.summary);
    assert!(check.figures["stale"].as_u64().unwrap() > 0);
    assert!(
        check.summary.contains("missing the write acknowledged at"),
        "{}",
        check.summary
    );
    assert_eq!(continuity(&results, "redis").verdict, Verdict::Pass);
    assert_eq!(results.verdict, Verdict::Pass, "{}", results.summary());
}

/// `[http]` multipart uploads into SeaweedFS's filer. The uploads acknowledged after the
/// filer's directory is deleted are read back and match the digest of their file part (so the
/// form went out as written); the ones before are lost, and continuity fails naming them (the
/// negative control, as the scenario expects).
#[tokio::test(flavor = "multi_thread")]
async fn http_multipart_uploads_are_read_back_by_digest_and_their_loss_is_caught() {
    let results = run_fixture("http-multipart.toml").await;
    let check = continuity(&results, "filer");
    assert_eq!(check.verdict, Verdict::Fail, "{}", check.summary);
    let upload = &check.figures["kinds"]["upload"];
    assert!(upload["lost"].as_u64().unwrap() > 0, "{upload}");
    assert!(upload["verified"].as_u64().unwrap() > 0, "{upload}");
    assert_eq!(
        results.verdict,
        Verdict::Pass,
        "expected to fail: {}",
        results.summary()
    );
}
