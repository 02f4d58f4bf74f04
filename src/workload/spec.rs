//! Workload files: their serde model and their validation.
//!
//! Parsing rejects unknown fields and bad values with the file, line and column (from the
//! TOML parser). [`Workload::load`] then checks the rules a parser cannot — a mix that does
//! not sum to 1, a non-positive rate, an event after its phase ends, a restart with nothing
//! killed, a verify phase with no writes before it — and names the file, the line of the
//! offending phase or event, and the field. The format is documented in `workloads/README.md`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;
use toml::Spanned;

use crate::wire::{BackendKind, FsyncPolicy, MemwalOptions, RocksdbOptions};

use super::rules::validate;

/// A workload file that cannot be used.
#[derive(Debug, Error)]
pub enum SpecError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `file:line:column: field: message`.
    #[error("{}:{line}:{column}: {field}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        field: String,
        message: String,
    },
}

/// A duration written like `"30s"`, `"500ms"` or `"2m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s)
            .map(HumanDuration)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "bad duration {s:?} ({e}); write it like \"30s\", \"500ms\" or \"2m\""
                ))
            })
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

/// Cluster the runner starts when it starts one itself.
///
/// The raft settings are spelled out rather than flattened from
/// [`RaftSettings`](crate::wire::RaftSettings): `#[serde(flatten)]` would cost the TOML
/// parser's line and column in errors and `deny_unknown_fields`. [`ClusterSection::raft`]
/// and [`ClusterSection::backend`] are the one place they are turned into what nodes run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSection {
    pub nodes: u64,
    pub backend: BackendKind,
    pub fsync: FsyncPolicy,
    pub snapshot_interval: u64,
    pub compact_lag: u64,
    pub tick_ms: u64,
    pub election_ticks: usize,
    /// How fast a background snapshot may write its file, per second ("0": no limit).
    pub snapshot_write_rate: bytesize::ByteSize,
    pub memwal: MemwalOptions,
    pub rocksdb: RocksdbOptions,
    /// Options of the raft-engine log store (`raft-engine+STATE` modes).
    pub raft_engine: crate::wire::RaftEngineOptions,
    /// Options of the redb state machine (`LOG+redb` modes).
    pub redb: crate::wire::RedbOptions,
    /// Options of etcd members (`backend = "etcd"`).
    pub etcd: crate::wire::EtcdOptions,
    /// When the nodes' data is on the fault file system (workloads with power-loss or disk
    /// events): whether directory entries are durable only once their directory is synced
    /// (`strict`, like ext4 or XFS without luck) or at once (`durable`).
    pub faultfs_metadata: crate::faultfs::MetadataMode,
}

impl ClusterSection {
    /// The raft settings the nodes run with.
    pub fn raft(&self) -> crate::wire::RaftSettings {
        crate::wire::RaftSettings {
            tick_ms: self.tick_ms,
            election_ticks: self.election_ticks,
            snapshot_interval: self.snapshot_interval,
            compact_lag: self.compact_lag,
        }
    }

    /// The backend section the nodes run with (no directory: each node has its own).
    pub fn backend(&self) -> crate::wire::BackendConfig {
        let mut b = crate::wire::BackendConfig::new(self.backend, "").with_fsync(self.fsync);
        b.snapshot_write_rate = self.snapshot_write_rate;
        b.memwal = self.memwal.clone();
        b.rocksdb = self.rocksdb.clone();
        b.raft_engine = self.raft_engine.clone();
        b.redb = self.redb.clone();
        b.etcd = self.etcd.clone();
        b
    }
}

impl Default for ClusterSection {
    fn default() -> Self {
        let raft = crate::wire::RaftSettings::default();
        ClusterSection {
            nodes: 3,
            backend: BackendKind::Memwal,
            fsync: FsyncPolicy::Always,
            snapshot_interval: raft.snapshot_interval,
            compact_lag: raft.compact_lag,
            tick_ms: raft.tick_ms,
            election_ticks: raft.election_ticks,
            snapshot_write_rate: crate::wire::BackendConfig::new(BackendKind::Memwal, "")
                .snapshot_write_rate,
            memwal: MemwalOptions::default(),
            rocksdb: RocksdbOptions::default(),
            raft_engine: Default::default(),
            redb: Default::default(),
            etcd: Default::default(),
            faultfs_metadata: Default::default(),
        }
    }
}

/// How keys are chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "dist", rename_all = "lowercase", deny_unknown_fields)]
pub enum KeyDistribution {
    /// Every key equally likely.
    Uniform,
    /// Zipfian over key ranks with exponent `theta` (YCSB uses 0.99), scrambled so that hot
    /// keys spread over the key space.
    Zipfian {
        #[serde(default = "default_theta")]
        theta: f64,
    },
    /// Zipfian over recency: the most recently written keys are the hottest.
    Latest {
        #[serde(default = "default_theta")]
        theta: f64,
    },
    /// `hot_op_share` of the operations go to the first `hot_key_fraction` of the keys.
    Hotspot {
        hot_key_fraction: f64,
        hot_op_share: f64,
    },
    /// Keys in order 0, 1, 2, ... (shared by all workers), wrapping around.
    Sequential,
}

fn default_theta() -> f64 {
    0.99
}

/// How large values are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ValueSize {
    /// Always this many bytes.
    Fixed(usize),
    /// A distribution.
    Dist(ValueSizeDist),
}

impl ValueSize {
    /// The mean size in bytes.
    pub fn mean(&self) -> f64 {
        match self {
            ValueSize::Fixed(n) => *n as f64,
            ValueSize::Dist(ValueSizeDist::Uniform { min, max }) => (*min + *max) as f64 / 2.0,
            ValueSize::Dist(ValueSizeDist::Weighted { sizes }) => {
                let total: f64 = sizes.iter().map(|(_, w)| w).sum();
                if total > 0.0 {
                    sizes.iter().map(|(s, w)| *s as f64 * w).sum::<f64>() / total
                } else {
                    0.0
                }
            }
        }
    }
}

/// A value-size distribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "dist", rename_all = "lowercase", deny_unknown_fields)]
pub enum ValueSizeDist {
    Uniform {
        min: usize,
        max: usize,
    },
    /// `[[size, weight], ...]`.
    Weighted {
        sizes: Vec<(usize, f64)>,
    },
}

/// The data set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataSection {
    /// Distinct keys.
    pub keys: u64,
    /// Bytes per key (zero-padded decimal index, at least as long as the largest index).
    pub key_size: usize,
    pub value_size: ValueSize,
    /// Share of each value's bytes that is random (the rest is a repeated byte), so engines
    /// that compress are compared on data of known compressibility. 1.0 = incompressible.
    pub value_random_share: f64,
    pub key_distribution: KeyDistribution,
}

impl Default for DataSection {
    fn default() -> Self {
        DataSection {
            keys: 10_000,
            key_size: 16,
            value_size: ValueSize::Fixed(256),
            value_random_share: 1.0,
            key_distribution: KeyDistribution::Uniform,
        }
    }
}

/// The operation mix of a phase: shares that sum to 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Mix {
    pub put: f64,
    pub get: f64,
    pub delete: f64,
}

impl Mix {
    pub fn total(&self) -> f64 {
        self.put + self.get + self.delete
    }
    pub fn writes(&self) -> bool {
        self.put > 0.0 || self.delete > 0.0
    }
}

/// Read consistency of gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ReadConsistency {
    #[default]
    Linearizable,
    Local,
}

/// What an event does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Kill,
    Stop,
    Restart,
    Pause,
    Resume,
    Partition,
    Heal,
    Snapshot,
    Compact,
    AddNode,
    RemoveNode,
    TransferLeader,
    /// Cut the power: the node's disk loses every write not yet synced, and the node dies.
    PowerLoss,
    /// As `power-loss`, but a random subset of the unsynced pages reaches the disk, as
    /// reordered write-back leaves them (seeded from the workload's seed).
    TornWrite,
    /// Make the disk's fsyncs (and, with `writes`, its writes) take `latency` longer, for
    /// `duration` or until `disk-heal`.
    DiskSlow,
    /// Make the disk fail: `error = "eio"` fails the next `count` fsyncs, `"enospc"` every
    /// write until `disk-heal`.
    DiskFail,
    /// End `disk-slow` and `disk-fail`.
    DiskHeal,
    /// Degrade every raft link of the target node, both ways: each message waits `delay`
    /// (± `jitter`) and is lost with probability `loss`, until `heal`.
    LinkSlow,
}

impl Action {
    /// Whether the event needs the node's data on the fault file system.
    pub fn needs_fault_disk(self) -> bool {
        matches!(
            self,
            Action::PowerLoss
                | Action::TornWrite
                | Action::DiskSlow
                | Action::DiskFail
                | Action::DiskHeal
        )
    }

    /// Whether the event takes its nodes down (they come back with `restart`).
    pub fn takes_down(self) -> bool {
        matches!(
            self,
            Action::Kill | Action::Stop | Action::PowerLoss | Action::TornWrite
        )
    }

    /// The name workload files give the action.
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

/// What a `disk-fail` event makes the disk return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskError {
    /// `EIO` from fsync: the write-back failed.
    Eio,
    /// `ENOSPC` from writes: the disk is full.
    Enospc,
}

/// Which node an event acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Leader,
    Follower,
    Node(u64),
    /// The nodes killed or stopped earlier and not yet restarted.
    Killed,
    All,
}

impl FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "leader" => Target::Leader,
            "follower" => Target::Follower,
            "killed" => Target::Killed,
            "all" => Target::All,
            _ => match s.strip_prefix("node:").map(str::parse::<u64>) {
                Some(Ok(n)) if n > 0 => Target::Node(n),
                _ => {
                    return Err(format!(
                        "unknown target {s:?}; expected leader, follower, node:N (N >= 1), killed or all"
                    ));
                }
            },
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Leader => f.write_str("leader"),
            Target::Follower => f.write_str("follower"),
            Target::Node(n) => write!(f, "node:{n}"),
            Target::Killed => f.write_str("killed"),
            Target::All => f.write_str("all"),
        }
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for Target {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// An event at an offset within its phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub at: HumanDuration,
    pub action: Action,
    #[serde(default = "default_target")]
    pub target: Target,
    /// `restart` only: whether the node finds its data in the page cache (`warm`, as after
    /// a process crash) or must read it from disk (`cold`, as after a reboot).
    #[serde(default)]
    pub cache: CacheState,
    /// `disk-slow`: the latency added to each fsync (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<HumanDuration>,
    /// `disk-slow`: how long it lasts (absent: until a `disk-heal` event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<HumanDuration>,
    /// `disk-slow`: slow writes too, not only fsyncs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub writes: bool,
    /// `disk-slow`: only files whose path in the data directory starts with this (for
    /// example `"wal/"`); absent: every file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<String>,
    /// `disk-fail`: what the disk returns (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<DiskError>,
    /// `disk-fail` with `error = "eio"`: how many fsyncs fail (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// `partition`: which way traffic is cut, as seen from the target (`both`, default;
    /// `in`: it hears nothing; `out`: nothing it sends arrives).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<crate::wire::Direction>,
    /// `link-slow`: the delay each message takes on the target's links.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<HumanDuration>,
    /// `link-slow`: plus or minus up to this, uniformly (at most `delay`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<HumanDuration>,
    /// `link-slow`: the share of messages lost, in [0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
}

impl Event {
    /// An event with no options (warm cache, no disk settings).
    pub fn new(at: Duration, action: Action, target: Target) -> Self {
        Event {
            at: HumanDuration(at),
            action,
            target,
            cache: CacheState::Warm,
            latency: None,
            duration: None,
            writes: false,
            files: None,
            error: None,
            count: None,
            direction: None,
            delay: None,
            jitter: None,
            loss: None,
        }
    }
}

/// The page cache a restarted node finds (see [`crate::pagecache`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CacheState {
    /// Left as the node's last run left it: a process restart on the same machine.
    #[default]
    Warm,
    /// The node's data directory is written back and evicted from the page cache before
    /// it starts: a restart after a reboot. Local clusters only.
    Cold,
}

impl std::fmt::Display for CacheState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CacheState::Warm => "warm",
            CacheState::Cold => "cold",
        })
    }
}

fn default_target() -> Target {
    Target::Leader
}

/// One phase of a workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    pub name: String,
    /// Stop after this many operations…
    pub ops: Option<u64>,
    /// …or after this long.
    pub duration: Option<HumanDuration>,
    /// Measured separately and excluded from the phase's figures.
    pub warmup: Option<HumanDuration>,
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Total operations per second, open loop (latency measured from each operation's
    /// intended start); absent = closed loop.
    pub rate: Option<f64>,
    #[serde(default)]
    pub mix: Mix,
    #[serde(default)]
    pub read_consistency: ReadConsistency,
    /// Overrides `[data].key_distribution` for this phase.
    pub key_distribution: Option<KeyDistribution>,
    /// Per-operation timeout; a write that times out is indeterminate.
    pub timeout: Option<HumanDuration>,
    /// Read back every key written so far and classify it (ok / lost / stale / in doubt).
    #[serde(default)]
    pub verify: bool,
    #[serde(default, rename = "event")]
    pub events: Vec<Spanned<Event>>,
}

fn default_concurrency() -> usize {
    16
}

/// A parsed (not yet validated) workload file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadFile {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Acknowledged writes may be lost (a power cut under `fsync = "never"`): the verify
    /// phase then reports the loss as a measured figure instead of failing the run.
    #[serde(default)]
    pub expect_loss: bool,
    #[serde(default)]
    pub cluster: ClusterSection,
    #[serde(default)]
    pub data: DataSection,
    #[serde(rename = "phase")]
    pub phases: Vec<Spanned<Phase>>,
}

fn default_seed() -> u64 {
    42
}

/// A validated workload.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Workload {
    pub path: PathBuf,
    #[serde(flatten)]
    pub file: WorkloadFile,
}

/// Byte offset of the first line setting `key` (`key = …`), or 0.
fn key_offset(text: &str, key: &str) -> usize {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim_start();
        if t.strip_prefix(key)
            .is_some_and(|rest| rest.trim_start().starts_with('='))
        {
            return offset + (line.len() - t.len());
        }
        offset += line.len();
    }
    0
}

/// Where a problem is: its element's offset, or for a problem with a `cluster.` setting as
/// a whole, that setting's key (the `backend` key when the setting was left at its default,
/// since the backend is what made the default wrong).
fn setting_offset(text: &str, offset: usize, field: &str) -> usize {
    match field.strip_prefix("cluster.") {
        Some(key) if offset == 0 => match key_offset(text, key) {
            0 => key_offset(text, "backend"),
            o => o,
        },
        _ => offset,
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

impl Workload {
    /// Read, parse and validate `path`.
    pub fn load(path: &Path) -> Result<Workload, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parse and validate `text` (named `path` in errors).
    pub fn parse(path: &Path, text: &str) -> Result<Workload, SpecError> {
        let file: WorkloadFile = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map_or((0, 0), |s| line_col(text, s.start));
            SpecError::Invalid {
                path: path.to_path_buf(),
                line,
                column,
                field: "syntax".into(),
                message: e.message().trim().to_string(),
            }
        })?;
        // The mode and its engines' options agree (state_wal = false needs a RocksDB state
        // machine of its own, …): reported at the option that breaks it.
        if let Err(message) = file.cluster.backend().validate() {
            let key = [
                "state_wal",
                "max_background_jobs",
                "recovery_threads",
                "target_file_size",
                "purge_threshold",
                "backend_batch_limit",
                "backend_batch_interval_ms",
                "fsync",
            ]
            .into_iter()
            .find(|k| message.contains(k))
            .unwrap_or("backend");
            let (line, column) = line_col(text, key_offset(text, key));
            return Err(SpecError::Invalid {
                path: path.to_path_buf(),
                line,
                column,
                field: format!("cluster.{key}"),
                message,
            });
        }
        validate(&file).map_err(|(offset, field, message)| {
            let (line, column) = line_col(text, setting_offset(text, offset, &field));
            SpecError::Invalid {
                path: path.to_path_buf(),
                line,
                column,
                field,
                message,
            }
        })?;
        Ok(Workload {
            path: path.to_path_buf(),
            file,
        })
    }
}

impl WorkloadFile {
    /// Whether any event needs the nodes' data on the fault file system.
    pub fn needs_fault_disk(&self) -> bool {
        self.phases
            .iter()
            .flat_map(|p| &p.get_ref().events)
            .any(|e| e.get_ref().action.needs_fault_disk())
    }
}

impl Workload {
    /// `file:line:column` of the byte `offset` of this workload's file (read again; the
    /// file name alone when it cannot be).
    pub fn locate(&self, offset: usize) -> String {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => {
                let (line, column) = line_col(&text, offset);
                format!("{}:{line}:{column}", self.path.display())
            }
            Err(_) => self.path.display().to_string(),
        }
    }

    /// Make every `restart` event warm or cold (`--restart-cache`), so that one workload
    /// file measures both cases.
    pub fn set_restart_cache(&mut self, cache: CacheState) {
        for p in &mut self.file.phases {
            for e in &mut p.get_mut().events {
                let e = e.get_mut();
                if e.action == Action::Restart {
                    e.cache = cache;
                }
            }
        }
    }

    /// Check the rules again after the command line changed the workload (`--nodes`,
    /// `--scale`, `--backend`, `--fsync`); a problem with an element of the file (an event
    /// the backend cannot do) is reported at its line and column, one of the settings as
    /// a whole against the file alone.
    pub fn revalidate(&self) -> Result<(), SpecError> {
        // `--backend` and `--fsync` can make a combination the file alone did not have.
        let backend = self
            .file
            .cluster
            .backend()
            .validate()
            .map_err(|m| (0, "cluster".to_string(), m));
        backend
            .and_then(|()| validate(&self.file))
            .map_err(|(offset, field, message)| {
                let (line, column) = match (offset, std::fs::read_to_string(&self.path)) {
                    (o, Ok(text)) if o > 0 || field.starts_with("cluster.") => {
                        line_col(&text, setting_offset(&text, o, &field))
                    }
                    _ => (0, 0),
                };
                SpecError::Invalid {
                    path: self.path.clone(),
                    line,
                    column,
                    field,
                    message: format!("{message} (after command-line overrides)"),
                }
            })
    }
}
