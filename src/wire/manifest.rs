//! `run.json`: the manifest of a results directory, one typed struct for both directions.
//!
//! `raftbench run` writes it, `raftbench merge` writes one for the merged result, and every
//! reader of a results directory (plot, compare, capacity, merge) reads it back with
//! [`RunManifest::load`]. Every field is documented in `results/README.md`.
//!
//! **Versions.** `schema_version` names the shape ([`RUN_MANIFEST_SCHEMA`]). A reader refuses
//! a version it does not know instead of misreading it. Manifests written before the field
//! existed have the shape of version 1 and are read as version 1: that is why the fields
//! added during that time (`keys_written`, `live_cluster`, `generator`) may be absent.
//!
//! **The workload.** `run.json` records the resolved workload, whose type belongs to the
//! harness's workload module. This module is shared vocabulary and names no harness type,
//! so the manifest is generic over it: the runner and the reports use
//! `RunManifest<Workload>`.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::backend::{BackendConfig, FsyncPolicy};
use super::cluster_file::ClusterNode;

/// The `schema_version` this raftbench writes, and the only one it reads.
pub const RUN_MANIFEST_SCHEMA: u32 = 1;

/// A `run.json` that cannot be used.
#[derive(Debug, Error)]
pub enum ManifestError {
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: not a raftbench run manifest: {source}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "{}: schema_version {found} is not one this raftbench reads (it reads {RUN_MANIFEST_SCHEMA}); \
         read it with the raftbench version that wrote it (see its raftbench_version field)",
        path.display()
    )]
    UnknownSchema { path: PathBuf, found: u32 },
}

/// `run.json`: what ran, where, and what each phase achieved (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunManifest<W> {
    /// Absent in manifests older than the field: those are version 1.
    #[serde(default = "legacy_schema")]
    pub schema_version: u32,
    /// `CARGO_PKG_VERSION` of the raftbench that wrote it.
    pub raftbench_version: String,
    /// `git rev-parse --short=12 HEAD` at build time, or `unknown`.
    pub git_revision: String,
    /// The command line (`raftbench merge`'s for a merged result).
    pub cli: Vec<String>,
    /// The workload file as given on the command line.
    pub workload_file: PathBuf,
    /// The workload as it ran: after `--backend/--nodes/--seed/--restart-cache/--scale`
    /// and, for a split generator, its share.
    pub workload: W,
    pub seed: u64,
    /// The backend the nodes ran (a live cluster's: from its cluster file), `dir` empty.
    pub backend: BackendConfig,
    /// The same as `backend.fsync`, at the top for a quick look.
    pub fsync: FsyncPolicy,
    pub machine: Machine,
    /// RFC 3339, UTC, to the second.
    pub started_at: String,
    /// From the cluster being ready to the end of the last phase (verify included).
    pub duration_s: f64,
    /// Distinct keys the run put a value in, acknowledged or in doubt: the divisor of
    /// per-key figures. Absent in manifests of early versions.
    #[serde(default)]
    pub keys_written: Option<u64>,
    /// The load generator's (the `raftbench run` process's) largest resident set size,
    /// sampled once a second and at the end: its own memory cost. A merged result has the
    /// largest of its generators'; absent in older results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator_peak_rss_bytes: Option<u64>,
    /// `run --cluster` only.
    #[serde(default)]
    pub live_cluster: Option<LiveCluster>,
    /// What the nodes' data was stored on, when not plain directories (the fault file
    /// system of power-loss and disk-fault workloads).
    #[serde(default)]
    pub disk: Option<DiskLayer>,
    /// Each verify phase's own result, in order (each judges the writes since the one
    /// before); `verify` is their sum.
    #[serde(default)]
    pub verify_phases: Vec<PhaseVerify>,
    /// A split load generator (`run --client-id I --clients N`) only.
    #[serde(default)]
    pub generator: Option<Generator>,
    /// Load phases in run order (verify phases are not load phases and are not listed).
    pub phases: Vec<PhaseRecord>,
    /// The verify phase's result, if the workload had one.
    pub verify: Option<VerifyReport>,
    /// A merged result (`raftbench merge`) only: the generators' results directories.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_from: Option<Vec<PathBuf>>,
    /// A merged result only: each merged directory's `(id, of)`, `null` for a run that was
    /// not a split generator (merged with `--force`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generators: Option<Vec<Option<(u64, u64)>>>,
    /// A coordinated run (`run --cluster` with `[[generator]]` hosts) only: every host it
    /// used, as checked before the run, with the clock offset its timings are aligned by.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostRecord>,
    /// `run --slo` only: the objective and how the run fared against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo: Option<SloVerdict>,
}

/// `run --slo EXPR`: the objective, judged over the run's load phases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SloVerdict {
    /// The terms, normalised and joined by commas (`put.p99<20ms,get.p99<5ms`).
    pub expression: String,
    /// The load phases judged (`--slo-phases`, by default all of them).
    pub phases: Vec<String>,
    pub terms: Vec<SloTermVerdict>,
    /// Operations of open-loop schedules never sent in those phases: missing from the
    /// histograms, so any fails the objective.
    pub unsent: u64,
    /// Every term passed and nothing was left unsent.
    pub pass: bool,
}

/// One term of an [`SloVerdict`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SloTermVerdict {
    /// As written, normalised (`put.p99<20ms`).
    pub term: String,
    pub bound_us: f64,
    /// The percentile over successful operations' corrected latency, µs (`None`: none
    /// succeeded).
    pub measured_us: Option<u64>,
    /// Successful operations.
    pub ok: u64,
    /// Failed and in-doubt operations: each counts as over the bound.
    pub failed: u64,
    /// Operations over the bound, failed ones included.
    pub over_bound: u64,
    /// How many the percentile allows over the bound: ⌊(1 − q) × (ok + failed)⌋.
    pub allowed: u64,
    /// `ok > 0` and `over_bound ≤ allowed`.
    pub pass: bool,
}

/// A host of a coordinated run, as checked before it started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HostRecord {
    pub host: String,
    /// `node 1`, `generator 2`, ...
    pub roles: Vec<String>,
    /// `raftbench --version` there.
    pub version: String,
    /// Its clock minus the coordinator's, in milliseconds: generators start on the
    /// coordinator's moment in their own clocks, so merged timelines and writes-resumed
    /// times are aligned to within `clock_error_ms`.
    pub clock_offset_ms: f64,
    pub clock_error_ms: f64,
}

fn legacy_schema() -> u32 {
    1
}

/// The machine the load generator ran on (not necessarily the nodes': see `live_cluster`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Machine {
    /// Cores available to this process.
    pub cores: usize,
    /// Total memory (`MemTotal`).
    pub memory_bytes: u64,
    /// Kernel release.
    pub kernel: String,
}

/// The cluster a `run --cluster` ran against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LiveCluster {
    pub cluster_file: PathBuf,
    /// Its nodes, with their control commands.
    pub nodes: Vec<ClusterNode>,
}

/// Load generator `id` of `of` (`run --client-id ID --clients OF`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Generator {
    pub id: u64,
    pub of: u64,
}

/// What one load phase achieved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PhaseRecord {
    pub name: String,
    /// The load's own span: from the phase's start to its last operation's completion, and
    /// for a `duration` phase at least its duration (a low rate's schedule may be done early).
    pub elapsed_s: f64,
    pub warmup_s: Option<f64>,
    /// Offered ops/s of an open-loop phase; `null` in closed loop.
    pub target_rate: Option<f64>,
    /// Successful operations per second over the measured window (elapsed minus warm-up).
    pub achieved_rate: f64,
    /// CPU time the load generator spent per operation, in µs: its own cost, to check it
    /// was not the bottleneck.
    pub generator_cpu_us_per_op: f64,
    /// Open loop: operations of the schedule never sent, because the target could not keep
    /// up with the rate (the workers send late operations for up to the phase's duration
    /// after its end, at most 10 s, then stop). Their latencies are missing from the histograms, which therefore
    /// understate; 0 in closed loop and in older results.
    #[serde(default)]
    pub unsent: u64,
    /// The raft loops' own cost during the phase, from the nodes' `/status` once a second
    /// (absent when no node answered, and in older results).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raft_loop: Option<RaftLoopCost>,
    /// What the members measured themselves during the phase (warm-up included): WAL
    /// fsyncs and backend commits. Absent when no member answered, and in older results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerFigures>,
}

/// A phase's server-side figures, summed over the members: what the members measured of
/// their own disk writes, to set beside the client's latency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ServerFigures {
    /// Where they come from: `etcd /metrics` (histograms
    /// `etcd_disk_wal_fsync_duration_seconds` and
    /// `etcd_disk_backend_commit_duration_seconds`), or `raftbench /metrics` (histogram
    /// `raftbench_persist_seconds`, the raft loop's synced persists: the log append and
    /// its fsync, timed together; `raftbench /status` in older results, without a p99).
    pub source: String,
    /// WAL fsyncs (raftbench: synced persists), all members.
    pub wal_fsyncs: u64,
    pub wal_fsync_mean_us: Option<f64>,
    /// From the histogram's buckets: as coarse as they are.
    pub wal_fsync_p99_us: Option<f64>,
    /// etcd's bbolt commits (raftbench has no separate backend commit).
    pub backend_commits: Option<u64>,
    pub backend_commit_mean_us: Option<f64>,
    pub backend_commit_p99_us: Option<f64>,
}

/// What the raft loops cost during a phase: the harness's own share of the latency, apart
/// from the storage engine's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RaftLoopCost {
    /// The longest raft-loop turn on any node (µs): a stall no write could be
    /// acknowledged through on that node.
    pub longest_stall_us: u64,
    /// Busy time per Ready handled, all nodes together (µs): persist, apply and messaging
    /// included, waiting excluded. `null` for a phase too short for two samples.
    #[serde(default)]
    pub us_per_ready: Option<f64>,
}

/// One verify phase's result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct PhaseVerify {
    pub phase: String,
    /// When it started, in ms since the run started.
    pub t_ms: u64,
    pub report: VerifyReport,
}

/// The layer under the nodes' data directories.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct DiskLayer {
    /// `raftbench-faultfs`: raftbench's FUSE fault file system, which keeps unsynced
    /// writes in its own cache and drops them at a power cut.
    pub kind: String,
    /// When directory changes were durable there: `strict` (once their directory was
    /// fsynced) or `durable` (at once).
    pub metadata: String,
}

/// Result of the verify phase: every key written, read back and classified.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct VerifyReport {
    pub keys: u64,
    pub acknowledged: u64,
    pub ok: u64,
    pub lost: u64,
    pub stale: u64,
    pub indeterminate: u64,
    pub indeterminate_resolved: u64,
    /// Keys that could not be read back (no quorum, timeouts): not judged either way.
    pub unreadable: u64,
    /// Up to 20 keys that were lost or stale, for the summary.
    pub bad_keys: Vec<u64>,
    /// When the newest acknowledged write that was lost had been acknowledged, in ms since
    /// the run started (`null`: nothing lost).
    #[serde(default)]
    pub newest_lost_acked_ms: Option<u64>,
    /// How long before the power cut that lost it the newest lost write had been
    /// acknowledged, in ms: the window of acknowledged writes the cut took (`null`: nothing
    /// lost, or no power cut before the verify).
    #[serde(default)]
    pub newest_lost_age_ms: Option<u64>,
    /// The workload declared the loss expected (`expect_loss` under `fsync = "never"`):
    /// lost writes are a measured figure, not a failure.
    #[serde(default)]
    pub loss_expected: bool,
}

impl VerifyReport {
    /// Acknowledged writes that were lost or stale.
    pub fn lost_writes(&self) -> u64 {
        self.lost + self.stale
    }

    /// Whether the run must fail: it lost acknowledged writes it was not allowed to lose.
    pub fn fails(&self) -> bool {
        self.lost_writes() > 0 && !self.loss_expected
    }

    /// "N acknowledged writes lost, the newest acknowledged M ms before the power cut": the
    /// loss as a figure, for terminals and reports.
    pub fn loss_summary(&self) -> String {
        let age = self
            .newest_lost_age_ms
            .map(|a| format!(", the newest acknowledged {a} ms before the power cut"))
            .unwrap_or_default();
        format!("{} acknowledged writes lost{age}", self.lost_writes())
    }

    /// Add `other`'s counts, of disjoint keys (another generator's) or of a later verify
    /// phase (which judged only the writes since this one).
    pub fn absorb(&mut self, other: &VerifyReport) {
        self.keys += other.keys;
        self.acknowledged += other.acknowledged;
        self.ok += other.ok;
        self.lost += other.lost;
        self.stale += other.stale;
        self.indeterminate += other.indeterminate;
        self.indeterminate_resolved += other.indeterminate_resolved;
        self.unreadable += other.unreadable;
        self.bad_keys.extend(&other.bad_keys);
        self.bad_keys.truncate(20);
        self.newest_lost_acked_ms = self.newest_lost_acked_ms.max(other.newest_lost_acked_ms);
        // The smallest age is the newest write a cut took.
        self.newest_lost_age_ms = match (self.newest_lost_age_ms, other.newest_lost_age_ms) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        };
        self.loss_expected &= other.loss_expected;
    }

    /// The counts under their `verify.csv` column names.
    pub fn columns(&self) -> [(&'static str, u64); 8] {
        [
            ("keys", self.keys),
            ("acknowledged", self.acknowledged),
            ("ok", self.ok),
            ("lost", self.lost),
            ("stale", self.stale),
            ("indeterminate", self.indeterminate),
            ("indeterminate_resolved", self.indeterminate_resolved),
            ("unreadable", self.unreadable),
        ]
    }
}

/// Just the version, read before the rest so that a manifest of another shape is refused
/// for its version rather than for whatever field its new shape changed.
#[derive(Deserialize)]
struct Version {
    #[serde(default = "legacy_schema")]
    schema_version: u32,
}

impl<W> RunManifest<W> {
    /// Read `path`, refusing a `schema_version` other than [`RUN_MANIFEST_SCHEMA`].
    pub fn load(path: &Path) -> Result<Self, ManifestError>
    where
        W: DeserializeOwned,
    {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parse `text` (named `path` in errors), as [`RunManifest::load`].
    pub fn parse(path: &Path, text: &str) -> Result<Self, ManifestError>
    where
        W: DeserializeOwned,
    {
        let parse_error = |source| ManifestError::Parse {
            path: path.to_path_buf(),
            source,
        };
        let v: Version = serde_json::from_str(text).map_err(parse_error)?;
        if v.schema_version != RUN_MANIFEST_SCHEMA {
            return Err(ManifestError::UnknownSchema {
                path: path.to_path_buf(),
                found: v.schema_version,
            });
        }
        serde_json::from_str(text).map_err(parse_error)
    }

    /// Write it to `path` (pretty-printed).
    pub fn save(&self, path: &Path) -> io::Result<()>
    where
        W: Serialize,
    {
        let mut out = BufWriter::new(std::fs::File::create(path)?);
        serde_json::to_writer_pretty(&mut out, self)?;
        out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::BackendKind;

    /// A small stand-in for the workload (the real one is tested in `report::data`).
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct W {
        name: String,
    }

    fn manifest() -> RunManifest<W> {
        RunManifest {
            schema_version: RUN_MANIFEST_SCHEMA,
            raftbench_version: "0.1.0".into(),
            git_revision: "abc".into(),
            cli: vec!["raftbench".into(), "run".into()],
            workload_file: "w.toml".into(),
            workload: W { name: "w".into() },
            seed: 7,
            backend: BackendConfig::new(BackendKind::Memwal, ""),
            fsync: FsyncPolicy::Always,
            machine: Machine {
                cores: 2,
                memory_bytes: 1 << 30,
                kernel: "6.1".into(),
            },
            started_at: "2026-01-01T00:00:00Z".into(),
            duration_s: 1.5,
            keys_written: Some(10),
            generator_peak_rss_bytes: Some(20 << 20),
            live_cluster: None,
            disk: None,
            verify_phases: Vec::new(),
            generator: Some(Generator { id: 1, of: 2 }),
            phases: vec![PhaseRecord {
                name: "load".into(),
                elapsed_s: 1.0,
                warmup_s: None,
                target_rate: Some(100.0),
                achieved_rate: 99.0,
                generator_cpu_us_per_op: 3.0,
                unsent: 0,
                raft_loop: None,
                server: None,
            }],
            verify: Some(VerifyReport {
                keys: 10,
                ok: 10,
                ..Default::default()
            }),
            merged_from: None,
            hosts: Vec::new(),
            generators: None,
            slo: None,
        }
    }

    #[test]
    fn round_trips_and_keeps_optional_fields_explicit() {
        let m = manifest();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.json");
        m.save(&path).unwrap();
        assert_eq!(RunManifest::<W>::load(&path).unwrap(), m);
        // Readers of earlier raftbench versions expect these keys, null or not.
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert!(v["live_cluster"].is_null() && v.get("live_cluster").is_some());
        assert_eq!(v["generator"], serde_json::json!({"id": 1, "of": 2}));
        assert_eq!(v["schema_version"], 1);
        assert!(
            v.get("merged_from").is_none(),
            "only merged results have it"
        );
    }

    #[test]
    fn a_manifest_without_schema_version_is_version_1() {
        let mut v = serde_json::to_value(manifest()).unwrap();
        let o = v.as_object_mut().unwrap();
        for k in [
            "schema_version",
            "keys_written",
            "live_cluster",
            "generator",
        ] {
            o.remove(k);
        }
        let m = RunManifest::<W>::parse(Path::new("run.json"), &v.to_string()).unwrap();
        assert_eq!(m.schema_version, 1);
        assert_eq!((m.keys_written, m.generator), (None, None));
    }

    #[test]
    fn an_unknown_schema_version_is_refused_by_name() {
        let mut v = serde_json::to_value(manifest()).unwrap();
        v["schema_version"] = 2.into();
        // A future shape may change anything else too: the version is what is reported.
        v["phases"] = "changed".into();
        let e = RunManifest::<W>::parse(Path::new("r/run.json"), &v.to_string()).unwrap_err();
        assert!(
            matches!(e, ManifestError::UnknownSchema { found: 2, .. }),
            "{e}"
        );
        assert!(
            e.to_string().starts_with("r/run.json: schema_version 2"),
            "{e}"
        );
    }

    #[test]
    fn a_malformed_manifest_names_the_file_and_keeps_the_cause() {
        let e = RunManifest::<W>::parse(Path::new("x/run.json"), "{\"phases\": 1}").unwrap_err();
        assert!(e.to_string().starts_with("x/run.json: "), "{e}");
        assert!(std::error::Error::source(&e).is_some());
    }
}
