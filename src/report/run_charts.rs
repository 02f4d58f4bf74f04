//! The charts of one run: latency spectrum, timeline with events, resources, recovery.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use super::charts::{AnyChart, BarChart, Scale, Series, Style, XyChart, XyPanel, color};
use super::data::{Kind, RunData};

/// Points of a latency spectrum: (quantile, ms), up to the quantile the sample size can
/// support (1 - 1/count), at most 99.999 %.
pub fn spectrum_points(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let max_nines = (h.len() as f64).log10().clamp(1.0, 5.0);
    let steps = 240;
    (0..=steps)
        .map(|i| {
            let x = max_nines * i as f64 / steps as f64;
            let q = 1.0 - 10f64.powf(-x);
            (q, h.value_at_quantile(q) as f64 / 1e3)
        })
        .collect()
}

/// Latency against percentile, one colour per (phase, op); corrected solid, service dashed.
pub fn spectrum(run: &RunData) -> Option<AnyChart> {
    let mut panel = XyPanel::new("percentile", Scale::Nines, "latency (ms)", Scale::Log);
    let mut keys: Vec<(&str, &str)> = run
        .histograms
        .keys()
        .map(|(p, o, _)| (p.as_str(), o.as_str()))
        .collect();
    keys.dedup();
    for (i, (phase, op)) in keys.iter().enumerate() {
        for (kind, style, what) in [
            (Kind::Corrected, Style::Line, "corrected"),
            (Kind::Service, Style::Dashed, "service"),
        ] {
            let Some(h) = run
                .histograms
                .get(&(phase.to_string(), op.to_string(), kind))
            else {
                continue;
            };
            panel.series.push(Series {
                label: format!("{phase} {op} ({what}, n={})", h.len()),
                color: color(i),
                style,
                points: spectrum_points(h),
            });
        }
    }
    if panel.series.is_empty() {
        return None;
    }
    Some(AnyChart::Xy(XyChart {
        title: format!("{} — latency spectrum", run.title()),
        panels: vec![panel],
        size: (1000, 620),
    }))
}

/// Event markers (seconds, label) and recovery windows (seconds) of a run.
type Markers = Vec<(f64, String)>;

fn events(run: &RunData) -> (Markers, Vec<(f64, f64)>) {
    let markers = run
        .events
        .iter()
        .map(|e| {
            let label = if e.node.is_empty() {
                e.action.clone()
            } else {
                format!("{} n{}", e.action, e.node)
            };
            (e.t_ms as f64 / 1e3, label)
        })
        .collect();
    let mut windows: BTreeMap<usize, f64> = BTreeMap::new();
    for r in &run.recovery {
        if r.metric.ends_with("_ms") {
            let w = windows.entry(r.event).or_default();
            *w = w.max(r.ms);
        }
    }
    let spans = windows
        .into_iter()
        .filter_map(|(i, ms)| {
            let t = run.events.get(i)?.t_ms as f64 / 1e3;
            Some((t, t + ms / 1e3))
        })
        .collect();
    (markers, spans)
}

/// The whole second a `server-metrics.csv` row's growth mostly belongs to: a scrape at
/// `t_s` reports what happened since the one a second before it.
fn scraped_second(t_s: f64) -> u64 {
    (t_s - 0.5).max(0.0).floor() as u64
}

/// Leader changes the nodes saw (`server-metrics.csv`): one marker per second in which
/// any node saw one, naming the node that was leader at its end when one said so.
fn leader_changes(run: &RunData) -> Markers {
    let mut seconds: BTreeMap<u64, Option<u64>> = BTreeMap::new();
    for r in &run.server_metrics {
        if r.leader_changes.unwrap_or(0) > 0 {
            seconds.entry(scraped_second(r.t_s)).or_default();
        }
    }
    for r in &run.server_metrics {
        if let Some(l) = seconds.get_mut(&scraped_second(r.t_s))
            && r.is_leader == Some(1)
        {
            *l = Some(r.node);
        }
    }
    seconds
        .into_iter()
        .map(|(t, l)| {
            let label = l.map_or("new leader".to_string(), |n| format!("leader n{n}"));
            (t as f64 + 0.5, label)
        })
        .collect()
}

/// The nodes' own figures per second beside the client's: the slowest node's fsync p99
/// (into the latency panel) and each node's apply lag (a panel of its own). `None`
/// when the run has no `server-metrics.csv` or none of these figures.
fn server_series(run: &RunData, first_color: usize) -> (Option<Series>, Option<XyPanel>) {
    let mut fsync: BTreeMap<u64, f64> = BTreeMap::new();
    for r in &run.server_metrics {
        if let Some(p) = r.fsync_p99_us.filter(|_| r.fsyncs.unwrap_or(0) > 0) {
            let e = fsync.entry(scraped_second(r.t_s)).or_default();
            *e = e.max(p);
        }
    }
    let fsync = (!fsync.is_empty()).then(|| Series {
        label: "server fsync p99 (slowest node)".into(),
        color: color(first_color),
        style: Style::LinePoints,
        points: fsync
            .into_iter()
            .map(|(t, us)| (t as f64 + 0.5, us / 1e3))
            .collect(),
    });
    let mut nodes: Vec<u64> = run
        .server_metrics
        .iter()
        .filter(|r| r.apply_lag.is_some())
        .map(|r| r.node)
        .collect();
    nodes.sort_unstable();
    nodes.dedup();
    let lag = (!nodes.is_empty()).then(|| {
        let mut p = XyPanel::new(
            "time since start (s)",
            Scale::Linear,
            "apply lag (entries committed, not applied)",
            Scale::Linear,
        );
        for (i, n) in nodes.iter().enumerate() {
            p.series.push(Series {
                label: format!("node {n}"),
                color: color(first_color + 1 + i),
                style: Style::Line,
                points: run
                    .server_metrics
                    .iter()
                    .filter(|r| r.node == *n)
                    .filter_map(|r| Some((r.t_s, r.apply_lag? as f64)))
                    .collect(),
            });
        }
        p
    });
    (fsync, lag)
}

/// Throughput and p50/p99 per second per op, with event markers and recovery shading; with
/// the nodes' own metrics, the slowest node's fsync p99 beside the client's latency, apply
/// lag per node, and leader changes as markers.
pub fn timeline(run: &RunData) -> Option<AnyChart> {
    if run.timeline.is_empty() {
        return None;
    }
    // A second can straddle two phases: add the counts, keep the busier phase's latency.
    let mut by: BTreeMap<(String, u64), (u64, u64, u64, u64)> = BTreeMap::new();
    for r in &run.timeline {
        let e = by.entry((r.op.clone(), r.t_s)).or_default();
        if r.ops > e.0 {
            e.2 = r.p50_us;
            e.3 = r.p99_us;
        }
        e.0 += r.ops;
        e.1 += r.errors;
    }
    let ops: Vec<String> = {
        let mut o: Vec<String> = by.keys().map(|k| k.0.clone()).collect();
        o.dedup();
        o
    };
    let (markers, spans) = events(run);
    let mut tp = XyPanel::new(
        "time since start (s)",
        Scale::Linear,
        "ops/s",
        Scale::Linear,
    );
    let mut lat = XyPanel::new(
        "time since start (s)",
        Scale::Linear,
        "latency (ms)",
        Scale::Log,
    );
    for (i, op) in ops.iter().enumerate() {
        let rows: Vec<(f64, (u64, u64, u64, u64))> = by
            .iter()
            .filter(|(k, _)| &k.0 == op)
            .map(|(k, v)| (k.1 as f64 + 0.5, *v))
            .collect();
        tp.series.push(Series {
            label: format!("{op} ok"),
            color: color(i),
            style: Style::Line,
            points: rows.iter().map(|(t, v)| (*t, v.0 as f64)).collect(),
        });
        if rows.iter().any(|(_, v)| v.1 > 0) {
            tp.series.push(Series {
                label: format!("{op} failed/in doubt"),
                color: color(i),
                style: Style::Points,
                points: rows
                    .iter()
                    .filter(|(_, v)| v.1 > 0)
                    .map(|(t, v)| (*t, v.1 as f64))
                    .collect(),
            });
        }
        for (label, style, idx) in [("p99", Style::Line, 3), ("p50", Style::Dashed, 2)] {
            lat.series.push(Series {
                label: format!("{op} {label}"),
                color: color(i),
                style,
                points: rows
                    .iter()
                    .filter(|(_, v)| v.0 > 0)
                    .map(|(t, v)| {
                        let us = if idx == 3 { v.3 } else { v.2 };
                        (*t, us as f64 / 1e3)
                    })
                    .collect(),
            });
        }
    }
    let (fsync, lag) = server_series(run, ops.len());
    lat.series.extend(fsync);
    let mut markers = markers;
    markers.extend(leader_changes(run));
    let mut panels = vec![tp, lat];
    panels.extend(lag);
    for p in &mut panels {
        p.markers = markers.clone();
        p.spans = spans.clone();
    }
    let size = (1100, 400 * panels.len() as u32);
    Some(AnyChart::Xy(XyChart {
        title: format!(
            "{} — throughput and corrected latency per second",
            run.title()
        ),
        panels,
        size,
    }))
}

/// RSS and data-directory bytes per node over time.
pub fn resources(run: &RunData) -> Option<AnyChart> {
    if run.resources.is_empty() {
        return None;
    }
    let (markers, _) = events(run);
    let mut rss = XyPanel::new(
        "time since start (s)",
        Scale::Linear,
        "RSS (MiB)",
        Scale::Linear,
    );
    let mut disk = XyPanel::new(
        "time since start (s)",
        Scale::Linear,
        "data directory (MiB)",
        Scale::Linear,
    );
    let mut nodes: Vec<u64> = run.resources.iter().map(|r| r.node).collect();
    nodes.sort_unstable();
    nodes.dedup();
    const MIB: f64 = 1024.0 * 1024.0;
    for (i, n) in nodes.iter().enumerate() {
        let rows = run.resources.iter().filter(|r| r.node == *n);
        // A dead node has no sample; keep the gap rather than joining across it.
        rss.series.push(Series {
            label: format!("node {n}"),
            color: color(i),
            style: Style::Line,
            points: rows
                .clone()
                .filter(|r| r.rss_bytes > 0)
                .map(|r| (r.t_s, r.rss_bytes as f64 / MIB))
                .collect(),
        });
        disk.series.push(Series {
            label: format!("node {n}"),
            color: color(i),
            style: Style::Line,
            points: rows.map(|r| (r.t_s, r.disk_bytes as f64 / MIB)).collect(),
        });
    }
    rss.markers = markers.clone();
    disk.markers = markers;
    Some(AnyChart::Xy(XyChart {
        title: format!("{} — memory and disk per node", run.title()),
        panels: vec![rss, disk],
        size: (1100, 760),
    }))
}

/// A recovery metric's label: `#2 kill n1: leader_elected`.
pub fn recovery_label(run: &RunData, event: usize, metric: &str, node: u64) -> String {
    let action = run
        .events
        .get(event)
        .map_or("?".to_string(), |e| e.action.clone());
    let metric = metric.trim_end_matches("_ms");
    if node > 0 {
        format!("#{event} {action}: {metric} (n{node})")
    } else {
        format!("#{event} {action}: {metric}")
    }
}

/// One bar per time-valued recovery metric.
pub fn recovery(run: &RunData) -> Option<AnyChart> {
    let rows: Vec<_> = run
        .recovery
        .iter()
        .filter(|r| r.metric.ends_with("_ms"))
        .collect();
    if rows.is_empty() {
        return None;
    }
    Some(AnyChart::Bar(BarChart {
        title: format!("{} — recovery", run.title()),
        x_desc: "milliseconds".into(),
        categories: rows
            .iter()
            .map(|r| recovery_label(run, r.event, &r.metric, r.node))
            .collect(),
        series: vec![(
            run.manifest.backend.kind.to_string(),
            rows.iter().map(|r| Some((r.ms, None))).collect(),
        )],
    }))
}
