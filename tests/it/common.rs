//! Helpers the test modules share: running the binary, finding files of this repository,
//! reading result files. Each panics with the command or path in its message, as a test
//! assertion would.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};

/// The `raftbench` binary cargo built for these tests.
pub const RAFTBENCH: &str = env!("CARGO_BIN_EXE_raftbench");

/// A command running the `raftbench` binary, for tests that spawn it or pass paths.
pub fn command() -> Command {
    Command::new(RAFTBENCH)
}

/// Run `raftbench args…` to completion.
pub fn raftbench(args: &[&str]) -> Output {
    command().args(args).output().expect("run raftbench")
}

/// `raftbench run WORKLOAD --out OUT extra…`, to completion.
pub fn run_workload(workload: &Path, out: &Path, extra: &[&str]) -> Output {
    command()
        .arg("run")
        .arg(workload)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .expect("run raftbench")
}

/// Assert that `o` succeeded (showing its output otherwise); return its stderr.
pub fn ok(o: &Output) -> String {
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(
        o.status.success(),
        "stdout: {}\nstderr: {stderr}",
        String::from_utf8_lossy(&o.stdout)
    );
    stderr
}

/// A path in this repository (fixtures, shipped workloads), independent of the working
/// directory the test runs in.
pub fn manifest(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The records of a CSV file with a header line, addressed by column position.
pub fn csv_rows(path: &Path) -> Vec<csv::StringRecord> {
    let mut r = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    r.records()
        .map(|x| x.unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .collect()
}

/// The records of a CSV file with a header line, addressed by column name.
pub fn csv_named_rows(path: &Path) -> Vec<HashMap<String, String>> {
    let mut r = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let headers = r.headers().unwrap().clone();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            headers
                .iter()
                .map(String::from)
                .zip(rec.iter().map(String::from))
                .collect()
        })
        .collect()
}

/// A JSON file (such as a results directory's `run.json`), untyped.
pub fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Copy the files directly in `from` (a results directory, a fixture) into `to`, creating
/// it; subdirectories (charts) are left behind.
pub fn copy_files(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
    for e in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let p = e.unwrap().path();
        if p.is_file() {
            let dest = to.join(p.file_name().unwrap());
            std::fs::copy(&p, &dest)
                .unwrap_or_else(|e| panic!("{} -> {}: {e}", p.display(), dest.display()));
        }
    }
}

/// Send SIGINT to `child` (what Ctrl-C sends `raftbench cluster up`).
pub fn interrupt(child: &Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
}

/// Assert that no `raftbench node` process has its data directory under `dir` (including
/// nodes a control command restarted, which are nobody's children).
pub fn assert_no_nodes_under(dir: &Path) {
    // `'?`: the shell line of a control command that started a node quotes the directory.
    let pids = Command::new("pgrep")
        .args(["-f", &format!("data-dir '?{}", dir.display())])
        .output()
        .unwrap();
    assert_eq!(pids.status.code(), Some(1), "nodes still running: {pids:?}");
}

/// A validator for the committed schema `results/schema/<schema>`.
pub fn validator(schema: &str) -> jsonschema::Validator {
    let path = manifest("results/schema").join(schema);
    jsonschema::validator_for(&read_json(&path))
        .unwrap_or_else(|e| panic!("{}: not a usable schema: {e}", path.display()))
}

/// Assert that the JSON file `doc` validates against the committed schema
/// `results/schema/<schema>` (e.g. `run.schema.json`), listing every violation otherwise.
pub fn assert_valid(schema: &str, doc: &Path) {
    let validator = validator(schema);
    let value = read_json(doc);
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{} does not validate against {schema}:\n{}",
        doc.display(),
        errors.join("\n")
    );
}
