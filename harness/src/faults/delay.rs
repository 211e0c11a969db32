//! A delay: an in-path TCP proxy inside the node (`delay.py`), to which iptables redirects new
//! connections to the delayed port. The kernel has no `netem`; a proxy needs only Python and
//! `NET_ADMIN` in the node, and measures the holds it applies. On an existing host the proxy
//! runs as the SSH user, and only the redirect is root's (`iptables-restore`), its removal and
//! the proxy's end journalled first.

use std::sync::Arc;
use std::time::Duration;

use super::host::{self, words};
use super::{FaultError, quote, run_script, shell};
use crate::node::Node;
use crate::shared::Shared;

const SCRIPT: &str = include_str!("delay.py");
const PROXY: &str = "/tmp/hadrill-delay.py";
const CHAIN: &str = "HADRILL-DELAY";

/// Where the proxy of `port` listens: a port of its own, away from the common service ports.
fn listen_port(port: u16) -> u16 {
    30_000 + port % 30_000
}

fn holds_log(port: u16) -> String {
    format!("/tmp/hadrill-delay-{port}.log")
}

/// The rule that sends new connections to `port` through its proxy.
fn rule(port: u16) -> String {
    format!(
        "{CHAIN} -p tcp --dport {port} -j REDIRECT --to-ports {}",
        listen_port(port)
    )
}

/// Matches the proxy of `port` and not a shell that names it: anchored at the command.
fn proxy_pattern(port: u16) -> String {
    format!("^python3 {PROXY} {} ", listen_port(port))
}

pub(super) async fn start(
    n: &Node,
    port: u16,
    latency: Duration,
    jitter: Duration,
) -> Result<String, FaultError> {
    let install = format!(
        "command -v python3 >/dev/null || {{ echo 'python3 is not in the image: the delay proxy needs it'; exit 1; }}; \
         printf %s {} > {PROXY}",
        quote(SCRIPT)
    );
    run_script(n, &install).await?;
    let listen = listen_port(port);
    let ready = format!("/tmp/hadrill-delay-{port}.ready");
    let err = format!("/tmp/hadrill-delay-{port}.err");
    let (latency_ms, jitter_ms) = (latency.as_secs_f64() * 1e3, jitter.as_secs_f64() * 1e3);
    // A delay already on the port is replaced; the proxy is up before traffic is sent to it.
    let script = format!(
        "set -e; pkill -f '{pattern}' || true; \
         iptables -w -t nat -D {rule} 2>/dev/null || true; rm -f {ready}; \
         setsid python3 {PROXY} {listen} {latency_ms} {jitter_ms} {log} {ready} >{err} 2>&1 </dev/null & \
         i=0; while [ ! -f {ready} ]; do i=$((i+1)); \
         if [ $i -gt 50 ]; then cat {err}; exit 1; fi; sleep 0.1; done; \
         iptables -w -t nat -N {CHAIN} 2>/dev/null || true; \
         iptables -w -t nat -C PREROUTING -j {CHAIN} 2>/dev/null || iptables -w -t nat -A PREROUTING -j {CHAIN}; \
         iptables -w -t nat -A {rule}",
        pattern = proxy_pattern(port),
        rule = rule(port),
        log = holds_log(port),
    );
    run_script(n, &script).await?;
    Ok(format!(
        "{}: new connections to :{port} held {} ± {} on the way back (proxy on :{listen})",
        n.name(),
        humantime::format_duration(latency),
        humantime::format_duration(jitter),
    ))
}

/// The journal's key of a host's delays.
const KEY: &str = "delay";

/// A host's proxy matches this, every port's: its undo ends them all.
const ANY_PROXY: &str = "^python3 /tmp/hadrill-delay.py";

/// The redirect of `port` as `iptables-restore` reads it into the nat table, after the chain
/// and jump the table's listing `listed` lacks.
pub(super) fn host_redirect(port: u16, listed: &str) -> String {
    let rule = [format!("-A {}", rule(port))];
    host::table_input(
        "nat",
        &[(CHAIN, "PREROUTING")],
        "-A {builtin}",
        &rule,
        listed,
    )
}

/// The commands that start the proxy of `port` on a host, as the SSH user: its script written,
/// an earlier one ended, and the proxy started apart from the SSH session.
pub(super) fn host_proxy(port: u16, latency: Duration, jitter: Duration) -> [Vec<String>; 4] {
    let listen = listen_port(port).to_string();
    let (latency_ms, jitter_ms) = (latency.as_secs_f64() * 1e3, jitter.as_secs_f64() * 1e3);
    [
        vec!["tee".into(), PROXY.into()],
        vec!["pkill".into(), "-f".into(), proxy_pattern(port)],
        vec!["rm".into(), "-f".into(), ready(port)],
        vec![
            "setsid".into(),
            "-f".into(),
            "python3".into(),
            PROXY.into(),
            listen,
            latency_ms.to_string(),
            jitter_ms.to_string(),
            holds_log(port),
            ready(port),
            format!("/tmp/hadrill-delay-{port}.err"),
        ],
    ]
}

/// The undo of a host's delays, as root: the redirects and every proxy gone.
pub(super) fn host_undo() -> Vec<Vec<String>> {
    let mut undo: Vec<Vec<String>> = [
        format!("iptables -w -t nat -D PREROUTING -j {CHAIN}"),
        format!("iptables -w -t nat -F {CHAIN}"),
        format!("iptables -w -t nat -X {CHAIN}"),
    ]
    .iter()
    .map(|c| words(c))
    .collect();
    undo.push(vec!["pkill".into(), "-f".into(), ANY_PROXY.into()]);
    undo
}

/// What proves a host's delays undone: the nat table names no chain of hadrill's.
fn host_undone() -> crate::journal::Verify {
    crate::journal::Verify {
        argv: words("iptables -w -t nat -S"),
        absent: CHAIN.into(),
    }
}

fn ready(port: u16) -> String {
    format!("/tmp/hadrill-delay-{port}.ready")
}

/// On a host: the proxy started as the SSH user and up, the undo journalled, then the redirect
/// added at once.
pub(super) async fn start_on_host(
    shared: &Arc<Shared>,
    n: &Node,
    port: u16,
    latency: Duration,
    jitter: Duration,
) -> Result<String, FaultError> {
    let _changing = host::journal_undo(shared, n, KEY, host_undo(), Some(host_undone()))?;
    let [install, end, unready, run] = host_proxy(port, latency, jitter);
    let exec = |cmd: Vec<String>, input: Option<&'static [u8]>| async move {
        let argv: Vec<&str> = cmd.iter().map(String::as_str).collect();
        n.exec_fed(&argv, input).await
    };
    super::succeeded(
        n,
        &install.join(" "),
        exec(install.clone(), Some(SCRIPT.as_bytes())).await?,
    )?;
    // No proxy of the port before (pkill finds none), and no ready mark of an earlier one.
    exec(end, None).await?;
    exec(unready, None).await?;
    super::succeeded(n, &run.join(" "), exec(run.clone(), None).await?)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !exec(vec!["test".into(), "-f".into(), ready(port)], None)
        .await?
        .success()
    {
        if tokio::time::Instant::now() > deadline {
            let err = format!("/tmp/hadrill-delay-{port}.err");
            let err = exec(vec!["cat".into(), err], None).await?;
            return Err(FaultError::Command {
                node: n.name().to_string(),
                cmd: run.join(" "),
                code: None,
                output: format!("the proxy was not up within 5 s: {}", err.output.trim()),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let listing = words("iptables -w -t nat -S");
    let argv: Vec<&str> = listing.iter().map(String::as_str).collect();
    let listed = super::succeeded(n, &listing.join(" "), n.exec_as_root(&argv).await?)?.output;
    let input = host_redirect(port, &listed);
    host::run_all(
        n,
        &[host::restore()],
        Some(input.as_bytes()),
        host::COMMAND_LIMIT,
    )
    .await?;
    Ok(format!(
        "{}: new connections to :{port} held {} ± {} on the way back (proxy on :{}, as {})",
        n.name(),
        humantime::format_duration(latency),
        humantime::format_duration(jitter),
        listen_port(port),
        n.host().map(|h| h.ssh.user.as_str()).unwrap_or_default(),
    ))
}

/// On a host: every delay's redirect and proxy removed as journalled, and the holds of `port`'s
/// proxy stated.
pub(super) async fn stop_on_host(
    shared: &Arc<Shared>,
    n: &Node,
    port: u16,
) -> Result<String, FaultError> {
    let log = holds_log(port);
    let held = n.exec(&["cat", &log]).await?;
    host::undo_pending(shared, n, KEY).await?;
    n.exec(&["rm", "-f", &log]).await?;
    Ok(removed(port, &held.output))
}

/// Removes the redirect and the proxy (connections through it end), and states the holds
/// the proxy applied.
pub(super) async fn stop(n: &Node, port: u16) -> Result<String, FaultError> {
    let log = holds_log(port);
    // Each part is tried on its own: a proxy already gone still leaves its log to read.
    let script = format!(
        "iptables -w -t nat -D {rule} 2>/dev/null; pkill -f '{pattern}'; cat {log} 2>/dev/null; rm -f {log}; true",
        rule = rule(port),
        pattern = proxy_pattern(port),
    );
    let out = shell(n, &script).await?;
    Ok(removed(port, &out.output))
}

/// The record of a removed delay: the holds its proxy's log lists (ms, one a line).
fn removed(port: u16, log: &str) -> String {
    let holds = log.lines().filter_map(|l| l.trim().parse().ok()).collect();
    format!("delay on :{port} removed; {}", describe_holds(holds))
}

/// The achieved delay, as the fault's record states it.
fn describe_holds(mut holds: Vec<f64>) -> String {
    if holds.is_empty() {
        return "no response passed through it".into();
    }
    holds.sort_by(f64::total_cmp);
    let at = |q: f64| holds[((holds.len() - 1) as f64 * q).round() as usize];
    format!(
        "{} chunk(s) held p50 {:.1} ms, p99 {:.1} ms, min {:.1} ms, max {:.1} ms",
        holds.len(),
        at(0.5),
        at(0.99),
        holds[0],
        holds[holds.len() - 1]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_states_the_holds_achieved() {
        let holds: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(
            describe_holds(holds),
            "100 chunk(s) held p50 51.0 ms, p99 99.0 ms, min 1.0 ms, max 100.0 ms"
        );
        assert_eq!(describe_holds(Vec::new()), "no response passed through it");
    }

    #[test]
    fn each_port_has_a_proxy_port_of_its_own_and_a_pattern_that_misses_its_shell() {
        assert_eq!(listen_port(80), 30_080);
        assert_eq!(listen_port(5432), 35_432);
        assert_ne!(listen_port(8080), listen_port(8081));
        assert_eq!(proxy_pattern(80), "^python3 /tmp/hadrill-delay.py 30080 ");
    }
}
