//! A product hadrill has never seen, drilled from a user's crate: their topology (in this
//! crate's `topologies/`, with its config beside it), their workload (`hadrill_examples::kv`),
//! hadrill's generic checks. The store is restarted under writes: with an fsync'd append-only
//! file nothing acknowledged may be lost; without persistence the same drill must fail.

mod common;

use std::time::Duration;

use common::here;
use hadrill::{Budgets, Drill, Fault, Results, Step, Verdict};
use hadrill_examples::kv::{KvRoles, KvWorkload};

async fn restart_under_writes(name: &str, topology: &str, expect_loss: bool) -> Results {
    let topology = here().join("topologies").join(topology);
    let mut drill = Drill::new(name, topology.to_str().unwrap())
        .describe("restart the store under writes")
        .workload(KvWorkload {
            node: "kv",
            port: 6379,
            clients: 4,
            rate: 20.0,
        })
        .warmup(Duration::from_secs(3))
        .step(Step::at(Duration::ZERO).fault(Fault::restart(["kv"])))
        .settle(Duration::from_secs(3))
        .budgets(Budgets {
            max_unavailability: Some(Duration::from_secs(5)),
            ..Budgets::default()
        });
    if expect_loss {
        drill = drill.expect_fail("continuity");
    }
    common::run(drill).await.0
}

#[tokio::test]
async fn a_durable_store_loses_no_acknowledged_write_across_a_restart() {
    let r = restart_under_writes("example-kv-restart", "kv.toml", false).await;
    assert_eq!(r.verdict, Verdict::Pass, "{}", r.summary());
    let names: Vec<&str> = r.checks.iter().map(|c| c.check.as_str()).collect();
    assert_eq!(names, ["continuity", "availability"]);
}

/// The negative control: the same drill on a store without persistence. Continuity must fail
/// (the drill expects it to), naming the lost writes.
#[tokio::test]
async fn a_volatile_store_is_caught_losing_acknowledged_writes() {
    let r = restart_under_writes("example-kv-restart-volatile", "kv-volatile.toml", true).await;
    assert_eq!(r.verdict, Verdict::Pass, "{}", r.summary());
    let continuity = &r.checks[0];
    assert_eq!(continuity.verdict, Verdict::Fail, "{}", continuity.summary);
    assert!(continuity.figures["lost"].as_u64().unwrap() > 0);
}

/// A user's observer publishes the store's role; `@primary` then picks the store from those
/// facts, though hadrill knows nothing of this product's replication.
#[tokio::test]
async fn a_users_observer_lets_a_step_target_the_primary() {
    let topology = here().join("topologies").join("kv.toml");
    let drill = Drill::new("example-kv-restart-primary", topology.to_str().unwrap())
        .describe("restart whichever store its observer says is the master")
        .workload(KvWorkload {
            node: "kv",
            port: 6379,
            clients: 2,
            rate: 20.0,
        })
        .observer(KvRoles {
            nodes: vec!["kv"],
            port: 6379,
        })
        .warmup(Duration::from_secs(3))
        .step(Step::at(Duration::ZERO).fault(Fault::restart(["@primary"])))
        .settle(Duration::from_secs(3))
        .budgets(Budgets {
            max_unavailability: Some(Duration::from_secs(5)),
            ..Budgets::default()
        });
    let (r, _) = common::run(drill).await;
    assert_eq!(r.verdict, Verdict::Pass, "{}", r.summary());
    assert_eq!(r.faults.len(), 1);
    assert_eq!(
        r.faults[0].nodes,
        ["kv"],
        "@primary resolved from the observer's facts"
    );
}

/// An abort condition: the store is killed and the script would leave it down for a minute;
/// the run stops injecting once the probe has failed for 2 s, starts the store again, records
/// why in its history, and cannot pass.
#[tokio::test]
async fn an_outage_longer_than_the_abort_condition_stops_the_faults_and_brings_the_store_back() {
    let topology = here().join("topologies").join("kv.toml");
    let started = std::time::Instant::now();
    let drill = Drill::new("example-kv-abort", topology.to_str().unwrap())
        .describe("kill the store and leave it down: the abort condition brings it back")
        .workload(KvWorkload {
            node: "kv",
            port: 6379,
            clients: 2,
            rate: 20.0,
        })
        .warmup(Duration::from_secs(2))
        .step(Step::at(Duration::ZERO).fault(Fault::kill(["kv"])))
        .step(Step::after(Duration::from_secs(60)).fault(Fault::start(["kv"])))
        .settle(Duration::from_secs(3))
        .abort_when_unavailable_for(Duration::from_secs(2));
    let (r, _) = common::run(drill).await;
    assert!(
        started.elapsed() < Duration::from_secs(45),
        "the minute was not waited"
    );
    assert_eq!(r.verdict, Verdict::Unknown, "{}", r.summary());
    let reason = r.aborted.as_deref().expect("aborted");
    assert!(reason.contains("the probe failed for 2."), "{reason}");
    let kinds: Vec<&str> = r.faults.iter().map(|f| f.fault.name()).collect();
    assert_eq!(
        kinds,
        ["kill", "heal", "start"],
        "the store started again by the abort"
    );
}
