//! Workloads: declarative scenario files and the generators that turn them into operations.
//!
//! - [`spec`]: the TOML format (phases, mixes, distributions, events); `rules`: the checks
//!   its parser cannot make;
//! - [`keys`]: key choosers (uniform, scrambled zipfian, latest, hotspot, sequential) and
//!   value makers (sizes, compressibility);
//! - [`runner`]: `raftbench run` — phases, open/closed loop, events; [`events`]: fault
//!   injection and recovery timing; [`verify`]: the lost-write model; [`output`]: the
//!   results directory; `recorded`: a workload read back from `run.json`.

pub mod events;
pub mod keys;
pub mod output;
mod recorded;
mod rules;
pub mod runner;
pub mod spec;
pub mod verify;

pub use spec::{SpecError, Workload};
