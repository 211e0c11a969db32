//! `services`: background services; here the historian, rolling up uploads per time slot.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use hadrill_sut::config::{Config, Fixture};
use hadrill_sut::{db, hostname, init_logging, schedule, shutdown_signal};

#[derive(Parser)]
#[command(name = "services", about = "hadrill reference product: services node")]
struct Cli {
    #[arg(long)]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() {
    init_logging();
    let cli = Cli::parse();
    let config = Config::load_or_exit("services", cli.config.as_deref());
    let pool = match db::connect(&config.database) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("services: {e}");
            std::process::exit(1);
        }
    };
    let node = hostname();
    tracing::info!(
        "services {node}: historian every {} s",
        schedule::SLOT_SECONDS
    );
    let run = async {
        loop {
            let pass = async {
                let client = pool.get().await?;
                let local_now = (config.fixture == Fixture::LocalClock).then(|| {
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_secs_f64()
                });
                anyhow::Ok(schedule::catch_up(&client, &node, local_now).await?)
            };
            match pass.await {
                Ok(slots) if !slots.is_empty() => tracing::info!("rolled up slots {slots:?}"),
                Ok(_) => {}
                Err(e) => tracing::warn!("historian pass failed: {e:#}"),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    tokio::select! {
        _ = run => {}
        _ = shutdown_signal() => tracing::info!("stopped cleanly"),
    }
}
