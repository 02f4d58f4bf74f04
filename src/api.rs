//! The HTTP API of a node.
//!
//! ```text
//! PUT    /kv/{key}          body = value; 204 once applied
//! GET    /kv/{key}          ?consistency=linearizable (default) | local; 200 + value | 404
//! DELETE /kv/{key}          204 once applied
//! GET    /status            JSON
//! GET    /metrics           OpenMetrics text (Prometheus): see `node::metrics`
//! POST   /members/{id}      {"peer_addr": "...", "client_addr": "..."}; DELETE /members/{id}
//! POST   /admin/snapshot    snapshot + compact now; JSON with duration and size
//! POST   /admin/transfer-leader/{id}
//! POST   /admin/partition   {"isolate_from": [ids], "direction": "both"|"in"|"out"}
//! POST   /admin/link        {"peers": [ids], "delay_ms", "jitter_ms", "loss"}: degrade
//!                           the node's outbound links; POST /admin/heal undoes both
//! ```
//! A read's response says how it was served: [`CONSISTENCY_HEADER`] and
//! [`APPLIED_INDEX_HEADER`] (the node had applied at least that index when it read).
//!
//! The membership and admin endpoints are open on loopback binds. On any other bind (or
//! with `--admin-auth always`) they require `Authorization: Bearer <cluster secret>`, and
//! answer `401 unauthorized` without it ([`NodeHandle::admit_admin`]); so does a request
//! from a browser page (an `Origin` header) on loopback, which any web site could make.
//! Keys are one path segment (percent-encode `/`), at most [`MAX_KEY_BYTES`]; values at
//! most [`MAX_VALUE_BYTES`]. Errors are JSON [`ErrorBody`]s with a stable
//! [`ErrorCode`]. A write sent to a follower gets `421 Misdirected Request` with `leader_id` and
//! `leader_addr` (the leader's client address) so the client can follow it.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use parking_lot::RwLock;
use raft::eraftpb::{ConfChange, ConfChangeType};
use serde::Deserialize;
use serde_json::json;

use crate::kv::KvCommand;
use crate::node::{MEMBER_KEY_PREFIX, NodeError, NodeHandle};
use crate::wire::api::{APPLIED_INDEX_HEADER, CONSISTENCY_HEADER, RESERVED_KEY_BYTE};
use crate::wire::{
    ErrorBody, ErrorCode, LinkRequest, MAX_KEY_BYTES, MAX_VALUE_BYTES, MemberAddrs,
    PartitionRequest, Role, StatusReport,
};

/// How long a write or read may wait for raft before the client gets a timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Serve the API of `node` on `listener` until `shutdown` completes: then let go of the
/// node (later requests on open connections get `503 shutting_down`), stop accepting, let
/// requests in flight finish and close idle connections. A connection that lingers past
/// that (a client that never finishes its request) holds nothing of the node.
pub async fn serve(
    listener: tokio::net::TcpListener,
    node: NodeHandle,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let shared = Shared(Arc::new(RwLock::new(Some(node))));
    let release = shared.clone();
    let stop = async move {
        shutdown.await;
        release.0.write().take();
    };
    let app = Router::new()
        .route("/kv/{key}", get(get_kv).put(put_kv).delete(delete_kv))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/members/{id}", post(add_member).delete(remove_member))
        .route("/admin/snapshot", post(admin_snapshot))
        .route("/admin/transfer-leader/{id}", post(transfer_leader))
        .route("/admin/partition", post(partition))
        .route("/admin/heal", post(heal))
        .route("/admin/link", post(link))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                "no such endpoint",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_VALUE_BYTES))
        .with_state(shared);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::error!("HTTP server stopped: {e}");
    }
}

/// The router's state: the node's handle, until [`serve`] lets go of it.
#[derive(Clone)]
struct Shared(Arc<RwLock<Option<NodeHandle>>>);

/// Extractor of the node's handle; `503 shutting_down` once the API has let go of it.
struct Node(NodeHandle);

impl FromRequestParts<Shared> for Node {
    type Rejection = ApiError;

    async fn from_request_parts(_: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        state.0.read().clone().map(Node).ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::ShuttingDown,
                "the node is shutting down",
            )
        })
    }
}

/// Extractor of the node's handle for admin and membership endpoints: refuses, with
/// `401 unauthorized`, a request without the bearer token this node requires.
struct Admin(NodeHandle);

impl FromRequestParts<Shared> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        let Node(s) = Node::from_request_parts(parts, state).await?;
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        let origin = parts.headers.contains_key(axum::http::header::ORIGIN);
        s.admit_admin(header, origin)
            .map_err(|why| ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, why))?;
        Ok(Admin(s))
    }
}

/// A JSON error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

impl ApiError {
    fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            body: ErrorBody::new(code, message),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message)
    }

    fn timeout(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::GATEWAY_TIMEOUT, ErrorCode::Timeout, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

fn not_leader(s: &NodeHandle, leader: u64) -> ApiError {
    if leader == 0 {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::NoLeader,
            "no leader is known right now; retry shortly",
        );
    }
    ApiError {
        status: StatusCode::MISDIRECTED_REQUEST,
        body: ErrorBody {
            code: ErrorCode::NotLeader,
            message: format!(
                "node {} is not the leader; send writes to node {leader}",
                s.id()
            ),
            leader_id: Some(leader),
            leader_addr: s.member(leader).map(|a| a.client_addr),
        },
    }
}

fn node_error(s: &NodeHandle, e: NodeError) -> ApiError {
    match e {
        NodeError::NotLeader { leader } => not_leader(s, leader),
        NodeError::Dropped(m) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ProposalDropped,
            m,
        ),
        NodeError::Indeterminate(m) => {
            ApiError::new(StatusCode::GATEWAY_TIMEOUT, ErrorCode::Indeterminate, m)
        }
        NodeError::Rejected(m) => ApiError::new(StatusCode::CONFLICT, ErrorCode::Rejected, m),
        NodeError::ShuttingDown => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ShuttingDown,
            "the node is shutting down",
        ),
    }
}

/// Turn the answer of a request to the raft loop into the API's error vocabulary.
fn answered<T>(
    s: &NodeHandle,
    r: Result<T, Option<NodeError>>,
    timeout: Duration,
) -> Result<T, ApiError> {
    r.map_err(|e| match e {
        Some(e) => node_error(s, e),
        None => ApiError::timeout(format!(
            "no answer within {timeout:?}; the outcome is unknown"
        )),
    })
}

/// Refuse early on a node that knows it is not the leader.
fn require_leader(s: &NodeHandle) -> Result<(), ApiError> {
    let r = s.raft_status();
    if r.role == Role::Leader {
        Ok(())
    } else {
        Err(not_leader(s, r.leader_id))
    }
}

/// Wait until a linearizable read may be served locally; retries ReadIndex rounds that
/// raft dropped (no leader yet, or the leader has not committed in its term). Each
/// round waits twice as long as the last (up to 2 s): a round that is merely slow — a
/// long fsync holding up the raft loop — must eventually be given time to finish.
async fn read_barrier(s: &NodeHandle) -> Result<(), ApiError> {
    let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
    let mut attempt = Duration::from_millis((s.raft_settings().tick_ms * 4).max(20));
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Err(ApiError::timeout(
                "could not confirm leadership for a linearizable read; try consistency=local or retry",
            ));
        }
        match s.read_index(attempt.min(left)).await {
            Ok(_) => return Ok(()),
            // A round that timed out, or whose answer was lost, is retried; a loop that
            // has stopped refuses the next round (503, shutting down).
            Err(None) | Err(Some(NodeError::Indeterminate(_))) => {
                attempt = (attempt * 2).min(Duration::from_secs(2))
            }
            Err(Some(e)) => return Err(node_error(s, e)),
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
            ErrorCode::KeyTooLarge,
            format!("key is {} bytes; the limit is {MAX_KEY_BYTES}", key.len()),
        ));
    }
    if key.starts_with(MEMBER_KEY_PREFIX) || key.first() == Some(&RESERVED_KEY_BYTE) {
        return Err(ApiError::bad_request(
            "keys starting with a NUL byte are reserved for raftbench",
        ));
    }
    Ok(key)
}

async fn write(s: &NodeHandle, cmd: KvCommand) -> Result<StatusCode, ApiError> {
    require_leader(s)?;
    answered(s, s.propose(cmd, REQUEST_TIMEOUT).await, REQUEST_TIMEOUT)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn put_kv(
    Node(s): Node,
    key: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let key = check_key(key)?;
    let value = body.map_err(|e| {
        ApiError::new(
            e.status(),
            ErrorCode::BadBody,
            format!("{e} (values are limited to {MAX_VALUE_BYTES} bytes)"),
        )
    })?;
    let cmd = KvCommand::Put {
        key,
        value: value.to_vec(),
    };
    write(&s, cmd).await
}

async fn delete_kv(
    Node(s): Node,
    key: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let key = check_key(key)?;
    write(&s, KvCommand::Delete { key }).await
}

#[derive(Debug, Deserialize)]
struct ReadParams {
    consistency: Option<String>,
}

async fn get_kv(
    Node(s): Node,
    key: Result<Path<String>, PathRejection>,
    Query(params): Query<ReadParams>,
) -> Result<Response, ApiError> {
    let key = check_key(key)?;
    let consistency = match params.consistency.as_deref() {
        None | Some("linearizable") => {
            read_barrier(&s).await?;
            "linearizable"
        }
        Some("local") => "local",
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unknown consistency {other:?}; expected linearizable or local"
            )));
        }
    };
    // Read before the get: the state read has applied at least this much.
    let applied = s.raft_status().applied_index;
    let labelled = |mut r: Response| {
        let h = r.headers_mut();
        h.insert(
            CONSISTENCY_HEADER,
            axum::http::HeaderValue::from_static(consistency),
        );
        h.insert(APPLIED_INDEX_HEADER, axum::http::HeaderValue::from(applied));
        r
    };
    match s.get(&key) {
        Ok(Some(v)) => Ok(labelled((StatusCode::OK, v).into_response())),
        Ok(None) => Ok(labelled(
            ApiError::new(StatusCode::NOT_FOUND, ErrorCode::KeyNotFound, "no such key")
                .into_response(),
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::StorageError,
            e.to_string(),
        )),
    }
}

async fn status(Node(s): Node) -> Json<StatusReport> {
    Json(s.status_report())
}

/// `GET /metrics`: OpenMetrics text for Prometheus (see `node::metrics`); open like
/// `/status`, since it reveals no data, only figures.
async fn metrics(Node(s): Node) -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            crate::node::metrics::CONTENT_TYPE,
        )],
        s.metrics_text(),
    )
}

fn member_id(id: Result<Path<u64>, PathRejection>) -> Result<u64, ApiError> {
    let Path(id) = id.map_err(|e| ApiError::bad_request(format!("bad member id: {e}")))?;
    if id == 0 {
        return Err(ApiError::bad_request("member id must be at least 1"));
    }
    Ok(id)
}

async fn add_member(
    Admin(s): Admin,
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
    require_leader(&s)?;
    let mut cc = ConfChange::default();
    cc.set_change_type(ConfChangeType::AddNode);
    cc.node_id = id;
    let r = s.conf_change(cc, Some(addrs), REQUEST_TIMEOUT).await;
    answered(&s, r, REQUEST_TIMEOUT)?;
    Ok(Json(
        json!({ "added": id, "voters": s.raft_status().voters }),
    ))
}

async fn remove_member(
    Admin(s): Admin,
    id: Result<Path<u64>, PathRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = member_id(id)?;
    require_leader(&s)?;
    if !s.raft_status().voters.contains(&id) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::UnknownMember,
            format!("node {id} is not a member"),
        ));
    }
    let mut cc = ConfChange::default();
    cc.set_change_type(ConfChangeType::RemoveNode);
    cc.node_id = id;
    let r = s.conf_change(cc, None, REQUEST_TIMEOUT).await;
    answered(&s, r, REQUEST_TIMEOUT)?;
    Ok(Json(
        json!({ "removed": id, "voters": s.raft_status().voters }),
    ))
}

async fn admin_snapshot(Admin(s): Admin) -> Result<Response, ApiError> {
    const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(600);
    let report = answered(&s, s.snapshot(SNAPSHOT_TIMEOUT).await, SNAPSHOT_TIMEOUT)?;
    Ok(Json(report).into_response())
}

async fn transfer_leader(
    Admin(s): Admin,
    id: Result<Path<u64>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let to = member_id(id)?;
    let r = s.transfer_leader(to, REQUEST_TIMEOUT).await;
    answered(&s, r, REQUEST_TIMEOUT)?;
    Ok(StatusCode::ACCEPTED)
}

async fn partition(
    Admin(s): Admin,
    body: Result<Json<PartitionRequest>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(req) = body.map_err(|e| {
        ApiError::bad_request(format!(
            "{e}; expected {{\"isolate_from\": [node ids], \"direction\": \"both\" | \"in\" | \"out\"}}"
        ))
    })?;
    if req.isolate_from.contains(&s.id()) {
        return Err(ApiError::bad_request(
            "a node cannot be isolated from itself",
        ));
    }
    s.transport().partition(&req.isolate_from, req.direction);
    Ok(Json(link_state(&s)))
}

async fn link(
    Admin(s): Admin,
    body: Result<Json<LinkRequest>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(req) = body.map_err(|e| {
        ApiError::bad_request(format!(
            "{e}; expected {{\"peers\": [node ids], \"delay_ms\": N, \"jitter_ms\": N, \"loss\": 0..1}}"
        ))
    })?;
    req.check().map_err(ApiError::bad_request)?;
    if req.peers.contains(&s.id()) {
        return Err(ApiError::bad_request("a node has no link to itself"));
    }
    s.transport().degrade(&req);
    Ok(Json(link_state(&s)))
}

/// What is injected on the node's links now.
fn link_state(s: &NodeHandle) -> serde_json::Value {
    json!({
        "isolated_from": s.transport().isolated(),
        "links": s.transport().link_faults(),
    })
}

async fn heal(Admin(s): Admin) -> Json<serde_json::Value> {
    s.transport().heal();
    Json(link_state(&s))
}
