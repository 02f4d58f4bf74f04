//! The `wal` log store: memwal's write-ahead log segments ([`wal`]), holding only the raft
//! log, with the whole log in memory ([`MemLog`]).
//!
//! Records (memwal's format, a subset): every segment opens with a `State` record (hard
//! state and truncation point); a `Persist` record carries entries and a hard state, and a
//! snapshot install's restart point as its snapshot marker (metadata only: the data is in
//! the composition's snapshot file); a `Compact` record moves the truncation point.
//!
//! Open reads every segment twice: once for the newest truncation point (the anchor), then
//! to rebuild the log above it; a torn tail of the last segment is cut off, other damage
//! refuses the open with the file and offset. Writing then continues in a new segment.
//! Sealed segments are deleted once every entry in them is at or below the truncation
//! point (the WAL is synced first).

use std::path::Path;
use std::time::Instant;

use raft::eraftpb::{Entry, HardState, SnapshotMetadata};

use super::{LogOpened, LogStore, LogWrite};
use crate::storage::memlog::MemLog;
use crate::storage::memwal::record::{self, Record, RecordType, StateRecord};
use crate::storage::memwal::wal::{self, SegmentMeta, WalWriter};
use crate::storage::{BackendConfig, Result, StorageError, datadir};

/// See the module docs.
pub struct WalLog {
    wal: WalWriter,
    log: MemLog,
    hard_state: HardState,
    opened: LogOpened,
}

impl WalLog {
    /// Open (creating if needed) the WAL in `dir`, with `config.memwal.segment_size`
    /// segments.
    pub fn open(config: &BackendConfig, dir: &Path) -> Result<Self> {
        datadir::create_dir_durable(dir)?;
        let started = Instant::now();
        let seqs = wal::list_segments(dir)?;
        let anchor = scan_anchor(dir, &seqs)?;
        let mut st = Replay {
            log: MemLog::new(anchor.0, anchor.1),
            anchor,
            hard_state: HardState::default(),
            records: 0,
            entries: 0,
        };
        let mut segments = Vec::with_capacity(seqs.len());
        let mut torn_bytes = 0;
        for (i, &seq) in seqs.iter().enumerate() {
            let is_last = i + 1 == seqs.len();
            let path = wal::segment_path(dir, seq);
            let mut meta: Option<SegmentMeta> = None;
            let read = wal::read_segment(dir, seq, is_last, &mut |t, payload, off| {
                let rec = record::decode(t, payload)
                    .map_err(|e| StorageError::corrupt(&path, off, format!("{t:?} record: {e}")))?;
                st.record(rec, &mut meta, seq)
                    .map_err(|e| StorageError::corrupt(&path, off, e))
            })?;
            if read.torn_bytes > 0 {
                tracing::warn!(
                    segment = %path.display(),
                    offset = read.valid_len,
                    bytes = read.torn_bytes,
                    "truncating torn tail of the log WAL"
                );
                wal::truncate_segment(dir, seq, read.valid_len)?;
                torn_bytes = read.torn_bytes;
            }
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
        let next_seq = segments.last().map_or(1, |m| m.seq + 1);
        let state = state_record(&st.hard_state, &st.log);
        let wal = WalWriter::create(
            dir,
            next_seq,
            segments,
            &state,
            config.memwal.segment_size.as_u64(),
            config.fsync.sync(),
        )?;
        let mut store = WalLog {
            wal,
            log: st.log,
            hard_state: st.hard_state,
            opened: LogOpened {
                replay_ms: started.elapsed().as_secs_f64() * 1e3,
                replayed_records: st.records,
                replayed_entries: st.entries,
                torn_bytes,
            },
        };
        store.delete_obsolete()?;
        Ok(store)
    }

    /// Append one record, first rotating to a new segment when the current one is full
    /// (the full one is sealed, synced under every policy, before the next is started).
    fn append(
        &mut self,
        rtype: RecordType,
        encode: impl FnOnce(&mut Vec<u8>),
        sync: bool,
    ) -> Result<()> {
        if self.wal.needs_rotation() {
            self.wal
                .rotate(&state_record(&self.hard_state, &self.log))?;
            self.delete_obsolete()?;
        }
        self.wal.append(rtype, encode, sync)
    }

    fn delete_obsolete(&mut self) -> Result<usize> {
        let t = self.log.truncated().0;
        self.wal.delete_obsolete(t, t)
    }
}

fn state_record(hs: &HardState, log: &MemLog) -> StateRecord {
    let (ti, tt) = log.truncated();
    StateRecord {
        hard_state: hs.clone(),
        truncated_index: ti,
        truncated_term: tt,
        ..StateRecord::default()
    }
}

/// The newest truncation point any record sets.
fn scan_anchor(dir: &Path, seqs: &[u64]) -> Result<(u64, u64)> {
    let mut best = (0u64, 0u64);
    for (i, &seq) in seqs.iter().enumerate() {
        let path = wal::segment_path(dir, seq);
        wal::read_segment(dir, seq, i + 1 == seqs.len(), &mut |t, payload, off| {
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

/// The log rebuilt by replay.
struct Replay {
    log: MemLog,
    anchor: (u64, u64),
    hard_state: HardState,
    records: u64,
    entries: u64,
}

impl Replay {
    fn record(
        &mut self,
        rec: Record,
        meta: &mut Option<SegmentMeta>,
        seq: u64,
    ) -> std::result::Result<(), String> {
        self.records += 1;
        let seg = match (meta.as_mut(), &rec) {
            (Some(m), _) => m,
            (None, Record::State(_)) => meta.insert(SegmentMeta::new(seq)),
            (None, _) => return Err("segment does not start with a state record".into()),
        };
        match rec {
            Record::State(s) => self.hard_state = s.hard_state,
            Record::Persist {
                snapshot,
                entries,
                hard_state,
            } => {
                // A restart point is at or below the anchor: the log restarts there.
                if snapshot.is_some() {
                    self.log.reset(self.anchor.0, self.anchor.1);
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
                    self.log.check_append(keep).map_err(|e| e.to_string())?;
                    self.log.append(keep);
                    seg.max_entry_index = seg.max_entry_index.max(entries[entries.len() - 1].index);
                }
                if let Some(hs) = hard_state {
                    self.hard_state = hs;
                }
            }
            Record::Compact { .. } => {}
            Record::Apply { .. } | Record::ConfState { .. } => {
                return Err(
                    "an apply or conf state record in a log-only WAL (is this a memwal \
                            directory?)"
                        .into(),
                );
            }
        }
        Ok(())
    }
}

impl LogStore for WalLog {
    fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    fn truncated(&self) -> (u64, u64) {
        self.log.truncated()
    }

    fn last_index(&self) -> u64 {
        self.log.last_index()
    }

    fn term(&self, idx: u64) -> Result<u64> {
        self.log
            .term(idx)
            .map_err(|e| StorageError::Invalid(format!("term of entry {idx}: {e}")))
    }

    fn entries(&self, low: u64, high: u64, max_size: Option<u64>) -> Result<Vec<Entry>> {
        self.log
            .entries(low, high, max_size)
            .map_err(|e| StorageError::Invalid(format!("entries {low}..{high}: {e}")))
    }

    /// One `Persist` record; a reset is its snapshot marker (metadata with only the index
    /// and term).
    fn write(&mut self, w: LogWrite<'_>) -> Result<()> {
        let marker = w.reset.map(|(index, term)| {
            let mut m = SnapshotMetadata::default();
            m.index = index;
            m.term = term;
            m
        });
        self.append(
            RecordType::Persist,
            |buf| record::encode_persist(buf, marker.as_ref(), w.entries, w.hard_state),
            w.sync,
        )?;
        if let Some((index, term)) = w.reset {
            self.log.reset(index, term);
        }
        self.log.append(w.entries);
        if let Some(last) = w.entries.last() {
            self.wal.note_entries(last.index);
        }
        if let Some(hs) = w.hard_state {
            self.hard_state = hs.clone();
        }
        if w.reset.is_some() {
            self.delete_obsolete()?;
        }
        Ok(())
    }

    fn compact(&mut self, up_to: u64, term: u64, sync: bool) -> Result<()> {
        self.append(
            RecordType::Compact,
            |buf| record::encode_compact(buf, up_to, term),
            sync,
        )?;
        self.log.compact(up_to);
        self.delete_obsolete()?;
        Ok(())
    }

    fn sync(&mut self) -> Result<()> {
        self.wal.sync()
    }

    fn memory_bytes(&self) -> u64 {
        self.log.bytes()
    }

    fn opened(&self) -> LogOpened {
        self.opened.clone()
    }
}
