//! The etcd data plane: KV Put, Range and DeleteRange over gRPC, counted the way
//! raftbench's own client counts (see [`crate::client`]).
//!
//! Each member has a connection of its own; requests go to one member at a time, the
//! leader once it is known (as raftbench's client sends writes to its leader: a write sent
//! to a follower costs etcd an extra hop to forward it). A member that refuses the
//! connection is certainly not acting on the request, which then moves to the next member;
//! that member's leader is looked up, and preferred from then on.
//!
//! How an error is counted, for a write:
//! - never sent (the connection was refused): retried on the next member;
//! - `etcdserver: too many requests`, or `raft proposal dropped` (a follower without a
//!   leader): refused before the proposal entered the log, so retried after a backoff;
//! - refused for what it is (invalid argument, space quota, permission): **failed**;
//! - anything else (a timeout, `leader changed`, a broken connection, an unknown error):
//!   **indeterminate**: the write may still be applied, so it is never retried and never
//!   counted lost.
//!
//! Reads are retried on the next member on any transient error, until the deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use etcd_client::{GetOptions, KvClient};
use tokio::time::Instant;
use tonic::Code;

use crate::client::{ClientError, Consistency};

/// How long one attempt at one member may take before the client stops trusting it.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// A client of an etcd cluster's KV service. Cheap to share; safe from many tasks.
pub struct EtcdKv {
    inner: Arc<Inner>,
}

struct Inner {
    /// Per member, in the order of the endpoints: its KV client.
    members: Vec<KvClient>,
    /// Their full clients (Status, MemberList), for finding the leader.
    admin: Vec<etcd_client::Client>,
    /// The member requests go to first.
    preferred: AtomicUsize,
    /// A leader search is running (after a failover, every worker that moved would start
    /// one otherwise).
    locating: AtomicBool,
    /// When the last leader search started, in milliseconds since `born`: the preferred
    /// member is checked again every [`RECHECK`], since a request answered by a follower
    /// (which forwards it) gives no sign that the leader moved.
    searched_ms: AtomicU64,
    born: Instant,
    timeout: Duration,
}

/// How often the client checks that its preferred member still leads.
const RECHECK: Duration = Duration::from_secs(1);

/// Rounds of a background leader search (about 3 s of backoff in all, plus the status
/// calls' own timeouts), which ends at the first round that finds a leader.
const SEARCH_ROUNDS: u32 = 6;

/// What one attempt came to.
enum Attempt<T> {
    Done(T),
    /// Certainly not acted on: try again after a backoff, on the next member if `next`.
    Retry {
        next: bool,
    },
}

/// Whether `e` (or what caused it) is a refused TCP connection: the request never left.
fn connection_refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
            )
        {
            return true;
        }
        cur = err.source();
    }
    false
}

/// How a failed request is counted: `Ok(Retry)` when it certainly was not acted on and may
/// be retried, `Err` otherwise.
fn classify<T>(e: etcd_client::Error, write: bool) -> Result<Attempt<T>, ClientError> {
    let status = match e {
        etcd_client::Error::GRpcStatus(s) => s,
        etcd_client::Error::TransportError(t) if connection_refused(&t) => {
            return Ok(Attempt::Retry { next: true });
        }
        other if write => {
            return Err(ClientError::Indeterminate(format!(
                "etcd: {other} (after the write may have been sent)"
            )));
        }
        _ => return Ok(Attempt::Retry { next: true }),
    };
    let msg = status.message().to_string();
    // tonic says "tcp connect error" when the connection to the member failed: nothing
    // was sent on it.
    if status.code() == Code::Unavailable
        && (connection_refused(&status) || msg.contains("tcp connect error"))
    {
        return Ok(Attempt::Retry { next: true });
    }
    // A follower without a leader drops the proposal before it enters the log.
    if msg.contains("raft proposal dropped") {
        return Ok(Attempt::Retry { next: true });
    }
    let rejected = || ClientError::Rejected {
        status: 0,
        code: format!("grpc_{:?}", status.code()).to_lowercase(),
        message: format!("etcd: {msg}"),
    };
    match status.code() {
        // Checked before the request is proposed: not applied.
        Code::ResourceExhausted if msg.contains("too many requests") => {
            Ok(Attempt::Retry { next: false })
        }
        Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::OutOfRange
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::ResourceExhausted
        | Code::Unimplemented
        | Code::AlreadyExists => Err(rejected()),
        _ if write => Err(ClientError::Indeterminate(format!(
            "etcd: {:?}: {msg}",
            status.code()
        ))),
        _ => Ok(Attempt::Retry { next: true }),
    }
}

impl EtcdKv {
    /// A client of the members at `endpoints` (`host:port`), giving each request up to
    /// `timeout` including retries. Connections are made at the first request.
    pub async fn new(endpoints: &[String], timeout: Duration) -> Result<EtcdKv, String> {
        if endpoints.is_empty() {
            return Err("an etcd client needs at least one endpoint".into());
        }
        let mut members = Vec::new();
        let mut admin = Vec::new();
        for e in endpoints {
            let c = super::member_client(e).await?;
            members.push(c.kv_client());
            admin.push(c);
        }
        Ok(EtcdKv {
            inner: Arc::new(Inner {
                members,
                admin,
                preferred: AtomicUsize::new(0),
                locating: AtomicBool::new(false),
                searched_ms: AtomicU64::new(0),
                born: Instant::now(),
                timeout,
            }),
        })
    }

    /// Prefer the member at index `i` of the endpoints (the leader).
    pub fn prefer(&self, i: usize) {
        if i < self.inner.members.len() {
            self.inner.preferred.store(i, Ordering::Relaxed);
        }
    }

    /// Ask the members, first to answer wins, which of them leads, and prefer it. Best
    /// effort: a cluster without a leader leaves the preference as it is.
    pub async fn find_leader(&self) {
        Inner::find_leader(&self.inner, 1).await
    }

    /// Store `value` under `key`; returns once etcd committed it.
    pub async fn put(&self, key: &str, value: Bytes) -> Result<(), ClientError> {
        let value = value.to_vec();
        self.retrying(true, true, |mut kv| {
            let value = value.clone();
            async move { kv.put(key, value, None).await.map(drop) }
        })
        .await
    }

    /// Delete `key`.
    pub async fn delete(&self, key: &str) -> Result<(), ClientError> {
        self.retrying(true, true, |mut kv| async move {
            kv.delete(key, None).await.map(drop)
        })
        .await
    }

    /// Read `key` (linearizable: etcd's default Range, through ReadIndex; local: a
    /// serializable Range, answered by the member from what it has applied).
    pub async fn get(
        &self,
        key: &str,
        consistency: Consistency,
    ) -> Result<Option<Bytes>, ClientError> {
        let local = consistency == Consistency::Local;
        self.retrying(!local, false, |mut kv| async move {
            let opts = local.then(|| GetOptions::new().with_serializable());
            let r = kv.get(key, opts).await?;
            Ok(r.kvs().first().map(|kv| Bytes::copy_from_slice(kv.value())))
        })
        .await
    }

    /// Run `attempt` on the preferred member (`to_leader`) or the first one, moving on to
    /// the next member when a request certainly was not acted on, until the deadline.
    async fn retrying<T, F, Fut>(
        &self,
        to_leader: bool,
        write: bool,
        attempt: F,
    ) -> Result<T, ClientError>
    where
        F: Fn(KvClient) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let inner = &self.inner;
        let n = inner.members.len();
        let deadline = Instant::now() + inner.timeout;
        let mut at = if to_leader {
            inner.preferred.load(Ordering::Relaxed)
        } else {
            0
        };
        let mut backoff = Duration::from_millis(5);
        let mut moved = false;
        if to_leader {
            Self::recheck(inner);
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ClientError::Timeout(inner.timeout));
            }
            let kv = inner.members[at].clone();
            let outcome = match tokio::time::timeout(left.min(ATTEMPT_TIMEOUT), attempt(kv)).await {
                Ok(Ok(v)) => Ok(Attempt::Done(v)),
                Ok(Err(e)) => classify(e, write),
                // No answer: a write may have reached the member.
                Err(_) if write => {
                    inner.preferred.store((at + 1) % n, Ordering::Relaxed);
                    Self::relocate(inner);
                    return Err(ClientError::Timeout(left.min(ATTEMPT_TIMEOUT)));
                }
                Err(_) => Ok(Attempt::Retry { next: true }),
            };
            match outcome? {
                Attempt::Done(v) => {
                    if to_leader && moved {
                        inner.preferred.store(at, Ordering::Relaxed);
                        Self::relocate(inner);
                    }
                    return Ok(v);
                }
                Attempt::Retry { next } => {
                    if next {
                        at = (at + 1) % n;
                        moved = true;
                    }
                    tokio::time::sleep(backoff.min(left)).await;
                    backoff = (backoff * 2).min(Duration::from_millis(200));
                }
            }
        }
    }

    /// Start a background leader search when the last one is more than [`RECHECK`] old.
    fn recheck(inner: &Arc<Inner>) {
        let now = inner.born.elapsed().as_millis() as u64;
        let last = inner.searched_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= RECHECK.as_millis() as u64 {
            Self::relocate(inner);
        }
    }

    /// After a failover, find the new leader in the background, so that the requests
    /// after this one go to it rather than through a follower; one search at a time.
    fn relocate(inner: &Arc<Inner>) {
        if inner.locating.swap(true, Ordering::AcqRel) {
            return;
        }
        inner
            .searched_ms
            .store(inner.born.elapsed().as_millis() as u64, Ordering::Relaxed);
        let inner = inner.clone();
        tokio::spawn(async move {
            Inner::find_leader(&inner, SEARCH_ROUNDS).await;
            inner.locating.store(false, Ordering::Release);
        });
    }
}

impl Inner {
    /// Ask every member at once for its status, and prefer the member that names itself
    /// leader in the highest term (a member cut off from the others may still name an old
    /// leader, and an old leader may still think it leads). Up to `rounds` rounds with
    /// backoff while no member leads; without a leader the preference stays as it is.
    async fn find_leader(inner: &Arc<Inner>, rounds: u32) {
        let mut backoff = Duration::from_millis(100);
        for round in 0..rounds {
            if round > 0 {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            let answers = futures::future::join_all(inner.admin.iter().map(|c| {
                let mut c = c.clone();
                async move {
                    tokio::time::timeout(ATTEMPT_TIMEOUT, c.status())
                        .await
                        .ok()?
                        .ok()
                }
            }))
            .await;
            let leading = answers.iter().enumerate().filter_map(|(i, s)| {
                let s = s.as_ref()?;
                let me = s.header()?.member_id();
                (me != 0 && me == s.leader()).then_some((s.raft_term(), i))
            });
            if let Some((_, i)) = leading.max() {
                inner.preferred.store(i, Ordering::Relaxed);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grpc(code: Code, message: &str) -> etcd_client::Error {
        etcd_client::Error::GRpcStatus(tonic::Status::new(code, message))
    }

    /// What an error comes to: "retry-next", "retry-here", "failed" or "in-doubt".
    fn outcome(e: etcd_client::Error, write: bool) -> &'static str {
        match classify::<()>(e, write) {
            Ok(Attempt::Retry { next: true }) => "retry-next",
            Ok(Attempt::Retry { next: false }) => "retry-here",
            Ok(Attempt::Done(())) => "done",
            Err(ClientError::Rejected { .. }) => "failed",
            Err(ClientError::Indeterminate(_)) => "in-doubt",
            Err(e) => panic!("unexpected {e}"),
        }
    }

    #[test]
    fn a_write_whose_answer_was_lost_is_in_doubt_and_never_retried() {
        for (code, msg) in [
            (Code::Unavailable, "etcdserver: leader changed"),
            (Code::DeadlineExceeded, "etcdserver: request timed out"),
            (Code::Unknown, "transport is closing"),
            (Code::Internal, "h2 protocol error"),
        ] {
            assert_eq!(outcome(grpc(code, msg), true), "in-doubt", "{msg}");
            // A read has no effect: it moves on to the next member.
            assert_eq!(outcome(grpc(code, msg), false), "retry-next", "{msg}");
        }
    }

    #[test]
    fn a_write_that_certainly_was_not_proposed_is_retried() {
        let never_sent = grpc(
            Code::Unavailable,
            "error trying to connect: tcp connect error: Connection refused (os error 111)",
        );
        assert_eq!(outcome(never_sent, true), "retry-next");
        let dropped = grpc(Code::Unavailable, "etcdserver: raft proposal dropped");
        assert_eq!(outcome(dropped, true), "retry-next");
        let busy = grpc(Code::ResourceExhausted, "etcdserver: too many requests");
        assert_eq!(outcome(busy, true), "retry-here");
    }

    #[test]
    fn a_write_refused_for_what_it_is_fails() {
        for (code, msg) in [
            (
                Code::ResourceExhausted,
                "etcdserver: mvcc: database space exceeded",
            ),
            (Code::InvalidArgument, "etcdserver: request is too large"),
            (Code::PermissionDenied, "etcdserver: permission denied"),
        ] {
            assert_eq!(outcome(grpc(code, msg), true), "failed", "{msg}");
        }
    }
}
