//! The run's one monotonic clock. Every operation and fault is stamped with it, so intervals
//! between any two events of a run are exact and comparable.

use std::fmt;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone)]
pub struct Clock {
    origin: Instant,
    wall_origin: SystemTime,
}

/// Nanoseconds since the run's clock started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Stamp(pub u64);

impl Clock {
    pub fn start() -> Self {
        Clock {
            origin: Instant::now(),
            wall_origin: SystemTime::now(),
        }
    }

    pub fn now(&self) -> Stamp {
        self.stamp(Instant::now())
    }

    pub fn stamp(&self, at: Instant) -> Stamp {
        Stamp(at.saturating_duration_since(self.origin).as_nanos() as u64)
    }

    /// Wall-clock time at which the run's clock read zero (for reports, never for intervals).
    pub fn wall_origin(&self) -> SystemTime {
        self.wall_origin
    }
}

impl Stamp {
    pub fn as_duration(self) -> Duration {
        Duration::from_nanos(self.0)
    }

    pub fn since(self, earlier: Stamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl fmt::Display for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.3}s", self.as_duration().as_secs_f64())
    }
}
