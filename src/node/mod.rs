//! A raft key-value node: one OS process (`raftbench node`).
//!
//! - [`raft_loop`]: the dedicated OS thread that owns `RawNode` and the storage backend;
//! - [`config`]: flags merged with a cluster file; [`status`]: what `/status` reports;
//!   [`metrics`]: what `/metrics` reports.
//!
//! [`start`] opens the storage, starts the raft thread and returns a [`Node`]; its
//! [`NodeHandle`] is all the HTTP API ([`crate::api`]) and the composition root
//! ([`crate::server`]) see. Tokio tasks talk to the raft loop only through the handle's
//! requests (messages on a channel) and read the applied state through a [`KvReader`], so
//! reads never queue behind the raft thread's fsyncs.
//!
//! The node's directory holds `node.json` (its id: a directory is never reused by another
//! node), a `LOCK` file held for the life of the process, and the backend's `storage/`.

pub mod config;
mod members;
pub mod metrics;
pub mod raft_loop;
pub mod status;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use raft::eraftpb::{ConfChange, Message};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::oneshot;
use tracing::{info, warn};

pub use config::{AdminAuth, ConfigError, NodeArgs, NodeConfig, resolve};
pub use members::{MEMBER_KEY_PREFIX, Members, REMOVED_KEY_PREFIX, member_key, removed_key};

use crate::kv::KvCommand;
use crate::storage::{self, KvReader, StorageBackend, StorageError};
use crate::transport::{Hello, Identity, Inbox, Transport};
use crate::wire::{BackendConfig, MemberAddrs, OpenReport, RaftSettings, StatusReport};
use status::StatusCell;

/// What a client-facing request to the raft loop can fail with.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum NodeError {
    /// This node is not the leader; `leader` is the one it knows (0 = none).
    #[error("not the leader (leader is {leader})")]
    NotLeader { leader: u64 },
    /// The proposal never made it into the log (leader change, or raft refused it): it was
    /// not applied and is safe to retry.
    #[error("proposal dropped: {0}")]
    Dropped(String),
    /// The proposal's fate is unknown (e.g. a snapshot replaced the log past it).
    #[error("outcome unknown: {0}")]
    Indeterminate(String),
    /// The request is invalid for the current state (e.g. removing an unknown member).
    #[error("{0}")]
    Rejected(String),
    /// The node is shutting down or its raft loop has stopped.
    #[error("node is shutting down")]
    ShuttingDown,
}

/// Reply channel of a request to the raft loop.
pub type Reply<T> = oneshot::Sender<Result<T, NodeError>>;

/// Result of a forced snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SnapshotReport {
    pub index: u64,
    pub term: u64,
    pub bytes: u64,
    pub duration_ms: f64,
    /// New truncation point of the log.
    pub compacted_to: u64,
}

/// Everything the raft loop reacts to.
pub enum Input {
    /// A message from a peer.
    Raft(Message),
    /// Replicate and apply a command; answered once applied.
    Propose { cmd: KvCommand, reply: Reply<()> },
    /// Start a ReadIndex round; answered with the read index once the local state machine
    /// has applied up to it (raft may drop the request silently: callers retry).
    ReadIndex { reply: Reply<u64> },
    /// Membership change; `addrs` accompany an added node. Answered once applied.
    ConfChange {
        cc: ConfChange,
        addrs: Option<MemberAddrs>,
        reply: Reply<()>,
    },
    /// Snapshot and compact now (built off the raft thread; answered once adopted).
    Snapshot { reply: Reply<SnapshotReport> },
    /// A snapshot build (begun by the raft loop, run on its own thread) has finished.
    SnapshotBuilt {
        result: crate::storage::Result<crate::storage::BuiltSnapshot>,
    },
    /// Hand leadership to `to`.
    TransferLeader { to: u64, reply: Reply<()> },
    /// The transport could not reach `id`.
    Unreachable { id: u64, snapshot: bool },
    /// A snapshot message was handed to peer `id`'s connection.
    SnapshotSent { id: u64 },
    /// Stop the loop (graceful shutdown).
    Shutdown,
}

/// Why a node failed to start or stopped.
#[derive(Debug, Error)]
pub enum NodeStartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("node directory {}: {message}", dir.display())]
    NodeDir { dir: PathBuf, message: String },
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    /// The raft thread panicked: a bug, reported with the panic's message.
    #[error("the raft thread panicked: {0}")]
    RaftThreadPanicked(String),
    /// Opening (recovering) the storage panicked: a bug, reported with the panic's message.
    #[error("opening the storage panicked: {0}")]
    OpenPanicked(String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NodeStartError {
    let what = what.into();
    move |source| NodeStartError::Io { what, source }
}

#[derive(Debug, Serialize, Deserialize)]
struct NodeIdentity {
    node_id: u64,
}

/// Claim the node directory for `id`: refuse one that belongs to another node or is in use
/// by another process. The returned file holds the lock until dropped.
pub fn claim_node_dir(dir: &Path, id: u64) -> Result<File, NodeStartError> {
    let bad = |message: String| NodeStartError::NodeDir {
        dir: dir.to_path_buf(),
        message,
    };
    storage::datadir::create_dir_durable(dir)?;
    let lock_path = dir.join("LOCK");
    let lock =
        File::create(&lock_path).map_err(io_err(format!("creating {}", lock_path.display())))?;
    if lock.try_lock().is_err() {
        return Err(bad("in use by another raftbench node process".into()));
    }
    let ident = dir.join("node.json");
    match std::fs::read(&ident) {
        Ok(bytes) => {
            let found: NodeIdentity = serde_json::from_slice(&bytes)
                .map_err(|e| bad(format!("unreadable node.json: {e}")))?;
            if found.node_id != id {
                return Err(bad(format!(
                    "belongs to node {}, not node {id}; give each node its own directory",
                    found.node_id
                )));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if dir.join("storage").exists() {
                return Err(bad(
                    "has a storage/ directory but no node.json: not created by this node".into(),
                ));
            }
            let body = serde_json::to_vec(&NodeIdentity { node_id: id }).expect("serialises");
            storage::datadir::write_file_atomic(&ident, &body, true)?;
        }
        Err(e) => return Err(io_err(format!("reading {}", ident.display()))(e)),
    }
    Ok(lock)
}

/// Routes transport events into the raft loop and the address book.
struct LoopInbox {
    tx: std::sync::mpsc::Sender<Input>,
    members: Members,
}

impl Inbox for LoopInbox {
    fn deliver(&self, msg: Message) {
        let _ = self.tx.send(Input::Raft(msg));
    }
    fn unreachable(&self, id: u64, snapshot: bool) {
        let _ = self.tx.send(Input::Unreachable { id, snapshot });
    }
    fn snapshot_sent(&self, id: u64) {
        let _ = self.tx.send(Input::SnapshotSent { id });
    }
    fn admits(&self, id: u64) -> bool {
        self.members.admits(id)
    }
    fn hello(&self, hello: &Hello) -> Option<String> {
        if let Some(known) = self.members.get(hello.id) {
            // The replicated address book (or the configuration) decides where peers are.
            return Some(known.peer_addr);
        }
        // A peer nothing here knows: this node joined empty, or lags behind a membership
        // change (the new member may be the leader now). Its hello is all there is, until
        // the replicated book names it.
        self.members.learn_from_hello(
            hello.id,
            MemberAddrs {
                peer_addr: hello.peer_addr.clone(),
                client_addr: hello.client_addr.clone(),
            },
        );
        Some(hello.peer_addr.clone())
    }
}

/// A started node: the raft thread and the handle to reach it. Dropping it asks the raft
/// loop to stop (as [`Node::shutdown`]); [`Node::stopped`] waits for that.
pub struct Node {
    handle: NodeHandle,
    /// How the raft thread ended; taken by the first [`Node::stopped`] that sees it.
    done: Option<oneshot::Receiver<Result<(), NodeStartError>>>,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A node whose storage is open (recovered) and bootstrapped, before its raft thread runs:
/// the point at which `raftbench node` binds its listeners, so that a port that is taken
/// fails the start before raft has persisted anything.
pub struct Opened {
    cfg: NodeConfig,
    lock: File,
    backend_cfg: BackendConfig,
    backend: storage::AnyBackend,
    startup: OpenReport,
    members: Members,
}

/// Check `cfg`, claim the node directory, open (recover) the storage and bootstrap a new
/// member. Blocking: recovery replays the log, which can take seconds.
pub fn open(cfg: &NodeConfig) -> Result<Opened, NodeStartError> {
    cfg.validate()?;
    let lock = claim_node_dir(&cfg.data_dir, cfg.id)?;
    let backend_cfg = cfg.backend.with_dir(cfg.data_dir.join("storage"));
    let mut backend = storage::open_backend(&backend_cfg)?;
    let startup = backend.open_report();
    info!(
        id = cfg.id,
        backend = %backend_cfg.kind,
        open_ms = startup.open_ms,
        replayed_entries = startup.replayed_entries,
        "storage opened"
    );
    let members = Members::new(cfg.id, backend.reader());
    raft_loop::bootstrap_if_new(cfg, &mut backend, &members)?;
    Ok(Opened {
        cfg: cfg.clone(),
        lock,
        backend_cfg,
        backend,
        startup,
        members,
    })
}

/// [`open`], then [`Opened::spawn`].
pub fn start(cfg: &NodeConfig, rt: tokio::runtime::Handle) -> Result<Node, NodeStartError> {
    open(cfg)?.spawn(rt)
}

impl Opened {
    /// Start the raft thread. The transport's connection tasks run on `rt`; the caller
    /// serves the transport and the API on its listeners (see [`crate::server`]).
    pub fn spawn(self, rt: tokio::runtime::Handle) -> Result<Node, NodeStartError> {
        let Opened {
            cfg,
            lock,
            backend_cfg,
            backend,
            startup,
            members,
        } = self;
        let (tx, rx) = std::sync::mpsc::channel();
        let mut registry = metrics::NodeRegistry::new(cfg.id, &backend_cfg);
        let peer_metrics = crate::transport::PeerMetrics::register(&mut registry.registry);
        let transport = Transport::new(
            Identity {
                id: cfg.id,
                peer_addr: cfg.advertise.peer_addr.clone(),
                client_addr: cfg.advertise.client_addr.clone(),
            },
            cfg.secret.clone(),
            cfg.peer_limits,
            rt,
            Arc::new(LoopInbox {
                tx: tx.clone(),
                members: members.clone(),
            }),
            peer_metrics,
        );
        let reader = backend.reader();
        let raft_loop = raft_loop::RaftLoop::new(
            &cfg,
            backend,
            rx,
            tx.clone(),
            transport.clone(),
            members.clone(),
            registry.raft.clone(),
        )?;
        let status = raft_loop.status_cell();
        registry.collect_status(status.clone());
        let (done_tx, done) = oneshot::channel();
        std::thread::Builder::new()
            .name("raft-loop".into())
            .spawn(move || {
                let result =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| raft_loop.run()))
                        .unwrap_or_else(|panic| {
                            Err(NodeStartError::RaftThreadPanicked(panic_message(&panic)))
                        });
                if let Err(e) = &result {
                    warn!("raft loop stopped: {e}");
                }
                let _ = done_tx.send(result);
            })
            .map_err(io_err("starting the raft thread"))?;
        Ok(Node {
            handle: NodeHandle {
                inner: Arc::new(HandleInner {
                    id: cfg.id,
                    tx,
                    reader,
                    status,
                    metrics: registry.registry,
                    members,
                    transport,
                    backend: backend_cfg,
                    startup,
                    raft: cfg.raft.clone(),
                    secret: cfg.secret.clone(),
                    admin_token_required: cfg.admin_token_required(),
                    admin_refused: Default::default(),
                    _lock: lock,
                }),
            },
            done: Some(done),
        })
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

impl Node {
    /// The handle the API and the transport use.
    pub fn handle(&self) -> NodeHandle {
        self.handle.clone()
    }

    /// Ask the raft loop to stop (graceful: it finishes its current turn).
    pub fn shutdown(&self) {
        self.handle.send(Input::Shutdown).ok();
    }

    /// Wait for the raft thread to end: after [`Node::shutdown`], or by itself on a fatal
    /// storage error or a panic (then with that error). The first call that sees the end
    /// returns how it ended; later calls return `Ok(())` at once.
    pub async fn stopped(&mut self) -> Result<(), NodeStartError> {
        let Some(done) = self.done.as_mut() else {
            return Ok(());
        };
        let result = match done.await {
            Ok(r) => r,
            // The thread is gone without a word: only possible if it was never started.
            Err(_) => Err(NodeStartError::RaftThreadPanicked(
                "the raft thread ended without reporting".into(),
            )),
        };
        self.done = None;
        result
    }
}

struct HandleInner {
    id: u64,
    tx: std::sync::mpsc::Sender<Input>,
    reader: KvReader,
    status: StatusCell,
    /// What `/metrics` encodes.
    metrics: prometheus_client::registry::Registry,
    members: Members,
    transport: Arc<Transport>,
    backend: BackendConfig,
    startup: OpenReport,
    raft: RaftSettings,
    /// The cluster secret, if any (admin bearer tokens are checked against it).
    secret: Option<crate::wire::ClusterSecret>,
    /// Whether admin requests must carry the secret.
    admin_token_required: bool,
    /// Admin requests refused for a missing or wrong token.
    admin_refused: std::sync::atomic::AtomicU64,
    /// The node directory's lock, last: released only after everything above that can
    /// reach the storage (readers, the address book) is gone.
    _lock: File,
}

/// What the API (and any other front end) may do with a running node: send it requests,
/// read its applied state, inspect and fault its transport. Cheap to clone.
///
/// Every request is answered by the raft loop; writes are answered once applied, reads
/// through [`NodeHandle::read_index`] once the local state has caught up with the leader's
/// commit index at the time of the request (linearizable).
#[derive(Clone)]
pub struct NodeHandle {
    inner: Arc<HandleInner>,
}

impl NodeHandle {
    /// This node's raft id.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The raft settings the node runs with (tick length bounds read-index retries).
    pub fn raft_settings(&self) -> &RaftSettings {
        &self.inner.raft
    }

    fn send(&self, input: Input) -> Result<(), NodeError> {
        self.inner
            .tx
            .send(input)
            .map_err(|_| NodeError::ShuttingDown)
    }

    /// Send `make(reply)` to the raft loop and wait up to `timeout` for the answer.
    /// `Err(None)` is a timeout: the request may still be carried out.
    pub async fn ask<T>(
        &self,
        make: impl FnOnce(Reply<T>) -> Input,
        timeout: Duration,
    ) -> Result<T, Option<NodeError>> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx)).map_err(Some)?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => r.map_err(Some),
            // The loop accepted the request and then went away: a write may still commit.
            Ok(Err(_)) => Err(Some(NodeError::Indeterminate(
                "the node stopped before answering".into(),
            ))),
            Err(_) => Err(None),
        }
    }

    /// Replicate and apply `cmd`; answered once applied.
    pub async fn propose(
        &self,
        cmd: KvCommand,
        timeout: Duration,
    ) -> Result<(), Option<NodeError>> {
        self.ask(|reply| Input::Propose { cmd, reply }, timeout)
            .await
    }

    /// One ReadIndex round: answered once the local state has applied the read index.
    /// Raft may drop the round silently (no leader yet): then this times out, and the caller
    /// retries.
    pub async fn read_index(&self, timeout: Duration) -> Result<u64, Option<NodeError>> {
        self.ask(|reply| Input::ReadIndex { reply }, timeout).await
    }

    /// A membership change; `addrs` accompany an added node. Answered once applied.
    pub async fn conf_change(
        &self,
        cc: ConfChange,
        addrs: Option<MemberAddrs>,
        timeout: Duration,
    ) -> Result<(), Option<NodeError>> {
        self.ask(|reply| Input::ConfChange { cc, addrs, reply }, timeout)
            .await
    }

    /// Whether an admin request may proceed, given its `Authorization` header value (if
    /// any) and whether it came with an `Origin` header (a browser page's request); a
    /// refusal is counted in `/status`.
    ///
    /// Loopback binds admit any request without an `Origin` (unless `--admin-auth
    /// always`); one from a browser page — which any web site can make the browser send to
    /// 127.0.0.1 — needs the token too. Otherwise the cluster secret is required, and a
    /// node without one refuses every admin request.
    pub fn admit_admin(
        &self,
        authorization: Option<&[u8]>,
        origin: bool,
    ) -> Result<(), &'static str> {
        if !self.inner.admin_token_required && !origin {
            return Ok(());
        }
        let ok = match (&self.inner.secret, authorization) {
            (Some(s), Some(h)) => s.matches_bearer(h),
            _ => false,
        };
        if ok {
            return Ok(());
        }
        self.inner
            .admin_refused
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Err(match (&self.inner.secret, authorization) {
            (None, _) if !self.inner.admin_token_required => {
                "admin requests from a browser page (with an Origin header) are refused"
            }
            (None, _) => {
                "admin endpoints of a node on a non-loopback address need a cluster secret \
                 (start it with --cluster-secret-file)"
            }
            (Some(_), None) => {
                "admin endpoints need the cluster secret: Authorization: Bearer <secret>"
            }
            (Some(_), Some(_)) => "the bearer token is not the cluster secret",
        })
    }

    /// Snapshot and compact now.
    pub async fn snapshot(&self, timeout: Duration) -> Result<SnapshotReport, Option<NodeError>> {
        self.ask(|reply| Input::Snapshot { reply }, timeout).await
    }

    /// Hand leadership to `to`.
    pub async fn transfer_leader(
        &self,
        to: u64,
        timeout: Duration,
    ) -> Result<(), Option<NodeError>> {
        self.ask(|reply| Input::TransferLeader { to, reply }, timeout)
            .await
    }

    /// Read `key` from the applied state, without waiting for the raft loop.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.inner.reader.get(key)
    }

    /// `/metrics`: OpenMetrics text (see [`metrics`]).
    pub fn metrics_text(&self) -> String {
        metrics::encode(&self.inner.metrics)
    }

    /// Raft positions as of the raft loop's last turn.
    pub fn raft_status(&self) -> status::RaftStatus {
        self.inner.status.raft()
    }

    /// A member's addresses, when known.
    pub fn member(&self, id: u64) -> Option<MemberAddrs> {
        self.inner.members.get(id)
    }

    /// The whole `/status` document.
    pub fn status_report(&self) -> StatusReport {
        let raft = self.inner.status.raft();
        let leader_addr = (raft.leader_id != 0)
            .then(|| self.member(raft.leader_id).map(|a| a.client_addr))
            .flatten();
        StatusReport {
            id: self.inner.id,
            leader_addr,
            raft,
            backend: self.inner.backend.clone(),
            storage: self.inner.status.storage(),
            rss_bytes: status::self_rss_bytes(),
            uptime_ms: self.inner.status.started.elapsed().as_millis() as u64,
            startup: self.inner.startup.clone(),
            dropped_messages: self.inner.transport.dropped(),
            security: crate::wire::PeerSecurity {
                not_commands: self
                    .inner
                    .status
                    .not_commands
                    .load(std::sync::atomic::Ordering::Relaxed),
                admin_token_required: self.inner.admin_token_required,
                admin_refused: self
                    .inner
                    .admin_refused
                    .load(std::sync::atomic::Ordering::Relaxed),
                ..self.inner.transport.security()
            },
        }
    }

    /// The peer transport (serving it, and its fault injection).
    pub fn transport(&self) -> &Arc<Transport> {
        &self.inner.transport
    }
}
