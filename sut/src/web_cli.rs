//! `web`'s command line: the app server (`web serve`), the install steps
//! (`web database init|migrate`), the upgrade procedure's switch (`web maintenance`) and the
//! licence (`web license`). Both releases' binaries (`web`, `web-next`) are this, each with its
//! own `Release`.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config::Config;
use crate::license::{self, Store};
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
    /// The licence: uploaded to one VM, installed there and synchronised from there.
    License {
        #[command(subcommand)]
        action: LicenseAction,
    },
    /// This VM's config file (`--config`).
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Set KEY to the value read on standard input (a secret never goes on a command line),
    /// e.g. to rotate SECRET_KEY; the server uses it from its next restart.
    Set {
        /// A key the product reads, e.g. SECRET_KEY.
        key: String,
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

#[derive(Subcommand)]
enum LicenseAction {
    /// Check a licence file and keep it on this VM (at LICENSE_PATH).
    Install {
        /// The licence file as the vendor issued it.
        file: PathBuf,
    },
    /// Send this VM's licence to every other app server of APP_SERVERS.
    Synchronize,
    /// Print this VM's licence; exit 1 if it holds no valid one.
    Status,
}

/// Sets `key` in the config file `file` to the value on standard input.
fn set_from_stdin(file: &std::path::Path, key: &str) -> anyhow::Result<()> {
    use std::io::Read;
    let mut value = String::new();
    std::io::stdin().read_to_string(&mut value)?;
    set_key(file, key, value.trim_end_matches(['\r', '\n']))?;
    println!(
        "{key} set in {}: the server uses it from its next restart",
        file.display()
    );
    Ok(())
}

/// Sets `key` in the config file `file` to `value`: its line replaced, or added. The file is
/// rewritten in place (same inode), as an editor would leave it.
fn set_key(file: &std::path::Path, key: &str, value: &str) -> anyhow::Result<()> {
    if !crate::config::KEYS.contains(&key) {
        anyhow::bail!("{key} is not a key the product reads");
    }
    if value.is_empty() || value.contains(['\r', '\n']) {
        anyhow::bail!("give {key}'s new value as one line on standard input");
    }
    let text = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    let line = format!("{key}={value}");
    let prefix = format!("{key}=");
    let mut found = false;
    let mut lines: Vec<&str> = text
        .lines()
        .map(|l| match l.trim_start().starts_with(&prefix) {
            true => {
                found = true;
                line.as_str()
            }
            false => l,
        })
        .collect();
    if !found {
        lines.push(&line);
    }
    std::fs::write(file, lines.join("\n") + "\n")
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", file.display()))
}

/// How long a peer may take to accept a synchronised licence.
const SYNC_TIMEOUT: Duration = Duration::from_secs(5);

/// The `web` binary of `release`.
pub fn main(release: Release) {
    init_logging();
    let matches = Cli::command().version(release.version()).get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let config = Config::load_or_exit("web", cli.config.as_deref());
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    if let Err(e) = runtime.block_on(run(cli.command, cli.config, config, release)) {
        eprintln!("web: {e:#}");
        std::process::exit(1);
    }
}

async fn run(
    command: Command,
    file: Option<PathBuf>,
    config: Config,
    release: Release,
) -> anyhow::Result<()> {
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
        Command::Config {
            action: ConfigAction::Set { key },
        } => match file {
            Some(file) => set_from_stdin(&file, &key),
            None => Err(anyhow::anyhow!("`web config set` needs --config FILE")),
        },
        Command::License { action } => {
            let store = Store::new(&config);
            match action {
                LicenseAction::Install { file } => {
                    let text = std::fs::read_to_string(&file).map_err(|e| {
                        anyhow::anyhow!("cannot read the licence file {}: {e}", file.display())
                    })?;
                    let l = store.install(&text)?;
                    println!("installed {} at {}", l.describe(), store.path().display());
                }
                LicenseAction::Synchronize => synchronize(&store, &config.app_servers).await?,
                LicenseAction::Status => {
                    let l = store.held()?;
                    println!("{} at {}", l.describe(), store.path().display());
                }
            }
            Ok(())
        }
    }
}

/// Sends this VM's licence to every app server but this one; fails naming each peer that
/// did not take it.
async fn synchronize(store: &Store, app_servers: &[String]) -> anyhow::Result<()> {
    let l = store.held()?;
    if app_servers.is_empty() {
        anyhow::bail!(
            "APP_SERVERS is not set: list every app server as host:port (e.g. app1:8080,app2:8080)"
        );
    }
    let me = crate::hostname();
    let peers = license::peers(app_servers, &me);
    if peers.is_empty() {
        println!("no app server in APP_SERVERS but this one ({me}): nothing to synchronise");
        return Ok(());
    }
    let http = reqwest::Client::builder().timeout(SYNC_TIMEOUT).build()?;
    let tag = store.sync_tag(&l.text);
    let sent = peers.iter().map(|peer| {
        let request = http
            .put(format!("http://{peer}/internal/license"))
            .header(license::SYNC_AUTH_HEADER, &tag)
            .body(l.text.clone());
        async move {
            let answer = match request.send().await {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => {
                    let status = r.status();
                    Err(format!(
                        "HTTP {status}: {}",
                        r.text().await.unwrap_or_default()
                    ))
                }
                // `{:#}`: reqwest says why (refused, timed out) only in the error's chain.
                Err(e) => Err(format!("{:#}", anyhow::Error::from(e))),
            };
            (*peer, answer)
        }
    });
    let mut failed = Vec::new();
    for (peer, answer) in futures_util::future::join_all(sent).await {
        match answer {
            Ok(()) => println!("synchronised licence {} to {peer}", l.id),
            Err(e) => failed.push(format!("{peer} ({})", e.trim())),
        }
    }
    if !failed.is_empty() {
        anyhow::bail!(
            "licence {} not synchronised to {} of {} app servers: {}",
            l.id,
            failed.len(),
            peers.len(),
            failed.join("; ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn config_set_replaces_the_keys_line_in_place_and_adds_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("web.conf");
        std::fs::write(
            &file,
            "# product config\nSECRET_KEY=old\nREDIS_URL=redis://r\n",
        )
        .unwrap();
        let inode = std::fs::metadata(&file).unwrap().ino();
        set_key(&file, "SECRET_KEY", "new").unwrap();
        set_key(&file, "DATABASE_SCHEMA", "public").unwrap();
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            "# product config\nSECRET_KEY=new\nREDIS_URL=redis://r\nDATABASE_SCHEMA=public\n"
        );
        assert_eq!(std::fs::metadata(&file).unwrap().ino(), inode);
        // Neither a key the product does not read nor a value of several lines.
        assert!(set_key(&file, "SECRET", "x").is_err());
        assert!(set_key(&file, "SECRET_KEY", "a\nb").is_err());
        assert!(set_key(&file, "SECRET_KEY", "").is_err());
    }
}
