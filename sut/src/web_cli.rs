//! `web`'s command line: the app server (`web serve`), the install steps
//! (`web database init|migrate`) and the upgrade procedure's switch (`web maintenance`). Both
//! releases' binaries (`web`, `web-next`) are this, each with its own `Release`.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config::Config;
use crate::queue::Queue;
use crate::release::Release;
use crate::web::App;
use crate::{db, init_logging, shutdown_signal};

#[derive(Parser)]
#[command(name = "web", about = "hadrill reference product: web process")]
struct Cli {
    /// KEY=VALUE config file (the environment overrides it).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP.
    Serve {
        /// Address to serve on; repeat it to serve on several (the guides' API and UI ports).
        #[arg(long, default_values_t = ["0.0.0.0:8080".to_string()])]
        listen: Vec<String>,
        /// After SIGTERM, keep serving this long with /readyz failing, so the load balancer
        /// takes this server out before it stops accepting.
        #[arg(long, default_value_t = 1000)]
        drain_ms: u64,
    },
    /// Install steps, run once on one VM.
    Database {
        #[command(subcommand)]
        action: DatabaseAction,
    },
    /// Pause uploads on every app server at once (reads go on), e.g. for an upgrade.
    Maintenance {
        #[command(subcommand)]
        action: MaintenanceAction,
    },
}

#[derive(Subcommand)]
enum DatabaseAction {
    /// Create the schema on a new install.
    Init,
    /// Apply the migrations an upgrade brings.
    Migrate,
}

#[derive(Subcommand)]
enum MaintenanceAction {
    /// Refuse uploads with 503 and Retry-After.
    On,
    /// Accept uploads again.
    Off,
    /// Print `maintenance on` or `maintenance off`.
    Status,
}

/// The `web` binary of `release`.
pub fn main(release: Release) {
    init_logging();
    let matches = Cli::command().version(release.version()).get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let config = Config::load_or_exit("web", cli.config.as_deref());
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    if let Err(e) = runtime.block_on(run(cli.command, config, release)) {
        eprintln!("web: {e:#}");
        std::process::exit(1);
    }
}

async fn run(command: Command, config: Config, release: Release) -> anyhow::Result<()> {
    match command {
        Command::Serve { listen, drain_ms } => {
            let app = App::new(&config, release).await?;
            app.warm_pool().await;
            let draining = app.draining.clone();
            let stop = tokio_util::sync::CancellationToken::new();
            let mut servers = tokio::task::JoinSet::new();
            for addr in &listen {
                let listener = tokio::net::TcpListener::bind(addr).await?;
                tracing::info!(
                    "web {} (release {}) listening on {addr}",
                    app.node,
                    release.version()
                );
                let (router, stop) = (app.clone().router(), stop.clone());
                servers.spawn(async move {
                    axum::serve(listener, router)
                        .with_graceful_shutdown(stop.cancelled_owned())
                        .await
                });
            }
            shutdown_signal().await;
            tracing::info!(
                "SIGTERM: draining for {drain_ms} ms, then finishing in-flight requests"
            );
            draining.store(true, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(drain_ms)).await;
            stop.cancel();
            while let Some(done) = servers.join_next().await {
                done??;
            }
            tracing::info!("stopped cleanly");
            Ok(())
        }
        Command::Database { action } => {
            let pool = db::connect(&config.database)?;
            let schema = &config.database.schema;
            match action {
                DatabaseAction::Init => {
                    let v = db::init(&pool, schema, release).await?;
                    println!("initialised schema {schema} at version {v}");
                }
                DatabaseAction::Migrate => {
                    let (from, to) = db::migrate(&pool, schema, release, config.fixture).await?;
                    if from == to {
                        println!(
                            "migrated schema {schema} from version {from} to {to}: nothing to do (the schema is at or past version {}, the newest release {} knows)",
                            release.schema_version(),
                            release.version()
                        );
                    } else {
                        println!("migrated schema {schema} from version {from} to {to}");
                    }
                }
            }
            Ok(())
        }
        Command::Maintenance { action } => {
            let queue = Queue::connect(&config.redis).await?;
            let on = match action {
                MaintenanceAction::On => {
                    queue.set_maintenance(true).await?;
                    true
                }
                MaintenanceAction::Off => {
                    queue.set_maintenance(false).await?;
                    false
                }
                MaintenanceAction::Status => queue.maintenance().await?,
            };
            println!("maintenance {}", if on { "on" } else { "off" });
            Ok(())
        }
    }
}
