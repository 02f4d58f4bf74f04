//! Evicting a data directory from the OS page cache, for cold-cache restarts.
//!
//! A node restarted on the same machine right after it was killed finds its whole data
//! directory still in the page cache, so its replay runs at memory speed. After a reboot,
//! or on a machine whose cache was taken by other work, the same replay reads the disk:
//! recovery figures from a warm restart understate that case, sometimes by orders of
//! magnitude. A `restart` event with `cache = "cold"` first calls [`evict`] on the node's
//! data directory.
//!
//! Eviction is per file, with `posix_fadvise(POSIX_FADV_DONTNEED)` after `fdatasync` (dirty
//! pages cannot be dropped until written back). It needs no privileges and leaves every
//! other file's cache alone, unlike `/proc/sys/vm/drop_caches`. The advice is only advice:
//! pages still mapped by a live process, or on a filesystem whose files *are* memory
//! (tmpfs), stay resident. [`Eviction`] therefore measures residency (with `mincore`)
//! before and after, so a run states how cold its restart really was.
//!
//! The fdatasync means a cold restart models a clean reboot (the kernel wrote back what the
//! process had written), not a power loss: with `fsync = "never"` a power loss would also
//! lose the unsynced tail, which this does not simulate.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::fcntl::{PosixFadviseAdvice, posix_fadvise};
use thiserror::Error;

/// One step of an eviction that failed, naming the file ([`evict`] collects them as text).
#[derive(Debug, Error)]
#[error("{what} {path}: {source}")]
struct EvictError {
    what: &'static str,
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

fn err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> EvictError + use<> {
    let path = path.to_path_buf();
    move |source| EvictError { what, path, source }
}

/// What [`evict`] did to one directory tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Eviction {
    /// Regular files visited.
    pub files: u64,
    /// Their total size.
    pub bytes: u64,
    /// Bytes of those files in the page cache before eviction (page granularity).
    pub resident_before: u64,
    /// …and after. Near zero on a disk filesystem; unchanged on tmpfs.
    pub resident_after: u64,
    /// What could not be done (each naming its file); the other files were still evicted.
    pub errors: Vec<String>,
}

impl Eviction {
    /// Whether the restart that follows really starts cold: every file was evicted and at
    /// most a tenth of the data is still resident. Not so on tmpfs (the files are memory),
    /// or when a file could not be written back or advised.
    pub fn is_cold(&self) -> bool {
        self.errors.is_empty() && self.resident_after * 10 <= self.bytes
    }
}

impl std::fmt::Display for Eviction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = |n: u64| bytesize::ByteSize::b(n).display().iec().to_string();
        write!(
            f,
            "cold cache: {} files, {}; resident {} before, {} after eviction",
            self.files,
            b(self.bytes),
            b(self.resident_before),
            b(self.resident_after)
        )?;
        if !self.is_cold() {
            write!(
                f,
                " — WARNING: not a cold restart (tmpfs, or a filesystem with its own cache, \
                 keeps data resident)"
            )?;
        }
        for e in &self.errors {
            write!(f, "; {e}")?;
        }
        Ok(())
    }
}

/// Every regular file below `dir` (symlinks are not followed).
fn files(dir: &Path) -> Result<Vec<PathBuf>, EvictError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(err("reading directory", &d))? {
            let entry = entry.map_err(err("reading directory", &d))?;
            let ty = entry
                .file_type()
                .map_err(err("reading file type of", &entry.path()))?;
            if ty.is_dir() {
                stack.push(entry.path());
            } else if ty.is_file() {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Bytes of `file` (of length `len`) resident in the page cache, counted in whole pages.
fn resident(file: &File, len: u64, path: &Path) -> Result<u64, EvictError> {
    if len == 0 {
        return Ok(0);
    }
    // SAFETY: sysconf only reads a constant of the running system.
    let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as u64,
        _ => 4096,
    };
    let len_usize = usize::try_from(len).map_err(|_| EvictError {
        what: "file too large to map",
        path: path.to_path_buf(),
        source: std::io::Error::other("length exceeds the address space"),
    })?;
    let pages = len.div_ceil(page) as usize;
    let mut vec = vec![0u8; pages];
    // SAFETY: a fresh read-only shared mapping of a file we hold open, never dereferenced;
    // `mincore` writes exactly one byte per page of the mapping into `vec`, which has that
    // many bytes; the mapping is unmapped before returning.
    unsafe {
        let addr = libc::mmap(
            std::ptr::null_mut(),
            len_usize,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        );
        if addr == libc::MAP_FAILED {
            return Err(err("mapping", path)(std::io::Error::last_os_error()));
        }
        let rc = libc::mincore(addr, len_usize, vec.as_mut_ptr());
        let e = std::io::Error::last_os_error();
        libc::munmap(addr, len_usize);
        if rc != 0 {
            return Err(err("mincore on", path)(e));
        }
    }
    let in_cache = vec.iter().filter(|b| *b & 1 == 1).count() as u64;
    Ok((in_cache * page).min(len))
}

/// Open a file for reading, or `None` if it disappeared since it was listed.
fn open(path: &Path) -> Result<Option<(File, u64)>, EvictError> {
    match File::open(path) {
        Ok(f) => {
            let len = f
                .metadata()
                .map_err(err("reading metadata of", path))?
                .len();
            Ok(Some((f, len)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(err("opening", path)(e)),
    }
}

/// Write back and drop from the page cache every regular file below `dir`.
///
/// Best effort, file by file: a file that cannot be opened, written back or advised is
/// named in [`Eviction::errors`] and the others are still evicted. A failed residency
/// measurement counts the file as resident (never as evicted). Call it only while no
/// process has the directory open for writing (the node is down): pages written after the
/// `fdatasync` would stay dirty and resident.
pub fn evict(dir: &Path) -> Eviction {
    let mut ev = Eviction::default();
    let list = match files(dir) {
        Ok(l) => l,
        Err(e) => {
            ev.errors.push(e.to_string());
            return ev;
        }
    };
    for path in list {
        let (f, len) = match open(&path) {
            Ok(Some(x)) => x,
            Ok(None) => continue,
            Err(e) => {
                ev.errors.push(e.to_string());
                continue;
            }
        };
        ev.files += 1;
        ev.bytes += len;
        let measure = |ev: &mut Eviction| match resident(&f, len, &path) {
            Ok(n) => n,
            Err(e) => {
                ev.errors.push(e.to_string());
                len
            }
        };
        ev.resident_before += measure(&mut ev);
        if let Err(e) = f.sync_data() {
            ev.errors.push(err("fdatasync of", &path)(e).to_string());
        } else if let Err(e) = posix_fadvise(&f, 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED) {
            ev.errors
                .push(err("posix_fadvise(DONTNEED) on", &path)(e.into()).to_string());
        }
        ev.resident_after += measure(&mut ev);
    }
    ev
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// Page-cache residency of every regular file below `dir`, in bytes.
    fn resident_bytes(dir: &Path) -> Result<u64, EvictError> {
        let mut total = 0;
        for path in files(dir)? {
            let Some((f, len)) = open(&path)? else {
                continue;
            };
            total += resident(&f, len, &path)?;
        }
        Ok(total)
    }

    /// The type of the filesystem holding `path` (the longest matching mount point).
    fn filesystem(path: &Path) -> String {
        std::fs::read_to_string("/proc/mounts")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() > 2 && path.starts_with(f[1])).then(|| (f[1].len(), f[2].to_string()))
            })
            .max()
            .map(|(_, t)| t)
            .unwrap_or_default()
    }

    /// Files just written and read are resident; after eviction they are not.
    #[test]
    fn eviction_drops_written_files_from_the_cache() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("sub")).unwrap();
        let data = vec![7u8; 1 << 20];
        for name in ["a", "sub/b"] {
            let mut f = File::create(t.path().join(name)).unwrap();
            f.write_all(&data).unwrap();
        }
        std::fs::write(t.path().join("empty"), b"").unwrap();
        let mut back = Vec::new();
        File::open(t.path().join("a"))
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        let before = resident_bytes(t.path()).unwrap();
        let fs = filesystem(t.path());
        if before < 2 << 20 || fs == "tmpfs" {
            // Not a page-cached disk filesystem (ZFS keeps its own cache; tmpfs files are
            // memory): nothing here to test eviction against.
            eprintln!(
                "skipped: {} on {fs}, {before} bytes resident",
                t.path().display()
            );
            return;
        }
        let ev = evict(t.path());
        assert_eq!(ev.errors, Vec::<String>::new());
        assert_eq!(ev.files, 3);
        assert_eq!(ev.bytes, 2 << 20);
        assert!(ev.resident_before >= 2 << 20, "{ev:?}");
        assert!(
            ev.resident_after < 64 << 10,
            "after eviction {} bytes still resident",
            ev.resident_after
        );
        assert!(ev.is_cold());
        assert!(resident_bytes(t.path()).unwrap() < 64 << 10);
        let shown = ev.to_string();
        assert!(
            shown.contains("3 files, 2.0 MiB") && !shown.contains("WARNING"),
            "{shown}"
        );
    }

    /// Data that stays resident, or a file that failed, is called out.
    #[test]
    fn a_warm_result_is_flagged() {
        let warm = Eviction {
            files: 1,
            bytes: 1000,
            resident_before: 1000,
            resident_after: 1000,
            errors: Vec::new(),
        };
        assert!(!warm.is_cold());
        assert!(warm.to_string().contains("WARNING: not a cold restart"));
        let failed = Eviction {
            errors: vec!["fdatasync of /x: EIO".into()],
            ..Eviction::default()
        };
        assert!(!failed.is_cold());
        assert!(failed.to_string().contains("fdatasync of /x"));
    }

    #[test]
    fn a_missing_directory_is_named() {
        let ev = evict(Path::new("/nonexistent/raftbench-dir"));
        assert!(!ev.is_cold());
        assert!(
            ev.to_string().contains("/nonexistent/raftbench-dir"),
            "{ev}"
        );
    }
}
