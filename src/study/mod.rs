//! Experiments that drive the runner: each replays a workload as many times as its
//! question needs, in fresh clusters, and answers from the results files alone (so that
//! `raftbench plot DIR` can redraw the answer).
//!
//! - [`compare`]: `raftbench compare` — the same workload on every backend, side by side.
//! - [`capacity`]: `raftbench capacity` — throughput at an SLO, growth with data size and a
//!   projection to a target data set.
//! - [`merge`]: `raftbench merge` — several load generators' results as one, histograms
//!   added.
//! - [`diff`]: `raftbench diff` — two results (or comparisons) side by side, with a
//!   significance test and thresholds: a verdict for CI.
//! - [`schema`]: JSON Schemas of the results files (`raftbench schema`).
//! - [`slo`]: SLO expressions and their verdict (`capacity --slo`, `run --slo`).
//! - [`launch`]: how a study launches each of its runs ([`Launch`]).
//!
//! Shared here: the studies' error, where their results go, and the checks of the options
//! they have in common.

pub mod capacity;
pub mod compare;
pub mod diff;
pub mod launch;
pub mod merge;
pub mod schema;
pub mod slo;

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Serializer;
use thiserror::Error;

pub use launch::Launch;

use crate::metrics::MergeError;
use crate::report::ReportError;
use crate::wire::BackendKind;
use crate::workload::SpecError;
use crate::workload::runner::RunError;

/// Why a study stopped.
#[derive(Debug, Error)]
pub enum StudyError {
    /// Options that cannot be used (`--backends`, `--sizes`, `--repeat`, ...), or results
    /// directories that are not parts of one run.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Workload(#[from] SpecError),
    /// A workload the study generated (a probe, a growth run) that does not validate.
    #[error("{what}: {source}")]
    Generated {
        what: String,
        #[source]
        source: SpecError,
    },
    #[error(transparent)]
    Run(#[from] RunError),
    /// Reading results back, or writing the study's files, charts and report.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// Histograms of several runs (or phases) that could not be added.
    #[error("{what}: {source}")]
    Merge {
        what: String,
        #[source]
        source: MergeError,
    },
}

/// `results/<utc>-<study>-<workload>`, the default directory of a study (colons dropped
/// from the time, so that the name is a valid file name everywhere).
pub fn default_out_dir(study: &str, workload: &str) -> PathBuf {
    let ts = humantime::format_rfc3339_seconds(SystemTime::now())
        .to_string()
        .replace(':', "");
    PathBuf::from("results").join(format!("{ts}-{study}-{workload}"))
}

/// Create `dir`, refusing a non-empty one (results are never overwritten).
pub fn check_out_dir(dir: &Path) -> Result<(), StudyError> {
    if dir.exists()
        && std::fs::read_dir(dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
    {
        return Err(StudyError::Invalid(format!(
            "output directory {} is not empty",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(ReportError::io(dir))?;
    Ok(())
}

/// Check the backend list: at least one, no duplicates.
pub fn check_backends(backends: &[BackendKind]) -> Result<(), StudyError> {
    if backends.is_empty() {
        return Err(StudyError::Invalid(
            "--backends: name at least one backend".into(),
        ));
    }
    for (i, b) in backends.iter().enumerate() {
        if backends[..i].contains(b) {
            return Err(StudyError::Invalid(format!(
                "--backends: {b} is listed twice"
            )));
        }
    }
    Ok(())
}

/// `serialize_with` for CSV cells spelled as `Display` spells them. The studies' CSV files
/// have always printed `2749` and `0.001` (Rust's shortest round-trip `Display`); serde's
/// `f64` would print `2749.0`, and exponents for large values.
fn display<T: Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// [`display`] for an optional cell: `None` is an empty field.
fn display_opt<T: Display, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

/// A number with a fixed count of decimals, as a CSV cell.
#[derive(Debug, Clone, Copy)]
struct Fixed(f64, usize);

impl Display for Fixed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.*}", self.1, self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_duplicate_backends() {
        assert!(check_backends(&[BackendKind::Memwal, BackendKind::Memwal]).is_err());
        assert!(check_backends(&[]).is_err());
        check_backends(&[BackendKind::Memwal, BackendKind::Rocksdb]).unwrap();
    }

    #[test]
    fn out_dir_must_be_empty() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("new/study");
        check_out_dir(&dir).unwrap();
        assert!(dir.is_dir());
        std::fs::write(dir.join("x"), "").unwrap();
        let e = check_out_dir(&dir).unwrap_err().to_string();
        assert!(e.contains("is not empty"), "{e}");
        let d = default_out_dir("compare", "smoke");
        let name = d.file_name().unwrap().to_string_lossy();
        assert!(
            d.starts_with("results") && name.ends_with("-compare-smoke"),
            "{d:?}"
        );
        assert!(!name.contains(':'), "{name}");
    }
}
