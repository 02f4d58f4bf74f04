//! `raftbench storage ...`: a backend's data directory, directly, as a node would open it.
//!
//! - `open` opens (that is: recovers) a directory and prints its state and open cost;
//! - `stress` appends a synthetic raft log, printing each durable index (the crash-safety
//!   tests kill it with SIGKILL and check what survived).

use std::io::Write;
use std::path::PathBuf;

use serde::Serialize;

use super::stress::{self, StressError};
use super::{BackendStats, OpenReport, Result, StorageBackend, open_backend};
use crate::wire::{BackendConfig, BackendKind, FsyncPolicy};

/// Which backend and where.
#[derive(Debug, clap::Args)]
pub struct BackendArgs {
    /// Storage engine.
    #[arg(long)]
    pub backend: BackendKind,
    /// Data directory (created when missing).
    #[arg(long)]
    pub dir: PathBuf,
    /// When writes are forced to disk: always | never.
    #[arg(long, default_value = "always")]
    pub fsync: FsyncPolicy,
}

/// `raftbench storage stress`
#[derive(Debug, clap::Args)]
pub struct StressArgs {
    #[command(flatten)]
    pub backend: BackendArgs,
    /// Entries per persist.
    #[arg(long, default_value_t = 16)]
    pub batch: u64,
    /// Value bytes per entry.
    #[arg(long, default_value_t = 128)]
    pub payload: usize,
    /// Snapshot + compact every this many applied entries (0 = never).
    #[arg(long, default_value_t = 2000)]
    pub snapshot_every: u64,
    /// memwal WAL segment size in bytes (small values exercise rotation and deletion).
    #[arg(long)]
    pub segment_size: Option<u64>,
    /// Stop after this index.
    #[arg(long)]
    pub max_index: Option<u64>,
}

impl BackendArgs {
    /// The configuration these flags name.
    pub fn config(&self) -> BackendConfig {
        BackendConfig::new(self.backend, &self.dir).with_fsync(self.fsync)
    }
}

/// What `raftbench storage open` prints.
#[derive(Debug, Serialize)]
struct Opened {
    backend: BackendKind,
    dir: PathBuf,
    fsync: FsyncPolicy,
    open: OpenReport,
    stats: BackendStats,
}

/// `raftbench storage open`: open the directory and print its state as JSON on `out`.
pub fn open_command(args: &BackendArgs, out: &mut dyn Write) -> Result<()> {
    let cfg = args.config();
    let b = open_backend(&cfg)?;
    let report = Opened {
        backend: cfg.kind,
        dir: cfg.dir.clone(),
        fsync: cfg.fsync,
        open: b.open_report(),
        stats: b.stats(),
    };
    let text = serde_json::to_string_pretty(&report).expect("plain data serialises");
    writeln!(out, "{text}").map_err(super::StorageError::io("writing to", "standard output"))
}

/// `raftbench storage stress`: append until killed (or `--max-index`), printing each
/// durable index on `out`, then `done <last index>`.
pub fn stress_command(args: &StressArgs, out: &mut dyn Write) -> Result<(), StressError> {
    let mut cfg = args.backend.config();
    if let Some(s) = args.segment_size {
        cfg.memwal.segment_size = bytesize::ByteSize::b(s);
    }
    let opts = stress::StressOptions {
        batch: args.batch,
        payload: args.payload,
        snapshot_every: args.snapshot_every,
        max_index: args.max_index,
        ..Default::default()
    };
    let last = stress::run(&cfg, &opts, out)?;
    writeln!(out, "done {last}")?;
    Ok(())
}
