//! The SSH backend, proven on test beds of "VM" containers (sshd + runit) running the reference
//! product's installs: once a test bed is up, hadrill drills it only over SSH, as an existing
//! install with the same scenario files and checks, and the engine's own event log shows that
//! no call touched the VMs from then until the drills ended.

mod common;

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use hadrill::model::{Results, Verdict};
use hadrill::scenario;
use hadrill::testbed::TestBed;

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

async fn bed(topology: &str) -> TestBed {
    match TestBed::start(&common::root(), topology, &common::options()).await {
        Ok(b) => b,
        Err(e) => panic!("{:?}", miette::Report::new(e)),
    }
}

async fn drill(bed: &TestBed, scenario: &str) -> Results {
    let root = common::root();
    let hosts = bed.hosts_topology().to_string_lossy().into_owned();
    let results =
        scenario::run_in_suite(&root, scenario, Some(&hosts), None, &common::options()).await;
    println!("{}", results.summary());
    results
}

fn failed_checks(r: &Results) -> BTreeSet<&str> {
    r.checks
        .iter()
        .filter(|c| c.verdict == Verdict::Fail)
        .map(|c| c.check.as_str())
        .collect()
}

/// What the drills left on the VMs: any hadrill chain in the firewall, any service not running.
async fn leftovers(bed: &TestBed) -> Vec<String> {
    let mut left = Vec::new();
    for container in bed.containers() {
        for (cmd, bad) in [
            ("iptables -S | grep -c HADRILL || true", "chain"),
            ("sv status main | grep -v '^run:' || true", "service"),
            (
                "find / -name .hadrill-fill -not -path '/proc/*' 2>/dev/null || true",
                "disk filler",
            ),
            ("ls /tmp/hadrill-clock 2>/dev/null || true", "clock offset"),
        ] {
            let out = hadrill::docker::exec(
                bed.run().docker(),
                &container,
                &["sh", "-c", cmd],
                Some("root"),
                None,
                std::time::Duration::from_secs(10),
            )
            .await
            .unwrap();
            let text = out.output.trim();
            if !(text.is_empty() || text == "0") {
                left.push(format!("{container}: {bad}: {text}"));
            }
        }
    }
    left
}

/// The line of `file` in VM `node` that starts with `prefix`, read through the engine.
async fn config_line(bed: &TestBed, node: &str, file: &str, prefix: &str) -> String {
    let container = bed.run().node(node).unwrap().container();
    let out = hadrill::docker::exec(
        bed.run().docker(),
        &container,
        &["grep", "-m1", &format!("^{prefix}"), file],
        Some("root"),
        None,
        std::time::Duration::from_secs(10),
    )
    .await
    .unwrap();
    out.output.trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn web_ha_drills_pass_over_ssh_and_touch_the_vms_only_through_ssh() {
    let bed = bed("web-ha").await;
    let up = unix_now();
    let mut failures = Vec::new();
    for name in [
        "kill-active-app",
        "stop-app-graceful",
        "cut-app-from-db",
        "rotate-secret",
    ] {
        let r = drill(&bed, name).await;
        if r.verdict != Verdict::Pass {
            failures.push(format!("{name}: {}", r.summary()));
        }
    }
    let down = unix_now();
    let events = bed.engine_events(up, down).await.unwrap();
    let mut left = leftovers(&bed).await;
    // The rotation's undo set the install's own secret back, as its secrets file holds it.
    let secret = bed.run().secret("SECRET_KEY").unwrap();
    for app in ["app1", "app2"] {
        let conf = config_line(&bed, app, "/etc/hadrill/web.conf", "SECRET_KEY=").await;
        if conf != format!("SECRET_KEY={secret}") {
            left.push(format!(
                "{app}: SECRET_KEY not the install's own after the drills"
            ));
        }
    }
    bed.teardown().await.unwrap();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        events.is_empty(),
        "the engine acted on the VMs during the SSH drills: {events:?}"
    );
    assert!(
        left.is_empty(),
        "the drills left changes on the hosts: {left:?}"
    );
}

/// Negative controls over SSH: a broken install must fail the same checks it fails in
/// containers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broken_installs_fail_their_checks_over_ssh() {
    // nginx's passive health checks keep sending users to an app server cut from its database.
    let nginx = bed("web-ha-nginx-tuned").await;
    let cut = drill(&nginx, "cut-app-from-db").await;
    let left = leftovers(&nginx).await;
    nginx.teardown().await.unwrap();
    assert_eq!(cut.verdict, Verdict::Fail, "{}", cut.summary());
    let failed = failed_checks(&cut);
    for check in ["availability", "user-requests"] {
        assert!(
            failed.contains(check),
            "{check} did not fail: {}",
            cut.summary()
        );
    }
    assert!(
        left.is_empty(),
        "the drill left changes on the hosts: {left:?}"
    );

    // Workers that acknowledge a job before committing it lose the job an aimed kill hits.
    let workers = bed("web-ha-worker-ack-before-commit").await;
    let kill = drill(&workers, "kill-worker-ack-before-commit").await;
    workers.teardown().await.unwrap();
    let continuity = kill.checks.iter().find(|c| c.check == "continuity");
    assert!(
        continuity.is_some_and(|c| c.verdict == Verdict::Fail && c.expected_to_fail),
        "continuity did not catch the lost job: {}",
        kill.summary()
    );
    assert_eq!(kill.verdict, Verdict::Pass, "{}", kill.summary());
}

/// A full disk over SSH: the object store's filesystem filled by a file of hadrill's and
/// freed; the sound install keeps every acknowledged upload, the one that acknowledges
/// before storing loses some, as in containers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_disk_over_ssh_is_survived_and_a_lost_upload_is_caught() {
    let sound = bed("web-ha-small-store").await;
    let full = drill(&sound, "s3-disk-full").await;
    let left = leftovers(&sound).await;
    sound.teardown().await.unwrap();
    assert_eq!(full.verdict, Verdict::Pass, "{}", full.summary());
    assert!(
        left.is_empty(),
        "the drill left changes on the hosts: {left:?}"
    );

    let broken = bed("web-ha-small-store-ack-before-store").await;
    let lost = drill(&broken, "s3-disk-full-ack-before-store").await;
    broken.teardown().await.unwrap();
    let continuity = lost.checks.iter().find(|c| c.check == "continuity");
    assert!(
        continuity.is_some_and(|c| c.verdict == Verdict::Fail && c.expected_to_fail),
        "continuity did not catch the lost uploads: {}",
        lost.summary()
    );
}

/// A service's clock skewed over SSH (the offset its libfaketime reads, never the host's own
/// clock): the historian on the database's time keeps one roll-up per slot; the one on its
/// node's own clock rolls up ahead of time, as in containers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_skewed_service_clock_over_ssh_is_survived_and_a_local_clock_is_caught() {
    let sound = bed("web-ha-skewed-services").await;
    let skew = drill(&sound, "skew-clock-services").await;
    let left = leftovers(&sound).await;
    sound.teardown().await.unwrap();
    assert_eq!(skew.verdict, Verdict::Pass, "{}", skew.summary());
    assert!(
        left.is_empty(),
        "the drill left changes on the hosts: {left:?}"
    );

    // The variant's `expect_fail` is keyed to the shipped topology's name: over SSH the
    // run's own verdict is FAIL, and the check that must catch it is asserted.
    let local = bed("web-ha-skewed-services-local-clock").await;
    let caught = drill(&local, "skew-clock-services").await;
    local.teardown().await.unwrap();
    assert!(
        failed_checks(&caught).contains("historian"),
        "the historian on its node's clock was not caught: {}",
        caught.summary()
    );
}

/// A throttle and a delay over SSH, each measured for what it asked as in containers: a token
/// bucket on each of the host's interfaces (within 20 %), a proxy of hadrill's run as the SSH
/// user that holds the answers (median within 20 ms); heal takes each off.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_throttle_and_a_delay_over_ssh_do_what_they_ask_and_heal_removes_them() {
    use hadrill::model::{Bandwidth, Fault};
    let bed = bed("web-ha").await;
    let hosts =
        hadrill::Topology::load(&common::root(), &bed.hosts_topology().to_string_lossy()).unwrap();
    let mut run = hadrill::Run::start(hosts, &common::options())
        .await
        .unwrap();
    // The bytes move between the VMs' own processes, started through the engine: the
    // throttle is what runs over SSH.
    let (app1, app2) = (
        bed.run().node("app1").unwrap(),
        bed.run().node("app2").unwrap(),
    );
    let rate = Bandwidth::try_from("8mbit".to_string()).unwrap();
    run.node("app1").unwrap().throttle(rate).await.unwrap();
    let (secs, bytes) = common::download_seconds(&app2, &app1, 0).await;
    let achieved = bytes as f64 * 8.0 / secs;
    println!(
        "throttle over SSH asked 8 Mbit/s, measured {:.2} Mbit/s",
        achieved / 1e6
    );
    run.inject(Fault::Heal).await.unwrap();
    let (healed, _) = common::download_seconds(&app2, &app1, 1).await;
    println!("healed: 4 MB in {healed:.3} s");
    let qdiscs = app1.exec_as_root(&["tc", "qdisc", "show"]).await.unwrap();

    // The app server's own port, as the hosts topology's entry reaches it.
    let at = run.node("app1").unwrap().host_addr(8080).unwrap();
    let before = common::median_get_ms(at, "/readyz", 50).await;
    let delayed = run
        .inject(Fault::Delay {
            targets: vec!["app1".into()],
            port: 8080,
            latency: std::time::Duration::from_millis(100),
            jitter: std::time::Duration::from_millis(10),
        })
        .await
        .unwrap();
    println!("{:?}", delayed.notes);
    let during = common::median_get_ms(at, "/readyz", 50).await;
    println!("delay over SSH: median GET {before:.1} ms before, {during:.1} ms with 100 ms asked");
    let healed_delay = run.inject(Fault::Heal).await.unwrap();
    println!("{:?}", healed_delay.notes);
    let after = common::median_get_ms(at, "/readyz", 50).await;
    let nat = app1
        .exec_as_root(&["iptables", "-t", "nat", "-S"])
        .await
        .unwrap();
    let proxies = app1.exec(&["pgrep", "-f", "hadrill-delay"]).await.unwrap();
    run.teardown().await.unwrap();
    bed.teardown().await.unwrap();
    assert_eq!(bytes, 4_000_000);
    assert!(
        (achieved / 8e6 - 1.0).abs() <= 0.2,
        "{:.2} Mbit/s",
        achieved / 1e6
    );
    assert!(healed < 1.0, "healed, 4 MB still took {healed:.2} s");
    assert!(!qdiscs.output.contains("tbf"), "{}", qdiscs.output);
    assert!(
        (during - before - 100.0).abs() <= 20.0,
        "added {:.1} ms",
        during - before
    );
    assert!(after < before + 20.0, "healed, median GET {after:.1} ms");
    assert!(!nat.output.contains("HADRILL"), "{}", nat.output);
    assert!(
        proxies.output.trim().is_empty(),
        "proxies left: {}",
        proxies.output
    );
}

/// PostgreSQL under Patroni on VMs: the primary's service is killed over SSH (Patroni and its
/// PostgreSQL with it, as a unit's kill takes its whole cgroup), the standby is promoted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_primary_passes_over_ssh() {
    let db = bed("db-ha").await;
    let r = drill(&db, "kill-primary").await;
    let left = leftovers(&db).await;
    db.teardown().await.unwrap();
    assert_eq!(r.verdict, Verdict::Pass, "{}", r.summary());
    assert!(
        left.is_empty(),
        "the drill left changes on the hosts: {left:?}"
    );
}

/// The guide's active/passive pair on VMs: the active crashes, then the passive; and, without
/// the ping node, a peer partition whose split brain the checks must catch.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn active_passive_drills_pass_over_ssh_and_a_split_brain_is_caught() {
    let pair = bed("active-passive").await;
    let mut failures = Vec::new();
    for name in ["active-crashes", "passive-crashes"] {
        let r = drill(&pair, name).await;
        if r.verdict != Verdict::Pass {
            failures.push(format!("{name}: {}", r.summary()));
        }
    }
    let left = leftovers(&pair).await;
    pair.teardown().await.unwrap();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        left.is_empty(),
        "the drills left changes on the hosts: {left:?}"
    );

    let no_ping = bed("active-passive-no-ping").await;
    let split = drill(&no_ping, "partition-peers-no-ping-node").await;
    let left = leftovers(&no_ping).await;
    no_ping.teardown().await.unwrap();
    let single = split.checks.iter().find(|c| c.check == "single-primary");
    assert!(
        single.is_some_and(|c| c.verdict == Verdict::Fail),
        "the split brain was not caught: {}",
        split.summary()
    );
    assert_eq!(split.verdict, Verdict::Pass, "{}", split.summary());
    assert!(
        left.is_empty(),
        "the drill left changes on the hosts: {left:?}"
    );
}
