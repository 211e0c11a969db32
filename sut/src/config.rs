//! Configuration exactly as the product guides give it: `KEY=VALUE` lines in a config file
//! (the guides keep it in `/etc/…/config`), each key overridable from the environment.
//!
//! The environment wins over the file, so one file can be shared by every VM and a single key
//! changed for one process. A missing or invalid key is an error naming the key.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Every key the product reads.
pub const KEYS: &[&str] = &[
    "REDIS_URL",
    "REDIS_TLS_CA",
    "REDIS_TLS_CERT",
    "REDIS_TLS_KEY",
    "DATABASE_URL",
    "DATABASE_SCHEMA",
    "S3_ENDPOINT",
    "S3_TRACE_AWS_ACCESS_KEY_ID",
    "S3_TRACE_AWS_SECRET_ACCESS_KEY",
    "S3_TRACE_BUCKET",
    "STORAGE_USE_PUT",
    "SECRET_KEY",
    "ANALYSIS_MS_PER_MIB",
    "LICENSE_PATH",
    "APP_SERVERS",
    "HADRILL_FIXTURE",
];

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("{key} is not set (neither in the environment nor in {file})")]
    Missing { key: &'static str, file: String },
    #[error("{key} is invalid: {problem}")]
    Invalid { key: &'static str, problem: String },
    #[error("{file}:{line}: {problem}")]
    File {
        file: String,
        line: usize,
        problem: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
}

/// `REDIS_URL` and the TLS files for a `rediss://` one.
#[derive(Debug, Clone, PartialEq)]
pub struct RedisConfig {
    pub url: String,
    /// `REDIS_TLS_CA`: a PEM file of the CA the server's certificate must chain to, instead
    /// of the public web roots. The host name is verified against the certificate either way.
    pub tls_ca: Option<PathBuf>,
    /// `REDIS_TLS_CERT` and `REDIS_TLS_KEY`, for a server with `tls-auth-clients yes`.
    pub tls_client: Option<RedisClientCert>,
}

/// A client certificate (chain) and its private key, both PEM files.
#[derive(Debug, Clone, PartialEq)]
pub struct RedisClientCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `DATABASE_URL` split into what tokio-postgres understands and the libpq TLS options it
/// does not.
#[derive(Clone, PartialEq)]
pub struct DatabaseConfig {
    /// The URL without `sslmode`, `sslcert`, `sslkey`, `sslrootcert`.
    pub url: String,
    pub sslmode: SslMode,
    pub sslcert: Option<PathBuf>,
    pub sslkey: Option<PathBuf>,
    pub sslrootcert: Option<PathBuf>,
    pub schema: String,
}

#[derive(Clone, PartialEq)]
pub struct S3Config {
    pub endpoint: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub bucket: String,
    pub use_put: bool,
}

/// Deliberate defects for proving that hadrill's checks can fail. Off unless
/// `HADRILL_FIXTURE` names one; never set in a real deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fixture {
    #[default]
    None,
    /// `POST /traces` answers 201 before the object is stored.
    AckBeforeStore,
    /// The historian takes the present slot from its own node's clock, not the database's.
    LocalClock,
    /// The worker acknowledges a job in the queue before its result is committed: a worker
    /// that dies between the two loses the job.
    AckBeforeCommit,
    /// Not a defect: `web database migrate` fails migration 2 after its first statement, as a
    /// migration meeting bad data would. Its transaction is rolled back, so the schema stays
    /// at version 1, intact, and a later migrate without the fixture succeeds.
    MigrationFailsHalfway,
    /// The same planted failure, but `web database migrate` runs each statement on its own,
    /// outside the migration's transaction: the first stays committed while version 2 is not
    /// recorded. The schema is half-migrated yet says version 1, the command still reports
    /// it rolled back, and a later migrate fails (the column it adds already exists).
    HalfMigrates,
    /// An app server keeps a licence another one synchronised to it in memory only, not on
    /// its disk: it holds it until it restarts, then holds none.
    LicenseInMemory,
}

impl Fixture {
    pub const ALL: &[Fixture] = &[
        Fixture::None,
        Fixture::AckBeforeStore,
        Fixture::LocalClock,
        Fixture::AckBeforeCommit,
        Fixture::MigrationFailsHalfway,
        Fixture::HalfMigrates,
        Fixture::LicenseInMemory,
    ];

    /// The fixture's `HADRILL_FIXTURE` value.
    pub fn name(self) -> &'static str {
        match self {
            Fixture::None => "none",
            Fixture::AckBeforeStore => "ack-before-store",
            Fixture::LocalClock => "local-clock",
            Fixture::AckBeforeCommit => "ack-before-commit",
            Fixture::MigrationFailsHalfway => "migration-fails-halfway",
            Fixture::HalfMigrates => "half-migrates",
            Fixture::LicenseInMemory => "license-in-memory",
        }
    }
}

/// Where a VM keeps its licence unless `LICENSE_PATH` says otherwise.
const DEFAULT_LICENSE_PATH: &str = "/var/lib/product/license";

#[derive(Clone, PartialEq)]
pub struct Config {
    pub redis: RedisConfig,
    pub database: DatabaseConfig,
    pub s3: S3Config,
    /// 32 bytes from `SECRET_KEY` (64 hex characters): signs session cookies.
    pub secret_key: [u8; 32],
    /// How long the worker's analysis takes per MiB of trace, as real analysis would (0: as
    /// fast as the digest). Drills set it so a job is still in flight when a worker dies.
    pub analysis_ms_per_mib: u64,
    /// `LICENSE_PATH`: where this VM keeps its licence file.
    pub license_path: PathBuf,
    /// `APP_SERVERS`: every app server as `host:port`, comma-separated; a licence is
    /// synchronised to each of them but this one.
    pub app_servers: Vec<String>,
    pub fixture: Fixture,
}

// Secrets never reach a log: Debug shows everything else.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("redis_url", &redact_url(&self.redis.url))
            .field("redis_tls_ca", &self.redis.tls_ca)
            .field("redis_tls_client", &self.redis.tls_client)
            .field("database_url", &redact_url(&self.database.url))
            .field("sslmode", &self.database.sslmode)
            .field("schema", &self.database.schema)
            .field("s3_endpoint", &self.s3.endpoint)
            .field("s3_bucket", &self.s3.bucket)
            .field("secret_key", &"<redacted>")
            .field("analysis_ms_per_mib", &self.analysis_ms_per_mib)
            .field("license_path", &self.license_path)
            .field("app_servers", &self.app_servers)
            .field("fixture", &self.fixture)
            .finish()
    }
}

fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => raw.to_string(),
    }
}

/// Reads `KEY=VALUE` lines; `#` starts a comment; values may be quoted.
pub fn parse_file(path: &Path, text: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let file = path.display().to_string();
    let mut map = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |problem: String| ConfigError::File {
            file: file.clone(),
            line: i + 1,
            problem,
        };
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| err(format!("expected KEY=VALUE, found `{line}`")))?;
        let key = key.trim().trim_start_matches("export ").trim();
        if !KEYS.contains(&key) {
            return Err(err(format!(
                "unknown key `{key}` (known: {})",
                KEYS.join(", ")
            )));
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(value);
        map.insert(key.to_string(), value.to_string());
    }
    Ok(map)
}

impl Config {
    /// Loads the file (if given), lets the environment override it, and validates every key.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut map = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
                    file: path.display().to_string(),
                    line: 0,
                    problem: format!("cannot read: {e}"),
                })?;
                parse_file(path, &text)?
            }
            None => BTreeMap::new(),
        };
        for key in KEYS {
            if let Ok(v) = std::env::var(key) {
                map.insert(key.to_string(), v);
            }
        }
        let source = file.map_or("no config file given".into(), |p| p.display().to_string());
        Self::from_map(&map, &source)
    }

    /// What every binary does at start: load, or exit 2 naming the problem.
    pub fn load_or_exit(program: &str, file: Option<&Path>) -> Config {
        Config::load(file).unwrap_or_else(|e| {
            eprintln!("{program}: configuration error: {e}");
            std::process::exit(2);
        })
    }

    pub fn from_map(map: &BTreeMap<String, String>, source: &str) -> Result<Config, ConfigError> {
        let get = |key: &'static str| -> Result<&str, ConfigError> {
            map.get(key)
                .map(String::as_str)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| ConfigError::Missing {
                    key,
                    file: source.to_string(),
                })
        };
        let invalid = |key: &'static str, problem: String| ConfigError::Invalid { key, problem };

        let redis_url = get("REDIS_URL")?;
        let scheme = url::Url::parse(redis_url)
            .map_err(|e| invalid("REDIS_URL", format!("not a URL ({e})")))?
            .scheme()
            .to_string();
        if scheme != "redis" && scheme != "rediss" {
            return Err(invalid(
                "REDIS_URL",
                format!("scheme must be redis:// or rediss://, got {scheme}://"),
            ));
        }
        let redis = parse_redis_tls(map, redis_url, &scheme)?;

        let schema = map.get("DATABASE_SCHEMA").map_or("public", String::as_str);
        let schema_ok = !schema.is_empty()
            && schema.len() <= 63
            && schema
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && !schema.starts_with(|c: char| c.is_ascii_digit());
        if !schema_ok {
            return Err(invalid(
                "DATABASE_SCHEMA",
                format!("`{schema}` is not a plain lower-case SQL identifier"),
            ));
        }
        let database = parse_database_url(get("DATABASE_URL")?, schema)
            .map_err(|p| invalid("DATABASE_URL", p))?;

        let endpoint = get("S3_ENDPOINT")?;
        match url::Url::parse(endpoint) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
            _ => {
                return Err(invalid(
                    "S3_ENDPOINT",
                    format!("`{endpoint}` is not an http(s) URL"),
                ));
            }
        }
        let bucket = get("S3_TRACE_BUCKET")?;
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        if !bucket_ok {
            return Err(invalid(
                "S3_TRACE_BUCKET",
                format!("`{bucket}` is not a valid bucket name (3-63 of a-z 0-9 . -)"),
            ));
        }
        let use_put = match map.get("STORAGE_USE_PUT").map(String::as_str) {
            None | Some("") | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(other) => {
                return Err(invalid(
                    "STORAGE_USE_PUT",
                    format!("expected true or false, got `{other}`"),
                ));
            }
        };
        let s3 = S3Config {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            access_key_id: get("S3_TRACE_AWS_ACCESS_KEY_ID")?.to_string(),
            secret_access_key: get("S3_TRACE_AWS_SECRET_ACCESS_KEY")?.to_string(),
            bucket: bucket.to_string(),
            use_put,
        };

        let secret_hex = get("SECRET_KEY")?;
        let bytes = hex::decode(secret_hex).map_err(|_| {
            invalid(
                "SECRET_KEY",
                "must be hexadecimal (32 random bytes as 64 hex characters)".into(),
            )
        })?;
        let secret_key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            invalid(
                "SECRET_KEY",
                format!(
                    "must be 32 bytes (64 hex characters), got {} bytes",
                    bytes.len()
                ),
            )
        })?;

        let fixture = match map.get("HADRILL_FIXTURE").map(String::as_str) {
            None | Some("") => Fixture::None,
            Some(name) => *Fixture::ALL
                .iter()
                .find(|f| f.name() == name)
                .ok_or_else(|| {
                    let known: Vec<_> = Fixture::ALL
                        .iter()
                        .filter(|f| **f != Fixture::None)
                        .map(|f| f.name())
                        .collect();
                    invalid(
                        "HADRILL_FIXTURE",
                        format!("unknown fixture `{name}` (known: {})", known.join(", ")),
                    )
                })?,
        };
        let analysis_ms_per_mib = match map.get("ANALYSIS_MS_PER_MIB").map(String::as_str) {
            None | Some("") => 0,
            Some(raw) => raw.parse().map_err(|_| {
                invalid(
                    "ANALYSIS_MS_PER_MIB",
                    format!("expected a whole number of milliseconds, got `{raw}`"),
                )
            })?,
        };

        let license_path = PathBuf::from(
            map.get("LICENSE_PATH")
                .filter(|v| !v.is_empty())
                .map_or(DEFAULT_LICENSE_PATH, String::as_str),
        );
        let app_servers = match map.get("APP_SERVERS") {
            None => Vec::new(),
            Some(raw) => parse_app_servers(raw).map_err(|p| invalid("APP_SERVERS", p))?,
        };

        Ok(Config {
            redis,
            database,
            s3,
            secret_key,
            analysis_ms_per_mib,
            license_path,
            app_servers,
            fixture,
        })
    }
}

/// `host:port` entries separated by commas (blank: none).
fn parse_app_servers(raw: &str) -> Result<Vec<String>, String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| match s.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(s.to_string())
            }
            _ => Err(format!(
                "`{s}` is not host:port (list every app server, e.g. app1:8080,app2:8080)"
            )),
        })
        .collect()
}

/// `REDIS_TLS_CA`, `REDIS_TLS_CERT`, `REDIS_TLS_KEY`: only with `rediss://`, the last two
/// together. An empty value counts as unset.
fn parse_redis_tls(
    map: &BTreeMap<String, String>,
    url: &str,
    scheme: &str,
) -> Result<RedisConfig, ConfigError> {
    let path = |key: &str| map.get(key).filter(|v| !v.is_empty()).map(PathBuf::from);
    let (ca, cert, key) = (
        path("REDIS_TLS_CA"),
        path("REDIS_TLS_CERT"),
        path("REDIS_TLS_KEY"),
    );
    let given = [
        ("REDIS_TLS_CA", ca.is_some()),
        ("REDIS_TLS_CERT", cert.is_some()),
        ("REDIS_TLS_KEY", key.is_some()),
    ];
    if scheme != "rediss"
        && let Some((k, _)) = given.into_iter().find(|(_, set)| *set)
    {
        return Err(ConfigError::Invalid {
            key: k,
            problem: format!(
                "only meaningful with TLS, but REDIS_URL is {scheme}://: use rediss:// or unset {k}"
            ),
        });
    }
    let tls_client = match (cert, key) {
        (Some(cert), Some(key)) => Some(RedisClientCert { cert, key }),
        (None, None) => None,
        (Some(_), None) => {
            return Err(ConfigError::Invalid {
                key: "REDIS_TLS_CERT",
                problem: "given without REDIS_TLS_KEY: the client certificate needs its key".into(),
            });
        }
        (None, Some(_)) => {
            return Err(ConfigError::Invalid {
                key: "REDIS_TLS_KEY",
                problem: "given without REDIS_TLS_CERT: the client key needs its certificate"
                    .into(),
            });
        }
    };
    Ok(RedisConfig {
        url: url.to_string(),
        tls_ca: ca,
        tls_client,
    })
}

fn parse_database_url(raw: &str, schema: &str) -> Result<DatabaseConfig, String> {
    let mut url = url::Url::parse(raw).map_err(|e| format!("not a URL ({e})"))?;
    if url.scheme() != "postgresql" && url.scheme() != "postgres" {
        return Err(format!(
            "scheme must be postgresql://, got {}://",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("no host".into());
    }
    let mut sslmode = SslMode::Prefer;
    let (mut sslcert, mut sslkey, mut sslrootcert) = (None, None, None);
    let mut rest = Vec::new();
    for (k, v) in url.query_pairs() {
        match &*k {
            "sslmode" => {
                sslmode = match &*v {
                    "disable" => SslMode::Disable,
                    "prefer" => SslMode::Prefer,
                    "require" => SslMode::Require,
                    "verify-ca" => SslMode::VerifyCa,
                    other => {
                        return Err(format!(
                            "sslmode must be disable, prefer, require or verify-ca, got `{other}`"
                        ));
                    }
                }
            }
            "sslcert" => sslcert = Some(PathBuf::from(&*v)),
            "sslkey" => sslkey = Some(PathBuf::from(&*v)),
            "sslrootcert" => sslrootcert = Some(PathBuf::from(&*v)),
            _ => rest.push((k.into_owned(), v.into_owned())),
        }
    }
    if sslcert.is_some() != sslkey.is_some() {
        return Err("sslcert and sslkey must be given together".into());
    }
    if sslmode == SslMode::VerifyCa && sslrootcert.is_none() {
        return Err("sslmode=verify-ca needs sslrootcert".into());
    }
    if rest.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(rest);
    }
    Ok(DatabaseConfig {
        url: url.to_string(),
        sslmode,
        sslcert,
        sslkey,
        sslrootcert,
        schema: schema.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn full() -> BTreeMap<String, String> {
        [
            ("REDIS_URL", "redis://redis:6379"),
            (
                "DATABASE_URL",
                "postgresql://app:pw@db:5432/traces?sslmode=disable",
            ),
            ("S3_ENDPOINT", "http://s3:8333/"),
            ("S3_TRACE_AWS_ACCESS_KEY_ID", "AK"),
            ("S3_TRACE_AWS_SECRET_ACCESS_KEY", "SK"),
            ("S3_TRACE_BUCKET", "traces"),
            ("SECRET_KEY", SECRET),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn with(key: &str, value: &str) -> Result<Config, ConfigError> {
        let mut m = full();
        m.insert(key.into(), value.into());
        Config::from_map(&m, "test.conf")
    }

    fn without(key: &str) -> Result<Config, ConfigError> {
        let mut m = full();
        m.remove(key);
        Config::from_map(&m, "test.conf")
    }

    #[test]
    fn every_key_is_read() {
        let c = Config::from_map(&full(), "test.conf").unwrap();
        assert_eq!(c.redis.url, "redis://redis:6379");
        assert_eq!(c.database.url, "postgresql://app:pw@db:5432/traces");
        assert_eq!(c.database.sslmode, SslMode::Disable);
        assert_eq!(c.database.schema, "public");
        assert_eq!(c.s3.endpoint, "http://s3:8333");
        assert_eq!(c.s3.bucket, "traces");
        assert!(!c.s3.use_put);
        assert_eq!(hex::encode(c.secret_key), SECRET);
        assert_eq!(c.fixture, Fixture::None);
        assert_eq!(c.redis.tls_ca, None);
        assert_eq!(c.redis.tls_client, None);
        assert_eq!(c.license_path, Path::new("/var/lib/product/license"));
        assert!(c.app_servers.is_empty());
    }

    #[test]
    fn app_servers_and_the_license_path_are_read() {
        let c = with_all(&[
            ("APP_SERVERS", " app1:8080, app2:8080 ,"),
            ("LICENSE_PATH", "/srv/licence"),
        ])
        .unwrap();
        assert_eq!(c.app_servers, ["app1:8080", "app2:8080"]);
        assert_eq!(c.license_path, Path::new("/srv/licence"));
        for bad in ["app1", "app1:http", ":8080", "app1:8080,app2"] {
            let err = with("APP_SERVERS", bad).unwrap_err();
            assert!(
                matches!(
                    err,
                    ConfigError::Invalid {
                        key: "APP_SERVERS",
                        ..
                    }
                ),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn each_required_key_missing_is_named() {
        for key in [
            "REDIS_URL",
            "DATABASE_URL",
            "S3_ENDPOINT",
            "S3_TRACE_AWS_ACCESS_KEY_ID",
            "S3_TRACE_AWS_SECRET_ACCESS_KEY",
            "S3_TRACE_BUCKET",
            "SECRET_KEY",
        ] {
            let err = without(key).unwrap_err();
            assert!(
                matches!(err, ConfigError::Missing { key: k, .. } if k == key),
                "{key}: {err}"
            );
            assert!(err.to_string().starts_with(key), "{err}");
        }
    }

    #[test]
    fn bad_values_are_rejected_naming_the_key() {
        let cases = [
            ("REDIS_URL", "http://redis"),
            ("DATABASE_URL", "mysql://db/x"),
            ("DATABASE_URL", "postgresql://db/x?sslmode=verify-full"),
            ("DATABASE_URL", "postgresql://db/x?sslmode=verify-ca"),
            ("DATABASE_URL", "postgresql://db/x?sslcert=/c.pem"),
            ("DATABASE_SCHEMA", "Bad-Schema"),
            ("S3_ENDPOINT", "s3.example.com"),
            ("S3_TRACE_BUCKET", "No_Such"),
            ("STORAGE_USE_PUT", "maybe"),
            ("SECRET_KEY", "not-hex"),
            ("SECRET_KEY", "0011"),
            ("HADRILL_FIXTURE", "lose-everything"),
            ("ANALYSIS_MS_PER_MIB", "fast"),
        ];
        for (key, value) in cases {
            let err = with(key, value).unwrap_err();
            assert!(
                matches!(&err, ConfigError::Invalid { key: k, .. } if *k == key),
                "{key}={value}: {err}"
            );
        }
    }

    #[test]
    fn fixtures_are_parsed_by_name() {
        for (name, fixture) in [
            ("", Fixture::None),
            ("none", Fixture::None),
            ("ack-before-store", Fixture::AckBeforeStore),
            ("local-clock", Fixture::LocalClock),
            ("ack-before-commit", Fixture::AckBeforeCommit),
            ("migration-fails-halfway", Fixture::MigrationFailsHalfway),
            ("half-migrates", Fixture::HalfMigrates),
            ("license-in-memory", Fixture::LicenseInMemory),
        ] {
            assert_eq!(with("HADRILL_FIXTURE", name).unwrap().fixture, fixture);
        }
        for &f in Fixture::ALL {
            assert_eq!(with("HADRILL_FIXTURE", f.name()).unwrap().fixture, f);
        }
        let err = with("HADRILL_FIXTURE", "half-migrated").unwrap_err();
        assert_eq!(
            err.to_string(),
            "HADRILL_FIXTURE is invalid: unknown fixture `half-migrated` (known: \
             ack-before-store, local-clock, ack-before-commit, migration-fails-halfway, half-migrates, \
             license-in-memory)"
        );
    }

    #[test]
    fn tls_options_are_split_from_the_url() {
        let c = with(
            "DATABASE_URL",
            "postgresql://u:p@db/x?sslmode=verify-ca&sslcert=/c.pem&sslkey=/k.pem&sslrootcert=/ca.pem&application_name=web",
        )
        .unwrap();
        assert_eq!(c.database.sslmode, SslMode::VerifyCa);
        assert_eq!(c.database.sslcert.as_deref(), Some(Path::new("/c.pem")));
        assert_eq!(c.database.sslkey.as_deref(), Some(Path::new("/k.pem")));
        assert_eq!(
            c.database.sslrootcert.as_deref(),
            Some(Path::new("/ca.pem"))
        );
        assert_eq!(c.database.url, "postgresql://u:p@db/x?application_name=web");
        assert_eq!(
            with("DATABASE_URL", "postgresql://db/x")
                .unwrap()
                .database
                .sslmode,
            SslMode::Prefer
        );
        assert!(with("REDIS_URL", "rediss://redis:6380").is_ok());
        assert!(with("STORAGE_USE_PUT", "true").unwrap().s3.use_put);
        assert_eq!(
            with("DATABASE_SCHEMA", "tenant_a").unwrap().database.schema,
            "tenant_a"
        );
    }

    fn with_all(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut m = full();
        for (k, v) in pairs {
            m.insert(k.to_string(), v.to_string());
        }
        Config::from_map(&m, "test.conf")
    }

    #[test]
    fn redis_tls_files_are_read_with_rediss() {
        let c = with_all(&[
            ("REDIS_URL", "rediss://redis:6380"),
            ("REDIS_TLS_CA", "/tls/ca.pem"),
            ("REDIS_TLS_CERT", "/tls/client.pem"),
            ("REDIS_TLS_KEY", "/tls/client.key"),
        ])
        .unwrap();
        assert_eq!(
            c.redis,
            RedisConfig {
                url: "rediss://redis:6380".into(),
                tls_ca: Some("/tls/ca.pem".into()),
                tls_client: Some(RedisClientCert {
                    cert: "/tls/client.pem".into(),
                    key: "/tls/client.key".into(),
                }),
            }
        );
        // A CA alone: the server is verified, no client certificate is sent.
        let c = with_all(&[
            ("REDIS_URL", "rediss://redis:6380"),
            ("REDIS_TLS_CA", "/tls/ca.pem"),
        ])
        .unwrap();
        assert_eq!(c.redis.tls_ca.as_deref(), Some(Path::new("/tls/ca.pem")));
        assert_eq!(c.redis.tls_client, None);
        // Empty values count as unset.
        let c = with_all(&[
            ("REDIS_TLS_CA", ""),
            ("REDIS_TLS_CERT", ""),
            ("REDIS_TLS_KEY", ""),
        ])
        .unwrap();
        assert_eq!(c.redis.tls_ca, None);
        assert_eq!(c.redis.tls_client, None);
    }

    #[test]
    fn redis_tls_files_without_rediss_are_rejected_naming_the_key() {
        for key in ["REDIS_TLS_CA", "REDIS_TLS_CERT", "REDIS_TLS_KEY"] {
            let err = with(key, "/tls/x.pem").unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "{key} is invalid: only meaningful with TLS, but REDIS_URL is redis://: \
                     use rediss:// or unset {key}"
                )
            );
        }
        let err = with_all(&[
            ("REDIS_TLS_CERT", "/tls/client.pem"),
            ("REDIS_TLS_KEY", "/tls/client.key"),
        ])
        .unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Invalid {
                    key: "REDIS_TLS_CERT",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn redis_client_cert_and_key_go_together() {
        let err = with_all(&[
            ("REDIS_URL", "rediss://redis:6380"),
            ("REDIS_TLS_CA", "/tls/ca.pem"),
            ("REDIS_TLS_CERT", "/tls/client.pem"),
        ])
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "REDIS_TLS_CERT is invalid: given without REDIS_TLS_KEY: the client certificate \
             needs its key"
        );
        let err = with_all(&[
            ("REDIS_URL", "rediss://redis:6380"),
            ("REDIS_TLS_KEY", "/tls/client.key"),
        ])
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "REDIS_TLS_KEY is invalid: given without REDIS_TLS_CERT: the client key needs its \
             certificate"
        );
    }

    #[test]
    fn file_is_parsed_and_the_environment_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        let mut text = String::from("# product config\n");
        for (k, v) in full() {
            text.push_str(&format!("{k}=\"{v}\"\n"));
        }
        text.push_str("DATABASE_SCHEMA=from_file\n");
        std::fs::write(&path, text).unwrap();
        let c = Config::load(Some(&path)).unwrap();
        assert_eq!(c.database.schema, "from_file");
        assert_eq!(c.redis.url, "redis://redis:6379");

        // SAFETY: this is the only test touching DATABASE_SCHEMA; nextest runs it in its own process.
        unsafe { std::env::set_var("DATABASE_SCHEMA", "from_env") };
        let c = Config::load(Some(&path)).unwrap();
        unsafe { std::env::remove_var("DATABASE_SCHEMA") };
        assert_eq!(c.database.schema, "from_env");
    }

    #[test]
    fn file_errors_name_the_line() {
        let p = Path::new("/etc/product/config");
        let err = parse_file(p, "REDIS_URL=redis://r\nSECRET_KY=abc\n").unwrap_err();
        assert_eq!(
            err,
            ConfigError::File {
                file: "/etc/product/config".into(),
                line: 2,
                problem: format!("unknown key `SECRET_KY` (known: {})", KEYS.join(", ")),
            }
        );
        let err = parse_file(p, "just words\n").unwrap_err();
        assert!(
            err.to_string().contains("config:1: expected KEY=VALUE"),
            "{err}"
        );
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let c = Config::from_map(&full(), "t").unwrap();
        let shown = format!("{c:?}");
        assert!(
            !shown.contains(SECRET) && !shown.contains(":pw@") && !shown.contains("SK"),
            "{shown}"
        );
    }
}
