//! The README's main command, run as a user runs it: `hadrill run` through the binary. It must
//! write every run's report, the sign-off page and the trend page, carry on past a scenario
//! that cannot run, show it as `error`, and exit non-zero.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use hadrill::model::Verdict;
use hadrill::scenario::{self, Results};

fn fixture(name: &str) -> String {
    common::root()
        .join("harness/tests/fixtures/cli")
        .join(name)
        .display()
        .to_string()
}

/// `hadrill run <scenario files>` as a user runs it, into a fresh runs directory under
/// `target/test-runs/<group>`; returns that directory and what the command printed.
fn hadrill_run(group: &str, scenarios: &[&str]) -> (PathBuf, std::process::Output) {
    let (runs, mut command) = hadrill_run_command(group, scenarios);
    (runs, command.output().unwrap())
}

/// The command of `hadrill_run`, not yet started, and its fresh runs directory.
fn hadrill_run_command(group: &str, scenarios: &[&str]) -> (PathBuf, Command) {
    let runs = common::root()
        .join("target/test-runs")
        .join(group)
        .join(format!(
            "{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
        ));
    std::fs::create_dir_all(&runs).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_hadrill"));
    command
        .arg("run")
        .args(scenarios.iter().map(|s| fixture(s)))
        .env("HADRILL_RUNS_DIR", &runs)
        .env("HADRILL_ROOT", common::root());
    (runs, command)
}

/// A page's text with the escaped `/` of its links decoded, as a browser reads them.
fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .replace("&#x2f;", "/")
}

/// A first Ctrl-C during a scenario's steps stops the faults, heals, judges what was recorded
/// and marks the run aborted; the suite runs no further scenario, and nothing is left behind.
#[test]
fn a_first_ctrl_c_aborts_the_scenario_judges_it_and_runs_no_other() {
    let (runs, mut command) = hadrill_run_command("interrupt", &["interrupted.toml", "quick.toml"]);
    // One at a time, so the second scenario is still waiting when the interrupt comes.
    let child = command
        .args(["--jobs", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once the workload has recorded a few seconds of operations: mid-steps. On a
    // fresh machine the run first builds the product's image (minutes on 2 cores), so the bound
    // is generous: it only keeps a run that never starts from hanging the suite.
    let started = std::time::Instant::now();
    let history = loop {
        assert!(
            started.elapsed().as_secs() < 600,
            "the run never got going in 10 minutes"
        );
        let found = std::fs::read_dir(&runs).unwrap().flatten().find_map(|d| {
            let h = d.path().join("history.jsonl");
            (std::fs::metadata(&h).is_ok_and(|m| m.len() > 20_000)).then_some(h)
        });
        if let Some(h) = found {
            break h;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    };
    std::thread::sleep(std::time::Duration::from_secs(3));
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
        rustix::process::Signal::INT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!(
        "{}\n--- stderr ---\n{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!out.status.success(), "an aborted run cannot pass");
    assert!(stderr.contains("1 scenario(s) not run"), "{stderr}");
    let run_dir = history.parent().unwrap();
    let r: Results = scenario::load_results(run_dir).unwrap();
    assert_eq!(r.verdict, Verdict::Unknown, "{}", r.summary());
    assert_eq!(r.aborted.as_deref(), Some("interrupted (Ctrl-C)"));
    assert!(
        r.faults.iter().all(|f| f.fault.name() != "kill"),
        "no fault after the abort"
    );
    assert!(
        std::fs::read_to_string(&history)
            .unwrap()
            .contains("\"type\":\"abort\"")
    );
    let run_dirs = std::fs::read_dir(&runs)
        .unwrap()
        .flatten()
        .filter(|d| d.path().join("results.json").is_file())
        .count();
    assert_eq!(run_dirs, 1, "the second scenario did not run");
    let ps = Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=io.hadrill.run={}", r.run_id),
        ])
        .output()
        .unwrap();
    assert!(ps.stdout.is_empty(), "containers left behind");
}

#[test]
fn run_writes_the_pages_and_carries_on_past_scenarios_that_cannot_run() {
    let (runs, out) = hadrill_run("cli", &["cannot-start.toml", "bad-file.toml", "quick.toml"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}\n--- stderr ---\n{stderr}");
    assert!(
        !out.status.success(),
        "two scenarios could not run: exit must be non-zero"
    );
    // Not a terminal: no colour codes in what a CI log keeps.
    assert!(
        !stdout.contains('\x1b') && !stderr.contains('\x1b'),
        "ANSI escapes in piped output"
    );

    // The sign-off page's path is the last line printed.
    let last = stdout.lines().last().unwrap_or_default();
    let signoff = PathBuf::from(
        last.strip_prefix("sign-off page: ")
            .unwrap_or_else(|| panic!("last line is not the sign-off page: {last}")),
    );
    let suite = signoff.parent().unwrap();
    let signoff_html = read(&signoff);
    let trend_html = read(&suite.join("trend.html"));
    assert!(signoff_html.contains(r#"href="trend.html""#));
    assert!(trend_html.contains(r#"href="index.html""#));

    // Every scenario has a run directory with its results and its page, linked both ways.
    let results: Vec<Results> = std::fs::read_dir(&runs)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("results.json").is_file())
        .map(|p| scenario::load_results(&p).unwrap())
        .collect();
    let by_name = |name: &str| {
        results
            .iter()
            .find(|r| r.scenario == name)
            .unwrap_or_else(|| panic!("no results for {name}"))
    };
    for r in &results {
        let page = read(&r.run_dir.join("index.html"));
        assert!(
            page.contains("sign-off page"),
            "{} does not link back",
            r.scenario
        );
        let link = format!(
            "{}/index.html",
            r.run_dir.file_name().unwrap().to_string_lossy()
        );
        assert!(signoff_html.contains(&link), "sign-off page lacks {link}");
        assert!(trend_html.contains(&link), "trend page lacks {link}");
    }
    assert_eq!(results.len(), 3, "{results:#?}");

    let cannot_start = by_name("cannot-start");
    assert_eq!(cannot_start.verdict, Verdict::Error);
    let why = cannot_start.error.as_deref().unwrap();
    assert!(why.contains("dies"), "{why}");
    assert!(
        read(&cannot_start.run_dir.join("logs/dies.log"))
            .contains("cannot open /etc/product/config"),
        "the failed node's log is kept"
    );
    let bad = by_name("bad-file");
    assert_eq!(bad.verdict, Verdict::Error);
    let why = bad.error.as_deref().unwrap();
    assert!(
        why.contains("bad-file.toml:3:1") && why.contains("warmpu"),
        "{why}"
    );

    // The real scenario ran after both, passed, and its verdict is reproduced offline.
    let quick = by_name("quick");
    assert_eq!(quick.verdict, Verdict::Pass, "{}", quick.summary());
    assert!(read(&quick.run_dir.join("index.html")).contains("hadrill check"));
    let recheck = scenario::recheck(&quick.run_dir).unwrap();
    assert!(recheck.differences.is_empty(), "{:?}", recheck.differences);
    let check = Command::new(env!("CARGO_BIN_EXE_hadrill"))
        .arg("check")
        .arg(&quick.run_dir)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{printed}");
    assert!(
        printed.contains("same verdicts as results.json"),
        "{printed}"
    );
    for c in &quick.checks {
        assert!(printed.contains(&c.check), "{printed}");
    }

    for line in ["cannot-start", "bad-file", "quick"] {
        assert!(signoff_html.contains(line), "sign-off page lacks {line}");
    }
    assert!(signoff_html.contains("verdict error"));
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The secret the fixture's node printed disguised (`tr 0-9a-f g-v`), undone.
fn disguised_secret(log: &str) -> String {
    let word = log
        .lines()
        .find_map(|l| l.split_once("disguised ").map(|(_, w)| w))
        .expect("the node printed its disguised secret")
        .trim();
    assert_eq!(word.len(), 64, "a run's secret is 64 hex digits: {word}");
    word.chars()
        .map(|c| match c {
            'g'..='v' => char::from(b"0123456789abcdef"[usize::from(c as u8 - b'g')]),
            other => panic!("not a disguised hex digit: {other}"),
        })
        .collect()
}

#[test]
fn a_secret_the_product_prints_reaches_no_kept_artifact() {
    let (runs, out) = hadrill_run("cli-secrets", &["leaks-a-secret.toml"]);
    let terminal = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{terminal}");
    assert!(!out.status.success(), "the node cannot start");
    let kept = files(&runs);
    let log = kept
        .iter()
        .find(|p| p.ends_with("logs/careless.log"))
        .expect("the node's log is kept");
    assert!(
        read(log).contains("my secret is [redacted secret]"),
        "the log shows the redaction (else this test proves nothing): {}",
        read(log)
    );
    let secret = disguised_secret(&read(log));
    assert!(!terminal.contains(&secret), "a secret on the terminal");
    for path in &kept {
        let text = String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned();
        assert!(!text.contains(&secret), "a secret in {}", path.display());
        assert!(
            !path.components().any(|c| c.as_os_str() == "config"),
            "staged config (secrets filled in) kept in the run directory: {}",
            path.display()
        );
    }
    let results = kept
        .iter()
        .find(|p| p.ends_with("results.json"))
        .expect("results.json");
    assert!(
        read(results).contains("[redacted secret]"),
        "the error's log tail is redacted too"
    );
}
