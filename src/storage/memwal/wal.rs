//! memwal's write-ahead log: numbered segment files of checksummed records.
//!
//! ```text
//! segment  = "RBWALSG1" seq:u64 | record*
//! record   = len:u32 | type:u8 | header_crc:u32 | payload_crc:u32 | payload[len]
//! ```
//! `header_crc` is the CRC32C of `len` and `type`, `payload_crc` that of the payload (all
//! little-endian). Protecting the length separately means a flipped length byte is reported
//! as corruption instead of being mistaken for a torn tail (which would silently drop
//! acknowledged records).
//!
//! **Torn tail vs corruption.** Only the end of the *last* segment may be torn: after a
//! power loss, the records written since its last `fdatasync` may be cut short, or hold
//! sectors that never reached the disk (they read as zeros), in any order, since write-back
//! can reorder pages. As etcd's `isTornEntry` does, the first record of the last segment
//! that fails a check is torn when it runs past the end of the file or when any 512-byte
//! sector of it is all zeros; it is cut off with everything after it (and reported). That
//! is safe: any later sync would have made the record whole, so nothing after it was
//! acknowledged. Anything else that fails a check — in an older segment (synced when it
//! was sealed), or a record in the last one with no zero sector — refuses the open with
//! the file and byte offset, because it would mean losing data the replica acknowledged.
//!
//! Every segment starts with a `State` record (hard state, conf state, truncation point,
//! snapshot index), so older segments can be deleted once compaction and a snapshot cover
//! them (see [`WalWriter::delete_obsolete`]).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Buf;
use tracing::{debug, info, warn};

use super::record::{RecordType, StateRecord, encode_state};
use crate::storage::datadir::{self, sync_dir};
use crate::storage::error::{Result, StorageError};

const SEGMENT_MAGIC: &[u8; 8] = b"RBWALSG1";
/// Bytes before the first record of a segment.
pub const SEGMENT_HEADER: u64 = 16;
/// Bytes of a record header.
pub const RECORD_HEADER: usize = 13;

/// Path of segment `seq` in `dir`.
pub fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.wal"))
}

/// Sequence numbers of the segments in `dir`, ascending. Foreign files are an error: the
/// WAL directory is ours alone.
pub fn list_segments(dir: &Path) -> Result<Vec<u64>> {
    let mut seqs = Vec::new();
    for ent in fs::read_dir(dir).map_err(StorageError::io("list", dir))? {
        let ent = ent.map_err(StorageError::io("list", dir))?;
        let name = ent.file_name();
        let name = name.to_string_lossy();
        match name
            .strip_suffix(".wal")
            .and_then(|s| s.parse::<u64>().ok())
        {
            Some(seq) => seqs.push(seq),
            None => {
                return Err(StorageError::corrupt(
                    ent.path(),
                    0,
                    "unexpected file in the WAL directory",
                ));
            }
        }
    }
    seqs.sort_unstable();
    for w in seqs.windows(2) {
        if w[1] != w[0] + 1 {
            return Err(StorageError::corrupt(
                segment_path(dir, w[0] + 1),
                0,
                format!(
                    "WAL segment {} is missing between {} and {}",
                    w[0] + 1,
                    w[0],
                    w[1]
                ),
            ));
        }
    }
    Ok(seqs)
}

/// What replay learned about a segment, used to decide when it may be deleted.
#[derive(Debug, Clone)]
pub struct SegmentMeta {
    pub seq: u64,
    /// Highest entry index written in this segment (0 if none).
    pub max_entry_index: u64,
    /// Highest applied index written in this segment (0 if none).
    pub max_apply_index: u64,
}

impl SegmentMeta {
    /// A segment with nothing noted yet.
    pub fn new(seq: u64) -> Self {
        SegmentMeta {
            seq,
            max_entry_index: 0,
            max_apply_index: 0,
        }
    }
}

/// Result of reading one segment.
#[derive(Debug)]
pub struct SegmentRead {
    /// Bytes of the segment that hold whole, valid records (including the header).
    pub valid_len: u64,
    /// Bytes after `valid_len` (a torn tail; only ever non-zero for the last segment).
    pub torn_bytes: u64,
}

/// Receives each valid record of a segment: its type, payload and byte offset.
pub type RecordVisitor<'a> = dyn FnMut(RecordType, &[u8], u64) -> Result<()> + 'a;

/// Read segment `seq`, calling `f(type, payload, offset)` for every valid record in order.
/// `is_last` allows a torn tail.
pub fn read_segment(
    dir: &Path,
    seq: u64,
    is_last: bool,
    f: &mut RecordVisitor<'_>,
) -> Result<SegmentRead> {
    let path = segment_path(dir, seq);
    let data = fs::read(&path).map_err(StorageError::io("read", &path))?;
    let len = data.len() as u64;
    let torn = |valid: u64| -> Result<SegmentRead> {
        Ok(SegmentRead {
            valid_len: valid,
            torn_bytes: len - valid,
        })
    };
    if len < SEGMENT_HEADER {
        if is_last {
            return torn(0);
        }
        return Err(StorageError::corrupt(
            &path,
            0,
            "segment header is truncated",
        ));
    }
    if &data[..8] != SEGMENT_MAGIC {
        // A new segment is synced before anything is written in it; a header that never
        // reached the disk is a crash while it was being created.
        if is_last && data.iter().all(|&b| b == 0) {
            return torn(0);
        }
        return Err(StorageError::corrupt(
            &path,
            0,
            "bad segment magic: not a raftbench WAL segment",
        ));
    }
    // The length check above covers the whole header.
    let stored_seq = (&data[SEGMENT_MAGIC.len()..SEGMENT_HEADER as usize]).get_u64_le();
    if stored_seq != seq {
        return Err(StorageError::corrupt(
            &path,
            8,
            format!("segment header names sequence {stored_seq}, file name says {seq}"),
        ));
    }
    let mut off = SEGMENT_HEADER as usize;
    while off < data.len() {
        let rest = &data[off..];
        // Whether the record's first `n` bytes (cut at the end of the file) look torn.
        let torn_at = |n: usize| torn_record(&data, off, off + n);
        if rest.len() < RECORD_HEADER {
            if is_last {
                return torn(off as u64);
            }
            return Err(StorageError::corrupt(
                &path,
                off as u64,
                "record header cut short in a sealed segment",
            ));
        }
        // `rest` holds a whole header (checked above).
        let hdr = &rest[..RECORD_HEADER];
        let mut fields = hdr;
        let plen = fields.get_u32_le() as usize;
        let type_byte = fields.get_u8();
        let hcrc = fields.get_u32_le();
        let pcrc = fields.get_u32_le();
        if crc32c::crc32c(&hdr[..5]) != hcrc {
            // The length cannot be trusted: judge by the header, or by a tail of zeros.
            if is_last && (torn_at(RECORD_HEADER) || rest.iter().all(|&b| b == 0)) {
                return torn(off as u64);
            }
            return Err(StorageError::corrupt(
                &path,
                off as u64,
                "record header checksum mismatch",
            ));
        }
        if rest.len() < RECORD_HEADER + plen {
            if is_last {
                return torn(off as u64);
            }
            return Err(StorageError::corrupt(
                &path,
                off as u64,
                format!("record of {plen} bytes extends past the end of a sealed segment"),
            ));
        }
        let payload = &rest[RECORD_HEADER..RECORD_HEADER + plen];
        if crc32c::crc32c(payload) != pcrc {
            if is_last && torn_at(RECORD_HEADER + plen) {
                return torn(off as u64);
            }
            return Err(StorageError::corrupt(
                &path,
                off as u64,
                "record checksum mismatch",
            ));
        }
        let Some(rtype) = RecordType::from_u8(type_byte) else {
            return Err(StorageError::corrupt(
                &path,
                off as u64,
                format!("unknown record type {type_byte}"),
            ));
        };
        f(rtype, payload, off as u64)?;
        off += RECORD_HEADER + plen;
    }
    Ok(SegmentRead {
        valid_len: len,
        torn_bytes: 0,
    })
}

/// Bytes of the smallest unit a disk writes whole; a sector that never reached the disk
/// reads as zeros (etcd's `minSectorSize`).
const SECTOR: u64 = 512;

/// Whether the record at `data[start..end]` (`end` cut at the end of the file) bears the
/// mark of a write torn by a power loss: a 512-byte sector of the file that never reached
/// the disk and reads as zeros (etcd's `isTornEntry`). The record is split at sector
/// boundaries. A part counts when all zero; the last part only when zero to the end of its
/// sector or of the file, so that the ordinary zeros a record ends in (high bytes of an
/// index) are not taken for a lost sector. (The first part cannot be held to more: the
/// start of its sector may hold an earlier, synced record.)
fn torn_record(data: &[u8], start: usize, end: usize) -> bool {
    let end = end.min(data.len());
    let sector = SECTOR as usize;
    let mut at = start;
    while at < end {
        let sector_end = (at / sector + 1) * sector;
        let mut part_end = sector_end.min(end);
        if part_end == end {
            // The last part: the rest of its sector (later records, never synced either)
            // must be zero too.
            part_end = sector_end.min(data.len());
        }
        if data[at..part_end].iter().all(|&b| b == 0) {
            return true;
        }
        at = sector_end.min(end);
    }
    false
}

/// Cut a torn tail off segment `seq` so that it ends at `valid_len`.
pub fn truncate_segment(dir: &Path, seq: u64, valid_len: u64) -> Result<()> {
    let path = segment_path(dir, seq);
    let f = OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(StorageError::io("open", &path))?;
    f.set_len(valid_len)
        .map_err(StorageError::io("truncate", &path))?;
    sync_segment(&f, &path).map_err(StorageError::io("fsync", &path))
}

/// `fdatasync` the segment `file` at `path` (which persists a size change too). Under test,
/// the length it made durable is noted, so that a simulated power loss can keep exactly
/// that (`memwal/power_loss.rs`).
fn sync_segment(file: &File, path: &Path) -> std::io::Result<()> {
    file.sync_data()?;
    #[cfg(test)]
    durable::note(path, file.metadata()?.len());
    #[cfg(not(test))]
    let _ = path;
    Ok(())
}

/// The durable length of every segment a test thread synced (see [`sync_segment`]).
#[cfg(test)]
pub(super) mod durable {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};

    thread_local! {
        static LENGTHS: RefCell<HashMap<PathBuf, u64>> = RefCell::new(HashMap::new());
    }

    pub fn note(path: &Path, len: u64) {
        LENGTHS.with(|l| l.borrow_mut().insert(path.to_path_buf(), len));
    }

    /// The lengths noted so far on this thread.
    pub fn lengths() -> HashMap<PathBuf, u64> {
        LENGTHS.with(|l| l.borrow().clone())
    }

    pub fn forget() {
        LENGTHS.with(|l| l.borrow_mut().clear());
    }
}

/// Appends records to the newest segment, rotates segments and deletes obsolete ones.
pub struct WalWriter {
    dir: PathBuf,
    /// Where deleted segments go (`<data dir>/trash`, see `datadir::discard`).
    trash: PathBuf,
    file: File,
    len: u64,
    segment_size: u64,
    sync_policy: bool,
    /// Sealed segments, oldest first; `current` is the one being written.
    sealed: Vec<SegmentMeta>,
    current: SegmentMeta,
    buf: Vec<u8>,
    /// Set once a write or sync fails: the file may end in a partial record, so appending
    /// more would bury it mid-segment. The replica must be reopened.
    failed: bool,
}

impl WalWriter {
    /// Start a new segment `seq` after the `sealed` ones, writing `state` as its first
    /// record.
    pub fn create(
        dir: &Path,
        seq: u64,
        sealed: Vec<SegmentMeta>,
        state: &StateRecord,
        segment_size: u64,
        sync_policy: bool,
    ) -> Result<WalWriter> {
        // The last sealed segment usually ends in records written without a sync (applies,
        // commit-only hard states, or everything under `fsync = "never"`) that replay has
        // just read from the page cache. Sync it before anything goes into the new segment,
        // whatever the policy: otherwise a power loss could drop its tail while keeping the
        // new segment, a hole in the middle of the log (durability-findings F1, F7).
        if let Some(last) = sealed.last() {
            let path = segment_path(dir, last.seq);
            File::open(&path)
                .and_then(|f| sync_segment(&f, &path))
                .map_err(StorageError::io("fsync", &path))?;
        }
        let (file, len) = Self::new_segment(dir, seq, state)?;
        let trash = datadir::trash_dir(dir.parent().unwrap_or(dir));
        datadir::create_dir_durable(&trash)?;
        Ok(WalWriter {
            dir: dir.to_path_buf(),
            trash,
            file,
            len,
            segment_size: segment_size.max(4096),
            sync_policy,
            sealed,
            current: SegmentMeta::new(seq),
            buf: Vec::with_capacity(64 * 1024),
            failed: false,
        })
    }

    /// Create segment `seq` holding its header and `state`, synced with its directory under
    /// every policy: a segment is only ever written after it is durable, so the WAL on disk
    /// stays one prefix of what was written (a rotation is rare: once per segment size).
    fn new_segment(dir: &Path, seq: u64, state: &StateRecord) -> Result<(File, u64)> {
        let path = segment_path(dir, seq);
        let mut file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(StorageError::io("create segment", &path))?;
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(SEGMENT_MAGIC);
        buf.extend_from_slice(&seq.to_le_bytes());
        frame(
            &mut buf,
            RecordType::State,
            |p| encode_state(p, state),
            MAX_RECORD_BYTES,
        )
        .map_err(|n| too_large(&path, n))?;
        file.write_all(&buf)
            .map_err(StorageError::io("write", &path))?;
        sync_segment(&file, &path).map_err(StorageError::io("fsync", &path))?;
        sync_dir(dir)?;
        debug!(seq, "started WAL segment");
        Ok((file, buf.len() as u64))
    }

    /// Whether the current segment has reached its size limit.
    pub fn needs_rotation(&self) -> bool {
        self.len >= self.segment_size
    }

    /// Seal the current segment (synced under every policy, so that the sealed segment is
    /// durable before anything in the next one: the WAL on disk is always a prefix) and
    /// start the next with `state`.
    pub fn rotate(&mut self, state: &StateRecord) -> Result<()> {
        self.check_usable()?;
        self.sync()?;
        let seq = self.current.seq + 1;
        let (file, len) =
            Self::new_segment(&self.dir, seq, state).inspect_err(|_| self.failed = true)?;
        self.file = file;
        self.len = len;
        let sealed = std::mem::replace(&mut self.current, SegmentMeta::new(seq));
        self.sealed.push(sealed);
        Ok(())
    }

    /// Append one record whose payload `encode` writes; with `sync`, `fdatasync` before
    /// returning. The record is handed to the OS in a single `write`, so a process crash
    /// leaves it whole or absent (a torn tail only follows an OS crash or power loss).
    pub fn append(
        &mut self,
        rtype: RecordType,
        encode: impl FnOnce(&mut Vec<u8>),
        sync: bool,
    ) -> Result<()> {
        self.check_usable()?;
        self.buf.clear();
        let path = || segment_path(&self.dir, self.current.seq);
        // Refused before anything is written: the WAL stays usable.
        frame(&mut self.buf, rtype, encode, MAX_RECORD_BYTES).map_err(|n| too_large(&path(), n))?;
        if let Err(e) = self.file.write_all(&self.buf) {
            self.failed = true;
            return Err(StorageError::io("write", path())(e));
        }
        self.len += self.buf.len() as u64;
        if sync && let Err(e) = sync_segment(&self.file, &path()) {
            self.failed = true;
            return Err(StorageError::io("fsync", path())(e));
        }
        Ok(())
    }

    /// `fdatasync` the current segment (earlier segments were synced when sealed).
    pub fn sync(&mut self) -> Result<()> {
        self.check_usable()?;
        let path = segment_path(&self.dir, self.current.seq);
        sync_segment(&self.file, &path).map_err(|e| {
            self.failed = true;
            StorageError::io("fsync", path)(e)
        })
    }

    /// Record that the current segment holds entries up to `index`.
    pub fn note_entries(&mut self, index: u64) {
        self.current.max_entry_index = self.current.max_entry_index.max(index);
    }

    /// Record that the current segment holds state applied up to `index`.
    pub fn note_apply(&mut self, index: u64) {
        self.current.max_apply_index = self.current.max_apply_index.max(index);
    }

    /// Delete the oldest sealed segments that replay no longer needs: every entry they hold
    /// is at or below the truncation point `truncated` and everything they applied is inside
    /// the durable snapshot at `snapshot`. Hard and conf states they hold are superseded by
    /// the `State` record that opens every later segment. The WAL is synced first (under
    /// every policy), so the compaction that justifies the deletion is durable before any
    /// file disappears, and the directory after. Returns how many segments were deleted.
    pub fn delete_obsolete(&mut self, truncated: u64, snapshot: u64) -> Result<usize> {
        let n = self
            .sealed
            .iter()
            .take_while(|m| m.max_entry_index <= truncated && m.max_apply_index <= snapshot)
            .count();
        if n == 0 {
            return Ok(0);
        }
        self.sync()?;
        for _ in 0..n {
            let seq = self.sealed[0].seq;
            let path = segment_path(&self.dir, seq);
            datadir::discard(&path, &self.trash)?;
            self.sealed.remove(0);
            info!(seq, "deleted obsolete WAL segment");
        }
        sync_dir(&self.dir)?;
        Ok(n)
    }

    /// Number of segment files (sealed + current).
    pub fn segment_count(&self) -> usize {
        self.sealed.len() + 1
    }

    /// Refuse every further write: the caller's state no longer matches the log.
    pub fn poison(&mut self) {
        self.failed = true;
    }

    fn check_usable(&self) -> Result<()> {
        if self.failed {
            return Err(StorageError::Invalid(
                "an earlier WAL write failed; the replica must be reopened".into(),
            ));
        }
        Ok(())
    }
}

impl Drop for WalWriter {
    /// Sync on close under `fsync = "always"`: the unsynced tail (applies, commit-only hard
    /// states) then survives a power loss after a clean stop, and the next open does not
    /// have to rely on the page cache (durability-findings F1). A failed writer is left as
    /// it is: its file may end in a partial record, which the next open repairs.
    fn drop(&mut self) {
        if self.sync_policy
            && !self.failed
            && let Err(e) = sync_segment(&self.file, &segment_path(&self.dir, self.current.seq))
        {
            warn!(
                segment = %segment_path(&self.dir, self.current.seq).display(),
                "fsync on close failed: {e}"
            );
        }
    }
}

/// The largest record payload: its length is stored in 32 bits (durability-findings F6).
const MAX_RECORD_BYTES: usize = u32::MAX as usize;

fn too_large(path: &Path, bytes: usize) -> StorageError {
    StorageError::Invalid(format!(
        "a WAL record of {bytes} bytes for {} is over the {MAX_RECORD_BYTES}-byte record limit",
        path.display()
    ))
}

/// Append a framed record (header + payload written by `encode`) to `buf`. A payload over
/// `limit` bytes is refused (`Err` with its size) and `buf` is left as it was: its length
/// would not fit the header.
fn frame(
    buf: &mut Vec<u8>,
    rtype: RecordType,
    encode: impl FnOnce(&mut Vec<u8>),
    limit: usize,
) -> std::result::Result<(), usize> {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; RECORD_HEADER]);
    encode(buf);
    let payload = buf.len() - start - RECORD_HEADER;
    if payload > limit {
        buf.truncate(start);
        return Err(payload);
    }
    let plen = payload as u32;
    let pcrc = crc32c::crc32c(&buf[start + RECORD_HEADER..]);
    let hdr = &mut buf[start..start + RECORD_HEADER];
    hdr[0..4].copy_from_slice(&plen.to_le_bytes());
    hdr[4] = rtype as u8;
    let hcrc = crc32c::crc32c(&hdr[..5]);
    hdr[5..9].copy_from_slice(&hcrc.to_le_bytes());
    hdr[9..13].copy_from_slice(&pcrc.to_le_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_record_has_a_zeroed_sector_and_ordinary_trailing_zeros_are_not_one() {
        // A record at file offset 100..2100 of a 3000-byte file of ones.
        let ones = vec![1u8; 3000];
        assert!(!torn_record(&ones, 100, 2100));
        // A zeroed sector in the middle.
        let mut d = ones.clone();
        d[512..1024].fill(0);
        assert!(torn_record(&d, 100, 2100));
        // Zeros that straddle two sectors without filling either are no sign.
        let mut d = ones.clone();
        d[400..800].fill(0);
        assert!(!torn_record(&d, 100, 2100));
        // The record's first part, alone in its sector after an earlier record.
        let mut d = ones.clone();
        d[100..512].fill(0);
        assert!(torn_record(&d, 100, 2100));
        // Its last bytes are zero (an index's high bytes) but the next record follows in
        // the same sector: not torn.
        let mut d = ones.clone();
        d[2048..2100].fill(0);
        assert!(!torn_record(&d, 100, 2100));
        // ... torn when the whole rest of that sector is zero too.
        d[2100..2560].fill(0);
        assert!(torn_record(&d, 100, 2100));
        // A record cut by the end of the file, its last part zero to the end.
        let mut d = ones[..2080].to_vec();
        d[2048..].fill(0);
        assert!(torn_record(&d, 100, 2100));
        assert!(!torn_record(&ones, 100, 100));
    }

    #[test]
    fn a_record_over_the_limit_is_refused_and_leaves_the_buffer_as_it_was() {
        let mut buf = b"earlier".to_vec();
        let r = frame(
            &mut buf,
            RecordType::State,
            |p| p.extend_from_slice(&[7; 100]),
            99,
        );
        assert_eq!(r, Err(100));
        assert_eq!(buf, b"earlier");
        frame(
            &mut buf,
            RecordType::State,
            |p| p.extend_from_slice(&[7; 99]),
            99,
        )
        .unwrap();
        assert_eq!(buf.len(), 7 + RECORD_HEADER + 99);
        assert_eq!(&buf[7..11], &99u32.to_le_bytes());
    }
}
