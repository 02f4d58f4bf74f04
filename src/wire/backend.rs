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

/// Where a replica's raft log lives, in a composed (`LOG+STATE`) mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LogEngine {
    /// raftbench's own write-ahead log segments, with the log in memory (memwal's WAL,
    /// holding only the log).
    Wal,
    /// A RocksDB database of its own (`raft_log` and `raft_meta` column families): TiKV's
    /// raftdb before 6.1.
    Rocksdb,
    /// TiKV's log engine (crate `raft-engine`): append-only files, an in-memory index, and
    /// purging by rewriting whole files (TiKV 6.1+).
    RaftEngine,
}

impl LogEngine {
    /// Every log engine, in a stable order.
    pub const ALL: [LogEngine; 3] = [LogEngine::Wal, LogEngine::Rocksdb, LogEngine::RaftEngine];

    /// The name used in mode names (`LOG+STATE`).
    pub fn as_str(self) -> &'static str {
        match self {
            LogEngine::Wal => "wal",
            LogEngine::Rocksdb => "rocksdb",
            LogEngine::RaftEngine => "raft-engine",
        }
    }
}

/// Where a replica's applied key-value state lives, in a composed (`LOG+STATE`) mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StateEngine {
    /// An in-memory ordered map, durable only as snapshot files (restart replays the log
    /// above the newest one): etcd's raftexample.
    Memory,
    /// A RocksDB database of its own (TiKV's kvdb).
    Rocksdb,
    /// redb, a copy-on-write B+tree in one file (the closest well-kept Rust analogue of
    /// etcd's bbolt).
    Redb,
}

impl StateEngine {
    /// Every state machine engine, in a stable order.
    pub const ALL: [StateEngine; 3] =
        [StateEngine::Memory, StateEngine::Rocksdb, StateEngine::Redb];

    /// The name used in mode names (`LOG+STATE`).
    pub fn as_str(self) -> &'static str {
        match self {
            StateEngine::Memory => "memory",
            StateEngine::Rocksdb => "rocksdb",
            StateEngine::Redb => "redb",
        }
    }
}

/// A storage mode: which engines hold a replica's state.
///
/// `memwal` and `rocksdb` are *fused* modes: one engine holds both the log and the applied
/// state, and one write (one WAL record, one `WriteBatch`) carries an apply with its
/// applied index. The composed modes, spelled `LOG+STATE` (`raft-engine+rocksdb`,
/// `wal+redb`, ...), keep the log and the state machine in two engines, each syncing on
/// its own; `storage::composed` states what that guarantees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BackendKind {
    /// In-memory log and map, made durable by one write-ahead log (which also records
    /// applies) and snapshot files.
    Memwal,
    /// One RocksDB with column families for the log, raft metadata and the KV data
    /// (CockroachDB's layout).
    Rocksdb,
    /// A log engine and a state machine engine, composed.
    Composed(LogEngine, StateEngine),
    /// Not a raftbench engine: a real etcd cluster (its own raft, WAL and bbolt backend),
    /// driven over gRPC as a peer to compare against. The harness starts `etcd` members
    /// instead of raftbench nodes; a raftbench node refuses it.
    Etcd,
}

/// Every mode's name, in the order of [`BackendKind::ALL`].
const NAMES: [&str; 11] = [
    "memwal",
    "rocksdb",
    "wal+memory",
    "wal+rocksdb",
    "wal+redb",
    "rocksdb+memory",
    "rocksdb+rocksdb",
    "rocksdb+redb",
    "raft-engine+memory",
    "raft-engine+rocksdb",
    "raft-engine+redb",
];

impl BackendKind {
    /// Every mode this build knows, in a stable order: the two fused ones, then every log
    /// engine with every state machine.
    pub const ALL: [BackendKind; 11] = {
        let mut all = [BackendKind::Memwal; 11];
        all[1] = BackendKind::Rocksdb;
        let mut i = 0;
        while i < 9 {
            all[2 + i] = BackendKind::Composed(LogEngine::ALL[i / 3], StateEngine::ALL[i % 3]);
            i += 1;
        }
        all
    };

    /// The name used in files and on the command line.
    pub fn as_str(self) -> &'static str {
        let i = match self {
            BackendKind::Etcd => return "etcd",
            BackendKind::Memwal => 0,
            BackendKind::Rocksdb => 1,
            BackendKind::Composed(l, s) => 2 + 3 * l as usize + s as usize,
        };
        NAMES[i]
    }

    /// The log engine and state machine of a composed mode.
    pub fn composed(self) -> Option<(LogEngine, StateEngine)> {
        match self {
            BackendKind::Composed(l, s) => Some((l, s)),
            _ => None,
        }
    }

    /// Whether this is a peer system (etcd) rather than a raftbench storage mode.
    pub fn is_peer(self) -> bool {
        self == BackendKind::Etcd
    }

    /// Whether this mode needs RocksDB (a cargo feature).
    pub fn uses_rocksdb(self) -> bool {
        match self {
            BackendKind::Memwal | BackendKind::Etcd => false,
            BackendKind::Rocksdb => true,
            BackendKind::Composed(l, s) => l == LogEngine::Rocksdb || s == StateEngine::Rocksdb,
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
        if let Some(i) = NAMES.iter().position(|n| *n == s) {
            return Ok(BackendKind::ALL[i]);
        }
        if s == "etcd" {
            return Ok(BackendKind::Etcd);
        }
        let names = |it: &mut dyn Iterator<Item = &'static str>| it.collect::<Vec<_>>().join(", ");
        if let Some((log, state)) = s.split_once('+') {
            if !LogEngine::ALL.iter().any(|l| l.as_str() == log) {
                return Err(format!(
                    "unknown log engine {log:?} in {s:?}; log engines: {}",
                    names(&mut LogEngine::ALL.iter().map(|l| l.as_str()))
                ));
            }
            if !StateEngine::ALL.iter().any(|e| e.as_str() == state) {
                return Err(format!(
                    "unknown state machine {state:?} in {s:?}; state machines: {}",
                    names(&mut StateEngine::ALL.iter().map(|e| e.as_str()))
                ));
            }
        }
        Err(format!(
            "unknown storage mode {s:?}; expected memwal, rocksdb, or LOG+STATE with LOG one \
             of {} and STATE one of {} (for example raft-engine+rocksdb), or etcd (a real \
             etcd cluster as a peer)",
            names(&mut LogEngine::ALL.iter().map(|l| l.as_str())),
            names(&mut StateEngine::ALL.iter().map(|e| e.as_str()))
        ))
    }
}

impl Serialize for BackendKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A mode name, as [`BackendKind`]'s `FromStr` reads it.
impl schemars::JsonSchema for BackendKind {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "BackendKind".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A storage mode: memwal, rocksdb, etcd, or LOG+STATE (log: wal, raft-engine, rocksdb; state: memory, redb, rocksdb), e.g. raft-engine+redb"
        })
    }
}

impl<'de> Deserialize<'de> for BackendKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
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
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
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
    #[schemars(with = "String")]
    pub snapshot_write_rate: ByteSize,
    /// Options of the memwal engine (ignored by others).
    #[serde(default)]
    pub memwal: MemwalOptions,
    /// Options of the RocksDB engine (ignored by others).
    #[serde(default)]
    pub rocksdb: RocksdbOptions,
    /// Options of the raft-engine log engine (ignored by others).
    #[serde(default)]
    pub raft_engine: RaftEngineOptions,
    /// Options of the redb state machine (ignored by others).
    #[serde(default)]
    pub redb: RedbOptions,
    /// Options of etcd members (ignored by raftbench's engines).
    #[serde(default)]
    pub etcd: EtcdOptions,
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
            raft_engine: RaftEngineOptions::default(),
            redb: RedbOptions::default(),
            etcd: EtcdOptions::default(),
        }
    }

    /// The checks no single option can make: an option the mode cannot honour is refused
    /// rather than ignored, so a recorded configuration always means what it says.
    pub fn validate(&self) -> Result<(), String> {
        if self.kind == BackendKind::Etcd && self.fsync == FsyncPolicy::Never {
            return Err(
                "etcd always fsyncs its WAL (etcd 3.4 has no way to turn it off), so \
                 fsync = \"never\" cannot be honoured: use fsync = \"always\" for etcd"
                    .into(),
            );
        }
        if self.etcd.backend_batch_limit == 0 {
            return Err("etcd.backend_batch_limit must be at least 1".into());
        }
        if self.etcd.backend_batch_interval_ms == 0 {
            return Err("etcd.backend_batch_interval_ms must be at least 1".into());
        }
        if !self.rocksdb.state_wal
            && !matches!(self.kind.composed(), Some((_, StateEngine::Rocksdb)))
        {
            return Err(format!(
                "rocksdb.state_wal = false needs a mode whose state machine is RocksDB on its \
                 own (wal+rocksdb, rocksdb+rocksdb, raft-engine+rocksdb), not {}{}",
                self.kind,
                if self.kind == BackendKind::Rocksdb {
                    ": there the log and the state share one WAL"
                } else {
                    ""
                }
            ));
        }
        if self.rocksdb.max_background_jobs < 1 {
            return Err(format!(
                "rocksdb.max_background_jobs must be at least 1, got {}",
                self.rocksdb.max_background_jobs
            ));
        }
        if self.raft_engine.recovery_threads < 1 {
            return Err("raft_engine.recovery_threads must be at least 1, got 0".into());
        }
        if self.raft_engine.target_file_size.as_u64() < 1 << 20 {
            return Err(format!(
                "raft_engine.target_file_size {} is below 1 MiB",
                self.raft_engine.target_file_size
            ));
        }
        if self.raft_engine.purge_threshold < self.raft_engine.target_file_size {
            return Err(format!(
                "raft_engine.purge_threshold {} is below raft_engine.target_file_size {}",
                self.raft_engine.purge_threshold, self.raft_engine.target_file_size
            ));
        }
        Ok(())
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct MemwalOptions {
    /// A WAL segment is closed and a new one started once it reaches this size. Smaller
    /// segments let compaction free disk sooner; larger ones mean fewer files.
    #[schemars(with = "String")]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Lz4,
    Zstd,
}

/// RocksDB engine options. Defaults suit a 2-core, 24 GiB machine running three replicas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RocksdbOptions {
    /// Shared LRU block cache for all column families.
    #[schemars(with = "String")]
    pub block_cache_size: ByteSize,
    /// Bloom filter bits per key on the `kv` column family; 0 disables the filter.
    pub bloom_bits_per_key: u32,
    /// Compression of the `kv` column family (the log is never compressed: it is short-lived).
    pub compression: Compression,
    /// Memtable size per column family.
    #[schemars(with = "String")]
    pub write_buffer_size: ByteSize,
    /// Flush + compaction threads.
    pub max_background_jobs: i32,
    /// Whether the state machine's writes go through RocksDB's WAL, where RocksDB holds the
    /// state machine alone (`LOG+rocksdb`). `false`: applies live in memtables until
    /// RocksDB flushes them, so a crash loses the applies since the last flush and raft
    /// replays them from the log, which is durable on its own (YugabyteDB's choice, and
    /// one TiKV plans). Saves the state's WAL writes. Refused in other modes: in `rocksdb`
    /// the log shares the state's WAL.
    pub state_wal: bool,
}

impl Default for RocksdbOptions {
    fn default() -> Self {
        RocksdbOptions {
            block_cache_size: ByteSize::mib(512),
            bloom_bits_per_key: 10,
            compression: Compression::Lz4,
            write_buffer_size: ByteSize::mib(64),
            max_background_jobs: 2,
            state_wal: true,
        }
    }
}

/// raft-engine options (the log engine of `raft-engine+STATE` modes). Defaults are
/// raft-engine's own, except the purge threshold, sized for a benchmark machine running
/// three replicas rather than a TiKV store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RaftEngineOptions {
    /// A log file is sealed and a new one started at this size.
    #[schemars(with = "String")]
    pub target_file_size: ByteSize,
    /// Once the log files add up to this, purging starts: files whose entries are all
    /// compacted are deleted, and live entries of the oldest files are rewritten.
    #[schemars(with = "String")]
    pub purge_threshold: ByteSize,
    /// Write batches larger than this are LZ4-compressed (`0`: never).
    #[schemars(with = "String")]
    pub batch_compression_threshold: ByteSize,
    /// Reuse purged files instead of deleting them (needs format version 2, which is
    /// used when this is on).
    pub enable_log_recycle: bool,
    /// Threads that scan log files at open.
    pub recovery_threads: usize,
}

impl Default for RaftEngineOptions {
    fn default() -> Self {
        RaftEngineOptions {
            target_file_size: ByteSize::mib(128),
            purge_threshold: ByteSize::gib(1),
            batch_compression_threshold: ByteSize::kib(8),
            enable_log_recycle: true,
            recovery_threads: 2,
        }
    }
}

/// When a redb write transaction is made durable.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum RedbDurability {
    /// Not synced on commit (redb's `Durability::None`); made durable by the next durable
    /// commit, which raftbench makes before every snapshot and when the log is compacted
    /// past the last one. A crash loses the applies since; raft replays them from the log.
    #[default]
    None,
    /// Synced on commit (`Durability::Immediate`): every apply costs a sync.
    Immediate,
}

/// redb options (the state machine of `LOG+redb` modes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RedbOptions {
    /// redb's page cache.
    #[schemars(with = "String")]
    pub cache_size: ByteSize,
    /// Durability of the write transaction that carries each apply.
    pub apply_durability: RedbDurability,
}

impl Default for RedbOptions {
    fn default() -> Self {
        RedbOptions {
            cache_size: ByteSize::mib(256),
            apply_durability: RedbDurability::None,
        }
    }
}

/// Options of etcd members (`kind = "etcd"`), passed as etcd's own flags. Defaults are
/// etcd 3.4's, except the space quota: a long benchmark must not stop at etcd's 2 GiB
/// alarm (8 GiB is etcd's suggested maximum).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct EtcdOptions {
    /// The etcd executable: a path, or a name looked up on `PATH`.
    pub binary: String,
    /// `--backend-batch-interval`: the longest bbolt's write transaction stays open before
    /// it commits (an fsync of the db file). Writes are acknowledged from the WAL, before
    /// this commit.
    pub backend_batch_interval_ms: u64,
    /// `--backend-batch-limit`: the most writes one bbolt transaction takes before it
    /// commits.
    pub backend_batch_limit: u64,
    /// `--quota-backend-bytes`: the db size at which etcd raises its space alarm and
    /// refuses writes.
    #[schemars(with = "String")]
    pub quota_backend_bytes: ByteSize,
    /// `--auto-compaction-mode revision --auto-compaction-retention N`: keep the newest N
    /// revisions of the key space, compacting older ones in the background (`0`: keep
    /// every revision, etcd's default; raftbench's engines keep only the newest value).
    pub auto_compaction_retention: u64,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        EtcdOptions {
            binary: "etcd".into(),
            backend_batch_interval_ms: 100,
            backend_batch_limit: 10_000,
            quota_backend_bytes: ByteSize::gib(8),
            auto_compaction_retention: 0,
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
