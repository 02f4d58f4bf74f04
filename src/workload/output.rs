//! The files of a results directory (columns documented in `results/README.md`).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use serde::{Deserialize, Serialize};

use super::Workload;
use super::events::{EventRow, RecoveryRow};
use super::spec::Phase;
use crate::metrics::{Outcome, Recorder};
use crate::wire::{Generator, Machine, PhaseRecord, RaftLoopCost, RunManifest, VerifyReport};

/// What one load phase measured.
pub struct PhaseOutput {
    pub name: String,
    /// Seconds from the run's start to the phase's start.
    pub offset_s: f64,
    pub elapsed: Duration,
    pub warmup: Option<Duration>,
    pub target_rate: Option<f64>,
    pub recorder: Recorder,
    /// CPU time the load generator (this process) spent per operation, in µs: its own
    /// cost, to check it is not the bottleneck.
    pub generator_cpu_us_per_op: f64,
    /// Open loop: operations of the schedule that were never sent, because the target (or
    /// the generator) could not keep up until the drain time after the phase's end ran out.
    pub unsent: u64,
    /// The raft loops' cost during the phase ([`raft_loop_cost`], filled in once the run's
    /// resource samples are in).
    pub raft_loop: Option<RaftLoopCost>,
    /// The members' own WAL fsync and backend commit figures over the phase.
    pub server: Option<crate::wire::ServerFigures>,
}

/// A line of `summary.csv`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SummaryRow {
    pub phase: String,
    pub op: String,
    pub outcome: String,
    pub count: u64,
    pub ops_per_sec: f64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub p9999_us: u64,
    pub max_us: u64,
    /// `corrected` (from the intended start) or `service` (from the send).
    pub latency_kind: String,
    /// `I/N` for load generator I of N (`run --client-id I --clients N`), `merged` for
    /// `raftbench merge` output, empty for a single generator.
    #[serde(default)]
    pub generator: String,
}

/// A line of `resources.csv`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResourceRow {
    /// Seconds since the run started (millisecond precision).
    pub t_s: f64,
    pub node: u64,
    pub rss_bytes: u64,
    pub disk_bytes: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub cpu_pct: f64,
    /// The node's raft loop, from its `/status` (empty when it did not answer): Readies
    /// handled and µs spent busy since the node started, and its longest turn in the last
    /// one to two seconds (the stall no write can be acknowledged through).
    #[serde(default)]
    pub raft_readies: Option<u64>,
    #[serde(default)]
    pub raft_busy_us: Option<u64>,
    #[serde(default)]
    pub raft_stall_us: Option<u64>,
    /// RocksDB's flush and compaction writes since the node's process opened it, from its
    /// `/status` (empty when it did not answer; 0 for engines without RocksDB).
    #[serde(default)]
    pub engine_flush_bytes: Option<u64>,
    #[serde(default)]
    pub engine_compaction_bytes: Option<u64>,
}

/// A line of `server-metrics.csv`: what one node measured itself during one second, from
/// its `GET /metrics` (raftbench's OpenMetrics, or etcd's Prometheus metrics under their
/// own names). Per-second figures are the growth since the node's previous scrape; a
/// field is empty when the node does not report it (or, for growth, at its first scrape
/// and when it did not answer: `up` 0).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServerMetricsRow {
    /// Seconds since the run started (millisecond precision).
    pub t_s: f64,
    pub node: u64,
    /// 1 when the node answered its scrape, 0 when it did not (down, paused, cut off).
    pub up: u8,
    pub term: Option<u64>,
    pub is_leader: Option<u8>,
    /// Leader changes the node saw during the second.
    pub leader_changes: Option<u64>,
    pub commit_index: Option<u64>,
    pub applied_index: Option<u64>,
    /// Committed entries not yet applied.
    pub apply_lag: Option<u64>,
    /// Synced persists (raftbench: log append + fsync) or WAL fsyncs (etcd) in the second,
    /// their mean and p99 (interpolated in the histogram's buckets), µs.
    pub fsyncs: Option<u64>,
    pub fsync_mean_us: Option<f64>,
    pub fsync_p99_us: Option<f64>,
    /// Entries per synced persist in the second (the group-commit factor; raftbench).
    pub entries_per_fsync: Option<f64>,
    /// p99 of applying one batch of committed entries in the second, µs.
    pub apply_p99_us: Option<f64>,
    /// p99 of handling one raft Ready in the second, µs (raftbench).
    pub ready_p99_us: Option<f64>,
    /// The raft loop's longest turn in the last one to two seconds, µs (raftbench).
    pub raft_stall_us: Option<u64>,
    /// Proposals dropped or failed in the second.
    pub proposals_dropped: Option<u64>,
    /// Bytes sent to and received from peers, and peer messages dropped, in the second.
    pub peer_sent_bytes: Option<u64>,
    pub peer_received_bytes: Option<u64>,
    pub peer_dropped_messages: Option<u64>,
    /// The storage engine's data on disk (raftbench: the data directory; etcd: its bbolt
    /// file) and the process's resident memory.
    pub disk_bytes: Option<u64>,
    pub rss_bytes: Option<u64>,
}

/// The columns of `server-metrics.csv`, in order.
pub const SERVER_METRICS_COLUMNS: &[&str] = &[
    "t_s",
    "node",
    "up",
    "term",
    "is_leader",
    "leader_changes",
    "commit_index",
    "applied_index",
    "apply_lag",
    "fsyncs",
    "fsync_mean_us",
    "fsync_p99_us",
    "entries_per_fsync",
    "apply_p99_us",
    "ready_p99_us",
    "raft_stall_us",
    "proposals_dropped",
    "peer_sent_bytes",
    "peer_received_bytes",
    "peer_dropped_messages",
    "disk_bytes",
    "rss_bytes",
];

/// A line of `timeline.csv`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TimelineRow {
    pub t_s: u64,
    pub phase: String,
    pub op: String,
    pub ops: u64,
    pub errors: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

/// One line per phase for the terminal.
pub fn phase_line(i: usize, p: &Phase, out: &PhaseOutput) -> String {
    let secs = measured_secs(out);
    let ok = out.recorder.ok_count();
    let errors: u64 = out
        .recorder
        .ops
        .iter()
        .filter(|((_, o), _)| *o != Outcome::Ok)
        .map(|(_, p)| p.corrected.len())
        .sum();
    let achieved = ok as f64 / secs;
    let behind = match out.target_rate {
        Some(r) if out.unsent > 0 => format!(
            " (BEHIND target {r:.0}/s: {} scheduled ops never sent)",
            out.unsent
        ),
        Some(r) if achieved < 0.95 * r => format!(" (BEHIND target {r:.0}/s)"),
        Some(r) => format!(" (target {r:.0}/s)"),
        None => String::new(),
    };
    let server = out.server.as_ref().map_or(String::new(), |s| {
        let us = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
        let mut line = format!(
            "; server ({}): {} WAL fsyncs, mean {} us, p99 {} us",
            s.source,
            s.wal_fsyncs,
            us(s.wal_fsync_mean_us),
            us(s.wal_fsync_p99_us)
        );
        if let Some(n) = s.backend_commits {
            line.push_str(&format!(
                ", {n} backend commits, mean {} us, p99 {} us",
                us(s.backend_commit_mean_us),
                us(s.backend_commit_p99_us)
            ));
        }
        line
    });
    format!(
        "phase {i:>2} {:<20} {:>9.0} ops/s{behind}, {ok} ok, {errors} failed/in doubt, {:.1}s, generator {:.1} us CPU/op{server}",
        p.name,
        achieved,
        out.elapsed.as_secs_f64(),
        out.generator_cpu_us_per_op
    )
}

/// The harness's own cost, for the run's closing line (phases are printed as they end,
/// before the once-a-second samples are all in): the load generator's peak RSS, and the
/// raft loops' cost per phase when nodes answered `/status`.
pub fn harness_line(phases: &[PhaseOutput], generator_peak_rss_bytes: u64) -> String {
    let loops: Vec<String> = phases
        .iter()
        .filter_map(|p| {
            let r = p.raft_loop?;
            let per_ready = r
                .us_per_ready
                .map_or(String::new(), |u| format!("{u:.0} us/Ready, "));
            Some(format!(
                "{}: {per_ready}longest stall {:.1} ms",
                p.name,
                r.longest_stall_us as f64 / 1e3
            ))
        })
        .collect();
    let mut line = format!(
        "harness cost: generator peak RSS {:.1} MiB",
        generator_peak_rss_bytes as f64 / (1024.0 * 1024.0)
    );
    if !loops.is_empty() {
        line += &format!("; raft loops (from /status): {}", loops.join("; "));
    }
    line
}

fn measured_secs(out: &PhaseOutput) -> f64 {
    (out.elapsed.saturating_sub(out.warmup.unwrap_or_default()))
        .as_secs_f64()
        .max(1e-3)
}

/// A summary row from a histogram measured over `secs` seconds.
pub fn summary_row(
    phase: &str,
    op: &str,
    outcome: &str,
    h: &Histogram<u64>,
    secs: f64,
    kind: &str,
) -> SummaryRow {
    SummaryRow {
        phase: phase.to_string(),
        op: op.to_string(),
        outcome: outcome.to_string(),
        count: h.len(),
        ops_per_sec: h.len() as f64 / secs,
        mean_us: h.mean(),
        p50_us: h.value_at_quantile(0.5),
        p90_us: h.value_at_quantile(0.9),
        p99_us: h.value_at_quantile(0.99),
        p999_us: h.value_at_quantile(0.999),
        p9999_us: h.value_at_quantile(0.9999),
        max_us: h.max(),
        latency_kind: kind.to_string(),
        generator: String::new(),
    }
}

/// Cores, memory and kernel of this machine, for `run.json` and reports.
pub fn machine() -> Machine {
    Machine {
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        memory_bytes: crate::procinfo::memory_bytes(),
        kernel: crate::procinfo::kernel(),
    }
}

/// What `run.json` records about a phase.
pub fn phase_record(p: &PhaseOutput) -> PhaseRecord {
    PhaseRecord {
        name: p.name.clone(),
        elapsed_s: p.elapsed.as_secs_f64(),
        warmup_s: p.warmup.map(|w| w.as_secs_f64()),
        target_rate: p.target_rate,
        achieved_rate: p.recorder.ok_count() as f64 / measured_secs(p),
        generator_cpu_us_per_op: p.generator_cpu_us_per_op,
        unsent: p.unsent,
        raft_loop: p.raft_loop,
        server: p.server.clone(),
    }
}

/// The raft loops' cost during the phase that started `offset_s` into the run and lasted
/// `elapsed_s`, from the once-a-second samples of the nodes' `/status` in `resources`: the
/// longest stall of any node (each sample covers the one to two seconds before it, so the
/// samples up to a second after the end count), and busy time per Ready over the nodes'
/// counters from the first to the last sample in the phase (a node whose counters went
/// back, restarted, counts from its restart). `None` when no sample carries them.
pub fn raft_loop_cost(
    offset_s: f64,
    elapsed_s: f64,
    resources: &[ResourceRow],
) -> Option<RaftLoopCost> {
    let end = offset_s + elapsed_s;
    let rows: Vec<&ResourceRow> = resources
        .iter()
        .filter(|r| r.t_s >= offset_s && r.t_s <= end + 1.0 && r.raft_stall_us.is_some())
        .collect();
    let longest_stall_us = rows.iter().filter_map(|r| r.raft_stall_us).max()?;
    let (mut busy, mut readies) = (0u64, 0u64);
    // Each node's counters, from its first sample in the phase to its last.
    let mut last: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.t_s <= end) {
        let (Some(b), Some(n)) = (r.raft_busy_us, r.raft_readies) else {
            continue;
        };
        match last.get(&r.node) {
            Some(&(pb, pn)) if n >= pn && b >= pb => {
                busy += b - pb;
                readies += n - pn;
            }
            Some(_) => {
                // Restarted: its counters began again from zero.
                busy += b;
                readies += n;
            }
            None => {}
        }
        last.insert(r.node, (b, n));
    }
    Some(RaftLoopCost {
        longest_stall_us,
        us_per_ready: (readies > 0).then(|| busy as f64 / readies as f64),
    })
}

fn csv_file<T: Serialize>(dir: &Path, name: &str, rows: &[T], header: &[&str]) -> io::Result<()> {
    let mut w = csv::Writer::from_path(dir.join(name)).map_err(io::Error::other)?;
    if rows.is_empty() {
        w.write_record(header).map_err(io::Error::other)?;
    }
    for r in rows {
        w.serialize(r).map_err(io::Error::other)?;
    }
    w.flush()
}

/// `events.csv` and `recovery.csv`.
pub fn write_events(dir: &Path, events: &[EventRow], recovery: &[RecoveryRow]) -> io::Result<()> {
    csv_file(
        dir,
        "events.csv",
        events,
        &["t_ms", "phase", "action", "node", "detail"],
    )?;
    csv_file(
        dir,
        "recovery.csv",
        recovery,
        &["event", "action", "node", "metric", "ms"],
    )
}

/// What was sampled of the nodes once a second: `resources.csv` and `server-metrics.csv`.
pub struct NodeSamples<'a> {
    pub resources: &'a [ResourceRow],
    pub server_metrics: &'a [ServerMetricsRow],
}

/// Write every results file: the CSVs and histogram logs from what the run measured, and
/// `run.json` from `manifest`. `started_at` is the run's start to the nanosecond (the
/// manifest gives it to the second), for the histogram logs. Returns the summary rows (also
/// printed by the caller).
pub fn write_all(
    dir: &Path,
    manifest: &RunManifest<Workload>,
    started_at: SystemTime,
    phases: &[PhaseOutput],
    events: &[EventRow],
    recovery: &[RecoveryRow],
    nodes: NodeSamples<'_>,
) -> io::Result<Vec<SummaryRow>> {
    let NodeSamples {
        resources,
        server_metrics,
    } = nodes;
    let mut summary = Vec::new();
    let mut timeline = Vec::new();
    for p in phases {
        let secs = measured_secs(p);
        for ((op, outcome), pair) in &p.recorder.ops {
            for (kind, h) in [("corrected", &pair.corrected), ("service", &pair.service)] {
                summary.push(summary_row(
                    &p.name,
                    op.as_str(),
                    outcome.as_str(),
                    h,
                    secs,
                    kind,
                ));
            }
        }
        let wsecs = p.warmup.map_or(1.0, |w| w.as_secs_f64().max(1e-3));
        for ((op, outcome), pair) in &p.recorder.warmup {
            let phase = format!("{}:warmup", p.name);
            summary.push(summary_row(
                &phase,
                op.as_str(),
                outcome.as_str(),
                &pair.corrected,
                wsecs,
                "corrected",
            ));
        }
        for ((s, op), sec) in &p.recorder.timeline {
            timeline.push(TimelineRow {
                t_s: *s,
                phase: p.name.clone(),
                op: op.as_str().into(),
                ops: sec.ok.len(),
                errors: sec.errors,
                p50_us: sec.ok.value_at_quantile(0.5),
                p99_us: sec.ok.value_at_quantile(0.99),
                max_us: sec.ok.max(),
            });
        }
    }
    let generator = manifest
        .generator
        .map_or(String::new(), |g| format!("{}/{}", g.id, g.of));
    for r in &mut summary {
        r.generator = generator.clone();
    }
    csv_file(dir, "summary.csv", &summary, &[])?;
    csv_file(
        dir,
        "timeline.csv",
        &timeline,
        &[
            "t_s", "phase", "op", "ops", "errors", "p50_us", "p99_us", "max_us",
        ],
    )?;
    write_events(dir, events, recovery)?;
    csv_file(
        dir,
        "resources.csv",
        resources,
        &[
            "t_s",
            "node",
            "rss_bytes",
            "disk_bytes",
            "read_bytes",
            "write_bytes",
            "cpu_pct",
            "raft_readies",
            "raft_busy_us",
            "raft_stall_us",
            "engine_flush_bytes",
            "engine_compaction_bytes",
        ],
    )?;
    csv_file(
        dir,
        "server-metrics.csv",
        server_metrics,
        SERVER_METRICS_COLUMNS,
    )?;
    if let Some(v) = &manifest.verify {
        write_verify_csv(dir, v)?;
    }
    write_hlog(dir, started_at, phases, manifest.generator)?;
    manifest.save(&dir.join("run.json"))?;
    Ok(summary)
}

/// `verify.csv`: one header line, one line of counts.
pub fn write_verify_csv(dir: &Path, v: &VerifyReport) -> io::Result<()> {
    let mut w = csv::Writer::from_path(dir.join("verify.csv")).map_err(io::Error::other)?;
    let cols = v.columns();
    w.write_record(cols.map(|c| c.0))
        .map_err(io::Error::other)?;
    w.write_record(cols.map(|c| c.1.to_string()))
        .map_err(io::Error::other)?;
    w.flush()
}

/// The `latency.hlog` tag of a histogram: `phase.op` for successful operations' corrected
/// latency, `phase.op.service` for their service time, `phase.op.error` and
/// `phase.op.indeterminate` for the corrected latency of failed and in-doubt operations.
/// Warm-up is phase `<name>:warmup`. Commas and spaces (not allowed in tags) become `_`.
pub fn hlog_tag(phase: &str, op: &str, outcome: Outcome, service: bool) -> String {
    let tag = format!("{phase}.{op}").replace([',', ' '], "_");
    match (outcome, service) {
        (Outcome::Ok, false) => tag,
        (Outcome::Ok, true) => format!("{tag}.service"),
        (o, _) => format!("{tag}.{}", o.as_str()),
    }
}

/// One interval of `latency.hlog`.
pub struct HlogEntry<'a> {
    pub tag: String,
    /// From the log's start time.
    pub start: Duration,
    pub duration: Duration,
    pub histogram: &'a Histogram<u64>,
}

/// Write an HdrHistogram interval log (V2, deflate, values in µs).
pub fn write_hlog_entries(
    path: &Path,
    started_at: SystemTime,
    entries: &[HlogEntry<'_>],
    note: Option<&str>,
) -> io::Result<()> {
    let mut file = BufWriter::new(File::create(path)?);
    let mut ser = V2DeflateSerializer::new();
    let mut builder = IntervalLogWriterBuilder::new();
    builder
        .add_comment("raftbench latency (us) per phase.op: successful operations' corrected latency; .service = their service time; .error/.indeterminate = failed/in-doubt operations; phase:warmup = warm-up")
        .with_start_time(started_at)
        .with_max_value_divisor(1.0);
    if let Some(n) = note {
        builder.add_comment(n);
    }
    let mut log = builder.begin_log_with(&mut file, &mut ser)?;
    for e in entries {
        log.write_histogram(e.histogram, e.start, e.duration, Tag::new(&e.tag))
            .map_err(|err| io::Error::other(format!("{err:?}")))?;
    }
    drop(log);
    file.flush()
}

/// `latency.hlog` of a run: per phase and op, every outcome (see [`hlog_tag`]).
fn write_hlog(
    dir: &Path,
    started_at: SystemTime,
    phases: &[PhaseOutput],
    generator: Option<Generator>,
) -> io::Result<()> {
    let mut entries = Vec::new();
    for p in phases {
        let start = Duration::from_secs_f64(p.offset_s);
        let warmup_name = format!("{}:warmup", p.name);
        for (name, map) in [
            (&p.name, &p.recorder.ops),
            (&warmup_name, &p.recorder.warmup),
        ] {
            for ((op, outcome), pair) in map {
                entries.push(HlogEntry {
                    tag: hlog_tag(name, op.as_str(), *outcome, false),
                    start,
                    duration: p.elapsed,
                    histogram: &pair.corrected,
                });
                if *outcome == Outcome::Ok && name == &p.name {
                    entries.push(HlogEntry {
                        tag: hlog_tag(name, op.as_str(), *outcome, true),
                        start,
                        duration: p.elapsed,
                        histogram: &pair.service,
                    });
                }
            }
        }
    }
    let note = generator.map(|g| format!("load generator {} of {}", g.id, g.of));
    write_hlog_entries(
        &dir.join("latency.hlog"),
        started_at,
        &entries,
        note.as_deref(),
    )?;
    // timeline.hlog: the per-second histograms behind timeline.csv, so that several
    // generators' timelines merge exactly.
    let mut seconds = Vec::new();
    for p in phases {
        for ((s, op), sec) in &p.recorder.timeline {
            if !sec.ok.is_empty() {
                seconds.push(HlogEntry {
                    tag: hlog_tag(&p.name, op.as_str(), Outcome::Ok, false),
                    start: Duration::from_secs(*s),
                    duration: Duration::from_secs(1),
                    histogram: &sec.ok,
                });
            }
        }
    }
    write_hlog_entries(
        &dir.join("timeline.hlog"),
        started_at,
        &seconds,
        note.as_deref(),
    )
}
