//! The product licence (SYSTEMS.md §1: "a licence file is uploaded to one VM and synchronised
//! from there"). A licence is a text file of `key=value` lines:
//!
//! ```text
//! customer=Example Corp
//! expires=2099-12-31
//! id=LIC-0001
//! signature=<hex HMAC-SHA256 of the other lines, with the vendor's key>
//! ```
//!
//! `#` lines and blank lines are comments, not signed. The signed text is every other line
//! but `signature`, trimmed, in file order, each ending in `\n`. `web license install` checks a
//! file and keeps it on this VM; `web license synchronize` sends this VM's copy to every other
//! app server (`APP_SERVERS`), which checks it and keeps it on its own disk.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::{Config, Fixture};

/// The vendor's signing key. A real vendor signs with a private key and ships the public one;
/// a key compiled into the product stands in for it here (anyone holding the binary could
/// sign), which is enough for the drills: a licence altered by hand is refused.
const VENDOR_KEY: &[u8] = b"hadrill reference product: licence vendor key v1";

/// The header carrying a synchronised licence's authentication tag.
pub const SYNC_AUTH_HEADER: &str = "x-license-auth";

/// Keeps the tag of a synchronisation apart from any other use of `SECRET_KEY`.
const SYNC_CONTEXT: &[u8] = b"hadrill licence synchronisation\n";

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LicenseError {
    #[error("line {line}: {problem}")]
    Format { line: usize, problem: String },
    #[error("`{0}=` is missing")]
    Missing(&'static str),
    #[error("the signature does not match: the licence was altered, or not issued by the vendor")]
    Signature,
    #[error("expired on {0}")]
    Expired(String),
}

/// A licence whose signature and expiry were checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct License {
    pub id: String,
    pub customer: String,
    pub expires: String,
    /// SHA-256 of the file's bytes: the same file on every VM has the same digest.
    pub sha256: String,
    #[serde(skip)]
    pub text: String,
}

const FIELDS: [&str; 4] = ["customer", "expires", "id", "signature"];

impl License {
    /// Parses and checks `text`: every field once, a vendor signature, and `expires` not
    /// before `today` (`YYYY-MM-DD`).
    pub fn parse(text: &str, today: &str) -> Result<License, LicenseError> {
        let mut found: [Option<String>; 4] = Default::default();
        let mut signed = String::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let problem = |problem: String| LicenseError::Format {
                line: i + 1,
                problem,
            };
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| problem(format!("expected key=value, found `{line}`")))?;
            let slot = FIELDS.iter().position(|f| *f == key).ok_or_else(|| {
                problem(format!(
                    "unknown field `{key}` (known: {})",
                    FIELDS.join(", ")
                ))
            })?;
            if found[slot].replace(value.to_string()).is_some() {
                return Err(problem(format!("`{key}` given twice")));
            }
            if key != "signature" {
                signed.push_str(line);
                signed.push('\n');
            }
        }
        let [customer, expires, id, signature] = found;
        let customer = customer.ok_or(LicenseError::Missing("customer"))?;
        let expires = expires.ok_or(LicenseError::Missing("expires"))?;
        let id = id.ok_or(LicenseError::Missing("id"))?;
        let signature = signature.ok_or(LicenseError::Missing("signature"))?;
        if !is_date(&expires) {
            return Err(LicenseError::Format {
                line: line_of(text, "expires"),
                problem: format!("expires must be a date, YYYY-MM-DD, got `{expires}`"),
            });
        }
        let tag = hex::decode(&signature).map_err(|_| LicenseError::Signature)?;
        let mut mac = HmacSha256::new_from_slice(VENDOR_KEY).expect("HMAC takes any key");
        mac.update(signed.as_bytes());
        mac.verify_slice(&tag)
            .map_err(|_| LicenseError::Signature)?;
        // ISO dates compare as strings.
        if expires.as_str() < today {
            return Err(LicenseError::Expired(expires));
        }
        Ok(License {
            id,
            customer,
            expires,
            sha256: hex::encode(Sha256::digest(text.as_bytes())),
            text: text.to_string(),
        })
    }

    /// The licence in one line, as the commands print it.
    pub fn describe(&self) -> String {
        format!(
            "licence {} for {}, expires {}, sha256 {}",
            self.id, self.customer, self.expires, self.sha256
        )
    }
}

fn line_of(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| l.trim().starts_with(&format!("{key}=")))
        .map_or(0, |i| i + 1)
}

/// `YYYY-MM-DD` with a month and a day that can exist.
fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' || !digits(0..4) {
        return false;
    }
    if !digits(5..7) || !digits(8..10) {
        return false;
    }
    let (month, day): (u32, u32) = (s[5..7].parse().unwrap_or(0), s[8..10].parse().unwrap_or(0));
    (1..=12).contains(&month) && (1..=31).contains(&day)
}

/// Today on this node's clock, `YYYY-MM-DD` (UTC).
pub fn today() -> String {
    humantime::format_rfc3339(std::time::SystemTime::now()).to_string()[..10].to_string()
}

/// Why this VM holds no usable licence, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum NotHeld {
    #[error(
        "no licence at {0}: upload the licence file to one app server, run `web license install FILE` there, then `web license synchronize`"
    )]
    Missing(PathBuf),
    #[error("cannot read the licence at {path}: {error}")]
    Unreadable {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "the licence at {path} is not valid: {problem}: install a valid one with `web license install FILE`"
    )]
    Invalid {
        path: PathBuf,
        problem: LicenseError,
    },
}

// The causes are in the messages, not chained as sources: the HTTP answers show only the
// message, and the command line's `{:#}` would print a source twice.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("licence refused: {0}")]
    Refused(LicenseError),
    #[error("cannot keep the licence at {path}: {error}")]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// This VM's licence: a file at `LICENSE_PATH`, read afresh each time so that one installed
/// by the command line is seen by the running server.
pub struct Store {
    path: PathBuf,
    /// The `license-in-memory` fixture: a synchronised licence is kept here, not on disk.
    in_memory: bool,
    memory: Mutex<Option<License>>,
    secret_key: [u8; 32],
}

impl Store {
    pub fn new(config: &Config) -> Store {
        Store {
            path: config.license_path.clone(),
            in_memory: config.fixture == Fixture::LicenseInMemory,
            memory: Mutex::new(None),
            secret_key: config.secret_key,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The licence this VM holds, checked again (it may have expired since).
    pub fn held(&self) -> Result<License, NotHeld> {
        let remembered = self
            .memory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let text = match remembered {
            Some(l) => l.text,
            None => match std::fs::read_to_string(&self.path) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(NotHeld::Missing(self.path.clone()));
                }
                Err(error) => {
                    return Err(NotHeld::Unreadable {
                        path: self.path.clone(),
                        error,
                    });
                }
            },
        };
        License::parse(&text, &today()).map_err(|problem| NotHeld::Invalid {
            path: self.path.clone(),
            problem,
        })
    }

    /// Checks `text` and keeps it on this VM (`web license install`).
    pub fn install(&self, text: &str) -> Result<License, StoreError> {
        let license = License::parse(text, &today()).map_err(StoreError::Refused)?;
        self.persist(text)?;
        Ok(license)
    }

    /// Checks a licence another app server sent and keeps it, on disk unless the
    /// `license-in-memory` fixture keeps it in this process only.
    pub fn accept_synchronised(&self, text: &str) -> Result<License, StoreError> {
        let license = License::parse(text, &today()).map_err(StoreError::Refused)?;
        if self.in_memory {
            *self.memory.lock().unwrap_or_else(|e| e.into_inner()) = Some(license.clone());
        } else {
            self.persist(text)?;
        }
        Ok(license)
    }

    /// Writes to a temporary file beside the licence, syncs, and renames it into place: a VM
    /// that dies meanwhile keeps the old licence or the new one, never half of one.
    fn persist(&self, text: &str) -> Result<(), StoreError> {
        let write = |error| StoreError::Write {
            path: self.path.clone(),
            error,
        };
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        std::fs::create_dir_all(dir).map_err(write)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(write)?;
        tmp.write_all(text.as_bytes()).map_err(write)?;
        tmp.as_file().sync_all().map_err(write)?;
        tmp.persist(&self.path).map_err(|e| write(e.error))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(write)
    }

    /// The tag a synchronised licence carries: an HMAC of its text under this install's
    /// `SECRET_KEY`, so only a VM of the same install can push one.
    pub fn sync_tag(&self, text: &str) -> String {
        hex::encode(self.sync_mac(text).finalize().into_bytes())
    }

    /// Whether `tag` (hex) is `text`'s tag; compared in constant time.
    pub fn sync_tag_matches(&self, text: &str, tag: &str) -> bool {
        hex::decode(tag).is_ok_and(|t| self.sync_mac(text).verify_slice(&t).is_ok())
    }

    fn sync_mac(&self, text: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.secret_key).expect("HMAC takes any key");
        mac.update(SYNC_CONTEXT);
        mac.update(text.as_bytes());
        mac
    }
}

/// The app servers of `APP_SERVERS` other than this one (`me`, its host name).
pub fn peers<'a>(app_servers: &'a [String], me: &str) -> Vec<&'a str> {
    app_servers
        .iter()
        .map(String::as_str)
        .filter(|s| s.rsplit_once(':').map_or(*s, |(host, _)| host) != me)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A licence signed with the vendor key, as the vendor's tooling would issue it.
    fn issue(customer: &str, expires: &str, id: &str) -> String {
        let body = format!("customer={customer}\nexpires={expires}\nid={id}\n");
        let mut mac = HmacSha256::new_from_slice(VENDOR_KEY).unwrap();
        mac.update(body.as_bytes());
        format!(
            "{body}signature={}\n",
            hex::encode(mac.finalize().into_bytes())
        )
    }

    const TODAY: &str = "2026-12-05";

    #[test]
    fn a_signed_licence_is_read() {
        let text = format!(
            "# issued for the drills\n\n{}",
            issue("Acme", "2027-01-31", "L-1")
        );
        let l = License::parse(&text, TODAY).unwrap();
        assert_eq!(
            (l.id.as_str(), l.customer.as_str(), l.expires.as_str()),
            ("L-1", "Acme", "2027-01-31")
        );
        assert_eq!(l.sha256, hex::encode(Sha256::digest(text.as_bytes())));
        // The last day is still valid.
        assert!(License::parse(&issue("Acme", TODAY, "L-1"), TODAY).is_ok());
    }

    #[test]
    fn an_altered_licence_is_refused() {
        let text = issue("Acme", "2027-01-31", "L-1").replace("2027-01-31", "2099-01-31");
        assert_eq!(
            License::parse(&text, TODAY).unwrap_err(),
            LicenseError::Signature
        );
        let text = issue("Acme", "2027-01-31", "L-1").replace("signature=", "signature=00");
        assert_eq!(
            License::parse(&text, TODAY).unwrap_err(),
            LicenseError::Signature
        );
        let text = issue("Acme", "2027-01-31", "L-1").replace("signature=", "signature=zz");
        assert_eq!(
            License::parse(&text, TODAY).unwrap_err(),
            LicenseError::Signature
        );
    }

    #[test]
    fn an_expired_licence_is_refused() {
        let err = License::parse(&issue("Acme", "2026-12-04", "L-1"), TODAY).unwrap_err();
        assert_eq!(err.to_string(), "expired on 2026-12-04");
    }

    #[test]
    fn a_malformed_licence_names_the_line() {
        let err = License::parse("customer=Acme\nwhatever\n", TODAY).unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 2: expected key=value, found `whatever`"
        );
        let err = License::parse("customer=Acme\nseats=5\n", TODAY).unwrap_err();
        assert!(
            err.to_string().starts_with("line 2: unknown field `seats`"),
            "{err}"
        );
        let err = License::parse("id=a\nid=b\n", TODAY).unwrap_err();
        assert_eq!(err.to_string(), "line 2: `id` given twice");
        let err = License::parse("customer=Acme\nexpires=2027-01-31\n", TODAY).unwrap_err();
        assert_eq!(err, LicenseError::Missing("id"));
        let text = issue("Acme", "2027-13-01", "L-1");
        let err = License::parse(&text, TODAY).unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 2: expires must be a date, YYYY-MM-DD, got `2027-13-01`"
        );
    }

    #[test]
    fn the_committed_test_licence_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../topologies/config/web-ha-licensed/license");
        let text = std::fs::read_to_string(&path).unwrap();
        let l = License::parse(&text, &today()).unwrap();
        assert_eq!(l.id, "HADRILL-TEST-0001");
    }

    fn store(dir: &Path, fixture: Fixture) -> Store {
        Store {
            path: dir.join("product/license"),
            in_memory: fixture == Fixture::LicenseInMemory,
            memory: Mutex::new(None),
            secret_key: [7; 32],
        }
    }

    #[test]
    fn an_installed_licence_is_kept_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), Fixture::None);
        let err = s.held().unwrap_err();
        assert!(
            err.to_string()
                .contains("run `web license install FILE` there"),
            "{err}"
        );
        let text = issue("Acme", "2099-12-31", "L-1");
        let installed = s.install(&text).unwrap();
        assert_eq!(std::fs::read_to_string(s.path()).unwrap(), text);
        // Another process (the server, after a restart) reads it from disk.
        assert_eq!(store(dir.path(), Fixture::None).held().unwrap(), installed);
        assert!(matches!(
            s.install("id=x\n"),
            Err(StoreError::Refused(LicenseError::Missing(_)))
        ));
        assert_eq!(
            std::fs::read_to_string(s.path()).unwrap(),
            text,
            "a refused licence changes nothing"
        );
    }

    #[test]
    fn a_synchronised_licence_survives_a_restart_unless_kept_in_memory() {
        let text = issue("Acme", "2099-12-31", "L-1");
        let dir = tempfile::tempdir().unwrap();
        store(dir.path(), Fixture::None)
            .accept_synchronised(&text)
            .unwrap();
        assert!(store(dir.path(), Fixture::None).held().is_ok());

        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), Fixture::LicenseInMemory);
        s.accept_synchronised(&text).unwrap();
        assert!(s.held().is_ok(), "held while the process lives");
        assert!(
            matches!(
                store(dir.path(), Fixture::LicenseInMemory).held(),
                Err(NotHeld::Missing(_))
            ),
            "and gone after it restarts"
        );
    }

    #[test]
    fn only_this_installs_key_can_push_a_licence() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), Fixture::None);
        let tag = s.sync_tag("text");
        assert!(s.sync_tag_matches("text", &tag));
        assert!(!s.sync_tag_matches("other text", &tag));
        assert!(!s.sync_tag_matches("text", "not hex"));
        let mut other = store(dir.path(), Fixture::None);
        other.secret_key = [8; 32];
        assert!(!other.sync_tag_matches("text", &tag));
    }

    #[test]
    fn synchronising_skips_this_server() {
        let servers = ["app1:8080".to_string(), "app2:8080".to_string()];
        assert_eq!(peers(&servers, "app1"), ["app2:8080"]);
        assert_eq!(peers(&servers, "lb"), ["app1:8080", "app2:8080"]);
    }
}
