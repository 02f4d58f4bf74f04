//! The FUSE glue: a write-through pass-through of a source directory (SRC), with every
//! change routed through the durability [`Model`] and every operation through the faults.
//!
//! Inodes are our own numbers, mapped to paths relative to SRC (rewritten when a directory
//! above them is renamed) and to the underlying `(dev, ino)`. File handles are real handles
//! on SRC's files, read with `pread` and written through the model (which writes with
//! `pwrite`). The kernel's writeback cache is left off, so every `write(2)` reaches us
//! before it returns; attributes and entries are cached by the kernel for [`TTL`], which
//! is safe because nothing but this file system changes SRC while it is mounted.
//!
//! One lock covers the model, the inode table and the faults: every change (write,
//! truncate, create, rename, ...) is atomic with its undo record, and a power loss sees no
//! change half-done. Reads and the underlying fsyncs run outside it. Delayed replies
//! (`slow`) are sent from a short-lived thread (fuser's replies are `Send`), so the session
//! threads go on serving other requests while one fsync sleeps.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
    WriteFlags,
};
use parking_lot::Mutex;

use super::control::{FailKind, FaultCommand, FaultReply, FaultStatus};
use super::faults::{Counters, Faults, FileMatch, Slow};
use super::model::{self, FileKey, MetadataMode, Model, TRASH};

/// How long the kernel may cache entries and attributes.
pub const TTL: Duration = Duration::from_secs(1);

const ROOT: u64 = 1;

#[derive(Debug)]
struct Node {
    /// Relative to SRC (in the trash once removed in strict mode).
    path: PathBuf,
    key: FileKey,
    lookups: u64,
    /// Removed from the tree: no new entries below it, no path lookups for it.
    unlinked: bool,
}

#[derive(Debug)]
struct OpenFile {
    key: FileKey,
    file: Arc<File>,
    append: bool,
    /// Opened with `O_SYNC`/`O_DSYNC`: each write is durable when it returns.
    sync_writes: bool,
}

#[derive(Debug)]
struct DirEntry {
    ino: u64,
    kind: FileType,
    name: OsString,
}

#[derive(Debug)]
struct State {
    model: Model,
    faults: Faults,
    nodes: HashMap<u64, Node>,
    by_key: HashMap<FileKey, u64>,
    next_ino: u64,
    files: HashMap<u64, OpenFile>,
    dirs: HashMap<u64, Vec<DirEntry>>,
    next_fh: u64,
}

/// The state shared by the session threads, delayed replies and the control socket.
#[derive(Debug)]
pub struct Core {
    src: PathBuf,
    mountpoint: PathBuf,
    state: Mutex<State>,
    frozen: AtomicBool,
    counters: Counters,
}

type Res<T> = Result<T, Errno>;

/// Replies ok or with the error.
fn empty(reply: ReplyEmpty, r: Res<()>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

fn errno(e: io::Error) -> Errno {
    Errno::from_i32(e.raw_os_error().unwrap_or(libc::EIO))
}

fn err(code: i32) -> Errno {
    Errno::from_i32(code)
}

fn system_time(secs: i64, nsecs: i64) -> SystemTime {
    let nsecs = nsecs.clamp(0, 999_999_999) as u32;
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nsecs)
    } else {
        UNIX_EPOCH - Duration::new(secs.unsigned_abs(), 0) + Duration::new(0, nsecs)
    }
}

fn kind_of(ft: std::fs::FileType) -> FileType {
    FileType::from_std(ft).unwrap_or(FileType::RegularFile)
}

fn attr(ino: u64, m: &std::fs::Metadata) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: m.size(),
        blocks: m.blocks(),
        atime: system_time(m.atime(), m.atime_nsec()),
        mtime: system_time(m.mtime(), m.mtime_nsec()),
        ctime: system_time(m.ctime(), m.ctime_nsec()),
        crtime: system_time(m.ctime(), m.ctime_nsec()),
        kind: kind_of(m.file_type()),
        perm: (m.mode() & 0o7777) as u16,
        nlink: m.nlink() as u32,
        uid: m.uid(),
        gid: m.gid(),
        rdev: m.rdev() as u32,
        blksize: m.blksize() as u32,
        flags: 0,
    }
}

/// A single path component the kernel handed us: never empty, `.`, `..` or with a `/`.
fn component(name: &OsStr) -> Res<&OsStr> {
    let b = name.as_bytes();
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') {
        Err(err(libc::EINVAL))
    } else {
        Ok(name)
    }
}

fn to_timespec(t: TimeOrNow) -> nix::sys::time::TimeSpec {
    match t {
        TimeOrNow::Now => nix::sys::time::TimeSpec::UTIME_NOW,
        TimeOrNow::SpecificTime(t) => {
            let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
            nix::sys::time::TimeSpec::new(d.as_secs() as i64, i64::from(d.subsec_nanos()))
        }
    }
}

impl State {
    fn node(&self, ino: u64) -> Res<&Node> {
        self.nodes.get(&ino).ok_or(err(libc::ENOENT))
    }

    /// The relative path of a live directory's child `name`.
    fn child(&self, parent: u64, name: &OsStr) -> Res<PathBuf> {
        let name = component(name)?;
        let p = self.node(parent)?;
        if p.unlinked {
            return Err(err(libc::ENOENT));
        }
        if parent == ROOT && name == TRASH {
            return Err(err(libc::EPERM));
        }
        Ok(p.path.join(name))
    }

    /// The inode number of `rel` (whose metadata is `m`), counting one lookup.
    fn intern(&mut self, rel: &Path, m: &std::fs::Metadata) -> u64 {
        let key = (m.dev(), m.ino());
        // A removed node keeps its number for the kernel's references; a new file that got
        // the same underlying inode number (file systems reuse them) gets a new one.
        if let Some(ino) = self.by_key.get(&key).copied()
            && let Some(n) = self.nodes.get_mut(&ino)
            && !n.unlinked
        {
            n.lookups += 1;
            n.path = rel.to_path_buf();
            return ino;
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.by_key.insert(key, ino);
        self.nodes.insert(
            ino,
            Node {
                path: rel.to_path_buf(),
                key,
                lookups: 1,
                unlinked: false,
            },
        );
        ino
    }

    /// Looks up `rel` on SRC and replies-ready attributes for it.
    fn entry(&mut self, rel: &Path) -> Res<FileAttr> {
        let m = std::fs::symlink_metadata(self.model.abs(rel)).map_err(errno)?;
        let ino = self.intern(rel, &m);
        Ok(attr(ino, &m))
    }

    fn open_file(&self, fh: u64) -> Res<&OpenFile> {
        self.files.get(&fh).ok_or(err(libc::EBADF))
    }

    /// Opens a live node's file read-write (for truncates by path).
    fn open_rw(&self, ino: u64) -> Res<Arc<File>> {
        let n = self.node(ino)?;
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(self.model.abs(&n.path))
            .map_err(errno)?;
        Ok(Arc::new(f))
    }

    /// The node `to` named before a rename or removal moved it: follow it to `moved_to`
    /// (the trash), or mark it gone.
    fn unlink_node(&mut self, rel: &Path, moved_to: Option<PathBuf>) {
        for n in self.nodes.values_mut() {
            if !n.unlinked && n.path == rel {
                n.unlinked = true;
                if let Some(t) = &moved_to {
                    n.path = t.clone();
                }
            }
        }
    }

    fn rebase_nodes(&mut self, from: &Path, to: &Path) {
        for n in self.nodes.values_mut() {
            if n.unlinked {
                continue;
            }
            if let Some(p) = model::rebase(&n.path, from, to) {
                n.path = p;
            }
        }
    }

    fn status(&self, core: &Core) -> FaultStatus {
        let (dirty_bytes, dirty_files) = self.model.dirty();
        FaultStatus {
            frozen: core.frozen.load(Ordering::SeqCst),
            mode: self.model.mode(),
            dirty_bytes,
            dirty_files,
            pending_metadata_ops: self.model.pending_metadata_ops(),
            slow: self.faults.slow_status(),
            fail_eio_remaining: self.faults.eio_remaining,
            enospc: self.faults.enospc,
            counters: core.counters.snapshot(),
            src: core.src.clone(),
            mountpoint: core.mountpoint.clone(),
        }
    }
}

impl Core {
    /// A core over `src` (a directory), to be mounted at `mountpoint`.
    pub fn new(src: &Path, mountpoint: &Path, mode: MetadataMode) -> io::Result<Core> {
        let model = Model::open(src, mode)?;
        let root = std::fs::symlink_metadata(src)?;
        let mut nodes = HashMap::new();
        let key = (root.dev(), root.ino());
        nodes.insert(
            ROOT,
            Node {
                path: PathBuf::new(),
                key,
                lookups: 1,
                unlinked: false,
            },
        );
        Ok(Core {
            src: src.to_path_buf(),
            mountpoint: mountpoint.to_path_buf(),
            state: Mutex::new(State {
                model,
                faults: Faults::default(),
                nodes,
                by_key: HashMap::from([(key, ROOT)]),
                next_ino: ROOT + 1,
                files: HashMap::new(),
                dirs: HashMap::new(),
                next_fh: 1,
            }),
            frozen: AtomicBool::new(false),
            counters: Counters::default(),
        })
    }

    fn live(&self) -> Res<()> {
        if self.frozen.load(Ordering::SeqCst) {
            Err(Errno::EIO)
        } else {
            Ok(())
        }
    }

    /// Runs a control command.
    pub fn execute(&self, cmd: &FaultCommand) -> FaultReply {
        let mut st = self.state.lock();
        let mut loss = None;
        let result: Result<(), String> = match cmd {
            FaultCommand::PowerLoss | FaultCommand::Torn { .. } => {
                if self.frozen.swap(true, Ordering::SeqCst) {
                    Err("already frozen by an earlier power loss: unmount and mount again".into())
                } else {
                    let seed = match cmd {
                        FaultCommand::Torn { seed } => Some(*seed),
                        _ => None,
                    };
                    let report = st.model.power_loss(seed);
                    Counters::bump(&self.counters.power_losses);
                    tracing::info!(?report, torn = ?seed, "faultfs: power loss");
                    loss = Some(report);
                    Ok(())
                }
            }
            FaultCommand::Slow {
                latency_ms,
                duration_ms,
                files,
                writes,
            } => {
                st.faults.slow = Some(Slow {
                    latency: Duration::from_millis(*latency_ms),
                    // A duration past what an Instant can hold means "until heal".
                    until: duration_ms
                        .and_then(|d| Instant::now().checked_add(Duration::from_millis(d))),
                    files: files.as_deref().map(FileMatch::parse),
                    writes: *writes,
                });
                Ok(())
            }
            FaultCommand::Fail {
                kind: FailKind::Eio,
                count,
            } => {
                st.faults.eio_remaining = count.unwrap_or(1);
                Ok(())
            }
            FaultCommand::Fail {
                kind: FailKind::Enospc,
                count: Some(_),
            } => Err("count applies to fail eio only (enospc lasts until heal)".into()),
            FaultCommand::Fail {
                kind: FailKind::Enospc,
                count: None,
            } => {
                st.faults.enospc = true;
                Ok(())
            }
            FaultCommand::Heal => {
                st.faults = Faults::default();
                Ok(())
            }
            FaultCommand::Status => Ok(()),
        };
        let status = Some(st.status(self));
        match result {
            Ok(()) => FaultReply {
                ok: true,
                error: None,
                loss,
                status,
            },
            Err(e) => FaultReply::error(e, status),
        }
    }

    /// The end of the mount. Without a power loss it is a clean shutdown (everything is
    /// durable); after one the trash is already empty. Either way the trash goes.
    pub fn finish(&self) {
        self.state.lock().model.finish();
    }

    fn fsync_file(&self, fh: u64, datasync: bool) -> Res<()> {
        self.live()?;
        let (file, key) = {
            let st = self.state.lock();
            let f = st.open_file(fh)?;
            (Arc::clone(&f.file), f.key)
        };
        if datasync {
            file.sync_data().map_err(errno)?;
        } else {
            file.sync_all().map_err(errno)?;
        }
        let mut st = self.state.lock();
        self.live()?;
        st.model.file_synced(key);
        Ok(())
    }

    fn fsync_dir(&self, ino: u64) -> Res<()> {
        self.live()?;
        let (path, unlinked) = {
            let st = self.state.lock();
            let n = st.node(ino)?;
            (n.path.clone(), n.unlinked)
        };
        File::open(self.src.join(&path))
            .and_then(|d| d.sync_all())
            .map_err(errno)?;
        let mut st = self.state.lock();
        self.live()?;
        if !unlinked {
            st.model.dir_synced(&path);
        }
        Ok(())
    }

    fn write(&self, fh: u64, offset: u64, data: &[u8]) -> Res<u32> {
        self.live()?;
        let mut st = self.state.lock();
        if st.faults.enospc {
            Counters::bump(&self.counters.enospc_injected);
            return Err(err(libc::ENOSPC));
        }
        let f = st.open_file(fh)?;
        let (key, file, append, sync) = (f.key, Arc::clone(&f.file), f.append, f.sync_writes);
        let n = st
            .model
            .write(key, &file, offset, append, data)
            .map_err(errno)?;
        Counters::bump(&self.counters.writes);
        self.counters
            .bytes_written
            .fetch_add(n as u64, Ordering::Relaxed);
        if sync {
            drop(st);
            file.sync_data().map_err(errno)?;
            let mut st = self.state.lock();
            self.live()?;
            st.model.file_synced(key);
        }
        u32::try_from(n).map_err(|_| err(libc::EFBIG))
    }

    /// The delay (if any) for an fsync or write of inode `ino`, and whether an fsync must
    /// fail with EIO instead.
    fn fsync_fault(&self, ino: u64) -> Res<Option<Duration>> {
        let mut st = self.state.lock();
        if st.faults.take_eio() {
            Counters::bump(&self.counters.eio_injected);
            return Err(Errno::EIO);
        }
        let path = st.nodes.get(&ino).map(|n| n.path.clone());
        Ok(st.faults.fsync_delay(path.as_deref()))
    }

    fn write_delay(&self, ino: u64) -> Option<Duration> {
        let mut st = self.state.lock();
        let path = st.nodes.get(&ino).map(|n| n.path.clone());
        st.faults.write_delay(path.as_deref())
    }
}

/// Runs `job` after `delay` on its own thread (or at once on this one if no thread can be
/// started), so that the session thread is free meanwhile.
fn later(core: &Arc<Core>, delay: Option<Duration>, job: impl FnOnce() + Send + 'static) {
    let Some(delay) = delay else {
        job();
        return;
    };
    Counters::bump(&core.counters.delays_injected);
    let job = Arc::new(Mutex::new(Some(job)));
    let job2 = Arc::clone(&job);
    let spawned = std::thread::Builder::new()
        .name("faultfs-delay".into())
        .spawn(move || {
            std::thread::sleep(delay);
            if let Some(j) = job2.lock().take() {
                j();
            }
        });
    if spawned.is_err() {
        std::thread::sleep(delay);
        if let Some(j) = job.lock().take() {
            j();
        }
    }
}

/// The [`Filesystem`] fuser runs.
#[derive(Debug, Clone)]
pub struct FaultFsFs {
    core: Arc<Core>,
}

impl FaultFsFs {
    /// The file system of `core`.
    pub fn new(core: Arc<Core>) -> FaultFsFs {
        FaultFsFs { core }
    }

    fn locked<T>(&self, f: impl FnOnce(&mut State) -> Res<T>) -> Res<T> {
        self.core.live()?;
        let mut st = self.core.state.lock();
        // A power loss may have frozen the file system (and restored SRC) while this call
        // waited for the lock: nothing may reach SRC after it.
        self.core.live()?;
        f(&mut st)
    }

    /// Creates an entry with `make` (given its absolute path) and replies with it.
    fn make(
        &self,
        parent: INodeNo,
        name: &OsStr,
        reply: ReplyEntry,
        make: impl FnOnce(&Path) -> io::Result<()>,
    ) {
        let r = self.locked(|st| {
            let rel = st.child(parent.0, name)?;
            make(&st.model.abs(&rel)).map_err(errno)?;
            st.model.created(&rel).map_err(errno)?;
            st.entry(&rel)
        });
        match r {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn open_handle(&self, st: &mut State, file: File, flags: i32) -> Res<u64> {
        let key = model::file_key(&file).map_err(errno)?;
        let fh = st.next_fh;
        st.next_fh += 1;
        st.files.insert(
            fh,
            OpenFile {
                key,
                file: Arc::new(file),
                append: flags & libc::O_APPEND != 0,
                sync_writes: flags & (libc::O_SYNC | libc::O_DSYNC) != 0,
            },
        );
        Ok(fh)
    }
}

/// Opens an underlying file for a handle: read-write whenever writing is asked for (the
/// model reads pre-images through the same handle), never following a final symlink, and
/// without the flags we emulate (append, sync, truncate, create) or must not pass (direct
/// I/O would impose alignment on our own reads).
fn open_underlying(abs: &Path, flags: i32, create_mode: Option<u32>) -> io::Result<File> {
    let write = flags & libc::O_ACCMODE != libc::O_RDONLY;
    let keep = !(libc::O_ACCMODE
        | libc::O_APPEND
        | libc::O_SYNC
        | libc::O_DSYNC
        | libc::O_TRUNC
        | libc::O_CREAT
        | libc::O_EXCL
        | libc::O_DIRECT
        | libc::O_NOCTTY);
    let mut o = OpenOptions::new();
    o.read(true).write(write);
    o.custom_flags((flags & keep) | libc::O_NOFOLLOW);
    if let Some(mode) = create_mode {
        o.create_new(true).mode(mode);
    }
    o.open(abs)
}

impl Filesystem for FaultFsFs {
    fn destroy(&mut self) {
        self.core.finish();
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let r = self.locked(|st| {
            let rel = st.child(parent.0, name).map_err(|e| {
                if e.code() == libc::EPERM {
                    err(libc::ENOENT) // the trash is invisible
                } else {
                    e
                }
            })?;
            st.entry(&rel)
        });
        match r {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        if ino.0 == ROOT {
            return;
        }
        let mut st = self.core.state.lock();
        let gone = match st.nodes.get_mut(&ino.0) {
            Some(n) => {
                n.lookups = n.lookups.saturating_sub(nlookup);
                (n.lookups == 0).then_some(n.key)
            }
            None => None,
        };
        if let Some(key) = gone {
            st.nodes.remove(&ino.0);
            if st.by_key.get(&key) == Some(&ino.0) {
                st.by_key.remove(&key);
            }
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let r = self.locked(|st| {
            let m = match fh.and_then(|fh| st.files.get(&fh.0)) {
                Some(f) => f.file.metadata(),
                None => std::fs::symlink_metadata(st.model.abs(&st.node(ino.0)?.path)),
            };
            Ok(attr(ino.0, &m.map_err(errno)?))
        });
        match r {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let counters = &self.core.counters;
        let r = self.locked(|st| {
            let handle = fh
                .and_then(|fh| st.files.get(&fh.0))
                .map(|f| (f.key, Arc::clone(&f.file)));
            let abs = st.model.abs(&st.node(ino.0)?.path);
            let is_link = std::fs::symlink_metadata(&abs)
                .map(|m| m.file_type().is_symlink())
                .unwrap_or(false);
            if let Some(size) = size {
                let (key, file) = match handle.clone() {
                    Some(h) => h,
                    None => {
                        let f = st.open_rw(ino.0)?;
                        (model::file_key(&f).map_err(errno)?, f)
                    }
                };
                let cur = match st.model.tracked_len(key) {
                    Some(l) => l,
                    None => file.metadata().map_err(errno)?.len(),
                };
                if size > cur && st.faults.enospc {
                    Counters::bump(&counters.enospc_injected);
                    return Err(err(libc::ENOSPC));
                }
                st.model.set_len(key, &file, size).map_err(errno)?;
            }
            if let Some(mode) = mode.filter(|_| !is_link) {
                let perm = std::fs::Permissions::from_mode(mode & 0o7777);
                match &handle {
                    Some((_, f)) => f.set_permissions(perm),
                    None => std::fs::set_permissions(&abs, perm),
                }
                .map_err(errno)?;
            }
            if uid.is_some() || gid.is_some() {
                std::os::unix::fs::lchown(&abs, uid, gid).map_err(errno)?;
            }
            if atime.is_some() || mtime.is_some() {
                let omit = nix::sys::time::TimeSpec::UTIME_OMIT;
                nix::sys::stat::utimensat(
                    nix::fcntl::AT_FDCWD,
                    &abs,
                    &atime.map(to_timespec).unwrap_or(omit),
                    &mtime.map(to_timespec).unwrap_or(omit),
                    nix::sys::stat::UtimensatFlags::NoFollowSymlink,
                )
                .map_err(|e| err(e as i32))?;
            }
            let m = match &handle {
                Some((_, f)) => f.metadata(),
                None => std::fs::symlink_metadata(&abs),
            };
            Ok(attr(ino.0, &m.map_err(errno)?))
        });
        match r {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let r = self
            .locked(|st| std::fs::read_link(st.model.abs(&st.node(ino.0)?.path)).map_err(errno));
        match r {
            Ok(t) => reply.data(t.as_os_str().as_bytes()),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        self.make(parent, name, reply, |abs| {
            let kind = nix::sys::stat::SFlag::from_bits_truncate(mode & libc::S_IFMT);
            let perm = nix::sys::stat::Mode::from_bits_truncate(mode & !umask & 0o7777);
            nix::sys::stat::mknod(abs, kind, perm, u64::from(rdev)).map_err(io::Error::from)
        });
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        self.make(parent, name, reply, |abs| {
            std::fs::DirBuilder::new()
                .mode(mode & !umask & 0o7777)
                .create(abs)
        });
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove(parent, name, false, reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove(parent, name, true, reply);
    }

    fn symlink(
        &self,
        _req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        self.make(parent, link_name, reply, |abs| {
            std::os::unix::fs::symlink(target, abs)
        });
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let r = self.locked(|st| {
            if !(flags - RenameFlags::RENAME_NOREPLACE).is_empty() {
                return Err(err(libc::EINVAL)); // exchange and whiteout are not modelled
            }
            let from = st.child(parent.0, name)?;
            let to = st.child(newparent.0, newname)?;
            let noreplace = flags.contains(RenameFlags::RENAME_NOREPLACE);
            let victim = st.model.rename(&from, &to, noreplace).map_err(errno)?;
            if from != to {
                st.unlink_node(&to, victim);
                st.rebase_nodes(&from, &to);
            }
            Ok(())
        });
        empty(reply, r)
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        // Hard links would give one inode several paths to undo; nothing we run needs them.
        // EPERM: link(2)'s "the file system does not support hard links", which callers
        // (RocksDB's checkpoints) fall back on.
        reply.error(err(libc::EPERM));
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let r = self.locked(|st| {
            let abs = st.model.abs(&st.node(ino.0)?.path);
            let file = open_underlying(&abs, flags.0, None).map_err(errno)?;
            let fh = self.open_handle(st, file, flags.0)?;
            if flags.0 & libc::O_TRUNC != 0 && flags.0 & libc::O_ACCMODE != libc::O_RDONLY {
                let f = st.open_file(fh)?;
                let (key, file) = (f.key, Arc::clone(&f.file));
                if let Err(e) = st.model.set_len(key, &file, 0) {
                    st.files.remove(&fh);
                    return Err(errno(e));
                }
            }
            Ok(fh)
        });
        match r {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let file = self.locked(|st| Ok(Arc::clone(&st.open_file(fh.0)?.file)));
        let r = file.and_then(|file| {
            let mut buf = vec![0u8; size as usize];
            let mut done = 0;
            while done < buf.len() {
                match std::os::unix::fs::FileExt::read_at(
                    file.as_ref(),
                    &mut buf[done..],
                    offset + done as u64,
                ) {
                    Ok(0) => break,
                    Ok(n) => done += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(errno(e)),
                }
            }
            buf.truncate(done);
            Ok(buf)
        });
        match r {
            Ok(b) => reply.data(&b),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        if let Err(e) = self.core.live() {
            reply.error(e);
            return;
        }
        let delay = self.core.write_delay(ino.0);
        let core = Arc::clone(&self.core);
        let job = move |data: &[u8]| match core.write(fh.0, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        };
        match delay {
            None => job(data),
            Some(_) => {
                let data = data.to_vec();
                later(&self.core, delay, move || job(&data));
            }
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        empty(reply, self.core.live())
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        // The handle goes even when frozen; the model keeps its own for undo.
        self.core.state.lock().files.remove(&fh.0);
        empty(reply, self.core.live())
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        Counters::bump(&self.core.counters.fsyncs);
        self.sync_reply(ino, reply, move |core| core.fsync_file(fh.0, datasync));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let r = self.locked(|st| {
            let node = st.node(ino.0)?;
            let abs = st.model.abs(&node.path);
            let parent_ino = if ino.0 == ROOT { ROOT } else { ino.0 };
            let mut entries = vec![
                DirEntry {
                    ino: ino.0,
                    kind: FileType::Directory,
                    name: ".".into(),
                },
                DirEntry {
                    ino: parent_ino,
                    kind: FileType::Directory,
                    name: "..".into(),
                },
            ];
            for e in std::fs::read_dir(&abs).map_err(errno)? {
                let e = e.map_err(errno)?;
                let name = e.file_name();
                if ino.0 == ROOT && name == TRASH {
                    continue;
                }
                let kind = e.file_type().map(kind_of).unwrap_or(FileType::RegularFile);
                let m = e.metadata().map_err(errno)?;
                // The kernel looks entries up before using them: the number is a hint.
                let ino = st
                    .by_key
                    .get(&(m.dev(), m.ino()))
                    .copied()
                    .unwrap_or(m.ino().max(2));
                entries.push(DirEntry { ino, kind, name });
            }
            let fh = st.next_fh;
            st.next_fh += 1;
            st.dirs.insert(fh, entries);
            Ok(fh)
        });
        match r {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let r = self.locked(|st| {
            let entries = st.dirs.get(&fh.0).ok_or(err(libc::EBADF))?;
            for (i, e) in entries.iter().enumerate().skip(offset as usize) {
                if reply.add(INodeNo(e.ino), (i + 1) as u64, e.kind, &e.name) {
                    break;
                }
            }
            Ok(())
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.core.state.lock().dirs.remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        Counters::bump(&self.core.counters.dir_fsyncs);
        self.sync_reply(ino, reply, move |core| core.fsync_dir(ino.0));
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let r = self
            .core
            .live()
            .and_then(|()| nix::sys::statvfs::statvfs(&self.core.src).map_err(|e| err(e as i32)));
        match r {
            Ok(s) => reply.statfs(
                s.blocks(),
                s.blocks_free(),
                s.blocks_available(),
                s.files(),
                s.files_free(),
                s.block_size() as u32,
                s.name_max() as u32,
                s.fragment_size() as u32,
            ),
            Err(e) => reply.error(e),
        }
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // With default_permissions the kernel checks modes itself; this only says "exists".
        let r = self.locked(|st| {
            std::fs::symlink_metadata(st.model.abs(&st.node(ino.0)?.path))
                .map(drop)
                .map_err(errno)
        });
        empty(reply, r)
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let r = self.locked(|st| {
            let rel = st.child(parent.0, name)?;
            let abs = st.model.abs(&rel);
            let exists = std::fs::symlink_metadata(&abs).is_ok();
            if exists && flags & libc::O_EXCL != 0 {
                return Err(err(libc::EEXIST));
            }
            let file = if exists {
                open_underlying(&abs, flags, None)
            } else {
                open_underlying(&abs, flags, Some(mode & !umask & 0o7777))
            }
            .map_err(errno)?;
            if !exists {
                st.model.created(&rel).map_err(errno)?;
            }
            let a = st.entry(&rel)?;
            let fh = self.open_handle(st, file, flags)?;
            if exists && flags & libc::O_TRUNC != 0 {
                let f = st.open_file(fh)?;
                let (key, file) = (f.key, Arc::clone(&f.file));
                st.model.set_len(key, &file, 0).map_err(errno)?;
            }
            Ok((a, fh))
        });
        match r {
            Ok((a, fh)) => {
                reply.created(&TTL, &a, Generation(0), FileHandle(fh), FopenFlags::empty())
            }
            Err(e) => reply.error(e),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let counters = &self.core.counters;
        let r = self.locked(|st| {
            if st.faults.enospc && mode & libc::FALLOC_FL_PUNCH_HOLE == 0 {
                Counters::bump(&counters.enospc_injected);
                return Err(err(libc::ENOSPC));
            }
            let f = st.open_file(fh.0)?;
            let (key, file) = (f.key, Arc::clone(&f.file));
            st.model
                .fallocate(key, &file, mode, offset, length)
                .map_err(errno)
        });
        empty(reply, r)
    }

    fn lseek(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        let r = self.locked(|st| Ok(Arc::clone(&st.open_file(fh.0)?.file)));
        let r = r.and_then(|file| {
            let whence = match whence {
                libc::SEEK_SET => nix::unistd::Whence::SeekSet,
                libc::SEEK_CUR => nix::unistd::Whence::SeekCur,
                libc::SEEK_END => nix::unistd::Whence::SeekEnd,
                libc::SEEK_DATA => nix::unistd::Whence::SeekData,
                libc::SEEK_HOLE => nix::unistd::Whence::SeekHole,
                _ => return Err(err(libc::EINVAL)),
            };
            nix::unistd::lseek(file.as_ref(), offset, whence).map_err(|e| err(e as i32))
        });
        match r {
            Ok(o) => reply.offset(o),
            Err(e) => reply.error(e),
        }
    }
}

impl FaultFsFs {
    /// An fsync (file or directory): fails at once when an EIO is due, else runs `sync`
    /// (and replies) after the `slow` delay, if any, off the session thread.
    fn sync_reply(
        &self,
        ino: INodeNo,
        reply: ReplyEmpty,
        sync: impl FnOnce(&Core) -> Res<()> + Send + 'static,
    ) {
        let delay = match self.core.live().and_then(|()| self.core.fsync_fault(ino.0)) {
            Ok(d) => d,
            Err(e) => {
                reply.error(e);
                return;
            }
        };
        let core = Arc::clone(&self.core);
        later(&self.core, delay, move || empty(reply, sync(&core)));
    }

    fn remove(&self, parent: INodeNo, name: &OsStr, dir: bool, reply: ReplyEmpty) {
        let r = self.locked(|st| {
            let rel = st.child(parent.0, name)?;
            let moved = st.model.remove(&rel, dir).map_err(errno)?;
            st.unlink_node(&rel, moved);
            Ok(())
        });
        empty(reply, r)
    }
}
