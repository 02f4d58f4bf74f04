//! Mount lifecycle: checking that FUSE works here, mounting in-process or in a child
//! process, unmounting for sure, and cleaning up mounts a dead run left behind.
//!
//! Every mount uses `auto_unmount` (fusermount3 stays behind and unmounts when the
//! mounting process dies, even by SIGKILL) and carries the type [`FSTYPE`], so a mount
//! whose keeper also died is recognizable in `/proc/self/mountinfo` and
//! [`clean_stale_mounts`] can remove it without touching anyone else's.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fuser::{Config, MountOption, SessionACL};

use super::control::{ControlClient, ControlServer, FaultCommand, FaultReply, FaultStatus};
use super::fs::{Core, FaultFsFs};
use super::model::{LossReport, MetadataMode};
use super::{FSNAME, FSTYPE, FaultFsError};

/// How a mount behaves.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MountOptions {
    /// When directory-entry changes become durable.
    pub metadata: MetadataMode,
    /// Where to serve the control socket (none: control in-process only).
    pub control: Option<PathBuf>,
}

const FUSERMOUNT: &str = "fusermount3";
const INSTALL: &str = "install it with `apt-get install -y fuse3` (Debian/Ubuntu; the package that provides fusermount3)";

fn preflight_error(what: impl Into<String>, fix: impl Into<String>) -> FaultFsError {
    FaultFsError::Preflight {
        what: what.into(),
        fix: fix.into(),
    }
}

/// `fusermount3` on `PATH`, if any.
fn fusermount_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(FUSERMOUNT))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Checks, before any load starts, that faultfs can mount here: `/dev/fuse` exists and
/// opens read-write, `fusermount3` is on `PATH`, and we may mount (root, or a setuid
/// fusermount3 with `user_allow_other` in `/etc/fuse.conf`). The error names what is
/// missing and how to get it.
pub fn preflight() -> Result<(), FaultFsError> {
    let dev = Path::new("/dev/fuse");
    if !dev.exists() {
        return Err(preflight_error(
            "/dev/fuse does not exist (no FUSE kernel module, or a container without the device)",
            "load it with `modprobe fuse`; in a container, start it with `--device /dev/fuse --cap-add SYS_ADMIN`",
        ));
    }
    if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open(dev) {
        return Err(preflight_error(
            format!("/dev/fuse cannot be opened read-write: {e}"),
            "run as root, or give this user read-write access to /dev/fuse",
        ));
    }
    let Some(fm) = fusermount_path() else {
        return Err(preflight_error("fusermount3 is not on PATH", INSTALL));
    };
    if nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let m = std::fs::metadata(&fm).map_err(FaultFsError::io("reading", &fm))?;
    if m.uid() != 0 || m.mode() & 0o4000 == 0 {
        return Err(preflight_error(
            format!("not root, and {} is not setuid root", fm.display()),
            "run as root, or reinstall fuse3 (`apt-get install --reinstall -y fuse3`)",
        ));
    }
    let conf = std::fs::read_to_string("/etc/fuse.conf").unwrap_or_default();
    if !conf.lines().any(|l| l.trim() == "user_allow_other") {
        return Err(preflight_error(
            "not root, and /etc/fuse.conf does not allow `allow_other` (needed by auto_unmount)",
            "add the line `user_allow_other` to /etc/fuse.conf, or run as root",
        ));
    }
    Ok(())
}

/// Undoes the octal escapes of `/proc/self/mountinfo` (`\040` is a space).
fn unescape(field: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// The mount points of faultfs mounts in a mountinfo text.
fn faultfs_mounts(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fstype = right.split(' ').next()?;
            let mountpoint = left.split(' ').nth(4)?;
            (fstype == FSTYPE).then(|| unescape(mountpoint))
        })
        .collect()
}

fn mounts_now() -> Result<Vec<PathBuf>, FaultFsError> {
    let p = "/proc/self/mountinfo";
    let text = std::fs::read_to_string(p).map_err(FaultFsError::io("reading", p))?;
    Ok(faultfs_mounts(&text))
}

/// An absolute, symlink-free spelling of `p` that works even when `p` itself is a dead
/// FUSE mount (whose `stat` fails with ENOTCONN): its parent is resolved instead.
fn resolve(p: &Path) -> PathBuf {
    if let Ok(c) = p.canonicalize() {
        return c;
    }
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    };
    match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) => resolve(parent).join(name),
        _ => abs,
    }
}

/// Whether a faultfs mount is at `mnt`.
pub fn is_mounted(mnt: &Path) -> bool {
    let mnt = resolve(mnt);
    mounts_now().is_ok_and(|m| m.contains(&mnt))
}

fn fusermount_unmount(mnt: &Path, lazy: bool) -> Result<(), String> {
    let mut c = Command::new(FUSERMOUNT);
    c.arg("-u").arg("-q");
    if lazy {
        c.arg("-z");
    }
    let out = c
        .arg("--")
        .arg(mnt)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {FUSERMOUNT}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Waits (bounded) for `cond`.
fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Unmounts the faultfs mount at `mnt` for sure: a plain unmount, then a lazy one; waits
/// until it is gone from mountinfo.
fn force_unmount(mnt: &Path) -> Result<(), FaultFsError> {
    if !is_mounted(mnt) {
        return Ok(());
    }
    let first = fusermount_unmount(mnt, false);
    if wait_for(Duration::from_millis(500), || !is_mounted(mnt)) {
        return Ok(());
    }
    let lazy = fusermount_unmount(mnt, true);
    if wait_for(Duration::from_secs(5), || !is_mounted(mnt)) {
        return Ok(());
    }
    Err(FaultFsError::StillMounted {
        mnt: mnt.to_path_buf(),
        message: format!("fusermount3 -u: {first:?}; fusermount3 -u -z: {lazy:?}"),
    })
}

/// Whether `mnt` is a mount whose file system process is gone (`stat` fails with
/// ENOTCONN).
fn is_dead(mnt: &Path) -> bool {
    std::fs::metadata(mnt)
        .err()
        .and_then(|e| e.raw_os_error())
        .is_some_and(|c| c == libc::ENOTCONN)
}

/// Unmounts every faultfs mount for which `ours` holds and whose file system process is
/// gone: what a run that died with its faultfs left behind. Live mounts, such as another
/// run's, are left alone (and not even looked at unless `ours` picks them). Returns the
/// mount points cleaned.
pub fn clean_dead_mounts(ours: impl Fn(&Path) -> bool) -> Result<Vec<PathBuf>, FaultFsError> {
    let dead: Vec<PathBuf> = mounts_now()?
        .into_iter()
        .filter(|m| ours(m) && is_dead(m))
        .collect();
    let mut cleaned = Vec::new();
    for m in dead {
        tracing::warn!(mount = %m.display(), "faultfs: unmounting a dead mount");
        // One that cannot be unmounted (another user's) must not keep the rest.
        match force_unmount(&m) {
            Ok(()) => cleaned.push(m),
            Err(e) => tracing::warn!(error = %e, "faultfs: could not unmount a dead mount"),
        }
    }
    Ok(cleaned)
}

/// Unmounts every faultfs mount at or under `under` (deepest first) — those a killed run
/// left behind — and returns their mount points. Other file systems are never touched.
pub fn clean_stale_mounts(under: &Path) -> Result<Vec<PathBuf>, FaultFsError> {
    let under = resolve(under);
    let mut found: Vec<PathBuf> = mounts_now()?
        .into_iter()
        .filter(|m| m.starts_with(&under))
        .collect();
    found.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    found.dedup();
    for m in &found {
        tracing::warn!(mount = %m.display(), "faultfs: unmounting a stale mount");
        force_unmount(m)?;
    }
    Ok(found)
}

/// Waits (bounded) until no fusermount3 auto-unmount helper for `mnt` is left: a helper
/// still watching an old mount would unmount a new mount made at the same place.
fn wait_helpers_gone(mnt: &Path) {
    let needle = mnt.as_os_str().as_encoded_bytes().to_vec();
    let helper_alive = || {
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return false;
        };
        procs.flatten().any(|p| {
            let cmd = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
            let mut args = cmd.split(|b| *b == 0);
            let is_fm = args
                .next()
                .is_some_and(|a| a.ends_with(FUSERMOUNT.as_bytes()));
            is_fm && cmd.split(|b| *b == 0).any(|a| a == needle.as_slice())
        })
    };
    if !wait_for(Duration::from_secs(3), || !helper_alive()) {
        tracing::warn!(mount = %mnt.display(), "faultfs: a fusermount3 helper is still running");
    }
}

/// Checks a source directory and a mount point; returns their resolved paths.
fn check_dirs(src: &Path, mnt: &Path) -> Result<(PathBuf, PathBuf), FaultFsError> {
    let src = src
        .canonicalize()
        .map_err(FaultFsError::io("resolving the source directory", src))?;
    let mnt_r = mnt
        .canonicalize()
        .map_err(FaultFsError::io("resolving the mount point", mnt))?;
    if !src.is_dir() {
        return Err(FaultFsError::Invalid(format!(
            "source {} is not a directory",
            src.display()
        )));
    }
    if !mnt_r.is_dir() {
        return Err(FaultFsError::Invalid(format!(
            "mount point {} is not a directory",
            mnt_r.display()
        )));
    }
    if src.starts_with(&mnt_r) || mnt_r.starts_with(&src) {
        return Err(FaultFsError::Invalid(format!(
            "source {} and mount point {} must not contain each other",
            src.display(),
            mnt_r.display()
        )));
    }
    let mut entries = std::fs::read_dir(&mnt_r).map_err(FaultFsError::io("listing", &mnt_r))?;
    if entries.next().is_some() {
        return Err(FaultFsError::Invalid(format!(
            "mount point {} is not empty",
            mnt_r.display()
        )));
    }
    Ok((src, mnt_r))
}

/// In-process mounts.
#[derive(Debug)]
pub struct FaultFs;

impl FaultFs {
    /// Mounts faultfs over `src` at `mnt` (an empty directory, neither inside the other)
    /// and serves the control socket if `opts.control` says where. The mount is live when
    /// this returns; it goes away with [`MountedFaultFs::unmount`], on drop, or (through
    /// fusermount3's auto-unmount) when this process dies.
    pub fn mount(
        src: &Path,
        mnt: &Path,
        opts: MountOptions,
    ) -> Result<MountedFaultFs, FaultFsError> {
        preflight()?;
        let (src, mnt) = check_dirs(src, mnt)?;
        // The model keeps a handle on every file with unsynced data.
        crate::procinfo::raise_nofile();
        let core = Arc::new(
            Core::new(&src, &mnt, opts.metadata)
                .map_err(FaultFsError::io("preparing the source directory", &src))?,
        );
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName(FSNAME.into()),
            MountOption::Subtype(FSTYPE.trim_start_matches("fuse.").into()),
            MountOption::AutoUnmount,
            MountOption::DefaultPermissions,
            MountOption::NoAtime,
        ];
        config.acl = SessionACL::All;
        // Several session threads: a request blocked on disk does not hold up the others.
        config.n_threads = Some(4);
        config.clone_fd = true;
        let session = fuser::Session::new(FaultFsFs::new(Arc::clone(&core)), &mnt, &config)
            .and_then(fuser::Session::spawn)
            .map_err(FaultFsError::io("mounting faultfs at", &mnt))?;
        let mut mounted = MountedFaultFs {
            core,
            session: Some(session),
            control: None,
            src,
            mnt,
        };
        if let Some(sock) = &opts.control {
            let core = Arc::clone(&mounted.core);
            mounted.control = Some(ControlServer::start(
                sock,
                Arc::new(move |cmd: &FaultCommand| core.execute(cmd)),
            )?);
        }
        tracing::info!(src = %mounted.src.display(), mnt = %mounted.mnt.display(), mode = %opts.metadata, "faultfs: mounted");
        Ok(mounted)
    }
}

/// A live in-process mount.
#[derive(Debug)]
pub struct MountedFaultFs {
    core: Arc<Core>,
    session: Option<fuser::BackgroundSession>,
    control: Option<ControlServer>,
    src: PathBuf,
    mnt: PathBuf,
}

impl MountedFaultFs {
    /// Runs a command, as the control socket would.
    pub fn command(&self, cmd: &FaultCommand) -> FaultReply {
        self.core.execute(cmd)
    }

    fn checked(&self, cmd: &FaultCommand) -> Result<FaultReply, FaultFsError> {
        self.command(cmd).checked(cmd)
    }

    /// Power loss: freeze and drop everything not durable.
    pub fn power_loss(&self) -> Result<LossReport, FaultFsError> {
        Ok(self
            .checked(&FaultCommand::PowerLoss)?
            .loss
            .unwrap_or_default())
    }

    /// Torn write-back with `seed`.
    pub fn torn(&self, seed: u64) -> Result<LossReport, FaultFsError> {
        Ok(self
            .checked(&FaultCommand::Torn { seed })?
            .loss
            .unwrap_or_default())
    }

    /// The current state.
    pub fn status(&self) -> FaultStatus {
        let reply = self.command(&FaultCommand::Status);
        reply
            .status
            .unwrap_or_else(|| unreachable_status(&self.src, &self.mnt))
    }

    /// The control socket's path, if one is served.
    pub fn control_path(&self) -> Option<&Path> {
        self.control.as_ref().map(ControlServer::path)
    }

    /// The mount point (resolved).
    pub fn mountpoint(&self) -> &Path {
        &self.mnt
    }

    /// The source directory (resolved).
    pub fn src(&self) -> &Path {
        &self.src
    }

    /// Whether the FUSE session has ended (someone unmounted it from outside).
    pub fn session_ended(&self) -> bool {
        self.session.as_ref().is_none_or(|s| s.guard.is_finished())
    }

    /// Unmounts and waits until the mount is gone. Without a power loss this is a clean
    /// shutdown: everything written is kept.
    pub fn unmount(mut self) -> Result<(), FaultFsError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), FaultFsError> {
        if let Some(mut c) = self.control.take() {
            c.stop();
        }
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        let unmounted = force_unmount(&self.mnt);
        // A lazily unmounted file system lives on while files on it are open: do not wait
        // for those (after a power loss they only get EIO anyway).
        if wait_for(Duration::from_secs(2), || session.guard.is_finished()) {
            if let Err(e) = session.umount_and_join() {
                tracing::warn!(error = %e, "faultfs: session ended with an error");
            }
        } else {
            tracing::warn!(mnt = %self.mnt.display(), "faultfs: detached; the session ends when the files still open on it are closed");
        }
        wait_helpers_gone(&self.mnt);
        unmounted?;
        if is_mounted(&self.mnt) {
            return Err(FaultFsError::StillMounted {
                mnt: self.mnt.clone(),
                message: "still in mountinfo after unmount".into(),
            });
        }
        Ok(())
    }
}

/// A status for a file system that could not report one (not expected: `status` always
/// answers).
fn unreachable_status(src: &Path, mnt: &Path) -> FaultStatus {
    FaultStatus {
        frozen: false,
        mode: MetadataMode::default(),
        dirty_bytes: 0,
        dirty_files: 0,
        pending_metadata_ops: 0,
        slow: None,
        fail_eio_remaining: 0,
        enospc: false,
        counters: Default::default(),
        src: src.to_path_buf(),
        mountpoint: mnt.to_path_buf(),
    }
}

impl Drop for MountedFaultFs {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::error!(error = %e, "faultfs: unmount on drop failed");
        }
    }
}

/// The last `n` lines of a log file (for error messages).
fn log_tail(log: &Path, n: usize) -> String {
    let text = std::fs::read(log).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// faultfs in a child process (`raftbench faultfs mount`), for the harness: the mount
/// outlives nothing it should not (SIGTERM unmounts cleanly; a dead child's mount is
/// removed by fusermount3's auto-unmount, or by [`clean_stale_mounts`]).
#[derive(Debug)]
pub struct FaultFsChild {
    child: Option<Child>,
    mnt: PathBuf,
    log: PathBuf,
    client: ControlClient,
}

/// How long a child gets to mount, and to go away.
const CHILD_START: Duration = Duration::from_secs(10);
const CHILD_STOP: Duration = Duration::from_secs(10);

impl FaultFsChild {
    /// Runs `<exe> faultfs mount SRC MNT --control SOCK --metadata MODE` with its output
    /// in `log_file` and its own process group (a Ctrl-C meant for the harness does not
    /// unmount under running nodes), and waits until the mount is live and the control
    /// socket answers `status`.
    pub fn spawn(
        exe: &Path,
        src: &Path,
        mnt: &Path,
        control_sock: &Path,
        opts: &MountOptions,
        log_file: &Path,
    ) -> Result<FaultFsChild, FaultFsError> {
        // Appended: a remount after a power cut keeps the log of the mount that was cut.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_file)
            .map_err(FaultFsError::io("opening", log_file))?;
        let log2 = log
            .try_clone()
            .map_err(FaultFsError::io("duplicating", log_file))?;
        let child = Command::new(exe)
            .arg("faultfs")
            .arg("mount")
            .arg(src)
            .arg(mnt)
            .arg("--control")
            .arg(control_sock)
            .arg("--metadata")
            .arg(opts.metadata.to_string())
            .arg("--exit-with-parent")
            .arg(std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0)
            .spawn()
            .map_err(FaultFsError::io("starting", exe))?;
        let mut me = FaultFsChild {
            child: Some(child),
            mnt: resolve(mnt),
            log: log_file.to_path_buf(),
            client: ControlClient::new(control_sock),
        };
        let probe = me.client.clone().with_timeout(Duration::from_secs(1));
        let start = Instant::now();
        loop {
            if let Some(status) = me.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                me.child = None;
                return Err(me.error(format!("exited ({status}) before the mount was live")));
            }
            if is_mounted(&me.mnt) && probe.call(&FaultCommand::Status).is_ok() {
                return Ok(me);
            }
            if start.elapsed() > CHILD_START {
                let e = me.error(format!("not live after {CHILD_START:?}"));
                let _ = me.stop();
                return Err(e);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn error(&self, message: String) -> FaultFsError {
        FaultFsError::Child {
            mnt: self.mnt.clone(),
            message,
            log: self.log.clone(),
            tail: log_tail(&self.log, 30),
        }
    }

    /// The control client.
    pub fn client(&self) -> &ControlClient {
        &self.client
    }

    /// Sends a command (an error reply becomes an error).
    pub fn call(&self, cmd: &FaultCommand) -> Result<FaultReply, FaultFsError> {
        self.client.call(cmd)
    }

    /// The child's pid (while it runs).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The mount point (resolved).
    pub fn mountpoint(&self) -> &Path {
        &self.mnt
    }

    /// Asks the child to unmount and exit (SIGTERM), waits, and makes sure the mount is
    /// gone (SIGKILL and `fusermount3 -u -z` if it comes to that).
    pub fn unmount(mut self) -> Result<(), FaultFsError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), FaultFsError> {
        let mut failure = None;
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let exited = wait_for(CHILD_STOP, || child.try_wait().ok().flatten().is_some());
            if !exited {
                failure = Some(format!("did not exit {CHILD_STOP:?} after SIGTERM"));
                let _ = child.kill();
                let _ = child.wait();
            } else if let Ok(Some(s)) = child.try_wait()
                && !s.success()
            {
                failure = Some(format!("exited with {s}"));
            }
        }
        // After a SIGKILL, fusermount3's auto-unmount removes the mount shortly.
        wait_for(Duration::from_secs(2), || !is_mounted(&self.mnt));
        let gone = force_unmount(&self.mnt);
        wait_helpers_gone(&self.mnt);
        gone?;
        match failure {
            Some(m) => Err(self.error(m)),
            None => Ok(()),
        }
    }
}

impl Drop for FaultFsChild {
    fn drop(&mut self) {
        if self.child.is_some()
            && let Err(e) = self.stop()
        {
            tracing::error!(error = %e, "faultfs: stopping the child on drop failed");
        }
    }
}

/// `raftbench faultfs mount`: mounts in the foreground until SIGINT, SIGTERM or SIGHUP (or
/// until the mount is removed from outside, or, with `exit_with_parent = Some(pid)`, until
/// this process's parent is no longer `pid`), then unmounts. A stale faultfs mount at `mnt` is cleaned
/// first.
pub fn run_foreground(
    src: &Path,
    mnt: &Path,
    opts: MountOptions,
    exit_with_parent: Option<u32>,
) -> Result<(), FaultFsError> {
    use tokio::signal::unix::{SignalKind, signal};
    // Compared with the pid the parent gave, not with whatever the parent is at start:
    // the parent may already be gone, and pid 1 may be a legitimate parent (a container).
    let parent_gone =
        move || exit_with_parent.is_some_and(|pid| nix::unistd::getppid().as_raw() as u32 != pid);
    if parent_gone() {
        return Err(FaultFsError::Invalid(
            "the process that started this mount is already gone".into(),
        ));
    }
    // A dead mount at MNT (from a run that died) is cleaned; a live one is refused.
    let target = resolve(mnt);
    let cleaned = clean_dead_mounts(|m| m == target)?;
    if !cleaned.is_empty() {
        eprintln!("cleaned stale faultfs mounts: {cleaned:?}");
    }
    if is_mounted(&target) {
        return Err(FaultFsError::Invalid(format!(
            "{} is already a live faultfs mount",
            target.display()
        )));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(FaultFsError::io("starting a runtime for", mnt))?;
    // Handlers first: a signal during the mount must not kill us with the mount up.
    let mut sigs = Vec::new();
    for kind in [
        SignalKind::interrupt(),
        SignalKind::terminate(),
        SignalKind::hangup(),
    ] {
        let _guard = rt.enter();
        sigs.push(signal(kind).map_err(FaultFsError::io("installing signal handlers for", mnt))?);
    }
    let mounted = FaultFs::mount(src, mnt, opts)?;
    eprintln!(
        "faultfs: {} mounted at {} (control: {})",
        mounted.src().display(),
        mounted.mountpoint().display(),
        mounted
            .control_path()
            .map_or("none".into(), |p| p.display().to_string())
    );
    rt.block_on(async {
        let [a, b, c] = &mut sigs[..] else {
            return;
        };
        loop {
            tokio::select! {
                _ = a.recv() => break,
                _ = b.recv() => break,
                _ = c.recv() => break,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    if mounted.session_ended() {
                        eprintln!("faultfs: the mount was removed from outside");
                        break;
                    }
                    // Re-parented: whoever started us died without unmounting.
                    if parent_gone() {
                        eprintln!("faultfs: the process that started this mount is gone");
                        break;
                    }
                }
            }
        }
    });
    mounted.unmount()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_with_escapes_are_parsed() {
        let text = "\
36 35 98:0 / /mnt/a\\040b rw,nosuid - fuse.raftbench-faultfs raftbench-faultfs rw,user_id=0
37 35 98:1 / /mnt/other rw - fuse.sshfs host: rw
38 35 98:2 / /tmp/x rw shared:1 - fuse.raftbench-faultfs raftbench-faultfs rw
";
        assert_eq!(
            faultfs_mounts(text),
            [PathBuf::from("/mnt/a b"), PathBuf::from("/tmp/x")]
        );
        assert_eq!(unescape("a\\011b\\\\c"), PathBuf::from("a\tb\\\\c"));
    }

    #[test]
    fn directories_are_checked_before_mounting() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        let mnt = d.path().join("mnt");
        std::fs::create_dir_all(src.join("inner")).unwrap();
        std::fs::create_dir(&mnt).unwrap();
        assert!(check_dirs(&src, &mnt).is_ok());
        let e = check_dirs(&src, &src.join("inner")).unwrap_err();
        assert!(e.to_string().contains("contain each other"), "{e}");
        let e = check_dirs(&src.join("inner"), &src).unwrap_err();
        assert!(
            e.to_string().contains("contain each other") || e.to_string().contains("not empty"),
            "{e}"
        );
        std::fs::write(mnt.join("x"), b"").unwrap();
        let e = check_dirs(&src, &mnt).unwrap_err();
        assert!(e.to_string().contains("not empty"), "{e}");
    }

    #[test]
    fn resolve_spells_missing_paths_through_their_parent() {
        let d = tempfile::tempdir().unwrap();
        let real = d.path().canonicalize().unwrap();
        assert_eq!(resolve(&d.path().join("nope")), real.join("nope"));
    }
}
