//! State-machine commands and their wire encoding.
//!
//! A raft entry's `data` carries exactly one [`KvCommand`]. The encoding is ours (not
//! protobuf) because it sits on the hot path of every write: one tag byte, a little-endian
//! `u32` key length, the key, then the value (the rest of the buffer). Decoding validates
//! lengths and never panics on hostile bytes.

use thiserror::Error;

/// A mutation of the replicated key-value state.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KvCommand {
    /// Set `key` to `value`, replacing any previous value.
    Put { key: Vec<u8>, value: Vec<u8> },
    /// Remove `key`; deleting a missing key is not an error.
    Delete { key: Vec<u8> },
}

const TAG_PUT: u8 = 1;
const TAG_DELETE: u8 = 2;

/// Why a byte string is not a valid [`KvCommand`].
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("empty command")]
    Empty,
    #[error("unknown command tag {0}")]
    UnknownTag(u8),
    #[error("command truncated: need {needed} bytes, have {have}")]
    Truncated { needed: usize, have: usize },
    #[error("delete command has {0} trailing bytes")]
    Trailing(usize),
}

impl KvCommand {
    /// The key this command touches.
    pub fn key(&self) -> &[u8] {
        match self {
            KvCommand::Put { key, .. } | KvCommand::Delete { key } => key,
        }
    }

    /// Bytes this command occupies once encoded.
    pub fn encoded_len(&self) -> usize {
        5 + match self {
            KvCommand::Put { key, value } => key.len() + value.len(),
            KvCommand::Delete { key } => key.len(),
        }
    }

    /// Append the encoding of `self` to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        let (tag, key, value): (u8, &[u8], &[u8]) = match self {
            KvCommand::Put { key, value } => (TAG_PUT, key, value),
            KvCommand::Delete { key } => (TAG_DELETE, key, &[]),
        };
        out.push(tag);
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(key);
        out.extend_from_slice(value);
    }

    /// The encoding of `self` as a fresh buffer.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    /// Parse one command occupying all of `buf`.
    pub fn decode(buf: &[u8]) -> Result<KvCommand, DecodeError> {
        let (&tag, rest) = buf.split_first().ok_or(DecodeError::Empty)?;
        if tag != TAG_PUT && tag != TAG_DELETE {
            return Err(DecodeError::UnknownTag(tag));
        }
        if rest.len() < 4 {
            return Err(DecodeError::Truncated {
                needed: 5,
                have: buf.len(),
            });
        }
        let klen = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        let rest = &rest[4..];
        if rest.len() < klen {
            return Err(DecodeError::Truncated {
                needed: 5 + klen,
                have: buf.len(),
            });
        }
        let (key, value) = rest.split_at(klen);
        match tag {
            TAG_PUT => Ok(KvCommand::Put {
                key: key.to_vec(),
                value: value.to_vec(),
            }),
            _ if !value.is_empty() => Err(DecodeError::Trailing(value.len())),
            _ => Ok(KvCommand::Delete { key: key.to_vec() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for cmd in [
            KvCommand::Put {
                key: b"k".to_vec(),
                value: b"value".to_vec(),
            },
            KvCommand::Put {
                key: vec![],
                value: vec![],
            },
            KvCommand::Delete {
                key: b"gone".to_vec(),
            },
        ] {
            let buf = cmd.encode();
            assert_eq!(buf.len(), cmd.encoded_len());
            assert_eq!(KvCommand::decode(&buf).unwrap(), cmd);
        }
    }

    #[test]
    fn rejects_bad_bytes() {
        assert_eq!(KvCommand::decode(&[]), Err(DecodeError::Empty));
        assert_eq!(KvCommand::decode(&[9, 0]), Err(DecodeError::UnknownTag(9)));
        assert!(matches!(
            KvCommand::decode(&[1, 10, 0, 0, 0, b'a']),
            Err(DecodeError::Truncated { .. })
        ));
        assert_eq!(
            KvCommand::decode(&[2, 1, 0, 0, 0, b'a', b'x']),
            Err(DecodeError::Trailing(1))
        );
    }
}
