//! What a node reports through `GET /status`.
//!
//! The node publishes it; the harness reads it to find the leader, wait for catch-up and
//! sample per-node disk and memory. Readers ignore fields they do not know, so a newer
//! node may add fields without breaking an older harness.

use serde::{Deserialize, Serialize};

use super::backend::BackendConfig;

/// A node's role, as raft sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Follower,
    Candidate,
    PreCandidate,
    Leader,
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
    /// Microseconds the storage engine's `persist` took in those readies alone: with
    /// `synced_persist_us / synced_persists`, the mean time of a persist raft needed
    /// durable (the log append and, unless `fsync = "never"`, its fsync), the figure
    /// comparable with another system's WAL fsync.
    #[serde(default)]
    pub synced_persist_us: u64,
    /// Entries appended to the local log since start. `entries_appended / synced_persists`
    /// is the group-commit factor: proposals covered by one fsync.
    pub entries_appended: u64,
    /// The raft loop's turns since start (each drains inputs, then handles one Ready).
    #[serde(default)]
    pub turns: u64,
    /// Microseconds the raft loop spent busy in those turns (`busy_us / turns` is the time
    /// per turn): the harness's own cost on the write path, apart from waiting.
    #[serde(default)]
    pub busy_us: u64,
    /// Of `busy_us`: microseconds in the storage engine's `persist` (the log append and
    /// its fsync) and in applying committed entries. What is left is stepping raft and
    /// sending messages: the share a pipelined persist could overlap with the fsync.
    #[serde(default)]
    pub persist_us: u64,
    #[serde(default)]
    pub apply_us: u64,
    /// The raft loop's longest turn since start, in microseconds: its longest stall (a
    /// snapshot built on the raft thread shows here), during which no write is acknowledged.
    #[serde(default)]
    pub longest_turn_us: u64,
    /// The raft loop's longest turn in the last one to two seconds (the current and the
    /// previous whole second), in microseconds: sampled once a second, it gives the stall
    /// of every second of a run (`resources.csv`, `raft_stall_us`).
    #[serde(default)]
    pub recent_longest_turn_us: u64,
    /// Snapshots built (off the raft thread) and adopted since start.
    #[serde(default)]
    pub snapshots_built: u64,
    /// Snapshot builds that failed (the node keeps its previous snapshot and retries).
    #[serde(default)]
    pub snapshot_failures: u64,
    /// How long the last adopted snapshot took to build, from begin to adoption.
    #[serde(default)]
    pub last_snapshot_ms: f64,
    /// The snapshot being built now, if any: raft keeps stepping, persisting and applying
    /// meanwhile.
    #[serde(default)]
    pub snapshot_building: Option<SnapshotBuilding>,
}

/// A snapshot build in progress (`/status`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotBuilding {
    /// The applied index when it began (the snapshot is at least this new).
    pub from_index: u64,
    /// Milliseconds since it began.
    pub elapsed_ms: u64,
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
    /// What the node's network surface refused (absent from older nodes).
    #[serde(default)]
    pub security: PeerSecurity,
}

/// What a node's network surface refused since start, and whether it is authenticated.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PeerSecurity {
    /// Whether the node has a cluster secret: peers must prove it, admin calls on a
    /// non-loopback bind must carry it.
    pub authenticated: bool,
    /// Set when the node runs without a secret.
    pub warning: Option<String>,
    /// Inbound peer connections closed in their handshake (any reason: a wrong or missing
    /// secret, a non-member, a malformed or late hello).
    pub handshakes_refused: u64,
    /// The part of `handshakes_refused` that failed to prove the secret or is no member.
    pub auth_failures: u64,
    /// Connections this node dialled whose peer refused it, or did not prove the secret.
    pub dial_auth_failures: u64,
    /// Inbound connections closed at once because the connection cap was reached.
    pub connections_refused: u64,
    /// A peer's older inbound connections closed when it opened more than the per-peer cap.
    pub connections_replaced: u64,
    /// Connections closed in their handshake to make room when too many handshook at
    /// once (the oldest goes; a flood of idle connections cannot keep a member out).
    pub handshakes_evicted: u64,
    /// Authenticated connections closed for breaking the frame protocol (oversized or
    /// malformed frames, a message from another node).
    pub frames_refused: u64,
    /// Raft messages dropped because no raft peer sends them (see `transport::allow`).
    pub messages_refused: u64,
    /// Committed entries that were not commands, applied as no-ops.
    pub not_commands: u64,
    /// Whether admin endpoints require the secret as a bearer token on this node.
    pub admin_token_required: bool,
    /// Admin requests refused with 401.
    pub admin_refused: u64,
    /// The most recent refusal, for a human.
    pub last_refusal: Option<String>,
}

/// Sizes and positions of a backend.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BackendStats {
    /// Bytes of every file in the data directory.
    pub disk_bytes: u64,
    /// Bytes the engine holds in memory (log, map, memtables, caches): the engine's own
    /// estimate, not the process RSS.
    pub memory_bytes: u64,
    /// Keys in the applied state (an estimate for RocksDB).
    pub kv_keys: u64,
    /// Entries in the log (`last_index - first_index + 1`).
    pub log_entries: u64,
    pub first_index: u64,
    pub last_index: u64,
    pub applied_index: u64,
    /// Index of the newest durable snapshot (0 if none).
    pub snapshot_index: u64,
    /// Bytes RocksDB wrote flushing memtables and compacting, summed over the mode's
    /// RocksDBs, since the node opened them (0 for other engines): the engine's own share
    /// of the write amplification.
    #[serde(default)]
    pub engine_flush_bytes: u64,
    #[serde(default)]
    pub engine_compaction_bytes: u64,
}

/// What opening a backend cost: the restart cost that recovery benchmarks report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpenReport {
    /// Whether the directory was created by this open.
    pub fresh: bool,
    /// Wall time of the whole open, in milliseconds.
    pub open_ms: f64,
    /// Part of `open_ms` spent loading a snapshot and replaying the log.
    pub replay_ms: f64,
    /// WAL records replayed (memwal); RocksDB replays its own WAL inside `DB::open` and
    /// reports 0 (its replay time is `replay_ms`).
    pub replayed_records: u64,
    /// Raft log entries read back from the WAL during replay (memwal; 0 for RocksDB).
    pub replayed_entries: u64,
    /// Bytes cut off a torn tail of the log, if any.
    pub torn_bytes_truncated: u64,
    /// Whether recovery found the log short of, or conflicting with, the newest snapshot and
    /// restarted it there (memwal, after a power cut under `fsync = "never"` that lost log
    /// records a snapshot had covered; never when snapshots sync the log first).
    #[serde(default)]
    pub log_restarted_at_snapshot: bool,
}
