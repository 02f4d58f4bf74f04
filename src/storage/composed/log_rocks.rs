//! The `rocksdb` log store: the raft log in a RocksDB of its own (`<log dir>/db`), TiKV's
//! raftdb before 6.1.
//!
//! Column families as in the `rocksdb` mode: `raft_log` (key = big-endian index, value =
//! the protobuf entry) and `raft_meta` (`hard_state`, `truncated`). Every
//! [`LogStore::write`] and compaction is one `WriteBatch` through RocksDB's WAL, synced when
//! asked; point-in-time recovery keeps a prefix of them after a crash. Deleted entries are
//! range tombstones, removed from disk by RocksDB's compactions: the write amplification a
//! dedicated log engine avoids. The newest entries are cached in memory ([`CachedLog`]).

use std::path::{Path, PathBuf};
use std::time::Instant;

use protobuf::Message as _;
use raft::eraftpb::{Entry, HardState};
use rocksdb::{Cache, ColumnFamily, ColumnFamilyDescriptor, DB, WriteBatch, WriteOptions};

use super::cached_log::CachedLog;
use super::{LogOpened, LogStore, LogWrite};
use crate::storage::rocks::{
    cf_options, db_options, flush_and_compaction_bytes, log_key, read_log_entries, read_log_entry,
    rocks, scan_log_end, truncated_value,
};
use crate::storage::{BackendConfig, Compression, Result, StorageError, datadir};

const CF_LOG: &str = "raft_log";
const CF_META: &str = "raft_meta";
const META_HARD_STATE: &[u8] = b"hard_state";
const META_TRUNCATED: &[u8] = b"truncated";

/// See the module docs.
pub struct RocksLog {
    db: DB,
    /// The DB's options, which hold its statistics.
    db_opts: rocksdb::Options,
    cache: Cache,
    path: PathBuf,
    log: CachedLog,
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
        let last_index = scan_log_end(&db, log_cf, &path, truncated.0)?;
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
            log: CachedLog::new(hard_state, truncated, last_index, term),
            opened: LogOpened {
                replay_ms,
                replayed_records: 0,
                replayed_entries: last_index - truncated.0,
                torn_bytes: 0,
            },
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

    /// The term of entry `idx`, read from the DB.
    fn read_term(&self, idx: u64) -> Result<u64> {
        Ok(read_log_entry(&self.db, self.cf(CF_LOG), &self.path, idx)?.term)
    }
}

impl LogStore for RocksLog {
    fn hard_state(&self) -> &HardState {
        &self.log.hard_state
    }

    fn truncated(&self) -> (u64, u64) {
        self.log.truncated
    }

    fn last_index(&self) -> u64 {
        self.log.last_index
    }

    fn term(&self, idx: u64) -> Result<u64> {
        match self.log.term(idx)? {
            Some(t) => Ok(t),
            None => self.read_term(idx),
        }
    }

    fn entries(&self, low: u64, high: u64, max_size: Option<u64>) -> Result<Vec<Entry>> {
        if let Some(cached) = self.log.entries(low, high, max_size)? {
            return Ok(cached);
        }
        read_log_entries(&self.db, self.cf(CF_LOG), &self.path, low, high, max_size)
    }

    fn write(&mut self, w: LogWrite<'_>) -> Result<()> {
        let mut batch = WriteBatch::default();
        let (log_cf, meta_cf) = (self.cf(CF_LOG), self.cf(CF_META));
        let mut last = self.log.last_index;
        if let Some((index, term)) = w.reset {
            let first = self.log.truncated.0 + 1;
            batch.delete_range_cf(log_cf, log_key(first), log_key(last + 1));
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

        let (db, path) = (&self.db, &self.path);
        let log_cf = db.cf_handle(CF_LOG).expect("column family exists");
        self.log
            .written(&w, |idx| Ok(read_log_entry(db, log_cf, path, idx)?.term));
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
            log_key(self.log.truncated.0 + 1),
            log_key(up_to + 1),
        );
        self.write_batch(batch, sync)?;
        self.log.compacted(up_to, term);
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
            + self.log.cache_bytes()
    }

    fn engine_writes(&self) -> (u64, u64) {
        flush_and_compaction_bytes(&self.db_opts)
    }

    fn opened(&self) -> LogOpened {
        self.opened.clone()
    }
}
