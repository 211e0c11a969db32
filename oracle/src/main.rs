//! `hadrill-oracle`: probes one endpoint at a fixed rate, each probe on its own so that a
//! hanging one never delays the next, and prints `<unix ms> ok|fail` per probe. It stops when
//! its standard input closes or after `--for`. Its code is its own: it is the independent
//! measurement hadrill's availability and failover figures are checked against.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use hadrill_oracle::Sample;
use tokio::io::AsyncReadExt;
use tokio::task::JoinSet;

#[derive(Parser)]
#[command(about = "Probe an endpoint at a fixed rate and print each probe's outcome")]
struct Cli {
    /// Probes per second.
    #[arg(long, default_value_t = 100.0)]
    hz: f64,
    /// Stop after this long even if standard input stays open.
    #[arg(long = "for", default_value = "10m", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// How long a probe may take before it counts as failed.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    #[command(subcommand)]
    target: Target,
}

#[derive(Subcommand, Clone)]
enum Target {
    /// GET a URL: up when it answers 2xx.
    Http { url: String },
    /// INSERT a row through a PostgreSQL endpoint (password in PGPASSWORD): up when it commits.
    Sql {
        /// host:port
        addr: String,
        #[arg(long)]
        user: String,
        #[arg(long)]
        db: String,
    },
}

type Pool = Arc<Mutex<Vec<tokio_postgres::Client>>>;
/// One probe under way: whether it succeeded.
type Probe = std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>;

#[tokio::main]
async fn main() -> Result<(), String> {
    let cli = Cli::parse();
    let probe: Arc<dyn Fn() -> Probe + Send + Sync> = match cli.target.clone() {
        Target::Http { url } => {
            let http = reqwest::Client::builder()
                .timeout(cli.timeout)
                .build()
                .map_err(|e| e.to_string())?;
            Arc::new(move || {
                let (http, url) = (http.clone(), url.clone());
                Box::pin(async move {
                    http.get(&url)
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success())
                })
            })
        }
        Target::Sql { addr, user, db } => {
            let (host, port) = addr
                .rsplit_once(':')
                .ok_or_else(|| format!("`{addr}` is not host:port"))?;
            let mut cfg = tokio_postgres::Config::new();
            cfg.host(host)
                .port(port.parse().map_err(|_| format!("bad port in `{addr}`"))?)
                .user(&user)
                .dbname(&db)
                .password(std::env::var("PGPASSWORD").unwrap_or_default())
                .connect_timeout(cli.timeout);
            create_table(&cfg, cli.timeout).await?;
            let pool: Pool = Arc::default();
            let timeout = cli.timeout;
            Arc::new(move || {
                let (cfg, pool) = (cfg.clone(), pool.clone());
                Box::pin(insert(cfg, pool, timeout))
            })
        }
    };
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / cli.hz.max(1.0)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut stdin_closed = Box::pin(async {
        let mut sink = [0u8; 256];
        let mut stdin = tokio::io::stdin();
        while stdin.read(&mut sink).await.is_ok_and(|n| n > 0) {}
    });
    let deadline = tokio::time::sleep(cli.duration);
    tokio::pin!(deadline);
    let mut probes = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stdin_closed => break,
            _ = &mut deadline => break,
            _ = tick.tick() => {}
        }
        let sent_unix_ms = unix_ms();
        let probe = probe.clone();
        probes.spawn(async move {
            let ok = probe().await;
            let answered_unix_ms = unix_ms();
            let sample = Sample {
                sent_unix_ms,
                ok,
                answered_unix_ms,
            };
            println!("{}", sample.line());
        });
        while probes.try_join_next().is_some() {}
    }
    while probes.join_next().await.is_some() {}
    Ok(())
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The probe table, made once before probing so that no probe races another to create it.
async fn create_table(cfg: &tokio_postgres::Config, timeout: Duration) -> Result<(), String> {
    let mut last = String::new();
    for _ in 0..20 {
        match connect(cfg, timeout).await {
            Ok(c) => match c
                .batch_execute("CREATE TABLE IF NOT EXISTS hadrill_oracle (sent bigint)")
                .await
            {
                Ok(()) => return Ok(()),
                Err(e) => last = e.to_string(),
            },
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(format!("could not create the probe table: {last}"))
}

async fn connect(
    cfg: &tokio_postgres::Config,
    timeout: Duration,
) -> Result<tokio_postgres::Client, String> {
    let (client, conn) = tokio::time::timeout(timeout, cfg.connect(tokio_postgres::NoTls))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(client)
}

/// One insert on a pooled connection, or a new one if none is idle; a connection that fails
/// is dropped, one that succeeds goes back to the pool.
async fn insert(cfg: tokio_postgres::Config, pool: Pool, timeout: Duration) -> bool {
    let idle = pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
    let attempt = async {
        let client = match idle {
            Some(c) => c,
            None => connect(&cfg, timeout).await.ok()?,
        };
        let sent = unix_ms() as i64;
        client
            .execute("INSERT INTO hadrill_oracle (sent) VALUES ($1)", &[&sent])
            .await
            .ok()?;
        Some(client)
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Some(client)) => {
            pool.lock().unwrap_or_else(|e| e.into_inner()).push(client);
            true
        }
        _ => false,
    }
}
