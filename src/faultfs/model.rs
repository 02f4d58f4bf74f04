//! The durability model: what a power cut would take away, kept as undo state over a
//! write-through source directory.
//!
//! Every operation is performed on the source directory (SRC) at once, so reads need no
//! model at all. What the model keeps is how to *undo* what has not been made durable:
//!
//! - per file (underlying inode), the length it had at its last `fsync`/`fdatasync`
//!   (`synced_len`) and, for each 4 KiB page below `synced_len` changed since then, the
//!   page's pre-image. Bytes past `synced_len` need no pre-image: cutting the file back to
//!   `synced_len` drops them. The pre-image is read from SRC just before the first change of
//!   a page after a sync, so it is exactly the synced content.
//! - a log of directory-entry changes (create, unlink, rmdir, rename) not yet durable. In
//!   [`MetadataMode::Strict`] an entry change becomes durable when its parent directory is
//!   fsynced (both parents for a rename), the least POSIX promises. Removed entries
//!   are not deleted but moved to a hidden trash directory inside SRC ([`TRASH`]) so that an
//!   undo can bring them back; they are deleted for good once their removal is durable.
//!
//! [`Model::power_loss`] undoes all of it (files first, then the log in reverse), after
//! which SRC holds exactly what was durable: the next mount sees what a machine would see
//! after a power cut. The model never opens anything outside SRC: every path it takes is
//! relative, built from single components, and joined to SRC.
//!
//! Guarantees (and their limits):
//! - data written and fsynced (or written through an `O_SYNC`/`O_DSYNC` handle) survives;
//!   data not fsynced is dropped, per page for overwrites, per byte for appends;
//! - a write concurrent with an fsync of the same file may or may not survive (POSIX allows
//!   both);
//! - attribute changes (mode, owner, times) are not undone;
//! - when a durable change depends on a non-durable one across directories (a state no
//!   real crash produces), the undo is best effort: a step that no longer applies is
//!   skipped, logged and counted in [`LossReport::undo_conflicts`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The page size of the model: the unit in which overwrites are undone and torn.
pub const PAGE: u64 = 4096;

/// Name of the hidden directory (in SRC's root) that holds removed entries until their
/// removal is durable. It never appears in the mounted file system.
pub const TRASH: &str = ".raftbench-faultfs-trash";

/// When a directory-entry change (create, unlink, rename, ...) becomes durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum MetadataMode {
    /// Only once its parent directory is fsynced (both parents for a rename): the least
    /// POSIX promises. Journaling file systems usually give more (ext4 and XFS also persist
    /// a new file's entry when the file is fsynced, and a rename with either directory), so
    /// a loss here may not happen on them; software that forgets to fsync a directory loses
    /// files here, as it can on any of them.
    #[default]
    Strict,
    /// At once: every entry change is durable when the call returns (as on a file system
    /// mounted with `dirsync`). Only file data can be lost.
    #[serde(alias = "durable-metadata")]
    Durable,
}

impl std::fmt::Display for MetadataMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MetadataMode::Strict => "strict",
            MetadataMode::Durable => "durable",
        })
    }
}

/// The identity of an underlying file: device and inode number in SRC.
pub type FileKey = (u64, u64);

/// The key of an open file.
pub fn file_key(file: &File) -> io::Result<FileKey> {
    let m = file.metadata()?;
    Ok((m.dev(), m.ino()))
}

/// What a power loss (or torn write-back) took away.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LossReport {
    /// Bytes of unsynced data dropped: appended bytes past the synced length, plus whole
    /// pages of overwritten synced data put back.
    pub dropped_bytes: u64,
    /// Files whose content or length was put back.
    pub files_restored: u64,
    /// Dirty pages that kept their new content (`torn` only).
    pub pages_kept: u64,
    /// Dirty pages put back to their synced content (or cut off).
    pub pages_dropped: u64,
    /// Directory-entry changes undone.
    pub undone_metadata_ops: u64,
    /// Undo steps that no longer applied and were skipped (see the module docs).
    pub undo_conflicts: u64,
}

/// Undo state of one file since its last sync.
#[derive(Debug)]
struct FileUndo {
    /// A read-write handle on the underlying inode: restoring through it works wherever the
    /// file has been renamed to since, trash included.
    file: Arc<File>,
    synced_len: u64,
    /// The current length (every change goes through the model).
    len: u64,
    /// Pre-images of the changed pages that start below `synced_len`: the page's bytes
    /// below `synced_len` as of the last sync.
    pages: BTreeMap<u64, Vec<u8>>,
}

impl FileUndo {
    /// Bytes a power loss would drop now.
    fn dirty_bytes(&self) -> u64 {
        let pre: u64 = self.pages.values().map(|p| p.len() as u64).sum();
        pre + self.len.saturating_sub(self.synced_len)
    }

    /// The dirty pages: those with a pre-image and those holding bytes past `synced_len`.
    fn dirty_pages(&self) -> BTreeSet<u64> {
        self.pages
            .keys()
            .copied()
            .chain(pages_past(self.synced_len, self.len))
            .collect()
    }

    fn is_clean(&self) -> bool {
        self.pages.is_empty() && self.len == self.synced_len
    }

    /// Records the pre-image of every page that `[start, end)` touches below `synced_len`
    /// and that has no pre-image yet. Pages already recorded keep their (older) pre-image.
    fn record(&mut self, start: u64, end: u64) -> io::Result<()> {
        let end = end.min(self.synced_len);
        if start >= end {
            return Ok(());
        }
        for page in start / PAGE..=(end - 1) / PAGE {
            if self.pages.contains_key(&page) {
                continue;
            }
            let from = page * PAGE;
            let to = (from + PAGE).min(self.synced_len);
            // Bytes in [len, synced_len) were recorded when the file was cut below them, so
            // an unrecorded page below synced_len still holds its synced bytes.
            let mut buf = vec![0u8; (to - from) as usize];
            let n = read_full_at(&self.file, &mut buf, from)?;
            buf.truncate(n);
            self.pages.insert(page, buf);
        }
        Ok(())
    }
}

fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// A directory-entry change not yet durable.
#[derive(Debug)]
enum MetaOp {
    /// A file, node, directory or symlink was created at `path`.
    Create { path: PathBuf },
    /// The entry at `path` was removed (unlink or rmdir) and now lives in the trash.
    Remove { path: PathBuf, trash: String },
    /// `from` was renamed to `to`; whatever `to` named before lives in the trash.
    Rename {
        from: PathBuf,
        to: PathBuf,
        victim: Option<String>,
        /// Where the earlier changes that named `to` were moved to (the victim's place in
        /// the trash, or a name there that nothing has).
        placeholder: PathBuf,
    },
}

#[derive(Debug)]
struct PendingOp {
    op: MetaOp,
    /// Directories (relative to SRC) still to be fsynced before the change is durable.
    parents: Vec<PathBuf>,
}

impl PendingOp {
    fn paths_mut(&mut self) -> impl Iterator<Item = &mut PathBuf> {
        let own: Vec<&mut PathBuf> = match &mut self.op {
            MetaOp::Create { path } | MetaOp::Remove { path, .. } => vec![path],
            MetaOp::Rename { from, to, .. } => vec![from, to],
        };
        own.into_iter().chain(self.parents.iter_mut())
    }
}

/// The parent directory of a relative path (`""` for SRC's root).
pub fn parent_of(rel: &Path) -> PathBuf {
    rel.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// `p` with its prefix `from` replaced by `to`, if `p` is `from` or below it.
pub fn rebase(p: &Path, from: &Path, to: &Path) -> Option<PathBuf> {
    let rest = p.strip_prefix(from).ok()?;
    Some(if rest.as_os_str().is_empty() {
        to.to_path_buf()
    } else {
        to.join(rest)
    })
}

/// The durability model over one source directory.
#[derive(Debug)]
pub struct Model {
    root: PathBuf,
    mode: MetadataMode,
    /// Files with undo state, by the order in which they first became dirty (so that a
    /// seeded torn write-back is reproducible from the same sequence of operations).
    files: BTreeMap<u64, FileUndo>,
    by_key: HashMap<FileKey, u64>,
    next_file: u64,
    log: Vec<PendingOp>,
    next_trash: u64,
    frozen: bool,
}

fn frozen_error() -> io::Error {
    io::Error::from_raw_os_error(libc::EIO)
}

impl Model {
    /// A model over `root` (SRC), which must be a directory. Empties (creates) the trash:
    /// what an earlier session left there was removed for good, since that session ended
    /// without a power loss, or its power loss already put back what was not durable.
    pub fn open(root: &Path, mode: MetadataMode) -> io::Result<Model> {
        let trash = root.join(TRASH);
        match std::fs::symlink_metadata(&trash) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&trash)?,
            Ok(_) => std::fs::remove_file(&trash)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::create_dir(&trash)?;
        Ok(Model {
            root: root.to_path_buf(),
            mode,
            files: BTreeMap::new(),
            by_key: HashMap::new(),
            next_file: 0,
            log: Vec::new(),
            next_trash: 0,
            frozen: false,
        })
    }

    /// The metadata mode.
    pub fn mode(&self) -> MetadataMode {
        self.mode
    }

    /// True after a power loss: every operation fails with EIO.
    pub fn is_frozen(&self) -> bool {
        self.frozen
    }

    /// The absolute path of a path relative to SRC.
    pub fn abs(&self, rel: &Path) -> PathBuf {
        if rel.as_os_str().is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }

    fn check(&self) -> io::Result<()> {
        if self.frozen {
            Err(frozen_error())
        } else {
            Ok(())
        }
    }

    /// The undo state of `key`, created (as clean) on first use from the handle `file`.
    fn undo_of(&mut self, key: FileKey, file: &Arc<File>) -> io::Result<&mut FileUndo> {
        let id = match self.by_key.get(&key) {
            Some(id) => *id,
            None => {
                let len = file.metadata()?.len();
                let id = self.next_file;
                self.next_file += 1;
                self.by_key.insert(key, id);
                self.files.insert(
                    id,
                    FileUndo {
                        file: Arc::clone(file),
                        synced_len: len,
                        len,
                        pages: BTreeMap::new(),
                    },
                );
                id
            }
        };
        self.files
            .get_mut(&id)
            .ok_or_else(|| io::Error::other("faultfs: undo state lost"))
    }

    /// Writes `data` at `offset` (at the end of the file when `append`), first recording
    /// the pre-images of the synced pages it overwrites. `file` must be readable and
    /// writable. Returns the bytes written.
    pub fn write(
        &mut self,
        key: FileKey,
        file: &Arc<File>,
        offset: u64,
        append: bool,
        data: &[u8],
    ) -> io::Result<usize> {
        self.check()?;
        let undo = self.undo_of(key, file)?;
        let offset = if append { undo.len } else { offset };
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EFBIG))?;
        undo.record(offset, end)?;
        file.write_all_at(data, offset)?;
        undo.len = undo.len.max(end);
        Ok(data.len())
    }

    /// Sets the file's length (truncate, ftruncate, `O_TRUNC`), first recording the
    /// pre-images of the synced pages a shrink cuts off.
    pub fn set_len(&mut self, key: FileKey, file: &Arc<File>, len: u64) -> io::Result<()> {
        self.check()?;
        let undo = self.undo_of(key, file)?;
        if len < undo.len {
            undo.record(len, undo.len)?;
        }
        file.set_len(len)?;
        undo.len = len;
        Ok(())
    }

    /// `fallocate(mode, offset, len)`: allocation (mode 0 or `KEEP_SIZE`) changes no byte,
    /// only perhaps the length; `PUNCH_HOLE` and `ZERO_RANGE` zero a range, whose synced
    /// pages are recorded first. Collapse and insert (which shift the rest of the file) are
    /// refused with `EOPNOTSUPP`.
    pub fn fallocate(
        &mut self,
        key: FileKey,
        file: &Arc<File>,
        mode: i32,
        offset: u64,
        len: u64,
    ) -> io::Result<()> {
        self.check()?;
        let supported =
            libc::FALLOC_FL_KEEP_SIZE | libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_ZERO_RANGE;
        if mode & !supported != 0 {
            return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
        }
        let end = offset
            .checked_add(len)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EFBIG))?;
        let (Ok(off_t), Ok(len_t)) = (i64::try_from(offset), i64::try_from(len)) else {
            return Err(io::Error::from_raw_os_error(libc::EFBIG));
        };
        let undo = self.undo_of(key, file)?;
        if mode & (libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_ZERO_RANGE) != 0 {
            undo.record(offset, end)?;
        }
        nix::fcntl::fallocate(
            file.as_ref(),
            nix::fcntl::FallocateFlags::from_bits_retain(mode),
            off_t,
            len_t,
        )
        .map_err(io::Error::from)?;
        if mode & libc::FALLOC_FL_KEEP_SIZE == 0 {
            undo.len = undo.len.max(end);
        }
        Ok(())
    }

    /// The file was fsynced (or fdatasynced) on SRC: everything written to it so far is
    /// durable.
    pub fn file_synced(&mut self, key: FileKey) {
        if let Some(id) = self.by_key.remove(&key) {
            self.files.remove(&id);
        }
    }

    /// The current length of a file the model tracks, if it does.
    pub fn tracked_len(&self, key: FileKey) -> Option<u64> {
        self.by_key
            .get(&key)
            .and_then(|id| self.files.get(id))
            .map(|u| u.len)
    }

    /// An entry was created at `rel` (by the caller, on SRC). Refused once frozen: the
    /// caller must not create anything after a power loss (see `fs.rs`'s `locked`).
    pub fn created(&mut self, rel: &Path) -> io::Result<()> {
        self.check()?;
        if self.mode == MetadataMode::Strict {
            self.log.push(PendingOp {
                parents: vec![parent_of(rel)],
                op: MetaOp::Create {
                    path: rel.to_path_buf(),
                },
            });
        }
        Ok(())
    }

    fn trash_rel(name: &str) -> PathBuf {
        Path::new(TRASH).join(name)
    }

    fn new_trash_name(&mut self) -> String {
        self.next_trash += 1;
        self.next_trash.to_string()
    }

    /// Removes the entry at `rel` (`dir`: rmdir, else unlink). In strict mode the entry
    /// moves to the trash, and the path it now has (relative to SRC) is returned; in
    /// durable mode it is gone (`None`).
    pub fn remove(&mut self, rel: &Path, dir: bool) -> io::Result<Option<PathBuf>> {
        self.check()?;
        let abs = self.abs(rel);
        let meta = std::fs::symlink_metadata(&abs)?;
        match (dir, meta.is_dir()) {
            (true, false) => return Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
            (false, true) => return Err(io::Error::from_raw_os_error(libc::EISDIR)),
            _ => {}
        }
        if self.mode == MetadataMode::Durable {
            if dir {
                std::fs::remove_dir(&abs)?;
            } else {
                std::fs::remove_file(&abs)?;
                if meta.nlink() <= 1 {
                    // Its content cannot come back into the tree: nothing to restore.
                    self.file_synced((meta.dev(), meta.ino()));
                }
            }
            return Ok(None);
        }
        if dir && std::fs::read_dir(&abs)?.next().is_some() {
            return Err(io::Error::from_raw_os_error(libc::ENOTEMPTY));
        }
        let name = self.new_trash_name();
        let trash = Self::trash_rel(&name);
        std::fs::rename(&abs, self.abs(&trash))?;
        self.log.push(PendingOp {
            parents: vec![parent_of(rel)],
            op: MetaOp::Remove {
                path: rel.to_path_buf(),
                trash: name,
            },
        });
        Ok(Some(trash))
    }

    /// Renames `from` to `to` (refusing to replace an existing `to` when `noreplace`). In
    /// strict mode an entry `to` replaces moves to the trash and the path it now has is
    /// returned.
    pub fn rename(
        &mut self,
        from: &Path,
        to: &Path,
        noreplace: bool,
    ) -> io::Result<Option<PathBuf>> {
        self.check()?;
        let (afrom, ato) = (self.abs(from), self.abs(to));
        let src_meta = std::fs::symlink_metadata(&afrom)?;
        if from == to {
            return Ok(None);
        }
        if to.starts_with(from) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let victim = match std::fs::symlink_metadata(&ato) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        if let Some(v) = &victim {
            if noreplace {
                return Err(io::Error::from_raw_os_error(libc::EEXIST));
            }
            if (v.dev(), v.ino()) == (src_meta.dev(), src_meta.ino()) {
                return Ok(None); // two names of one file: rename does nothing
            }
            match (src_meta.is_dir(), v.is_dir()) {
                (true, false) => return Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
                (false, true) => return Err(io::Error::from_raw_os_error(libc::EISDIR)),
                (true, true) if std::fs::read_dir(&ato)?.next().is_some() => {
                    return Err(io::Error::from_raw_os_error(libc::ENOTEMPTY));
                }
                _ => {}
            }
        }
        if self.mode == MetadataMode::Durable {
            std::fs::rename(&afrom, &ato)?;
            if let Some(v) = victim.filter(|v| !v.is_dir() && v.nlink() <= 1) {
                self.file_synced((v.dev(), v.ino()));
            }
            return Ok(None);
        }
        let victim_name = match victim {
            Some(_) => {
                let name = self.new_trash_name();
                std::fs::rename(&ato, self.abs(&Self::trash_rel(&name)))?;
                Some(name)
            }
            None => None,
        };
        if let Err(e) = std::fs::rename(&afrom, &ato) {
            if let Some(name) = &victim_name {
                // Put the victim back: the rename did not happen.
                let _ = std::fs::rename(self.abs(&Self::trash_rel(name)), &ato);
            }
            return Err(e);
        }
        // Earlier changes that named `to` named what was there before (the victim, now in
        // the trash, or an entry removed earlier): they move to where that is now (a
        // placeholder in the trash when nothing is), so that only what `from` named is at
        // `to` in the log. Undoing the rename reverses both steps.
        let placeholder = match &victim_name {
            Some(name) => Self::trash_rel(name),
            None => {
                let n = self.new_trash_name();
                Self::trash_rel(&format!("ghost-{n}"))
            }
        };
        self.rebase_log(to, &placeholder);
        self.rebase_log(from, to);
        let mut parents = vec![parent_of(from)];
        if parent_of(to) != parents[0] {
            parents.push(parent_of(to));
        }
        let victim_path = victim_name.as_deref().map(Self::trash_rel);
        self.log.push(PendingOp {
            parents,
            op: MetaOp::Rename {
                from: from.to_path_buf(),
                to: to.to_path_buf(),
                victim: victim_name,
                placeholder,
            },
        });
        Ok(victim_path)
    }

    /// Make every pending change's path under `from` one under `to`.
    fn rebase_log(&mut self, from: &Path, to: &Path) {
        for op in &mut self.log {
            for p in op.paths_mut() {
                if let Some(n) = rebase(p, from, to) {
                    *p = n;
                }
            }
        }
    }

    /// The directory `rel` was fsynced: the entry changes in it so far are durable (a
    /// rename once both its directories are). Removed entries whose removal became durable
    /// are deleted from the trash.
    pub fn dir_synced(&mut self, rel: &Path) {
        let mut durable = Vec::new();
        let mut i = 0;
        while i < self.log.len() {
            self.log[i].parents.retain(|p| p != rel);
            if self.log[i].parents.is_empty() {
                durable.push(self.log.remove(i));
            } else {
                i += 1;
            }
        }
        for op in durable {
            match op.op {
                MetaOp::Remove { trash, .. }
                | MetaOp::Rename {
                    victim: Some(trash),
                    ..
                } => self.purge(&trash),
                _ => {}
            }
        }
    }

    /// Deletes a trash entry for good, with any undo state of the file it was.
    fn purge(&mut self, name: &str) {
        let abs = self.abs(&Self::trash_rel(name));
        let res = match std::fs::symlink_metadata(&abs) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&abs),
            Ok(m) => {
                if m.nlink() <= 1 {
                    self.file_synced((m.dev(), m.ino()));
                }
                std::fs::remove_file(&abs)
            }
            Err(e) => Err(e),
        };
        if let Err(e) = res {
            tracing::warn!(path = %abs.display(), error = %e, "faultfs: could not empty a trash entry");
        }
    }

    /// Bytes a power loss would drop now, and the number of files they are in.
    pub fn dirty(&self) -> (u64, u64) {
        let dirty: Vec<u64> = self
            .files
            .values()
            .filter(|u| !u.is_clean())
            .map(FileUndo::dirty_bytes)
            .collect();
        (dirty.iter().sum(), dirty.len() as u64)
    }

    /// Directory-entry changes not yet durable.
    pub fn pending_metadata_ops(&self) -> u64 {
        self.log.len() as u64
    }

    /// Freezes the model (every later operation fails with EIO) and undoes everything not
    /// durable: file pages and lengths, then directory-entry changes in reverse order.
    ///
    /// With `torn = Some(seed)` a seeded subset of the dirty pages survives instead, as
    /// write-back in any order would leave them: a surviving page keeps its current bytes,
    /// the others get their synced bytes back (zeros past the synced length), and the file
    /// ends at the synced length or at the end of its highest surviving page (clipped to
    /// its current length), whichever is further. Directory-entry changes are undone as by
    /// a plain power loss. The same seed after the same operations gives the same result.
    pub fn power_loss(&mut self, torn: Option<u64>) -> LossReport {
        self.frozen = true;
        let mut report = LossReport::default();
        let mut rng = torn.map(SplitMix64);
        let files = std::mem::take(&mut self.files);
        self.by_key.clear();
        for (_, undo) in files {
            if undo.is_clean() {
                continue;
            }
            report.files_restored += 1;
            let res = match &mut rng {
                None => {
                    report.dropped_bytes += undo.dirty_bytes();
                    report.pages_dropped += undo.pages.len() as u64
                        + pages_past(undo.synced_len, undo.len).count() as u64;
                    restore(&undo)
                }
                Some(rng) => tear(&undo, rng, &mut report),
            };
            if let Err(e) = res {
                tracing::error!(error = %e, "faultfs: could not restore a file's synced content");
                report.undo_conflicts += 1;
            }
        }
        while let Some(op) = self.log.pop() {
            match self.undo(op.op) {
                Ok(()) => report.undone_metadata_ops += 1,
                Err(e) => {
                    tracing::warn!(error = %e, "faultfs: an entry change could not be undone");
                    report.undo_conflicts += 1;
                }
            }
        }
        self.empty_trash();
        report
    }

    fn undo(&mut self, op: MetaOp) -> io::Result<()> {
        match op {
            MetaOp::Create { path } => {
                let abs = self.abs(&path);
                if std::fs::symlink_metadata(&abs)?.is_dir() {
                    std::fs::remove_dir_all(&abs)
                } else {
                    std::fs::remove_file(&abs)
                }
            }
            MetaOp::Remove { path, trash } => {
                std::fs::rename(self.abs(&Self::trash_rel(&trash)), self.abs(&path))
            }
            MetaOp::Rename {
                from,
                to,
                victim,
                placeholder,
            } => {
                std::fs::rename(self.abs(&to), self.abs(&from))?;
                self.rebase_log(&to, &from);
                let back = match victim {
                    Some(v) => std::fs::rename(self.abs(&Self::trash_rel(&v)), self.abs(&to)),
                    None => Ok(()),
                };
                self.rebase_log(&placeholder, &to);
                back
            }
        }
    }

    /// Deletes every trash entry: called when nothing in it can be needed again (after a
    /// power loss, and at a clean unmount, which makes everything durable).
    pub fn empty_trash(&mut self) {
        let trash = self.abs(Path::new(TRASH));
        if let Err(e) = std::fs::remove_dir_all(&trash).and_then(|()| std::fs::create_dir(&trash)) {
            tracing::warn!(path = %trash.display(), error = %e, "faultfs: could not empty the trash");
        }
    }

    /// A clean unmount: everything is as durable as after a clean shutdown. Deletes the
    /// trash directory.
    pub fn finish(&mut self) {
        self.log.clear();
        self.files.clear();
        self.by_key.clear();
        let trash = self.abs(Path::new(TRASH));
        if let Err(e) = std::fs::remove_dir_all(&trash) {
            tracing::warn!(path = %trash.display(), error = %e, "faultfs: could not remove the trash");
        }
    }
}

/// The pages holding bytes in `[synced_len, len)`.
fn pages_past(synced_len: u64, len: u64) -> impl Iterator<Item = u64> {
    if len > synced_len {
        synced_len / PAGE..len.div_ceil(PAGE)
    } else {
        0..0
    }
}

/// Puts a file back to its synced content and length.
fn restore(undo: &FileUndo) -> io::Result<()> {
    for (page, pre) in &undo.pages {
        undo.file.write_all_at(pre, page * PAGE)?;
    }
    undo.file.set_len(undo.synced_len)
}

/// A torn write-back of one file (see [`Model::power_loss`]).
fn tear(undo: &FileUndo, rng: &mut SplitMix64, report: &mut LossReport) -> io::Result<()> {
    let dirty = undo.dirty_pages();
    let mut survivors = BTreeSet::new();
    for page in &dirty {
        if rng.next() & 1 == 1 {
            survivors.insert(*page);
        }
    }
    let new_len = survivors
        .last()
        .map(|p| ((p + 1) * PAGE).min(undo.len))
        .unwrap_or(0)
        .max(undo.synced_len);
    for page in dirty.difference(&survivors) {
        let from = page * PAGE;
        let to = from + PAGE;
        if let Some(pre) = undo.pages.get(page) {
            undo.file.write_all_at(pre, from)?;
            report.dropped_bytes += pre.len() as u64;
        }
        let zero_from = from.max(undo.synced_len);
        let zero_to = to.min(new_len);
        if zero_from < zero_to {
            undo.file
                .write_all_at(&vec![0u8; (zero_to - zero_from) as usize], zero_from)?;
        }
        report.dropped_bytes += to.min(undo.len).saturating_sub(zero_from);
        report.pages_dropped += 1;
    }
    report.pages_kept += survivors.len() as u64;
    undo.file.set_len(new_len)
}

/// A small seeded generator (splitmix64), spelled out so that a seed means the same torn
/// write-back in every build.
#[derive(Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    struct Fixture {
        _dir: tempfile::TempDir,
        root: PathBuf,
        model: Model,
    }

    fn fixture(mode: MetadataMode) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("src");
        fs::create_dir(&root).unwrap();
        let model = Model::open(&root, mode).unwrap();
        Fixture {
            _dir: dir,
            root,
            model,
        }
    }

    impl Fixture {
        fn open(&self, rel: &str) -> (FileKey, Arc<File>) {
            let f = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(self.root.join(rel))
                .unwrap();
            (file_key(&f).unwrap(), Arc::new(f))
        }

        fn write(&mut self, rel: &str, offset: u64, data: &[u8]) {
            let (k, f) = self.open(rel);
            self.model.write(k, &f, offset, false, data).unwrap();
        }

        fn sync(&mut self, rel: &str) {
            let (k, f) = self.open(rel);
            f.sync_all().unwrap();
            self.model.file_synced(k);
        }

        fn read(&self, rel: &str) -> Vec<u8> {
            fs::read(self.root.join(rel)).unwrap()
        }

        fn exists(&self, rel: &str) -> bool {
            fs::symlink_metadata(self.root.join(rel)).is_ok()
        }

        /// A file created, written and made durable (data and entry).
        fn durable_file(&mut self, rel: &str, data: &[u8]) {
            fs::write(self.root.join(rel), data).unwrap();
            self.model.created(Path::new(rel)).unwrap();
            self.model.dir_synced(&parent_of(Path::new(rel)));
        }
    }

    #[test]
    fn synced_data_survives_and_unsynced_appends_and_overwrites_are_dropped() {
        let mut f = fixture(MetadataMode::Strict);
        let synced: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        f.durable_file("a", b"");
        f.write("a", 0, &synced);
        f.sync("a");
        f.write("a", 100, b"overwritten");
        f.write("a", 5000, &[7u8; 5000]); // overwrites and appends past 10_000
        let (dirty, files) = f.model.dirty();
        assert_eq!(files, 1);
        assert!(dirty >= 5000, "{dirty}");
        let report = f.model.power_loss(None);
        assert_eq!(f.read("a"), synced);
        assert_eq!(report.files_restored, 1);
        assert_eq!(report.undone_metadata_ops, 0);
        assert!(report.dropped_bytes > 0);
        assert!(f.model.is_frozen());
    }

    #[test]
    fn a_second_write_to_a_page_keeps_the_first_pre_image() {
        let mut f = fixture(MetadataMode::Durable);
        f.write("a", 0, &[1u8; 8192]);
        f.sync("a");
        f.write("a", 10, &[2u8; 10]);
        f.write("a", 10, &[3u8; 10]);
        f.model.power_loss(None);
        assert_eq!(f.read("a"), vec![1u8; 8192]);
    }

    #[test]
    fn truncates_and_extensions_are_undone() {
        let mut f = fixture(MetadataMode::Durable);
        let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        f.write("a", 0, &data);
        f.sync("a");
        let (k, file) = f.open("a");
        f.model.set_len(k, &file, 3).unwrap(); // shrink below synced pages
        f.model.set_len(k, &file, 30_000).unwrap(); // extend with zeros
        f.model.write(k, &file, 0, true, b"appended").unwrap();
        assert_eq!(f.model.tracked_len(k), Some(30_008));
        f.model.power_loss(None);
        assert_eq!(f.read("a"), data);
    }

    #[test]
    fn an_unsynced_new_file_loses_all_its_bytes_but_not_its_durable_entry() {
        let mut f = fixture(MetadataMode::Strict);
        f.durable_file("a", b"");
        f.write("a", 0, b"never synced");
        f.model.power_loss(None);
        assert!(f.exists("a"));
        assert_eq!(f.read("a"), b"");
    }

    #[test]
    fn fallocate_punch_hole_is_undone_and_collapse_is_refused() {
        let mut f = fixture(MetadataMode::Durable);
        f.write("a", 0, &[9u8; 3 * 4096]);
        f.sync("a");
        let (k, file) = f.open("a");
        let punch = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        f.model.fallocate(k, &file, punch, 4096, 4096).unwrap();
        f.model.fallocate(k, &file, 0, 0, 64 * 1024).unwrap();
        assert_eq!(f.model.tracked_len(k), Some(64 * 1024));
        let err = f
            .model
            .fallocate(k, &file, libc::FALLOC_FL_COLLAPSE_RANGE, 0, 4096)
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EOPNOTSUPP));
        f.model.power_loss(None);
        assert_eq!(f.read("a"), vec![9u8; 3 * 4096]);
    }

    #[test]
    fn creates_are_undone_unless_the_directory_was_synced() {
        let mut f = fixture(MetadataMode::Strict);
        fs::create_dir(f.root.join("d")).unwrap();
        f.model.created(Path::new("d")).unwrap();
        fs::write(f.root.join("d/kept"), b"x").unwrap();
        f.model.created(Path::new("d/kept")).unwrap();
        f.model.dir_synced(Path::new("d"));
        assert_eq!(
            f.model.pending_metadata_ops(),
            1,
            "d itself is pending in the root"
        );
        f.model.dir_synced(Path::new(""));
        assert_eq!(f.model.pending_metadata_ops(), 0);
        fs::write(f.root.join("lost"), b"x").unwrap();
        f.model.created(Path::new("lost")).unwrap();
        fs::write(f.root.join("d/lost-too"), b"x").unwrap();
        f.model.created(Path::new("d/lost-too")).unwrap();
        let report = f.model.power_loss(None);
        assert_eq!(report.undone_metadata_ops, 2);
        assert!(f.exists("d/kept"));
        assert!(!f.exists("lost"));
        assert!(!f.exists("d/lost-too"));
    }

    /// The replace-by-rename idiom (RocksDB's CURRENT, snapshot files) without a directory
    /// fsync: after a power loss the durable file is back, whatever the steps were.
    #[test]
    fn unsynced_replaces_by_rename_leave_the_durable_file() {
        // unlink, then rename into place.
        let mut f = fixture(MetadataMode::Strict);
        f.durable_file("CURRENT", b"v0");
        fs::write(f.root.join("CURRENT.tmp"), b"v1").unwrap();
        f.model.created(Path::new("CURRENT.tmp")).unwrap();
        f.model.remove(Path::new("CURRENT"), false).unwrap();
        f.model
            .rename(Path::new("CURRENT.tmp"), Path::new("CURRENT"), false)
            .unwrap();
        let r = f.model.power_loss(None);
        assert_eq!((r.undone_metadata_ops, r.undo_conflicts), (3, 0));
        assert_eq!(f.read("CURRENT"), b"v0");
        assert!(!f.exists("CURRENT.tmp"));

        // Replaced twice, by two renames over it.
        let mut f = fixture(MetadataMode::Strict);
        f.durable_file("state", b"v0");
        for v in [b"v1", b"v2"] {
            fs::write(f.root.join("tmp"), v).unwrap();
            f.model.created(Path::new("tmp")).unwrap();
            f.model
                .rename(Path::new("tmp"), Path::new("state"), false)
                .unwrap();
        }
        let r = f.model.power_loss(None);
        assert_eq!(r.undo_conflicts, 0);
        assert_eq!(f.read("state"), b"v0");
        assert!(!f.exists("tmp"));

        // Two durable files renamed onto one name in turn.
        let mut f = fixture(MetadataMode::Strict);
        f.durable_file("a", b"a");
        f.durable_file("b", b"b");
        f.durable_file("c", b"c");
        f.model
            .rename(Path::new("a"), Path::new("b"), false)
            .unwrap();
        f.model
            .rename(Path::new("c"), Path::new("b"), false)
            .unwrap();
        let r = f.model.power_loss(None);
        assert_eq!(r.undo_conflicts, 0);
        assert_eq!(
            (f.read("a"), f.read("b"), f.read("c")),
            (b"a".to_vec(), b"b".to_vec(), b"c".to_vec())
        );
    }

    #[test]
    fn a_directory_created_but_not_synced_in_its_parent_disappears_with_its_content() {
        let mut f = fixture(MetadataMode::Strict);
        fs::create_dir(f.root.join("d")).unwrap();
        f.model.created(Path::new("d")).unwrap();
        fs::write(f.root.join("d/f"), b"x").unwrap();
        f.model.created(Path::new("d/f")).unwrap();
        f.model.dir_synced(Path::new("d"));
        f.model.power_loss(None);
        assert!(!f.exists("d"));
    }

    #[test]
    fn unlink_and_rmdir_are_undone_unless_synced_and_the_trash_is_emptied() {
        let mut f = fixture(MetadataMode::Strict);
        f.durable_file("a", b"content a");
        f.durable_file("b", b"content b");
        fs::create_dir(f.root.join("d")).unwrap();
        f.model.created(Path::new("d")).unwrap();
        f.model.dir_synced(Path::new(""));
        let trash = f.model.remove(Path::new("a"), false).unwrap().unwrap();
        assert!(trash.starts_with(TRASH));
        assert!(!f.exists("a"));
        assert!(f.exists(trash.to_str().unwrap()));
        assert_eq!(
            f.model
                .remove(Path::new("d"), false)
                .unwrap_err()
                .raw_os_error(),
            Some(libc::EISDIR)
        );
        f.model.remove(Path::new("d"), true).unwrap();
        f.model.dir_synced(Path::new(""));
        // Durable now: the trash holds nothing any more.
        assert_eq!(fs::read_dir(f.root.join(TRASH)).unwrap().count(), 0);
        f.model.remove(Path::new("b"), false).unwrap();
        let report = f.model.power_loss(None);
        assert_eq!(report.undone_metadata_ops, 1);
        assert!(!f.exists("a"));
        assert!(!f.exists("d"));
        assert_eq!(f.read("b"), b"content b");
    }

    #[test]
    fn rename_over_a_target_is_undone_with_the_victim_back() {
        let mut f = fixture(MetadataMode::Strict);
        f.durable_file("new", b"new");
        f.durable_file("cur", b"old");
        let victim = f
            .model
            .rename(Path::new("new"), Path::new("cur"), false)
            .unwrap();
        assert!(victim.is_some());
        assert_eq!(f.read("cur"), b"new");
        let report = f.model.power_loss(None);
        assert_eq!(report.undone_metadata_ops, 1);
        assert_eq!(f.read("cur"), b"old");
        assert_eq!(f.read("new"), b"new");
    }

    #[test]
    fn a_rename_is_durable_only_once_both_directories_are_synced() {
        let mut f = fixture(MetadataMode::Strict);
        for d in ["x", "y"] {
            fs::create_dir(f.root.join(d)).unwrap();
            f.model.created(Path::new(d)).unwrap();
        }
        f.model.dir_synced(Path::new(""));
        f.durable_file("x/f", b"f");
        f.model
            .rename(Path::new("x/f"), Path::new("y/f"), false)
            .unwrap();
        f.model.dir_synced(Path::new("y"));
        assert_eq!(f.model.pending_metadata_ops(), 1);
        f.model.power_loss(None);
        assert!(f.exists("x/f"));
        assert!(!f.exists("y/f"));

        let mut f = fixture(MetadataMode::Strict);
        f.durable_file("a", b"a");
        f.model
            .rename(Path::new("a"), Path::new("b"), false)
            .unwrap();
        f.model.dir_synced(Path::new(""));
        f.model.power_loss(None);
        assert!(f.exists("b") && !f.exists("a"));
    }

    #[test]
    fn pending_paths_follow_a_durable_rename_of_their_directory() {
        let mut f = fixture(MetadataMode::Strict);
        fs::create_dir_all(f.root.join("p/d")).unwrap();
        f.model.created(Path::new("p")).unwrap();
        f.model.created(Path::new("p/d")).unwrap();
        f.model.dir_synced(Path::new(""));
        f.model.dir_synced(Path::new("p"));
        fs::write(f.root.join("p/d/f"), b"x").unwrap();
        f.model.created(Path::new("p/d/f")).unwrap(); // pending in p/d
        f.model
            .rename(Path::new("p"), Path::new("q"), false)
            .unwrap();
        f.model.dir_synced(Path::new("")); // the rename is durable; the create is not
        let report = f.model.power_loss(None);
        assert_eq!((report.undone_metadata_ops, report.undo_conflicts), (1, 0));
        assert!(f.exists("q/d") && !f.exists("q/d/f") && !f.exists("p"));
    }

    #[test]
    fn rename_checks_refuse_before_anything_moves() {
        let mut f = fixture(MetadataMode::Strict);
        f.durable_file("a", b"a");
        f.durable_file("b", b"b");
        fs::create_dir_all(f.root.join("d/sub")).unwrap();
        let e = |r: io::Result<Option<PathBuf>>| r.unwrap_err().raw_os_error();
        let m = &mut f.model;
        assert_eq!(
            e(m.rename(Path::new("a"), Path::new("b"), true)),
            Some(libc::EEXIST)
        );
        assert_eq!(
            e(m.rename(Path::new("a"), Path::new("d"), false)),
            Some(libc::EISDIR)
        );
        assert_eq!(
            e(m.rename(Path::new("d"), Path::new("a"), false)),
            Some(libc::ENOTDIR)
        );
        assert_eq!(
            e(m.rename(Path::new("d"), Path::new("d/x"), false)),
            Some(libc::EINVAL)
        );
        fs::create_dir(f.root.join("e")).unwrap();
        let m = &mut f.model;
        assert_eq!(
            e(m.rename(Path::new("e"), Path::new("d"), false)),
            Some(libc::ENOTEMPTY)
        );
        assert_eq!(m.pending_metadata_ops(), 0);
        assert_eq!(f.read("b"), b"b");
    }

    #[test]
    fn durable_mode_keeps_every_entry_change() {
        let mut f = fixture(MetadataMode::Durable);
        fs::write(f.root.join("a"), b"a").unwrap();
        f.model.created(Path::new("a")).unwrap();
        fs::write(f.root.join("b"), b"b").unwrap();
        f.model.created(Path::new("b")).unwrap();
        f.model
            .rename(Path::new("a"), Path::new("c"), false)
            .unwrap();
        assert_eq!(f.model.remove(Path::new("b"), false).unwrap(), None);
        assert_eq!(f.model.pending_metadata_ops(), 0);
        let report = f.model.power_loss(None);
        assert_eq!(report.undone_metadata_ops, 0);
        assert!(f.exists("c") && !f.exists("a") && !f.exists("b"));
    }

    #[test]
    fn a_removed_file_gets_its_synced_content_back() {
        let mut f = fixture(MetadataMode::Strict);
        f.durable_file("a", b"synced");
        f.write("a", 0, b"SYNCED and more");
        f.model.remove(Path::new("a"), false).unwrap();
        f.model.power_loss(None);
        assert_eq!(f.read("a"), b"synced");
    }

    #[test]
    fn frozen_models_refuse_everything() {
        let mut f = fixture(MetadataMode::Strict);
        f.durable_file("a", b"a");
        f.model.power_loss(None);
        let (k, file) = f.open("a");
        let eio = Some(libc::EIO);
        assert_eq!(
            f.model
                .write(k, &file, 0, false, b"x")
                .unwrap_err()
                .raw_os_error(),
            eio
        );
        assert_eq!(
            f.model.set_len(k, &file, 0).unwrap_err().raw_os_error(),
            eio
        );
        assert_eq!(
            f.model
                .remove(Path::new("a"), false)
                .unwrap_err()
                .raw_os_error(),
            eio
        );
        let r = f.model.rename(Path::new("a"), Path::new("b"), false);
        assert_eq!(r.unwrap_err().raw_os_error(), eio);
    }

    fn torn_run(seed: u64) -> (Vec<u8>, LossReport) {
        let mut f = fixture(MetadataMode::Durable);
        f.write("a", 0, &[1u8; 8 * 4096]);
        f.sync("a");
        for page in 0..16u64 {
            f.write("a", page * PAGE, &[2u8; 4096]);
        }
        let report = f.model.power_loss(Some(seed));
        (f.read("a"), report)
    }

    #[test]
    fn torn_keeps_a_seeded_subset_of_pages() {
        let (a, ra) = torn_run(7);
        let (b, rb) = torn_run(7);
        assert_eq!(a, b, "same seed, same result");
        assert_eq!(ra, rb);
        assert_eq!(ra.pages_kept + ra.pages_dropped, 16);
        assert!(ra.pages_kept > 0 && ra.pages_dropped > 0, "{ra:?}");
        // Every page is whole: all old (1) or all new (2), or zeros past the synced length.
        assert!(a.len() as u64 >= 8 * PAGE && (a.len() as u64).is_multiple_of(PAGE));
        for (i, page) in a.chunks(PAGE as usize).enumerate() {
            let first = page[0];
            assert!(page.iter().all(|b| *b == first), "page {i} is mixed");
            match first {
                1 => assert!(i < 8),
                0 => assert!(i >= 8),
                2 => {}
                x => panic!("page {i} holds {x}"),
            }
        }
        let seeds: BTreeSet<Vec<u8>> = (0..8).map(|s| torn_run(s).0).collect();
        assert!(seeds.len() > 1, "different seeds tear differently");
    }

    #[test]
    fn torn_length_ends_at_the_highest_surviving_page() {
        for seed in 0..16 {
            let mut f = fixture(MetadataMode::Durable);
            f.write("a", 0, &[1u8; 100]);
            f.sync("a");
            f.write("a", 100, &[2u8; 3 * 4096]); // dirty pages 0..=3, last one partial
            f.model.power_loss(Some(seed));
            let a = f.read("a");
            assert!(a.len() >= 100 && a.len() <= 100 + 3 * 4096, "{}", a.len());
            assert!(a[..100].iter().all(|b| *b == 1));
            assert!(a.len() == 100 || a.len().is_multiple_of(4096) || a.len() == 100 + 3 * 4096);
        }
    }

    /// Random writes, appends, truncates and syncs on one file, against a reference that
    /// remembers the content at the last sync: a power loss must give exactly that back.
    #[test]
    fn random_file_histories_come_back_to_their_last_synced_content() {
        for seed in 0..150u64 {
            let mut rng = SplitMix64(seed);
            let mut f = fixture(MetadataMode::Durable);
            let (k, file) = f.open("a");
            let mut synced: Vec<u8> = Vec::new();
            for step in 0..30 {
                let len = f.model.tracked_len(k).unwrap_or(synced.len() as u64);
                let at = rng.next() % (len + 3 * PAGE);
                match rng.next() % 5 {
                    0 | 1 => {
                        let n = (rng.next() % (2 * PAGE)) as usize + 1;
                        let data = vec![(step + 1) as u8; n];
                        f.model
                            .write(k, &file, at, rng.next().is_multiple_of(4), &data)
                            .unwrap();
                    }
                    2 => f.model.set_len(k, &file, at).unwrap(),
                    3 => {
                        let zero = libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE;
                        f.model.fallocate(k, &file, zero, at, PAGE / 2).unwrap();
                    }
                    _ => {
                        file.sync_data().unwrap();
                        f.model.file_synced(k);
                        synced = f.read("a");
                    }
                }
            }
            f.model.power_loss(None);
            assert_eq!(f.read("a"), synced, "seed {seed}");
        }
    }

    #[test]
    fn rebase_replaces_whole_components_only() {
        let r = |p: &str| rebase(Path::new(p), Path::new("a/b"), Path::new("c"));
        assert_eq!(r("a/b"), Some(PathBuf::from("c")));
        assert_eq!(r("a/b/x/y"), Some(PathBuf::from("c/x/y")));
        assert_eq!(r("a/bc"), None);
        assert_eq!(r("a"), None);
        assert_eq!(parent_of(Path::new("f")), PathBuf::new());
    }

    #[test]
    fn opening_empties_a_leftover_trash() {
        let f = fixture(MetadataMode::Strict);
        fs::write(f.root.join(TRASH).join("7"), b"left over").unwrap();
        Model::open(&f.root, MetadataMode::Strict).unwrap();
        assert_eq!(fs::read_dir(f.root.join(TRASH)).unwrap().count(), 0);
    }
}
