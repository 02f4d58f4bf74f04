//! What the harness drives: a raftbench cluster, or a peer system (etcd) run the same way.
//!
//! A *target* is the client side of one kind of cluster. It has two halves:
//! - the data plane, [`KvClient`]: put, get (linearizable or local) and delete, each ending
//!   in one of the outcomes a benchmark counts (ok, failed, indeterminate: see
//!   [`crate::client::ClientError`]);
//! - the control plane, [`TargetApi`]: one member's status (role, leader, term, commit and
//!   applied index, memory and disk where the target reports them), membership changes,
//!   a forced snapshot, leader transfer and partitions, where the target has them.
//!
//! Processes (kill, stop, restart, pause) are not the target's business: they go through
//! [`crate::cluster::NodeControl`] whatever the target. An event the target cannot carry
//! out is refused when the workload is validated ([`refusal`]), never skipped at run time.
//!
//! - [`raftbench`]: raftbench's own nodes, over their HTTP API;
//! - [`etcd`]: etcd members, over gRPC (`etcd-client`), and how to launch them locally;
//! - [`server`]: what members measure themselves (WAL fsyncs, `/metrics`), [`prom`]:
//!   reading their Prometheus text.

pub mod etcd;
pub mod prom;
pub mod raftbench;
pub mod server;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;

use crate::client::{Client, ClientError, Consistency};
use crate::cluster::{ClusterError, Member};
use crate::wire::{BackendKind, Direction, LinkRequest, Role, StatusReport};
use crate::workload::spec::Action;

/// One member's state as its target reports it: the common part every target has, and
/// raftbench's full report when the member is a raftbench node.
#[derive(Debug, Clone)]
pub struct NodeStatus {
    /// The harness's id of the member (not etcd's member id).
    pub id: u64,
    pub role: Role,
    /// The leader as this member knows it (harness id; 0 = none or unknown).
    pub leader_id: u64,
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    /// The member's last log index; the commit index where the target does not report it.
    pub last_index: u64,
    /// Current voting members (harness ids).
    pub voters: Vec<u64>,
    /// Resident memory, where the member reports it.
    pub rss_bytes: Option<u64>,
    /// Bytes of stored data, as the member reports them (etcd: its db file).
    pub disk_bytes: Option<u64>,
    /// A raftbench node's whole `/status` (raft loop, start-up and engine figures).
    pub raftbench: Option<StatusReport>,
}

/// A snapshot the target took on one member.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotTaken {
    /// The index it covers (etcd: the member's raft index when the snapshot began).
    pub index: u64,
    pub bytes: u64,
    pub duration_ms: f64,
}

/// The control plane of a target. Every call has a deadline of its own, so a member that
/// does not answer (paused, killed) returns an error rather than hanging the run.
pub trait TargetApi: Send + Sync {
    /// The target's name in messages (`raftbench`, `etcd`).
    fn name(&self) -> &'static str;
    /// Learn where `member` is (before any call about it): etcd maps its own member ids
    /// to the harness's through the members' client addresses.
    fn know(&self, _member: &Member) {}
    /// `member`'s status (2 s deadline).
    fn status<'a>(&'a self, member: &'a Member) -> BoxFuture<'a, Result<NodeStatus, ClusterError>>;
    /// The flags a new member starts with *before* it is added, for a target whose new
    /// members start empty and wait to be added (raftbench: `--join`); `None` for one
    /// whose new members must be told the membership they join, and so start after
    /// [`Self::add_member`] (etcd).
    fn start_empty_args(&self) -> Option<Vec<String>>;
    /// Add `new` as a voter, asking `leader`. Returns the flags `new` must start with when
    /// it starts after the change (etcd's `--initial-cluster` of the new membership);
    /// nothing for a target that started it before ([`Self::start_empty_args`]).
    fn add_member<'a>(
        &'a self,
        leader: &'a Member,
        new: &'a Member,
    ) -> BoxFuture<'a, Result<Vec<String>, ClusterError>>;
    /// Remove member `id`, asking `leader`.
    fn remove_member<'a>(
        &'a self,
        leader: &'a Member,
        id: u64,
    ) -> BoxFuture<'a, Result<(), ClusterError>>;
    /// Force a snapshot on `member` and wait for it.
    fn snapshot<'a>(
        &'a self,
        member: &'a Member,
    ) -> BoxFuture<'a, Result<SnapshotTaken, ClusterError>>;
    /// Ask `leader` to hand leadership to member `to`.
    fn transfer_leader<'a>(
        &'a self,
        leader: &'a Member,
        to: &'a Member,
    ) -> BoxFuture<'a, Result<(), ClusterError>>;
    /// Make `member` drop traffic with the members `others`.
    fn partition<'a>(
        &'a self,
        member: &'a Member,
        others: &'a [u64],
        direction: Direction,
    ) -> BoxFuture<'a, Result<(), ClusterError>>;
    /// Degrade `member`'s outbound links to the request's peers (delay, jitter, loss).
    fn degrade<'a>(
        &'a self,
        member: &'a Member,
        link: &'a LinkRequest,
    ) -> BoxFuture<'a, Result<(), ClusterError>>;
    /// End every partition and degradation of `member`.
    fn heal<'a>(&'a self, member: &'a Member) -> BoxFuture<'a, Result<(), ClusterError>>;
    /// `member`'s own cumulative WAL fsync (and backend commit) figures now (2 s deadline).
    fn server_counters<'a>(
        &'a self,
        member: &'a Member,
    ) -> BoxFuture<'a, Result<server::ServerCounters, ClusterError>>;
    /// `member`'s `GET /metrics` text (Prometheus or OpenMetrics; 2 s deadline): both
    /// raftbench nodes and etcd serve it on their client address.
    fn metrics_text<'a>(
        &'a self,
        member: &'a Member,
    ) -> BoxFuture<'a, Result<String, ClusterError>>;
}

/// The control plane for a cluster of `kind`; `http` carries the cluster secret (raftbench
/// admin calls need it).
pub fn api_for(kind: BackendKind, http: reqwest::Client) -> Arc<dyn TargetApi> {
    if kind.is_peer() {
        Arc::new(etcd::EtcdApi::new())
    } else {
        Arc::new(raftbench::RaftbenchApi::new(http))
    }
}

/// Why a cluster of `kind` cannot carry out `action`, if it cannot: the workload is
/// refused with this at the event's line and column.
pub fn refusal(kind: BackendKind, action: Action) -> Option<String> {
    if !kind.is_peer() {
        return None;
    }
    match action {
        Action::Partition | Action::Heal | Action::LinkSlow => Some(format!(
            "`{}`: raftbench partitions a node inside its own peer transport, which etcd \
             does not have; etcd members can be killed, stopped, paused and restarted",
            action.name()
        )),
        Action::Compact => Some(
            "`compact` compacts a raftbench node's log; etcd compacts its log at each \
             snapshot: use `snapshot` (etcd's Maintenance.Snapshot) or set \
             [cluster] snapshot_interval (etcd's --snapshot-count)"
                .into(),
        ),
        a if a.needs_fault_disk() => Some(format!(
            "`{}` needs the member's data on raftbench's fault file system, which is not \
             supported under etcd (its bbolt db is memory-mapped); etcd members can be \
             killed, stopped, paused and restarted",
            a.name()
        )),
        _ => None,
    }
}

/// The data plane of a target: a cluster client. Cheap to share behind an `Arc`.
pub enum KvClient {
    Raftbench(Client),
    Etcd(etcd::EtcdKv),
}

impl KvClient {
    /// A client of the cluster of `kind` at `endpoints` (client addresses), giving each
    /// request up to `timeout` including retries. etcd's requests go to `leader` (an index
    /// of `endpoints`) first: etcd forwards a write sent to a follower rather than naming
    /// its leader. Connections are made at the first request.
    pub async fn connect(
        kind: BackendKind,
        endpoints: &[String],
        leader: usize,
        timeout: Duration,
    ) -> Result<KvClient, String> {
        if endpoints.is_empty() {
            return Err("a cluster client needs at least one endpoint".into());
        }
        Ok(if kind.is_peer() {
            let c = etcd::EtcdKv::new(endpoints, timeout).await?;
            c.prefer(leader);
            KvClient::Etcd(c)
        } else {
            // raftbench's client finds the leader itself: a follower redirects it.
            KvClient::Raftbench(Client::new(endpoints, timeout))
        })
    }

    /// Store `value` under `key`; returns once the cluster applied (etcd: committed) it.
    pub async fn put(&self, key: &str, value: Bytes) -> Result<(), ClientError> {
        match self {
            KvClient::Raftbench(c) => c.put(key, value).await,
            KvClient::Etcd(c) => c.put(key, value).await,
        }
    }

    /// Delete `key`.
    pub async fn delete(&self, key: &str) -> Result<(), ClientError> {
        match self {
            KvClient::Raftbench(c) => c.delete(key).await,
            KvClient::Etcd(c) => c.delete(key).await,
        }
    }

    /// Read `key`; `None` when it does not exist.
    pub async fn get(
        &self,
        key: &str,
        consistency: Consistency,
    ) -> Result<Option<Bytes>, ClientError> {
        match self {
            KvClient::Raftbench(c) => c.get(key, consistency).await,
            KvClient::Etcd(c) => c.get(key, consistency).await,
        }
    }
}
