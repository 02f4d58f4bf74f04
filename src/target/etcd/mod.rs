//! etcd as a target: members driven over gRPC through `etcd-client` (KV, Maintenance,
//! Cluster), and launched locally from the `etcd` binary ([`launch`]).
//!
//! etcd names its members by random 64-bit ids; the harness names them 1..N as it does its
//! own nodes. [`EtcdApi`] maps one to the other through the member list's client URLs,
//! which must be the `client_addr`s the cluster file gives.
//!
//! - [`kv`]: the data plane, [`EtcdKv`];
//! - [`launch`]: the command line of a local member, from the workload's settings;
//! - [`metrics`]: etcd's server-side figures from its `/metrics`.

pub mod kv;
pub mod launch;
pub mod metrics;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use parking_lot::{Mutex, RwLock};

pub use kv::EtcdKv;

use super::server::ServerCounters;
use super::{NodeStatus, SnapshotTaken, TargetApi};
use crate::cluster::{ClusterError, Member};
use crate::wire::{Direction, LinkRequest, Role};

/// How long a status call may take.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a membership change or leader move may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the cached member list is trusted before a status call refreshes it.
const MEMBERS_TTL: Duration = Duration::from_secs(1);

/// A gRPC client of one member: its own HTTP/2 connection, redialled lazily, so that a
/// member that is down fails fast instead of waiting in a balancer for a ready one.
pub(crate) async fn member_client(addr: &str) -> Result<etcd_client::Client, String> {
    let url = format!("http://{}", addr.trim_start_matches("http://"));
    let endpoint = tonic::transport::Endpoint::from_shared(url.clone())
        .map_err(|e| format!("bad etcd endpoint {url:?}: {e}"))?
        .connect_timeout(Duration::from_secs(1))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5));
    etcd_client::Client::from_channel(etcd_client::Channel::Tonic(endpoint.connect_lazy()), None)
        .await
        .map_err(|e| format!("etcd client for {url}: {e}"))
}

/// The harness's view of etcd's membership.
#[derive(Default)]
struct Members {
    /// etcd member id -> harness id.
    by_etcd: HashMap<u64, u64>,
    /// Harness ids of the voting members (learners excluded).
    voters: Vec<u64>,
    /// When the member list was last read.
    read_at: Option<Instant>,
}

/// The control plane of etcd members.
pub struct EtcdApi {
    /// For `/metrics` (plain HTTP on the client URL).
    http: reqwest::Client,
    /// One gRPC client per member, by client address.
    clients: Mutex<HashMap<String, etcd_client::Client>>,
    /// Client address -> harness id, of every member the harness knows.
    by_addr: RwLock<HashMap<String, u64>>,
    members: RwLock<Members>,
}

fn node_err(id: u64, what: &str) -> impl FnOnce(String) -> ClusterError + '_ {
    move |e| ClusterError::Node {
        id,
        message: format!("etcd {what}: {e}"),
    }
}

/// Run `f` with a deadline, turning both its error and the timeout into a message.
async fn within<T, E: std::fmt::Display>(
    limit: Duration,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {limit:?}")),
    }
}

/// Run a membership change until etcd takes it, for up to [`ADMIN_TIMEOUT`]. etcd refuses
/// one with `unhealthy cluster` until every member has been connected for 5 s (its
/// `--strict-reconfig-check`), which a cluster that just started or just lost a member is
/// not; the refusal changes nothing, so asking again is safe.
async fn until_healthy<T, F, Fut>(mut change: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
{
    let deadline = Instant::now() + ADMIN_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match within(left, change()).await {
            Err(e) if e.contains("unhealthy cluster") && !left.is_zero() => {
                tokio::time::sleep(Duration::from_millis(250).min(left)).await;
            }
            other => return other,
        }
    }
}

fn strip_scheme(url: &str) -> &str {
    url.trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/')
}

impl Default for EtcdApi {
    fn default() -> Self {
        EtcdApi {
            http: crate::client::http_client(),
            clients: Mutex::default(),
            by_addr: RwLock::default(),
            members: RwLock::default(),
        }
    }
}

impl EtcdApi {
    pub fn new() -> Self {
        Self::default()
    }

    async fn client(&self, addr: &str) -> Result<etcd_client::Client, String> {
        if let Some(c) = self.clients.lock().get(addr) {
            return Ok(c.clone());
        }
        let c = member_client(addr).await?;
        self.clients.lock().insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// Read the member list through `via` and map etcd's ids to the harness's.
    async fn refresh_members(&self, via: &Member) -> Result<(), ClusterError> {
        let mut c = self
            .client(&via.client_addr)
            .await
            .map_err(node_err(via.id, "client"))?;
        let list = within(STATUS_TIMEOUT, c.member_list())
            .await
            .map_err(node_err(via.id, "MemberList"))?;
        let by_addr = self.by_addr.read();
        let mut m = self.members.write();
        m.voters.clear();
        for member in list.members() {
            let harness = member
                .client_urls()
                .iter()
                .find_map(|u| by_addr.get(strip_scheme(u)).copied())
                .or_else(|| m.by_etcd.get(&member.id()).copied())
                .or_else(|| {
                    member
                        .name()
                        .strip_prefix("node-")
                        .and_then(|n| n.parse().ok())
                });
            if let Some(h) = harness {
                m.by_etcd.insert(member.id(), h);
                if !member.is_learner() {
                    m.voters.push(h);
                }
            }
        }
        m.voters.sort_unstable();
        m.read_at = Some(Instant::now());
        Ok(())
    }

    fn etcd_id(&self, harness: u64) -> Option<u64> {
        self.members
            .read()
            .by_etcd
            .iter()
            .find(|(_, h)| **h == harness)
            .map(|(e, _)| *e)
    }

    /// etcd's id of member `harness`, reading the member list through `via` if need be.
    async fn etcd_id_via(&self, harness: u64, via: &Member) -> Result<u64, ClusterError> {
        if let Some(e) = self.etcd_id(harness) {
            return Ok(e);
        }
        self.refresh_members(via).await?;
        self.etcd_id(harness).ok_or_else(|| ClusterError::Node {
            id: harness,
            message: "not in etcd's member list (its client URL must be the cluster file's \
                      client_addr)"
                .into(),
        })
    }
}

impl TargetApi for EtcdApi {
    fn name(&self) -> &'static str {
        "etcd"
    }

    fn know(&self, member: &Member) {
        self.by_addr
            .write()
            .insert(member.client_addr.clone(), member.id);
    }

    fn status<'a>(&'a self, m: &'a Member) -> BoxFuture<'a, Result<NodeStatus, ClusterError>> {
        Box::pin(async move {
            let mut c = self
                .client(&m.client_addr)
                .await
                .map_err(node_err(m.id, "client"))?;
            let st = within(STATUS_TIMEOUT, c.status())
                .await
                .map_err(node_err(m.id, "Status"))?;
            let own = st.header().map_or(0, |h| h.member_id());
            self.members.write().by_etcd.insert(own, m.id);
            let stale = {
                let members = self.members.read();
                let leader_known = st.leader() == 0 || members.by_etcd.contains_key(&st.leader());
                !leader_known || members.read_at.is_none_or(|t| t.elapsed() > MEMBERS_TTL)
            };
            if stale {
                self.refresh_members(m).await?;
            }
            let members = self.members.read();
            let leader_id = members.by_etcd.get(&st.leader()).copied().unwrap_or(0);
            Ok(NodeStatus {
                id: m.id,
                role: if st.leader() != 0 && st.leader() == own {
                    Role::Leader
                } else {
                    Role::Follower
                },
                leader_id,
                term: st.raft_term(),
                commit_index: st.raft_index(),
                applied_index: st.raft_applied_index(),
                last_index: st.raft_index(),
                voters: members.voters.clone(),
                rss_bytes: None,
                disk_bytes: u64::try_from(st.db_size()).ok(),
                raftbench: None,
            })
        })
    }

    fn start_empty_args(&self) -> Option<Vec<String>> {
        None
    }

    fn add_member<'a>(
        &'a self,
        leader: &'a Member,
        new: &'a Member,
    ) -> BoxFuture<'a, Result<Vec<String>, ClusterError>> {
        Box::pin(async move {
            self.know(new);
            let c = self
                .client(&leader.client_addr)
                .await
                .map_err(node_err(leader.id, "client"))?;
            let url = format!("http://{}", new.peer_addr);
            let resp = until_healthy(|| {
                let mut c = c.clone();
                let url = url.clone();
                async move { c.member_add([url.as_str()], None).await }
            })
            .await
            .map_err(node_err(leader.id, "MemberAdd"))?;
            let added = resp.member().map(|m| m.id());
            if let Some(added) = added {
                self.members.write().by_etcd.insert(added, new.id);
            }
            // The new member must be told the membership it joins, itself included (etcd
            // checks that it matches the cluster's). As etcdctl does, the new member is
            // found by its id; another member that has not started yet has no name in
            // the list, and is given the one it will start with.
            let by_etcd = self.members.read().by_etcd.clone();
            let initial = resp
                .member_list()
                .iter()
                .flat_map(|m| {
                    let name = if Some(m.id()) == added {
                        launch::member_name(new.id)
                    } else if m.name().is_empty() {
                        by_etcd
                            .get(&m.id())
                            .map_or_else(String::new, |ours| launch::member_name(*ours))
                    } else {
                        m.name().to_string()
                    };
                    m.peer_urls()
                        .iter()
                        .map(move |u| format!("{name}={u}"))
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
                .join(",");
            self.members.write().read_at = None;
            Ok(vec![
                "--initial-cluster".into(),
                initial,
                "--initial-cluster-state".into(),
                "existing".into(),
            ])
        })
    }

    fn remove_member<'a>(
        &'a self,
        leader: &'a Member,
        id: u64,
    ) -> BoxFuture<'a, Result<(), ClusterError>> {
        Box::pin(async move {
            let etcd = self.etcd_id_via(id, leader).await?;
            let c = self
                .client(&leader.client_addr)
                .await
                .map_err(node_err(leader.id, "client"))?;
            until_healthy(|| {
                let mut c = c.clone();
                async move { c.member_remove(etcd).await }
            })
            .await
            .map_err(node_err(leader.id, "MemberRemove"))?;
            self.members.write().read_at = None;
            Ok(())
        })
    }

    fn snapshot<'a>(&'a self, m: &'a Member) -> BoxFuture<'a, Result<SnapshotTaken, ClusterError>> {
        Box::pin(async move {
            let mut c = self
                .client(&m.client_addr)
                .await
                .map_err(node_err(m.id, "client"))?;
            let index = within(STATUS_TIMEOUT, c.status())
                .await
                .map_err(node_err(m.id, "Status"))?
                .raft_index();
            // Maintenance.Snapshot streams the member's whole db; it is read to the end
            // (and dropped: the harness measures it, it does not keep it).
            let started = Instant::now();
            let read = async {
                let mut stream = c.snapshot().await?;
                let mut bytes = 0u64;
                while let Some(chunk) = stream.message().await? {
                    bytes += chunk.blob().len() as u64;
                }
                Ok::<u64, etcd_client::Error>(bytes)
            };
            let bytes = within(Duration::from_secs(600), read)
                .await
                .map_err(node_err(m.id, "Snapshot"))?;
            Ok(SnapshotTaken {
                index,
                bytes,
                duration_ms: started.elapsed().as_secs_f64() * 1e3,
            })
        })
    }

    fn transfer_leader<'a>(
        &'a self,
        leader: &'a Member,
        to: &'a Member,
    ) -> BoxFuture<'a, Result<(), ClusterError>> {
        Box::pin(async move {
            let target = self.etcd_id_via(to.id, leader).await?;
            let mut c = self
                .client(&leader.client_addr)
                .await
                .map_err(node_err(leader.id, "client"))?;
            within(ADMIN_TIMEOUT, c.move_leader(target))
                .await
                .map_err(node_err(leader.id, "MoveLeader"))?;
            Ok(())
        })
    }

    fn partition<'a>(
        &'a self,
        m: &'a Member,
        _others: &'a [u64],
        _direction: Direction,
    ) -> BoxFuture<'a, Result<(), ClusterError>> {
        Box::pin(async move {
            Err(ClusterError::Node {
                id: m.id,
                message: "etcd members cannot be partitioned by raftbench".into(),
            })
        })
    }

    fn degrade<'a>(
        &'a self,
        m: &'a Member,
        _link: &'a LinkRequest,
    ) -> BoxFuture<'a, Result<(), ClusterError>> {
        Box::pin(async move {
            Err(ClusterError::Node {
                id: m.id,
                message: "etcd members' links cannot be degraded by raftbench".into(),
            })
        })
    }

    fn heal<'a>(&'a self, m: &'a Member) -> BoxFuture<'a, Result<(), ClusterError>> {
        self.partition(m, &[], Direction::Both)
    }

    fn metrics_text<'a>(&'a self, m: &'a Member) -> BoxFuture<'a, Result<String, ClusterError>> {
        Box::pin(super::server::fetch_metrics(&self.http, m))
    }

    fn server_counters<'a>(
        &'a self,
        m: &'a Member,
    ) -> BoxFuture<'a, Result<ServerCounters, ClusterError>> {
        Box::pin(async move {
            let text = super::server::fetch_metrics(&self.http, m).await?;
            metrics::parse(&text).map_err(|message| ClusterError::Node { id: m.id, message })
        })
    }
}
