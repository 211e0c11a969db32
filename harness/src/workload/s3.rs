//! A declarative S3 workload (`[s3]` in a scenario): writers `PUT` objects of the sizes the
//! scenario gives straight to an S3 endpoint, a probe reads through it, and after the run
//! every object is read back and compared by SHA-256, so the generic continuity check holds
//! the acknowledged ones against what the store kept. The bucket is the install's: it must
//! exist, as the product's own does.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, PutPayload, RetryConfig};
use rand::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::keyed::{Pace, Store};
use crate::classify::{self, TcpFailure};
use crate::workload::{Answer, Client, Context, Op, Size, digest};
use hadrill_model::{Exchange, OpKind};

/// The kind of its writes.
pub const PUT: OpKind = OpKind::new("put");

/// `[s3]` in a scenario.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Spec {
    /// Its name in the report; its final read is kept under it.
    pub name: String,
    /// The node and container port of the S3 endpoint.
    pub node: String,
    pub port: u16,
    pub bucket: String,
    pub region: String,
    pub access_key: String,
    /// The topology secret that holds the secret access key.
    pub secret_key_secret: String,
    /// Each object's size, drawn from these.
    pub sizes: Vec<Size>,
    /// Concurrent writers, and their writes per second all together.
    pub clients: usize,
    pub rate: f64,
    /// How often the probe reads: the availability resolution.
    pub probe_hz: f64,
    /// The start of every object's key.
    pub prefix: String,
    /// How long a request may take before its outcome is `unknown`.
    #[serde(with = "humantime_serde")]
    pub op_timeout: Duration,
    /// Upper bound on writes, whatever the scenario's length.
    pub max_ops: u64,
}

impl Default for S3Spec {
    fn default() -> Self {
        S3Spec {
            name: "s3".into(),
            node: "s3".into(),
            port: 8333,
            bucket: "hadrill".into(),
            region: "us-east-1".into(),
            access_key: "hadrill".into(),
            secret_key_secret: "S3_SECRET_KEY".into(),
            sizes: vec![Size(4 << 10), Size(64 << 10)],
            clients: 2,
            rate: 5.0,
            probe_hz: 10.0,
            prefix: "hadrill/".into(),
            op_timeout: Duration::from_secs(5),
            max_ops: 20_000,
        }
    }
}

impl S3Spec {
    /// An object's bytes: a function of its key, so the writer's client and the digest the
    /// write records agree without carrying the bytes in the operation.
    fn body(&self, key: &str) -> Vec<u8> {
        let seed: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let mut rng = rand_chacha::ChaCha8Rng::from_seed(seed);
        let size = match self.sizes.as_slice() {
            [] => 0,
            sizes => sizes[rng.next_u32() as usize % sizes.len()].0,
        };
        let mut bytes = vec![0; size as usize];
        rng.fill_bytes(&mut bytes);
        bytes
    }
}

impl Store for S3Spec {
    fn name(&self) -> &str {
        &self.name
    }

    fn pace(&self) -> Pace {
        Pace {
            clients: self.clients,
            rate: self.rate,
            probe_hz: self.probe_hz,
            max_ops: self.max_ops,
        }
    }

    fn kind(&self) -> OpKind {
        PUT
    }

    fn client(&self, ctx: &Context) -> Box<dyn Client> {
        Box::new(S3Client {
            ctx: ctx.clone(),
            spec: self.clone(),
            store: std::sync::Mutex::new(None),
        })
    }

    fn key(&self, client: usize, n: u64) -> String {
        format!("{}{client}/{n}", self.prefix)
    }

    fn write(&self, key: String) -> Op {
        let value = digest(&self.body(&key));
        Op::write(PUT, key, value)
    }

    fn probe_key(&self) -> String {
        format!("{}probe", self.prefix)
    }
}

/// An S3 client for one writer: `PUT`s an operation with a value (the object's bytes made
/// again from its key), `GET`s one without and reads the digest of what it holds; absent is
/// `None`. It is made again when the node's published port changes (after a restart).
struct S3Client {
    ctx: Context,
    spec: S3Spec,
    store: std::sync::Mutex<Option<(String, Arc<AmazonS3>)>>,
}

impl S3Client {
    fn store(&self) -> Result<Arc<AmazonS3>, TcpFailure> {
        let s = &self.spec;
        let endpoint = endpoint(&self.ctx, &s.node, s.port)?;
        let mut cached = self.store.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, store)) = cached.as_ref().filter(|(at, _)| *at == endpoint) {
            return Ok(store.clone());
        }
        let bucket = Bucket {
            region: &s.region,
            bucket: &s.bucket,
            access_key: &s.access_key,
            secret_key_secret: &s.secret_key_secret,
            timeout: s.op_timeout,
        };
        let store = Arc::new(bucket.open(&self.ctx, &endpoint)?);
        *cached = Some((endpoint, store.clone()));
        Ok(store)
    }
}

/// The endpoint of an S3 server, as the harness reaches it: `node`'s published `port`.
pub(crate) fn endpoint(ctx: &Context, node: &str, port: u16) -> Result<String, TcpFailure> {
    let addr = ctx
        .node(node)
        .map_err(|e| TcpFailure::NotSent(e.to_string()))?
        .host_addr(port)
        .ok_or_else(|| TcpFailure::NotSent(format!("{node} publishes no port {port}")))?;
    Ok(format!("http://{addr}"))
}

/// A bucket and how to sign in to it: a workload's, or a product's that a final read lists.
pub(crate) struct Bucket<'a> {
    pub region: &'a str,
    pub bucket: &'a str,
    pub access_key: &'a str,
    /// The topology secret that holds the secret access key.
    pub secret_key_secret: &'a str,
    /// How long a request may take.
    pub timeout: Duration,
}

impl Bucket<'_> {
    /// A client of the bucket at `endpoint`, making one request per operation: a retry
    /// would hide the outcome being judged.
    pub(crate) fn open(&self, ctx: &Context, endpoint: &str) -> Result<AmazonS3, TcpFailure> {
        let secret = ctx.secret(self.secret_key_secret).ok_or_else(|| {
            TcpFailure::NotSent(format!("no secret `{}`", self.secret_key_secret))
        })?;
        AmazonS3Builder::new()
            .with_endpoint(endpoint)
            .with_region(self.region)
            .with_bucket_name(self.bucket)
            .with_access_key_id(self.access_key)
            .with_secret_access_key(secret)
            .with_virtual_hosted_style_request(false)
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(true)
                    .with_connect_timeout(Duration::from_secs(1))
                    .with_timeout(self.timeout),
            )
            .with_retry(RetryConfig {
                max_retries: 0,
                ..Default::default()
            })
            .build()
            .map_err(|e| TcpFailure::NotSent(e.to_string()))
    }
}

/// object_store's errors by the honesty rules: refused credentials or permissions are a
/// refusal; a connection never made is not sent; anything else (a 5xx, a timeout, a
/// connection lost) may follow the request's effect.
fn failure(e: &object_store::Error) -> TcpFailure {
    use object_store::Error as E;
    match e {
        E::PermissionDenied { .. } | E::Unauthenticated { .. } | E::Precondition { .. } => {
            TcpFailure::Refused(e.to_string())
        }
        _ if connect_failed(e) => TcpFailure::NotSent(e.to_string()),
        _ => TcpFailure::Lost(e.to_string()),
    }
}

/// Whether a connection error is the root of `e`: the request never left.
fn connect_failed(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut at = Some(e);
    while let Some(err) = at {
        if err
            .downcast_ref::<reqwest::Error>()
            .is_some_and(reqwest::Error::is_connect)
        {
            return true;
        }
        at = err.source();
    }
    false
}

impl Client for S3Client {
    fn invoke<'a>(&'a self, op: &'a Op) -> BoxFuture<'a, Answer> {
        Box::pin(async move {
            let store = match self.store() {
                Ok(s) => s,
                Err(e) => return Answer::of(classify::tcp(&e)),
            };
            let key = op.key.as_deref().unwrap_or_default();
            let path = Path::from(key);
            let result = match &op.value {
                Some(_) => {
                    let body = PutPayload::from(self.spec.body(key));
                    store.put(&path, body).await.map(|_| None)
                }
                None => match store.get(&path).await {
                    Ok(got) => got.bytes().await.map(|b| Some(digest(&b))),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e),
                },
            };
            match result {
                Ok(read) => Answer {
                    exchange: Exchange::OK,
                    read,
                },
                Err(e) => Answer::of(classify::tcp(&failure(&e))),
            }
        })
    }
}
