//! A raft key-value node: one OS process (`raftbench node`).
//!
//! - [`raft_loop`]: the dedicated OS thread that owns `RawNode` and the storage backend;
//! - [`crate::transport`]: peer TCP; [`crate::api`]: the HTTP API;
//! - [`config`]: flags and cluster files; [`status`]: what `/status` reports.
//!
//! Tokio tasks (API handlers, transport) talk to the raft loop only through [`Input`]
//! messages and read the applied state through a [`KvReader`], so reads never queue behind
//! the raft thread's fsyncs.
//!
//! The node's directory holds `node.json` (its id: a directory is never reused by another
//! node), a `LOCK` file held for the life of the process, and the backend's `storage/`.

pub mod config;
mod members;
pub mod raft_loop;
pub mod status;

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use raft::eraftpb::{ConfChange, Message};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::oneshot;
use tracing::{info, warn};

pub use config::{
    ClusterFile, ClusterNode, ConfigError, ControlCommands, MemberAddrs, NodeConfig, RaftSettings,
};
pub use members::{MEMBER_KEY_PREFIX, Members, member_key};

use crate::kv::KvCommand;
use crate::storage::{self, StorageBackend, StorageError};
use crate::transport::{Hello, Inbox, Transport};

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
    /// Snapshot and compact now.
    Snapshot { reply: Reply<SnapshotReport> },
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
    std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
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
    fn hello(&self, hello: &Hello) {
        self.members.learn(
            hello.id,
            MemberAddrs {
                peer_addr: hello.peer_addr.clone(),
                client_addr: hello.client_addr.clone(),
            },
        );
    }
}

/// Run a node until SIGTERM/SIGINT (graceful) or a fatal storage error.
pub fn run(cfg: NodeConfig) -> Result<(), NodeStartError> {
    cfg.validate()?;
    let _lock = claim_node_dir(&cfg.data_dir, cfg.id)?;
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
    raft_loop::bootstrap_if_new(&cfg, &mut backend, &members)?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(
            std::env::var("RAFTBENCH_IO_THREADS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(2),
        )
        .enable_all()
        .thread_name("raftbench-io")
        .build()
        .map_err(io_err("starting the tokio runtime"))?;
    let peer_listener = rt
        .block_on(tokio::net::TcpListener::bind(cfg.peer_listen))
        .map_err(io_err(format!(
            "binding the peer address {}",
            cfg.peer_listen
        )))?;
    let client_listener = rt
        .block_on(tokio::net::TcpListener::bind(cfg.client_listen))
        .map_err(io_err(format!(
            "binding the client address {}",
            cfg.client_listen
        )))?;

    let (tx, rx) = std::sync::mpsc::channel();
    let transport = Transport::new(
        Hello {
            id: cfg.id,
            peer_addr: cfg.advertise.peer_addr.clone(),
            client_addr: cfg.advertise.client_addr.clone(),
        },
        rt.handle().clone(),
        Arc::new(LoopInbox {
            tx: tx.clone(),
            members: members.clone(),
        }),
    );
    let reader = backend.reader();
    let raft_loop =
        raft_loop::RaftLoop::new(&cfg, backend, rx, transport.clone(), members.clone())?;
    let status = raft_loop.status_cell();
    let api_state = crate::api::ApiState {
        id: cfg.id,
        tx: tx.clone(),
        reader,
        status,
        members,
        transport: transport.clone(),
        backend: backend_cfg,
        startup,
        raft: cfg.raft.clone(),
    };
    rt.spawn(transport.serve(peer_listener));
    rt.spawn(crate::api::serve(client_listener, api_state));
    info!(
        id = cfg.id,
        peer = %cfg.peer_listen,
        client = %cfg.client_listen,
        "node started"
    );

    let shutdown_tx = tx.clone();
    rt.spawn(async move {
        wait_for_signal().await;
        info!("shutting down");
        let _ = shutdown_tx.send(Input::Shutdown);
    });
    drop(tx);
    let result = std::thread::Builder::new()
        .name("raft-loop".into())
        .spawn(move || raft_loop.run())
        .map_err(io_err("starting the raft thread"))?
        .join()
        .unwrap_or_else(|_| {
            Err(NodeStartError::Storage(StorageError::Invalid(
                "raft loop panicked".into(),
            )))
        });
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    if let Err(e) = &result {
        warn!("raft loop stopped: {e}");
    }
    result
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Resolve `addr` (e.g. `127.0.0.1:0` or `localhost:8000`) to a socket address.
pub fn resolve(addr: &str) -> Result<SocketAddr, ConfigError> {
    use std::net::ToSocketAddrs;
    addr.to_socket_addrs()
        .map_err(|e| ConfigError::Invalid(format!("cannot resolve {addr:?}: {e}")))?
        .next()
        .ok_or_else(|| ConfigError::Invalid(format!("{addr:?} resolves to no address")))
}
