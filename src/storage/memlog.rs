//! An in-memory raft log with a truncation point: raft-rs's `Storage` read semantics over a
//! `VecDeque<Entry>`, plus checked append/compact.
//!
//! memwal keeps its whole log here; RocksDB keeps the recent tail here as a read cache.
//! Every mutation is validated by a `check_*` method first, so a backend can refuse a bad
//! write *before* it reaches the disk.

use std::collections::VecDeque;

use raft::StorageError as RaftStorageError;
use raft::eraftpb::Entry;
use raft::util::limit_size;

use super::error::{Result, StorageError};

/// A contiguous run of entries `(truncated_index, truncated_index + len]`, plus the term of
/// the entry at `truncated_index` (the snapshot / compaction point).
#[derive(Debug, Clone, Default)]
pub struct MemLog {
    truncated_index: u64,
    truncated_term: u64,
    entries: VecDeque<Entry>,
    bytes: u64,
}

impl MemLog {
    /// An empty log whose truncation point is `(index, term)`.
    pub fn new(index: u64, term: u64) -> Self {
        MemLog {
            truncated_index: index,
            truncated_term: term,
            entries: VecDeque::new(),
            bytes: 0,
        }
    }

    /// Index of the first entry held (`truncated_index + 1`).
    pub fn first_index(&self) -> u64 {
        self.truncated_index + 1
    }

    /// Index of the last entry held, or the truncation point when empty.
    pub fn last_index(&self) -> u64 {
        self.truncated_index + self.entries.len() as u64
    }

    /// The truncation point `(index, term)`.
    pub fn truncated(&self) -> (u64, u64) {
        (self.truncated_index, self.truncated_term)
    }

    /// Number of entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entries are held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Approximate bytes held by entry payloads.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The entry at `idx`, if held.
    pub fn get(&self, idx: u64) -> Option<&Entry> {
        if idx <= self.truncated_index {
            return None;
        }
        self.entries.get((idx - self.truncated_index - 1) as usize)
    }

    /// raft-rs `Storage::term`: `Compacted` below the truncation point, `Unavailable` past
    /// the last entry.
    pub fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.truncated_index {
            return Ok(self.truncated_term);
        }
        if idx < self.truncated_index {
            return Err(raft::Error::Store(RaftStorageError::Compacted));
        }
        match self.get(idx) {
            Some(e) => Ok(e.term),
            None => Err(raft::Error::Store(RaftStorageError::Unavailable)),
        }
    }

    /// raft-rs `Storage::entries` for `[low, high)`: `Compacted` below `first_index`,
    /// `Unavailable` past the end, and at least one entry whatever `max_size` says.
    pub fn entries(&self, low: u64, high: u64, max_size: Option<u64>) -> raft::Result<Vec<Entry>> {
        if low <= self.truncated_index {
            return Err(raft::Error::Store(RaftStorageError::Compacted));
        }
        if high > self.last_index() + 1 || low > high {
            return Err(raft::Error::Store(RaftStorageError::Unavailable));
        }
        let lo = (low - self.truncated_index - 1) as usize;
        let hi = (high - self.truncated_index - 1) as usize;
        let mut out: Vec<Entry> = self.entries.range(lo..hi).cloned().collect();
        limit_size(&mut out, max_size);
        Ok(out)
    }

    /// Check that `ents` (consecutive indexes) can be appended: not below `first_index`,
    /// no gap after `last_index`.
    pub fn check_append(&self, ents: &[Entry]) -> Result<()> {
        Self::check_append_range(self.first_index(), self.last_index(), ents)
    }

    /// [`Self::check_append`] for a log holding `[first_index, last_index]`.
    pub fn check_append_range(first_index: u64, last_index: u64, ents: &[Entry]) -> Result<()> {
        let Some(first) = ents.first() else {
            return Ok(());
        };
        if first.index < first_index {
            return Err(StorageError::Invalid(format!(
                "append at index {} overwrites compacted entries (first index is {first_index})",
                first.index
            )));
        }
        if first.index > last_index + 1 {
            return Err(StorageError::Invalid(format!(
                "append at index {} leaves a gap after last index {last_index}",
                first.index
            )));
        }
        for w in ents.windows(2) {
            if w[1].index != w[0].index + 1 {
                return Err(StorageError::Invalid(format!(
                    "appended entries are not consecutive: {} follows {}",
                    w[1].index, w[0].index
                )));
            }
        }
        Ok(())
    }

    /// Append `ents`, truncating any conflicting suffix. Call [`Self::check_append`] first.
    pub fn append(&mut self, ents: &[Entry]) {
        let Some(first) = ents.first() else { return };
        debug_assert!(self.check_append(ents).is_ok());
        let keep = (first.index - self.truncated_index - 1) as usize;
        while self.entries.len() > keep {
            let e = self.entries.pop_back().expect("len > keep");
            self.bytes -= entry_bytes(&e);
        }
        for e in ents {
            self.bytes += entry_bytes(e);
            self.entries.push_back(e.clone());
        }
    }

    /// Check that compacting up to `up_to` is possible (at most `last_index`).
    pub fn check_compact(&self, up_to: u64) -> Result<()> {
        if up_to > self.last_index() {
            return Err(StorageError::Invalid(format!(
                "compact to {up_to} is past the last index {}",
                self.last_index()
            )));
        }
        Ok(())
    }

    /// Drop entries `<= up_to` (no-op at or below the truncation point), keeping the term of
    /// `up_to` as the new truncation term. Call [`Self::check_compact`] first.
    pub fn compact(&mut self, up_to: u64) {
        if up_to <= self.truncated_index {
            return;
        }
        let term = self.term(up_to).expect("checked by check_compact");
        let n = (up_to - self.truncated_index) as usize;
        // Keep the (short) rest and hand the (long) compacted front to another thread to
        // free: dropping a snapshot interval's worth of entries is milliseconds that the
        // raft thread, which calls this, should not spend.
        let rest = self.entries.split_off(n);
        let old = std::mem::replace(&mut self.entries, rest);
        self.bytes -= old.iter().map(entry_bytes).sum::<u64>();
        self.truncated_index = up_to;
        self.truncated_term = term;
        drop_elsewhere(old);
    }

    /// Drop the oldest entries so that at most `max` remain (used as a bounded cache); the
    /// truncation point moves up with them.
    pub fn trim_front_to(&mut self, max: usize) {
        while self.entries.len() > max {
            let e = self.entries.pop_front().expect("len > max");
            self.bytes -= entry_bytes(&e);
            self.truncated_term = e.term;
            self.truncated_index += 1;
        }
    }

    /// Drop every entry above `index` (no-op if none).
    pub fn truncate_after(&mut self, index: u64) {
        while self.last_index() > index && !self.entries.is_empty() {
            let e = self.entries.pop_back().expect("non-empty");
            self.bytes -= entry_bytes(&e);
        }
    }

    /// Forget everything and restart at `(index, term)` (a snapshot was installed).
    pub fn reset(&mut self, index: u64, term: u64) {
        *self = MemLog::new(index, term);
    }
}

/// Free `entries` on a short-lived thread when there are many (inline when few, or when
/// no thread can be started).
fn drop_elsewhere(entries: VecDeque<Entry>) {
    if entries.len() < 4096 {
        return;
    }
    let _ = std::thread::Builder::new()
        .name("free-log".into())
        .spawn(move || {
            super::snapshots::background_priority();
            drop(entries)
        });
}

fn entry_bytes(e: &Entry) -> u64 {
    (e.data.len() + e.context.len() + 48) as u64
}
