//! Injected faults other than power loss: slow fsyncs (and writes), failing fsyncs, a full
//! disk — and the counters a run records.
//!
//! The state here is plain data behind the file system's lock; the FUSE glue asks it, per
//! operation, whether to delay or fail, and counts what it did.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Which files a `slow` fault applies to: a path prefix (`wal/`) or, when it holds `*` or
/// `?`, a glob (`*` does not cross `/`, `**` does), both relative to the mount's root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileMatch {
    /// Paths that start with this string.
    Prefix(String),
    /// Paths that match this glob.
    Glob(String),
}

impl FileMatch {
    /// Parses a `files` argument; a leading `/` (the mount's root) is ignored.
    pub fn parse(s: &str) -> FileMatch {
        let s = s.trim_start_matches('/').to_string();
        if s.contains(['*', '?']) {
            FileMatch::Glob(s)
        } else {
            FileMatch::Prefix(s)
        }
    }

    /// Whether `rel` (a path relative to the mount's root) matches.
    pub fn matches(&self, rel: &Path) -> bool {
        let path = rel.to_string_lossy();
        match self {
            FileMatch::Prefix(p) => path.starts_with(p.as_str()),
            FileMatch::Glob(g) => glob(g.as_bytes(), path.as_bytes()),
        }
    }
}

/// Glob matching without backtracking blow-up worth worrying about at these sizes.
fn glob(pat: &[u8], s: &[u8]) -> bool {
    match pat {
        [] => s.is_empty(),
        [b'*', b'*', rest @ ..] => (0..=s.len()).any(|i| glob(rest, &s[i..])),
        [b'*', rest @ ..] => {
            let stop = s.iter().position(|c| *c == b'/').unwrap_or(s.len());
            (0..=stop).any(|i| glob(rest, &s[i..]))
        }
        [b'?', rest @ ..] => matches!(s, [c, tail @ ..] if *c != b'/' && glob(rest, tail)),
        [c, rest @ ..] => matches!(s, [d, tail @ ..] if c == d && glob(rest, tail)),
    }
}

/// A `slow` fault in force.
#[derive(Clone, Debug)]
pub struct Slow {
    /// Added to each matching operation.
    pub latency: Duration,
    /// When the fault ends by itself (`None`: at `heal`).
    pub until: Option<Instant>,
    /// The files it applies to (`None`: all).
    pub files: Option<FileMatch>,
    /// Whether writes are slowed too, not only fsyncs.
    pub writes: bool,
}

/// What `status` shows of a `slow` fault.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlowStatus {
    pub latency_ms: u64,
    /// Milliseconds left, if it ends by itself.
    pub remaining_ms: Option<u64>,
    pub files: Option<String>,
    pub writes: bool,
}

/// The faults in force.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    pub slow: Option<Slow>,
    /// The next this many fsyncs (file or directory) fail with EIO.
    pub eio_remaining: u64,
    /// Writes, extending truncates and allocations fail with ENOSPC.
    pub enospc: bool,
}

impl Faults {
    fn slow_for(&mut self, rel: Option<&Path>, write: bool) -> Option<Duration> {
        let slow = self.slow.as_ref()?;
        if slow.until.is_some_and(|u| Instant::now() >= u) {
            self.slow = None;
            return None;
        }
        if write && !slow.writes {
            return None;
        }
        match (&slow.files, rel) {
            (None, _) => Some(slow.latency),
            (Some(m), Some(rel)) if m.matches(rel) => Some(slow.latency),
            _ => None,
        }
    }

    /// The delay to add to an fsync of `rel` (`None` when the path is unknown).
    pub fn fsync_delay(&mut self, rel: Option<&Path>) -> Option<Duration> {
        self.slow_for(rel, false)
    }

    /// The delay to add to a write to `rel`.
    pub fn write_delay(&mut self, rel: Option<&Path>) -> Option<Duration> {
        self.slow_for(rel, true)
    }

    /// Whether this fsync must fail with EIO (using up one of the count).
    pub fn take_eio(&mut self) -> bool {
        if self.eio_remaining > 0 {
            self.eio_remaining -= 1;
            true
        } else {
            false
        }
    }

    /// What `status` shows of the slow fault.
    pub fn slow_status(&self) -> Option<SlowStatus> {
        let s = self.slow.as_ref()?;
        let now = Instant::now();
        if s.until.is_some_and(|u| now >= u) {
            return None;
        }
        Some(SlowStatus {
            latency_ms: s.latency.as_millis() as u64,
            remaining_ms: s.until.map(|u| (u - now).as_millis() as u64),
            files: s.files.as_ref().map(|m| match m {
                FileMatch::Prefix(p) | FileMatch::Glob(p) => p.clone(),
            }),
            writes: s.writes,
        })
    }
}

/// Counters of what the file system saw and did, since it was mounted.
#[derive(Debug, Default)]
pub struct Counters {
    pub fsyncs: AtomicU64,
    pub dir_fsyncs: AtomicU64,
    pub writes: AtomicU64,
    pub bytes_written: AtomicU64,
    pub eio_injected: AtomicU64,
    pub enospc_injected: AtomicU64,
    pub delays_injected: AtomicU64,
    pub power_losses: AtomicU64,
}

/// A snapshot of [`Counters`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterSnapshot {
    /// File fsyncs and fdatasyncs seen (failed ones included).
    pub fsyncs: u64,
    /// Directory fsyncs seen.
    pub dir_fsyncs: u64,
    pub writes: u64,
    pub bytes_written: u64,
    /// Faults injected, by kind.
    pub eio_injected: u64,
    pub enospc_injected: u64,
    pub delays_injected: u64,
    pub power_losses: u64,
}

impl Counters {
    /// Adds one to a counter.
    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// The current values.
    pub fn snapshot(&self) -> CounterSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CounterSnapshot {
            fsyncs: g(&self.fsyncs),
            dir_fsyncs: g(&self.dir_fsyncs),
            writes: g(&self.writes),
            bytes_written: g(&self.bytes_written),
            eio_injected: g(&self.eio_injected),
            enospc_injected: g(&self.enospc_injected),
            delays_injected: g(&self.delays_injected),
            power_losses: g(&self.power_losses),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_globs() {
        let m = FileMatch::parse("wal/");
        assert!(m.matches(Path::new("wal/0001.log")));
        assert!(!m.matches(Path::new("db/wal/0001.log")));
        let g = FileMatch::parse("/*.log");
        assert_eq!(g, FileMatch::Glob("*.log".into()));
        assert!(g.matches(Path::new("000123.log")));
        assert!(!g.matches(Path::new("db/000123.log")));
        let g = FileMatch::parse("**/*.log");
        assert!(g.matches(Path::new("a/b/000123.log")));
        assert!(FileMatch::parse("db/?.sst").matches(Path::new("db/1.sst")));
        assert!(!FileMatch::parse("db/?.sst").matches(Path::new("db/12.sst")));
    }

    #[test]
    fn slow_applies_to_matching_files_and_ends() {
        let mut f = Faults {
            slow: Some(Slow {
                latency: Duration::from_millis(5),
                until: None,
                files: Some(FileMatch::parse("wal/")),
                writes: false,
            }),
            ..Faults::default()
        };
        assert_eq!(
            f.fsync_delay(Some(Path::new("wal/1"))),
            Some(Duration::from_millis(5))
        );
        assert_eq!(f.fsync_delay(Some(Path::new("db/1"))), None);
        assert_eq!(f.fsync_delay(None), None);
        assert_eq!(f.write_delay(Some(Path::new("wal/1"))), None);
        f.slow.as_mut().unwrap().until = Some(Instant::now());
        assert_eq!(f.fsync_delay(Some(Path::new("wal/1"))), None);
        assert!(f.slow.is_none() && f.slow_status().is_none());
    }

    #[test]
    fn eio_counts_down() {
        let mut f = Faults {
            eio_remaining: 2,
            ..Faults::default()
        };
        assert!(f.take_eio() && f.take_eio() && !f.take_eio());
    }
}
