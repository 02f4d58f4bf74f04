//! `raftbench run --cluster`: workloads against a cluster raftbench did not start, driven
//! only through its cluster file's addresses and control commands.

use std::path::{Path, PathBuf};
use std::process::Child;

use crate::common::{
    assert_no_nodes_under, command, copy_files, csv_rows, interrupt, manifest, raftbench, read_json,
};

/// `raftbench cluster up` in the background, until its cluster file is written.
pub struct Up {
    child: Child,
    dir: PathBuf,
}

impl Up {
    fn start(dir: &Path, file: &Path) -> Up {
        Self::start_with(dir, file, &[])
    }

    /// With extra `cluster up` flags (`--target etcd`).
    pub fn start_with(dir: &Path, file: &Path, extra: &[&str]) -> Up {
        // Its stdout goes to a file: a pipe closed early would make its last lines fail.
        let log = dir.with_extension("out");
        let child = command()
            .args(["cluster", "up", "--nodes", "3"])
            .args(extra)
            .arg("--dir")
            .arg(dir)
            .arg("--cluster-file")
            .arg(file)
            .stdout(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("Ctrl-C")
        {
            assert!(
                std::time::Instant::now() < deadline,
                "cluster up did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Up {
            child,
            dir: dir.to_path_buf(),
        }
    }

    /// SIGINT, and check that no node outlives it (including nodes restarted by a
    /// control command, which are not its children).
    pub fn stop(mut self) {
        interrupt(&self.child);
        assert!(self.child.wait().unwrap().success());
        std::thread::sleep(std::time::Duration::from_millis(500));
        assert_no_nodes_under(&self.dir);
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

#[test]
fn failover_against_a_cluster_started_elsewhere() {
    let t = tempfile::tempdir().unwrap();
    let file = t.path().join("cluster.toml");
    let up = Up::start(&t.path().join("c"), &file);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("[node.control]") && text.contains("kill -KILL"),
        "{text}"
    );

    let out = t.path().join("results");
    let o = raftbench(&[
        "run",
        manifest("workloads/failover-leader.toml").to_str().unwrap(),
        "--cluster",
        file.to_str().unwrap(),
        "--scale",
        "0.2",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains(" 0 lost, 0 stale"), "{stdout}");

    let recovery = csv_rows(&out.join("recovery.csv"));
    let metric = |m: &str| -> f64 {
        recovery
            .iter()
            .find(|r| &r[3] == m)
            .unwrap_or_else(|| panic!("no {m} in {recovery:?}"))[4]
            .parse()
            .unwrap()
    };
    assert!(metric("leader_elected_ms") > 0.0);
    assert!(metric("caught_up_ms") > 0.0);
    // The kill was measured from when the process was gone, so writes stalled for the
    // election rather than resuming at once.
    let resumed: Vec<f64> = recovery
        .iter()
        .filter(|r| &r[1] == "kill" && &r[3] == "writes_resumed_ms")
        .map(|r| r[4].parse().unwrap())
        .collect();
    assert!(
        !resumed.is_empty() && resumed.iter().all(|ms| *ms > 50.0),
        "{resumed:?}"
    );

    // The commands ran, and run.json records them.
    let log = std::fs::read_to_string(out.join("cluster/control.log")).unwrap();
    assert!(log.contains(" kill: ") && log.contains(" start: "), "{log}");
    let run = read_json(&out.join("run.json"));
    let nodes = run["live_cluster"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    assert!(
        nodes[0]["control"]["kill"]
            .as_str()
            .unwrap()
            .contains("kill -KILL")
    );
    // Every series the Grafana dashboard queries is one this cluster's nodes serve.
    let cluster = raftbench::wire::ClusterFile::load(&file).unwrap();
    let (_, _, metrics) = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(crate::server::scrape(&format!(
            "http://{}",
            cluster.nodes[0].client_addr
        )));
    crate::server::check_dashboard_against(&metrics);
    // Resources come from the nodes' /status: RSS and data-directory size per node.
    let res = csv_rows(&out.join("resources.csv"));
    assert!(
        res.iter()
            .any(|r| r[2].parse::<u64>().unwrap() > 0 && r[3].parse::<u64>().unwrap() > 0)
    );
    up.stop();
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

const HEAD: &str = "[backend]\nkind = \"memwal\"\ndir = \"\"\n";

#[test]
fn bad_cluster_files_are_refused_before_any_load() {
    let t = tempfile::tempdir().unwrap();
    let wl = manifest("workloads/failover-leader.toml");
    let run = |file: &Path, out: &str| {
        raftbench(&[
            "run",
            wl.to_str().unwrap(),
            "--cluster",
            file.to_str().unwrap(),
            "--out",
            t.path().join(out).to_str().unwrap(),
        ])
    };
    let node = |id: u64, port: u16, control: &str| {
        format!(
            "[[node]]\nid = {id}\npeer_addr = \"127.0.0.1:{}\"\nclient_addr = \"127.0.0.1:{port}\"\n{control}",
            port + 1
        )
    };
    let full = "[node.control]\nkill = \"true\"\nstart = \"true\"\n";

    // A duplicate id.
    let f = t.path().join("dup.toml");
    write(
        &f,
        &format!("{HEAD}{}{}", node(1, 1, full), node(1, 3, full)),
    );
    let o = run(&f, "r1");
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("dup.toml") && e.contains("listed twice"), "{e}");

    // The workload kills and restarts nodes: node 2 has no `kill` command.
    let f = t.path().join("nokill.toml");
    write(
        &f,
        &format!(
            "{HEAD}{}{}",
            node(1, 1, full),
            node(2, 3, "[node.control]\nstart = \"true\"\n")
        ),
    );
    let o = run(&f, "r2");
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("node 2's `kill` control command") && e.contains("nokill.toml"),
        "{e}"
    );
    assert!(!t.path().join("r2").exists(), "refused before anything ran");
    // `validate --cluster` says the same without running anything.
    let o = raftbench(&[
        "validate",
        wl.to_str().unwrap(),
        "--cluster",
        f.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("node 2's `kill` control command"), "{e}");

    // A cold-cache restart needs the data directory on this machine.
    let f = t.path().join("full.toml");
    write(
        &f,
        &format!("{HEAD}{}{}", node(1, 1, full), node(2, 3, full)),
    );
    let cold = t.path().join("cold.toml");
    write(
        &cold,
        &std::fs::read_to_string(manifest("workloads/failover-follower.toml"))
            .unwrap()
            .replace(
                "action = \"restart\"\n",
                "action = \"restart\"\ncache = \"cold\"\n",
            ),
    );
    assert!(
        std::fs::read_to_string(&cold)
            .unwrap()
            .contains("cache = \"cold\"")
    );
    let o = raftbench(&[
        "validate",
        cold.to_str().unwrap(),
        "--cluster",
        f.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("cold") && e.contains("start` command") && e.contains("cold.toml"),
        "{e}"
    );
    // The same from the command line, refused by `run` before it connects to anything.
    let o = raftbench(&[
        "run",
        manifest("workloads/failover-follower.toml")
            .to_str()
            .unwrap(),
        "--cluster",
        f.to_str().unwrap(),
        "--restart-cache",
        "cold",
        "--out",
        t.path().join("r-cold").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("--restart-cache cold") && e.contains("the restart at"),
        "{e}"
    );
    assert!(
        !t.path().join("r-cold").exists(),
        "refused before anything ran"
    );

    // A node that does not answer (nothing listens on these ports).
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let f = t.path().join("down.toml");
    write(&f, &format!("{HEAD}{}", node(1, port, full)));
    let o = run(&f, "r3");
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("do not answer GET /status") && e.contains("node 1"),
        "{e}"
    );
    assert!(
        !t.path().join("r3/summary.csv").exists(),
        "no load was sent"
    );

    // --backend makes no sense with --cluster.
    let o = raftbench(&[
        "run",
        wl.to_str().unwrap(),
        "--cluster",
        f.to_str().unwrap(),
        "--backend",
        "rocksdb",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--cluster"));
}

#[test]
fn two_generators_merge_exactly() {
    use raftbench::report::data::{Kind, RunData};
    let t = tempfile::tempdir().unwrap();
    let file = t.path().join("cluster.toml");
    let up = Up::start(&t.path().join("c"), &file);
    let wl = manifest("workloads/smoke.toml");
    let gen_args = |i: &str| -> Vec<String> {
        [
            "run",
            wl.to_str().unwrap(),
            "--cluster",
            file.to_str().unwrap(),
            "--client-id",
            i,
            "--clients",
            "2",
            "--quiet",
            "--out",
            t.path().join(format!("g{i}")).to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec()
    };
    // Both at once, as two hosts would.
    let spawn = |i: &str| {
        command()
            .args(gen_args(i))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (spawn("1"), spawn("2"));
    let first = first.wait_with_output().unwrap();
    let second = second.wait_with_output().unwrap();
    for o in [&first, &second] {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    up.stop();
    let (g1, g2) = (t.path().join("g1"), t.path().join("g2"));
    let (r1, r2) = (RunData::load(&g1).unwrap(), RunData::load(&g2).unwrap());
    // Each took half of the 400-op load and half of the 200 keys, and verified its own.
    for r in [&r1, &r2] {
        assert_eq!(r.ok_row("load", "put").unwrap().count, 200);
        assert_eq!(r.manifest.keys_written, Some(100));
        let v = r.manifest.verify.as_ref().unwrap();
        assert_eq!((v.keys, v.lost, v.stale), (100, 0, 0));
    }

    let m = t.path().join("merged");
    let o = raftbench(&[
        "merge",
        g1.to_str().unwrap(),
        g2.to_str().unwrap(),
        "--out",
        m.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let merged = RunData::load(&m).unwrap();
    for (phase, op) in [("load", "put"), ("mixed", "put"), ("mixed", "get")] {
        let key = (phase.to_string(), op.to_string(), Kind::Corrected);
        let mut added = r1.histograms[&key].clone();
        added.add(&r2.histograms[&key]).unwrap();
        let row = merged.ok_row(phase, op).unwrap();
        assert_eq!(
            row.count,
            r1.ok_row(phase, op).unwrap().count + r2.ok_row(phase, op).unwrap().count
        );
        assert_eq!(row.count, added.len());
        for (q, v) in [(0.5, row.p50_us), (0.99, row.p99_us), (0.999, row.p999_us)] {
            assert_eq!(v, added.value_at_quantile(q), "{phase}.{op} p{q}");
        }
        assert_eq!(row.max_us, added.max());
        // The merged interval log holds the added histogram.
        assert_eq!(
            merged.histograms[&key], added,
            "{phase}.{op} in latency.hlog"
        );
    }
    assert_eq!(merged.manifest.verify.as_ref().unwrap().keys, 200);
    // Rates add up; every row says where it came from.
    let rate = |r: &RunData| r.ok_row("mixed", "put").unwrap().ops_per_sec;
    assert!((rate(&merged) - rate(&r1) - rate(&r2)).abs() < 1e-6);
    assert!(r1.summary.iter().all(|r| r.generator == "1/2"));
    assert!(r2.summary.iter().all(|r| r.generator == "2/2"));
    assert!(merged.summary.iter().all(|r| r.generator == "merged"));
    // Per-second percentiles come from the added per-second histograms.
    let (t1, t2) = (
        r1.timeline_histograms.as_ref().unwrap(),
        r2.timeline_histograms.as_ref().unwrap(),
    );
    let mut checked = 0;
    for row in merged.timeline.iter().filter(|r| r.phase == "mixed") {
        let key = (row.t_s, row.phase.clone(), row.op.clone());
        let (Some(a), Some(b)) = (t1.get(&key), t2.get(&key)) else {
            continue;
        };
        let mut added = a.clone();
        added.add(b).unwrap();
        assert_eq!(row.ops, added.len(), "{key:?}");
        assert_eq!(row.p99_us, added.value_at_quantile(0.99), "{key:?}");
        assert_eq!(row.max_us, added.max(), "{key:?}");
        checked += 1;
    }
    assert!(checked >= 4, "only {checked} seconds in both generators");
    // Warm-up and failures were merged too (warm-up rows exist in the smoke workload).
    assert!(merged.summary.iter().any(|r| r.phase == "mixed:warmup"));
    assert!(m.join("report.html").is_file() && m.join("charts/spectrum.png").is_file());

    // Runs of another seed, or the same generator twice, are refused without --force.
    let other = t.path().join("other");
    copy_run(&g2, &other, |j| j["seed"] = serde_json::json!(99));
    let o = raftbench(&[
        "merge",
        g1.to_str().unwrap(),
        other.to_str().unwrap(),
        "--out",
        t.path().join("m2").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("seed 99") && e.contains("--force"), "{e}");
    let o = raftbench(&[
        "merge",
        g1.to_str().unwrap(),
        other.to_str().unwrap(),
        "--force",
        "--out",
        t.path().join("m3").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let twin = t.path().join("twin");
    copy_run(&g1, &twin, |_| {});
    let o = raftbench(&[
        "merge",
        g1.to_str().unwrap(),
        twin.to_str().unwrap(),
        "--out",
        t.path().join("m4").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("both generator 1 of 2"));
    let untagged = t.path().join("untagged");
    copy_run(&g2, &untagged, |j| j["generator"] = serde_json::Value::Null);
    let o = raftbench(&[
        "merge",
        g1.to_str().unwrap(),
        untagged.to_str().unwrap(),
        "--out",
        t.path().join("m5").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a split generator"));
    // Splitting needs one shared cluster.
    let o = raftbench(&[
        "run",
        wl.to_str().unwrap(),
        "--client-id",
        "1",
        "--clients",
        "2",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--cluster"));
}

/// Copy a results directory's files, editing its run.json.
fn copy_run(from: &Path, to: &Path, edit: impl Fn(&mut serde_json::Value)) {
    copy_files(from, to);
    let mut j = read_json(&to.join("run.json"));
    edit(&mut j);
    std::fs::write(to.join("run.json"), j.to_string()).unwrap();
}
