//! The `raftbench` binary, black-box: real processes, real directories.

use crate::common::{assert_no_nodes_under, command, interrupt, raftbench};

#[test]
fn storage_open_reports_state_as_json() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("d");
    let dir = dir.to_str().unwrap();
    let out = raftbench(&[
        "storage",
        "stress",
        "--backend",
        "memwal",
        "--dir",
        dir,
        "--max-index",
        "64",
        "--snapshot-every",
        "0",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.lines().any(|l| l == "durable 64"), "{stdout}");
    assert!(stdout.ends_with("done 64\n"), "{stdout}");

    let out = raftbench(&["storage", "open", "--backend", "memwal", "--dir", dir]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["backend"], "memwal");
    assert_eq!(v["fsync"], "always");
    assert_eq!(v["stats"]["last_index"], 64);
    assert_eq!(v["stats"]["first_index"], 1);
    assert_eq!(v["open"]["fresh"], false);
    assert_eq!(v["open"]["replayed_entries"], 64);
    assert!(v["stats"]["disk_bytes"].as_u64().unwrap() > 64 * 128);
}

#[test]
fn wrong_backend_is_a_clear_error_not_a_panic() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().to_str().unwrap();
    assert!(
        raftbench(&["storage", "open", "--backend", "memwal", "--dir", dir])
            .status
            .success()
    );
    let out = raftbench(&["storage", "open", "--backend", "rocksdb", "--dir", dir]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("created by the memwal backend"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_flags_are_rejected_with_the_allowed_values() {
    let out = raftbench(&["storage", "open", "--backend", "leveldb", "--dir", "x"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("memwal") && err.contains("rocksdb"), "{err}");
    let out = raftbench(&[
        "storage",
        "open",
        "--backend",
        "memwal",
        "--dir",
        "x",
        "--fsync",
        "sometimes",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("always"));
    for (flag, value, expect) in [
        ("--op", "scan", "put"),
        ("--seconds", "0", "positive"),
        ("--seconds", "NaN", "positive"),
    ] {
        let out = raftbench(&["loadtest", "--endpoints", "127.0.0.1:1", flag, value]);
        assert!(!out.status.success(), "{flag} {value}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(expect) && err.contains(flag),
            "{flag} {value}: {err}"
        );
    }
}

/// `raftbench loadtest` against a live cluster prints a row per client count.
#[test]
fn loadtest_prints_a_row_per_client_count() {
    use std::io::{BufRead, BufReader};
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("c");
    let mut up = command()
        .args(["cluster", "up", "--nodes", "1", "--dir"])
        .arg(&dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(up.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.unwrap().contains("stops every node") {
            break;
        }
    }
    let file = dir.join("cluster.toml");
    let out = raftbench(&[
        "loadtest",
        "--cluster-file",
        file.to_str().unwrap(),
        "--clients",
        "1,4",
        "--seconds",
        "0.3",
        "--op",
        "put",
        "--disk-baseline",
        t.path().to_str().unwrap(),
    ]);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(up.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(up.wait().unwrap().success());
    drop(lines);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("disk: fdatasync"), "{text}");
    let rows: Vec<Vec<f64>> = text
        .lines()
        .skip_while(|l| !l.starts_with("clients"))
        .skip(1)
        .map(|l| l.split_whitespace().map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), 2, "{text}");
    for (row, clients) in rows.iter().zip([1.0, 4.0]) {
        assert_eq!(row[0], clients, "{text}");
        assert!(row[1] > 0.0, "no throughput: {text}");
        assert_eq!(row[6], 0.0, "errors: {text}");
    }
}

#[test]
fn cluster_up_serves_until_interrupted() {
    use std::io::{BufRead, BufReader};
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("c");
    let mut child = command()
        .args(["cluster", "up", "--nodes", "1", "--dir"])
        .arg(&dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut out = String::new();
    let mut url = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        out.push_str(&line);
        out.push('\n');
        if let Some(rest) = line.trim().strip_prefix("curl http://") {
            url.get_or_insert_with(|| format!("http://{}", rest.split('/').next().unwrap()));
        }
        if line.contains("Ctrl-C") {
            break;
        }
    }
    assert!(out.contains("(leader)"), "{out}");
    let url = url.expect("a curl example");
    // The printed endpoint works.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let h = raftbench::client::http_client();
        let r = h
            .put(format!("{url}/kv/hello"))
            .body("world")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        let r = h.get(format!("{url}/kv/hello")).send().await.unwrap();
        assert_eq!(r.text().await.unwrap(), "world");
    });
    assert!(dir.join("cluster.toml").exists());
    interrupt(&child);
    let status = child.wait().unwrap();
    assert!(status.success(), "cluster up exited with {status}");
    // Every node was stopped with it.
    assert_no_nodes_under(&dir);
    // Node logs are files, not terminals: no colour escapes in them.
    let log = std::fs::read_to_string(dir.join("logs/node-1.log")).unwrap();
    assert!(log.contains("node started"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escapes in the node log: {log:?}"
    );
}

/// `cluster up` under a service manager, `timeout` or a CI runner gets SIGTERM, and SIGHUP
/// when its terminal closes: each must stop every node it started, as Ctrl-C does.
#[test]
fn cluster_up_stops_every_node_on_sigterm_and_sighup() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    use std::io::{BufRead, BufReader};
    for sig in [Signal::SIGTERM, Signal::SIGHUP] {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("c");
        let mut child = command()
            .args(["cluster", "up", "--nodes", "2", "--dir"])
            .arg(&dir)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut pids = Vec::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some((_, rest)) = line.split_once("  pid ") {
                let pid: i32 = rest.split_whitespace().next().unwrap().parse().unwrap();
                pids.push(Pid::from_raw(pid));
            }
            if line.contains("stops every node") {
                break;
            }
        }
        assert_eq!(pids.len(), 2, "{sig}: node pids printed");
        for p in &pids {
            assert!(
                kill(*p, None).is_ok(),
                "{sig}: node {p} runs before the signal"
            );
        }
        kill(Pid::from_raw(child.id() as i32), sig).unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "{sig}: cluster up exited with {status}");
        let rest: Vec<String> = lines.map_while(Result::ok).collect();
        assert!(
            rest.iter().any(|l| l.contains(&format!("{sig}: stopping"))),
            "{sig}: {rest:?}"
        );
        // The nodes were our children and have been reaped: their pids are gone.
        for p in &pids {
            assert!(kill(*p, None).is_err(), "{sig}: node {p} still running");
        }
    }
}
