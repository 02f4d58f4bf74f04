//! The `memory` state machine: the applied state in an in-memory ordered map, durable only
//! through the composition's snapshot files (etcd's raftexample layout).
//!
//! Nothing is written per apply. A restart comes back empty at index 0 and the composition
//! restores the newest snapshot file, then raft replays the log above it. The one file of
//! its own, `<state dir>/conf_state`, holds a conf state set directly before anything was
//! applied (a bootstrapping replica), which no snapshot could hold.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::RwLock;
use protobuf::Message as _;
use raft::eraftpb::ConfState;

use super::{Applied, SnapshotWriter, StateMachine, StateView};
use crate::kv::KvCommand;
use crate::storage::snapshots::BuiltSnapshot;
use crate::storage::{KvRead, KvReader, Result, StorageError, datadir};

/// Bytes of bookkeeping charged per map entry in memory estimates.
const ENTRY_OVERHEAD: u64 = 64;

/// A persistent B-tree: a snapshot view is a clone, O(1).
type KvMap = imbl::OrdMap<Bytes, Bytes>;

/// The map and applied index shared with readers; both change under the write lock.
struct Shared {
    map: RwLock<KvMap>,
    applied: AtomicU64,
}

impl KvRead for Shared {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.map.read().get(key).map(|v| v.to_vec()))
    }
    fn applied_index(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }
    fn scan(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let view = self.map.read().clone();
        Ok(view.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect())
    }
}

/// See the module docs.
pub struct MemoryState {
    base_file: PathBuf,
    shared: Arc<Shared>,
    applied: Applied,
    bytes: u64,
}

impl MemoryState {
    /// Open the state machine whose directory is `dir`: empty, at index 0, with the conf
    /// state a bootstrap stored there.
    pub fn open(dir: &Path) -> Result<Self> {
        datadir::create_dir_durable(dir)?;
        let base_file = dir.join("conf_state");
        let mut applied = Applied::default();
        match std::fs::read(&base_file) {
            Ok(b) => {
                applied.conf_state = ConfState::parse_from_bytes(&b)
                    .map_err(|e| StorageError::corrupt(&base_file, 0, format!("conf state: {e}")))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StorageError::io("read", &base_file)(e)),
        }
        Ok(MemoryState {
            base_file,
            shared: Arc::new(Shared {
                map: RwLock::new(KvMap::new()),
                applied: AtomicU64::new(0),
            }),
            applied,
            bytes: 0,
        })
    }
}

fn pair_bytes(k: &[u8], v: &[u8]) -> u64 {
    (k.len() + v.len()) as u64 + ENTRY_OVERHEAD
}

impl StateMachine for MemoryState {
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
        let mut map = self.shared.map.write();
        for c in commands {
            match c {
                KvCommand::Put { key, value } => {
                    self.bytes += pair_bytes(key, value);
                    let old =
                        map.insert(Bytes::copy_from_slice(key), Bytes::copy_from_slice(value));
                    if let Some(old) = old {
                        self.bytes = self.bytes.saturating_sub(pair_bytes(key, &old));
                    }
                }
                KvCommand::Delete { key } => {
                    if let Some(old) = map.remove(&key[..]) {
                        self.bytes = self.bytes.saturating_sub(pair_bytes(key, &old));
                    }
                }
            }
        }
        self.shared.applied.store(index, Ordering::Release);
        drop(map);
        self.applied.index = index;
        self.applied.term = term;
        if let Some(cs) = conf_state {
            self.applied.conf_state = cs.clone();
        }
        Ok(())
    }

    fn install(
        &mut self,
        pairs: &mut dyn Iterator<Item = (&[u8], &[u8])>,
        applied: Applied,
    ) -> Result<()> {
        let mut bytes = 0;
        let new: KvMap = pairs
            .map(|(k, v)| {
                bytes += pair_bytes(k, v);
                (Bytes::copy_from_slice(k), Bytes::copy_from_slice(v))
            })
            .collect();
        let mut map = self.shared.map.write();
        *map = new;
        self.shared.applied.store(applied.index, Ordering::Release);
        drop(map);
        self.bytes = bytes;
        self.applied = applied;
        Ok(())
    }

    /// Durable by itself only before anything is applied (the bootstrap case): the conf
    /// state file is written atomically and synced. Later, the composition follows with a
    /// snapshot, since [`Self::sync`] cannot make the state durable.
    fn set_conf_state(&mut self, cs: &ConfState) -> Result<()> {
        if self.applied.index == 0 {
            let bytes = cs
                .write_to_bytes()
                .map_err(StorageError::codec("conf state"))?;
            datadir::write_file_atomic(&self.base_file, &bytes, true)?;
        }
        self.applied.conf_state = cs.clone();
        Ok(())
    }

    fn sync(&mut self) -> Result<bool> {
        Ok(false)
    }

    fn applies_survive_restart(&self) -> bool {
        false
    }

    fn view(&self) -> Result<Box<dyn StateView>> {
        Ok(Box::new(MemoryView {
            map: self.shared.map.read().clone(),
            applied: self.applied.clone(),
        }))
    }

    fn reader(&self) -> KvReader {
        KvReader::new(self.shared.clone())
    }

    fn kv_keys(&self) -> u64 {
        self.shared.map.read().len() as u64
    }

    fn memory_bytes(&self) -> u64 {
        self.bytes
    }
}

/// A clone of the map (shares every node with it until the map changes).
struct MemoryView {
    map: KvMap,
    applied: Applied,
}

impl StateView for MemoryView {
    /// Nothing to make durable: the snapshot file is what makes this state durable.
    fn build(&self, write: SnapshotWriter<'_>) -> Result<BuiltSnapshot> {
        write(&self.applied, &mut |sink| {
            for (k, v) in self.map.iter() {
                sink.push(k, v)?;
            }
            Ok(())
        })
    }
}
