//! What a node reports through `GET /status`, published by the raft loop.
//!
//! The raft loop owns the raft state; it copies the few numbers clients need into a
//! [`StatusCell`] after every loop turn, so `/status` never waits on the raft thread.

use std::sync::Arc;
use std::time::Instant;

use parking_lot::RwLock;

use crate::wire::status::BackendStats;
pub use crate::wire::status::{RaftStatus, Role, StatusReport};

impl From<raft::StateRole> for Role {
    fn from(r: raft::StateRole) -> Self {
        match r {
            raft::StateRole::Follower => Role::Follower,
            raft::StateRole::Candidate => Role::Candidate,
            raft::StateRole::PreCandidate => Role::PreCandidate,
            raft::StateRole::Leader => Role::Leader,
        }
    }
}

/// Shared, cheaply readable copy of the node's state.
#[derive(Clone)]
pub struct StatusCell {
    inner: Arc<RwLock<Shared>>,
    pub started: Instant,
    /// Committed entries that were not commands, applied as no-ops.
    pub not_commands: Arc<std::sync::atomic::AtomicU64>,
}

struct Shared {
    raft: RaftStatus,
    storage: BackendStats,
}

impl StatusCell {
    pub fn new(raft: RaftStatus, storage: BackendStats) -> Self {
        StatusCell {
            inner: Arc::new(RwLock::new(Shared { raft, storage })),
            started: Instant::now(),
            not_commands: Arc::default(),
        }
    }
    pub fn set_raft(&self, raft: RaftStatus) {
        self.inner.write().raft = raft;
    }
    pub fn set_storage(&self, storage: BackendStats) {
        self.inner.write().storage = storage;
    }
    pub fn raft(&self) -> RaftStatus {
        self.inner.read().raft.clone()
    }
    pub fn storage(&self) -> BackendStats {
        self.inner.read().storage.clone()
    }
}

/// Resident set size of this process (0 where /proc is unavailable).
pub fn self_rss_bytes() -> u64 {
    rss_of("self")
}

/// Resident set size of process `pid` from `/proc/<pid>/status` (0 if unavailable).
fn rss_of(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib * 1024)
}
