//! [`ComposedBackend`]: a [`LogStore`] and a [`StateMachine`] driven as one replica storage,
//! with the ordering the module docs (`composed/mod.rs`) state.
//!
//! Directory layout: `RAFTBENCH` (marker naming the mode), `log/` (the log engine's),
//! `state/` (the state machine's), `snap/snap-<index>.snap` (snapshot files).

use std::path::{Path, PathBuf};
use std::time::Instant;

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState};
use tracing::{info, warn};

use super::state_memory::MemoryState;
use super::{Applied, LogStore, LogWrite, StateMachine};
use crate::kv::KvCommand;
use crate::storage::memlog::MemLog;
use crate::storage::snapshots::{self, BuiltSnapshot, Finished, SnapshotCache, SnapshotJob};
use crate::storage::{
    BackendConfig, BackendKind, BackendStats, KvReader, LogEngine, OpenReport, Result, StateEngine,
    StorageBackend, StorageError, check_apply, check_compact, check_snapshot, datadir,
    hard_state_needs_sync, snapfile,
};

/// On-disk format version of composed data directories (the engines' own formats are
/// theirs).
pub const FORMAT_VERSION: u32 = 1;

/// A replica whose log and state live in two engines. See the module docs.
pub struct ComposedBackend {
    config: BackendConfig,
    log: Box<dyn LogStore>,
    state: Box<dyn StateMachine>,
    snap_dir: PathBuf,
    /// Index of the newest snapshot file (built and adopted, or installed); 0 if none.
    snapshot_index: u64,
    snapshots: SnapshotCache,
    open_report: OpenReport,
}

fn open_log(engine: LogEngine, config: &BackendConfig, dir: &Path) -> Result<Box<dyn LogStore>> {
    Ok(match engine {
        LogEngine::Wal => Box::new(super::log_wal::WalLog::open(config, dir)?),
        LogEngine::RaftEngine => {
            Box::new(super::log_raft_engine::RaftEngineLog::open(config, dir)?)
        }
        #[cfg(feature = "rocksdb")]
        LogEngine::Rocksdb => Box::new(super::log_rocks::RocksLog::open(config, dir)?),
        #[cfg(not(feature = "rocksdb"))]
        LogEngine::Rocksdb => {
            return Err(StorageError::Config(format!(
                "{} needs RocksDB, not in this build",
                config.kind
            )));
        }
    })
}

fn open_state(
    engine: StateEngine,
    config: &BackendConfig,
    dir: &Path,
) -> Result<Box<dyn StateMachine>> {
    Ok(match engine {
        StateEngine::Memory => Box::new(MemoryState::open(dir)?),
        StateEngine::Redb => Box::new(super::state_redb::RedbState::open(config, dir)?),
        #[cfg(feature = "rocksdb")]
        StateEngine::Rocksdb => Box::new(super::state_rocks::RocksState::open(config, dir)?),
        #[cfg(not(feature = "rocksdb"))]
        StateEngine::Rocksdb => {
            return Err(StorageError::Config(format!(
                "{} needs RocksDB, not in this build",
                config.kind
            )));
        }
    })
}

impl ComposedBackend {
    /// Open (creating if needed) the composed replica `config` names, and bring its two
    /// halves into agreement (guarantee 2 of the module docs).
    pub fn open(config: BackendConfig) -> Result<Self> {
        let started = Instant::now();
        let (log_engine, state_engine) = config.kind.composed().ok_or_else(|| {
            StorageError::Config(format!("{} is not a composed mode", config.kind))
        })?;
        let fresh = datadir::claim(&config.dir, config.kind, FORMAT_VERSION)?;
        datadir::empty_trash(&datadir::trash_dir(&config.dir))?;
        let snap_dir = config.dir.join("snap");
        datadir::create_dir_durable(&snap_dir)?;
        let mut listing = snapfile::list(&snap_dir)?;
        snapfile::delete_leftovers(&mut listing)?;

        let mut log = open_log(log_engine, &config, &config.dir.join("log"))?;
        let opened = log.opened();
        let mut state = open_state(state_engine, &config, &config.dir.join("state"))?;

        // A snapshot file newer than the state: the state machine was not durable when the
        // log was compacted (memory; RocksDB without its WAL), or an install was cut short
        // after its file was written. Restore from it.
        let restore_started = Instant::now();
        let newest = listing.finals.iter().copied().max().unwrap_or(0);
        if newest > state.applied().index {
            let path = snapfile::final_path(&snap_dir, newest);
            let (meta, data) = snapfile::map(&path, true)?;
            let parsed = crate::storage::snapshot_data::SnapshotData::parse(&data)?;
            if parsed.applied_index != meta.index || meta.index != newest {
                return Err(StorageError::corrupt(
                    &path,
                    0,
                    format!(
                        "file name, metadata and data disagree on the index ({newest}, {}, {})",
                        meta.index, parsed.applied_index
                    ),
                ));
            }
            state.install(
                &mut parsed.iter(),
                Applied {
                    index: meta.index,
                    term: meta.term,
                    conf_state: meta.get_conf_state().clone(),
                },
            )?;
        }
        let replay_ms = opened.replay_ms + restore_started.elapsed().as_secs_f64() * 1e3;

        let applied = state.applied().clone();
        let (t, t_term) = log.truncated();
        let last = log.last_index();
        let mut log_restarted = false;
        if applied.index < t {
            return Err(StorageError::corrupt(
                &config.dir,
                0,
                format!(
                    "the state machine is at applied index {} but the log starts after {t}, \
                     and no snapshot file covers the gap",
                    applied.index
                ),
            ));
        }
        // The log disagrees with the applied state above its truncation point: it ends
        // before it (its tail was lost under fsync = "never"), or holds another term there (a
        // crash between an install's snapshot file and its log reset, when the install
        // replaced a stale suffix; or an overwrite of the log lost while the state that
        // applied it was durable). Every applied entry was committed, so the log's
        // disagreeing suffix is obsolete: restart the log at the state.
        let disagrees =
            applied.index > t && (applied.index > last || log.term(applied.index)? != applied.term);
        if disagrees {
            warn!(
                applied = applied.index,
                applied_term = applied.term,
                last_index = last,
                "the log ends before the applied state or disagrees with its term; restarting it \
                 at the applied index"
            );
            let mut hs = log.hard_state().clone();
            if hs.term < applied.term {
                hs.term = applied.term;
                hs.vote = 0;
            }
            hs.commit = hs.commit.max(applied.index);
            log.write(LogWrite {
                reset: Some((applied.index, applied.term)),
                entries: &[],
                hard_state: Some(&hs),
                sync: true,
            })?;
            log_restarted = true;
        } else if applied.index > 0 && applied.index == t && t_term != applied.term {
            return Err(StorageError::corrupt(
                &config.dir,
                0,
                format!(
                    "the state machine is at index {} of term {}, but the log's truncation point \
                     there has term {t_term}",
                    applied.index, applied.term
                ),
            ));
        }

        // Keep the newest file the state covers (raft sends it to followers); the others
        // are obsolete.
        let keep = listing
            .finals
            .iter()
            .copied()
            .filter(|&i| i <= applied.index)
            .max()
            .unwrap_or(0);
        let trash = datadir::trash_dir(&config.dir);
        for &i in &listing.finals {
            if i != keep {
                datadir::discard(&snapfile::final_path(&snap_dir, i), &trash)?;
            }
        }
        let snapshots = match keep {
            0 => SnapshotCache::default(),
            i => SnapshotCache::from_file(&snapfile::final_path(&snap_dir, i)),
        };
        let backend = ComposedBackend {
            open_report: OpenReport {
                fresh,
                open_ms: started.elapsed().as_secs_f64() * 1e3,
                replay_ms,
                replayed_records: opened.replayed_records,
                replayed_entries: opened.replayed_entries,
                torn_bytes_truncated: opened.torn_bytes,
                log_restarted_at_snapshot: log_restarted,
            },
            config,
            log,
            state,
            snap_dir,
            snapshot_index: keep,
            snapshots,
        };
        info!(
            mode = %backend.config.kind,
            dir = %backend.config.dir.display(),
            open_ms = backend.open_report.open_ms,
            first_index = t + 1,
            last_index = backend.log.last_index(),
            applied = applied.index,
            "composed storage opened"
        );
        Ok(backend)
    }

    /// The log store (for tests and tools).
    pub fn log_store(&self) -> &dyn LogStore {
        self.log.as_ref()
    }

    fn first_index(&self) -> u64 {
        self.log.truncated().0 + 1
    }

    /// Make the applied state durable without the log: the state machine syncs, or, if it
    /// cannot, a snapshot file is written now.
    fn make_state_durable(&mut self) -> Result<()> {
        if !self.state.sync()? && self.snapshot_index < self.state.applied().index {
            self.create_snapshot()?;
        }
        Ok(())
    }

    /// Delete snapshot files older than `keep`.
    fn remove_files_below(&self, keep: u64) -> Result<()> {
        let trash = datadir::trash_dir(&self.config.dir);
        for i in snapfile::list(&self.snap_dir)?.finals {
            if i < keep {
                datadir::discard(&snapfile::final_path(&self.snap_dir, i), &trash)?;
            }
        }
        Ok(())
    }
}

impl raft::Storage for ComposedBackend {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let mut hs = self.log.hard_state().clone();
        hs.commit = hs.commit.max(self.state.applied().index);
        Ok(RaftState::new(hs, self.state.applied().conf_state.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first_index() {
            return Err(raft::Error::Store(raft::StorageError::Compacted));
        }
        if high > self.log.last_index() + 1 || low > high {
            return Err(raft::Error::Store(raft::StorageError::Unavailable));
        }
        if low == high {
            return Ok(Vec::new());
        }
        self.log
            .entries(low, high, max_size.into())
            .map_err(Into::into)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let (t, t_term) = self.log.truncated();
        if idx < t {
            return Err(raft::Error::Store(raft::StorageError::Compacted));
        }
        if idx > self.log.last_index() {
            return Err(raft::Error::Store(raft::StorageError::Unavailable));
        }
        if idx == t {
            return Ok(t_term);
        }
        self.log.term(idx).map_err(Into::into)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(ComposedBackend::first_index(self))
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.log.last_index())
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        self.snapshots
            .serve(request_index.max(self.log.truncated().0), to)
    }
}

impl StorageBackend for ComposedBackend {
    fn kind(&self) -> BackendKind {
        self.config.kind
    }

    fn config(&self) -> &BackendConfig {
        &self.config
    }

    /// See [`StorageBackend::persist`]. With a snapshot: its file first (synced), then the
    /// log restarted at it with the entries and hard state (one synced log write), then the
    /// state machine loaded from it (guarantee 4). Without: one log write, synced per
    /// raft's `must_sync` under `fsync = "always"`.
    fn persist(
        &mut self,
        snapshot: Option<&Snapshot>,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> Result<()> {
        let Some(snap) = snapshot else {
            MemLog::check_append_range(self.first_index(), self.log.last_index(), entries)?;
            if entries.is_empty() && hard_state.is_none() {
                return Ok(());
            }
            let sync = self.config.fsync.sync()
                && (!entries.is_empty()
                    || hard_state
                        .is_some_and(|hs| hard_state_needs_sync(self.log.hard_state(), hs)));
            return self.log.write(LogWrite {
                reset: None,
                entries,
                hard_state,
                sync,
            });
        };
        let data = check_snapshot(snap)?;
        let m = snap.get_metadata();
        if m.index < self.first_index() {
            return Err(StorageError::SnapshotOutOfDate {
                index: m.index,
                first_index: self.first_index(),
            });
        }
        MemLog::new(m.index, m.term).check_append(entries)?;
        let path = snapfile::final_path(&self.snap_dir, m.index);
        let (_, mapped) = snapfile::write_mapped(&path, m, &snap.data)?;
        self.log.write(LogWrite {
            reset: Some((m.index, m.term)),
            entries,
            hard_state,
            sync: true,
        })?;
        self.state.install(
            &mut data.iter(),
            Applied {
                index: m.index,
                term: m.term,
                conf_state: m.get_conf_state().clone(),
            },
        )?;
        let mut kept = Snapshot::default();
        kept.set_metadata(m.clone());
        kept.data = mapped;
        self.snapshots.set(kept);
        self.snapshot_index = m.index;
        self.remove_files_below(m.index)
    }

    /// Synced under every policy: by the state machine, or by a snapshot file when it
    /// cannot sync alone and something has been applied.
    fn set_conf_state(&mut self, cs: &ConfState) -> Result<()> {
        self.state.set_conf_state(cs)?;
        if self.state.applied().index == 0 {
            // Durable already (the memory state machine's own file), or synced now.
            self.state.sync()?;
            return Ok(());
        }
        // A snapshot at this index would be stale: the conf state changed under it.
        let applied = self.state.applied().index;
        let stale = self.snapshot_index == applied;
        if stale {
            self.snapshot_index = 0;
            self.snapshots.clear();
        }
        // A state machine that cannot sync replaces the file (atomically) with a new one.
        self.make_state_durable()?;
        if stale && self.snapshot_index == 0 {
            // The others synced: the stale file must not be served after a restart.
            let trash = datadir::trash_dir(&self.config.dir);
            let path = snapfile::final_path(&self.snap_dir, applied);
            if path.exists() {
                datadir::discard(&path, &trash)?;
            }
        }
        Ok(())
    }

    fn apply(
        &mut self,
        index: u64,
        commands: &[KvCommand],
        conf_state: Option<&ConfState>,
    ) -> Result<()> {
        let applied = self.state.applied().index;
        check_apply(applied, self.log.last_index(), index, commands, conf_state)?;
        if index == applied {
            return Ok(());
        }
        let (t, t_term) = self.log.truncated();
        let term = if index == t {
            t_term
        } else {
            self.log.term(index)?
        };
        self.state.apply(index, term, commands, conf_state)
    }

    fn reader(&self) -> KvReader {
        self.state.reader()
    }

    fn applies_survive_restart(&self) -> bool {
        self.state.applies_survive_restart()
    }

    fn applied_index(&self) -> u64 {
        self.state.applied().index
    }

    /// See [`StorageBackend::begin_snapshot`]. The view is the state machine's (cheap);
    /// under `fsync = "never"` the log is synced first (guarantee 5); the job makes the
    /// state machine durable up to the view, then writes the file.
    fn begin_snapshot(&mut self) -> Result<SnapshotJob> {
        let applied = self.state.applied().index;
        if applied == 0 {
            return Err(StorageError::Invalid(
                "nothing has been applied yet; there is no state to snapshot".into(),
            ));
        }
        let path = snapfile::final_path(&self.snap_dir, applied);
        if let Some(job) = self.snapshots.ready_at(applied, path) {
            return Ok(job);
        }
        if !self.config.fsync.sync() {
            self.log.sync()?;
        }
        let view = self.state.view()?;
        let rate = self.config.snapshot_write_rate.as_u64();
        let snap_dir = self.snap_dir.clone();
        Ok(SnapshotJob::new(applied, move |cancel| {
            view.build(&mut |a, scan| {
                // The view may be later than `applied` (taken on this thread).
                let path = snapfile::final_path(&snap_dir, a.index);
                let limit = snapfile::Limit { rate, cancel };
                snapshots::write_file(&path, a.index, a.term, &a.conf_state, limit, |w| scan(w))
            })
        }))
    }

    fn finish_snapshot(&mut self, built: BuiltSnapshot) -> Result<Finished> {
        let index = built.index();
        if index < self.snapshot_index || index < self.log.truncated().0 {
            snapshots::remove_superseded(&built.path)?;
            return Ok(Finished::Superseded);
        }
        if index == self.snapshot_index && self.snapshots.index() == index {
            return Ok(Finished::Current);
        }
        self.snapshot_index = index;
        self.snapshots.set(built.snapshot);
        self.remove_files_below(index)?;
        Ok(Finished::Adopted)
    }

    fn snapshot_wanted(&self) -> bool {
        self.snapshots.take_wanted()
    }

    /// See [`StorageBackend::compact`]. Past the newest snapshot file, the state machine is
    /// made durable first (guarantee 1).
    fn compact(&mut self, up_to: u64) -> Result<()> {
        if up_to <= self.log.truncated().0 {
            return Ok(());
        }
        check_compact(self.state.applied().index, up_to)?;
        if up_to > self.log.last_index() {
            return Err(StorageError::Invalid(format!(
                "compact to {up_to} is past the last index {}",
                self.log.last_index()
            )));
        }
        if up_to > self.snapshot_index {
            self.make_state_durable()?;
        }
        let term = self.log.term(up_to)?;
        self.log.compact(up_to, term, self.config.fsync.sync())
    }

    fn stats(&self) -> BackendStats {
        let (t, _) = self.log.truncated();
        let last = self.log.last_index();
        let (log_flush, log_compaction) = self.log.engine_writes();
        let (state_flush, state_compaction) = self.state.engine_writes();
        BackendStats {
            engine_flush_bytes: log_flush + state_flush,
            engine_compaction_bytes: log_compaction + state_compaction,
            disk_bytes: datadir::dir_size(&self.config.dir),
            memory_bytes: self.log.memory_bytes() + self.state.memory_bytes(),
            kv_keys: self.state.kv_keys(),
            log_entries: last - t,
            first_index: t + 1,
            last_index: last,
            applied_index: self.state.applied().index,
            snapshot_index: self.snapshot_index,
        }
    }

    fn open_report(&self) -> OpenReport {
        self.open_report.clone()
    }
}

#[cfg(test)]
mod tests {
    use crate::storage::conformance::{
        BackendBuilder, ModeBuilder, dump_kv, new_entry, snapshot_with,
    };
    use crate::storage::{FsyncPolicy, StorageBackend, snapfile};

    /// A crash after an install's snapshot file was written but before the log restarted
    /// at it, where the install replaced a stale suffix (the log has another term at the
    /// snapshot's index): open finishes the install instead of refusing.
    #[test]
    fn an_install_cut_short_after_its_file_completes_at_open() {
        for mode in ["wal+memory", "raft-engine+redb", "wal+redb"] {
            let builder = ModeBuilder::new(mode, FsyncPolicy::Always);
            let (t, mut b) = builder.build().unwrap();
            let entries: Vec<_> = (4..=6).map(|i| new_entry(i, 4)).collect();
            b.persist(Some(&snapshot_with(3, 3, &[])), &entries, None)
                .unwrap();
            drop(b);
            // What persist writes first for a leader's snapshot at 5 of term 7.
            let s = snapshot_with(5, 7, &[(b"k", b"v")]);
            let path = snapfile::final_path(&t.path().join("snap"), 5);
            snapfile::write(&path, s.get_metadata(), &s.data).unwrap();

            let b = builder
                .open(t.path())
                .unwrap_or_else(|e| panic!("{mode}: {e}"));
            assert_eq!(b.applied_index(), 5, "{mode}");
            assert_eq!(raft::Storage::term(&b, 5).unwrap(), 7, "{mode}");
            assert_eq!(raft::Storage::last_index(&b).unwrap(), 5, "{mode}");
            assert_eq!(dump_kv(&b), vec![(b"k".to_vec(), b"v".to_vec())], "{mode}");
            assert!(b.open_report().log_restarted_at_snapshot, "{mode}");
        }
    }
}
