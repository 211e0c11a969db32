//! The report from a real run's files: its structure and the normalised results (insta
//! snapshots), a real headless Chromium loading it without console errors (screenshot kept),
//! and the size of a 10-minute run's page.

use std::path::{Path, PathBuf};
use std::process::Command;

use hadrill_model::{HarnessUsage, Phase, Results};
use hadrill_reports::{
    RunData, check_coverage, harness_usage, render_run, render_suite, render_trend, run_html,
    suite_floor, time_breakdown,
};
use serde_json::{Value, json};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kill-active-app")
}

/// A copy of the fixture run in a temporary directory (rendering writes index.html).
fn staged() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    for f in ["results.json", "history.jsonl"] {
        std::fs::copy(fixture().join(f), dir.join(f)).unwrap();
    }
    for e in std::fs::read_dir(fixture().join("logs")).unwrap().flatten() {
        std::fs::copy(e.path(), dir.join("logs").join(e.file_name())).unwrap();
    }
    (tmp, dir)
}

/// Keys and shapes stay; values that differ between runs go.
fn normalise(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let keep = matches!(
                        k.as_str(),
                        "check" | "verdict" | "kind" | "scenario" | "topology" | "outcome"
                    );
                    (k.clone(), if keep { v.clone() } else { normalise(v) })
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().take(1).map(normalise).collect()),
        Value::Number(_) => json!("<number>"),
        Value::String(_) => json!("<string>"),
        other => other.clone(),
    }
}

#[test]
fn results_json_keeps_its_shape() {
    let results: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture().join("results.json")).unwrap())
            .unwrap();
    insta::assert_json_snapshot!("results-shape", normalise(&results));
}

/// Headings, table headers and the SVG charts: what a reader navigates by.
fn structure(html: &str) -> String {
    let mut out = Vec::new();
    for part in html.split('<').skip(1) {
        let (tag, body) = part.split_once('>').unwrap_or((part, ""));
        let name = tag.split_whitespace().next().unwrap_or("");
        match name {
            "h1" | "h2" | "h3" | "th" => out.push(format!("{name}: {}", body.trim())),
            "svg" => {
                let class = tag
                    .split("class=\"")
                    .nth(1)
                    .and_then(|c| c.split('"').next());
                out.push(format!("svg: {}", class.unwrap_or("")));
            }
            _ => {}
        }
    }
    out.join("\n")
}

#[test]
fn run_report_has_every_section() {
    let (_tmp, dir) = staged();
    let html = run_html(&RunData::load(&dir).unwrap(), None).unwrap();
    insta::assert_snapshot!("run-structure", structure(&html));
    // Self-contained: nothing is fetched from elsewhere.
    for external in [
        "src=\"http",
        "href=\"http",
        "url(http",
        "<script src",
        "<link ",
    ] {
        let found = html.matches(external).count();
        assert_eq!(
            found, 0,
            "the report refers to something external: {external}"
        );
    }
    assert!(
        html.contains("rect class=\"fault\""),
        "fault bands are drawn"
    );
    assert!(html.contains("rect class=\"ok\""), "operations are drawn");
}

#[test]
fn suite_and_trend_pages_link_every_run() {
    let (tmp, dir) = staged();
    let out = tmp.path().join("suite");
    let page = render_suite(std::slice::from_ref(&dir), &out).unwrap();
    let html = std::fs::read_to_string(page).unwrap();
    assert!(html.contains("Release sign-off"));
    assert!(
        html.replace("&#x2f;", "/")
            .contains("href=\"../run/index.html\""),
        "{html}"
    );
    assert!(
        dir.join("index.html").is_file(),
        "each run's page is rendered too"
    );
    let trend = std::fs::read_to_string(render_trend(&[dir], &out).unwrap()).unwrap();
    assert!(trend.contains("kill-active-app") && trend.contains("<svg class=\"spark\""));
}

/// Repeated runs of a scenario: the trend page gives its pass rate and the distribution of
/// each budgeted figure over them, and a flaky one does not read as all green.
#[test]
fn the_trend_page_gives_each_scenarios_pass_rate_and_budgeted_figures() {
    let (tmp, dir) = staged();
    let mut dirs = Vec::new();
    for (i, (verdict, ms)) in [("pass", 100), ("fail", 900), ("pass", 200)]
        .into_iter()
        .enumerate()
    {
        let copy = tmp.path().join(format!("run{i}"));
        std::fs::create_dir_all(&copy).unwrap();
        let mut results: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap())
                .unwrap();
        results["verdict"] = json!(verdict);
        results["started_at"] = json!(format!("2026-12-01T00:0{i}:00Z"));
        for c in results["checks"].as_array_mut().unwrap() {
            if c["check"] == "availability" {
                c["figures"]["worst_unavailable_ms"] = json!(ms);
            }
        }
        std::fs::write(copy.join("results.json"), results.to_string()).unwrap();
        std::fs::copy(dir.join("history.jsonl"), copy.join("history.jsonl")).unwrap();
        dirs.push(copy);
    }
    let out = tmp.path().join("suite");
    std::fs::create_dir_all(&out).unwrap();
    let trend = std::fs::read_to_string(render_trend(&dirs, &out).unwrap()).unwrap();
    assert!(trend.contains("2 of 3</span> (67 %)"), "{trend}");
    assert!(
        trend.contains("unavailability: p50 200, p99 900, max 900 (3 runs)"),
        "{trend}"
    );
}

/// A scenario with no availability or continuity check (a cluster drill judges reconnection)
/// did not measure unavailability or lost writes: both pages say so, and never show it as 0 ms
/// or "none".
#[test]
fn a_figure_no_check_measured_is_not_shown_as_zero() {
    let (tmp, dir) = staged();
    let path = dir.join("results.json");
    let mut results: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    results["checks"]
        .as_array_mut()
        .unwrap()
        .retain(|c| c["check"] != "availability" && c["check"] != "continuity");
    std::fs::write(&path, results.to_string()).unwrap();
    let out = tmp.path().join("suite");
    std::fs::create_dir_all(&out).unwrap();
    let dirs = [dir.clone()];
    let suite = std::fs::read_to_string(render_suite(&dirs, &out).unwrap()).unwrap();
    let trend = std::fs::read_to_string(render_trend(&dirs, &out).unwrap()).unwrap();
    for page in [&suite, &trend] {
        assert!(page.contains("not measured"), "{page}");
        for shown in [
            "<td>none</td>",
            "none / none",
            "None ms",
            "none ms",
            ": 0 ms",
        ] {
            assert!(!page.contains(shown), "{shown}: {page}");
        }
    }
}

/// A run whose faults a nemesis drew says from which seed, and how to replay it; a scripted
/// run says nothing of the kind.
#[test]
fn a_random_runs_page_gives_its_seed_and_how_to_replay_it() {
    let (_tmp, dir) = staged();
    let page = |dir: &Path| {
        std::fs::read_to_string(render_run(dir).unwrap())
            .unwrap()
            .replace("&#x2f;", "/")
    };
    assert!(!page(&dir).contains("drawn at random"));
    let path = dir.join("results.json");
    let mut results: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    results["scenario"] = json!("nemesis-app-servers");
    results["seed"] = json!(12345);
    std::fs::write(&path, results.to_string()).unwrap();
    let html = page(&dir);
    assert!(
        html.contains("hadrill run nemesis-app-servers --seed 12345"),
        "{html}"
    );
}

/// A drill kept as a negative control on a variant topology shows, under "Findings", the
/// checks it must fail with what they measured and the variant's explanation; a run without a
/// finding adds no such section.
#[test]
fn a_variants_finding_is_listed_with_its_expected_failures() {
    let (tmp, dir) = staged();
    let out = tmp.path().join("suite");
    let html = |dir: &Path| {
        std::fs::read_to_string(render_suite(&[dir.to_path_buf()], &out).unwrap()).unwrap()
    };
    assert!(!html(&dir).contains("Findings"));
    let path = dir.join("results.json");
    let mut results: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    results["scenario"] = json!("kill-active-app@web-ha-nginx");
    results["topology"] = json!("web-ha-nginx");
    results["finding"] = json!("nginx answered 502 itself: no live upstreams");
    let availability = results["checks"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|c| c["check"] == "availability")
        .unwrap();
    availability["verdict"] = json!("fail");
    availability["expected_to_fail"] = json!(true);
    availability["summary"] = json!("unavailable for 10277 ms, budget 2000 ms");
    std::fs::write(&path, results.to_string()).unwrap();
    let page = html(&dir);
    let findings = &page[page
        .find("<h2 id=\"findings\">Findings</h2>")
        .expect("a findings section")..];
    for needle in [
        "kill-active-app@web-ha-nginx",
        "unavailable for 10277 ms, budget 2000 ms",
        "nginx answered 502 itself: no live upstreams",
    ] {
        assert!(
            findings.contains(needle),
            "{needle} missing from {findings}"
        );
    }
}

/// The sign-off page names, per check, the negative controls it failed as it should, and
/// flags a check that no negative control of the suite saw failing.
#[test]
fn each_check_lists_the_negative_controls_it_failed_or_is_flagged_never_seen_failing() {
    let (_tmp, dir) = staged();
    let mut sound = RunData::load(&dir).unwrap().results;
    let mut control = sound.clone();
    control.scenario = "kill-active-app@web-ha-nginx".into();
    for c in &mut control.checks {
        if c.check == "availability" {
            c.verdict = hadrill_model::Verdict::Fail;
            c.expected_to_fail = true;
        }
    }
    sound.scenario = "kill-active-app".into();
    let coverage = check_coverage(&[sound, control]);
    let row = |name: &str| {
        coverage
            .iter()
            .find(|c| c["check"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(
        row("availability")["caught"],
        json!(["kill-active-app@web-ha-nginx"])
    );
    assert_eq!(row("availability")["never_seen_failing"], json!(false));
    assert_eq!(row("continuity")["never_seen_failing"], json!(true));
}

#[test]
fn a_real_browser_loads_the_report_without_console_errors() {
    let (_tmp, dir) = staged();
    let page = render_run(&dir).unwrap();
    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect(
            "no Chromium found: install it (`apt-get install -y chromium`; ci/prereqs.sh does)",
        );
    let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/report-screenshot.png");
    let url = format!("file://{}", page.display());
    let common = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--enable-logging=stderr",
        "--v=0",
    ];
    let dom = Command::new(chromium)
        .args(common)
        .args(["--dump-dom", &url])
        .output()
        .unwrap();
    assert!(
        dom.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let text = String::from_utf8_lossy(&dom.stdout);
    assert!(
        text.contains("kill-active-app") && text.contains("Failover timing"),
        "the page did not load"
    );
    let console: Vec<&str> = std::str::from_utf8(&dom.stderr)
        .unwrap_or("")
        .lines()
        .filter(|l| l.contains("CONSOLE"))
        .collect();
    assert!(console.is_empty(), "console messages: {console:?}");
    let out = Command::new(chromium)
        .args(common)
        .args([
            "--window-size=1200,2400",
            &format!("--screenshot={}", shot.display()),
            &url,
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "screenshot at {}",
        shot.display()
    );
}

/// A 10-minute run: 4 users at 20 operations/s, the 20 Hz probe, a fault every minute with a
/// 3-second outage. The page must stay under 1 MB.
#[test]
fn a_ten_minute_run_stays_under_one_megabyte() {
    let (tmp, dir) = staged();
    let mut lines = Vec::new();
    let mut id = 0;
    let outage = |t: f64| (t % 60.0) > 30.0 && (t % 60.0) < 33.0;
    let mut t = 0.0;
    while t < 600.0 {
        let ns = (t * 1e9) as u64;
        for client in ["probe", "user-0", "user-1", "user-2", "user-3"] {
            if client != "probe" && !((t * 20.0) as u64).is_multiple_of(4) {
                continue;
            }
            id += 1;
            let outcome = if outage(t) { "fail" } else { "ok" };
            lines.push(json!({"type":"op","id":id,"client":client,"kind":if client=="probe"{"probe"}else{"upload"},
                "invoke":ns,"complete":ns+8_000_000,"outcome":outcome}).to_string());
        }
        if (t % 60.0) == 30.0 {
            lines.push(json!({"type":"fault","id":(t/60.0) as u64,"fault":{"kind":"kill","targets":["app1"]},"nodes":["app1"],
                "start":ns,"end":ns+300_000_000,"outcome":"ok"}).to_string());
        }
        t = ((t * 20.0).round() + 1.0) / 20.0;
    }
    std::fs::write(dir.join("history.jsonl"), lines.join("\n")).unwrap();
    let started = std::time::Instant::now();
    let page = render_run(&dir).unwrap();
    let size = std::fs::metadata(&page).unwrap().len();
    println!(
        "{} events rendered to {size} bytes in {:?}",
        lines.len(),
        started.elapsed()
    );
    assert!(size < 1_000_000, "a 10-minute report is {size} bytes");
    drop(tmp);
}

fn phase(kind: &str, name: &str, seconds: f64) -> Phase {
    Phase {
        kind: kind.into(),
        name: name.into(),
        seconds,
    }
}

/// The harness's cost over a suite: CPU summed over the runs that recorded it, the highest peak
/// memory, and the run whose load cost it the most; nothing for runs that recorded none.
#[test]
fn the_harness_cost_is_summed_and_its_busiest_load_named() {
    let run = |scenario: &str, wall: f64, cpu: f64, rss: f64, load: Option<f64>| Results {
        scenario: scenario.into(),
        wall_seconds: wall,
        harness: Some(HarnessUsage {
            cpu_seconds: cpu,
            cores: cpu / wall,
            peak_rss_mib: rss,
            load_cores: load,
        }),
        ..Results::default()
    };
    let runs = [
        run("a", 40.0, 2.0, 100.0, Some(0.08)),
        run("b", 60.0, 3.0, 300.0, Some(0.12)),
        run("c", 100.0, 5.0, 200.0, None),
        Results::default(),
    ];
    let used = harness_usage(&runs).unwrap();
    assert_eq!(used["cpu_seconds"], 10.0);
    assert_eq!(used["cores"], 0.05);
    assert_eq!(used["peak_rss_mib"], 300.0);
    assert_eq!(used["runs"], 3);
    assert_eq!(
        used["busiest_load"],
        json!({ "cores": 0.12, "scenario": "b" })
    );
    assert_eq!(harness_usage(&[Results::default()]), None);
}

/// The suite's time by kind of phase, in a run's order, with the longest single phase and
/// what no phase accounts for; the sign-off page shows it, and a suite of runs saved before
/// phases were recorded shows no such section.
#[test]
fn the_sign_off_page_says_where_the_time_went() {
    let run = |scenario: &str, wall: f64, phases: Vec<Phase>| Results {
        scenario: scenario.into(),
        wall_seconds: wall,
        phases,
        ..Results::default()
    };
    let runs = [
        run(
            "a",
            30.0,
            vec![
                phase("topology", "wave 1/2: db", 5.0),
                phase("topology", "wave 2/2: app1 app2", 3.0),
                phase("step", "step 1: kill", 1.0),
                phase("teardown", "teardown", 2.0),
            ],
        ),
        run("b", 20.0, vec![phase("topology", "wave 1/1: kv", 6.0)]),
    ];
    let rows = time_breakdown(&runs);
    let kinds: Vec<&str> = rows.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["topology", "step", "teardown", "other"]);
    assert_eq!(rows[0]["seconds"], 14.0);
    assert_eq!(rows[0]["longest"], "b: wave 1/1: kv");
    assert_eq!(rows[3]["seconds"], 50.0 - 17.0);
    assert!((rows[0]["share"].as_f64().unwrap() - 14.0 / 50.0).abs() < 1e-9);

    let (tmp, dir) = staged();
    let out = tmp.path().join("suite");
    let page = |dir: &Path| {
        std::fs::read_to_string(render_suite(&[dir.to_path_buf()], &out).unwrap()).unwrap()
    };
    assert!(!page(&dir).contains("Where the time went"));
    let path = dir.join("results.json");
    let mut results: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    results["phases"] = json!([{"kind": "topology", "name": "wave 1/1: db", "seconds": 4.5}]);
    std::fs::write(&path, results.to_string()).unwrap();
    let html = page(&dir).replace("&#x2f;", "/");
    assert!(
        html.contains("Where the time went") && html.contains("wave 1/1: db"),
        "{html}"
    );
}

/// The floor is the runs' own timelines, each weighted by its share of the slots; the wall
/// time runs from the first start to the last end; the sign-off page states both and their
/// ratio.
#[test]
fn the_sign_off_page_sets_the_wall_time_beside_the_floor() {
    let run = |started_at: &str, wall: f64, took: u32, timeline: f64| Results {
        started_at: started_at.into(),
        wall_seconds: wall,
        slots: Some(hadrill_model::Slots { took, of: 2 }),
        phases: vec![
            phase("topology", "wave 1/1: db", 8.0),
            phase("warmup", "warmup", 3.0),
            phase("step", "step 1: kill", timeline - 5.0),
            phase("settle", "settle", 2.0),
            phase("teardown", "teardown", 2.0),
        ],
        ..Results::default()
    };
    // Two beside each other (20 s of timeline each, half the machine), then one alone.
    let runs = [
        run("2026-12-07T10:00:00Z", 40.0, 1, 20.0),
        run("2026-12-07T10:00:02Z", 40.0, 1, 20.0),
        run("2026-12-07T10:00:42Z", 38.0, 2, 30.0),
    ];
    let floor = suite_floor(&runs).unwrap();
    assert_eq!(floor["floor_seconds"], 50.0);
    assert_eq!(floor["wall_seconds"], 80.0);
    assert_eq!(floor["ratio"], 1.6);
    assert_eq!(floor["alone"], 1);
    assert_eq!(suite_floor(&[Results::default()]), None);

    let (tmp, dir) = staged();
    let out = tmp.path().join("suite");
    let path = dir.join("results.json");
    let mut results: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    results["phases"] = json!([{"kind": "step", "name": "step 1: kill", "seconds": 30.0}]);
    results["wall_seconds"] = json!(45.0);
    std::fs::write(&path, results.to_string()).unwrap();
    let html = std::fs::read_to_string(render_suite(&[dir], &out).unwrap()).unwrap();
    assert!(
        html.contains("The suite took <strong>0.8 min</strong>")
            && html.contains("is <strong>0.5 min</strong>: 1.50× the floor"),
        "{html}"
    );
}
