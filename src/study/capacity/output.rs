//! What the study writes: `capacity.csv` and `report.html`.

use std::borrow::Cow;
use std::fmt;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::search::fmt_rate;
use super::slo::SloTerm;
use super::workloads::restart_cache;
use super::{BackendCapacity, CapacityOptions};
use crate::report::ReportError;
use crate::report::charts::ChartFile;
use crate::report::html::Page;
use crate::report::plot::{fmt_bytes, fmt_us};
use crate::study::{Fixed, display_opt};
use crate::wire::BackendKind;
use crate::workload::Workload;
use crate::workload::spec::{CacheState, ValueSize};

/// Which part of the study a line of `capacity.csv` belongs to.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
enum Section {
    RateSearch,
    MaxRateAtSlo,
    Growth,
    Fit,
    Projection,
}

/// A number in `capacity.csv`, spelled as the file always has.
#[derive(Debug, Clone, Copy)]
enum Cell {
    /// Ops/s as in directory names (`1200`, `12.5`).
    Rate(f64),
    Count(u64),
    Fixed(Fixed),
}

impl fmt::Display for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cell::Rate(r) => f.write_str(&fmt_rate(*r)),
            Cell::Count(n) => write!(f, "{n}"),
            Cell::Fixed(x) => write!(f, "{x}"),
        }
    }
}

/// One line of `capacity.csv`: `metric` of `backend` at `x` (an offered rate or a key
/// count) in one section of the study.
#[derive(Serialize)]
struct CsvRow<'a> {
    section: Section,
    backend: BackendKind,
    metric: Cow<'a, str>,
    #[serde(serialize_with = "display_opt")]
    x: Option<Cell>,
    #[serde(serialize_with = "display_opt")]
    value: Option<Cell>,
    note: Cow<'a, str>,
}

/// Every line of `capacity.csv`, in file order.
fn csv_rows<'a>(slo: &[SloTerm], results: &'a [BackendCapacity], target: u64) -> Vec<CsvRow<'a>> {
    let mut rows = Vec::new();
    for r in results {
        let mut row = |section, metric: Cow<'a, str>, x, value, note: Cow<'a, str>| {
            rows.push(CsvRow {
                section,
                backend: r.backend,
                metric,
                x,
                value,
                note,
            })
        };
        for p in &r.probes {
            let x = Some(Cell::Rate(p.offered));
            row(
                Section::RateSearch,
                "achieved_ops_per_sec".into(),
                x,
                Some(Cell::Fixed(Fixed(p.achieved, 1))),
                "".into(),
            );
            for ((t, v), f) in slo.iter().zip(&p.measured_us).zip(&p.failed) {
                row(
                    Section::RateSearch,
                    format!("{}_us", t.name()).into(),
                    x,
                    v.map(Cell::Count),
                    format!("bound {} us", t.bound_us).into(),
                );
                row(
                    Section::RateSearch,
                    format!("{}_failed", t.op).into(),
                    x,
                    Some(Cell::Count(*f)),
                    "failed or in doubt; counted as over the bound".into(),
                );
            }
            row(
                Section::RateSearch,
                "slo_met".into(),
                x,
                Some(Cell::Count(u64::from(p.met))),
                p.dir.display().to_string().into(),
            );
        }
        row(
            Section::MaxRateAtSlo,
            "ops_per_sec".into(),
            None,
            r.max_rate.map(Cell::Rate),
            slo.iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
                .join(",")
                .into(),
        );
        for g in &r.growth {
            for (m, v) in &g.metrics {
                row(
                    Section::Growth,
                    (*m).into(),
                    Some(Cell::Count(g.keys)),
                    Some(Cell::Fixed(Fixed(*v, 3))),
                    "".into(),
                );
            }
        }
        for (m, f) in &r.fits {
            row(
                Section::Fit,
                (*m).into(),
                None,
                Some(Cell::Fixed(Fixed(f.r2, 6))),
                f.describe().into(),
            );
            row(
                Section::Projection,
                (*m).into(),
                Some(Cell::Count(target)),
                Some(Cell::Fixed(Fixed(f.eval(target as f64).max(0.0), 3))),
                "".into(),
            );
        }
    }
    rows
}

/// `capacity.csv`: every probe, the maximum rate at the SLO, the growth measurements, the
/// fits and their projections to `target` keys, per backend.
pub(super) fn write_csv(
    dir: &Path,
    slo: &[SloTerm],
    results: &[BackendCapacity],
    target: u64,
) -> Result<(), ReportError> {
    let path = dir.join("capacity.csv");
    let mut w = csv::Writer::from_path(&path).map_err(ReportError::csv(&path))?;
    for row in csv_rows(slo, results, target) {
        w.serialize(row).map_err(ReportError::csv(&path))?;
    }
    w.flush().map_err(ReportError::io(&path))
}

/// `report.html`: the recommendation first, then the assumptions it rests on, the probes,
/// the growth measurements with their models, the charts and links to every run.
#[allow(clippy::too_many_arguments)]
pub(super) fn write_report(
    path: &Path,
    dir: &Path,
    o: &CapacityOptions,
    w: &Workload,
    results: &[BackendCapacity],
    target: u64,
    largest: u64,
    charts: &[ChartFile],
) -> Result<(), ReportError> {
    let f = &w.file;
    let mut page = Page::new(&format!("raftbench capacity: {}", f.name));
    let value = match (o.target_value_size, &f.data.value_size) {
        (Some(v), _) => format!("{v} B values"),
        (None, ValueSize::Fixed(v)) => format!("{v} B values"),
        (None, other) => format!(
            "values {}",
            serde_json::to_string(other).unwrap_or_default()
        ),
    };
    let slo = o
        .slo
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    page.h2("Recommendation");
    page.p(&format!(
        "Projected for {} keys ({value}) per node of a {}-node cluster with fsync={}; max rate at the SLO ({slo}) as measured.",
        target, f.cluster.nodes, f.cluster.fsync
    ));
    let mut rows = Vec::new();
    for r in results {
        let proj = |m: &str, fmt: &dyn Fn(f64) -> String| r.projection_text(m, target, fmt);
        let ms = |v: f64| fmt_us(v * 1e3);
        rows.push(vec![
            r.backend.to_string(),
            proj("rss_bytes_per_node", &fmt_bytes),
            proj("disk_bytes_per_node", &fmt_bytes),
            proj("snapshot_bytes", &fmt_bytes),
            proj("snapshot_ms", &ms),
            proj("replay_ms", &ms),
            proj("caught_up_ms", &ms),
            r.max_rate_text(),
        ]);
    }
    page.table(
        &[
            "backend",
            "RAM (RSS) per node",
            "disk per node",
            "snapshot size",
            "snapshot time",
            "restart replay",
            "restart caught up",
            "max rate at SLO",
        ],
        &rows,
    );
    let ratio = target as f64 / largest as f64;
    let mut assumptions = format!(
        "Assumptions: each metric grows as the fitted model below says (a line unless a power law fits three or more points clearly better); \
         the projection extrapolates {ratio:.1}× beyond the largest measured size ({largest} keys); same key size, value size and \
         compressibility, node count, fsync policy and raft settings ({} snapshot interval, {} compaction lag) as measured; \
         this machine ({}); RSS includes each process's fixed baseline; disk and RSS are taken after loading, before the forced snapshot; \
         restart times are for {} on this machine's disk. \
         The max rate at the SLO was measured with the workload's own data set ({} keys) and phases, each probe a fresh cluster; \
         a probe passes when every SLO term holds on corrected latency (failed or in-doubt operations counting as over the bound) and each measured phase achieves ≥ 95 % of the offered rate; a rate passes when most of its {} probe(s) do.",
        f.cluster.snapshot_interval,
        f.cluster.compact_lag,
        match restart_cache(o) {
            CacheState::Cold =>
                "a cold page cache (the follower's data evicted before it starts, as after a reboot)",
            CacheState::Warm =>
                "a warm page cache (--restart-cache warm: a process restart, as after a crash)",
        },
        machine(),
        f.data.keys,
        o.repeat.max(1),
    );
    if ratio > 10.0 {
        let _ = write!(
            assumptions,
            " Extrapolating more than 10× is a guess: measure a size closer to the target before buying machines."
        );
    }
    page.p_class("note", &assumptions);

    page.h2("Throughput at the SLO");
    for r in results {
        let rows: Vec<Vec<String>> = r
            .probes
            .iter()
            .map(|p| {
                let mut row = vec![fmt_rate(p.offered), format!("{:.0}", p.achieved)];
                row.extend(p.measured_us.iter().zip(&p.failed).map(|(v, f)| {
                    let v = v.map_or("-".into(), |v| fmt_us(v as f64));
                    if *f > 0 {
                        format!("{v} ({f} failed)")
                    } else {
                        v
                    }
                }));
                row.push(if p.met { "met".into() } else { "missed".into() });
                row
            })
            .collect();
        let mut headers = vec!["offered ops/s", "achieved ops/s"];
        let names: Vec<String> = o.slo.iter().map(|t| t.to_string()).collect();
        headers.extend(names.iter().map(String::as_str));
        headers.push("SLO");
        page.p(&format!("{} — probes in the order run:", r.backend));
        page.table(&headers, &rows);
    }

    page.h2("Growth with data");
    for r in results {
        let mut rows = Vec::new();
        for g in &r.growth {
            let v = |m: &str| g.metrics.get(m).copied();
            rows.push(vec![
                g.keys.to_string(),
                v("disk_bytes_per_node").map_or("-".into(), fmt_bytes),
                v("disk_bytes_per_key").map_or("-".into(), |x| format!("{x:.0} B")),
                v("rss_bytes_per_node").map_or("-".into(), fmt_bytes),
                v("rss_bytes_per_key").map_or("-".into(), |x| format!("{x:.0} B")),
                v("snapshot_bytes").map_or("-".into(), fmt_bytes),
                v("snapshot_ms").map_or("-".into(), |x| fmt_us(x * 1e3)),
                v("replay_ms").map_or("-".into(), |x| fmt_us(x * 1e3)),
                v("caught_up_ms").map_or("-".into(), |x| fmt_us(x * 1e3)),
            ]);
        }
        page.p(&format!("{}:", r.backend));
        page.table(
            &[
                "keys",
                "disk/node",
                "disk/key",
                "RSS/node",
                "RSS/key",
                "snapshot",
                "snapshot time",
                "replay",
                "caught up",
            ],
            &rows,
        );
        let fits: Vec<Vec<String>> = r
            .fits
            .iter()
            .map(|(m, f)| vec![m.to_string(), f.describe()])
            .collect();
        page.table(&["metric", "model"], &fits);
    }
    page.h2("Charts");
    for c in charts {
        page.chart(c, dir)?;
    }
    page.h2("Runs");
    let links: Vec<(String, String)> = results
        .iter()
        .flat_map(|r| {
            r.probes
                .iter()
                .map(|p| &p.dir)
                .chain(r.growth.iter().map(|g| &g.dir))
        })
        .map(|d| {
            let rel = d.strip_prefix(dir).unwrap_or(d).join("report.html");
            let rel = rel.to_string_lossy().into_owned();
            (rel.clone(), rel)
        })
        .collect();
    page.links(&links);
    page.write(path)
}

/// This machine in a few words, for the assumptions.
fn machine() -> String {
    let m = crate::workload::output::machine();
    format!(
        "{} cores, {} memory",
        m.cores,
        fmt_bytes(m.memory_bytes as f64)
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use super::*;
    use crate::report::fit::{Fit, Model};
    use crate::study::capacity::slo;
    use crate::study::capacity::{GrowthPoint, Probe};

    fn probe(offered: f64, achieved: f64, us: Option<u64>, failed: u64, met: bool) -> Probe {
        Probe {
            offered,
            achieved,
            measured_us: vec![us],
            failed: vec![failed],
            met,
            dir: PathBuf::from(format!("cap/memwal/rate-{offered}")),
        }
    }

    #[test]
    fn csv_keeps_each_sections_number_format() {
        let results = [BackendCapacity {
            backend: BackendKind::Memwal,
            probes: vec![
                probe(1000.0, 998.04, Some(1234), 0, true),
                probe(12.5, 12.0, None, 3, false),
            ],
            max_rate: Some(1000.0),
            growth: vec![GrowthPoint {
                keys: 1000,
                dir: PathBuf::new(),
                metrics: BTreeMap::from([("disk_bytes_per_node", 1234.5678)]),
            }],
            fits: BTreeMap::from([(
                "disk_bytes_per_node",
                Fit {
                    model: Model::Linear { a: 1.0, b: 2.0 },
                    r2: 0.99,
                },
            )]),
        }];
        let t = tempfile::tempdir().unwrap();
        let slo = slo::parse("put.p99<20ms").unwrap();
        write_csv(t.path(), &slo, &results, 10_000).unwrap();
        let csv = std::fs::read_to_string(t.path().join("capacity.csv")).unwrap();
        assert_eq!(
            csv,
            "section,backend,metric,x,value,note\n\
             rate_search,memwal,achieved_ops_per_sec,1000,998.0,\n\
             rate_search,memwal,put.p99_us,1000,1234,bound 20000 us\n\
             rate_search,memwal,put_failed,1000,0,failed or in doubt; counted as over the bound\n\
             rate_search,memwal,slo_met,1000,1,cap/memwal/rate-1000\n\
             rate_search,memwal,achieved_ops_per_sec,12.5,12.0,\n\
             rate_search,memwal,put.p99_us,12.5,,bound 20000 us\n\
             rate_search,memwal,put_failed,12.5,3,failed or in doubt; counted as over the bound\n\
             rate_search,memwal,slo_met,12.5,0,cap/memwal/rate-12.5\n\
             max_rate_at_slo,memwal,ops_per_sec,,1000,put.p99<20ms\n\
             growth,memwal,disk_bytes_per_node,1000,1234.568,\n\
             fit,memwal,disk_bytes_per_node,,0.990000,linear: y = 1.0000 + 2.000000·x (R² 0.9900)\n\
             projection,memwal,disk_bytes_per_node,10000,20001.000,\n"
        );
    }
}
