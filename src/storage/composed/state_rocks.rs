//! The `rocksdb` state machine: the applied state in a RocksDB of its own
//! (`<state dir>/db`), TiKV's kvdb.
//!
//! One column family, so that a memtable flush is always a consistent cut even without the
//! WAL: keys are prefixed, `d` + user key for data and `m` for the metadata record
//! (`[Applied::encode]`). Every apply is one `WriteBatch` of its commands and the metadata.
//!
//! Durability, by `rocksdb.state_wal`:
//! - `true` (default): batches go through RocksDB's WAL, unsynced. They survive a process
//!   crash; a power cut keeps a prefix of them (point-in-time recovery), and raft replays
//!   the rest from the log. [`StateMachine::sync`] syncs the WAL.
//! - `false`: the WAL is disabled for the state machine. Applies live in memtables until
//!   RocksDB flushes them (when a memtable fills, at [`StateMachine::sync`], and at a clean
//!   close), so a crash of either kind returns to the last flush, and raft replays the
//!   entries above it from its own, separately durable log. This saves the state machine's
//!   WAL bytes (YugabyteDB's layout; TiKV plans it). Safe because the composition compacts
//!   the log only past a [`StateMachine::sync`], which here is a flush.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use raft::eraftpb::ConfState;
use rocksdb::{Cache, ColumnFamilyDescriptor, DB, ReadOptions, WriteBatch, WriteOptions};

use super::{Applied, SnapshotWriter, StateMachine, StateView};
use crate::kv::KvCommand;
use crate::storage::rocks::{cf_options, db_options, flush_and_compaction_bytes, rocks};
use crate::storage::snapshots::BuiltSnapshot;
use crate::storage::{BackendConfig, KvRead, KvReader, Result, datadir};

const DATA_PREFIX: u8 = b'd';
const META_KEY: &[u8] = b"m";

fn data_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(DATA_PREFIX);
    k.extend_from_slice(key);
    k
}

/// Read options bounding a scan to the data keys.
fn data_range(fill_cache: bool) -> ReadOptions {
    let mut ro = ReadOptions::default();
    ro.set_iterate_lower_bound(vec![DATA_PREFIX]);
    ro.set_iterate_upper_bound(vec![DATA_PREFIX + 1]);
    ro.fill_cache(fill_cache);
    ro
}

/// The DB and applied index shared with readers.
struct Shared {
    db: DB,
    applied: AtomicU64,
}

impl KvRead for Shared {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self
            .db
            .get_pinned(data_key(key))
            .map_err(rocks("get"))?
            .map(|v| v.to_vec()))
    }
    fn applied_index(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }
    fn scan(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut it = self.db.raw_iterator_opt(data_range(true));
        it.seek_to_first();
        let mut out = Vec::new();
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            out.push((k[1..].to_vec(), v.to_vec()));
            it.next();
        }
        it.status().map_err(rocks("scan"))?;
        Ok(out)
    }
}

/// See the module docs.
pub struct RocksState {
    shared: Arc<Shared>,
    /// The DB's options, which hold its statistics.
    db_opts: rocksdb::Options,
    cache: Cache,
    path: PathBuf,
    wal: bool,
    applied: Applied,
}

impl RocksState {
    /// Open (creating if needed) the DB in `dir`.
    pub fn open(config: &BackendConfig, dir: &Path) -> Result<Self> {
        let o = &config.rocksdb;
        datadir::create_dir_durable(dir)?;
        let path = dir.join("db");
        // RocksDB creates its directory without syncing the parent.
        datadir::create_dir_durable(&path)?;
        let cache = Cache::new_lru_cache(o.block_cache_size.as_u64() as usize);
        let cf = cf_options(o, &cache, o.compression, o.bloom_bits_per_key);
        let db_opts = db_options(o);
        let db = DB::open_cf_descriptors(
            &db_opts,
            &path,
            vec![ColumnFamilyDescriptor::new(
                rocksdb::DEFAULT_COLUMN_FAMILY_NAME,
                cf,
            )],
        )
        .map_err(rocks("open"))?;
        let applied = match db.get_pinned(META_KEY).map_err(rocks("read metadata"))? {
            Some(b) => Applied::decode(&b, &path)?,
            None => Applied::default(),
        };
        Ok(RocksState {
            shared: Arc::new(Shared {
                db,
                applied: AtomicU64::new(applied.index),
            }),
            db_opts,
            cache,
            path,
            wal: o.state_wal,
            applied,
        })
    }

    /// Write `batch` with the metadata of `applied` added, unsynced, through the WAL or not.
    fn write(&mut self, mut batch: WriteBatch, applied: Applied) -> Result<()> {
        batch.put(META_KEY, applied.encode()?);
        let mut wo = WriteOptions::default();
        wo.disable_wal(!self.wal);
        self.shared
            .db
            .write_opt(batch, &wo)
            .map_err(rocks("write"))?;
        self.shared.applied.store(applied.index, Ordering::Release);
        self.applied = applied;
        Ok(())
    }

    fn property(&self, name: &str) -> u64 {
        self.shared
            .db
            .property_int_value(name)
            .ok()
            .flatten()
            .unwrap_or(0)
    }
}

/// Make everything written to `db` so far durable: sync its WAL, or flush its memtables.
fn make_durable(db: &DB, wal: bool) -> Result<()> {
    if wal {
        db.flush_wal(true).map_err(rocks("sync the WAL"))
    } else {
        db.flush().map_err(rocks("flush"))
    }
}

impl StateMachine for RocksState {
    fn applied(&self) -> &Applied {
        &self.applied
    }

    fn apply(
        &mut self,
        index: u64,
        term: u64,
        commands: &[KvCommand],
        conf_state: Option<&ConfState>,
    ) -> Result<()> {
        let mut batch = WriteBatch::default();
        for c in commands {
            match c {
                KvCommand::Put { key, value } => batch.put(data_key(key), value),
                KvCommand::Delete { key } => batch.delete(data_key(key)),
            }
        }
        let applied = Applied {
            index,
            term,
            conf_state: conf_state
                .cloned()
                .unwrap_or_else(|| self.applied.conf_state.clone()),
        };
        self.write(batch, applied)
    }

    /// One batch: a range deletion of every data key, the pairs, the metadata.
    fn install(
        &mut self,
        pairs: &mut dyn Iterator<Item = (&[u8], &[u8])>,
        applied: Applied,
    ) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.delete_range(vec![DATA_PREFIX], vec![DATA_PREFIX + 1]);
        for (k, v) in pairs {
            batch.put(data_key(k), v);
        }
        self.write(batch, applied)
    }

    fn applies_survive_restart(&self) -> bool {
        self.wal
    }

    fn set_conf_state(&mut self, cs: &ConfState) -> Result<()> {
        let applied = Applied {
            conf_state: cs.clone(),
            ..self.applied.clone()
        };
        self.write(WriteBatch::default(), applied)
    }

    fn sync(&mut self) -> Result<bool> {
        make_durable(&self.shared.db, self.wal)?;
        Ok(true)
    }

    fn view(&self) -> Result<Box<dyn StateView>> {
        Ok(Box::new(RocksView {
            shared: self.shared.clone(),
            path: self.path.clone(),
            wal: self.wal,
        }))
    }

    fn reader(&self) -> KvReader {
        KvReader::new(self.shared.clone())
    }

    fn kv_keys(&self) -> u64 {
        self.property("rocksdb.estimate-num-keys").saturating_sub(1)
    }

    fn engine_writes(&self) -> (u64, u64) {
        flush_and_compaction_bytes(&self.db_opts)
    }

    fn memory_bytes(&self) -> u64 {
        self.property("rocksdb.cur-size-all-mem-tables")
            + self.property("rocksdb.estimate-table-readers-mem")
            + self.cache.get_usage() as u64
    }
}

/// The DB handle: its point-in-time snapshot is taken on the building thread (it borrows
/// the DB), so the view may be later than the applied index at [`StateMachine::view`].
struct RocksView {
    shared: Arc<Shared>,
    path: PathBuf,
    wal: bool,
}

impl StateView for RocksView {
    fn build(&self, write: SnapshotWriter<'_>) -> Result<BuiltSnapshot> {
        let db = &self.shared.db;
        let snap = db.snapshot();
        make_durable(db, self.wal)?;
        let applied = match snap.get_pinned(META_KEY).map_err(rocks("read metadata"))? {
            Some(b) => Applied::decode(&b, &self.path)?,
            None => Applied::default(),
        };
        write(&applied, &mut |sink| {
            // A one-off scan: keep the block cache for the request path.
            let mut it = snap.raw_iterator_opt(data_range(false));
            it.seek_to_first();
            while let (Some(k), Some(v)) = (it.key(), it.value()) {
                sink.push(&k[1..], v)?;
                it.next();
            }
            it.status().map_err(rocks("scan"))
        })
    }
}
