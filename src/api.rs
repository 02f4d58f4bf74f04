//! The HTTP API of a node.
//!
//! ```text
//! PUT    /kv/{key}          body = value; 204 once applied
//! GET    /kv/{key}          ?consistency=linearizable (default) | local; 200 + value | 404
//! DELETE /kv/{key}          204 once applied
//! GET    /status            JSON
//! POST   /members/{id}      {"peer_addr": "...", "client_addr": "..."}; DELETE /members/{id}
//! POST   /admin/snapshot    snapshot + compact now; JSON with duration and size
//! POST   /admin/transfer-leader/{id}
//! POST   /admin/partition   {"isolate_from": [ids]}; POST /admin/heal
//! ```
//! Keys are one path segment (percent-encode `/`), at most [`MAX_KEY_BYTES`]; values at
//! most [`MAX_VALUE_BYTES`]. Errors are JSON `{"code": ..., "message": ...}` with a stable
//! `code`. A write sent to a follower gets `421 Misdirected Request` with `leader_id` and
//! `leader_addr` (the leader's client address) so the client can follow it.

use std::sync::mpsc::Sender;
use std::time::Duration;

use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use raft::eraftpb::{ConfChange, ConfChangeType};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::oneshot;

use crate::kv::KvCommand;
use crate::node::config::RaftSettings;
use crate::node::status::{Role, StatusCell, StatusReport, self_rss_bytes};
use crate::node::{Input, MEMBER_KEY_PREFIX, MemberAddrs, Members, NodeError};
use crate::storage::{BackendConfig, KvReader, OpenReport};
use crate::transport::Transport;

/// Longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Largest value accepted, in bytes.
pub const MAX_VALUE_BYTES: usize = 4 << 20;
/// How long a write or read may wait for raft before the client gets a timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub id: u64,
    pub tx: Sender<Input>,
    pub reader: KvReader,
    pub status: StatusCell,
    pub members: Members,
    pub transport: std::sync::Arc<Transport>,
    pub backend: BackendConfig,
    pub startup: OpenReport,
    pub raft: RaftSettings,
}

/// Serve the API on `listener` until the runtime stops.
pub async fn serve(listener: tokio::net::TcpListener, state: ApiState) {
    let app = Router::new()
        .route("/kv/{key}", get(get_kv).put(put_kv).delete(delete_kv))
        .route("/status", get(status))
        .route("/members/{id}", post(add_member).delete(remove_member))
        .route("/admin/snapshot", post(admin_snapshot))
        .route("/admin/transfer-leader/{id}", post(transfer_leader))
        .route("/admin/partition", post(partition))
        .route("/admin/heal", post(heal))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        })
        .layer(DefaultBodyLimit::max(MAX_VALUE_BYTES))
        .with_state(state);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!("HTTP server stopped: {e}");
    }
}

/// A JSON error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: serde_json::Value,
}

impl ApiError {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            body: json!({ "code": code, "message": message.into() }),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

impl ApiState {
    fn not_leader(&self, leader: u64) -> ApiError {
        if leader == 0 {
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_leader",
                "no leader is known right now; retry shortly",
            );
        }
        let addr = self.members.get(leader).map(|a| a.client_addr);
        ApiError {
            status: StatusCode::MISDIRECTED_REQUEST,
            body: json!({
                "code": "not_leader",
                "message": format!("node {} is not the leader; send writes to node {leader}", self.id),
                "leader_id": leader,
                "leader_addr": addr,
            }),
        }
    }

    fn node_error(&self, e: NodeError) -> ApiError {
        match e {
            NodeError::NotLeader { leader } => self.not_leader(leader),
            NodeError::Dropped(m) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "proposal_dropped", m)
            }
            NodeError::Indeterminate(m) => {
                ApiError::new(StatusCode::GATEWAY_TIMEOUT, "indeterminate", m)
            }
            NodeError::Rejected(m) => ApiError::new(StatusCode::CONFLICT, "rejected", m),
            NodeError::ShuttingDown => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the node is shutting down",
            ),
        }
    }

    /// Send `make(reply)` to the raft loop and wait for the answer.
    async fn ask<T>(
        &self,
        make: impl FnOnce(crate::node::Reply<T>) -> Input,
        timeout: Duration,
    ) -> Result<T, ApiError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .map_err(|_| self.node_error(NodeError::ShuttingDown))?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => r.map_err(|e| self.node_error(e)),
            // The loop accepted the request and then went away: a write may still commit.
            Ok(Err(_)) => Err(self.node_error(NodeError::Indeterminate(
                "the node stopped before answering".into(),
            ))),
            Err(_) => Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                format!("no answer within {timeout:?}; the outcome is unknown"),
            )),
        }
    }

    /// Refuse early on a node that knows it is not the leader.
    fn require_leader(&self) -> Result<(), ApiError> {
        let s = self.status.raft();
        if s.role == Role::Leader {
            Ok(())
        } else {
            Err(self.not_leader(s.leader_id))
        }
    }

    /// Wait until a linearizable read may be served locally; retries ReadIndex rounds that
    /// raft dropped (no leader yet, or the leader has not committed in its term). Each
    /// round waits twice as long as the last (up to 2 s): a round that is merely slow — a
    /// long fsync holding up the raft loop — must eventually be given time to finish.
    async fn read_barrier(&self) -> Result<(), ApiError> {
        let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
        let mut attempt = Duration::from_millis((self.raft.tick_ms * 4).max(20));
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(ApiError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "timeout",
                    "could not confirm leadership for a linearizable read; try consistency=local or retry",
                ));
            }
            match self
                .ask(|reply| Input::ReadIndex { reply }, attempt.min(left))
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if e.status == StatusCode::GATEWAY_TIMEOUT => {
                    attempt = (attempt * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

fn check_key(key: Result<Path<String>, PathRejection>) -> Result<Vec<u8>, ApiError> {
    let Path(key) = key.map_err(|e| ApiError::bad_request(format!("bad key: {e}")))?;
    let key = key.into_bytes();
    if key.is_empty() {
        return Err(ApiError::bad_request("empty key"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "key_too_large",
            format!("key is {} bytes; the limit is {MAX_KEY_BYTES}", key.len()),
        ));
    }
    if key.starts_with(MEMBER_KEY_PREFIX) || key.first() == Some(&0) {
        return Err(ApiError::bad_request(
            "keys starting with a NUL byte are reserved for raftbench",
        ));
    }
    Ok(key)
}

async fn put_kv(
    State(s): State<ApiState>,
    key: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let key = check_key(key)?;
    let value = body.map_err(|e| {
        ApiError::new(
            e.status(),
            "bad_body",
            format!("{e} (values are limited to {MAX_VALUE_BYTES} bytes)"),
        )
    })?;
    s.require_leader()?;
    let cmd = KvCommand::Put {
        key,
        value: value.to_vec(),
    };
    s.ask(|reply| Input::Propose { cmd, reply }, REQUEST_TIMEOUT)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_kv(
    State(s): State<ApiState>,
    key: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let key = check_key(key)?;
    s.require_leader()?;
    let cmd = KvCommand::Delete { key };
    s.ask(|reply| Input::Propose { cmd, reply }, REQUEST_TIMEOUT)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
struct ReadParams {
    consistency: Option<String>,
}

async fn get_kv(
    State(s): State<ApiState>,
    key: Result<Path<String>, PathRejection>,
    Query(params): Query<ReadParams>,
) -> Result<Response, ApiError> {
    let key = check_key(key)?;
    match params.consistency.as_deref() {
        None | Some("linearizable") => s.read_barrier().await?,
        Some("local") => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unknown consistency {other:?}; expected linearizable or local"
            )));
        }
    }
    match s.reader.get(&key) {
        Ok(Some(v)) => Ok((StatusCode::OK, v).into_response()),
        Ok(None) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "key_not_found",
            "no such key",
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "storage_error",
            e.to_string(),
        )),
    }
}

async fn status(State(s): State<ApiState>) -> Json<StatusReport> {
    let raft = s.status.raft();
    let leader_addr = (raft.leader_id != 0)
        .then(|| s.members.get(raft.leader_id).map(|a| a.client_addr))
        .flatten();
    Json(StatusReport {
        id: s.id,
        leader_addr,
        raft,
        backend: s.backend.clone(),
        storage: s.status.storage(),
        rss_bytes: self_rss_bytes(),
        uptime_ms: s.status.started.elapsed().as_millis() as u64,
        startup: s.startup.clone(),
        dropped_messages: s.transport.dropped(),
    })
}

fn member_id(id: Result<Path<u64>, PathRejection>) -> Result<u64, ApiError> {
    let Path(id) = id.map_err(|e| ApiError::bad_request(format!("bad member id: {e}")))?;
    if id == 0 {
        return Err(ApiError::bad_request("member id must be at least 1"));
    }
    Ok(id)
}

async fn add_member(
    State(s): State<ApiState>,
    id: Result<Path<u64>, PathRejection>,
    body: Result<Json<MemberAddrs>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = member_id(id)?;
    let Json(addrs) = body.map_err(|e| {
        ApiError::bad_request(format!(
            "{e}; expected {{\"peer_addr\": \"host:port\", \"client_addr\": \"host:port\"}}"
        ))
    })?;
    for (what, a) in [
        ("peer_addr", &addrs.peer_addr),
        ("client_addr", &addrs.client_addr),
    ] {
        if crate::node::resolve(a).is_err() {
            return Err(ApiError::bad_request(format!(
                "{what} {a:?} is not a host:port"
            )));
        }
    }
    s.require_leader()?;
    let mut cc = ConfChange::default();
    cc.set_change_type(ConfChangeType::AddNode);
    cc.node_id = id;
    s.ask(
        |reply| Input::ConfChange {
            cc,
            addrs: Some(addrs),
            reply,
        },
        REQUEST_TIMEOUT,
    )
    .await?;
    Ok(Json(
        json!({ "added": id, "voters": s.status.raft().voters }),
    ))
}

async fn remove_member(
    State(s): State<ApiState>,
    id: Result<Path<u64>, PathRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = member_id(id)?;
    s.require_leader()?;
    if !s.status.raft().voters.contains(&id) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_member",
            format!("node {id} is not a member"),
        ));
    }
    let mut cc = ConfChange::default();
    cc.set_change_type(ConfChangeType::RemoveNode);
    cc.node_id = id;
    s.ask(
        |reply| Input::ConfChange {
            cc,
            addrs: None,
            reply,
        },
        REQUEST_TIMEOUT,
    )
    .await?;
    Ok(Json(
        json!({ "removed": id, "voters": s.status.raft().voters }),
    ))
}

async fn admin_snapshot(State(s): State<ApiState>) -> Result<Response, ApiError> {
    let report = s
        .ask(|reply| Input::Snapshot { reply }, Duration::from_secs(600))
        .await?;
    Ok(Json(report).into_response())
}

async fn transfer_leader(
    State(s): State<ApiState>,
    id: Result<Path<u64>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let to = member_id(id)?;
    s.ask(|reply| Input::TransferLeader { to, reply }, REQUEST_TIMEOUT)
        .await?;
    Ok(StatusCode::ACCEPTED)
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct PartitionRequest {
    isolate_from: Vec<u64>,
}

async fn partition(
    State(s): State<ApiState>,
    body: Result<Json<PartitionRequest>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(req) = body.map_err(|e| {
        ApiError::bad_request(format!("{e}; expected {{\"isolate_from\": [node ids]}}"))
    })?;
    if req.isolate_from.contains(&s.id) {
        return Err(ApiError::bad_request(
            "a node cannot be isolated from itself",
        ));
    }
    s.transport.isolate(&req.isolate_from);
    Ok(Json(json!({ "isolated_from": s.transport.isolated() })))
}

async fn heal(State(s): State<ApiState>) -> Json<serde_json::Value> {
    s.transport.heal();
    Json(json!({ "isolated_from": [] }))
}
