//! Which raft messages a peer may send: the allow-list between the network and raft.
//!
//! raft-rs's `RawNode::step` refuses only local message types; it trusts the rest, and
//! aborts on some shapes it never sends itself (an empty `MsgPropose`, a `MsgReadIndex`
//! without its entry). So every message from the network passes [`peer_may_send`] first:
//! only the types one raft peer sends another, addressed to this node, in the shape
//! raft-rs expects. Followers here never forward proposals, so `MsgPropose` never comes
//! from a peer.
//!
//! This keeps out what a stranger's frame could do; it does not make raft safe from a peer
//! that holds the secret. raft is not Byzantine-tolerant: a member can still claim terms
//! and indexes raft-rs trusts (a heartbeat committing past the log makes it abort).

use raft::eraftpb::{Message, MessageType};

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
