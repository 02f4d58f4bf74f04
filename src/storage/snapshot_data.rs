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
/// Length of a blob's header.
pub const HEADER_LEN: usize = 8 + 8 + 8;

/// Builds a snapshot blob one key/value pair at a time, in memory ([`new`](Self::new),
/// [`finish`](Self::finish)) or streamed ([`streaming`](Self::streaming)): the caller drains
/// the encoded pairs as they accumulate and writes the header (whose pair count is known
/// only at the end) last, so a snapshot of any size needs a bounded buffer, not a heap copy
/// of the whole state.
pub struct SnapshotDataWriter {
    applied_index: u64,
    /// Pending bytes: in memory, the whole blob so far (header first); streamed, the pairs
    /// encoded since the last drain.
    buf: Vec<u8>,
    streamed: bool,
    pairs: u64,
    /// Streamed: checksum and length of the pair bytes drained so far.
    drained_crc: u32,
    drained_len: u64,
}

/// The end of a streamed blob (see [`SnapshotDataWriter::finish_streamed`]).
#[derive(Debug, Clone, Copy)]
pub struct StreamedBlob {
    /// The blob's first [`HEADER_LEN`] bytes, to be written before the drained pairs.
    pub header: [u8; HEADER_LEN],
    /// Checksum and length of all the pair bytes (everything drained).
    pairs_crc: u32,
    pairs_len: u64,
    /// The blob's last 4 bytes, to be written after the pairs.
    pub trailer: [u8; 4],
}

impl StreamedBlob {
    /// The blob's whole length.
    pub fn blob_len(&self) -> u64 {
        (HEADER_LEN + 4) as u64 + self.pairs_len
    }

    /// `crc32c` continued from `crc` over the whole blob, without its bytes at hand.
    pub fn crc_after(&self, crc: u32) -> u32 {
        let c = crc32c::crc32c_append(crc, &self.header);
        let c = crc32c::crc32c_combine(c, self.pairs_crc, self.pairs_len as usize);
        crc32c::crc32c_append(c, &self.trailer)
    }
}

impl SnapshotDataWriter {
    /// Start a blob for the state as of `applied_index`, built in memory.
    pub fn new(applied_index: u64) -> Self {
        let mut w = Self::streaming(applied_index);
        w.streamed = false;
        w.buf.extend_from_slice(&w.header());
        w
    }

    /// Start a blob for the state as of `applied_index` whose pairs the caller drains
    /// ([`drain`](Self::drain)) and whose header it writes in front of them at the end
    /// ([`finish_streamed`](Self::finish_streamed)).
    pub fn streaming(applied_index: u64) -> Self {
        SnapshotDataWriter {
            applied_index,
            buf: Vec::with_capacity(4096),
            streamed: true,
            pairs: 0,
            drained_crc: 0,
            drained_len: 0,
        }
    }

    fn header(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..7].copy_from_slice(MAGIC);
        h[7] = VERSION;
        h[8..16].copy_from_slice(&self.applied_index.to_le_bytes());
        h[16..24].copy_from_slice(&self.pairs.to_le_bytes());
        h
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

    /// Bytes pending (not yet drained).
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Streamed: hand the pair bytes encoded since the last drain to `write` (in order;
    /// they follow each other in the blob), then forget them, keeping the buffer.
    pub fn drain<E>(
        &mut self,
        write: impl FnOnce(&[u8]) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        debug_assert!(self.streamed, "drain is for streamed blobs");
        write(&self.buf)?;
        self.drained_crc =
            crc32c::crc32c_combine(self.drained_crc, crc32c::crc32c(&self.buf), self.buf.len());
        self.drained_len += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Streamed: seal the blob once everything is drained (`pending() == 0`): its header,
    /// and the checksum that follows the pairs.
    pub fn finish_streamed(self) -> StreamedBlob {
        debug_assert!(
            self.streamed && self.buf.is_empty(),
            "drain everything first"
        );
        let header = self.header();
        let crc = crc32c::crc32c_combine(
            crc32c::crc32c(&header),
            self.drained_crc,
            self.drained_len as usize,
        );
        StreamedBlob {
            header,
            pairs_crc: self.drained_crc,
            pairs_len: self.drained_len,
            trailer: crc.to_le_bytes(),
        }
    }

    /// In memory: seal the blob with its pair count and checksum.
    pub fn finish(mut self) -> Vec<u8> {
        debug_assert!(!self.streamed, "finish is for blobs built in memory");
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
        if data.len() < HEADER_LEN + 4 {
            return Err(bad(format!(
                "blob of {} bytes is too short for its {HEADER_LEN}-byte header and 4-byte checksum",
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
        let mut counts = &content[MAGIC.len() + 1..HEADER_LEN];
        let applied_index = counts.get_u64_le();
        let pairs = counts.get_u64_le();
        let data = SnapshotData {
            applied_index,
            pairs,
            body: &content[HEADER_LEN..],
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
            offset: HEADER_LEN,
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

    #[test]
    fn a_streamed_blob_is_byte_identical_to_one_built_in_memory() {
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..1000u32)
            .map(|i| {
                (
                    format!("k{i:05}").into_bytes(),
                    vec![i as u8; (i % 37) as usize],
                )
            })
            .collect();
        let mut mem = SnapshotDataWriter::new(7);
        let mut streamed = SnapshotDataWriter::streaming(7);
        let mut body = Vec::new();
        for (i, (k, v)) in pairs.iter().enumerate() {
            mem.push(k, v);
            streamed.push(k, v);
            // Drains of uneven sizes, and one of nothing.
            if i % 97 == 0 || i == 500 {
                streamed
                    .drain(|b| {
                        body.extend_from_slice(b);
                        Ok::<_, ()>(())
                    })
                    .unwrap();
                streamed.drain(|_| Ok::<_, ()>(())).unwrap();
            }
        }
        streamed
            .drain(|b| {
                body.extend_from_slice(b);
                Ok::<_, ()>(())
            })
            .unwrap();
        let end = streamed.finish_streamed();
        let mut blob = end.header.to_vec();
        blob.extend_from_slice(&body);
        blob.extend_from_slice(&end.trailer);
        assert_eq!(blob, mem.finish());
        assert_eq!(end.blob_len(), blob.len() as u64);
        assert_eq!(end.crc_after(crc32c::crc32c(b"head")), {
            let mut all = b"head".to_vec();
            all.extend_from_slice(&blob);
            crc32c::crc32c(&all)
        });
    }
}
