//! Pluggable storage engines for one raft replica.
//!
//! A backend holds both halves of a replica's durable state — the raft log (with hard state,
//! conf state and truncation point) and the applied key-value state machine — in one engine,
//! so each engine's real costs (fsync, write amplification, memory, recovery) show up in
//! benchmarks. [`StorageBackend`] is the contract; [`open_backend`] opens the engine a
//! [`BackendConfig`] names and returns an [`AnyBackend`].
//!
//! # Ordering and durability, for every backend
//!
//! - All writes of one backend are totally ordered. After a crash the surviving state is the
//!   result of a *prefix* of the writes, and that prefix includes every write up to the last
//!   synced one.
//! - Under `fsync = "always"`, [`StorageBackend::persist`] syncs whenever raft requires it
//!   (entries, a snapshot, or a new term/vote) before returning; commit-only hard-state
//!   updates, applies and conf states are written but not synced — raft re-delivers anything
//!   lost with them. Under `fsync = "never"` the write path (entries, hard states, applies)
//!   is not synced, but every write has reached the OS before its method returns, so a
//!   `kill -9` loses nothing; a power cut loses what came after the engine's last sync.
//! - Under both policies, the rare writes a replica could not recover without are synced
//!   before they return: a snapshot install (`persist` with a snapshot), a built snapshot
//!   (with everything it reflects, see `begin_snapshot`) and `set_conf_state`.

pub mod composed;
pub mod conformance;
pub mod datadir;
mod error;
pub mod inspect;
pub mod memlog;
pub mod memwal;
#[cfg(feature = "rocksdb")]
pub mod rocks;
pub mod snapfile;
pub mod snapshot_data;
pub mod snapshots;
pub mod stress;

use std::sync::Arc;

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState};

pub use crate::wire::backend::{
    BackendConfig, BackendKind, Compression, FsyncPolicy, LogEngine, MemwalOptions,
    RaftEngineOptions, RedbDurability, RedbOptions, RocksdbOptions, StateEngine,
};
pub use crate::wire::status::{BackendStats, OpenReport};
pub use error::{Result, StorageError};
pub use snapshots::{BuiltSnapshot, Finished, SnapshotJob};

use crate::kv::KvCommand;

/// Storage of one raft replica: raft's read side ([`raft::Storage`]) plus the writes a raft
/// loop makes, for both the log and the applied key-value state.
///
/// The raft loop owns the backend (`&mut self` for writes). Other threads read the applied
/// state through a [`KvReader`] without waiting for the raft loop's fsyncs.
pub trait StorageBackend: raft::Storage + Send + 'static {
    /// Which engine this is.
    fn kind(&self) -> BackendKind;

    /// The configuration it was opened with.
    fn config(&self) -> &BackendConfig;

    /// Persist one `Ready`: an optional snapshot to install, entries to append, and an
    /// optional new hard state — as **one atomic write**.
    ///
    /// - A snapshot replaces the KV state with its data, sets the applied index and the
    ///   truncation point to its index, drops the whole log, and adopts its conf state.
    /// - Entries are appended after it; entries that conflict with the stored log truncate
    ///   the old suffix. Entries starting below `first_index()` or leaving a gap after
    ///   `last_index() + 1` are refused with [`StorageError::Invalid`] and nothing is written.
    /// - Durability: under `fsync = "always"` the write is synced before returning when it
    ///   carries a snapshot, entries, or a changed term/vote (raft's `must_sync`); under
    ///   `"never"`, only when it carries a snapshot. A commit-only hard state is written
    ///   unsynced.
    fn persist(
        &mut self,
        snapshot: Option<&Snapshot>,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> Result<()>;

    /// Store the conf state directly (bootstrapping a fresh replica). Synced under every
    /// fsync policy. Conf changes applied from the log go through [`Self::apply`].
    fn set_conf_state(&mut self, cs: &ConfState) -> Result<()>;

    /// Apply `commands` (the effects of entries up to and including `index`) and, when a conf
    /// change is among them, the resulting `conf_state`, then set the applied index to
    /// `index` — **atomically**: after a crash either all of it is visible or none.
    ///
    /// Ordering: visible to readers when this returns. Durability: not synced by itself; it
    /// becomes durable with the next synced write. Losing it is safe because raft re-delivers
    /// entries above the durable applied index on restart.
    ///
    /// `index` must be above the applied index (or equal, with nothing to apply) and at most
    /// `last_index()`.
    fn apply(
        &mut self,
        index: u64,
        commands: &[KvCommand],
        conf_state: Option<&ConfState>,
    ) -> Result<()>;

    /// Whether applies survive a restart (a clean close, or `kill -9`) without a sync.
    /// Fused engines write every apply to the OS before returning, so they do. A state
    /// machine that keeps applies in memory until it syncs (composed modes with `memory`,
    /// redb, or RocksDB without its WAL) comes back at an older applied index, never below
    /// the log's truncation point, and raft re-applies the entries above it: a longer
    /// recovery, not a loss.
    fn applies_survive_restart(&self) -> bool {
        true
    }

    /// A cheap, cloneable handle reading the applied state from any thread.
    fn reader(&self) -> KvReader;

    /// Read `key` from the applied state.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.reader().get(key)
    }

    /// Index of the last applied entry (0 for a fresh replica).
    fn applied_index(&self) -> u64;

    /// Start a snapshot of the applied state (real data in the shared [`snapshot_data`]
    /// format), to be built off the raft thread ([`snapshots`] describes the three steps).
    ///
    /// This step is cheap (a point-in-time view; no scan of the state). The built snapshot
    /// is at an applied index at least [`SnapshotJob::applied_at_begin`], with that index's
    /// term and conf state. Durability (under every fsync policy): everything the snapshot
    /// will reflect is synced by the time the job has run, even the applies that are
    /// otherwise written unsynced, so the snapshot is never ahead of the durable log; the
    /// job's file is durable when it returns. The replica's own state is not changed until
    /// [`Self::finish_snapshot`]. One job at a time: begin the next after finishing this one.
    fn begin_snapshot(&mut self) -> Result<SnapshotJob>;

    /// Adopt a snapshot built by a [`SnapshotJob`] of this backend: it becomes what
    /// `raft::Storage::snapshot` returns and the durable base from which the log may be
    /// compacted up to its index; older snapshot files (and what else it makes obsolete)
    /// are deleted ([`Finished::Adopted`]). The snapshot the replica already has is left
    /// as it is ([`Finished::Current`]); one older than the replica's newest (a snapshot
    /// installed from the leader while it was built) is discarded with its file
    /// ([`Finished::Superseded`]).
    fn finish_snapshot(&mut self, built: BuiltSnapshot) -> Result<Finished>;

    /// Whether raft asked for a snapshot (`raft::Storage::snapshot`, to send to a follower)
    /// that this backend did not have, since the last call. The raft loop then begins one.
    fn snapshot_wanted(&self) -> bool;

    /// Build a snapshot at once, on the calling thread: [`Self::begin_snapshot`], run,
    /// [`Self::finish_snapshot`]. For tests and tools; the raft loop builds off its thread.
    fn create_snapshot(&mut self) -> Result<Snapshot> {
        let built = self.begin_snapshot()?.run()?;
        let snap = built.snapshot.clone();
        self.finish_snapshot(built)?;
        Ok(snap)
    }

    /// Discard log entries with index `<= up_to`; `first_index()` becomes `up_to + 1` and
    /// `term(up_to)` stays answerable. The truncation point is recorded before any entry is
    /// deleted. Compacting at or below the current truncation point is a no-op; beyond the
    /// applied index (entries still needed) is refused.
    ///
    /// Durability: the new truncation point is written before (or atomically with) the
    /// removal of the entries it covers, and under `fsync = "always"` it is synced before any
    /// of them leave the disk. The compaction itself may stay unsynced: losing it only leaves
    /// a longer log.
    fn compact(&mut self, up_to: u64) -> Result<()>;

    /// Sizes and positions, for `/status` and capacity planning.
    fn stats(&self) -> BackendStats;

    /// What opening this backend cost.
    fn open_report(&self) -> OpenReport;
}

/// Read access to the applied key-value state, shareable across threads.
pub trait KvRead: Send + Sync {
    /// The value of `key` in the applied state, if any. Ordering: reflects at least every
    /// apply (and snapshot install) that has returned.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Index of the last applied entry visible to [`KvRead::get`].
    fn applied_index(&self) -> u64;
    /// Every pair of the applied state, in ascending key order, as of one applied index
    /// (a consistent view). O(state): for tests, checks and tools, not the request path.
    fn scan(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;
}

/// A cloneable handle on a backend's applied state (see [`KvRead`]).
#[derive(Clone)]
pub struct KvReader(Arc<dyn KvRead>);

impl KvReader {
    /// Wrap a reader implementation.
    pub fn new(inner: Arc<dyn KvRead>) -> Self {
        KvReader(inner)
    }
    /// See [`KvRead::get`].
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.0.get(key)
    }
    /// See [`KvRead::applied_index`].
    pub fn applied_index(&self) -> u64 {
        self.0.applied_index()
    }
    /// See [`KvRead::scan`].
    pub fn scan(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.0.scan()
    }
}

/// Any backend this build supports, as one concrete type: `raft::Storage` has generic
/// methods, so backends cannot be trait objects; the raft loop is generic over
/// [`StorageBackend`] and this enum is what configuration-driven code instantiates it with.
pub enum AnyBackend {
    Memwal(memwal::MemwalBackend),
    Composed(composed::ComposedBackend),
    #[cfg(feature = "rocksdb")]
    Rocksdb(rocks::RocksBackend),
}

/// Open (or create) the backend `config` names.
///
/// Refuses a data directory made by another backend or a newer format version, or a
/// non-empty directory that is not a raftbench data directory; nothing is overwritten.
pub fn open_backend(config: &BackendConfig) -> Result<AnyBackend> {
    config.validate().map_err(StorageError::Config)?;
    #[cfg(not(feature = "rocksdb"))]
    if config.kind.uses_rocksdb() {
        return Err(StorageError::Config(format!(
            "{} needs RocksDB, and this build of raftbench has none (cargo feature `rocksdb`)",
            config.kind
        )));
    }
    let rate = config.snapshot_write_rate.as_u64();
    if rate != 0 && rate < 1 << 20 {
        return Err(StorageError::Config(format!(
            "snapshot_write_rate {} is below 1 MiB a second: a snapshot would take hours (0 \
             means no limit)",
            config.snapshot_write_rate
        )));
    }
    match config.kind {
        BackendKind::Memwal => Ok(AnyBackend::Memwal(memwal::MemwalBackend::open(
            config.clone(),
        )?)),
        #[cfg(feature = "rocksdb")]
        BackendKind::Rocksdb => Ok(AnyBackend::Rocksdb(rocks::RocksBackend::open(
            config.clone(),
        )?)),
        #[cfg(not(feature = "rocksdb"))]
        BackendKind::Rocksdb => unreachable!("refused above"),
        BackendKind::Composed(..) => Ok(AnyBackend::Composed(composed::ComposedBackend::open(
            config.clone(),
        )?)),
        BackendKind::Etcd => Err(StorageError::Config(
            "etcd is a peer system the harness runs (its own members, started from the etcd \
             binary), not a raftbench storage engine: a raftbench node cannot run it"
                .into(),
        )),
    }
}

/// Call `$body` with `$b` bound to the inner backend of an [`AnyBackend`].
macro_rules! dispatch {
    ($self:expr, $b:ident => $body:expr) => {
        match $self {
            AnyBackend::Memwal($b) => $body,
            AnyBackend::Composed($b) => $body,
            #[cfg(feature = "rocksdb")]
            AnyBackend::Rocksdb($b) => $body,
        }
    };
}

impl raft::Storage for AnyBackend {
    fn initial_state(&self) -> raft::Result<RaftState> {
        dispatch!(self, b => b.initial_state())
    }
    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let max_size = max_size.into();
        dispatch!(self, b => b.entries(low, high, max_size, context))
    }
    fn term(&self, idx: u64) -> raft::Result<u64> {
        dispatch!(self, b => b.term(idx))
    }
    fn first_index(&self) -> raft::Result<u64> {
        dispatch!(self, b => b.first_index())
    }
    fn last_index(&self) -> raft::Result<u64> {
        dispatch!(self, b => b.last_index())
    }
    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        dispatch!(self, b => b.snapshot(request_index, to))
    }
}

impl StorageBackend for AnyBackend {
    fn kind(&self) -> BackendKind {
        dispatch!(self, b => b.kind())
    }
    fn config(&self) -> &BackendConfig {
        dispatch!(self, b => b.config())
    }
    fn persist(
        &mut self,
        snapshot: Option<&Snapshot>,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> Result<()> {
        dispatch!(self, b => b.persist(snapshot, entries, hard_state))
    }
    fn set_conf_state(&mut self, cs: &ConfState) -> Result<()> {
        dispatch!(self, b => b.set_conf_state(cs))
    }
    fn apply(
        &mut self,
        index: u64,
        commands: &[KvCommand],
        conf_state: Option<&ConfState>,
    ) -> Result<()> {
        dispatch!(self, b => b.apply(index, commands, conf_state))
    }
    fn reader(&self) -> KvReader {
        dispatch!(self, b => b.reader())
    }
    fn applies_survive_restart(&self) -> bool {
        dispatch!(self, b => b.applies_survive_restart())
    }
    fn applied_index(&self) -> u64 {
        dispatch!(self, b => b.applied_index())
    }
    fn begin_snapshot(&mut self) -> Result<SnapshotJob> {
        dispatch!(self, b => b.begin_snapshot())
    }
    fn finish_snapshot(&mut self, built: BuiltSnapshot) -> Result<Finished> {
        dispatch!(self, b => b.finish_snapshot(built))
    }
    fn snapshot_wanted(&self) -> bool {
        dispatch!(self, b => b.snapshot_wanted())
    }
    fn compact(&mut self, up_to: u64) -> Result<()> {
        dispatch!(self, b => b.compact(up_to))
    }
    fn stats(&self) -> BackendStats {
        dispatch!(self, b => b.stats())
    }
    fn open_report(&self) -> OpenReport {
        dispatch!(self, b => b.open_report())
    }
}

/// Whether persisting `new` over `old` must be synced: raft's `must_sync` rule — a new term
/// or vote must be durable before any message that depends on it leaves the node; a commit
/// index alone may be lost (it is re-learned from the leader).
pub(crate) fn hard_state_needs_sync(old: &HardState, new: &HardState) -> bool {
    old.term != new.term || old.vote != new.vote
}

/// Validate a protobuf snapshot's data and metadata before installing it.
pub(crate) fn check_snapshot(snap: &Snapshot) -> Result<snapshot_data::SnapshotData<'_>> {
    let meta = snap.get_metadata();
    if meta.index == 0 {
        return Err(StorageError::Invalid("snapshot with index 0".into()));
    }
    let data = snapshot_data::SnapshotData::parse(&snap.data)?;
    if data.applied_index != meta.index {
        return Err(StorageError::SnapshotData(format!(
            "data is at applied index {} but metadata says {}",
            data.applied_index, meta.index
        )));
    }
    Ok(data)
}

/// Build a protobuf snapshot from a sealed data blob and its metadata.
pub(crate) fn make_snapshot(index: u64, term: u64, cs: &ConfState, data: Vec<u8>) -> Snapshot {
    let mut snap = Snapshot::default();
    snap.data = data.into();
    let meta = snap.mut_metadata();
    meta.index = index;
    meta.term = term;
    meta.set_conf_state(cs.clone());
    snap
}

/// The argument checks of [`StorageBackend::apply`], shared by the backends.
pub(crate) fn check_apply(
    applied: u64,
    last_index: u64,
    index: u64,
    commands: &[KvCommand],
    conf_state: Option<&ConfState>,
) -> Result<()> {
    if index < applied || (index == applied && (!commands.is_empty() || conf_state.is_some())) {
        return Err(StorageError::Invalid(format!(
            "apply at index {index} does not move past the applied index {applied}"
        )));
    }
    if index > last_index {
        return Err(StorageError::Invalid(format!(
            "apply at index {index} is past the last log index {last_index}"
        )));
    }
    Ok(())
}

/// The argument check of [`StorageBackend::compact`] shared by the backends: entries that
/// are not applied yet are still needed.
pub(crate) fn check_compact(applied: u64, up_to: u64) -> Result<()> {
    if up_to > applied {
        return Err(StorageError::Invalid(format!(
            "compact to {up_to} would drop entries above the applied index {applied}"
        )));
    }
    Ok(())
}
