//! Injected network faults, per peer, as this node sees its links: partitions that cut one
//! direction or both, and outbound links that delay (with jitter) and lose messages.
//!
//! They live in the transport so that they work on any host, without root, `tc netem` or
//! firewall rules, and only for raft traffic (the client API is untouched, as a partition
//! between replicas is). A delay is applied where a message leaves: it is queued with the
//! moment it may be sent, and the peer's sender waits for it, keeping the order (as TCP
//! does): under load a message then waits as long as the slowest one queued ahead of it,
//! so jitter widens the delay's spread only when messages are sparse. A heal or a new
//! degradation releases what already waits. A degraded link in both directions is two
//! calls: one on each end.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use rand::Rng;
use serde::Serialize;

use crate::wire::{Direction, LinkRequest};

/// What is injected on the link to one peer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LinkFault {
    /// Messages from the peer are dropped.
    pub drop_in: bool,
    /// Messages to the peer are dropped.
    pub drop_out: bool,
    /// Messages to the peer wait this long before they are sent...
    pub delay_ms: u64,
    /// ... plus or minus up to this, uniformly.
    pub jitter_ms: u64,
    /// Messages to the peer are lost with this probability.
    pub loss: f64,
}

impl LinkFault {
    fn is_clear(&self) -> bool {
        *self == LinkFault::default()
    }
}

/// What to do with one outbound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outbound {
    Drop,
    /// Send it as soon as possible (no fault on this link: the common case, which reads no
    /// clock).
    Now,
    /// Send it at this moment, unless the links have changed since (their epoch is no
    /// longer this one): a heal releases what waits at once.
    At((Instant, u64)),
}

/// The faults on every link of this node.
#[derive(Debug, Default)]
pub struct Links {
    faults: RwLock<HashMap<u64, LinkFault>>,
    /// Bumped by every heal and degradation, so that messages queued under an older
    /// delay go out without it.
    epoch: AtomicU64,
}

impl Links {
    /// The links' current epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Cut the links to `ids` in `direction` (added to what is already injected).
    pub fn partition(&self, ids: &[u64], direction: Direction) {
        let mut f = self.faults.write();
        for id in ids {
            let l = f.entry(*id).or_default();
            l.drop_in |= direction != Direction::Out;
            l.drop_out |= direction != Direction::In;
        }
    }

    /// Degrade the outbound links to the request's peers (replacing an earlier degradation
    /// of those links; partitions stay).
    pub fn degrade(&self, r: &LinkRequest) {
        let mut f = self.faults.write();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        for id in &r.peers {
            let l = f.entry(*id).or_default();
            l.delay_ms = r.delay_ms;
            l.jitter_ms = r.jitter_ms;
            l.loss = r.loss;
            if l.is_clear() {
                f.remove(id);
            }
        }
    }

    /// Undo every fault.
    pub fn heal(&self) {
        self.faults.write().clear();
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether a message from `from` is to be dropped.
    pub fn drops_from(&self, from: u64) -> bool {
        self.faults.read().get(&from).is_some_and(|l| l.drop_in)
    }

    /// What to do with a message to `to`, queued now.
    pub fn outbound(&self, to: u64) -> Outbound {
        let Some(l) = self.faults.read().get(&to).copied() else {
            return Outbound::Now;
        };
        let (now, epoch) = (Instant::now(), self.epoch());
        let mut rng = rand::rng();
        if l.drop_out || (l.loss > 0.0 && rng.random_bool(l.loss)) {
            return Outbound::Drop;
        }
        let jitter = match l.jitter_ms {
            0 => 0,
            j => rng.random_range(-(j as i64)..=j as i64),
        };
        match (l.delay_ms as i64 + jitter).max(0) as u64 {
            0 => Outbound::Now,
            ms => Outbound::At((now + Duration::from_millis(ms), epoch)),
        }
    }

    /// Peers some traffic is dropped to or from.
    pub fn isolated(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .faults
            .read()
            .iter()
            .filter(|(_, l)| l.drop_in || l.drop_out)
            .map(|(id, _)| *id)
            .collect();
        v.sort_unstable();
        v
    }

    /// Every link with a fault, by peer.
    pub fn faults(&self) -> std::collections::BTreeMap<u64, LinkFault> {
        self.faults.read().iter().map(|(k, v)| (*k, *v)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_cut_the_direction_they_name() {
        let l = Links::default();
        l.partition(&[2], Direction::In);
        assert!(l.drops_from(2));
        assert_eq!(l.outbound(2), Outbound::Now);
        l.partition(&[3], Direction::Out);
        assert!(!l.drops_from(3));
        assert_eq!(l.outbound(3), Outbound::Drop);
        l.partition(&[2], Direction::Out);
        assert_eq!(l.outbound(2), Outbound::Drop);
        assert_eq!(l.isolated(), vec![2, 3]);
        l.heal();
        assert!(!l.drops_from(2) && l.isolated().is_empty());
    }

    #[test]
    fn degraded_links_delay_within_the_jitter_and_lose_their_share() {
        let l = Links::default();
        l.degrade(&LinkRequest {
            peers: vec![2],
            delay_ms: 50,
            jitter_ms: 10,
            loss: 0.25,
        });
        let mut dropped = 0;
        for _ in 0..4000 {
            let before = Instant::now();
            match l.outbound(2) {
                Outbound::Drop => dropped += 1,
                Outbound::Now => panic!("a delayed link sent at once"),
                Outbound::At((t, _)) => {
                    let d = t.duration_since(before);
                    assert!(
                        d >= Duration::from_millis(40) && d <= Duration::from_millis(61),
                        "{d:?}"
                    );
                }
            }
        }
        // 25 % of 4000 is 1000; the bounds are over 6 standard deviations wide.
        assert!((800..1200).contains(&dropped), "{dropped}");
        // Another peer's link is untouched; clearing the degradation removes it.
        assert_eq!(l.outbound(3), Outbound::Now);
        // A change of the links is a new epoch: what was queued before goes out at once.
        let before = l.epoch();
        l.degrade(&LinkRequest {
            peers: vec![2],
            delay_ms: 0,
            jitter_ms: 0,
            loss: 0.0,
        });
        assert!(l.faults().is_empty());
        assert!(l.epoch() > before);
    }
}
