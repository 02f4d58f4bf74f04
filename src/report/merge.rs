//! `raftbench merge DIR... --out DIR`: one result from several load generators that ran the
//! same workload against one cluster (`raftbench run --client-id I --clients N`).
//!
//! Latency is merged by adding the generators' HdrHistograms (from `latency.hlog`), never
//! by averaging percentiles, so every merged percentile is the percentile of all operations
//! together. Rates add up (the generators ran at the same time). Per-second timelines are
//! merged from each generator's `timeline.hlog` (exact); for results without one, per-second
//! p50/p99/max are the maximum over generators (an upper bound). The cluster-side files —
//! `events.csv`, `recovery.csv`, `resources.csv` — come from generator 1, the only one that
//! injects events.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;

use super::ReportError;
use super::data::{Kind, RunData};
use crate::metrics::Outcome;
use crate::workload::output::{self, HlogEntry, SummaryRow, TimelineRow};
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

fn generator(run: &RunData) -> Option<(u64, u64)> {
    run.manifest.generator.map(|g| (g.id, g.of))
}

/// Refuse runs that are not parts of one run, unless `force`.
fn check(runs: &[RunData], force: bool) -> Result<(), ReportError> {
    if runs.len() < 2 {
        return Err(ReportError::Invalid(
            "merge needs at least two results directories".into(),
        ));
    }
    if force {
        return Ok(());
    }
    let first = &runs[0].manifest;
    for r in &runs[1..] {
        let m = &r.manifest;
        if m.workload.file.name != first.workload.file.name || m.seed != first.seed {
            return Err(ReportError::Invalid(format!(
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
            return Err(ReportError::Invalid(format!(
                "{} is not a split generator's result (run it with --client-id I --clients N; --force merges it anyway)",
                r.dir.display()
            )));
        };
        if let Some(other) = seen.insert(g.0, (g.1, &r.dir)) {
            return Err(ReportError::Invalid(format!(
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
        return Err(ReportError::Invalid(format!(
            "merging generators {:?}, but a complete run is generators 1 to {n} (--force merges them anyway)",
            seen.keys().collect::<Vec<_>>()
        )));
    }
    Ok(())
}

fn add_into<K: Ord + Clone>(
    acc: &mut BTreeMap<K, Histogram<u64>>,
    from: &BTreeMap<K, Histogram<u64>>,
) {
    for (k, h) in from {
        match acc.get_mut(k) {
            Some(a) => {
                let _ = a.add(h);
            }
            None => {
                acc.insert(k.clone(), h.clone());
            }
        }
    }
}

fn outcome_of(s: &str) -> Outcome {
    match s {
        "error" => Outcome::Error,
        "indeterminate" => Outcome::Indeterminate,
        _ => Outcome::Ok,
    }
}

/// Merge the runs in `o.dirs` into `o.out`, then draw its charts and report.
pub fn merge(o: &MergeOptions) -> Result<Merged, ReportError> {
    let runs = o
        .dirs
        .iter()
        .map(|d| RunData::load(d))
        .collect::<Result<Vec<_>, _>>()?;
    check(&runs, o.force)?;
    super::compare::check_out_dir(&o.out)?;
    let dir = &o.out;

    let mut ok = BTreeMap::new();
    let mut other = BTreeMap::new();
    for r in &runs {
        add_into(&mut ok, &r.histograms);
        add_into(&mut other, &r.other_histograms);
    }

    // Summary: counts and percentiles from the added histograms; rates summed.
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
        let mut row = output::summary_row(phase, op, outcome, h, 1.0, kind);
        row.ops_per_sec = rate(phase, op, outcome, kind);
        row.generator = "merged".into();
        summary.push(row);
    };
    for ((phase, op, kind), h) in &ok {
        let kind = match kind {
            Kind::Corrected => "corrected",
            Kind::Service => "service",
        };
        push(phase, op, "ok", kind, h);
    }
    for ((phase, op, outcome), h) in &other {
        push(phase, op, outcome, "corrected", h);
    }
    // Run order, as in a run's own summary.
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
    write_csv(&dir.join("summary.csv"), &summary)?;

    // Timeline: counts summed; percentiles exact from timeline.hlog below, else the maximum.
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
    // With every generator's per-second histograms, the percentiles are exact too.
    if runs.iter().all(|r| r.timeline_histograms.is_some()) {
        let mut per_sec = BTreeMap::new();
        for r in &runs {
            if let Some(t) = &r.timeline_histograms {
                add_into(&mut per_sec, t);
            }
        }
        for ((t, phase, op), row) in tl.iter_mut() {
            if let Some(h) = per_sec.get(&(*t, phase.clone(), op.clone())) {
                row.p50_us = h.value_at_quantile(0.5);
                row.p99_us = h.value_at_quantile(0.99);
                row.max_us = h.max();
            }
        }
        let entries: Vec<HlogEntry> = per_sec
            .iter()
            .map(|((t, phase, op), h)| HlogEntry {
                tag: output::hlog_tag(phase, op, Outcome::Ok, false),
                start: Duration::from_secs(*t),
                duration: Duration::from_secs(1),
                histogram: h,
            })
            .collect();
        let started_at =
            humantime::parse_rfc3339(&runs[0].manifest.started_at).unwrap_or(SystemTime::now());
        let path = dir.join("timeline.hlog");
        output::write_hlog_entries(&path, started_at, &entries, Some("merged"))
            .map_err(|e| ReportError::file(&path, e))?;
    }
    write_csv(
        &dir.join("timeline.csv"),
        &tl.into_values().collect::<Vec<_>>(),
    )?;

    // The cluster side, from generator 1 (the one that injected the events).
    let lead = runs
        .iter()
        .find(|r| generator(r).is_some_and(|g| g.0 == 1))
        .unwrap_or(&runs[0]);
    for f in ["events.csv", "recovery.csv", "resources.csv"] {
        std::fs::copy(lead.dir.join(f), dir.join(f))
            .map_err(|e| ReportError::file(&lead.dir.join(f), e))?;
    }

    // latency.hlog: the added histograms, with the same tags.
    let started_at =
        humantime::parse_rfc3339(&lead.manifest.started_at).unwrap_or(SystemTime::now());
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
    for ((phase, op, kind), h) in &ok {
        entries.push(HlogEntry {
            tag: output::hlog_tag(phase, op, Outcome::Ok, *kind == Kind::Service),
            start: Duration::ZERO,
            duration: elapsed(phase),
            histogram: h,
        });
    }
    for ((phase, op, outcome), h) in &other {
        entries.push(HlogEntry {
            tag: output::hlog_tag(phase, op, outcome_of(outcome), false),
            start: Duration::ZERO,
            duration: elapsed(phase),
            histogram: h,
        });
    }
    let note = format!("merged from {} load generators", runs.len());
    output::write_hlog_entries(&dir.join("latency.hlog"), started_at, &entries, Some(&note))
        .map_err(|e| ReportError::file(&dir.join("latency.hlog"), e))?;

    // verify: the generators verified disjoint keys, so the counts add up.
    let verify = runs
        .iter()
        .filter_map(|r| r.manifest.verify.clone())
        .reduce(|mut a, b| {
            a.keys += b.keys;
            a.acknowledged += b.acknowledged;
            a.ok += b.ok;
            a.lost += b.lost;
            a.stale += b.stale;
            a.indeterminate += b.indeterminate;
            a.indeterminate_resolved += b.indeterminate_resolved;
            a.unreadable += b.unreadable;
            a.bad_keys.extend(b.bad_keys);
            a.bad_keys.truncate(20);
            a
        });
    if let Some(v) = &verify {
        output::write_verify_csv(dir, v)
            .map_err(|e| ReportError::file(&dir.join("verify.csv"), e))?;
    }

    // run.json: generator 1's, with the merged figures and where they came from.
    let mut run = lead.manifest.clone();
    run.merged_from = Some(o.dirs.clone());
    run.generators = Some(runs.iter().map(generator).collect());
    run.generator = None;
    run.cli = o.cli.clone();
    run.verify = verify.clone();
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
        let achieved: f64 = same().map(|x| x.achieved_rate).sum();
        let target: Option<f64> = same().map(|x| x.target_rate).sum();
        let elapsed = same().map(|x| x.elapsed_s).fold(0.0, f64::max);
        p.achieved_rate = achieved;
        p.target_rate = target;
        p.elapsed_s = elapsed;
    }
    let path = dir.join("run.json");
    run.save(&path).map_err(|e| ReportError::file(&path, e))?;

    super::plot::plot_run(dir)?;
    Ok(Merged {
        dir: dir.clone(),
        summary,
        verify,
    })
}

fn write_csv<T: serde::Serialize>(path: &Path, rows: &[T]) -> Result<(), ReportError> {
    let mut w = csv::Writer::from_path(path).map_err(|e| ReportError::file(path, e))?;
    for r in rows {
        w.serialize(r).map_err(|e| ReportError::file(path, e))?;
    }
    w.flush().map_err(|e| ReportError::file(path, e))
}
