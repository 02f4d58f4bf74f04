//! Damaged and foreign data directories: torn tails are cut off, corruption anywhere else
//! refuses the open naming the file and offset, and directories of another backend or a
//! newer format are refused without being touched.
#![allow(clippy::field_reassign_with_default)]

use std::fs;
use std::path::{Path, PathBuf};

use raft::Storage;
use raft::eraftpb::HardState;
use raftbench::storage::memwal::MemwalBackend;
use raftbench::storage::stress;
use raftbench::storage::{
    BackendConfig, BackendKind, FsyncPolicy, StorageBackend, StorageError, open_backend,
};

fn memwal_cfg(dir: &Path) -> BackendConfig {
    let mut cfg = BackendConfig::new(BackendKind::Memwal, dir).with_fsync(FsyncPolicy::Always);
    cfg.memwal.segment_size = bytesize::ByteSize::kib(16);
    cfg
}

/// Open, persist `batches` batches of 8 entries (each one WAL record), close. Returns the
/// last index.
fn write_batches(cfg: &BackendConfig, batches: u64) -> u64 {
    let mut b = MemwalBackend::open(cfg.clone()).unwrap();
    for _ in 0..batches {
        let next = b.last_index().unwrap() + 1;
        let ents: Vec<_> = (next..next + 8).map(|i| stress::entry(i, 100)).collect();
        let mut hs = HardState::default();
        hs.term = 1;
        hs.commit = next + 7;
        b.persist(None, &ents, Some(&hs)).unwrap();
    }
    b.last_index().unwrap()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// The segment holding the records written by the last `write_batches` (the newest one
/// that is not empty besides its state record).
fn newest_segment_with_data(dir: &Path) -> PathBuf {
    segments(dir)
        .into_iter()
        .rev()
        .find(|p| fs::metadata(p).unwrap().len() > 200)
        .expect("a segment with records")
}

fn snapshot_of_dir(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn torn_tail_is_truncated_for_every_cut() {
    // One persist record of 8 entries × ~110 bytes; cut it at many points.
    for cut in [1usize, 2, 7, 12, 13, 14, 100, 500, 900] {
        let t = tempfile::tempdir().unwrap();
        let cfg = memwal_cfg(t.path());
        let last = write_batches(&cfg, 3);
        let seg = newest_segment_with_data(t.path());
        let len = fs::metadata(&seg).unwrap().len();
        let f = fs::OpenOptions::new().write(true).open(&seg).unwrap();
        f.set_len(len - cut as u64).unwrap();
        drop(f);

        let b = MemwalBackend::open(cfg.clone())
            .unwrap_or_else(|e| panic!("cut {cut}: torn tail must not refuse the open: {e}"));
        assert_eq!(
            b.last_index().unwrap(),
            last - 8,
            "cut {cut}: only the torn record is lost"
        );
        assert!(
            b.open_report().torn_bytes_truncated > 0,
            "cut {cut}: torn bytes reported"
        );
        for i in 1..=last - 8 {
            assert_eq!(
                b.entries(i, i + 1, None, raft::GetEntriesContext::empty(false))
                    .unwrap()[0],
                stress::entry(i, 100)
            );
        }
        drop(b);
        // The cut was made permanent: a second open finds a clean log.
        let b = MemwalBackend::open(cfg).unwrap();
        assert_eq!(b.open_report().torn_bytes_truncated, 0);
        assert_eq!(b.last_index().unwrap(), last - 8);
    }
}

#[test]
fn zero_filled_tail_is_truncated() {
    let t = tempfile::tempdir().unwrap();
    let cfg = memwal_cfg(t.path());
    let last = write_batches(&cfg, 2);
    let seg = newest_segment_with_data(t.path());
    let mut bytes = fs::read(&seg).unwrap();
    bytes.extend_from_slice(&[0u8; 4096]);
    fs::write(&seg, bytes).unwrap();
    let b = MemwalBackend::open(cfg).unwrap();
    assert_eq!(b.last_index().unwrap(), last);
    assert_eq!(b.open_report().torn_bytes_truncated, 4096);
}

#[test]
fn flipped_byte_mid_segment_refuses_open_naming_file_and_offset() {
    for (what, pick) in [
        ("first record after the header", 40usize),
        ("middle of the segment", usize::MAX / 2),
        ("last byte of the last complete record", usize::MAX),
    ] {
        let t = tempfile::tempdir().unwrap();
        let cfg = memwal_cfg(t.path());
        write_batches(&cfg, 4);
        let seg = newest_segment_with_data(t.path());
        let mut bytes = fs::read(&seg).unwrap();
        let at = match pick {
            usize::MAX => bytes.len() - 1,
            p if p > bytes.len() => bytes.len() / 2,
            p => p,
        };
        bytes[at] ^= 0x20;
        fs::write(&seg, &bytes).unwrap();
        let before = snapshot_of_dir(t.path());
        let err = match MemwalBackend::open(cfg.clone()) {
            Ok(_) => panic!("{what}: a flipped byte must refuse the open"),
            Err(e) => e,
        };
        assert!(matches!(err, StorageError::Corrupt { .. }), "{what}: {err}");
        let msg = err.to_string();
        assert!(
            msg.contains(&seg.display().to_string()),
            "{what}: names the file: {msg}"
        );
        assert!(msg.contains("offset"), "{what}: names the offset: {msg}");
        assert_eq!(
            snapshot_of_dir(t.path()),
            before,
            "{what}: refused open changed files"
        );
    }
}

#[test]
fn damage_in_a_sealed_segment_is_corruption_even_at_its_end() {
    let t = tempfile::tempdir().unwrap();
    let cfg = memwal_cfg(t.path());
    write_batches(&cfg, 60); // 16 KiB segments: several of them
    let segs = segments(t.path());
    assert!(
        segs.len() >= 3,
        "expected rotation, got {} segments",
        segs.len()
    );
    let sealed = &segs[segs.len() - 2];
    let len = fs::metadata(sealed).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(sealed)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let err = MemwalBackend::open(cfg).err().expect("must refuse");
    assert!(
        err.to_string().contains(&sealed.display().to_string()),
        "{err}"
    );
}

#[test]
fn corrupt_snapshot_file_refuses_open() {
    let t = tempfile::tempdir().unwrap();
    let cfg = memwal_cfg(t.path());
    let last = write_batches(&cfg, 4);
    let mut b = MemwalBackend::open(cfg.clone()).unwrap();
    b.apply(last, &[], None).unwrap();
    b.create_snapshot().unwrap();
    drop(b);
    let snap = fs::read_dir(t.path().join("snap"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = fs::read(&snap).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    fs::write(&snap, bytes).unwrap();
    let err = MemwalBackend::open(cfg).err().expect("must refuse");
    assert!(
        err.to_string().contains(&snap.display().to_string()),
        "{err}"
    );
}

#[test]
fn wal_segments_below_the_snapshot_are_deleted() {
    let t = tempfile::tempdir().unwrap();
    let cfg = memwal_cfg(t.path());
    let last = write_batches(&cfg, 60);
    let before = segments(t.path());
    assert!(
        before.len() >= 4,
        "expected rotation, got {} segments",
        before.len()
    );
    let mut b = MemwalBackend::open(cfg.clone()).unwrap();
    b.apply(last, &[], None).unwrap();
    b.create_snapshot().unwrap();
    b.compact(last - 10).unwrap();
    drop(b);
    let last2 = write_batches(&cfg, 30);
    let b = MemwalBackend::open(cfg.clone()).unwrap();
    let after = segments(t.path());
    assert!(
        !after.contains(&before[0]) && !after.contains(&before[1]),
        "segments wholly below the snapshot and compaction point survived: {after:?}"
    );
    assert_eq!(b.first_index().unwrap(), last - 9);
    assert_eq!(b.last_index().unwrap(), last2);
    assert_eq!(b.applied_index(), last);
}

#[test]
fn foreign_directories_are_refused_untouched() {
    let t = tempfile::tempdir().unwrap();
    let mem = t.path().join("mem");
    write_batches(&memwal_cfg(&mem), 1);
    let before = snapshot_of_dir(&mem);

    // Another backend's directory.
    let err = open_backend(&BackendConfig::new(BackendKind::Rocksdb, &mem))
        .err()
        .expect("rocksdb must refuse a memwal directory");
    assert!(matches!(err, StorageError::WrongBackend { .. }), "{err}");
    assert!(err.to_string().contains("memwal"), "{err}");
    assert_eq!(snapshot_of_dir(&mem), before);

    let rdir = t.path().join("rocks");
    drop(open_backend(&BackendConfig::new(BackendKind::Rocksdb, &rdir)).unwrap());
    let err = open_backend(&BackendConfig::new(BackendKind::Memwal, &rdir))
        .err()
        .expect("memwal must refuse a rocksdb directory");
    assert!(matches!(err, StorageError::WrongBackend { .. }), "{err}");

    // A newer format version.
    let marker = mem.join("RAFTBENCH");
    let text = fs::read_to_string(&marker)
        .unwrap()
        .replace("\"version\": 1", "\"version\": 99");
    fs::write(&marker, text).unwrap();
    let before = snapshot_of_dir(&mem);
    let err = open_backend(&memwal_cfg(&mem))
        .err()
        .expect("newer version refused");
    assert!(
        matches!(err, StorageError::UnsupportedVersion { found: 99, .. }),
        "{err}"
    );
    assert_eq!(snapshot_of_dir(&mem), before);

    // Some unrelated, non-empty directory.
    let other = t.path().join("other");
    fs::create_dir(&other).unwrap();
    fs::write(other.join("notes.txt"), "mine").unwrap();
    for kind in BackendKind::ALL {
        let err = open_backend(&BackendConfig::new(kind, &other))
            .err()
            .expect("refused");
        assert!(matches!(err, StorageError::NotADataDir { .. }), "{err}");
    }
    assert_eq!(fs::read_dir(&other).unwrap().count(), 1);
}
