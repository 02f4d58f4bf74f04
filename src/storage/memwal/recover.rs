//! Recovery: rebuilding a memwal backend's in-memory state from its files, kept apart from
//! the running backend in [`super`] (as raft-engine's `pipe_builder` is from its `pipe`).
//!
//! [`MemwalBackend::open`] runs these steps, in this order:
//!
//! 1. [`SnapDir::load_newest`]: the newest final snapshot file gives the KV map, applied
//!    index and conf state at its index.
//! 2. [`scan_truncation_point`]: a first pass over every segment finds the final truncation
//!    point (the *anchor*). The log is rebuilt above it only, because records below it may
//!    refer to entries whose segments were deleted after compaction.
//! 3. [`replay_segments`]: a second pass feeds every record to [`Replay::record`], in WAL
//!    order. A torn tail of the last segment is cut off with a warning (see [`wal`] for what
//!    counts as torn and what as corruption); any other damage refuses the open with file
//!    and offset.
//! 4. [`SnapDir::settle`]: snapshot installs interrupted between their WAL marker and the
//!    rename are finished, pending files without a marker are dropped, older snapshots are
//!    deleted.
//! 5. [`Replay::reconcile`]: the log restarts at the snapshot if it ends below the applied
//!    index, and the commit index is raised to the applied index.
//!
//! Writing then continues in a new segment that opens with the recovered state.

use std::path::{Path, PathBuf};
use std::time::Instant;

use raft::eraftpb::{ConfState, Entry, HardState, SnapshotMetadata};
use tracing::{info, warn};

use super::record::{self, Record, StateRecord};
use super::wal::{self, SegmentMeta, SegmentRead, WalWriter};
use super::{
    FORMAT_VERSION, KvMap, MAP_ENTRY_OVERHEAD, MemwalBackend, Shared, apply_commands,
    load_snapshot_data, remove_snapshots_below,
};
use crate::kv::KvCommand;
use crate::storage::memlog::MemLog;
use crate::storage::snapfile::{self, Listing};
use crate::storage::snapshots::SnapshotCache;
use crate::storage::{
    BackendConfig, BackendKind, OpenReport, Result, StorageBackend, StorageError, datadir,
};

impl MemwalBackend {
    /// Open (creating if needed) the memwal directory named by `config`, recovering its
    /// state from the newest snapshot file and the WAL (the steps are described in
    /// `memwal/recover.rs`).
    ///
    /// Durability (under every fsync policy): when this returns, a torn tail has been cut
    /// off (and the segment synced), the replayed segments are synced, interrupted snapshot
    /// installs are finished, and writing continues in a new segment whose first record is
    /// the recovered state — synced, with its directory — so older segments can be deleted
    /// as the running backend would.
    /// A torn tail is cut from its first damaged record (later records there were never
    /// synced either); any other damage refuses the open with file and offset.
    pub fn open(config: BackendConfig) -> Result<Self> {
        let started = Instant::now();
        let dir = config.dir.clone();
        let fresh = datadir::claim(&dir, BackendKind::Memwal, FORMAT_VERSION)?;
        // Before recovery, which may discard superseded snapshots into it.
        datadir::empty_trash(&datadir::trash_dir(&dir))?;
        let wal_dir = dir.join("wal");
        let snap_dir = dir.join("snap");
        for d in [&wal_dir, &snap_dir] {
            datadir::create_dir_durable(d)?;
        }
        let sync = config.fsync.sync();

        let replay_started = Instant::now();
        let Recovered {
            state: st,
            segments,
            torn_bytes,
        } = recover(&wal_dir, &snap_dir)?;
        let replay_ms = replay_started.elapsed().as_secs_f64() * 1e3;

        let next_seq = segments.last().map_or(1, |m| m.seq + 1);
        let kv_bytes = st
            .map
            .iter()
            .map(|(k, v)| (k.len() + v.len()) as u64 + MAP_ENTRY_OVERHEAD)
            .sum();
        let wal = WalWriter::create(
            &wal_dir,
            next_seq,
            segments,
            &st.state_record(),
            config.memwal.segment_size.as_u64(),
            sync,
        )?;
        // The snapshot the replica's state starts from is what raft sends to followers until a
        // newer one is built (recovery has just read and verified its file).
        let snapshots = match st.snapshot_index {
            0 => SnapshotCache::default(),
            i => SnapshotCache::from_file(&snapfile::final_path(&snap_dir, i)),
        };
        let mut backend = MemwalBackend {
            wal_dir,
            snap_dir,
            wal,
            log: st.log,
            hard_state: st.hard_state,
            conf_state: st.conf_state,
            shared: Shared::new(st.map, st.applied),
            kv_bytes,
            snapshot_index: st.snapshot_index,
            snapshots,
            open_report: OpenReport {
                fresh,
                open_ms: 0.0,
                replay_ms,
                replayed_records: st.records,
                replayed_entries: st.entries,
                torn_bytes_truncated: torn_bytes,
                log_restarted_at_snapshot: st.log_restarted,
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
}

/// What recovery hands to the running backend.
struct Recovered {
    state: Replay,
    /// The segments kept, oldest first, with what replay learned about each.
    segments: Vec<SegmentMeta>,
    /// Bytes cut off the tail of the last segment.
    torn_bytes: u64,
}

/// Steps 1–5 of the module docs, over the directories `wal_dir` and `snap_dir`.
fn recover(wal_dir: &Path, snap_dir: &Path) -> Result<Recovered> {
    let snaps = SnapDir::list(snap_dir)?;
    let mut st = snaps.load_newest()?;
    let seqs = wal::list_segments(wal_dir)?;
    st.anchor = scan_truncation_point(wal_dir, &seqs)?;
    st.log = MemLog::new(st.anchor.0, st.anchor.1);
    let (segments, torn_bytes) = replay_segments(&mut st, wal_dir, &seqs, &snaps)?;
    snaps.settle(&st.adopted_pending, st.snapshot_index)?;
    st.reconcile(wal_dir)?;
    Ok(Recovered {
        state: st,
        segments,
        torn_bytes,
    })
}

/// The snapshot directory as found at open.
struct SnapDir {
    dir: PathBuf,
    listing: Listing,
}

impl SnapDir {
    /// List `dir`, deleting leftovers of writes a crash interrupted
    /// ([`snapfile::delete_leftovers`]).
    fn list(dir: &Path) -> Result<Self> {
        let mut listing = snapfile::list(dir)?;
        snapfile::delete_leftovers(&mut listing)?;
        Ok(SnapDir {
            dir: dir.to_path_buf(),
            listing,
        })
    }

    /// The replay state before any WAL record: the newest final snapshot's, or empty.
    fn load_newest(&self) -> Result<Replay> {
        let mut st = Replay::default();
        if let Some(&newest) = self.listing.finals.last() {
            let path = snapfile::final_path(&self.dir, newest);
            let (meta, data) = snapfile::read(&path)?;
            load_snapshot_data(&mut st.map, &data, &meta)
                .map_err(|e| StorageError::corrupt(&path, 0, e.to_string()))?;
            st.applied = meta.index;
            st.snapshot_index = meta.index;
            st.snapshot_term = meta.term;
            st.conf_state = meta.get_conf_state().clone();
        }
        Ok(st)
    }

    /// The file holding the snapshot a WAL install marker names, and whether it is still
    /// pending (its rename had not happened when the replica stopped).
    fn file_for_marker(&self, index: u64) -> Option<(PathBuf, bool)> {
        if self.listing.finals.contains(&index) {
            Some((snapfile::final_path(&self.dir, index), false))
        } else if self.listing.pendings.contains(&index) {
            Some((snapfile::pending_path(&self.dir, index), true))
        } else {
            None
        }
    }

    /// Finish interrupted installs (rename the `adopted` pending files to final names), drop
    /// pending files nobody acknowledged and final snapshots older than `keep`.
    ///
    /// Durability: the directory is synced before returning (under every policy), because
    /// the adopted snapshot must be durable under its final name before any WAL segment
    /// that names it can be deleted.
    fn settle(&self, adopted: &[u64], keep: u64) -> Result<()> {
        for &i in &self.listing.pendings {
            let pending = snapfile::pending_path(&self.dir, i);
            if adopted.contains(&i) {
                let fin = snapfile::final_path(&self.dir, i);
                std::fs::rename(&pending, &fin).map_err(StorageError::io("rename", &pending))?;
            } else {
                std::fs::remove_file(&pending).map_err(StorageError::io("delete", &pending))?;
            }
        }
        remove_snapshots_below(&self.dir, keep)?;
        datadir::sync_dir(&self.dir)?;
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

/// Second replay pass over the segments `seqs` (ascending) into `st`. Returns the segments
/// kept and the bytes cut off the last one's torn tail.
fn replay_segments(
    st: &mut Replay,
    wal_dir: &Path,
    seqs: &[u64],
    snaps: &SnapDir,
) -> Result<(Vec<SegmentMeta>, u64)> {
    let mut segments = Vec::with_capacity(seqs.len());
    let mut torn_bytes = 0;
    for (i, &seq) in seqs.iter().enumerate() {
        let is_last = i + 1 == seqs.len();
        let (meta, read) = replay_segment(st, wal_dir, seq, is_last, snaps)?;
        if read.torn_bytes > 0 {
            cut_torn_tail(wal_dir, seq, &read)?;
            torn_bytes = read.torn_bytes;
        }
        let path = wal::segment_path(wal_dir, seq);
        match meta {
            Some(m) => segments.push(m),
            None if is_last => {
                // Crashed while starting this segment: nothing in it survived.
                std::fs::remove_file(&path).map_err(StorageError::io("delete", &path))?;
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
    Ok((segments, torn_bytes))
}

/// Replay the valid records of segment `seq` into `st`. Returns what was learned about the
/// segment (`None` if it holds no record at all) and how much of it was valid. Errors name
/// the segment file and the offset of the offending record.
fn replay_segment(
    st: &mut Replay,
    wal_dir: &Path,
    seq: u64,
    is_last: bool,
    snaps: &SnapDir,
) -> Result<(Option<SegmentMeta>, SegmentRead)> {
    let path = wal::segment_path(wal_dir, seq);
    let mut meta: Option<SegmentMeta> = None;
    let read = wal::read_segment(wal_dir, seq, is_last, &mut |t, payload, off| {
        let rec = record::decode(t, payload)
            .map_err(|e| StorageError::corrupt(&path, off, format!("{t:?} record: {e}")))?;
        st.record(rec, &mut meta, seq, snaps).map_err(|e| match e {
            StorageError::Invalid(m) => StorageError::corrupt(&path, off, m),
            other => other,
        })
    })?;
    Ok((meta, read))
}

/// Cut the torn tail `read` found off segment `seq` (synced: the cut is durable before
/// anything is written after it).
fn cut_torn_tail(wal_dir: &Path, seq: u64, read: &SegmentRead) -> Result<()> {
    warn!(
        segment = %wal::segment_path(wal_dir, seq).display(),
        offset = read.valid_len,
        bytes = read.torn_bytes,
        "truncating torn tail of the WAL"
    );
    wal::truncate_segment(wal_dir, seq, read.valid_len)
}

/// State rebuilt by replay.
#[derive(Default)]
struct Replay {
    /// `reconcile` restarted the log at the snapshot.
    log_restarted: bool,
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
    /// The first hole in the applies, as (applied index before it, first index after it).
    apply_gap: Option<(u64, u64)>,
}

impl Replay {
    /// Replay one record of segment `seq`; `meta` collects what the segment holds (it is
    /// `None` until the segment's opening `State` record).
    fn record(
        &mut self,
        rec: Record,
        meta: &mut Option<SegmentMeta>,
        seq: u64,
        snaps: &SnapDir,
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
                // Its conf state is the one at its applied index: adopt it only at that very
                // point. Below it a loaded snapshot is newer; above it, applies were lost and
                // raft re-applies the conf changes among them.
                if s.applied_index == self.applied {
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
                    self.install_snapshot(&m, snaps)?;
                    seg.max_apply_index = seg.max_apply_index.max(m.index);
                }
                self.append_entries(&entries)?;
                if let Some(last) = entries.last() {
                    seg.max_entry_index = seg.max_entry_index.max(last.index);
                }
                if let Some(hs) = hard_state {
                    self.hard_state = hs;
                }
            }
            Record::Apply {
                first,
                index,
                commands,
                conf_state,
            } => {
                seg.max_apply_index = seg.max_apply_index.max(index);
                self.apply(first, index, &commands, conf_state);
            }
            // Every truncation point is at or below the anchor the log starts from.
            Record::Compact { .. } => {}
            Record::ConfState {
                applied_index,
                conf_state,
            } => {
                if applied_index == self.applied {
                    self.conf_state = conf_state;
                }
            }
        }
        Ok(())
    }

    /// A `Persist` record's install marker for the snapshot `m`: adopt its file when it is
    /// ahead of the applied state, and drop the log (the anchor is at or above the install).
    fn install_snapshot(&mut self, m: &SnapshotMetadata, snaps: &SnapDir) -> Result<()> {
        if m.index > self.applied {
            let Some((path, pending)) = snaps.file_for_marker(m.index) else {
                return Err(StorageError::Invalid(format!(
                    "installed snapshot {} has no snapshot file",
                    m.index
                )));
            };
            if pending {
                self.adopted_pending.push(m.index);
            }
            let (fmeta, data) = snapfile::read(&path)?;
            load_snapshot_data(&mut self.map, &data, &fmeta)?;
            self.applied = m.index;
            self.snapshot_index = m.index;
            self.snapshot_term = m.term;
            self.conf_state = m.get_conf_state().clone();
        }
        self.log.reset(self.anchor.0, self.anchor.1);
        Ok(())
    }

    /// A `Persist` record's entries: appended above the anchor.
    fn append_entries(&mut self, entries: &[Entry]) -> Result<()> {
        self.entries += entries.len() as u64;
        if let Some(f) = entries.first() {
            // Entries at or below the anchor are compacted in the final state, but an append
            // there still truncated whatever followed it.
            let keep_from = entries.partition_point(|e| e.index <= self.anchor.0);
            if f.index <= self.anchor.0 {
                self.log.truncate_after(self.anchor.0);
            }
            let keep = &entries[keep_from..];
            self.log.check_append(keep)?;
            self.log.append(keep);
        }
        Ok(())
    }

    /// An `Apply` record of the entries `first..=index`: replayed only above the applied
    /// index (a snapshot loaded earlier may already contain part or all of it; puts and
    /// deletes replayed again over it leave the state at `index`), and only when it starts
    /// at or below `applied + 1`. A later start means an earlier apply was lost (a power
    /// cut dropped a tail that was never synced, durability-findings F1): applying this
    /// one on top of the hole would lose those writes for good. Replay stops applying
    /// instead; raft re-applies everything above the applied index from the durable log.
    fn apply(
        &mut self,
        first: Option<u64>,
        index: u64,
        commands: &[KvCommand],
        conf_state: Option<ConfState>,
    ) {
        if let Some(f) = first.filter(|&f| f > self.applied + 1 && index > self.applied) {
            if self.apply_gap.is_none() {
                warn!(
                    applied = self.applied,
                    next_apply_from = f,
                    "an apply record is missing; later applies are left to raft to redo"
                );
            }
            self.apply_gap.get_or_insert((self.applied, f));
            return;
        }
        if index > self.applied {
            let mut ignored = 0;
            apply_commands(&mut self.map, commands, &mut ignored);
            self.applied = index;
            if let Some(cs) = conf_state {
                self.conf_state = cs;
            }
        }
    }

    /// Make the replayed state one raft can start from.
    fn reconcile(&mut self, wal_dir: &Path) -> Result<()> {
        if self.applied > self.log.last_index() {
            // Only possible after an OS crash with fsync = "never": the log lost entries the
            // snapshot already covers. Restart the log at the snapshot.
            warn!(
                applied = self.applied,
                last_index = self.log.last_index(),
                "log ends below the applied index; restarting the log at the snapshot"
            );
            if self.applied != self.snapshot_index {
                return Err(StorageError::corrupt(
                    wal_dir,
                    0,
                    format!(
                        "applied index {} is past the last log entry {} and is not a snapshot",
                        self.applied,
                        self.log.last_index()
                    ),
                ));
            }
            self.log.reset(self.applied, self.snapshot_term);
            self.log_restarted = true;
        }
        if self.snapshot_index > 0
            && self.snapshot_index >= self.log.first_index()
            && self.snapshot_index <= self.log.last_index()
            && self.log.term(self.snapshot_index).ok() != Some(self.snapshot_term)
        {
            // Written before snapshots synced the WAL under `fsync = "never"`: the log on
            // disk lost an overwrite the snapshot had seen. Its entries at and below the
            // snapshot conflict with the applied state; restart the log at the snapshot.
            if self.applied != self.snapshot_index {
                return Err(StorageError::corrupt(
                    wal_dir,
                    0,
                    format!(
                        "the log's entry {} conflicts with the snapshot there, and applies above it were replayed",
                        self.snapshot_index
                    ),
                ));
            }
            warn!(
                snapshot_index = self.snapshot_index,
                "the log conflicts with the snapshot; restarting the log at the snapshot"
            );
            self.log.reset(self.snapshot_index, self.snapshot_term);
            self.log_restarted = true;
        }
        if self.applied + 1 < self.log.first_index() {
            // raft would have to re-apply entries the log no longer holds.
            return Err(StorageError::corrupt(
                wal_dir,
                0,
                format!(
                    "applied index {} is below the log's first entry {} and no snapshot covers the gap",
                    self.applied,
                    self.log.first_index()
                ),
            ));
        }
        // Applied entries are committed by definition; a lost commit-only hard-state update
        // must not leave commit < applied (raft refuses to start then).
        self.hard_state.commit = self.hard_state.commit.max(self.applied);
        Ok(())
    }

    /// The `State` record that opens the first segment written after recovery.
    fn state_record(&self) -> StateRecord {
        let (truncated_index, truncated_term) = self.log.truncated();
        StateRecord {
            hard_state: self.hard_state.clone(),
            conf_state: self.conf_state.clone(),
            applied_index: self.applied,
            truncated_index,
            truncated_term,
            snapshot_index: self.snapshot_index,
        }
    }
}
