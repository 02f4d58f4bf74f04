//! [`CachedLog`]: what a disk-backed log store (`rocksdb`, `raft-engine`) keeps in memory
//! about its log, the hard state, truncation point and last index, plus a cache of the
//! newest entries ([`MemLog`]) so that raft's frequent `term()`/`entries()` calls near the
//! tail cost no disk read. The stores read from disk only what it does not hold.

use raft::eraftpb::{Entry, HardState};

use super::LogWrite;
use crate::storage::memlog::MemLog;
use crate::storage::{Result, StorageError};

/// Entries kept in the tail cache.
pub const TAIL_CACHE_ENTRIES: usize = 4096;

/// See the module docs.
pub struct CachedLog {
    pub hard_state: HardState,
    /// The truncation point `(index, term)`: the log holds `index + 1 ..= last_index`.
    pub truncated: (u64, u64),
    pub last_index: u64,
    tail: MemLog,
}

impl CachedLog {
    /// A log as opened: the tail cache starts empty at the last entry (of `last_term`).
    pub fn new(
        hard_state: HardState,
        truncated: (u64, u64),
        last_index: u64,
        last_term: u64,
    ) -> Self {
        CachedLog {
            hard_state,
            truncated,
            last_index,
            tail: MemLog::new(last_index, last_term),
        }
    }

    /// The term of `idx` when known without reading the disk (the truncation point or the
    /// cache); `Ok(None)` when it must be read; an error outside the log.
    pub fn term(&self, idx: u64) -> Result<Option<u64>> {
        if idx < self.truncated.0 || idx > self.last_index {
            return Err(StorageError::Invalid(format!(
                "term of entry {idx}: outside the log {}..={}",
                self.truncated.0, self.last_index
            )));
        }
        if idx == self.truncated.0 {
            return Ok(Some(self.truncated.1));
        }
        Ok(self
            .tail
            .term(idx)
            .ok()
            .filter(|_| idx >= self.tail.truncated().0))
    }

    /// Entries `low..high` from the cache when it holds them all (`Ok(None)`: read the
    /// disk); an error when the range is outside the log.
    pub fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: Option<u64>,
    ) -> Result<Option<Vec<Entry>>> {
        if low <= self.truncated.0 || high > self.last_index + 1 || low > high {
            return Err(StorageError::Invalid(format!(
                "entries {low}..{high} outside the log {}..={}",
                self.truncated.0 + 1,
                self.last_index
            )));
        }
        if low < self.tail.first_index() {
            return Ok(None);
        }
        self.tail
            .entries(low, high, max_size)
            .map(Some)
            .map_err(|e| StorageError::Invalid(format!("entries {low}..{high}: {e}")))
    }

    /// Bring the view along after `w` was written. `read_term` reads an entry's term from
    /// the disk, for an overwrite older than the cache.
    pub fn written(&mut self, w: &LogWrite<'_>, read_term: impl FnOnce(u64) -> Result<u64>) {
        if let Some((index, term)) = w.reset {
            self.truncated = (index, term);
            self.last_index = index;
            self.tail = MemLog::new(index, term);
        }
        if let (Some(f), Some(l)) = (w.entries.first(), w.entries.last()) {
            if f.index <= self.tail.truncated().0 {
                // Overwrites entries older than the cache: restart it below them (or, if
                // that term cannot be read, empty at the new last entry).
                let floor = f.index - 1;
                let term = match self.term(floor) {
                    Ok(Some(t)) => Ok(t),
                    _ => read_term(floor),
                };
                self.tail = match term {
                    Ok(t) => MemLog::new(floor, t),
                    Err(_) => MemLog::new(l.index, l.term),
                };
            }
            if f.index > self.tail.truncated().0 {
                self.tail.append(w.entries);
            }
            self.tail.trim_front_to(TAIL_CACHE_ENTRIES);
            self.last_index = l.index;
        }
        if let Some(hs) = w.hard_state {
            self.hard_state = hs.clone();
        }
    }

    /// Bring the view along after a compaction to `up_to` (of `term`) was written.
    pub fn compacted(&mut self, up_to: u64, term: u64) {
        self.truncated = (up_to, term);
        if up_to >= self.tail.truncated().0 {
            self.tail.compact(up_to);
        }
    }

    /// Entries in the log.
    pub fn len(&self) -> u64 {
        self.last_index - self.truncated.0
    }

    /// Memory the cache holds.
    pub fn cache_bytes(&self) -> u64 {
        self.tail.bytes()
    }
}
