//! `raftbench diff BASE NEW`: did a change make things worse?
//!
//! BASE and NEW are each a results directory (`raftbench run`) or a comparison
//! (`raftbench compare`, with `--repeat`). Runs are paired by backend (two single runs of
//! different backends are paired with each other), then by phase and operation. For every
//! metric ([`threshold::METRICS`]):
//! - **the change**: NEW's value against BASE's, in percent, each the median over its
//!   repeats of the run's own figure (`summary.csv`: corrected latency of successful
//!   operations, successful ops/s);
//! - **its significance**: a two-sided Mann-Whitney U test ([`mwu`], which says why this
//!   test) between the two sides' *per-second* values in the phase's measured window
//!   (after warm-up; the partial first and last seconds left out), pooled over repeats:
//!   ops per second from `timeline.csv` (a second without a successful operation counts
//!   0), latency percentiles of each second from `timeline.hlog`. Seconds of one run are
//!   not independent (a compaction spans several), so a single run's verdict is about that
//!   run; repeats (`compare --repeat`) make it about the change;
//! - **the verdict**: `regression` when the change crosses its threshold in the worse
//!   direction *and* p < α; `worse`/`improvement` for a significant change short of the
//!   threshold (or without one) / in the better direction; `inconsistent` when the
//!   per-second values moved significantly the other way from the whole-window figure (one
//!   long stall can raise a run's p99 while most of its seconds got faster); `not
//!   significant`; `no test` when a side has no per-second values.
//!
//! `diff.md` and `diff.json` (with `schema_version`) are written to the output directory;
//! the caller exits non-zero when there is a regression.

pub mod mwu;
pub mod threshold;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use threshold::{Threshold, ThresholdError};

use super::{StudyError, check_out_dir};
use crate::report::ReportError;
use crate::report::data::RunData;
use crate::workload::output::SummaryRow;

/// The `schema_version` of `diff.json`.
pub const DIFF_SCHEMA: u32 = 1;

/// `raftbench diff` options.
#[derive(Debug, Clone)]
pub struct DiffOptions {
    pub base: PathBuf,
    pub new: PathBuf,
    pub thresholds: Vec<Threshold>,
    /// Significance level: a change counts when p < alpha.
    pub alpha: f64,
    pub out: PathBuf,
}

/// One metric of one (backend, phase, op).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DiffRow {
    /// The backend (`memwal → rocksdb` for two single runs of different backends).
    pub backend: String,
    pub phase: String,
    pub op: String,
    /// `ops_per_sec`, `p50`, `p90`, `p99`, `p999` or `max` (latencies in µs).
    pub metric: String,
    /// Median over each side's repeats of the run's figure.
    pub base: f64,
    pub new: f64,
    /// (new − base) / base × 100; `None` when base is 0.
    pub change_pct: Option<f64>,
    /// Two-sided Mann-Whitney U p-value over per-second values; `None`: no test.
    pub p_value: Option<f64>,
    /// Per-second values each side contributed to the test.
    pub base_samples: usize,
    pub new_samples: usize,
    /// The threshold that applies, as written (`p99=+10%`).
    pub threshold: Option<String>,
    /// `regression`, `worse`, `improvement`, `inconsistent`, `not significant` or `no test`.
    pub verdict: String,
}

/// `diff.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DiffReport {
    pub schema_version: u32,
    pub base: PathBuf,
    pub new: PathBuf,
    /// Runs per backend on each side.
    pub base_runs: BTreeMap<String, usize>,
    pub new_runs: BTreeMap<String, usize>,
    /// The test, in words.
    pub test: String,
    pub alpha: f64,
    pub thresholds: Vec<String>,
    pub rows: Vec<DiffRow>,
    /// Rows whose verdict is `regression`.
    pub regressions: usize,
}

/// A side: runs grouped by backend.
type Side = BTreeMap<String, Vec<RunData>>;

fn load_side(dir: &Path) -> Result<Side, StudyError> {
    let mut side = Side::new();
    if crate::study::compare::is_comparison(dir) {
        let m = crate::study::compare::Manifest::load(&dir.join("compare.json"))?;
        for r in &m.runs {
            side.entry(r.backend.to_string())
                .or_default()
                .push(RunData::load(&dir.join(&r.dir))?);
        }
    } else {
        let run = RunData::load(dir)?;
        side.insert(run.manifest.backend.kind.to_string(), vec![run]);
    }
    Ok(side)
}

/// A backend's label and its runs on each side.
type Pair<'a> = (String, &'a [RunData], &'a [RunData]);

/// The backends to compare: those in both, else the only one of each.
fn pairs<'a>(base: &'a Side, new: &'a Side, o: &DiffOptions) -> Result<Vec<Pair<'a>>, StudyError> {
    let common: Vec<_> = base
        .iter()
        .filter_map(|(k, b)| Some((k.clone(), b.as_slice(), new.get(k)?.as_slice())))
        .collect();
    if !common.is_empty() {
        return Ok(common);
    }
    match (base.iter().next(), new.iter().next()) {
        (Some((kb, b)), Some((kn, n))) if base.len() == 1 && new.len() == 1 => {
            Ok(vec![(format!("{kb} → {kn}"), b.as_slice(), n.as_slice())])
        }
        _ => Err(StudyError::Invalid(format!(
            "{} and {} have no backend in common (base: {}; new: {})",
            o.base.display(),
            o.new.display(),
            base.keys().cloned().collect::<Vec<_>>().join(", "),
            new.keys().cloned().collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// The run's own figure for (phase, op, metric).
fn figure(row: &SummaryRow, metric: &str) -> f64 {
    match metric {
        "ops_per_sec" => row.ops_per_sec,
        "p50" => row.p50_us as f64,
        "p90" => row.p90_us as f64,
        "p99" => row.p99_us as f64,
        "p999" => row.p999_us as f64,
        _ => row.max_us as f64,
    }
}

/// The whole seconds of `phase`'s measured window: after its warm-up, without its
/// partial first and last seconds.
fn measured_seconds(run: &RunData, phase: &str) -> Vec<u64> {
    let secs = run
        .timeline
        .iter()
        .filter(|r| r.phase == phase)
        .map(|r| r.t_s);
    let (Some(first), Some(last)) = (secs.clone().min(), secs.max()) else {
        return Vec::new();
    };
    let warm = run
        .manifest
        .phases
        .iter()
        .find(|p| p.name == phase)
        .and_then(|p| p.warmup_s)
        .unwrap_or(0.0)
        .ceil() as u64;
    (first.saturating_add(1).saturating_add(warm)..last).collect()
}

/// The per-second values of (phase, op, metric) in one run.
fn per_second(run: &RunData, phase: &str, op: &str, metric: &str) -> Vec<f64> {
    let secs = measured_seconds(run, phase);
    let row = |t: u64| {
        run.timeline
            .iter()
            .find(|r| r.t_s == t && r.phase == phase && r.op == op)
    };
    if metric == "ops_per_sec" {
        return secs
            .iter()
            .map(|t| row(*t).map_or(0.0, |r| r.ops as f64))
            .collect();
    }
    let q = match metric {
        "p50" => 0.5,
        "p90" => 0.9,
        "p99" => 0.99,
        "p999" => 0.999,
        _ => 1.0,
    };
    if let Some(hs) = &run.timeline_histograms {
        return secs
            .iter()
            .filter_map(|t| hs.get(&(*t, phase.to_string(), op.to_string())))
            .filter(|h| !h.is_empty())
            .map(|h| {
                if q >= 1.0 {
                    h.max() as f64
                } else {
                    h.value_at_quantile(q) as f64
                }
            })
            .collect();
    }
    // Older results: timeline.csv has p50, p99 and max only.
    secs.iter()
        .filter_map(|t| row(*t).filter(|r| r.ops > 0))
        .filter_map(|r| match metric {
            "p50" => Some(r.p50_us as f64),
            "p99" => Some(r.p99_us as f64),
            "max" => Some(r.max_us as f64),
            _ => None,
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// The (phase, op) pairs both sides measured: load phases of the first base run, in run
/// order, with successful operations of the op on both sides.
fn phase_ops(base: &[RunData], new: &[RunData]) -> Vec<(String, String)> {
    let has = |runs: &[RunData], phase: &str, op: &str| {
        runs.iter().any(|r| r.ok_row(phase, op).is_some())
    };
    let mut out = Vec::new();
    for p in &base[0].manifest.phases {
        for op in ["put", "get", "delete"] {
            if has(base, &p.name, op) && has(new, &p.name, op) {
                out.push((p.name.clone(), op.to_string()));
            }
        }
    }
    out
}

/// The verdict for one row. `test` is the p-value and the direction the per-second values
/// moved (`shift` > 0: new tends higher than base, < 0: lower); `change_pct` compares the
/// whole-window figures. The two can disagree (one long stall raises a run's p99 while
/// most of its seconds got faster): such a row is `inconsistent`, never a regression, as
/// the test does not support the direction the figure claims.
fn verdict(
    change_pct: Option<f64>,
    test: Option<(f64, f64)>,
    worse: threshold::Worse,
    t: Option<&Threshold>,
    alpha: f64,
) -> &'static str {
    let (Some(c), Some((p, shift))) = (change_pct, test) else {
        return "no test";
    };
    if p >= alpha {
        return "not significant";
    }
    if c == 0.0 {
        return "not significant";
    }
    if shift == 0.0 || (shift > 0.0) != (c > 0.0) {
        return "inconsistent";
    }
    let is_worse = match worse {
        threshold::Worse::Higher => c > 0.0,
        threshold::Worse::Lower => c < 0.0,
    };
    match t {
        Some(t) if is_worse && t.crossed(c) => "regression",
        _ if is_worse => "worse",
        _ => "improvement",
    }
}

/// Why an `--alpha` is refused.
const ALPHA_EXPECTED: &str = "expected a significance level between 0 and 1, e.g. 0.05";

fn alpha_ok(a: f64) -> bool {
    a > 0.0 && a < 1.0
}

/// `--alpha`: a significance level strictly between 0 and 1.
pub fn parse_alpha(s: &str) -> Result<f64, String> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|a| alpha_ok(*a))
        .ok_or_else(|| format!("{s:?}: {ALPHA_EXPECTED}"))
}

/// Compare BASE with NEW (see the module docs); write `diff.md` and `diff.json` to `out`.
pub fn diff(o: &DiffOptions) -> Result<DiffReport, StudyError> {
    if !alpha_ok(o.alpha) {
        return Err(StudyError::Invalid(format!(
            "--alpha {}: {ALPHA_EXPECTED}",
            o.alpha
        )));
    }
    let base = load_side(&o.base)?;
    let new = load_side(&o.new)?;
    let mut rows = Vec::new();
    for (label, b, n) in pairs(&base, &new, o)? {
        for (phase, op) in phase_ops(b, n) {
            for (metric, worse) in threshold::METRICS {
                let side = |runs: &[RunData]| {
                    let fig = median(
                        runs.iter()
                            .filter_map(|r| r.ok_row(&phase, &op))
                            .map(|row| figure(row, metric))
                            .collect(),
                    );
                    let samples: Vec<f64> = runs
                        .iter()
                        .flat_map(|r| per_second(r, &phase, &op, metric))
                        .collect();
                    (fig.unwrap_or(0.0), samples)
                };
                let ((bv, bs), (nv, ns)) = (side(b), side(n));
                let change_pct = (bv > 0.0).then(|| (nv - bv) / bv * 100.0);
                let test = mwu::mann_whitney(&bs, &ns)
                    // U counts the pairs where base is larger: below its mean, new tends higher.
                    .map(|r| (r.p, (bs.len() * ns.len()) as f64 / 2.0 - r.u))
                    .or_else(|| {
                        // Every second the same on both sides: no difference at all.
                        (!bs.is_empty() && !ns.is_empty()).then_some((1.0, 0.0))
                    });
                let p_value = test.map(|t| t.0);
                let t = threshold::find(&o.thresholds, &op, metric);
                rows.push(DiffRow {
                    backend: label.clone(),
                    phase: phase.clone(),
                    op: op.clone(),
                    metric: metric.to_string(),
                    base: bv,
                    new: nv,
                    change_pct,
                    p_value,
                    base_samples: bs.len(),
                    new_samples: ns.len(),
                    threshold: t.map(|t| t.to_string()),
                    verdict: verdict(change_pct, test, *worse, t, o.alpha).to_string(),
                });
            }
        }
    }
    if rows.is_empty() {
        return Err(StudyError::Invalid(format!(
            "{} and {} have no phase and operation in common to compare",
            o.base.display(),
            o.new.display()
        )));
    }
    let count = |s: &Side| s.iter().map(|(k, v)| (k.clone(), v.len())).collect();
    let report = DiffReport {
        schema_version: DIFF_SCHEMA,
        base: o.base.clone(),
        new: o.new.clone(),
        base_runs: count(&base),
        new_runs: count(&new),
        test: "two-sided Mann-Whitney U over the per-second values of each measured phase, \
               pooled over repeats"
            .into(),
        alpha: o.alpha,
        thresholds: o.thresholds.iter().map(|t| t.to_string()).collect(),
        regressions: rows.iter().filter(|r| r.verdict == "regression").count(),
        rows,
    };
    check_out_dir(&o.out)?;
    let md = o.out.join("diff.md");
    let mut f = std::fs::File::create(&md).map_err(ReportError::io(&md))?;
    write_markdown(&report, &mut f).map_err(ReportError::io(&md))?;
    let json = o.out.join("diff.json");
    let text = serde_json::to_string_pretty(&report).map_err(ReportError::json(&json))?;
    std::fs::write(&json, text).map_err(ReportError::io(&json))?;
    Ok(report)
}

fn fmt_value(metric: &str, v: f64) -> String {
    if metric == "ops_per_sec" {
        format!("{v:.0} ops/s")
    } else {
        crate::report::plot::fmt_us(v)
    }
}

/// The report as markdown: what was compared and how, one row per metric, the verdict.
pub fn write_markdown(r: &DiffReport, out: &mut dyn io::Write) -> io::Result<()> {
    let runs = |m: &BTreeMap<String, usize>| {
        m.iter()
            .map(|(k, n)| format!("{k} × {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    writeln!(out, "# raftbench diff\n")?;
    writeln!(
        out,
        "- base: `{}` ({})",
        r.base.display(),
        runs(&r.base_runs)
    )?;
    writeln!(out, "- new: `{}` ({})", r.new.display(), runs(&r.new_runs))?;
    writeln!(out, "- test: {}, α = {}", r.test, r.alpha)?;
    writeln!(
        out,
        "- thresholds: {}\n",
        if r.thresholds.is_empty() {
            "none".to_string()
        } else {
            r.thresholds.join(", ")
        }
    )?;
    writeln!(
        out,
        "| backend | phase | op | metric | base | new | change | p | seconds (base/new) | threshold | verdict |"
    )?;
    writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|")?;
    for row in &r.rows {
        let verdict = if row.verdict == "regression" {
            "**REGRESSION**".to_string()
        } else {
            row.verdict.clone()
        };
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {}/{} | {} | {} |",
            row.backend,
            row.phase,
            row.op,
            row.metric,
            fmt_value(&row.metric, row.base),
            fmt_value(&row.metric, row.new),
            row.change_pct
                .map_or("–".to_string(), |c| format!("{c:+.1}%")),
            row.p_value.map_or("–".to_string(), |p| if p < 0.0001 {
                "<0.0001".to_string()
            } else {
                format!("{p:.4}")
            }),
            row.base_samples,
            row.new_samples,
            row.threshold.as_deref().unwrap_or("–"),
            verdict,
        )?;
    }
    writeln!(out)?;
    if r.regressions > 0 {
        writeln!(
            out,
            "**Verdict: REGRESSION** — {} metric(s) crossed their threshold with p < {}.",
            r.regressions, r.alpha
        )
    } else {
        writeln!(
            out,
            "**Verdict: no regression** — no metric crossed its threshold with p < {}.",
            r.alpha
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_need_both_the_threshold_and_significance() {
        let t = threshold::parse("p99=+10%,ops_per_sec=-5%").unwrap();
        let p99 = threshold::find(&t, "put", "p99");
        let up = threshold::find(&t, "put", "ops_per_sec");
        use threshold::Worse::{Higher, Lower};
        assert_eq!(
            verdict(Some(30.0), Some((0.001, 30.0)), Higher, p99, 0.05),
            "regression"
        );
        assert_eq!(
            verdict(Some(30.0), Some((0.2, 30.0)), Higher, p99, 0.05),
            "not significant"
        );
        assert_eq!(
            verdict(Some(5.0), Some((0.001, 5.0)), Higher, p99, 0.05),
            "worse"
        );
        assert_eq!(
            verdict(Some(-30.0), Some((0.001, -30.0)), Higher, p99, 0.05),
            "improvement"
        );
        assert_eq!(
            verdict(Some(-6.0), Some((0.01, -6.0)), Lower, up, 0.05),
            "regression"
        );
        assert_eq!(
            verdict(Some(6.0), Some((0.01, 6.0)), Lower, up, 0.05),
            "improvement"
        );
        assert_eq!(
            verdict(Some(50.0), Some((0.001, 50.0)), Higher, None, 0.05),
            "worse"
        );
        assert_eq!(
            verdict(None, Some((0.001, 1.0)), Higher, p99, 0.05),
            "no test"
        );
        assert_eq!(verdict(Some(1.0), None, Higher, p99, 0.05), "no test");
        // The whole-window p99 rose, but the seconds got significantly faster.
        assert_eq!(
            verdict(Some(30.0), Some((0.001, -40.0)), Higher, p99, 0.05),
            "inconsistent"
        );
        assert_eq!(
            verdict(Some(-6.0), Some((0.01, 3.0)), Lower, up, 0.05),
            "inconsistent"
        );
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }
}
