//! A delay: an in-path TCP proxy inside the node (`delay.py`), to which iptables redirects new
//! connections to the delayed port. The kernel has no `netem`; a proxy needs only Python and
//! `NET_ADMIN` in the node, and measures the holds it applies.

use std::time::Duration;

use super::{FaultError, quote, run_script, shell};
use crate::node::Node;

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
    let holds: Vec<f64> = out
        .output
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    Ok(format!(
        "delay on :{port} removed; {}",
        describe_holds(holds)
    ))
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
