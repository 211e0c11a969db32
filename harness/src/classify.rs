//! How one exchange with the system ended, by the same honesty rules for every client: `ok`
//! when it took effect, `fail` only when it certainly did not (refused by the server, or
//! never sent), `unknown` when it may have (lost after sending, timed out, an answer that
//! leaves the server's state unspecified). A write judged `fail` that took effect would be
//! reported as lost or as refused-but-stored; one judged `unknown` never is.

use hadrill_model::{Exchange, Outcome};
use serde::{Deserialize, Serialize};

/// The response headers that name who answered, when the product sets them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Answerer<'a> {
    /// The node that served the request. An app server's answer carries it and the load
    /// balancer's own answer does not: that is how the two are told apart.
    pub node: Option<&'a str>,
    /// The product release that served it.
    pub version: Option<&'a str>,
}

/// One status or a class of them (`503`, `"4xx"`), as a scenario names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum StatusPattern {
    Code(u16),
    #[serde(serialize_with = "class_name")]
    Class(u8),
}

fn class_name<S: serde::Serializer>(class: &u8, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{class}xx"))
}

impl StatusPattern {
    fn matches(self, status: u16) -> bool {
        match self {
            StatusPattern::Code(c) => c == status,
            StatusPattern::Class(c) => status / 100 == u16::from(c),
        }
    }
}

impl<'de> Deserialize<'de> for StatusPattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Code(u16),
            Class(String),
        }
        let bad = || {
            serde::de::Error::custom(
                "a status is a number from 100 to 599 or a class written \"4xx\" (1xx to 5xx)",
            )
        };
        match Raw::deserialize(d)? {
            Raw::Code(c) if (100..600).contains(&c) => Ok(StatusPattern::Code(c)),
            Raw::Class(c) => match c.as_bytes() {
                [d @ b'1'..=b'5', b'x', b'x'] => Ok(StatusPattern::Class(d - b'0')),
                _ => Err(bad()),
            },
            Raw::Code(_) => Err(bad()),
        }
    }
}

/// The statuses a product gives only before it processed a request: an answer with one of
/// them is a refusal (`fail`). Any other answer that does not acknowledge may follow
/// processing (a 500 after the commit, a 503 from a handler whose database went away
/// mid-commit) and is `unknown`. Without a declaration, only a 4xx is definite: a client
/// error is refused before any work in every framework we know of; a 5xx is never assumed to
/// be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Definite(pub Vec<StatusPattern>);

impl Default for Definite {
    fn default() -> Self {
        Definite(vec![StatusPattern::Class(4)])
    }
}

impl Definite {
    pub fn contains(&self, status: u16) -> bool {
        self.0.iter().any(|p| p.matches(status))
    }
}

/// An HTTP exchange. A 2xx took effect; a connection never made is `fail`. An app server's
/// other answers are refusals only when the product declares them `definite`. The load
/// balancer's own answer (no `answerer.node` header, when one is named) never reached a
/// server if it is a 4xx or a 503 ("no server is available"): `fail`; its 502/504 (the
/// upstream lost mid-request, or timed out) may follow processing: `unknown`.
pub fn http(
    result: &Result<reqwest::Response, reqwest::Error>,
    answerer: Answerer<'_>,
    definite: &Definite,
) -> Exchange {
    match result {
        Ok(r) => {
            let status = r.status().as_u16();
            let header = |name: Option<&str>| {
                name.and_then(|h| r.headers().get(h))
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let node = header(answerer.node);
            let from_balancer = answerer.node.is_some() && node.is_none();
            let outcome = http_status(status, from_balancer, definite);
            Exchange {
                outcome,
                status: Some(status),
                error: (outcome != Outcome::Ok).then(|| {
                    if from_balancer && outcome == Outcome::Fail && status >= 500 {
                        format!("HTTP {status} (the load balancer's own: no server)")
                    } else {
                        format!("HTTP {status}")
                    }
                }),
                node,
                version: header(answerer.version),
            }
        }
        // Refused or unreachable: the request never left.
        Err(e) if e.is_connect() => exchange(Outcome::Fail, format!("connect: {e}")),
        Err(e) => exchange(
            Outcome::Unknown,
            if e.is_timeout() {
                "timed out".to_string()
            } else {
                format!("{e}")
            },
        ),
    }
}

/// What an HTTP status says about whether the request took effect; `from_balancer` when the
/// load balancer answered itself.
pub fn http_status(status: u16, from_balancer: bool, definite: &Definite) -> Outcome {
    match status {
        200..=299 => Outcome::Ok,
        400..=499 | 503 if from_balancer => Outcome::Fail,
        _ if !from_balancer && definite.contains(status) => Outcome::Fail,
        _ => Outcome::Unknown,
    }
}

/// A SQL statement within a timeout. The server refusing it (read-only, bad SQL, bad
/// credentials) means it did not run: `fail`. A lost connection or a timeout may come after
/// the commit, and a shutdown can terminate a backend that already committed locally:
/// `unknown`.
pub fn sql<T>(
    r: Result<Result<T, tokio_postgres::Error>, tokio::time::error::Elapsed>,
    declared: &[SqlState],
) -> (Option<T>, Exchange) {
    match r {
        Ok(Ok(v)) => (Some(v), Exchange::OK),
        Ok(Err(e)) => {
            let (outcome, msg) = match e.as_db_error() {
                Some(d) => (
                    sqlstate(d.code().code(), declared),
                    format!("{}: {}", d.code().code(), d.message()),
                ),
                None => (Outcome::Unknown, e.to_string()),
            };
            (None, exchange(outcome, msg))
        }
        Err(_) => (None, exchange(Outcome::Unknown, "timed out".into())),
    }
}

/// The server's own error for a statement (SQLSTATE): the classes that mean it refused the
/// statement before running it (data exception, integrity violation, invalid transaction
/// state such as a read-only standby, bad credentials, no such catalog, syntax or access)
/// are `fail`; any other (a shutdown, an admin termination, a crash) may follow the commit.
pub fn sqlstate(code: &str, declared: &[SqlState]) -> Outcome {
    match code.get(..2) {
        Some("22" | "23" | "25" | "28" | "3D" | "42") => Outcome::Fail,
        _ if declared.iter().any(|d| code.starts_with(&d.0)) => Outcome::Fail,
        _ => Outcome::Unknown,
    }
}

/// A SQLSTATE (`40001`) or its class (`40`) that a product declares definite besides
/// PostgreSQL's own refusals: e.g. a serialization failure when every write is one statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SqlState(String);

impl TryFrom<String> for SqlState {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let ok = matches!(s.len(), 2 | 5)
            && s.bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase());
        if ok {
            Ok(SqlState(s))
        } else {
            Err(format!(
                "`{s}` is not a SQLSTATE: five digits or capitals (`40001`), or its class (`40`)"
            ))
        }
    }
}

impl From<SqlState> for String {
    fn from(s: SqlState) -> String {
        s.0
    }
}

/// Redis's error replies that refuse a command before it runs: a read-only replica, a
/// primary without its replicas (`min-replicas-to-write`) or cut from its master, a dataset
/// still loading, out of memory, a failed save refusing writes, bad credentials or
/// permissions, a wrong type, a cluster redirect or a cluster down.
pub const REDIS_REFUSALS: &[&str] = &[
    "READONLY",
    "NOREPLICAS",
    "MASTERDOWN",
    "LOADING",
    "OOM",
    "MISCONF",
    "NOAUTH",
    "WRONGPASS",
    "NOPERM",
    "WRONGTYPE",
    "MOVED",
    "ASK",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "CROSSSLOT",
];

/// Whether a Redis error reply with this code is a refusal: Redis's own (`REDIS_REFUSALS`)
/// or one the product declares. Any other (a generic `ERR` from a proxy in front, a script
/// that failed part-way) may follow the write.
pub fn redis_refusal(code: Option<&str>, declared: &[String]) -> bool {
    code.is_some_and(|c| REDIS_REFUSALS.contains(&c) || declared.iter().any(|d| d == c))
}

/// How a request on a plain TCP protocol failed (one message, one answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpFailure {
    /// No connection, or the message could not be written: it never reached the server.
    NotSent(String),
    /// The server answered with a refusal.
    Refused(String),
    /// Sent, and then no usable answer (closed, reset, timed out, garbled): it may have been
    /// processed.
    Lost(String),
}

impl TcpFailure {
    pub fn outcome(&self) -> Outcome {
        match self {
            TcpFailure::NotSent(_) | TcpFailure::Refused(_) => Outcome::Fail,
            TcpFailure::Lost(_) => Outcome::Unknown,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            TcpFailure::NotSent(m) | TcpFailure::Refused(m) | TcpFailure::Lost(m) => m,
        }
    }
}

impl std::fmt::Display for TcpFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

/// A TCP request that failed.
pub fn tcp(failure: &TcpFailure) -> Exchange {
    exchange(failure.outcome(), failure.message().to_string())
}

fn exchange(outcome: Outcome, error: String) -> Exchange {
    Exchange {
        outcome,
        error: Some(error),
        ..Exchange::OK
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;

    fn answered(status: u16) -> Outcome {
        let response = ::http::Response::builder()
            .status(status)
            .body(Vec::<u8>::new())
            .unwrap();
        http(
            &Ok(reqwest::Response::from(response)),
            Answerer::default(),
            &Definite::default(),
        )
        .outcome
    }

    /// By default a 4xx is a refusal and every 5xx may hide a processed request: a write the
    /// product committed and then reported as an error (MLflow's 503 when its database went
    /// away mid-commit) must not be judged as refused.
    #[test]
    fn statuses_that_may_hide_a_processed_request_are_unknown() {
        assert_eq!(answered(201), Outcome::Ok);
        for status in [500, 502, 503, 504] {
            assert_eq!(answered(status), Outcome::Unknown, "HTTP {status}");
        }
        for status in [400, 401, 404, 409, 413] {
            assert_eq!(answered(status), Outcome::Fail, "HTTP {status}");
        }
    }

    /// What the product declares definite is a refusal from an app server; the load
    /// balancer's own 503 (no server header) never reached one, whatever the declaration,
    /// while its 502/504 may have.
    #[test]
    fn the_product_declares_its_refusals_and_the_balancer_is_told_apart() {
        let declared: Definite =
            toml::from_str::<BTreeMap<String, Definite>>("definite = [\"4xx\", 503]")
                .unwrap()
                .remove("definite")
                .unwrap();
        let answer = |status: u16, served_by: Option<&str>, definite: &Definite| {
            let mut response = ::http::Response::builder().status(status);
            if let Some(node) = served_by {
                response = response.header("x-served-by", node);
            }
            let response = response.body(Vec::<u8>::new()).unwrap();
            let answerer = Answerer {
                node: Some("x-served-by"),
                version: None,
            };
            http(&Ok(reqwest::Response::from(response)), answerer, definite)
        };
        assert_eq!(answer(503, Some("app1"), &declared).outcome, Outcome::Fail);
        assert_eq!(
            answer(500, Some("app1"), &declared).outcome,
            Outcome::Unknown
        );
        let undeclared = Definite::default();
        assert_eq!(
            answer(503, Some("app1"), &undeclared).outcome,
            Outcome::Unknown
        );
        let lb = answer(503, None, &undeclared);
        assert_eq!(lb.outcome, Outcome::Fail);
        assert!(lb.error.unwrap().contains("load balancer"));
        for status in [502, 504] {
            assert_eq!(answer(status, None, &declared).outcome, Outcome::Unknown);
        }
    }

    #[test]
    fn a_status_pattern_is_a_code_or_a_class() {
        let parse = |text: &str| {
            toml::from_str::<BTreeMap<String, Definite>>(&format!("definite = {text}"))
                .map(|mut m| m.remove("definite").unwrap())
        };
        assert_eq!(
            parse("[409, \"5xx\"]").unwrap(),
            Definite(vec![StatusPattern::Code(409), StatusPattern::Class(5)])
        );
        for bad in ["[\"4x\"]", "[\"6xx\"]", "[99]", "[\"x\"]"] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains("a status is a number"), "{bad}: {e}");
        }
    }

    /// A 401 is recorded as the model's `UNAUTHORIZED`, which the checks read as a refused
    /// credential; the node and release that answered come from the headers the caller names.
    #[test]
    fn a_401_is_unauthorized_and_the_answerer_is_read_from_the_named_headers() {
        let response = ::http::Response::builder()
            .status(401)
            .header("x-backend", "app2")
            .header("x-release", "7.1")
            .body(Vec::<u8>::new())
            .unwrap();
        let ex = http(
            &Ok(reqwest::Response::from(response)),
            Answerer {
                node: Some("x-backend"),
                version: Some("x-release"),
            },
            &Definite::default(),
        );
        assert_eq!(ex.error.as_deref(), Some(hadrill_model::UNAUTHORIZED));
        assert_eq!(ex.node.as_deref(), Some("app2"));
        assert_eq!(ex.version.as_deref(), Some("7.1"));
    }

    /// A closed port: the request never left (`fail`). A server that takes the request and
    /// never answers: it may have processed it (`unknown`).
    #[tokio::test]
    async fn http_transport_errors_fail_only_when_nothing_was_sent() {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let refused = http(
            &client.get(format!("http://127.0.0.1:{port}/")).send().await,
            Answerer::default(),
            &Definite::default(),
        );
        assert_eq!(refused.outcome, Outcome::Fail, "{:?}", refused.error);

        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        let keep = tokio::spawn(async move {
            let (conn, _) = silent.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(2)).await;
            drop(conn);
        });
        let lost = http(
            &client
                .post(format!("http://{addr}/"))
                .body("x")
                .send()
                .await,
            Answerer::default(),
            &Definite::default(),
        );
        assert_eq!(lost.outcome, Outcome::Unknown, "{:?}", lost.error);
        keep.abort();
    }

    #[test]
    fn sql_refusals_fail_and_everything_else_is_unknown() {
        // read_only_sql_transaction (a standby), unique_violation, invalid_password,
        // undefined_table: the statement did not run.
        for code in ["25006", "23505", "28P01", "42P01", "22001", "3D000"] {
            assert_eq!(sqlstate(code, &[]), Outcome::Fail, "{code}");
        }
        // admin_shutdown, crash_shutdown, connection_failure, serialization_failure: it may
        // have committed first.
        for code in ["57P01", "57P02", "08006", "40001", ""] {
            assert_eq!(sqlstate(code, &[]), Outcome::Unknown, "{code}");
        }
        // A product whose writes are single statements may declare a serialization failure
        // definite.
        let declared = [SqlState::try_from("40001".to_string()).unwrap()];
        assert_eq!(sqlstate("40001", &declared), Outcome::Fail);
        assert_eq!(sqlstate("40P01", &declared), Outcome::Unknown);
        assert!(SqlState::try_from("4000".to_string()).is_err());
    }

    #[tokio::test]
    async fn a_sql_statement_that_timed_out_is_unknown() {
        let timed_out = tokio::time::timeout(
            Duration::from_millis(1),
            std::future::pending::<Result<u64, tokio_postgres::Error>>(),
        )
        .await;
        let (rows, ex) = sql(timed_out, &[]);
        assert_eq!((rows, ex.outcome), (None, Outcome::Unknown));
    }

    #[test]
    fn redis_refuses_by_its_own_codes_and_the_products() {
        assert!(redis_refusal(Some("READONLY"), &[]));
        assert!(!redis_refusal(Some("ERR"), &[]));
        assert!(!redis_refusal(None, &[]));
        assert!(redis_refusal(Some("ERR"), &["ERR".to_string()]));
    }

    #[test]
    fn tcp_failures_after_sending_are_unknown() {
        assert_eq!(
            tcp(&TcpFailure::NotSent("connect: refused".into())).outcome,
            Outcome::Fail
        );
        assert_eq!(
            tcp(&TcpFailure::Refused("rejected: bad key".into())).outcome,
            Outcome::Fail
        );
        assert_eq!(
            tcp(&TcpFailure::Lost("connection closed".into())).outcome,
            Outcome::Unknown
        );
    }
}
