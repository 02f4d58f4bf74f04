//! JSON Schemas of the results files, generated from the Rust types that write them
//! (`schemars`), so that a schema cannot drift from the files: `raftbench schema DIR`
//! writes them, and the committed copies under `results/schema/` are checked against
//! this output by the tests. Compatibility rules: `results/README.md`.

use std::path::{Path, PathBuf};

use crate::report::ReportError;

/// Each results file's schema: (file name of the schema, the JSON file it describes,
/// the schema).
pub fn schemas() -> Vec<(&'static str, &'static str, serde_json::Value)> {
    let json = |s: schemars::Schema| s.to_value();
    vec![
        (
            "run.schema.json",
            "run.json",
            // The workload is the workload file's own format (workloads/README.md), recorded
            // as it ran: an object here.
            json(schemars::schema_for!(
                crate::wire::RunManifest<serde_json::Value>
            )),
        ),
        (
            "compare.schema.json",
            "compare.json",
            json(schemars::schema_for!(crate::study::compare::Manifest)),
        ),
        (
            "capacity.schema.json",
            "capacity.json",
            json(schemars::schema_for!(
                crate::study::capacity::json::CapacityReport
            )),
        ),
        (
            "diff.schema.json",
            "diff.json",
            json(schemars::schema_for!(crate::study::diff::DiffReport)),
        ),
    ]
}

/// The schemas as the files `raftbench schema` writes: pretty JSON, a newline at the end.
pub fn rendered() -> Vec<(&'static str, String)> {
    schemas()
        .into_iter()
        .map(|(name, _, s)| {
            let mut text = serde_json::to_string_pretty(&s).expect("a schema is JSON");
            text.push('\n');
            (name, text)
        })
        .collect()
}

/// Write every schema into `dir` (created when missing); returns the files written.
pub fn write(dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
    std::fs::create_dir_all(dir).map_err(ReportError::io(dir))?;
    let mut out = Vec::new();
    for (name, text) in rendered() {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(ReportError::io(&path))?;
        out.push(path);
    }
    Ok(out)
}
