//! What a node reports through `GET /status`, published by the raft loop.
//!
//! The raft loop owns the raft state; it copies the few numbers clients need into a
//! [`StatusCell`] after every loop turn, so `/status` never waits on the raft thread.

use std::sync::{Arc, RwLock};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::storage::{BackendConfig, BackendStats, OpenReport};

/// A node's role, as raft sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Follower,
    Candidate,
    PreCandidate,
    Leader,
}

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

/// Raft positions, updated every loop turn.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RaftStatus {
    pub role: Role,
    /// Leader id as this node knows it (0 = none).
    pub leader_id: u64,
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub first_index: u64,
    pub last_index: u64,
    pub snapshot_index: u64,
    /// Current voters.
    pub voters: Vec<u64>,
    /// Whether this node is still a member (false once removed).
    pub member: bool,
    /// Readies handled since start.
    pub readies: u64,
    /// Readies whose persist had to be synced (entries, snapshot or a new term/vote).
    pub synced_persists: u64,
    /// Entries appended to the local log since start. `entries_appended / synced_persists`
    /// is the group-commit factor: proposals covered by one fsync.
    pub entries_appended: u64,
}

/// The full `/status` document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    pub id: u64,
    #[serde(flatten)]
    pub raft: RaftStatus,
    /// Client address of the leader, when known.
    pub leader_addr: Option<String>,
    pub backend: BackendConfig,
    pub storage: BackendStats,
    pub rss_bytes: u64,
    pub uptime_ms: u64,
    /// Start-up costs: opening the backend (`open_ms`, `replay_ms`, `replayed_entries`).
    pub startup: OpenReport,
    /// Messages dropped by the transport because a peer queue was full or a peer was
    /// partitioned away.
    pub dropped_messages: u64,
}

/// Shared, cheaply readable copy of the node's state.
#[derive(Clone)]
pub struct StatusCell {
    inner: Arc<RwLock<Shared>>,
    pub started: Instant,
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
        }
    }
    pub fn set_raft(&self, raft: RaftStatus) {
        self.inner.write().expect("status lock").raft = raft;
    }
    pub fn set_storage(&self, storage: BackendStats) {
        self.inner.write().expect("status lock").storage = storage;
    }
    pub fn raft(&self) -> RaftStatus {
        self.inner.read().expect("status lock").raft.clone()
    }
    pub fn storage(&self) -> BackendStats {
        self.inner.read().expect("status lock").storage.clone()
    }
}

/// Resident set size of this process (0 where /proc is unavailable).
pub fn self_rss_bytes() -> u64 {
    rss_of("self")
}

/// Resident set size of process `pid` from `/proc/<pid>/status` (0 if unavailable).
pub fn rss_of(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib * 1024)
}
