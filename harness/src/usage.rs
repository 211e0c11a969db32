//! What the harness itself costs while it drills: its CPU time and peak memory, read from
//! `/proc/self` (Linux, where the Docker engine runs), so that a run can show the harness was
//! not the bottleneck.

use std::time::Instant;

use hadrill_model::HarnessUsage;

/// The process's CPU time (user + system) so far, in seconds.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / rustix::param::clock_ticks_per_second() as f64)
}

/// The process's peak resident memory so far, in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// Measures from its start: `finish` gives the CPU the process used since, as seconds and as
/// a share of one core, and the process's peak memory (over its whole life: a suite run in
/// one process reports the highest so far).
pub struct Meter {
    wall: Instant,
    cpu: Option<f64>,
}

impl Meter {
    pub fn start() -> Meter {
        Meter {
            wall: Instant::now(),
            cpu: cpu_seconds(),
        }
    }

    pub fn finish(&self) -> Option<HarnessUsage> {
        let cpu_seconds = cpu_seconds()? - self.cpu?;
        let wall = self.wall.elapsed().as_secs_f64();
        Some(HarnessUsage {
            cpu_seconds,
            cores: if wall > 0.0 { cpu_seconds / wall } else { 0.0 },
            peak_rss_mib: peak_rss_mib()?,
            load_cores: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_loop_shows_as_cpu_and_memory_is_read() {
        let meter = Meter::start();
        let until = Instant::now() + std::time::Duration::from_millis(300);
        let mut x = 0u64;
        while Instant::now() < until {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let usage = meter.finish().expect("readable on Linux");
        // The loop spins 300 ms of wall time; on a loaded 2-core machine (another suite
        // running) it may get a small share of a core, but never none and never more than one.
        assert!(usage.cpu_seconds >= 0.03, "{usage:?}");
        assert!(usage.cores > 0.1 && usage.cores < 1.5, "{usage:?}");
        assert!(usage.peak_rss_mib > 1.0, "{usage:?}");
    }
}
