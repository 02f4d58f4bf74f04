//! The composition root of a node: storage, raft thread, peer transport and HTTP API wired
//! together, running until a shutdown future completes (as mini-redis's
//! `server::run(listener, shutdown)`).
//!
//! - [`run`] starts a node on listeners the caller bound (tests bind `127.0.0.1:0`);
//! - [`serve`] serves an already started [`Node`];
//! - [`run_process`] is `raftbench node`: signal handlers first, so that a failure to install
//!   them stops start-up instead of leaving a node that ignores SIGTERM; then the storage is
//!   opened (the client port is bound only once the node can answer, so "process up" means
//!   recovered); then it serves until SIGTERM or SIGINT.
//!
//! The node stops when the shutdown future completes (gracefully: the raft loop finishes its
//! turn) or by itself when the raft thread ends on a fatal storage error or a panic; that
//! error is what these functions return.

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::TcpListener;
use tracing::info;

use crate::node::{self, Node, NodeConfig, NodeStartError};

/// A node's two listening sockets.
pub struct Listeners {
    /// Raft transport (peers).
    pub peer: TcpListener,
    /// HTTP API (clients).
    pub client: TcpListener,
}

impl Listeners {
    /// Bind the listen addresses of `cfg`.
    pub async fn bind(cfg: &NodeConfig) -> Result<Listeners, NodeStartError> {
        let bind = |addr: SocketAddr, what: &'static str| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| NodeStartError::Io {
                    what: format!("binding the {what} address {addr}"),
                    source,
                })
        };
        Ok(Listeners {
            peer: bind(cfg.peer_listen, "peer").await?,
            client: bind(cfg.client_listen, "client").await?,
        })
    }
}

/// Start a node from `cfg` and serve it on `listeners` until `shutdown` completes.
///
/// `cfg.advertise` must name addresses that reach these listeners (for a port-0 bind, the
/// caller learns the ports from the listeners first).
pub async fn run(
    cfg: NodeConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NodeStartError> {
    let node = node::start(&cfg, tokio::runtime::Handle::current())?;
    serve(node, listeners, shutdown).await
}

/// Serve a started node's transport and API until `shutdown` completes or the raft thread
/// stops by itself; then stop the node and return how its raft thread ended.
pub async fn serve(
    mut node: Node,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NodeStartError> {
    let handle = node.handle();
    let peer = tokio::spawn(handle.transport().clone().serve(listeners.peer));
    let api = tokio::spawn(crate::api::serve(listeners.client, handle.clone()));
    info!(id = handle.id(), "node started");
    let stopped = tokio::select! {
        _ = shutdown => None,
        r = node.stopped() => Some(r),
    };
    let result = match stopped {
        Some(r) => r,
        None => {
            info!(id = handle.id(), "shutting down");
            node.shutdown();
            node.stopped().await
        }
    };
    api.abort();
    peer.abort();
    result
}

/// Completes on SIGTERM or SIGINT. The handlers are installed when this is called (inside a
/// tokio runtime), so a failure to install them is an error now, not a node that later
/// ignores the signal.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

/// `raftbench node`: run a node process until SIGTERM/SIGINT (graceful) or a fatal error.
pub fn run_process(cfg: NodeConfig) -> Result<(), NodeStartError> {
    let io = |what: &str| {
        let what = what.to_string();
        move |source| NodeStartError::Io { what, source }
    };
    cfg.validate()?;
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
        .map_err(io("starting the tokio runtime"))?;
    let shutdown = {
        let _guard = rt.enter();
        shutdown_signal().map_err(io("installing the SIGTERM/SIGINT handlers"))?
    };
    let mut node = node::start(&cfg, rt.handle().clone())?;
    let result = match rt.block_on(Listeners::bind(&cfg)) {
        Ok(listeners) => {
            info!(id = cfg.id, peer = %cfg.peer_listen, client = %cfg.client_listen, "listening");
            rt.block_on(serve(node, listeners, shutdown))
        }
        Err(e) => {
            node.shutdown();
            let _ = rt.block_on(node.stopped());
            Err(e)
        }
    };
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    result
}
