//! What the harness reads about local processes and this machine: `/proc` (RSS, I/O, CPU
//! time), directory sizes, and the machine facts recorded in every result.
//!
//! Harness-side only: a node reports its own figures through `/status`, so a cluster on
//! other hosts is sampled the same way without these. Every reader returns zero / `None`
//! where `/proc` is missing or the process is gone, since a sample that races a kill is
//! normal, not an error.

use std::path::Path;

/// Resident set size of process `pid` from `/proc/<pid>/status` (0 if unavailable).
pub fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// Bytes process `pid` has read from and written to storage (`/proc/<pid>/io`
/// `read_bytes`, `write_bytes`); zeros if unavailable.
pub fn io_bytes(pid: u32) -> (u64, u64) {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/io")) else {
        return (0, 0);
    };
    let (mut read, mut write) = (0, 0);
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v: u64 = v.trim().parse().unwrap_or(0);
        match k {
            "read_bytes" => read = v,
            "write_bytes" => write = v,
            _ => {}
        }
    }
    (read, write)
}

/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`, 100 on Linux).
pub const CLOCK_TICKS_PER_SEC: f64 = 100.0;

/// CPU time (user + system) process `pid` has used, in clock ticks
/// ([`CLOCK_TICKS_PER_SEC`]), from `/proc/<pid>/stat`.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// Total size in bytes of the regular files under `dir` (recursively). Files that vanish
/// while we walk (an engine compacting concurrently) are skipped.
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Total memory of this machine (`MemTotal`), 0 if unavailable.
pub fn memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let l = m.lines().find(|l| l.starts_with("MemTotal:"))?;
            Some(l.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
        })
        .unwrap_or(0)
}

/// The running kernel's release, empty if unavailable.
pub fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Raise this process's open-file limit to its hard maximum (a load generator with
/// thousands of open-loop workers holds a timer and a connection for each).
pub fn raise_nofile() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(rss_bytes(me) > 0);
        assert!(cpu_ticks(me).is_some());
        assert!(memory_bytes() > 0);
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("sub")).unwrap();
        std::fs::write(t.path().join("sub/f"), [0u8; 1000]).unwrap();
        std::fs::write(t.path().join("g"), [0u8; 24]).unwrap();
        assert_eq!(dir_size(t.path()), 1024);
        assert_eq!(rss_bytes(u32::MAX), 0);
    }
}
