//! The RocksDB backend.
//!
//! Column families:
//! - `raft_log`: key = entry index as big-endian `u64` (byte order = numeric order), value =
//!   the protobuf `Entry`;
//! - `raft_meta`: `hard_state`, `conf_state` (protobuf), `truncated` (index, term),
//!   `applied` (index), `snapshot` (index of the newest created snapshot);
//! - `kv`: the user data.
//!
//! Every trait write is **one `WriteBatch`** across column families, so it is atomic; a
//! persist's batch is written with `sync` per the fsync policy, and RocksDB's WAL (one log
//! for all column families, point-in-time recovery) gives the prefix-after-crash guarantee
//! the trait promises. Installing a snapshot replaces `kv`, the log and the metadata in the
//! same batch as the entries and hard state that come with it. Compaction writes the new
//! truncation point and the range deletion of the log in one batch (the point is recorded
//! no later than the deletion). The most recent entries are cached in memory ([`MemLog`]) so
//! that raft's frequent `term()`/`entries()` calls near the tail cost no disk read.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Buf;
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::util::limit_size;
use raft::{GetEntriesContext, RaftState};
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DB, DBCompressionType,
    DBRecoveryMode, Options, ReadOptions, WriteBatch, WriteOptions,
};
use tracing::info;

use super::memlog::MemLog;
use super::snapfile;
use super::snapshots::{self, BuiltSnapshot, Finished, SnapshotCache, SnapshotJob};
use super::{
    BackendConfig, BackendKind, BackendStats, Compression, KvRead, KvReader, OpenReport, Result,
    RocksdbOptions, StorageBackend, StorageError, check_apply, check_compact, check_snapshot,
    datadir, hard_state_needs_sync,
};
use crate::kv::KvCommand;

/// On-disk format version of RocksDB data directories.
pub const FORMAT_VERSION: u32 = 1;

const CF_LOG: &str = "raft_log";
const CF_META: &str = "raft_meta";
const CF_KV: &str = "kv";

const META_HARD_STATE: &[u8] = b"hard_state";
const META_CONF_STATE: &[u8] = b"conf_state";
const META_TRUNCATED: &[u8] = b"truncated";
const META_APPLIED: &[u8] = b"applied";
const META_SNAPSHOT: &[u8] = b"snapshot";

/// Entries kept in the in-memory tail cache.
const TAIL_CACHE_ENTRIES: usize = 4096;

pub(crate) fn log_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

pub(crate) fn rocks(op: &'static str) -> impl FnOnce(rocksdb::Error) -> StorageError {
    move |source| StorageError::Rocks { op, source }
}

/// The applied state as seen from other threads.
struct Reader {
    db: Arc<DB>,
    applied: Arc<AtomicU64>,
}

impl KvRead for Reader {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let cf = self.db.cf_handle(CF_KV).expect("kv column family");
        Ok(self
            .db
            .get_pinned_cf(cf, key)
            .map_err(rocks("get"))?
            .map(|v| v.to_vec()))
    }
    fn applied_index(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }
    fn scan(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let view = self.db.snapshot();
        let cf = self.db.cf_handle(CF_KV).expect("kv column family");
        let mut it = view.raw_iterator_cf(cf);
        it.seek_to_first();
        let mut out = Vec::new();
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            out.push((k.to_vec(), v.to_vec()));
            it.next();
        }
        it.status().map_err(rocks("scan kv"))?;
        Ok(out)
    }
}

/// RocksDB-backed replica storage. See the module docs.
pub struct RocksBackend {
    config: BackendConfig,
    db: Arc<DB>,
    /// The DB's options, which hold its statistics.
    db_opts: Options,
    cache: Cache,
    hard_state: HardState,
    conf_state: ConfState,
    truncated: (u64, u64),
    last_index: u64,
    /// The newest entries; its truncation point is the cache floor, not the log's.
    tail: MemLog,
    applied: Arc<AtomicU64>,
    snapshot_index: u64,
    /// Where built snapshots are written (`<dir>/snap`): only copies to send to followers,
    /// the DB itself is the replica's state.
    snap_dir: std::path::PathBuf,
    /// The newest built snapshot, which raft sends to followers.
    snapshots: SnapshotCache,
    open_report: OpenReport,
}

impl RocksBackend {
    /// Open (creating if needed) the RocksDB directory named by `config`.
    pub fn open(config: BackendConfig) -> Result<Self> {
        let started = Instant::now();
        let fresh = datadir::claim(&config.dir, BackendKind::Rocksdb, FORMAT_VERSION)?;
        let o = &config.rocksdb;
        let cache = Cache::new_lru_cache(o.block_cache_size.as_u64() as usize);
        let db_opts = db_options(o);
        let cf_opts = |compression, bloom| cf_options(o, &cache, compression, bloom);
        let cfs = vec![
            ColumnFamilyDescriptor::new(CF_LOG, cf_opts(Compression::None, 0)),
            ColumnFamilyDescriptor::new(CF_META, cf_opts(Compression::None, 0)),
            ColumnFamilyDescriptor::new(CF_KV, cf_opts(o.compression, o.bloom_bits_per_key)),
        ];
        let db_path = config.dir.join("db");
        // RocksDB creates `db` without syncing its parent: after a power loss the whole
        // database could be gone (found on faultfs in strict metadata mode).
        datadir::create_dir_durable(&db_path)?;
        let snap_dir = config.dir.join("snap");
        datadir::create_dir_durable(&snap_dir)?;
        remove_files_below(&snap_dir, u64::MAX)?;
        datadir::empty_trash(&datadir::trash_dir(&config.dir))?;
        let db_started = Instant::now();
        let db = DB::open_cf_descriptors(&db_opts, &db_path, cfs).map_err(rocks("open"))?;
        let replay_ms = db_started.elapsed().as_secs_f64() * 1e3;
        let db = Arc::new(db);

        let meta = db.cf_handle(CF_META).expect("meta cf");
        let read_meta = |k: &[u8]| -> Result<Option<Vec<u8>>> {
            Ok(db
                .get_pinned_cf(meta, k)
                .map_err(rocks("read metadata"))?
                .map(|v| v.to_vec()))
        };
        let corrupt =
            |what: &str, why: String| StorageError::corrupt(&db_path, 0, format!("{what}: {why}"));
        let mut hard_state = match read_meta(META_HARD_STATE)? {
            Some(b) => {
                HardState::parse_from_bytes(&b).map_err(|e| corrupt("hard state", e.to_string()))?
            }
            None => HardState::default(),
        };
        let conf_state = match read_meta(META_CONF_STATE)? {
            Some(b) => {
                ConfState::parse_from_bytes(&b).map_err(|e| corrupt("conf state", e.to_string()))?
            }
            None => ConfState::default(),
        };
        let u64s = |k: &[u8], n: usize| -> Result<Vec<u64>> {
            match read_meta(k)? {
                None => Ok(vec![0; n]),
                Some(b) if b.len() == 8 * n => {
                    let mut b = &b[..];
                    Ok((0..n).map(|_| b.get_u64()).collect())
                }
                Some(b) => Err(corrupt(
                    std::str::from_utf8(k).unwrap_or("metadata"),
                    format!("{} bytes, expected {}", b.len(), 8 * n),
                )),
            }
        };
        let t = u64s(META_TRUNCATED, 2)?;
        let truncated = (t[0], t[1]);
        let applied = u64s(META_APPLIED, 1)?[0];
        let snapshot_index = u64s(META_SNAPSHOT, 1)?[0];

        let log_cf = db.cf_handle(CF_LOG).expect("log cf");
        let last_index = scan_log_end(&db, log_cf, &db_path, truncated.0)?;
        if applied > last_index {
            return Err(corrupt(
                "raft log",
                format!("applied index {applied} is past the last entry {last_index}"),
            ));
        }
        hard_state.commit = hard_state.commit.max(applied);

        let mut backend = RocksBackend {
            db: db.clone(),
            cache,
            db_opts,
            hard_state,
            conf_state,
            truncated,
            last_index,
            tail: MemLog::new(last_index, 0),
            applied: Arc::new(AtomicU64::new(applied)),
            snapshot_index,
            snap_dir,
            snapshots: SnapshotCache::default(),
            open_report: OpenReport {
                fresh,
                open_ms: 0.0,
                replay_ms,
                replayed_records: 0,
                replayed_entries: 0,
                torn_bytes_truncated: 0,
                log_restarted_at_snapshot: false,
            },
            config,
        };
        let floor_term = if last_index == truncated.0 {
            truncated.1
        } else {
            backend.read_entry(last_index)?.term
        };
        backend.tail = MemLog::new(last_index, floor_term);
        backend.open_report.open_ms = started.elapsed().as_secs_f64() * 1e3;
        info!(
            dir = %backend.config.dir.display(),
            open_ms = backend.open_report.open_ms,
            first_index = truncated.0 + 1,
            last_index,
            applied,
            "rocksdb opened"
        );
        Ok(backend)
    }

    fn cf(&self, name: &str) -> &ColumnFamily {
        self.db.cf_handle(name).expect("column family exists")
    }

    fn write(&self, batch: WriteBatch, sync: bool) -> Result<()> {
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        self.db.write_opt(batch, &wo).map_err(rocks("write"))
    }

    /// Term of `idx` for `truncated.0 <= idx <= last_index`, from cache or disk.
    fn read_term(&self, idx: u64) -> Result<u64> {
        if idx == self.truncated.0 {
            return Ok(self.truncated.1);
        }
        if let Ok(t) = self.tail.term(idx) {
            return Ok(t);
        }
        Ok(self.read_entry(idx)?.term)
    }

    fn read_entry(&self, idx: u64) -> Result<Entry> {
        read_log_entry(&self.db, self.cf(CF_LOG), &db_path(&self.config.dir), idx)
    }

    fn read_entries(&self, low: u64, high: u64, max_size: Option<u64>) -> Result<Vec<Entry>> {
        let path = db_path(&self.config.dir);
        read_log_entries(&self.db, self.cf(CF_LOG), &path, low, high, max_size)
    }

    fn reset_tail_at(&mut self, floor: u64) -> Result<()> {
        let term = self.read_term(floor)?;
        self.tail = MemLog::new(floor, term);
        Ok(())
    }

    fn sum_property(&self, name: &str) -> u64 {
        [CF_LOG, CF_META, CF_KV]
            .iter()
            .filter_map(|cf| {
                self.db
                    .property_int_value_cf(self.cf(cf), name)
                    .ok()
                    .flatten()
            })
            .sum()
    }
}

/// DB-wide options every RocksDB of a data directory shares: created on demand,
/// point-in-time WAL recovery.
pub(crate) fn db_options(o: &RocksdbOptions) -> Options {
    let mut db_opts = Options::default();
    db_opts.create_if_missing(true);
    db_opts.create_missing_column_families(true);
    db_opts.set_max_background_jobs(o.max_background_jobs);
    // Recovery stops at the first damaged WAL record and keeps what came before it: the
    // mode RocksDB documents for recovering to a consistent point after a power cut (the
    // stricter modes refuse to open after a torn write, even of unsynced data). It
    // matches memwal's repair of a torn tail. Where they differ: memwal refuses to open
    // when the damage is in synced data (a sealed segment, or a record with no zeroed
    // sector), while RocksDB stops there without an error, so a corrupted RocksDB replica
    // may come back at an older prefix (README, "Power loss").
    db_opts.set_wal_recovery_mode(DBRecoveryMode::PointInTime);
    // Tickers only (flush and compaction bytes for `/status`), no timers or histograms:
    // RocksDB documents this level as cheap.
    db_opts.enable_statistics();
    db_opts.set_statistics_level(rocksdb::statistics::StatsLevel::ExceptHistogramOrTimers);
    db_opts
}

/// Bytes `opts`'s DB wrote flushing and compacting (statistics from [`db_options`]).
pub(crate) fn flush_and_compaction_bytes(opts: &Options) -> (u64, u64) {
    use rocksdb::statistics::Ticker;
    (
        opts.get_ticker_count(Ticker::FlushWriteBytes),
        opts.get_ticker_count(Ticker::CompactWriteBytes),
    )
}

/// Options of one column family: `cache` as its block cache, the memtable size of `o`.
pub(crate) fn cf_options(
    o: &RocksdbOptions,
    cache: &Cache,
    compression: Compression,
    bloom: u32,
) -> Options {
    let mut bb = BlockBasedOptions::default();
    bb.set_block_cache(cache);
    if bloom > 0 {
        bb.set_bloom_filter(f64::from(bloom), false);
    }
    let mut c = Options::default();
    c.set_block_based_table_factory(&bb);
    c.set_write_buffer_size(o.write_buffer_size.as_u64() as usize);
    c.set_compression_type(match compression {
        Compression::None => DBCompressionType::None,
        Compression::Lz4 => DBCompressionType::Lz4,
        Compression::Zstd => DBCompressionType::Zstd,
    });
    c
}

/// The last index of a raft log column family (`log` of the DB at `db_path`) whose
/// truncation point is `truncated`, checking that the log starts right after it.
pub(crate) fn scan_log_end(
    db: &DB,
    log: &ColumnFamily,
    db_path: &Path,
    truncated: u64,
) -> Result<u64> {
    let corrupt = |why: String| StorageError::corrupt(db_path, 0, format!("raft log: {why}"));
    let index = |k: &[u8]| index_of(k).ok_or_else(|| corrupt("bad key".into()));
    let mut it = db.raw_iterator_cf(log);
    it.seek_to_last();
    let last_index = match it.key() {
        Some(k) => index(k)?,
        None => truncated,
    };
    it.seek_to_first();
    if let Some(k) = it.key() {
        let first = index(k)?;
        if first != truncated + 1 {
            return Err(corrupt(format!(
                "first entry is {first} but the truncation point is {truncated}"
            )));
        }
    }
    it.status().map_err(rocks("scan the log"))?;
    Ok(last_index)
}

/// Entry `idx` of a raft log column family (`log` of the DB at `db_path`).
pub(crate) fn read_log_entry(
    db: &DB,
    log: &ColumnFamily,
    db_path: &Path,
    idx: u64,
) -> Result<Entry> {
    let v = db
        .get_pinned_cf(log, log_key(idx))
        .map_err(rocks("read entry"))?
        .ok_or_else(|| StorageError::corrupt(db_path, 0, format!("log entry {idx} is missing")))?;
    Entry::parse_from_bytes(&v).map_err(StorageError::codec("log entry"))
}

/// Entries `[low, high)` of a raft log column family, stopping once `max_size` is exceeded
/// (at least one entry). A missing entry is corruption.
pub(crate) fn read_log_entries(
    db: &DB,
    log: &ColumnFamily,
    db_path: &Path,
    low: u64,
    high: u64,
    max_size: Option<u64>,
) -> Result<Vec<Entry>> {
    let mut ro = ReadOptions::default();
    ro.set_iterate_upper_bound(log_key(high).to_vec());
    let mut it = db.raw_iterator_cf_opt(log, ro);
    it.seek(log_key(low));
    let mut out = Vec::with_capacity((high - low).min(1024) as usize);
    let mut size = 0u64;
    let mut expect = low;
    while let (Some(k), Some(v)) = (it.key(), it.value()) {
        if index_of(k) != Some(expect) {
            break;
        }
        let e = Entry::parse_from_bytes(v).map_err(StorageError::codec("log entry"))?;
        size += u64::from(protobuf::Message::compute_size(&e));
        if !out.is_empty() && max_size.is_some_and(|m| size > m) {
            return Ok(out);
        }
        out.push(e);
        expect += 1;
        it.next();
    }
    it.status().map_err(rocks("read entries"))?;
    if expect != high {
        return Err(StorageError::corrupt(
            db_path,
            0,
            format!("log entry {expect} is missing"),
        ));
    }
    Ok(out)
}

pub(crate) fn index_of(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

pub(crate) fn truncated_value(index: u64, term: u64) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&index.to_be_bytes());
    v[8..].copy_from_slice(&term.to_be_bytes());
    v
}

impl raft::Storage for RocksBackend {
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
        let max_size = max_size.into();
        if low <= self.truncated.0 {
            return Err(raft::Error::Store(raft::StorageError::Compacted));
        }
        if high > self.last_index + 1 || low > high {
            return Err(raft::Error::Store(raft::StorageError::Unavailable));
        }
        if low == high {
            return Ok(Vec::new());
        }
        if low >= self.tail.first_index() {
            return self.tail.entries(low, high, max_size);
        }
        let mut out = self.read_entries(low, high, max_size)?;
        limit_size(&mut out, max_size);
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx < self.truncated.0 {
            return Err(raft::Error::Store(raft::StorageError::Compacted));
        }
        if idx > self.last_index {
            return Err(raft::Error::Store(raft::StorageError::Unavailable));
        }
        Ok(self.read_term(idx)?)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.truncated.0 + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last_index)
    }

    /// The newest built snapshot (O(1): it maps its file), when it is at least at
    /// `request_index` and at the log's truncation point; otherwise "temporarily
    /// unavailable", and [`StorageBackend::snapshot_wanted`] asks the raft loop to build one.
    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        self.snapshots
            .serve(request_index.max(self.truncated.0), to)
    }
}

impl StorageBackend for RocksBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Rocksdb
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
        let mut batch = WriteBatch::default();
        let (log_cf, meta_cf, kv_cf) = (self.cf(CF_LOG), self.cf(CF_META), self.cf(CF_KV));
        // The log as it will be once the snapshot (if any) is installed.
        let (mut first, mut last) = (self.truncated.0 + 1, self.last_index);
        if let Some(s) = snapshot {
            let data = check_snapshot(s)?;
            let m = s.get_metadata();
            if m.index < first {
                return Err(StorageError::SnapshotOutOfDate {
                    index: m.index,
                    first_index: first,
                });
            }
            MemLog::new(m.index, m.term).check_append(entries)?;
            // Replace kv: delete everything present, then write the snapshot's pairs.
            let mut it = self.db.raw_iterator_cf(kv_cf);
            it.seek_to_last();
            if let Some(last_key) = it.key() {
                let mut end = last_key.to_vec();
                end.push(0);
                batch.delete_range_cf(kv_cf, &[][..], &end[..]);
            }
            it.status().map_err(rocks("scan kv"))?;
            drop(it);
            for (k, v) in data.iter() {
                batch.put_cf(kv_cf, k, v);
            }
            batch.delete_range_cf(log_cf, log_key(first), log_key(last + 1));
            batch.put_cf(meta_cf, META_TRUNCATED, truncated_value(m.index, m.term));
            batch.put_cf(meta_cf, META_APPLIED, m.index.to_be_bytes());
            batch.put_cf(meta_cf, META_SNAPSHOT, m.index.to_be_bytes());
            batch.put_cf(
                meta_cf,
                META_CONF_STATE,
                m.get_conf_state()
                    .write_to_bytes()
                    .map_err(StorageError::codec("conf state"))?,
            );
            (first, last) = (m.index + 1, m.index);
        } else {
            MemLog::check_append_range(first, last, entries)?;
        }
        if let (Some(f), Some(l)) = (entries.first(), entries.last()) {
            if l.index < last {
                batch.delete_range_cf(log_cf, log_key(l.index + 1), log_key(last + 1));
            }
            let mut buf = Vec::with_capacity(256);
            for e in entries {
                buf.clear();
                e.write_to_vec(&mut buf)
                    .map_err(StorageError::codec("log entry"))?;
                batch.put_cf(log_cf, log_key(e.index), &buf);
            }
            debug_assert!(f.index >= first);
        }
        if let Some(hs) = hard_state {
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
        // A snapshot install is synced under every policy, as memwal's is (rare, and the
        // two engines then sync the same structure under `never`).
        let sync = snapshot.is_some()
            || (self.config.fsync.sync()
                && (!entries.is_empty()
                    || hard_state.is_some_and(|hs| hard_state_needs_sync(&self.hard_state, hs))));
        self.write(batch, sync)?;

        // Update the in-memory view only once the write succeeded.
        if let Some(s) = snapshot {
            let m = s.get_metadata();
            self.truncated = (m.index, m.term);
            self.last_index = m.index;
            self.tail = MemLog::new(m.index, m.term);
            self.conf_state = m.get_conf_state().clone();
            self.snapshot_index = m.index;
            self.applied.store(m.index, Ordering::Release);
            // The cached snapshot is older than the new state; raft asks again if it needs one.
            self.snapshots.clear();
        }
        if let Some(f) = entries.first() {
            if f.index <= self.tail.truncated().0 {
                // The batch is written: a failure here would leave the cache behind the
                // disk, so fall back to an empty cache floored at the last new entry.
                if self.reset_tail_at(f.index - 1).is_err() {
                    let last = entries.last().expect("non-empty");
                    self.tail = MemLog::new(last.index, last.term);
                    self.last_index = last.index;
                    if let Some(hs) = hard_state {
                        self.hard_state = hs.clone();
                    }
                    return Ok(());
                }
            }
            self.tail.append(entries);
            self.tail.trim_front_to(TAIL_CACHE_ENTRIES);
            self.last_index = entries.last().expect("non-empty").index;
        }
        if let Some(hs) = hard_state {
            self.hard_state = hs.clone();
        }
        Ok(())
    }

    fn set_conf_state(&mut self, cs: &ConfState) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.cf(CF_META),
            META_CONF_STATE,
            cs.write_to_bytes()
                .map_err(StorageError::codec("conf state"))?,
        );
        // Synced under every policy, as memwal's.
        self.write(batch, true)?;
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
        check_apply(applied, self.last_index, index, commands, conf_state)?;
        if index == applied {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        let kv_cf = self.cf(CF_KV);
        for c in commands {
            match c {
                KvCommand::Put { key, value } => batch.put_cf(kv_cf, key, value),
                KvCommand::Delete { key } => batch.delete_cf(kv_cf, key),
            }
        }
        let meta_cf = self.cf(CF_META);
        batch.put_cf(meta_cf, META_APPLIED, index.to_be_bytes());
        if let Some(cs) = conf_state {
            batch.put_cf(
                meta_cf,
                META_CONF_STATE,
                cs.write_to_bytes()
                    .map_err(StorageError::codec("conf state"))?,
            );
        }
        self.write(batch, false)?;
        self.applied.store(index, Ordering::Release);
        if let Some(cs) = conf_state {
            self.conf_state = cs.clone();
        }
        Ok(())
    }

    fn reader(&self) -> KvReader {
        KvReader::new(Arc::new(Reader {
            db: self.db.clone(),
            applied: self.applied.clone(),
        }))
    }

    fn applied_index(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    /// See [`StorageBackend::begin_snapshot`]. The job takes a RocksDB snapshot (a
    /// consistent view of `kv` and `raft_meta` at one applied index, at least the one now)
    /// on its own thread, syncs RocksDB's WAL (one log for every column family, so the view
    /// is then durable), and scans the view without filling the block cache.
    fn begin_snapshot(&mut self) -> Result<SnapshotJob> {
        let applied = self.applied_index();
        if applied == 0 {
            return Err(StorageError::Invalid(
                "nothing has been applied yet; there is no state to snapshot".into(),
            ));
        }
        let path = snapfile::final_path(&self.snap_dir, applied);
        if let Some(job) = self.snapshots.ready_at(applied, path) {
            return Ok(job);
        }
        let db = self.db.clone();
        let snap_dir = self.snap_dir.clone();
        let db_path = db_path(&self.config.dir);
        let rate = self.config.snapshot_write_rate.as_u64();
        Ok(SnapshotJob::new(applied, move |cancel| {
            let limit = snapfile::Limit { rate, cancel };
            build_from_view(&db, &db_path, &snap_dir, limit)
        }))
    }

    /// See [`StorageBackend::finish_snapshot`]. A built snapshot is adopted when it is newer
    /// than the cached one and not older than the log's truncation point (a snapshot
    /// installed from the leader while it was built may have moved it past). The
    /// `snapshot` metadata key is informational here (the DB is the state), written
    /// unsynced.
    fn finish_snapshot(&mut self, built: BuiltSnapshot) -> Result<Finished> {
        let index = built.index();
        if index < self.snapshots.index() || index < self.truncated.0 {
            snapshots::remove_superseded(&built.path)?;
            return Ok(Finished::Superseded);
        }
        if index == self.snapshots.index() {
            return Ok(Finished::Current);
        }
        if index > self.snapshot_index {
            let mut batch = WriteBatch::default();
            batch.put_cf(self.cf(CF_META), META_SNAPSHOT, index.to_be_bytes());
            self.write(batch, false)?;
            self.snapshot_index = index;
        }
        self.snapshots.set(built.snapshot);
        remove_files_below(&self.snap_dir, index)?;
        Ok(Finished::Adopted)
    }

    fn snapshot_wanted(&self) -> bool {
        self.snapshots.take_wanted()
    }

    fn compact(&mut self, up_to: u64) -> Result<()> {
        if up_to <= self.truncated.0 {
            return Ok(());
        }
        check_compact(self.applied_index(), up_to)?;
        if up_to > self.last_index {
            return Err(StorageError::Invalid(format!(
                "compact to {up_to} is past the last index {}",
                self.last_index
            )));
        }
        let term = self.read_term(up_to)?;
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
        self.write(batch, self.config.fsync.sync())?;
        self.truncated = (up_to, term);
        if up_to > self.tail.truncated().0 {
            self.tail.compact(up_to);
        }
        Ok(())
    }

    fn stats(&self) -> BackendStats {
        let kv_keys = self
            .db
            .property_int_value_cf(self.cf(CF_KV), "rocksdb.estimate-num-keys")
            .ok()
            .flatten()
            .unwrap_or(0);
        BackendStats {
            disk_bytes: datadir::dir_size(&self.config.dir),
            memory_bytes: self.sum_property("rocksdb.cur-size-all-mem-tables")
                + self.sum_property("rocksdb.estimate-table-readers-mem")
                + self.cache.get_usage() as u64
                + self.tail.bytes(),
            kv_keys,
            log_entries: self.last_index - self.truncated.0,
            first_index: self.truncated.0 + 1,
            last_index: self.last_index,
            applied_index: self.applied_index(),
            snapshot_index: self.snapshot_index,
            engine_flush_bytes: flush_and_compaction_bytes(&self.db_opts).0,
            engine_compaction_bytes: flush_and_compaction_bytes(&self.db_opts).1,
        }
    }

    fn open_report(&self) -> OpenReport {
        self.open_report.clone()
    }
}

/// The job of [`RocksBackend::begin_snapshot`]: view, sync, scan, write (within `limit`),
/// map.
fn build_from_view(
    db: &DB,
    db_path: &Path,
    snap_dir: &Path,
    limit: snapfile::Limit<'_>,
) -> Result<BuiltSnapshot> {
    let view = db.snapshot();
    // Everything the view holds must be durable before the snapshot is.
    db.flush_wal(true).map_err(rocks("sync the WAL"))?;
    let cf = |name: &str| db.cf_handle(name).expect("column family exists");
    let corrupt = |why: String| StorageError::corrupt(db_path, 0, why);
    let get_meta = |k: &[u8]| {
        view.get_pinned_cf(cf(CF_META), k)
            .map_err(rocks("read metadata"))
    };
    let applied = match get_meta(META_APPLIED)? {
        Some(b) if b.len() == 8 => (&b[..]).get_u64(),
        _ => return Err(corrupt("the applied index is missing".into())),
    };
    let conf_state = match get_meta(META_CONF_STATE)? {
        Some(b) => {
            ConfState::parse_from_bytes(&b).map_err(|e| corrupt(format!("conf state: {e}")))?
        }
        None => ConfState::default(),
    };
    let truncated = match get_meta(META_TRUNCATED)? {
        Some(b) if b.len() == 16 => {
            let mut b = &b[..];
            (b.get_u64(), b.get_u64())
        }
        _ => (0, 0),
    };
    let term = if applied == truncated.0 {
        truncated.1
    } else {
        let v = view
            .get_pinned_cf(cf(CF_LOG), log_key(applied))
            .map_err(rocks("read entry"))?
            .ok_or_else(|| corrupt(format!("log entry {applied} (the applied one) is missing")))?;
        Entry::parse_from_bytes(&v)
            .map_err(StorageError::codec("log entry"))?
            .term
    };
    let path = snapfile::final_path(snap_dir, applied);
    snapshots::write_file(&path, applied, term, &conf_state, limit, |w| {
        let mut ro = ReadOptions::default();
        // A one-off scan: keep the block cache for the request path.
        ro.fill_cache(false);
        let mut it = view.raw_iterator_cf_opt(cf(CF_KV), ro);
        it.seek_to_first();
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            w.push(k, v)?;
            it.next();
        }
        it.status().map_err(rocks("scan kv"))
    })
}

/// Delete the snapshot files in `dir` older than `keep`, and at open (`keep` = `u64::MAX`)
/// every one, with leftovers of interrupted writes: they are copies, the DB is the state.
fn remove_files_below(dir: &Path, keep: u64) -> Result<()> {
    let mut listing = snapfile::list(dir)?;
    if keep == u64::MAX {
        snapfile::delete_leftovers(&mut listing)?;
    }
    let trash = datadir::trash_dir(dir.parent().unwrap_or(dir));
    for i in listing.finals {
        let path = snapfile::final_path(dir, i);
        if keep == u64::MAX {
            snapshots::remove_superseded(&path)?;
        } else if i < keep {
            datadir::discard(&path, &trash)?;
        }
    }
    Ok(())
}

/// Where the DB files of a RocksDB data directory live.
pub fn db_path(dir: &Path) -> std::path::PathBuf {
    dir.join("db")
}
