//! etcd as a peer target: real etcd members (Debian's `etcd-server`, which
//! `scripts/test.sh` installs when root) driven over gRPC, through the same runner, events
//! and verification as raftbench's own nodes.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use raftbench::client::Consistency;
use raftbench::cluster::{Cluster, ClusterSpec};
use raftbench::target::KvClient;
use raftbench::wire::{BackendConfig, BackendKind, RaftSettings, Role};

use crate::common::{csv_rows, manifest, ok, raftbench as cli, read_json, run_workload};

const WAIT: Duration = Duration::from_secs(30);

fn etcd_cluster(dir: &Path, nodes: u64) -> Cluster<raftbench::cluster::Processes> {
    Cluster::start(ClusterSpec {
        nodes,
        backend: BackendConfig::new(BackendKind::Etcd, ""),
        raft: RaftSettings::default(),
        dir: dir.to_path_buf(),
        binary: "unused".into(),
        fault_disks: None,
        node_args: Vec::new(),
    })
    .expect("etcd members start (is Debian's etcd-server installed?)")
}

async fn client(c: &Cluster<raftbench::cluster::Processes>) -> KvClient {
    let endpoints: Vec<String> = c.nodes().values().map(|n| n.client_addr.clone()).collect();
    KvClient::connect(BackendKind::Etcd, &endpoints, 0, Duration::from_secs(10))
        .await
        .unwrap()
}

/// Wait until member `id` has applied `index`.
async fn wait_applied(c: &Cluster<raftbench::cluster::Processes>, id: u64, index: u64) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Ok(s) = c.node_status(id).await
            && s.applied_index >= index
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node {id} never applied {index}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The adapter end to end on a real 3-member cluster: KV, status, snapshot, membership,
/// leader transfer, and a killed leader's writes moving to the survivors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_adapter_drives_a_real_etcd_cluster() {
    let t = tempfile::tempdir().unwrap();
    let mut c = etcd_cluster(&t.path().join("c"), 3);
    let leader = c.wait_for_leader(WAIT).await.unwrap();
    let kv = client(&c).await;

    kv.put("a", Bytes::from_static(b"1")).await.unwrap();
    assert_eq!(
        kv.get("a", Consistency::Linearizable).await.unwrap(),
        Some(Bytes::from_static(b"1"))
    );
    assert_eq!(kv.get("missing", Consistency::Local).await.unwrap(), None);
    kv.delete("a").await.unwrap();
    assert_eq!(kv.get("a", Consistency::Linearizable).await.unwrap(), None);

    // Status maps etcd's member ids onto the harness's: every member names the same
    // leader, the voters are 1..3.
    let s = c.node_status(leader).await.unwrap();
    assert_eq!(s.role, Role::Leader);
    assert_eq!(s.leader_id, leader);
    assert_eq!(s.voters, vec![1, 2, 3]);
    assert!(s.commit_index > 0 && s.applied_index > 0, "{s:?}");
    for id in 1..=3 {
        assert_eq!(c.node_status(id).await.unwrap().leader_id, leader);
    }

    // Maintenance.Snapshot streams the whole db.
    let snap = c.api().snapshot(c.node(leader).unwrap()).await.unwrap();
    assert!(snap.bytes > 0 && snap.index > 0, "{snap:?}");

    // A 4th member: added, then started with the membership it joins; it catches up.
    for i in 0..20 {
        kv.put(&format!("k{i}"), Bytes::from_static(b"v"))
            .await
            .unwrap();
    }
    let commit = c.node_status(leader).await.unwrap().commit_index;
    let new = c.add_node().await.unwrap();
    assert_eq!(new, 4);
    wait_applied(&c, new, commit).await;
    assert_eq!(c.node_status(new).await.unwrap().voters, vec![1, 2, 3, 4]);
    c.remove_member(new).await.unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while c.node_status(leader).await.unwrap().voters != vec![1, 2, 3] {
        assert!(std::time::Instant::now() < deadline, "member 4 not removed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.kill(new).unwrap();

    // Leadership moves where it is asked to.
    let leader = c.wait_for_leader(WAIT).await.unwrap();
    let to = (1..=3).find(|id| *id != leader).unwrap();
    c.api()
        .transfer_leader(c.node(leader).unwrap(), c.node(to).unwrap())
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while c.leader().await != Some(to) {
        assert!(
            std::time::Instant::now() < deadline,
            "leadership did not move to {to}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Kill the leader the client prefers. Once the survivors elect a new one, the next
    // write is refused by the dead endpoint and goes to a survivor. (A write sent before
    // that is in doubt, as it must be: etcd holds a proposal it forwarded to a dead leader
    // until its own request timeout.)
    let KvClient::Etcd(etcd) = &kv else {
        unreachable!("an etcd client")
    };
    etcd.find_leader().await;
    c.kill(to).unwrap();
    let elected = c.wait_for_leader(WAIT).await.unwrap();
    assert_ne!(elected, to);
    kv.put("after-kill", Bytes::from_static(b"x"))
        .await
        .unwrap();
    assert_eq!(
        kv.get("after-kill", Consistency::Linearizable)
            .await
            .unwrap(),
        Some(Bytes::from_static(b"x"))
    );
    c.shutdown();
}

/// A smoke workload on etcd: every operation counted, 0 writes lost, etcd's own WAL fsync
/// and backend commit figures beside the client's.
#[test]
fn a_smoke_workload_runs_on_etcd_and_verifies() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("results");
    let o = run_workload(
        &manifest("workloads/smoke.toml"),
        &out,
        &["--backend", "etcd"],
    );
    ok(&o);
    let verify = csv_rows(&out.join("verify.csv"));
    assert_eq!(&verify[0][0], "200", "every key verified");
    assert_eq!(
        (&verify[0][3][..], &verify[0][4][..]),
        ("0", "0"),
        "lost, stale"
    );
    let run = read_json(&out.join("run.json"));
    assert_eq!(run["backend"]["kind"], "etcd");
    assert_eq!(run["backend"]["fsync"], "always");
    let load = &run["phases"][0];
    assert_eq!(load["server"]["source"], "etcd /metrics", "{load}");
    assert!(load["server"]["wal_fsyncs"].as_u64().unwrap() > 0, "{load}");
    assert!(
        load["server"]["wal_fsync_p99_us"].as_f64().unwrap() > 0.0,
        "{load}"
    );
    assert!(
        load["server"]["backend_commits"].as_u64().unwrap() > 0,
        "{load}"
    );
    let summary = csv_rows(&out.join("summary.csv"));
    let put = summary
        .iter()
        .find(|r| &r[0] == "load" && &r[1] == "put" && &r[2] == "ok" && &r[12] == "corrected")
        .expect("load put row");
    assert_eq!(&put[3], "400", "every load op acknowledged");
    // Local members are sampled from /proc like raftbench nodes.
    let res = csv_rows(&out.join("resources.csv"));
    assert!(
        res.iter().any(|r| r[2].parse::<u64>().unwrap() > 0),
        "{res:?}"
    );
}

/// Kill etcd's leader under load: a new leader is elected, writes resume, the restarted
/// member catches up, and no acknowledged write is lost.
#[test]
fn killing_the_etcd_leader_under_load_loses_nothing() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("results");
    let o = run_workload(
        &manifest("workloads/failover-leader.toml"),
        &out,
        &["--backend", "etcd", "--scale", "0.2", "--quiet"],
    );
    ok(&o);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains(" 0 lost, 0 stale"), "{stdout}");
    let recovery = csv_rows(&out.join("recovery.csv"));
    let metric = |m: &str| -> f64 {
        recovery
            .iter()
            .find(|r| (&r[1] == "kill" || &r[1] == "restart") && &r[3] == m)
            .unwrap_or_else(|| panic!("no {m} in {recovery:?}"))[4]
            .parse()
            .unwrap()
    };
    assert!(metric("leader_elected_ms") > 0.0);
    assert!(metric("writes_resumed_ms") > 0.0);
    assert!(metric("process_up_ms") > 0.0);
    assert!(metric("caught_up_ms") > 0.0);
    // etcd reports no start-up figures of its own: none are made up.
    assert!(
        !recovery.iter().any(|r| &r[3] == "replay_ms"),
        "{recovery:?}"
    );
}

/// `compare` with etcd as the third backend: one table, one chart set, all three in them.
#[test]
fn a_three_way_comparison_includes_etcd() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("cmp");
    let o = cli(&[
        "compare",
        manifest("workloads/smoke.toml").to_str().unwrap(),
        "--backends",
        "memwal,rocksdb,etcd",
        "--out",
        out.to_str().unwrap(),
    ]);
    let stderr = ok(&o);
    assert!(stderr.contains("What differs for etcd"), "{stderr}");
    let table = std::fs::read_to_string(out.join("comparison.md")).unwrap();
    let header = table.lines().find(|l| l.starts_with("| metric")).unwrap();
    for b in ["memwal", "rocksdb", "etcd"] {
        assert!(header.contains(b), "{header}");
    }
    assert!(table.contains("server_wal_fsync_mean_us"), "{table}");
    let charts_dir = out.join("charts");
    let charts: Vec<String> = std::fs::read_dir(&charts_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".svg"))
        .collect();
    assert!(!charts.is_empty(), "no charts in {}", charts_dir.display());
    // The put latency spectrum has a series of every backend, labelled `BACKEND · PHASE`
    // (a bar chart's legend names every backend, with values or not).
    let spectrum = charts
        .iter()
        .find(|c| c.starts_with("spectrum-put"))
        .unwrap_or_else(|| panic!("no put spectrum among {charts:?}"));
    let svg = std::fs::read_to_string(charts_dir.join(spectrum)).unwrap();
    for b in ["memwal", "rocksdb", "etcd"] {
        assert!(
            svg.contains(&format!("{b} · ")),
            "{spectrum} has no series of {b}"
        );
    }
}

/// What etcd cannot do is refused before anything starts, at the event's line; so is
/// `fsync = "never"`, and a missing etcd binary is named with its package.
#[test]
fn what_etcd_cannot_do_is_refused_up_front() {
    let t = tempfile::tempdir().unwrap();
    let o = run_workload(
        &manifest("workloads/partition.toml"),
        &t.path().join("p"),
        &["--backend", "etcd"],
    );
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    // At the partition event: its table header or its action line.
    let text = std::fs::read_to_string(manifest("workloads/partition.toml")).unwrap();
    let action = 1 + text
        .lines()
        .position(|l| l.trim() == "action = \"partition\"")
        .unwrap();
    let at_event =
        (action - 2..=action).any(|line| stderr.contains(&format!("partition.toml:{line}:")));
    assert!(
        at_event && stderr.contains("etcd") && stderr.contains("partition"),
        "not refused at the event (line {action}): {stderr}"
    );
    // A comparison refuses it before its first backend runs, not after.
    let out = t.path().join("cmp");
    let o = cli(&[
        "compare",
        manifest("workloads/partition.toml").to_str().unwrap(),
        "--backends",
        "memwal,etcd",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("--backends etcd") && stderr.contains("partition.toml:"),
        "{stderr}"
    );
    assert!(
        !out.join("runs").exists(),
        "a backend ran before the refusal"
    );
    let o = run_workload(
        &manifest("workloads/smoke.toml"),
        &t.path().join("f"),
        &["--backend", "etcd", "--fsync", "never"],
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("always fsyncs"));

    // Sub-tables may come after other tables in TOML: the rest of the file stays as it is.
    let wl = t.path().join("missing.toml");
    let mut text = std::fs::read_to_string(manifest("workloads/smoke.toml")).unwrap();
    text.push_str("\n[cluster.etcd]\nbinary = \"/nonexistent/etcd\"\n");
    std::fs::write(&wl, text).unwrap();
    let o = run_workload(&wl, &t.path().join("m"), &["--backend", "etcd"]);
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("etcd-server"), "{stderr}");
}

/// `cluster up --target etcd` starts a cluster that `run --cluster` drives like any live
/// cluster, through its cluster file.
#[test]
fn cluster_up_starts_etcd_for_run_cluster() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("c");
    let file = t.path().join("cluster.toml");
    let up = crate::live::Up::start_with(&dir, &file, &["--target", "etcd"]);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("kind = \"etcd\"") && text.contains("--initial-cluster"),
        "{text}"
    );
    let out = t.path().join("results");
    let o = cli(&[
        "run",
        manifest("workloads/smoke.toml").to_str().unwrap(),
        "--cluster",
        file.to_str().unwrap(),
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    ok(&o);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains(" 0 lost, 0 stale"), "{stdout}");
    assert_eq!(read_json(&out.join("run.json"))["backend"]["kind"], "etcd");
    up.stop();
}
