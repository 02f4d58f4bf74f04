//! Power loss, simulated without a fault file system: a recorded write sequence is replayed
//! and, after every step, the data directory is rebuilt as a power cut would leave it.
//! Each WAL segment keeps what its last `fdatasync` made durable (the lengths are noted by
//! `wal::sync_segment` under test), and the unsynced rest is cut, cut mid-record, kept whole,
//! or kept with a zeroed sector in it (write-back that reached the disk out of order).
//! Every such directory must reopen, with every synced write present and the applied state
//! a consistent prefix of the applies. Directory entries are taken as durable (the fault
//! file system covers their loss).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use raft::Storage;
use raft::eraftpb::{ConfState, Entry, HardState};

use super::MemwalBackend;
use super::wal::durable;
use crate::kv::KvCommand;
use crate::storage::{BackendConfig, BackendKind, FsyncPolicy, StorageBackend};

/// Every file under `dir`, by path relative to it, except the trash (discarded files a
/// background thread is deleting; the next open empties it anyway).
fn image(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, d: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            if p == crate::storage::datadir::trash_dir(root) {
                continue;
            }
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_path_buf();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// What a power cut leaves of the bytes a segment holds past its durable length.
#[derive(Debug, Clone, Copy)]
enum Cut {
    /// Only the synced bytes.
    AtSync,
    /// Half of the unsynced bytes (usually mid-record).
    Half,
    /// Everything (as after `kill -9`).
    Whole,
    /// Everything, but one sector of the unsynced bytes never reached the disk.
    ZeroedSector,
}

const CUTS: [Cut; 4] = [Cut::AtSync, Cut::Half, Cut::Whole, Cut::ZeroedSector];

fn cut(bytes: &mut Vec<u8>, durable: usize, how: Cut) {
    let unsynced = bytes.len() - durable;
    match how {
        Cut::AtSync => bytes.truncate(durable),
        Cut::Half => bytes.truncate(durable + unsynced / 2),
        Cut::Whole => {}
        Cut::ZeroedSector => {
            let start = durable.next_multiple_of(512).min(bytes.len());
            let end = (start + 512).min(bytes.len());
            let (start, end) = if start == end {
                (durable, bytes.len())
            } else {
                (start, end)
            };
            bytes[start..end].fill(0);
        }
    }
}

/// Write the directory a power cut at this point leaves into `to`.
fn rebuild(
    to: &Path,
    files: &BTreeMap<PathBuf, Vec<u8>>,
    durable: &HashMap<PathBuf, u64>,
    from: &Path,
    how: Cut,
) {
    for (rel, bytes) in files {
        let mut bytes = bytes.clone();
        if rel.extension().is_some_and(|x| x == "wal") {
            // Every segment is synced when it is created, so it has a durable length.
            let d = (durable[&from.join(rel)] as usize).min(bytes.len());
            cut(&mut bytes, d, how);
        }
        let p = to.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
    }
}

fn config(dir: &Path, fsync: FsyncPolicy) -> BackendConfig {
    let mut cfg = BackendConfig::new(BackendKind::Memwal, dir).with_fsync(fsync);
    cfg.memwal.segment_size = bytesize::ByteSize::kib(4);
    cfg
}

fn entry(index: u64, term: u64) -> Entry {
    let mut e = Entry::default();
    e.index = index;
    e.term = term;
    e.data = vec![b'e'; 200].into();
    e
}

fn hs(term: u64, commit: u64) -> HardState {
    let mut h = HardState::default();
    h.term = term;
    h.vote = 1;
    h.commit = commit;
    h
}

/// The apply of index `i`: one put of its own key (a lost apply is then a missing key,
/// which no later apply can hide), plus an overwrite of one of ten shared keys.
fn puts(i: u64) -> [KvCommand; 2] {
    [
        KvCommand::Put {
            key: format!("k{i}").into_bytes(),
            value: format!("v{i}-{}", "x".repeat(60)).into_bytes(),
        },
        KvCommand::Put {
            key: format!("shared{}", i % 10).into_bytes(),
            value: format!("v{i}").into_bytes(),
        },
    ]
}

/// Every key the sequence can write.
fn all_keys() -> Vec<Vec<u8>> {
    (1..=STEPS)
        .map(|i| format!("k{i}").into_bytes())
        .chain((0..10).map(|r| format!("shared{r}").into_bytes()))
        .collect()
}

const STEPS: u64 = 84;

/// The value of every key once the applies up to `applied` are in.
fn model(applied: u64) -> BTreeMap<Vec<u8>, Vec<u8>> {
    (1..=applied)
        .flat_map(puts)
        .map(|c| match c {
            KvCommand::Put { key, value } => (key, value),
            KvCommand::Delete { .. } => unreachable!(),
        })
        .collect()
}

/// What the sequence had made durable by a point: the highest entry index and the term of
/// every entry persisted with a sync (under `always`), and the newest synced term.
#[derive(Clone, Default)]
struct Synced {
    last_entry: u64,
    terms: BTreeMap<u64, u64>,
    term: u64,
}

struct Point {
    step: String,
    files: BTreeMap<PathBuf, Vec<u8>>,
    durable: HashMap<PathBuf, u64>,
    synced: Synced,
}

/// Run the write sequence in `dir`, taking a point after every step.
fn record(dir: &Path, fsync: FsyncPolicy) -> Vec<Point> {
    durable::forget();
    let mut b = MemwalBackend::open(config(dir, fsync)).unwrap();
    let mut points = Vec::new();
    let mut synced = Synced::default();
    let mut cs = ConfState::default();
    cs.voters = vec![1];
    b.set_conf_state(&cs).unwrap();
    let mut take = |step: String, synced: &Synced| {
        points.push(Point {
            step,
            files: image(dir),
            durable: durable::lengths(),
            synced: synced.clone(),
        })
    };
    take("bootstrap".into(), &synced);
    let mut term = 1;
    let mut building = None;
    for i in 1..=STEPS {
        if i % 25 == 0 {
            term += 1;
        }
        // Entry i, with the commit of the entry before (raft's usual pipeline).
        b.persist(None, &[entry(i, term)], Some(&hs(term, i - 1)))
            .unwrap();
        if fsync.sync() {
            synced.last_entry = i;
            synced.terms.insert(i, term);
            synced.term = term;
        }
        take(format!("persist {i}"), &synced);
        if i > 1 {
            b.apply(i - 1, &puts(i - 1), None).unwrap();
            take(format!("apply {}", i - 1), &synced);
        }
        if i % 27 == 0 && building.is_none() {
            // kill -9: no sync on close (a poisoned WAL skips it), then recovery, which
            // reads the unsynced tail from the page cache and must sync it before writing
            // on (durability-findings F1).
            b.wal.poison();
            drop(b);
            b = MemwalBackend::open(config(dir, fsync)).unwrap();
            take(format!("kill -9 and reopen after {i}"), &synced);
        }
        if i % 6 == 0 {
            b.persist(None, &[], Some(&hs(term, i))).unwrap();
            take(format!("commit {i}"), &synced);
        }
        // A snapshot as the raft loop takes one: begun (the view), built while persists and
        // applies go on, then adopted and the log compacted behind it; a cut may fall
        // anywhere in between.
        if i % 20 == 0 {
            building = Some(b.begin_snapshot().unwrap());
            take(format!("snapshot begun at {}", i - 1), &synced);
        }
        if i % 20 == 3
            && let Some(job) = building.take()
        {
            let at = job.applied_at_begin();
            let built = job.run().unwrap();
            take(format!("snapshot at {at} built, not adopted"), &synced);
            b.finish_snapshot(built).unwrap();
            take(format!("snapshot at {at} adopted"), &synced);
            b.compact(at - 4).unwrap();
            take(format!("compact to {}", at - 4), &synced);
        }
    }
    drop(b);
    points
}

/// Reopen the directory a cut left and check it against what was durable.
fn check(dir: &Path, fsync: FsyncPolicy, p: &Point, how: Cut) {
    let what = format!("{fsync} after {}, cut {how:?}", p.step);
    let b = MemwalBackend::open(config(dir, fsync))
        .unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"));
    // Snapshots sync the log before their file exists, so no cut leaves a snapshot ahead of
    // (or conflicting with) the log that recovery would have to repair.
    assert!(
        !b.open_report().log_restarted_at_snapshot,
        "{what}: the log was behind the snapshot"
    );
    let last = b.last_index().unwrap();
    let first = b.first_index().unwrap();
    let applied = b.applied_index();
    assert!(
        last >= p.synced.last_entry,
        "{what}: synced entry {} lost (last index {last})",
        p.synced.last_entry
    );
    for (&i, &t) in p.synced.terms.range(first..) {
        assert_eq!(b.term(i).unwrap(), t, "{what}: entry {i}");
    }
    let st = b.initial_state().unwrap();
    assert!(
        st.hard_state.term >= p.synced.term,
        "{what}: term went back"
    );
    assert!(applied <= last, "{what}: applied {applied} > last {last}");
    assert!(st.hard_state.commit >= applied, "{what}: commit < applied");
    assert_eq!(st.conf_state.voters, vec![1], "{what}: conf state");
    // The applied state is the one at its applied index: nothing from above, nothing
    // missing below.
    let reader = b.reader();
    let want = model(applied);
    for key in all_keys() {
        assert_eq!(
            reader.get(&key).unwrap(),
            want.get(&key).cloned(),
            "{what}: key {} at applied {applied}",
            String::from_utf8_lossy(&key)
        );
    }
}

fn simulate(fsync: FsyncPolicy) {
    let src = tempfile::tempdir().unwrap();
    let points = record(src.path(), fsync);
    assert!(
        points
            .iter()
            .any(|p| p.files.keys().filter(|f| f.starts_with("wal")).count() > 2),
        "the sequence should span several segments"
    );
    for p in &points {
        for how in CUTS {
            let to = tempfile::tempdir().unwrap();
            rebuild(to.path(), &p.files, &p.durable, src.path(), how);
            check(to.path(), fsync, p, how);
        }
    }
}

#[test]
fn every_power_cut_under_always_keeps_every_synced_write() {
    simulate(FsyncPolicy::Always);
}

#[test]
fn every_power_cut_under_never_reopens_at_a_consistent_prefix() {
    simulate(FsyncPolicy::Never);
}

#[test]
fn an_apply_after_a_lost_one_is_not_replayed_on_top_of_the_hole() {
    // A directory written before sealed segments were synced: entries 1..=3 durable,
    // `Apply{1..=2}` lost, `Apply{3..=3}` kept. Replay must stop at applied 0, not jump to 3.
    let dir = tempfile::tempdir().unwrap();
    let mut b = MemwalBackend::open(config(dir.path(), FsyncPolicy::Always)).unwrap();
    let mut cs = ConfState::default();
    cs.voters = vec![1];
    b.set_conf_state(&cs).unwrap();
    b.persist(
        None,
        &[entry(1, 1), entry(2, 1), entry(3, 1)],
        Some(&hs(1, 3)),
    )
    .unwrap();
    let seg = super::wal::segment_path(&dir.path().join("wal"), 1);
    let before = std::fs::metadata(&seg).unwrap().len();
    b.apply(2, &[&puts(1)[..], &puts(2)[..]].concat(), None)
        .unwrap();
    let mid = std::fs::metadata(&seg).unwrap().len();
    b.apply(3, &puts(3), None).unwrap();
    drop(b);
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes.drain(before as usize..mid as usize);
    std::fs::write(&seg, bytes).unwrap();

    let b = MemwalBackend::open(config(dir.path(), FsyncPolicy::Always)).unwrap();
    assert_eq!(b.applied_index(), 0);
    assert_eq!(b.reader().get(b"k3").unwrap(), None);
    assert_eq!(
        b.last_index().unwrap(),
        3,
        "the log is kept for raft to re-apply"
    );
}
