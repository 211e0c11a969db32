//! hadrill: start a high-availability topology in containers, break it on a script, record
//! everything, and judge the run from the record.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use hadrill::{Run, RunOptions, Topology, project_root};
//! let root = project_root();
//! let mut run = Run::start(Topology::load(&root, "smoke")?, &RunOptions::new(&root)).await?;
//! run.node("web1")?.kill().await?;
//! run.teardown().await?;
//! # Ok(()) }
//! ```

pub mod checks;
pub mod classify;
mod client;
pub mod clock;
mod context;
pub mod docker;
mod drill;
pub mod faults;
pub mod history;
pub mod host_clock;
pub mod images;
pub mod interrupt;
pub mod journal;
/// The pure model (`hadrill-model`): what every layer shares.
pub use hadrill_model as model;
pub mod node;
mod observer;
pub mod patroni;
mod postgres;
pub mod progress;
mod reaper;
pub mod reference;
pub mod run;
pub mod scenario;
mod shared;
pub mod ssh;
pub mod tasks;
pub mod testbed;
pub mod topology;
mod usage;
pub mod workload;

pub use drill::Drill;
pub use faults::FaultError;
pub use model::{
    Actor, Budgets, Check, CheckResult, Direction, Event, Evidence, Exchange, Fault, OpKind,
    OpRecord, Outcome, Role, Verdict,
};
pub use node::Node;
pub use reference::web::WorkloadSpec;
pub use run::{Run, RunError, RunOptions, project_root};
pub use scenario::{
    Between, Condition, NemesisFault, NemesisSpec, Results, Scenario, ScenarioError, Step,
};
pub use topology::Topology;
pub use workload::sql::SqlSpec;
pub use workload::{Observer, Workload};
