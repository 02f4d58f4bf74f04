//! The address book: which peer and client addresses each member has.
//!
//! Addresses are part of the replicated state: each member's addresses live in the KV state
//! under a reserved key ([`member_key`]), written when the member is added (in the same
//! atomic apply as the conf change) and at bootstrap. Snapshots therefore carry them, so a
//! node that joins or restarts from a snapshot knows every peer. The in-memory map caches
//! them and also learns from peers' `Hello`s (a joining node hears from the leader before
//! it has any state).

use std::collections::HashMap;
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
}

impl Members {
    pub fn new(my_id: u64, reader: KvReader) -> Self {
        Members {
            my_id,
            map: Arc::new(RwLock::new(HashMap::new())),
            reader,
        }
    }

    /// This node's id.
    pub fn my_id(&self) -> u64 {
        self.my_id
    }

    /// Record `id`'s addresses (from a hello, a conf change or the config).
    pub fn learn(&self, id: u64, addrs: MemberAddrs) {
        self.map.write().insert(id, addrs);
    }

    /// Forget `id`.
    pub fn forget(&self, id: u64) {
        self.map.write().remove(&id);
    }

    /// `id`'s addresses: cached, else from the replicated state.
    pub fn get(&self, id: u64) -> Option<MemberAddrs> {
        if let Some(a) = self.map.read().get(&id) {
            return Some(a.clone());
        }
        let stored = self.reader.get(&member_key(id)).ok()??;
        let addrs: MemberAddrs = serde_json::from_slice(&stored).ok()?;
        self.learn(id, addrs.clone());
        Some(addrs)
    }
}
