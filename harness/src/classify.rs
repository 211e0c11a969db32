//! How one exchange with the system ended, by the same honesty rules for every client: `ok`
//! when it took effect, `fail` only when it certainly did not (refused by the server, or
//! never sent), `unknown` when it may have (lost after sending, timed out, an answer that
//! leaves the server's state unspecified). A write judged `fail` that took effect would be
//! reported as lost or as refused-but-stored; one judged `unknown` never is.

use hadrill_model::{Exchange, Outcome};

/// The response headers that name who answered, when the product sets them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Answerer<'a> {
    /// The node that served the request.
    pub node: Option<&'a str>,
    /// The product release that served it.
    pub version: Option<&'a str>,
}

/// An HTTP exchange. A 5xx that may follow processing (500, and the load balancer's 502/504)
/// is `unknown`; a 503 or a 4xx is a refusal; a connection that was never made is `fail`.
pub fn http(
    result: &Result<reqwest::Response, reqwest::Error>,
    answerer: Answerer<'_>,
) -> Exchange {
    match result {
        Ok(r) => {
            let status = r.status().as_u16();
            let header = |name: Option<&str>| {
                name.and_then(|h| r.headers().get(h))
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let outcome = http_status(status);
            Exchange {
                outcome,
                status: Some(status),
                error: (outcome != Outcome::Ok).then(|| format!("HTTP {status}")),
                node: header(answerer.node),
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

/// What an HTTP status says about whether the request took effect.
pub fn http_status(status: u16) -> Outcome {
    match status {
        200..=299 => Outcome::Ok,
        // The load balancer lost the upstream mid-request or timed out, or the server failed
        // part-way (a 500 leaves its state unspecified): it may have run.
        500 | 502 | 504 => Outcome::Unknown,
        _ => Outcome::Fail,
    }
}

/// A SQL statement within a timeout. The server refusing it (read-only, bad SQL, bad
/// credentials) means it did not run: `fail`. A lost connection or a timeout may come after
/// the commit, and a shutdown can terminate a backend that already committed locally:
/// `unknown`.
pub fn sql<T>(
    r: Result<Result<T, tokio_postgres::Error>, tokio::time::error::Elapsed>,
) -> (Option<T>, Exchange) {
    match r {
        Ok(Ok(v)) => (Some(v), Exchange::OK),
        Ok(Err(e)) => {
            let (outcome, msg) = match e.as_db_error() {
                Some(d) => (
                    sqlstate(d.code().code()),
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
pub fn sqlstate(code: &str) -> Outcome {
    match code.get(..2) {
        Some("22" | "23" | "25" | "28" | "3D" | "42") => Outcome::Fail,
        _ => Outcome::Unknown,
    }
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
    use std::time::Duration;

    use super::*;

    fn answered(status: u16) -> Outcome {
        let response = ::http::Response::builder()
            .status(status)
            .body(Vec::<u8>::new())
            .unwrap();
        http(&Ok(reqwest::Response::from(response)), Answerer::default()).outcome
    }

    /// A refusal is `fail`; an answer that leaves the server's state unspecified (a 500 from a
    /// server that failed part-way, the LB's 502/504) is `unknown`, never `fail`: a write the
    /// product committed and then reported as an error must not be judged as refused.
    #[test]
    fn statuses_that_may_hide_a_processed_request_are_unknown() {
        assert_eq!(answered(201), Outcome::Ok);
        for status in [500, 502, 504] {
            assert_eq!(answered(status), Outcome::Unknown, "HTTP {status}");
        }
        for status in [400, 401, 404, 413, 503] {
            assert_eq!(answered(status), Outcome::Fail, "HTTP {status}");
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
        );
        assert_eq!(lost.outcome, Outcome::Unknown, "{:?}", lost.error);
        keep.abort();
    }

    #[test]
    fn sql_refusals_fail_and_everything_else_is_unknown() {
        // read_only_sql_transaction (a standby), unique_violation, invalid_password,
        // undefined_table: the statement did not run.
        for code in ["25006", "23505", "28P01", "42P01", "22001", "3D000"] {
            assert_eq!(sqlstate(code), Outcome::Fail, "{code}");
        }
        // admin_shutdown, crash_shutdown, connection_failure, serialization_failure: it may
        // have committed first.
        for code in ["57P01", "57P02", "08006", "40001", ""] {
            assert_eq!(sqlstate(code), Outcome::Unknown, "{code}");
        }
    }

    #[tokio::test]
    async fn a_sql_statement_that_timed_out_is_unknown() {
        let timed_out = tokio::time::timeout(
            Duration::from_millis(1),
            std::future::pending::<Result<u64, tokio_postgres::Error>>(),
        )
        .await;
        let (rows, ex) = sql(timed_out);
        assert_eq!((rows, ex.outcome), (None, Outcome::Unknown));
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
