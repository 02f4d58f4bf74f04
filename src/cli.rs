//! Command-line definitions. Only `clap` types live here; `main.rs` dispatches them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::storage::{BackendKind, FsyncPolicy};

/// raftbench: benchmark storage engines under raft consensus.
#[derive(Debug, Parser)]
#[command(name = "raftbench", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work directly with a storage backend's data directory.
    #[command(subcommand)]
    Storage(StorageCommand),
}

/// `raftbench storage ...`
#[derive(Debug, Subcommand)]
pub enum StorageCommand {
    /// Open a data directory the way a node does and print its state and open cost as JSON.
    ///
    /// Opening is recovery: a torn WAL tail is truncated and memwal starts a new segment.
    Open(BackendArgs),
    /// Append a synthetic raft log forever (or to --max-index), printing each durable index.
    /// Used by the crash-safety tests, which kill it with SIGKILL.
    Stress(StressArgs),
}

/// Which backend and where.
#[derive(Debug, Args)]
pub struct BackendArgs {
    /// Storage engine.
    #[arg(long, value_parser = clap::value_parser!(BackendKind))]
    pub backend: BackendKind,
    /// Data directory (created when missing).
    #[arg(long)]
    pub dir: PathBuf,
    /// When writes are forced to disk: always | never.
    #[arg(long, default_value = "always", value_parser = clap::value_parser!(FsyncPolicy))]
    pub fsync: FsyncPolicy,
}

/// `raftbench storage stress`
#[derive(Debug, Args)]
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
