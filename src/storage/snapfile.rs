//! Snapshot files, as every backend writes them (memwal's are part of its state; the
//! other engines' are what they send to followers).
//!
//! ```text
//! "RBSNAPF1" | meta_len:u32 | SnapshotMetadata (protobuf) | data_len:u64 | data | crc32c:u32
//! ```
//! `data` is the shared [`snapshot_data`](crate::storage::snapshot_data) blob. Files are
//! written as `*.tmp` and renamed, so a crash never leaves a half-written file under a final
//! name. Names: `snap-<index>.snap` for a snapshot that is part of the replica's state, and
//! `snap-<index>.pending` for a snapshot received from the leader whose WAL marker is not yet
//! known to be durable (it is adopted on replay only if the marker is found).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use std::ops::Range;

use bytes::{Buf, Bytes};
use protobuf::Message as _;
use raft::eraftpb::SnapshotMetadata;

use crate::storage::datadir::{sync_dir, tmp_path};
use crate::storage::error::{Result, StorageError};
use crate::storage::snapshot_data::{HEADER_LEN, SnapshotDataWriter};

const MAGIC: &[u8; 8] = b"RBSNAPF1";

/// Path of the final snapshot file for `index`.
pub fn final_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("snap-{index:020}.snap"))
}

/// Path of the pending snapshot file for `index`.
pub fn pending_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("snap-{index:020}.pending"))
}

/// The snapshot directory's contents.
#[derive(Debug, Default)]
pub struct Listing {
    /// Indexes of final snapshots, ascending.
    pub finals: Vec<u64>,
    /// Indexes of pending snapshots, ascending.
    pub pendings: Vec<u64>,
    /// `*.tmp` files: writes in progress, or (at open) leftovers of interrupted ones.
    pub temporaries: Vec<std::path::PathBuf>,
}

/// List `dir`. Temporary files are listed, never deleted here: while the node runs, one
/// may be a snapshot being written (only the open deletes leftovers, [`delete_leftovers`]).
pub fn list(dir: &Path) -> Result<Listing> {
    let mut out = Listing::default();
    for ent in fs::read_dir(dir).map_err(StorageError::io("list", dir))? {
        let ent = ent.map_err(StorageError::io("list", dir))?;
        let name = ent.file_name().to_string_lossy().into_owned();
        if name.ends_with(".tmp") {
            out.temporaries.push(ent.path());
            continue;
        }
        let parsed = name.strip_prefix("snap-").and_then(|rest| {
            let (num, ext) = rest.split_once('.')?;
            Some((num.parse::<u64>().ok()?, ext.to_string()))
        });
        match parsed {
            Some((i, ext)) if ext == "snap" => out.finals.push(i),
            Some((i, ext)) if ext == "pending" => out.pendings.push(i),
            _ => {
                return Err(StorageError::corrupt(
                    ent.path(),
                    0,
                    "unexpected file in the snapshot directory",
                ));
            }
        }
    }
    out.finals.sort_unstable();
    out.pendings.sort_unstable();
    Ok(out)
}

/// Delete the temporary files of `listing`: at open, they are leftovers of writes a crash
/// interrupted (never adopted: a snapshot only counts under its final name).
pub fn delete_leftovers(listing: &mut Listing) -> Result<()> {
    for p in listing.temporaries.drain(..) {
        fs::remove_file(&p).map_err(StorageError::io("delete", &p))?;
    }
    Ok(())
}

/// Write a snapshot file at `path` (via a temporary file and a rename). The file and the
/// directory are synced under every fsync policy: the snapshot is durable when this
/// returns, because what it replaces is deleted on the strength of it. A failed write
/// leaves no temporary file behind (when it can be deleted). Returns the file's size.
pub fn write(path: &Path, meta: &SnapshotMetadata, data: &[u8]) -> Result<u64> {
    write_file(path, meta, data).map(|(n, _)| n)
}

/// As [`write`], then map the written file's data blob (through the handle that wrote it,
/// so a concurrent deletion of the new name cannot fail the mapping).
pub fn write_mapped(path: &Path, meta: &SnapshotMetadata, data: &[u8]) -> Result<(u64, Bytes)> {
    let (n, f) = write_file(path, meta, data)?;
    Ok((n, map_written(path, &f)?))
}

/// Map the data blob of a snapshot file just written through `f`.
fn map_written(path: &Path, f: &fs::File) -> Result<Bytes> {
    // SAFETY: as in `map`: snapshot files are never truncated or rewritten in place.
    let mmap = unsafe { memmap2::Mmap::map(f) }.map_err(StorageError::io("map", path))?;
    let (_, range) = parse(path, &mmap, false)?;
    Ok(Bytes::from_owner(mmap).slice(range))
}

/// The file's first bytes up to its data blob, with the blob's length.
fn file_head(meta: &SnapshotMetadata, data_len: u64) -> Result<Vec<u8>> {
    let meta_bytes = meta
        .write_to_bytes()
        .map_err(StorageError::codec("snapshot metadata"))?;
    let mut head = Vec::with_capacity(24 + meta_bytes.len());
    head.extend_from_slice(MAGIC);
    head.extend_from_slice(&(meta_bytes.len() as u32).to_le_bytes());
    head.extend_from_slice(&meta_bytes);
    head.extend_from_slice(&data_len.to_le_bytes());
    Ok(head)
}

/// Create `path`'s temporary file, let `fill` write it, sync it and rename it to `path`,
/// then sync the directory. A failed write leaves no temporary file behind (when it can be
/// deleted). Returns `fill`'s answer and the handle that wrote the file.
fn write_via_tmp<T>(
    path: &Path,
    fill: impl FnOnce(&mut fs::File, &Path) -> Result<T>,
) -> Result<(T, fs::File)> {
    let tmp = tmp_path(path);
    let written = (|| {
        let mut f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(StorageError::io("create", &tmp))?;
        let out = fill(&mut f, &tmp)?;
        f.sync_all().map_err(StorageError::io("fsync", &tmp))?;
        fs::rename(&tmp, path).map_err(StorageError::io("rename", &tmp))?;
        Ok((out, f))
    })();
    let written = match written {
        Ok(w) => w,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(written)
}

fn write_file(path: &Path, meta: &SnapshotMetadata, data: &[u8]) -> Result<(u64, fs::File)> {
    let head = file_head(meta, data.len() as u64)?;
    let crc = crc32c::crc32c_append(crc32c::crc32c(&head), data);
    write_via_tmp(path, |f, tmp| {
        let mut out = RangeWriter::new(f);
        out.write(&head)
            .and_then(|()| out.write(data))
            .and_then(|()| out.write(&crc.to_le_bytes()))
            .map_err(StorageError::io("write", tmp))?;
        Ok(out.written())
    })
}

/// Stream a snapshot file of the state as of `applied_index` at `path`: `fill` pushes the
/// pairs (ascending keys) into the sink, which writes them out as they accumulate, so the
/// file is written through a buffer of [`SYNC_RANGE`] (plus one pair) however large the state — a 1M-key
/// snapshot built in memory first held a 280 MB heap copy per node. Written within
/// `limit` (see [`RangeWriter`]). Durable as [`write`]; returns the file's size and its
/// data blob, mapped.
pub fn write_streamed(
    path: &Path,
    meta: &SnapshotMetadata,
    applied_index: u64,
    limit: Limit<'_>,
    fill: impl FnOnce(&mut PairSink<'_>) -> Result<()>,
) -> Result<(u64, Bytes)> {
    let mut head = file_head(meta, 0)?;
    let (n, f) = write_via_tmp(path, |f, tmp| {
        let mut out = RangeWriter::new(f).limit(limit);
        // The blob's length and header are known at the end: placeholders until then.
        out.write(&head)
            .and_then(|()| out.write(&[0; HEADER_LEN]))
            .map_err(StorageError::io("write", tmp))?;
        let mut sink = PairSink {
            w: SnapshotDataWriter::streaming(applied_index),
            out,
            tmp,
        };
        fill(&mut sink)?;
        let PairSink { mut w, mut out, .. } = sink;
        w.drain(|b| out.write(b))
            .map_err(StorageError::io("write", tmp))?;
        let blob = w.finish_streamed();
        let len_at = head.len() - 8;
        head[len_at..].copy_from_slice(&blob.blob_len().to_le_bytes());
        let crc = blob.crc_after(crc32c::crc32c(&head));
        out.write(&blob.trailer)
            .and_then(|()| out.write(&crc.to_le_bytes()))
            .map_err(StorageError::io("write", tmp))?;
        let n = out.written();
        use std::os::unix::fs::FileExt;
        f.write_all_at(&head, 0)
            .and_then(|()| f.write_all_at(&blob.header, head.len() as u64))
            .map_err(StorageError::io("write", tmp))?;
        Ok(n)
    })?;
    Ok((n, map_written(path, &f)?))
}

/// Where [`write_streamed`]'s `fill` pushes the pairs.
pub struct PairSink<'a> {
    w: SnapshotDataWriter,
    out: RangeWriter<'a>,
    tmp: &'a Path,
}

impl PairSink<'_> {
    /// Append one pair (keys ascending); written out once [`SYNC_RANGE`] bytes have
    /// accumulated. Fails once the write is cancelled.
    pub fn push(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.w.push(key, value);
        if self.w.pending() >= SYNC_RANGE {
            let out = &mut self.out;
            self.w
                .drain(|b| out.write(b))
                .map_err(StorageError::io("write", self.tmp))?;
        }
        Ok(())
    }
}

/// How a background snapshot write is held back: at most `rate` bytes a second (0: no
/// limit), and given up (an error, no file left) once `cancel` is set.
#[derive(Clone, Copy)]
pub struct Limit<'a> {
    pub rate: u64,
    pub cancel: &'a std::sync::atomic::AtomicBool,
}

/// Bytes of a snapshot written between two range syncs (see [`RangeWriter`]), as
/// RocksDB's usual `bytes_per_sync`.
const SYNC_RANGE: usize = 1 << 20;

/// Writes a file front to back, asking the kernel to write each 1 MiB out as soon as it is
/// written and waiting for the one before, as RocksDB's `bytes_per_sync` does, and, with a
/// rate, sleeping between ranges so as to write no faster (as RocksDB's rate limiter). Why: a
/// snapshot of a large state (280 MB for 1M keys) written in one go leaves hundreds of MB
/// dirty for the final fsync, and with ext4's ordered data every other file's fsync on that
/// disk (the nodes' WALs) waits behind that flush: writes stalled for up to half a second
/// while three nodes wrote their snapshots. The range syncs are only a hint (where
/// unsupported, as on FUSE, they are skipped); durability still comes from the fsync after
/// the whole file is written. Why the rate: the range syncs bound what is dirty, not how
/// much the disk is asked to write; at full speed three nodes' snapshots still saturated a
/// 500 MB/s virtual disk for seconds, and every WAL fsync (a cache flush of everything
/// written before it) waited behind them: 50 ms persists, and writes backed up for a
/// second behind them.
struct RangeWriter<'f> {
    f: &'f mut fs::File,
    /// Bytes written so far (the file's current position: writing starts at 0).
    off: u64,
    /// Where the range being written began.
    range_start: u64,
    /// The range whose writeback was started last, not yet awaited.
    previous: Option<(u64, u64)>,
    /// Bytes a second at most (0: no limit), counted from `started`.
    rate: u64,
    started: std::time::Instant,
    cancel: Option<&'f std::sync::atomic::AtomicBool>,
}

impl<'f> RangeWriter<'f> {
    fn new(f: &'f mut fs::File) -> Self {
        RangeWriter {
            f,
            off: 0,
            range_start: 0,
            previous: None,
            rate: 0,
            started: std::time::Instant::now(),
            cancel: None,
        }
    }

    /// Write within `limit`.
    fn limit(mut self, limit: Limit<'f>) -> Self {
        self.rate = limit.rate;
        self.cancel = Some(limit.cancel);
        self
    }

    fn cancelled(&self) -> std::io::Result<()> {
        match self.cancel {
            Some(c) if c.load(std::sync::atomic::Ordering::Relaxed) => {
                Err(std::io::Error::other("cancelled: the node is stopping"))
            }
            _ => Ok(()),
        }
    }

    fn written(&self) -> u64 {
        self.off
    }

    fn write(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            let room = SYNC_RANGE - (self.off - self.range_start) as usize;
            let (now, rest) = data.split_at(room.min(data.len()));
            self.f.write_all(now)?;
            self.off += now.len() as u64;
            data = rest;
            if self.off - self.range_start == SYNC_RANGE as u64 {
                self.end_range()?;
            }
        }
        Ok(())
    }

    /// Start the writeback of the range just written; wait for the one before; keep to the
    /// rate, in short sleeps so that a cancellation is seen within 50 ms.
    fn end_range(&mut self) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        let fd = self.f.as_raw_fd();
        let range_sync = |off: u64, len: u64, flags: libc::c_uint| {
            // SAFETY: a plain syscall on an open descriptor this writer borrows; it reads
            // no memory of ours. Its result is ignored: it is a hint (see above).
            unsafe { libc::sync_file_range(fd, off as i64, len as i64, flags) }
        };
        let len = self.off - self.range_start;
        range_sync(self.range_start, len, libc::SYNC_FILE_RANGE_WRITE);
        if let Some((o, l)) = self.previous {
            range_sync(
                o,
                l,
                libc::SYNC_FILE_RANGE_WAIT_BEFORE
                    | libc::SYNC_FILE_RANGE_WRITE
                    | libc::SYNC_FILE_RANGE_WAIT_AFTER,
            );
        }
        self.previous = Some((self.range_start, len));
        self.range_start = self.off;
        self.cancelled()?;
        if self.rate > 0 {
            let due = std::time::Duration::from_secs_f64(self.off as f64 / self.rate as f64);
            while let Some(wait) = due.checked_sub(self.started.elapsed()) {
                std::thread::sleep(wait.min(std::time::Duration::from_millis(50)));
                self.cancelled()?;
            }
        }
        Ok(())
    }
}

/// Read and verify a snapshot file, returning its metadata and data blob.
pub fn read(path: &Path) -> Result<(SnapshotMetadata, Vec<u8>)> {
    let buf = fs::read(path).map_err(StorageError::io("read", path))?;
    let (meta, data) = parse(path, &buf, true)?;
    Ok((meta, buf[data].to_vec()))
}

/// Map a snapshot file into memory and return its metadata and data blob as [`Bytes`] that
/// borrow the mapping, so a snapshot kept for sending to followers costs page cache, not
/// heap. The checksum is verified when `verify` (it reads the whole file); a caller that
/// has just written or read the file passes `false`.
///
/// Why this is safe to keep: snapshot files are only ever created whole (rename) and
/// deleted, never truncated or rewritten in place, and a deleted file stays readable
/// through an existing mapping.
pub fn map(path: &Path, verify: bool) -> Result<(SnapshotMetadata, Bytes)> {
    let f = fs::File::open(path).map_err(StorageError::io("open", path))?;
    // SAFETY: see above — nothing truncates or rewrites a snapshot file once it has its
    // name, so the mapped bytes cannot change or vanish under the mapping.
    let mmap = unsafe { memmap2::Mmap::map(&f) }.map_err(StorageError::io("map", path))?;
    let (meta, data) = parse(path, &mmap, verify)?;
    Ok((meta, Bytes::from_owner(mmap).slice(data)))
}

/// Check a snapshot file's framing (and, with `verify`, its checksum); return its
/// metadata and the byte range of its data blob.
fn parse(path: &Path, buf: &[u8], verify: bool) -> Result<(SnapshotMetadata, Range<usize>)> {
    let bad = |off: usize, why: &str| StorageError::corrupt(path, off as u64, why);
    const MIN_LEN: usize = MAGIC.len() + 4 + 8 + 4;
    if buf.len() < MIN_LEN {
        return Err(StorageError::corrupt(
            path,
            0,
            format!(
                "file of {} bytes is too short for a snapshot file (at least {MIN_LEN})",
                buf.len()
            ),
        ));
    }
    if &buf[..MAGIC.len()] != MAGIC {
        return Err(bad(0, "bad magic: not a raftbench snapshot file"));
    }
    // The length check above covers the magic, both length fields and the checksum.
    let (body, mut crc) = buf.split_at(buf.len() - 4);
    if verify && crc32c::crc32c(body) != crc.get_u32_le() {
        return Err(bad(body.len(), "snapshot file checksum mismatch"));
    }
    let mut rest = &body[MAGIC.len()..];
    let mlen = rest.get_u32_le() as usize;
    if rest.remaining() < mlen + 8 {
        return Err(bad(8, "metadata length exceeds the file"));
    }
    let meta = SnapshotMetadata::parse_from_bytes(&rest[..mlen])
        .map_err(|e| bad(12, &format!("snapshot metadata: {e}")))?;
    rest.advance(mlen);
    let dlen_off = 12 + mlen;
    let dlen = rest.get_u64_le();
    if rest.remaining() as u64 != dlen {
        return Err(bad(dlen_off, "data length does not match the file size"));
    }
    let start = body.len() - rest.remaining();
    Ok((meta, start..body.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::snapshot_data::SnapshotData;

    fn meta(index: u64) -> SnapshotMetadata {
        let mut meta = SnapshotMetadata::default();
        meta.index = index;
        meta.term = 2;
        meta.mut_conf_state().voters = vec![1, 2, 3];
        meta
    }

    #[test]
    fn a_streamed_file_is_the_file_written_from_memory() {
        let t = tempfile::tempdir().unwrap();
        // More than three buffers' worth, so drains, range syncs and the patched header
        // all happen.
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..20_000u32)
            .map(|i| {
                (
                    format!("key{i:08}").into_bytes(),
                    vec![(i % 251) as u8; 200],
                )
            })
            .collect();
        let mut mem = SnapshotDataWriter::new(9);
        for (k, v) in &pairs {
            mem.push(k, v);
        }
        let from_memory = final_path(t.path(), 8);
        write(&from_memory, &meta(9), &mem.finish()).unwrap();
        let streamed = final_path(t.path(), 9);
        let cancel = std::sync::atomic::AtomicBool::new(false);
        let unlimited = Limit {
            rate: 0,
            cancel: &cancel,
        };
        let (n, mapped) = write_streamed(&streamed, &meta(9), 9, unlimited, |w| {
            for (k, v) in &pairs {
                w.push(k, v)?;
            }
            Ok(())
        })
        .unwrap();
        assert!(n > 3 * SYNC_RANGE as u64);
        assert_eq!(
            fs::read(&streamed).unwrap(),
            fs::read(&from_memory).unwrap()
        );
        assert_eq!(n, fs::metadata(&streamed).unwrap().len());
        let (m, data) = map(&streamed, true).unwrap();
        assert_eq!((m.index, m.term), (9, 2));
        assert_eq!(data, mapped);
        let d = SnapshotData::parse(&data).unwrap();
        assert_eq!((d.applied_index, d.pairs), (9, 20_000));
        assert!(d.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).eq(pairs));
        assert!(list(t.path()).unwrap().temporaries.is_empty());
    }

    #[test]
    fn a_failed_or_cancelled_stream_leaves_no_file_and_a_rate_slows_the_write() {
        let t = tempfile::tempdir().unwrap();
        let path = final_path(t.path(), 4);
        let cancel = std::sync::atomic::AtomicBool::new(false);
        let limit = |rate| Limit {
            rate,
            cancel: &cancel,
        };
        let err = write_streamed(&path, &meta(4), 4, limit(0), |w| {
            w.push(b"a", b"1")?;
            Err(StorageError::Invalid("the scan failed".into()))
        })
        .unwrap_err();
        assert!(err.to_string().contains("the scan failed"), "{err}");
        assert!(
            fs::read_dir(t.path()).unwrap().next().is_none(),
            "nothing left"
        );

        // 3 MiB at 8 MiB/s cannot take less than 3/8 s (the limiter only ever sleeps).
        let three_mib = |w: &mut PairSink<'_>| {
            for i in 0..3 * 1024u32 {
                w.push(&i.to_be_bytes(), &[7; 1016])?;
            }
            Ok(())
        };
        let started = std::time::Instant::now();
        write_streamed(&path, &meta(4), 4, limit(8 << 20), three_mib).unwrap();
        assert!(started.elapsed() >= std::time::Duration::from_millis(350));
        map(&path, true).unwrap();

        // Cancelled (the node stops): the write fails at its next range, leaving nothing.
        fs::remove_file(&path).unwrap();
        cancel.store(true, std::sync::atomic::Ordering::Relaxed);
        let err = write_streamed(&path, &meta(4), 4, limit(1 << 20), three_mib).unwrap_err();
        assert!(err.to_string().contains("cancelled"), "{err}");
        assert!(
            fs::read_dir(t.path()).unwrap().next().is_none(),
            "nothing left"
        );
    }

    #[test]
    fn a_write_in_progress_is_listed_not_deleted_and_only_open_deletes_leftovers() {
        let t = tempfile::tempdir().unwrap();
        let mut meta = SnapshotMetadata::default();
        meta.index = 3;
        meta.term = 1;
        write(&final_path(t.path(), 3), &meta, b"x").unwrap();
        let in_progress = t.path().join("snap-9.snap.tmp");
        fs::write(&in_progress, b"half").unwrap();
        let mut l = list(t.path()).unwrap();
        assert_eq!(l.finals, vec![3]);
        assert_eq!(l.temporaries, vec![in_progress.clone()]);
        assert!(
            in_progress.exists(),
            "a running node's listing deletes nothing"
        );
        delete_leftovers(&mut l).unwrap();
        assert!(!in_progress.exists());
        assert_eq!(list(t.path()).unwrap().finals, vec![3]);
    }

    #[test]
    fn opening_deletes_leftover_temporaries_and_adopts_none() {
        use crate::storage::StorageBackend;
        let t = tempfile::tempdir().unwrap();
        let cfg = crate::wire::BackendConfig::new(crate::wire::BackendKind::Memwal, t.path());
        drop(crate::storage::memwal::MemwalBackend::open(cfg.clone()).unwrap());
        let leftover = t.path().join("snap").join("snap-7.snap.tmp");
        fs::write(&leftover, b"interrupted").unwrap();
        let b = crate::storage::memwal::MemwalBackend::open(cfg).unwrap();
        assert!(!leftover.exists(), "open deletes what a crash left");
        assert_eq!(b.stats().snapshot_index, 0, "and adopts none of it");
    }

    #[test]
    fn short_or_damaged_files_are_errors_naming_the_file() {
        let t = tempfile::tempdir().unwrap();
        let path = final_path(t.path(), 7);
        let mut meta = SnapshotMetadata::default();
        meta.index = 7;
        meta.term = 2;
        meta.mut_conf_state().voters = vec![1, 2, 3];
        write(&path, &meta, b"blob").unwrap();
        assert_eq!(read(&path).unwrap(), (meta.clone(), b"blob".to_vec()));
        let (mapped_meta, mapped) = map(&path, true).unwrap();
        assert_eq!((mapped_meta, &mapped[..]), (meta, &b"blob"[..]));

        let good = fs::read(&path).unwrap();
        let damaged = path.with_extension("damaged");
        let check = |bytes: &[u8], what: &str| {
            fs::write(&damaged, bytes).unwrap();
            let err = read(&damaged).expect_err(what);
            assert!(
                err.to_string().contains(&damaged.display().to_string()),
                "{what}: {err}"
            );
            let err = map(&damaged, true).expect_err(what);
            assert!(
                err.to_string().contains(&damaged.display().to_string()),
                "{what} (mapped): {err}"
            );
        };
        for cut in 0..good.len() {
            check(&good[..cut], &format!("cut to {cut} bytes"));
        }
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            check(&bad, &format!("flip at byte {i}"));
        }
    }
}
