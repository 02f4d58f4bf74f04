//! The snapshot data format shared by every backend.
//!
//! A raft snapshot's `data` is this blob, whichever backend made it, so a snapshot created
//! by RocksDB installs on memwal and back (a mixed cluster works, and the conformance suite
//! checks it). Layout, all integers little-endian:
//!
//! ```text
//! "RBSNAPD" version:u8(=1) | applied_index:u64 | pairs:u64 |
//!   pairs × ( key_len:u32 | value_len:u32 | key | value ) | crc32c:u32 (of all previous bytes)
//! ```
//!
//! Keys are written in ascending byte order, so two backends holding the same state produce
//! byte-identical blobs.

use bytes::Buf;

use super::error::{Result, StorageError};

const MAGIC: &[u8; 7] = b"RBSNAPD";
const VERSION: u8 = 1;
const HEADER: usize = 8 + 8 + 8;

/// Builds a snapshot blob one key/value pair at a time.
pub struct SnapshotDataWriter {
    buf: Vec<u8>,
    pairs: u64,
}

impl SnapshotDataWriter {
    /// Start a blob for the state as of `applied_index`.
    pub fn new(applied_index: u64) -> Self {
        let mut buf = Vec::with_capacity(4096);
        buf.extend_from_slice(MAGIC);
        buf.push(VERSION);
        buf.extend_from_slice(&applied_index.to_le_bytes());
        buf.extend_from_slice(&0u64.to_le_bytes());
        SnapshotDataWriter { buf, pairs: 0 }
    }

    /// Append one pair. Callers feed keys in ascending order.
    pub fn push(&mut self, key: &[u8], value: &[u8]) {
        self.buf.reserve(8 + key.len() + value.len());
        self.buf
            .extend_from_slice(&(key.len() as u32).to_le_bytes());
        self.buf
            .extend_from_slice(&(value.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(key);
        self.buf.extend_from_slice(value);
        self.pairs += 1;
    }

    /// Seal the blob with its pair count and checksum.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf[16..24].copy_from_slice(&self.pairs.to_le_bytes());
        let crc = crc32c::crc32c(&self.buf);
        self.buf.extend_from_slice(&crc.to_le_bytes());
        self.buf
    }
}

/// A validated snapshot blob.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotData<'a> {
    /// Index of the last entry whose effects the data contains.
    pub applied_index: u64,
    /// Number of pairs.
    pub pairs: u64,
    body: &'a [u8],
}

impl<'a> SnapshotData<'a> {
    /// Check magic, version and checksum of `data`.
    pub fn parse(data: &'a [u8]) -> Result<Self> {
        let bad = |m: String| StorageError::SnapshotData(m);
        if data.len() < HEADER + 4 {
            return Err(bad(format!(
                "blob of {} bytes is too short for its {HEADER}-byte header and 4-byte checksum",
                data.len()
            )));
        }
        if &data[..7] != MAGIC {
            return Err(bad("bad magic: not a raftbench snapshot".into()));
        }
        if data[7] != VERSION {
            return Err(bad(format!(
                "snapshot format version {} is not supported (this build reads {VERSION})",
                data[7]
            )));
        }
        // The length check above covers the header and the checksum.
        let (content, mut crc) = data.split_at(data.len() - 4);
        let want = crc.get_u32_le();
        let got = crc32c::crc32c(content);
        if want != got {
            return Err(bad(format!(
                "checksum mismatch (stored {want:#010x}, computed {got:#010x})"
            )));
        }
        let mut counts = &content[MAGIC.len() + 1..HEADER];
        let applied_index = counts.get_u64_le();
        let pairs = counts.get_u64_le();
        let data = SnapshotData {
            applied_index,
            pairs,
            body: &content[HEADER..],
        };
        // Walk once so that iteration later cannot fail halfway through an install.
        let mut n = 0u64;
        let mut it = data.raw_iter();
        while let Some(r) = it.next_pair() {
            r?;
            n += 1;
        }
        if n != pairs {
            return Err(bad(format!("header says {pairs} pairs, body holds {n}")));
        }
        Ok(data)
    }

    /// The pairs in stored (ascending key) order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        let mut it = self.raw_iter();
        std::iter::from_fn(move || it.next_pair().map(|r| r.expect("validated by parse")))
    }

    fn raw_iter(&self) -> RawIter<'a> {
        RawIter {
            rest: self.body,
            offset: HEADER,
        }
    }
}

struct RawIter<'a> {
    rest: &'a [u8],
    offset: usize,
}

impl<'a> RawIter<'a> {
    #[allow(clippy::type_complexity)]
    fn next_pair(&mut self) -> Option<Result<(&'a [u8], &'a [u8])>> {
        if self.rest.is_empty() {
            return None;
        }
        let fail = |off: usize, what: &str| {
            Some(Err(StorageError::SnapshotData(format!(
                "pair at byte {off} is truncated ({what})"
            ))))
        };
        if self.rest.len() < 8 {
            return fail(self.offset, "length header");
        }
        let mut lens = &self.rest[..8];
        let klen = lens.get_u32_le() as usize;
        let vlen = lens.get_u32_le() as usize;
        if self.rest.len() < 8 + klen + vlen {
            return fail(self.offset, "key/value");
        }
        let key = &self.rest[8..8 + klen];
        let value = &self.rest[8 + klen..8 + klen + vlen];
        self.rest = &self.rest[8 + klen + vlen..];
        self.offset += 8 + klen + vlen;
        Some(Ok((key, value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let mut w = SnapshotDataWriter::new(42);
        w.push(b"a", b"1");
        w.push(b"b", b"");
        let blob = w.finish();
        let d = SnapshotData::parse(&blob).unwrap();
        assert_eq!(d.applied_index, 42);
        assert_eq!(d.pairs, 2);
        let pairs: Vec<_> = d.iter().collect();
        assert_eq!(pairs, vec![(&b"a"[..], &b"1"[..]), (&b"b"[..], &b""[..])]);

        for i in 0..blob.len() {
            let mut bad = blob.clone();
            bad[i] ^= 0x40;
            assert!(SnapshotData::parse(&bad).is_err(), "flip at {i} accepted");
        }
        assert!(SnapshotData::parse(&blob[..blob.len() - 1]).is_err());
    }
}
