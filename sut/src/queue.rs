//! The job queue: a Redis Stream read through a consumer group, at-least-once. The same
//! Redis holds the maintenance flag.

use std::path::{Path, PathBuf};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamReadOptions, StreamReadReply,
};
use redis::{AsyncCommands, ClientTlsConfig, RedisError, TlsCertificates};

use crate::config::RedisConfig;

pub const STREAM: &str = "traces:jobs";
pub const GROUP: &str = "analysers";
/// Set while uploads are paused (`web maintenance on`). In Redis rather than the database, so
/// that every app server of either release sees it at once, needing no schema change, and it
/// stays readable while a migration holds the tables locked.
pub const MAINTENANCE: &str = "web:maintenance";

#[derive(Clone)]
pub struct Queue {
    conn: ConnectionManager,
}

/// One analysis job as read from the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub entry: String,
    pub trace_id: i64,
    pub object_key: String,
}

/// Why [`Queue::connect`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{key}: cannot read {}: {problem}", path.display())]
    File {
        key: &'static str,
        path: PathBuf,
        problem: String,
    },
    #[error("Redis TLS setup from {keys} failed: {source}")]
    Tls {
        keys: String,
        #[source]
        source: RedisError,
    },
    #[error(transparent)]
    Redis(#[from] RedisError),
}

/// Reads a PEM file at startup, checking it holds what `key` promises (`kind`, e.g.
/// `CERTIFICATE`), so that a wrong file is named here rather than failing every handshake.
fn read_pem(key: &'static str, path: &Path, kind: &str) -> Result<Vec<u8>, ConnectError> {
    let err = |problem: String| ConnectError::File {
        key,
        path: path.to_path_buf(),
        problem,
    };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let text = String::from_utf8_lossy(&bytes);
    let found = text.lines().any(|l| {
        l.trim()
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
            .is_some_and(|label| label.ends_with(kind))
    });
    if !found {
        return Err(err(format!("no PEM `{kind}` block in it")));
    }
    Ok(bytes)
}

/// The client for `cfg`: with a CA or a client certificate, TLS is set up from those files
/// (the server's host name is still verified); otherwise from the URL alone.
fn client(cfg: &RedisConfig) -> Result<redis::Client, ConnectError> {
    if cfg.tls_ca.is_none() && cfg.tls_client.is_none() {
        return Ok(redis::Client::open(cfg.url.as_str())?);
    }
    let root_cert = cfg
        .tls_ca
        .as_deref()
        .map(|p| read_pem("REDIS_TLS_CA", p, "CERTIFICATE"))
        .transpose()?;
    let client_tls = match &cfg.tls_client {
        Some(c) => Some(ClientTlsConfig {
            client_cert: read_pem("REDIS_TLS_CERT", &c.cert, "CERTIFICATE")?,
            client_key: read_pem("REDIS_TLS_KEY", &c.key, "PRIVATE KEY")?,
        }),
        None => None,
    };
    let keys = [
        cfg.tls_ca.as_ref().map(|_| "REDIS_TLS_CA"),
        cfg.tls_client
            .as_ref()
            .map(|_| "REDIS_TLS_CERT/REDIS_TLS_KEY"),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(", ");
    redis::Client::build_with_tls(
        cfg.url.as_str(),
        TlsCertificates {
            client_tls,
            root_cert,
        },
    )
    .map_err(|source| ConnectError::Tls { keys, source })
}

impl Queue {
    /// Connects; later, a lost connection is re-established on the next command. The TLS
    /// files are read here, once.
    pub async fn connect(cfg: &RedisConfig) -> Result<Self, ConnectError> {
        let client = client(cfg)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            // Longer than a blocking read's 1 s.
            .set_response_timeout(Duration::from_secs(3))
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_with_config(client, config).await?;
        Ok(Queue { conn })
    }

    pub async fn ping(&self) -> Result<(), RedisError> {
        let mut c = self.conn.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut c)
            .await
            .map(|_| ())
    }

    /// Appends a job; returns once Redis acknowledged it (durable with `appendfsync always`).
    pub async fn enqueue(&self, trace_id: i64, object_key: &str) -> Result<String, RedisError> {
        let mut c = self.conn.clone();
        c.xadd(
            STREAM,
            "*",
            &[
                ("trace_id", trace_id.to_string()),
                ("key", object_key.to_string()),
            ],
        )
        .await
    }

    pub async fn maintenance(&self) -> Result<bool, RedisError> {
        let mut c = self.conn.clone();
        c.exists(MAINTENANCE).await
    }

    pub async fn set_maintenance(&self, on: bool) -> Result<(), RedisError> {
        let mut c = self.conn.clone();
        if on {
            c.set(MAINTENANCE, "on").await
        } else {
            c.del(MAINTENANCE).await
        }
    }

    pub async fn ensure_group(&self) -> Result<(), RedisError> {
        let mut c = self.conn.clone();
        match c
            .xgroup_create_mkstream::<_, _, _, ()>(STREAM, GROUP, "0")
            .await
        {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => other,
        }
    }

    /// New jobs for `consumer`, waiting up to `block`.
    pub async fn read(&self, consumer: &str, block: Duration) -> Result<Vec<Job>, RedisError> {
        let mut c = self.conn.clone();
        let opts = StreamReadOptions::default()
            .group(GROUP, consumer)
            .count(4)
            .block(block.as_millis() as usize);
        let reply: Option<StreamReadReply> = c.xread_options(&[STREAM], &[">"], &opts).await?;
        Ok(reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .filter_map(|id| job(&id.id, &id.map))
            .collect())
    }

    /// Takes over jobs another consumer read but did not acknowledge for `min_idle`
    /// (its worker died).
    pub async fn claim_stale(
        &self,
        consumer: &str,
        min_idle: Duration,
    ) -> Result<Vec<Job>, RedisError> {
        let mut c = self.conn.clone();
        let reply: StreamAutoClaimReply = c
            .xautoclaim_options(
                STREAM,
                GROUP,
                consumer,
                min_idle.as_millis() as usize,
                "0-0",
                StreamAutoClaimOptions::default().count(16),
            )
            .await?;
        Ok(reply
            .claimed
            .iter()
            .filter_map(|id| job(&id.id, &id.map))
            .collect())
    }

    pub async fn ack(&self, entry: &str) -> Result<(), RedisError> {
        let mut c = self.conn.clone();
        c.xack::<_, _, _, ()>(STREAM, GROUP, &[entry]).await
    }
}

fn job(entry: &str, map: &std::collections::HashMap<String, redis::Value>) -> Option<Job> {
    let field = |k: &str| -> Option<String> { redis::from_redis_value(map.get(k)?).ok() };
    Some(Job {
        entry: entry.to_string(),
        trace_id: field("trace_id")?.parse().ok()?,
        object_key: field("key")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RedisClientCert;
    use openssl::{asn1::Asn1Time, hash::MessageDigest, pkey::PKey, rsa::Rsa, x509::X509};

    fn cfg(ca: Option<&Path>, client: Option<(&Path, &Path)>) -> RedisConfig {
        RedisConfig {
            url: "rediss://redis:6380".into(),
            tls_ca: ca.map(Path::to_path_buf),
            tls_client: client.map(|(cert, key)| RedisClientCert {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
            }),
        }
    }

    /// A self-signed certificate and its PKCS#8 key, PEM.
    fn self_signed() -> (Vec<u8>, Vec<u8>) {
        let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(1).unwrap())
            .unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        (
            b.build().to_pem().unwrap(),
            key.private_key_to_pem_pkcs8().unwrap(),
        )
    }

    #[test]
    fn tls_files_are_read_into_the_client() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed();
        let (ca_p, cert_p, key_p) = (
            dir.path().join("ca.pem"),
            dir.path().join("client.pem"),
            dir.path().join("client.key"),
        );
        std::fs::write(&ca_p, &cert).unwrap();
        std::fs::write(&cert_p, &cert).unwrap();
        std::fs::write(&key_p, &key).unwrap();
        client(&cfg(Some(&ca_p), Some((&cert_p, &key_p)))).unwrap();
        client(&cfg(Some(&ca_p), None)).unwrap();
    }

    #[test]
    fn an_unreadable_or_wrong_file_is_named_with_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = client(&cfg(Some(&missing), None)).unwrap_err();
        let shown = err.to_string();
        assert!(
            matches!(
                err,
                ConnectError::File {
                    key: "REDIS_TLS_CA",
                    ..
                }
            ) && shown.starts_with(&format!(
                "REDIS_TLS_CA: cannot read {}: ",
                missing.display()
            )),
            "{shown}"
        );

        let (cert, _) = self_signed();
        let cert_p = dir.path().join("client.pem");
        std::fs::write(&cert_p, &cert).unwrap();
        // The certificate given as the key.
        let err = client(&cfg(None, Some((&cert_p, &cert_p)))).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "REDIS_TLS_KEY: cannot read {}: no PEM `PRIVATE KEY` block in it",
                cert_p.display()
            )
        );
        let err = client(&cfg(None, Some((&missing, &cert_p)))).unwrap_err();
        assert!(
            matches!(
                err,
                ConnectError::File {
                    key: "REDIS_TLS_CERT",
                    ..
                }
            ),
            "{err}"
        );
    }
}
