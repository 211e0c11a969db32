//! A seeded random nemesis: `[nemesis]` in a scenario names the fault kinds it may use, the
//! nodes it may hit, how long each fault lasts and how long the quiet between them is; the
//! schedule is drawn from a seed, so `hadrill run --seed N` replays exactly the same faults on
//! the same nodes at the same times. The schedule is plain steps: each fault, then its
//! recovery (start, resume or heal) once its duration is over.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{Condition, Step};
use hadrill_model::Fault;

/// The fault kinds a nemesis may draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NemesisFault {
    Kill,
    Stop,
    Restart,
    Pause,
    Partition,
    Isolate,
}

impl NemesisFault {
    pub const ALL: [NemesisFault; 6] = [
        NemesisFault::Kill,
        NemesisFault::Stop,
        NemesisFault::Restart,
        NemesisFault::Pause,
        NemesisFault::Partition,
        NemesisFault::Isolate,
    ];
}

/// Two durations, the least and the most; a value is drawn uniformly between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "[String; 2]", into = "[String; 2]")]
pub struct Between {
    pub min: Duration,
    pub max: Duration,
}

impl TryFrom<[String; 2]> for Between {
    type Error = String;

    fn try_from([min, max]: [String; 2]) -> Result<Self, String> {
        let read = |s: &str| {
            humantime::parse_duration(s)
                .map_err(|e| format!("invalid duration `{s}` ({e}); write it like `500ms` or `2s`"))
        };
        let (min, max) = (read(&min)?, read(&max)?);
        if min > max {
            return Err(format!(
                "`{}` is more than `{}`: give the least first",
                humantime::format_duration(min),
                humantime::format_duration(max)
            ));
        }
        Ok(Between { min, max })
    }
}

impl From<Between> for [String; 2] {
    fn from(b: Between) -> [String; 2] {
        [b.min, b.max].map(|d| humantime::format_duration(d).to_string())
    }
}

impl Between {
    fn draw(self, rng: &mut ChaCha8Rng) -> Duration {
        let (lo, hi) = (self.min.as_millis() as u64, self.max.as_millis() as u64);
        Duration::from_millis(rng.random_range(lo..=hi))
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NemesisSpec {
    /// The kinds it may draw, each equally likely.
    pub faults: Vec<NemesisFault>,
    /// The nodes (or groups) it may hit; a partition cuts the drawn one from the others.
    pub targets: Vec<String>,
    /// The quiet before each fault.
    pub interval: Between,
    /// How long each fault lasts before its recovery.
    pub duration: Between,
    /// No fault starts after this long.
    #[serde(with = "humantime_serde")]
    pub total: Duration,
    /// The seed to draw from; each run draws a new one when none is given. `hadrill run
    /// --seed N` overrides it.
    pub seed: Option<u64>,
}

/// How long a node restarted or started again by the nemesis may take to be healthy.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(60);

impl NemesisSpec {
    /// The schedule drawn from `seed` over `nodes` (the targets, groups expanded), starting
    /// `start` after the workloads did.
    pub fn schedule(&self, nodes: &[String], seed: u64, start: Duration) -> Vec<Step> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut steps = Vec::new();
        let end = start + self.total;
        let mut t = start;
        loop {
            t += self.interval.draw(&mut rng);
            if t >= end || self.faults.is_empty() || nodes.is_empty() {
                return steps;
            }
            let kind = self.faults[rng.random_range(0..self.faults.len())];
            let node = nodes[rng.random_range(0..nodes.len())].clone();
            let lasts = self.duration.draw(&mut rng);
            let healthy = |step: Step| step.wait(Condition::Healthy, &[], RECOVERY_TIMEOUT);
            let others = || nodes.iter().filter(|n| **n != node).cloned();
            let (fault, recovery) = match kind {
                NemesisFault::Kill => (Fault::kill([&node]), Some(Fault::start([&node]))),
                NemesisFault::Stop => (Fault::stop([&node]), Some(Fault::start([&node]))),
                NemesisFault::Restart => (Fault::restart([&node]), None),
                NemesisFault::Pause => (Fault::pause([&node]), Some(Fault::resume([&node]))),
                NemesisFault::Partition => (Fault::partition([&node], others()), Some(Fault::Heal)),
                NemesisFault::Isolate => (Fault::isolate([&node]), Some(Fault::Heal)),
            };
            let first = Step::at(t).fault(fault);
            match recovery {
                // A restart is its own recovery: the next quiet begins once it is healthy.
                None => steps.push(healthy(first)),
                Some(recovery) => {
                    steps.push(first);
                    t += lasts;
                    let back = Step::at(t).fault(recovery);
                    let back = match kind {
                        NemesisFault::Kill | NemesisFault::Stop => healthy(back),
                        _ => back,
                    };
                    steps.push(back);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(faults: &[NemesisFault]) -> NemesisSpec {
        NemesisSpec {
            faults: faults.to_vec(),
            targets: vec!["app".into()],
            interval: Between {
                min: Duration::from_secs(2),
                max: Duration::from_secs(5),
            },
            duration: Between {
                min: Duration::from_secs(1),
                max: Duration::from_secs(3),
            },
            total: Duration::from_secs(60),
            seed: None,
        }
    }

    fn nodes() -> Vec<String> {
        vec!["app1".into(), "app2".into(), "app3".into()]
    }

    #[test]
    fn one_seed_draws_one_schedule_and_another_seed_another() {
        let s = spec(&NemesisFault::ALL);
        let start = Duration::from_secs(5);
        let a = serde_json::to_string(&s.schedule(&nodes(), 42, start)).unwrap();
        let b = serde_json::to_string(&s.schedule(&nodes(), 42, start)).unwrap();
        let c = serde_json::to_string(&s.schedule(&nodes(), 43, start)).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn each_fault_is_followed_by_its_recovery_within_the_spans_asked() {
        let s = spec(&NemesisFault::ALL);
        let start = Duration::from_secs(5);
        for seed in 0..50 {
            let steps = s.schedule(&nodes(), seed, start);
            assert!(!steps.is_empty(), "seed {seed}");
            let mut last = start;
            let mut i = 0;
            while i < steps.len() {
                let at = steps[i].at.unwrap();
                let gap = at - last;
                assert!(gap >= s.interval.min && gap <= s.interval.max, "{gap:?}");
                assert!(at < start + s.total, "a fault after the total: {at:?}");
                let fault = steps[i].fault.clone().unwrap();
                let node = fault.targets()[0].1[0].clone();
                if let Fault::Restart { .. } = fault {
                    assert!(steps[i].wait.is_some(), "a restart waits until healthy");
                    last = at;
                    i += 1;
                    continue;
                }
                let back = &steps[i + 1];
                let lasted = back.at.unwrap() - at;
                assert!(lasted >= s.duration.min && lasted <= s.duration.max);
                let recovery = back.fault.clone().unwrap();
                match (&fault, &recovery) {
                    (Fault::Kill { .. } | Fault::Stop { .. }, Fault::Start { targets }) => {
                        assert_eq!(targets, std::slice::from_ref(&node));
                        assert!(back.wait.is_some(), "started again, then healthy");
                    }
                    (Fault::Pause { .. }, Fault::Resume { targets }) => {
                        assert_eq!(targets, std::slice::from_ref(&node));
                    }
                    (Fault::Partition { b, .. }, Fault::Heal) => {
                        assert!(!b.contains(&node) && b.len() == 2, "{b:?}");
                    }
                    (Fault::Isolate { .. }, Fault::Heal) => {}
                    other => panic!("{other:?}"),
                }
                last = back.at.unwrap();
                i += 2;
            }
        }
    }

    #[test]
    fn a_range_reads_least_first_and_refuses_it_the_other_way() {
        let read = |a: &str, b: &str| Between::try_from([a.to_string(), b.to_string()]);
        assert_eq!(read("1s", "2s").unwrap().max, Duration::from_secs(2));
        assert!(
            read("2s", "1s")
                .unwrap_err()
                .contains("give the least first")
        );
        assert!(read("2 parsecs", "3s").is_err());
    }
}
