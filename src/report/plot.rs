//! `raftbench plot DIR`: a run's charts (`DIR/charts/*.png|svg`) and `DIR/report.html`,
//! from the results files alone.

use std::path::{Path, PathBuf};

use super::charts::ChartFile;
use super::data::RunData;
use super::html::Page;
use super::{ReportError, run_charts};

/// What `plot` wrote.
#[derive(Debug)]
pub struct Plotted {
    pub charts: Vec<ChartFile>,
    pub report: PathBuf,
}

/// Microseconds as a short duration with three significant digits: `850 µs`,
/// `2.22 ms`, `27.2 ms`, `570 ms`, `1.52 s`.
pub fn fmt_us(us: f64) -> String {
    let ms = us / 1e3;
    if us < 1e3 {
        format!("{us:.0} µs")
    } else if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 100.0 {
        format!("{ms:.1} ms")
    } else if ms < 1e3 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.2} s", ms / 1e3)
    }
}

/// Byte counts: `512 B`, `3.4 MiB`.
pub fn fmt_bytes(b: f64) -> String {
    bytesize::ByteSize::b(b.max(0.0) as u64)
        .display()
        .iec()
        .to_string()
}

/// Write the charts of one run into `charts_dir`.
pub fn run_charts(run: &RunData, charts_dir: &Path) -> Result<Vec<ChartFile>, ReportError> {
    let mut out = Vec::new();
    let list = [
        (
            "spectrum",
            "Latency spectrum: latency of successful operations at each percentile; solid = corrected (from the intended start), dashed = service time (from the send)",
            run_charts::spectrum(run),
        ),
        (
            "timeline",
            "Per second: successful operations and failures, p50 (dashed) and p99 corrected latency; dashed verticals = events, shaded = recovery windows",
            run_charts::timeline(run),
        ),
        (
            "resources",
            "Resident memory and data-directory size of each node, sampled once a second",
            run_charts::resources(run),
        ),
        (
            "recovery",
            "Recovery after each event (recovery.csv)",
            run_charts::recovery(run),
        ),
    ];
    for (name, caption, chart) in list {
        if let Some(c) = chart {
            out.push(c.save(charts_dir, name, caption)?);
        }
    }
    Ok(out)
}

/// Regenerate `dir/charts/` and `dir/report.html` from the results files in `dir`.
pub fn plot_run(dir: &Path) -> Result<Plotted, ReportError> {
    let run = RunData::load(dir)?;
    let charts = run_charts(&run, &dir.join("charts"))?;
    let report = dir.join("report.html");
    let mut page = Page::new(&format!("raftbench: {}", run.title()));
    run_sections(&mut page, &run);
    page.h2("Charts");
    for c in &charts {
        page.chart(c, dir)?;
    }
    page.write(&report)?;
    Ok(Plotted { charts, report })
}

/// The tables of a run: configuration, phases, summary, events, recovery, verify.
pub fn run_sections(page: &mut Page, run: &RunData) {
    let i = &run.manifest;
    let w = &i.workload.file;
    if !w.description.is_empty() {
        page.p(&w.description);
    }
    page.h2("Configuration");
    // Compact JSON with sorted keys, as in the file.
    fn compact<T: serde::Serialize>(x: &T) -> String {
        serde_json::to_value(x).map_or_else(|_| String::new(), |v| v.to_string())
    }
    page.facts(&[
        (
            "workload",
            format!("{} ({})", w.name, compact(&i.workload_file)),
        ),
        ("backend", i.backend.kind.to_string()),
        ("fsync", i.fsync.to_string()),
        (
            "disk",
            match &i.disk {
                Some(d) => format!(
                    "{} (fault file system: unsynced writes dropped at power cuts; directory changes {})",
                    d.kind,
                    match d.metadata.as_str() {
                        "strict" => "durable once their directory is fsynced",
                        _ => "durable at once",
                    }
                ),
                None => "plain directories".into(),
            },
        ),
        ("nodes", run.nodes().to_string()),
        ("seed", i.seed.to_string()),
        ("data", compact(&w.data)),
        ("backend options", compact(&i.backend)),
        ("raft", compact(&w.cluster)),
        ("machine", compact(&i.machine)),
        ("started", i.started_at.clone()),
        ("duration", format!("{:.1} s", i.duration_s)),
        (
            "load generator peak RSS",
            i.generator_peak_rss_bytes
                .map_or("-".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0)),
        ),
        (
            "raftbench",
            format!("{} ({})", i.raftbench_version, i.git_revision),
        ),
        ("command", i.cli.join(" ")),
    ]);

    page.h2("Phases");
    let rows: Vec<Vec<String>> = i
        .phases
        .iter()
        .map(|p| {
            let behind = match p.target_rate {
                Some(_) if p.unsent > 0 => format!(" (BEHIND: {} never sent)", p.unsent),
                Some(t) if p.achieved_rate < 0.95 * t => " (BEHIND)".into(),
                _ => String::new(),
            };
            vec![
                p.name.clone(),
                format!("{:.1}", p.elapsed_s),
                p.warmup_s.map_or("-".into(), |w| format!("{w:.1}")),
                p.target_rate
                    .map_or("closed loop".into(), |t| format!("{t:.0}")),
                format!("{:.0}{behind}", p.achieved_rate),
                format!("{:.1}", p.generator_cpu_us_per_op),
                p.raft_loop
                    .and_then(|r| r.us_per_ready)
                    .map_or("-".into(), |u| format!("{u:.0}")),
                p.raft_loop.map_or("-".into(), |r| {
                    format!("{:.1}", r.longest_stall_us as f64 / 1e3)
                }),
            ]
        })
        .collect();
    page.p_class(
        "note",
        "The harness's own cost, apart from the engine's: the load generator's CPU per operation, the raft loops' busy time per Ready (persist, apply and messages) and their longest stall (a raft-loop turn no write on that node could be acknowledged through), from the nodes' /status once a second.",
    );
    page.table(
        &[
            "phase",
            "elapsed s",
            "warm-up s",
            "target ops/s",
            "achieved ops/s",
            "generator µs CPU/op",
            "raft loop µs/Ready",
            "raft loop longest stall ms",
        ],
        &rows,
    );

    page.h2("Latency summary");
    page.p_class(
        "note",
        "Corrected latency counts from each operation's intended start (open loop: its slot in the schedule), so stalls are not hidden; service time counts from the send. Warm-up is listed apart.",
    );
    let rows: Vec<Vec<String>> = run
        .summary
        .iter()
        .map(|r| {
            vec![
                r.phase.clone(),
                r.op.clone(),
                r.outcome.clone(),
                r.latency_kind.clone(),
                r.count.to_string(),
                format!("{:.0}", r.ops_per_sec),
                fmt_us(r.mean_us),
                fmt_us(r.p50_us as f64),
                fmt_us(r.p90_us as f64),
                fmt_us(r.p99_us as f64),
                fmt_us(r.p999_us as f64),
                fmt_us(r.p9999_us as f64),
                fmt_us(r.max_us as f64),
            ]
        })
        .collect();
    page.table(
        &[
            "phase", "op", "outcome", "latency", "count", "ops/s", "mean", "p50", "p90", "p99",
            "p99.9", "p99.99", "max",
        ],
        &rows,
    );

    if !run.events.is_empty() {
        page.h2("Events and recovery");
        let rows: Vec<Vec<String>> = run
            .events
            .iter()
            .enumerate()
            .map(|(n, e)| {
                vec![
                    format!("#{n}"),
                    format!("{:.3}", e.t_ms as f64 / 1e3),
                    e.phase.clone(),
                    e.action.clone(),
                    e.node.clone(),
                    e.detail.clone(),
                ]
            })
            .collect();
        page.table(
            &["event", "t (s)", "phase", "action", "node", "detail"],
            &rows,
        );
        let rows: Vec<Vec<String>> = run
            .recovery
            .iter()
            .map(|r| {
                let value = if r.metric.ends_with("_bytes") {
                    fmt_bytes(r.ms)
                } else if r.metric.ends_with("_us") {
                    fmt_us(r.ms)
                } else {
                    fmt_us(r.ms * 1e3)
                };
                vec![
                    format!("#{}", r.event),
                    r.action.clone(),
                    if r.node > 0 {
                        r.node.to_string()
                    } else {
                        "-".into()
                    },
                    r.metric.clone(),
                    value,
                ]
            })
            .collect();
        page.table(&["event", "action", "node", "metric", "value"], &rows);
    }

    page.h2("Verification");
    match &i.verify {
        None => {
            page.p("This workload has no verify phase.");
        }
        Some(v) => {
            let (class, verdict) = if v.fails() {
                (
                    "bad",
                    format!(
                        "FAILED: {} acknowledged writes lost or stale (keys {:?})",
                        v.lost_writes(),
                        v.bad_keys
                    ),
                )
            } else if v.lost_writes() > 0 {
                (
                    "bad",
                    format!(
                        "EXPECTED LOSS (expect_loss under fsync = \"never\"): {} (keys {:?})",
                        v.loss_summary(),
                        v.bad_keys
                    ),
                )
            } else if v.unreadable > 0 {
                (
                    "bad",
                    format!(
                        "NOT VERIFIED: {} keys could not be read back (the {} read back were all correct)",
                        v.unreadable, v.ok
                    ),
                )
            } else {
                (
                    "ok",
                    "OK: every acknowledged write was read back".to_string(),
                )
            };
            page.p_class(class, &verdict);
            let cols = v.columns();
            page.table(
                &cols.map(|c| c.0),
                &[cols.iter().map(|c| c.1.to_string()).collect()],
            );
        }
    }
}
