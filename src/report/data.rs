//! Reading a results directory back: `run.json`, the CSV files and `latency.hlog`.
//!
//! Charts and reports are built only from these files, never from a live run, so that
//! `raftbench plot DIR` regenerates exactly what `raftbench run` drew, and so that results
//! copied from another machine can be re-plotted.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::ReportError;
use crate::metrics::merge_into;
use crate::workload::events::{EventRow, RecoveryRow};
use crate::workload::output::{ResourceRow, SummaryRow, TimelineRow};
use crate::workload::verify::VerifyReport;

/// Latency kind of a histogram in `latency.hlog`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Corrected,
    Service,
}

/// Histograms of successful operations keyed by (phase, op, kind).
pub type Histograms = BTreeMap<(String, String, Kind), Histogram<u64>>;

/// Per-second histograms of successful operations keyed by (second, phase, op).
pub type TimelineHistograms = BTreeMap<(u64, String, String), Histogram<u64>>;

/// Corrected-latency histograms of failed/in-doubt operations and of warm-up (phase
/// `<name>:warmup`), keyed by (phase, op, outcome).
pub type OtherHistograms = BTreeMap<(String, String, String), Histogram<u64>>;

/// What `run.json` says about a phase.
#[derive(Debug, Clone, Deserialize)]
pub struct PhaseInfo {
    pub name: String,
    pub elapsed_s: f64,
    pub warmup_s: Option<f64>,
    pub target_rate: Option<f64>,
    pub achieved_rate: f64,
    pub generator_cpu_us_per_op: f64,
}

/// The parts of `run.json` the report uses (the rest is shown verbatim).
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub workload: String,
    pub description: String,
    pub backend: String,
    pub fsync: String,
    pub nodes: u64,
    pub seed: u64,
    pub keys: u64,
    /// Distinct keys the run wrote (absent in results of older versions).
    pub keys_written: Option<u64>,
    pub started_at: String,
    pub duration_s: f64,
    pub version: String,
    pub git_revision: String,
    pub cli: Vec<String>,
    pub phases: Vec<PhaseInfo>,
    pub verify: Option<VerifyReport>,
    /// `run.json` itself.
    pub raw: serde_json::Value,
}

/// Everything in one results directory.
#[derive(Debug, Clone)]
pub struct RunData {
    pub dir: PathBuf,
    pub info: RunInfo,
    pub summary: Vec<SummaryRow>,
    pub timeline: Vec<TimelineRow>,
    pub events: Vec<EventRow>,
    pub recovery: Vec<RecoveryRow>,
    pub resources: Vec<ResourceRow>,
    /// Successful operations' latency per (phase, op, kind), from `latency.hlog`.
    pub histograms: Histograms,
    /// Failed/in-doubt operations and warm-up (absent from results of older versions).
    pub other_histograms: OtherHistograms,
    /// From `timeline.hlog`, when the run wrote one.
    pub timeline_histograms: Option<TimelineHistograms>,
}

fn read_csv<T: DeserializeOwned>(dir: &Path, name: &str) -> Result<Vec<T>, ReportError> {
    let path = dir.join(name);
    let mut r = csv::Reader::from_path(&path).map_err(ReportError::csv(&path))?;
    let mut rows = Vec::new();
    for (i, rec) in r.deserialize().enumerate() {
        rows.push(rec.map_err(|source| ReportError::CsvRecord {
            path: path.clone(),
            // Line 1 is the header.
            line: i as u64 + 2,
            source,
        })?);
    }
    Ok(rows)
}

fn str_at(v: &serde_json::Value, ptr: &str) -> String {
    match v.pointer(ptr) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn u64_at(v: &serde_json::Value, ptr: &str) -> u64 {
    v.pointer(ptr).and_then(|x| x.as_u64()).unwrap_or(0)
}

impl RunInfo {
    fn load(dir: &Path) -> Result<RunInfo, ReportError> {
        let path = dir.join("run.json");
        let f = File::open(&path).map_err(ReportError::io(&path))?;
        let raw: serde_json::Value =
            serde_json::from_reader(BufReader::new(f)).map_err(ReportError::json(&path))?;
        let field = |name: &str| {
            raw.get(name)
                .ok_or_else(|| ReportError::malformed(&path, format!("missing field {name:?}")))
        };
        let shape = |field: &'static str| {
            let path = path.clone();
            move |source| ReportError::JsonField {
                path,
                field,
                source,
            }
        };
        let phases: Vec<PhaseInfo> =
            serde_json::from_value(field("phases")?.clone()).map_err(shape("phases"))?;
        let verify: Option<VerifyReport> =
            serde_json::from_value(field("verify")?.clone()).map_err(shape("verify"))?;
        Ok(RunInfo {
            workload: str_at(&raw, "/workload/name"),
            description: str_at(&raw, "/workload/description"),
            backend: str_at(&raw, "/backend/kind"),
            fsync: str_at(&raw, "/fsync"),
            // A live cluster's size is in its cluster file, not in the workload.
            nodes: raw
                .pointer("/live_cluster/nodes")
                .and_then(|n| n.as_array())
                .map_or_else(
                    || u64_at(&raw, "/workload/cluster/nodes"),
                    |n| n.len() as u64,
                ),
            seed: u64_at(&raw, "/seed"),
            keys: u64_at(&raw, "/workload/data/keys"),
            keys_written: raw.get("keys_written").and_then(|k| k.as_u64()),
            started_at: str_at(&raw, "/started_at"),
            duration_s: raw
                .get("duration_s")
                .and_then(|d| d.as_f64())
                .unwrap_or(0.0),
            version: str_at(&raw, "/raftbench_version"),
            git_revision: str_at(&raw, "/git_revision"),
            cli: serde_json::from_value(field("cli")?.clone()).unwrap_or_default(),
            phases,
            verify,
            raw,
        })
    }

    /// `workload · backend · fsync=...`, for chart titles.
    pub fn title(&self) -> String {
        format!(
            "{} · {} · fsync={}",
            self.workload, self.backend, self.fsync
        )
    }
}

/// One interval of an HdrHistogram interval log.
struct Interval {
    tag: String,
    /// From the log's start.
    start: std::time::Duration,
    histogram: Histogram<u64>,
}

/// Every tagged interval of an interval log.
fn read_intervals(path: &Path) -> Result<Vec<Interval>, ReportError> {
    let text = std::fs::read(path).map_err(ReportError::io(path))?;
    let mut de = Deserializer::new();
    let mut out = Vec::new();
    for entry in IntervalLogIterator::new(&text) {
        // The iterator's error is a parse offset without a std Error impl.
        let entry = entry.map_err(|e| ReportError::malformed(path, format!("{e:?}")))?;
        let LogEntry::Interval(iv) = entry else {
            continue;
        };
        let Some(tag) = iv.tag() else { continue };
        let tag = tag.as_str().to_string();
        let bytes = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            iv.encoded_histogram(),
        )
        .map_err(|source| ReportError::HlogBase64 {
            path: path.to_path_buf(),
            tag: tag.clone(),
            source,
        })?;
        let histogram: Histogram<u64> =
            de.deserialize(&mut bytes.as_slice())
                .map_err(|source| ReportError::HlogHistogram {
                    path: path.to_path_buf(),
                    tag: tag.clone(),
                    source,
                })?;
        out.push(Interval {
            tag,
            start: iv.start_timestamp(),
            histogram,
        });
    }
    Ok(out)
}

/// A tag's (phase, op, kind, outcome); phase names had commas and spaces replaced in tags
/// and are mapped back.
fn parse_tag(
    path: &Path,
    tag: &str,
    phases: &[PhaseInfo],
) -> Result<(String, String, Kind, &'static str), ReportError> {
    let (base, kind, outcome) = if let Some(b) = tag.strip_suffix(".service") {
        (b, Kind::Service, "ok")
    } else if let Some(b) = tag.strip_suffix(".error") {
        (b, Kind::Corrected, "error")
    } else if let Some(b) = tag.strip_suffix(".indeterminate") {
        (b, Kind::Corrected, "indeterminate")
    } else {
        (tag, Kind::Corrected, "ok")
    };
    let Some((phase_tag, op)) = base.rsplit_once('.') else {
        return Err(ReportError::malformed(
            path,
            format!("tag {tag:?} is not phase.op[.service|.error|.indeterminate]"),
        ));
    };
    let (base_tag, suffix) = match phase_tag.strip_suffix(":warmup") {
        Some(b) => (b, ":warmup"),
        None => (phase_tag, ""),
    };
    let phase = phases
        .iter()
        .find(|p| p.name.replace([',', ' '], "_") == base_tag)
        .map_or_else(|| base_tag.to_string(), |p| p.name.clone())
        + suffix;
    Ok((phase, op.to_string(), kind, outcome))
}

/// Read `latency.hlog`: successful operations of measured phases by (phase, op, kind), and
/// the rest — failed and in-doubt operations, warm-up — by (phase, op, outcome).
fn read_hlog(
    dir: &Path,
    phases: &[PhaseInfo],
) -> Result<(Histograms, OtherHistograms), ReportError> {
    let path = dir.join("latency.hlog");
    let mut out: (Histograms, OtherHistograms) = Default::default();
    for iv in read_intervals(&path)? {
        let (phase, op, kind, outcome) = parse_tag(&path, &iv.tag, phases)?;
        // Successful operations of measured phases feed the spectra; everything else
        // (failures, warm-up) is kept for exact merging.
        if outcome == "ok" && !phase.ends_with(":warmup") {
            add(&mut out.0, (phase, op, kind), iv.histogram, &path, &iv.tag)?;
        } else if kind == Kind::Corrected {
            add(
                &mut out.1,
                (phase, op, outcome.to_string()),
                iv.histogram,
                &path,
                &iv.tag,
            )?;
        }
    }
    Ok(out)
}

/// Read `timeline.hlog` (absent in results of older versions): successful operations'
/// corrected latency per (second since the run started, phase, op).
fn read_timeline_hlog(
    dir: &Path,
    phases: &[PhaseInfo],
) -> Result<Option<TimelineHistograms>, ReportError> {
    let path = dir.join("timeline.hlog");
    if !path.is_file() {
        return Ok(None);
    }
    let mut out = TimelineHistograms::new();
    for iv in read_intervals(&path)? {
        let (phase, op, _, _) = parse_tag(&path, &iv.tag, phases)?;
        add(
            &mut out,
            (iv.start.as_secs(), phase, op),
            iv.histogram,
            &path,
            &iv.tag,
        )?;
    }
    Ok(Some(out))
}

/// Add an interval's histogram under `key` (a log can hold several intervals per key).
fn add<K: Ord>(
    map: &mut BTreeMap<K, Histogram<u64>>,
    key: K,
    h: Histogram<u64>,
    path: &Path,
    tag: &str,
) -> Result<(), ReportError> {
    match map.entry(key) {
        std::collections::btree_map::Entry::Occupied(mut acc) => merge_into(acc.get_mut(), &h)
            .map_err(|source| ReportError::Merge {
                what: format!("{}: intervals of tag {tag}", path.display()),
                source,
            }),
        std::collections::btree_map::Entry::Vacant(v) => {
            v.insert(h);
            Ok(())
        }
    }
}

impl RunData {
    /// Load a results directory written by `raftbench run`.
    pub fn load(dir: &Path) -> Result<RunData, ReportError> {
        if !dir.join("run.json").is_file() {
            return Err(ReportError::malformed(
                dir,
                "not a raftbench results directory (no run.json)",
            ));
        }
        let info = RunInfo::load(dir)?;
        let (histograms, other_histograms) = read_hlog(dir, &info.phases)?;
        let timeline_histograms = read_timeline_hlog(dir, &info.phases)?;
        Ok(RunData {
            dir: dir.to_path_buf(),
            summary: read_csv(dir, "summary.csv")?,
            timeline: read_csv(dir, "timeline.csv")?,
            events: read_csv(dir, "events.csv")?,
            recovery: read_csv(dir, "recovery.csv")?,
            resources: read_csv(dir, "resources.csv")?,
            histograms,
            other_histograms,
            timeline_histograms,
            info,
        })
    }

    /// The summary row of successful operations' corrected latency for (phase, op).
    pub fn ok_row(&self, phase: &str, op: &str) -> Option<&SummaryRow> {
        self.summary.iter().find(|r| {
            r.phase == phase && r.op == op && r.outcome == "ok" && r.latency_kind == "corrected"
        })
    }

    /// Distinct keys the run wrote (from `run.json`, else the verified keys); `None` when
    /// unknown, so per-key figures are not made up from the workload's key space.
    pub fn keys_stored(&self) -> Option<u64> {
        self.info
            .keys_written
            .or_else(|| self.info.verify.as_ref().map(|v| v.keys))
            .filter(|k| *k > 0)
    }

    /// The last sample of each node while its process was alive, and its peak RSS.
    pub fn final_resources(&self) -> BTreeMap<u64, (ResourceRow, u64)> {
        let mut out: BTreeMap<u64, (ResourceRow, u64)> = BTreeMap::new();
        // A dead node's samples have rss 0: they would drag the means down.
        for r in self.resources.iter().filter(|r| r.rss_bytes > 0) {
            let e = out
                .entry(r.node)
                .or_insert_with(|| (r.clone(), r.rss_bytes));
            if r.t_s >= e.0.t_s {
                e.0 = r.clone();
            }
            e.1 = e.1.max(r.rss_bytes);
        }
        out
    }
}
