//! Errors of the storage layer.
//!
//! Every variant names *what* and *where* (file, offset, index), because a user facing a
//! refused data directory must be able to tell a torn benchmark run from a bug.

use std::path::{Path, PathBuf};

use thiserror::Error;

/// Result alias of the storage layer.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// What went wrong in a storage backend.
#[derive(Debug, Error)]
pub enum StorageError {
    /// An operating-system I/O call failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Bytes on disk are not what we wrote: refuse to guess.
    #[error("corrupt data in {} at offset {offset}: {reason}", file.display())]
    Corrupt {
        file: PathBuf,
        offset: u64,
        reason: String,
    },

    /// The directory holds data of another backend.
    #[error(
        "data directory {} was created by the {found} backend, not {expected}; refusing to touch it",
        dir.display()
    )]
    WrongBackend {
        dir: PathBuf,
        found: String,
        expected: String,
    },

    /// The directory was written by a newer (or unknown) on-disk format.
    #[error(
        "data directory {} has format version {found}, this build supports up to {supported}; refusing to touch it",
        dir.display()
    )]
    UnsupportedVersion {
        dir: PathBuf,
        found: u32,
        supported: u32,
    },

    /// The directory is not empty but is not a raftbench data directory.
    #[error("{} is not empty and is not a raftbench data directory (no RAFTBENCH marker); refusing to touch it", dir.display())]
    NotADataDir { dir: PathBuf },

    /// The caller broke the storage contract (a gap in the log, an apply going backwards…).
    /// Raised instead of silently accepting a write that would corrupt the replica.
    #[error("invalid storage operation: {0}")]
    Invalid(String),

    /// A snapshot older than the log's first index cannot be installed (raft-rs's
    /// `SnapshotOutOfDate`).
    #[error("snapshot at index {index} is older than the log's first index {first_index}")]
    SnapshotOutOfDate { index: u64, first_index: u64 },

    /// A backend option or config value is unusable.
    #[error("invalid backend configuration: {0}")]
    Config(String),

    /// A protobuf message could not be encoded or decoded.
    #[error("protobuf {what}: {source}")]
    Codec {
        what: &'static str,
        #[source]
        source: protobuf::ProtobufError,
    },

    /// A snapshot's data blob is malformed.
    #[error("snapshot data: {0}")]
    SnapshotData(String),

    /// RocksDB reported an error.
    #[cfg(feature = "rocksdb")]
    #[error("rocksdb {op}: {source}")]
    Rocks {
        op: &'static str,
        #[source]
        source: rocksdb::Error,
    },

    /// redb reported an error.
    #[error("redb {op}: {source}")]
    Redb {
        op: &'static str,
        /// Boxed: redb's error is large, and every storage result would carry its size.
        #[source]
        source: Box<redb::Error>,
    },

    /// raft-engine reported an error.
    #[error("raft-engine {op}: {source}")]
    RaftEngine {
        op: &'static str,
        /// Boxed, as redb's.
        #[source]
        source: Box<raft_engine::Error>,
    },
}

impl StorageError {
    /// Wrap an `io::Error` with the operation and path it concerned.
    pub fn io(op: &'static str, path: impl AsRef<Path>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.as_ref().to_path_buf();
        move |source| StorageError::Io { op, path, source }
    }

    /// Build a [`StorageError::Corrupt`].
    pub fn corrupt(file: impl AsRef<Path>, offset: u64, reason: impl Into<String>) -> Self {
        StorageError::Corrupt {
            file: file.as_ref().to_path_buf(),
            offset,
            reason: reason.into(),
        }
    }

    /// Wrap any redb error (they all convert into `redb::Error`).
    pub fn redb<E: Into<redb::Error>>(op: &'static str) -> impl FnOnce(E) -> Self {
        move |e| StorageError::Redb {
            op,
            source: Box::new(e.into()),
        }
    }

    /// Wrap a raft-engine error.
    pub fn raft_engine(op: &'static str) -> impl FnOnce(raft_engine::Error) -> Self {
        move |source| StorageError::RaftEngine {
            op,
            source: Box::new(source),
        }
    }

    /// Wrap a protobuf error.
    pub fn codec(what: &'static str) -> impl FnOnce(protobuf::ProtobufError) -> Self {
        move |source| StorageError::Codec { what, source }
    }
}

/// raft-rs treats any storage error other than `Compacted`/`Unavailable` as fatal; ours are
/// carried inside `StorageError::Other` so the message survives into raft's log.
impl From<StorageError> for raft::Error {
    fn from(e: StorageError) -> Self {
        raft::Error::Store(raft::StorageError::Other(Box::new(e)))
    }
}
