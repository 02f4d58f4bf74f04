//! Crash safety: a child process (`raftbench storage stress`) writes a raft log with
//! `fsync = "always"`, reporting each durable index on stdout, and is killed with SIGKILL at
//! random moments. After every kill the directory must reopen with a log that is a prefix of
//! what was written, holding every reported index, and a KV state that matches the applied
//! index exactly.
#![allow(clippy::field_reassign_with_default)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use raftbench::storage::stress::{self, StressOptions};
use raftbench::storage::{BackendConfig, BackendKind, FsyncPolicy};
use rand::{Rng, SeedableRng};

use crate::common::command;

const KILLS: usize = 24;

fn opts() -> StressOptions {
    StressOptions {
        batch: 16,
        payload: 128,
        snapshot_every: 300,
        ..StressOptions::default()
    }
}

/// Start the stress writer, let it run for `run_for` (counted from its first durable
/// line), SIGKILL it, and return the highest index it reported durable.
fn run_and_kill(kind: BackendKind, dir: &Path, run_for: Duration) -> u64 {
    let o = opts();
    let mut child = command()
        .args([
            "storage",
            "stress",
            "--backend",
            kind.as_str(),
            "--fsync",
            "always",
        ])
        .arg("--dir")
        .arg(dir)
        .args(["--batch", &o.batch.to_string()])
        .args(["--payload", &o.payload.to_string()])
        .args(["--snapshot-every", &o.snapshot_every.to_string()])
        .args(["--segment-size", "65536"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn raftbench storage stress");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut max = 0u64;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(i) = line.strip_prefix("durable ") {
                max = max.max(i.parse().expect("durable index"));
                let _ = tx.send(());
            }
        }
        max
    });
    // Wait for the first durable write (the child has opened and recovered), then let it run.
    rx.recv_timeout(Duration::from_secs(60))
        .expect("stress child reported nothing within 60 s");
    std::thread::sleep(run_for);
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    reader.join().unwrap()
}

fn kill_test(kind: BackendKind) {
    let seed: u64 = std::env::var("RAFTBENCH_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("{kind} crash test seed {seed} (set RAFTBENCH_CRASH_SEED to replay)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("data");
    let cfg = BackendConfig::new(kind, &dir).with_fsync(FsyncPolicy::Always);
    let mut acknowledged = 0u64;
    let started = Instant::now();
    for kill in 0..KILLS {
        let run_for = Duration::from_millis(rng.random_range(0..250));
        let durable = run_and_kill(kind, &dir, run_for);
        acknowledged = acknowledged.max(durable);
        let report = stress::verify(&cfg, &opts(), acknowledged)
            .unwrap_or_else(|e| panic!("{kind}, kill {kill} (seed {seed}): {e}"));
        assert!(report.last_index >= acknowledged);
        eprintln!("{kind} kill {kill}: acknowledged {acknowledged}, reopened {report:?}");
    }
    assert!(acknowledged > 0, "the writer never made progress");
    eprintln!("{kind}: {KILLS} kills in {:?}", started.elapsed());
}

#[test]
fn memwal_survives_sigkill() {
    kill_test(BackendKind::Memwal);
}

#[test]
fn rocksdb_survives_sigkill() {
    kill_test(BackendKind::Rocksdb);
}
