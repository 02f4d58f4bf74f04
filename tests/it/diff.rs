//! `raftbench diff`, black-box: two real runs of one workload, the same against itself
//! and fsync never against fsync always, and bad thresholds.

use std::path::Path;

use crate::common::{RAFTBENCH, read_json, run_workload};

/// Closed-loop puts for 9 s: about 7 whole measured seconds after a 1 s warm-up.
const WORKLOAD: &str = r#"
name = "diff-fsync"
seed = 7

[cluster]
nodes = 3

[data]
keys = 2000
key_size = 12
value_size = 128

[[phase]]
name = "writes"
duration = "9s"
warmup = "1s"
concurrency = 4
mix = { put = 1.0 }
"#;

fn diff(base: &Path, new: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    std::process::Command::new(RAFTBENCH)
        .arg("diff")
        .arg(base)
        .arg(new)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn diff_finds_no_regression_in_a_copy_and_a_significant_one_when_fsync_comes_back() {
    let t = tempfile::tempdir().unwrap();
    let wl = t.path().join("diff.toml");
    std::fs::write(&wl, WORKLOAD).unwrap();
    let never = t.path().join("never");
    let always = t.path().join("always");
    for (dir, fsync) in [(&never, "never"), (&always, "always")] {
        let o = run_workload(&wl, dir, &["--fsync", fsync, "--quiet"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }

    // A run against itself: nothing changed, nothing is significant, exit 0.
    let o = diff(&never, &never, &t.path().join("same"), &[]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("**Verdict: no regression**"), "{stdout}");
    crate::common::assert_valid("diff.schema.json", &t.path().join("same/diff.json"));
    let r = read_json(&t.path().join("same/diff.json"));
    assert_eq!(r["schema_version"], 1);
    assert_eq!(r["regressions"], 0);
    for row in r["rows"].as_array().unwrap() {
        assert_eq!(row["change_pct"], 0.0, "{row}");
        assert_ne!(row["verdict"], "regression", "{row}");
        assert_ne!(row["verdict"], "worse", "{row}");
    }
    assert!(t.path().join("same/diff.md").is_file());

    // fsync never → always: every put waits for a disk flush on a majority, so throughput
    // falls and p99 rises, significantly: a regression, exit 3.
    let o = diff(&never, &always, &t.path().join("slower"), &[]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(3), "{stdout}");
    assert!(stdout.contains("**Verdict: REGRESSION**"), "{stdout}");
    crate::common::assert_valid("diff.schema.json", &t.path().join("slower/diff.json"));
    let r = read_json(&t.path().join("slower/diff.json"));
    let row = |metric: &str| {
        r["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["metric"] == metric && x["phase"] == "writes" && x["op"] == "put")
            .unwrap_or_else(|| panic!("no {metric} row: {r}"))
            .clone()
    };
    let tp = row("ops_per_sec");
    assert_eq!(tp["verdict"], "regression", "{tp}");
    assert!(tp["change_pct"].as_f64().unwrap() < -5.0, "{tp}");
    assert!(tp["p_value"].as_f64().unwrap() < 0.05, "{tp}");
    assert!(tp["base_samples"].as_u64().unwrap() >= 5, "{tp}");
    assert_eq!(row("p99")["verdict"], "regression", "{}", row("p99"));
    assert!(r["regressions"].as_u64().unwrap() >= 2);

    // The other way round it is an improvement, and not a failure.
    let o = diff(&always, &never, &t.path().join("faster"), &[]);
    assert_eq!(o.status.code(), Some(0));
    let r = read_json(&t.path().join("faster/diff.json"));
    assert!(
        r["rows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["metric"] == "ops_per_sec" && x["verdict"] == "improvement"),
        "{r}"
    );

    // A loose enough threshold lets the same change through.
    let o = diff(
        &never,
        &always,
        &t.path().join("loose"),
        &["--threshold", "p99=+100000%,ops_per_sec=-99.99%"],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

#[test]
fn bad_thresholds_and_directories_are_refused_saying_what_was_expected() {
    let t = tempfile::tempdir().unwrap();
    let sample = crate::common::manifest("results/sample-compare-quickstart");
    for (threshold, problem) in [
        ("p99=10%", "no sign"),
        ("p99=-10%", "gets worse as it rises"),
        ("latency=+5%", "unknown metric"),
        ("p99=+5", "does not end in %"),
    ] {
        let o = diff(
            &sample,
            &sample,
            &t.path().join("x"),
            &["--threshold", threshold],
        );
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{threshold}: {stderr}");
        assert!(
            stderr.contains(problem) && stderr.contains("expected [OP.]METRIC=+N%"),
            "{threshold}: {stderr}"
        );
    }
    for alpha in ["0", "1.5", "often"] {
        let o = diff(&sample, &sample, &t.path().join("x"), &["--alpha", alpha]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{alpha}: {stderr}");
        assert!(stderr.contains("between 0 and 1"), "{alpha}: {stderr}");
    }
    assert!(
        !t.path().join("x").exists(),
        "nothing written for bad flags"
    );
    let o = diff(&sample, t.path(), &t.path().join("y"), &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(stderr.contains("no run.json"), "{stderr}");
    assert!(
        !t.path().join("y").exists(),
        "nothing written for a failed diff"
    );

    // Two comparisons with repeats (the committed sample against itself): per backend,
    // three runs a side, no regression.
    let out = t.path().join("sample");
    let o = diff(&sample, &sample, &out, &[]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let r = read_json(&out.join("diff.json"));
    assert_eq!(r["base_runs"]["memwal"], 3, "{}", r["base_runs"]);
    let backends: Vec<&str> = r["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["backend"].as_str().unwrap())
        .collect();
    for b in ["memwal", "rocksdb", "etcd"] {
        assert!(backends.contains(&b), "{b}: {backends:?}");
    }
}
