//! The run's one monotonic clock. Every operation and fault is stamped with it, so intervals
//! between any two events of a run are exact and comparable.

use std::time::{Instant, SystemTime};

pub use hadrill_model::Stamp;

#[derive(Debug, Clone)]
pub struct Clock {
    origin: Instant,
    wall_origin: SystemTime,
}

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
