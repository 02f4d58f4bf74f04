//! Turning results into answers: charts (plotters, PNG + SVG), a self-contained HTML report
//! per run, side-by-side comparison of backends and capacity planning.
//!
//! - [`data`]: read a results directory back (`run.json`, CSVs, `latency.hlog`).
//! - [`charts`]: the drawing primitives (x/y panels with nines/log axes, grouped bars) and
//!   the embedded font.
//! - [`run_charts`]: the charts of one run (latency spectrum, timeline, resources, recovery).
//! - [`html`]: the HTML page builder (tables, inline charts).
//! - [`plot`]: `raftbench plot DIR` — regenerate a run's charts and `report.html`.
//! - [`compare`]: `raftbench compare` — the same workload on every backend, side by side.
//! - [`capacity`]: `raftbench capacity` — throughput at an SLO, growth with data size and a
//!   projection to a target data set.
//! - [`slo`], [`fit`]: SLO expressions, and the growth models.

pub mod capacity;
pub mod charts;
pub mod compare;
pub mod data;
pub mod fit;
pub mod html;
pub mod plot;
pub mod run_charts;
pub mod slo;

use std::fmt::Display;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Why a report could not be produced.
#[derive(Debug, Error)]
pub enum ReportError {
    /// A file that is missing, unreadable, malformed or could not be written.
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
    /// Bad options (`--slo`, `--sizes`, `--backends`, ...).
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Slo(#[from] slo::SloError),
    #[error(transparent)]
    Run(#[from] crate::workload::runner::RunError),
}

impl ReportError {
    pub fn file(path: &Path, e: impl Display) -> ReportError {
        ReportError::File {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }
}
