//! HTTP client for a raftbench cluster: leader tracking, 421 redirects, retries.
//!
//! Writes go to the node believed to be the leader. A `421` names the real leader and the
//! client follows it; `503 no_leader` (an election) and connection failures are retried on
//! the other endpoints with a short backoff until the request's deadline. Outcomes are
//! classified the way a benchmark must count them: a write that timed out or whose
//! connection broke after sending is **indeterminate**, never "failed".

mod http;

use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use parking_lot::RwLock;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use thiserror::Error;
use tokio::time::Instant;

use crate::wire::{ErrorBody, ErrorCode};
use http::{Pool, Response, SendError};

/// How long one attempt at one node may take before the client stops trusting that node.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// Kept-alive connections per node: one per concurrent request of the largest runs, so
/// that connections are reused rather than redialled.
const MAX_IDLE_PER_NODE: usize = 1024;

/// Characters left as-is in a key's path segment (RFC 3986 unreserved).
const KEY_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// How a request ended, when it did not succeed.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ClientError {
    /// No answer before the deadline: a write may or may not have been applied.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The node answered with an error that retrying will not fix.
    #[error("HTTP {status} {code}: {message}")]
    Rejected {
        status: u16,
        /// The server's code as it sent it (a newer server may send one this build does
        /// not know).
        code: String,
        message: String,
    },
    /// The node said the outcome is unknown (e.g. its log was replaced by a snapshot).
    #[error("indeterminate: {0}")]
    Indeterminate(String),
}

impl ClientError {
    /// Whether a write that ended this way may still have been applied.
    pub fn is_indeterminate(&self) -> bool {
        matches!(
            self,
            ClientError::Timeout(_) | ClientError::Indeterminate(_)
        )
    }
}

/// Read consistency of a GET.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    Linearizable,
    Local,
}

/// A cluster client. Cheap to share behind an `Arc`; safe to use from many tasks.
pub struct Client {
    http: Pool,
    endpoints: Vec<String>,
    leader: RwLock<String>,
    timeout: Duration,
}

enum Attempt<T> {
    Done(T),
    /// Retry at this base URL (a redirect) or at the next endpoint (`None`).
    Retry(Option<String>),
}

impl Client {
    /// A client for the nodes at `endpoints` (`host:port` or `http://host:port`), giving each
    /// request up to `timeout` including retries.
    pub fn new(endpoints: &[String], timeout: Duration) -> Client {
        let endpoints: Vec<String> = endpoints
            .iter()
            .map(|e| {
                if e.starts_with("http://") {
                    e.trim_end_matches('/').to_string()
                } else {
                    format!("http://{e}")
                }
            })
            .collect();
        assert!(
            !endpoints.is_empty(),
            "a client needs at least one endpoint"
        );
        Client {
            http: Pool::new(MAX_IDLE_PER_NODE),
            leader: RwLock::new(endpoints[0].clone()),
            endpoints,
            timeout,
        }
    }

    /// The node currently believed to lead.
    pub fn leader(&self) -> String {
        self.leader.read().clone()
    }

    /// The origin-form path of `key`.
    fn path(key: &str) -> String {
        format!("/kv/{}", utf8_percent_encode(key, KEY_SET))
    }

    /// `host:port` of a base URL.
    fn addr(base: &str) -> &str {
        base.strip_prefix("http://").unwrap_or(base)
    }

    /// Store `value` under `key`; returns once the cluster applied it.
    pub async fn put(&self, key: &str, value: Bytes) -> Result<(), ClientError> {
        self.write(key, Some(value)).await
    }

    /// Delete `key`; returns once the cluster applied it.
    pub async fn delete(&self, key: &str) -> Result<(), ClientError> {
        self.write(key, None).await
    }

    async fn write(&self, key: &str, value: Option<Bytes>) -> Result<(), ClientError> {
        let path = Self::path(key);
        let (method, body) = match value {
            Some(v) => (Method::PUT, v),
            None => (Method::DELETE, Bytes::new()),
        };
        self.retrying(true, true, |base| {
            let (addr, method, body) = (Self::addr(base).to_string(), method.clone(), body.clone());
            let path = &path;
            async move {
                let sent = self.http.send(&addr, method, path, body).await;
                Self::classify(sent, true, |_| ())
            }
        })
        .await
    }

    /// Read `key`; `None` when it does not exist.
    pub async fn get(
        &self,
        key: &str,
        consistency: Consistency,
    ) -> Result<Option<Bytes>, ClientError> {
        let q = match consistency {
            Consistency::Linearizable => "linearizable",
            Consistency::Local => "local",
        };
        let path = format!("{}?consistency={q}", Self::path(key));
        self.retrying(consistency == Consistency::Linearizable, false, |base| {
            let addr = Self::addr(base).to_string();
            let path = &path;
            async move {
                match self.http.send(&addr, Method::GET, path, Bytes::new()).await {
                    Ok(r) if r.status == StatusCode::NOT_FOUND => {
                        let body: Option<ErrorBody> = serde_json::from_slice(&r.body).ok();
                        if body.is_some_and(|b| b.code == ErrorCode::KeyNotFound) {
                            Ok(Attempt::Done(None))
                        } else {
                            Ok(Attempt::Retry(None))
                        }
                    }
                    resp => Self::classify(resp, false, |r| Some(r.body)),
                }
            }
        })
        .await
    }

    /// Turn a response into done / retry / error.
    /// A `write` is only retried when it certainly was not applied: the connection was
    /// refused, or the node answered 503 (no leader, proposal dropped, shutting down).
    /// Anything else after the request may have reached the leader is indeterminate —
    /// retrying it could apply the write twice.
    fn classify<T>(
        resp: Result<Response, SendError>,
        write: bool,
        ok: impl FnOnce(Response) -> T,
    ) -> Result<Attempt<T>, ClientError> {
        let resp = match resp {
            Ok(r) => r,
            Err(SendError::Invalid { what, why }) => {
                return Err(ClientError::Rejected {
                    status: 0,
                    code: "invalid_request".into(),
                    message: format!("cannot send {what}: {why}"),
                });
            }
            Err(e @ SendError::Broken { .. }) if write => {
                return Err(ClientError::Indeterminate(format!(
                    "connection failed after the write was sent: {e}"
                )));
            }
            Err(_) => return Ok(Attempt::Retry(None)),
        };
        let status = resp.status;
        if status.is_success() {
            return Ok(Attempt::Done(ok(resp)));
        }
        // Read as JSON first: the server's code is kept verbatim for the error message,
        // and classified through `ErrorCode`.
        let raw: serde_json::Value = serde_json::from_slice(&resp.body).unwrap_or_default();
        let raw_code = raw
            .get("code")
            .and_then(|c| c.as_str())
            .unwrap_or("unknown")
            .to_string();
        let body: ErrorBody =
            serde_json::from_value(raw).unwrap_or_else(|_| ErrorBody::new(ErrorCode::Unknown, ""));
        match (status, body.code) {
            (StatusCode::MISDIRECTED_REQUEST, _) => Ok(Attempt::Retry(
                body.leader_addr.map(|a| format!("http://{a}")),
            )),
            (StatusCode::SERVICE_UNAVAILABLE, _) => Ok(Attempt::Retry(None)),
            (_, code) if code.is_indeterminate() => Err(ClientError::Indeterminate(body.message)),
            // A gateway timeout with a code this build does not know: still an outcome the
            // client cannot know, never a plain failure.
            (StatusCode::GATEWAY_TIMEOUT, _) => Err(ClientError::Indeterminate(format!(
                "{raw_code}: {}",
                body.message
            ))),
            _ => Err(ClientError::Rejected {
                status: status.as_u16(),
                code: raw_code,
                message: body.message,
            }),
        }
    }

    /// Run `attempt` against the leader, following redirects and failing over until the
    /// deadline. `to_leader` keeps requests on the believed leader.
    async fn retrying<T, F, Fut>(
        &self,
        to_leader: bool,
        write: bool,
        attempt: F,
    ) -> Result<T, ClientError>
    where
        F: Fn(&str) -> Fut,
        Fut: std::future::Future<Output = Result<Attempt<T>, ClientError>>,
    {
        let deadline = Instant::now() + self.timeout;
        let mut base = if to_leader {
            self.leader()
        } else {
            self.endpoints[0].clone()
        };
        let mut next = 0usize;
        let mut backoff = Duration::from_millis(5);
        let mut redirects = 0u32;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ClientError::Timeout(self.timeout));
            }
            let r = tokio::time::timeout(left.min(ATTEMPT_TIMEOUT), attempt(&base)).await;
            match r {
                // A node that does not answer (paused, partitioned, stalled): stop trusting it.
                // A write may have reached it, so its outcome is unknown; a read moves on.
                Err(_) => {
                    next = (next + 1) % self.endpoints.len();
                    let other = self.endpoints[next].clone();
                    if to_leader {
                        *self.leader.write() = other.clone();
                    }
                    if write {
                        return Err(ClientError::Timeout(left.min(ATTEMPT_TIMEOUT)));
                    }
                    base = other;
                }
                Ok(Err(e)) => return Err(e),
                Ok(Ok(Attempt::Done(v))) => {
                    if to_leader {
                        *self.leader.write() = base;
                    }
                    return Ok(v);
                }
                Ok(Ok(Attempt::Retry(Some(redirect)))) => {
                    *self.leader.write() = redirect.clone();
                    base = redirect;
                    // Stale leader hints during an election can bounce a request between
                    // nodes: back off after the first hop.
                    redirects += 1;
                    if redirects > 1 {
                        tokio::time::sleep(backoff.min(left)).await;
                        backoff = (backoff * 2).min(Duration::from_millis(200));
                    }
                }
                Ok(Ok(Attempt::Retry(None))) => {
                    next = (next + 1) % self.endpoints.len();
                    base = self.endpoints[next].clone();
                    tokio::time::sleep(backoff.min(left)).await;
                    backoff = (backoff * 2).min(Duration::from_millis(200));
                }
            }
        }
    }
}

/// The HTTP client the harness uses for nodes' APIs (requests, status and admin calls): no
/// proxy (nodes are addressed directly), up to 64 kept-alive connections per node.
pub fn http_client() -> reqwest::Client {
    http_client_with(None)
}

/// [`http_client`] that sends `secret` as the bearer token of every request (the nodes
/// require it of admin calls on non-loopback binds, and ignore it elsewhere).
pub fn http_client_with(secret: Option<&crate::wire::ClusterSecret>) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(s) = secret {
        let mut v = reqwest::header::HeaderValue::from_str(&s.bearer())
            .expect("a secret is printable ASCII");
        v.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, v);
    }
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(64)
        .default_headers(headers)
        .build()
        .expect("a TLS-less reqwest client always builds")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::http::StatusCode as Status;
    use axum::response::IntoResponse;
    use axum::routing::put;

    use super::*;

    /// A fake node whose `PUT /kv/{key}` answers `status` with `body` (JSON), counting calls.
    async fn fake(status: Status, body: serde_json::Value) -> (String, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        let app = Router::new().route(
            "/kv/{key}",
            put(move || {
                let (body, seen) = (body.clone(), seen.clone());
                async move {
                    seen.fetch_add(1, Ordering::SeqCst);
                    (status, axum::Json(body)).into_response()
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        (addr, calls)
    }

    fn client(addrs: &[String], timeout_ms: u64) -> Client {
        Client::new(addrs, Duration::from_millis(timeout_ms))
    }

    /// How each answer of a node is counted: the outcomes a benchmark's verdicts rest on.
    #[tokio::test]
    async fn answers_are_classified_as_a_benchmark_must_count_them() {
        let v = Bytes::from_static(b"v");
        // 504 indeterminate / timeout (or a 504 code this build does not know): the write
        // may have been applied; never retried.
        for code in ["indeterminate", "timeout", "from_a_newer_server"] {
            let (a, calls) = fake(
                Status::GATEWAY_TIMEOUT,
                serde_json::json!({"code": code, "message": "m"}),
            )
            .await;
            let e = client(&[a], 2000).put("k", v.clone()).await.unwrap_err();
            assert!(e.is_indeterminate(), "{code}: {e}");
            assert_eq!(calls.load(Ordering::SeqCst), 1, "{code} retried");
        }
        // 409 rejected: a plain failure, with the server's code kept verbatim, even one
        // this build does not know.
        for code in ["rejected", "from_a_newer_server"] {
            let (a, _) = fake(
                Status::CONFLICT,
                serde_json::json!({"code": code, "message": "no"}),
            )
            .await;
            match client(&[a], 2000).put("k", v.clone()).await.unwrap_err() {
                ClientError::Rejected {
                    status,
                    code: c,
                    message,
                } => {
                    assert_eq!((status, c.as_str(), message.as_str()), (409, code, "no"));
                }
                other => panic!("{code}: {other}"),
            }
        }
        // 503 (no leader, dropped proposal): certainly not applied, so retried until the
        // deadline, which then counts as a timeout.
        let (a, calls) = fake(
            Status::SERVICE_UNAVAILABLE,
            serde_json::json!({"code": "no_leader", "message": "election"}),
        )
        .await;
        let e = client(&[a], 1500).put("k", v.clone()).await.unwrap_err();
        assert!(matches!(e, ClientError::Timeout(_)), "{e}");
        assert!(calls.load(Ordering::SeqCst) > 1, "503 was not retried");
    }

    /// A 421 names the leader; the client follows it and remembers it.
    #[tokio::test]
    async fn redirects_are_followed_to_the_leader() {
        let (leader, leader_calls) = fake(Status::NO_CONTENT, serde_json::json!(null)).await;
        let (follower, _) = fake(
            Status::MISDIRECTED_REQUEST,
            serde_json::json!({
                "code": "not_leader", "message": "m", "leader_id": 2, "leader_addr": leader
            }),
        )
        .await;
        let c = client(std::slice::from_ref(&follower), 2000);
        c.put("k", Bytes::from_static(b"v")).await.unwrap();
        assert_eq!(leader_calls.load(Ordering::SeqCst), 1);
        assert_eq!(c.leader(), format!("http://{leader}"));
    }

    /// A raw node: answers each connection's first request with `answer` (or nothing),
    /// then closes it after `linger`; counts connections.
    async fn raw_node(
        answer: Option<&'static str>,
        linger: Duration,
    ) -> (String, Arc<AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let conns = Arc::new(AtomicUsize::new(0));
        let seen = conns.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                seen.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut got = Vec::new();
                    // Headers and the 1-byte body of the test's PUT.
                    while !got.windows(5).any(|w| w == b"\r\n\r\nv") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    if let Some(a) = answer {
                        let _ = s.write_all(a.as_bytes()).await;
                    }
                    tokio::time::sleep(linger).await;
                });
            }
        });
        (addr, conns)
    }

    /// A kept-alive connection the node closed while idle is not a failed write: the next
    /// write goes on a new connection and succeeds.
    #[tokio::test]
    async fn a_connection_closed_while_idle_is_redialled_not_counted_as_a_failure() {
        let (addr, conns) = raw_node(
            Some("HTTP/1.1 204 No Content\r\n\r\n"),
            Duration::from_millis(20),
        )
        .await;
        let c = client(std::slice::from_ref(&addr), 2000);
        for _ in 0..3 {
            c.put("k", Bytes::from_static(b"v")).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(conns.load(Ordering::SeqCst), 3);
    }

    /// A write whose connection breaks after it was sent may have been applied: it is
    /// indeterminate, and not sent again.
    #[tokio::test]
    async fn a_write_whose_connection_breaks_unanswered_is_indeterminate() {
        let (addr, conns) = raw_node(None, Duration::ZERO).await;
        let c = client(std::slice::from_ref(&addr), 2000);
        let e = c.put("k", Bytes::from_static(b"v")).await.unwrap_err();
        assert!(e.is_indeterminate(), "{e}");
        assert_eq!(conns.load(Ordering::SeqCst), 1, "never retried");
    }
}
