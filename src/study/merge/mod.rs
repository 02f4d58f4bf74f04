//! `raftbench merge DIR... --out DIR`: one result from several load generators that ran the
//! same workload against one cluster (`raftbench run --client-id I --clients N`).
//!
//! Latency is merged by adding the generators' HdrHistograms (from `latency.hlog`), never
//! by averaging percentiles, so every merged percentile is the percentile of all operations
//! together. Rates add up (the generators ran at the same time). Per-second timelines are
//! merged from each generator's `timeline.hlog` (exact); for results without one, per-second
//! p50/p99/max are the maximum over generators (an upper bound). The cluster-side files —
//! `events.csv`, `recovery.csv`, `resources.csv`, `server-metrics.csv` — come from
//! generator 1, the only one that injects events (a coordinated run, [`merge_in_place`],
//! then writes its own events and recovery over them: there the coordinator injects).
//!
//! This module combines the runs; [`output`] writes the combination as a results directory.

mod output;

use std::collections::BTreeMap;
use std::path::PathBuf;

use hdrhistogram::Histogram;

use super::{StudyError, check_out_dir};
use crate::metrics::merge_into;
use crate::report::data::{Histograms, Kind, OtherHistograms, RunData, TimelineHistograms};
use crate::report::plot;
use crate::wire::RunManifest;
use crate::workload::Workload;
use crate::workload::output::{self as run_output, SummaryRow, TimelineRow};
use crate::workload::spec::Phase;
use crate::workload::verify::VerifyReport;

/// `raftbench merge` options.
#[derive(Debug, Clone)]
pub struct MergeOptions {
    pub dirs: Vec<PathBuf>,
    pub out: PathBuf,
    /// Merge runs of different workloads or seeds anyway.
    pub force: bool,
    /// The command line, for the merged `run.json`.
    pub cli: Vec<String>,
}

/// What `merge` wrote.
#[derive(Debug)]
pub struct Merged {
    pub dir: PathBuf,
    pub summary: Vec<SummaryRow>,
    pub verify: Option<VerifyReport>,
}

/// The generators' runs combined into one, ready to be written.
struct Combined<'a> {
    runs: &'a [RunData],
    /// Generator 1's run: the cluster side and `run.json` come from it.
    lead: &'a RunData,
    /// Successful operations, added.
    ok: Histograms,
    /// Failed, in-doubt and warm-up operations, added.
    other: OtherHistograms,
    summary: Vec<SummaryRow>,
    timeline: Vec<TimelineRow>,
    /// The per-second histograms, added, when every generator wrote them.
    per_second: Option<TimelineHistograms>,
    verify: Option<VerifyReport>,
    run_json: RunManifest<Workload>,
}

/// `(id, of)` of a split generator's run.
fn generator(run: &RunData) -> Option<(u64, u64)> {
    run.manifest.generator.map(|g| (g.id, g.of))
}

/// Refuse runs that are not parts of one run, unless `force`.
fn check(runs: &[RunData], force: bool) -> Result<(), StudyError> {
    if runs.is_empty() {
        return Err(StudyError::Invalid(
            "merge needs results directories".into(),
        ));
    }
    if force {
        return Ok(());
    }
    let first = &runs[0].manifest;
    for r in &runs[1..] {
        let m = &r.manifest;
        if m.workload.file.name != first.workload.file.name || m.seed != first.seed {
            return Err(StudyError::Invalid(format!(
                "{} ran workload {:?} with seed {}, but {} ran {:?} with seed {}: these are not generators of one run (--force merges them anyway)",
                runs[0].dir.display(),
                first.workload.file.name,
                first.seed,
                r.dir.display(),
                m.workload.file.name,
                m.seed
            )));
        }
    }
    // Exactly generators 1..N of one split: anything else double-counts or misses load.
    let mut seen = BTreeMap::new();
    for r in runs {
        let Some(g) = generator(r) else {
            return Err(StudyError::Invalid(format!(
                "{} is not a split generator's result (run it with --client-id I --clients N; --force merges it anyway)",
                r.dir.display()
            )));
        };
        if let Some(other) = seen.insert(g.0, (g.1, &r.dir)) {
            return Err(StudyError::Invalid(format!(
                "{} and {} are both generator {} of {} (--force merges them anyway)",
                other.1.display(),
                r.dir.display(),
                g.0,
                g.1
            )));
        }
    }
    let n = seen.values().next().map_or(0, |v| v.0);
    if seen.values().any(|v| v.0 != n) || seen.len() as u64 != n {
        return Err(StudyError::Invalid(format!(
            "merging generators {:?}, but a complete run is generators 1 to {n} (--force merges them anyway)",
            seen.keys().collect::<Vec<_>>()
        )));
    }
    Ok(())
}

/// Add `run`'s histograms `from` into `acc`, key by key; `what` names a key in an error.
fn add_into<K: Ord + Clone>(
    acc: &mut BTreeMap<K, Histogram<u64>>,
    from: &BTreeMap<K, Histogram<u64>>,
    run: &RunData,
    what: impl Fn(&K) -> String,
) -> Result<(), StudyError> {
    for (k, h) in from {
        match acc.get_mut(k) {
            Some(a) => merge_into(a, h).map_err(|source| StudyError::Merge {
                what: format!(
                    "{}: {} onto the other generators'",
                    run.dir.display(),
                    what(k)
                ),
                source,
            })?,
            None => {
                acc.insert(k.clone(), h.clone());
            }
        }
    }
    Ok(())
}

/// Merge the runs in `o.dirs` into `o.out`, then draw its charts and report.
pub fn merge(o: &MergeOptions) -> Result<Merged, StudyError> {
    let runs = load(o)?;
    if runs.len() < 2 {
        return Err(StudyError::Invalid(
            "merge needs at least two results directories".into(),
        ));
    }
    check(&runs, o.force)?;
    check_out_dir(&o.out)?;
    let m = write(&runs, o)?;
    plot::plot_run(&o.out)?;
    Ok(m)
}

/// Merge the runs in `o.dirs` into the existing directory `o.out`, leaving what else it
/// holds (the coordinator's: the generators' own results, the control log), with no
/// charts yet: the coordinator adds its events and recovery first.
pub fn merge_in_place(o: &MergeOptions) -> Result<Merged, StudyError> {
    let runs = load(o)?;
    check(&runs, o.force)?;
    write(&runs, o)
}

fn load(o: &MergeOptions) -> Result<Vec<RunData>, StudyError> {
    Ok(o.dirs
        .iter()
        .map(|d| RunData::load(d))
        .collect::<Result<Vec<_>, _>>()?)
}

fn write(runs: &[RunData], o: &MergeOptions) -> Result<Merged, StudyError> {
    let c = combine(runs, o)?;
    output::write(&o.out, &c)?;
    Ok(Merged {
        dir: o.out.clone(),
        summary: c.summary,
        verify: c.verify,
    })
}

/// Combine the generators' runs.
fn combine<'a>(runs: &'a [RunData], o: &MergeOptions) -> Result<Combined<'a>, StudyError> {
    let mut ok = BTreeMap::new();
    let mut other = BTreeMap::new();
    for r in runs {
        add_into(&mut ok, &r.histograms, r, |(phase, op, kind)| {
            format!("{phase}.{op} ({kind:?}) in latency.hlog")
        })?;
        add_into(
            &mut other,
            &r.other_histograms,
            r,
            |(phase, op, outcome)| format!("{phase}.{op} ({outcome}) in latency.hlog"),
        )?;
    }
    let summary = summary(runs, &ok, &other);
    let (timeline, per_second) = timeline(runs)?;
    // The cluster side, from generator 1 (the one that injected the events).
    let lead = runs
        .iter()
        .find(|r| generator(r).is_some_and(|g| g.0 == 1))
        .unwrap_or(&runs[0]);
    let verify = verify(runs);
    let run_json = run_json(runs, lead, o, &verify);
    Ok(Combined {
        runs,
        lead,
        ok,
        other,
        summary,
        timeline,
        per_second,
        verify,
        run_json,
    })
}

/// Summary rows: counts and percentiles from the added histograms; rates summed; in run
/// order, as in a run's own summary.
fn summary(runs: &[RunData], ok: &Histograms, other: &OtherHistograms) -> Vec<SummaryRow> {
    let rate = |phase: &str, op: &str, outcome: &str, kind: &str| -> f64 {
        runs.iter()
            .flat_map(|r| &r.summary)
            .filter(|s| {
                s.phase == phase && s.op == op && s.outcome == outcome && s.latency_kind == kind
            })
            .map(|s| s.ops_per_sec)
            .sum()
    };
    let mut summary = Vec::new();
    let mut push = |phase: &str, op: &str, outcome: &str, kind: &str, h: &Histogram<u64>| {
        let mut row = run_output::summary_row(phase, op, outcome, h, 1.0, kind);
        row.ops_per_sec = rate(phase, op, outcome, kind);
        row.generator = "merged".into();
        summary.push(row);
    };
    for ((phase, op, kind), h) in ok {
        let kind = match kind {
            Kind::Corrected => "corrected",
            Kind::Service => "service",
        };
        push(phase, op, "ok", kind, h);
    }
    for ((phase, op, outcome), h) in other {
        push(phase, op, outcome, "corrected", h);
    }
    let order: Vec<&str> = runs[0]
        .manifest
        .phases
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    let pos = |phase: &str| {
        let base = phase.trim_end_matches(":warmup");
        (
            order.iter().position(|p| *p == base).unwrap_or(usize::MAX),
            phase.ends_with(":warmup"),
        )
    };
    summary.sort_by(|a, b| {
        (pos(&a.phase), &a.op, &a.outcome, &a.latency_kind).cmp(&(
            pos(&b.phase),
            &b.op,
            &b.outcome,
            &b.latency_kind,
        ))
    });
    summary
}

/// Timeline rows: counts summed; percentiles exact from the added per-second histograms
/// when every generator wrote `timeline.hlog` (returned too), else the maximum.
fn timeline(
    runs: &[RunData],
) -> Result<(Vec<TimelineRow>, Option<TimelineHistograms>), StudyError> {
    let mut tl: BTreeMap<(u64, String, String), TimelineRow> = BTreeMap::new();
    for r in runs.iter().flat_map(|r| &r.timeline) {
        let e = tl
            .entry((r.t_s, r.phase.clone(), r.op.clone()))
            .or_insert_with(|| TimelineRow {
                ops: 0,
                errors: 0,
                p50_us: 0,
                p99_us: 0,
                max_us: 0,
                ..r.clone()
            });
        e.ops += r.ops;
        e.errors += r.errors;
        e.p50_us = e.p50_us.max(r.p50_us);
        e.p99_us = e.p99_us.max(r.p99_us);
        e.max_us = e.max_us.max(r.max_us);
    }
    let mut per_second = None;
    if runs.iter().all(|r| r.timeline_histograms.is_some()) {
        let mut per_sec = BTreeMap::new();
        for r in runs {
            if let Some(t) = &r.timeline_histograms {
                add_into(&mut per_sec, t, r, |(t, phase, op)| {
                    format!("{phase}.{op} at second {t} in timeline.hlog")
                })?;
            }
        }
        for ((t, phase, op), row) in tl.iter_mut() {
            if let Some(h) = per_sec.get(&(*t, phase.clone(), op.clone())) {
                row.p50_us = h.value_at_quantile(0.5);
                row.p99_us = h.value_at_quantile(0.99);
                row.max_us = h.max();
            }
        }
        per_second = Some(per_sec);
    }
    Ok((tl.into_values().collect(), per_second))
}

/// The generators verified disjoint keys, so the counts add up.
fn verify(runs: &[RunData]) -> Option<VerifyReport> {
    runs.iter()
        .filter_map(|r| r.manifest.verify.clone())
        .reduce(|mut a, b| {
            a.absorb(&b);
            a
        })
}

/// `run.json`: generator 1's, with the merged figures and where they came from.
fn run_json(
    runs: &[RunData],
    lead: &RunData,
    o: &MergeOptions,
    verify: &Option<VerifyReport>,
) -> RunManifest<Workload> {
    let mut run = lead.manifest.clone();
    run.merged_from = Some(o.dirs.clone());
    run.generators = Some(runs.iter().map(generator).collect());
    run.generator = None;
    // A generator's own verdict judged only its share: `run --slo` judges the merged run.
    run.slo = None;
    run.cli = o.cli.clone();
    run.verify = verify.clone();
    // Per verify phase: the generators' results of the same phase, added.
    for (vi, pv) in run.verify_phases.iter_mut().enumerate() {
        for r in runs.iter().filter(|r| !std::ptr::eq(*r, lead)) {
            if let Some(other) = r.manifest.verify_phases.get(vi) {
                pv.report.absorb(&other.report);
            }
        }
    }
    run.keys_written = Some(runs.iter().filter_map(|r| r.manifest.keys_written).sum());
    // The workload as a whole: each generator's share summed back (left as generator 1's
    // where a generator has no such phase or value).
    for (pi, p) in run.workload.file.phases.iter_mut().enumerate() {
        let p = p.get_mut();
        let share = |f: fn(&Phase) -> Option<f64>| -> Option<f64> {
            runs.iter()
                .map(|r| {
                    r.manifest
                        .workload
                        .file
                        .phases
                        .get(pi)
                        .and_then(|x| f(x.get_ref()))
                })
                .sum()
        };
        if let Some(v) = share(|x| x.ops.map(|o| o as f64)) {
            p.ops = Some(v as u64);
        }
        if let Some(v) = share(|x| Some(x.concurrency as f64)) {
            p.concurrency = v as usize;
        }
        if let Some(v) = share(|x| x.rate) {
            p.rate = Some(v);
        }
    }
    run.duration_s = runs
        .iter()
        .map(|r| r.manifest.duration_s)
        .fold(0.0, f64::max);
    for p in &mut run.phases {
        let same = || {
            runs.iter()
                .flat_map(|r| &r.manifest.phases)
                .filter(|x| x.name == p.name)
        };
        p.achieved_rate = same().map(|x| x.achieved_rate).sum();
        p.target_rate = same().map(|x| x.target_rate).sum();
        p.elapsed_s = same().map(|x| x.elapsed_s).fold(0.0, f64::max);
        p.unsent = same().map(|x| x.unsent).sum();
    }
    // Each generator is its own process: the largest of them is what one host must hold.
    run.generator_peak_rss_bytes = runs
        .iter()
        .filter_map(|r| r.manifest.generator_peak_rss_bytes)
        .max();
    run
}
