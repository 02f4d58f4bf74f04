//! `raftbench run`, end to end: real clusters, real results directories.

use crate::common::{csv_rows, manifest, run_workload as run};

fn smoke(backend: &str) {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("results");
    let wl = manifest("workloads/smoke.toml");
    let o = run(&wl, &out, &["--backend", backend]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    for f in [
        "run.json",
        "summary.csv",
        "timeline.csv",
        "events.csv",
        "recovery.csv",
        "resources.csv",
        "verify.csv",
        "latency.hlog",
        "timeline.hlog",
        "report.html",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let summary = csv_rows(&out.join("summary.csv"));
    let put = summary
        .iter()
        .find(|r| &r[0] == "load" && &r[1] == "put" && &r[2] == "ok" && &r[12] == "corrected")
        .expect("load put row");
    assert_eq!(&put[3], "400", "every load op acknowledged");
    let p50: u64 = put[6].parse().unwrap();
    let p99: u64 = put[8].parse().unwrap();
    assert!(p50 > 0 && p50 <= p99, "sane percentiles {p50} {p99}");
    let mixed: u64 = summary
        .iter()
        .filter(|r| &r[0] == "mixed" && &r[2] == "ok" && &r[12] == "corrected")
        .map(|r| r[3].parse::<u64>().unwrap())
        .sum();
    // 300 ops/s for 3 s measured (+1 s warm-up reported apart).
    assert!(
        (800..=950).contains(&mixed),
        "open-loop phase ran {mixed} ops"
    );
    let verify = csv_rows(&out.join("verify.csv"));
    assert_eq!(&verify[0][3], "0", "lost writes");
    assert_eq!(&verify[0][4], "0", "stale writes");
    assert_eq!(&verify[0][0], "200", "every key verified");
    let run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["backend"]["kind"], backend);
    assert_eq!(run["seed"], 1);
    assert!(run["machine"]["cores"].as_u64().unwrap() >= 1);
    assert!(!csv_rows(&out.join("timeline.csv")).is_empty());
    assert!(!csv_rows(&out.join("resources.csv")).is_empty());
    // The harness's own cost, per phase: the raft loops' time per Ready and longest stall
    // (from the nodes' /status), beside the generator's CPU per operation.
    for phase in run["phases"].as_array().unwrap() {
        let raft = &phase["raft_loop"];
        if phase["elapsed_s"].as_f64().unwrap() >= 2.0 {
            assert!(raft["us_per_ready"].as_f64().unwrap() > 0.0, "{phase}");
        }
        let stall = raft["longest_stall_us"].as_u64().unwrap();
        assert!(stall > 0, "{phase}");
        assert!(
            phase["generator_cpu_us_per_op"].as_f64().unwrap() > 0.0,
            "{phase}"
        );
    }
    let header = std::fs::read_to_string(out.join("resources.csv")).unwrap();
    assert!(
        header
            .lines()
            .next()
            .unwrap()
            .ends_with("raft_readies,raft_busy_us,raft_stall_us"),
        "{header}"
    );
    assert!(
        stderr.contains("raft loop") && stderr.contains("longest stall"),
        "{stderr}"
    );
    let hlog = std::fs::read_to_string(out.join("latency.hlog")).unwrap();
    assert!(hlog.contains("Tag=mixed.get,"), "{hlog}");
}

#[test]
fn smoke_memwal() {
    smoke("memwal");
}

#[test]
fn smoke_rocksdb() {
    smoke("rocksdb");
}

#[test]
fn failover_measures_election_and_loses_nothing() {
    let t = tempfile::tempdir().unwrap();
    let wl = t.path().join("failover.toml");
    std::fs::write(
        &wl,
        r#"
name = "failover-test"
seed = 3
[data]
keys = 300
[[phase]]
name = "load"
ops = 300
concurrency = 8
mix = { put = 1.0 }
key_distribution = { dist = "sequential" }
[[phase]]
name = "run"
duration = "8s"
concurrency = 16
rate = 400
timeout = "3s"
mix = { put = 0.7, get = 0.3 }
  [[phase.event]]
  at = "2s"
  action = "kill"
  target = "leader"
  [[phase.event]]
  at = "5s"
  action = "restart"
  target = "killed"
  cache = "cold"
[[phase]]
name = "verify"
verify = true
"#,
    )
    .unwrap();
    let out = t.path().join("results");
    let o = run(&wl, &out, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rec = csv_rows(&out.join("recovery.csv"));
    let metric = |m: &str| -> f64 {
        rec.iter()
            .find(|r| &r[3] == m)
            .unwrap_or_else(|| panic!("no {m} in recovery.csv: {rec:?}"))[4]
            .parse()
            .unwrap()
    };
    assert!(metric("leader_elected_ms") > 0.0);
    assert!(metric("writes_resumed_ms") > 0.0);
    assert!(metric("process_up_ms") > 0.0);
    assert!(metric("caught_up_ms") >= metric("process_up_ms"));
    let events = csv_rows(&out.join("events.csv"));
    assert_eq!(events.len(), 2);
    assert_eq!(&events[0][2], "kill");
    // The cold restart evicted the killed node's files, which were in the cache just before.
    assert_eq!(&events[1][2], "restart");
    let detail = &events[1][4];
    assert!(
        detail.contains("cold cache: ") && detail.contains(" after eviction"),
        "{detail}"
    );
    assert!(!detail.contains("resident 0 B before"), "{detail}");
    // The machines this runs on keep temp dirs on a page-cached disk filesystem.
    assert!(!detail.contains("WARNING"), "{detail}");
    let resident = metric("cache_resident_bytes");
    assert!(resident < 1e6, "{resident} bytes stayed in the page cache");
    let verify = csv_rows(&out.join("verify.csv"));
    assert_eq!(
        (&verify[0][3], &verify[0][4]),
        ("0", "0"),
        "lost/stale writes"
    );
}

/// Coordinated omission: the leader stalls (SIGSTOP) under an open-loop load with few
/// workers. Only the handful of requests in flight see the stall as service time, but
/// every operation scheduled during it is late: the corrected p99.9 must show the stall and
/// the service-time p99.9 must not.
#[test]
fn a_stalled_target_shows_in_corrected_latency_only() {
    let t = tempfile::tempdir().unwrap();
    let wl = t.path().join("stall.toml");
    std::fs::write(
        &wl,
        r#"
name = "stall"
seed = 5
[cluster]
nodes = 3
[data]
keys = 1000
[[phase]]
name = "run"
duration = "9s"
concurrency = 4
rate = 1000
timeout = "10s"
mix = { get = 1.0 }
read_consistency = "local"
  [[phase.event]]
  at = "3s"
  action = "pause"
  target = "node:1"
  [[phase.event]]
  at = "4500ms"
  action = "resume"
  target = "node:1"
"#,
    )
    .unwrap();
    let out = t.path().join("results");
    // Local reads go to the client's first endpoint, node 1: every worker waits on it.
    let o = run(&wl, &out, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary = csv_rows(&out.join("summary.csv"));
    let p999 = |kind: &str| -> u64 {
        summary
            .iter()
            .find(|r| &r[0] == "run" && &r[1] == "get" && &r[2] == "ok" && &r[12] == kind)
            .unwrap_or_else(|| panic!("no {kind} row: {summary:?}"))[9]
            .parse()
            .unwrap()
    };
    let (corrected, service) = (p999("corrected"), p999("service"));
    assert!(
        corrected >= 1_000_000,
        "corrected p99.9 {corrected} us does not show the 1.5 s stall"
    );
    // Half the stall: only the 4 requests in flight saw it as service time, which is fewer
    // than the 9 slowest ops p99.9 looks past; the bound leaves room for a loaded machine.
    assert!(
        service < 750_000,
        "service-time p99.9 {service} us should not show the stall (only 4 requests were in flight)"
    );
}
