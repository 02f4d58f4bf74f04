//! The address book and the membership the transport admits.
//!
//! Addresses are part of the replicated state: each member's addresses live in the KV state
//! under a reserved key ([`member_key`]), written when the member is added (in the same
//! atomic apply as the conf change) and at bootstrap. Snapshots therefore carry them, so a
//! node that joins or restarts from a snapshot knows every peer.
//!
//! The replicated book always wins. Besides it, this keeps addresses the node was *told*
//! — the initial peers of its configuration, a conf change being applied — and, for a
//! node that joined empty and has no book yet, what its peers said in their hellos; a
//! hello never replaces an address the replicated book holds (a forged hello must not
//! redirect clients or peers).
//!
//! It also keeps the current membership (the conf state's voters and learners, set by the
//! raft loop) and knows which nodes were removed (a replicated tombstone, [`removed_key`],
//! written with the removal): the transport refuses connections from removed nodes
//! ([`Members::admits`]). An id this node has never heard of is admitted, as etcd's peer
//! handler does: this node's applied membership may lag the cluster's (a node added while it
//! was down may be the leader now, and only that leader can bring it up to date), and every
//! peer has already proven the cluster secret.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use parking_lot::RwLock;

use super::MemberAddrs;
use crate::storage::KvReader;

/// Keys under this prefix are raftbench's own; the HTTP API refuses them.
pub const MEMBER_KEY_PREFIX: &[u8] = b"\0raftbench/member/";

/// The KV key holding member `id`'s addresses (JSON).
pub fn member_key(id: u64) -> Vec<u8> {
    let mut k = MEMBER_KEY_PREFIX.to_vec();
    k.extend_from_slice(id.to_string().as_bytes());
    k
}

/// Keys under this prefix record removed members (the value is empty).
pub const REMOVED_KEY_PREFIX: &[u8] = b"\0raftbench/removed/";

/// The KV key recording that member `id` was removed.
pub fn removed_key(id: u64) -> Vec<u8> {
    let mut k = REMOVED_KEY_PREFIX.to_vec();
    k.extend_from_slice(id.to_string().as_bytes());
    k
}

/// Shared address book (cheap to clone).
#[derive(Clone)]
pub struct Members {
    my_id: u64,
    map: Arc<RwLock<HashMap<u64, MemberAddrs>>>,
    reader: KvReader,
    /// Voters and learners of the applied conf state (empty: a node that joined and has
    /// not received its first snapshot yet).
    conf: Arc<RwLock<BTreeSet<u64>>>,
}

impl Members {
    pub fn new(my_id: u64, reader: KvReader) -> Self {
        Members {
            my_id,
            map: Arc::new(RwLock::new(HashMap::new())),
            reader,
            conf: Arc::default(),
        }
    }

    /// This node's id.
    pub fn my_id(&self) -> u64 {
        self.my_id
    }

    /// Record `id`'s addresses (from the config or a conf change being applied).
    pub fn learn(&self, id: u64, addrs: MemberAddrs) {
        self.map.write().insert(id, addrs);
    }

    /// Record what a peer's hello said, unless its addresses are already known: a hello
    /// only informs a node that knows nothing of the peer yet (one that joined empty).
    pub fn learn_from_hello(&self, id: u64, addrs: MemberAddrs) {
        if self.replicated(id).is_some() {
            return;
        }
        self.map.write().entry(id).or_insert(addrs);
    }

    /// The membership of the applied conf state.
    pub fn set_conf(&self, ids: impl IntoIterator<Item = u64>) {
        *self.conf.write() = ids.into_iter().collect();
    }

    /// Whether this node has a membership yet (false: it joined empty and waits for the
    /// leader's snapshot).
    pub fn has_conf(&self) -> bool {
        !self.conf.read().is_empty()
    }

    /// Whether member `id` was removed from the cluster (as far as this node has applied).
    pub fn is_removed(&self, id: u64) -> bool {
        matches!(self.reader.get(&removed_key(id)), Ok(Some(_)))
    }

    /// Whether node `id` may connect to this one: a current member, or any node not known
    /// to be removed (see the module docs).
    pub fn admits(&self, id: u64) -> bool {
        self.conf.read().contains(&id) || !self.is_removed(id)
    }

    /// Forget `id`.
    pub fn forget(&self, id: u64) {
        self.map.write().remove(&id);
    }

    /// `id`'s addresses: from the replicated state, else as told (see the module docs).
    pub fn get(&self, id: u64) -> Option<MemberAddrs> {
        self.replicated(id)
            .or_else(|| self.map.read().get(&id).cloned())
    }

    fn replicated(&self, id: u64) -> Option<MemberAddrs> {
        let stored = self.reader.get(&member_key(id)).ok()??;
        serde_json::from_slice(&stored).ok()
    }
}
