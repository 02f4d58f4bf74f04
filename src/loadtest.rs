//! A small closed-loop write/read load against a running cluster (`raftbench loadtest`).
//!
//! Each of `clients` tasks sends its next request when the previous one completed; latency
//! goes into a per-task HdrHistogram (µs, 3 significant digits), merged at the end — never
//! averaged. It measures service time under closed-loop load; the workload runner (open loop,
//! coordinated-omission-corrected) builds on the same client.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use thiserror::Error;

use crate::client::{Client, Consistency};
use crate::wire::{ClusterFile, ClusterFileError};

/// What to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LoadOp {
    Put,
    Get,
}

/// `raftbench loadtest`'s flags.
#[derive(Debug, clap::Args)]
pub struct LoadtestArgs {
    /// Cluster file of the target cluster (written by `raftbench cluster up`).
    #[arg(long, conflicts_with = "endpoints")]
    pub cluster_file: Option<PathBuf>,
    /// Client addresses (host:port,...) instead of a cluster file.
    #[arg(long, value_delimiter = ',')]
    pub endpoints: Vec<String>,
    /// Concurrent clients; several values run one after another (e.g. 1,16,64).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub clients: Vec<usize>,
    /// Seconds per run.
    #[arg(long, default_value_t = 10.0, value_parser = positive_seconds)]
    pub seconds: f64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,
    /// Distinct keys.
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
    /// Operation.
    #[arg(long, value_enum, default_value_t = LoadOp::Put)]
    pub op: LoadOp,
    /// Also measure the disk's fdatasync p50 (value-size appends) in this directory.
    #[arg(long)]
    pub disk_baseline: Option<PathBuf>,
}

fn positive_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a positive number of seconds")),
    }
}

/// Why `raftbench loadtest` could not run.
#[derive(Debug, Error)]
pub enum LoadtestError {
    #[error(transparent)]
    ClusterFile(#[from] ClusterFileError),
    #[error("give --cluster-file or --endpoints")]
    NoTarget,
    #[error("measuring fdatasync in {}: {source}", dir.display())]
    Disk {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("starting the tokio runtime")]
    Runtime(#[source] std::io::Error),
    #[error("writing the results")]
    Output(#[source] std::io::Error),
}

/// `raftbench loadtest`: closed-loop runs for each client count, printed to `out` as a
/// table (after the disk's own fdatasync p50, when asked for).
pub fn command(args: &LoadtestArgs, out: &mut dyn Write) -> Result<(), LoadtestError> {
    let endpoints = match &args.cluster_file {
        Some(f) => ClusterFile::load(f)?
            .nodes
            .iter()
            .map(|n| n.client_addr.clone())
            .collect(),
        None if !args.endpoints.is_empty() => args.endpoints.clone(),
        None => return Err(LoadtestError::NoTarget),
    };
    let rt = tokio::runtime::Runtime::new().map_err(LoadtestError::Runtime)?;
    if let Some(dir) = &args.disk_baseline {
        let p50 =
            fdatasync_p50_us(dir, args.value_size, 2000).map_err(|source| LoadtestError::Disk {
                dir: dir.clone(),
                source,
            })?;
        writeln!(
            out,
            "disk: fdatasync of {} B appends, p50 {p50} us",
            args.value_size
        )
        .map_err(LoadtestError::Output)?;
    }
    writeln!(
        out,
        "clients      ops/s     p50_us   p90_us   p99_us   max_us  errors"
    )
    .map_err(LoadtestError::Output)?;
    for clients in &args.clients {
        let opts = LoadtestOptions {
            endpoints: endpoints.clone(),
            clients: (*clients).max(1),
            duration: Duration::from_secs_f64(args.seconds),
            value_size: args.value_size,
            keys: args.keys,
            op: args.op,
        };
        let r = rt.block_on(run(&opts));
        writeln!(
            out,
            "{:>7} {:>10.0} {:>10} {:>8} {:>8} {:>8} {:>7}",
            r.clients, r.ops_per_sec, r.p50_us, r.p90_us, r.p99_us, r.max_us, r.errors
        )
        .map_err(LoadtestError::Output)?;
    }
    Ok(())
}

/// Load shape.
#[derive(Debug, Clone)]
pub struct LoadtestOptions {
    pub endpoints: Vec<String>,
    pub clients: usize,
    pub duration: Duration,
    pub value_size: usize,
    pub keys: u64,
    pub op: LoadOp,
}

/// Results of a load run.
#[derive(Debug, Clone, Serialize)]
pub struct LoadtestReport {
    pub clients: usize,
    pub ops: u64,
    pub errors: u64,
    pub elapsed_s: f64,
    pub ops_per_sec: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

/// Run the load and merge the per-client histograms.
pub async fn run(opts: &LoadtestOptions) -> LoadtestReport {
    let client = Arc::new(Client::new(&opts.endpoints, Duration::from_secs(10)));
    let started = Instant::now();
    let deadline = started + opts.duration;
    let value = Bytes::from(vec![b'v'; opts.value_size]);
    let mut tasks = Vec::new();
    for c in 0..opts.clients {
        let client = client.clone();
        let value = value.clone();
        let (keys, op) = (opts.keys.max(1), opts.op);
        tasks.push(tokio::spawn(async move {
            let mut h = crate::metrics::histogram();
            let mut errors = 0u64;
            let mut i = c as u64;
            while Instant::now() < deadline {
                let key = format!("key{:08}", i % keys);
                i = i.wrapping_add(7919);
                let t = Instant::now();
                let r = match op {
                    LoadOp::Put => client.put(&key, value.clone()).await,
                    LoadOp::Get => client
                        .get(&key, Consistency::Linearizable)
                        .await
                        .map(|_| ()),
                };
                let us = t.elapsed().as_micros() as u64;
                match r {
                    Ok(()) => crate::metrics::record_us(&mut h, us),
                    Err(_) => errors += 1,
                }
            }
            (h, errors)
        }));
    }
    let mut all = crate::metrics::histogram();
    let mut errors = 0;
    for t in tasks {
        let (h, e) = t.await.expect("load task");
        all.add(&h).expect("same bounds");
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    LoadtestReport {
        clients: opts.clients,
        ops: all.len(),
        errors,
        elapsed_s: elapsed,
        ops_per_sec: all.len() as f64 / elapsed,
        p50_us: all.value_at_quantile(0.5),
        p90_us: all.value_at_quantile(0.9),
        p99_us: all.value_at_quantile(0.99),
        max_us: all.max(),
    }
}

/// The disk's own price: append `bytes` to a file in `dir` and `fdatasync`, `n` times;
/// returns the p50 in µs.
pub fn fdatasync_p50_us(dir: &Path, bytes: usize, n: usize) -> std::io::Result<u64> {
    let path = dir.join(format!("raftbench-fdatasync-{}.tmp", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)?;
    let buf = vec![0x5au8; bytes];
    let mut h = crate::metrics::histogram();
    for _ in 0..n {
        let t = Instant::now();
        f.write_all(&buf)?;
        f.sync_data()?;
        crate::metrics::record_us(&mut h, t.elapsed().as_micros() as u64);
    }
    drop(f);
    std::fs::remove_file(&path)?;
    Ok(h.value_at_quantile(0.5))
}
