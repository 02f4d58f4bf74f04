//! Peer transport: raft messages over TCP.
//!
//! Every frame is length-delimited (`tokio_util`'s `LengthDelimitedCodec`, up to 1 GiB so
//! that snapshots fit). A connection opens with a JSON `Hello` naming the sender and its
//! addresses (at most 64 KiB, within 5 s); every later frame is one protobuf-encoded raft
//! `Message`.
//!
//! Outbound, each peer has one task and one bounded, ordered queue. The raft loop only ever
//! `try_send`s: when a queue is full (a slow or dead peer) the message is dropped and counted
//! — raft retransmits — so a peer can never block the raft loop. A task reconnects with
//! exponential backoff (20 ms to 1 s) and drops what was queued while the peer was down.
//!
//! Fault injection lives here too: [`Transport::isolate`] drops all traffic to and from the
//! given peers (both directions, as seen from this node) until [`Transport::heal`].
//!
//! **What reaches raft.** Only the message types one raft peer sends another
//! ([`peer_may_send`]), addressed to this node, in the shape raft-rs expects: local-only
//! types (`MsgHup`, `MsgBeat`, ...) and `MsgPropose` (followers here never forward
//! proposals) are refused, dropped and counted, so a stranger's frame cannot make raft-rs
//! abort (an empty `MsgPropose` does) or commit an entry that is not a command.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use parking_lot::{Mutex, RwLock};
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};
use tracing::{debug, info, warn};

/// Largest frame accepted: snapshots travel as single messages.
const MAX_FRAME: usize = 1 << 30;
/// Largest hello accepted (a hello is a few hundred bytes of JSON).
const MAX_HELLO: usize = 64 * 1024;
/// How long a new connection may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// Messages queued per peer before new ones are dropped.
const QUEUE: usize = 4096;

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME)
        .new_codec()
}

/// Whether a raft peer may send `msg` to node `me`: a type raft-rs sends between peers,
/// addressed to `me`, in the shape raft-rs expects of it.
pub fn peer_may_send(msg: &Message, me: u64) -> Result<(), String> {
    use MessageType::*;
    let t = msg.get_msg_type();
    match t {
        MsgAppend
        | MsgAppendResponse
        | MsgRequestVote
        | MsgRequestVoteResponse
        | MsgRequestPreVote
        | MsgRequestPreVoteResponse
        | MsgSnapshot
        | MsgHeartbeat
        | MsgHeartbeatResponse
        | MsgTransferLeader
        | MsgTimeoutNow => {}
        // A follower's read index request, and the leader's answer: one entry, the
        // request's context.
        MsgReadIndex | MsgReadIndexResp if msg.entries.len() == 1 => {}
        MsgReadIndex | MsgReadIndexResp => {
            return Err(format!("{t:?} with {} entries", msg.entries.len()));
        }
        // Local to a node (MsgHup, MsgBeat, MsgUnreachable, MsgSnapStatus,
        // MsgCheckQuorum), or never forwarded here (MsgPropose).
        _ => return Err(format!("{t:?} never comes from a peer")),
    }
    if msg.to != me {
        return Err(format!(
            "{t:?} addressed to {}, not to this node ({me})",
            msg.to
        ));
    }
    if t == MsgSnapshot && !msg.has_snapshot() {
        return Err("MsgSnapshot without a snapshot".into());
    }
    Ok(())
}

/// First frame of every connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    pub id: u64,
    pub peer_addr: String,
    pub client_addr: String,
}

/// Where inbound traffic goes: the raft loop, and the shared address book.
pub trait Inbox: Send + Sync + 'static {
    /// A raft message arrived from a peer.
    fn deliver(&self, msg: Message);
    /// A message to `id` could not be sent (raft should back off that peer); `snapshot`
    /// tells whether it carried a snapshot (raft must then be told the snapshot failed).
    fn unreachable(&self, id: u64, snapshot: bool);
    /// A snapshot message to `id` was written to its connection.
    fn snapshot_sent(&self, id: u64);
    /// A peer introduced itself.
    fn hello(&self, hello: &Hello);
}

struct Peer {
    addr: String,
    tx: mpsc::Sender<Message>,
    task: tokio::task::JoinHandle<()>,
}

/// The transport of one node. Cheap to share (`Arc`).
pub struct Transport {
    hello: Bytes,
    rt: tokio::runtime::Handle,
    inbox: Arc<dyn Inbox>,
    peers: Mutex<HashMap<u64, Peer>>,
    isolated: RwLock<HashSet<u64>>,
    dropped: AtomicU64,
    /// This node's id: messages must be addressed to it.
    me: u64,
    /// Inbound messages refused by [`peer_may_send`].
    refused: AtomicU64,
}

impl Transport {
    /// A transport introducing itself with `hello`, spawning tasks on `rt`.
    pub fn new(hello: Hello, rt: tokio::runtime::Handle, inbox: Arc<dyn Inbox>) -> Arc<Self> {
        Arc::new(Transport {
            me: hello.id,
            refused: AtomicU64::new(0),
            hello: serde_json::to_vec(&hello).expect("hello serialises").into(),
            rt,
            inbox,
            peers: Mutex::new(HashMap::new()),
            isolated: RwLock::new(HashSet::new()),
            dropped: AtomicU64::new(0),
        })
    }

    /// Accept peer connections on `listener` until `stop` completes; then end every
    /// connection and wait for them, so that a stopped node keeps no inbound connection (nor,
    /// through it, its storage) alive.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        stop: impl std::future::Future<Output = ()>,
    ) {
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
                    let me = self.clone();
                    connections.spawn(async move {
                        if let Err(e) = me.inbound(stream).await {
                            debug!(%from, "peer connection closed: {e}");
                        }
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

    async fn inbound(self: &Arc<Self>, stream: TcpStream) -> std::io::Result<()> {
        stream.set_nodelay(true)?;
        // The hello is read with a small limit and a deadline: before it, the other end is
        // a stranger, who must not make this node reserve a large frame's buffer (the codec
        // reserves as soon as the length prefix arrives) or hold a connection open idle.
        let mut frames = FramedRead::new(
            stream,
            LengthDelimitedCodec::builder()
                .max_frame_length(MAX_HELLO)
                .new_codec(),
        );
        let first = match tokio::time::timeout(HELLO_TIMEOUT, frames.next()).await {
            Ok(Some(first)) => first?,
            Ok(None) => return Ok(()),
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no hello within {HELLO_TIMEOUT:?}"),
                ));
            }
        };
        let hello: Hello = serde_json::from_slice(&first)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        frames.decoder_mut().set_max_frame_length(MAX_FRAME);
        self.inbox.hello(&hello);
        // A node that joined empty learns its peers from their hellos: answer them.
        if !self.has_peer(hello.id) {
            self.set_peer(hello.id, &hello.peer_addr);
        }
        while let Some(frame) = frames.next().await {
            let frame = frame?;
            let msg = Message::parse_from_bytes(&frame)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            if msg.from != hello.id {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("peer {} sent a message from {}", hello.id, msg.from),
                ));
            }
            if self.is_isolated(msg.from) {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if let Err(why) = peer_may_send(&msg, self.me) {
                let n = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
                // Logged, but not once per message of a flood.
                if n.is_power_of_two() {
                    warn!(
                        peer = hello.id,
                        refused = n,
                        "refused a peer message: {why}"
                    );
                }
                continue;
            }
            self.inbox.deliver(msg);
        }
        Ok(())
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
            if self.is_isolated(to) {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let queued = peers.get(&to).is_some_and(|p| p.tx.try_send(msg).is_ok());
            if !queued {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                self.inbox.unreachable(to, snapshot);
            }
        }
    }

    /// Add or update peer `id` at `addr`.
    pub fn set_peer(self: &Arc<Self>, id: u64, addr: &str) {
        let mut peers = self.peers.lock();
        if peers.get(&id).is_some_and(|p| p.addr == addr) {
            return;
        }
        if let Some(old) = peers.remove(&id) {
            old.task.abort();
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let me = Arc::downgrade(self);
        let addr_owned = addr.to_string();
        let hello = self.hello.clone();
        let task = self
            .rt
            .spawn(async move { outbound(me, id, addr_owned, hello, rx).await });
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

    /// Whether peer `id` is known.
    pub fn has_peer(&self, id: u64) -> bool {
        self.peers.lock().contains_key(&id)
    }

    /// Forget peer `id` and close its connection.
    pub fn remove_peer(&self, id: u64) {
        if let Some(p) = self.peers.lock().remove(&id) {
            p.task.abort();
            info!(peer = id, "peer removed");
        }
    }

    /// Drop all traffic to and from `ids` until [`Self::heal`].
    pub fn isolate(&self, ids: &[u64]) {
        self.isolated.write().extend(ids.iter().copied());
    }

    /// Undo every [`Self::isolate`].
    pub fn heal(&self) {
        self.isolated.write().clear();
    }

    /// Peers currently isolated.
    pub fn isolated(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.isolated.read().iter().copied().collect();
        v.sort_unstable();
        v
    }

    fn is_isolated(&self, id: u64) -> bool {
        self.isolated.read().contains(&id)
    }

    /// Inbound messages refused so far because no raft peer may send them.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Messages dropped so far (full queues, unknown or isolated peers).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// One peer's sender: connect (with backoff), introduce ourselves, stream messages.
async fn outbound(
    me: std::sync::Weak<Transport>,
    id: u64,
    addr: String,
    hello: Bytes,
    mut rx: mpsc::Receiver<Message>,
) {
    let mut backoff = Duration::from_millis(20);
    loop {
        let conn = match TcpStream::connect(&addr).await {
            Ok(s) => s,
            Err(e) => {
                debug!(peer = id, %addr, "connect failed: {e}");
                let Some(t) = me.upgrade() else { return };
                // What was queued for a dead peer is stale by the time it is back.
                let mut snapshot = false;
                while let Ok(m) = rx.try_recv() {
                    snapshot |= m.get_msg_type() == MessageType::MsgSnapshot;
                    t.dropped.fetch_add(1, Ordering::Relaxed);
                }
                t.inbox.unreachable(id, snapshot);
                drop(t);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let _ = conn.set_nodelay(true);
        let mut frames = FramedWrite::new(conn, codec());
        if frames.send(hello.clone()).await.is_err() {
            continue;
        }
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
                .any(|m| m.get_msg_type() == MessageType::MsgSnapshot);
            let mut sent = true;
            for m in &batch {
                let bytes = m.write_to_bytes().expect("raft messages encode");
                if frames.feed(Bytes::from(bytes)).await.is_err() {
                    sent = false;
                    break;
                }
            }
            sent = sent && SinkExt::<Bytes>::flush(&mut frames).await.is_ok();
            let Some(t) = me.upgrade() else { return };
            if !sent {
                t.inbox.unreachable(id, snapshot);
                break 'conn;
            }
            if snapshot {
                t.inbox.snapshot_sent(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(t: MessageType, to: u64, entries: usize) -> Message {
        let mut m = Message::default();
        m.set_msg_type(t);
        m.from = 2;
        m.to = to;
        m.entries = vec![raft::eraftpb::Entry::default(); entries].into();
        m
    }

    #[test]
    fn only_what_raft_peers_send_each_other_is_accepted() {
        use MessageType::*;
        for t in [
            MsgAppend,
            MsgAppendResponse,
            MsgHeartbeat,
            MsgRequestVote,
            MsgTimeoutNow,
        ] {
            assert!(peer_may_send(&msg(t, 1, 0), 1).is_ok(), "{t:?}");
        }
        assert!(peer_may_send(&msg(MsgReadIndex, 1, 1), 1).is_ok());
        for t in [
            MsgPropose,
            MsgHup,
            MsgBeat,
            MsgUnreachable,
            MsgSnapStatus,
            MsgCheckQuorum,
        ] {
            let e = peer_may_send(&msg(t, 1, 1), 1).unwrap_err();
            assert!(e.contains("never comes from a peer"), "{t:?}: {e}");
        }
        assert!(peer_may_send(&msg(MsgReadIndex, 1, 0), 1).is_err());
        assert!(peer_may_send(&msg(MsgReadIndexResp, 1, 2), 1).is_err());
        assert!(
            peer_may_send(&msg(MsgAppend, 3, 0), 1).is_err(),
            "not addressed to us"
        );
        assert!(
            peer_may_send(&msg(MsgSnapshot, 1, 0), 1).is_err(),
            "no snapshot"
        );
    }
}
