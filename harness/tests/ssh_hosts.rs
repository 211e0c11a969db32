//! The SSH backend, proven on a test bed of "VM" containers (sshd + runit) running the
//! reference product's web-ha install: once the test bed is up, hadrill drills it only over
//! SSH, as an existing install, and the engine's own event log shows no call touched the VMs.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use hadrill::model::Verdict;
use hadrill::scenario;
use hadrill::testbed::TestBed;

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn web_ha_drills_pass_over_ssh_and_touch_the_vms_only_through_ssh() {
    let root = common::root();
    let options = common::options();
    let bed = match TestBed::start(&root, "web-ha", &options).await {
        Ok(b) => b,
        Err(e) => panic!("{:?}", miette::Report::new(e)),
    };
    let hosts = bed.hosts_topology().to_string_lossy().into_owned();
    let up = unix_now();
    let mut failures = Vec::new();
    for name in ["kill-active-app"] {
        let results =
            scenario::run_in_suite(&root, name, Some(&hosts), None, &options).await;
        println!("{}", results.summary());
        if results.verdict != Verdict::Pass {
            failures.push(format!("{name}: {}", results.summary()));
        }
    }
    let down = unix_now();
    let events = bed.engine_events(up, down).await.unwrap();
    bed.teardown().await.unwrap();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        events.is_empty(),
        "the engine acted on the VMs during the SSH drills: {events:?}"
    );
}
