//! A node's `GET /metrics`: OpenMetrics text through `prometheus-client`.
//!
//! Two kinds of figures, kept apart so that nothing on the raft thread waits on a scrape:
//! - **events**, recorded where they happen ([`RaftMetrics`], the transport's
//!   `PeerMetrics`): persist, apply and Ready times as histograms, leader changes,
//!   dropped proposals, snapshot builds, sends and installs. Each is an atomic update
//!   (a histogram's is a short uncontended lock), cheap beside the fsync it times;
//! - **state**, read at scrape time from what the node already publishes for `/status`
//!   ([`StatusCollector`]): term, commit and applied index (and their difference, the apply
//!   lag), the raft loop's longest stall, the storage engine's disk and memory, RocksDB's
//!   flush and compaction bytes, the process's RSS and start time (under the standard
//!   `process_` names).
//!
//! Every series carries `node`, `backend` and `fsync` labels, so one Prometheus scraping
//! several clusters and engines can tell them apart. Names are documented in the README
//! ("Node metrics"); they start with `raftbench_` (or `process_`).

use std::borrow::Cow;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeCounterValue, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use super::status::{Role, StatusCell, self_rss_bytes};
use crate::wire::BackendConfig;

/// The OpenMetrics content type `GET /metrics` answers with.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Time buckets from 25 µs to ~6.7 s, each √2 wider than the last: an estimate of a
/// percentile from them is within about 20 % (a factor of 2 would give 40 %), fine enough
/// to tell a slow fsync from a slow apply.
fn time_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(25e-6, std::f64::consts::SQRT_2, 37)
}

/// Snapshot durations: 1 ms to ~65 s.
fn snapshot_time_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(1e-3, 2.0, 17)
}

/// Sizes: 1 KiB to 256 GiB in factors of 4.
fn snapshot_size_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(1024.0, 4.0, 15)
}

/// What the raft loop records as it works (see the module docs).
#[derive(Clone)]
pub struct RaftMetrics {
    /// Synced persists (a Ready with entries, a snapshot or a new term or vote): the log
    /// append and, unless `fsync = "never"`, its fsync, timed together. The figure to set
    /// beside another system's WAL fsync.
    pub persist_seconds: Histogram,
    /// Entries per synced persist that carried entries (the group-commit factor).
    pub persist_entries: Histogram,
    /// Entry bytes (data and context) per synced persist that carried entries.
    pub persist_bytes: Histogram,
    /// One apply of committed entries (one atomic batch).
    pub apply_seconds: Histogram,
    pub applied_entries: Counter,
    /// Handling one Ready, start to end (persist, sends, apply, advance).
    pub ready_seconds: Histogram,
    /// This node seeing a new leader (a change of the leader it knows to another node).
    pub leader_changes: Counter,
    /// Proposals raft refused or a new leader's log discarded before they committed.
    pub proposals_dropped: Counter,
    /// Snapshot builds (off the raft thread), from begin to adoption.
    pub snapshot_build_seconds: Histogram,
    pub snapshot_build_bytes: Histogram,
    pub snapshot_build_failures: Counter,
    /// A follower installing a leader's snapshot (the persist that carried it).
    pub snapshot_install_seconds: Histogram,
    pub snapshot_install_bytes: Histogram,
}

impl RaftMetrics {
    fn register(r: &mut Registry) -> Self {
        let m = RaftMetrics {
            persist_seconds: Histogram::new(time_buckets()),
            persist_entries: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
            persist_bytes: Histogram::new(exponential_buckets(64.0, 2.0, 20)),
            apply_seconds: Histogram::new(time_buckets()),
            applied_entries: Counter::default(),
            ready_seconds: Histogram::new(time_buckets()),
            leader_changes: Counter::default(),
            proposals_dropped: Counter::default(),
            snapshot_build_seconds: Histogram::new(snapshot_time_buckets()),
            snapshot_build_bytes: Histogram::new(snapshot_size_buckets()),
            snapshot_build_failures: Counter::default(),
            snapshot_install_seconds: Histogram::new(snapshot_time_buckets()),
            snapshot_install_bytes: Histogram::new(snapshot_size_buckets()),
        };
        let s = Unit::Seconds;
        let b = Unit::Bytes;
        r.register_with_unit(
            "raftbench_persist",
            "Synced persists of a Ready (log append and fsync timed together)",
            s.clone(),
            m.persist_seconds.clone(),
        );
        r.register(
            "raftbench_persist_entries",
            "Entries per synced persist that carried entries (group-commit factor)",
            m.persist_entries.clone(),
        );
        r.register_with_unit(
            "raftbench_persist",
            "Entry bytes per synced persist that carried entries",
            b.clone(),
            m.persist_bytes.clone(),
        );
        r.register_with_unit(
            "raftbench_apply",
            "Applying one batch of committed entries",
            s.clone(),
            m.apply_seconds.clone(),
        );
        r.register(
            "raftbench_applied_entries",
            "Committed entries applied",
            m.applied_entries.clone(),
        );
        r.register_with_unit(
            "raftbench_ready",
            "Handling one raft Ready (persist, sends, apply, advance)",
            s.clone(),
            m.ready_seconds.clone(),
        );
        r.register(
            "raftbench_leader_changes",
            "Times this node saw the leader change to another node",
            m.leader_changes.clone(),
        );
        r.register(
            "raftbench_proposals_dropped",
            "Proposals refused by raft or discarded by a new leader before committing",
            m.proposals_dropped.clone(),
        );
        r.register_with_unit(
            "raftbench_snapshot_build",
            "Snapshot builds, from begin to adoption",
            s.clone(),
            m.snapshot_build_seconds.clone(),
        );
        r.register_with_unit(
            "raftbench_snapshot_build",
            "Sizes of built snapshots",
            b.clone(),
            m.snapshot_build_bytes.clone(),
        );
        r.register(
            "raftbench_snapshot_build_failures",
            "Snapshot builds that failed",
            m.snapshot_build_failures.clone(),
        );
        r.register_with_unit(
            "raftbench_snapshot_install",
            "Installing a leader's snapshot (the persist that carried it)",
            s,
            m.snapshot_install_seconds.clone(),
        );
        r.register_with_unit(
            "raftbench_snapshot_install",
            "Sizes of installed snapshots",
            b,
            m.snapshot_install_bytes.clone(),
        );
        m
    }

    /// Observe a duration in seconds.
    pub fn observe(h: &Histogram, d: Duration) {
        h.observe(d.as_secs_f64());
    }
}

/// Scrape-time state, read from the node's status cell (see the module docs).
struct StatusCollector {
    status: StatusCell,
}

impl std::fmt::Debug for StatusCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StatusCollector")
    }
}

fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    v: f64,
) -> std::fmt::Result {
    let g = ConstGauge::new(v);
    g.encode(enc.encode_descriptor(name, help, unit, g.metric_type())?)
}

fn counter<N: EncodeCounterValue>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    v: N,
) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(enc.encode_descriptor(name, help, unit, c.metric_type())?)
}

impl Collector for StatusCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let r = self.status.raft();
        let st = self.status.storage();
        let (s, b) = (Some(&Unit::Seconds), Some(&Unit::Bytes));
        let e = &mut enc;
        gauge(e, "raftbench_term", "Raft term", None, r.term as f64)?;
        gauge(
            e,
            "raftbench_is_leader",
            "1 while this node is the leader",
            None,
            f64::from(u8::from(r.role == Role::Leader)),
        )?;
        gauge(
            e,
            "raftbench_leader_id",
            "The leader this node knows (0: none)",
            None,
            r.leader_id as f64,
        )?;
        gauge(
            e,
            "raftbench_commit_index",
            "Highest log index known committed",
            None,
            r.commit_index as f64,
        )?;
        gauge(
            e,
            "raftbench_applied_index",
            "Highest log index applied to the state machine",
            None,
            r.applied_index as f64,
        )?;
        gauge(
            e,
            "raftbench_apply_lag_entries",
            "Committed entries not yet applied (commit index minus applied index)",
            None,
            r.commit_index.saturating_sub(r.applied_index) as f64,
        )?;
        gauge(
            e,
            "raftbench_raft_loop_recent_stall",
            "The raft loop's longest turn in the last one to two seconds (no write is acknowledged through a turn)",
            s,
            r.recent_longest_turn_us as f64 / 1e6,
        )?;
        gauge(
            e,
            "raftbench_raft_loop_longest_stall",
            "The raft loop's longest turn since the node started",
            s,
            r.longest_turn_us as f64 / 1e6,
        )?;
        counter(
            e,
            "raftbench_raft_loop_busy",
            "Time the raft loop spent busy",
            s,
            r.busy_us as f64 / 1e6,
        )?;
        counter(
            e,
            "raftbench_snapshots_built",
            "Snapshots built and adopted",
            None,
            r.snapshots_built,
        )?;
        gauge(
            e,
            "raftbench_storage_disk",
            "Bytes of every file in the node's data directory",
            b,
            st.disk_bytes as f64,
        )?;
        gauge(
            e,
            "raftbench_storage_memory",
            "Bytes the storage engine holds in memory (its own estimate)",
            b,
            st.memory_bytes as f64,
        )?;
        gauge(
            e,
            "raftbench_storage_keys",
            "Keys in the applied state (an estimate for RocksDB)",
            None,
            st.kv_keys as f64,
        )?;
        gauge(
            e,
            "raftbench_storage_log_entries",
            "Entries in the raft log",
            None,
            st.log_entries as f64,
        )?;
        counter(
            e,
            "raftbench_rocksdb_flush",
            "Bytes RocksDB wrote flushing memtables (0 without RocksDB)",
            b,
            st.engine_flush_bytes,
        )?;
        counter(
            e,
            "raftbench_rocksdb_compaction",
            "Bytes RocksDB wrote compacting (0 without RocksDB)",
            b,
            st.engine_compaction_bytes,
        )?;
        // The standard process metrics' names, so dashboards made for any exporter work.
        gauge(
            e,
            "process_resident_memory",
            "Resident set size of the node process",
            b,
            self_rss_bytes() as f64,
        )?;
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |now| {
                now.as_secs_f64() - self.status.started.elapsed().as_secs_f64()
            });
        gauge(
            e,
            "process_start_time",
            "When the node process started, seconds since the Unix epoch",
            s,
            started,
        )?;
        Ok(())
    }
}

/// A node's registry: the constant labels, the raft loop's metrics and the status
/// collector. The transport registers its own into it (`PeerMetrics::register`).
pub struct NodeRegistry {
    pub registry: Registry,
    pub raft: RaftMetrics,
}

impl NodeRegistry {
    /// Labels `node`, `backend` (its mode name) and `fsync` on every series.
    pub fn new(id: u64, backend: &BackendConfig) -> Self {
        let labels: Vec<(Cow<'static, str>, Cow<'static, str>)> = vec![
            ("node".into(), id.to_string().into()),
            ("backend".into(), backend.kind.to_string().into()),
            ("fsync".into(), backend.fsync.to_string().into()),
        ];
        let mut registry = Registry::with_labels(labels.into_iter());
        let raft = RaftMetrics::register(&mut registry);
        NodeRegistry { registry, raft }
    }

    /// Add the scrape-time state of `status`.
    pub fn collect_status(&mut self, status: StatusCell) {
        self.registry
            .register_collector(Box::new(StatusCollector { status }));
    }
}

/// The registry as OpenMetrics text (ending in `# EOF`).
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail; an encoder error would be a bug in a metric.
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, registry) {
        tracing::error!("encoding /metrics failed: {e}");
    }
    out
}
