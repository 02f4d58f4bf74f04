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
}
