//! The web process: sessions, trace uploads and reads, health and readiness, and the licence
//! this VM holds.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRef, Path, State};
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use axum_extra::extract::SignedCookieJar;
use axum_extra::extract::cookie::{Cookie, Key, SameSite};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::config::{Config, Fixture};
use crate::license;
use crate::queue::Queue;
use crate::release::Release;
use crate::storage::Storage;

/// Uploads above this are refused (the guides' `client_max_body_size 200m`).
pub const MAX_UPLOAD: u64 = 200 << 20;
const SESSION: &str = "session";
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// While the schema is behind, how often it is asked again.
const SCHEMA_RECHECK: Duration = Duration::from_secs(1);
/// What a refused upload is told to wait while in maintenance mode, in seconds.
const MAINTENANCE_RETRY_AFTER: u64 = 5;

#[derive(Clone)]
pub struct App {
    pub pool: deadpool_postgres::Pool,
    pub storage: Storage,
    pub queue: Queue,
    pub key: Key,
    pub node: Arc<str>,
    pub fixture: Fixture,
    pub release: Release,
    pub schema: Arc<SchemaGate>,
    /// This VM's licence, and the key its synchronisation is authenticated with.
    pub license: Arc<license::Store>,
    /// Set on SIGTERM: `/readyz` fails so the load balancer stops sending before we stop.
    pub draining: Arc<AtomicBool>,
}

/// Whether the schema is recent enough for this release. A yes is kept; a no is asked again at
/// most once per `SCHEMA_RECHECK`, so a server waiting for `web database migrate` does not
/// query the database on every request.
pub struct SchemaGate {
    release: Release,
    schema: String,
    ok: AtomicBool,
    last_no: tokio::sync::Mutex<Option<(Instant, String)>>,
}

impl SchemaGate {
    pub fn new(release: Release, schema: &str) -> SchemaGate {
        SchemaGate {
            release,
            schema: schema.to_string(),
            // Release N predates the check: it uses only what every schema version has.
            ok: AtomicBool::new(!release.records_release()),
            last_no: tokio::sync::Mutex::new(None),
        }
    }

    /// `Ok` once the schema is recent enough; otherwise why not.
    pub async fn check(&self, pool: &deadpool_postgres::Pool) -> Result<(), String> {
        if self.ok.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut last_no = self.last_no.lock().await;
        if self.ok.load(Ordering::Relaxed) {
            return Ok(());
        }
        if let Some((at, no)) = &*last_no
            && at.elapsed() < SCHEMA_RECHECK
        {
            return Err(no.clone());
        }
        let found = match pool.get().await {
            Ok(c) => crate::db::version(&c, &self.schema).await,
            Err(e) => Err(e.into()),
        };
        let no = match found {
            Ok(found) => shortfall(found, self.release),
            // `{:#}`: the server's message is at the end of the error's chain.
            Err(e) => Some(format!(
                "schema version unknown: {:#}",
                anyhow::Error::from(e)
            )),
        };
        match no {
            None => {
                self.ok.store(true, Ordering::Relaxed);
                *last_no = None;
                Ok(())
            }
            Some(no) => {
                *last_no = Some((Instant::now(), no.clone()));
                Err(no)
            }
        }
    }
}

/// Why a schema at version `found` cannot serve `release`, if it cannot.
fn shortfall(found: Option<i32>, release: Release) -> Option<String> {
    let (needs, version) = (release.schema_version(), release.version());
    match found {
        Some(found) if found >= needs => None,
        Some(found) => Some(format!(
            "schema at version {found}, release {version} needs {needs}: run `web database migrate`"
        )),
        None => Some(format!(
            "schema not initialised, release {version} needs version {needs}: run `web database init`"
        )),
    }
}

impl FromRef<App> for Key {
    fn from_ref(app: &App) -> Key {
        app.key.clone()
    }
}

impl App {
    pub async fn new(config: &Config, release: Release) -> anyhow::Result<App> {
        Ok(App {
            pool: crate::db::connect(&config.database)?,
            storage: Storage::connect(&config.s3)?,
            queue: Queue::connect(&config.redis).await?,
            key: Key::derive_from(&config.secret_key),
            node: crate::hostname().into(),
            fixture: config.fixture,
            release,
            schema: Arc::new(SchemaGate::new(release, &config.database.schema)),
            license: Arc::new(license::Store::new(config)),
            draining: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Opens database connections before serving. Opening one costs a TLS and SCRAM handshake
    /// (hundreds of ms in a debug build on a busy machine); a cold pool met by the first burst
    /// of users opened them all at once and `/readyz`, waiting behind them, timed out on both
    /// app servers (measured: both marked down ~2 s after the first requests, GET /traces
    /// taking 0.3-2 s until the pool was warm, 3 ms after). A server the database cannot reach
    /// starts anyway: `/readyz` then says so.
    pub async fn warm_pool(&self) {
        const WARM: usize = 8;
        let started = std::time::Instant::now();
        let opened = tokio::time::timeout(
            Duration::from_secs(10),
            futures_util::future::join_all((0..WARM).map(|_| self.pool.get())),
        )
        .await;
        match opened {
            Ok(conns) => {
                let ok = conns.iter().filter(|c| c.is_ok()).count();
                tracing::info!(
                    "{ok} of {WARM} database connections opened in {} ms",
                    started.elapsed().as_millis()
                );
            }
            Err(_) => tracing::warn!("database connections not opened within 10 s; serving anyway"),
        }
    }

    pub fn router(self) -> Router {
        let node = HeaderValue::from_str(&self.node).unwrap_or(HeaderValue::from_static("unknown"));
        let version = HeaderValue::from_static(self.release.version());
        Router::new()
            .route("/login", post(login))
            .route("/me", get(me))
            .route(
                "/traces",
                post(upload).layer(DefaultBodyLimit::disable()).get(list),
            )
            .route("/traces/{id}", get(trace))
            .route("/traces/{id}/content", get(content))
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(readyz))
            .route("/license", get(license_held))
            .route("/internal/license", put(license_synchronised))
            .with_state(self)
            // Which app server answered, running which release: the harness and the guides'
            // checks need to know, an upgrade drill the more so.
            .layer(axum::middleware::map_response(move |mut r: Response| {
                let (node, version) = (node.clone(), version.clone());
                async move {
                    r.headers_mut().insert("x-served-by", node);
                    r.headers_mut().insert("x-product-version", version);
                    r
                }
            }))
    }
}

fn error(status: StatusCode, msg: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": msg.to_string() }))).into_response()
}

/// 503: refused before anything was stored; the client may retry.
fn unavailable(e: impl std::fmt::Display) -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, e)
}

/// 500: the write may or may not have taken effect (the database connection was lost while the
/// statement was on its way, so it may have committed); neither we nor the client can know.
fn outcome_unknown(e: impl std::fmt::Display) -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("the upload may or may not be stored: {e}"),
    )
}

/// The signed-in user, if the session cookie carries a valid signature.
fn user(jar: &SignedCookieJar) -> Option<String> {
    jar.get(SESSION).map(|c| c.value().to_string())
}

fn unauthorized() -> Response {
    error(StatusCode::UNAUTHORIZED, "no valid session")
}

/// 503 while in maintenance mode (`web maintenance on`), with when to try again.
fn in_maintenance() -> Response {
    let mut r = unavailable("maintenance: uploads are paused for an upgrade; retry later");
    r.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(MAINTENANCE_RETRY_AFTER));
    r
}

#[derive(Deserialize)]
struct Login {
    user: String,
}

async fn login(jar: SignedCookieJar, Json(body): Json<Login>) -> Response {
    let name = body.user.trim();
    if name.is_empty() || name.len() > 64 {
        return error(StatusCode::BAD_REQUEST, "user must be 1-64 characters");
    }
    let cookie = Cookie::build((SESSION, name.to_string()))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .build();
    (jar.add(cookie), Json(json!({ "user": name }))).into_response()
}

async fn me(jar: SignedCookieJar) -> Response {
    match user(&jar) {
        Some(u) => Json(json!({ "user": u })).into_response(),
        None => unauthorized(),
    }
}

#[derive(Serialize)]
struct Uploaded {
    id: i64,
    sha256: String,
    size: i64,
}

/// Spools the body to disk while hashing it, stores the object under its digest, records the
/// row, enqueues the job, and only then answers 201.
async fn upload(State(app): State<App>, jar: SignedCookieJar, body: Body) -> Response {
    let Some(owner) = user(&jar) else {
        return refuse(body, unauthorized()).await;
    };
    match app.queue.maintenance().await {
        Ok(false) => {}
        Ok(true) => return refuse(body, in_maintenance()).await,
        Err(e) => return refuse(body, unavailable(format!("queue unavailable: {e}"))).await,
    }
    if let Err(behind) = app.schema.check(&app.pool).await {
        return refuse(body, unavailable(behind)).await;
    }
    let spool = match tempfile::NamedTempFile::new() {
        Ok(f) => f,
        Err(e) => return unavailable(format!("spool: {e}")),
    };
    let mut file = match spool.reopen() {
        Ok(f) => tokio::fs::File::from_std(f),
        Err(e) => return unavailable(format!("spool: {e}")),
    };
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("upload interrupted: {e}")),
        };
        size += chunk.len() as u64;
        if size > MAX_UPLOAD {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "uploads are limited to 200 MB",
            );
        }
        hasher.update(&chunk);
        if let Err(e) = file.write_all(&chunk).await {
            return unavailable(format!("spool: {e}"));
        }
    }
    if let Err(e) = file.flush().await {
        return unavailable(format!("spool: {e}"));
    }
    let sha256 = hex::encode(hasher.finalize());
    let key = format!("traces/{sha256}");
    let size = size as i64;

    if app.fixture != Fixture::AckBeforeStore
        && let Err(e) = app.storage.put_file(&key, spool.path(), size as u64).await
    {
        return unavailable(e);
    }
    let id = match insert_trace(&app, &sha256, size, &owner, &key).await {
        Ok(id) => id,
        Err(response) => return response,
    };
    if let Err(e) = app.queue.enqueue(id, &key).await {
        // No job means no analysis: take the row back so nothing acknowledged is left undone.
        if let Err(undo) = delete_trace(&app, id).await {
            tracing::error!(
                "trace {id}: enqueue failed ({e}) and removing its row failed too ({undo})"
            );
            return outcome_unknown(format!(
                "queue unavailable ({e}) and its row could not be taken back ({undo})"
            ));
        }
        return unavailable(format!("queue unavailable: {e}"));
    }
    if app.fixture == Fixture::AckBeforeStore {
        // Test fixture: acknowledge first, store later (or never, if this process dies).
        let (storage, path) = (app.storage.clone(), spool.into_temp_path());
        let key = key.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            if let Err(e) = storage.put_file(&key, &path, size as u64).await {
                tracing::error!("fixture ack-before-store: late store of {key} failed: {e}");
            }
        });
    }
    (StatusCode::CREATED, Json(Uploaded { id, sha256, size })).into_response()
}

/// How much of a refused upload's body is read so its client gets the answer.
const REFUSED_DRAIN: u64 = 16 << 20;

/// Answers an upload refused before anything was stored, having read its body first (up to
/// a bound) so the client, still sending it, gets the answer: answering at once and closing
/// left it with a broken connection and no answer (measured: 3 uploads ended unknown after a
/// secret rotation instead of refused).
async fn refuse(body: Body, response: Response) -> Response {
    drain(body, REFUSED_DRAIN).await;
    response
}

/// Reads and discards up to `limit` bytes of a body.
async fn drain(body: Body, limit: u64) {
    let mut read = 0u64;
    let mut stream = body.into_data_stream();
    while read < limit {
        match stream.next().await {
            Some(Ok(chunk)) => read += chunk.len() as u64,
            _ => break,
        }
    }
}

/// The new row's id, or the answer to give: 503 when the database refused the insert or no
/// connection could be had, 500 when the connection was lost with the insert on its way.
async fn insert_trace(
    app: &App,
    sha256: &str,
    size: i64,
    owner: &str,
    key: &str,
) -> Result<i64, Response> {
    let client = app.pool.get().await.map_err(unavailable)?;
    let inserted = if app.release.records_release() {
        client
            .query_one(
                "INSERT INTO traces (sha256, size, owner, object_key, release) VALUES ($1, $2, $3, $4, $5) RETURNING id",
                &[&sha256, &size, &owner, &key, &app.release.version()],
            )
            .await
    } else {
        client
            .query_one(
                "INSERT INTO traces (sha256, size, owner, object_key) VALUES ($1, $2, $3, $4) RETURNING id",
                &[&sha256, &size, &owner, &key],
            )
            .await
    };
    inserted.map(|row| row.get(0)).map_err(|e| {
        if crate::db::refused(&e) {
            unavailable(e)
        } else {
            outcome_unknown(e)
        }
    })
}

async fn delete_trace(app: &App, id: i64) -> anyhow::Result<()> {
    app.pool
        .get()
        .await?
        .execute("DELETE FROM traces WHERE id = $1", &[&id])
        .await?;
    Ok(())
}

/// The most recent traces (metadata only, from the database): what a signed-in user's list
/// page shows, and the read the harness's availability probe makes through the LB.
async fn list(State(app): State<App>, jar: SignedCookieJar) -> Response {
    if user(&jar).is_none() {
        return unauthorized();
    }
    let client = match app.pool.get().await {
        Ok(c) => c,
        Err(e) => return unavailable(e),
    };
    let rows = client
        .query(
            "SELECT id, sha256, size, owner FROM traces ORDER BY id DESC LIMIT 20",
            &[],
        )
        .await;
    match rows {
        Ok(rows) => Json(
            rows.iter()
                .map(|r| {
                    json!({
                        "id": r.get::<_, i64>(0),
                        "sha256": r.get::<_, String>(1),
                        "size": r.get::<_, i64>(2),
                        "owner": r.get::<_, String>(3),
                    })
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => unavailable(e),
    }
}

async fn trace(State(app): State<App>, jar: SignedCookieJar, Path(id): Path<i64>) -> Response {
    if user(&jar).is_none() {
        return unauthorized();
    }
    let client = match app.pool.get().await {
        Ok(c) => c,
        Err(e) => return unavailable(e),
    };
    let records_release = app.release.records_release();
    let sql = format!(
        "SELECT t.sha256, t.size, t.owner, to_char(t.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),
                a.lines, a.bytes, a.sha256_ok, a.worker{}
           FROM traces t LEFT JOIN analyses a ON a.trace_id = t.id WHERE t.id = $1",
        if records_release { ", t.release" } else { "" }
    );
    let row = client.query_opt(&sql, &[&id]).await;
    match row {
        Ok(Some(r)) => {
            let lines: Option<i64> = r.get(4);
            let analysis = lines.map(|lines| {
                json!({ "lines": lines, "bytes": r.get::<_, i64>(5), "sha256_ok": r.get::<_, bool>(6), "worker": r.get::<_, String>(7) })
            });
            let mut body = json!({
                "id": id,
                "sha256": r.get::<_, String>(0),
                "size": r.get::<_, i64>(1),
                "owner": r.get::<_, String>(2),
                "created_at": r.get::<_, String>(3),
                "analysis_status": if analysis.is_some() { "done" } else { "pending" },
                "analysis": analysis,
            });
            if records_release {
                // Null for a trace release N uploaded.
                body["release"] = json!(r.get::<_, Option<String>>(8));
            }
            Json(body).into_response()
        }
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no trace {id}")),
        Err(e) => unavailable(e),
    }
}

async fn content(State(app): State<App>, jar: SignedCookieJar, Path(id): Path<i64>) -> Response {
    if user(&jar).is_none() {
        return unauthorized();
    }
    let key: String = match app.pool.get().await {
        Ok(c) => match c
            .query_opt("SELECT object_key FROM traces WHERE id = $1", &[&id])
            .await
        {
            Ok(Some(r)) => r.get(0),
            Ok(None) => return error(StatusCode::NOT_FOUND, format!("no trace {id}")),
            Err(e) => return unavailable(e),
        },
        Err(e) => return unavailable(e),
    };
    match app.storage.get(&key).await {
        Ok(object) => {
            let body = Body::from_stream(object.into_stream());
            ([("content-type", "application/octet-stream")], body).into_response()
        }
        Err(crate::storage::StorageError::Store(object_store::Error::NotFound { .. })) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("trace {id}: its object {key} is missing from the store"),
        ),
        Err(e) => unavailable(e),
    }
}

/// The licence this VM holds (200), or why it holds none and what to do (404).
async fn license_held(State(app): State<App>) -> Response {
    match app.license.held() {
        Ok(l) => Json(l).into_response(),
        Err(e) => error(StatusCode::NOT_FOUND, e),
    }
}

/// A licence another app server synchronises to this one (`web license synchronize`),
/// authenticated with this install's `SECRET_KEY`; kept only if valid.
async fn license_synchronised(
    State(app): State<App>,
    headers: axum::http::HeaderMap,
    text: String,
) -> Response {
    let tag = headers
        .get(license::SYNC_AUTH_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !app.license.sync_tag_matches(&text, tag) {
        return error(
            StatusCode::UNAUTHORIZED,
            "licence synchronisation refused: not authenticated with this install's SECRET_KEY",
        );
    }
    match app.license.accept_synchronised(&text) {
        Ok(l) => {
            tracing::info!("synchronised {}", l.describe());
            Json(l).into_response()
        }
        Err(e @ license::StoreError::Refused(_)) => error(StatusCode::UNPROCESSABLE_ENTITY, e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// "ok", the error, or "timed out".
async fn within(probe: impl Future<Output = Result<(), String>>) -> String {
    match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
        Ok(Ok(())) => "ok".to_string(),
        Ok(Err(e)) => e,
        Err(_) => "timed out".to_string(),
    }
}

async fn readyz(State(app): State<App>) -> Response {
    if app.draining.load(Ordering::Relaxed) {
        return unavailable("draining: shutting down");
    }
    let (pg, redis, s3) = tokio::join!(
        within(async {
            let c = app.pool.get().await.map_err(|e| e.to_string())?;
            c.simple_query("SELECT 1")
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }),
        within(async { app.queue.ping().await.map_err(|e| e.to_string()) }),
        within(async { app.storage.ping().await.map_err(|e| e.to_string()) }),
    );
    let ready = pg == "ok" && redis == "ok" && s3 == "ok";
    if ready {
        let schema = within(app.schema.check(&app.pool)).await;
        if schema != "ok" {
            return unavailable(schema);
        }
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({ "postgres": pg, "redis": redis, "s3": s3 })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schema_behind_the_release_says_what_to_run() {
        assert_eq!(shortfall(Some(2), Release::Next), None);
        assert_eq!(shortfall(Some(3), Release::Next), None);
        assert_eq!(shortfall(Some(1), Release::Current), None);
        assert_eq!(shortfall(Some(2), Release::Current), None);
        assert_eq!(
            shortfall(Some(1), Release::Next).unwrap(),
            "schema at version 1, release 2 needs 2: run `web database migrate`"
        );
        assert_eq!(
            shortfall(None, Release::Next).unwrap(),
            "schema not initialised, release 2 needs version 2: run `web database init`"
        );
    }

    #[test]
    fn maintenance_refusal_says_when_to_retry() {
        let r = in_maintenance();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[RETRY_AFTER], "5");
    }
}
