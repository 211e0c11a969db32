//! PostgreSQL: the pool (which drops dead connections, so a failover is survived by
//! reconnecting), TLS as libpq's sslmode describes it, and the schema's migrations.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslVerifyMode};
use postgres_openssl::MakeTlsConnector;
use tokio_postgres::config::SslMode as PgSslMode;

use crate::config::{DatabaseConfig, Fixture, SslMode};
use crate::release::Release;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("DATABASE_URL: {0}")]
    Config(String),
    #[error("TLS setup for DATABASE_URL: {0}")]
    Tls(#[from] openssl::error::ErrorStack),
    #[error("database unavailable: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database error: {0}")]
    Query(#[from] tokio_postgres::Error),
    #[error(
        "database schema `{schema}` is already initialised (version {version}); run `web database migrate`"
    )]
    AlreadyInitialised { schema: String, version: i32 },
    #[error("database schema `{0}` is not initialised; run `web database init` once first")]
    NotInitialised(String),
    #[error(
        "planted failure (HADRILL_FIXTURE={fixture}): migration {version} failed after statement {done} of {of}"
    )]
    Planted {
        fixture: &'static str,
        version: i32,
        done: usize,
        of: usize,
    },
    // The cause is left to `{:#}`, which prints the whole chain (the server's message is the
    // source of `Query`'s, not in it).
    #[error(
        "migrating schema `{schema}` from version {from} failed and was rolled back (still at version {from})"
    )]
    MigrationFailed {
        schema: String,
        from: i32,
        source: Box<DbError>,
    },
}

/// Migrations in order, each a list of statements run in order; version N is
/// `MIGRATIONS[N - 1]`. `{schema}` is the configured schema.
const MIGRATIONS: &[&[&str]] = &[
    // 1: traces, their analyses (one per trace), every analysis attempt (for the checks), and
    // the historian's roll-ups (one per time slot).
    &["CREATE TABLE {schema}.traces (
        id BIGSERIAL PRIMARY KEY,
        sha256 TEXT NOT NULL,
        size BIGINT NOT NULL,
        owner TEXT NOT NULL,
        object_key TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now()
     );
     CREATE TABLE {schema}.analyses (
        trace_id BIGINT PRIMARY KEY REFERENCES {schema}.traces(id),
        lines BIGINT NOT NULL,
        bytes BIGINT NOT NULL,
        sha256_ok BOOLEAN NOT NULL,
        worker TEXT NOT NULL,
        analysed_at TIMESTAMPTZ NOT NULL DEFAULT now()
     );
     CREATE TABLE {schema}.analysis_attempts (
        id BIGSERIAL PRIMARY KEY,
        trace_id BIGINT NOT NULL,
        worker TEXT NOT NULL,
        at TIMESTAMPTZ NOT NULL DEFAULT now()
     );
     CREATE TABLE {schema}.rollups (
        slot BIGINT PRIMARY KEY,
        traces BIGINT NOT NULL,
        bytes BIGINT NOT NULL,
        computed_by TEXT NOT NULL,
        computed_at TIMESTAMPTZ NOT NULL DEFAULT now()
     );"],
    // 2 (release N+1): which release uploaded each trace. Nullable, so release N, which knows
    // nothing of it, keeps inserting on a version 2 schema.
    &[
        "ALTER TABLE {schema}.traces ADD COLUMN release TEXT",
        "CREATE INDEX traces_by_release ON {schema}.traces (release)",
    ],
];

/// Where the migration fixtures fail: migration 2, before its second statement.
const PLANTED_FAILURE: (i32, usize) = (2, 1);

/// Whether the server refused a statement, so that it certainly did not run: bad data, a
/// constraint, a read-only or aborted transaction, bad credentials or database, bad SQL. Any
/// other error (a lost connection, a backend terminated by a shutdown) may come after the
/// commit: a primary killed or stopped while a commit waits for its standby has committed
/// locally, and the standby it promotes may hold the row.
pub fn refused(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|d| {
        matches!(
            &d.code().code()[..2],
            "22" | "23" | "25" | "28" | "3D" | "42"
        )
    })
}

pub fn connect(cfg: &DatabaseConfig) -> Result<Pool, DbError> {
    let mut pg: tokio_postgres::Config = cfg
        .url
        .parse()
        .map_err(|e: tokio_postgres::Error| DbError::Config(e.to_string()))?;
    pg.ssl_mode(match cfg.sslmode {
        SslMode::Disable => PgSslMode::Disable,
        SslMode::Prefer => PgSslMode::Prefer,
        SslMode::Require | SslMode::VerifyCa => PgSslMode::Require,
    });
    pg.options(format!("-c search_path={}", cfg.schema));
    // A dead primary must not hang requests: fail fast and let the pool reconnect.
    pg.connect_timeout(Duration::from_secs(2));
    pg.keepalives_idle(Duration::from_secs(5));

    let mut builder = SslConnector::builder(SslMethod::tls_client())?;
    if let Some(ca) = &cfg.sslrootcert {
        builder.set_ca_file(ca)?;
    }
    if let (Some(cert), Some(key)) = (&cfg.sslcert, &cfg.sslkey) {
        builder.set_certificate_chain_file(cert)?;
        builder.set_private_key_file(key, SslFiletype::PEM)?;
    }
    // libpq semantics: verify-ca checks the chain but not the host name; require and prefer
    // encrypt without verifying.
    let verify_ca = cfg.sslmode == SslMode::VerifyCa;
    builder.set_verify(if verify_ca {
        SslVerifyMode::PEER
    } else {
        SslVerifyMode::NONE
    });
    let mut tls = MakeTlsConnector::new(builder.build());
    tls.set_callback(|conf, _| {
        conf.set_verify_hostname(false);
        Ok(())
    });

    let manager = Manager::from_config(
        pg,
        tls,
        ManagerConfig {
            // Each checkout is verified, so connections to a dead server are dropped.
            recycling_method: RecyclingMethod::Verified,
        },
    );
    Pool::builder(manager)
        .max_size(16)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(5)))
        .create_timeout(Some(Duration::from_secs(3)))
        .recycle_timeout(Some(Duration::from_secs(2)))
        .build()
        .map_err(|e| DbError::Config(e.to_string()))
}

/// The schema's version; `None` if it is not initialised.
pub async fn version(
    client: &impl deadpool_postgres::GenericClient,
    schema: &str,
) -> Result<Option<i32>, DbError> {
    let exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM information_schema.tables
              WHERE table_schema = $1 AND table_name = 'schema_version')",
            &[&schema],
        )
        .await?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let row = client
        .query_one(
            &format!("SELECT coalesce(max(version), 0) FROM {schema}.schema_version"),
            &[],
        )
        .await?;
    Ok(Some(row.get(0)))
}

/// `web database init`: creates the schema at `release`'s version on a new install.
pub async fn init(pool: &Pool, schema: &str, release: Release) -> Result<i32, DbError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    // One installer at a time, whichever VM runs it.
    tx.execute("SELECT pg_advisory_xact_lock(4242)", &[])
        .await?;
    if let Some(v) = version(&tx, schema).await? {
        return Err(DbError::AlreadyInitialised {
            schema: schema.into(),
            version: v,
        });
    }
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE {schema}.schema_version (version INT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now());"
    ))
    .await?;
    let latest = release.schema_version();
    apply(&tx, pool, schema, 0, latest, Fixture::None).await?;
    tx.commit().await?;
    Ok(latest)
}

/// `web database migrate`: applies the migrations an existing install lacks, up to
/// `release`'s version, in one transaction. Returns the version found and the version now;
/// the two are equal when the schema is at or past `release`'s version already.
pub async fn migrate(
    pool: &Pool,
    schema: &str,
    release: Release,
    fixture: Fixture,
) -> Result<(i32, i32), DbError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock(4242)", &[])
        .await?;
    let from = version(&tx, schema)
        .await?
        .ok_or_else(|| DbError::NotInitialised(schema.into()))?;
    let to = from.max(release.schema_version());
    apply(&tx, pool, schema, from, to, fixture)
        .await
        .map_err(|e| DbError::MigrationFailed {
            schema: schema.into(),
            from,
            source: Box::new(e),
        })?;
    tx.commit().await?;
    Ok((from, to))
}

/// Runs migrations `from + 1 ..= to` in `tx`, recording each version.
async fn apply(
    tx: &tokio_postgres::Transaction<'_>,
    pool: &Pool,
    schema: &str,
    from: i32,
    to: i32,
    fixture: Fixture,
) -> Result<(), DbError> {
    for v in from + 1..=to {
        let statements = MIGRATIONS[v as usize - 1];
        for (i, sql) in statements.iter().enumerate() {
            if (v, i) == PLANTED_FAILURE
                && matches!(
                    fixture,
                    Fixture::MigrationFailsHalfway | Fixture::HalfMigrates
                )
            {
                return Err(DbError::Planted {
                    fixture: fixture.name(),
                    version: v,
                    done: i,
                    of: statements.len(),
                });
            }
            let sql = sql.replace("{schema}", schema);
            if fixture == Fixture::HalfMigrates {
                // Fixture (defect): autocommit on another connection, outside `tx`.
                pool.get().await?.batch_execute(&sql).await?;
            } else {
                tx.batch_execute(&sql).await?;
            }
        }
        tx.execute(
            &format!("INSERT INTO {schema}.schema_version (version) VALUES ($1)"),
            &[&v],
        )
        .await?;
    }
    Ok(())
}

pub const LATEST_VERSION: i32 = MIGRATIONS.len() as i32;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_2_adds_the_release_column_then_its_index() {
        assert_eq!(LATEST_VERSION, 2);
        assert_eq!(Release::Next.schema_version(), LATEST_VERSION);
        assert!(Release::Current.schema_version() < LATEST_VERSION);
        // Migration 1 stays one batch, as installs at version 1 ran it.
        assert_eq!(MIGRATIONS[0].len(), 1);
        assert!(MIGRATIONS[0][0].starts_with("CREATE TABLE {schema}.traces ("));
        assert_eq!(
            MIGRATIONS[1],
            [
                "ALTER TABLE {schema}.traces ADD COLUMN release TEXT",
                "CREATE INDEX traces_by_release ON {schema}.traces (release)",
            ]
        );
    }

    #[test]
    fn the_planted_failure_falls_between_two_statements() {
        let (version, before) = PLANTED_FAILURE;
        let statements = MIGRATIONS[version as usize - 1];
        assert!(0 < before && before < statements.len());
        assert!(statements[before - 1].contains("ADD COLUMN release"));
        let planted = DbError::Planted {
            fixture: Fixture::MigrationFailsHalfway.name(),
            version,
            done: before,
            of: statements.len(),
        };
        let failed = anyhow::Error::new(DbError::MigrationFailed {
            schema: "public".into(),
            from: 1,
            source: Box::new(planted),
        });
        assert_eq!(
            format!("{failed:#}"),
            "migrating schema `public` from version 1 failed and was rolled back (still at \
             version 1): planted failure (HADRILL_FIXTURE=migration-fails-halfway): migration 2 \
             failed after statement 1 of 2"
        );
    }
}
