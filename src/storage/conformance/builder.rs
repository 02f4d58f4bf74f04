//! How the suite gets the backend under test: a [`BackendBuilder`] per engine.

use std::path::Path;

use tempfile::TempDir;

use crate::storage::memwal::MemwalBackend;
#[cfg(feature = "rocksdb")]
use crate::storage::rocks::RocksBackend;
use crate::storage::{
    BackendConfig, BackendKind, FsyncPolicy, Result, StorageBackend, StorageError,
};

/// Opens one engine for the suite. Implementing it (and one line per fsync policy in
/// `tests/it/conformance.rs`) is all a new engine needs to get every check.
///
/// The suite opens many backends at once and reopens each in the same directory after
/// closing it, which is why the builder opens a *directory* rather than handing out one
/// backend.
pub trait BackendBuilder {
    /// The backend this builder opens.
    type Backend: StorageBackend;

    /// What failure messages call this backend (engine and fsync policy).
    fn name(&self) -> String;

    /// Open the backend whose data directory is `dir`: a fresh replica when `dir` is
    /// empty, the replica a closed backend left there otherwise.
    fn open(&self, dir: &Path) -> Result<Self::Backend>;

    /// A fresh backend in a new temporary directory. The directory is deleted when the
    /// guard drops, so the guard must outlive the backend (and any reopening of it).
    fn build(&self) -> Result<(TempDir, Self::Backend)> {
        let dir = TempDir::new().map_err(|source| StorageError::Io {
            op: "create temporary directory in",
            path: std::env::temp_dir(),
            source,
        })?;
        let backend = self.open(dir.path())?;
        Ok((dir, backend))
    }
}

/// The configuration the suite runs an engine with: `fsync` as given, and sizes small
/// enough that short test logs exercise what long runs do.
fn suite_config(kind: BackendKind, fsync: FsyncPolicy, dir: &Path) -> BackendConfig {
    let mut cfg = BackendConfig::new(kind, dir).with_fsync(fsync);
    // Segments rotate, and are deleted below snapshots, within a few dozen entries.
    cfg.memwal.segment_size = bytesize::ByteSize::kib(4);
    // A parallel test run holds dozens of RocksDB instances open at once.
    cfg.rocksdb.block_cache_size = bytesize::ByteSize::mib(8);
    cfg.rocksdb.write_buffer_size = bytesize::ByteSize::mib(4);
    cfg
}

/// memwal with the given fsync policy, in 4 KiB WAL segments.
#[derive(Debug, Clone, Copy)]
pub struct MemwalBuilder {
    pub fsync: FsyncPolicy,
}

impl BackendBuilder for MemwalBuilder {
    type Backend = MemwalBackend;

    fn name(&self) -> String {
        format!("memwal (fsync {})", self.fsync)
    }

    fn open(&self, dir: &Path) -> Result<MemwalBackend> {
        MemwalBackend::open(suite_config(BackendKind::Memwal, self.fsync, dir))
    }
}

/// RocksDB with the given fsync policy, with a small block cache and write buffer.
#[cfg(feature = "rocksdb")]
#[derive(Debug, Clone, Copy)]
pub struct RocksdbBuilder {
    pub fsync: FsyncPolicy,
}

#[cfg(feature = "rocksdb")]
impl BackendBuilder for RocksdbBuilder {
    type Backend = RocksBackend;

    fn name(&self) -> String {
        format!("rocksdb (fsync {})", self.fsync)
    }

    fn open(&self, dir: &Path) -> Result<RocksBackend> {
        RocksBackend::open(suite_config(BackendKind::Rocksdb, self.fsync, dir))
    }
}

/// Any storage mode by name (a composed `LOG+STATE` one, usually) with the given fsync
/// policy, opened through [`crate::storage::open_backend`] as the node opens it; optionally
/// with engine options changed ([`ModeBuilder::with`]).
#[derive(Debug, Clone, Copy)]
pub struct ModeBuilder {
    pub kind: BackendKind,
    pub fsync: FsyncPolicy,
    /// What [`Self::tweak`] changes, for test names ("" when nothing).
    pub label: &'static str,
    pub tweak: Option<fn(&mut crate::storage::BackendConfig)>,
}

impl ModeBuilder {
    /// The mode named `mode` (panics on an unknown name: a test's own typo).
    pub fn new(mode: &str, fsync: FsyncPolicy) -> Self {
        ModeBuilder {
            kind: mode.parse().unwrap_or_else(|e| panic!("{e}")),
            fsync,
            label: "",
            tweak: None,
        }
    }

    /// The same mode with `tweak` applied to its config (named `label` in messages).
    pub fn with(self, label: &'static str, tweak: fn(&mut crate::storage::BackendConfig)) -> Self {
        ModeBuilder {
            label,
            tweak: Some(tweak),
            ..self
        }
    }
}

impl BackendBuilder for ModeBuilder {
    type Backend = crate::storage::AnyBackend;

    fn name(&self) -> String {
        if self.label.is_empty() {
            format!("{} (fsync {})", self.kind, self.fsync)
        } else {
            format!("{} (fsync {}, {})", self.kind, self.fsync, self.label)
        }
    }

    fn open(&self, dir: &Path) -> Result<crate::storage::AnyBackend> {
        let mut config = suite_config(self.kind, self.fsync, dir);
        if let Some(tweak) = self.tweak {
            tweak(&mut config);
        }
        crate::storage::open_backend(&config)
    }
}
