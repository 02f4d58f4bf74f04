//! The `rocksdb` log store: the raft log in a RocksDB of its own (`<log dir>/db`), TiKV's
//! raftdb before 6.1.
//!
//! Column families as in the `rocksdb` mode: `raft_log` (key = big-endian index, value =
//! the protobuf entry) and `raft_meta` (`hard_state`, `truncated`). Every
//! [`LogStore::write`] and compaction is one `WriteBatch` through RocksDB's WAL, synced when
//! asked; point-in-time recovery keeps a prefix of them after a crash. Deleted entries are
//! range tombstones, removed from disk by RocksDB's compactions: the write amplification a
//! dedicated log engine avoids. The newest entries are cached in memory ([`MemLog`]).

use std::path::{Path, PathBuf};
use std::time::Instant;

use protobuf::Message as _;
use raft::eraftpb::{Entry, HardState};
use rocksdb::{Cache, ColumnFamily, ColumnFamilyDescriptor, DB, WriteBatch, WriteOptions};

use super::{LogOpened, LogStore, LogWrite};
use crate::storage::memlog::MemLog;
use crate::storage::rocks::{
    cf_options, db_options, flush_and_compaction_bytes, index_of, log_key, read_log_entries,
    read_log_entry, rocks, truncated_value,
};
use crate::storage::{BackendConfig, Compression, Result, StorageError, datadir};

const CF_LOG: &str = "raft_log";
const CF_META: &str = "raft_meta";
const META_HARD_STATE: &[u8] = b"hard_state";
const META_TRUNCATED: &[u8] = b"truncated";

/// Entries kept in the in-memory tail cache.
const TAIL_CACHE_ENTRIES: usize = 4096;

/// See the module docs.
pub struct RocksLog {
    db: DB,
    /// The DB's options, which hold its statistics.
    db_opts: rocksdb::Options,
    cache: Cache,
    path: PathBuf,
    hard_state: HardState,
    truncated: (u64, u64),
    last_index: u64,
    tail: MemLog,
    opened: LogOpened,
}

impl RocksLog {
    /// Open (creating if needed) the DB in `dir`.
    pub fn open(config: &BackendConfig, dir: &Path) -> Result<Self> {
        let o = &config.rocksdb;
        datadir::create_dir_durable(dir)?;
        let path = dir.join("db");
        datadir::create_dir_durable(&path)?;
        // The log is short-lived and never read by key range: no compression, no filter.
        let cache = Cache::new_lru_cache(o.block_cache_size.as_u64() as usize);
        let cfs = [CF_LOG, CF_META]
            .map(|n| ColumnFamilyDescriptor::new(n, cf_options(o, &cache, Compression::None, 0)));
        let started = Instant::now();
        let db_opts = db_options(o);
        let db = DB::open_cf_descriptors(&db_opts, &path, cfs).map_err(rocks("open"))?;
        let replay_ms = started.elapsed().as_secs_f64() * 1e3;
        let corrupt = |why: String| StorageError::corrupt(&path, 0, why);
        let meta = db.cf_handle(CF_META).expect("meta cf");
        let hard_state = match db
            .get_pinned_cf(meta, META_HARD_STATE)
            .map_err(rocks("read metadata"))?
        {
            Some(b) => {
                HardState::parse_from_bytes(&b).map_err(|e| corrupt(format!("hard state: {e}")))?
            }
            None => HardState::default(),
        };
        let truncated = match db
            .get_pinned_cf(meta, META_TRUNCATED)
            .map_err(rocks("read metadata"))?
        {
            Some(b) if b.len() == 16 => (
                u64::from_be_bytes(b[..8].try_into().expect("8 bytes")),
                u64::from_be_bytes(b[8..].try_into().expect("8 bytes")),
            ),
            Some(b) => {
                return Err(corrupt(format!(
                    "truncated: {} bytes, expected 16",
                    b.len()
                )));
            }
            None => (0, 0),
        };
        let log_cf = db.cf_handle(CF_LOG).expect("log cf");
        let mut it = db.raw_iterator_cf(log_cf);
        it.seek_to_last();
        let last_index = match it.key() {
            Some(k) => index_of(k).ok_or_else(|| corrupt("raft log: bad key".into()))?,
            None => truncated.0,
        };
        it.seek_to_first();
        if let Some(k) = it.key() {
            let first = index_of(k).ok_or_else(|| corrupt("raft log: bad key".into()))?;
            if first != truncated.0 + 1 {
                return Err(corrupt(format!(
                    "raft log: first entry is {first} but the truncation point is {}",
                    truncated.0
                )));
            }
        }
        it.status().map_err(rocks("scan the log"))?;
        drop(it);
        let term = if last_index == truncated.0 {
            truncated.1
        } else {
            read_log_entry(&db, log_cf, &path, last_index)?.term
        };
        Ok(RocksLog {
            db,
            db_opts,
            cache,
            path,
            hard_state,
            truncated,
            tail: MemLog::new(last_index, term),
            opened: LogOpened {
                replay_ms,
                replayed_records: 0,
                replayed_entries: last_index - truncated.0,
                torn_bytes: 0,
            },
            last_index,
        })
    }

    fn cf(&self, name: &str) -> &ColumnFamily {
        self.db.cf_handle(name).expect("column family exists")
    }

    fn write_batch(&self, batch: WriteBatch, sync: bool) -> Result<()> {
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        self.db.write_opt(batch, &wo).map_err(rocks("write"))
    }

    fn read_term(&self, idx: u64) -> Result<u64> {
        if idx == self.truncated.0 {
            return Ok(self.truncated.1);
        }
        Ok(read_log_entry(&self.db, self.cf(CF_LOG), &self.path, idx)?.term)
    }
}

impl LogStore for RocksLog {
    fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    fn truncated(&self) -> (u64, u64) {
        self.truncated
    }

    fn last_index(&self) -> u64 {
        self.last_index
    }

    fn term(&self, idx: u64) -> Result<u64> {
        if idx < self.truncated.0 || idx > self.last_index {
            return Err(StorageError::Invalid(format!(
                "term of entry {idx}: outside the log {}..={}",
                self.truncated.0, self.last_index
            )));
        }
        match self.tail.term(idx) {
            Ok(t) if idx >= self.tail.truncated().0 => Ok(t),
            _ => self.read_term(idx),
        }
    }

    fn entries(&self, low: u64, high: u64, max_size: Option<u64>) -> Result<Vec<Entry>> {
        if low <= self.truncated.0 || high > self.last_index + 1 || low > high {
            return Err(StorageError::Invalid(format!(
                "entries {low}..{high} outside the log {}..={}",
                self.truncated.0 + 1,
                self.last_index
            )));
        }
        if low >= self.tail.first_index() {
            return self
                .tail
                .entries(low, high, max_size)
                .map_err(|e| StorageError::Invalid(format!("entries {low}..{high}: {e}")));
        }
        read_log_entries(&self.db, self.cf(CF_LOG), &self.path, low, high, max_size)
    }

    fn write(&mut self, w: LogWrite<'_>) -> Result<()> {
        let mut batch = WriteBatch::default();
        let (log_cf, meta_cf) = (self.cf(CF_LOG), self.cf(CF_META));
        let mut last = self.last_index;
        if let Some((index, term)) = w.reset {
            batch.delete_range_cf(log_cf, log_key(self.truncated.0 + 1), log_key(last + 1));
            batch.put_cf(meta_cf, META_TRUNCATED, truncated_value(index, term));
            last = index;
        }
        if let Some(l) = w.entries.last() {
            if l.index < last {
                batch.delete_range_cf(log_cf, log_key(l.index + 1), log_key(last + 1));
            }
            let mut buf = Vec::with_capacity(256);
            for e in w.entries {
                buf.clear();
                e.write_to_vec(&mut buf)
                    .map_err(StorageError::codec("log entry"))?;
                batch.put_cf(log_cf, log_key(e.index), &buf);
            }
        }
        if let Some(hs) = w.hard_state {
            batch.put_cf(
                meta_cf,
                META_HARD_STATE,
                hs.write_to_bytes()
                    .map_err(StorageError::codec("hard state"))?,
            );
        }
        if batch.is_empty() {
            return Ok(());
        }
        self.write_batch(batch, w.sync)?;

        // The batch is written: bring the in-memory view along.
        if let Some((index, term)) = w.reset {
            self.truncated = (index, term);
            self.last_index = index;
            self.tail = MemLog::new(index, term);
        }
        if let (Some(f), Some(l)) = (w.entries.first(), w.entries.last()) {
            if f.index <= self.tail.truncated().0 {
                // Overwrites entries older than the cache: restart it below them.
                match self.read_term(f.index - 1) {
                    Ok(t) => self.tail = MemLog::new(f.index - 1, t),
                    Err(_) => self.tail = MemLog::new(l.index, l.term),
                }
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
        Ok(())
    }

    /// The truncation point and the range deletion in one batch.
    fn compact(&mut self, up_to: u64, term: u64, sync: bool) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.cf(CF_META),
            META_TRUNCATED,
            truncated_value(up_to, term),
        );
        batch.delete_range_cf(
            self.cf(CF_LOG),
            log_key(self.truncated.0 + 1),
            log_key(up_to + 1),
        );
        self.write_batch(batch, sync)?;
        self.truncated = (up_to, term);
        if up_to >= self.tail.truncated().0 {
            self.tail.compact(up_to);
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<()> {
        self.db.flush_wal(true).map_err(rocks("sync the WAL"))
    }

    fn memory_bytes(&self) -> u64 {
        let prop = |name: &str| -> u64 {
            [CF_LOG, CF_META]
                .iter()
                .filter_map(|cf| {
                    self.db
                        .property_int_value_cf(self.cf(cf), name)
                        .ok()
                        .flatten()
                })
                .sum()
        };
        prop("rocksdb.cur-size-all-mem-tables")
            + prop("rocksdb.estimate-table-readers-mem")
            + self.cache.get_usage() as u64
            + self.tail.bytes()
    }

    fn engine_writes(&self) -> (u64, u64) {
        flush_and_compaction_bytes(&self.db_opts)
    }

    fn opened(&self) -> LogOpened {
        self.opened.clone()
    }
}
