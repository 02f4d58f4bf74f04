//! The memwal backend: the whole raft log and KV map in memory, made durable by an
//! append-only write-ahead log ([`wal`]) and checksummed snapshot files ([`snapfile`]).
//!
//! Directory layout: `RAFTBENCH` (marker), `wal/<seq>.wal` (segments), `snap/snap-<index>.snap`.
//!
//! **Open** loads the newest snapshot file (the KV state at its index), then replays every
//! WAL segment in order: `State` records restore hard state, conf state and truncation
//! point; `Persist` records rebuild the log; `Apply` records above the snapshot's index
//! rebuild the map. A torn tail of the last segment is cut off with a warning; any other
//! damage refuses the open with file and offset. Writing then continues in a new segment.
//!
//! **Snapshots received from the leader** are written as `snap-<i>.pending` first, then the
//! WAL `Persist` record that names them; only then is the file renamed to `.snap`. Replay
//! adopts a pending file only when it finds its marker, so a crash in between leaves the
//! replica exactly as before the install.

mod record;
pub mod snapfile;
pub mod wal;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState};
use tracing::{info, warn};

use self::record::{Record, RecordType, StateRecord};
use self::wal::{SegmentMeta, WalWriter};
use super::memlog::MemLog;
use super::snapshot_data::{SnapshotData, SnapshotDataWriter};
use super::{
    BackendConfig, BackendKind, BackendStats, KvRead, KvReader, OpenReport, Result, StorageBackend,
    StorageError, check_apply, check_compact, check_snapshot, datadir, hard_state_needs_sync,
    make_snapshot,
};
use crate::kv::KvCommand;

/// On-disk format version of memwal directories.
pub const FORMAT_VERSION: u32 = 1;

/// Bytes of bookkeeping we charge per map entry in memory estimates.
const MAP_ENTRY_OVERHEAD: u64 = 64;

type KvMap = BTreeMap<Vec<u8>, Vec<u8>>;

/// The applied state, shared with readers on other threads.
struct Shared {
    map: RwLock<KvMap>,
    applied: AtomicU64,
}

impl KvRead for Shared {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.map.read().expect("kv lock").get(key).cloned())
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
    open_report: OpenReport,
}

/// State rebuilt by replay.
struct Replay {
    map: KvMap,
    applied: u64,
    log: MemLog,
    hard_state: HardState,
    conf_state: ConfState,
    snapshot_index: u64,
    snapshot_term: u64,
    /// The final truncation point `(index, term)`, found by a first pass over the WAL. The
    /// log is rebuilt above it only: records below it may refer to entries whose segments
    /// were deleted after compaction.
    anchor: (u64, u64),
    records: u64,
    entries: u64,
    /// Pending snapshot files whose marker was found.
    adopted_pending: Vec<u64>,
}

impl MemwalBackend {
    /// Open (creating if needed) the memwal directory named by `config`.
    pub fn open(config: BackendConfig) -> Result<Self> {
        let started = Instant::now();
        let dir = config.dir.clone();
        let fresh = datadir::claim(&dir, BackendKind::Memwal, FORMAT_VERSION)?;
        let wal_dir = dir.join("wal");
        let snap_dir = dir.join("snap");
        for d in [&wal_dir, &snap_dir] {
            std::fs::create_dir_all(d).map_err(StorageError::io("create directory", d))?;
        }
        let sync = config.fsync.sync();

        let replay_started = Instant::now();
        let listing = snapfile::list(&snap_dir)?;
        let mut st = Replay {
            map: KvMap::new(),
            applied: 0,
            log: MemLog::new(0, 0),
            hard_state: HardState::default(),
            conf_state: ConfState::default(),
            snapshot_index: 0,
            snapshot_term: 0,
            anchor: (0, 0),
            records: 0,
            entries: 0,
            adopted_pending: Vec::new(),
        };
        if let Some(&newest) = listing.finals.last() {
            let path = snapfile::final_path(&snap_dir, newest);
            let (meta, data) = snapfile::read(&path)?;
            load_snapshot_data(&mut st.map, &data, &meta)
                .map_err(|e| StorageError::corrupt(&path, 0, e.to_string()))?;
            st.applied = meta.index;
            st.snapshot_index = meta.index;
            st.snapshot_term = meta.term;
            st.conf_state = meta.get_conf_state().clone();
            st.log = MemLog::new(meta.index, meta.term);
        }

        let seqs = wal::list_segments(&wal_dir)?;
        st.anchor = scan_truncation_point(&wal_dir, &seqs)?;
        st.log = MemLog::new(st.anchor.0, st.anchor.1);
        let mut metas: Vec<SegmentMeta> = Vec::with_capacity(seqs.len());
        let mut torn_bytes = 0;
        for (i, &seq) in seqs.iter().enumerate() {
            let is_last = i + 1 == seqs.len();
            let mut meta: Option<SegmentMeta> = None;
            let path = wal::segment_path(&wal_dir, seq);
            let read = wal::read_segment(&wal_dir, seq, is_last, &mut |t, payload, off| {
                let rec = record::decode(t, payload)
                    .map_err(|e| StorageError::corrupt(&path, off, format!("{t:?} record: {e}")))?;
                st.replay(rec, &mut meta, seq, &snap_dir, &listing)
                    .map_err(|e| match e {
                        StorageError::Invalid(m) => StorageError::corrupt(&path, off, m),
                        other => other,
                    })
            })?;
            if read.torn_bytes > 0 {
                warn!(
                    segment = %path.display(),
                    offset = read.valid_len,
                    bytes = read.torn_bytes,
                    "truncating torn tail of the WAL"
                );
                torn_bytes = read.torn_bytes;
                wal::truncate_segment(&wal_dir, seq, read.valid_len)?;
            }
            match meta {
                Some(m) => metas.push(m),
                None if is_last => {
                    // Crashed while starting this segment: nothing in it survived.
                    let p = wal::segment_path(&wal_dir, seq);
                    std::fs::remove_file(&p).map_err(StorageError::io("delete", &p))?;
                }
                None => {
                    return Err(StorageError::corrupt(
                        &path,
                        wal::SEGMENT_HEADER,
                        "segment does not start with a state record",
                    ));
                }
            }
        }

        // Finish interrupted installs; drop pending files nobody acknowledged.
        for &i in &listing.pendings {
            let pending = snapfile::pending_path(&snap_dir, i);
            if st.adopted_pending.contains(&i) {
                let fin = snapfile::final_path(&snap_dir, i);
                std::fs::rename(&pending, &fin).map_err(StorageError::io("rename", &pending))?;
            } else {
                std::fs::remove_file(&pending).map_err(StorageError::io("delete", &pending))?;
            }
        }
        remove_snapshots_below(&snap_dir, st.snapshot_index)?;
        if sync {
            // The adopted snapshot must be durable under its final name before any WAL
            // segment that names it can be deleted.
            datadir::sync_dir(&snap_dir)?;
        }

        if st.applied > st.log.last_index() {
            // Only possible after an OS crash with fsync = "never": the log lost entries the
            // snapshot already covers. Restart the log at the snapshot.
            warn!(
                applied = st.applied,
                last_index = st.log.last_index(),
                "log ends below the applied index; restarting the log at the snapshot"
            );
            if st.applied != st.snapshot_index {
                return Err(StorageError::corrupt(
                    &wal_dir,
                    0,
                    format!(
                        "applied index {} is past the last log entry {} and is not a snapshot",
                        st.applied,
                        st.log.last_index()
                    ),
                ));
            }
            st.log.reset(st.applied, st.snapshot_term);
        }
        // Applied entries are committed by definition; a lost commit-only hard-state update
        // must not leave commit < applied (raft refuses to start then).
        st.hard_state.commit = st.hard_state.commit.max(st.applied);
        let replay_ms = replay_started.elapsed().as_secs_f64() * 1e3;

        let next_seq = metas.last().map_or(1, |m| m.seq + 1);
        let kv_bytes = st
            .map
            .iter()
            .map(|(k, v)| (k.len() + v.len()) as u64 + MAP_ENTRY_OVERHEAD)
            .sum();
        let state = StateRecord {
            hard_state: st.hard_state.clone(),
            conf_state: st.conf_state.clone(),
            applied_index: st.applied,
            truncated_index: st.log.truncated().0,
            truncated_term: st.log.truncated().1,
            snapshot_index: st.snapshot_index,
        };
        let wal = WalWriter::create(
            &wal_dir,
            next_seq,
            metas,
            &state,
            config.memwal.segment_size.as_u64(),
            sync,
        )?;
        let mut backend = MemwalBackend {
            wal_dir,
            snap_dir,
            wal,
            log: st.log,
            hard_state: st.hard_state,
            conf_state: st.conf_state,
            shared: Arc::new(Shared {
                map: RwLock::new(st.map),
                applied: AtomicU64::new(st.applied),
            }),
            kv_bytes,
            snapshot_index: st.snapshot_index,
            open_report: OpenReport {
                fresh,
                open_ms: 0.0,
                replay_ms,
                replayed_records: st.records,
                replayed_entries: st.entries,
                torn_bytes_truncated: torn_bytes,
            },
            config,
        };
        backend.delete_obsolete_segments()?;
        backend.open_report.open_ms = started.elapsed().as_secs_f64() * 1e3;
        info!(
            dir = %dir.display(),
            open_ms = backend.open_report.open_ms,
            replayed_entries = st.entries,
            first_index = backend.log.first_index(),
            last_index = backend.log.last_index(),
            applied = backend.applied_index(),
            "memwal opened"
        );
        Ok(backend)
    }

    /// The WAL directory (for tests and tools that inspect segments).
    pub fn wal_dir(&self) -> &Path {
        &self.wal_dir
    }

    /// Number of WAL segment files currently on disk.
    pub fn segment_count(&self) -> usize {
        self.wal.segment_count()
    }

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

    fn delete_obsolete_segments(&mut self) -> Result<usize> {
        self.wal
            .delete_obsolete(self.log.truncated().0, self.snapshot_index)
    }

    fn build_snapshot(&self) -> raft::Result<Snapshot> {
        let map = self.shared.map.read().expect("kv lock");
        let applied = self.applied_index();
        let term = self.log.term(applied)?;
        let mut w = SnapshotDataWriter::new(applied);
        for (k, v) in map.iter() {
            w.push(k, v);
        }
        Ok(make_snapshot(applied, term, &self.conf_state, w.finish()))
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
    map.clear();
    for (k, v) in parsed.iter() {
        map.insert(k.to_vec(), v.to_vec());
    }
    Ok(())
}

/// Delete final snapshot files older than `keep`.
fn remove_snapshots_below(dir: &Path, keep: u64) -> Result<()> {
    for i in snapfile::list(dir)?.finals {
        if i < keep {
            let p = snapfile::final_path(dir, i);
            std::fs::remove_file(&p).map_err(StorageError::io("delete", &p))?;
        }
    }
    Ok(())
}

fn apply_commands(map: &mut KvMap, commands: &[KvCommand], kv_bytes: &mut u64) {
    for c in commands {
        match c {
            KvCommand::Put { key, value } => {
                let add = (key.len() + value.len()) as u64 + MAP_ENTRY_OVERHEAD;
                if let Some(old) = map.insert(key.clone(), value.clone()) {
                    *kv_bytes -= (key.len() + old.len()) as u64 + MAP_ENTRY_OVERHEAD;
                }
                *kv_bytes += add;
            }
            KvCommand::Delete { key } => {
                if let Some(old) = map.remove(key) {
                    *kv_bytes -= (key.len() + old.len()) as u64 + MAP_ENTRY_OVERHEAD;
                }
            }
        }
    }
}

impl Replay {
    fn replay(
        &mut self,
        rec: Record,
        meta: &mut Option<SegmentMeta>,
        seq: u64,
        snap_dir: &Path,
        listing: &snapfile::Listing,
    ) -> Result<()> {
        self.records += 1;
        let seg = match (meta.as_mut(), &rec) {
            (Some(m), _) => m,
            (None, Record::State(_)) => meta.insert(SegmentMeta::new(seq)),
            (None, _) => {
                return Err(StorageError::Invalid(
                    "segment does not start with a state record".into(),
                ));
            }
        };
        match rec {
            Record::State(s) => {
                self.hard_state = s.hard_state;
                if s.applied_index >= self.applied {
                    self.conf_state = s.conf_state;
                }
                // The log's start comes from the anchor, not from this (maybe stale) record.
            }
            Record::Persist {
                snapshot,
                entries,
                hard_state,
            } => {
                if let Some(m) = snapshot {
                    if m.index > self.applied {
                        let fin = snapfile::final_path(snap_dir, m.index);
                        let path = if listing.finals.contains(&m.index) {
                            fin
                        } else if listing.pendings.contains(&m.index) {
                            self.adopted_pending.push(m.index);
                            snapfile::pending_path(snap_dir, m.index)
                        } else {
                            return Err(StorageError::Invalid(format!(
                                "installed snapshot {} has no snapshot file",
                                m.index
                            )));
                        };
                        let (fmeta, data) = snapfile::read(&path)?;
                        load_snapshot_data(&mut self.map, &data, &fmeta)?;
                        self.applied = m.index;
                        self.snapshot_index = m.index;
                        self.snapshot_term = m.term;
                        self.conf_state = m.get_conf_state().clone();
                    }
                    // The install dropped the whole log; the anchor is at or above it.
                    self.log.reset(self.anchor.0, self.anchor.1);
                    seg.max_apply_index = seg.max_apply_index.max(m.index);
                }
                self.entries += entries.len() as u64;
                if let Some(f) = entries.first() {
                    // Entries at or below the anchor are compacted in the final state, but an
                    // append there still truncated whatever followed it.
                    let keep_from = entries.partition_point(|e| e.index <= self.anchor.0);
                    if f.index <= self.anchor.0 {
                        self.log.truncate_after(self.anchor.0);
                    }
                    let keep = &entries[keep_from..];
                    self.log.check_append(keep)?;
                    self.log.append(keep);
                }
                if let Some(last) = entries.last() {
                    seg.max_entry_index = seg.max_entry_index.max(last.index);
                }
                if let Some(hs) = hard_state {
                    self.hard_state = hs;
                }
            }
            Record::Apply {
                index,
                commands,
                conf_state,
            } => {
                seg.max_apply_index = seg.max_apply_index.max(index);
                if index > self.applied {
                    let mut ignored = 0;
                    apply_commands(&mut self.map, &commands, &mut ignored);
                    self.applied = index;
                    if let Some(cs) = conf_state {
                        self.conf_state = cs;
                    }
                }
            }
            // Every truncation point is at or below the anchor the log starts from.
            Record::Compact { .. } => {}
            Record::ConfState {
                applied_index,
                conf_state,
            } => {
                if applied_index >= self.applied {
                    self.conf_state = conf_state;
                }
            }
        }
        Ok(())
    }
}

/// First replay pass: the final truncation point of the log, i.e. the highest one recorded
/// by a `State`, `Compact` or snapshot-install record (truncation points only move up).
fn scan_truncation_point(wal_dir: &Path, seqs: &[u64]) -> Result<(u64, u64)> {
    let mut best = (0u64, 0u64);
    for (i, &seq) in seqs.iter().enumerate() {
        let path = wal::segment_path(wal_dir, seq);
        wal::read_segment(wal_dir, seq, i + 1 == seqs.len(), &mut |t, payload, off| {
            let point = record::truncation_point(t, payload)
                .map_err(|e| StorageError::corrupt(&path, off, format!("{t:?} record: {e}")))?;
            if let Some(p) = point.filter(|p| p.0 >= best.0) {
                best = p;
            }
            Ok(())
        })?;
    }
    Ok(best)
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

    /// A snapshot of the applied state at the applied index, built from memory.
    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        if self.applied_index() == 0 || self.applied_index() < request_index {
            return Err(raft::Error::Store(
                raft::StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        self.build_snapshot()
    }
}

impl StorageBackend for MemwalBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Memwal
    }

    fn config(&self) -> &BackendConfig {
        &self.config
    }

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
        let sync = self.config.fsync.sync()
            && (snap.is_some()
                || !entries.is_empty()
                || hard_state.is_some_and(|hs| hard_state_needs_sync(&self.hard_state, hs)));

        if let Some((s, _)) = &snap {
            let m = s.get_metadata();
            snapfile::write(
                &snapfile::pending_path(&self.snap_dir, m.index),
                m,
                &s.data,
                self.config.fsync.sync(),
            )?;
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
                .and_then(|()| match self.config.fsync.sync() {
                    true => datadir::sync_dir(&self.snap_dir),
                    false => Ok(()),
                });
            if let Err(e) = finish {
                self.wal.poison();
                return Err(e);
            }
            let mut map = KvMap::new();
            let mut kv_bytes = 0;
            for (k, v) in data.iter() {
                kv_bytes += (k.len() + v.len()) as u64 + MAP_ENTRY_OVERHEAD;
                map.insert(k.to_vec(), v.to_vec());
            }
            {
                let mut guard = self.shared.map.write().expect("kv lock");
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

    fn set_conf_state(&mut self, cs: &ConfState) -> Result<()> {
        let sync = self.config.fsync.sync();
        let applied = self.applied_index();
        self.append_record(
            RecordType::ConfState,
            |buf| record::encode_conf_state(buf, applied, cs),
            sync,
        )?;
        self.conf_state = cs.clone();
        Ok(())
    }

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
            RecordType::Apply,
            |buf| record::encode_apply(buf, index, commands, conf_state),
            false,
        )?;
        {
            let mut map = self.shared.map.write().expect("kv lock");
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

    fn create_snapshot(&mut self) -> Result<Snapshot> {
        let applied = self.applied_index();
        if applied == 0 {
            return Err(StorageError::Invalid(
                "nothing has been applied yet; there is no state to snapshot".into(),
            ));
        }
        let sync = self.config.fsync.sync();
        if sync {
            // Everything the snapshot reflects must be durable before the snapshot is.
            self.wal.sync()?;
        }
        let snap = self.build_snapshot().map_err(|e| {
            StorageError::Invalid(format!("snapshot at applied index {applied}: {e}"))
        })?;
        snapfile::write(
            &snapfile::final_path(&self.snap_dir, applied),
            snap.get_metadata(),
            &snap.data,
            sync,
        )?;
        self.snapshot_index = applied;
        remove_snapshots_below(&self.snap_dir, applied)?;
        self.delete_obsolete_segments()?;
        Ok(snap)
    }

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
            disk_bytes: datadir::dir_size(&self.config.dir),
            memory_bytes: self.kv_bytes + self.log.bytes(),
            kv_keys: self.shared.map.read().expect("kv lock").len() as u64,
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
