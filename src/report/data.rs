//! Reading a results directory back: `run.json`, the CSV files and `latency.hlog`.
//!
//! Charts and reports are built only from these files, never from a live run, so that
//! `raftbench plot DIR` regenerates exactly what `raftbench run` drew, and so that results
//! copied from another machine can be re-plotted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use serde::de::DeserializeOwned;

use super::ReportError;
use crate::metrics::merge_into;
use crate::wire::{PhaseRecord, RunManifest};
use crate::workload::Workload;
use crate::workload::events::{EventRow, RecoveryRow};
use crate::workload::output::{ResourceRow, ServerMetricsRow, SummaryRow, TimelineRow};

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

/// Everything in one results directory.
#[derive(Debug, Clone)]
pub struct RunData {
    pub dir: PathBuf,
    /// `run.json`.
    pub manifest: RunManifest<Workload>,
    pub summary: Vec<SummaryRow>,
    pub timeline: Vec<TimelineRow>,
    pub events: Vec<EventRow>,
    pub recovery: Vec<RecoveryRow>,
    pub resources: Vec<ResourceRow>,
    /// `server-metrics.csv` (empty for results of versions before it).
    pub server_metrics: Vec<ServerMetricsRow>,
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
        // Stored at the size it had grown to: it grows again when more is added into it
        // (merging generators, repetitions or seconds), as the histograms it came from did.
        let mut histogram: Histogram<u64> =
            de.deserialize(&mut bytes.as_slice())
                .map_err(|source| ReportError::HlogHistogram {
                    path: path.to_path_buf(),
                    tag: tag.clone(),
                    source,
                })?;
        histogram.auto(true);
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
    phases: &[PhaseRecord],
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
    phases: &[PhaseRecord],
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
    phases: &[PhaseRecord],
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
        let manifest = RunManifest::load(&dir.join("run.json"))?;
        let (histograms, other_histograms) = read_hlog(dir, &manifest.phases)?;
        let timeline_histograms = read_timeline_hlog(dir, &manifest.phases)?;
        Ok(RunData {
            dir: dir.to_path_buf(),
            summary: read_csv(dir, "summary.csv")?,
            timeline: read_csv(dir, "timeline.csv")?,
            events: read_csv(dir, "events.csv")?,
            recovery: read_csv(dir, "recovery.csv")?,
            resources: read_csv(dir, "resources.csv")?,
            server_metrics: if dir.join("server-metrics.csv").is_file() {
                read_csv(dir, "server-metrics.csv")?
            } else {
                Vec::new()
            },
            histograms,
            other_histograms,
            timeline_histograms,
            manifest,
        })
    }

    /// `workload · backend · fsync=...`, for chart titles.
    pub fn title(&self) -> String {
        let m = &self.manifest;
        format!(
            "{} · {} · fsync={}",
            m.workload.file.name, m.backend.kind, m.fsync
        )
    }

    /// Nodes of the cluster the run measured: a live cluster's from its cluster file, else
    /// the workload's.
    pub fn nodes(&self) -> u64 {
        let m = &self.manifest;
        m.live_cluster
            .as_ref()
            .map_or(m.workload.file.cluster.nodes, |l| l.nodes.len() as u64)
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
        self.manifest
            .keys_written
            .or_else(|| self.manifest.verify.as_ref().map(|v| v.keys))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{ManifestError, RUN_MANIFEST_SCHEMA};

    const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/quickstart-run");

    fn json(path: &Path) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    /// The fixture predates `schema_version` (and `keys_written`, `live_cluster`,
    /// `generator`): it is read as version 1.
    #[test]
    fn the_fixture_loads_as_version_1() {
        let run = RunData::load(Path::new(FIXTURE)).unwrap();
        let m = &run.manifest;
        assert_eq!(m.schema_version, RUN_MANIFEST_SCHEMA);
        assert_eq!(m.workload.file.name, "quickstart");
        assert_eq!((m.seed, m.keys_written, m.generator), (42, None, None));
        assert_eq!(run.nodes(), 3);
        assert_eq!(run.title(), "quickstart · memwal · fsync=always");
        let names: Vec<&str> = m.phases.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["load", "run"]);
        assert_eq!(m.verify.as_ref().map(|v| v.keys), Some(4429));
        assert_eq!(
            run.keys_stored(),
            Some(4429),
            "from verify, without keys_written"
        );
        assert_eq!(m.machine.cores, 2);
    }

    /// The sample in `results/` (shown in the README) keeps loading.
    #[test]
    fn the_committed_sample_runs_load() {
        let runs = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/results/sample-compare-quickstart/runs"
        ));
        let mut backends = std::collections::BTreeMap::new();
        for d in std::fs::read_dir(runs).unwrap() {
            let run = RunData::load(&d.unwrap().path()).unwrap();
            assert_eq!(run.manifest.keys_written, Some(10_000));
            *backends
                .entry(run.manifest.backend.kind.to_string())
                .or_insert(0) += 1;
        }
        // Three repetitions on each of memwal, rocksdb and etcd.
        let expected: std::collections::BTreeMap<String, i32> = ["etcd", "memwal", "rocksdb"]
            .iter()
            .map(|b| (b.to_string(), 3))
            .collect();
        assert_eq!(backends, expected);
    }

    /// Written back, a manifest reads back equal, and its JSON is the file it came from plus
    /// `schema_version` and the fields that file's version did not write yet.
    #[test]
    fn a_manifest_round_trips_in_the_shape_it_had() {
        let path = Path::new(FIXTURE).join("run.json");
        let m = RunManifest::<Workload>::load(&path).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("run.json");
        m.save(&out).unwrap();
        assert_eq!(RunManifest::<Workload>::load(&out).unwrap(), m);

        let mut written = json(&out);
        let o = written.as_object_mut().unwrap();
        assert_eq!(o.remove("schema_version"), Some(1.into()));
        for k in ["keys_written", "live_cluster", "generator", "disk"] {
            assert_eq!(o.remove(k), Some(serde_json::Value::Null), "{k}");
        }
        // Added with power-loss runs: per-verify results, the loss figures, expect_loss and
        // the fault file system's metadata mode.
        assert_eq!(o.remove("verify_phases"), Some(serde_json::json!([])));
        let v = o["verify"].as_object_mut().unwrap();
        for (k, want) in [
            ("newest_lost_acked_ms", serde_json::Value::Null),
            ("newest_lost_age_ms", serde_json::Value::Null),
            ("loss_expected", false.into()),
        ] {
            assert_eq!(v.remove(k), Some(want), "{k}");
        }
        let wl = o["workload"].as_object_mut().unwrap();
        assert_eq!(wl.remove("expect_loss"), Some(false.into()));
        let cl = wl["cluster"].as_object_mut().unwrap();
        assert_eq!(cl.remove("faultfs_metadata"), Some("strict".into()));
        // The snapshot write rate came later (a run before it wrote at full speed; read
        // back, it shows the default).
        assert_eq!(cl.remove("snapshot_write_rate"), Some("32.0 MiB".into()));
        // Storage modes added the raft-engine and redb tables and RocksDB's `state_wal`
        // (read back, the defaults), in the workload's cluster section and the backend.
        assert!(cl.remove("raft_engine").is_some_and(|v| v.is_object()));
        assert!(cl.remove("redb").is_some_and(|v| v.is_object()));
        // etcd as a peer added its options table.
        assert!(cl.remove("etcd").is_some_and(|v| v.is_object()));
        let r = cl["rocksdb"].as_object_mut().unwrap();
        assert_eq!(r.remove("state_wal"), Some(true.into()));
        let b = o["backend"].as_object_mut().unwrap();
        assert_eq!(b.remove("snapshot_write_rate"), Some("32.0 MiB".into()));
        assert!(b.remove("raft_engine").is_some_and(|v| v.is_object()));
        assert!(b.remove("redb").is_some_and(|v| v.is_object()));
        assert!(b.remove("etcd").is_some_and(|v| v.is_object()));
        let r = b["rocksdb"].as_object_mut().unwrap();
        assert_eq!(r.remove("state_wal"), Some(true.into()));
        // Phases gained `unsent` (open-loop operations never sent) after the fixture.
        for p in written["phases"].as_array_mut().unwrap() {
            assert_eq!(p.as_object_mut().unwrap().remove("unsent"), Some(0.into()));
        }
        // Events gained `cache` (restart events' page-cache state) after the fixture.
        for p in written["workload"]["phase"].as_array_mut().unwrap() {
            for e in p["event"].as_array_mut().unwrap() {
                assert_eq!(
                    e.as_object_mut().unwrap().remove("cache"),
                    Some("warm".into())
                );
            }
        }
        assert_eq!(written, json(&path));
    }

    #[test]
    fn an_unknown_schema_version_is_refused() {
        let mut v = json(&Path::new(FIXTURE).join("run.json"));
        v["schema_version"] = 2.into();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("run.json"), v.to_string()).unwrap();
        let e = RunData::load(dir.path()).unwrap_err();
        assert!(
            matches!(
                e,
                ReportError::Manifest(ManifestError::UnknownSchema { found: 2, .. })
            ),
            "{e}"
        );
    }
}
