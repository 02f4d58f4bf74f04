//! Criterion micro-benchmarks of each storage backend's primitives.
//!
//! Groups (every backend; `always`/`never` is the fsync policy):
//! - `persist/<backend>-<fsync>/<n>x<size>`: one `persist` of `n` entries of `size` data
//!   bytes plus a hard state — what one raft `Ready` costs. Throughput in entries and bytes.
//! - `baseline/fdatasync/<n>x<size>`: append the same number of bytes that memwal writes for
//!   that persist to a plain file and `fdatasync` it — the disk's own price, measured in the
//!   same run, so each backend's persist reads as a ratio to what the disk allows.
//! - `read/<backend>/entries-<k>` and `read/<backend>/term`: raft's log reads, spread over a
//!   10k-entry log (outside RocksDB's tail cache for most positions).
//! - `apply/<backend>-<fsync>/16-puts` and `get/<backend>`: state-machine writes and reads.
//! - `snapshot/<backend>-<fsync>/create-<keys>` and `.../install-<keys>`: at 10k and 100k
//!   keys of 128 B values; `.../begin-<keys>`, the raft thread's share of a snapshot (the
//!   view the background build reads); `.../persist-1x256-during-build-<keys>`, one fsynced
//!   write while a build of that state runs on its own thread (snapshot cost under load:
//!   compare with `persist/<backend>-always/1x256`).
//! - `compact/<backend>-<fsync>/1000-entries`.
//! - `open/<backend>/1M-entries-128B`: reopening a 1M-entry log (the restart cost).
//! - `faultfs/memwal-always-{plain,faultfs}/1x256`: the same memwal persist in a plain
//!   directory and through an in-process faultfs mount of one — the price of the
//!   power-loss layer on each fsynced write (skipped, with a note, where FUSE is unusable).
//!
//! Only the named operation is timed (`iter_custom`); refilling and trimming the log between
//! iterations is not. Run `cargo bench --bench storage` (add `-- --quick` for a fast pass or
//! a filter such as `-- persist/memwal`); reports land in `target/criterion/`.

#![allow(clippy::field_reassign_with_default)]

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use raft::eraftpb::{ConfState, Entry, HardState};
use raft::{GetEntriesContext, Storage};
use raftbench::kv::KvCommand;
use raftbench::storage::conformance::snapshot_with;
use raftbench::storage::{
    AnyBackend, BackendConfig, BackendKind, BuiltSnapshot, FsyncPolicy, StorageBackend,
    open_backend, stress,
};
use std::hint::black_box;
use tempfile::TempDir;

const POLICIES: [FsyncPolicy; 2] = [FsyncPolicy::Always, FsyncPolicy::Never];

fn open(kind: BackendKind, fsync: FsyncPolicy, dir: &Path) -> AnyBackend {
    open_backend(&BackendConfig::new(kind, dir).with_fsync(fsync)).expect("open backend")
}

fn fresh(kind: BackendKind, fsync: FsyncPolicy) -> (TempDir, AnyBackend) {
    let t = TempDir::new_in(bench_tmp()).expect("temp dir");
    let mut b = open(kind, fsync, &t.path().join("data"));
    let mut cs = ConfState::default();
    cs.voters = vec![1];
    b.set_conf_state(&cs).expect("conf state");
    (t, b)
}

/// Benchmarks write real files: keep them on the same disk as the target directory rather
/// than a tmpfs `/tmp`.
fn bench_tmp() -> std::path::PathBuf {
    let dir = std::env::var_os("RAFTBENCH_BENCH_DIR")
        .map(Into::into)
        .unwrap_or_else(|| std::env::temp_dir().join("raftbench-bench"));
    std::fs::create_dir_all(&dir).expect("bench dir");
    dir
}

fn entry(index: u64, size: usize) -> Entry {
    let mut e = Entry::default();
    e.index = index;
    e.term = 1;
    e.data = stress::value(index, size).into();
    e
}

fn hard_state(commit: u64) -> HardState {
    let mut hs = HardState::default();
    hs.term = 1;
    hs.vote = 1;
    hs.commit = commit;
    hs
}

/// Append `n` entries of `size` bytes with one persist; returns its duration.
fn timed_persist(b: &mut AnyBackend, n: u64, size: usize) -> Duration {
    let next = b.last_index().unwrap() + 1;
    let ents: Vec<Entry> = (next..next + n).map(|i| entry(i, size)).collect();
    let hs = hard_state(next + n - 1);
    let t = Instant::now();
    b.persist(None, &ents, Some(&hs)).expect("persist");
    t.elapsed()
}

/// Keep the log short between iterations (untimed): apply, snapshot and compact everything.
fn trim_log(b: &mut AnyBackend, max_entries: u64) {
    let last = b.last_index().unwrap();
    if last - b.first_index().unwrap() + 1 < max_entries {
        return;
    }
    if b.applied_index() < last {
        b.apply(last, &[], None).expect("apply");
    }
    b.create_snapshot().expect("snapshot");
    b.compact(last).expect("compact");
}

/// The time `f` takes.
fn timed(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

/// Sum over `iters` runs of `step`, each returning the part of its time that counts (the
/// rest of a step is untimed setup).
fn sum_of(iters: u64, mut step: impl FnMut() -> Duration) -> Duration {
    (0..iters).map(|_| step()).sum()
}

/// Bytes memwal writes for a persist of `n` entries of `size` bytes plus a hard state:
/// record header 13, flags 1, count 4, per entry 25 + size, hard state 24.
fn memwal_record_bytes(n: u64, size: usize) -> u64 {
    13 + 1 + 4 + n * (25 + size as u64) + 24
}

fn bench_persist(c: &mut Criterion) {
    let mut g = c.benchmark_group("persist");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    for kind in BackendKind::ALL {
        for fsync in POLICIES {
            let (_t, mut b) = fresh(kind, fsync);
            for size in [128usize, 1024] {
                for n in [1u64, 16, 256] {
                    g.throughput(Throughput::ElementsAndBytes {
                        elements: n,
                        bytes: n * size as u64,
                    });
                    let id = BenchmarkId::new(format!("{kind}-{fsync}"), format!("{n}x{size}"));
                    g.bench_function(id, |bench| {
                        bench.iter_custom(|iters| {
                            sum_of(iters, || {
                                let spent = timed_persist(&mut b, n, size);
                                trim_log(&mut b, 50_000);
                                spent
                            })
                        })
                    });
                }
            }
        }
    }
    g.finish();
}

fn bench_baseline(c: &mut Criterion) {
    let mut g = c.benchmark_group("baseline");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    let t = TempDir::new_in(bench_tmp()).unwrap();
    let path = t.path().join("baseline.log");
    let mut file = new_file(&path);
    let mut written = 0u64;
    for size in [128usize, 1024] {
        for n in [1u64, 16, 256] {
            let bytes = memwal_record_bytes(n, size);
            let buf = vec![0x5au8; bytes as usize];
            g.throughput(Throughput::ElementsAndBytes {
                elements: n,
                bytes: n * size as u64,
            });
            g.bench_function(
                BenchmarkId::new("fdatasync", format!("{n}x{size}")),
                |bench| {
                    bench.iter_custom(|iters| {
                        sum_of(iters, || {
                            let spent = timed(|| {
                                file.write_all(&buf).unwrap();
                                file.sync_data().unwrap();
                            });
                            written += bytes;
                            if written > 64 << 20 {
                                // Like a WAL segment rotation: start a new file.
                                file = new_file(&path);
                                written = 0;
                            }
                            spent
                        })
                    })
                },
            );
        }
    }
    g.finish();
}

fn new_file(path: &Path) -> File {
    let _ = std::fs::remove_file(path);
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("baseline file")
}

fn bench_reads(c: &mut Criterion) {
    let mut g = c.benchmark_group("read");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    const LOG: u64 = 10_000;
    for kind in BackendKind::ALL {
        let (_t, mut b) = fresh(kind, FsyncPolicy::Never);
        while b.last_index().unwrap() < LOG {
            timed_persist(&mut b, 500, 128);
        }
        for k in [1u64, 64] {
            g.throughput(Throughput::Elements(k));
            g.bench_function(
                BenchmarkId::new(kind.as_str(), format!("entries-{k}")),
                |bench| {
                    let mut lo = 1u64;
                    bench.iter(|| {
                        lo = (lo + 7919) % (LOG - k) + 1;
                        black_box(
                            b.entries(lo, lo + k, None, GetEntriesContext::empty(false))
                                .unwrap(),
                        )
                    })
                },
            );
        }
        g.throughput(Throughput::Elements(1));
        g.bench_function(BenchmarkId::new(kind.as_str(), "term"), |bench| {
            let mut i = 1u64;
            bench.iter(|| {
                i = (i + 7919) % LOG + 1;
                black_box(b.term(i).unwrap())
            })
        });
    }
    g.finish();
}

/// Keys of the apply/get benchmarks.
const KEYS: u64 = 100_000;

fn key(i: u64) -> Vec<u8> {
    format!("user{:012}", i % KEYS).into_bytes()
}

/// `n` puts of 128-byte values to keys spread over the key space by a stride from `seq`.
fn puts(seq: &mut u64, n: usize) -> Vec<KvCommand> {
    (0..n)
        .map(|_| {
            *seq += 7919;
            KvCommand::Put {
                key: key(*seq),
                value: stress::value(*seq, 128),
            }
        })
        .collect()
}

/// The index the next apply may use, appending (untimed) empty-ish entries when everything
/// in the log is applied already.
fn next_apply_index(b: &mut AnyBackend) -> u64 {
    if b.applied_index() == b.last_index().unwrap() {
        trim_log(b, 20_000);
        timed_persist(b, 1000, 8);
    }
    b.applied_index() + 1
}

fn bench_apply_get(c: &mut Criterion) {
    let mut g = c.benchmark_group("apply");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    let mut readers = Vec::new();
    for kind in BackendKind::ALL {
        for fsync in POLICIES {
            let (t, mut b) = fresh(kind, fsync);
            g.throughput(Throughput::Elements(16));
            let mut seq = 0u64;
            g.bench_function(
                BenchmarkId::new(format!("{kind}-{fsync}"), "16-puts"),
                |bench| {
                    bench.iter_custom(|iters| {
                        sum_of(iters, || {
                            let idx = next_apply_index(&mut b);
                            let cmds = puts(&mut seq, 16);
                            timed(|| {
                                b.apply(idx, &cmds, None).unwrap();
                            })
                        })
                    })
                },
            );
            if fsync == FsyncPolicy::Never {
                // Fill every key once so that gets hit.
                while seq < KEYS * 7919 {
                    let idx = next_apply_index(&mut b);
                    b.apply(idx, &puts(&mut seq, 256), None).unwrap();
                }
                readers.push((kind, b, t));
            }
        }
    }
    g.finish();

    let mut g = c.benchmark_group("get");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    g.throughput(Throughput::Elements(1));
    for (kind, b, _t) in &readers {
        let reader = b.reader();
        g.bench_function(kind.as_str(), |bench| {
            let mut i = 0u64;
            bench.iter(|| {
                i += 104_729;
                black_box(reader.get(&key(i)).unwrap().expect("key present"))
            })
        });
    }
    g.finish();
}

fn bench_snapshot(c: &mut Criterion) {
    let mut g = c.benchmark_group("snapshot");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10);
    for keys in [10_000u64, 100_000] {
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..keys)
            .map(|i| (format!("user{i:012}").into_bytes(), stress::value(i, 128)))
            .collect();
        let refs: Vec<(&[u8], &[u8])> = pairs.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        let label = format!("{}k", keys / 1000);
        for kind in BackendKind::ALL {
            for fsync in POLICIES {
                let (_t, mut b) = fresh(kind, fsync);
                let mut index = 10u64;
                b.persist(
                    Some(&snapshot_with(index, 1, &refs)),
                    &[],
                    Some(&hard_state(index)),
                )
                .unwrap();
                let bytes = b.snapshot(0, 0).unwrap().data.len() as u64;
                g.throughput(Throughput::Bytes(bytes));
                let id = BenchmarkId::new(format!("{kind}-{fsync}"), format!("create-{label}"));
                g.bench_function(id, |bench| {
                    bench.iter_custom(|iters| {
                        sum_of(iters, || {
                            timed(|| {
                                black_box(b.create_snapshot().unwrap());
                            })
                        })
                    })
                });
                // The raft thread's share of a snapshot: taking the view the build reads.
                let id = BenchmarkId::new(format!("{kind}-{fsync}"), format!("begin-{label}"));
                g.bench_function(id, |bench| {
                    bench.iter_custom(|iters| {
                        sum_of(iters, || {
                            let t = Instant::now();
                            let job = black_box(b.begin_snapshot().unwrap());
                            let d = t.elapsed();
                            drop(job);
                            d
                        })
                    })
                });
                // Snapshot cost under load: one fsynced write while a build of this state
                // runs on its own thread (compare with persist/<backend>-always/1x256).
                if fsync == FsyncPolicy::Always {
                    let id = BenchmarkId::new(
                        format!("{kind}-{fsync}"),
                        format!("persist-1x256-during-build-{label}"),
                    );
                    let mut build = None;
                    g.bench_function(id, |bench| {
                        bench.iter_custom(|iters| {
                            sum_of(iters, || {
                                keep_building(&mut b, &mut build);
                                timed_persist(&mut b, 1, 256)
                            })
                        })
                    });
                    if let Some(h) = build.take() {
                        b.finish_snapshot(h.join().unwrap().unwrap()).unwrap();
                    }
                }
                let id = BenchmarkId::new(format!("{kind}-{fsync}"), format!("install-{label}"));
                g.bench_function(id, |bench| {
                    bench.iter_custom(|iters| {
                        sum_of(iters, || {
                            index += 10;
                            let snap = snapshot_with(index, 1, &refs);
                            timed(|| {
                                b.persist(Some(&snap), &[], Some(&hard_state(index)))
                                    .unwrap();
                            })
                        })
                    })
                });
            }
        }
    }
    g.finish();
}

/// A snapshot build running on its own thread, as the raft loop runs one: when the last
/// one is done, adopt it and begin the next.
type Build = std::thread::JoinHandle<raftbench::storage::Result<BuiltSnapshot>>;

fn keep_building(b: &mut AnyBackend, build: &mut Option<Build>) {
    if build.as_ref().is_some_and(|h| !h.is_finished()) {
        return;
    }
    if let Some(h) = build.take() {
        b.finish_snapshot(h.join().unwrap().unwrap()).unwrap();
    }
    let job = b.begin_snapshot().unwrap();
    *build = Some(std::thread::spawn(move || job.run()));
}

fn bench_compact(c: &mut Criterion) {
    let mut g = c.benchmark_group("compact");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    g.throughput(Throughput::Elements(1000));
    for kind in BackendKind::ALL {
        for fsync in POLICIES {
            let (_t, mut b) = fresh(kind, fsync);
            g.bench_function(
                BenchmarkId::new(format!("{kind}-{fsync}"), "1000-entries"),
                |bench| {
                    bench.iter_custom(|iters| {
                        sum_of(iters, || {
                            timed_persist(&mut b, 1000, 128);
                            let last = b.last_index().unwrap();
                            b.apply(last, &[], None).unwrap();
                            timed(|| {
                                b.compact(last - 1).unwrap();
                            })
                        })
                    })
                },
            );
        }
    }
    g.finish();
}

fn bench_open(c: &mut Criterion) {
    let mut g = c.benchmark_group("open");
    g.warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_secs(5))
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat);
    const ENTRIES: u64 = 1_000_000;
    for kind in BackendKind::ALL {
        let t = TempDir::new_in(bench_tmp()).unwrap();
        let written = t.path().join("written");
        {
            let mut b = open(kind, FsyncPolicy::Never, &written);
            while b.last_index().unwrap() < ENTRIES {
                timed_persist(&mut b, 1024, 128);
            }
        }
        g.throughput(Throughput::Elements(ENTRIES));
        g.bench_function(
            BenchmarkId::new(kind.as_str(), "1M-entries-128B"),
            |bench| {
                bench.iter_custom(|iters| {
                    sum_of(iters, || {
                        // Every open starts from the directory exactly as the writer left it
                        // (RocksDB replays and flushes its WAL on the first open only).
                        let dir = t.path().join("copy");
                        let _ = std::fs::remove_dir_all(&dir);
                        copy_dir(&written, &dir);
                        let started = Instant::now();
                        let b = open(kind, FsyncPolicy::Never, &dir);
                        let spent = started.elapsed();
                        assert!(b.last_index().unwrap() >= ENTRIES);
                        spent
                    })
                })
            },
        );
    }
    g.finish();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// memwal persists (fsync = always, one 256 B entry) in a plain directory and through
/// faultfs over a plain directory, side by side.
fn bench_faultfs(c: &mut Criterion) {
    use raftbench::faultfs::{FaultFs, MountOptions, preflight};
    let mut g = c.benchmark_group("faultfs");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    g.throughput(Throughput::ElementsAndBytes {
        elements: 1,
        bytes: 256,
    });
    let plain = TempDir::new_in(bench_tmp()).expect("temp dir");
    let mut dirs = vec![("plain", plain.path().join("data"), None)];
    let faulty = TempDir::new_in(bench_tmp()).expect("temp dir");
    match preflight() {
        Ok(()) => {
            let (src, mnt) = (faulty.path().join("src"), faulty.path().join("mnt"));
            std::fs::create_dir_all(&src).expect("src");
            std::fs::create_dir_all(&mnt).expect("mnt");
            let m = FaultFs::mount(&src, &mnt, MountOptions::default()).expect("mount faultfs");
            dirs.push(("faultfs", mnt.join("data"), Some(m)));
        }
        Err(e) => eprintln!("faultfs/faultfs skipped: {e}"),
    }
    for (name, dir, mount) in dirs {
        let mut b = open(BackendKind::Memwal, FsyncPolicy::Always, &dir);
        let mut cs = ConfState::default();
        cs.voters = vec![1];
        b.set_conf_state(&cs).expect("conf state");
        let id = BenchmarkId::new(format!("memwal-always-{name}"), "1x256");
        g.bench_function(id, |bench| {
            bench.iter_custom(|iters| {
                sum_of(iters, || {
                    let spent = timed_persist(&mut b, 1, 256);
                    trim_log(&mut b, 50_000);
                    spent
                })
            })
        });
        drop(b);
        if let Some(m) = mount {
            m.unmount().expect("unmount faultfs");
        }
    }
    g.finish();
}

criterion_group!(
    benches,
    bench_faultfs,
    bench_persist,
    bench_baseline,
    bench_reads,
    bench_apply_get,
    bench_snapshot,
    bench_compact,
    bench_open
);
criterion_main!(benches);
