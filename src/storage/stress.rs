//! A deterministic write workload for crash-safety tests, and its checker.
//!
//! [`run`] drives a backend the way a raft loop does — persist batches of entries with a
//! hard state, apply them, snapshot and compact — and prints a line after every durable
//! step (`durable <index>`, `applied <index>`, `snapshot <index>`). A test runs it in a
//! child process (`raftbench storage-stress`), kills it with SIGKILL at random moments,
//! and calls [`verify`] on the directory: the log must be a prefix of what was written
//! containing every reported durable index, and the KV state must match the applied index
//! exactly (apply is atomic).

use std::io::Write;

use raft::Storage;
use raft::eraftpb::{ConfState, Entry, HardState};

use super::{BackendConfig, StorageBackend, StorageError, open_backend};
use crate::kv::KvCommand;

/// Shape of the stress workload.
#[derive(Debug, Clone)]
pub struct StressOptions {
    /// Entries per persist.
    pub batch: u64,
    /// Value bytes per entry.
    pub payload: usize,
    /// Apply everything persisted after this many batches.
    pub apply_every: u64,
    /// Create a snapshot and compact after this many applied entries (0 = never).
    pub snapshot_every: u64,
    /// Entries kept below the snapshot when compacting.
    pub compact_lag: u64,
    /// Stop after this index (`None`: run until killed).
    pub max_index: Option<u64>,
}

impl Default for StressOptions {
    fn default() -> Self {
        StressOptions {
            batch: 16,
            payload: 128,
            apply_every: 4,
            snapshot_every: 2000,
            compact_lag: 100,
            max_index: None,
        }
    }
}

/// The key written by entry `index`.
pub fn key(index: u64) -> Vec<u8> {
    format!("key{index:010}").into_bytes()
}

/// The value written by entry `index`: deterministic, so a checker can recompute it.
pub fn value(index: u64, size: usize) -> Vec<u8> {
    let seed = index.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (0..size)
        .map(|i| (seed >> ((i % 8) * 8)) as u8 ^ i as u8)
        .collect()
}

/// The entry at `index` of the stress log (term 1).
pub fn entry(index: u64, size: usize) -> Entry {
    let mut e = Entry::default();
    e.index = index;
    e.term = 1;
    e.data = KvCommand::Put {
        key: key(index),
        value: value(index, size),
    }
    .encode()
    .into();
    e
}

/// Why the stress workload stopped.
#[derive(Debug, thiserror::Error)]
pub enum StressError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("raft storage: {0}")]
    Raft(#[from] raft::Error),
    #[error("writing progress: {0}")]
    Io(#[from] std::io::Error),
}

/// Run the workload on `cfg`'s directory, continuing where an earlier run stopped. Returns
/// the last durable index when `max_index` is reached.
pub fn run(
    cfg: &BackendConfig,
    opts: &StressOptions,
    out: &mut dyn Write,
) -> Result<u64, StressError> {
    let mut b = open_backend(cfg)?;
    if b.initial_state()?.conf_state == ConfState::default() {
        let mut cs = ConfState::default();
        cs.voters = vec![1];
        b.set_conf_state(&cs)?;
    }
    let mut batches = 0u64;
    let mut last_snapshot = b.stats().snapshot_index;
    loop {
        let next = b.last_index()? + 1;
        if opts.max_index.is_some_and(|m| next > m) {
            return Ok(next - 1);
        }
        let ents: Vec<Entry> = (next..next + opts.batch.max(1))
            .map(|i| entry(i, opts.payload))
            .collect();
        let last = ents.last().expect("non-empty").index;
        let mut hs = HardState::default();
        hs.term = 1;
        hs.vote = 1;
        hs.commit = last;
        b.persist(None, &ents, Some(&hs))?;
        writeln!(out, "durable {last}")?;
        out.flush()?;
        batches += 1;
        if batches.is_multiple_of(opts.apply_every.max(1)) {
            let from = b.applied_index() + 1;
            let cmds: Vec<KvCommand> = (from..=last)
                .map(|i| KvCommand::Put {
                    key: key(i),
                    value: value(i, opts.payload),
                })
                .collect();
            b.apply(last, &cmds, None)?;
            writeln!(out, "applied {last}")?;
            out.flush()?;
        }
        let applied = b.applied_index();
        if opts.snapshot_every > 0 && applied >= last_snapshot + opts.snapshot_every {
            b.create_snapshot()?;
            b.compact(applied.saturating_sub(opts.compact_lag))?;
            last_snapshot = applied;
            writeln!(out, "snapshot {applied}")?;
            out.flush()?;
        }
    }
}

/// What [`verify`] checked.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyReport {
    pub first_index: u64,
    pub last_index: u64,
    pub applied_index: u64,
}

/// Check a directory written by [`run`]: every index up to `min_durable` is present, the
/// log holds exactly the entries `run` writes, the hard state is consistent with it, and the
/// KV state is exactly the effect of entries up to the applied index.
pub fn verify(
    cfg: &BackendConfig,
    opts: &StressOptions,
    min_durable: u64,
) -> Result<VerifyReport, String> {
    let b = open_backend(cfg).map_err(|e| format!("reopen failed: {e}"))?;
    let first = b.first_index().map_err(|e| e.to_string())?;
    let last = b.last_index().map_err(|e| e.to_string())?;
    let applied = b.applied_index();
    if last < min_durable {
        return Err(format!(
            "lost durable entries: last index {last} < acknowledged {min_durable}"
        ));
    }
    if first > last + 1 {
        return Err(format!("first index {first} is past last index {last} + 1"));
    }
    if last >= first {
        let ents = b
            .entries(first, last + 1, None, raft::GetEntriesContext::empty(false))
            .map_err(|e| format!("reading entries {first}..={last}: {e}"))?;
        if ents.len() as u64 != last - first + 1 {
            return Err(format!("{} entries for {first}..={last}", ents.len()));
        }
        for e in ents {
            if e != entry(e.index, opts.payload) {
                return Err(format!("entry {} differs from what was written", e.index));
            }
        }
    }
    let hs = b.initial_state().map_err(|e| e.to_string())?.hard_state;
    if last > 0 && (hs.term != 1 || hs.vote != 1) {
        return Err(format!("hard state {hs:?} was never written"));
    }
    if hs.commit > last || applied > hs.commit {
        return Err(format!(
            "inconsistent positions: applied {applied}, commit {}, last {last}",
            hs.commit
        ));
    }
    for i in 1..=applied {
        let got = b.get(&key(i)).map_err(|e| e.to_string())?;
        if got.as_deref() != Some(&value(i, opts.payload)[..]) {
            return Err(format!("applied entry {i} is missing from the KV state"));
        }
    }
    if b.get(&key(applied + 1))
        .map_err(|e| e.to_string())?
        .is_some()
    {
        return Err(format!(
            "KV state holds entry {} beyond the applied index {applied}: apply was not atomic",
            applied + 1
        ));
    }
    Ok(VerifyReport {
        first_index: first,
        last_index: last,
        applied_index: applied,
    })
}
