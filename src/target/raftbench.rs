//! raftbench's own nodes as a target: their HTTP API (`/status`, `/members`, `/admin/*`).

use std::time::Duration;

use futures::future::BoxFuture;

use super::server::ServerCounters;
use super::{NodeStatus, SnapshotTaken, TargetApi};
use crate::cluster::{ClusterError, Member, fetch_status};
use crate::wire::{Direction, LinkRequest, PartitionRequest};

/// A node's histogram of synced persists in `/metrics` (the log append and its fsync timed
/// together): its "WAL fsync".
pub const PERSIST_SECONDS: &str = "raftbench_persist_seconds";

/// Admin calls on a node that does not answer must not hang the run.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The control plane of raftbench nodes. `http` carries the cluster secret as its bearer
/// token (admin calls on non-loopback binds need it).
pub struct RaftbenchApi {
    http: reqwest::Client,
}

impl RaftbenchApi {
    pub fn new(http: reqwest::Client) -> Self {
        RaftbenchApi { http }
    }

    fn url(m: &Member, path: &str) -> String {
        format!("http://{}{path}", m.client_addr)
    }

    /// Send an admin call to `m` and return its JSON answer, or an error naming the call.
    async fn admin(
        &self,
        m: &Member,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
        timeout: Duration,
    ) -> Result<serde_json::Value, ClusterError> {
        let mut req = self
            .http
            .request(method.clone(), Self::url(m, path))
            .timeout(timeout);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let err = |message: String| ClusterError::Node { id: m.id, message };
        let resp = req
            .send()
            .await
            .map_err(|e| err(format!("{method} {path}: {e}")))?;
        let status = resp.status();
        if status.is_success() {
            // Some calls answer 204 with no body.
            let text = resp.text().await.unwrap_or_default();
            Ok(serde_json::from_str(&text).unwrap_or_default())
        } else {
            let text = resp.text().await.unwrap_or_default();
            Err(err(format!("{method} {path}: HTTP {status}: {text}")))
        }
    }
}

impl TargetApi for RaftbenchApi {
    fn name(&self) -> &'static str {
        "raftbench"
    }

    fn status<'a>(&'a self, m: &'a Member) -> BoxFuture<'a, Result<NodeStatus, ClusterError>> {
        Box::pin(async move {
            let s = fetch_status(&self.http, &Self::url(m, ""), m.id).await?;
            Ok(NodeStatus {
                id: s.id,
                role: s.raft.role,
                leader_id: s.raft.leader_id,
                term: s.raft.term,
                commit_index: s.raft.commit_index,
                applied_index: s.raft.applied_index,
                last_index: s.raft.last_index,
                voters: s.raft.voters.clone(),
                rss_bytes: Some(s.rss_bytes),
                disk_bytes: Some(s.storage.disk_bytes),
                raftbench: Some(s),
            })
        })
    }

    fn start_empty_args(&self) -> Option<Vec<String>> {
        Some(vec!["--join".into()])
    }

    fn add_member<'a>(
        &'a self,
        leader: &'a Member,
        new: &'a Member,
    ) -> BoxFuture<'a, Result<Vec<String>, ClusterError>> {
        Box::pin(async move {
            let body = serde_json::json!({
                "peer_addr": new.peer_addr,
                "client_addr": new.client_addr,
            });
            let path = format!("/members/{}", new.id);
            self.admin(
                leader,
                reqwest::Method::POST,
                &path,
                Some(body),
                Duration::from_secs(15),
            )
            .await
            .map(|_| Vec::new())
        })
    }

    fn remove_member<'a>(
        &'a self,
        leader: &'a Member,
        id: u64,
    ) -> BoxFuture<'a, Result<(), ClusterError>> {
        Box::pin(async move {
            let path = format!("/members/{id}");
            self.admin(
                leader,
                reqwest::Method::DELETE,
                &path,
                None,
                Duration::from_secs(15),
            )
            .await
            .map(drop)
        })
    }

    fn snapshot<'a>(&'a self, m: &'a Member) -> BoxFuture<'a, Result<SnapshotTaken, ClusterError>> {
        Box::pin(async move {
            // A snapshot of a large state takes a while: the node answers when it is done.
            let v = self
                .admin(
                    m,
                    reqwest::Method::POST,
                    "/admin/snapshot",
                    None,
                    Duration::from_secs(600),
                )
                .await?;
            Ok(SnapshotTaken {
                index: v["index"].as_u64().unwrap_or(0),
                bytes: v["bytes"].as_u64().unwrap_or(0),
                duration_ms: v["duration_ms"].as_f64().unwrap_or(0.0),
            })
        })
    }

    fn transfer_leader<'a>(
        &'a self,
        leader: &'a Member,
        to: &'a Member,
    ) -> BoxFuture<'a, Result<(), ClusterError>> {
        Box::pin(async move {
            let path = format!("/admin/transfer-leader/{}", to.id);
            // The node answers once raft has started the transfer.
            self.admin(
                leader,
                reqwest::Method::POST,
                &path,
                None,
                Duration::from_secs(15),
            )
            .await
            .map(drop)
        })
    }

    fn partition<'a>(
        &'a self,
        m: &'a Member,
        others: &'a [u64],
        direction: Direction,
    ) -> BoxFuture<'a, Result<(), ClusterError>> {
        Box::pin(async move {
            let body = serde_json::to_value(PartitionRequest {
                isolate_from: others.to_vec(),
                direction,
            })
            .unwrap_or_default();
            self.admin(
                m,
                reqwest::Method::POST,
                "/admin/partition",
                Some(body),
                ADMIN_TIMEOUT,
            )
            .await
            .map(drop)
        })
    }

    fn degrade<'a>(
        &'a self,
        m: &'a Member,
        link: &'a LinkRequest,
    ) -> BoxFuture<'a, Result<(), ClusterError>> {
        Box::pin(async move {
            let body = serde_json::to_value(link).unwrap_or_default();
            self.admin(
                m,
                reqwest::Method::POST,
                "/admin/link",
                Some(body),
                ADMIN_TIMEOUT,
            )
            .await
            .map(drop)
        })
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
            super::prom::server_counters(&text, "raftbench /metrics", PERSIST_SECONDS, None)
                .map_err(|message| ClusterError::Node { id: m.id, message })
        })
    }

    fn heal<'a>(&'a self, m: &'a Member) -> BoxFuture<'a, Result<(), ClusterError>> {
        Box::pin(async move {
            self.admin(m, reqwest::Method::POST, "/admin/heal", None, ADMIN_TIMEOUT)
                .await
                .map(drop)
        })
    }
}
