//! `raftbench run`: replay a workload against a local cluster and write `results/<run-id>/`.
//!
//! Each phase runs `concurrency` workers. Closed loop: a worker sends its next operation when
//! the previous one completes. Open loop (`rate`): operation `k` is *intended* to start at
//! `k / rate` seconds into the phase — a global schedule, taken by whichever worker is free —
//! and its corrected latency counts from that instant, so a stalled cluster shows up in the
//! numbers instead of silently slowing the load (coordinated omission). Service time (from
//! the actual send) is recorded beside it. Writes carry a unique id in their first 8 bytes
//! and every acknowledged or in-doubt write goes into the verification [`Model`].
//!
//! - [`run`] (here): the run end to end — workload, cluster, phases, results;
//! - `overrides`: the command line's edits to the workload; [`split`]: a split generator's
//!   share of it;
//! - `live`: the checks before running against a live cluster ([`check_controls`]);
//! - `phase`: one load phase — workers, operations; `pacer`: the open-loop schedule and its
//!   precise sleep; `recovery`: its events and their recovery figures;
//! - `readback`: the verify phase; `sample`: resource sampling; `scrape`: the nodes' own
//!   metrics (`server-metrics.csv`); `progress`: the terminal's progress bars.

mod coordinator;
mod live;
mod overrides;
mod pacer;
mod phase;
mod progress;
mod readback;
mod recovery;
mod replay;
mod sample;
mod scrape;
mod split;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use thiserror::Error;
use tokio::sync::Mutex;

pub use live::check_controls;
pub use replay::{Replay, ReplayArgs};
pub use split::split;

use super::keys::{SharedKeys, ValueMaker};
use super::output::{self, PhaseOutput};
use super::spec::WorkloadFile;
use super::verify::{Model, VerifyReport};
use super::{SpecError, Workload};
use crate::cluster::{Cluster, ClusterError, ClusterSpec};
use crate::remote::sync::{self, Follower};
use crate::target::KvClient;
use crate::wire::{
    BackendConfig, BackendKind, FsyncPolicy, Generator, PhaseVerify, RUN_MANIFEST_SCHEMA,
    RunManifest,
};
use recovery::EventLog;

/// Why a run could not be carried out.
#[derive(Debug, Error)]
pub enum RunError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("writing results to {}: {source}", path.display())]
    Output {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    ClusterFile(#[from] crate::wire::ClusterFileError),
    #[error("{0}")]
    Invalid(String),
}

/// `raftbench run` options.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub workload: PathBuf,
    /// The workload, already loaded and possibly edited (`compare`, `capacity`); when
    /// `None` it is read from `workload`.
    pub loaded: Option<Workload>,
    pub backend: Option<BackendKind>,
    pub nodes: Option<u64>,
    /// Results directory (default `results/<utc>-<workload>-<backend>`).
    pub out: Option<PathBuf>,
    /// Seed, restart-cache and scale overrides, and how nodes are started.
    pub replay: Replay,
    /// Run against the running cluster this cluster file describes instead of starting one.
    pub cluster: Option<PathBuf>,
    /// `(I, N)`: this is load generator I of N running the same workload against one
    /// cluster (see [`split`]).
    pub generator: Option<(u64, u64)>,
    /// This generator is driven by a coordinator over its stdin and stdout
    /// ([`crate::remote::sync`]): it injects no events and starts the run and each phase
    /// when told.
    pub coordinated: bool,
}

/// What a run produced.
#[derive(Debug)]
pub struct RunResult {
    pub dir: PathBuf,
    pub verify: Option<VerifyReport>,
    pub summary: Vec<output::SummaryRow>,
}

impl RunResult {
    /// The corrected-latency summary as a table, then the verify line, for a terminal.
    pub fn write_table(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        writeln!(
            out,
            "{:<16} {:<7} {:<13} {:>8} {:>9} {:>8} {:>8} {:>9} {:>9}",
            "phase", "op", "outcome", "count", "ops/s", "p50_us", "p99_us", "p99.9_us", "max_us"
        )?;
        for r in self
            .summary
            .iter()
            .filter(|r| r.latency_kind == "corrected")
        {
            writeln!(
                out,
                "{:<16} {:<7} {:<13} {:>8} {:>9.0} {:>8} {:>8} {:>9} {:>9}",
                r.phase,
                r.op,
                r.outcome,
                r.count,
                r.ops_per_sec,
                r.p50_us,
                r.p99_us,
                r.p999_us,
                r.max_us
            )?;
        }
        if let Some(v) = &self.verify {
            writeln!(
                out,
                "verify: {} keys, {} acknowledged writes: {} ok, {} lost, {} stale, {} in doubt resolved",
                v.keys, v.acknowledged, v.ok, v.lost, v.stale, v.indeterminate_resolved
            )?;
        }
        Ok(())
    }
}

/// What the workers, the verify phase and the event injection of a run share.
struct Shared {
    client: KvClient,
    model: Model,
    keys_shared: Arc<SharedKeys>,
    values: ValueMaker,
    next_write_id: AtomicU64,
    run_start: Instant,
    key_size: usize,
    /// Keys this generator chooses from: its partition of the key space (all of it
    /// unless split), mapped to real key indexes as `local * key_stride + key_offset`.
    keys: u64,
    key_stride: u64,
    key_offset: u64,
    quiet: bool,
    /// Progress as lines too (a coordinated generator's, streamed to its coordinator).
    progress_lines: bool,
}

/// Run a workload end to end: here, or, when the cluster file lists `[[generator]]` hosts
/// and this is not one of the generators, from the coordinator that drives them
/// ([`coordinator`]).
pub async fn run(o: RunOptions) -> Result<RunResult, RunError> {
    if let (Some(path), None) = (&o.cluster, o.generator) {
        let file = crate::remote::nodes::load_controlled(path)?;
        if !file.generators.is_empty() {
            return coordinator::run(o, file).await;
        }
    }
    let w = prepare_workload(&o)?;
    // Every open-loop worker holds a timer and a connection.
    crate::procinfo::raise_nofile();
    let f = &w.file;
    let started_at = SystemTime::now();
    let dir = results_dir(&o, f, started_at)?;
    let (cluster, backend, live) = match &o.cluster {
        Some(path) => {
            let (c, backend, live) = live::attach(path, &dir.join("cluster")).await?;
            (c, backend, Some(live))
        }
        None => {
            let (c, backend) = start_cluster(&o, f, &dir).await?;
            (c, backend, None)
        }
    };
    let endpoints: Vec<String> = cluster
        .nodes()
        .values()
        .map(|n| n.client_addr.clone())
        .collect();
    let leader = match cluster.leader().await {
        Some(l) => cluster.nodes().keys().position(|id| *id == l).unwrap_or(0),
        None => 0,
    };
    let client = KvClient::connect(cluster.kind(), &endpoints, leader, client_timeout(f))
        .await
        .map_err(RunError::Invalid)?;
    let cluster = Arc::new(Mutex::new(cluster));
    // A coordinated generator counts run time from the moment its coordinator names, the
    // same for every generator.
    let mut follower = o.coordinated.then(Follower::start);
    let run_start = match &mut follower {
        Some(f) => f.barrier(sync::RUN).await.map_err(sync_error)?,
        None => Instant::now(),
    };
    // Split generators: a partition of the keys, and their own random streams (the
    // workload's seed, recorded, stays the same for all of them).
    let (i, n) = o.generator.unwrap_or((1, 1));
    let (keys, key_stride, key_offset) = split::key_partition(f.data.keys, i, n);
    let seed = split::generator_seed(f.seed, i);
    let shared = Arc::new(Shared {
        client,
        model: Model::default(),
        keys_shared: Arc::new(SharedKeys::default()),
        values: ValueMaker::new(&f.data.value_size, f.data.value_random_share, seed),
        // Unique across runs and generators: a value left by an earlier run on the same
        // (live) cluster must never pass for this run's write.
        next_write_id: AtomicU64::new(
            (u64::from(rand::random::<u16>()) << 48)
                | (o.generator.map_or(0, |g| g.0 & 0xFF) << 40)
                | 1,
        ),
        run_start,
        key_size: f.data.key_size,
        keys,
        key_stride,
        key_offset,
        quiet: o.replay.quiet,
        progress_lines: o.coordinated,
    });
    let stop_sampling = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn(sample::sample_resources(
        cluster.clone(),
        shared.run_start,
        stop_sampling.clone(),
    ));

    let mut log = EventLog::default();
    log.faults.seed = seed;
    // A signal ends the run early, but not before what it injected is healed and the
    // cluster it started is stopped.
    let interrupted = {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| RunError::Invalid(format!("installing the SIGTERM handler: {e}")))?;
        tokio::select! {
            p = run_phases(&shared, &cluster, &mut log, f, seed, backend.fsync, follower.as_mut()) => Ok(p),
            _ = tokio::signal::ctrl_c() => Err("SIGINT"),
            _ = term.recv() => Err("SIGTERM"),
        }
    };
    // Whatever the phases did, no network fault outlives the run.
    for failed in crate::workload::events::heal_all(&cluster, &mut log.faults).await {
        eprintln!("warning: could not heal {failed}");
    }
    let Phases {
        load: phases,
        verifies,
        verify,
    } = match interrupted {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => {
            stop_sampling.store(true, Ordering::Relaxed);
            cluster.lock().await.shutdown();
            return Err(e);
        }
        Err(sig) => {
            stop_sampling.store(true, Ordering::Relaxed);
            cluster.lock().await.shutdown();
            return Err(RunError::Invalid(format!(
                "{sig}: run stopped; injected network faults were healed and a cluster this \
                 run started was stopped (results in {} are incomplete)",
                dir.display()
            )));
        }
    };
    if let Some(fl) = &mut follower {
        answer_events(fl, f, &phases).await?;
    }
    stop_sampling.store(true, Ordering::Relaxed);
    let sample::Samples {
        rows: resources,
        server: server_metrics,
        generator_peak_rss_bytes,
    } = sampler.await.unwrap_or_default();
    let mut phases = phases;
    for p in &mut phases {
        // Over the measured window, after the warm-up, as the phase's other figures.
        let warm = p.warmup.map_or(0.0, |w| w.as_secs_f64());
        let measured = (p.elapsed.as_secs_f64() - warm).max(0.0);
        p.raft_loop = output::raft_loop_cost(p.offset_s + warm, measured, &resources);
    }
    if !shared.quiet {
        eprintln!(
            "{}",
            output::harness_line(&phases, generator_peak_rss_bytes)
        );
    }
    let disk = cluster.lock().await.disk_layer();
    cluster.lock().await.shutdown();

    let manifest = RunManifest {
        schema_version: RUN_MANIFEST_SCHEMA,
        raftbench_version: env!("CARGO_PKG_VERSION").into(),
        git_revision: option_env!("RAFTBENCH_GIT_REV").unwrap_or("unknown").into(),
        cli: o.replay.cli.clone(),
        workload_file: w.path.clone(),
        seed: f.seed,
        fsync: backend.fsync,
        backend,
        machine: output::machine(),
        started_at: humantime::format_rfc3339_seconds(started_at).to_string(),
        duration_s: shared.run_start.elapsed().as_secs_f64(),
        keys_written: Some(shared.model.key_count()),
        // 0: /proc could not be read (or the sampler failed): unknown, not nothing.
        generator_peak_rss_bytes: (generator_peak_rss_bytes > 0)
            .then_some(generator_peak_rss_bytes),
        live_cluster: live,
        disk,
        verify_phases: verifies,
        generator: o.generator.map(|(id, of)| Generator { id, of }),
        phases: phases.iter().map(output::phase_record).collect(),
        verify,
        merged_from: None,
        hosts: Vec::new(),
        slo: None,
        generators: None,
        workload: w,
    };
    let summary = output::write_all(
        &dir,
        &manifest,
        started_at,
        &phases,
        &log.rows,
        &log.recovery,
        output::NodeSamples {
            resources: &resources,
            server_metrics: &server_metrics,
        },
    )
    .map_err(|source| RunError::Output {
        path: dir.clone(),
        source,
    })?;
    Ok(RunResult {
        dir,
        verify: manifest.verify,
        summary,
    })
}

/// The workload as this run runs it: loaded (unless given), with the command line's
/// overrides and this generator's share, and checked against a live cluster's file.
fn prepare_workload(o: &RunOptions) -> Result<Workload, RunError> {
    let w = match o.loaded.clone() {
        Some(w) => w,
        None => Workload::load(&o.workload)?,
    };
    let mut w = overrides::apply_overrides(w, o)?;
    if let Some((i, n)) = o.generator {
        split(&mut w, i, n)?;
        if o.coordinated {
            // The coordinator injects every event.
            for p in &mut w.file.phases {
                p.get_mut().events.clear();
            }
        }
        w.revalidate()?;
    }
    if let Some(path) = &o.cluster {
        if o.backend.is_some() || o.nodes.is_some() {
            return Err(RunError::Invalid(
                "--backend and --nodes describe a cluster raftbench starts; with --cluster the cluster file says what runs".into(),
            ));
        }
        check_controls(&w, path)?;
    }
    Ok(w)
}

/// The results directory (`--out`, else `results/<utc>-<workload>-<backend>[-gIofN]`),
/// created; one that holds anything is refused.
fn results_dir(
    o: &RunOptions,
    f: &WorkloadFile,
    started_at: SystemTime,
) -> Result<PathBuf, RunError> {
    let dir = o.out.clone().unwrap_or_else(|| {
        let ts = humantime::format_rfc3339_seconds(started_at)
            .to_string()
            .replace(':', "");
        let gen_suffix = o
            .generator
            .map_or(String::new(), |(i, n)| format!("-g{i}of{n}"));
        PathBuf::from("results").join(format!("{ts}-{}-{}{gen_suffix}", f.name, f.cluster.backend))
    });
    if dir.exists()
        && std::fs::read_dir(&dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
    {
        return Err(RunError::Invalid(format!(
            "results directory {} is not empty",
            dir.display()
        )));
    }
    std::fs::create_dir_all(&dir).map_err(|source| RunError::Output {
        path: dir.clone(),
        source,
    })?;
    Ok(dir)
}

/// Start the workload's `[cluster]` in `dir/cluster` and wait for its leader; returns it
/// and the backend its nodes run.
async fn start_cluster(
    o: &RunOptions,
    f: &WorkloadFile,
    dir: &Path,
) -> Result<(Cluster, BackendConfig), RunError> {
    let c = &f.cluster;
    let backend = c.backend();
    let spec = ClusterSpec {
        nodes: c.nodes,
        backend: backend.clone(),
        raft: c.raft(),
        dir: dir.join("cluster"),
        binary: o.replay.binary.clone(),
        fault_disks: f.needs_fault_disk().then_some(c.faultfs_metadata),
        node_args: Vec::new(),
    };
    let cluster = Cluster::start(spec)?.into_dyn();
    cluster.wait_for_leader(Duration::from_secs(30)).await?;
    Ok((cluster, backend))
}

/// What the phases of a run produced.
struct Phases {
    /// The load phases, in order.
    load: Vec<PhaseOutput>,
    /// Each verify phase's result, and their sum.
    verifies: Vec<PhaseVerify>,
    verify: Option<VerifyReport>,
}

/// Every phase in order: load phases measured, verify phases read every key back (each
/// judges the writes since the verify before it, so their counts add up). A coordinated
/// generator starts each when its coordinator says.
async fn run_phases(
    shared: &Arc<Shared>,
    cluster: &Arc<Mutex<Cluster>>,
    log: &mut EventLog,
    f: &WorkloadFile,
    seed: u64,
    fsync: FsyncPolicy,
    mut follower: Option<&mut Follower>,
) -> Result<Phases, RunError> {
    let mut phases = Vec::new();
    let mut verifies = Vec::new();
    let mut verify: Option<VerifyReport> = None;
    for (i, p) in f.phases.iter().enumerate() {
        let p = p.get_ref();
        if let Some(fl) = follower.as_deref_mut() {
            fl.barrier(&sync::phase_label(i))
                .await
                .map_err(sync_error)?;
        }
        if p.verify {
            let t_ms = shared.run_start.elapsed().as_millis() as u64;
            let since = verifies.last().map_or(0, |v: &PhaseVerify| v.t_ms);
            let mut r = readback::run_verify(shared).await;
            // Loss is expected only where it is possible by design.
            r.loss_expected = f.expect_loss && fsync == FsyncPolicy::Never;
            // The cut that took the writes this verify misses: the last since the verify
            // before it.
            r.newest_lost_age_ms = log.newest_lost_age_ms(since, t_ms, r.newest_lost_acked_ms);
            if !shared.quiet {
                eprintln!(
                    "phase {:>2} {:<20} verified {} keys: {} ok, {} lost, {} stale, {} resolved in-doubt, {} unreadable",
                    i,
                    p.name,
                    r.keys,
                    r.ok,
                    r.lost,
                    r.stale,
                    r.indeterminate_resolved,
                    r.unreadable
                );
            }
            match &mut verify {
                Some(v) => {
                    // Every verify reads the same keys: count them once.
                    let keys = v.keys.max(r.keys);
                    v.absorb(&r);
                    v.keys = keys;
                }
                None => verify = Some(r.clone()),
            }
            verifies.push(PhaseVerify {
                phase: p.name.clone(),
                t_ms,
                report: r,
            });
            continue;
        }
        let before = sample::server_counters(cluster).await;
        let mut out =
            phase::run_phase(shared, cluster, log, seed, i, p, &f.data.key_distribution).await;
        out.server =
            crate::target::server::phase_figures(&before, &sample::server_counters(cluster).await);
        if !shared.quiet {
            eprintln!("{}", output::phase_line(i, p, &out));
        }
        phases.push(out);
    }
    Ok(Phases {
        load: phases,
        verifies,
        verify,
    })
}

/// A coordinated generator's last word: for each event its coordinator injected, the last
/// acknowledgement before it and the first of a write sent after it, from the phase it
/// was in.
async fn answer_events(
    fl: &mut Follower,
    f: &WorkloadFile,
    phases: &[PhaseOutput],
) -> Result<(), RunError> {
    let events = fl.events().await.map_err(sync_error)?;
    let answers = events
        .iter()
        .map(|(pi, at_us)| {
            let name = f.phases.get(*pi).map(|p| p.get_ref().name.as_str());
            phases
                .iter()
                .find(|p| Some(p.name.as_str()) == name)
                .map_or((None, None), |p| {
                    recovery::acks_around_us(&p.recorder, *at_us)
                })
        })
        .collect();
    fl.resumed(answers);
    Ok(())
}

fn sync_error(e: sync::SyncError) -> RunError {
    RunError::Invalid(format!("coordinator: {e}"))
}

/// The client's overall deadline: 10 s, or longer when a phase asks for a longer timeout.
fn client_timeout(f: &WorkloadFile) -> Duration {
    f.phases
        .iter()
        .filter_map(|p| p.get_ref().timeout)
        .map(|t| t.0)
        .max()
        .unwrap_or_default()
        .max(Duration::from_secs(10))
}
