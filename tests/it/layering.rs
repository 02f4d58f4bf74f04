//! The two wings meet only at `wire` (DESIGN.md §1): no harness module imports the server
//! wing, the server never imports the harness, and `wire` imports neither. Checked on the
//! source text, so that a new `use` that crosses fails here before it spreads.

use std::path::{Path, PathBuf};

const SERVER: &[&str] = &["api", "kv", "node", "server", "storage", "transport"];
const HARNESS: &[&str] = &[
    "client",
    "cluster",
    "loadtest",
    "metrics",
    "pagecache",
    "procinfo",
    "report",
    "study",
    "workload",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level modules a file names through `crate::X` or `crate::{X, ..}`.
fn crate_refs(text: &str) -> Vec<String> {
    let mut refs = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                refs.push(name);
            }
        } else {
            refs.push(
                rest.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect(),
            );
        }
    }
    refs
}

/// The top-level module a file under `src/` belongs to (`src/node/raft_loop.rs` → `node`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

#[test]
fn wings_meet_only_at_wire() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut crossings = Vec::new();
    let mut checked = 0;
    for f in &files {
        let module = module_of(&src, f);
        let forbidden: Vec<&str> = if SERVER.contains(&module.as_str()) {
            HARNESS.to_vec()
        } else if HARNESS.contains(&module.as_str()) {
            SERVER.to_vec()
        } else if module == "wire" {
            SERVER.iter().chain(HARNESS).copied().collect()
        } else {
            continue; // lib.rs, main.rs, cli.rs: the top, which sees both wings
        };
        checked += 1;
        let text = std::fs::read_to_string(f).unwrap();
        for r in crate_refs(&text) {
            if forbidden.contains(&r.as_str()) {
                crossings.push(format!("{} ({module}) uses crate::{r}", f.display()));
            }
        }
    }
    assert!(
        checked > 30,
        "only {checked} files checked: is the module list stale?"
    );
    assert!(
        crossings.is_empty(),
        "wings cross:\n{}",
        crossings.join("\n")
    );
}

#[test]
fn the_checker_sees_grouped_and_plain_paths() {
    let refs = crate_refs("use crate::{node::X, wire};\nlet a = crate::storage::f();");
    assert_eq!(refs, ["node", "wire", "storage"]);
}

#[test]
fn every_module_belongs_to_a_wing() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    for line in lib.lines() {
        let Some(name) = line
            .strip_prefix("pub mod ")
            .or_else(|| line.strip_prefix("mod "))
        else {
            continue;
        };
        let name = name.trim_end_matches(';');
        assert!(
            SERVER.contains(&name) || HARNESS.contains(&name) || ["wire", "cli"].contains(&name),
            "module {name} is in neither wing: add it to tests/it/layering.rs"
        );
    }
}
