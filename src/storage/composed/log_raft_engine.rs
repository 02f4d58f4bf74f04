//! The `raft-engine` log store: TiKV's dedicated raft log engine (`raft-engine` 0.4), in
//! `<log dir>`, one raft group (region [`REGION`]).
//!
//! raft-engine appends every write batch to its log files and keeps an in-memory index of
//! where each entry lives, so a read of an old entry is one file read and compaction is
//! an index update: files whose entries are all compacted are deleted (or recycled) by its
//! purge, with no LSM compaction rewriting the log. That is TiKV's case for it.
//!
//! Kept per group: the entries, and two keys, `hard_state` (protobuf) and `truncated` (the
//! truncation point, two big-endian `u64`s). Every [`LogStore::write`] is one `LogBatch`,
//! atomic and synced when asked; raft-engine recovers a prefix of its batches after a
//! crash (a torn tail is cut: `TolerateTailCorruption`).
//!
//! A snapshot install's reset is a `Compact` command to past the snapshot. raft-engine
//! cannot delete a suffix on its own, only overwrite it with new entries, so when a reset
//! lands below entries that remain, a third key, `reset_at`, records the real end of the
//! log; the next append (which starts just above it and so truncates the rest) deletes it.
//!
//! raft-engine panics on an append that leaves a hole or rewrites compacted entries: the
//! composition checks both before every write (the [`LogWrite`] contract).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use raft::eraftpb::{Entry, HardState};
use raft::util::limit_size;
use raft_engine::{Command, Config, Engine, LogBatch, MessageExt, ReadableSize};

use super::cached_log::CachedLog;
use super::{LogOpened, LogStore, LogWrite};
use crate::storage::{BackendConfig, Result, StorageError, datadir};

/// The raft group id the replica's log is kept under.
pub const REGION: u64 = 1;

const KEY_HARD_STATE: &[u8] = b"hard_state";
const KEY_TRUNCATED: &[u8] = b"truncated";
const KEY_RESET_AT: &[u8] = b"reset_at";

/// Bytes raft-engine's index holds per entry (its `EntryIndex`), for memory estimates.
const INDEX_BYTES_PER_ENTRY: u64 = 48;

/// Tells raft-engine how to read raft-rs's entries.
#[derive(Clone, Copy)]
pub struct EntryExt;

impl MessageExt for EntryExt {
    type Entry = Entry;
    fn index(e: &Entry) -> u64 {
        e.index
    }
}

fn engine_err(op: &'static str) -> impl FnOnce(raft_engine::Error) -> StorageError {
    StorageError::raft_engine(op)
}

fn two_u64(index: u64, term: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(16);
    v.extend_from_slice(&index.to_be_bytes());
    v.extend_from_slice(&term.to_be_bytes());
    v
}

/// A read on the [`Reader`]'s thread.
type ReadJob = Box<dyn FnOnce(&Engine) + Send>;

/// The thread every entry read of one engine runs on.
///
/// raft-engine 0.4 caches the last block it read in a *thread-local* keyed only by file
/// number, offset and length, not by engine: two engines read from one thread (tests,
/// benches, anything opening replicas in one process) can be served each other's entries,
/// since every new engine numbers its files from 1. Found by the conformance suite, where
/// an overwrite read back the entries of the previous test's engine. A thread of its own
/// per engine makes that cache private to it.
struct Reader {
    jobs: Option<std::sync::mpsc::Sender<ReadJob>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Reader {
    fn start(engine: Arc<Engine>) -> Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel::<ReadJob>();
        let thread = std::thread::Builder::new()
            .name("raft-engine-read".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    job(&engine);
                }
            })
            .map_err(|e| StorageError::Io {
                op: "start the raft-engine reader thread",
                path: "raft-engine".into(),
                source: e,
            })?;
        Ok(Reader {
            jobs: Some(tx),
            thread: Some(thread),
        })
    }

    /// Run `f` on the reader thread and wait for its result.
    fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Engine) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let gone = || StorageError::Invalid("the raft-engine reader thread has stopped".into());
        self.jobs
            .as_ref()
            .ok_or_else(gone)?
            .send(Box::new(move |e| {
                let _ = tx.send(f(e));
            }))
            .map_err(|_| gone())?;
        rx.recv().map_err(|_| gone())?
    }
}

impl Reader {
    /// The term of entry `idx`, read from the engine.
    fn term(&self, idx: u64) -> Result<u64> {
        self.read(move |engine| {
            engine
                .get_entry::<EntryExt>(REGION, idx)
                .map_err(engine_err("read an entry"))
        })?
        .map(|e| e.term)
        .ok_or_else(|| StorageError::Invalid(format!("entry {idx} is not in the log")))
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// See the module docs.
pub struct RaftEngineLog {
    /// Dropped before `engine` (field order): its thread holds a reference.
    reader: Reader,
    engine: Arc<Engine>,
    log: CachedLog,
    /// `reset_at` is stored: entries above the last index in the engine are stale.
    reset_pending: bool,
    opened: LogOpened,
}

impl RaftEngineLog {
    /// Open (creating if needed) the engine in `dir`, with `config.raft_engine`'s options.
    pub fn open(config: &BackendConfig, dir: &Path) -> Result<Self> {
        datadir::create_dir_durable(dir)?;
        let o = &config.raft_engine;
        let cfg = Config {
            dir: dir.to_string_lossy().into_owned(),
            target_file_size: ReadableSize(o.target_file_size.as_u64()),
            purge_threshold: ReadableSize(o.purge_threshold.as_u64()),
            batch_compression_threshold: ReadableSize(o.batch_compression_threshold.as_u64()),
            enable_log_recycle: o.enable_log_recycle,
            recovery_threads: o.recovery_threads,
            format_version: raft_engine::Version::V2,
            ..Config::default()
        };
        let started = Instant::now();
        let engine = Arc::new(Engine::open(cfg).map_err(engine_err("open"))?);
        // raft-engine creates a fresh directory's first log files without syncing the
        // directory (only rotations do): after a power cut the files, and every synced
        // entry in them, could be gone. Found by the power-cut tests on faultfs.
        datadir::sync_dir(dir)?;
        let replay_ms = started.elapsed().as_secs_f64() * 1e3;
        let file = dir.to_path_buf();
        let corrupt = |why: String| StorageError::corrupt(&file, 0, why);
        let hard_state = engine
            .get_message::<HardState>(REGION, KEY_HARD_STATE)
            .map_err(engine_err("read the hard state"))?
            .unwrap_or_default();
        let read_u64s = |key: &[u8], n: usize| -> Result<Option<Vec<u64>>> {
            match engine.get(REGION, key) {
                None => Ok(None),
                Some(b) if b.len() == 8 * n => Ok(Some(
                    b.chunks(8)
                        .map(|c| u64::from_be_bytes(c.try_into().expect("8 bytes")))
                        .collect(),
                )),
                Some(b) => Err(corrupt(format!(
                    "{}: {} bytes, expected {}",
                    String::from_utf8_lossy(key),
                    b.len(),
                    8 * n
                ))),
            }
        };
        let truncated = read_u64s(KEY_TRUNCATED, 2)?.map_or((0, 0), |v| (v[0], v[1]));
        // A `reset_at` below the truncation point describes a log that no longer exists (a
        // later reset always clears it; this only guards against one that did not).
        let reset_at = read_u64s(KEY_RESET_AT, 1)?
            .map(|v| v[0])
            .filter(|&r| r >= truncated.0);
        let engine_last = engine.last_index(REGION);
        if let (Some(first), Some(_)) = (engine.first_index(REGION), engine_last)
            && first > truncated.0 + 1
        {
            return Err(corrupt(format!(
                "the log starts at entry {first}, but the truncation point is {}",
                truncated.0
            )));
        }
        let last_index = match reset_at {
            Some(r) => r,
            None => engine_last.unwrap_or(truncated.0).max(truncated.0),
        };
        let reader = Reader::start(engine.clone())?;
        let last_term = if last_index == truncated.0 {
            truncated.1
        } else {
            reader.term(last_index)?
        };
        Ok(RaftEngineLog {
            reader,
            engine,
            log: CachedLog::new(hard_state, truncated, last_index, last_term),
            reset_pending: reset_at.is_some(),
            opened: LogOpened {
                replay_ms,
                replayed_records: 0,
                replayed_entries: last_index - truncated.0,
                torn_bytes: 0,
            },
        })
    }
}

impl LogStore for RaftEngineLog {
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
            None => self.reader.term(idx),
        }
    }

    fn entries(&self, low: u64, high: u64, max_size: Option<u64>) -> Result<Vec<Entry>> {
        if let Some(cached) = self.log.entries(low, high, max_size)? {
            return Ok(cached);
        }
        let mut out = self.reader.read(move |engine| {
            let mut out = Vec::with_capacity((high - low).min(1024) as usize);
            engine
                .fetch_entries_to::<EntryExt>(
                    REGION,
                    low,
                    high,
                    max_size.map(|m| m as usize),
                    &mut out,
                )
                .map_err(engine_err("read entries"))?;
            Ok(out)
        })?;
        limit_size(&mut out, max_size);
        if out.is_empty() && high > low {
            return Err(StorageError::Invalid(format!(
                "entries {low}..{high} are missing from the log"
            )));
        }
        Ok(out)
    }

    fn write(&mut self, w: LogWrite<'_>) -> Result<()> {
        let mut batch = LogBatch::default();
        let mut reset_pending = self.reset_pending;
        if let Some((index, term)) = w.reset {
            batch.add_command(REGION, Command::Compact { index: index + 1 });
            batch
                .put(REGION, KEY_TRUNCATED.to_vec(), two_u64(index, term))
                .map_err(engine_err("encode the truncation point"))?;
            let stale = self.engine.last_index(REGION).is_some_and(|l| l > index);
            if stale && w.entries.is_empty() {
                batch
                    .put(REGION, KEY_RESET_AT.to_vec(), index.to_be_bytes().to_vec())
                    .map_err(engine_err("encode the log end"))?;
                reset_pending = true;
            } else if reset_pending && w.entries.is_empty() {
                // Nothing above this reset remains: an older `reset_at` must go with it.
                batch.delete(REGION, KEY_RESET_AT.to_vec());
                reset_pending = false;
            }
        }
        if !w.entries.is_empty() {
            batch
                .add_entries::<EntryExt>(REGION, w.entries)
                .map_err(engine_err("encode entries"))?;
            if reset_pending {
                batch.delete(REGION, KEY_RESET_AT.to_vec());
                reset_pending = false;
            }
        }
        if let Some(hs) = w.hard_state {
            batch
                .put_message(REGION, KEY_HARD_STATE.to_vec(), hs)
                .map_err(engine_err("encode the hard state"))?;
        }
        if batch.is_empty() {
            return Ok(());
        }
        self.engine
            .write(&mut batch, w.sync)
            .map_err(engine_err("write"))?;

        self.reset_pending = reset_pending;
        self.log.written(&w, |idx| self.reader.term(idx));
        Ok(())
    }

    /// The truncation point and the `Compact` command in one batch; then files holding
    /// only compacted entries are purged (deleted or recycled).
    fn compact(&mut self, up_to: u64, term: u64, sync: bool) -> Result<()> {
        let mut batch = LogBatch::default();
        batch.add_command(REGION, Command::Compact { index: up_to + 1 });
        batch
            .put(REGION, KEY_TRUNCATED.to_vec(), two_u64(up_to, term))
            .map_err(engine_err("encode the truncation point"))?;
        self.engine
            .write(&mut batch, sync)
            .map_err(engine_err("write"))?;
        self.log.compacted(up_to, term);
        // Purging deletes the files that held the previous truncation point: the new one
        // must be durable first, or a power cut would find neither.
        if !sync {
            self.engine.sync().map_err(engine_err("sync"))?;
        }
        // On the reader thread: a purge that rewrites live entries reads them through
        // raft-engine's thread-local block cache (see [`Reader`]).
        self.reader.read(|engine| {
            engine
                .purge_expired_files()
                .map(drop)
                .map_err(engine_err("purge"))
        })?;
        Ok(())
    }

    fn sync(&mut self) -> Result<()> {
        self.engine.sync().map_err(engine_err("sync"))
    }

    /// The tail cache plus an estimate of raft-engine's entry index.
    fn memory_bytes(&self) -> u64 {
        self.log.cache_bytes() + self.log.len() * INDEX_BYTES_PER_ENTRY
    }

    fn opened(&self) -> LogOpened {
        self.opened.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        let mut e = Entry::default();
        e.index = index;
        e.term = term;
        e.data = format!("{index}.{term}").into_bytes().into();
        e
    }

    fn write(log: &mut RaftEngineLog, reset: Option<(u64, u64)>, entries: &[Entry]) {
        log.write(LogWrite {
            reset,
            entries,
            hard_state: None,
            sync: true,
        })
        .unwrap();
    }

    /// Overwritten entries stay overwritten across a reopen (raft-engine replays both
    /// batches at the same indexes), and a reset below the last entry hides the rest.
    #[test]
    fn overwrites_and_resets_survive_reopen() {
        let t = tempfile::tempdir().unwrap();
        let kind = "raft-engine+memory".parse().unwrap();
        let config = BackendConfig::new(kind, t.path());
        let dir = t.path().join("log");
        let mut log = RaftEngineLog::open(&config, &dir).unwrap();
        write(&mut log, Some((3, 3)), &[entry(4, 4), entry(5, 5)]);
        write(&mut log, None, &[entry(4, 6), entry(5, 6)]);
        let want = vec![entry(4, 6), entry(5, 6)];
        assert_eq!(log.entries(4, 6, None).unwrap(), want);
        drop(log);
        let mut log = RaftEngineLog::open(&config, &dir).unwrap();
        assert_eq!(log.entries(4, 6, None).unwrap(), want);
        assert_eq!(log.term(5).unwrap(), 6);

        write(&mut log, Some((4, 6)), &[]);
        assert_eq!((log.truncated(), log.last_index()), ((4, 6), 4));
        drop(log);
        let mut log = RaftEngineLog::open(&config, &dir).unwrap();
        assert_eq!((log.truncated(), log.last_index()), ((4, 6), 4));
        write(&mut log, None, &[entry(5, 7)]);
        drop(log);
        let log = RaftEngineLog::open(&config, &dir).unwrap();
        assert_eq!(log.entries(5, 6, None).unwrap(), vec![entry(5, 7)]);
        assert_eq!(log.last_index(), 5);
    }

    /// A reset that hides stale entries, then another above them before any append: the
    /// second clears the first's marker, and the log reopens empty at the second.
    #[test]
    fn two_resets_in_a_row() {
        let t = tempfile::tempdir().unwrap();
        let kind = "raft-engine+memory".parse().unwrap();
        let config = BackendConfig::new(kind, t.path());
        let dir = t.path().join("log");
        let mut log = RaftEngineLog::open(&config, &dir).unwrap();
        write(
            &mut log,
            Some((3, 3)),
            &[entry(4, 4), entry(5, 5), entry(6, 5)],
        );
        write(&mut log, Some((4, 4)), &[]);
        write(&mut log, Some((9, 8)), &[]);
        drop(log);
        let mut log = RaftEngineLog::open(&config, &dir).unwrap();
        assert_eq!((log.truncated(), log.last_index()), ((9, 8), 9));
        write(&mut log, None, &[entry(10, 8)]);
        drop(log);
        let log = RaftEngineLog::open(&config, &dir).unwrap();
        assert_eq!(log.entries(10, 11, None).unwrap(), vec![entry(10, 8)]);
    }

    /// Two engines with the same file layout, read in turn from one thread, each read back
    /// their own entries (raft-engine's thread-local block cache; see [`Reader`]).
    #[test]
    fn engines_in_one_thread_read_their_own_entries() {
        let t = tempfile::tempdir().unwrap();
        let kind = "raft-engine+memory".parse().unwrap();
        let config = BackendConfig::new(kind, t.path());
        let mut a = RaftEngineLog::open(&config, &t.path().join("a")).unwrap();
        let mut b = RaftEngineLog::open(&config, &t.path().join("b")).unwrap();
        write(&mut a, Some((3, 3)), &[entry(4, 4)]);
        write(&mut b, Some((3, 3)), &[entry(4, 5)]);
        drop((a, b));
        let a = RaftEngineLog::open(&config, &t.path().join("a")).unwrap();
        let b = RaftEngineLog::open(&config, &t.path().join("b")).unwrap();
        assert_eq!(a.entries(4, 5, None).unwrap(), vec![entry(4, 4)]);
        assert_eq!(b.entries(4, 5, None).unwrap(), vec![entry(4, 5)]);
        assert_eq!(a.entries(4, 5, None).unwrap(), vec![entry(4, 4)]);
    }
}
