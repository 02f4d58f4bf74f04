//! Writing the combined run as a results directory, file for file as `raftbench run`
//! writes one, so that `plot` and `compare` read it like any other.

use std::path::Path;
use std::time::{Duration, SystemTime};

use super::Combined;
use crate::metrics::Outcome;
use crate::report::ReportError;
use crate::report::data::Kind;
use crate::workload::output::{self as run_output, HlogEntry};

/// The outcome a `latency.hlog` tag was written for.
fn outcome_of(s: &str) -> Outcome {
    match s {
        "error" => Outcome::Error,
        "indeterminate" => Outcome::Indeterminate,
        _ => Outcome::Ok,
    }
}

fn write_csv<T: serde::Serialize>(path: &Path, rows: &[T]) -> Result<(), ReportError> {
    let mut w = csv::Writer::from_path(path).map_err(ReportError::csv(path))?;
    for r in rows {
        w.serialize(r).map_err(ReportError::csv(path))?;
    }
    w.flush().map_err(ReportError::io(path))
}

/// Write `c` into `dir`: `summary.csv`, `timeline.hlog` (when every generator wrote one),
/// `timeline.csv`, generator 1's cluster-side files, `latency.hlog`, `verify.csv` and
/// `run.json`.
pub(super) fn write(dir: &Path, c: &Combined<'_>) -> Result<(), ReportError> {
    let runs = c.runs;
    write_csv(&dir.join("summary.csv"), &c.summary)?;

    if let Some(per_sec) = &c.per_second {
        let entries: Vec<HlogEntry> = per_sec
            .iter()
            .map(|((t, phase, op), h)| HlogEntry {
                tag: run_output::hlog_tag(phase, op, Outcome::Ok, false),
                start: Duration::from_secs(*t),
                duration: Duration::from_secs(1),
                histogram: h,
            })
            .collect();
        let started_at =
            humantime::parse_rfc3339(&runs[0].manifest.started_at).unwrap_or(SystemTime::now());
        let path = dir.join("timeline.hlog");
        run_output::write_hlog_entries(&path, started_at, &entries, Some("merged"))
            .map_err(ReportError::io(&path))?;
    }
    write_csv(&dir.join("timeline.csv"), &c.timeline)?;

    for f in [
        "events.csv",
        "recovery.csv",
        "resources.csv",
        "server-metrics.csv",
    ] {
        let from = c.lead.dir.join(f);
        // Results of versions before server-metrics.csv have none to copy.
        if f == "server-metrics.csv" && !from.exists() {
            continue;
        }
        std::fs::copy(&from, dir.join(f)).map_err(ReportError::io(&from))?;
    }

    // latency.hlog: the added histograms, with the same tags.
    let started_at =
        humantime::parse_rfc3339(&c.lead.manifest.started_at).unwrap_or(SystemTime::now());
    let elapsed = |phase: &str| {
        let base = phase.trim_end_matches(":warmup");
        let s = runs
            .iter()
            .flat_map(|r| &r.manifest.phases)
            .filter(|p| p.name == base)
            .map(|p| p.elapsed_s)
            .fold(0.0, f64::max);
        Duration::from_secs_f64(s)
    };
    let mut entries = Vec::new();
    for ((phase, op, kind), h) in &c.ok {
        entries.push(HlogEntry {
            tag: run_output::hlog_tag(phase, op, Outcome::Ok, *kind == Kind::Service),
            start: Duration::ZERO,
            duration: elapsed(phase),
            histogram: h,
        });
    }
    for ((phase, op, outcome), h) in &c.other {
        entries.push(HlogEntry {
            tag: run_output::hlog_tag(phase, op, outcome_of(outcome), false),
            start: Duration::ZERO,
            duration: elapsed(phase),
            histogram: h,
        });
    }
    let note = format!("merged from {} load generators", runs.len());
    let path = dir.join("latency.hlog");
    run_output::write_hlog_entries(&path, started_at, &entries, Some(&note))
        .map_err(ReportError::io(&path))?;

    if let Some(v) = &c.verify {
        run_output::write_verify_csv(dir, v).map_err(ReportError::io(&dir.join("verify.csv")))?;
    }

    let path = dir.join("run.json");
    c.run_json.save(&path).map_err(ReportError::io(&path))
}
