//! Image recipes (`[images.NAME]` in a topology): a user's product built offline from the
//! base image, Debian packages, PyPI packages and files of their own.
//!
//! Debian packages go into a root filesystem made like the base (mmdebstrap: the host
//! fetches, nothing in a container does). PyPI packages are downloaded as wheels on the host
//! for the image's Python (Debian bookworm's CPython 3.11 on x86_64) and installed into
//! `/opt/venv` by a Docker build with no network; the files are copied in. The tag is a hash
//! of every input, so a second build is a no-op.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::{ImageError, run_logged};
use crate::docker::labels;

/// What the image's Python is: wheels are chosen for it, not for the host's.
const PYTHON_VERSION: &str = "3.11";
const PYTHON_ABI: &str = "cp311";
/// The oldest manylinux wheels first run on bookworm's glibc 2.36; pip does not widen a
/// `--platform` to older ones by itself.
const GLIBC_MINOR: std::ops::RangeInclusive<u32> = 5..=36;
/// Where a recipe's PyPI packages live in the image; its `bin` is first on `PATH`.
pub const VENV: &str = "/opt/venv";

/// An image built from the base plus a user's packages and files, as a topology declares it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Recipe {
    pub name: String,
    /// Debian packages beyond the base image's.
    pub debian: Vec<String>,
    /// Requirements as pip reads them (`mlflow==3.17.2`); pin them, since the tag hashes what
    /// is written, not what PyPI resolves it to.
    pub pypi: Vec<String>,
    /// Files copied into the image: absolute target path → source file.
    pub files: Vec<(String, PathBuf)>,
}

/// Whether `name` can be a Debian package name (policy §5.6.1).
pub fn valid_debian(name: &str) -> bool {
    name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
}

/// Whether `spec` is a plain requirement (name, extras, version clauses): nothing a shell
/// or pip would read as an option, a path or a URL.
pub fn valid_requirement(spec: &str) -> bool {
    spec.starts_with(|c: char| c.is_ascii_alphanumeric())
        && spec
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-[],=<>!~*".contains(c))
}

impl Recipe {
    /// The tag of the layer holding the PyPI packages and files, on top of `system`.
    pub fn layer_tag(&self, system: &str) -> Result<String, ImageError> {
        let mut h = Sha256::new();
        h.update(format!(
            "system={system}\npython={PYTHON_VERSION}/{PYTHON_ABI}\npypi={}\n",
            self.pypi.join(",")
        ));
        for (target, source) in &self.files {
            h.update(target.as_bytes());
            h.update(std::fs::read(source).map_err(|source_err| ImageError::Io {
                what: "cannot read the recipe's file",
                path: source.clone(),
                source: source_err,
            })?);
        }
        Ok(format!(
            "hadrill-{}:{}",
            self.name,
            &hex::encode(h.finalize())[..16]
        ))
    }

    /// Downloads the wheels of `pypi` (and their dependencies) into `dir`, once.
    pub async fn download_wheels(&self, dir: &Path) -> Result<(), ImageError> {
        let done = dir.join(".complete");
        if self.pypi.is_empty() || done.is_file() {
            return Ok(());
        }
        if super::which("python3").is_none() {
            return Err(ImageError::MissingTool {
                tool: "python3",
                install: "apt-get install -y python3 python3-pip",
            });
        }
        tracing::info!(
            "image {}: downloading {} from PyPI",
            self.name,
            self.pypi.join(" ")
        );
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "pip", "download", "--only-binary=:all:"])
            .args(["--python-version", PYTHON_VERSION, "--implementation", "cp"])
            .args(["--abi", PYTHON_ABI, "--dest"])
            .arg(dir);
        for minor in GLIBC_MINOR.rev() {
            cmd.arg("--platform")
                .arg(format!("manylinux_2_{minor}_x86_64"));
        }
        for legacy in ["manylinux2014", "manylinux2010", "manylinux1"] {
            cmd.arg("--platform").arg(format!("{legacy}_x86_64"));
        }
        cmd.args(&self.pypi);
        run_logged(
            cmd,
            &format!("pip download for image `{}`", self.name),
            "check the requirement's name and version on PyPI, that PyPI is reachable, and that a \
             wheel exists for CPython 3.11 on manylinux x86_64 (source-only packages cannot be \
             installed offline)",
        )
        .await
        .map_err(|e| self.missing(e, "PyPI", "No matching distribution found for "))?;
        std::fs::write(&done, b"").map_err(|source| ImageError::Io {
            what: "cannot write",
            path: done,
            source,
        })
    }

    /// A failed step, or the package it could not find when its output names one.
    pub fn missing(&self, e: ImageError, registry: &'static str, marker: &str) -> ImageError {
        let ImageError::Step { tail, .. } = &e else {
            return e;
        };
        let found = tail.lines().find_map(|l| {
            let rest = &l[l.find(marker)? + marker.len()..];
            let name: String = rest
                .trim_matches(|c: char| c == '\'' || c == '"' || c.is_whitespace())
                .split_whitespace()
                .next()?
                .trim_matches(|c: char| c == '\'' || c == '"')
                .to_string();
            (!name.is_empty()).then_some(name)
        });
        match found {
            Some(package) => ImageError::Package {
                image: self.name.clone(),
                package,
                registry,
                tail: tail.clone(),
            },
            None => e,
        }
    }

    /// The build context of the layer: the wheels, the files, and a Dockerfile that installs
    /// the wheels into a venv in one stage and copies only the venv into the image.
    pub fn context(&self, system: &str, wheels: &Path) -> std::io::Result<Vec<u8>> {
        let mut tar = tar::Builder::new(Vec::new());
        // The engine does not accept GNU sparse entries.
        tar.sparse(false);
        let mut dockerfile = String::new();
        if !self.pypi.is_empty() {
            for entry in std::fs::read_dir(wheels)? {
                let path = entry?.path();
                if path.extension().is_some_and(|e| e == "whl") {
                    let name = path.file_name().unwrap_or_default().to_string_lossy();
                    tar.append_path_with_name(&path, format!("wheels/{name}"))?;
                }
            }
            let specs: Vec<String> = self.pypi.iter().map(|s| format!("'{s}'")).collect();
            dockerfile.push_str(&format!(
                "FROM {system} AS wheels\nCOPY wheels/ /tmp/wheels/\n\
                 RUN python3 -m venv {VENV} && {VENV}/bin/pip install --no-index --no-cache-dir \
                 --disable-pip-version-check --find-links /tmp/wheels {}\n",
                specs.join(" ")
            ));
        }
        dockerfile.push_str(&format!("FROM {system}\n"));
        if !self.pypi.is_empty() {
            dockerfile.push_str(&format!("COPY --from=wheels {VENV} {VENV}\n"));
        }
        for (i, (target, source)) in self.files.iter().enumerate() {
            tar.append_path_with_name(source, format!("files/{i}"))?;
            dockerfile.push_str(&format!("COPY files/{i} {target}\n"));
        }
        dockerfile.push_str(&format!(
            "ENV PATH={VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n\
             LABEL {}=true {}={}\n",
            labels::MANAGED,
            labels::IMAGE,
            self.name
        ));
        super::with_dockerfile(tar, &dockerfile)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipe() -> Recipe {
        Recipe {
            name: "shop".into(),
            debian: vec![],
            pypi: vec!["flask==3.1.3".into()],
            files: vec![],
        }
    }

    #[test]
    fn names_are_checked_before_anything_runs() {
        assert!(valid_debian("python3-venv") && valid_debian("g++"));
        assert!(!valid_debian("Python") && !valid_debian("a") && !valid_debian("x;rm"));
        assert!(
            valid_requirement("mlflow==3.17.2") && valid_requirement("uvicorn[standard]>=0.30")
        );
        assert!(!valid_requirement("--index-url=http://x") && !valid_requirement("a b"));
        assert!(!valid_requirement("./local.whl") && !valid_requirement("x'y"));
    }

    #[test]
    fn a_package_pip_cannot_find_is_named() {
        let step = ImageError::Step {
            step: "pip download".into(),
            code: Some(1),
            tail: "ERROR: Could not find a version that satisfies the requirement nosuch==1 (from versions: none)\nERROR: No matching distribution found for nosuch==1".into(),
            help: String::new(),
        };
        match recipe().missing(step, "PyPI", "No matching distribution found for ") {
            ImageError::Package {
                package, registry, ..
            } => {
                assert_eq!((package.as_str(), registry), ("nosuch==1", "PyPI"))
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn the_tag_follows_every_input() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("app.py");
        std::fs::write(&file, "print(1)").unwrap();
        let mut r = recipe();
        r.files.push(("/opt/app.py".into(), file.clone()));
        let a = r.layer_tag("hadrill-base:1").unwrap();
        assert_eq!(a, r.layer_tag("hadrill-base:1").unwrap());
        assert!(a.starts_with("hadrill-shop:"));
        assert_ne!(a, r.layer_tag("hadrill-base:2").unwrap());
        std::fs::write(&file, "print(2)").unwrap();
        assert_ne!(a, r.layer_tag("hadrill-base:1").unwrap());
        r.pypi[0] = "flask==3.1.2".into();
        assert_ne!(a, r.layer_tag("hadrill-base:1").unwrap());
    }
}
