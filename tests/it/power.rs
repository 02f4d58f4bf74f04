//! Power cuts and disk faults, end to end: `raftbench run` with `power-loss`, `torn-write`
//! and `disk-*` events puts each node's data on the fault file system (`raftbench faultfs`),
//! so a cut really drops what was not synced. Real node processes, real FUSE mounts in temp
//! directories; every mount is gone when the run ends.

use std::path::Path;

use crate::common::{command, csv_named_rows, read_json, run_workload as run};

/// No fault-file-system mount is left under `dir`.
fn assert_no_mounts_under(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let dir = dir.to_string_lossy();
    let left: Vec<&str> = mounts.lines().filter(|l| l.contains(&*dir)).collect();
    assert!(left.is_empty(), "mounts left behind: {left:?}");
}

/// `cycles` whole-cluster power cuts under write load, each followed by a restart.
/// `rocksdb` lines are added to its `[cluster.rocksdb]` table.
fn cuts_workload_with(backend: &str, cycles: u32, torn: bool, rocksdb: &str) -> String {
    let mut w = format!(
        r#"
name = "power-cuts"
seed = 3
[cluster]
nodes = 3
backend = "{backend}"
fsync = "always"
snapshot_interval = 500
compact_lag = 100
[cluster.rocksdb]
block_cache_size = "16 MiB"
write_buffer_size = "4 MiB"
{rocksdb}
[data]
keys = 2000
value_size = 200
[[phase]]
name = "load"
ops = 500
concurrency = 8
mix = {{ put = 1.0 }}
[[phase]]
name = "cuts"
duration = "{}s"
concurrency = 8
rate = 300
timeout = "2s"
mix = {{ put = 0.9, get = 0.1 }}
"#,
        cycles * 4 + 1,
    );
    for c in 0..cycles {
        let action = if torn && c % 2 == 1 {
            "torn-write"
        } else {
            "power-loss"
        };
        w.push_str(&format!(
            "  [[phase.event]]\n  at = \"{}s\"\n  action = \"{action}\"\n  target = \"all\"\n  [[phase.event]]\n  at = \"{}s\"\n  action = \"restart\"\n  target = \"killed\"\n",
            c * 4 + 1,
            c * 4 + 2
        ));
    }
    w.push_str("[[phase]]\nname = \"verify\"\nverify = true\n");
    w
}

fn cuts(backend: &str) {
    cuts_with(backend, "")
}

/// [`cuts`] with `rocksdb` lines added to `[cluster.rocksdb]`.
fn cuts_with(backend: &str, rocksdb: &str) {
    let t = tempfile::tempdir().unwrap();
    let wl = t.path().join("cuts.toml");
    std::fs::write(&wl, cuts_workload_with(backend, 3, true, rocksdb)).unwrap();

    // fsync = "always": nothing acknowledged may be lost, over every cut.
    let out = t.path().join("always");
    let o = run(&wl, &out, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let m = read_json(&out.join("run.json"));
    assert_eq!(m["disk"]["kind"], "raftbench-faultfs", "{}", m["disk"]);
    assert_eq!(m["disk"]["metadata"], "strict");
    let v = &m["verify"];
    assert_eq!(v["lost"], 0, "{v}");
    assert_eq!(v["stale"], 0, "{v}");
    assert_eq!(v["unreadable"], 0, "{v}");
    assert!(v["acknowledged"].as_u64().unwrap() > 1000, "{v}");
    let events = csv_named_rows(&out.join("events.csv"));
    let cut_rows: Vec<_> = events
        .iter()
        .filter(|e| e["action"] == "powerloss" || e["action"] == "tornwrite")
        .collect();
    assert_eq!(cut_rows.len(), 3, "{events:?}");
    for e in &cut_rows {
        assert_eq!(e["node"], "1 2 3", "{e:?}");
        assert!(e["detail"].contains("unsynced bytes"), "{e:?}");
    }
    let recovery = csv_named_rows(&out.join("recovery.csv"));
    let metric = |name: &str| recovery.iter().filter(|r| r["metric"] == name).count();
    assert_eq!(metric("unsynced_dropped_bytes"), 9, "{recovery:?}");
    // Every powered-off node came back, after an election it could take part in, and
    // caught up to what the new leader had committed by then.
    assert_eq!(metric("process_up_ms"), 9, "{recovery:?}");
    assert_eq!(metric("caught_up_ms"), 9, "{recovery:?}");
    assert!(metric("leader_elected_ms") >= 3, "{recovery:?}");
    let report = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        report.contains("raftbench-faultfs"),
        "the report says the run used the layer"
    );
    assert_no_mounts_under(t.path());

    // fsync = "never": whatever was lost is a measured figure, not a crash or a refusal to
    // start: every node comes back and every key reads.
    let out = t.path().join("never");
    let o = run(&wl, &out, &["--fsync", "never", "--expect-loss"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let m = read_json(&out.join("run.json"));
    let v = &m["verify"];
    assert_eq!(m["fsync"], "never");
    assert_eq!(v["loss_expected"], true, "{v}");
    assert_eq!(v["unreadable"], 0, "{v}");
    let recovery = csv_named_rows(&out.join("recovery.csv"));
    let up = recovery
        .iter()
        .filter(|r| r["metric"] == "caught_up_ms")
        .count();
    assert_eq!(up, 9, "every node came back after every cut: {recovery:?}");
    if v["lost"].as_u64().unwrap() + v["stale"].as_u64().unwrap() > 0 {
        assert!(v["newest_lost_age_ms"].is_u64(), "{v}");
    }
    assert_no_mounts_under(t.path());
}

#[test]
fn power_cuts_lose_nothing_acknowledged_under_always_memwal() {
    cuts("memwal");
}

#[test]
fn power_cuts_lose_nothing_acknowledged_under_always_rocksdb() {
    cuts("rocksdb");
}

/// TiKV's current layout.
#[test]
fn power_cuts_lose_nothing_acknowledged_under_always_raft_engine_rocksdb() {
    cuts("raft-engine+rocksdb");
}

/// The state machine without its WAL relies on the log alone: a cut loses its memtables,
/// never an acknowledged write.
#[test]
fn power_cuts_lose_nothing_acknowledged_with_the_state_wal_off() {
    cuts_with("rocksdb+rocksdb", "state_wal = false");
}

/// redb's non-durable commits, behind the WAL log.
#[test]
fn power_cuts_lose_nothing_acknowledged_under_always_wal_redb() {
    cuts("wal+redb");
}

/// The in-memory state machine, durable only through snapshot files.
#[test]
fn power_cuts_lose_nothing_acknowledged_under_always_wal_memory() {
    cuts("wal+memory");
}

#[test]
fn expect_loss_is_refused_where_nothing_cuts_the_power() {
    let t = tempfile::tempdir().unwrap();
    let plain = t.path().join("plain.toml");
    std::fs::write(
        &plain,
        "name = \"p\"\n[[phase]]\nname = \"w\"\nops = 10\nmix = { put = 1.0 }\n",
    )
    .unwrap();
    let o = run(&plain, &t.path().join("p"), &["--expect-loss"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(stderr.contains("expect_loss"), "{stderr}");
}

#[test]
fn a_slow_disk_shows_in_the_timeline_and_a_failing_one_stops_its_node_with_an_error() {
    let t = tempfile::tempdir().unwrap();
    let wl = t.path().join("disk.toml");
    std::fs::write(
        &wl,
        r#"
name = "disk"
seed = 9
[cluster]
nodes = 3
[data]
keys = 1000
[[phase]]
name = "run"
duration = "10s"
concurrency = 4
rate = 200
timeout = "5s"
mix = { put = 1.0 }
  [[phase.event]]
  at = "2s"
  action = "disk-slow"
  target = "leader"
  latency = "400ms"
  duration = "3s"
  [[phase.event]]
  at = "7s"
  action = "disk-fail"
  target = "node:3"
  error = "eio"
  count = 1000
"#,
    )
    .unwrap();
    let out = t.path().join("r");
    let o = run(&wl, &out, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    // Writes go through the leader's fsync: seconds 2..5 hold a p99 of at least 400 ms.
    let timeline = csv_named_rows(&out.join("timeline.csv"));
    let worst = timeline
        .iter()
        .filter(|r| r["op"] == "put")
        .map(|r| r["p99_us"].parse::<u64>().unwrap())
        .max()
        .unwrap();
    assert!(
        worst >= 400_000,
        "no second shows the 400 ms fsyncs: {timeline:?}"
    );
    let events = csv_named_rows(&out.join("events.csv"));
    assert!(
        events
            .iter()
            .any(|e| e["action"] == "diskslow" && e["detail"].contains("disk slow")),
        "{events:?}"
    );
    // Node 3's failed fsync is an error it stops on, naming the file, not a silent success.
    let log = std::fs::read_to_string(out.join("cluster/logs/node-3.log")).unwrap();
    assert!(
        log.contains("fatal storage error") && log.contains("fsync"),
        "node 3 did not report its failed fsync: {}",
        &log[log.len().saturating_sub(3000)..]
    );
    assert_no_mounts_under(t.path());
}

#[test]
fn disk_events_are_refused_against_a_live_cluster_with_their_line() {
    let t = tempfile::tempdir().unwrap();
    let wl = t.path().join("live.toml");
    std::fs::write(
        &wl,
        "name = \"l\"\n[[phase]]\nname = \"w\"\nduration = \"5s\"\nmix = { put = 1.0 }\n  [[phase.event]]\n  at = \"1s\"\n  action = \"disk-slow\"\n  latency = \"5ms\"\n",
    )
    .unwrap();
    let cluster = t.path().join("cluster.toml");
    std::fs::write(
        &cluster,
        "[backend]\nkind = \"memwal\"\ndir = \"\"\n[[node]]\nid = 1\npeer_addr = \"127.0.0.1:1\"\nclient_addr = \"127.0.0.1:2\"\n",
    )
    .unwrap();
    let o = command()
        .args(["validate"])
        .arg(&wl)
        .arg("--cluster")
        .arg(&cluster)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.contains("live.toml:6:3") && stderr.contains("fault file system"),
        "{stderr}"
    );
}

/// A run killed with SIGKILL cannot unmount anything itself: its fault disks notice that
/// the run is gone and unmount, so no mount outlives it.
#[test]
fn the_fault_disks_of_a_killed_run_go_away_with_it() {
    let t = tempfile::tempdir().unwrap();
    let wl = t.path().join("slow.toml");
    std::fs::write(
        &wl,
        "name = \"k\"\n[cluster]\nnodes = 1\n[[phase]]\nname = \"w\"\nduration = \"60s\"\nrate = 50\nmix = { put = 1.0 }\n  [[phase.event]]\n  at = \"50s\"\n  action = \"disk-heal\"\n",
    )
    .unwrap();
    let out = t.path().join("r");
    let mut child = command()
        .arg("run")
        .arg(&wl)
        .arg("--out")
        .arg(&out)
        .arg("--quiet")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mounted = || {
        std::fs::read_to_string("/proc/self/mounts")
            .unwrap()
            .lines()
            .any(|l| l.contains(&*t.path().to_string_lossy()))
    };
    // Killed once the node runs on its disk (its pid file is written after it starts).
    let pid_file = out.join("cluster/node-1.pid");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !(mounted() && pid_file.exists()) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(mounted(), "the run never mounted its fault disk");
    std::thread::sleep(std::time::Duration::from_millis(500));
    child.kill().unwrap();
    child.wait().unwrap();
    // The node, orphaned, is ended by hand (its pid file is in the cluster directory).
    let node_pid = std::fs::read_to_string(&pid_file).unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-9", node_pid.trim()])
        .status();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while mounted() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_no_mounts_under(t.path());
}
