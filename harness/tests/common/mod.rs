//! Helpers shared by the container test binaries.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::time::Duration;

use hadrill::{Node, Run, RunOptions, Topology};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn options() -> RunOptions {
    let mut o = RunOptions::new(root()).with_signal_handler();
    o.runs_dir = root().join("target/test-runs");
    o
}

/// Starts a topology by name or path, panicking with the full diagnostic if it cannot.
pub async fn start(topology: &str) -> Run {
    let topology = match Topology::load(&root(), topology) {
        Ok(t) => t,
        Err(e) => panic!("{:?}", miette::Report::new(e)),
    };
    match Run::start(topology, &options()).await {
        Ok(run) => run,
        Err(e) => panic!("{:?}", miette::Report::new(e)),
    }
}

/// What a validation message fails to say: its location `file:at:` and each of `needles`.
/// Empty when it says them all.
pub fn missing_from(
    msg: &str,
    file: &str,
    at: impl std::fmt::Display,
    needles: &[&str],
) -> Vec<String> {
    let location = format!("{file}:{at}:");
    std::iter::once(location.as_str())
        .chain(needles.iter().copied())
        .filter(|want| !msg.contains(want))
        .map(|want| format!("{file}: expected `{want}` in: {msg}"))
        .collect()
}

/// Runs `script` (shell) in `node`, its output to `/tmp/<name>.out`, without waiting for it.
pub async fn background(node: &Node, name: &str, script: &str) {
    let detached = format!("({script}) > /tmp/{name}.out 2>&1 < /dev/null &");
    let out = node.exec(&["sh", "-c", &detached]).await.unwrap();
    assert!(out.success(), "{}", out.output);
}

pub async fn output(node: &Node, name: &str) -> String {
    let out = node
        .exec(&["cat", &format!("/tmp/{name}.out")])
        .await
        .unwrap();
    out.output.trim().to_string()
}

/// Seconds web1 takes to receive 4 MB that web2 sends over TCP, and the bytes received.
pub async fn download_seconds(web1: &Node, web2: &Node, round: usize) -> (f64, usize) {
    let name = format!("tcp{round}");
    background(
        web2,
        &name,
        "exec python3 -c '
import socket
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind((\"0.0.0.0\", 9200))
l.listen(1)
l.settimeout(30)
c, _ = l.accept()
c.sendall(bytes(4_000_000))
c.close()'",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let receive = "import socket, time, sys
s = socket.create_connection((sys.argv[1], 9200))
t, n = time.monotonic(), 0
while True:
    b = s.recv(65536)
    if not b:
        break
    n += len(b)
print(n, time.monotonic() - t)";
    let out = web1
        .exec(&["python3", "-c", receive, web2.name()])
        .await
        .unwrap();
    assert!(out.success(), "{}", out.output);
    let mut words = out.output.split_whitespace();
    let n = words.next().unwrap().parse().unwrap();
    (words.next().unwrap().parse().unwrap(), n)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap()
}

/// The body of a GET of `path` at `addr`, which must answer 2xx.
pub async fn get(addr: std::net::SocketAddr, path: &str) -> Result<String, reqwest::Error> {
    client()
        .get(format!("http://{addr}{path}"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await
}

/// Median milliseconds of `n` GETs of `path` straight to `addr`, each on a connection of its
/// own (a delay reaches only connections opened after it).
pub async fn median_get_ms(addr: std::net::SocketAddr, path: &str, n: usize) -> f64 {
    let mut times = Vec::new();
    for _ in 0..n {
        let t = std::time::Instant::now();
        get(addr, path).await.unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    times[n / 2]
}
