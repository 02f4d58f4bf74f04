//! `raftbench compare`: the same workload, seed and fsync policy on each backend, one run
//! after another in fresh data directories (interleaved A B A B with `--repeat`), then a
//! table of metrics with the ratio to the first backend and overlay charts.
//!
//! Fairness is structural: every run replays the same workload file with the same seed,
//! data set and `[cluster]` section; only the engine differs. It is printed and recorded.
//!
//! In files: `metrics` (what is compared, per run), `aggregate` (repetitions reduced, ratios
//! and winners), `charts` (overlays) and `output` (`comparison.csv`/`.md`, `report.html`);
//! this module runs the comparison and redraws it from `compare.json`.

mod aggregate;
mod charts;
mod metrics;
mod output;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use aggregate::{Aggregate, Row, Winner, aggregate, median};
pub use metrics::{Better, Metric, run_metrics};

use super::{Launch, StudyError, check_backends, check_out_dir, default_out_dir};
use crate::report::data::RunData;
use crate::report::{ReportError, plot};
use crate::wire::BackendKind;
use crate::workload::Workload;
use crate::workload::spec::{Action, CacheState, ValueSize};

/// `raftbench compare` options.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    pub workload: PathBuf,
    pub backends: Vec<BackendKind>,
    pub repeat: usize,
    /// Default `results/<utc>-compare-<workload>`.
    pub out: Option<PathBuf>,
    pub launch: Launch,
}

/// What a comparison wrote.
#[derive(Debug)]
pub struct Compared {
    pub dir: PathBuf,
    pub rows: Vec<Row>,
    pub fairness: String,
    /// (backend, repetition, run directory).
    pub runs: Vec<(BackendKind, usize, PathBuf)>,
    /// Acknowledged writes lost or stale, summed over every run (non-zero fails the
    /// command, after everything is written).
    pub lost: u64,
    pub report: PathBuf,
}

impl Compared {
    /// The comparison table (`comparison.md`) and where the results are, for a terminal.
    pub fn write_summary(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        write!(
            out,
            "{}",
            std::fs::read_to_string(self.dir.join("comparison.md"))?
        )?;
        writeln!(out, "\nresults: {}", self.dir.display())?;
        writeln!(out, "report: {}", self.report.display())
    }
}

/// The conditions every backend ran under, in one paragraph.
pub fn fairness(w: &Workload, backends: &[BackendKind]) -> String {
    let f = &w.file;
    let c = &f.cluster;
    let value = match &f.data.value_size {
        ValueSize::Fixed(n) => format!("{n} B values"),
        other => format!(
            "values {}",
            serde_json::to_string(other).unwrap_or_default()
        ),
    };
    let restarts: Vec<CacheState> = f
        .phases
        .iter()
        .flat_map(|p| p.get_ref().events.iter())
        .map(|e| e.get_ref())
        .filter(|e| e.action == Action::Restart)
        .map(|e| e.cache)
        .collect();
    let restarts = match (
        restarts.contains(&CacheState::Warm),
        restarts.contains(&CacheState::Cold),
    ) {
        (false, false) => String::new(),
        (true, false) => ", restarts with a warm page cache".into(),
        (false, true) => ", restarts with a cold page cache (data evicted first)".into(),
        (true, true) => ", restarts warm and cold as each event says".into(),
    };
    format!(
        "Same for every backend ({}): workload file {} (\"{}\"), seed {}, fsync={}, {} nodes, \
         data set {} keys of {} B with {value} ({}% random bytes), snapshot every {} entries \
         keeping {} behind, a fresh data directory per run{restarts}. Engine options: memwal {}, \
         rocksdb {}, raft_engine {}, redb {}.",
        backends
            .iter()
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        w.path.display(),
        f.name,
        f.seed,
        c.fsync,
        c.nodes,
        f.data.keys,
        f.data.key_size,
        (f.data.value_random_share * 100.0).round(),
        c.snapshot_interval,
        c.compact_lag,
        serde_json::to_string(&c.memwal).unwrap_or_default(),
        serde_json::to_string(&c.rocksdb).unwrap_or_default(),
        serde_json::to_string(&c.raft_engine).unwrap_or_default(),
        serde_json::to_string(&c.redb).unwrap_or_default(),
    ) + &peer_differences(c, backends)
}

/// What differs for a peer system (etcd) among `backends`: its own raft, WAL and backend,
/// and how the workload's settings were translated for it.
fn peer_differences(c: &crate::workload::spec::ClusterSection, backends: &[BackendKind]) -> String {
    if !backends.iter().any(|b| b.is_peer()) {
        return String::new();
    }
    format!(
        " What differs for {}. etcd options {}.",
        crate::target::etcd::launch::EtcdLaunch::differences(&c.raft(), &c.etcd),
        serde_json::to_string(&c.etcd).unwrap_or_default()
    )
}

/// Run the comparison and write its directory.
pub async fn compare(o: CompareOptions) -> Result<Compared, StudyError> {
    check_backends(&o.backends)?;
    if o.repeat == 0 {
        return Err(StudyError::Invalid("--repeat must be at least 1".into()));
    }
    let w = o.launch.load(&o.workload)?;
    o.launch.check_each_backend(&w, &o.backends)?;
    let dir = o
        .out
        .clone()
        .unwrap_or_else(|| default_out_dir("compare", &w.file.name));
    check_out_dir(&dir)?;
    let fair = fairness(&w, &o.backends);
    eprintln!("fairness: {fair}");

    let mut runs = Vec::new();
    let mut lost = 0;
    let mut metrics: Vec<Vec<Vec<Metric>>> = vec![Vec::new(); o.backends.len()];
    let mut data: Vec<Vec<RunData>> = vec![Vec::new(); o.backends.len()];
    let total = o.repeat * o.backends.len();
    for rep in 0..o.repeat {
        for (bi, b) in o.backends.iter().enumerate() {
            let run_dir = dir.join("runs").join(format!("{b}-{}", rep + 1));
            eprintln!(
                "compare: run {}/{total}: {b} (repetition {}) -> {}",
                rep * o.backends.len() + bi + 1,
                rep + 1,
                run_dir.display()
            );
            let run = o
                .launch
                .run(&w, *b, &run_dir, o.launch.replay.scale)
                .await?;
            // Loss the workload declared expected is a figure of the table, not a failure.
            lost += run
                .manifest
                .verify
                .as_ref()
                .filter(|v| v.fails())
                .map_or(0, |v| v.lost_writes());
            metrics[bi].push(run_metrics(&run));
            data[bi].push(run);
            runs.push((*b, rep + 1, run_dir));
        }
    }
    let manifest = Manifest {
        schema_version: COMPARE_SCHEMA,
        workload: w.file.name.clone(),
        backends: o.backends.clone(),
        repeat: o.repeat,
        fairness: fair,
        runs: runs
            .iter()
            .map(|(b, rep, d)| ManifestRun {
                backend: *b,
                repetition: *rep,
                dir: d.strip_prefix(&dir).unwrap_or(d).to_path_buf(),
            })
            .collect(),
    };
    let path = dir.join("compare.json");
    let json = serde_json::to_string_pretty(&manifest).map_err(ReportError::json(&path))?;
    std::fs::write(&path, json).map_err(ReportError::io(&path))?;
    let (rows, report) = output::write_comparison(&dir, &manifest, &metrics, &data)?;
    Ok(Compared {
        dir,
        rows,
        fairness: manifest.fairness,
        runs,
        lost,
        report,
    })
}

/// The `schema_version` of `compare.json`.
pub const COMPARE_SCHEMA: u32 = 1;

/// `compare.json`: what a comparison ran, so that `raftbench plot DIR` can redraw it.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Manifest {
    /// Absent from comparisons written before the field: those are version 1.
    #[serde(default = "compare_schema_v1")]
    pub schema_version: u32,
    pub workload: String,
    pub backends: Vec<BackendKind>,
    pub repeat: usize,
    pub fairness: String,
    pub runs: Vec<ManifestRun>,
}

fn compare_schema_v1() -> u32 {
    1
}

impl Manifest {
    /// Read `compare.json`, refusing a `schema_version` this raftbench does not know.
    pub fn load(path: &Path) -> Result<Manifest, ReportError> {
        let text = std::fs::read_to_string(path).map_err(ReportError::io(path))?;
        let m: Manifest = serde_json::from_str(&text).map_err(ReportError::json(path))?;
        if m.schema_version != COMPARE_SCHEMA {
            return Err(ReportError::malformed(
                path,
                format!(
                    "schema_version {} is not one this raftbench reads (it reads {COMPARE_SCHEMA})",
                    m.schema_version
                ),
            ));
        }
        Ok(m)
    }
}

/// One run of a comparison; `dir` is relative to the comparison directory.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ManifestRun {
    pub backend: BackendKind,
    pub repetition: usize,
    pub dir: PathBuf,
}

/// Whether `dir` holds a comparison (rather than a single run).
pub fn is_comparison(dir: &Path) -> bool {
    dir.join("compare.json").is_file()
}

/// Redraw a comparison from its runs' results files: each run's charts and report, then
/// the table, overlay charts and report (`raftbench plot DIR`).
pub fn replot(dir: &Path) -> Result<PathBuf, ReportError> {
    let path = dir.join("compare.json");
    let manifest = Manifest::load(&path)?;
    let mut metrics: Vec<Vec<Vec<Metric>>> = vec![Vec::new(); manifest.backends.len()];
    let mut data: Vec<Vec<RunData>> = vec![Vec::new(); manifest.backends.len()];
    for r in &manifest.runs {
        let bi = manifest
            .backends
            .iter()
            .position(|b| *b == r.backend)
            .ok_or_else(|| {
                ReportError::malformed(
                    &path,
                    format!("run {} names an unlisted backend", r.dir.display()),
                )
            })?;
        let run_dir = dir.join(&r.dir);
        plot::plot_run(&run_dir)?;
        let run = RunData::load(&run_dir)?;
        metrics[bi].push(run_metrics(&run));
        data[bi].push(run);
    }
    Ok(output::write_comparison(dir, &manifest, &metrics, &data)?.1)
}
