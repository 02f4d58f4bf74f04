//! How a study launches each of its runs: the replay options every run of the study
//! shares (seed, restart cache, scale), so that runs differ only in what the study varies.

use std::path::Path;

use super::StudyError;
use crate::report::{data, plot};
use crate::wire::BackendKind;
use crate::workload::Workload;
use crate::workload::runner::{self, Replay, RunOptions};

/// How `compare` and `capacity` launch each of their runs: one [`Replay`] for all of them
/// (its seed and restart-cache overrides are applied once, when the workload is loaded).
#[derive(Debug, Clone)]
pub struct Launch {
    pub replay: Replay,
}

impl Launch {
    /// Load the workload file with the seed, restart-cache, fsync and expect-loss overrides
    /// applied.
    pub fn load(&self, path: &Path) -> Result<Workload, StudyError> {
        let mut w = Workload::load(path)?;
        if let Some(s) = self.replay.seed {
            w.file.seed = s;
        }
        if let Some(c) = self.replay.restart_cache {
            w.set_restart_cache(c);
        }
        if let Some(p) = self.replay.fsync {
            w.file.cluster.fsync = p;
        }
        w.file.expect_loss |= self.replay.expect_loss;
        w.revalidate()?;
        Ok(w)
    }

    /// Check `w` on every one of `backends` before the first run starts, so that an event
    /// or setting one backend refuses (etcd cannot partition, or `fsync = "never"`) stops
    /// the study at once, at its line and column, not after the other backends have run.
    pub fn check_each_backend(
        &self,
        w: &Workload,
        backends: &[BackendKind],
    ) -> Result<(), StudyError> {
        for b in backends {
            let mut on = w.clone();
            on.file.cluster.backend = *b;
            on.revalidate()
                .map_err(|e| StudyError::Invalid(format!("--backends {b}: {e}")))?;
        }
        Ok(())
    }

    /// Run `w` on `backend` in a fresh cluster, results in `out`, with op counts and
    /// times multiplied by `scale`; draw its charts and report, and read the results back.
    pub async fn run(
        &self,
        w: &Workload,
        backend: BackendKind,
        out: &Path,
        scale: f64,
    ) -> Result<data::RunData, StudyError> {
        let result = runner::run(RunOptions {
            workload: w.path.clone(),
            loaded: Some(w.clone()),
            backend: Some(backend),
            nodes: None,
            out: Some(out.to_path_buf()),
            replay: Replay {
                seed: None,
                restart_cache: None,
                scale,
                ..self.replay.clone()
            },
            cluster: None,
            generator: None,
            coordinated: false,
        })
        .await?;
        if let Some(v) = &result.verify
            && v.lost_writes() > 0
        {
            eprintln!(
                "{}: {backend}: {} in {} (keys {:?})",
                if v.loss_expected {
                    "note (expected loss)"
                } else {
                    "warning"
                },
                v.loss_summary(),
                out.display(),
                v.bad_keys
            );
        }
        plot::plot_run(out)?;
        Ok(data::RunData::load(out)?)
    }
}
