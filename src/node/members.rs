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
//! raft loop) and the nodes being added through the membership API: the transport admits
//! peer connections only from those ([`Members::admits`]).

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

/// Shared address book (cheap to clone).
#[derive(Clone)]
pub struct Members {
    my_id: u64,
    map: Arc<RwLock<HashMap<u64, MemberAddrs>>>,
    reader: KvReader,
    /// Voters and learners of the applied conf state (empty: a node that joined and has
    /// not received its first snapshot yet).
    conf: Arc<RwLock<BTreeSet<u64>>>,
    /// Nodes whose addition was proposed through this node and not yet settled.
    adding: Arc<RwLock<BTreeSet<u64>>>,
}

impl Members {
    pub fn new(my_id: u64, reader: KvReader) -> Self {
        Members {
            my_id,
            map: Arc::new(RwLock::new(HashMap::new())),
            reader,
            conf: Arc::default(),
            adding: Arc::default(),
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
        let ids: BTreeSet<u64> = ids.into_iter().collect();
        self.adding.write().retain(|id| !ids.contains(id));
        *self.conf.write() = ids;
    }

    /// Node `id` is being added through this node (admit its connections meanwhile).
    pub fn adding(&self, id: u64) {
        self.adding.write().insert(id);
    }

    /// The addition of `id` failed or was settled.
    pub fn settled(&self, id: u64) {
        self.adding.write().remove(&id);
    }

    /// Whether node `id` may connect to this one: a current member, a node being added,
    /// or anyone (authenticated) while this node has no membership yet (it joined empty
    /// and waits for the leader to reach it).
    pub fn admits(&self, id: u64) -> bool {
        let conf = self.conf.read();
        conf.is_empty() || conf.contains(&id) || self.adding.read().contains(&id)
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
