//! The comparable metrics of one run, read from its results files.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::report::data::RunData;

/// Whether a smaller or a larger value is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
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

/// Growth of a per-process counter between two samples: a counter that went down is a
/// restarted process, whose new value is all new.
fn growth(a: u64, b: u64) -> f64 {
    if b >= a { (b - a) as f64 } else { b as f64 }
}

/// Per node over the run, from `resources.csv`: bytes its processes wrote to storage, CPU
/// seconds they used, and bytes RocksDB wrote flushing and compacting.
fn node_totals(run: &RunData) -> BTreeMap<u64, (f64, f64, f64)> {
    let mut by_node: BTreeMap<u64, Vec<&crate::workload::output::ResourceRow>> = BTreeMap::new();
    for r in &run.resources {
        by_node.entry(r.node).or_default().push(r);
    }
    by_node
        .into_iter()
        .map(|(node, mut rows)| {
            rows.sort_by(|a, b| a.t_s.total_cmp(&b.t_s));
            let (mut written, mut cpu_s, mut engine) = (0.0, 0.0, 0.0);
            // The engine counters skip samples where the node did not answer.
            let mut last_engine: Option<u64> = None;
            for w in rows.windows(2) {
                let (a, b) = (w[0], w[1]);
                written += growth(a.write_bytes, b.write_bytes);
                cpu_s += b.cpu_pct / 100.0 * (b.t_s - a.t_s).max(0.0);
            }
            for r in &rows {
                if let (Some(f), Some(c)) = (r.engine_flush_bytes, r.engine_compaction_bytes) {
                    engine += growth(last_engine.unwrap_or(0), f + c);
                    last_engine = Some(f + c);
                }
            }
            (node, (written, cpu_s, engine))
        })
        .collect()
}

/// Write and CPU costs of the run, whole-run figures over every phase:
/// - `write_bytes_per_write`: bytes the nodes wrote to storage (`/proc/<pid>/io`
///   `write_bytes`, all nodes) per acknowledged put or delete;
/// - `write_amplification`: bytes one replica wrote per byte of user data put (key and
///   value), so the replication factor is not in it: what one node's disk endures;
/// - `rocksdb_flush_compaction_bytes_per_write`: of those bytes, what RocksDB wrote
///   flushing memtables and compacting (its own statistics), for modes with RocksDB;
/// - `cpu_us_per_op`: node CPU time (all nodes) per successful operation.
fn write_costs(run: &RunData) -> Vec<(&'static str, f64)> {
    let totals = node_totals(run);
    if totals.is_empty() {
        return Vec::new();
    }
    let written: f64 = totals.values().map(|t| t.0).sum();
    let cpu_s: f64 = totals.values().map(|t| t.1).sum();
    let engine: f64 = totals.values().map(|t| t.2).sum();
    let ok = |op: Option<&str>| -> u64 {
        run.summary
            .iter()
            .filter(|r| {
                r.outcome == "ok" && r.latency_kind == "corrected" && op.is_none_or(|o| r.op == o)
            })
            .map(|r| r.count)
            .sum()
    };
    let (puts, deletes, all) = (ok(Some("put")), ok(Some("delete")), ok(None));
    let data = &run.manifest.workload.file.data;
    let user_bytes = puts as f64 * (data.key_size as f64 + data.value_size.mean());
    let mut out = Vec::new();
    if puts + deletes > 0 {
        out.push(("write_bytes_per_write", written / (puts + deletes) as f64));
        if engine > 0.0 {
            out.push((
                "rocksdb_flush_compaction_bytes_per_write",
                engine / (puts + deletes) as f64,
            ));
        }
    }
    if user_bytes > 0.0 {
        out.push((
            "write_amplification",
            written / totals.len() as f64 / user_bytes,
        ));
    }
    if all > 0 {
        out.push(("cpu_us_per_op", cpu_s * 1e6 / all as f64));
    }
    out
}

/// The comparable metrics of a run: achieved throughput per phase; p50/p99/p99.9/max of
/// successful operations' corrected latency and failures per (phase, op); recovery times per
/// event; disk and memory bytes per key; write bytes per write, write amplification and CPU
/// per operation ([`write_costs`]); acknowledged writes lost.
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
        // What the members measured of their own disk writes, beside the client's view
        // (etcd: WAL fsync and bbolt commit histograms; raftbench: mean synced persist).
        if let Some(s) = &p.server {
            for (q, v) in [
                ("server_wal_fsync_mean_us", s.wal_fsync_mean_us),
                ("server_wal_fsync_p99_us", s.wal_fsync_p99_us),
                ("server_backend_commit_mean_us", s.backend_commit_mean_us),
                ("server_backend_commit_p99_us", s.backend_commit_p99_us),
            ] {
                if let Some(v) = v {
                    push(format!("{}.{q}", p.name), Better::Lower, v);
                }
            }
        }
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
    for (name, v) in write_costs(run) {
        push(name.into(), Better::Lower, v);
    }
    if let Some(v) = &run.manifest.verify {
        push(
            "verify.lost_or_stale".into(),
            Better::Lower,
            v.lost_writes() as f64,
        );
        // How far back a power cut reached: the newest acknowledged write it took.
        if let Some(age) = v.newest_lost_age_ms {
            push(
                "verify.newest_lost_age_ms".into(),
                Better::Lower,
                age as f64,
            );
        }
    }
    m
}
