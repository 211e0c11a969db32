//! The pure model at the bottom of hadrill: what a run records (operations, faults, events),
//! what a system holds after it (final reads), and what the checks decide (verdicts against
//! budgets). Plain data and pure functions: no I/O, no engine, no async. Everything else
//! builds on these types; they import nothing above them.

pub mod fault;
pub mod finals;
pub mod hits;
pub mod op;
pub mod percentile;
pub mod restore;
pub mod results;
pub mod roles;
pub mod stamp;
pub mod steady;
pub mod verdict;

pub use fault::{
    Bandwidth, ByteSize, ClockOffset, Direction, Effect, Expect, Fault, Mark, ProcessSignal,
    Selector, Shape,
};
pub use finals::{ClusterFinal, MemberFinal, MemberStatus, SQL_READ, SqlFinal, StoreRead};
pub use hits::{Hit, SERVING_WINDOW, agents_on, hits};
pub use op::{
    AbortRecord, Actor, Aim, Event, Exchange, FaultRecord, OpKind, OpRecord, Outcome, Role,
    UNAUTHORIZED, abort, faults, ops,
};
pub use percentile::percentile;
pub use restore::Restore;
pub use results::{
    CLOCK_RESOLUTION_MS, ClockReading, HarnessUsage, HostClock, NodePrivileges, Phase, Results,
    Slots, verdict_word,
};
pub use roles::{UNREACHABLE, is_primary, last_roles};
pub use stamp::Stamp;
pub use steady::{QUIET, steady};
pub use verdict::{Budgets, Check, CheckResult, Evidence, Read, RequestBudget, Verdict};
