//! The study's charts: latency against throughput with the SLO, and each growth metric
//! against data size with its fitted model.

use std::collections::BTreeMap;
use std::path::Path;

use super::growth::GROWTH_METRICS;
use super::{BackendCapacity, CapacityOptions};
use crate::report::ReportError;
use crate::report::charts::{
    AnyChart, ChartFile, Scale, Series, Style, XyChart, XyPanel, color, fmt_num,
};
use crate::report::fit::Model;
use crate::study::compare::median;
use crate::workload::Workload;

/// Draw the charts into `dir`.
pub(super) fn charts(
    dir: &Path,
    o: &CapacityOptions,
    w: &Workload,
    results: &[BackendCapacity],
    target: u64,
) -> Result<Vec<ChartFile>, ReportError> {
    let title = format!("{} · fsync={}", w.file.name, w.file.cluster.fsync);
    let mut out = Vec::new();
    // Latency against achieved throughput, one panel per SLO term.
    let mut panels = Vec::new();
    for (ti, t) in o.slo.iter().enumerate() {
        let mut p = XyPanel::new(
            "achieved throughput (ops/s)",
            Scale::Linear,
            &format!(
                "{} {} latency (ms)",
                t.op,
                t.name().split_once('.').map_or("", |x| x.1)
            ),
            Scale::Log,
        );
        for (bi, r) in results.iter().enumerate() {
            // Every probe as a point; the line joins each rate's median (with --repeat).
            let mut by_rate: BTreeMap<u64, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
            let mut pts = Vec::new();
            for pr in &r.probes {
                let Some(v) = pr.measured_us[ti] else {
                    continue;
                };
                let y = v as f64 / 1e3;
                pts.push((pr.achieved, y));
                let e = by_rate.entry((pr.offered * 1e3) as u64).or_default();
                e.0.push(pr.achieved);
                e.1.push(y);
            }
            let medians = by_rate
                .into_values()
                .map(|(mut x, mut y)| (median(&mut x), median(&mut y)))
                .collect();
            p.series.push(Series {
                label: String::new(),
                color: color(bi),
                style: Style::Points,
                points: pts,
            });
            p.series.push(Series {
                label: format!("{} (max at SLO: {})", r.backend, r.max_rate_text()),
                color: color(bi),
                style: Style::Line,
                points: medians,
            });
        }
        p.hlines.push((t.bound_us / 1e3, format!("SLO {t}")));
        p.y_from_zero = false;
        panels.push(p);
    }
    let h = 120 + 380 * panels.len() as u32;
    out.push(
        AnyChart::Xy(XyChart {
            title: format!("{title} — latency against throughput"),
            panels,
            size: (1000, h),
        })
        .save(
            dir,
            "latency-vs-throughput",
            "Corrected latency of each rate-search probe against its achieved throughput, with the SLO",
        )?,
    );
    // Growth: one chart per metric, measured points and the fitted model up to the target.
    let lo = results
        .iter()
        .flat_map(|r| r.growth.iter().map(|g| g.keys))
        .min()
        .unwrap_or(1) as f64;
    let hi = (target as f64).max(lo * 1.01);
    let x_scale = if hi / lo >= 20.0 {
        Scale::Log
    } else {
        Scale::Linear
    };
    for (m, desc) in GROWTH_METRICS {
        let mut p = XyPanel::new("keys", x_scale, desc, Scale::Linear);
        for (bi, r) in results.iter().enumerate() {
            p.series.push(Series {
                label: format!("{} measured", r.backend),
                color: color(bi),
                style: Style::Points,
                points: r
                    .growth
                    .iter()
                    .filter_map(|g| Some((g.keys as f64, *g.metrics.get(m)?)))
                    .collect(),
            });
            if let Some(f) = r.fits.get(m) {
                let n = 60;
                let pts = (0..=n)
                    .map(|i| {
                        let x = if x_scale == Scale::Log {
                            lo * (hi / lo).powf(i as f64 / n as f64)
                        } else {
                            lo + (hi - lo) * i as f64 / n as f64
                        };
                        (x, f.eval(x))
                    })
                    .collect();
                p.series.push(Series {
                    label: format!(
                        "{} fit ({}, R² {:.3})",
                        r.backend,
                        match f.model {
                            Model::Linear { .. } => "linear",
                            Model::Power { .. } => "power law",
                        },
                        f.r2
                    ),
                    color: color(bi),
                    style: Style::Dashed,
                    points: pts,
                });
            }
        }
        p.markers
            .push((target as f64, format!("target {}", fmt_num(target as f64))));
        p.x_range = Some((
            lo * if x_scale == Scale::Log { 0.8 } else { 1.0 },
            hi * 1.05,
        ));
        out.push(
            AnyChart::Xy(XyChart {
                title: format!("{title} — {desc} against data size"),
                panels: vec![p],
                size: (1000, 560),
            })
            .save(
                dir,
                &format!("growth-{}", m.replace('_', "-")),
                &format!("{desc}: measured at each size (points) and the fitted model extrapolated to the target (dashed)"),
            )?,
        );
    }
    Ok(out)
}
