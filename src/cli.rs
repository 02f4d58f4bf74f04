//! Command-line definitions. Only `clap` types live here; `main.rs` dispatches them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::wire::BackendKind;

/// raftbench: benchmark storage engines under raft consensus.
#[derive(Debug, Parser)]
#[command(name = "raftbench", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one raft key-value node (an OS process; SIGTERM stops it gracefully).
    Node(Box<crate::node::NodeArgs>),
    /// Start and control local clusters.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Replay a workload against a local cluster and write results/<run-id>/.
    Run(RunArgs),
    /// Run one workload on several backends (same seed, data set and fsync policy) and
    /// compare them: comparison.csv/.md, overlay charts, report.html.
    Compare(CompareArgs),
    /// Capacity planning: the highest open-loop rate that meets an SLO, and disk, memory,
    /// snapshot and restart costs against data size, projected to a target data set.
    /// `--scale` shortens the rate-search probes only: growth runs load exactly each size.
    Capacity(CapacityArgs),
    /// Merge the results of several load generators (`run --client-id I --clients N`) into
    /// one: histograms added (never percentiles averaged), rates summed, charts and report.
    Merge {
        /// Results directories of the generators.
        #[arg(required = true, num_args = 2..)]
        dirs: Vec<PathBuf>,
        /// Output directory (must not exist or be empty).
        #[arg(long)]
        out: PathBuf,
        /// Merge runs of different workloads or seeds anyway.
        #[arg(long)]
        force: bool,
    },
    /// Did a change make things worse? Compare two results directories (or two `compare`
    /// directories, with repeats): per metric the change in percent, a Mann-Whitney U test
    /// over per-second values, and thresholds; writes diff.md and diff.json. Exits 3 when
    /// a threshold is crossed with significance.
    Diff(DiffArgs),
    /// Write the JSON Schemas of the results files (run.json, compare.json, capacity.json,
    /// diff.json) into DIR, as generated from the types that write them.
    Schema {
        /// Output directory (the repository's copies are in results/schema/).
        #[arg(default_value = "results/schema")]
        dir: PathBuf,
    },
    /// Regenerate a results directory's charts (charts/*.png, *.svg) and report.html; for a
    /// `compare` directory, every run's and the comparison's.
    Plot {
        /// Results directory written by `raftbench run` or `raftbench compare`.
        dir: PathBuf,
    },
    /// Check workload files without running them.
    Validate {
        /// Workload files (TOML).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Also check that this cluster file gives every control command the files' events
        /// need (for `raftbench run --cluster`).
        #[arg(long)]
        cluster: Option<PathBuf>,
    },
    /// Closed-loop load against a running cluster: throughput and latency percentiles.
    Loadtest(crate::loadtest::LoadtestArgs),
    /// Work directly with a storage backend's data directory.
    #[command(subcommand)]
    Storage(StorageCommand),
    /// A FUSE file system that can lose unsynced writes (power loss), tear them, slow or
    /// fail fsyncs: mount it under a node's data directory and control it.
    #[command(subcommand)]
    Faultfs(crate::faultfs::cmd::FaultfsCommand),
}

/// `raftbench storage ...`
#[derive(Debug, Subcommand)]
pub enum StorageCommand {
    /// Open a data directory the way a node does and print its state and open cost as JSON.
    ///
    /// Opening is recovery: a torn WAL tail is truncated and memwal starts a new segment.
    Open(crate::storage::inspect::BackendArgs),
    /// Append a synthetic raft log forever (or to --max-index), printing each durable index.
    /// Used by the crash-safety tests, which kill it with SIGKILL.
    Stress(crate::storage::inspect::StressArgs),
}

/// `raftbench cluster ...`
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Start a local cluster of `raftbench node` processes on free ports and keep it running
    /// in the foreground; Ctrl-C (or SIGTERM, SIGHUP) stops every node.
    Up(crate::cluster::up::UpArgs),
}

/// `raftbench run`
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Workload file (TOML).
    pub workload: PathBuf,
    /// Storage engine (overrides the workload's [cluster].backend).
    #[arg(long)]
    pub backend: Option<BackendKind>,
    /// Number of nodes (overrides [cluster].nodes).
    #[arg(long)]
    pub nodes: Option<u64>,
    /// Results directory (default results/<utc>-<workload>-<backend>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Run against the running cluster this cluster file describes (nodes, addresses,
    /// control commands) instead of starting one; the workload's [cluster] is ignored.
    #[arg(long)]
    pub cluster: Option<PathBuf>,
    /// This is load generator I (1-based) of --clients N: it takes 1/N of each phase's
    /// rate, op count and concurrency and every N-th key (writes never overlap); only
    /// generator 1 injects events. Needs --cluster (all generators drive one cluster).
    /// Merge the results with `raftbench merge`.
    #[arg(long, requires = "clients", requires = "cluster")]
    pub client_id: Option<u64>,
    /// Number of load generators sharing the workload (see --client-id).
    #[arg(long, requires = "client_id")]
    pub clients: Option<u64>,
    /// Driven by a coordinator (`run --cluster` with [[generator]] hosts starts
    /// generators so): no events, and the run and each phase start when its stdin says.
    #[arg(long, requires = "client_id", hide = true)]
    pub coordinated: bool,
    /// Latency objective the run must meet, as in `capacity --slo`, e.g.
    /// "put.p99<20ms,get.p99<5ms": PASS/FAIL per term at the end, recorded in run.json, and
    /// a non-zero exit when it is not met. Failed and in-doubt operations count as over
    /// every bound; operations an open-loop schedule never sent fail it.
    #[arg(long, value_parser = crate::study::slo::parse, conflicts_with = "coordinated")]
    pub slo: Option<std::vec::Vec<crate::study::slo::SloTerm>>,
    /// Load phases --slo judges, comma-separated (default: every load phase; warm-up and
    /// verify phases are never judged).
    #[arg(long, value_delimiter = ',', requires = "slo")]
    pub slo_phases: Option<Vec<String>>,
    #[command(flatten)]
    pub replay: crate::workload::runner::ReplayArgs,
}

/// `raftbench compare`
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Workload file (TOML).
    pub workload: PathBuf,
    /// Backends to compare, comma-separated; ratios are relative to the first.
    #[arg(long, value_delimiter = ',', default_value = "memwal,rocksdb")]
    pub backends: Vec<BackendKind>,
    /// Runs per backend, interleaved (A B A B ...); the table reports median and min–max.
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    /// Output directory (default results/<utc>-compare-<workload>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub replay: crate::workload::runner::ReplayArgs,
}

/// `raftbench capacity`
#[derive(Debug, Args)]
pub struct CapacityArgs {
    /// Workload file (TOML); its duration-bound phases are replayed at each probed rate.
    pub workload: PathBuf,
    /// Backends, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "memwal,rocksdb")]
    pub backends: Vec<BackendKind>,
    // The lists are spelled `std::vec::Vec` so that clap takes each as one value parsed
    // whole, not as a repeated option.
    /// Latency objective on corrected latency, e.g. "put.p99<20ms,get.p99<5ms".
    #[arg(long, value_parser = crate::study::capacity::slo::parse)]
    pub slo: std::vec::Vec<crate::study::capacity::slo::SloTerm>,
    /// Data-set sizes (keys) for the growth runs, e.g. 10k,100k,1M.
    #[arg(long, default_value = "10k,100k,1M", value_parser = crate::study::capacity::parse_sizes)]
    pub sizes: std::vec::Vec<u64>,
    /// Keys to project to, e.g. 10M (default: 10 × the largest size).
    #[arg(long, value_parser = crate::study::capacity::parse_count)]
    pub target_keys: Option<u64>,
    /// Value size for the growth runs and the projection, e.g. 1KiB (default: the workload's).
    #[arg(long)]
    pub target_value_size: Option<bytesize::ByteSize>,
    /// Rates tried by the search per backend.
    #[arg(long, default_value_t = 6)]
    pub steps: usize,
    /// Probes per rate; a rate meets the SLO when most of its probes do. 3 keeps one
    /// noisy run on a shared machine from cutting the search short.
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    /// First offered rate in ops/s (default: the workload's rate, else 1000).
    #[arg(long)]
    pub start_rate: Option<f64>,
    /// Output directory (default results/<utc>-capacity-<workload>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub replay: crate::workload::runner::ReplayArgs,
}

/// `raftbench diff`
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The baseline: a results directory (`run`) or a comparison (`compare`).
    pub base: PathBuf,
    /// The candidate, of the same workload.
    pub new: PathBuf,
    /// How much worse each metric may get: `[OP.]METRIC=+N%` for latencies (p50, p90,
    /// p99, p999, max), `ops_per_sec=-N%` for throughput, comma-separated.
    #[arg(long, default_value = crate::study::diff::threshold::DEFAULT,
          value_parser = crate::study::diff::threshold::parse)]
    pub threshold: std::vec::Vec<crate::study::diff::Threshold>,
    /// Significance level: a change counts only when the test's p-value is below it.
    #[arg(long, default_value_t = 0.05, value_parser = crate::study::diff::parse_alpha)]
    pub alpha: f64,
    /// Output directory for diff.md and diff.json (default results/<utc>-diff-<new>).
    #[arg(long)]
    pub out: Option<PathBuf>,
}
