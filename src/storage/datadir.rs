//! Data-directory identity and small filesystem helpers shared by the backends.
//!
//! Every data directory carries a `RAFTBENCH` marker (JSON) naming the backend and the
//! on-disk format version. Opening checks it *before* touching anything, so pointing a node
//! at another backend's directory, at a directory written by a newer raftbench, or at some
//! unrelated non-empty directory is refused instead of overwritten.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{Result, StorageError};
use crate::wire::BackendKind;

/// Name of the marker file.
pub const MARKER: &str = "RAFTBENCH";

#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    format: String,
    backend: String,
    version: u32,
}

/// Make sure `dir` is a data directory of `kind` at a supported `version`, creating the
/// directory and its marker when it does not exist or is empty.
///
/// Returns `true` when the directory was freshly initialised.
pub fn claim(dir: &Path, kind: BackendKind, version: u32) -> Result<bool> {
    if dir.as_os_str().is_empty() {
        return Err(StorageError::Config(
            "backend config has no data directory".into(),
        ));
    }
    let marker_path = dir.join(MARKER);
    match fs::read(&marker_path) {
        Ok(bytes) => {
            let m: Marker = serde_json::from_slice(&bytes).map_err(|e| {
                StorageError::corrupt(&marker_path, 0, format!("unreadable marker: {e}"))
            })?;
            if m.format != "raftbench" {
                return Err(StorageError::corrupt(
                    &marker_path,
                    0,
                    format!("marker names format {:?}", m.format),
                ));
            }
            if m.backend != kind.as_str() {
                return Err(StorageError::WrongBackend {
                    dir: dir.to_path_buf(),
                    found: m.backend,
                    expected: kind.to_string(),
                });
            }
            if m.version > version || m.version == 0 {
                return Err(StorageError::UnsupportedVersion {
                    dir: dir.to_path_buf(),
                    found: m.version,
                    supported: version,
                });
            }
            Ok(false)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            create_dir_durable(dir)?;
            // A leftover temporary marker is from a claim that crashed before its rename.
            let tmp_marker = tmp_path(&marker_path);
            let _ = fs::remove_file(&tmp_marker);
            let non_empty = fs::read_dir(dir)
                .map_err(StorageError::io("list directory", dir))?
                .next()
                .is_some();
            if non_empty {
                return Err(StorageError::NotADataDir {
                    dir: dir.to_path_buf(),
                });
            }
            let m = Marker {
                format: "raftbench".into(),
                backend: kind.to_string(),
                version,
            };
            let body = serde_json::to_vec_pretty(&m).expect("marker serialises");
            write_file_atomic(&marker_path, &body, true)?;
            Ok(true)
        }
        Err(e) => Err(StorageError::io("read", &marker_path)(e)),
    }
}

/// Write `bytes` to `path` through a temporary file and a rename, so readers see either the
/// old content or the new, never a mix. With `sync`, the file and its directory are synced
/// before returning, making the new content durable.
pub fn write_file_atomic(path: &Path, bytes: &[u8], sync: bool) -> Result<()> {
    let tmp = tmp_path(path);
    let mut f = fs::File::create(&tmp).map_err(StorageError::io("create", &tmp))?;
    f.write_all(bytes)
        .map_err(StorageError::io("write", &tmp))?;
    if sync {
        f.sync_all().map_err(StorageError::io("fsync", &tmp))?;
    }
    drop(f);
    fs::rename(&tmp, path).map_err(StorageError::io("rename", &tmp))?;
    if sync {
        sync_dir(path.parent().unwrap_or(Path::new(".")))?;
    }
    Ok(())
}

/// `path` with a `.tmp` suffix appended.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

/// fsync a directory so that file creations, renames and deletions in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let d = fs::File::open(dir).map_err(StorageError::io("open directory", dir))?;
    d.sync_all()
        .map_err(StorageError::io("fsync directory", dir))
}

/// Create `dir` and its missing parents, and make their entries durable by fsyncing each
/// one's parent (durability-findings F5): a power loss must not keep a marker or segment
/// inside a directory whose own entry was lost. `dir`'s parent is synced even when `dir`
/// already exists: an earlier run may have died between its `mkdir` and that sync. Done
/// whatever the fsync policy: it happens once per open.
pub fn create_dir_durable(dir: &Path) -> Result<()> {
    let mut levels = vec![dir.to_path_buf()];
    let mut d = dir;
    while let Some(p) = d
        .parent()
        .filter(|p| !p.as_os_str().is_empty() && !p.exists())
    {
        levels.push(p.to_path_buf());
        d = p;
    }
    fs::create_dir_all(dir).map_err(StorageError::io("create directory", dir))?;
    for level in levels.iter().rev() {
        let parent = level.parent().filter(|p| !p.as_os_str().is_empty());
        sync_dir(parent.unwrap_or(Path::new(".")))?;
    }
    Ok(())
}

/// Total size in bytes of the regular files under `dir` (recursively). Files that vanish
/// while we walk (compaction runs concurrently in RocksDB) are skipped.
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(rd) = fs::read_dir(dir) else { return 0 };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Where a data directory's files that are no longer needed wait to be deleted.
pub fn trash_dir(dir: &Path) -> PathBuf {
    dir.join("trash")
}

/// Create `trash` if needed and delete what it holds (at open: files discarded before a
/// crash or stop). Synchronous: opening is not on the write path.
pub fn empty_trash(trash: &Path) -> Result<()> {
    create_dir_durable(trash)?;
    for ent in fs::read_dir(trash).map_err(StorageError::io("list", trash))? {
        let p = ent.map_err(StorageError::io("list", trash))?.path();
        // The background deleter may have got there first (a reopen in one process).
        match fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(StorageError::io("delete", &p)(e));
            }
            _ => {}
        }
    }
    sync_dir(trash)
}

/// Truncate a discarded file a few MiB at a time, pausing in between, before it is
/// unlinked: freeing a large file's blocks at once is one big journal transaction that
/// the nodes' fsyncs queue behind (seen as a 100+ ms persist on every node at once, the
/// moment WAL segments of the same size were deleted). RocksDB's delete scheduler does the
/// same (`bytes_max_delete_chunk`). Best effort: the unlink follows whatever happens.
fn shrink_gradually(path: &Path) {
    const CHUNK: u64 = 4 << 20;
    let Ok(f) = fs::OpenOptions::new().write(true).open(path) else {
        return;
    };
    let Ok(mut len) = f.metadata().map(|m| m.len()) else {
        return;
    };
    while len > CHUNK {
        len -= CHUNK;
        if f.set_len(len).is_err() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Remove `path` by moving it into `trash` (a rename: metadata only) and have a
/// background thread, at the lowest CPU priority, delete it. Why: unlinking a large file
/// frees its page cache synchronously — tens of milliseconds for a 64 MiB WAL segment —
/// and on the raft thread that is a stall no write is acknowledged through.
///
/// Durability: as an unlink; a caller that needs the removal durable syncs `path`'s
/// directory afterwards. After a crash the file is either still where it was (as if not
/// yet removed) or in the trash, which the next open empties.
pub fn discard(path: &Path, trash: &Path) -> Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::mpsc::{Sender, channel};
    use std::sync::{Mutex, OnceLock};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    static JANITOR: OnceLock<Mutex<Sender<PathBuf>>> = OnceLock::new();
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let to = trash.join(format!("{}-{name}", SEQ.fetch_add(1, Ordering::Relaxed)));
    match fs::rename(path, &to) {
        Ok(()) => {}
        // The file's directory is on another file system than the trash: delete it here.
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            return fs::remove_file(path).map_err(StorageError::io("delete", path));
        }
        Err(e) => return Err(StorageError::io("discard", path)(e)),
    }
    // The rename leaves `path`'s directory (the caller syncs it) and enters the trash: sync
    // the trash too, so that file systems that order directory changes strictly (faultfs's
    // default) do not bring the file back after a power cut.
    sync_dir(trash)?;
    let janitor = JANITOR.get_or_init(|| {
        let (tx, rx) = channel::<PathBuf>();
        let _ = std::thread::Builder::new()
            .name("trash".into())
            .spawn(move || {
                super::snapshots::background_priority();
                for p in rx {
                    shrink_gradually(&p);
                    if let Err(e) = fs::remove_file(&p)
                        && e.kind() != std::io::ErrorKind::NotFound
                    {
                        tracing::warn!("deleting {}: {e}", p.display());
                    }
                    if let Some(dir) = p.parent() {
                        let _ = sync_dir(dir);
                    }
                }
            });
        Mutex::new(tx)
    });
    let sent = janitor.lock().is_ok_and(|tx| tx.send(to.clone()).is_ok());
    if !sent {
        // No janitor thread: delete here.
        fs::remove_file(&to).map_err(StorageError::io("delete", &to))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_creates_then_checks() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("d");
        assert!(claim(&dir, BackendKind::Memwal, 1).unwrap());
        assert!(!claim(&dir, BackendKind::Memwal, 1).unwrap());
        let err = claim(&dir, BackendKind::Rocksdb, 1).unwrap_err();
        assert!(matches!(err, StorageError::WrongBackend { .. }), "{err}");
        // An older build (supports only version 0..) refuses a newer directory.
        let dir2 = t.path().join("d2");
        claim(&dir2, BackendKind::Memwal, 7).unwrap();
        let err = claim(&dir2, BackendKind::Memwal, 1).unwrap_err();
        assert!(err.to_string().contains("format version 7"), "{err}");
    }

    #[test]
    fn durable_creation_makes_every_missing_level() {
        let t = tempfile::tempdir().unwrap();
        let deep = t.path().join("a/b/c");
        create_dir_durable(&deep).unwrap();
        assert!(deep.is_dir());
        // Existing: nothing to do, no error.
        create_dir_durable(&deep).unwrap();
        fs::write(t.path().join("file"), b"x").unwrap();
        let e = create_dir_durable(&t.path().join("file/sub")).unwrap_err();
        assert!(e.to_string().contains("file/sub"), "{e}");
    }

    #[test]
    fn claim_refuses_foreign_non_empty_dir() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("precious.txt"), b"do not overwrite").unwrap();
        let err = claim(t.path(), BackendKind::Memwal, 1).unwrap_err();
        assert!(matches!(err, StorageError::NotADataDir { .. }), "{err}");
        assert_eq!(
            fs::read(t.path().join("precious.txt")).unwrap(),
            b"do not overwrite"
        );
    }
}
