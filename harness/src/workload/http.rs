//! A declarative HTTP workload (`[http]` in a scenario): users that optionally sign in, make
//! the writes the scenario describes through the entry point (method, path and body
//! templates; how an acknowledgement is recognised; how each write is read back and
//! compared), and a probe. After the run every write is read back, and the generic
//! continuity check holds the acknowledged ones against what was read.
//!
//! It knows no product: MLflow, the reference product or any other HTTP API is described by
//! the scenario alone. Every operation is recorded with its outcome by the common rules
//! (`crate::classify`), with the statuses the scenario says are `unknown`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use super::template::{Template, Var};
use crate::classify::Definite;
use crate::clock::Stamp;
use crate::workload::{Context, Endpoint, Size, Workload, store_read};
use hadrill_model::{Exchange, OpKind, Outcome, Read, Role};

/// The kind of a user's sign-in.
pub const LOGIN: OpKind = OpKind::new("login");
/// Its probe's client, in the history.
pub const PROBE: &str = "http-probe";
/// Read-backs run side by side after the run.
const READ_BACK_CONCURRENCY: usize = 8;
const READ_BACK_TRIES: usize = 3;

/// `[http]` in a scenario.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSpec {
    /// Its name in the report; its final read is kept under it.
    pub name: String,
    /// Node and container port the users and the probe go through (the load balancer).
    pub entry: String,
    pub port: u16,
    /// Concurrent users, and their writes per second all together.
    pub users: usize,
    pub rate: f64,
    /// A path the probe reads (GET) at `probe_hz`: the availability resolution.
    pub probe_path: String,
    pub probe_hz: f64,
    /// A probe not answered within this is `unknown` and counts as unavailable.
    #[serde(with = "humantime_serde")]
    pub probe_timeout: Duration,
    /// Headers on every request (templates).
    pub headers: BTreeMap<String, String>,
    /// The statuses this product gives only before it processed a request (codes or classes:
    /// `["4xx", 503]`): a refusal, `fail`. Any other answer that does not acknowledge may
    /// follow processing and is `unknown` (see `crate::classify::http`).
    pub definite: Definite,
    /// A response header naming the server that answered (set by the product or the load
    /// balancer), for `@last-served` and the drain check.
    pub served_by: Option<String>,
    /// A response header naming the product release that answered, for the `upgrade` check.
    pub version: Option<String>,
    /// Signs each user (and the probe) in before its first request.
    pub login: Option<HttpLogin>,
    /// The writes users make, drawn by weight.
    pub writes: Vec<HttpWrite>,
    /// How long a request may take before its outcome is `unknown`.
    #[serde(with = "humantime_serde")]
    pub op_timeout: Duration,
    /// Upper bound on user operations, whatever the scenario's length.
    pub max_ops: u64,
}

impl Default for HttpSpec {
    fn default() -> Self {
        HttpSpec {
            name: "http".into(),
            entry: "lb".into(),
            port: 80,
            users: 4,
            rate: 10.0,
            probe_path: "/".into(),
            probe_hz: 20.0,
            probe_timeout: Duration::from_secs(1),
            headers: BTreeMap::new(),
            definite: Definite::default(),
            served_by: None,
            version: None,
            login: None,
            writes: Vec::new(),
            op_timeout: Duration::from_secs(10),
            max_ops: 50_000,
        }
    }
}

/// `[http.login]`: one request per user; a cookie it sets is kept, and with `token`, the
/// JSON string at that pointer of the answer is sent as `Authorization: Bearer`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpLogin {
    #[serde(default = "post")]
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub token: Option<String>,
}

/// `[[http.writes]]`: one kind of write, how it is acknowledged, read back and compared.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpWrite {
    /// Its kind in the history (`create-run`).
    pub name: String,
    #[serde(default = "one")]
    pub weight: u32,
    #[serde(default = "post")]
    pub method: String,
    pub path: String,
    /// The body as a template, or `random_body`: random bytes of a size in the range, or
    /// `multipart`: a `multipart/form-data` body of these parts.
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub random_body: Option<[Size; 2]>,
    #[serde(default)]
    pub multipart: Vec<HttpPart>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Statuses that acknowledge the write (empty: any 2xx).
    #[serde(default)]
    pub ack: Vec<u16>,
    /// A JSON pointer into the acknowledgement: the write's id, `${id}` in `read` and
    /// `${id:NAME}` in the writes that follow it. Without one, the id is the key.
    #[serde(default)]
    pub id: Option<String>,
    /// The path that reads the write back (GET).
    pub read: String,
    /// How the read-back is compared, one of: `digest = true` (the body is the bytes
    /// written), `contains` (the body holds this text), `expect` (JSON pointers → values).
    #[serde(default)]
    pub digest: bool,
    #[serde(default)]
    pub contains: Option<String>,
    #[serde(default)]
    pub expect: BTreeMap<String, String>,
    /// Read-back statuses that say the write is not there (default 404).
    #[serde(default = "not_found")]
    pub absent: Vec<u16>,
}

/// `[[http.writes.multipart]]`: one part of a form, its content a template (`text`) or
/// random bytes of a size in the range (`random`), what `digest = true` compares.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpPart {
    pub name: String,
    /// A file part's name (a template).
    #[serde(default)]
    pub filename: Option<String>,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub random: Option<[Size; 2]>,
}

fn post() -> String {
    "POST".into()
}
fn one() -> u32 {
    1
}
fn not_found() -> Vec<u16> {
    vec![404]
}

impl HttpSpec {
    /// The kinds of its writes.
    pub fn write_kinds(&self) -> Vec<OpKind> {
        self.writes
            .iter()
            .map(|w| OpKind::named(w.name.clone()))
            .collect()
    }

    /// Its users' requests, sign-in included: what user-requests and availability count.
    pub fn requests(&self) -> Vec<OpKind> {
        let mut kinds = self.write_kinds();
        if self.login.is_some() {
            kinds.push(LOGIN);
        }
        kinds
    }

    /// Every template parsed, and what each write needs: the first problem as
    /// `(field, message)`.
    pub fn problems(&self) -> Option<(String, String)> {
        self.compile().err()
    }

    fn compile(&self) -> Result<Compiled, (String, String)> {
        let t = |field: String, text: &str| Template::parse(text).map_err(|m| (field, m));
        let headers = |field: &str, h: &BTreeMap<String, String>| {
            h.iter()
                .map(|(k, v)| Ok((k.clone(), t(format!("{field}.headers.{k}"), v)?)))
                .collect::<Result<Vec<_>, (String, String)>>()
        };
        let names: Vec<&str> = self.writes.iter().map(|w| w.name.as_str()).collect();
        let mut writes = Vec::new();
        for (i, w) in self.writes.iter().enumerate() {
            let f = |k: &str| format!("http.writes[{i}].{k}");
            if names.iter().filter(|n| **n == w.name).count() > 1 {
                return Err((f("name"), format!("two writes are named `{}`", w.name)));
            }
            let compare = match (w.digest, &w.contains, w.expect.is_empty()) {
                (true, None, true) => Compare::Digest,
                (false, Some(c), true) => Compare::Contains(t(f("contains"), c)?),
                (false, None, false) => Compare::Fields(
                    w.expect
                        .iter()
                        .map(|(p, v)| Ok((p.clone(), t(f(&format!("expect.{p}")), v)?)))
                        .collect::<Result<_, (String, String)>>()?,
                ),
                _ => {
                    return Err((
                        f("read"),
                        "say how the read-back is compared: exactly one of `digest = true`, `contains` or `expect`".into(),
                    ));
                }
            };
            let random = |field: String, [lo, hi]: [Size; 2]| {
                if lo.0 <= hi.0 && hi.0 <= 64 << 20 {
                    Ok(Content::Random(lo.0, hi.0))
                } else {
                    Err((field, "give [smallest, largest], at most 64MiB".into()))
                }
            };
            let body = match (&w.body, w.random_body, w.multipart.is_empty()) {
                (Some(b), None, true) => Body::Single(Content::Text(t(f("body"), b)?)),
                (None, Some(range), true) => Body::Single(random(f("random_body"), range)?),
                (None, None, true) => Body::Single(Content::Text(Template::default())),
                (None, None, false) => {
                    let mut parts = Vec::new();
                    for (j, p) in w.multipart.iter().enumerate() {
                        let g = |k: &str| f(&format!("multipart[{j}].{k}"));
                        let content = match (&p.text, p.random) {
                            (Some(text), None) => Content::Text(t(g("text"), text)?),
                            (None, Some(range)) => random(g("random"), range)?,
                            _ => {
                                return Err((
                                    g("text"),
                                    "give `text` or `random`, one of them".into(),
                                ));
                            }
                        };
                        let content_type = match &p.content_type {
                            None => None,
                            Some(ct) => {
                                let media =
                                    reqwest::multipart::Part::bytes(Vec::new()).mime_str(ct);
                                let value = reqwest::header::HeaderValue::from_str(ct);
                                match (media, value) {
                                    (Ok(_), Ok(v)) => Some(v),
                                    _ => {
                                        return Err((
                                            g("content_type"),
                                            format!("`{ct}` is not a media type"),
                                        ));
                                    }
                                }
                            }
                        };
                        parts.push(FormPart {
                            name: p.name.clone(),
                            filename: p
                                .filename
                                .as_deref()
                                .map(|n| t(g("filename"), n))
                                .transpose()?,
                            content_type,
                            content,
                        });
                    }
                    Body::Form(parts)
                }
                _ => {
                    return Err((
                        f("body"),
                        "give one of `body`, `random_body` or `multipart`".into(),
                    ));
                }
            };
            if matches!(compare, Compare::Digest) && body.random_parts() != 1 {
                return Err((
                    f("digest"),
                    "`digest` compares the bytes of a `random_body`, or of the one `random` part of a `multipart`".into(),
                ));
            }
            let method = reqwest::Method::from_bytes(w.method.as_bytes())
                .map_err(|_| (f("method"), format!("`{}` is not an HTTP method", w.method)))?;
            let path = t(f("path"), &w.path)?;
            let read = t(f("read"), &w.read)?;
            let mut needs = Vec::new();
            for (field, template) in [("path", &path), ("read", &read)]
                .into_iter()
                .chain(body.templates())
            {
                for v in template.vars() {
                    match v {
                        Var::IdOf(k) if !names[..i].contains(&k.as_str()) => {
                            return Err((
                                f(field),
                                format!(
                                    "`{v}` names no write declared before this one; declared before: {}",
                                    if i == 0 {
                                        "none".to_string()
                                    } else {
                                        names[..i].join(", ")
                                    }
                                ),
                            ));
                        }
                        Var::IdOf(k) if !needs.contains(k) => needs.push(k.clone()),
                        Var::Id if field != "read" => {
                            return Err((
                                f(field),
                                "`${id}` is the write's own id, known only once it is acknowledged: use it in `read`".into(),
                            ));
                        }
                        _ => {}
                    }
                }
            }
            writes.push(CompiledWrite {
                kind: OpKind::named(w.name.clone()),
                weight: w.weight,
                method,
                path,
                body,
                headers: headers(&f(""), &w.headers)?,
                ack: w.ack.clone(),
                id: w.id.clone(),
                read,
                compare,
                absent: w.absent.clone(),
                needs,
            });
        }
        if writes.is_empty() {
            return Err((
                "http.writes".into(),
                "declare at least one `[[http.writes]]`".into(),
            ));
        }
        if writes.iter().all(|w| w.weight == 0) {
            return Err(("http.writes".into(), "every write has weight 0".into()));
        }
        let login = match &self.login {
            None => None,
            Some(l) => Some(CompiledLogin {
                method: reqwest::Method::from_bytes(l.method.as_bytes()).map_err(|_| {
                    (
                        "http.login.method".into(),
                        format!("`{}` is not an HTTP method", l.method),
                    )
                })?,
                path: t("http.login.path".into(), &l.path)?,
                body: t("http.login.body".into(), l.body.as_deref().unwrap_or(""))?,
                headers: headers("http.login", &l.headers)?,
                token: l.token.clone(),
            }),
        };
        Ok(Compiled {
            headers: headers("http", &self.headers)?,
            login,
            writes,
        })
    }

    /// The secrets its templates name, with the field naming each.
    pub fn secrets(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let texts = self
            .headers
            .iter()
            .map(|(k, v)| (format!("http.headers.{k}"), v.clone()))
            .chain(self.login.iter().flat_map(|l| {
                [
                    ("http.login.path".to_string(), l.path.clone()),
                    (
                        "http.login.body".to_string(),
                        l.body.clone().unwrap_or_default(),
                    ),
                ]
                .into_iter()
                .chain(
                    l.headers
                        .iter()
                        .map(|(k, v)| (format!("http.login.headers.{k}"), v.clone())),
                )
            }))
            .chain(self.writes.iter().enumerate().flat_map(|(i, w)| {
                [
                    (format!("http.writes[{i}].path"), w.path.clone()),
                    (
                        format!("http.writes[{i}].body"),
                        w.body.clone().unwrap_or_default(),
                    ),
                ]
                .into_iter()
                .chain(
                    w.headers
                        .iter()
                        .map(move |(k, v)| (format!("http.writes[{i}].headers.{k}"), v.clone())),
                )
            }));
        for (field, text) in texts {
            if let Ok(t) = Template::parse(&text) {
                for v in t.vars() {
                    if let Var::Secret(s) = v {
                        out.push((field.clone(), s.clone()));
                    }
                }
            }
        }
        out
    }
}

struct Compiled {
    headers: Vec<(String, Template)>,
    login: Option<CompiledLogin>,
    writes: Vec<CompiledWrite>,
}

struct CompiledLogin {
    method: reqwest::Method,
    path: Template,
    body: Template,
    headers: Vec<(String, Template)>,
    token: Option<String>,
}

struct CompiledWrite {
    kind: OpKind,
    weight: u32,
    method: reqwest::Method,
    path: Template,
    body: Body,
    headers: Vec<(String, Template)>,
    ack: Vec<u16>,
    id: Option<String>,
    read: Template,
    compare: Compare,
    absent: Vec<u16>,
    /// Writes whose acknowledged ids this one uses (`${id:NAME}`).
    needs: Vec<String>,
}

enum Body {
    Single(Content),
    Form(Vec<FormPart>),
}

enum Content {
    Text(Template),
    Random(u64, u64),
}

struct FormPart {
    name: String,
    filename: Option<Template>,
    content_type: Option<reqwest::header::HeaderValue>,
    content: Content,
}

/// A body as sent.
enum Payload {
    Bytes(Vec<u8>),
    Form(reqwest::multipart::Form),
}

impl Content {
    fn render(&self, fill: &mut impl FnMut(&Var) -> Option<String>) -> Vec<u8> {
        match self {
            Content::Text(t) => t.render(fill).unwrap_or_default().into_bytes(),
            Content::Random(lo, hi) => {
                let size = rand::rng().random_range(*lo..=*hi) as usize;
                let mut b = vec![0u8; size];
                rand::rng().fill(&mut b[..]);
                b
            }
        }
    }
}

impl Body {
    /// Its contents, each with its part's file name.
    fn contents(&self) -> Vec<(&Content, Option<&Template>)> {
        match self {
            Body::Single(c) => vec![(c, None)],
            Body::Form(parts) => parts
                .iter()
                .map(|p| (&p.content, p.filename.as_ref()))
                .collect(),
        }
    }

    /// Its templates, with the field each comes from.
    fn templates(&self) -> Vec<(&'static str, &Template)> {
        let field = match self {
            Body::Single(_) => "body",
            Body::Form(_) => "multipart",
        };
        fn text(c: &Content) -> Option<&Template> {
            match c {
                Content::Text(t) => Some(t),
                Content::Random(..) => None,
            }
        }
        self.contents()
            .into_iter()
            .flat_map(|(c, filename)| [filename, text(c)])
            .flatten()
            .map(|t| (field, t))
            .collect()
    }

    fn random_parts(&self) -> usize {
        self.contents()
            .iter()
            .filter(|(c, _)| matches!(c, Content::Random(..)))
            .count()
    }

    /// The body to send and, when `digest = true` compares it, the digest of its random bytes
    /// (only then: a body may be 64 MiB).
    fn render(
        &self,
        fill: &mut impl FnMut(&Var) -> Option<String>,
        digest: bool,
    ) -> (Payload, Option<String>) {
        let sum = |c: &Content, bytes: &[u8]| {
            (digest && matches!(c, Content::Random(..))).then(|| super::digest(bytes))
        };
        match self {
            Body::Single(c) => {
                let bytes = c.render(fill);
                let d = sum(c, &bytes);
                (Payload::Bytes(bytes), d)
            }
            Body::Form(parts) => {
                let (mut form, mut d) = (reqwest::multipart::Form::new(), None);
                for p in parts {
                    let bytes = p.content.render(fill);
                    d = d.or(sum(&p.content, &bytes));
                    let mut part = reqwest::multipart::Part::bytes(bytes);
                    if let Some(name) = &p.filename {
                        part = part.file_name(name.render(&mut *fill).unwrap_or_default());
                    }
                    if let Some(ct) = &p.content_type {
                        let header = [(reqwest::header::CONTENT_TYPE, ct.clone())];
                        part = part.headers(header.into_iter().collect());
                    }
                    form = form.part(p.name.clone(), part);
                }
                (Payload::Form(form), d)
            }
        }
    }
}

enum Compare {
    Digest,
    Contains(Template),
    Fields(Vec<(String, Template)>),
}

/// A write as made, to be read back after the run.
struct Written {
    key: String,
    /// The read-back path, or why there is none (the acknowledgement carried no id).
    read: Result<String, String>,
    /// What the read-back must show, as recorded in the history.
    token: String,
    write: usize,
    acknowledged: bool,
}

/// The users, the probe and the read-back of `[http]`.
pub struct HttpWorkload {
    spec: HttpSpec,
    compiled: Compiled,
    /// What is wrong with a spec that skipped validation: `prepare` ends the run with it.
    problem: Option<String>,
    entry: OnceLock<Endpoint>,
    written: Mutex<Vec<Written>>,
    ops: AtomicU64,
}

/// What one user holds: its session and the ids of its acknowledged writes, by kind.
#[derive(Default)]
struct UserState {
    token: Option<String>,
    ids: BTreeMap<String, Vec<String>>,
}

impl HttpWorkload {
    /// The workload `spec` describes (validated when the scenario was loaded).
    pub fn new(spec: HttpSpec) -> HttpWorkload {
        let (compiled, problem) = match spec.compile() {
            Ok(c) => (c, None),
            Err((field, message)) => (
                Compiled {
                    headers: Vec::new(),
                    login: None,
                    writes: Vec::new(),
                },
                Some(format!("{field}: {message}")),
            ),
        };
        HttpWorkload {
            spec,
            compiled,
            problem,
            entry: OnceLock::new(),
            written: Mutex::new(Vec::new()),
            ops: AtomicU64::new(0),
        }
    }

    fn base(&self) -> &str {
        self.entry
            .get()
            .map(|e| e.base.as_str())
            .unwrap_or_default()
    }

    /// A user's client for the entry point (prepared before any runs).
    fn user_agent(&self, timeout: std::time::Duration) -> reqwest::Client {
        match self.entry.get() {
            Some(entry) => entry.user_agent(timeout),
            None => reqwest::Client::new(),
        }
    }

    /// An answer as the scenario's statuses say: `ack` (or any 2xx) acknowledges, a definite
    /// status is a refusal, any other may have taken effect.
    fn exchange(&self, r: &Result<reqwest::Response, reqwest::Error>, ack: &[u16]) -> Exchange {
        let mut ex = crate::classify::http(
            r,
            crate::classify::Answerer {
                node: self.spec.served_by.as_deref(),
                version: self.spec.version.as_deref(),
            },
            &self.spec.definite,
        );
        // A success other than the acknowledgement the scenario names may still have taken
        // effect.
        if let Some(status) = ex.status
            && !ack.is_empty()
        {
            if ack.contains(&status) {
                ex.outcome = Outcome::Ok;
                ex.error = None;
            } else if ex.outcome == Outcome::Ok {
                ex.outcome = Outcome::Unknown;
                ex.error = Some(format!("HTTP {status}, not an acknowledgement"));
            }
        }
        ex
    }

    fn request(
        &self,
        http: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
        headers: &[(String, Template)],
        fill: &mut dyn FnMut(&Var) -> Option<String>,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let mut req = http.request(method, format!("{}{path}", self.base()));
        for (k, v) in self.compiled.headers.iter().chain(headers) {
            if let Some(v) = v.render(&mut *fill) {
                req = req.header(k, v);
            }
        }
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req
    }

    /// Sends `req` with `body`: when it was invoked on the run's clock, the answer, and how it
    /// ended by the scenario's statuses.
    async fn send(
        &self,
        ctx: &Context,
        req: reqwest::RequestBuilder,
        body: Payload,
        ack: &[u16],
    ) -> (Stamp, Result<reqwest::Response, reqwest::Error>, Exchange) {
        let req = match body {
            Payload::Bytes(bytes) => req.body(bytes),
            Payload::Form(form) => req.multipart(form),
        };
        let invoke = ctx.now();
        let r = req.send().await;
        let ex = self.exchange(&r, ack);
        (invoke, r, ex)
    }

    /// Signs `user` in, recorded as a user request; true when it was.
    async fn login(
        &self,
        ctx: &Context,
        http: &reqwest::Client,
        user: &str,
        role: Role,
        state: &mut UserState,
    ) -> bool {
        let Some(login) = &self.compiled.login else {
            return true;
        };
        let mut fill = |v: &Var| fill(ctx, v, user, None, None, None);
        let Some(path) = login.path.render(&mut fill) else {
            return false;
        };
        let body = login
            .body
            .render(&mut fill)
            .unwrap_or_default()
            .into_bytes();
        let req = self.request(
            http,
            login.method.clone(),
            &path,
            &login.headers,
            &mut fill,
            None,
        );
        let (invoke, r, mut ex) = self.send(ctx, req, Payload::Bytes(body), &[]).await;
        if let (Ok(resp), Some(pointer)) = (r, &login.token)
            && ex.outcome == Outcome::Ok
        {
            match at_pointer(resp, pointer).await {
                Ok(Some(t)) => state.token = Some(t),
                Ok(None) => {
                    ex.outcome = Outcome::Fail;
                    ex.error = Some(format!("the answer has no token at {pointer}"));
                }
                // No session was issued that the user can use.
                Err(e) => {
                    ex.outcome = Outcome::Fail;
                    ex.error = Some(format!("the answer was cut off: {e}"));
                }
            }
        }
        let ok = ex.outcome == Outcome::Ok;
        ctx.record(role.named(user), LOGIN, None, None, invoke, ex);
        ok
    }

    /// One user: signs in, then writes at its share of the rate until stopped.
    async fn user(self: Arc<Self>, ctx: Context, index: usize) {
        let name = format!("u{index}");
        let http = self.user_agent(self.spec.op_timeout);
        let mut state = UserState::default();
        let per_user = self.spec.rate / self.spec.users.max(1) as f64;
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / per_user.max(0.01)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut signed_in = false;
        let mut n = 0u64;
        while self.ops.load(Ordering::Relaxed) < self.spec.max_ops {
            tokio::select! {
                _ = ctx.stopped() => return,
                _ = tick.tick() => {}
            }
            if !signed_in {
                signed_in = self.login(&ctx, &http, &name, Role::User, &mut state).await;
                continue;
            }
            self.ops.fetch_add(1, Ordering::Relaxed);
            let write = self.pick(&state);
            n += 1;
            self.write(&ctx, &http, &name, &mut state, write, format!("{name}-{n}"))
                .await;
        }
    }

    /// A write drawn by weight; one whose ids the user has none of yet gives way to the
    /// write that makes them.
    fn pick(&self, state: &UserState) -> usize {
        let writes = &self.compiled.writes;
        let total: u32 = writes.iter().map(|w| w.weight).sum();
        let mut draw = rand::rng().random_range(0..total.max(1));
        let mut at = writes
            .iter()
            .position(|w| {
                if draw < w.weight {
                    return true;
                }
                draw -= w.weight;
                false
            })
            .unwrap_or(0);
        // Each need names an earlier write, so this ends.
        while let Some(need) = writes[at]
            .needs
            .iter()
            .find(|k| state.ids.get(*k).is_none_or(Vec::is_empty))
        {
            at = writes
                .iter()
                .position(|w| w.kind.as_str() == need)
                .unwrap_or(0);
        }
        at
    }

    async fn write(
        &self,
        ctx: &Context,
        http: &reqwest::Client,
        user: &str,
        state: &mut UserState,
        at: usize,
        key: String,
    ) {
        let w = &self.compiled.writes[at];
        // One choice of each `${id:NAME}` and one uuid per write, the same in path, body and read.
        let uuid = uuid::Uuid::new_v4().to_string();
        let chosen: BTreeMap<String, String> = w
            .needs
            .iter()
            .filter_map(|k| {
                let ids = state.ids.get(k)?;
                Some((
                    k.clone(),
                    ids[rand::rng().random_range(0..ids.len())].clone(),
                ))
            })
            .collect();
        let mut fill = |v: &Var| fill(ctx, v, user, Some(&key), Some(&uuid), Some(&chosen));
        let Some(path) = w.path.render(&mut fill) else {
            return;
        };
        let (body, digest) = w
            .body
            .render(&mut fill, matches!(w.compare, Compare::Digest));
        let token = match &w.compare {
            Compare::Digest => digest.unwrap_or_default(),
            Compare::Contains(t) => t.render(&mut fill).unwrap_or_default(),
            Compare::Fields(fields) => fields_token(
                fields
                    .iter()
                    .map(|(p, t)| (p.clone(), t.render(&mut fill).unwrap_or_default())),
            ),
        };
        let req = self.request(
            http,
            w.method.clone(),
            &path,
            &w.headers,
            &mut fill,
            state.token.as_deref(),
        );
        let (invoke, r, mut ex) = self.send(ctx, req, body, &w.ack).await;
        // The id, when the acknowledgement carries it; an answer cut off may have taken effect.
        let id: Result<String, String> = match (r, &w.id) {
            (Ok(resp), Some(pointer)) if ex.outcome == Outcome::Ok => {
                match at_pointer(resp, pointer).await {
                    Ok(found) => {
                        found.ok_or_else(|| format!("the acknowledgement has no id at {pointer}"))
                    }
                    Err(e) => {
                        ex.outcome = Outcome::Unknown;
                        ex.error = Some(format!("the answer was cut off: {e}"));
                        Err("no acknowledgement was read".into())
                    }
                }
            }
            (_, Some(_)) => Err("the write was not acknowledged, so its id is unknown".into()),
            (_, None) => Ok(key.clone()),
        };
        let acknowledged = ex.outcome == Outcome::Ok;
        if acknowledged && let Ok(id) = &id {
            state
                .ids
                .entry(w.kind.to_string())
                .or_default()
                .push(id.clone());
        }
        let read = id.and_then(|id| {
            w.read
                .render(|v| match v {
                    Var::Id => Some(id.clone()),
                    other => fill(other),
                })
                .ok_or_else(|| "the read-back path has no value for a placeholder".into())
        });
        ctx.record(
            Role::User.named(user),
            w.kind.clone(),
            Some(key.clone()),
            Some(token.clone()),
            invoke,
            ex,
        );
        self.written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Written {
                key,
                read,
                token,
                write: at,
                acknowledged,
            });
    }

    /// GETs the probe path at `probe_hz`, each probe in its own task so a held one does not
    /// delay the next.
    async fn probe(self: Arc<Self>, ctx: Context) {
        let http = self.user_agent(self.spec.probe_timeout);
        let mut state = UserState::default();
        while self.compiled.login.is_some()
            && !ctx.is_stopped()
            && !self
                .login(&ctx, &http, "probe", Role::Probe, &mut state)
                .await
        {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let token = Arc::new(state.token);
        let mut tick =
            tokio::time::interval(Duration::from_secs_f64(1.0 / self.spec.probe_hz.max(1.0)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut inflight = JoinSet::new();
        for _ in 0..10_000_000u64 {
            tokio::select! {
                _ = ctx.stopped() => break,
                _ = tick.tick() => {}
            }
            let (w, c, h, token) = (self.clone(), ctx.clone(), http.clone(), token.clone());
            inflight.spawn(async move {
                let invoke = c.now();
                let mut fill = |v: &Var| fill(&c, v, "probe", None, None, None);
                let r = w
                    .request(
                        &h,
                        reqwest::Method::GET,
                        &w.spec.probe_path,
                        &[],
                        &mut fill,
                        token.as_deref(),
                    )
                    .send()
                    .await;
                let ex = w.exchange(&r, &[]);
                c.record(
                    Role::Probe.named(PROBE),
                    OpKind::PROBE,
                    None,
                    None,
                    invoke,
                    ex,
                );
            });
            while inflight.try_join_next().is_some() {}
        }
        while inflight.join_next().await.is_some() {}
    }

    /// Reads one write back: the value it holds, `None` when it is certainly not there, or
    /// why the read could not decide.
    async fn read_back(
        &self,
        ctx: &Context,
        http: &reqwest::Client,
        token: Option<&str>,
        written: &Written,
    ) -> Result<Option<String>, String> {
        let w = &self.compiled.writes[written.write];
        let path = written.read.clone()?;
        let mut why = String::new();
        for attempt in 0..READ_BACK_TRIES {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            let mut fill = |v: &Var| fill(ctx, v, "verifier", None, None, None);
            let req = self.request(http, reqwest::Method::GET, &path, &[], &mut fill, token);
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    why = format!("read-back failed: {e}");
                    continue;
                }
            };
            let status = resp.status().as_u16();
            if w.absent.contains(&status) {
                return Ok(None);
            }
            if !(200..300).contains(&status) {
                why = format!("read-back answered HTTP {status}");
                continue;
            }
            let body = match resp.bytes().await {
                Ok(b) => b,
                Err(e) => {
                    why = format!("read-back cut off: {e}");
                    continue;
                }
            };
            return Ok(match &w.compare {
                Compare::Digest => Some(super::digest(&body)),
                Compare::Contains(_) => {
                    let text = String::from_utf8_lossy(&body);
                    text.contains(&written.token).then(|| written.token.clone())
                }
                Compare::Fields(fields) => {
                    let json: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
                    Some(fields_token(fields.iter().map(|(p, _)| {
                        let v = json.as_ref().and_then(|j| j.pointer(p)).map(json_text);
                        (p.clone(), v.unwrap_or_else(|| "(absent)".into()))
                    })))
                }
            });
        }
        Err(why)
    }
}

/// What a template's placeholder stands for in one request.
fn fill(
    ctx: &Context,
    v: &Var,
    user: &str,
    key: Option<&str>,
    uuid: Option<&str>,
    ids: Option<&BTreeMap<String, String>>,
) -> Option<String> {
    match v {
        Var::Key => key.map(str::to_string),
        Var::User => Some(user.to_string()),
        Var::Uuid => Some(
            uuid.map(str::to_string)
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        ),
        Var::Id => None,
        Var::IdOf(k) => ids?.get(k).cloned(),
        Var::Secret(s) => ctx.secret(s),
        Var::NowMs => Some(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis())
                .to_string(),
        ),
    }
}

/// The value at a JSON pointer of an answer's body, as text (`None`: the body is not JSON or
/// has nothing there); `Err`: the body could not be read.
async fn at_pointer(
    resp: reqwest::Response,
    pointer: &str,
) -> Result<Option<String>, reqwest::Error> {
    let body = resp.bytes().await?;
    Ok(serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|b| b.pointer(pointer).map(json_text)))
}

/// A JSON value as text: a string as itself, anything else as JSON.
fn json_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Field values as one comparable token.
fn fields_token(fields: impl Iterator<Item = (String, String)>) -> String {
    serde_json::to_string(&fields.collect::<BTreeMap<_, _>>()).unwrap_or_default()
}

impl Workload for HttpWorkload {
    fn name(&self) -> &str {
        &self.spec.name
    }

    fn probe_hz(&self) -> Option<f64> {
        Some(self.spec.probe_hz)
    }

    fn prepare(self: Arc<Self>, ctx: Context) -> BoxFuture<'static, Result<(), String>> {
        Box::pin(async move {
            if let Some(problem) = &self.problem {
                return Err(problem.clone());
            }
            let entry = ctx.node(&self.spec.entry).map_err(|e| e.to_string())?;
            let _ = self.entry.set(Endpoint::of(&entry, self.spec.port)?);
            Ok(())
        })
    }

    fn run(self: Arc<Self>, ctx: Context) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let mut tasks = JoinSet::new();
            for i in 0..self.spec.users {
                tasks.spawn(self.clone().user(ctx.clone(), i));
            }
            tasks.spawn(self.clone().probe(ctx.clone()));
            while tasks.join_next().await.is_some() {}
        })
    }

    fn settled(self: Arc<Self>, ctx: Context) -> BoxFuture<'static, bool> {
        Box::pin(async move { ctx.steady(|o| o.kind == OpKind::PROBE || o.role == Role::User) })
    }

    /// Every write read back (acknowledged, unknown and refused alike, so a refused write
    /// that is there anyway is caught), as a `StoreRead` keyed by write.
    fn final_read(self: Arc<Self>, ctx: Context) -> BoxFuture<'static, Read> {
        Box::pin(async move {
            let http = self.user_agent(self.spec.op_timeout);
            let mut state = UserState::default();
            if !self
                .login(&ctx, &http, "verifier", Role::Verifier, &mut state)
                .await
            {
                return Err("the read-back could not sign in".into());
            }
            let written =
                std::mem::take(&mut *self.written.lock().unwrap_or_else(|e| e.into_inner()));
            let token = state.token.clone();
            let reads: Vec<(usize, Result<Option<String>, String>)> =
                futures_util::stream::iter(0..written.len())
                    .map(|i| {
                        let (me, ctx, http, token, w) =
                            (&self, &ctx, &http, token.as_deref(), &written[i]);
                        async move { (i, me.read_back(ctx, http, token, w).await) }
                    })
                    .buffer_unordered(READ_BACK_CONCURRENCY)
                    .collect()
                    .await;
            store_read(reads.into_iter().map(|(i, read)| {
                let w = &written[i];
                (w.key.as_str(), w.acknowledged, read)
            }))
        })
    }
}
