//! A full disk: a filler file takes what is left of the filesystem holding a path. Only a
//! size-limited filesystem is filled (a topology `tmpfs`, at most 4 GiB): the engine's own
//! disk is shared with everything on the host.

use super::{FaultError, quote, run_script, shell};
use crate::node::Node;

/// The largest filesystem `fill-disk` fills, in KiB.
const LIMIT_KIB: u64 = 4 << 20;

fn filler(path: &str) -> String {
    format!("{}/.hadrill-fill", path.trim_end_matches('/'))
}

/// (size, available) in KiB of the filesystem holding `path`.
async fn usage(n: &Node, path: &str) -> Result<(u64, u64), FaultError> {
    let cmd = format!("df -P -k {}", quote(path));
    let out = shell(n, &cmd).await?;
    let fields: Vec<u64> = out
        .output
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    match fields[..] {
        [size, _used, avail, ..] => Ok((size, avail)),
        _ => Err(FaultError::Command {
            node: n.name().to_string(),
            cmd,
            code: None,
            output: out.output,
        }),
    }
}

pub(super) async fn fill(n: &Node, path: &str) -> Result<String, FaultError> {
    let (size, avail) = usage(n, path).await?;
    if size > LIMIT_KIB {
        return Err(FaultError::NotSizeLimited {
            node: n.name().to_string(),
            path: path.to_string(),
            mib: size / 1024,
        });
    }
    // fallocate takes most at once; appending zeros until the write fails takes the rest.
    let f = quote(&filler(path));
    let script = format!(
        "fallocate -l {} {f} 2>/dev/null; dd if=/dev/zero bs=64k 2>/dev/null >> {f}; true",
        avail * 1024
    );
    run_script(n, &script).await?;
    let (_, left) = usage(n, path).await?;
    Ok(format!(
        "{}: {path} full ({left} KiB free of {size} KiB)",
        n.name()
    ))
}

pub(super) async fn free(n: &Node, path: &str) -> Result<String, FaultError> {
    run_script(n, &format!("rm -f {}", quote(&filler(path)))).await?;
    let (size, left) = usage(n, path).await?;
    Ok(format!("{path} freed ({left} KiB free of {size} KiB)"))
}
