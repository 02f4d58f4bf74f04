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
    // Every engine's options are recorded, whichever the mode uses.
    for table in ["memwal", "rocksdb", "raft_engine", "redb"] {
        assert!(run["backend"][table].is_object(), "{}", run["backend"]);
    }
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
        // The members' own persist (fsync) figures, from their /metrics histograms.
        let server = &phase["server"];
        assert_eq!(server["source"], "raftbench /metrics", "{phase}");
        assert!(server["wal_fsyncs"].as_u64().unwrap() > 0, "{phase}");
        let (mean, p99) = (
            server["wal_fsync_mean_us"].as_f64().unwrap(),
            server["wal_fsync_p99_us"].as_f64().unwrap(),
        );
        assert!(mean > 0.0 && p99 > 0.0, "{phase}");
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
            .ends_with("raft_stall_us,engine_flush_bytes,engine_compaction_bytes"),
        "{header}"
    );
    assert!(
        stderr.contains("raft loop") && stderr.contains("longest stall"),
        "{stderr}"
    );
    let hlog = std::fs::read_to_string(out.join("latency.hlog")).unwrap();
    assert!(hlog.contains("Tag=mixed.get,"), "{hlog}");
    server_metrics_cover_every_node_and_second(&out, 3);
}

/// `server-metrics.csv`: a row for every node in every second of the run (each node
/// answered its scrape: none was down), with its own fsyncs and peer traffic moving.
fn server_metrics_cover_every_node_and_second(out: &std::path::Path, nodes: u64) {
    let rows = crate::common::csv_named_rows(&out.join("server-metrics.csv"));
    assert!(!rows.is_empty());
    let num = |r: &std::collections::HashMap<String, String>, k: &str| -> f64 {
        r[k].parse().unwrap_or(0.0)
    };
    let secs: Vec<u64> = rows.iter().map(|r| num(r, "t_s") as u64).collect();
    let (first, last) = (*secs.iter().min().unwrap(), *secs.iter().max().unwrap());
    assert!(last >= first + 3, "a run of 4 s or more: {first}..{last}");
    for s in first..=last {
        for n in 1..=nodes {
            assert!(
                rows.iter().any(|r| num(r, "t_s") as u64 == s
                    && num(r, "node") as u64 == n
                    && r["up"] == "1"),
                "no row for node {n} in second {s}"
            );
        }
    }
    let total = |k: &str| rows.iter().map(|r| num(r, k)).sum::<f64>();
    assert!(total("fsyncs") >= 400.0, "every node persisted the writes");
    assert!(total("peer_sent_bytes") > 0.0 && total("peer_received_bytes") > 0.0);
    assert!(rows.iter().any(|r| num(r, "fsync_p99_us") > 0.0));
    assert!(rows.iter().any(|r| r["is_leader"] == "1"));
    // The report's timeline shows them beside the client's latency.
    let svg = std::fs::read_to_string(out.join("charts/timeline.svg")).unwrap();
    assert!(
        svg.contains("server fsync p99"),
        "timeline without the server's fsync p99"
    );
    assert!(svg.contains("apply lag"), "timeline without apply lag");
}

#[test]
fn smoke_memwal() {
    smoke("memwal");
}

#[test]
fn smoke_rocksdb() {
    smoke("rocksdb");
}

/// Every composed mode runs a workload end to end, through the CLI's mode names.
macro_rules! smoke_modes {
    ($($(#[$m:meta])* $name:ident => $mode:literal;)*) => {$(
        $(#[$m])*
        #[test]
        fn $name() {
            smoke($mode);
        }
    )*};
}

smoke_modes! {
    smoke_wal_memory => "wal+memory";
    smoke_wal_redb => "wal+redb";
    smoke_raft_engine_memory => "raft-engine+memory";
    smoke_raft_engine_redb => "raft-engine+redb";
    #[cfg(feature = "rocksdb")]
    smoke_wal_rocksdb => "wal+rocksdb";
    #[cfg(feature = "rocksdb")]
    smoke_rocksdb_rocksdb => "rocksdb+rocksdb";
    #[cfg(feature = "rocksdb")]
    smoke_raft_engine_rocksdb => "raft-engine+rocksdb";
    #[cfg(feature = "rocksdb")]
    smoke_rocksdb_memory => "rocksdb+memory";
    #[cfg(feature = "rocksdb")]
    smoke_rocksdb_redb => "rocksdb+redb";
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
    // The nodes' own metrics saw it: the killed node is down (`up` 0) until its restart,
    // the survivors count a leader change, and the timeline marks it.
    let sm = crate::common::csv_named_rows(&out.join("server-metrics.csv"));
    let killed: u64 = events[0][3].parse().unwrap();
    assert!(
        sm.iter()
            .any(|r| r["node"] == killed.to_string() && r["up"] == "0"),
        "node {killed} never down in server-metrics.csv"
    );
    assert!(
        sm.iter()
            .any(|r| r["leader_changes"].parse::<u64>().unwrap_or(0) > 0),
        "no leader change in server-metrics.csv"
    );
    let svg = std::fs::read_to_string(out.join("charts/timeline.svg")).unwrap();
    assert!(
        svg.contains("leader n"),
        "no leader-change marker in the timeline"
    );
}

/// A one-way partition (the leader's outbound raft traffic cut) makes the followers elect
/// a new leader; a slow, lossy link to a follower and the heal keep every acknowledged
/// write.
#[test]
fn a_one_way_partition_and_a_slow_link_elect_anew_and_lose_nothing() {
    let t = tempfile::tempdir().unwrap();
    let wl = t.path().join("one-way.toml");
    std::fs::write(
        &wl,
        r#"
name = "one-way-test"
seed = 5
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
duration = "9s"
concurrency = 16
rate = 300
timeout = "3s"
mix = { put = 0.7, get = 0.3 }
  [[phase.event]]
  at = "2s"
  action = "partition"
  target = "leader"
  direction = "out"
  [[phase.event]]
  at = "3s"
  action = "link-slow"
  target = "follower"
  delay = "30ms"
  jitter = "10ms"
  loss = 0.02
  [[phase.event]]
  at = "6s"
  action = "heal"
  target = "all"
[[phase]]
name = "verify"
verify = true
"#,
    )
    .unwrap();
    let out = t.path().join("results");
    let o = run(&wl, &out, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let events = csv_rows(&out.join("events.csv"));
    let actions: Vec<&str> = events.iter().map(|e| &e[2]).collect();
    assert_eq!(actions, ["partition", "linkslow", "heal"], "{events:?}");
    for e in &events {
        assert!(
            !e[4].contains("link-slow on node") && !e[4].contains("heal:"),
            "{e:?}"
        );
    }
    let rec = csv_rows(&out.join("recovery.csv"));
    let elected = rec
        .iter()
        .find(|r| &r[1] == "partition" && &r[3] == "leader_elected_ms")
        .unwrap_or_else(|| panic!("no election after the one-way partition: {rec:?}"));
    assert!(elected[4].parse::<f64>().unwrap() > 0.0);
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

/// Open loop at the edges other tools stumble on: rates of a few operations per second (and
/// one slower than the phase), and a rate far past what the cluster can do. At low rates each
/// operation counts from its own slot (never from the previous one, never including the
/// sleep before it) and the throughput is over the whole phase; past saturation the phase
/// still ends (the backlog drains for at most the phase's duration), the operations never
/// sent are counted and reported, and the corrected latency shows the backlog.
#[test]
fn open_loop_at_very_low_rates_and_past_saturation() {
    let t = tempfile::tempdir().unwrap();
    let wl = t.path().join("pacing.toml");
    std::fs::write(
        &wl,
        r#"
name = "pacing-edges"
seed = 3
[cluster]
nodes = 1
[data]
keys = 100
[[phase]]
name = "slow"
duration = "3s"
concurrency = 8
rate = 2
mix = { put = 1.0 }
[[phase]]
name = "slower"
duration = "2s"
concurrency = 4
rate = 0.2
mix = { put = 1.0 }
[[phase]]
name = "flood"
duration = "2s"
concurrency = 2
rate = 200000
timeout = "5s"
mix = { put = 1.0 }
[[phase]]
name = "verify"
verify = true
"#,
    )
    .unwrap();
    let out = t.path().join("results");
    let o = run(&wl, &out, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let summary = csv_rows(&out.join("summary.csv"));
    let row = |phase: &str, kind: &str| {
        summary
            .iter()
            .find(|r| &r[0] == phase && &r[1] == "put" && &r[2] == "ok" && &r[12] == kind)
            .unwrap_or_else(|| panic!("no {phase} {kind} row: {summary:?}"))
            .clone()
    };
    let num = |r: &csv::StringRecord, i: usize| -> f64 { r[i].parse().unwrap() };
    let run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("run.json")).unwrap()).unwrap();
    let phase = |name: &str| {
        run["phases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no phase {name}"))
            .clone()
    };

    // 2 ops/s for 3 s: slots at 0, 0.5, ..., 2.5 s, all sent, none late.
    let (c, s) = (row("slow", "corrected"), row("slow", "service"));
    assert_eq!(&c[3], "6", "{c:?}");
    let slow = phase("slow");
    let achieved = slow["achieved_rate"].as_f64().unwrap();
    assert!((1.9..=2.1).contains(&achieved), "achieved {achieved}/s");
    assert_eq!(slow["unsent"], 0);
    for i in 6..=11 {
        assert!(
            num(&c, i) >= num(&s, i),
            "corrected below service: {c:?} {s:?}"
        );
    }
    // The 0.5 s between slots is never counted as latency.
    assert!(num(&c, 11) < 250_000.0, "corrected max {} us", &c[11]);

    // 0.2 ops/s for 2 s: slot 0 only.
    let c = row("slower", "corrected");
    assert_eq!(&c[3], "1", "{c:?}");
    assert!(num(&c, 6) > 0.0 && num(&c, 6) == num(&c, 11), "{c:?}");

    // 200,000 ops/s: far past one node's capacity.
    let flood = phase("flood");
    let unsent = flood["unsent"].as_u64().unwrap();
    let (c, s) = (row("flood", "corrected"), row("flood", "service"));
    let sent = num(&c, 3) as u64;
    assert!(sent > 0 && unsent > 0, "sent {sent}, unsent {unsent}");
    // Every slot of the schedule (2 s at 200,000/s) is either sent, whatever its outcome,
    // or counted as unsent: none skipped, none twice.
    let all_sent: u64 = summary
        .iter()
        .filter(|r| &r[0] == "flood" && &r[12] == "corrected")
        .map(|r| r[3].parse::<u64>().unwrap())
        .sum();
    assert_eq!(
        all_sent + unsent,
        400_000,
        "sent {all_sent} + unsent {unsent}"
    );
    assert!(
        stderr.contains("scheduled ops never sent"),
        "no warning about the unsent operations: {stderr}"
    );
    // The phase ended: 2 s, then at most 2 s of draining (and the last requests' own time),
    // not the minutes its backlog would take.
    let elapsed = flood["elapsed_s"].as_f64().unwrap();
    assert!(elapsed < 9.0, "flood phase ran {elapsed} s");
    // The backlog is in the corrected latency, not in the service time.
    assert!(
        num(&c, 6) > 10.0 * num(&s, 6) && num(&c, 6) > 100_000.0,
        "corrected p50 {} us vs service p50 {} us",
        &c[6],
        &s[6]
    );
    assert!(run["generator_peak_rss_bytes"].as_u64().unwrap() > 0);
    let verify = csv_rows(&out.join("verify.csv"));
    assert_eq!(&verify[0][3], "0", "lost writes");
}

/// `run --slo`: PASS/FAIL per term on stdout, the verdict in run.json, and the exit code.
#[test]
fn run_slo_passes_and_fails_by_exit_code() {
    let t = tempfile::tempdir().unwrap();
    let wl = manifest("workloads/smoke.toml");

    // A phase that is not a load phase is refused before anything runs.
    let o = run(
        &wl,
        &t.path().join("never"),
        &["--slo", "put.p99<1s", "--slo-phases", "mixed,nosuch"],
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.contains("no load phase \"nosuch\"") && stderr.contains("load, mixed"),
        "{stderr}"
    );
    assert!(!t.path().join("never").exists(), "nothing ran");

    let pass = t.path().join("pass");
    let o = run(&wl, &pass, &["--slo", "put.p99<30s,get.max<30s"]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout.contains("slo PASS put.p99<30s"), "{stdout}");
    assert!(stdout.contains("slo PASS get.max<30s"), "{stdout}");
    crate::common::assert_valid("run.schema.json", &pass.join("run.json"));
    let v = crate::common::read_json(&pass.join("run.json"));
    assert_eq!(v["slo"]["pass"], true, "{}", v["slo"]);
    assert_eq!(v["slo"]["phases"], serde_json::json!(["load", "mixed"]));
    let put = &v["slo"]["terms"][0];
    assert_eq!(put["term"], "put.p99<30s");
    assert!(put["ok"].as_u64().unwrap() >= 400, "{put}");
    assert!(put["measured_us"].as_u64().unwrap() > 0, "{put}");

    // No real disk answers every put in under 1 µs: the run fails its SLO, exits
    // non-zero, and says which term failed; only the mixed phase is judged.
    let fail = t.path().join("fail");
    let o = run(
        &wl,
        &fail,
        &["--slo", "put.p50<1us,get.p99<30s", "--slo-phases", "mixed"],
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("slo FAIL put.p50<1us"), "{stdout}");
    assert!(stdout.contains("slo PASS get.p99<30s"), "{stdout}");
    assert!(stderr.contains("did not meet its SLO"), "{stderr}");
    crate::common::assert_valid("run.schema.json", &fail.join("run.json"));
    let v = crate::common::read_json(&fail.join("run.json"));
    assert_eq!(v["slo"]["pass"], false);
    assert_eq!(v["slo"]["phases"], serde_json::json!(["mixed"]));
    assert_eq!(v["slo"]["terms"][0]["pass"], false);
    assert_eq!(v["slo"]["terms"][1]["pass"], true);

    // A bad expression is refused by the parser, saying what was expected.
    let o = run(&wl, &t.path().join("bad"), &["--slo", "put.p99<20"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.contains("expected OP.PERCENTILE<DURATION"),
        "{stderr}"
    );
}
