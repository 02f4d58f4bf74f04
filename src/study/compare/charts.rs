//! The comparison's overlay charts: every backend's latency spectrum per op, and bars of
//! throughput, recovery times and bytes per key.

use std::collections::BTreeMap;
use std::path::Path;

use hdrhistogram::Histogram;

use super::aggregate::Row;
use crate::metrics::merge_into;
use crate::report::ReportError;
use crate::report::charts::{
    AnyChart, BarChart, BarSeries, ChartFile, Scale, Series, Style, XyChart, XyPanel, color,
};
use crate::report::data::{Kind, RunData};
use crate::report::run_charts::spectrum_points;

/// One bar group per metric `pick` names (its label), one bar per backend.
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

/// Draw the overlay charts into `dir`.
pub(super) fn overlay_charts(
    dir: &Path,
    names: &[String],
    data: &[Vec<RunData>],
    rows: &[Row],
) -> Result<Vec<ChartFile>, ReportError> {
    let mut out = Vec::new();
    let Some(first) = data.iter().flatten().next() else {
        return Ok(out);
    };
    let title = format!(
        "{} · fsync={}",
        first.manifest.workload.file.name, first.manifest.fsync
    );
    // Latency spectra: one chart per op, one line per (backend, phase), repetitions added.
    let mut merged: BTreeMap<(String, String, usize), Histogram<u64>> = BTreeMap::new();
    for (bi, runs) in data.iter().enumerate() {
        for run in runs {
            for ((phase, op, kind), h) in &run.histograms {
                if *kind != Kind::Corrected {
                    continue;
                }
                match merged.get_mut(&(op.clone(), phase.clone(), bi)) {
                    Some(acc) => merge_into(acc, h).map_err(|source| ReportError::Merge {
                        what: format!(
                            "{}: {phase}.{op} latency onto the earlier repetitions of {}",
                            run.dir.display(),
                            names[bi]
                        ),
                        source,
                    })?,
                    None => {
                        merged.insert((op.clone(), phase.clone(), bi), h.clone());
                    }
                }
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
