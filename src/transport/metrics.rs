//! The transport's share of a node's `/metrics`: traffic and drops per peer, and how long
//! snapshots take to go out.
//!
//! Counters are atomics behind a per-peer label set, updated on the connection tasks and
//! in [`super::Transport::send`] (which never blocks: a family lookup takes a read lock,
//! and a write lock only the first time a peer is seen).

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use parking_lot::{Mutex, RwLock};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// At most this many peers get their own label set; traffic of any further peer id is
/// counted under `peer="0"` (no raft node has id 0). Without a cluster secret anyone can
/// connect claiming any id, and each id would otherwise add series to `/metrics` for good.
pub const MAX_LABELLED_PEERS: usize = 128;

/// The `peer` label: the other node's raft id (0: any peer beyond [`MAX_LABELLED_PEERS`]).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabel {
    pub peer: u64,
}

/// Per-peer traffic (see the module docs).
pub struct PeerMetrics {
    sent_bytes: Family<PeerLabel, Counter>,
    received_bytes: Family<PeerLabel, Counter>,
    sent_messages: Family<PeerLabel, Counter>,
    dropped_messages: Family<PeerLabel, Counter>,
    snapshot_send_seconds: Histogram,
    snapshot_send_bytes: Histogram,
    /// When a snapshot to each peer was queued (the oldest not yet written out).
    snapshot_queued: Mutex<HashMap<u64, (Instant, u64)>>,
    /// The peers with a label set of their own (see [`MAX_LABELLED_PEERS`]).
    labelled: RwLock<HashSet<u64>>,
}

impl std::fmt::Debug for PeerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerMetrics")
    }
}

impl PeerMetrics {
    /// Metrics not registered anywhere (a transport without a `/metrics`, in tests).
    pub fn unregistered() -> Self {
        PeerMetrics {
            sent_bytes: Family::default(),
            received_bytes: Family::default(),
            sent_messages: Family::default(),
            dropped_messages: Family::default(),
            snapshot_send_seconds: Histogram::new(exponential_buckets(1e-3, 2.0, 17)),
            snapshot_send_bytes: Histogram::new(exponential_buckets(1024.0, 4.0, 15)),
            snapshot_queued: Mutex::new(HashMap::new()),
            labelled: RwLock::new(HashSet::new()),
        }
    }

    /// The metrics, registered in `r`.
    pub fn register(r: &mut Registry) -> Self {
        let m = Self::unregistered();
        r.register_with_unit(
            "raftbench_peer_sent",
            "Bytes of raft messages written to each peer",
            Unit::Bytes,
            m.sent_bytes.clone(),
        );
        r.register_with_unit(
            "raftbench_peer_received",
            "Bytes of raft messages read from each peer",
            Unit::Bytes,
            m.received_bytes.clone(),
        );
        r.register(
            "raftbench_peer_sent_messages",
            "Raft messages written to each peer",
            m.sent_messages.clone(),
        );
        r.register(
            "raftbench_peer_dropped_messages",
            "Raft messages to or from each peer dropped (full queue, unreachable or partitioned peer)",
            m.dropped_messages.clone(),
        );
        r.register_with_unit(
            "raftbench_snapshot_send",
            "Sending a snapshot to a peer, from being queued to being written out",
            Unit::Seconds,
            m.snapshot_send_seconds.clone(),
        );
        r.register_with_unit(
            "raftbench_snapshot_send",
            "Sizes of snapshots sent",
            Unit::Bytes,
            m.snapshot_send_bytes.clone(),
        );
        m
    }

    /// `peer`'s label set, or the shared one beyond the cap.
    fn label(&self, peer: u64) -> PeerLabel {
        if self.labelled.read().contains(&peer) {
            return PeerLabel { peer };
        }
        let mut all = self.labelled.write();
        if all.len() < MAX_LABELLED_PEERS {
            all.insert(peer);
            let l = PeerLabel { peer };
            // Every per-peer series from the first contact, at 0: `rate()` over a series
            // that appears only at the first drop would miss that drop.
            for f in [
                &self.sent_bytes,
                &self.received_bytes,
                &self.sent_messages,
                &self.dropped_messages,
            ] {
                let _ = f.get_or_create(&l);
            }
            l
        } else {
            PeerLabel { peer: 0 }
        }
    }

    pub fn sent(&self, peer: u64, messages: u64, bytes: u64) {
        let l = self.label(peer);
        self.sent_messages.get_or_create(&l).inc_by(messages);
        self.sent_bytes.get_or_create(&l).inc_by(bytes);
    }

    pub fn received(&self, peer: u64, bytes: u64) {
        self.received_bytes
            .get_or_create(&self.label(peer))
            .inc_by(bytes);
    }

    pub fn dropped(&self, peer: u64, messages: u64) {
        self.dropped_messages
            .get_or_create(&self.label(peer))
            .inc_by(messages);
    }

    /// A snapshot of `bytes` to `peer` was queued (the first one not yet sent counts).
    pub fn snapshot_queued(&self, peer: u64, bytes: u64) {
        self.snapshot_queued
            .lock()
            .entry(peer)
            .or_insert((Instant::now(), bytes));
    }

    /// The snapshot queued for `peer` was written out.
    pub fn snapshot_sent(&self, peer: u64) {
        if let Some((at, bytes)) = self.snapshot_queued.lock().remove(&peer) {
            self.snapshot_send_seconds
                .observe(at.elapsed().as_secs_f64());
            self.snapshot_send_bytes.observe(bytes as f64);
        }
    }

    /// The snapshot queued for `peer` was lost (dropped or the connection failed).
    pub fn snapshot_lost(&self, peer: u64) {
        self.snapshot_queued.lock().remove(&peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_beyond_the_cap_share_one_label_set() {
        let m = PeerMetrics::unregistered();
        for peer in 1..=(MAX_LABELLED_PEERS as u64 + 50) {
            m.received(peer, 10);
        }
        m.received(1, 5);
        let mut r = Registry::default();
        r.register("x", "x", m.received_bytes.clone());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &r).unwrap();
        let series = text.lines().filter(|l| l.starts_with("x_total{")).count();
        assert_eq!(series, MAX_LABELLED_PEERS + 1, "{text}");
        assert!(text.contains("x_total{peer=\"0\"} 500"), "{text}");
        assert!(text.contains("x_total{peer=\"1\"} 15"), "{text}");
    }
}
