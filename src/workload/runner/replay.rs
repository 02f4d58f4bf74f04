//! How a workload is replayed: the options `run`, `compare` and `capacity` share, defined
//! once, with the flags that set them.

use std::path::PathBuf;

use crate::wire::FsyncPolicy;
use crate::workload::spec::CacheState;

/// Replay options of a run (or of every run of a study).
#[derive(Debug, Clone)]
pub struct Replay {
    /// Overrides the workload's seed.
    pub seed: Option<u64>,
    /// Overrides every `restart` event's page-cache state.
    pub restart_cache: Option<CacheState>,
    /// Overrides `[cluster].fsync`.
    pub fsync: Option<FsyncPolicy>,
    /// Sets the workload's `expect_loss`.
    pub expect_loss: bool,
    /// Multiplies op counts, durations, warm-ups and event times.
    pub scale: f64,
    /// No per-phase progress lines.
    pub quiet: bool,
    /// The `raftbench` executable that runs nodes.
    pub binary: PathBuf,
    /// The command line, for `run.json`.
    pub cli: Vec<String>,
}

/// The flags of [`Replay`]: shared by `run`, `compare` and `capacity`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Seed (overrides the workload's; the same for every run of a comparison).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Multiply op counts, durations, warm-ups and event times (e.g. 0.1 for a quick try).
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// No per-phase progress lines.
    #[arg(long)]
    pub quiet: bool,
    /// Make every `restart` event warm (the node finds its data in the page cache, as after
    /// a process crash) or cold (its data directory is evicted from the page cache first,
    /// as after a reboot), whatever the workload file says.
    #[arg(long, value_enum)]
    pub restart_cache: Option<CacheState>,
    /// The nodes' fsync policy, whatever the workload's `[cluster].fsync` says: one
    /// workload file then measures both (`always` or `never`).
    #[arg(long)]
    pub fsync: Option<FsyncPolicy>,
    /// Declare that acknowledged writes may be lost (the workload's `expect_loss`): with
    /// `--fsync never` and power cuts, the verify phase then reports the loss as a figure
    /// instead of failing the run. Loss under `fsync = "always"` always fails.
    #[arg(long)]
    pub expect_loss: bool,
}

impl ReplayArgs {
    /// The options, with this executable to run nodes and this process's command line.
    pub fn replay(&self) -> std::io::Result<Replay> {
        Ok(Replay {
            seed: self.seed,
            restart_cache: self.restart_cache,
            fsync: self.fsync,
            expect_loss: self.expect_loss,
            scale: self.scale,
            quiet: self.quiet,
            binary: std::env::current_exe()?,
            cli: std::env::args().collect(),
        })
    }
}
