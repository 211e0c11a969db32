//! hadrill's availability figures against an independent oracle: while a drill runs, a
//! separate process (`hadrill-oracle`, which shares no code with hadrill) probes the same entry
//! point at 100 Hz. For each fault, hadrill's unavailability window and the oracle's, both
//! measured from the fault's start to the first success after the last failure, agree within
//! 100 ms: hadrill probes at 20 Hz, so its own resolution is ±50 ms. Where either prober could
//! not keep its schedule (a failover on two cores starves both), each states the resolution
//! it achieved, and the figures must agree within the two together.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use hadrill::workload::Context;
use hadrill::{
    Budgets, Condition, Drill, Fault, Observer, Results, RunOptions, SqlSpec, Step, Verdict,
    WorkloadSpec,
};
use hadrill_oracle::{Outage, Sample, agrees, outage};
use tokio::io::AsyncWriteExt;

/// The path both probers read through the load balancer in the web drill.
const READYZ: &str = "/readyz";

/// How far hadrill's figure may be from the oracle's.
const AGREEMENT_MS: u64 = 100;

/// Where the oracle probes: a node's published port, over HTTP (a path) or SQL.
#[derive(Clone)]
enum Probe {
    Http {
        node: &'static str,
        port: u16,
        path: &'static str,
    },
    Sql {
        node: &'static str,
        port: u16,
        user: &'static str,
        db: &'static str,
    },
}

/// Runs the oracle beside the drill's own workload and keeps what it printed. It is an
/// observer only so that it starts once the topology is up and stops with the workloads; it
/// records nothing in hadrill's history.
struct Oracle {
    probe: Probe,
    samples: Arc<Mutex<Vec<Sample>>>,
}

impl Observer for Oracle {
    fn name(&self) -> &str {
        "oracle"
    }

    fn observe(self: Arc<Self>, ctx: Context) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_hadrill-oracle"));
            cmd.args(["--hz", "100", "--for", "5m"]);
            let (node, port) = match &self.probe {
                Probe::Http { node, port, .. } | Probe::Sql { node, port, .. } => (*node, *port),
            };
            let addr = ctx
                .node(node)
                .ok()
                .and_then(|n| n.host_addr(port))
                .unwrap_or_else(|| panic!("{node} publishes no port {port}"));
            match &self.probe {
                Probe::Http { path, .. } => cmd.args(["http", &format!("http://{addr}{path}")]),
                Probe::Sql { user, db, .. } => cmd
                    .args(["sql", &addr.to_string(), "--user", user, "--db", db])
                    .env("PGPASSWORD", ctx.secret("DB_PASSWORD").unwrap_or_default()),
            };
            let mut child = cmd
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("the oracle starts");
            let stdin = child.stdin.take();
            ctx.stopped().await;
            // Closing its input stops the oracle once its probes in flight have answered.
            if let Some(mut stdin) = stdin {
                let _ = stdin.shutdown().await;
            }
            drop(child.stdin.take());
            let out = child.wait_with_output().await.expect("the oracle ends");
            let printed = String::from_utf8_lossy(&out.stdout);
            let mut samples = self.samples.lock().unwrap();
            samples.extend(printed.lines().filter_map(Sample::parse));
        })
    }
}

/// Runs `drill` with the oracle on `probe`, then compares, fault by fault, hadrill's
/// unavailability window with the oracle's.
async fn agree(drill: Drill, probe: Probe) {
    let samples = Arc::new(Mutex::new(Vec::new()));
    let oracle = Oracle {
        probe,
        samples: samples.clone(),
    };
    let hadrill = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let results = drill
        .observer(oracle)
        .run(&RunOptions::new(&hadrill).with_signal_handler())
        .await
        .expect("the drill runs");
    println!("{}", results.summary());
    assert_eq!(results.verdict, Verdict::Pass, "{}", results.summary());
    let samples = samples.lock().unwrap().clone();
    // Kept beside hadrill's own evidence, to look at when they disagree.
    let printed: Vec<String> = samples.iter().map(Sample::line).collect();
    std::fs::write(results.run_dir.join("oracle.log"), printed.join("\n")).unwrap();
    assert!(
        samples.len() > 1000,
        "the oracle probed {} times",
        samples.len()
    );
    for (i, (fault, reported, oracle)) in windows(&results, &samples).into_iter().enumerate() {
        println!("{fault}: hadrill {reported:?} ms (±resolution), oracle {oracle:?}");
        let (Some((ms, resolution_ms)), Some(oracle)) = (reported, oracle) else {
            panic!("{fault}: hadrill {reported:?}, oracle {oracle:?}: one never saw recovery");
        };
        if let Err(e) = agrees(ms, resolution_ms, oracle, AGREEMENT_MS) {
            // The evidence, in the test's output: a CI runner keeps no run directory.
            panic!(
                "{fault}: hadrill says {e}\nhadrill's window: {}\noracle's failures (ms after the fault's start, sent → answered): {}",
                availability(&results)["windows"][i],
                failures(&results, &samples, i),
            );
        }
    }
}

/// hadrill's availability figures.
fn availability(results: &Results) -> &serde_json::Value {
    &results
        .checks
        .iter()
        .find(|c| c.check == "availability")
        .expect("availability judged")
        .figures
}

/// The fault starts, in Unix ms.
fn fault_starts(results: &Results) -> Vec<u64> {
    let origin = results.clock_origin_unix_ms;
    results
        .faults
        .iter()
        .map(|f| origin + f.start.as_duration().as_millis() as u64)
        .collect()
}

/// The oracle's failed probes in fault `i`'s span, relative to its start.
fn failures(results: &Results, samples: &[Sample], i: usize) -> String {
    let starts = fault_starts(results);
    let (from, until) = (starts[i], starts.get(i + 1).copied().unwrap_or(u64::MAX));
    let seen: Vec<String> = samples
        .iter()
        .filter(|s| !s.ok && s.sent_unix_ms >= from && s.sent_unix_ms < until)
        .map(|s| format!("{}→{}", s.sent_unix_ms - from, s.answered_unix_ms - from))
        .collect();
    seen.join(", ")
}

/// What hadrill reported for one fault: its unavailability and the resolution achieved.
type Reported = Option<(u64, u64)>;

/// Per fault: its name, hadrill's unavailability window and the oracle's over the same span
/// (the fault's start to the next fault's).
fn windows(results: &Results, samples: &[Sample]) -> Vec<(String, Reported, Option<Outage>)> {
    let figures = availability(results);
    let resolution = figures["resolution_ms"].as_u64().unwrap_or(0);
    let starts = fault_starts(results);
    results
        .faults
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let window = &figures["windows"][i];
            let reported = window["unavailable_ms"].as_u64().map(|ms| {
                let achieved = window["uncertainty_ms"].as_u64().unwrap_or(0);
                (ms, achieved.max(resolution))
            });
            let until = starts.get(i + 1).copied().unwrap_or(u64::MAX);
            (
                format!("fault #{} {}", i + 1, f.fault.name()),
                reported,
                outage(samples, starts[i], until),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_app_server_kill_measures_what_an_outside_prober_sees() {
    let drill = Drill::new("oracle-kill-app", "web-ha")
        .describe("SIGKILL the app server that served last, an outside prober at 100 Hz beside")
        // Both probers read the same path, so that they measure one thing: `/readyz` also
        // asks the object store and the queue, which `/traces` (hadrill's default) does not.
        .web(WorkloadSpec {
            users: 4,
            rate: 20.0,
            probe_path: READYZ.into(),
            ..WorkloadSpec::default()
        })
        .warmup(Duration::from_secs(3))
        .step(Step::at(Duration::from_secs(5)).fault(Fault::kill(["@last-served"])))
        .step(
            Step::after(Duration::from_secs(8))
                .fault(Fault::start(["@previous"]))
                .wait(Condition::Healthy, &[], Duration::from_secs(30)),
        )
        .settle(Duration::from_secs(5))
        // As kill-active-app: an upload on its way to the killed server ends unknown, at most
        // one per user (measured here: 1 of 358 in one CI run). This drill is about timing.
        .budgets(Budgets {
            max_unavailability: Some(Duration::from_secs(2)),
            max_unknown_requests: hadrill::model::RequestBudget::Count(4),
            ..Budgets::default()
        });
    let probe = Probe::Http {
        node: "lb",
        port: 80,
        path: READYZ,
    };
    agree(drill, probe).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_primary_kill_measures_what_an_outside_prober_sees() {
    let drill = Drill::new("oracle-kill-primary", "db-ha")
        .describe("SIGKILL the PostgreSQL primary, an outside prober at 100 Hz beside")
        .sql(SqlSpec::default())
        .warmup(Duration::from_secs(5))
        .step(Step::at(Duration::ZERO).fault(Fault::kill(["@primary"])))
        .settle(Duration::from_secs(15))
        .budgets(Budgets {
            max_failover: Some(Duration::from_secs(15)),
            max_unavailability: Some(Duration::from_secs(15)),
            ..Budgets::default()
        });
    let probe = Probe::Sql {
        node: "dblb",
        port: 5432,
        user: "postgres",
        db: "postgres",
    };
    agree(drill, probe).await;
}
