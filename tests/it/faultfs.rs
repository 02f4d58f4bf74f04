//! faultfs through real FUSE mounts in temporary directories: what survives a power loss,
//! metadata modes, torn write-back, injected faults, stale mounts, the CLI, and storage
//! engines on top. Every mount is owned by a guard that unmounts it, also when a test fails.
//! A test skips (with a message) only when `preflight()` says FUSE is unusable here.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use raftbench::faultfs::mount::is_mounted;
use raftbench::faultfs::{
    ControlClient, FailKind, FaultCommand, FaultFs, FaultFsChild, MetadataMode, MountOptions,
    MountedFaultFs, clean_stale_mounts, preflight,
};

use crate::common::{RAFTBENCH, command};

/// A temporary directory with `src/` and `mnt/`, and the mount (dropped, so unmounted,
/// before the directory goes).
struct Rig {
    fs: Option<MountedFaultFs>,
    dir: tempfile::TempDir,
}

fn fuse_usable() -> bool {
    match preflight() {
        Ok(()) => true,
        Err(e) => {
            eprintln!("SKIPPED: faultfs tests need FUSE: {e}");
            false
        }
    }
}

impl Rig {
    fn new(mode: MetadataMode) -> Option<Rig> {
        if !fuse_usable() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("src")).unwrap();
        let mut rig = Rig { fs: None, dir };
        rig.mount(mode);
        Some(rig)
    }

    fn src(&self) -> PathBuf {
        self.dir.path().join("src")
    }

    fn mnt(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.mnt().join(rel)
    }

    fn mount(&mut self, mode: MetadataMode) {
        fs::create_dir_all(self.mnt()).unwrap();
        let opts = MountOptions {
            metadata: mode,
            control: Some(self.dir.path().join("ctl.sock")),
        };
        self.fs = Some(FaultFs::mount(&self.src(), &self.mnt(), opts).expect("mount"));
    }

    fn fs(&self) -> &MountedFaultFs {
        self.fs.as_ref().unwrap()
    }

    fn unmount(&mut self) {
        self.fs.take().unwrap().unmount().expect("unmount");
        assert!(!is_mounted(&self.mnt()));
    }

    /// Unmount and mount again on the same source: a reboot.
    fn reboot(&mut self, mode: MetadataMode) {
        self.unmount();
        self.mount(mode);
    }

    fn sync_dir(&self, rel: &str) {
        File::open(self.p(rel)).unwrap().sync_all().unwrap();
    }

    /// A file written and fsynced, its entry durable too.
    fn durable(&self, rel: &str, data: &[u8]) {
        let mut f = File::create(self.p(rel)).unwrap();
        f.write_all(data).unwrap();
        f.sync_all().unwrap();
        let parent = Path::new(rel).parent().unwrap().to_str().unwrap();
        self.sync_dir(parent);
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if let Some(fs) = self.fs.take() {
            let _ = fs.unmount();
        }
    }
}

fn eio(r: std::io::Result<impl std::fmt::Debug>) {
    let e = r.expect_err("expected EIO");
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
}

#[test]
fn faultfs_fsynced_data_survives_a_power_loss_and_unsynced_data_does_not() {
    let Some(mut rig) = Rig::new(MetadataMode::Strict) else {
        return;
    };
    let synced: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    rig.durable("wal", &synced);
    let f = OpenOptions::new().write(true).open(rig.p("wal")).unwrap();
    f.write_all_at(b"OVERWRITTEN", 4000).unwrap();
    f.write_all_at(&[9u8; 5000], 10_000).unwrap(); // appended
    assert_eq!(fs::read(rig.p("wal")).unwrap().len(), 15_000);
    let st = rig.fs().status();
    assert!(st.dirty_bytes >= 5000 && st.dirty_files == 1, "{st:?}");
    let loss = rig.fs().power_loss().unwrap();
    assert!(loss.dropped_bytes >= 5000, "{loss:?}");
    assert_eq!(loss.files_restored, 1);
    // Frozen: everything fails with EIO, including what worked a moment ago.
    eio(fs::read(rig.p("wal")));
    eio(f.write_all_at(b"x", 0));
    eio(f.sync_all());
    eio(fs::read_dir(rig.mnt()).and_then(|mut d| d.next().transpose()));
    eio(File::create(rig.p("new")));
    assert!(rig.fs().status().frozen);
    drop(f);
    rig.reboot(MetadataMode::Strict);
    assert_eq!(fs::read(rig.p("wal")).unwrap(), synced);
    assert_eq!(fs::read(rig.src().join("wal")).unwrap(), synced);
}

#[test]
fn faultfs_a_created_file_needs_its_directory_fsynced() {
    let Some(mut rig) = Rig::new(MetadataMode::Strict) else {
        return;
    };
    rig.durable("kept", b"kept");
    fs::create_dir(rig.p("d")).unwrap();
    rig.sync_dir(""); // d's entry is durable
    let mut lost = File::create(rig.p("d/lost")).unwrap();
    lost.write_all(b"data synced, entry not").unwrap();
    lost.sync_all().unwrap();
    fs::create_dir(rig.p("d/sub")).unwrap();
    drop(lost);
    let loss = rig.fs().power_loss().unwrap();
    assert_eq!(loss.undone_metadata_ops, 2, "{loss:?}");
    rig.reboot(MetadataMode::Strict);
    assert_eq!(fs::read(rig.p("kept")).unwrap(), b"kept");
    assert!(rig.p("d").is_dir());
    assert!(!rig.p("d/lost").exists() && !rig.p("d/sub").exists());
}

/// Renames and unlinks in `unsynced/` (never fsynced after them) and in `synced/` (fsynced).
fn entry_changes(rig: &Rig) {
    for d in ["unsynced", "synced"] {
        fs::create_dir(rig.p(d)).unwrap();
        rig.sync_dir("");
        for f in ["a", "b", "c", "target"] {
            rig.durable(&format!("{d}/{f}"), f.as_bytes());
        }
        fs::rename(rig.p(&format!("{d}/a")), rig.p(&format!("{d}/a2"))).unwrap();
        fs::remove_file(rig.p(&format!("{d}/b"))).unwrap();
        fs::rename(rig.p(&format!("{d}/c")), rig.p(&format!("{d}/target"))).unwrap();
        // Unsynced appends to a durable file are lost in every mode.
        OpenOptions::new()
            .append(true)
            .open(rig.p(&format!("{d}/a2")))
            .unwrap()
            .write_all(b" and more")
            .unwrap();
    }
    rig.sync_dir("synced");
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn faultfs_renames_and_unlinks_are_undone_unless_the_directory_was_synced() {
    let Some(mut rig) = Rig::new(MetadataMode::Strict) else {
        return;
    };
    entry_changes(&rig);
    assert!(rig.fs().status().pending_metadata_ops >= 3);
    let loss = rig.fs().power_loss().unwrap();
    assert_eq!(loss.undone_metadata_ops, 3, "{loss:?}");
    rig.reboot(MetadataMode::Strict);
    assert_eq!(names(&rig.p("unsynced")), ["a", "b", "c", "target"]);
    assert_eq!(fs::read(rig.p("unsynced/target")).unwrap(), b"target");
    assert_eq!(fs::read(rig.p("unsynced/a")).unwrap(), b"a");
    assert_eq!(names(&rig.p("synced")), ["a2", "target"]);
    assert_eq!(fs::read(rig.p("synced/target")).unwrap(), b"c");
    assert_eq!(fs::read(rig.p("synced/a2")).unwrap(), b"a");
    // The trash is invisible in the mount and gone from SRC after a clean unmount.
    assert_eq!(names(&rig.mnt()), ["synced", "unsynced"]);
    rig.unmount();
    assert_eq!(names(&rig.src()), ["synced", "unsynced"]);
}

#[test]
fn faultfs_durable_metadata_mode_keeps_entry_changes() {
    let Some(mut rig) = Rig::new(MetadataMode::Durable) else {
        return;
    };
    entry_changes(&rig);
    let st = rig.fs().status();
    assert_eq!(
        (st.pending_metadata_ops, st.mode),
        (0, MetadataMode::Durable)
    );
    let loss = rig.fs().power_loss().unwrap();
    assert_eq!(loss.undone_metadata_ops, 0);
    rig.reboot(MetadataMode::Durable);
    for d in ["unsynced", "synced"] {
        assert_eq!(names(&rig.p(d)), ["a2", "target"]);
        assert_eq!(fs::read(rig.p(&format!("{d}/a2"))).unwrap(), b"a");
    }
}

#[test]
fn faultfs_torn_write_back_keeps_a_seeded_subset_of_pages() {
    let Some(mut rig) = Rig::new(MetadataMode::Strict) else {
        return;
    };
    rig.durable("f", &[1u8; 8 * 4096]);
    let f = OpenOptions::new().write(true).open(rig.p("f")).unwrap();
    f.write_all_at(&[2u8; 24 * 4096], 0).unwrap();
    let reply = rig
        .fs()
        .control_path()
        .map(|s| ControlClient::new(s).call(&FaultCommand::Torn { seed: 7 }))
        .unwrap()
        .unwrap();
    let loss = reply.loss.unwrap();
    assert_eq!(loss.pages_kept + loss.pages_dropped, 24, "{loss:?}");
    assert!(loss.pages_kept > 0 && loss.pages_dropped > 0, "{loss:?}");
    drop(f);
    rig.reboot(MetadataMode::Strict);
    let data = fs::read(rig.p("f")).unwrap();
    assert!(data.len() >= 8 * 4096 && data.len().is_multiple_of(4096));
    let kept = data
        .chunks(4096)
        .filter(|p| {
            assert!(p.iter().all(|b| *b == p[0]), "a page is mixed");
            p[0] == 2
        })
        .count();
    assert!(kept as u64 <= loss.pages_kept);
}

#[test]
fn faultfs_fail_eio_fails_fsyncs_and_enospc_fails_writes_until_heal() {
    let Some(rig) = Rig::new(MetadataMode::Strict) else {
        return;
    };
    rig.durable("f", b"base");
    let mut f = OpenOptions::new().append(true).open(rig.p("f")).unwrap();
    f.write_all(b" more").unwrap();
    let ctl = ControlClient::new(rig.fs().control_path().unwrap());
    let eio_cmd = FaultCommand::Fail {
        kind: FailKind::Eio,
        count: Some(2),
    };
    assert_eq!(
        ctl.call(&eio_cmd)
            .unwrap()
            .status
            .unwrap()
            .fail_eio_remaining,
        2
    );
    eio(f.sync_all());
    eio(File::open(rig.mnt()).unwrap().sync_all());
    let st = rig.fs().status();
    assert!(st.dirty_bytes > 0, "a failed fsync syncs nothing: {st:?}");
    assert_eq!(st.counters.eio_injected, 2);
    f.sync_all().unwrap();
    assert_eq!(rig.fs().status().dirty_bytes, 0);

    let enospc = FaultCommand::Fail {
        kind: FailKind::Enospc,
        count: None,
    };
    ctl.call(&enospc).unwrap();
    let e = f.write_all(b"full").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
    let e = f.set_len(1 << 20).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
    f.set_len(2).unwrap(); // shrinking needs no space
    ctl.call(&FaultCommand::Heal).unwrap();
    f.write_all(b"room again").unwrap();
    f.sync_all().unwrap();
    assert_eq!(fs::read(rig.p("f")).unwrap(), b"baroom again");
    let st = rig.fs().status();
    assert!(!st.enospc && st.counters.enospc_injected >= 2, "{st:?}");
}

#[test]
fn faultfs_slow_fsyncs_take_at_least_the_latency() {
    let Some(rig) = Rig::new(MetadataMode::Strict) else {
        return;
    };
    fs::create_dir(rig.p("wal")).unwrap();
    rig.sync_dir("");
    let ctl = ControlClient::new(rig.fs().control_path().unwrap());
    let latency = Duration::from_millis(150);
    ctl.call(&FaultCommand::Slow {
        latency_ms: latency.as_millis() as u64,
        duration_ms: None,
        files: Some("wal/".into()),
        writes: true,
    })
    .unwrap();
    let mut f = File::create(rig.p("wal/1.log")).unwrap();
    let t = Instant::now();
    f.write_all(b"slow write").unwrap();
    assert!(t.elapsed() >= latency, "{:?}", t.elapsed());
    // Another file is readable while an fsync sleeps.
    rig.durable("other", b"other");
    let t = Instant::now();
    let syncer = std::thread::spawn(move || f.sync_all());
    assert_eq!(fs::read(rig.p("other")).unwrap(), b"other");
    syncer.join().unwrap().unwrap();
    assert!(t.elapsed() >= latency, "{:?}", t.elapsed());
    let st = rig.fs().status();
    assert!(
        st.slow.is_some() && st.counters.delays_injected >= 2,
        "{st:?}"
    );
    ctl.call(&FaultCommand::Heal).unwrap();
    assert!(rig.fs().status().slow.is_none());
}

#[test]
fn faultfs_writes_nothing_outside_its_source_directory() {
    let Some(mut rig) = Rig::new(MetadataMode::Strict) else {
        return;
    };
    fs::create_dir_all(rig.p("a/b")).unwrap();
    rig.sync_dir("");
    rig.sync_dir("a");
    rig.durable("a/b/f", b"f");
    fs::rename(rig.p("a"), rig.p("z")).unwrap();
    fs::remove_file(rig.p("z/b/f")).unwrap();
    std::os::unix::fs::symlink("../../outside", rig.p("z/link")).unwrap();
    assert_eq!(
        fs::read_link(rig.p("z/link")).unwrap(),
        Path::new("../../outside")
    );
    let e = fs::hard_link(rig.p("z/link"), rig.p("hard")).unwrap_err();
    assert!(e.raw_os_error().is_some(), "{e}");
    rig.fs().power_loss().unwrap();
    rig.unmount();
    // The temporary directory holds SRC, the (empty) mount point, and nothing else.
    assert_eq!(names(rig.dir.path()), ["mnt", "src"]);
    assert!(names(&rig.mnt()).is_empty());
    assert_eq!(names(&rig.src()), ["a"]);
    assert_eq!(names(&rig.src().join("a")), ["b"]);
    assert_eq!(fs::read(rig.src().join("a/b/f")).unwrap(), b"f");
}

/// Pids of fusermount3 auto-unmount helpers watching `mnt`.
fn helpers_of(mnt: &Path) -> Vec<i32> {
    let needle = mnt.as_os_str().as_encoded_bytes();
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|p| {
            let pid: i32 = p.file_name().to_str()?.parse().ok()?;
            let cmd = fs::read(p.path().join("cmdline")).ok()?;
            let mut args = cmd.split(|b| *b == 0);
            let is_fm = args.next()?.ends_with(b"fusermount3");
            (is_fm && cmd.split(|b| *b == 0).any(|a| a == needle)).then_some(pid)
        })
        .collect()
}

fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

fn spawn_child(dir: &Path, name: &str) -> FaultFsChild {
    let src = dir.join(format!("{name}-src"));
    let mnt = dir.join(format!("{name}-mnt"));
    fs::create_dir_all(&src).unwrap();
    fs::create_dir_all(&mnt).unwrap();
    FaultFsChild::spawn(
        Path::new(RAFTBENCH),
        &src,
        &mnt,
        &dir.join(format!("{name}.sock")),
        &MountOptions::default(),
        &dir.join(format!("{name}.log")),
    )
    .expect("spawn faultfs child")
}

#[test]
fn faultfs_child_mounts_answers_and_unmounts_and_stale_mounts_are_cleaned() {
    if !fuse_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().canonicalize().unwrap();

    // A clean life: mount, a command, unmount.
    let child = spawn_child(&dir, "clean");
    let st = child.call(&FaultCommand::Status).unwrap().status.unwrap();
    assert!(!st.frozen && st.mode == MetadataMode::Strict);
    fs::write(child.mountpoint().join("f"), b"through the child").unwrap();
    let mnt = child.mountpoint().to_path_buf();
    child.unmount().unwrap();
    assert!(!is_mounted(&mnt));
    assert_eq!(
        fs::read(dir.join("clean-src/f")).unwrap(),
        b"through the child"
    );

    // SIGKILL of the child alone: fusermount3's auto-unmount removes the mount.
    let child = spawn_child(&dir, "killed");
    let mnt = child.mountpoint().to_path_buf();
    let pid = nix::unistd::Pid::from_raw(child.pid().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    // Bounded generously: on a loaded 2-core machine the helper can take seconds.
    assert!(
        wait_until(Duration::from_secs(30), || !is_mounted(&mnt)),
        "still mounted 30 s after SIGKILL; auto-unmount helpers: {:?}; log: {}",
        helpers_of(&mnt),
        fs::read_to_string(dir.join("killed.log")).unwrap_or_default()
    );
    drop(child);

    // SIGKILL of the helper, then of the child: a stale mount, which clean removes.
    let child = spawn_child(&dir, "stale");
    let mnt = child.mountpoint().to_path_buf();
    let helpers = helpers_of(&mnt);
    assert_eq!(helpers.len(), 1, "one auto-unmount helper");
    for h in helpers {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(h),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
    }
    let pid = nix::unistd::Pid::from_raw(child.pid().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(is_mounted(&mnt), "the mount is stale now");
    let cleaned = clean_stale_mounts(&dir).unwrap();
    assert_eq!(cleaned, std::slice::from_ref(&mnt));
    assert!(!is_mounted(&mnt));
    assert!(clean_stale_mounts(&dir).unwrap().is_empty());
    drop(child);
}

#[test]
fn faultfs_cli_mount_ctl_and_sigterm_leave_no_mount_behind() {
    if !fuse_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().canonicalize().unwrap();
    let (src, mnt, sock) = (dir.join("src"), dir.join("mnt"), dir.join("ctl.sock"));
    fs::create_dir_all(src.join("inner")).unwrap();
    fs::create_dir_all(&mnt).unwrap();

    let refused = command()
        .args(["faultfs", "mount"])
        .arg(&src)
        .arg(src.join("inner"))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("contain each other"));

    let mut child = command()
        .args(["faultfs", "mount"])
        .arg(&src)
        .arg(&mnt)
        .arg("--control")
        .arg(&sock)
        .args(["--metadata", "durable"])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ctl = |args: &[&str]| {
        command()
            .args(["faultfs", "ctl"])
            .arg(&sock)
            .args(args)
            .output()
            .unwrap()
    };
    let up = wait_until(Duration::from_secs(10), || {
        ctl(&["status"]).status.success()
    });
    if !up {
        let _ = child.kill();
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        panic!("faultfs mount did not come up: {err}");
    }
    let out = ctl(&["status"]);
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reply["ok"], true);
    assert_eq!(reply["status"]["mode"], "durable");
    assert!(
        ctl(&["slow", "--latency", "5ms", "--files", "wal/"])
            .status
            .success()
    );
    assert!(ctl(&["fail", "eio", "--count", "2"]).status.success());
    assert!(ctl(&["heal"]).status.success());
    assert!(ctl(&["power-loss"]).status.success());
    let again = ctl(&["power-loss"]);
    assert!(!again.status.success(), "a second power loss is refused");
    assert!(String::from_utf8_lossy(&again.stdout).contains("already frozen"));

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let exited = wait_until(Duration::from_secs(15), || {
        child.try_wait().unwrap().is_some()
    });
    if !exited {
        let _ = child.kill();
    }
    assert!(exited, "faultfs mount exits on SIGTERM");
    assert!(child.wait().unwrap().success());
    assert!(!is_mounted(&mnt));
    assert!(!sock.exists());
    let clean = command()
        .args(["faultfs", "clean"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(clean.status.success() && clean.stdout.is_empty());
}

/// The project's own engines on faultfs: what they acknowledge with fsync = always must
/// survive a power loss (strict metadata: the engines must fsync their directories too).
// raft's protobuf messages are built field by field, as raft-rs does.
#[allow(clippy::field_reassign_with_default)]
#[test]
fn faultfs_storage_engines_keep_synced_entries_through_a_power_loss() {
    use raft::Storage;
    use raft::eraftpb::{ConfState, Entry, HardState};
    use raftbench::storage::{
        BackendConfig, BackendKind, FsyncPolicy, LogEngine, StorageBackend, open_backend,
    };

    for kind in BackendKind::ALL {
        let Some(mut rig) = Rig::new(MetadataMode::Strict) else {
            return;
        };
        let dir = rig.p("data");
        let cfg = BackendConfig::new(kind, &dir).with_fsync(FsyncPolicy::Always);
        {
            let mut b = open_backend(&cfg).expect("open on faultfs");
            let mut cs = ConfState::default();
            cs.voters = vec![1];
            b.set_conf_state(&cs).unwrap();
            for i in 1..=50u64 {
                let mut e = Entry::default();
                e.index = i;
                e.term = 1;
                e.data = vec![i as u8; 256].into();
                let mut hs = HardState::default();
                hs.term = 1;
                hs.commit = i;
                b.persist(None, &[e], Some(&hs)).unwrap();
            }
            let loss = rig.fs().power_loss().unwrap();
            eprintln!("{kind}: power loss dropped {loss:?}");
            // The engine is dropped on a frozen file system: its errors are expected, and
            // raft-engine panics on a failed fsync by design (as TiKV does, rather than
            // carry on after the kernel may have dropped dirty pages).
            let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(b)));
            assert!(
                dropped.is_ok()
                    || kind
                        .composed()
                        .is_some_and(|(l, _)| l == LogEngine::RaftEngine),
                "{kind}: panicked on drop"
            );
        }
        rig.reboot(MetadataMode::Strict);
        let b = open_backend(&cfg).expect("reopen after power loss");
        assert_eq!(b.last_index().unwrap(), 50, "{kind}");
        let e = b
            .entries(50, 51, None, raft::GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(e[0].data, vec![50u8; 256], "{kind}");
        drop(b);
    }
}

/// memwal after torn write-back: the unsynced tail of its WAL reaches the disk in part, in
/// any order. Every seed's directory must reopen with every synced entry, and some seeds
/// must leave a torn tail that the open cuts off (and reports).
// raft's protobuf messages are built field by field, as raft-rs does.
#[allow(clippy::field_reassign_with_default)]
#[test]
fn faultfs_memwal_repairs_the_torn_tails_torn_write_back_leaves() {
    use raft::Storage;
    use raft::eraftpb::{ConfState, Entry, HardState};
    use raftbench::kv::KvCommand;
    use raftbench::storage::{
        BackendConfig, BackendKind, FsyncPolicy, StorageBackend, open_backend,
    };

    let mut repaired = 0;
    for seed in 0..12u64 {
        let Some(mut rig) = Rig::new(MetadataMode::Strict) else {
            return;
        };
        let cfg =
            BackendConfig::new(BackendKind::Memwal, rig.p("data")).with_fsync(FsyncPolicy::Always);
        {
            let mut b = open_backend(&cfg).expect("open on faultfs");
            let mut cs = ConfState::default();
            cs.voters = vec![1];
            b.set_conf_state(&cs).unwrap();
            for i in 1..=20u64 {
                let mut e = Entry::default();
                e.index = i;
                e.term = 1;
                e.data = vec![i as u8; 100].into();
                let mut hs = HardState::default();
                hs.term = 1;
                hs.commit = i;
                b.persist(None, &[e], Some(&hs)).unwrap();
            }
            // Applies are written without a sync: several pages of unsynced tail.
            for i in 1..=20u64 {
                let put = KvCommand::Put {
                    key: format!("k{i}").into_bytes(),
                    value: vec![7; 1500],
                };
                b.apply(i, &[put], None).unwrap();
            }
            let loss = rig.fs().torn(seed).unwrap();
            assert!(loss.pages_kept + loss.pages_dropped > 1, "{loss:?}");
        }
        rig.reboot(MetadataMode::Strict);
        let b = open_backend(&cfg)
            .unwrap_or_else(|e| panic!("seed {seed}: reopen after torn write-back: {e}"));
        assert_eq!(b.last_index().unwrap(), 20, "seed {seed}");
        assert!(b.applied_index() <= 20);
        if b.open_report().torn_bytes_truncated > 0 {
            repaired += 1;
        }
    }
    assert!(repaired > 0, "no seed left a torn tail to repair");
}
