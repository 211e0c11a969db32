//! A full disk: a filler file takes what is left of the filesystem holding a path. In a
//! container only a size-limited filesystem is filled (a topology `tmpfs`, at most 4 GiB):
//! the engine's own disk is shared with everything on the machine. On a host, the path the
//! scenario names is the user's choice; the filler's removal is journalled before it is made.

use std::sync::Arc;

use super::{FaultError, host};
use crate::node::Node;
use crate::shared::Shared;

/// The largest filesystem `fill-disk` fills in a container, in KiB.
const LIMIT_KIB: u64 = 4 << 20;

/// At most this much left free, a filled disk is full (a filesystem may keep a little for its
/// own records; tmpfs measured 0 KiB left).
const FULL_KIB: u64 = 1024;

fn filler(path: &str) -> String {
    format!("{}/.hadrill-fill", path.trim_end_matches('/'))
}

/// The commands that fill the filesystem of `path` (`bytes` free), as root: fallocate
/// takes most at once; appending zeros until the write fails takes the rest. Each may fail
/// (no fallocate on that filesystem, the disk full): the space left afterwards says.
pub(super) fn fill_commands(path: &str, bytes: &str) -> [Vec<String>; 2] {
    let f = filler(path);
    [
        vec!["fallocate".into(), "-l".into(), bytes.into(), f.clone()],
        vec![
            "dd".into(),
            "if=/dev/zero".into(),
            format!("of={f}"),
            "bs=64k".into(),
            "oflag=append".into(),
            "conv=notrunc".into(),
        ],
    ]
}

/// The command that removes the filler of `path`, as root.
pub(super) fn free_command(path: &str) -> Vec<String> {
    vec!["rm".into(), "-f".into(), filler(path)]
}

/// The command that reads the size and free space of the filesystem of `path`.
pub(super) fn usage_command(path: &str) -> Vec<String> {
    ["df", "-P", "-k", path].map(String::from).to_vec()
}

/// (size, available) in KiB of the filesystem holding `path`.
async fn usage(n: &Node, path: &str) -> Result<(u64, u64), FaultError> {
    let cmd = usage_command(path);
    let argv: Vec<&str> = cmd.iter().map(String::as_str).collect();
    let out = n.exec(&argv).await?;
    let fields: Vec<u64> = out
        .output
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    match fields[..] {
        [size, _used, avail, ..] if out.success() => Ok((size, avail)),
        _ => Err(FaultError::Command {
            node: n.name().to_string(),
            cmd: cmd.join(" "),
            code: out.exit_code,
            output: out.output,
        }),
    }
}

pub(super) async fn fill(shared: &Arc<Shared>, n: &Node, path: &str) -> Result<String, FaultError> {
    let (size, avail) = usage(n, path).await?;
    if n.host().is_none() && size > LIMIT_KIB {
        return Err(FaultError::NotSizeLimited {
            node: n.name().to_string(),
            path: path.to_string(),
            mib: size / 1024,
        });
    }
    let _changing = match n.host() {
        Some(_) => Some(host::journal_undo(
            shared,
            n,
            &key(path),
            vec![free_command(path)],
            None,
        )?),
        None => None,
    };
    let mut said = Vec::new();
    for cmd in fill_commands(path, &(avail * 1024).to_string()) {
        let argv: Vec<&str> = cmd.iter().map(String::as_str).collect();
        let out = n.exec_as_root(&argv).await?;
        said.push(format!(
            "`{}` exited {:?}: {}",
            cmd.join(" "),
            out.exit_code,
            out.output.trim()
        ));
    }
    let (_, left) = usage(n, path).await?;
    // Each command may fail on its own (no fallocate there, the disk full): what is left says
    // whether the disk is full.
    if left > FULL_KIB {
        return Err(FaultError::Command {
            node: n.name().to_string(),
            cmd: format!("fill {path}"),
            code: None,
            output: format!("{left} KiB still free of {size} KiB; {}", said.join("; ")),
        });
    }
    Ok(format!(
        "{}: {path} full ({left} KiB free of {size} KiB)",
        n.name()
    ))
}

pub(super) async fn free(shared: &Arc<Shared>, n: &Node, path: &str) -> Result<String, FaultError> {
    host::run_all(n, &[free_command(path)], None, host::COMMAND_LIMIT).await?;
    if n.host().is_some() {
        host::journal_done(shared, n, &key(path))?;
    }
    let (size, left) = usage(n, path).await?;
    Ok(format!("{path} freed ({left} KiB free of {size} KiB)"))
}

/// The heal journal's key of a filler.
fn key(path: &str) -> String {
    format!("disk {}", filler(path))
}
