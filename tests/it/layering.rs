//! The two wings meet only at `wire` (DESIGN.md §1): no harness module imports the server
//! wing, the server never imports the harness, and `wire` imports neither. Checked on the
//! source text, so that a new `use` that crosses fails here before it spreads.

use std::path::{Path, PathBuf};

const SERVER: &[&str] = &["api", "kv", "node", "server", "storage", "transport"];
const HARNESS: &[&str] = &[
    "client",
    "cluster",
    "faultfs",
    "loadtest",
    "metrics",
    "pagecache",
    "procinfo",
    "remote",
    "report",
    "study",
    "target",
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

fn ident(s: &str) -> String {
    s.trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// The first names of a path's tail: `x::...` gives `x`; a group `{a::{b, c}, d}` gives
/// `a` and `d` (items split at its own commas, however deeply they nest).
fn names_after(rest: &str) -> Vec<String> {
    let Some(group) = rest.trim_start().strip_prefix('{') else {
        return vec![ident(rest)];
    };
    let (mut names, mut depth, mut start) = (Vec::new(), 1, 0);
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' | ',' if depth == 1 => {
                names.push(ident(&group[start..i]));
                start = i + 1;
                if c == '}' {
                    break;
                }
            }
            '}' => depth -= 1,
            _ => {}
        }
    }
    names.retain(|n| !n.is_empty());
    names
}

/// The top-level modules a file names: through `crate::` paths, and through `super::`
/// chains long enough to climb from the file's module (`depth` segments deep, e.g. 3 for
/// `src/study/capacity/search.rs`) to the crate root.
fn crate_refs(text: &str, depth: usize) -> Vec<String> {
    let mut refs = Vec::new();
    for (i, _) in text.match_indices("crate::") {
        refs.extend(names_after(&text[i + "crate::".len()..]));
    }
    let mut at = 0;
    while let Some(i) = text[at..].find("super::") {
        let mut rest = &text[at + i..];
        let mut k = 0;
        while let Some(r) = rest.strip_prefix("super::") {
            rest = r;
            k += 1;
        }
        if k >= depth {
            refs.extend(names_after(rest));
        }
        at = text.len() - rest.len();
    }
    refs
}

/// The top-level module a file under `src/` belongs to (`src/node/raft_loop.rs`: `node`),
/// and how many module segments deep the file is (`node::raft_loop`: 2; `node/mod.rs`: 1).
fn module_of(src: &Path, file: &Path) -> (String, usize) {
    let rel = file.strip_prefix(src).unwrap();
    let parts: Vec<String> = rel
        .components()
        .map(|c| {
            c.as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string()
        })
        .collect();
    let depth = parts.len() - usize::from(parts.last().is_some_and(|p| p == "mod"));
    (parts[0].clone(), depth)
}

#[test]
fn wings_meet_only_at_wire() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut crossings = Vec::new();
    let mut checked = 0;
    for f in &files {
        let (module, depth) = module_of(&src, f);
        // `cli` is the top (it names both wings' flags): no wing imports it.
        let forbidden: Vec<&str> = if SERVER.contains(&module.as_str()) {
            HARNESS.iter().chain(&["cli"]).copied().collect()
        } else if HARNESS.contains(&module.as_str()) {
            SERVER.iter().chain(&["cli"]).copied().collect()
        } else if module == "wire" {
            SERVER
                .iter()
                .chain(HARNESS)
                .chain(&["cli"])
                .copied()
                .collect()
        } else if ["lib", "main", "cli"].contains(&module.as_str()) {
            continue; // the top, which sees both wings
        } else {
            panic!(
                "{} is in neither wing: add its module to tests/it/layering.rs",
                f.display()
            );
        };
        checked += 1;
        let text = std::fs::read_to_string(f).unwrap();
        for r in crate_refs(&text, depth) {
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
fn the_checker_sees_grouped_nested_plain_and_super_paths() {
    let refs = crate_refs(
        "use crate::{node::X, wire};\nlet a = crate::storage::f();",
        1,
    );
    assert_eq!(refs, ["node", "wire", "storage"]);
    let refs = crate_refs("use crate::{wire::{A, B}, node::Input, self};", 1);
    assert_eq!(refs, ["wire", "node", "self"]);
    // From study::capacity::search (3 deep), super::super::super is the crate root;
    // super::super (study) is not.
    let text = "use super::super::super::{node::X, wire};\nuse super::super::launch::L;";
    assert_eq!(crate_refs(text, 3), ["node", "wire"]);
    assert_eq!(crate_refs("use super::node::X;", 1), ["node"]);
    assert!(crate_refs("use super::node::X;", 2).is_empty());
}

#[test]
fn every_module_belongs_to_a_wing() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    for line in lib.lines() {
        // `mod x;`, `pub mod x;`, `pub(crate) mod x;` ...
        let Some((_, rest)) = line.split_once("mod ") else {
            continue;
        };
        if !line.trim_start().starts_with("mod ") && !line.trim_start().starts_with("pub") {
            continue;
        }
        let name = rest.trim_end_matches(';').trim();
        assert!(
            SERVER.contains(&name) || HARNESS.contains(&name) || ["wire", "cli"].contains(&name),
            "module {name} is in neither wing: add it to tests/it/layering.rs"
        );
    }
}
