//! Workloads: declarative scenario files and the generators that turn them into operations.
//!
//! - [`spec`]: the TOML format (phases, mixes, distributions, events); `rules`: the checks
//!   its parser cannot make;
//! - [`keys`]: key choosers (uniform, scrambled zipfian, latest, hotspot, sequential) and
//!   value makers (sizes, compressibility);
//! - [`runner`]: `raftbench run` — phases, open/closed loop, events; [`events`]: fault
//!   injection and recovery timing; [`verify`]: the lost-write model; [`output`]: the
//!   results directory; `recorded`: a workload read back from `run.json`.

pub mod events;
pub mod keys;
pub mod output;
mod recorded;
mod rules;
pub mod runner;
pub mod spec;
pub mod verify;

pub use spec::{SpecError, Workload};

/// `raftbench validate`: check each file (and, with `cluster`, that the cluster file gives
/// every control command its events need); one line per good file on `out`, each problem
/// on `err`. Returns how many files are invalid.
pub fn validate_files(
    files: &[std::path::PathBuf],
    cluster: Option<&std::path::Path>,
    out: &mut dyn std::io::Write,
    err: &mut dyn std::io::Write,
) -> std::io::Result<usize> {
    let mut bad = 0;
    for f in files {
        let checked = Workload::load(f)
            .map_err(runner::RunError::from)
            .and_then(|w| {
                if let Some(c) = cluster {
                    runner::check_controls(&w, c)?;
                }
                Ok(w)
            });
        match checked {
            Ok(w) => writeln!(
                out,
                "{}: ok ({} phases, {} keys)",
                f.display(),
                w.file.phases.len(),
                w.file.data.keys
            )?,
            Err(e) => {
                writeln!(err, "{e}")?;
                bad += 1;
            }
        }
    }
    Ok(bad)
}
