//! The results schemas: the committed `results/schema/*.schema.json` are what the Rust
//! types generate, every committed results file validates against them, and a
//! `schema_version` a raftbench does not know is refused rather than guessed at. Fresh
//! files are validated where the tests that write them run (`run`, `diff`, `report`).

use std::path::{Path, PathBuf};

use crate::common::{assert_valid, copy_files, manifest, raftbench, read_json, validator};

/// Every file under `dir` (recursively) named `name`.
fn files_named(dir: &Path, name: &str, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_named(&p, name, out);
        } else if p.file_name().is_some_and(|n| n == name) {
            out.push(p);
        }
    }
}

#[test]
fn committed_schemas_are_the_generated_ones() {
    let dir = manifest("results/schema");
    let rendered = raftbench::study::schema::rendered();
    for (name, text) in &rendered {
        let path = dir.join(name);
        let committed =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            committed == *text,
            "{} differs from what the types generate: run `raftbench schema results/schema`",
            path.display()
        );
    }
    // And no stale schema of a file that no longer has one.
    let mut committed: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    committed.sort();
    let mut generated: Vec<String> = rendered.iter().map(|(n, _)| n.to_string()).collect();
    generated.sort();
    assert_eq!(committed, generated);
}

#[test]
fn schema_command_writes_the_same_files() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("schema");
    crate::common::ok(&raftbench(&["schema", out.to_str().unwrap()]));
    for (name, _) in raftbench::study::schema::rendered() {
        assert_eq!(
            std::fs::read(out.join(name)).unwrap(),
            std::fs::read(manifest("results/schema").join(name)).unwrap(),
            "{name}"
        );
    }
}

#[test]
fn every_committed_results_file_validates() {
    let (mut runs, mut compares) = (Vec::new(), Vec::new());
    for dir in [manifest("results"), manifest("tests/fixtures")] {
        files_named(&dir, "run.json", &mut runs);
        files_named(&dir, "compare.json", &mut compares);
    }
    // The samples: three comparisons with their runs, and the plot fixture.
    assert!(compares.len() >= 3, "{compares:?}");
    assert!(runs.len() >= 10, "{runs:?}");
    for p in &runs {
        assert_valid("run.schema.json", p);
    }
    for p in &compares {
        assert_valid("compare.schema.json", p);
    }
}

/// A schema that accepts anything would pass the test above: these must be refused.
#[test]
fn schemas_refuse_what_is_not_their_file() {
    let run = read_json(&manifest("tests/fixtures/quickstart-run/run.json"));
    let refused = |schema: &str, v: &serde_json::Value| {
        assert!(!validator(schema).is_valid(v), "{schema} accepted {v}");
    };
    let mut no_phases = run.clone();
    no_phases.as_object_mut().unwrap().remove("phases");
    refused("run.schema.json", &no_phases);
    let mut bad_fsync = run.clone();
    bad_fsync["fsync"] = "sometimes".into();
    refused("run.schema.json", &bad_fsync);
    let mut bad_rate = run.clone();
    bad_rate["phases"][0]["achieved_rate"] = "fast".into();
    refused("run.schema.json", &bad_rate);
    refused("compare.schema.json", &run);
    refused("diff.schema.json", &run);
    refused("capacity.schema.json", &run);
}

#[test]
fn unknown_schema_versions_are_refused() {
    let t = tempfile::tempdir().unwrap();
    // A run.json from a future raftbench.
    let run = t.path().join("run");
    copy_files(&manifest("tests/fixtures/quickstart-run"), &run);
    let mut m = read_json(&run.join("run.json"));
    m["schema_version"] = 99.into();
    std::fs::write(run.join("run.json"), m.to_string()).unwrap();
    let o = raftbench(&["plot", run.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("run.json") && err.contains("99"), "{err}");

    // A compare.json from a future raftbench.
    let cmp = t.path().join("cmp");
    std::fs::create_dir_all(cmp.join("runs")).unwrap();
    copy_files(
        &manifest("tests/fixtures/quickstart-run"),
        &cmp.join("runs/memwal-1"),
    );
    let manifest_json = serde_json::json!({
        "schema_version": 99,
        "workload": "quickstart",
        "backends": ["memwal"],
        "repeat": 1,
        "fairness": "",
        "runs": [{"backend": "memwal", "repetition": 1, "dir": "runs/memwal-1"}],
    });
    std::fs::write(cmp.join("compare.json"), manifest_json.to_string()).unwrap();
    for args in [
        vec!["plot", cmp.to_str().unwrap()],
        vec!["diff", cmp.to_str().unwrap(), cmp.to_str().unwrap()],
    ] {
        let o = raftbench(&args);
        assert!(!o.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("compare.json") && err.contains("schema_version 99"),
            "{args:?}: {err}"
        );
    }
}
