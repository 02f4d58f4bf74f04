//! Peer transport: raft messages over TCP, between nodes that proved the cluster secret.
//!
//! - [`handshake`]: every connection opens with an HMAC challenge over the cluster secret
//!   (both ends prove it), and the dialled node refuses members it knows were removed,
//!   before any raft message is read;
//! - [`frames`]: then one tagged, length-delimited frame per raft message, at most
//!   [`Limits::max_frame`] (32 MiB); a larger message (a big snapshot) travels in chunks;
//! - [`allow`]: only the message types one raft peer sends another, addressed to this
//!   node and in the shape raft-rs expects, reach raft ([`peer_may_send`]); the rest are
//!   dropped and counted.
//!
//! Inbound connections are capped in total, while handshaking (a new one closes the oldest
//! one still handshaking) and per peer (a newer connection from a peer closes its oldest),
//! so a flood of half-open connections costs a bounded amount and cannot keep the members'
//! own connections out. Every refusal is
//! counted in [`Transport::security`] (part of `/status`) and logged — the first of a kind
//! and then at every power of two, so a flood cannot flood the log.
//!
//! Outbound, each peer has one task and one bounded, ordered queue. The raft loop only ever
//! `try_send`s: when a queue is full (a slow or dead peer) the message is dropped and counted
//! — raft retransmits — so a peer can never block the raft loop. A task reconnects with
//! exponential backoff (20 ms to 1 s) and drops what was queued while the peer was down.
//!
//! Fault injection lives here too ([`links`]): [`Transport::partition`] drops traffic to
//! and/or from the given peers (one direction or both, as seen from this node) and
//! [`Transport::degrade`] delays and loses messages to them, until [`Transport::heal`].

pub mod allow;
pub mod frames;
pub mod handshake;
pub mod links;
pub mod metrics;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::SinkExt;
use parking_lot::Mutex;
use raft::eraftpb::{Message, MessageType};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub use allow::peer_may_send;
pub use frames::Limits;
pub use handshake::{HandshakeError, Hello, Identity};
pub use metrics::PeerMetrics;

use crate::wire::{ClusterSecret, PeerSecurity};

/// Messages queued per peer before new ones are dropped.
const QUEUE: usize = 4096;

/// Where inbound traffic goes: the raft loop, and the shared address book.
pub trait Inbox: Send + Sync + 'static {
    /// A raft message arrived from a peer (and passed [`peer_may_send`]).
    fn deliver(&self, msg: Message);
    /// A message to `id` could not be sent (raft should back off that peer); `snapshot`
    /// tells whether it carried a snapshot (raft must then be told the snapshot failed).
    fn unreachable(&self, id: u64, snapshot: bool);
    /// A snapshot message to `id` was written to its connection.
    fn snapshot_sent(&self, id: u64);
    /// A peer proved itself and introduced itself; returns the address to reach it at, if
    /// this node should (the replicated address book's, or the hello's for a node that
    /// joined empty and knows no book yet).
    fn hello(&self, hello: &Hello) -> Option<String>;
    /// Whether node `id` may connect: not a member known to be removed.
    fn admits(&self, id: u64) -> bool;
}

struct Peer {
    addr: String,
    /// Messages, with the moment each may be sent on a delayed link (and the links' epoch
    /// then).
    tx: mpsc::Sender<(Option<(Instant, u64)>, Message)>,
    task: tokio::task::JoinHandle<()>,
}

/// A count of refusals of one kind that logs the first one and then every power of two.
#[derive(Default)]
struct Refusals(AtomicU64);

impl Refusals {
    /// Count one; whether this one should be logged.
    fn count(&self) -> (u64, bool) {
        let n = self.0.fetch_add(1, Ordering::Relaxed) + 1;
        (n, n.is_power_of_two())
    }
    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
struct Counters {
    handshakes_refused: Refusals,
    auth_failures: Refusals,
    dial_auth_failures: Refusals,
    connections_refused: Refusals,
    connections_replaced: AtomicU64,
    handshakes_evicted: AtomicU64,
    frames_refused: Refusals,
    messages_refused: Refusals,
}

/// The transport of one node. Cheap to share (`Arc`).
pub struct Transport {
    me: Identity,
    secret: Option<ClusterSecret>,
    limits: Limits,
    rt: tokio::runtime::Handle,
    inbox: Arc<dyn Inbox>,
    peers: Mutex<HashMap<u64, Peer>>,
    links: links::Links,
    dropped: AtomicU64,
    /// Per-peer traffic for `/metrics`.
    metrics: PeerMetrics,
    counters: Counters,
    last_refusal: Mutex<Option<String>>,
    /// Authenticated inbound connections by peer, oldest first.
    inbound: Mutex<HashMap<u64, VecDeque<(u64, CancellationToken)>>>,
    /// Inbound connections still in their handshake, oldest first, with their source.
    handshaking: Mutex<VecDeque<(u64, std::net::IpAddr, CancellationToken)>>,
    next_connection: AtomicU64,
}

impl Transport {
    /// The transport of node `me`, proving `secret` (if any) to its peers, spawning tasks
    /// on `rt`, counting its traffic in `metrics`.
    pub fn new(
        me: Identity,
        secret: Option<ClusterSecret>,
        limits: Limits,
        rt: tokio::runtime::Handle,
        inbox: Arc<dyn Inbox>,
        metrics: PeerMetrics,
    ) -> Arc<Self> {
        if secret.is_none() {
            warn!(
                id = me.id,
                "no cluster secret: anyone who can reach the peer port {} can speak raft to \
                 this node (pass --cluster-secret-file)",
                me.peer_addr
            );
        }
        Arc::new(Transport {
            me,
            secret,
            limits,
            rt,
            inbox,
            peers: Mutex::new(HashMap::new()),
            links: links::Links::default(),
            dropped: AtomicU64::new(0),
            metrics,
            counters: Counters::default(),
            last_refusal: Mutex::new(None),
            inbound: Mutex::new(HashMap::new()),
            handshaking: Mutex::new(VecDeque::new()),
            next_connection: AtomicU64::new(0),
        })
    }

    /// Record a refusal: counted by the caller, remembered for `/status`, logged when
    /// `log` says so.
    fn refusal(&self, (n, log): (u64, bool), what: &str, why: String) {
        if log {
            warn!(id = self.me.id, total = n, "{what}: {why}");
        }
        *self.last_refusal.lock() = Some(format!("{what}: {why}"));
    }

    /// Accept peer connections on `listener` until `stop` completes; then end every
    /// connection and wait for them, so that a stopped node keeps no inbound connection (nor,
    /// through it, its storage) alive.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        stop: impl std::future::Future<Output = ()>,
    ) {
        let connections_left = Arc::new(Semaphore::new(self.limits.max_connections));
        let mut connections = tokio::task::JoinSet::new();
        tokio::pin!(stop);
        loop {
            // Reap finished connection tasks so the set does not grow without bound.
            while connections.try_join_next().is_some() {}
            let accepted = tokio::select! {
                _ = &mut stop => break,
                a = listener.accept() => a,
            };
            match accepted {
                Ok((stream, from)) => {
                    let Ok(connection) = connections_left.clone().try_acquire_owned() else {
                        // Closed at once: the cap is what bounds a flood's cost.
                        drop(stream);
                        self.refusal(
                            self.counters.connections_refused.count(),
                            "refused a peer connection",
                            format!(
                                "from {from}: {} connections already (the cap)",
                                self.limits.max_connections
                            ),
                        );
                        continue;
                    };
                    let (number, handshake) = self.register_handshake(from.ip());
                    let me = self.clone();
                    connections.spawn(async move {
                        let _connection = connection;
                        me.inbound(stream, from, number, handshake).await;
                    });
                }
                Err(e) => {
                    warn!("accepting a peer connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        connections.shutdown().await;
    }

    /// Note a new connection from `ip` in its handshake. Beyond the per-source cap, the
    /// oldest one still handshaking from `ip` is closed; beyond the total cap, the oldest
    /// one. A member's handshake takes one round trip, so a flood of idle connections
    /// pushes out the flood's own older connections: from another host, never the
    /// member's; from the member's own host, only if the flood opens dozens of connections
    /// within that round trip.
    fn register_handshake(&self, ip: std::net::IpAddr) -> (u64, CancellationToken) {
        let number = self.next_connection.fetch_add(1, Ordering::Relaxed);
        let token = CancellationToken::new();
        let mut pending = self.handshaking.lock();
        let from_ip = pending.iter().filter(|(_, i, _)| *i == ip).count();
        let evict = |pending: &mut VecDeque<(u64, std::net::IpAddr, CancellationToken)>,
                     at: usize| {
            if let Some((_, _, t)) = pending.remove(at) {
                t.cancel();
                self.counters
                    .handshakes_evicted
                    .fetch_add(1, Ordering::Relaxed);
            }
        };
        if from_ip >= self.limits.max_handshakes_per_ip
            && let Some(at) = pending.iter().position(|(_, i, _)| *i == ip)
        {
            evict(&mut pending, at);
        }
        pending.push_back((number, ip, token.clone()));
        while pending.len() > self.limits.max_handshakes {
            evict(&mut pending, 0);
        }
        (number, token)
    }

    async fn inbound(
        self: &Arc<Self>,
        stream: TcpStream,
        from: SocketAddr,
        number: u64,
        handshake: CancellationToken,
    ) {
        let _ = stream.set_nodelay(true);
        let accepted = tokio::select! {
            _ = handshake.cancelled() => Err(HandshakeError::Evicted),
            a = handshake::accept(stream, &self.me, self.limits.max_frame, self.secret.as_ref(), |id| {
                self.inbox.admits(id)
            }) => a,
        };
        self.handshaking.lock().retain(|(n, _, _)| *n != number);
        let (mut frames, hello) = match accepted {
            Ok(a) => a,
            Err(e) => {
                if e.is_auth_failure() {
                    self.counters.auth_failures.count();
                }
                self.refusal(
                    self.counters.handshakes_refused.count(),
                    "refused a peer connection",
                    format!("from {from}: {e}"),
                );
                return;
            }
        };
        frames
            .codec_mut()
            .set_max_frame_length(self.limits.max_frame);
        let cancel = self.register_inbound(hello.id, number);
        // Checked again once registered: a removal applied meanwhile closes it now, or
        // `remove_peer` (which runs after the removal is applied) finds it registered.
        if !self.inbox.admits(hello.id) {
            self.unregister_inbound(hello.id, number);
            self.counters.auth_failures.count();
            self.refusal(
                self.counters.handshakes_refused.count(),
                "refused a peer connection",
                format!("from {from}: node {} was removed", hello.id),
            );
            return;
        }
        // A node that joined empty learns its peers from their hellos: answer them.
        if let Some(addr) = self.inbox.hello(&hello) {
            self.set_peer_if_admitted(hello.id, &addr);
        }
        let read = tokio::select! {
            _ = cancel.cancelled() => Ok(()),
            r = self.read_messages(&mut frames, hello.id) => r,
        };
        self.unregister_inbound(hello.id, number);
        if let Err(why) = read {
            self.refusal(
                self.counters.frames_refused.count(),
                "closed a peer connection",
                format!("node {} at {from}: {why}", hello.id),
            );
        }
    }

    fn unregister_inbound(&self, peer: u64, number: u64) {
        let mut all = self.inbound.lock();
        if let Some(conns) = all.get_mut(&peer) {
            conns.retain(|(n, _)| *n != number);
            if conns.is_empty() {
                all.remove(&peer);
            }
        }
    }

    /// Note a new authenticated connection from `peer`; closes its oldest beyond the cap
    /// (a peer that restarted may leave a half-open one behind).
    fn register_inbound(&self, peer: u64, number: u64) -> CancellationToken {
        let token = CancellationToken::new();
        let mut all = self.inbound.lock();
        let conns = all.entry(peer).or_default();
        conns.push_back((number, token.clone()));
        while conns.len() > self.limits.max_per_peer {
            let (_, oldest) = conns.pop_front().expect("over the cap");
            oldest.cancel();
            self.counters
                .connections_replaced
                .fetch_add(1, Ordering::Relaxed);
        }
        token
    }

    /// Read raft messages from authenticated peer `peer` until it closes (see
    /// [`frames::read_messages`]): isolated peers' messages are dropped, those no raft peer
    /// sends are refused and counted, the rest go to raft.
    async fn read_messages<S>(
        &self,
        frames: &mut tokio_util::codec::Framed<S, tokio_util::codec::LengthDelimitedCodec>,
        peer: u64,
    ) -> Result<(), String>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        frames::read_messages(frames, &self.limits, peer, |msg, bytes| {
            self.metrics.received(peer, bytes);
            if self.links.drops_from(msg.from) {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                self.metrics.dropped(peer, 1);
                return;
            }
            if let Err(why) = peer_may_send(&msg, self.me.id) {
                self.refusal(
                    self.counters.messages_refused.count(),
                    "refused a peer message",
                    format!("from node {peer}: {why}"),
                );
                return;
            }
            self.inbox.deliver(msg);
        })
        .await
    }

    /// Queue `msgs` for their peers without blocking; drops (and counts) what cannot be
    /// queued.
    pub fn send(&self, msgs: Vec<Message>) {
        if msgs.is_empty() {
            return;
        }
        let peers = self.peers.lock();
        for msg in msgs {
            let to = msg.to;
            let snapshot = msg.get_msg_type() == MessageType::MsgSnapshot;
            let at = match self.links.outbound(to) {
                links::Outbound::Drop => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    self.metrics.dropped(to, 1);
                    // raft waits for the outcome of a snapshot it sent: a lost one must be
                    // reported, or the follower stays paused until the leader changes.
                    if snapshot {
                        self.inbox.unreachable(to, true);
                    }
                    continue;
                }
                links::Outbound::Now => None,
                links::Outbound::At(at) => Some(at),
            };
            let snapshot_bytes = snapshot.then(|| msg.get_snapshot().get_data().len() as u64);
            let queued = peers
                .get(&to)
                .is_some_and(|p| p.tx.try_send((at, msg)).is_ok());
            if !queued {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                self.metrics.dropped(to, 1);
                self.inbox.unreachable(to, snapshot);
            } else if let Some(bytes) = snapshot_bytes {
                self.metrics.snapshot_queued(to, bytes);
            }
        }
    }

    /// Add or update peer `id` at `addr`.
    pub fn set_peer(self: &Arc<Self>, id: u64, addr: &str) {
        let mut peers = self.peers.lock();
        self.set_peer_locked(&mut peers, id, addr);
    }

    fn set_peer_locked(self: &Arc<Self>, peers: &mut HashMap<u64, Peer>, id: u64, addr: &str) {
        if peers.get(&id).is_some_and(|p| p.addr == addr) {
            return;
        }
        if let Some(old) = peers.remove(&id) {
            old.task.abort();
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let me = Arc::downgrade(self);
        let addr_owned = addr.to_string();
        let task = self
            .rt
            .spawn(async move { outbound(me, id, addr_owned, rx).await });
        info!(peer = id, addr, "peer added");
        peers.insert(
            id,
            Peer {
                addr: addr.to_string(),
                tx,
                task,
            },
        );
    }

    /// [`Self::set_peer`] for a peer learnt from a hello, unless it is not (or no longer)
    /// admitted: checked under the peers' lock, so a removal's [`Self::remove_peer`] either
    /// comes after (and removes it) or is seen here.
    fn set_peer_if_admitted(self: &Arc<Self>, id: u64, addr: &str) {
        let mut peers = self.peers.lock();
        if peers.contains_key(&id) || !self.inbox.admits(id) {
            return;
        }
        self.set_peer_locked(&mut peers, id, addr);
    }

    /// The peers this transport sends to or has authenticated connections from.
    pub fn peer_ids(&self) -> Vec<u64> {
        let mut ids: HashSet<u64> = self.peers.lock().keys().copied().collect();
        ids.extend(self.inbound.lock().keys().copied());
        ids.into_iter().collect()
    }

    /// Whether peer `id` is known.
    pub fn has_peer(&self, id: u64) -> bool {
        self.peers.lock().contains_key(&id)
    }

    /// Forget peer `id` and close its connections.
    pub fn remove_peer(&self, id: u64) {
        if let Some(p) = self.peers.lock().remove(&id) {
            p.task.abort();
            info!(peer = id, "peer removed");
        }
        if let Some(conns) = self.inbound.lock().remove(&id) {
            for (_, c) in conns {
                c.cancel();
            }
        }
    }

    /// Drop all traffic to and from `ids` until [`Self::heal`].
    pub fn isolate(&self, ids: &[u64]) {
        self.partition(ids, crate::wire::Direction::Both);
    }

    /// Drop traffic with `ids` in `direction` (as seen from this node) until
    /// [`Self::heal`].
    pub fn partition(&self, ids: &[u64], direction: crate::wire::Direction) {
        self.links.partition(ids, direction);
    }

    /// Delay and lose messages to the request's peers until [`Self::heal`].
    pub fn degrade(&self, r: &crate::wire::LinkRequest) {
        self.links.degrade(r);
    }

    /// Undo every partition and degradation.
    pub fn heal(&self) {
        self.links.heal();
    }

    /// Peers some traffic is dropped to or from.
    pub fn isolated(&self) -> Vec<u64> {
        self.links.isolated()
    }

    /// Every link with an injected fault, by peer.
    pub fn link_faults(&self) -> std::collections::BTreeMap<u64, links::LinkFault> {
        self.links.faults()
    }

    /// Messages dropped so far (full queues, unknown or isolated peers).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// What the transport refused so far, for `/status` (the caller adds what the API and
    /// the raft loop refused).
    pub fn security(&self) -> PeerSecurity {
        let c = &self.counters;
        PeerSecurity {
            authenticated: self.secret.is_some(),
            warning: self.secret.is_none().then(|| {
                format!(
                    "no cluster secret: anyone who can reach {} can speak raft to this node",
                    self.me.peer_addr
                )
            }),
            handshakes_refused: c.handshakes_refused.get(),
            auth_failures: c.auth_failures.get(),
            dial_auth_failures: c.dial_auth_failures.get(),
            connections_refused: c.connections_refused.get(),
            connections_replaced: c.connections_replaced.load(Ordering::Relaxed),
            handshakes_evicted: c.handshakes_evicted.load(Ordering::Relaxed),
            frames_refused: c.frames_refused.get(),
            messages_refused: c.messages_refused.get(),
            last_refusal: self.last_refusal.lock().clone(),
            ..PeerSecurity::default()
        }
    }

    /// The frame limit this transport sends and accepts.
    pub fn limits(&self) -> Limits {
        self.limits
    }
}

/// One peer's sender: connect (with backoff), prove ourselves, stream messages.
async fn outbound(
    me: std::sync::Weak<Transport>,
    id: u64,
    addr: String,
    mut rx: mpsc::Receiver<(Option<(Instant, u64)>, Message)>,
) {
    let mut backoff = Duration::from_millis(20);
    let (identity, secret, limits) = match me.upgrade() {
        Some(t) => (t.me.clone(), t.secret.clone(), t.limits),
        None => return,
    };
    loop {
        let connected = match TcpStream::connect(&addr).await {
            Ok(conn) => {
                let _ = conn.set_nodelay(true);
                handshake::dial(conn, &identity, id, secret.as_ref())
                    .await
                    .map_err(|e| {
                        if let Some(t) = me.upgrade() {
                            if e.is_auth_failure() {
                                let n = t.counters.dial_auth_failures.count();
                                t.refusal(
                                    n,
                                    "could not connect to a peer",
                                    format!("node {id} at {addr}: {e}"),
                                );
                            } else {
                                debug!(peer = id, %addr, "handshake failed: {e}");
                            }
                        }
                    })
            }
            Err(e) => {
                debug!(peer = id, %addr, "connect failed: {e}");
                Err(())
            }
        };
        let Ok((mut frames, peer_max_frame)) = connected else {
            let Some(t) = me.upgrade() else { return };
            // What was queued for a dead peer is stale by the time it is back.
            let mut snapshot = false;
            while let Ok((_, m)) = rx.try_recv() {
                snapshot |= m.get_msg_type() == MessageType::MsgSnapshot;
                t.dropped.fetch_add(1, Ordering::Relaxed);
                t.metrics.dropped(id, 1);
            }
            if snapshot {
                t.metrics.snapshot_lost(id);
            }
            t.inbox.unreachable(id, snapshot);
            drop(t);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
            continue;
        };
        // Frames no larger than either end accepts (`--peer-max-frame` may differ).
        let max_frame = limits.max_frame.min(peer_max_frame);
        frames.codec_mut().set_max_frame_length(max_frame);
        backoff = Duration::from_millis(20);
        debug!(peer = id, %addr, "connected");
        'conn: loop {
            let Some(first) = rx.recv().await else {
                return; // peer removed
            };
            let mut batch = vec![first];
            while batch.len() < 256 {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            let snapshot = batch
                .iter()
                .any(|(_, m)| m.get_msg_type() == MessageType::MsgSnapshot);
            let mut sent = true;
            let mut bytes = 0u64;
            'batch: for (at, m) in &batch {
                // A delayed link: what was fed goes out first, then this waits its moment
                // (unless the link was healed or changed since it was queued).
                if let Some((at, epoch)) = *at
                    && at > Instant::now()
                    && me.upgrade().is_some_and(|t| t.links.epoch() == epoch)
                {
                    if SinkExt::<bytes::Bytes>::flush(&mut frames).await.is_err() {
                        sent = false;
                        break 'batch;
                    }
                    tokio::time::sleep_until(at.into()).await;
                }
                for frame in frames::encode(m, max_frame) {
                    bytes += frame.len() as u64;
                    if frames.feed(frame).await.is_err() {
                        sent = false;
                        break 'batch;
                    }
                }
            }
            sent = sent && SinkExt::<bytes::Bytes>::flush(&mut frames).await.is_ok();
            let Some(t) = me.upgrade() else { return };
            if !sent {
                t.metrics.dropped(id, batch.len() as u64);
                if snapshot {
                    t.metrics.snapshot_lost(id);
                }
                t.inbox.unreachable(id, snapshot);
                break 'conn;
            }
            t.metrics.sent(id, batch.len() as u64, bytes);
            if snapshot {
                t.metrics.snapshot_sent(id);
                t.inbox.snapshot_sent(id);
            }
        }
    }
}
