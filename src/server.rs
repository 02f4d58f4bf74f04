//! The composition root of a node: storage, raft thread, peer transport and HTTP API wired
//! together, running until a shutdown future completes (as mini-redis's
//! `server::run(listener, shutdown)`).
//!
//! - [`run`] starts a node on listeners the caller bound (tests bind `127.0.0.1:0`);
//! - [`serve`] serves an already started [`Node`];
//! - [`run_process`] is `raftbench node`: signal handlers first, so that a failure to install
//!   them stops start-up instead of leaving a node that ignores SIGTERM (a signal during
//!   recovery still ends the process at once); then the storage is opened and recovered; then
//!   the listeners are bound (so "process up" means recovered, and a taken port fails before
//!   raft runs); then the raft thread starts and it serves until SIGTERM or SIGINT.
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
///
/// On return nothing of the node runs any more: the raft thread has ended, the API has
/// closed its connections (requests in flight get up to [`API_DRAIN`] to finish) and the
/// peer listener and its connections are gone, so the storage is closed with them.
pub async fn serve(
    mut node: Node,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NodeStartError> {
    let handle = node.handle();
    let (peer_stop, peer_stopped) = tokio::sync::oneshot::channel::<()>();
    let peer = tokio::spawn(
        handle
            .transport()
            .clone()
            .serve(listeners.peer, async move {
                let _ = peer_stopped.await;
            }),
    );
    let (api_stop, api_stopped) = tokio::sync::oneshot::channel::<()>();
    let mut api = tokio::spawn(crate::api::serve(
        listeners.client,
        handle.clone(),
        async move {
            let _ = api_stopped.await;
        },
    ));
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
    drop(handle);
    let _ = api_stop.send(());
    if tokio::time::timeout(API_DRAIN, &mut api).await.is_err() {
        api.abort();
        let _ = api.await;
    }
    let _ = peer_stop.send(());
    let _ = peer.await;
    result
}

/// How long requests in flight may take to finish once the node has stopped.
pub const API_DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Completes on SIGTERM or SIGINT, with the signal's number. The handlers are installed
/// when this is called (inside a tokio runtime), so a failure to install them is an error
/// now, not a node that later ignores the signal.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = i32> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => libc::SIGTERM,
            _ = int.recv() => libc::SIGINT,
        }
    })
}

/// End the process as `sig`'s default action would, at once: no exit handlers run (a
/// storage engine still opening on another thread must not see its statics destroyed).
fn die_of(sig: i32) -> ! {
    // SAFETY: resetting a signal's disposition and raising it are async-signal-safe libc
    // calls with no memory effects on this process; `_exit` does not return.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
        libc::_exit(128 + sig)
    }
}

/// `raftbench node`: run a node process until SIGTERM/SIGINT (graceful) or a fatal error.
pub fn run_process(cfg: NodeConfig) -> Result<(), NodeStartError> {
    let io = |what: &str| {
        let what = what.to_string();
        move |source| NodeStartError::Io { what, source }
    };
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
    let mut shutdown = Box::pin(shutdown);
    // Recovery may take a while; a signal meanwhile ends the process at once, as it would
    // without handlers (recovery is crash-safe: it is what runs after a crash).
    let opening = {
        let cfg = cfg.clone();
        rt.spawn_blocking(move || node::open(&cfg))
    };
    let opened = rt.block_on(async {
        tokio::select! {
            o = opening => Ok(o),
            sig = &mut shutdown => Err(sig),
        }
    });
    let opened = match opened {
        Err(sig) => die_of(sig),
        Ok(Ok(o)) => o?,
        Ok(Err(e)) => {
            return Err(NodeStartError::OpenPanicked(e.to_string()));
        }
    };
    // Listeners before the raft thread: a port that is taken fails the start before raft
    // has persisted anything.
    let listeners = rt.block_on(Listeners::bind(&cfg))?;
    info!(id = cfg.id, peer = %cfg.peer_listen, client = %cfg.client_listen, "listening");
    if cfg.admin_token_required() && cfg.secret.is_none() {
        tracing::warn!(
            id = cfg.id,
            "admin endpoints are refused: the client address {} is not loopback (or \
             --admin-auth always) and there is no cluster secret to check",
            cfg.client_listen
        );
    }
    let node = opened.spawn(rt.handle().clone())?;
    let result = rt.block_on(serve(node, listeners, async move {
        shutdown.await;
    }));
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    result
}
