//! Workloads: declarative scenario files and the generators that turn them into operations.
//!
//! - [`spec`]: the TOML format (phases, mixes, distributions, events) and its validation;
//! - [`keys`]: key choosers (uniform, scrambled zipfian, latest, hotspot, sequential) and
//!   value makers (sizes, compressibility).

pub mod keys;
pub mod spec;

pub use spec::{SpecError, Workload};
