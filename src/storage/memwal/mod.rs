//! The memwal backend: the whole raft log and KV map in memory, made durable by an
//! append-only write-ahead log ([`wal`]) and checksummed snapshot files ([`snapfile`]).
//!
//! Directory layout: `RAFTBENCH` (marker), `wal/<seq>.wal` (segments), `snap/snap-<index>.snap`.
//!
//! **Open** (`recover.rs`) loads the newest snapshot file (the KV state at its index), then
//! replays every WAL segment in order: `State` records restore hard state, conf state and
//! truncation point; `Persist` records rebuild the log; `Apply` records above the snapshot's
//! index rebuild the map, up to the first hole in them (each names the first index it
//! applies, so a lost one is seen; raft re-applies the rest from the log). A torn tail of the last segment is cut off with a warning; any
//! other damage refuses the open with file and offset. Writing then continues in a new
//! segment.
//!
//! **Snapshots received from the leader** are written as `snap-<i>.pending` first, then the
//! WAL `Persist` record that names them; only then is the file renamed to `.snap`. Replay
//! adopts a pending file only when it finds its marker, so a crash in between leaves the
//! replica exactly as before the install.
//!
//! This file holds the running backend; recovery lives in `recover.rs`.

#[cfg(test)]
mod power_loss;
pub(crate) mod record;
mod recover;
pub mod wal;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::RwLock;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState};
use tracing::warn;

use self::record::{RecordType, StateRecord};
use self::wal::WalWriter;
use super::memlog::MemLog;
use super::snapfile;
use super::snapshot_data::SnapshotData;
use super::snapshots::{self, BuiltSnapshot, Finished, SnapshotCache, SnapshotJob};
use super::{
    BackendConfig, BackendKind, BackendStats, KvRead, KvReader, OpenReport, Result, StorageBackend,
    StorageError, check_apply, check_compact, check_snapshot, datadir, hard_state_needs_sync,
};
use crate::kv::KvCommand;

/// On-disk format version of memwal directories.
pub const FORMAT_VERSION: u32 = 1;

/// Bytes of bookkeeping we charge per map entry in memory estimates.
const MAP_ENTRY_OVERHEAD: u64 = 64;

/// The applied KV map: a persistent B-tree, so that a snapshot can take a point-in-time
/// view of it in O(1) (a clone shares every node; a later write copies only the nodes on its
/// path that the view still shares) and write it out on another thread.
type KvMap = imbl::OrdMap<Bytes, Bytes>;

/// The applied state, shared with readers on other threads.
///
/// Ordering: the raft loop changes the map and stores the applied index while holding the
/// write lock, so a reader sees each apply (or snapshot install) whole or not at all, and a
/// reader that has seen applied index `i` reads a map holding at least the effects up to `i`.
struct Shared {
    map: RwLock<KvMap>,
    applied: AtomicU64,
}

impl Shared {
    fn new(map: KvMap, applied: u64) -> Arc<Self> {
        Arc::new(Shared {
            map: RwLock::new(map),
            applied: AtomicU64::new(applied),
        })
    }
}

impl KvRead for Shared {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.map.read().get(key).map(|v| v.to_vec()))
    }
    fn scan(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let view = self.map.read().clone();
        Ok(view.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect())
    }
    fn applied_index(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }
}

/// memwal: in-memory log + map over a write-ahead log. See the module docs.
pub struct MemwalBackend {
    config: BackendConfig,
    wal_dir: PathBuf,
    snap_dir: PathBuf,
    wal: WalWriter,
    log: MemLog,
    hard_state: HardState,
    conf_state: ConfState,
    shared: Arc<Shared>,
    /// Bytes of keys + values in the map (plus per-entry overhead).
    kv_bytes: u64,
    snapshot_index: u64,
    /// The newest snapshot (built or installed), which raft sends to followers.
    snapshots: SnapshotCache,
    open_report: OpenReport,
}

impl MemwalBackend {
    /// The WAL directory (for tests and tools that inspect segments).
    pub fn wal_dir(&self) -> &Path {
        &self.wal_dir
    }

    /// Number of WAL segment files currently on disk.
    pub fn segment_count(&self) -> usize {
        self.wal.segment_count()
    }

    /// The replica's state as a `State` record, which opens every new segment so that the
    /// older ones can be deleted without losing it.
    fn state_record(&self) -> StateRecord {
        let (ti, tt) = self.log.truncated();
        StateRecord {
            hard_state: self.hard_state.clone(),
            conf_state: self.conf_state.clone(),
            applied_index: self.applied_index(),
            truncated_index: ti,
            truncated_term: tt,
            snapshot_index: self.snapshot_index,
        }
    }

    /// Append one WAL record, first rotating to a new segment when the current one is full.
    ///
    /// Ordering and durability: records reach the OS in call order, one `write` each; with
    /// `sync` the record is durable when this returns. A rotation seals the full segment
    /// (synced under every policy) before the next one is started.
    fn append_record(
        &mut self,
        rtype: RecordType,
        encode: impl FnOnce(&mut Vec<u8>),
        sync: bool,
    ) -> Result<()> {
        if self.wal.needs_rotation() {
            let state = self.state_record();
            self.wal.rotate(&state)?;
            self.delete_obsolete_segments()?;
        }
        self.wal.append(rtype, encode, sync)
    }

    /// Delete the sealed segments replay no longer needs (see [`WalWriter::delete_obsolete`],
    /// which syncs the WAL before any file disappears).
    fn delete_obsolete_segments(&mut self) -> Result<usize> {
        self.wal
            .delete_obsolete(self.log.truncated().0, self.snapshot_index)
    }
}

/// Load a shared-format blob into `map`, replacing its contents.
fn load_snapshot_data(map: &mut KvMap, data: &[u8], meta: &SnapshotMetadata) -> Result<()> {
    let parsed = SnapshotData::parse(data)?;
    if parsed.applied_index != meta.index {
        return Err(StorageError::SnapshotData(format!(
            "data is at applied index {} but metadata says {}",
            parsed.applied_index, meta.index
        )));
    }
    *map = parsed
        .iter()
        .map(|(k, v)| (Bytes::copy_from_slice(k), Bytes::copy_from_slice(v)))
        .collect();
    Ok(())
}

/// Delete final snapshot files older than `keep`.
fn remove_snapshots_below(dir: &Path, keep: u64) -> Result<()> {
    for i in snapfile::list(dir)?.finals {
        if i < keep {
            let p = snapfile::final_path(dir, i);
            datadir::discard(&p, &datadir::trash_dir(dir.parent().unwrap_or(dir)))?;
        }
    }
    Ok(())
}

/// Apply `commands` to the map, keeping `kv_bytes` (the map's estimated footprint) in step.
/// Saturating: replay counts from zero and recomputes the total afterwards, and an
/// overwrite or delete of a key loaded from the snapshot would otherwise underflow.
fn apply_commands(map: &mut KvMap, commands: &[KvCommand], kv_bytes: &mut u64) {
    for c in commands {
        match c {
            KvCommand::Put { key, value } => {
                let add = (key.len() + value.len()) as u64 + MAP_ENTRY_OVERHEAD;
                let old = map.insert(Bytes::copy_from_slice(key), Bytes::copy_from_slice(value));
                if let Some(old) = old {
                    *kv_bytes = kv_bytes
                        .saturating_sub((key.len() + old.len()) as u64 + MAP_ENTRY_OVERHEAD);
                }
                *kv_bytes += add;
            }
            KvCommand::Delete { key } => {
                if let Some(old) = map.remove(&key[..]) {
                    *kv_bytes = kv_bytes
                        .saturating_sub((key.len() + old.len()) as u64 + MAP_ENTRY_OVERHEAD);
                }
            }
        }
    }
}

impl raft::Storage for MemwalBackend {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.log.entries(low, high, max_size.into())
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.log.term(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.log.first_index())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.log.last_index())
    }

    /// The newest built or installed snapshot (O(1): it maps its file), when it is at
    /// least at `request_index` and at the log's truncation point (a follower given an
    /// older one could not catch up from the log); otherwise "temporarily unavailable",
    /// and [`StorageBackend::snapshot_wanted`] asks the raft loop to build one.
    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        self.snapshots
            .serve(request_index.max(self.log.truncated().0), to)
    }
}

impl StorageBackend for MemwalBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Memwal
    }

    fn config(&self) -> &BackendConfig {
        &self.config
    }

    /// See [`StorageBackend::persist`]. A snapshot is written as a pending file (synced)
    /// before the one `Persist` WAL record that names it, and renamed to its final name only
    /// after that record is synced: a crash or power loss at any point leaves the replica
    /// before or after the whole `Ready`, never in between. A snapshot install is synced
    /// under every fsync policy (it is rare, and a half-durable install could not be
    /// recovered); entries and hard states follow the policy.
    fn persist(
        &mut self,
        snapshot: Option<&Snapshot>,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> Result<()> {
        // Validate everything before writing anything.
        let snap = match snapshot {
            Some(s) => {
                let data = check_snapshot(s)?;
                let m = s.get_metadata();
                if m.index < self.log.first_index() {
                    return Err(StorageError::SnapshotOutOfDate {
                        index: m.index,
                        first_index: self.log.first_index(),
                    });
                }
                MemLog::new(m.index, m.term).check_append(entries)?;
                Some((s, data))
            }
            None => {
                self.log.check_append(entries)?;
                None
            }
        };
        if snap.is_none() && entries.is_empty() && hard_state.is_none() {
            return Ok(());
        }
        let sync = snap.is_some()
            || (self.config.fsync.sync()
                && (!entries.is_empty()
                    || hard_state.is_some_and(|hs| hard_state_needs_sync(&self.hard_state, hs))));

        if let Some((s, _)) = &snap {
            let m = s.get_metadata();
            snapfile::write(&snapfile::pending_path(&self.snap_dir, m.index), m, &s.data)?;
        }
        let meta = snap.as_ref().map(|(s, _)| s.get_metadata());
        self.append_record(
            RecordType::Persist,
            |buf| record::encode_persist(buf, meta, entries, hard_state),
            sync,
        )?;

        if let Some((s, data)) = snap {
            let m = s.get_metadata();
            let pending = snapfile::pending_path(&self.snap_dir, m.index);
            let fin = snapfile::final_path(&self.snap_dir, m.index);
            // The WAL already says the snapshot is installed: if finishing fails, memory no
            // longer matches the disk, so refuse further writes until a reopen.
            let finish = std::fs::rename(&pending, &fin)
                .map_err(StorageError::io("rename", &pending))
                .and_then(|()| datadir::sync_dir(&self.snap_dir));
            if let Err(e) = finish {
                self.wal.poison();
                return Err(e);
            }
            let mut kv_bytes = 0;
            let map: KvMap = data
                .iter()
                .map(|(k, v)| {
                    kv_bytes += (k.len() + v.len()) as u64 + MAP_ENTRY_OVERHEAD;
                    (Bytes::copy_from_slice(k), Bytes::copy_from_slice(v))
                })
                .collect();
            {
                let mut guard = self.shared.map.write();
                *guard = map;
                self.shared.applied.store(m.index, Ordering::Release);
            }
            self.kv_bytes = kv_bytes;
            self.conf_state = m.get_conf_state().clone();
            self.log.reset(m.index, m.term);
            self.snapshot_index = m.index;
            self.wal.note_apply(m.index);
            if let Err(e) = remove_snapshots_below(&self.snap_dir, m.index) {
                warn!("could not delete old snapshots: {e}");
            }
            // Keep the installed snapshot for followers that need it, mapped from its file
            // rather than held in the heap.
            self.snapshots = SnapshotCache::from_file(&fin);
        }
        self.log.append(entries);
        if let Some(last) = entries.last() {
            self.wal.note_entries(last.index);
        }
        if let Some(hs) = hard_state {
            self.hard_state = hs.clone();
        }
        Ok(())
    }

    /// See [`StorageBackend::set_conf_state`]: one `ConfState` WAL record, synced under
    /// every policy (it bootstraps a replica: without it a power cut leaves a replica that
    /// knows no members).
    fn set_conf_state(&mut self, cs: &ConfState) -> Result<()> {
        let sync = true;
        let applied = self.applied_index();
        self.append_record(
            RecordType::ConfState,
            |buf| record::encode_conf_state(buf, applied, cs),
            sync,
        )?;
        self.conf_state = cs.clone();
        Ok(())
    }

    /// See [`StorageBackend::apply`]: one unsynced `Apply` WAL record, then the map and the
    /// applied index change together under the map's write lock (readers see all or none).
    fn apply(
        &mut self,
        index: u64,
        commands: &[KvCommand],
        conf_state: Option<&ConfState>,
    ) -> Result<()> {
        let applied = self.applied_index();
        check_apply(applied, self.log.last_index(), index, commands, conf_state)?;
        if index == applied {
            return Ok(());
        }
        self.append_record(
            RecordType::ApplyRange,
            |buf| record::encode_apply(buf, applied + 1, index, commands, conf_state),
            false,
        )?;
        {
            let mut map = self.shared.map.write();
            apply_commands(&mut map, commands, &mut self.kv_bytes);
            self.shared.applied.store(index, Ordering::Release);
        }
        if let Some(cs) = conf_state {
            self.conf_state = cs.clone();
        }
        self.wal.note_apply(index);
        Ok(())
    }

    fn reader(&self) -> KvReader {
        KvReader::new(self.shared.clone())
    }

    fn applied_index(&self) -> u64 {
        self.shared.applied.load(Ordering::Acquire)
    }

    /// See [`StorageBackend::begin_snapshot`]. The WAL is synced first, under every
    /// policy, so the snapshot is never ahead of the log on disk (a snapshot ahead of an
    /// unsynced log overwrite would pair its state with a log that conflicts with it). The
    /// view is a clone of the persistent map (O(1)); the job writes it to
    /// `snap/snap-<index>.snap` via a temporary file, synced with its directory.
    fn begin_snapshot(&mut self) -> Result<SnapshotJob> {
        let applied = self.applied_index();
        if applied == 0 {
            return Err(StorageError::Invalid(
                "nothing has been applied yet; there is no state to snapshot".into(),
            ));
        }
        let path = snapfile::final_path(&self.snap_dir, applied);
        if let Some(job) = self.snapshots.ready_at(applied, path.clone()) {
            return Ok(job);
        }
        // Everything the snapshot reflects must be durable before the snapshot is.
        self.wal.sync()?;
        let term = self.log.term(applied).map_err(|e| {
            StorageError::Invalid(format!("snapshot at applied index {applied}: {e}"))
        })?;
        let view = self.shared.map.read().clone();
        let conf_state = self.conf_state.clone();
        let rate = self.config.snapshot_write_rate.as_u64();
        Ok(SnapshotJob::new(applied, move |cancel| {
            let limit = snapfile::Limit { rate, cancel };
            snapshots::write_file(&path, applied, term, &conf_state, limit, |w| {
                for (k, v) in view.iter() {
                    w.push(k, v)?;
                }
                Ok(())
            })
        }))
    }

    /// See [`StorageBackend::finish_snapshot`]. Older snapshot files and the WAL segments
    /// the new one makes obsolete are deleted only now, after the new file is durable (the
    /// job synced it); a snapshot superseded by an install from the leader is deleted
    /// instead (it is older than the replica's state).
    fn finish_snapshot(&mut self, built: BuiltSnapshot) -> Result<Finished> {
        let index = built.index();
        if index < self.snapshot_index {
            snapshots::remove_superseded(&built.path)?;
            return Ok(Finished::Superseded);
        }
        if index == self.snapshot_index && self.snapshots.index() == index {
            return Ok(Finished::Current);
        }
        self.snapshot_index = index;
        self.snapshots.set(built.snapshot);
        remove_snapshots_below(&self.snap_dir, index)?;
        self.delete_obsolete_segments()?;
        Ok(Finished::Adopted)
    }

    fn snapshot_wanted(&self) -> bool {
        self.snapshots.take_wanted()
    }

    /// See [`StorageBackend::compact`]: one unsynced `Compact` WAL record; segments that it
    /// makes obsolete are deleted only after the WAL is synced.
    fn compact(&mut self, up_to: u64) -> Result<()> {
        if up_to <= self.log.truncated().0 {
            return Ok(());
        }
        check_compact(self.applied_index(), up_to)?;
        self.log.check_compact(up_to)?;
        let term = self.log.term(up_to).expect("checked");
        self.append_record(
            RecordType::Compact,
            |buf| record::encode_compact(buf, up_to, term),
            false,
        )?;
        self.log.compact(up_to);
        self.delete_obsolete_segments()?;
        Ok(())
    }

    fn stats(&self) -> BackendStats {
        BackendStats {
            engine_flush_bytes: 0,
            engine_compaction_bytes: 0,
            disk_bytes: datadir::dir_size(&self.config.dir),
            memory_bytes: self.kv_bytes + self.log.bytes(),
            kv_keys: self.shared.map.read().len() as u64,
            log_entries: self.log.len() as u64,
            first_index: self.log.first_index(),
            last_index: self.log.last_index(),
            applied_index: self.applied_index(),
            snapshot_index: self.snapshot_index,
        }
    }

    fn open_report(&self) -> OpenReport {
        self.open_report.clone()
    }
}
