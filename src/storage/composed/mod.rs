//! Composed storage modes (`LOG+STATE`): a raft log store and a state machine in two
//! engines, composed into one replica storage ([`ComposedBackend`]) that the raft loop
//! drives like any [`StorageBackend`](super::StorageBackend).
//!
//! This is how most production systems lay out a replica: TiKV keeps its raft log in
//! raft-engine (before 6.1, in a second RocksDB) and its state in RocksDB; etcd keeps a WAL
//! and a bbolt B+tree. The split follows openraft's `RaftLogStorage` / `RaftStateMachine`:
//! each half syncs on its own, and the composition decides the order of their writes so
//! that a crash between them is always recoverable.
//!
//! # The two halves
//!
//! - A [`LogStore`] holds raft's side: entries, the hard state, and the truncation point
//!   (the index and term the log starts after, moved by compaction and snapshot installs).
//! - A [`StateMachine`] holds the applied state: the key-value pairs, the applied index
//!   with its term, and the conf state, always changed together. The conf state lives
//!   here, not in the log store, because raft-rs restarts from the conf state *at the
//!   applied index*: kept in another engine it could be older or newer than the state it
//!   goes with after a crash.
//! - Snapshot files (`<dir>/snap`) belong to the composition: written from a state
//!   machine's point-in-time view, or received from the leader.
//!
//! # Guarantees across the two stores
//!
//! Let `t` be the log's truncation point, `L` its last index and `a` the state machine's
//! applied index.
//!
//! 1. **`t` never passes durable state.** The log is compacted only to an index whose
//!    state is durable elsewhere: a snapshot file (synced before it is adopted), or the
//!    state machine itself, synced first ([`StateMachine::sync`]); a state machine that
//!    cannot sync alone (memory) gets a snapshot file written first.
//! 2. **At open, `t ≤ a ≤ L`.** A state machine behind the newest snapshot file is restored
//!    from that file (this is how the memory state machine always comes back, and how a
//!    RocksDB state machine without its WAL does after a crash). A log that disagrees with
//!    the state above `t` — it ends before `a` (its tail lost under `fsync = "never"`), or
//!    has another term at `a` (a crash between an install's file and its log reset, when
//!    the install replaced a stale suffix; or a lost overwrite under `never` while the
//!    state that applied it was durable) — restarts empty at `a`, with `a`'s term: every
//!    applied entry was committed, so this is a state the cluster had. A state behind `t`
//!    with no snapshot file to cover it refuses the open.
//! 3. **Applies are not synced** by any state machine unless an option says so (redb's
//!    `apply_durability = "immediate"`): losing them is safe because the log holds every
//!    entry above `a` (1 and 2), and raft replays them.
//! 4. **A snapshot install is atomic.** The received snapshot's file is written and synced
//!    first, then the log restarts at its index (synced), then the state machine loads it.
//!    A crash before the file is durable leaves the replica as it was; after, open finds the
//!    file above `a` and completes the install (2).
//! 5. **A built snapshot reflects durable state**: under `fsync = "never"` the log is synced
//!    when the snapshot is begun, and the state machine syncs itself before its file is
//!    written, so a restart after compaction replays from the state machine, not the file.
//!    A view taken on the building thread (RocksDB's) may include applies made after the
//!    log sync, whose entries are not yet durable in the log under `never`: after a power
//!    cut the state is then ahead of the log, which 2 restarts at the state.

mod cached_log;
mod log_raft_engine;
#[cfg(feature = "rocksdb")]
mod log_rocks;
mod log_wal;
mod replica;
mod state_memory;
mod state_redb;
#[cfg(feature = "rocksdb")]
mod state_rocks;

use std::path::Path;

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState};

pub use replica::ComposedBackend;

use super::snapfile::PairSink;
use super::snapshots::BuiltSnapshot;
use super::{KvReader, Result, StorageError};
use crate::kv::KvCommand;

/// One write to a [`LogStore`], atomic: after a crash either all of it is visible or none.
pub struct LogWrite<'a> {
    /// Restart the log empty after `(index, term)`, dropping every entry (a snapshot install).
    pub reset: Option<(u64, u64)>,
    /// Entries to append (after the reset, if any). An entry at or below the last index
    /// replaces it and everything after it. The composition has checked that they are
    /// contiguous, start above the truncation point and leave no gap.
    pub entries: &'a [Entry],
    /// A new hard state.
    pub hard_state: Option<&'a HardState>,
    /// Sync before returning (otherwise the write has reached the OS: it survives a process
    /// crash, not a power cut).
    pub sync: bool,
}

/// What a log store did at open.
#[derive(Debug, Clone, Default)]
pub struct LogOpened {
    /// Time spent reading the log back (replay, or the engine's own recovery).
    pub replay_ms: f64,
    /// Records or batches read back, where the engine tells.
    pub replayed_records: u64,
    /// Entries read back, where the engine tells.
    pub replayed_entries: u64,
    /// Bytes of a torn tail cut off.
    pub torn_bytes: u64,
}

/// A raft log store: raft's `Storage` side of a replica (entries, hard state, truncation
/// point), in one engine.
///
/// Ordering: writes are totally ordered, and after a crash the store holds a prefix of
/// them that includes every synced one. Reads reflect every write that has returned.
pub trait LogStore: Send {
    /// The current hard state (default for a fresh store).
    fn hard_state(&self) -> &HardState;
    /// The truncation point `(index, term)`: the log holds `index + 1 ..= last_index()`.
    fn truncated(&self) -> (u64, u64);
    /// Index of the last entry, or the truncation point when the log is empty.
    fn last_index(&self) -> u64;
    /// The term of entry `idx`, for `truncated().0 < idx <= last_index()`.
    fn term(&self, idx: u64) -> Result<u64>;
    /// Entries `low..high` (within the log), stopping once their encoded size passes
    /// `max_size`, but always at least one.
    fn entries(&self, low: u64, high: u64, max_size: Option<u64>) -> Result<Vec<Entry>>;
    /// Apply `w` as one atomic write (see [`LogWrite`]); synced when `w.sync`.
    fn write(&mut self, w: LogWrite<'_>) -> Result<()>;
    /// Drop the entries up to `up_to` (whose term is `term`), which becomes the truncation
    /// point. The new truncation point is written no later than the deletion; synced when
    /// `sync`. The composition checks `truncated().0 < up_to <= last_index()`.
    fn compact(&mut self, up_to: u64, term: u64, sync: bool) -> Result<()>;
    /// Make every write so far durable.
    fn sync(&mut self) -> Result<()>;
    /// Memory the store holds (caches, indexes, buffers).
    fn memory_bytes(&self) -> u64;
    /// Bytes the engine wrote flushing and compacting, as [`StateMachine::engine_writes`].
    fn engine_writes(&self) -> (u64, u64) {
        (0, 0)
    }
    /// What opening it cost.
    fn opened(&self) -> LogOpened;
}

/// The applied index, its term and the conf state as of that index: what a state machine
/// changes atomically with its data.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Applied {
    pub index: u64,
    pub term: u64,
    pub conf_state: ConfState,
}

impl Applied {
    /// The encoding state machines store it under: index and term (big-endian `u64`s),
    /// then the conf state (protobuf).
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut v = Vec::with_capacity(32);
        v.extend_from_slice(&self.index.to_be_bytes());
        v.extend_from_slice(&self.term.to_be_bytes());
        v.extend_from_slice(
            &self
                .conf_state
                .write_to_bytes()
                .map_err(StorageError::codec("conf state"))?,
        );
        Ok(v)
    }

    /// Decode [`Self::encode`]'s bytes, read from `file`.
    pub fn decode(b: &[u8], file: &Path) -> Result<Self> {
        if b.len() < 16 {
            return Err(StorageError::corrupt(
                file,
                0,
                format!(
                    "applied index record of {} bytes, expected at least 16",
                    b.len()
                ),
            ));
        }
        let conf_state = ConfState::parse_from_bytes(&b[16..])
            .map_err(|e| StorageError::corrupt(file, 0, format!("applied conf state: {e}")))?;
        Ok(Applied {
            index: u64::from_be_bytes(b[..8].try_into().expect("8 bytes")),
            term: u64::from_be_bytes(b[8..16].try_into().expect("8 bytes")),
            conf_state,
        })
    }
}

/// Writes a snapshot file from a view: given what the view is at and a function pushing
/// every pair of it (ascending keys) to a sink, it returns the built snapshot.
pub type SnapshotWriter<'a> = &'a mut dyn FnMut(
    &Applied,
    &mut dyn FnMut(&mut PairSink<'_>) -> Result<()>,
) -> Result<BuiltSnapshot>;

/// A handle to build a snapshot from a state machine on another thread.
pub trait StateView: Send {
    /// Fix a point-in-time view (at [`StateMachine::view`] for engines whose views are
    /// cheap to hold, on the building thread for engines whose views borrow the engine,
    /// RocksDB's), make the state machine durable at least up to it, then hand it to
    /// `write`. Durable first, so that a snapshot file never holds state a restart could
    /// lose behind it (guarantee 5).
    fn build(&self, write: SnapshotWriter<'_>) -> Result<BuiltSnapshot>;
}

/// The applied key-value state of a replica, in one engine.
///
/// Ordering: an apply or install is visible to readers when it returns, whole or not at
/// all. Durability: see each method; nothing is synced unless it says so.
pub trait StateMachine: Send {
    /// What the state is at.
    fn applied(&self) -> &Applied;
    /// Apply `commands`, the effects of the entries up to `index` (of term `term`), and the
    /// new conf state when a conf change is among them, atomically. Not synced (unless an
    /// engine option says so): losing it is safe, raft replays the entries.
    fn apply(
        &mut self,
        index: u64,
        term: u64,
        commands: &[KvCommand],
        conf_state: Option<&ConfState>,
    ) -> Result<()>;
    /// Replace the whole state with `pairs` (ascending keys) at `applied`, atomically. Not
    /// synced: the snapshot file it came from is durable.
    fn install(
        &mut self,
        pairs: &mut dyn Iterator<Item = (&[u8], &[u8])>,
        applied: Applied,
    ) -> Result<()>;
    /// Whether an apply that returned survives a process restart without [`Self::sync`]
    /// (it reached the OS, as RocksDB's WAL does).
    fn applies_survive_restart(&self) -> bool;
    /// Set the conf state directly, at the current applied index.
    fn set_conf_state(&mut self, cs: &ConfState) -> Result<()>;
    /// Make the state durable as it is now. `Ok(false)` when the engine cannot (memory):
    /// the composition then writes a snapshot file instead.
    fn sync(&mut self) -> Result<bool>;
    /// A handle to build a snapshot at the current applied index or later, cheap to take
    /// (no scan).
    fn view(&self) -> Result<Box<dyn StateView>>;
    /// A handle reading the state from any thread.
    fn reader(&self) -> KvReader;
    /// Number of keys (estimated where the engine estimates).
    fn kv_keys(&self) -> u64;
    /// Memory the engine holds.
    fn memory_bytes(&self) -> u64;
    /// Bytes the engine wrote flushing memtables and compacting since it opened (RocksDB's
    /// statistics; `(0, 0)` for engines without either).
    fn engine_writes(&self) -> (u64, u64) {
        (0, 0)
    }
}
