//! The `redb` state machine: the applied state in a redb B+tree file (`<state dir>/state.redb`),
//! the closest well-kept Rust counterpart of etcd's bbolt.
//!
//! Tables: `data` (the user's keys and values) and `meta` (`applied`: [`Applied::encode`]).
//! Every apply is one write transaction over both, so data and applied index move together.
//!
//! Durability: each apply commits with `redb.apply_durability`: `none` (the default) makes
//! the commit visible but not durable, and a crash returns to the last durable commit
//! (raft replays the log above it); `immediate` fsyncs every apply, as bbolt does per
//! batch in etcd. [`StateMachine::sync`] is an empty commit with `Immediate` durability,
//! which makes every commit before it durable. redb frees pages only at durable commits,
//! so under `none` the state machine also makes one itself after [`DURABLE_EVERY_BYTES`]
//! of applies, bounding the file's growth. Durable commits save redb's allocator state
//! (quick repair), so reopening after a crash does not walk the whole tree.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use raft::eraftpb::ConfState;
use redb::{
    Database, Durability, ReadOnlyTable, ReadableTable, ReadableTableMetadata, TableDefinition,
};

use super::{Applied, SnapshotWriter, StateMachine, StateView};
use crate::kv::KvCommand;
use crate::storage::snapshots::BuiltSnapshot;
use crate::storage::{
    BackendConfig, KvRead, KvReader, RedbDurability, Result, StorageError, datadir,
};

const DATA: TableDefinition<&[u8], &[u8]> = TableDefinition::new("data");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const META_APPLIED: &str = "applied";

/// Bytes of applies after which a non-durable state machine makes a durable commit.
pub const DURABLE_EVERY_BYTES: u64 = 64 << 20;

/// Non-durable commits after which it makes one anyway: each copies the pages on its
/// B-tree path, which only a durable commit frees, so the file grows by pages per apply,
/// not by bytes applied (measured: 55 KiB of file per key with only the byte bound).
pub const DURABLE_EVERY_COMMITS: u64 = 256;

/// The database and applied index shared with readers.
struct Shared {
    db: Database,
    applied: AtomicU64,
}

impl Shared {
    fn data(&self) -> Result<ReadOnlyTable<&'static [u8], &'static [u8]>> {
        let txn = self
            .db
            .begin_read()
            .map_err(StorageError::redb("begin a read"))?;
        txn.open_table(DATA)
            .map_err(StorageError::redb("open the data table"))
    }
}

impl KvRead for Shared {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self
            .data()?
            .get(key)
            .map_err(StorageError::redb("get"))?
            .map(|v| v.value().to_vec()))
    }
    fn applied_index(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }
    fn scan(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let table = self.data()?;
        let mut out = Vec::new();
        for row in table.iter().map_err(StorageError::redb("scan"))? {
            let (k, v) = row.map_err(StorageError::redb("scan"))?;
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }
}

/// See the module docs.
pub struct RedbState {
    shared: Arc<Shared>,
    path: PathBuf,
    durability: RedbDurability,
    applied: Applied,
    /// Bytes applied and commits made since the last durable commit.
    undurable_bytes: u64,
    undurable_commits: u64,
    cache_size: u64,
}

impl RedbState {
    /// Open (creating if needed) the database in `dir`, at its last durable commit (or, after
    /// a clean close, its last commit).
    pub fn open(config: &BackendConfig, dir: &Path) -> Result<Self> {
        datadir::create_dir_durable(dir)?;
        let path = dir.join("state.redb");
        let o = &config.redb;
        let db = Database::builder()
            .set_cache_size(o.cache_size.as_u64() as usize)
            .create(&path)
            .map_err(StorageError::redb("open"))?;
        // Create both tables, so that readers never meet a missing one.
        let txn = db
            .begin_write()
            .map_err(StorageError::redb("begin a write"))?;
        let applied = {
            txn.open_table(DATA)
                .map_err(StorageError::redb("create the data table"))?;
            let meta = txn
                .open_table(META)
                .map_err(StorageError::redb("create the meta table"))?;
            let got = meta
                .get(META_APPLIED)
                .map_err(StorageError::redb("read the applied index"))?;
            match got {
                Some(b) => Applied::decode(b.value(), &path)?,
                None => Applied::default(),
            }
        };
        txn.commit().map_err(StorageError::redb("commit"))?;
        datadir::sync_dir(dir)?;
        Ok(RedbState {
            shared: Arc::new(Shared {
                db,
                applied: AtomicU64::new(applied.index),
            }),
            path,
            durability: o.apply_durability,
            applied,
            undurable_bytes: 0,
            undurable_commits: 0,
            cache_size: o.cache_size.as_u64(),
        })
    }

    /// One write transaction: `fill` changes the data table, then `applied` is recorded;
    /// committed durably when `durable`.
    fn commit(
        &mut self,
        applied: Applied,
        durable: bool,
        fill: impl FnOnce(&mut redb::Table<&[u8], &[u8]>) -> Result<()>,
    ) -> Result<()> {
        let mut txn = self
            .shared
            .db
            .begin_write()
            .map_err(StorageError::redb("begin a write"))?;
        if durable {
            txn.set_durability(Durability::Immediate);
            txn.set_quick_repair(true);
        } else {
            txn.set_durability(Durability::None);
        }
        {
            let mut data = txn
                .open_table(DATA)
                .map_err(StorageError::redb("open the data table"))?;
            fill(&mut data)?;
            let mut meta = txn
                .open_table(META)
                .map_err(StorageError::redb("open the meta table"))?;
            meta.insert(META_APPLIED, &applied.encode()?[..])
                .map_err(StorageError::redb("record the applied index"))?;
        }
        txn.commit().map_err(StorageError::redb("commit"))?;
        if durable {
            self.undurable_bytes = 0;
            self.undurable_commits = 0;
        } else {
            self.undurable_commits += 1;
        }
        self.shared.applied.store(applied.index, Ordering::Release);
        self.applied = applied;
        Ok(())
    }
}

impl StateMachine for RedbState {
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
        let bytes: u64 = commands
            .iter()
            .map(|c| match c {
                KvCommand::Put { key, value } => (key.len() + value.len()) as u64,
                KvCommand::Delete { key } => key.len() as u64,
            })
            .sum();
        self.undurable_bytes += bytes;
        let durable = self.durability == RedbDurability::Immediate
            || self.undurable_bytes >= DURABLE_EVERY_BYTES
            || self.undurable_commits >= DURABLE_EVERY_COMMITS;
        let applied = Applied {
            index,
            term,
            conf_state: conf_state
                .cloned()
                .unwrap_or_else(|| self.applied.conf_state.clone()),
        };
        self.commit(applied, durable, |data| {
            for c in commands {
                match c {
                    KvCommand::Put { key, value } => {
                        data.insert(&key[..], &value[..])
                            .map_err(StorageError::redb("put"))?;
                    }
                    KvCommand::Delete { key } => {
                        data.remove(&key[..])
                            .map_err(StorageError::redb("delete"))?;
                    }
                }
            }
            Ok(())
        })
    }

    /// Replaces the table in one transaction (committed like an apply: the snapshot file it
    /// came from is durable).
    fn install(
        &mut self,
        pairs: &mut dyn Iterator<Item = (&[u8], &[u8])>,
        applied: Applied,
    ) -> Result<()> {
        let durable = self.durability == RedbDurability::Immediate;
        self.commit(applied, durable, |data| {
            data.retain(|_, _| false)
                .map_err(StorageError::redb("clear the data table"))?;
            for (k, v) in pairs {
                data.insert(k, v).map_err(StorageError::redb("put"))?;
            }
            Ok(())
        })
    }

    fn applies_survive_restart(&self) -> bool {
        // Non-durable commits are lost by a process crash too: redb keeps them in its own
        // pages, written to the file only by a durable commit.
        self.durability == RedbDurability::Immediate
    }

    /// Durable (bootstrap) or not like an apply; the composition syncs when it must.
    fn set_conf_state(&mut self, cs: &ConfState) -> Result<()> {
        let applied = Applied {
            conf_state: cs.clone(),
            ..self.applied.clone()
        };
        let durable = self.durability == RedbDurability::Immediate;
        self.commit(applied, durable, |_| Ok(()))
    }

    fn sync(&mut self) -> Result<bool> {
        let applied = self.applied.clone();
        self.commit(applied, true, |_| Ok(()))?;
        Ok(true)
    }

    fn view(&self) -> Result<Box<dyn StateView>> {
        let txn = self
            .shared
            .db
            .begin_read()
            .map_err(StorageError::redb("begin a read"))?;
        Ok(Box::new(RedbView {
            shared: self.shared.clone(),
            txn,
            applied: self.applied.clone(),
            need_durable: self.undurable_commits > 0,
        }))
    }

    fn reader(&self) -> KvReader {
        KvReader::new(self.shared.clone())
    }

    fn kv_keys(&self) -> u64 {
        self.shared
            .data()
            .and_then(|t| t.len().map_err(StorageError::redb("count keys")))
            .unwrap_or(0)
    }

    /// redb does not report its cache's use: the configured cache, capped by the file.
    fn memory_bytes(&self) -> u64 {
        let file = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        file.min(self.cache_size)
    }
}

/// A read transaction (redb's MVCC view), taken at [`StateMachine::view`].
struct RedbView {
    shared: Arc<Shared>,
    txn: redb::ReadTransaction,
    applied: Applied,
    need_durable: bool,
}

impl StateView for RedbView {
    /// Makes the view durable with an empty durable commit (which waits for the raft
    /// thread's current apply, if any: redb has one writer).
    fn build(&self, write: SnapshotWriter<'_>) -> Result<BuiltSnapshot> {
        if self.need_durable {
            let mut txn = self
                .shared
                .db
                .begin_write()
                .map_err(StorageError::redb("begin a write"))?;
            txn.set_durability(Durability::Immediate);
            txn.set_quick_repair(true);
            txn.commit().map_err(StorageError::redb("commit"))?;
        }
        let table = self
            .txn
            .open_table(DATA)
            .map_err(StorageError::redb("open the data table"))?;
        write(&self.applied, &mut |sink| {
            for row in table.iter().map_err(StorageError::redb("scan"))? {
                let (k, v) = row.map_err(StorageError::redb("scan"))?;
                sink.push(k.value(), v.value())?;
            }
            Ok(())
        })
    }
}
