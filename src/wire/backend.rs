//! Backend configuration, as carried by workload files, cluster files and `/status`: the
//! engine's name, its fsync policy and its options.
//!
//! `BackendConfig` deserialises from TOML/JSON and rejects unknown fields, so a typo in a
//! workload file is an error rather than a silently ignored option. Sizes accept either a
//! byte count or a string such as `"64 MiB"`.

use std::fmt;
use std::path::PathBuf;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

/// Which storage engine holds a replica's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// In-memory log and map, made durable by a write-ahead log and snapshot files.
    Memwal,
    /// RocksDB with column families for the log, raft metadata and the KV data.
    Rocksdb,
}

impl BackendKind {
    /// Every backend this build knows, in a stable order.
    pub const ALL: [BackendKind; 2] = [BackendKind::Memwal, BackendKind::Rocksdb];

    /// The name used in files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Memwal => "memwal",
            BackendKind::Rocksdb => "rocksdb",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for BackendKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "memwal" => Ok(BackendKind::Memwal),
            "rocksdb" => Ok(BackendKind::Rocksdb),
            other => Err(format!(
                "unknown backend {other:?}; expected one of: memwal, rocksdb"
            )),
        }
    }
}

/// When a write is forced to stable storage. The meaning is the same for every backend, so
/// that comparisons are fair:
///
/// - `always`: a `persist` returns only after its bytes are on stable storage
///   (`fdatasync` for memwal, `WriteOptions::set_sync(true)` for RocksDB). Survives power
///   loss: nothing acknowledged is lost.
/// - `never`: the write path (entries, hard states, applies) is handed to the OS
///   (`write(2)`) before returning and never synced. Survives a process crash (`kill -9`);
///   a power loss or OS crash loses the writes since the engine's last internal sync, and
///   the replica comes back at an older, consistent state: a prefix of its log, with the
///   applied state of that prefix or of a snapshot taken since.
///
///   Both engines still sync their *structure*, as they must to come back at all, and the
///   same raftbench writes: snapshot creation and installs, and a directly set conf state,
///   are synced under both policies. Beyond that, RocksDB syncs SST files, the MANIFEST and
///   the WALs it seals before a flush, and flushes what it recovered at open; memwal syncs
///   a WAL segment when it seals it and when it starts a new one, and the WAL before it
///   deletes files. How much each loses therefore differs (RocksDB's sealed WALs and SSTs
///   come with memtable flushes, every `write_buffer_size`; memwal's with segment rotations,
///   every `segment_size`, and snapshots): that difference is what a power-loss run measures.
///   Lost votes can break raft's safety under `never`, which is why it is a benchmark setting
///   and not a production one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    #[default]
    Always,
    Never,
}

impl FsyncPolicy {
    /// Whether writes must be synced.
    pub fn sync(self) -> bool {
        matches!(self, FsyncPolicy::Always)
    }

    /// The name used in files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            FsyncPolicy::Always => "always",
            FsyncPolicy::Never => "never",
        }
    }
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for FsyncPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "always" => Ok(FsyncPolicy::Always),
            "never" => Ok(FsyncPolicy::Never),
            other => Err(format!(
                "unknown fsync policy {other:?}; expected always or never"
            )),
        }
    }
}

/// Everything needed to open one replica's storage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// The engine.
    pub kind: BackendKind,
    /// Data directory; created when missing. Workload files usually leave it out and let the
    /// runner choose one per node.
    #[serde(default)]
    pub dir: PathBuf,
    /// Durability of writes (see [`FsyncPolicy`]).
    #[serde(default)]
    pub fsync: FsyncPolicy,
    /// How fast a snapshot built in the background may write its file, per second (`0`:
    /// as fast as the disk takes it). Why a limit: every WAL fsync on the disk waits for
    /// the snapshot bytes written before it (a cache flush writes them all), so a
    /// snapshot written at the disk's full speed holds every write of every node on that
    /// disk behind it for as long as it lasts.
    #[serde(default = "default_snapshot_write_rate")]
    pub snapshot_write_rate: ByteSize,
    /// Options of the memwal engine (ignored by others).
    #[serde(default)]
    pub memwal: MemwalOptions,
    /// Options of the RocksDB engine (ignored by others).
    #[serde(default)]
    pub rocksdb: RocksdbOptions,
}

impl BackendConfig {
    /// A config with default options for `kind` in `dir`.
    pub fn new(kind: BackendKind, dir: impl Into<PathBuf>) -> Self {
        BackendConfig {
            kind,
            dir: dir.into(),
            fsync: FsyncPolicy::default(),
            snapshot_write_rate: default_snapshot_write_rate(),
            memwal: MemwalOptions::default(),
            rocksdb: RocksdbOptions::default(),
        }
    }

    /// Builder-style fsync setter.
    pub fn with_fsync(mut self, fsync: FsyncPolicy) -> Self {
        self.fsync = fsync;
        self
    }

    /// The same config pointing at another directory.
    pub fn with_dir(&self, dir: impl Into<PathBuf>) -> Self {
        BackendConfig {
            dir: dir.into(),
            ..self.clone()
        }
    }
}

fn default_snapshot_write_rate() -> ByteSize {
    ByteSize::mib(32)
}

/// memwal engine options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemwalOptions {
    /// A WAL segment is closed and a new one started once it reaches this size. Smaller
    /// segments let compaction free disk sooner; larger ones mean fewer files.
    pub segment_size: ByteSize,
}

impl Default for MemwalOptions {
    fn default() -> Self {
        MemwalOptions {
            segment_size: ByteSize::mib(64),
        }
    }
}

/// Block compression of RocksDB SST files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Lz4,
    Zstd,
}

/// RocksDB engine options. Defaults suit a 2-core, 24 GiB machine running three replicas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RocksdbOptions {
    /// Shared LRU block cache for all column families.
    pub block_cache_size: ByteSize,
    /// Bloom filter bits per key on the `kv` column family; 0 disables the filter.
    pub bloom_bits_per_key: u32,
    /// Compression of the `kv` column family (the log is never compressed: it is short-lived).
    pub compression: Compression,
    /// Memtable size per column family.
    pub write_buffer_size: ByteSize,
    /// Flush + compaction threads.
    pub max_background_jobs: i32,
}

impl Default for RocksdbOptions {
    fn default() -> Self {
        RocksdbOptions {
            block_cache_size: ByteSize::mib(512),
            bloom_bits_per_key: 10,
            compression: Compression::Lz4,
            write_buffer_size: ByteSize::mib(64),
            max_background_jobs: 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_toml_with_units_and_defaults() {
        let cfg: BackendConfig = toml::from_str(
            r#"
            kind = "rocksdb"
            fsync = "never"
            [rocksdb]
            block_cache_size = "1 GiB"
            compression = "zstd"
            "#,
        )
        .unwrap();
        assert_eq!(cfg.kind, BackendKind::Rocksdb);
        assert_eq!(cfg.fsync, FsyncPolicy::Never);
        assert_eq!(cfg.rocksdb.block_cache_size, ByteSize::gib(1));
        assert_eq!(cfg.rocksdb.compression, Compression::Zstd);
        assert_eq!(cfg.rocksdb.bloom_bits_per_key, 10);
        assert_eq!(cfg.memwal, MemwalOptions::default());
    }

    #[test]
    fn rejects_unknown_fields_and_values() {
        let err = toml::from_str::<BackendConfig>("kind = \"memwal\"\nfsinc = \"never\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("fsinc"), "{err}");
        let err = toml::from_str::<BackendConfig>("kind = \"leveldb\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("memwal"), "{err}");
    }
}
