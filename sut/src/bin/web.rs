//! `web`: the app server (`web serve`) and the install steps (`web database init|migrate`).

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::{Parser, Subcommand};
use hadrill_sut::config::Config;
use hadrill_sut::web::App;
use hadrill_sut::{db, init_logging, shutdown_signal};

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
}

#[derive(Subcommand)]
enum DatabaseAction {
    /// Create the schema on a new install.
    Init,
    /// Apply the migrations an upgrade brings.
    Migrate,
}

#[tokio::main]
async fn main() {
    init_logging();
    let cli = Cli::parse();
    let config = Config::load_or_exit("web", cli.config.as_deref());
    if let Err(e) = run(cli.command, config).await {
        eprintln!("web: {e:#}");
        std::process::exit(1);
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve { listen, drain_ms } => {
            let app = App::new(&config).await?;
            app.warm_pool().await;
            let draining = app.draining.clone();
            let stop = tokio_util::sync::CancellationToken::new();
            let mut servers = tokio::task::JoinSet::new();
            for addr in &listen {
                let listener = tokio::net::TcpListener::bind(addr).await?;
                tracing::info!("web {} listening on {addr}", app.node);
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
                    let v = db::init(&pool, schema).await?;
                    println!("initialised schema {schema} at version {v}");
                }
                DatabaseAction::Migrate => {
                    let (from, to) = db::migrate(&pool, schema).await?;
                    println!("migrated schema {schema} from version {from} to {to}");
                }
            }
            Ok(())
        }
    }
}
