//! Growth with data: what a growth run measured, and the models fitted over the sizes.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::report::data::RunData;
use crate::report::fit::{Fit, fit};

/// The growth metrics measured at one size.
#[derive(Debug, Clone)]
pub struct GrowthPoint {
    pub keys: u64,
    pub dir: PathBuf,
    /// metric name → value.
    pub metrics: BTreeMap<&'static str, f64>,
}

/// Metrics fitted against size, with units for the report.
pub const GROWTH_METRICS: [(&str, &str); 6] = [
    ("disk_bytes_per_node", "data directory per node (bytes)"),
    ("rss_bytes_per_node", "RSS per node (bytes)"),
    ("snapshot_bytes", "snapshot size (bytes)"),
    ("snapshot_ms", "snapshot time (ms)"),
    ("replay_ms", "restart: replay (ms)"),
    ("caught_up_ms", "restart: caught up (ms)"),
];

/// Growth metrics of a growth run (see the module docs for where each comes from).
pub fn growth_metrics(run: &RunData, keys: u64) -> BTreeMap<&'static str, f64> {
    let mut m = BTreeMap::new();
    let snap_t = run
        .events
        .iter()
        .find(|e| e.action == "snapshot")
        .map_or(f64::INFINITY, |e| e.t_ms as f64 / 1e3);
    // The last sample of each live node strictly before the snapshot started.
    let mut last: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for r in run
        .resources
        .iter()
        .filter(|r| r.t_s < snap_t && r.rss_bytes > 0)
    {
        last.insert(r.node, (r.disk_bytes, r.rss_bytes));
    }
    // Per key by the keys actually written (a failed load write leaves fewer).
    let per = run.keys_stored().unwrap_or(keys).max(1) as f64;
    if !last.is_empty() {
        let n = last.len() as f64;
        let disk = last.values().map(|v| v.0 as f64).sum::<f64>() / n;
        let rss = last.values().map(|v| v.1 as f64).sum::<f64>() / n;
        m.insert("disk_bytes_per_node", disk);
        m.insert("rss_bytes_per_node", rss);
        m.insert("disk_bytes_per_key", disk / per);
        m.insert("rss_bytes_per_key", rss / per);
    }
    for r in &run.recovery {
        let name = match r.metric.as_str() {
            "snapshot_ms" => "snapshot_ms",
            "snapshot_bytes" => "snapshot_bytes",
            "replay_ms" => "replay_ms",
            "caught_up_ms" => "caught_up_ms",
            "open_ms" => "open_ms",
            _ => continue,
        };
        let e = m.entry(name).or_insert(r.ms);
        *e = e.max(r.ms);
    }
    m
}

/// Fit each of [`GROWTH_METRICS`] against the sizes it was measured at (a metric with too
/// few points for a model has none).
pub fn fit_growth(growth: &[GrowthPoint]) -> BTreeMap<&'static str, Fit> {
    let mut fits = BTreeMap::new();
    for (m, _) in GROWTH_METRICS {
        let pts: Vec<(f64, f64)> = growth
            .iter()
            .filter_map(|g| Some((g.keys as f64, *g.metrics.get(m)?)))
            .collect();
        if let Some(f) = fit(&pts) {
            fits.insert(m, f);
        }
    }
    fits
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn growth_metrics_use_the_sample_before_the_snapshot_and_keys_written() {
        use crate::workload::events::EventRow;
        use crate::workload::output::ResourceRow;
        let dir = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/quickstart-run"
        ));
        let mut run = RunData::load(dir).unwrap();
        let row = |t_s: f64, node: u64, disk: u64, rss: u64| ResourceRow {
            t_s,
            node,
            rss_bytes: rss,
            disk_bytes: disk,
            read_bytes: 0,
            write_bytes: 0,
            cpu_pct: 0.0,
            raft_readies: None,
            raft_busy_us: None,
            raft_stall_us: None,
            engine_flush_bytes: None,
            engine_compaction_bytes: None,
        };
        run.events = vec![EventRow {
            t_ms: 5200,
            phase: "restart".into(),
            action: "snapshot".into(),
            node: "1".into(),
            detail: String::new(),
        }];
        run.resources = vec![
            row(4.9, 1, 1000, 5000),
            row(4.9, 2, 3000, 7000),
            // Taken after the snapshot started: ignored.
            row(5.4, 1, 99_000, 99_000),
            // A dead node (RSS 0): ignored.
            row(5.0, 3, 0, 0),
        ];
        run.manifest.keys_written = Some(100);
        let m = growth_metrics(&run, 200);
        assert_eq!(m["disk_bytes_per_node"], 2000.0);
        assert_eq!(m["rss_bytes_per_node"], 6000.0);
        assert_eq!(
            m["disk_bytes_per_key"], 20.0,
            "divided by the 100 keys written"
        );
    }
}
