//! The node HTTP API's limits and error vocabulary.
//!
//! Every error the API returns is a JSON [`ErrorBody`] whose `code` is one of
//! [`ErrorCode`]; the server builds them and the client classifies them from the same
//! enum, so a code can neither be misspelt on one side nor silently ignored on the other.

use serde::{Deserialize, Serialize};

/// Longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Largest value accepted, in bytes.
pub const MAX_VALUE_BYTES: usize = 4 << 20;

/// Response header of a `GET /kv/{key}`: the consistency the read was served with
/// (`linearizable` or `local`).
pub const CONSISTENCY_HEADER: &str = "x-raftbench-consistency";
/// Response header of a `GET /kv/{key}`: the serving node had applied at least this index
/// when it read (a `local` read may be this far behind the leader).
pub const APPLIED_INDEX_HEADER: &str = "x-raftbench-applied-index";

/// Keys starting with this byte are reserved for raftbench's own bookkeeping (member
/// addresses); the API refuses them from clients.
pub const RESERVED_KEY_BYTE: u8 = 0;

/// The stable `code` of an API error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// No such endpoint (404).
    NotFound,
    /// The request is malformed: bad key, body, query or member id (400).
    BadRequest,
    /// The body could not be read, or is over [`MAX_VALUE_BYTES`].
    BadBody,
    /// The key is over [`MAX_KEY_BYTES`] (413).
    KeyTooLarge,
    /// A GET of a key that does not exist (404).
    KeyNotFound,
    /// No leader is known right now; retry shortly (503).
    NoLeader,
    /// This node is not the leader; the body names it (421).
    NotLeader,
    /// The proposal never reached the log: not applied, safe to retry (503).
    ProposalDropped,
    /// The node is shutting down (503).
    ShuttingDown,
    /// The outcome is unknown: the write may or may not be applied (504).
    Indeterminate,
    /// No answer in time; the outcome is unknown (504).
    Timeout,
    /// The request is invalid for the current state (409).
    Rejected,
    /// Removing a node that is not a member (404).
    UnknownMember,
    /// The storage engine failed to read (500).
    StorageError,
    /// An admin request without the cluster secret as its bearer token (401).
    Unauthorized,
    /// A code this build does not know (a newer server): treated as a plain rejection.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// Whether a write that got this answer may still have been applied.
    pub fn is_indeterminate(self) -> bool {
        matches!(self, ErrorCode::Indeterminate | ErrorCode::Timeout)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The serde name, so messages show what the wire carries.
        let v = serde_json::to_value(self).map_err(|_| std::fmt::Error)?;
        f.write_str(v.as_str().unwrap_or("unknown"))
    }
}

/// The JSON body of every API error. A `not_leader` body always carries `leader_id` and
/// `leader_addr` (`null` when the leader's address is not known); other bodies carry only
/// `code` and `message`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    #[serde(default)]
    pub message: String,
    /// With [`ErrorCode::NotLeader`]: the leader's id.
    #[serde(default)]
    pub leader_id: Option<u64>,
    /// With [`ErrorCode::NotLeader`]: the leader's client address, when known.
    #[serde(default)]
    pub leader_addr: Option<String>,
}

impl Serialize for ErrorBody {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let redirect = self.code == ErrorCode::NotLeader;
        let mut st = s.serialize_struct("ErrorBody", if redirect { 4 } else { 2 })?;
        st.serialize_field("code", &self.code)?;
        st.serialize_field("message", &self.message)?;
        if redirect {
            st.serialize_field("leader_id", &self.leader_id)?;
            st.serialize_field("leader_addr", &self.leader_addr)?;
        }
        st.end()
    }
}

impl ErrorBody {
    /// A body with `code` and `message` only.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            code,
            message: message.into(),
            leader_id: None,
            leader_addr: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_keep_their_wire_names() {
        let b = ErrorBody::new(ErrorCode::ProposalDropped, "x");
        let j = serde_json::to_string(&b).unwrap();
        assert_eq!(j, r#"{"code":"proposal_dropped","message":"x"}"#);
        assert_eq!(ErrorCode::KeyNotFound.to_string(), "key_not_found");
        let back: ErrorBody =
            serde_json::from_str(r#"{"code":"not_leader","message":"m","leader_id":2}"#).unwrap();
        assert_eq!(back.code, ErrorCode::NotLeader);
        assert_eq!(back.leader_id, Some(2));
        let newer: ErrorBody = serde_json::from_str(r#"{"code":"from_the_future"}"#).unwrap();
        assert_eq!(newer.code, ErrorCode::Unknown);
        // A redirect names the leader's address even when it is unknown.
        let mut redirect = ErrorBody::new(ErrorCode::NotLeader, "m");
        redirect.leader_id = Some(3);
        assert_eq!(
            serde_json::to_string(&redirect).unwrap(),
            r#"{"code":"not_leader","message":"m","leader_id":3,"leader_addr":null}"#
        );
    }
}

/// Which traffic a partition cuts, as seen from the node it is applied to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Both ways: the node neither hears from nor reaches the peers.
    #[default]
    Both,
    /// Inbound only: the node hears nothing from the peers, which still hear from it.
    In,
    /// Outbound only: the node's messages to the peers are lost; it still hears them.
    Out,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::Both => "both",
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// `POST /admin/partition`: drop traffic with `isolate_from` in `direction` until
/// `/admin/heal`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionRequest {
    pub isolate_from: Vec<u64>,
    #[serde(default)]
    pub direction: Direction,
}

/// Longest delay `POST /admin/link` accepts, in milliseconds.
pub const MAX_LINK_DELAY_MS: u64 = 60_000;

/// `POST /admin/link`: degrade the node's outbound links to `peers` until `/admin/heal`:
/// each message is given `delay_ms` ± up to `jitter_ms` (drawn uniformly; order is kept,
/// as TCP keeps it, so under load a message waits as long as the slowest ahead of it) and
/// is lost with probability `loss`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    pub peers: Vec<u64>,
    #[serde(default)]
    pub delay_ms: u64,
    #[serde(default)]
    pub jitter_ms: u64,
    #[serde(default)]
    pub loss: f64,
}

impl LinkRequest {
    /// What is wrong with the request, if anything.
    pub fn check(&self) -> Result<(), String> {
        if self.delay_ms > MAX_LINK_DELAY_MS || self.jitter_ms > MAX_LINK_DELAY_MS {
            return Err(format!(
                "delay_ms and jitter_ms must be at most {MAX_LINK_DELAY_MS}"
            ));
        }
        if self.jitter_ms > self.delay_ms {
            return Err("jitter_ms cannot exceed delay_ms".into());
        }
        if !(0.0..=1.0).contains(&self.loss) {
            return Err(format!("loss must be in [0, 1], got {}", self.loss));
        }
        Ok(())
    }
}
