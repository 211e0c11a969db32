//! PostgreSQL members spoken to directly: connecting, and reading a member's status from the
//! member itself, whatever manages its failover.

use std::time::Duration;

use crate::node::Node;
use hadrill_model::MemberStatus;

/// Who to connect as, and to which container port.
#[derive(Debug, Clone)]
pub struct Login {
    pub port: u16,
    pub user: String,
    pub password: String,
    pub database: String,
}

/// Connects to `node`'s published `port`; every failure here means nothing was sent.
pub async fn connect(
    node: &Node,
    port: u16,
    user: &str,
    password: &str,
    database: &str,
    timeout: Duration,
) -> Result<tokio_postgres::Client, String> {
    let addr = node
        .host_addr(port)
        .ok_or_else(|| format!("{} publishes no port {port} (not running?)", node.name()))?;
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(addr.ip().to_string())
        .port(addr.port())
        .user(user)
        .password(password)
        .dbname(database)
        .connect_timeout(timeout);
    match node.spec().tls.as_ref().filter(|t| t.port == port) {
        None => open(&cfg, tokio_postgres::NoTls, timeout).await,
        Some(tls) => {
            cfg.ssl_mode(tokio_postgres::config::SslMode::Require);
            let connector = verify_ca(tls).map_err(|e| format!("TLS setup: {e}"))?;
            open(&cfg, connector, timeout).await
        }
    }
}

/// Connects through `tls` within `timeout`; the connection is driven by its own task.
async fn open<T>(
    cfg: &tokio_postgres::Config,
    tls: T,
    timeout: Duration,
) -> Result<tokio_postgres::Client, String>
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>,
    T::Stream: Send + 'static,
{
    let (client, conn) = tokio::time::timeout(timeout, cfg.connect(tls))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| format!("connect: {e}"))?;
    tokio::spawn(conn);
    Ok(client)
}

/// libpq's `sslmode=verify-ca`: the server's chain must lead to the node's CA; its name is
/// not checked (the harness connects to 127.0.0.1, the certificate names the node).
fn verify_ca(
    tls: &crate::topology::NodeTls,
) -> Result<postgres_openssl::MakeTlsConnector, openssl::error::ErrorStack> {
    use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslVerifyMode};
    let mut builder = SslConnector::builder(SslMethod::tls_client())?;
    builder.set_ca_file(&tls.ca)?;
    if let Some((cert, key)) = &tls.client {
        builder.set_certificate_chain_file(cert)?;
        builder.set_private_key_file(key, SslFiletype::PEM)?;
    }
    builder.set_verify(SslVerifyMode::PEER);
    let mut connector = postgres_openssl::MakeTlsConnector::new(builder.build());
    connector.set_callback(|conf, _| {
        conf.set_verify_hostname(false);
        Ok(())
    });
    Ok(connector)
}

/// A primary's timeline is the first eight hex digits of its current WAL file's name; a
/// standby's, the one its WAL receiver streams (its columns need `pg_read_all_stats`).
const STATUS: &str = "SELECT pg_is_in_recovery(),
    CASE WHEN pg_is_in_recovery()
         THEN (SELECT received_tli::bigint FROM pg_stat_wal_receiver)
         ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::bigint END,
    (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END
        - '0/0'::pg_lsn)::bigint,
    (SELECT status FROM pg_stat_wal_receiver)";

/// `node`'s status as the member itself states it, in the shape Patroni's REST API gives it;
/// `None` when it does not answer within `timeout`.
pub async fn status(node: &Node, login: &Login, timeout: Duration) -> Option<MemberStatus> {
    let read = async {
        let c = connect(
            node,
            login.port,
            &login.user,
            &login.password,
            &login.database,
            timeout,
        )
        .await
        .ok()?;
        let row = c.query_one(STATUS, &[]).await.ok()?;
        let standby: bool = row.get(0);
        Some(MemberStatus {
            role: if standby { "replica" } else { "primary" }.into(),
            state: "running".into(),
            timeline: row.get(1),
            wal_position: row.get(2),
            replication_state: row.get(3),
            vip: None,
        })
    };
    tokio::time::timeout(timeout, read).await.ok().flatten()
}
