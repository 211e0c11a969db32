//! Topology files (`topologies/*.toml`) parsed into a typed, validated model.
//!
//! Every error names the file, the line and column, and the field; the `miette` rendering adds
//! the offending source line. Cross-references (groups, `depends_on`, config files, images) are
//! checked here so a bad file never reaches Docker.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use miette::{Diagnostic, NamedSource, SourceSpan};
use serde::Deserialize;
use toml::Spanned;

use crate::images::ImageRef;
use crate::images::recipe::{self, Recipe};

mod host;
pub use host::{HostSpec, Service, SshTarget};

/// The network every node joins when a topology declares none.
pub const DEFAULT_NETWORK: &str = "main";
const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum TopologyError {
    #[error("topology `{name}` not found (looked for {path})")]
    #[diagnostic(help("available topologies: {available}; or pass a path to a .toml file"))]
    NotFound {
        name: String,
        path: PathBuf,
        available: String,
    },
    #[error("cannot read topology file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Invalid(Box<Invalid>),
}

/// A validation error pointing at one place in a topology file.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{file}:{line}:{column}: {message}")]
pub struct Invalid {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
    #[source_code]
    src: NamedSource<String>,
    #[label("here")]
    span: SourceSpan,
    #[help]
    help: Option<String>,
}

impl Invalid {
    /// An error at `span` of the file `path` holding `text` (shared by the scenario files).
    pub fn at(
        path: &Path,
        text: &str,
        span: Range<usize>,
        message: String,
        help: Option<String>,
    ) -> Box<Invalid> {
        let start = span.start.min(text.len());
        let before = &text[..start];
        let line = before.matches('\n').count() + 1;
        let column = start - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        let file = path.display().to_string();
        Box::new(Invalid {
            line,
            column,
            message,
            src: NamedSource::new(&file, text.to_string()),
            file,
            span: (start, span.end.saturating_sub(start)).into(),
            help,
        })
    }
}

/// A parsed and validated topology.
#[derive(Debug, Clone)]
pub struct Topology {
    pub name: String,
    pub path: PathBuf,
    pub description: String,
    pub networks: Vec<String>,
    pub groups: BTreeMap<String, Vec<String>>,
    pub nodes: BTreeMap<String, NodeSpec>,
    /// Names of the secrets generated for each run (32 random bytes, hex). Config files and
    /// `env` values refer to them as `${secret:NAME}`.
    pub secrets: Vec<String>,
    /// Where an install's secrets are read from (`secrets_file`), for existing hosts.
    pub secrets_file: Option<PathBuf>,
    /// Tunables of the deployment (`[settings]`, e.g. Patroni's ttl), written into config files
    /// and `env` as `${setting:NAME}`, inherited through `extends` and reported with results.
    pub settings: BTreeMap<String, String>,
    /// What the data tier promises (`replication = "synchronous"`): the `[sql]` workload reads
    /// the primary's live replication state and the `replication` check compares the two.
    pub replication: Option<Replication>,
    /// Images this topology builds (`[images.NAME]`), by name; a node names one as its image.
    pub images: BTreeMap<String, Recipe>,
    /// How many of `hadrill run --jobs`'s slots a run of it takes (`weight = 2`, default 1):
    /// a topology whose services keep a core busy runs with less, or nothing, beside it.
    pub weight: u32,
}

/// How a database tier replicates, as its topology promises it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Replication {
    /// A commit is acknowledged only once a standby has it: a failover loses nothing.
    Synchronous,
    /// A commit is acknowledged before any standby has it: a failover may lose it.
    Asynchronous,
}

impl Replication {
    pub fn name(self) -> &'static str {
        match self {
            Replication::Synchronous => "synchronous",
            Replication::Asynchronous => "asynchronous",
        }
    }
}

/// One node as declared: what to run and how to know it is up.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub name: String,
    pub role: String,
    pub image: ImageRef,
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub config: Vec<ConfigMount>,
    pub networks: Vec<String>,
    pub ports: Vec<u16>,
    pub cap_add: Vec<String>,
    pub user: Option<String>,
    pub depends_on: Vec<String>,
    pub health: Option<HealthCheck>,
    pub startup_timeout: Duration,
    /// A one-shot step (e.g. `web database init`): started once, and done when it exits 0.
    pub once: bool,
    /// `false`: created with the run but started only by a `start` step (a node that joins
    /// later, e.g. a third worker).
    pub autostart: bool,
    /// `clock = "faketime"`: the node's processes load libfaketime, so `skew-clock` can move
    /// the wall clock they read.
    pub faketime: bool,
    /// Size-limited in-memory filesystems: mount path → size (`64m`), e.g. a data directory
    /// that `fill-disk` may fill.
    pub tmpfs: BTreeMap<String, String>,
    /// `in_flight = ["cat", "/tmp/worker.in-flight"]`: a command run inside the node that
    /// prints the work it holds right now, one item per line (jobs, requests, transactions).
    /// A fault on the node records what it held, and a step may wait until it holds some.
    pub in_flight: Option<Vec<String>>,
    /// `tls = { port = 443, ca = "…/ca.crt" }`: the harness reaches `port` over TLS and
    /// trusts `ca`, presenting `cert` and `key` if given (a database that wants a client
    /// certificate).
    pub tls: Option<NodeTls>,
    /// An existing host reached over SSH (`[hosts.NAME]`), not a container hadrill starts.
    pub host: Option<Box<HostSpec>>,
    /// The product's own log files in the node (e.g. PostgreSQL's), kept in the run directory
    /// at the end and shown when the node does not come up.
    pub logs: Vec<String>,
    /// `rotate_secret = { NAME = [...] }`: the product's own command(s) that set secret NAME
    /// on this node to the value they read on their standard input, run as root by
    /// `rotate-secret`. Without one, a container's config files are rewritten by hadrill.
    pub rotate_secret: BTreeMap<String, Vec<Vec<String>>>,
}

impl NodeSpec {
    /// The port the harness's HTTP clients use when a workload names `port`: the node's TLS
    /// port if it serves TLS (a TLS entry point is reached over HTTPS whatever the default).
    pub fn http_port(&self, port: u16) -> u16 {
        self.tls.as_ref().map_or(port, |t| t.port)
    }
}

/// How a node serves TLS to the harness's clients: on which port, under which CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeTls {
    pub port: u16,
    /// A PEM file of the CA the node's certificate chains to.
    pub ca: PathBuf,
    /// The client certificate and key (PEM) the harness presents.
    pub client: Option<(PathBuf, PathBuf)>,
}

/// Secret `name` of an existing install as the user keeps it: `HADRILL_SECRET_<name>`, else
/// its `name=value` line in `secrets_file`. None: given in neither.
pub fn install_secret(name: &str, secrets_file: Option<&Path>) -> std::io::Result<Option<String>> {
    if let Ok(v) = std::env::var(format!("HADRILL_SECRET_{name}")) {
        return Ok(Some(v));
    }
    let Some(file) = secrets_file else {
        return Ok(None);
    };
    Ok(std::fs::read_to_string(file)?.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == name).then(|| v.trim().to_string())
    }))
}

/// The file libfaketime reads a node's clock offset from; absent, the clock is true.
pub const FAKETIME_FILE: &str = "/tmp/hadrill-clock";
/// The libfaketime of the base image (Debian's `libfaketime`), thread-safe variant.
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// A file from the `config/` directory beside the topology, mounted into the container. Each run gets its own copy,
/// so faults such as a secret rotation can rewrite it without touching the repository.
#[derive(Debug, Clone)]
pub struct ConfigMount {
    pub source: PathBuf,
    pub target: String,
}

/// A command run inside the container until it exits 0.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    pub cmd: Vec<String>,
    pub interval: Duration,
}

impl NodeSpec {
    /// A container hadrill did not start, as far as its faults need to know it.
    pub fn attached(
        name: &str,
        image: ImageRef,
        networks: Vec<String>,
        cap_add: Option<Vec<String>>,
    ) -> NodeSpec {
        NodeSpec {
            name: name.to_string(),
            role: "attached".into(),
            image,
            command: Vec::new(),
            env: BTreeMap::new(),
            config: Vec::new(),
            networks,
            ports: Vec::new(),
            cap_add: cap_add.unwrap_or_default(),
            user: None,
            depends_on: Vec::new(),
            health: None,
            startup_timeout: Duration::ZERO,
            once: false,
            autostart: true,
            faketime: false,
            tmpfs: BTreeMap::new(),
            in_flight: None,
            tls: None,
            host: None,
            logs: Vec::new(),
            rotate_secret: BTreeMap::new(),
        }
    }

    /// The environment that makes the node's processes read their wall clock through
    /// libfaketime: the offset file is re-read every one to two seconds, monotonic clocks stay
    /// true.
    pub fn clock_env(&self) -> Vec<(&'static str, &'static str)> {
        if !self.faketime {
            return Vec::new();
        }
        vec![
            ("LD_PRELOAD", LIBFAKETIME),
            ("FAKETIME_TIMESTAMP_FILE", FAKETIME_FILE),
            ("FAKETIME_CACHE_DURATION", "1"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ]
    }

    /// Whether hadrill may use `cap` inside the node: one the container was given, or any on
    /// an existing host (its faults run as root there, through sudo).
    pub fn has_capability(&self, cap: &str) -> bool {
        self.host.is_some() || self.cap_add.iter().any(|c| c.eq_ignore_ascii_case(cap))
    }
}

impl Topology {
    /// A topology with no nodes yet, for containers hadrill attaches to rather than starts.
    pub fn empty(name: &str) -> Topology {
        Topology {
            name: name.to_string(),
            path: PathBuf::from(format!("<attached {name}>")),
            description: String::new(),
            networks: Vec::new(),
            groups: BTreeMap::new(),
            nodes: BTreeMap::new(),
            secrets: Vec::new(),
            secrets_file: None,
            settings: BTreeMap::new(),
            replication: None,
            images: BTreeMap::new(),
            weight: 1,
        }
    }

    /// Loads `name` from `<root>/topologies/<name>.toml`, or from a path if `name` is one.
    pub fn load(root: &Path, name: &str) -> Result<Self, TopologyError> {
        Self::load_extended(root, name, &[])
    }

    /// `load`, for the `extends` of the files in `chain` (canonical paths, outermost first).
    fn load_extended(root: &Path, name: &str, chain: &[PathBuf]) -> Result<Self, TopologyError> {
        let path = locate(root, "topologies", name).map_err(|(path, available)| {
            TopologyError::NotFound {
                name: name.to_string(),
                path,
                available: available.join(", "),
            }
        })?;
        let text = std::fs::read_to_string(&path).map_err(|source| TopologyError::Read {
            path: path.clone(),
            source,
        })?;
        Self::parse_extended(&path, &text, root, chain)
    }

    /// Parses topology text; `path` names the file in errors and gives the topology its name.
    /// `root` is the project root (where `extends` looks up names); config files are read
    /// from the `config/` directory beside `path`.
    pub fn parse(path: &Path, text: &str, root: &Path) -> Result<Self, TopologyError> {
        Self::parse_extended(path, text, root, &[])
    }

    fn parse_extended(
        path: &Path,
        text: &str,
        root: &Path,
        chain: &[PathBuf],
    ) -> Result<Self, TopologyError> {
        let ctx = Ctx { path, text };
        let raw: RawTopology = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            ctx.error(span, e.message().to_string(), None)
        })?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        validate_name(&ctx, "topology", &name, 0..0)?;
        // A name or a list of names; each keeps the span of the whole `extends` value.
        let parents: Vec<Spanned<String>> = match &raw.extends {
            None => Vec::new(),
            Some(v) => {
                let span = v.span();
                let names = match v.get_ref() {
                    toml::Value::String(s) => vec![s.clone()],
                    toml::Value::Array(a) if a.iter().all(toml::Value::is_str) => a
                        .iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect(),
                    _ => {
                        return Err(ctx.error(
                            span,
                            "extends: give a topology name or a list of names".into(),
                            None,
                        ));
                    }
                };
                names
                    .into_iter()
                    .map(|n| Spanned::new(span.clone(), n))
                    .collect()
            }
        };
        let chain = [chain, &[canonical(path)]].concat();
        let mut base: Option<Topology> = None;
        for parent in &parents {
            let parent_ref = beside(path, parent.get_ref());
            // A file already being loaded would recurse without end.
            if let Ok(p) = locate(root, "topologies", &parent_ref)
                && let Some(first) = chain.iter().position(|c| *c == canonical(&p))
            {
                let files: Vec<String> = chain[first..]
                    .iter()
                    .chain([&p])
                    .map(|f| {
                        f.file_name()
                            .unwrap_or_default()
                            .to_string_lossy()
                            .into_owned()
                    })
                    .collect();
                return Err(ctx.error(
                    parent.span(),
                    format!("extends: cycle {}", files.join(" → ")),
                    Some("a topology cannot extend itself, directly or through another".into()),
                ));
            }
            let t = Self::load_extended(root, &parent_ref, &chain).map_err(|e| {
                ctx.error(
                    parent.span(),
                    format!("extends: cannot load topology `{}`: {e}", parent.get_ref()),
                    None,
                )
            })?;
            base = Some(match base {
                None => t,
                Some(b) => b.merged_with(t),
            });
        }
        for ex in &raw.exclude {
            let removed = base.as_mut().and_then(|b| b.exclude(ex.get_ref()));
            if removed.is_none() {
                return Err(ctx.error(
                    ex.span(),
                    format!("exclude: no inherited node `{}`", ex.get_ref()),
                    Some("exclude names nodes of the topologies in `extends`".into()),
                ));
            }
        }
        // Config files live beside the topology file, wherever it is (a user's own topologies
        // need not sit inside hadrill's tree); then under the project's, so a topology kept
        // elsewhere can still mount the shipped files.
        let beside = path.parent().unwrap_or(Path::new(".")).join("config");
        let shipped = root.join("topologies").join("config");
        let mut config_roots = vec![beside];
        if canonical(&config_roots[0]) != canonical(&shipped) {
            config_roots.push(shipped);
        }
        ctx.build(name, raw, &config_roots, base)
    }

    pub fn node(&self, name: &str) -> Option<&NodeSpec> {
        self.nodes.get(name)
    }

    /// This topology with `other`'s networks, groups, nodes, secrets and settings added; on a
    /// name both have, `other`'s wins.
    fn merged_with(mut self, other: Topology) -> Topology {
        for n in other.networks {
            if !self.networks.contains(&n) {
                self.networks.push(n);
            }
        }
        for s in other.secrets {
            if !self.secrets.contains(&s) {
                self.secrets.push(s);
            }
        }
        self.groups.extend(other.groups);
        self.nodes.extend(other.nodes);
        self.settings.extend(other.settings);
        self.images.extend(other.images);
        self
    }

    /// Removes an inherited node, and it from every group.
    fn exclude(&mut self, node: &str) -> Option<NodeSpec> {
        let removed = self.nodes.remove(node)?;
        for members in self.groups.values_mut() {
            members.retain(|m| m != node);
        }
        Some(removed)
    }

    /// Resolves a node or group name to node names.
    pub fn resolve(&self, name: &str) -> Option<Vec<String>> {
        if let Some(members) = self.groups.get(name) {
            return Some(members.clone());
        }
        self.nodes
            .contains_key(name)
            .then(|| vec![name.to_string()])
    }

    /// Nodes in start order: each inner list depends only on earlier lists, so it can start
    /// concurrently.
    pub fn start_waves(&self) -> Vec<Vec<String>> {
        let mut depth: BTreeMap<&str, usize> = BTreeMap::new();
        fn visit<'a>(t: &'a Topology, n: &'a str, depth: &mut BTreeMap<&'a str, usize>) -> usize {
            if let Some(d) = depth.get(n) {
                return *d;
            }
            let d = t.nodes[n]
                .depends_on
                .iter()
                .map(|dep| visit(t, dep, depth) + 1)
                .max()
                .unwrap_or(0);
            depth.insert(n, d);
            d
        }
        for name in self.nodes.keys() {
            visit(self, name, &mut depth);
        }
        let mut waves: Vec<Vec<String>> = Vec::new();
        for (name, d) in depth {
            if waves.len() <= d {
                waves.resize(d + 1, Vec::new());
            }
            waves[d].push(name.to_string());
        }
        waves
    }

    /// Images this topology needs, deduplicated (none for existing hosts).
    pub fn images(&self) -> BTreeSet<ImageRef> {
        self.nodes
            .values()
            .filter(|n| n.host.is_none())
            .map(|n| n.image.clone())
            .collect()
    }

    /// Its nodes are existing hosts reached over SSH, not containers.
    pub fn is_hosts(&self) -> bool {
        self.nodes.values().any(|n| n.host.is_some())
    }

    /// The image a node's `image` (or an `upgrade` step's) names: one hadrill builds, one of
    /// this topology's `[images]`, or one in the engine.
    pub fn image(&self, name: &str) -> Result<ImageRef, String> {
        resolve_image(&self.images, name)
    }
}

fn resolve_image(images: &BTreeMap<String, Recipe>, name: &str) -> Result<ImageRef, String> {
    match images.get(name) {
        Some(r) => Ok(ImageRef::Recipe(Box::new(r.clone()))),
        None => ImageRef::parse(name).map_err(|msg| {
            if images.is_empty() {
                msg
            } else {
                let declared = images.keys().cloned().collect::<Vec<_>>();
                format!(
                    "{msg}, or one of this topology's [images]: {}",
                    declared.join(", ")
                )
            }
        }),
    }
}

/// The names in `${kind:NAME}` placeholders of `text`, in order.
pub fn placeholders<'a>(text: &'a str, kind: &str) -> Vec<&'a str> {
    let open = format!("${{{kind}:");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(&open) {
        let after = &rest[at + open.len()..];
        let end = after.find('}').unwrap_or(after.len());
        out.push(&after[..end]);
        rest = after.get(end + 1..).unwrap_or("");
    }
    out
}

/// Names of the topologies under `<root>/topologies`.
pub fn available(root: &Path) -> Vec<String> {
    toml_names(&root.join("topologies"))
}

/// A declaration named from within `file`: a `.toml` path is relative to `file`'s directory,
/// a name is looked up as usual.
pub(crate) fn beside(file: &Path, name: &str) -> String {
    match file.parent() {
        Some(dir) if name.ends_with(".toml") => dir.join(name).to_string_lossy().into_owned(),
        _ => name.to_string(),
    }
}

/// The same file however it was named (`web-ha`, `../topologies/web-ha.toml`).
fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// `<root>/<dir>/<name>.toml`, or `name` itself when it is a path. When the file does not
/// exist: where it was looked for, and the names that do exist.
pub(crate) fn locate(
    root: &Path,
    dir: &str,
    name: &str,
) -> Result<PathBuf, (PathBuf, Vec<String>)> {
    let as_path = Path::new(name);
    let path = if name.ends_with(".toml") || as_path.components().count() > 1 {
        as_path.to_path_buf()
    } else {
        root.join(dir).join(format!("{name}.toml"))
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err((path, toml_names(&root.join(dir))))
    }
}

/// The `.toml` files of a directory, by stem (Cargo.toml is a crate's, not a declaration).
pub(crate) fn toml_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let p = e.path();
            if p.extension()? != "toml" || p.file_name()? == "Cargo.toml" {
                return None;
            }
            Some(p.file_stem()?.to_string_lossy().into_owned())
        })
        .collect();
    names.sort();
    names
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopology {
    /// Topologies this one starts from (names under `topologies/`, or `.toml` paths relative
    /// to this file), merged in order.
    extends: Option<Spanned<toml::Value>>,
    replication: Option<Replication>,
    weight: Option<Spanned<u32>>,
    /// Inherited nodes to leave out.
    #[serde(default)]
    exclude: Vec<Spanned<String>>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    networks: Vec<Spanned<String>>,
    #[serde(default)]
    groups: BTreeMap<Spanned<String>, Vec<Spanned<String>>>,
    #[serde(default)]
    secrets: Vec<Spanned<String>>,
    #[serde(default)]
    settings: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    #[serde(default)]
    nodes: BTreeMap<Spanned<String>, RawNode>,
    #[serde(default)]
    images: BTreeMap<Spanned<String>, RawRecipe>,
    /// Existing hosts reached over SSH.
    #[serde(default)]
    hosts: BTreeMap<Spanned<String>, host::RawHost>,
    /// For existing hosts: a file of `NAME=value` lines holding the install's secrets.
    secrets_file: Option<Spanned<String>>,
}

/// `[images.NAME]`: an image built from the base image, as the user declares it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecipe {
    #[serde(default)]
    debian: Vec<Spanned<String>>,
    #[serde(default)]
    pypi: Vec<Spanned<String>>,
    /// Target path in the image → file under `config/`.
    #[serde(default)]
    files: BTreeMap<String, Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    role: Option<String>,
    image: Spanned<String>,
    #[serde(default)]
    command: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    config: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    networks: Vec<Spanned<String>>,
    #[serde(default)]
    ports: Vec<u16>,
    #[serde(default)]
    cap_add: Vec<String>,
    user: Option<String>,
    #[serde(default)]
    depends_on: Vec<Spanned<String>>,
    health: Option<RawHealth>,
    startup_timeout: Option<HumanDuration>,
    #[serde(default)]
    once: bool,
    autostart: Option<bool>,
    clock: Option<Spanned<String>>,
    #[serde(default)]
    tmpfs: BTreeMap<String, Spanned<String>>,
    in_flight: Option<Spanned<Vec<String>>>,
    tls: Option<Spanned<RawTls>>,
    #[serde(default)]
    logs: Vec<Spanned<String>>,
    #[serde(default)]
    rotate_secret: BTreeMap<String, Spanned<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    port: u16,
    ca: Spanned<String>,
    cert: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    cmd: Vec<String>,
    interval: Option<HumanDuration>,
}

/// A duration written like `500ms`, `2s` or `1m 30s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s)
            .map(HumanDuration)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "invalid duration `{s}` ({e}); write it like `500ms`, `2s` or `1m`"
                ))
            })
    }
}

struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Ctx<'_> {
    fn error(&self, span: Range<usize>, message: String, help: Option<String>) -> TopologyError {
        TopologyError::Invalid(Invalid::at(self.path, self.text, span, message, help))
    }

    /// Builds the model; with `base` (from `extends`), the file's nodes and groups replace the
    /// base's of the same name and everything else is inherited.
    fn build(
        &self,
        name: String,
        raw: RawTopology,
        config_roots: &[PathBuf],
        base: Option<Topology>,
    ) -> Result<Topology, TopologyError> {
        let mut networks = Vec::new();
        for net in &raw.networks {
            validate_name(self, "network", net.get_ref(), net.span())?;
            if networks.contains(net.get_ref()) {
                return Err(self.error(
                    net.span(),
                    format!("networks: `{}` is listed twice", net.get_ref()),
                    None,
                ));
            }
            networks.push(net.get_ref().clone());
        }
        if networks.is_empty() {
            match &base {
                Some(b) => networks = b.networks.clone(),
                None => networks.push(DEFAULT_NETWORK.to_string()),
            }
        }
        if raw.nodes.is_empty() && raw.hosts.is_empty() && base.is_none() {
            return Err(self.error(0..0, "a topology needs at least one node".into(), None));
        }
        let mut secrets = base.as_ref().map(|b| b.secrets.clone()).unwrap_or_default();
        for secret in &raw.secrets {
            let name = secret.get_ref();
            let ok = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if !ok || secrets.contains(name) {
                return Err(self.error(
                    secret.span(),
                    format!("secrets: `{name}` is not a new name of A-Z, 0-9 and _"),
                    None,
                ));
            }
            secrets.push(name.clone());
        }
        let mut settings = base
            .as_ref()
            .map(|b| b.settings.clone())
            .unwrap_or_default();
        for (key, value) in &raw.settings {
            let name_ok = !key.get_ref().is_empty()
                && key
                    .get_ref()
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !name_ok {
                return Err(self.error(
                    key.span(),
                    format!(
                        "settings: `{}` is not a name of letters, digits, _ and -",
                        key.get_ref()
                    ),
                    None,
                ));
            }
            let text = match value.get_ref() {
                toml::Value::String(s) => s.clone(),
                v @ (toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_)) => {
                    v.to_string()
                }
                _ => {
                    return Err(self.error(
                        value.span(),
                        format!(
                            "settings.{}: must be a string, number or boolean",
                            key.get_ref()
                        ),
                        None,
                    ));
                }
            };
            settings.insert(key.get_ref().clone(), text);
        }
        let replication = raw
            .replication
            .or(base.as_ref().and_then(|b| b.replication));
        let weight = match &raw.weight {
            Some(w) if *w.get_ref() == 0 => {
                return Err(self.error(
                    w.span(),
                    "weight: must be at least 1".into(),
                    Some(
                        "1 is an ordinary topology; 2 runs with nothing beside it at --jobs 2"
                            .into(),
                    ),
                ));
            }
            Some(w) => *w.get_ref(),
            None => base.as_ref().map_or(1, |b| b.weight),
        };
        let inherited_secrets_file = base.as_ref().and_then(|b| b.secrets_file.clone());
        let cycle_spans = raw.nodes_spans();
        let mut node_names: BTreeSet<String> = raw
            .nodes
            .keys()
            .chain(raw.hosts.keys())
            .map(|k| k.get_ref().clone())
            .collect();
        let mut images = base.as_ref().map(|b| b.images.clone()).unwrap_or_default();
        let (mut groups, mut nodes, description) = match base {
            Some(b) => {
                node_names.extend(b.nodes.keys().cloned());
                (b.groups, b.nodes, b.description)
            }
            None => (BTreeMap::new(), BTreeMap::new(), String::new()),
        };

        for (group, members) in &raw.groups {
            validate_name(self, "group", group.get_ref(), group.span())?;
            if node_names.contains(group.get_ref()) {
                return Err(self.error(
                    group.span(),
                    format!(
                        "groups: `{}` is already the name of a node",
                        group.get_ref()
                    ),
                    Some("give the group a name no node uses".into()),
                ));
            }
            let mut list = Vec::new();
            for m in members {
                if !node_names.contains(m.get_ref()) {
                    return Err(self.unknown_node(
                        &format!("groups.{}", group.get_ref()),
                        m,
                        &node_names,
                    ));
                }
                list.push(m.get_ref().clone());
            }
            groups.insert(group.get_ref().clone(), list);
        }

        for (key, r) in &raw.images {
            let name = key.get_ref();
            validate_name(self, "image", name, key.span())?;
            if ImageRef::parse(name).is_ok() {
                return Err(self.error(
                    key.span(),
                    format!("images: `{name}` is the name of an image hadrill builds"),
                    Some("give your image another name".into()),
                ));
            }
            let field = format!("images.{name}");
            for p in &r.debian {
                if !recipe::valid_debian(p.get_ref()) {
                    return Err(self.error(
                        p.span(),
                        format!(
                            "{field}.debian: `{}` is not a Debian package name",
                            p.get_ref()
                        ),
                        Some(
                            "lower-case letters, digits, `+`, `-` and `.`, e.g. \"libpq5\"".into(),
                        ),
                    ));
                }
            }
            for p in &r.pypi {
                if !recipe::valid_requirement(p.get_ref()) {
                    return Err(self.error(
                        p.span(),
                        format!("{field}.pypi: `{}` is not a requirement pip can fetch from PyPI", p.get_ref()),
                        Some("a name with an optional version, e.g. \"mlflow==3.17.2\"; no options, paths or URLs".into()),
                    ));
                }
            }
            let mut files = Vec::new();
            for (target, source) in &r.files {
                let file =
                    self.config_file(config_roots, &format!("{field}.files"), target, source)?;
                files.push((target.clone(), file));
            }
            images.insert(
                name.clone(),
                Recipe {
                    name: name.clone(),
                    debian: r.debian.iter().map(|p| p.get_ref().clone()).collect(),
                    pypi: r.pypi.iter().map(|p| p.get_ref().clone()).collect(),
                    files,
                },
            );
        }

        for (key, node) in raw.nodes {
            let node_name = key.get_ref().clone();
            validate_name(self, "node", &node_name, key.span())?;
            let field = |f: &str| format!("nodes.{node_name}.{f}");

            let image = resolve_image(&images, node.image.get_ref()).map_err(|msg| {
                self.error(
                    node.image.span(),
                    format!("{}: {msg}", field("image")),
                    None,
                )
            })?;

            let mut node_networks = Vec::new();
            for net in &node.networks {
                if !networks.contains(net.get_ref()) {
                    return Err(self.error(
                        net.span(),
                        format!("{}: unknown network `{}`", field("networks"), net.get_ref()),
                        Some(format!("declared networks: {}", networks.join(", "))),
                    ));
                }
                node_networks.push(net.get_ref().clone());
            }
            if node_networks.is_empty() {
                node_networks.push(networks[0].clone());
            }

            let mut depends_on = Vec::new();
            for dep in &node.depends_on {
                if !node_names.contains(dep.get_ref()) {
                    return Err(self.unknown_node(&field("depends_on"), dep, &node_names));
                }
                if dep.get_ref() == &node_name {
                    return Err(self.error(
                        dep.span(),
                        format!("{}: a node cannot depend on itself", field("depends_on")),
                        None,
                    ));
                }
                depends_on.push(dep.get_ref().clone());
            }

            let mut config = Vec::new();
            for (target, source) in &node.config {
                config.push(ConfigMount {
                    source: self.config_file(config_roots, &field("config"), target, source)?,
                    target: target.clone(),
                });
            }

            let health = node.health.map(|h| HealthCheck {
                cmd: h.cmd,
                interval: h.interval.map_or(DEFAULT_HEALTH_INTERVAL, |d| d.0),
            });
            if let Some(h) = &health
                && h.cmd.is_empty()
            {
                return Err(self.error(
                    key.span(),
                    format!("{}: cmd must not be empty", field("health")),
                    None,
                ));
            }

            let faketime = self.faketime(&field("clock"), &node.clock)?;
            let mut tmpfs = BTreeMap::new();
            for (target, size) in &node.tmpfs {
                let valid_size = size
                    .get_ref()
                    .strip_suffix(['k', 'm', 'g'])
                    .unwrap_or(size.get_ref())
                    .parse::<u64>()
                    .is_ok_and(|n| n > 0);
                if !target.starts_with('/') || !valid_size {
                    return Err(self.error(
                        size.span(),
                        format!(
                            "{}: `{target}` = `{}` is not an absolute path and a size",
                            field("tmpfs"),
                            size.get_ref()
                        ),
                        Some("write it like `tmpfs = { \"/var/lib/data\" = \"64m\" }`".into()),
                    ));
                }
                tmpfs.insert(target.clone(), size.get_ref().clone());
            }
            if let Some(cmd) = &node.in_flight
                && cmd.get_ref().is_empty()
            {
                return Err(self.error(
                    cmd.span(),
                    format!("{}: the command must not be empty", field("in_flight")),
                    Some(
                        "write it like `in_flight = [\"cat\", \"/tmp/worker.in-flight\"]`: it prints one line per item the node holds"
                            .into(),
                    ),
                ));
            }

            let logs = self.log_files(&field("logs"), &node.logs)?;
            let rotate_secret =
                self.rotations(&field("rotate_secret"), &node.rotate_secret, &secrets)?;
            let tls = match &node.tls {
                None => None,
                Some(t) if !node.ports.contains(&t.get_ref().port) => {
                    return Err(self.error(
                        t.span(),
                        format!(
                            "{}: port {} is not one of the node's `ports`",
                            field("tls"),
                            t.get_ref().port
                        ),
                        Some("clients reach a published port: add it to `ports`".into()),
                    ));
                }
                Some(t) => {
                    let raw = t.get_ref();
                    let file = |name: &str, source: &Spanned<String>| {
                        self.config_file(config_roots, &field(&format!("tls.{name}")), "/", source)
                    };
                    let client = match (&raw.cert, &raw.key) {
                        (Some(cert), Some(key)) => Some((file("cert", cert)?, file("key", key)?)),
                        (None, None) => None,
                        _ => {
                            return Err(self.error(
                                t.span(),
                                format!("{}: `cert` and `key` go together", field("tls")),
                                Some(
                                    "give both (the client certificate and its key), or neither"
                                        .into(),
                                ),
                            ));
                        }
                    };
                    Some(NodeTls {
                        port: raw.port,
                        ca: file("ca", &raw.ca)?,
                        client,
                    })
                }
            };
            nodes.insert(
                node_name.clone(),
                NodeSpec {
                    role: node.role.unwrap_or_else(|| node_name.clone()),
                    name: node_name,
                    image,
                    command: node.command,
                    env: node.env,
                    config,
                    networks: node_networks,
                    ports: node.ports,
                    cap_add: node.cap_add,
                    user: node.user,
                    depends_on,
                    health,
                    startup_timeout: node
                        .startup_timeout
                        .map_or(DEFAULT_STARTUP_TIMEOUT, |d| d.0),
                    once: node.once,
                    autostart: node.autostart.unwrap_or(true),
                    faketime,
                    tmpfs,
                    in_flight: node.in_flight.map(Spanned::into_inner),
                    tls,
                    host: None,
                    logs,
                    rotate_secret,
                },
            );
        }

        for (key, h) in raw.hosts {
            validate_name(self, "host", key.get_ref(), key.span())?;
            if nodes.contains_key(key.get_ref()) {
                return Err(self.error(
                    key.span(),
                    format!("hosts: `{}` is already the name of a node", key.get_ref()),
                    None,
                ));
            }
            nodes.insert(
                key.get_ref().clone(),
                self.host(key.get_ref(), h, &secrets)?,
            );
        }
        let hosts = nodes.values().filter(|n| n.host.is_some()).count();
        if hosts > 0 && hosts < nodes.len() {
            return Err(self.error(
                0..0,
                "a topology is either containers hadrill starts (`[nodes]`) or hosts it reaches over SSH (`[hosts]`), not both".into(),
                Some("drill the install you run with a topology of `[hosts]` only".into()),
            ));
        }
        let secrets_file = match &raw.secrets_file {
            None => inherited_secrets_file,
            Some(f) => {
                let p = self
                    .path
                    .parent()
                    .unwrap_or(Path::new("."))
                    .join(f.get_ref());
                if !p.is_file() {
                    return Err(self.error(
                        f.span(),
                        format!("secrets_file: `{}` does not exist", p.display()),
                        Some("a file of `NAME=value` lines, relative to the topology file".into()),
                    ));
                }
                Some(p)
            }
        };
        let topology = Topology {
            name,
            path: self.path.to_path_buf(),
            secrets_file,
            description: if raw.description.is_empty() {
                description
            } else {
                raw.description
            },
            networks,
            groups,
            nodes,
            secrets,
            settings,
            replication,
            images,
            weight,
        };
        self.check_settings(&topology)?;
        self.check_inherited(&topology)?;
        self.check_cycles(&topology, &cycle_spans)?;
        Ok(topology)
    }

    /// A node's `clock`: `"faketime"`, its processes load libfaketime (true), or none.
    fn faketime(
        &self,
        field: &str,
        clock: &Option<Spanned<String>>,
    ) -> Result<bool, TopologyError> {
        match clock {
            None => Ok(false),
            Some(c) if c.get_ref() == "faketime" => Ok(true),
            Some(c) => Err(self.error(
                c.span(),
                format!("{field}: unknown clock `{}`", c.get_ref()),
                Some(
                    "`clock = \"faketime\"` loads libfaketime into the node's processes \
                     (dynamically linked ones; not static binaries or Go programs)"
                        .into(),
                ),
            )),
        }
    }

    /// A node's `rotate_secret`: for each declared secret, a command or a list of them.
    fn rotations(
        &self,
        field: &str,
        raw: &BTreeMap<String, Spanned<toml::Value>>,
        secrets: &[String],
    ) -> Result<BTreeMap<String, Vec<Vec<String>>>, TopologyError> {
        let mut out = BTreeMap::new();
        for (name, cmds) in raw {
            if !secrets.contains(name) {
                return Err(self.error(
                    cmds.span(),
                    format!("{field}: `{name}` is not one of the topology's `secrets`"),
                    Some(format!("add \"{name}\" to `secrets = [...]`")),
                ));
            }
            out.insert(
                name.clone(),
                self.commands(&format!("{field}.{name}"), cmds)?,
            );
        }
        Ok(out)
    }

    /// A node's `logs`: absolute paths.
    fn log_files(
        &self,
        field: &str,
        raw: &[Spanned<String>],
    ) -> Result<Vec<String>, TopologyError> {
        raw.iter()
            .map(|l| {
                if l.get_ref().starts_with('/') {
                    Ok(l.get_ref().clone())
                } else {
                    Err(self.error(
                        l.span(),
                        format!("{field}: `{}` is not an absolute path", l.get_ref()),
                        Some("name the file as the node sees it, e.g. `logs = [\"/var/log/postgresql/postgresql-15-main.log\"]`".into()),
                    ))
                }
            })
            .collect()
    }

    fn config_file(
        &self,
        config_roots: &[PathBuf],
        field: &str,
        target: &str,
        source: &Spanned<String>,
    ) -> Result<PathBuf, TopologyError> {
        if !target.starts_with('/') {
            return Err(self.error(
                source.span(),
                format!("{field}: target `{target}` must be an absolute path"),
                None,
            ));
        }
        let candidates: Vec<PathBuf> = config_roots
            .iter()
            .map(|r| r.join(source.get_ref()))
            .collect();
        candidates
            .iter()
            .find(|f| f.is_file())
            .cloned()
            .ok_or_else(|| {
                let looked: Vec<String> =
                    candidates.iter().map(|f| f.display().to_string()).collect();
                self.error(
                    source.span(),
                    format!(
                        "{field}: file `{}` does not exist (looked at {})",
                        source.get_ref(),
                        looked.join(" and ")
                    ),
                    Some(
                        "paths are relative to the `config/` directory beside the topology file, \
                     then to the project's topologies/config/"
                            .into(),
                    ),
                )
            })
    }

    /// Nodes depend only on nodes that exist and start with the run (an `exclude` can take
    /// one away), and inherited nodes only use declared networks.
    fn check_inherited(&self, topology: &Topology) -> Result<(), TopologyError> {
        for node in topology.nodes.values() {
            for dep in &node.depends_on {
                let (problem, help) = match topology.nodes.get(dep) {
                    None => (
                        "is not in this topology (excluded?)",
                        format!("redefine `{}` here, or keep `{dep}`", node.name),
                    ),
                    Some(n) if !n.autostart => (
                        "has autostart = false",
                        "a node that joins later cannot be a dependency".to_string(),
                    ),
                    Some(_) => continue,
                };
                return Err(self.error(
                    0..0,
                    format!("nodes.{}.depends_on: `{dep}` {problem}", node.name),
                    Some(help),
                ));
            }
            if let Some(net) = node
                .networks
                .iter()
                .find(|n| !topology.networks.contains(*n))
            {
                return Err(self.error(
                    0..0,
                    format!(
                        "nodes.{}.networks: `{net}` is not declared in this topology",
                        node.name
                    ),
                    Some(format!("add \"{net}\" to `networks`")),
                ));
            }
        }
        Ok(())
    }

    /// Every `${setting:NAME}` in a node's env or config files names a declared setting.
    fn check_settings(&self, topology: &Topology) -> Result<(), TopologyError> {
        for node in topology.nodes.values() {
            let mut texts: Vec<(String, String)> = node
                .env
                .iter()
                .map(|(k, v)| (format!("nodes.{}.env.{k}", node.name), v.clone()))
                .collect();
            for m in &node.config {
                if let Ok(text) = std::fs::read_to_string(&m.source) {
                    texts.push((m.source.display().to_string(), text));
                }
            }
            for (place, text) in texts {
                for name in placeholders(&text, "setting") {
                    if !topology.settings.contains_key(name) {
                        return Err(self.error(
                            0..0,
                            format!("{place} refers to `${{setting:{name}}}`, which this topology does not set"),
                            Some(format!("add `{name} = ...` under [settings]")),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    fn unknown_node(
        &self,
        field: &str,
        name: &Spanned<String>,
        known: &BTreeSet<String>,
    ) -> TopologyError {
        self.error(
            name.span(),
            format!("{field}: unknown node `{}`", name.get_ref()),
            Some(format!(
                "nodes in this topology: {}",
                known.iter().cloned().collect::<Vec<_>>().join(", ")
            )),
        )
    }

    fn check_cycles(
        &self,
        topology: &Topology,
        spans: &BTreeMap<String, Range<usize>>,
    ) -> Result<(), TopologyError> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            Visiting,
            Done,
        }
        fn walk(
            t: &Topology,
            n: &str,
            marks: &mut BTreeMap<String, Mark>,
            path: &mut Vec<String>,
        ) -> Option<Vec<String>> {
            match marks.get(n) {
                Some(Mark::Done) => return None,
                Some(Mark::Visiting) => {
                    let start = path.iter().position(|p| p == n).unwrap_or(0);
                    let mut cycle = path[start..].to_vec();
                    cycle.push(n.to_string());
                    return Some(cycle);
                }
                None => {}
            }
            marks.insert(n.to_string(), Mark::Visiting);
            path.push(n.to_string());
            for dep in &t.nodes[n].depends_on {
                if let Some(c) = walk(t, dep, marks, path) {
                    return Some(c);
                }
            }
            path.pop();
            marks.insert(n.to_string(), Mark::Done);
            None
        }
        let mut marks = BTreeMap::new();
        for name in topology.nodes.keys() {
            if let Some(cycle) = walk(topology, name, &mut marks, &mut Vec::new()) {
                let span = spans.get(&cycle[0]).cloned().unwrap_or(0..0);
                return Err(self.error(
                    span,
                    format!(
                        "nodes.{}.depends_on: dependency cycle {}",
                        cycle[0],
                        cycle.join(" -> ")
                    ),
                    Some("remove one of these depends_on entries".into()),
                ));
            }
        }
        Ok(())
    }
}

impl RawTopology {
    fn nodes_spans(&self) -> BTreeMap<String, Range<usize>> {
        self.nodes
            .iter()
            .map(|(k, n)| {
                let span = n.depends_on.first().map_or(k.span(), |d| d.span());
                (k.get_ref().clone(), span)
            })
            .collect()
    }
}

/// Names become container names, DNS names and label values: keep them to `[a-z0-9-]`.
fn validate_name(
    ctx: &Ctx,
    what: &str,
    name: &str,
    span: Range<usize>,
) -> Result<(), TopologyError> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(ctx.error(
            span,
            format!("{what} name `{name}` is not allowed"),
            Some("use 1-40 characters of a-z, 0-9 and '-', not starting with '-'".into()),
        ))
    }
}
