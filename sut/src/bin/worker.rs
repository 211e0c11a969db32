//! `worker`: analyses uploaded traces from the Redis Stream, at least once, with an idempotent
//! result; takes over the jobs of a worker that died. The jobs it holds are listed in
//! `/tmp/worker.in-flight`, one per line, so a drill can see what a fault on it hits.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::future::join_all;
use hadrill_sut::config::{Config, Fixture};
use hadrill_sut::queue::{Job, Queue};
use hadrill_sut::storage::Storage;
use hadrill_sut::{RETRY_PAUSE, analysis, db, hostname, init_logging, shutdown_signal};

/// A job read but not acknowledged for this long belongs to a dead worker.
const CLAIM_AFTER: Duration = Duration::from_secs(10);
const CLAIM_EVERY: Duration = Duration::from_secs(2);
const READY_FILE: &str = "/tmp/worker.ready";
const IN_FLIGHT_FILE: &str = "/tmp/worker.in-flight";
/// A worker that acknowledges early stops listing a job this long before it commits, so a kill
/// aimed at a listed job lands before the commit although the engine takes a while to deliver
/// it (180 ms measured; once, two listed jobs committed inside that delay and the negative
/// control saw nothing lost).
const AIM_MARGIN: Duration = Duration::from_millis(500);

#[derive(Parser)]
#[command(name = "worker", about = "hadrill reference product: analysis worker")]
struct Cli {
    #[arg(long)]
    config: Option<PathBuf>,
}

struct Worker {
    pool: deadpool_postgres::Pool,
    storage: Storage,
    queue: Queue,
    name: String,
    ms_per_mib: u64,
    fixture: Fixture,
    in_flight: Mutex<BTreeSet<i64>>,
}

#[tokio::main]
async fn main() {
    init_logging();
    let cli = Cli::parse();
    let config = Config::load_or_exit("worker", cli.config.as_deref());
    if let Err(e) = run(config).await {
        eprintln!("worker: {e:#}");
        std::process::exit(1);
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let w = Worker {
        pool: db::connect(&config.database)?,
        storage: Storage::connect(&config.s3)?,
        queue: Queue::connect(&config.redis).await?,
        name: hostname(),
        ms_per_mib: config.analysis_ms_per_mib,
        fixture: config.fixture,
        in_flight: Mutex::new(BTreeSet::new()),
    };
    // A restarted container keeps /tmp: the list starts empty with the process.
    std::fs::write(IN_FLIGHT_FILE, "")?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        flag.store(true, Ordering::Relaxed);
    });
    while let Err(e) = w.queue.ensure_group().await {
        tracing::warn!("cannot create the consumer group yet: {e}");
        tokio::time::sleep(RETRY_PAUSE).await;
    }
    tracing::info!("worker {} consuming", w.name);
    // Readiness for the topology's health check: this worker has joined the consumer group.
    std::fs::write(READY_FILE, &w.name)?;
    let mut last_claim = Instant::now() - CLAIM_EVERY;
    while !stop.load(Ordering::Relaxed) {
        let jobs = if last_claim.elapsed() >= CLAIM_EVERY {
            last_claim = Instant::now();
            w.queue.claim_stale(&w.name, CLAIM_AFTER).await
        } else {
            w.queue.read(&w.name, Duration::from_secs(1)).await
        };
        match jobs {
            // A batch's jobs are analysed side by side, as a worker with several cores would.
            Ok(jobs) => {
                join_all(jobs.iter().map(|job| w.process_logged(job))).await;
            }
            Err(e) => {
                tracing::warn!("queue unavailable: {e}");
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
    tracing::info!("stopped cleanly");
    Ok(())
}

impl Worker {
    async fn process_logged(&self, job: &Job) {
        // A worker that acknowledges early lists a job from its acknowledgement until
        // AIM_MARGIN before its commit: the window in which a kill loses it, which is what its
        // negative control aims at.
        if self.fixture != Fixture::AckBeforeCommit {
            self.hold(job.trace_id, true);
        }
        if let Err(e) = self.process(job).await {
            // Left pending: claimed again after CLAIM_AFTER.
            tracing::warn!("job {} (trace {}) failed: {e:#}", job.entry, job.trace_id);
        }
        self.hold(job.trace_id, false);
    }

    /// Adds or removes a job from the in-flight list and rewrites its file whole (a rename,
    /// so a reader never sees half of it).
    fn hold(&self, trace_id: i64, held: bool) {
        let mut jobs = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        if held {
            jobs.insert(trace_id);
        } else {
            jobs.remove(&trace_id);
        }
        let text: String = jobs.iter().map(|id| format!("trace {id}\n")).collect();
        let tmp = format!("{IN_FLIGHT_FILE}.tmp");
        if let Err(e) =
            std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, IN_FLIGHT_FILE))
        {
            tracing::warn!("cannot write {IN_FLIGHT_FILE}: {e}");
        }
    }

    async fn process(&self, job: &Job) -> anyhow::Result<()> {
        let mut client = self.pool.get().await?;
        let Some(expected) = analysis::expected_sha256(&client, job.trace_id).await? else {
            // The upload was rolled back after its job was queued: nothing to analyse.
            self.queue.ack(&job.entry).await?;
            return Ok(());
        };
        let content = self.storage.get_bytes(&job.object_key).await?;
        if self.fixture == Fixture::AckBeforeCommit {
            self.queue.ack(&job.entry).await?;
            self.hold(job.trace_id, true);
        }
        let result = analysis::analyse(&content, &expected);
        let pace =
            Duration::from_millis(self.ms_per_mib.saturating_mul(content.len() as u64) / (1 << 20));
        if self.fixture == Fixture::AckBeforeCommit {
            let listed = pace.saturating_sub(AIM_MARGIN);
            tokio::time::sleep(listed).await;
            self.hold(job.trace_id, false);
            tokio::time::sleep(pace - listed).await;
        } else {
            tokio::time::sleep(pace).await;
        }
        let wrote = analysis::record(&mut client, job.trace_id, &result, &self.name).await?;
        // Acknowledge only once the result is committed: at-least-once delivery.
        if self.fixture != Fixture::AckBeforeCommit {
            self.queue.ack(&job.entry).await?;
        }
        tracing::info!(
            "trace {} analysed ({} lines, digest ok: {}){}",
            job.trace_id,
            result.lines,
            result.sha256_ok,
            if wrote { "" } else { " - already had a result" }
        );
        Ok(())
    }
}
