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
//! - [`merge`]: `raftbench merge` — several load generators' results as one, histograms added.
//! - [`slo`], [`fit`]: SLO expressions, and the growth models.

pub mod capacity;
pub mod charts;
pub mod compare;
pub mod data;
pub mod fit;
pub mod html;
pub mod merge;
pub mod plot;
pub mod run_charts;
pub mod slo;

use std::fmt::Display;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::wire::BackendKind;
use crate::workload::Workload;
use crate::workload::runner::{self, RunOptions};
use crate::workload::spec::CacheState;

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
    /// A results directory's `run.json` that cannot be read.
    #[error(transparent)]
    Manifest(#[from] crate::wire::ManifestError),
}

impl ReportError {
    pub fn file(path: &Path, e: impl Display) -> ReportError {
        ReportError::File {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }
}

/// How `compare` and `capacity` launch each of their runs.
#[derive(Debug, Clone)]
pub struct Launch {
    /// Overrides the workload's seed (the same for every run).
    pub seed: Option<u64>,
    /// Overrides every `restart` event's page-cache state (the same for every run).
    pub restart_cache: Option<CacheState>,
    /// Multiplies op counts, durations, warm-ups and event times of every run.
    pub scale: f64,
    pub quiet: bool,
    /// The `raftbench` executable that runs nodes.
    pub binary: PathBuf,
    /// The command line, for each run's `run.json`.
    pub cli: Vec<String>,
}

impl Launch {
    /// Load the workload file with the seed and restart-cache overrides applied.
    pub fn load(&self, path: &Path) -> Result<Workload, ReportError> {
        let mut w = Workload::load(path).map_err(runner::RunError::from)?;
        if let Some(s) = self.seed {
            w.file.seed = s;
        }
        if let Some(c) = self.restart_cache {
            w.set_restart_cache(c);
        }
        Ok(w)
    }

    /// Run `w` on `backend` in a fresh cluster, results in `out`, with op counts and
    /// times multiplied by `scale`; draw its charts and report, and read the results back.
    pub async fn run(
        &self,
        w: &Workload,
        backend: BackendKind,
        out: &Path,
        scale: f64,
    ) -> Result<data::RunData, ReportError> {
        let result = runner::run(RunOptions {
            workload: w.path.clone(),
            loaded: Some(w.clone()),
            backend: Some(backend),
            nodes: None,
            out: Some(out.to_path_buf()),
            seed: None,
            restart_cache: None,
            scale,
            quiet: self.quiet,
            binary: self.binary.clone(),
            cli: self.cli.clone(),
            cluster: None,
            generator: None,
        })
        .await?;
        if let Some(v) = &result.verify
            && v.lost + v.stale > 0
        {
            eprintln!(
                "warning: {backend} lost {} acknowledged writes in {} (keys {:?})",
                v.lost + v.stale,
                out.display(),
                v.bad_keys
            );
        }
        plot::plot_run(out)?;
        data::RunData::load(out)
    }
}
