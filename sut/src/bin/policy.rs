//! `policy`: the status service of an active/passive policy server (SYSTEMS.md §3). It answers
//! which node is active — keepalived's state, written by its notify script — and what its
//! PostgreSQL is doing, in the shape of Patroni's `/patroni` (role, state, timeline, xlog) so
//! the same observer reads both kinds of pair. Clients write through the virtual IP to the
//! active node's PostgreSQL.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use clap::Parser;
use hadrill_sut::{init_logging, shutdown_signal};
use serde_json::{Value, json};
use tokio::sync::Mutex;

#[derive(Parser)]
#[command(
    name = "policy",
    about = "hadrill reference product: active/passive status service"
)]
struct Cli {
    #[arg(long, default_value = "0.0.0.0:8008")]
    listen: String,
    /// libpq-style connection string to the local PostgreSQL.
    #[arg(long, default_value = "host=/tmp user=postgres dbname=postgres")]
    database: String,
    /// Where keepalived's notify script writes MASTER, BACKUP or FAULT.
    #[arg(long, default_value = "/run/hadrill/vrrp-state")]
    state_file: PathBuf,
}

struct Ctx {
    cli: Cli,
    client: Mutex<Option<tokio_postgres::Client>>,
}

#[tokio::main]
async fn main() {
    init_logging();
    let cli = Cli::parse();
    let listener = match tokio::net::TcpListener::bind(&cli.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("policy: cannot listen on {}: {e}", cli.listen);
            std::process::exit(1);
        }
    };
    let ctx = Arc::new(Ctx {
        cli,
        client: Mutex::new(None),
    });
    let app = Router::new()
        .route("/status", get(status))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(ctx);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
    {
        eprintln!("policy: {e}");
        std::process::exit(1);
    }
}

/// `GET /status`: `{"node", "keepalived", "vip", "role", "state", "timeline", "xlog"}`.
async fn status(State(ctx): State<Arc<Ctx>>) -> Json<Value> {
    let vrrp = std::fs::read_to_string(&ctx.cli.state_file)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let mut out = json!({
        "node": hadrill_sut::hostname(),
        "keepalived": vrrp,
        "vip": vrrp == "MASTER",
    });
    match database(&ctx).await {
        Ok(db) => {
            if let (Value::Object(o), Value::Object(d)) = (&mut out, db) {
                o.extend(d);
            }
        }
        Err(e) => {
            *ctx.client.lock().await = None;
            out["state"] = json!("stopped");
            out["error"] = json!(e.to_string());
        }
    }
    Json(out)
}

async fn database(ctx: &Ctx) -> Result<Value, tokio_postgres::Error> {
    let mut guard = ctx.client.lock().await;
    if guard.is_none() {
        let mut cfg: tokio_postgres::Config = ctx.cli.database.parse()?;
        cfg.connect_timeout(Duration::from_millis(500));
        let (client, conn) = cfg.connect(tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        *guard = Some(client);
    }
    let client = guard.as_ref().expect("connected above");
    // The timeline of the WAL being written (primary) or received (replica); positions in
    // bytes, as Patroni reports them.
    let row = client
        .query_one(
            "SELECT pg_is_in_recovery(),
                    CASE WHEN pg_is_in_recovery()
                         THEN coalesce((SELECT received_tli FROM pg_stat_wal_receiver),
                                       (SELECT timeline_id FROM pg_control_checkpoint()))::bigint
                         ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::bigint
                    END,
                    CASE WHEN pg_is_in_recovery()
                         THEN pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')
                         ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')
                    END::bigint,
                    (SELECT status FROM pg_stat_wal_receiver)",
            &[],
        )
        .await?;
    let replica: bool = row.get(0);
    let position: Option<i64> = row.get(2);
    Ok(json!({
        "role": if replica { "replica" } else { "primary" },
        "state": "running",
        "timeline": row.get::<_, Option<i64>>(1),
        "xlog": if replica { json!({ "replayed_location": position }) } else { json!({ "location": position }) },
        "replication_state": row.get::<_, Option<String>>(3),
    }))
}
