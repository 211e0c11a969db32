//! Self-contained HTML reports from what a run leaves on disk (`results.json`,
//! `history.jsonl`, `logs/`). They depend on those files only, so any run, old or from CI, can
//! be rendered again. No external assets: the pages work offline and as CI artifacts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use hadrill_model::{
    Event, FaultRecord, HarnessUsage, OpKind, OpRecord, Outcome, Results, Role, percentile,
};
use minijinja::{Environment, Value, context};
use serde_json::Value as Json;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid JSON: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("rendering {0}: {1}")]
    Template(&'static str, minijinja::Error),
}

/// One run as found on disk, in the model's types.
pub struct RunData {
    pub dir: PathBuf,
    pub results: Results,
    /// The history's events; a line that is not one (a damaged file) is left out.
    pub events: Vec<Event>,
}

impl RunData {
    pub fn load(dir: &Path) -> Result<RunData, ReportError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|source| ReportError::Read { path, source })
        };
        let path = dir.join("results.json");
        let results = serde_json::from_str(&read("results.json")?)
            .map_err(|source| ReportError::Json { path, source })?;
        let events = read("history.jsonl")?
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        Ok(RunData {
            dir: dir.to_path_buf(),
            results,
            events,
        })
    }

    fn ops(&self) -> impl Iterator<Item = &OpRecord> {
        self.events.iter().filter_map(|e| match e {
            Event::Op(o) => Some(o),
            _ => None,
        })
    }

    fn faults(&self) -> impl Iterator<Item = &FaultRecord> {
        self.events.iter().filter_map(|e| match e {
            Event::Fault(f) => Some(f),
            _ => None,
        })
    }

    /// Seconds on the run's clock of the last thing recorded.
    fn end_s(&self) -> f64 {
        self.events
            .iter()
            .map(|e| match e {
                Event::Op(o) => secs(o.complete),
                Event::Fault(f) => secs(f.end),
                Event::Abort(a) => secs(a.at),
            })
            .fold(1.0, f64::max)
    }
}

fn secs(t: hadrill_model::Stamp) -> f64 {
    t.0 as f64 / 1e9
}

/// The CSS class and word of an outcome.
fn outcome_word(o: Outcome) -> &'static str {
    match o {
        Outcome::Ok => "ok",
        Outcome::Fail => "fail",
        Outcome::Unknown => "unknown",
    }
}

fn env() -> Environment<'static> {
    let mut env = Environment::new();
    env.add_template("run.html", include_str!("../templates/run.html"))
        .expect("run template");
    env.add_template("suite.html", include_str!("../templates/suite.html"))
        .expect("suite template");
    env.add_template("trend.html", include_str!("../templates/trend.html"))
        .expect("trend template");
    env.add_template("style.css", include_str!("../templates/style.css"))
        .expect("style");
    env
}

fn write(path: PathBuf, html: String) -> Result<PathBuf, ReportError> {
    std::fs::write(&path, html).map_err(|source| ReportError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// Renders `<run>/index.html`.
pub fn render_run(dir: &Path) -> Result<PathBuf, ReportError> {
    let run = RunData::load(dir)?;
    let html = run_html(&run, None)?;
    write(dir.join("index.html"), html)
}

/// The HTML of one run's report; `signoff` is the sign-off page to link back to, relative to
/// the run's directory.
pub fn run_html(run: &RunData, signoff: Option<&str>) -> Result<String, ReportError> {
    let r = &run.results;
    let windows = figures(r, "availability")["windows"].clone();
    let users = figures(r, "user-requests");
    let continuity = figures(r, "continuity");
    let db_failovers = figures(r, "failover")["failovers"].clone();
    let reconnections = figures(r, "reconnection")["windows"].clone();
    let logs = log_excerpts(run);
    let hits: Vec<Json> = hadrill_model::hits(&run.events)
        .into_iter()
        .filter_map(|h| {
            let f = run.faults().find(|f| f.id == h.fault)?;
            let mut row = serde_json::to_value(&h).ok()?;
            row["kind"] = f.fault.name().into();
            row["nodes"] = serde_json::json!(f.nodes);
            Some(row)
        })
        .collect();
    let mut files: Vec<String> = std::fs::read_dir(run.dir.join("logs"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| format!("logs/{}", e.file_name().to_string_lossy()))
        .collect();
    files.sort();
    let clocks: Vec<Json> = r
        .host_clocks
        .iter()
        .map(|(host, c)| {
            serde_json::json!({
                "host": host,
                "start": format!("{:+.1} ms (± {:.1})", c.start.offset_ms, c.start.within_ms),
                "end": c.end.map(|e| format!("{:+.1} ms (± {:.1})", e.offset_ms, e.within_ms)),
                "warning": c.warning(),
            })
        })
        .collect();
    env()
        .get_template("run.html")
        .and_then(|t| {
            t.render(context! {
                r => Value::from_serialize(r),
                clocks => Value::from_serialize(&clocks),
                resolution => hadrill_model::CLOCK_RESOLUTION_MS,
                windows => Value::from_serialize(&windows),
                hits => Value::from_serialize(&hits),
                ledger => Value::from_serialize(&continuity),
                db_failovers => Value::from_serialize(&db_failovers),
                reconnections => Value::from_serialize(&reconnections),
                timeline => Value::from_safe_string(timeline_svg(run)),
                probes => Value::from_safe_string(probe_svg(run)),
                users => Value::from_serialize(&users),
                traffic => Value::from_safe_string(traffic_svg(run)),
                logs => Value::from_serialize(&logs),
                files => files,
                has_final => run.dir.join("final.json").is_file(),
                signoff => signoff,
                style => include_str!("../templates/style.css"),
            })
        })
        .map_err(|e| ReportError::Template("run.html", e))
}

/// Renders the sign-off page over the runs of one suite into `<out>/index.html` (and each
/// run's own report, linked from it).
pub fn render_suite(dirs: &[PathBuf], out: &Path) -> Result<PathBuf, ReportError> {
    std::fs::create_dir_all(out).map_err(|source| ReportError::Write {
        path: out.to_path_buf(),
        source,
    })?;
    let mut rows = Vec::new();
    let mut results = Vec::new();
    for dir in dirs {
        let run = RunData::load(dir)?;
        let back = relative(dir, &out.join("index.html"));
        write(dir.join("index.html"), run_html(&run, Some(&back))?)?;
        rows.push(summary_row(&run, out));
        results.push(run.results);
    }
    let verdict = if rows.iter().all(|r| r["verdict"] == "pass") && !rows.is_empty() {
        "pass"
    } else if rows.is_empty()
        || rows
            .iter()
            .any(|r| r["verdict"] == "fail" || r["verdict"] == "error")
    {
        "fail"
    } else {
        "unknown"
    };
    let html = env()
        .get_template("suite.html")
        .and_then(|t| {
            t.render(context! {
                rows => Value::from_serialize(&rows),
                time => Value::from_serialize(time_breakdown(&results)),
                coverage => Value::from_serialize(check_coverage(&results)),
                harness => Value::from_serialize(harness_usage(&results)),
                floor => Value::from_serialize(suite_floor(&results)),
                verdict => verdict,
                style => include_str!("../templates/style.css"),
            })
        })
        .map_err(|e| ReportError::Template("suite.html", e))?;
    write(out.join("index.html"), html)
}

/// Per check that ran in the suite: the negative controls (runs that exist to see it fail)
/// where it failed as it should, and those where it did not. A check no negative control saw
/// fail has never been seen able to fail in this suite, and the page says so.
pub fn check_coverage(results: &[Results]) -> Vec<Json> {
    let mut by_check: BTreeMap<&str, (Vec<&str>, Vec<&str>)> = BTreeMap::new();
    for r in results {
        for c in &r.checks {
            let (caught, missed) = by_check.entry(c.check.as_str()).or_default();
            if c.expected_to_fail {
                if c.verdict == hadrill_model::Verdict::Fail {
                    caught.push(&r.scenario);
                } else {
                    missed.push(&r.scenario);
                }
            }
        }
    }
    by_check
        .into_iter()
        .map(|(check, (caught, missed))| {
            serde_json::json!({
                "check": check,
                "caught": caught,
                "missed": missed,
                "never_seen_failing": caught.is_empty(),
            })
        })
        .collect()
}

/// Where a suite's wall time went: per kind of phase (in the order a run goes through them),
/// its total, its share of the runs' wall time, and its longest single phase; the time no
/// phase accounts for (loading, writing the evidence) as `other`.
pub fn time_breakdown(results: &[Results]) -> Vec<Json> {
    const KINDS: [&str; 11] = [
        "images",
        "topology",
        "prepare",
        "warmup",
        "step",
        "settle",
        "stop",
        "final-read",
        "judging",
        "teardown",
        "rendering",
    ];
    let wall: f64 = results.iter().map(|r| r.wall_seconds).sum();
    let share = |s: f64| if wall > 0.0 { s / wall } else { 0.0 };
    let mut rows = Vec::new();
    let mut accounted = 0.0;
    for kind in KINDS {
        let phases = results
            .iter()
            .flat_map(|r| r.phases.iter().map(move |p| (r, p)))
            .filter(|(_, p)| p.kind == kind);
        let (mut total, mut longest) = (0.0, None::<(f64, String)>);
        for (r, p) in phases {
            total += p.seconds;
            if longest.as_ref().is_none_or(|(s, _)| p.seconds > *s) {
                longest = Some((p.seconds, format!("{}: {}", r.scenario, p.name)));
            }
        }
        let Some((longest_s, longest_what)) = longest else {
            continue;
        };
        accounted += total;
        rows.push(serde_json::json!({
            "kind": kind, "seconds": total, "share": share(total),
            "longest_seconds": longest_s, "longest": longest_what,
        }));
    }
    if !rows.is_empty() {
        let other = (wall - accounted).max(0.0);
        rows.push(serde_json::json!({
            "kind": "other", "seconds": other, "share": share(other),
            "longest_seconds": null, "longest": null,
        }));
    }
    rows
}

/// How close the suite ran to its floor: the sum of the runs' own timelines (warmup, steps,
/// settle — what no speed-up can take away), each weighted by its share of the suite's slots
/// (a run holding one slot of two costs half its timeline; one that needs the machine to
/// itself, all of it), next to the suite's wall time from the first start to the last end.
/// `None` without timed runs.
pub fn suite_floor(results: &[Results]) -> Option<Json> {
    const TIMELINE: [&str; 3] = ["warmup", "step", "settle"];
    let mut floor = 0.0;
    let (mut first, mut last) = (f64::INFINITY, f64::NEG_INFINITY);
    for r in results {
        let timeline: f64 = r
            .phases
            .iter()
            .filter(|p| TIMELINE.contains(&p.kind.as_str()))
            .map(|p| p.seconds)
            .sum();
        let share = r
            .slots
            .map_or(1.0, |s| f64::from(s.took) / f64::from(s.of.max(1)));
        floor += timeline * share;
        let Ok(start) = humantime::parse_rfc3339(&r.started_at) else {
            continue;
        };
        let start = start
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        first = first.min(start);
        last = last.max(start + r.wall_seconds);
    }
    let wall = last - first;
    (wall.is_finite() && wall > 0.0 && floor > 0.0).then(|| {
        serde_json::json!({
            "floor_seconds": floor,
            "wall_seconds": wall,
            "ratio": wall / floor,
            "alone": results.iter().filter(|r| r.slots.is_some_and(|s| s.took > 1)).count(),
            "runs": results.len(),
        })
    })
}

/// What the harness itself used over the runs that recorded it: CPU seconds, the average
/// number of cores busy, and the highest peak memory. `None` when no run recorded it.
pub fn harness_usage(results: &[Results]) -> Option<Json> {
    let used: Vec<(&Results, HarnessUsage)> = results
        .iter()
        .filter_map(|r| r.harness.map(|h| (r, h)))
        .collect();
    if used.is_empty() {
        return None;
    }
    let cpu: f64 = used.iter().map(|(_, h)| h.cpu_seconds).sum();
    let wall: f64 = used.iter().map(|(r, _)| r.wall_seconds).sum();
    let rss = used.iter().map(|(_, h)| h.peak_rss_mib).fold(0.0, f64::max);
    // The run whose load cost the harness the most: where it came closest to a bottleneck.
    let busiest = used
        .iter()
        .filter_map(|(r, h)| h.load_cores.map(|c| (c, r)))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(cores, r)| serde_json::json!({ "cores": cores, "scenario": r.scenario }));
    Some(serde_json::json!({
        "busiest_load": busiest,
        "cpu_seconds": cpu,
        "cores": if wall > 0.0 { cpu / wall } else { 0.0 },
        "peak_rss_mib": rss,
        "runs": used.len(),
    }))
}

/// The figures of the check called `name` in a run's results (null if it did not run).
fn figures(results: &Results, name: &str) -> Json {
    results
        .checks
        .iter()
        .find(|c| c.check == name)
        .map_or(Json::Null, |c| c.figures.clone())
}

/// The budgeted figures the trend page gives distributions of: its label, and how to read a
/// run's worst from its checks' figures (the largest of a list, where a run has several).
const BUDGETED: &[(&str, &str, &str, &str)] = &[
    ("unavailability", "availability", "", "worst_unavailable_ms"),
    ("failover", "failover", "failovers", "first_write_ms"),
    ("reconnect", "reconnection", "windows", "max_ms"),
    ("drain", "drain", "windows", "kept_ms"),
];

/// A run's worst of each budgeted figure it measured, in ms.
fn budgeted(r: &Results) -> serde_json::Map<String, Json> {
    let mut out = serde_json::Map::new();
    for (label, check, list, field) in BUDGETED {
        let f = figures(r, check);
        let worst = if list.is_empty() {
            f[field].as_u64()
        } else {
            f[list]
                .as_array()
                .and_then(|l| l.iter().filter_map(|x| x[field].as_u64()).max())
        };
        if let Some(ms) = worst {
            out.insert(label.to_string(), ms.into());
        }
    }
    out
}

/// Per budgeted figure, its distribution over the runs that measured it: how many, p50, p99
/// and the largest (nearest rank), in ms. What a budget should be set from.
fn distributions(rows: &[Json]) -> Vec<Json> {
    BUDGETED
        .iter()
        .filter_map(|(label, ..)| {
            let mut ms: Vec<u64> = rows
                .iter()
                .filter_map(|r| r["budgeted"][label].as_u64())
                .collect();
            ms.sort_unstable();
            Some(serde_json::json!({
                "figure": label,
                "runs": ms.len(),
                "p50_ms": percentile(&ms, 0.5)?,
                "p99_ms": percentile(&ms, 0.99)?,
                "max_ms": ms.last()?,
            }))
        })
        .collect()
}

fn summary_row(run: &RunData, out: &Path) -> Json {
    let r = &run.results;
    let link = relative(out, &run.dir.join("index.html"));
    serde_json::json!({
        "scenario": r.scenario,
        "topology": r.topology,
        "description": r.description,
        "finding": r.finding,
        // The checks a negative control exists to see fail, with what they measured.
        "expected_failures": r.checks.iter().filter(|c| c.expected_to_fail).map(|c| serde_json::json!({"check": c.check, "verdict": c.verdict, "summary": c.summary})).collect::<Vec<_>>(),
        "verdict": r.verdict,
        "started_at": r.started_at,
        "wall_seconds": r.wall_seconds,
        "checks": r.checks.iter().map(|c| serde_json::json!({"check": c.check, "verdict": c.verdict})).collect::<Vec<_>>(),
        "unavailable_ms": figures(r, "availability")["worst_unavailable_ms"],
        "budgeted": budgeted(r),
        "lost": figures(r, "continuity")["lost"],
        "acknowledged": figures(r, "continuity")["acknowledged"],
        "link": link,
    })
}

/// Renders `<out>/trend.html`: each scenario's verdict and worst unavailability across runs
/// (e.g. the nightly runs kept in one directory), oldest first.
pub fn render_trend(dirs: &[PathBuf], out: &Path) -> Result<PathBuf, ReportError> {
    let mut by_scenario: BTreeMap<String, Vec<Json>> = BTreeMap::new();
    for dir in dirs {
        let Ok(run) = RunData::load(dir) else {
            continue;
        };
        let row = summary_row(&run, out);
        by_scenario
            .entry(row["scenario"].as_str().unwrap_or_default().to_string())
            .or_default()
            .push(row);
    }
    let mut series = Vec::new();
    for (scenario, mut rows) in by_scenario {
        rows.sort_by(|a, b| a["started_at"].as_str().cmp(&b["started_at"].as_str()));
        let spark = sparkline(&rows);
        let passed = rows.iter().filter(|r| r["verdict"] == "pass").count();
        series.push(serde_json::json!({
            "scenario": scenario,
            "passed": passed,
            "pass_rate": passed as f64 / rows.len().max(1) as f64,
            "distributions": distributions(&rows),
            "runs": rows,
            "spark": spark,
        }));
    }
    let html = env()
        .get_template("trend.html")
        .and_then(|t| {
            t.render(context! {
                series => Value::from_serialize(&series),
                style => include_str!("../templates/style.css"),
            })
        })
        .map_err(|e| ReportError::Template("trend.html", e))?;
    write(out.join("trend.html"), html)
}

/// Worst unavailability per run as a small inline SVG (failed runs marked red). A run that did
/// not measure it (no availability check) gets no point: it is not a 0 ms run.
fn sparkline(rows: &[Json]) -> String {
    let measured: Vec<(usize, &Json, f64)> = rows
        .iter()
        .enumerate()
        .filter_map(|(i, r)| Some((i, r, r["unavailable_ms"].as_f64()?)))
        .collect();
    if measured.is_empty() {
        return r#"<span class="muted">not measured</span>"#.to_string();
    }
    let (w, h) = (240.0, 40.0);
    let max = measured.iter().map(|(.., v)| *v).fold(1.0, f64::max);
    let step = w / (rows.len().max(2) - 1) as f64;
    let at = |i: usize, v: f64| (i as f64 * step, h - 4.0 - (v / max) * (h - 8.0));
    let mut svg =
        format!(r#"<svg class="spark" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img">"#);
    let pts: Vec<String> = measured
        .iter()
        .map(|&(i, _, v)| {
            let (x, y) = at(i, v);
            format!("{x:.1},{y:.1}")
        })
        .collect();
    let _ = write!(
        svg,
        r##"<polyline fill="none" stroke="#446" points="{}"/>"##,
        pts.join(" ")
    );
    for &(i, r, v) in &measured {
        let class = r["verdict"].as_str().unwrap_or("unknown");
        let (x, y) = at(i, v);
        let _ = write!(
            svg,
            r#"<circle class="{class}" cx="{x:.1}" cy="{y:.1}" r="3"><title>{}: {} ms</title></circle>"#,
            escape(r["started_at"].as_str().unwrap_or("")),
            v
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The path from `from_dir` to `to`, a file that need not exist yet (its directory must).
fn relative(from_dir: &Path, to: &Path) -> String {
    let target = to
        .parent()
        .and_then(|p| p.canonicalize().ok())
        .zip(to.file_name())
        .map(|(p, f)| p.join(f));
    let (Ok(a), Some(b)) = (from_dir.canonicalize(), target) else {
        return to.display().to_string();
    };
    let common = a
        .components()
        .zip(b.components())
        .take_while(|(x, y)| x == y)
        .count();
    let ups = a.components().count() - common;
    let mut p = PathBuf::new();
    for _ in 0..ups {
        p.push("..");
    }
    for c in b.components().skip(common) {
        p.push(c);
    }
    p.display().to_string()
}

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const W: f64 = 1100.0;
const LEFT: f64 = 110.0;
const ROW: f64 = 16.0;

fn x(t: f64, end: f64) -> f64 {
    LEFT + (t / end).clamp(0.0, 1.0) * (W - LEFT - 10.0)
}

/// The timeline row of an operation: its client; the per-member write probe gets a row per
/// member, so the rows where writes were accepted show which member acted as primary when;
/// simulated agents share a row per kind of operation.
fn lane(o: &OpRecord) -> String {
    match &o.key {
        Some(node) if o.kind == OpKind::WRITE_PROBE => format!("writes to {node}"),
        // Thousands of simulated agents: one row per kind of agent operation.
        _ if o.role == Role::Agent => format!("agents: {}", o.kind),
        _ => o.client.clone(),
    }
}

/// Jepsen-style timeline: fault bands and unavailability windows across, one row per client,
/// each client's operations as spans coloured by outcome. Consecutive operations with the same
/// outcome merge into one span, so a long run stays small.
pub fn timeline_svg(run: &RunData) -> String {
    let end = run.end_s();
    let mut clients: Vec<String> = run.ops().map(lane).collect();
    clients.sort();
    clients.dedup();
    let top = 24.0;
    let height = top + ROW * clients.len() as f64 + 24.0;
    let mut svg = format!(
        r#"<svg class="timeline" width="{W}" height="{height}" viewBox="0 0 {W} {height}" role="img" aria-label="timeline">"#
    );
    // Unavailability windows, from the availability check.
    let windows = figures(&run.results, "availability")["windows"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for w in &windows {
        // From where the worst window began (older results: the fault's start).
        let from = w["from_s"].as_f64().or(w["start_s"].as_f64());
        let (Some(s), Some(ms)) = (from, w["unavailable_ms"].as_f64()) else {
            continue;
        };
        if ms <= 0.0 {
            continue;
        }
        let _ = write!(
            svg,
            r#"<rect class="outage" x="{:.1}" y="{top}" width="{:.1}" height="{:.1}"><title>unavailable {ms} ms after {}{}</title></rect>"#,
            x(s, end),
            (x(s + ms / 1000.0, end) - x(s, end)).max(1.0),
            height - top - 24.0,
            escape(w["kind"].as_str().unwrap_or("")),
            w["path"]
                .as_str()
                .map(|p| format!(" (`{}`)", escape(p)))
                .unwrap_or_default()
        );
    }
    for f in run.faults() {
        let (s, e) = (secs(f.start), secs(f.end));
        let kind = f.fault.name();
        let nodes = f.nodes.join(",");
        let label = escape(&format!("{kind} {nodes}"));
        let _ = write!(
            svg,
            r#"<rect class="fault" x="{:.1}" y="0" width="{:.1}" height="{:.1}"><title>{label} at {s:.3}s, took {:.3}s</title></rect><text class="fault-label" x="{:.1}" y="12">{label}</text>"#,
            x(s, end),
            (x(e, end) - x(s, end)).max(2.0),
            height - 24.0,
            e - s,
            x(s, end) + 3.0
        );
    }
    for (row, client) in clients.iter().enumerate() {
        let y = top + ROW * row as f64;
        let _ = write!(
            svg,
            r#"<text class="client" x="4" y="{:.1}">{}</text>"#,
            y + 11.0,
            escape(client)
        );
        let mut ops: Vec<&OpRecord> = run.ops().filter(|o| lane(o) == *client).collect();
        ops.sort_by_key(|o| o.invoke);
        let gap = (end / 100.0).max(1.0);
        let mut i = 0;
        while i < ops.len() {
            let outcome = outcome_word(ops[i].outcome);
            let start = secs(ops[i].invoke);
            let mut stop = secs(ops[i].complete);
            let mut n = 1;
            let mut errors = BTreeMap::<String, usize>::new();
            while i + n < ops.len()
                && ops[i + n].outcome == ops[i].outcome
                && secs(ops[i + n].invoke) - stop < gap
            {
                stop = stop.max(secs(ops[i + n].complete));
                if let Some(e) = &ops[i + n].error {
                    *errors.entry(e.clone()).or_default() += 1;
                }
                n += 1;
            }
            if let Some(e) = &ops[i].error {
                *errors.entry(e.clone()).or_default() += 1;
            }
            let why: Vec<String> = errors.iter().map(|(e, c)| format!("{c}× {e}")).collect();
            let _ = write!(
                svg,
                r#"<rect class="{outcome}" x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}"><title>{}: {n} {outcome} op(s), {start:.2}s–{stop:.2}s {}</title></rect>"#,
                x(start, end),
                y + 2.0,
                (x(stop, end) - x(start, end)).max(1.5),
                ROW - 4.0,
                escape(client),
                escape(&why.join("; "))
            );
            i += n;
        }
    }
    axis(&mut svg, end, height - 20.0);
    svg.push_str("</svg>");
    svg
}

fn axis(svg: &mut String, end: f64, y: f64) {
    // At most 12 ticks, whatever the run's length (a damaged history may claim years).
    let step = [1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0]
        .into_iter()
        .find(|s| end / s <= 12.0)
        .unwrap_or_else(|| (end / 12.0 / 600.0).ceil() * 600.0);
    let mut t = 0.0;
    while t <= end {
        let _ = write!(
            svg,
            r#"<line class="tick" x1="{0:.1}" x2="{0:.1}" y1="0" y2="{y}"/><text class="tick" x="{0:.1}" y="{1:.1}">{t}s</text>"#,
            x(t, end),
            y + 14.0
        );
        t += step;
    }
}

/// Where the users' requests went: one row per server that answered (as the workload recorded it), one
/// column per time bucket of the `user-requests` check. A column's height is the server's share
/// of that bucket's requests, stacked by outcome, so a server kept in rotation while failing
/// shows as a run of red columns. Fault bands across, as on the timeline.
pub fn traffic_svg(run: &RunData) -> String {
    let traffic = &figures(&run.results, "user-requests")["traffic"];
    let Some(buckets) = traffic["buckets"].as_array().filter(|b| !b.is_empty()) else {
        return String::new();
    };
    let bucket_s = traffic["bucket_s"].as_f64().unwrap_or(1.0).max(1.0);
    let end = run.end_s();
    let mut servers: Vec<String> = buckets
        .iter()
        .filter_map(|b| b["servers"].as_object())
        .flat_map(|m| m.keys().cloned())
        .collect();
    servers.sort();
    servers.dedup();
    let (top, row) = (20.0, 40.0);
    let height = top + row * servers.len() as f64 + 24.0;
    let mut svg = format!(
        r#"<svg class="traffic" width="{W}" height="{height}" viewBox="0 0 {W} {height}" role="img" aria-label="user requests per server over time">"#
    );
    for f in run.faults() {
        let (s, e) = (secs(f.start), secs(f.end));
        let kind = escape(f.fault.name());
        let _ = write!(
            svg,
            r#"<rect class="fault" x="{:.1}" y="0" width="{:.1}" height="{:.1}"/><text class="fault-label" x="{:.1}" y="12">{kind}</text>"#,
            x(s, end),
            (x(e, end) - x(s, end)).max(2.0),
            height - 24.0,
            x(s, end) + 3.0
        );
    }
    for (i, server) in servers.iter().enumerate() {
        let base = top + row * (i as f64 + 1.0) - 4.0;
        let _ = write!(
            svg,
            r#"<text class="client" x="4" y="{:.1}">{}</text><line class="tick" x1="{LEFT}" x2="{:.1}" y1="{base:.1}" y2="{base:.1}"/>"#,
            base - 12.0,
            escape(server),
            W - 10.0
        );
        for b in buckets {
            let t = b["t_s"].as_f64().unwrap_or(0.0);
            let all: f64 = b["servers"]
                .as_object()
                .map(|m| {
                    m.values()
                        .filter_map(|c| c.as_object())
                        .flat_map(|c| c.values())
                        .filter_map(|n| n.as_f64())
                        .sum()
                })
                .unwrap_or(0.0);
            let mine = &b["servers"][server.as_str()];
            if all <= 0.0 || !mine.is_object() {
                continue;
            }
            let width = (x(t + bucket_s, end) - x(t, end) - 1.0).max(1.0);
            let mut y = base;
            let mut parts = Vec::new();
            for (class, label) in [
                ("ok", "ok"),
                ("fail", "failed"),
                ("unknown", "unknown"),
                ("expected", "expected rejections"),
            ] {
                let n = mine[class].as_f64().unwrap_or(0.0);
                if n <= 0.0 {
                    continue;
                }
                parts.push(format!("{n} {label}"));
                let h = n / all * (row - 8.0);
                y -= h;
                let _ = write!(
                    svg,
                    r#"<rect class="{class}" x="{:.1}" y="{y:.1}" width="{width:.1}" height="{h:.1}"/>"#,
                    x(t, end)
                );
            }
            let _ = write!(
                svg,
                r#"<rect class="hover" x="{:.1}" y="{:.1}" width="{width:.1}" height="{:.1}"><title>{}: {t:.0}–{:.0} s, {} of {all} requests: {}</title></rect>"#,
                x(t, end),
                base - (row - 8.0),
                row - 8.0,
                escape(server),
                t + bucket_s,
                mine.as_object()
                    .map_or(0.0, |c| c.values().filter_map(|n| n.as_f64()).sum::<f64>()),
                parts.join(", ")
            );
        }
    }
    axis(&mut svg, end, height - 20.0);
    svg.push_str("</svg>");
    svg
}

/// Probe latency (p50 and max per bucket) and success rate over time.
pub fn probe_svg(run: &RunData) -> String {
    let end = run.end_s();
    let buckets = 200usize;
    let mut lat: Vec<Vec<f64>> = vec![Vec::new(); buckets];
    let mut total = vec![0usize; buckets];
    let mut ok = vec![0usize; buckets];
    for o in run.ops().filter(|o| o.kind == OpKind::PROBE) {
        let t = secs(o.invoke);
        let b = ((t / end) * buckets as f64).min(buckets as f64 - 1.0) as usize;
        total[b] += 1;
        if o.outcome == Outcome::Ok {
            ok[b] += 1;
            lat[b].push(o.complete.since(o.invoke).as_secs_f64() * 1e3);
        }
    }
    let h = 140.0;
    let max_ms = lat.iter().flatten().copied().fold(1.0, f64::max);
    let mut svg = format!(
        r#"<svg class="probes" width="{W}" height="{}" viewBox="0 0 {W} {}" role="img" aria-label="probe latency and success">"#,
        h + 24.0,
        h + 24.0
    );
    let mut p50 = Vec::new();
    let mut rate = Vec::new();
    for b in 0..buckets {
        let t = (b as f64 + 0.5) / buckets as f64 * end;
        if total[b] == 0 {
            continue;
        }
        rate.push(format!(
            "{:.1},{:.1}",
            x(t, end),
            h - (ok[b] as f64 / total[b] as f64) * (h - 10.0)
        ));
        if !lat[b].is_empty() {
            lat[b].sort_by(f64::total_cmp);
            let m = lat[b][lat[b].len() / 2];
            p50.push(format!(
                "{:.1},{:.1}",
                x(t, end),
                h - (m / max_ms) * (h - 10.0)
            ));
        }
    }
    let _ = write!(
        svg,
        r#"<polyline class="rate" points="{}"><title>success rate (top = 100 %)</title></polyline><polyline class="latency" points="{}"><title>p50 latency (top = {max_ms:.0} ms)</title></polyline><text class="tick" x="4" y="12">100 % / {max_ms:.0} ms</text>"#,
        rate.join(" "),
        p50.join(" ")
    );
    axis(&mut svg, end, h + 4.0);
    svg.push_str("</svg>");
    svg
}

/// Log lines of each fault's nodes from 2 s before to 5 s after it, at most 30 per node.
fn log_excerpts(run: &RunData) -> Vec<Json> {
    let origin_ms = run.results.clock_origin_unix_ms;
    let mut out = Vec::new();
    for f in run.faults() {
        let at_ms = origin_ms.saturating_add(f.start.as_duration().as_millis() as u64);
        for node in &f.nodes {
            let Ok(text) =
                std::fs::read_to_string(run.dir.join("logs").join(format!("{node}.log")))
            else {
                continue;
            };
            let lines: Vec<&str> = text
                .lines()
                .filter(|l| {
                    let ts = l.split_whitespace().next().unwrap_or("");
                    humantime::parse_rfc3339(ts)
                        .ok()
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .is_some_and(|d| {
                            let ms = d.as_millis() as u64;
                            ms.saturating_add(2000) >= at_ms && ms <= at_ms.saturating_add(5000)
                        })
                })
                .take(30)
                .collect();
            out.push(serde_json::json!({
                "fault": f.id, "kind": f.fault.name(), "node": node,
                "lines": lines.join("\n"), "log": format!("logs/{node}.log"),
            }));
        }
    }
    out
}
