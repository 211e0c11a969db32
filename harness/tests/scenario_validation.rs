//! Malformed scenario files: each must be refused at load time, before anything starts, with
//! an error at the offending value's line and column that names the field and what is
//! allowed. And every shipped scenario must load. (No Docker needed.)

mod common;

use std::path::{Path, PathBuf};

use hadrill::scenario::{ALONE, Scenario, ScenarioError, available, weight};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn fixture(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/scenarios")
        .join(file)
}

/// The error's message and its help (what is allowed), as the terminal shows them.
fn load_bad(file: &str) -> String {
    match Scenario::load(&root(), fixture(file).to_str().unwrap()) {
        Ok(_) => panic!("{file} was accepted"),
        Err(e @ ScenarioError::Invalid(_)) => {
            let help = miette::Diagnostic::help(&e).map(|h| h.to_string());
            format!("{e}\nhelp: {}", help.unwrap_or_default())
        }
        Err(other) => panic!("{file}: expected a validation error, got {other}"),
    }
}

/// `(file, line:column, what the message and its help must say)`.
const CASES: &[(&str, &str, &[&str])] = &[
    (
        "http-unknown-id.toml",
        "10:8",
        &[
            "http.writes[0].path",
            "`${id:run}` names no write declared before this one",
        ],
    ),
    (
        "http-no-compare.toml",
        "12:8",
        &[
            "http.writes[0].read",
            "exactly one of `digest = true`, `contains` or `expect`",
        ],
    ),
    (
        "http-multipart-media-type.toml",
        "15:16",
        &[
            "http.writes[0].multipart[0].content_type",
            "`octet stream` is not a media type",
        ],
    ),
    (
        "http-multipart-digest-text.toml",
        "11:10",
        &[
            "http.writes[0].digest",
            "the one `random` part of a `multipart`",
        ],
    ),
    (
        "http-unknown-placeholder.toml",
        "11:8",
        &["http.writes[0].body", "unknown placeholder `${texte}`"],
    ),
    (
        "http-unknown-secret.toml",
        "7:29",
        &["http.headers.authorization", "unknown secret `API_TOKEN`"],
    ),
    (
        "redis-unpublished-port.toml",
        "6:8",
        &["redis.port", "6380"],
    ),
    (
        "s3-no-sizes.toml",
        "5:9",
        &["s3.sizes", "give at least one"],
    ),
    (
        "stores-same-name.toml",
        "5:8",
        &["redis.name", "`s3.name` is `data` too"],
    ),
    (
        "unknown-target.toml",
        "10:45",
        &[
            "steps[1].fault.targets[1]",
            "unknown node or group `app3`",
            "app1, app2,",
            "groups: app, data, workers",
            "selectors: @last-served, @previous, @primary, @standby",
        ],
    ),
    (
        "unknown-selector.toml",
        "8:37",
        &[
            "steps[0].fault.targets[0]",
            "unknown selector `@leader`",
            "@primary, @standby",
        ],
    ),
    (
        "previous-first.toml",
        "8:38",
        &[
            "steps[1].fault.targets[0]",
            "`@previous` needs an earlier step with a fault",
        ],
    ),
    (
        "primary-without-sql.toml",
        "8:37",
        &[
            "steps[0].fault.targets[0]",
            "`@primary` needs an observer of the members' roles",
        ],
    ),
    (
        "partition-side.toml",
        "9:62",
        &[
            "steps[0].fault.b[1]",
            "unknown node or group `pg3`",
            "groups: etcd, postgres",
        ],
    ),
    (
        "loss-out-of-range.toml",
        "9:81",
        &[
            "steps[0].fault.effect.loss",
            "1.5 is out of range",
            "more than 0, at most 1",
        ],
    ),
    (
        "nemesis-one-target.toml",
        "6:11",
        &[
            "nemesis.targets",
            "`app1` is the only one",
            "name more nodes, or draw no partition",
        ],
    ),
    (
        "nemesis-and-steps.toml",
        "11:1",
        &[
            "steps",
            "draws its steps from a seed",
            "remove `[[steps]]` or `[nemesis]`",
        ],
    ),
    (
        "nemesis-backwards.toml",
        "7:12",
        &["`6s` is more than `3s`: give the least first"],
    ),
    (
        "split-too-few.toml",
        "5:35",
        &[
            "steps[0].fault.nodes",
            "a bridge split needs 3 nodes at least",
        ],
    ),
    (
        "skew-without-faketime.toml",
        "5:43",
        &[
            "steps[0].fault.targets[0]",
            "node `app1` does not load libfaketime",
            "clock = \"faketime\"",
        ],
    ),
    (
        "fill-disk-unlimited.toml",
        "5:42",
        &[
            "steps[0].fault.targets[0]",
            "`/var/lib/data` of node `app1` is not on a size-limited filesystem",
            "tmpfs = { \"/var/lib/data\" = \"64m\" }",
        ],
    ),
    (
        "delay-zero.toml",
        "5:70",
        &["steps[0].fault.latency", "is zero"],
    ),
    (
        "when-no-in-flight.toml",
        "6:22",
        &[
            "steps[0].when.in_flight",
            "no target of the fault lists the work it holds",
            "in_flight = [",
        ],
    ),
    (
        "when-selector.toml",
        "12:8",
        &[
            "steps[2].when",
            "a selector is resolved before the wait",
            "name the node",
        ],
    ),
    (
        "when-agents-without-agents.toml",
        "6:19",
        &["steps[0].when.agents", "no `[agents]`"],
    ),
    ("when-zero.toml", "6:19", &["steps[0].when.agents", "is 0"]),
    (
        "abort-without-probe.toml",
        "11:19",
        &[
            "abort.unavailable_for",
            "no workload of this scenario probes the system",
            "the web workload, `[sql]`",
        ],
    ),
    (
        "wait-group.toml",
        "10:38",
        &[
            "steps[0].wait.nodes[0]",
            "unknown node `app`",
            "nodes of topology `web-ha`: app1, app2",
        ],
    ),
    (
        "zero-rate.toml",
        "6:8",
        &["workload.rate", "0 is out of range", "more than 0", "10000"],
    ),
    (
        "huge-probe-hz.toml",
        "5:12",
        &[
            "workload.probe_hz",
            "100000 is out of range",
            "at most 1000",
        ],
    ),
    (
        "sql-members.toml",
        "6:11",
        &[
            "sql.members",
            "unknown node or group `patroni`",
            "groups: etcd, postgres",
        ],
    ),
    (
        "sql-port.toml",
        "6:8",
        &["sql.port", "`dblb` publishes no port 5433", "5432, 8404"],
    ),
    (
        "sql-vip-over-sql.toml",
        "6:10",
        &[
            "sql.leader",
            "`vip` reads who holds the virtual IP from each member's REST status",
            "give `leader = \"none\"` or `\"etcd\"`, or `status = \"rest\"`",
        ],
    ),
    (
        "agents-expect-on.toml",
        "6:33",
        &[
            "agents.expect_on[1]",
            "unknown node `cluster-worker4`",
            "cluster-worker3",
        ],
    ),
    (
        "agents-report-unknown-lb.toml",
        "6:25",
        &[
            "agents.report[1]",
            "unknown node `cluster-lb9`",
            "cluster-lb",
        ],
    ),
    (
        "agents-report-ports.toml",
        "6:16",
        &[
            "agents.report_ports",
            "`cluster-lb` publishes no port 1530",
            "1514, 1515, 55000, 8404, 1520",
        ],
    ),
    (
        "agents-zero-interval.toml",
        "6:19",
        &[
            "agents.notify_interval",
            "`0s` is out of range",
            "more than 0",
        ],
    ),
    (
        "expect-fail-unknown.toml",
        "3:34",
        &[
            "expect_fail[1]",
            "no check `sessions` runs",
            "availability, continuity, exercise, failover, replicas, replication, single-primary",
        ],
    ),
    (
        "final-read-role.toml",
        "8:12",
        &[
            "final_read.app_role",
            "no node has the role `web`",
            "roles in topology `web-ha`: app,",
        ],
    ),
    (
        "at-and-after.toml",
        "8:1",
        &["steps[1]", "give `at` or `after`, not both"],
    ),
    (
        "empty-step.toml",
        "7:1",
        &["steps[1]", "a step needs a `fault` or a `wait`"],
    ),
    (
        "default-entry-port.toml",
        "2:12",
        &[
            "workload.entry_port",
            "`lb` publishes no port 80",
            "the default",
            "8080, 8404",
        ],
    ),
    (
        "rotate-unknown-secret.toml",
        "5:44",
        &[
            "steps[0].fault.secret",
            "unknown secret `SESSION_KEY`",
            "SECRET_KEY, DB_PASSWORD",
        ],
    ),
    (
        "extends-cycle.toml",
        "2:12",
        &[
            "cycle-b.toml:1:11",
            "extends: cycle cycle-a.toml → cycle-b.toml → cycle-a.toml",
        ],
    ),
    (
        "extends-self.toml",
        "2:12",
        &[
            "cycle-self.toml:2:11",
            "extends: cycle cycle-self.toml → cycle-self.toml",
        ],
    ),
    (
        "variant-expect-fail-unknown.toml",
        "9:32",
        &[
            "variants[0].expect_fail[1]",
            "no check `replicas` runs in this scenario",
            "availability, continuity",
        ],
    ),
    (
        "variant-unknown-topology.toml",
        "8:12",
        &[
            "variants: no topology `web-ha-nginks`",
            "web-ha-liveness, web-ha-nginx, web-ha-nginx-tuned",
        ],
    ),
];

#[test]
fn every_malformed_scenario_is_rejected_at_its_value_with_the_field_and_what_is_allowed() {
    let mut failures = Vec::new();
    for (file, at, needles) in CASES {
        failures.extend(common::missing_from(&load_bad(file), file, at, needles));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_fixture_has_a_case() {
    let dir = fixture("");
    let listed: Vec<&str> = CASES.iter().map(|(f, _, _)| *f).collect();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        // The topologies the extends cases name.
        if name.starts_with("cycle-") {
            continue;
        }
        assert!(listed.contains(&name.as_str()), "{name} has no case");
    }
}

#[test]
fn rendered_error_shows_the_offending_source_line() {
    let err = Scenario::load(&root(), fixture("partition-side.toml").to_str().unwrap())
        .err()
        .expect("rejected");
    let rendered = hadrill::scenario::describe(&err);
    assert!(rendered.contains("b = [\"etcd\", \"pg3\"]"), "{rendered}");
}

#[test]
fn every_shipped_scenario_loads() {
    let names = available(&root());
    assert!(names.len() >= 20, "{names:?}");
    // The benchmarks too: `ci/bench.sh` runs them only by hand.
    let benches: Vec<String> = std::fs::read_dir(root().join("benches"))
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .collect();
    assert_eq!(benches.len(), 2, "{benches:?}");
    let failures: Vec<String> = names
        .iter()
        .chain(&benches)
        .filter_map(|n| {
            Scenario::load(&root(), n)
                .err()
                .map(|e| format!("{n}: {e}"))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `<scenario>@<topology>` is the scenario's drill on its variant's topology, with the
/// variant's expectations, and the suite lists it as a test of its own.
#[test]
fn a_variant_is_its_own_test_on_its_topology_with_its_own_expectations() {
    let names = available(&root());
    assert!(
        names.iter().any(|n| n == "s3-outage@web-ha-nginx"),
        "{names:?}"
    );
    let s = Scenario::load(&root(), "s3-outage@web-ha-nginx").unwrap();
    assert_eq!(s.name, "s3-outage@web-ha-nginx");
    assert_eq!(s.topology.name, "web-ha-nginx");
    let declared = s.spec.variant("web-ha-nginx").expect("declared");
    assert_eq!(s.spec.expect_fail, ["user-requests"]);
    assert_eq!(s.spec.expect_fail, declared.expect_fail);
    assert!(declared.finding.is_some());
    // The scenario itself keeps its own topology and expectations.
    let own = Scenario::load(&root(), "s3-outage").unwrap();
    assert_eq!(own.topology.name, "web-ha");
    assert!(own.spec.expect_fail.is_empty());
    // A variant's budgets replace the scenario's on its topology, and only there.
    let own = Scenario::load(&root(), "stop-app-graceful").unwrap();
    let on_nginx = Scenario::load(&root(), "stop-app-graceful@web-ha-nginx-tuned").unwrap();
    assert_eq!(
        own.spec.budgets.max_unknown_requests,
        hadrill::model::RequestBudget::Count(0)
    );
    assert_eq!(
        on_nginx.spec.budgets.max_unknown_requests,
        hadrill::model::RequestBudget::Count(2)
    );
    assert_eq!(
        on_nginx.spec.budgets.max_unavailability,
        Some(std::time::Duration::from_secs(2))
    );
}

/// A run takes its topology's weight in `--jobs` slots, and all of them when its outage
/// budget is under a second, a variant's budget included.
#[test]
fn a_drill_with_a_sub_second_outage_budget_runs_alone() {
    let w = |name: &str| weight(&root(), name, None);
    assert_eq!(w("kill-active-app"), 1, "2 s budget");
    assert_eq!(w("mlflow-kill-active"), 2, "MLflow's topology weighs 2");
    assert_eq!(w("rolling-restart"), ALONE, "0 ms budget");
    assert_eq!(w("stop-app-graceful"), ALONE, "0 ms budget");
    assert_eq!(
        w("stop-app-graceful@web-ha-nginx-tuned"),
        1,
        "its variant's 2 s"
    );
    assert_eq!(w("no-such-scenario"), 1, "its run says why it cannot load");
}

/// The fixture scenarios the Docker tests run pass validation too.
#[test]
fn the_docker_tests_scenarios_load() {
    for file in [
        "broken-kill-app.toml",
        "split-brain-async.toml",
        "nemesis-broken.toml",
    ] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(file);
        if let Err(e) = Scenario::load(&root(), path.to_str().unwrap()) {
            panic!("{file}: {e}");
        }
    }
}

/// A drill built in code is the scenario file it serialises to: loaded and validated the same.
#[test]
fn a_drill_built_in_code_is_a_scenario() {
    use std::time::Duration;

    use hadrill::{Budgets, Condition, Drill, Fault, SqlSpec, Step};
    let drill = Drill::new("code-drill", "db-ha")
        .sql(SqlSpec::default())
        .step(Step::at(Duration::from_secs(2)).fault(Fault::kill(["@primary"])))
        .step(Step::after(Duration::from_secs(1)).wait(
            Condition::Healthy,
            &["pg1"],
            Duration::from_secs(30),
        ))
        .budgets(Budgets {
            max_failover: Some(Duration::from_secs(15)),
            ..Budgets::default()
        });
    let s = drill.scenario(&root()).unwrap();
    assert_eq!(s.name, "code-drill");
    assert_eq!(s.topology.name, "db-ha");
    assert_eq!(s.spec.steps.len(), 2);
    assert_eq!(s.spec.steps[0].at, Some(Duration::from_secs(2)));
    assert_eq!(
        s.spec.steps[0].fault,
        Some(Fault::Kill {
            targets: vec!["@primary".into()]
        })
    );
    assert_eq!(s.spec.budgets.max_failover, Some(Duration::from_secs(15)));
    // The text kept as the run's scenario.toml loads back as the same drill.
    let file = tempfile::tempdir().unwrap();
    let path = file.path().join("code-drill.toml");
    std::fs::write(&path, &s.text).unwrap();
    let again = Scenario::load(&root(), path.to_str().unwrap()).unwrap();
    assert_eq!(again.text, s.text);

    // Every workload's defaults survive the round trip, sizes included.
    let web = Drill::new("web-drill", "web-ha").web(hadrill::WorkloadSpec::default());
    let s = web.scenario(&root()).unwrap();
    assert_eq!(
        s.spec.workload.unwrap().upload_size,
        hadrill::WorkloadSpec::default().upload_size
    );

    // A mistake is refused as a file's is, pointing into the drill's text.
    let bad = Drill::new("bad-drill", "db-ha")
        .sql(SqlSpec::default())
        .expect_fail("no-such-check");
    let Err(e) = bad.scenario(&root()) else {
        panic!("an unknown expected check was accepted")
    };
    let err = format!("{:?}", miette::Report::new(e));
    assert!(
        err.contains("bad-drill.toml") && err.contains("no-such-check"),
        "{err}"
    );
    let nowhere = Drill::new("lost", "no-such-topology").scenario(&root());
    assert!(matches!(nowhere, Err(ScenarioError::Invalid(_))));
}

/// A drill's own check may not take a built-in check's name, or another's.
#[test]
fn a_drill_check_needs_its_own_name() {
    use hadrill::{Check, CheckResult, Drill, Evidence, SqlSpec};
    struct Named(&'static str);
    impl Check for Named {
        fn name(&self) -> &str {
            self.0
        }
        fn judge(&self, _: &Evidence<'_>) -> CheckResult {
            CheckResult::unknown(self.0, "a test check".into())
        }
    }
    let drill = || Drill::new("named", "db-ha").sql(SqlSpec::default());
    assert!(drill().check(Named("mine")).scenario(&root()).is_ok());
    for (d, clash) in [
        (drill().check(Named("continuity")), "built-in"),
        (
            drill().check(Named("mine")).check(Named("mine")),
            "two checks",
        ),
    ] {
        let Err(e) = d.scenario(&root()) else {
            panic!("a clashing check name was accepted")
        };
        let err = format!("{:?}", miette::Report::new(e));
        assert!(err.contains(clash) && err.contains("failover"), "{err}");
    }
}

/// A drill with a workload from code keeps its name in its text; that text alone cannot run
/// (the code is in the drill's crate) and is refused as a scenario file, saying what to do.
#[test]
fn a_drill_text_naming_code_workloads_is_not_a_runnable_file() {
    use std::sync::Arc;

    use hadrill::workload::Context;
    use hadrill::{Drill, Workload};
    struct Idle;
    impl Workload for Idle {
        fn name(&self) -> &str {
            "idle"
        }
        fn run(self: Arc<Self>, ctx: Context) -> futures_util::future::BoxFuture<'static, ()> {
            Box::pin(async move { ctx.stopped().await })
        }
    }
    let drill = Drill::new("coded", "smoke").workload(Idle);
    let s = drill.scenario(&root()).unwrap();
    assert!(
        s.spec.web().is_none(),
        "a code workload replaces the default web one"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("coded.toml");
    std::fs::write(&path, &s.text).unwrap();
    let Err(e) = Scenario::load(&root(), path.to_str().unwrap()) else {
        panic!("a drill's text naming code workloads ran as a file")
    };
    let err = format!("{:?}", miette::Report::new(e));
    assert!(err.contains("idle") && err.contains("Drill::run"), "{err}");

    // Its final read is kept under its name: a second `idle`, or one named like a built-in
    // workload, is refused.
    struct Named(&'static str);
    impl Workload for Named {
        fn name(&self) -> &str {
            self.0
        }
        fn run(self: Arc<Self>, ctx: Context) -> futures_util::future::BoxFuture<'static, ()> {
            Box::pin(async move { ctx.stopped().await })
        }
    }
    for (drill, problem) in [
        (
            Drill::new("coded", "smoke")
                .workload(Idle)
                .workload(Named("idle")),
            "two workloads are named `idle`",
        ),
        (
            Drill::new("coded", "smoke").workload(Named("sql")),
            "`sql` is the name of a built-in",
        ),
    ] {
        let Err(e) = drill.scenario(&root()) else {
            panic!("{problem}: accepted")
        };
        let err = format!("{:?}", miette::Report::new(e));
        assert!(
            err.contains(problem) && err.contains("code_workloads"),
            "{err}"
        );
    }
}
