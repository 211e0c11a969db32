//! What the oracle prints and how an outage is read from it. The oracle shares no code with
//! hadrill: a test that finds both agree has compared two independent measurements.

/// One probe: when it was sent and answered (Unix ms, the host's clock) and whether it
/// succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Sample {
    pub sent_unix_ms: u64,
    pub ok: bool,
    pub answered_unix_ms: u64,
}

impl Sample {
    /// The line the oracle prints for it: `<sent> <answered> ok|fail`.
    pub fn line(&self) -> String {
        let outcome = if self.ok { "ok" } else { "fail" };
        format!("{} {} {outcome}", self.sent_unix_ms, self.answered_unix_ms)
    }

    /// A printed line read back; `None` for anything else.
    pub fn parse(line: &str) -> Option<Sample> {
        let mut words = line.split_whitespace();
        let (sent, answered, outcome) = (words.next()?, words.next()?, words.next()?);
        let ok = match outcome {
            "ok" => true,
            "fail" => false,
            _ => return None,
        };
        Some(Sample {
            sent_unix_ms: sent.parse().ok()?,
            ok,
            answered_unix_ms: answered.parse().ok()?,
        })
    }
}

/// A fault's outage as measured: its length, and how far apart the last failure sent and the
/// first success answered were (the measurement cannot place recovery more finely).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outage {
    pub ms: u64,
    pub resolution_ms: u64,
}

/// How long the service was down for a fault that began at `from` (Unix ms), looking at the
/// probes sent before `until`: from `from` to the first answer to a success sent after the
/// last failure (a probe that waited for the service to come back says it was back when it
/// was answered; one a paused server held, answered after later ones, was only slow). Zero
/// when nothing failed; `None` when it never answered again.
pub fn outage(samples: &[Sample], from: u64, until: u64) -> Option<Outage> {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let last_failure = sorted
        .iter()
        .filter(|s| s.sent_unix_ms >= from && s.sent_unix_ms < until && !s.ok)
        .map(|s| s.sent_unix_ms)
        .max();
    let Some(last_failure) = last_failure else {
        return Some(Outage {
            ms: 0,
            resolution_ms: 0,
        });
    };
    let back = sorted
        .iter()
        .filter(|s| s.ok && s.sent_unix_ms > last_failure)
        .map(|s| s.answered_unix_ms)
        .min()?;
    Some(Outage {
        ms: back.saturating_sub(from),
        resolution_ms: back.saturating_sub(last_failure),
    })
}

/// Whether a reported outage of `reported_ms`, measured to `resolution_ms`, agrees with the
/// oracle's: within `tolerance_ms`, or within both measurements' resolutions when they were
/// coarser than that. `Err` says by how much they differ.
pub fn agrees(
    reported_ms: u64,
    resolution_ms: u64,
    oracle: Outage,
    tolerance_ms: u64,
) -> Result<(), String> {
    let allowed = tolerance_ms.max(resolution_ms + oracle.resolution_ms);
    let apart = reported_ms.abs_diff(oracle.ms);
    if apart <= allowed {
        Ok(())
    } else {
        Err(format!(
            "{reported_ms} ms (±{resolution_ms}) against the oracle's {} ms (±{}): {apart} ms apart, {allowed} ms allowed",
            oracle.ms, oracle.resolution_ms
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outage_at(samples: &[Sample], from: u64, until: u64) -> Option<u64> {
        outage(samples, from, until).map(|o| o.ms)
    }

    /// Sent at `t`, answered 2 ms later.
    fn at(t: u64, ok: bool) -> Sample {
        Sample {
            sent_unix_ms: t,
            ok,
            answered_unix_ms: t + 2,
        }
    }

    #[test]
    fn lines_round_trip_and_junk_is_skipped() {
        let s = at(1_764_000_000_123, false);
        assert_eq!(Sample::parse(&s.line()), Some(s));
        assert_eq!(Sample::parse("12 14 maybe"), None);
        assert_eq!(Sample::parse("12 ok"), None);
        assert_eq!(Sample::parse("x ok"), None);
    }

    #[test]
    fn an_outage_runs_from_the_fault_to_the_first_success_after_the_last_failure() {
        let samples = [
            at(990, true),
            at(1000, true),
            at(1010, false),
            at(1020, true), // a success inside the outage does not end it
            at(1030, false),
            at(1040, true),
            at(1050, true),
        ];
        assert_eq!(outage_at(&samples, 1000, 2000), Some(42));
        // A probe sent during the outage that waited for the service: back when answered.
        let waited = [
            at(1000, false),
            Sample {
                answered_unix_ms: 1300,
                ..at(1010, true)
            },
        ];
        assert_eq!(outage_at(&waited, 1000, 2000), Some(300));
        // One held until 1 300 while the next was answered at once: back at 1 022.
        let held = [waited[0], waited[1], at(1020, true)];
        assert_eq!(outage_at(&held, 1000, 2000), Some(22));
    }

    #[test]
    fn agreement_allows_the_tolerance_or_both_resolutions_and_no_more() {
        let oracle = |ms, resolution_ms| Outage { ms, resolution_ms };
        assert!(agrees(10_500, 50, oracle(10_450, 10), 100).is_ok());
        // A figure 150 ms off at fine resolution disagrees: the negative control.
        let off = agrees(10_600, 50, oracle(10_450, 10), 100).unwrap_err();
        assert!(off.contains("150 ms apart, 100 ms allowed"), "{off}");
        // Coarse measurements on both sides widen what counts as agreeing, to their sum.
        assert!(agrees(10_600, 400, oracle(10_450, 20), 100).is_ok());
        assert!(agrees(11_000, 400, oracle(10_450, 20), 100).is_err());
        let waited = [at(1000, false), at(1010, true)];
        assert_eq!(
            outage(&waited, 1000, 2000),
            Some(Outage {
                ms: 12,
                resolution_ms: 12
            })
        );
    }

    #[test]
    fn no_failure_is_no_outage_and_no_recovery_is_none() {
        assert_eq!(
            outage_at(&[at(1000, true), at(1010, true)], 1000, 2000),
            Some(0)
        );
        assert_eq!(
            outage_at(&[at(1000, true), at(1010, false)], 1000, 2000),
            None
        );
        // A failure after the window belongs to the next fault.
        assert_eq!(
            outage_at(&[at(2010, false), at(2020, true)], 1000, 2000),
            Some(0)
        );
    }
}
