//! `raftbench compare`: the same workload, seed and fsync policy on each backend, one run
//! after another in fresh data directories (interleaved A B A B with `--repeat`), then a
//! table of metrics with the ratio to the first backend and overlay charts.
//!
//! Fairness is structural: every run replays the same workload file with the same seed,
//! data set and `[cluster]` section; only the engine differs. It is printed and recorded.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::charts::{
    AnyChart, BarChart, BarSeries, ChartFile, Scale, Series, Style, XyChart, XyPanel, color,
};
use super::data::{Kind, RunData};
use super::html::{Page, esc};
use super::run_charts::spectrum_points;
use super::{Launch, ReportError, plot};
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

/// Whether a smaller or a larger value is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Lower,
    Higher,
}

impl Better {
    pub fn as_str(self) -> &'static str {
        match self {
            Better::Lower => "lower",
            Better::Higher => "higher",
        }
    }
}

/// One metric of one run.
#[derive(Debug, Clone)]
pub struct Metric {
    pub name: String,
    pub better: Better,
    pub value: f64,
}

/// The comparable metrics of a run: achieved throughput per phase; p50/p99/p99.9/max of
/// successful operations' corrected latency and failures per (phase, op); recovery times per
/// event; disk and memory bytes per key; acknowledged writes lost.
pub fn run_metrics(run: &RunData) -> Vec<Metric> {
    let mut m = Vec::new();
    let mut push = |name: String, better, value: f64| {
        m.push(Metric {
            name,
            better,
            value,
        })
    };
    for p in &run.manifest.phases {
        push(
            format!("{}.ops_per_sec", p.name),
            Better::Higher,
            p.achieved_rate,
        );
        let mut ops: Vec<&str> = run
            .summary
            .iter()
            .filter(|r| r.phase == p.name)
            .map(|r| r.op.as_str())
            .collect();
        ops.sort_unstable();
        ops.dedup();
        for op in ops {
            if let Some(r) = run.ok_row(&p.name, op) {
                for (q, v) in [
                    ("p50_us", r.p50_us),
                    ("p99_us", r.p99_us),
                    ("p999_us", r.p999_us),
                    ("max_us", r.max_us),
                ] {
                    push(format!("{}.{op}.{q}", p.name), Better::Lower, v as f64);
                }
            }
            let failed: u64 = run
                .summary
                .iter()
                .filter(|r| {
                    r.phase == p.name
                        && r.op == op
                        && r.outcome != "ok"
                        && r.latency_kind == "corrected"
                })
                .map(|r| r.count)
                .sum();
            push(
                format!("{}.{op}.failed", p.name),
                Better::Lower,
                failed as f64,
            );
        }
    }
    // Several nodes can report the same metric for one event (a snapshot on every node):
    // the slowest is what the cluster waited for.
    let mut rec: BTreeMap<(usize, String), (String, f64)> = BTreeMap::new();
    for r in &run.recovery {
        let e = rec
            .entry((r.event, r.metric.clone()))
            .or_insert((r.action.clone(), r.ms));
        e.1 = e.1.max(r.ms);
    }
    for ((event, metric), (action, v)) in rec {
        push(
            format!("recovery.{event}.{action}.{metric}"),
            Better::Lower,
            v,
        );
    }
    let fin = run.final_resources();
    if !fin.is_empty() {
        let n = fin.len() as f64;
        let disk = fin.values().map(|(r, _)| r.disk_bytes as f64).sum::<f64>() / n;
        let rss = fin.values().map(|(r, _)| r.rss_bytes as f64).sum::<f64>() / n;
        let peak = fin.values().map(|(_, p)| *p).max().unwrap_or(0) as f64;
        if let Some(keys) = run.keys_stored() {
            push(
                "disk_bytes_per_key".into(),
                Better::Lower,
                disk / keys as f64,
            );
            push("rss_bytes_per_key".into(), Better::Lower, rss / keys as f64);
        }
        push("rss_peak_bytes".into(), Better::Lower, peak);
    }
    if let Some(v) = &run.manifest.verify {
        push(
            "verify.lost_or_stale".into(),
            Better::Lower,
            (v.lost + v.stale) as f64,
        );
    }
    m
}

/// A metric aggregated over a backend's repeated runs.
#[derive(Debug, Clone)]
pub struct Aggregate {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub runs: usize,
}

pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A metric across backends.
#[derive(Debug, Clone)]
pub struct Row {
    pub metric: String,
    pub better: Better,
    /// Per backend, in `--backends` order; `None` where a backend lacks the metric.
    pub values: Vec<Option<Aggregate>>,
}

impl Row {
    /// The ratio of backend `i`'s median to the first backend's.
    pub fn ratio(&self, i: usize) -> Option<f64> {
        let a = self.values.first()?.as_ref()?.median;
        let b = self.values.get(i)?.as_ref()?.median;
        (a != 0.0).then(|| b / a)
    }

    /// Which backend did best on this metric.
    pub fn winner(&self) -> Winner {
        let vals: Vec<(usize, &Aggregate)> = self
            .values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| Some((i, v.as_ref()?)))
            .collect();
        if vals.len() < 2 {
            return Winner::Incomparable;
        }
        let best = match self.better {
            Better::Lower => vals.iter().min_by(|a, b| a.1.median.total_cmp(&b.1.median)),
            Better::Higher => vals.iter().max_by(|a, b| a.1.median.total_cmp(&b.1.median)),
        };
        let Some(best) = best else {
            return Winner::Incomparable;
        };
        // Within 2 % of each other a single-run difference says nothing.
        let close = |a: f64, b: f64| (a - b).abs() <= 0.02 * a.abs().max(b.abs());
        if vals.iter().all(|v| close(v.1.median, best.1.median)) {
            return Winner::Tie;
        }
        let overlaps = vals.iter().filter(|v| v.0 != best.0).any(|v| {
            v.1.min <= best.1.max && best.1.min <= v.1.max && (v.1.runs > 1 || best.1.runs > 1)
        });
        Winner::Best {
            index: best.0,
            overlaps,
        }
    }
}

/// The verdict on one metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Winner {
    /// Backend `index` is best; `overlaps` when its min–max range overlaps another
    /// backend's (the win is within run-to-run noise).
    Best { index: usize, overlaps: bool },
    /// Every backend within 2 % of the best.
    Tie,
    /// Fewer than two backends have the metric.
    Incomparable,
}

/// Aggregate per-run metrics: `runs[backend] = [metrics of each repetition]`.
pub fn aggregate(runs: &[Vec<Vec<Metric>>]) -> Vec<Row> {
    let mut order: Vec<(String, Better)> = Vec::new();
    let mut vals: BTreeMap<(String, usize), Vec<f64>> = BTreeMap::new();
    for (b, reps) in runs.iter().enumerate() {
        for metrics in reps {
            for m in metrics {
                if !order.iter().any(|(n, _)| n == &m.name) {
                    order.push((m.name.clone(), m.better));
                }
                vals.entry((m.name.clone(), b)).or_default().push(m.value);
            }
        }
    }
    order
        .into_iter()
        .map(|(metric, better)| Row {
            values: (0..runs.len())
                .map(|b| {
                    let mut v = vals.get(&(metric.clone(), b))?.clone();
                    let (min, max) = v
                        .iter()
                        .fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
                    Some(Aggregate {
                        runs: v.len(),
                        median: median(&mut v),
                        min,
                        max,
                    })
                })
                .collect(),
            metric,
            better,
        })
        .collect()
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
         rocksdb {}.",
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
    )
}

/// Create `dir`, refusing a non-empty one (results are never overwritten).
pub fn check_out_dir(dir: &Path) -> Result<(), ReportError> {
    if dir.exists()
        && std::fs::read_dir(dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
    {
        return Err(ReportError::Invalid(format!(
            "output directory {} is not empty",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| ReportError::file(dir, e))
}

/// Check the backend list: at least one, no duplicates.
pub fn check_backends(backends: &[BackendKind]) -> Result<(), ReportError> {
    if backends.is_empty() {
        return Err(ReportError::Invalid(
            "--backends: name at least one backend".into(),
        ));
    }
    for (i, b) in backends.iter().enumerate() {
        if backends[..i].contains(b) {
            return Err(ReportError::Invalid(format!(
                "--backends: {b} is listed twice"
            )));
        }
    }
    Ok(())
}

/// Run the comparison and write its directory.
pub async fn compare(o: CompareOptions) -> Result<Compared, ReportError> {
    check_backends(&o.backends)?;
    if o.repeat == 0 {
        return Err(ReportError::Invalid("--repeat must be at least 1".into()));
    }
    let w = o.launch.load(&o.workload)?;
    let dir = o.out.clone().unwrap_or_else(|| {
        let ts = humantime::format_rfc3339_seconds(SystemTime::now())
            .to_string()
            .replace(':', "");
        PathBuf::from("results").join(format!("{ts}-compare-{}", w.file.name))
    });
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
            let run = o.launch.run(&w, *b, &run_dir, o.launch.scale).await?;
            lost += run.manifest.verify.as_ref().map_or(0, |v| v.lost + v.stale);
            metrics[bi].push(run_metrics(&run));
            data[bi].push(run);
            runs.push((*b, rep + 1, run_dir));
        }
    }
    let manifest = Manifest {
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
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&manifest).map_err(|e| ReportError::file(&path, e))?,
    )
    .map_err(|e| ReportError::file(&path, e))?;
    let (rows, report) = write_comparison(&dir, &manifest, &metrics, &data)?;
    Ok(Compared {
        dir,
        rows,
        fairness: manifest.fairness,
        runs,
        lost,
        report,
    })
}

/// `compare.json`: what a comparison ran, so that `raftbench plot DIR` can redraw it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub workload: String,
    pub backends: Vec<BackendKind>,
    pub repeat: usize,
    pub fairness: String,
    pub runs: Vec<ManifestRun>,
}

/// One run of a comparison; `dir` is relative to the comparison directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    let text = std::fs::read_to_string(&path).map_err(|e| ReportError::file(&path, e))?;
    let manifest: Manifest =
        serde_json::from_str(&text).map_err(|e| ReportError::file(&path, e))?;
    let mut metrics: Vec<Vec<Vec<Metric>>> = vec![Vec::new(); manifest.backends.len()];
    let mut data: Vec<Vec<RunData>> = vec![Vec::new(); manifest.backends.len()];
    for r in &manifest.runs {
        let bi = manifest
            .backends
            .iter()
            .position(|b| *b == r.backend)
            .ok_or_else(|| {
                ReportError::file(
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
    Ok(write_comparison(dir, &manifest, &metrics, &data)?.1)
}

/// `comparison.csv`, `comparison.md`, the overlay charts and `report.html`.
fn write_comparison(
    dir: &Path,
    m: &Manifest,
    metrics: &[Vec<Vec<Metric>>],
    data: &[Vec<RunData>],
) -> Result<(Vec<Row>, PathBuf), ReportError> {
    let rows = aggregate(metrics);
    let names: Vec<String> = m.backends.iter().map(|b| b.to_string()).collect();
    write_csv(dir, &names, &rows)?;
    std::fs::write(
        dir.join("comparison.md"),
        markdown(&names, &rows, &m.fairness, m.repeat),
    )
    .map_err(|e| ReportError::file(&dir.join("comparison.md"), e))?;
    let charts = overlay_charts(&dir.join("charts"), &names, data, &rows)?;
    let report = dir.join("report.html");
    let mut page = Page::new(&format!("raftbench compare: {}", m.workload));
    page.p(&m.fairness);
    page.h2("Comparison");
    page.raw(&html_table(&names, &rows, m.repeat));
    page.h2("Charts");
    for c in &charts {
        page.chart(c, dir)?;
    }
    page.h2("Runs");
    let mut list = String::from("<ul>");
    for r in &m.runs {
        let rel = r.dir.join("report.html");
        let _ = write!(
            list,
            "<li><a href=\"{0}\">{1} repetition {2}</a></li>",
            esc(&rel.to_string_lossy()),
            esc(&r.backend.to_string()),
            r.repetition
        );
    }
    list.push_str("</ul>");
    page.raw(&list);
    page.write(&report)?;
    Ok((rows, report))
}

fn write_csv(dir: &Path, names: &[String], rows: &[Row]) -> Result<(), ReportError> {
    let path = dir.join("comparison.csv");
    let err = |e: csv::Error| ReportError::file(&path, e);
    let mut w = csv::Writer::from_path(&path).map_err(err)?;
    w.write_record([
        "metric",
        "backend",
        "value",
        "min",
        "max",
        "runs",
        "ratio_to_first",
        "better",
    ])
    .map_err(err)?;
    for r in rows {
        for (i, v) in r.values.iter().enumerate() {
            let Some(v) = v else { continue };
            w.write_record([
                r.metric.clone(),
                names[i].clone(),
                v.median.to_string(),
                v.min.to_string(),
                v.max.to_string(),
                v.runs.to_string(),
                r.ratio(i).map_or(String::new(), |x| format!("{x:.4}")),
                r.better.as_str().to_string(),
            ])
            .map_err(err)?;
        }
    }
    w.flush().map_err(|e| ReportError::file(&path, e))
}

/// A value with its unit, from the metric's name.
fn fmt_metric(metric: &str, v: f64) -> String {
    if metric.ends_with("_us") {
        plot::fmt_us(v)
    } else if metric.ends_with("_ms") {
        plot::fmt_us(v * 1e3)
    } else if metric.ends_with("_bytes") || metric.ends_with("bytes_per_key") {
        plot::fmt_bytes(v)
    } else if metric.ends_with("ops_per_sec") {
        format!("{v:.0}/s")
    } else {
        super::charts::fmt_num(v)
    }
}

fn cell(r: &Row, i: usize, repeat: usize) -> String {
    let Some(v) = &r.values[i] else {
        return "-".into();
    };
    let mut s = fmt_metric(&r.metric, v.median);
    if repeat > 1 {
        let _ = write!(
            s,
            " ({}–{})",
            fmt_metric(&r.metric, v.min),
            fmt_metric(&r.metric, v.max)
        );
    }
    if i > 0
        && let Some(x) = r.ratio(i)
    {
        let _ = write!(s, " ×{x:.2}");
    }
    s
}

fn winner_text(r: &Row, names: &[String]) -> String {
    match r.winner() {
        Winner::Tie => "tie (within 2 %)".into(),
        Winner::Incomparable => "n/a (not measured on every backend)".into(),
        Winner::Best {
            index,
            overlaps: false,
        } => names[index].clone(),
        Winner::Best {
            index,
            overlaps: true,
        } => format!("{} (ranges overlap)", names[index]),
    }
}

fn markdown(names: &[String], rows: &[Row], fair: &str, repeat: usize) -> String {
    let mut s = String::from("# raftbench comparison\n\n");
    let _ = writeln!(s, "{fair}\n");
    if repeat > 1 {
        let _ = writeln!(
            s,
            "Each cell: median of {repeat} interleaved runs (min–max), then the ratio to {}.\n",
            names[0]
        );
    } else {
        let _ = writeln!(s, "One run per backend; ×N is the ratio to {}.\n", names[0]);
    }
    let _ = write!(s, "| metric | better |");
    for n in names {
        let _ = write!(s, " {n} |");
    }
    s.push_str(" winner |\n|---|---|");
    for _ in names {
        s.push_str("---:|");
    }
    s.push_str("---|\n");
    for r in rows {
        let _ = write!(s, "| {} | {} |", r.metric, r.better.as_str());
        for i in 0..names.len() {
            let _ = write!(s, " {} |", cell(r, i, repeat));
        }
        let _ = writeln!(s, " {} |", winner_text(r, names));
    }
    s
}

fn html_table(names: &[String], rows: &[Row], repeat: usize) -> String {
    let mut s = String::from("<table><tr><th>metric</th><th>better</th>");
    for n in names {
        let _ = write!(s, "<th>{}</th>", esc(n));
    }
    s.push_str("<th>winner</th></tr>\n");
    for r in rows {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td>",
            esc(&r.metric),
            r.better.as_str()
        );
        for i in 0..names.len() {
            let _ = write!(s, "<td>{}</td>", esc(&cell(r, i, repeat)));
        }
        let _ = writeln!(
            s,
            "<td class=\"l\">{}</td></tr>",
            esc(&winner_text(r, names))
        );
    }
    s.push_str("</table>\n");
    s
}

fn bars(
    rows: &[Row],
    names: &[String],
    pick: impl Fn(&str) -> Option<String>,
) -> (Vec<String>, BarSeries) {
    let chosen: Vec<(&Row, String)> = rows
        .iter()
        .filter_map(|r| Some((r, pick(&r.metric)?)))
        .collect();
    let categories = chosen.iter().map(|(_, l)| l.clone()).collect();
    let series = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            (
                n.clone(),
                chosen
                    .iter()
                    .map(|(r, _)| {
                        r.values[i]
                            .as_ref()
                            .map(|a| (a.median, (a.runs > 1).then_some((a.min, a.max))))
                    })
                    .collect(),
            )
        })
        .collect();
    (categories, series)
}

fn overlay_charts(
    dir: &Path,
    names: &[String],
    data: &[Vec<RunData>],
    rows: &[Row],
) -> Result<Vec<ChartFile>, ReportError> {
    let mut out = Vec::new();
    let Some(first) = data.iter().flatten().next() else {
        return Ok(out);
    };
    let m = &first.manifest;
    let title = format!("{} · fsync={}", m.workload.file.name, m.fsync);
    // Latency spectra: one chart per op, one line per (backend, phase), repetitions added.
    let mut merged: BTreeMap<(String, String, usize), Histogram<u64>> = BTreeMap::new();
    for (bi, runs) in data.iter().enumerate() {
        for run in runs {
            for ((phase, op, kind), h) in &run.histograms {
                if *kind != Kind::Corrected {
                    continue;
                }
                merged
                    .entry((op.clone(), phase.clone(), bi))
                    .and_modify(|acc| {
                        let _ = acc.add(h);
                    })
                    .or_insert_with(|| h.clone());
            }
        }
    }
    let mut ops: Vec<String> = merged.keys().map(|k| k.0.clone()).collect();
    ops.dedup();
    for op in &ops {
        let mut panel = XyPanel::new("percentile", Scale::Nines, "latency (ms)", Scale::Log);
        let phases: Vec<String> = {
            let mut p: Vec<String> = merged
                .keys()
                .filter(|k| &k.0 == op)
                .map(|k| k.1.clone())
                .collect();
            p.sort();
            p.dedup();
            p
        };
        for ((o, phase, bi), h) in &merged {
            if o != op {
                continue;
            }
            let pi = phases.iter().position(|p| p == phase).unwrap_or(0);
            panel.series.push(Series {
                label: format!("{} · {phase} (n={})", names[*bi], h.len()),
                color: color(*bi),
                style: if pi == 0 { Style::Line } else { Style::Dashed },
                points: spectrum_points(h),
            });
        }
        let c = AnyChart::Xy(XyChart {
            title: format!("{title} — {op} latency spectrum (corrected) by backend"),
            panels: vec![panel],
            size: (1000, 620),
        });
        out.push(c.save(
            dir,
            &format!("spectrum-{op}"),
            &format!("{op}: corrected latency at each percentile, all backends (repetitions merged; phases alphabetically: solid, then dashed)"),
        )?);
    }
    type Pick = Box<dyn Fn(&str) -> Option<String>>;
    let charts: [(&str, &str, &str, Pick); 3] = [
        (
            "throughput",
            "achieved ops/s",
            "Achieved throughput per phase (median; whiskers = min–max of repetitions)",
            Box::new(|m: &str| m.strip_suffix(".ops_per_sec").map(str::to_string)),
        ),
        (
            "recovery",
            "milliseconds",
            "Recovery times per event (slowest node), by backend",
            Box::new(|m: &str| {
                let rest = m.strip_prefix("recovery.")?;
                rest.ends_with("_ms").then(|| {
                    let mut parts = rest.splitn(3, '.');
                    let (e, a, metric) = (parts.next()?, parts.next()?, parts.next()?);
                    Some(format!("#{e} {a}: {}", metric.trim_end_matches("_ms")))
                })?
            }),
        ),
        (
            "bytes-per-key",
            "bytes per key (per node, at the end of the run)",
            "Disk and memory per stored key: data-directory size and RSS per node divided by the keys stored",
            Box::new(|m: &str| match m {
                "disk_bytes_per_key" => Some("disk".into()),
                "rss_bytes_per_key" => Some("RSS".into()),
                _ => None,
            }),
        ),
    ];
    for (name, x_desc, caption, pick) in charts {
        let (categories, series) = bars(rows, names, pick);
        if categories.is_empty() {
            continue;
        }
        let c = AnyChart::Bar(BarChart {
            title: format!("{title} — {}", name.replace('-', " ")),
            x_desc: x_desc.into(),
            categories,
            series,
        });
        out.push(c.save(dir, name, caption)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, better: Better, value: f64) -> Metric {
        Metric {
            name: name.into(),
            better,
            value,
        }
    }

    #[test]
    fn aggregates_medians_ratios_and_winners() {
        let runs = vec![
            vec![
                vec![
                    m("p99", Better::Lower, 10.0),
                    m("tput", Better::Higher, 100.0),
                ],
                vec![
                    m("p99", Better::Lower, 14.0),
                    m("tput", Better::Higher, 90.0),
                ],
                vec![
                    m("p99", Better::Lower, 12.0),
                    m("tput", Better::Higher, 95.0),
                ],
            ],
            vec![
                vec![
                    m("p99", Better::Lower, 30.0),
                    m("tput", Better::Higher, 92.0),
                ],
                vec![
                    m("p99", Better::Lower, 20.0),
                    m("tput", Better::Higher, 99.0),
                ],
                vec![
                    m("p99", Better::Lower, 24.0),
                    m("tput", Better::Higher, 91.0),
                ],
            ],
        ];
        let rows = aggregate(&runs);
        assert_eq!(rows[0].metric, "p99");
        let a = rows[0].values[0].as_ref().unwrap();
        assert_eq!((a.median, a.min, a.max, a.runs), (12.0, 10.0, 14.0, 3));
        assert_eq!(rows[0].ratio(1), Some(2.0));
        assert_eq!(
            rows[0].winner(),
            Winner::Best {
                index: 0,
                overlaps: false
            }
        );
        // 95 vs 92 with overlapping ranges: a win within the noise.
        assert_eq!(
            rows[1].winner(),
            Winner::Best {
                index: 0,
                overlaps: true
            }
        );
        let only_one = aggregate(&[vec![vec![m("x", Better::Lower, 1.0)]], vec![vec![]]]);
        assert_eq!(only_one[0].winner(), Winner::Incomparable);
        let tie = aggregate(&[
            vec![vec![m("x", Better::Lower, 100.0)]],
            vec![vec![m("x", Better::Lower, 101.0)]],
        ]);
        assert_eq!(tie[0].winner(), Winner::Tie);
        let mut even = [4.0, 1.0, 3.0, 2.0];
        assert_eq!(median(&mut even), 2.5);
    }

    #[test]
    fn rejects_duplicate_backends() {
        assert!(check_backends(&[BackendKind::Memwal, BackendKind::Memwal]).is_err());
        assert!(check_backends(&[]).is_err());
    }
}
