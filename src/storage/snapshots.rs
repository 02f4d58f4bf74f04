//! Snapshots built off the raft thread, and the built snapshot a backend keeps for raft.
//!
//! Building a snapshot means reading the whole applied state and writing it to a file: far
//! too long for the raft thread, which would stop stepping, persisting and applying
//! meanwhile (a stall of hundreds of milliseconds at a few hundred thousand keys, which was
//! the largest thing in raftbench's write tails). So it is done in three steps:
//!
//! 1. [`StorageBackend::begin_snapshot`](super::StorageBackend::begin_snapshot), on the raft
//!    thread: capture a point-in-time view of the applied state — O(1), no scan — and make
//!    everything it reflects durable;
//! 2. [`SnapshotJob::run`], on any other thread: write the view to a snapshot file (via a
//!    temporary name, synced, renamed) and map it;
//! 3. [`StorageBackend::finish_snapshot`](super::StorageBackend::finish_snapshot), back on
//!    the raft thread: adopt the built snapshot as the one raft sends to followers and the
//!    durable base below which the log may be compacted — unless a newer snapshot (one
//!    installed from the leader meanwhile) has superseded it, in which case it is dropped.
//!
//! raft asks for a snapshot through `raft::Storage::snapshot`, which must be cheap (it is
//! called on the raft thread) and may answer `SnapshotTemporarilyUnavailable` (raft then
//! asks again later). [`SnapshotCache`] answers from the last built or installed snapshot,
//! and, when that is too old or missing, records that one is wanted so the raft loop
//! starts a build.

use std::cell::Cell;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use std::path::Path;

use raft::eraftpb::{ConfState, Snapshot};

use super::error::{Result, StorageError};
use super::snapfile;
use super::snapfile::PairSink;

/// A snapshot build captured by `begin_snapshot`, to be run on another thread.
pub struct SnapshotJob {
    applied_at_begin: u64,
    cancel: Cancel,
    build: Build,
}

/// A job's build step.
type Build = Box<dyn FnOnce(&Cancel) -> Result<BuiltSnapshot> + Send>;

/// Set to stop a build early (the node is stopping): its file write fails at the next
/// range, leaving no file.
pub type Cancel = Arc<AtomicBool>;

impl SnapshotJob {
    /// A job that runs `build`, which gives up when the flag it is handed is set.
    pub(crate) fn new(
        applied_at_begin: u64,
        build: impl FnOnce(&Cancel) -> Result<BuiltSnapshot> + Send + 'static,
    ) -> Self {
        SnapshotJob {
            applied_at_begin,
            cancel: Cancel::default(),
            build: Box::new(build),
        }
    }

    /// A job whose snapshot already exists (the applied index has not moved since it was
    /// built): running it builds nothing.
    pub(crate) fn ready(built: BuiltSnapshot) -> Self {
        SnapshotJob::new(built.index(), move |_| Ok(built))
    }

    /// The flag that cancels this job once it runs: a rate-limited build of a large state
    /// takes seconds, longer than a node may take to stop.
    pub fn canceller(&self) -> Cancel {
        self.cancel.clone()
    }

    /// The applied index when the job was begun; the built snapshot is at least this new.
    pub fn applied_at_begin(&self) -> u64 {
        self.applied_at_begin
    }

    /// Build the snapshot: scan the view, write the file (synced under every fsync policy,
    /// with its directory), map it. Blocking; run it off the raft thread, at
    /// [`background_priority`].
    pub fn run(self) -> Result<BuiltSnapshot> {
        (self.build)(&self.cancel)
    }
}

/// What `finish_snapshot` did with a built snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// It is the replica's newest snapshot now.
    Adopted,
    /// It is the snapshot the replica already had (the applied index had not moved).
    Current,
    /// A newer snapshot (installed from the leader while it was built) superseded it; it
    /// was dropped, with its file.
    Superseded,
}

/// A snapshot written to its file, ready to be adopted by `finish_snapshot`.
#[derive(Clone)]
pub struct BuiltSnapshot {
    /// Metadata and data; the data maps the file (no heap copy).
    pub snapshot: Snapshot,
    /// The file it lives in.
    pub path: PathBuf,
}

impl BuiltSnapshot {
    /// The index the snapshot is at.
    pub fn index(&self) -> u64 {
        self.snapshot.get_metadata().index
    }
}

/// The newest snapshot a backend can hand to raft, and whether raft asked for a newer one.
///
/// Only the raft thread uses it (`raft::Storage` is not `Sync`), hence the `Cell`.
#[derive(Default)]
pub struct SnapshotCache {
    current: Option<Snapshot>,
    wanted: Cell<bool>,
}

impl SnapshotCache {
    /// A cache holding the snapshot file at `path`, mapped (its checksum is not verified
    /// again: callers have just read or written it); empty, with a warning, when the file
    /// cannot be mapped — raft then asks for one and the raft loop builds it.
    pub fn from_file(path: &Path) -> Self {
        let mut cache = SnapshotCache::default();
        match snapfile::map(path, false) {
            Ok((meta, data)) => {
                let mut snap = Snapshot::default();
                snap.set_metadata(meta);
                snap.data = data;
                cache.set(snap);
            }
            Err(e) => tracing::warn!("no snapshot to send to followers until one is built: {e}"),
        }
        cache
    }

    /// The cached snapshot's index (0 when there is none).
    pub fn index(&self) -> u64 {
        self.current.as_ref().map_or(0, |s| s.get_metadata().index)
    }

    /// The cached snapshot, if any.
    pub fn current(&self) -> Option<&Snapshot> {
        self.current.as_ref()
    }

    /// A job that returns the cached snapshot, when it is at `applied` (nothing to
    /// build: the state has not moved since). `path` is its file.
    pub(crate) fn ready_at(&self, applied: u64, path: PathBuf) -> Option<SnapshotJob> {
        let current = self.current.as_ref()?;
        (current.get_metadata().index == applied).then(|| {
            SnapshotJob::ready(BuiltSnapshot {
                snapshot: current.clone(),
                path,
            })
        })
    }

    /// Cache `snap` (cheap: its data is shared, not copied), and clear the wanted flag:
    /// raft asks again if it needs a newer one.
    pub fn set(&mut self, snap: Snapshot) {
        self.current = Some(snap);
        self.wanted.set(false);
    }

    /// Forget the cached snapshot (its state was replaced by one that is not cached).
    pub fn clear(&mut self) {
        self.current = None;
    }

    /// The cached snapshot, when there is one at or above `request_index`; otherwise
    /// `SnapshotTemporarilyUnavailable`, and the cache remembers that one is wanted
    /// ([`Self::take_wanted`]). O(1): no I/O, no copy of the data.
    ///
    /// A snapshot is served to follower `to` only if its conf state names `to`: raft-rs
    /// (like etcd) refuses a snapshot that does not, so a member added after the cached
    /// snapshot gets a newer one, built once its addition is applied. `to = 0` (no raft
    /// node has id 0) asks for the cached snapshot whoever it is for: tools and tests.
    pub fn serve(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        match &self.current {
            Some(s)
                if s.get_metadata().index >= request_index.max(1)
                    && names(s.get_metadata().get_conf_state(), to) =>
            {
                Ok(s.clone())
            }
            _ => {
                self.wanted.set(true);
                Err(raft::Error::Store(
                    raft::StorageError::SnapshotTemporarilyUnavailable,
                ))
            }
        }
    }

    /// Whether raft asked for a snapshot the cache did not have since the last call.
    pub fn take_wanted(&self) -> bool {
        self.wanted.replace(false)
    }
}

/// Write the pairs `fill` pushes (a point-in-time view, ascending keys) as the snapshot at
/// `(index, term)` with `conf_state`, to `path` (temporary file, fsync, rename, directory
/// fsync: durable under every fsync policy when this returns), within `limit`, and map it.
pub(crate) fn write_file(
    path: &Path,
    index: u64,
    term: u64,
    conf_state: &ConfState,
    limit: snapfile::Limit<'_>,
    fill: impl FnOnce(&mut PairSink<'_>) -> Result<()>,
) -> Result<BuiltSnapshot> {
    let meta = super::make_snapshot(index, term, conf_state, Vec::new()).take_metadata();
    let (_, mapped) = snapfile::write_streamed(path, &meta, index, limit, fill)?;
    let mut snapshot = Snapshot::default();
    snapshot.set_metadata(meta);
    snapshot.data = mapped;
    Ok(BuiltSnapshot {
        snapshot,
        path: path.to_path_buf(),
    })
}

/// Delete the file of a built snapshot that a newer one superseded before it was adopted.
/// Already gone is fine: the newer snapshot's clean-up may have deleted it.
pub(crate) fn remove_superseded(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(StorageError::io("delete", path)(e))
        }
        _ => Ok(()),
    }
}

/// Whether `cs` names node `id` in any role (any conf state "names" 0).
fn names(cs: &ConfState, id: u64) -> bool {
    id == 0
        || cs
            .voters
            .iter()
            .chain(&cs.learners)
            .chain(&cs.voters_outgoing)
            .chain(&cs.learners_next)
            .any(|v| *v == id)
}

/// Lower the calling thread's CPU priority to the least (nice 19), for work that must not
/// compete with raft threads: a snapshot build is CPU-bound for as long as it scans, and at
/// equal priority it takes the cores raft needs (on a machine running several nodes, all
/// of them build at the same index at once) — the raft loops then stall as long as the
/// builds, as if they ran on the raft thread. At nice 19 it still progresses on a busy
/// machine (unlike `SCHED_IDLE`), only more slowly. Linux only; elsewhere a no-op.
pub fn background_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain syscalls on this thread's own id; no memory is passed.
        unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19);
        }
    }
}
