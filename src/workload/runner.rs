//! `raftbench run`: replay a workload against a local cluster and write `results/<run-id>/`.
//!
//! Each phase runs `concurrency` workers. Closed loop: a worker sends its next operation when
//! the previous one completes. Open loop (`rate`): operation `k` of worker `w` is *intended*
//! to start at `(k * concurrency + w) / rate` seconds into the phase — a global schedule —
//! and its corrected latency counts from that instant, so a stalled cluster shows up in the
//! numbers instead of silently slowing the load (coordinated omission). Service time (from
//! the actual send) is recorded beside it. Writes carry a unique id in their first 8 bytes
//! and every acknowledged or in-doubt write goes into the verification [`Model`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use thiserror::Error;
use tokio::sync::Mutex;

use super::events::{self, EventRow, Faults, RecoveryRow};
use super::keys::{KeyChooser, SharedKeys, ValueMaker, key_name};
use super::output::{self, PhaseOutput, ResourceRow};
use super::spec::{Action, CacheState, HumanDuration, Phase, ReadConsistency, Target};
use super::verify::{Model, Seen, VerifyReport, write_id};
use super::{SpecError, Workload};
use crate::client::{Client, ClientError, Consistency};
use crate::cluster::{Cluster, ClusterError, ClusterSpec};
use crate::metrics::{Op, Outcome, Recorder};
use crate::wire::{BackendConfig, BackendKind, RaftSettings};

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
    pub seed: Option<u64>,
    /// Overrides every `restart` event's `cache`.
    pub restart_cache: Option<CacheState>,
    /// Multiplies op counts, durations, warm-ups and event times.
    pub scale: f64,
    pub quiet: bool,
    /// The `raftbench` executable that runs nodes.
    pub binary: PathBuf,
    /// The command line, for `run.json`.
    pub cli: Vec<String>,
    /// Run against the running cluster this cluster file describes instead of starting one.
    pub cluster: Option<PathBuf>,
    /// `(I, N)`: this is load generator I of N running the same workload against one
    /// cluster (see [`split`]).
    pub generator: Option<(u64, u64)>,
}

/// Generator `i` of `n`'s share of a workload: 1/n of every phase's rate and op count
/// (the remainder to the first generators), ceil(1/n) of its concurrency, and — applied by
/// the runner — every n-th key starting at key i-1, so that generators never write the
/// same key and each can verify its own writes. Only generator 1 injects events: the
/// others would kill the same nodes again.
pub fn split(w: &mut Workload, i: u64, n: u64) -> Result<(), RunError> {
    if n == 0 || i == 0 || i > n {
        return Err(RunError::Invalid(format!(
            "--client-id must be between 1 and --clients ({n}), got {i}"
        )));
    }
    if w.file.data.keys < n {
        return Err(RunError::Invalid(format!(
            "{} keys cannot be split between {n} generators",
            w.file.data.keys
        )));
    }
    for p in &mut w.file.phases {
        let p = p.get_mut();
        if let Some(ops) = &mut p.ops {
            *ops = *ops / n + u64::from(i - 1 < *ops % n);
            *ops = (*ops).max(1);
        }
        if let Some(r) = &mut p.rate {
            *r /= n as f64;
        }
        p.concurrency = p.concurrency.div_ceil(n as usize).max(1);
        if i != 1 {
            p.events.clear();
        }
    }
    Ok(())
}

/// What a run produced.
#[derive(Debug)]
pub struct RunResult {
    pub dir: PathBuf,
    pub verify: Option<VerifyReport>,
    pub summary: Vec<output::SummaryRow>,
}

/// Before any load against a live cluster: every node answers `/status`, and they agree on
/// one leader. A node that does not answer is refused at once; disagreement is given
/// [`LEADER_AGREEMENT_GRACE`] to settle, since a cluster that has just elected a leader
/// (`cluster up` returns once a majority knows it) may still have a node that has not
/// heard from it yet.
async fn check_live(c: &Cluster) -> Result<(), RunError> {
    let file = c
        .attached()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let deadline = Instant::now() + LEADER_AGREEMENT_GRACE;
    loop {
        let mut leaders = std::collections::BTreeMap::new();
        let mut bad = Vec::new();
        for n in c.nodes().values() {
            match c.status(n.id).await {
                Ok(s) => {
                    leaders.insert(n.id, s.raft.leader_id);
                }
                Err(e) => bad.push(format!("node {} at {}: {e}", n.id, n.client_addr)),
            }
        }
        if !bad.is_empty() {
            return Err(RunError::Invalid(format!(
                "{file}: nodes do not answer GET /status: {}",
                bad.join("; ")
            )));
        }
        let distinct: std::collections::BTreeSet<u64> = leaders.values().copied().collect();
        if distinct.len() == 1 && !distinct.contains(&0) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(RunError::Invalid(format!(
                "{file}: the nodes do not agree on a leader after {:?} \
                 (node -> leader it reports, 0 = none: {leaders:?})",
                LEADER_AGREEMENT_GRACE
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How long [`check_live`] waits for the nodes of a live cluster to agree on a leader.
const LEADER_AGREEMENT_GRACE: Duration = Duration::from_secs(5);

/// Refuse, before anything runs, events that need a control command the cluster file
/// does not give (a live cluster is controlled only through those commands).
pub fn check_controls(w: &Workload, path: &Path) -> Result<(), RunError> {
    let file = crate::wire::ClusterFile::load(path)?;
    for p in &w.file.phases {
        let p = p.get_ref();
        for e in &p.events {
            let e = e.get_ref();
            if e.cache == CacheState::Cold {
                return Err(RunError::Invalid(format!(
                    "{}: phase {:?}: the restart at {} is cold (`cache = \"cold\"` in the file, \
                     or --restart-cache cold): it evicts the node's data directory from this \
                     machine's page cache, which raftbench cannot do on the hosts of {}; run it \
                     warm, and drop the cache in the node's `start` command instead (for example \
                     `sync; echo 1 > /proc/sys/vm/drop_caches`, as root, which empties that \
                     host's whole page cache)",
                    w.path.display(),
                    p.name,
                    humantime::format_duration(e.at.0),
                    path.display()
                )));
            }
            let which = match e.action {
                Action::Kill => "kill",
                Action::Stop => "stop",
                Action::Restart => "start",
                Action::Pause => "pause",
                Action::Resume => "resume",
                Action::AddNode => {
                    return Err(RunError::Invalid(format!(
                        "{}: phase {:?}: add-node starts a new node process, which raftbench cannot do for the cluster of {}",
                        w.path.display(),
                        p.name,
                        path.display()
                    )));
                }
                _ => continue,
            };
            let targets: Vec<&crate::wire::ClusterNode> = match e.target {
                Target::Node(n) => match file.nodes.iter().find(|x| x.id == n) {
                    Some(x) => vec![x],
                    None => {
                        return Err(RunError::Invalid(format!(
                            "{}: phase {:?}: event {} targets node {n}, which {} does not list",
                            w.path.display(),
                            p.name,
                            which,
                            path.display()
                        )));
                    }
                },
                // The leader, a follower or "the killed ones" are only known at run time.
                _ => file.nodes.iter().collect(),
            };
            for n in targets {
                if n.control.get(which).is_none() {
                    return Err(RunError::Invalid(format!(
                        "{}: phase {:?}: event `{}` at {} needs node {}'s `{which}` control command, which {} does not give",
                        w.path.display(),
                        p.name,
                        format!("{:?}", e.action).to_lowercase(),
                        humantime::format_duration(e.at.0),
                        n.id,
                        path.display()
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Apply CLI overrides and `--scale` to a workload.
fn resolve(mut w: Workload, o: &RunOptions) -> Result<Workload, RunError> {
    if !(o.scale > 0.0 && o.scale <= 1000.0) {
        return Err(RunError::Invalid(format!(
            "--scale must be positive, got {}",
            o.scale
        )));
    }
    let f = &mut w.file;
    if let Some(b) = o.backend {
        f.cluster.backend = b;
    }
    if let Some(n) = o.nodes {
        if n == 0 {
            return Err(RunError::Invalid("--nodes must be at least 1".into()));
        }
        f.cluster.nodes = n;
    }
    if let Some(s) = o.seed {
        f.seed = s;
    }
    if let Some(c) = o.restart_cache {
        w.set_restart_cache(c);
    }
    let f = &mut w.file;
    let scale_d = |d: &mut HumanDuration| d.0 = d.0.mul_f64(o.scale);
    for p in &mut f.phases {
        let p = p.get_mut();
        if let Some(ops) = &mut p.ops {
            *ops = ((*ops as f64 * o.scale).round() as u64).max(1);
        }
        for d in [&mut p.duration, &mut p.warmup].into_iter().flatten() {
            scale_d(d);
        }
        for e in &mut p.events {
            scale_d(&mut e.get_mut().at);
        }
    }
    w.revalidate()?;
    Ok(w)
}

/// Live figures for the progress display: counters, and the last second's latencies.
#[derive(Default)]
struct Live {
    ok: AtomicU64,
    errors: AtomicU64,
    window: std::sync::Mutex<Option<hdrhistogram::Histogram<u64>>>,
}

impl Live {
    fn record(&self, outcome: Outcome, corrected_us: u64) {
        if outcome == Outcome::Ok {
            self.ok.fetch_add(1, Ordering::Relaxed);
        } else {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let mut w = self.window.lock().expect("live lock");
        w.get_or_insert_with(crate::metrics::histogram)
            .saturating_record(corrected_us.max(1));
    }
}

/// A progress bar for a phase, refreshed twice a second with ops/s, p99 and errors.
fn spawn_progress(
    p: &Phase,
    index: usize,
    live: Arc<Live>,
) -> (indicatif::ProgressBar, tokio::task::JoinHandle<()>) {
    let (len, unit) = match (p.ops, p.duration) {
        (Some(ops), _) => (ops, "ops"),
        (None, Some(d)) => (d.0.as_secs().max(1), "s"),
        _ => (1, ""),
    };
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "phase {index:>2} {{prefix:<16}} [{{bar:30}}] {{pos}}/{{len}} {unit}  {{msg}}"
        ))
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(p.name.clone());
    let (b, by_ops) = (bar.clone(), p.ops.is_some());
    let task = tokio::spawn(async move {
        let started = Instant::now();
        let mut last = (Instant::now(), 0u64);
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let ok = live.ok.load(Ordering::Relaxed);
            let errors = live.errors.load(Ordering::Relaxed);
            let rate = (ok - last.1) as f64 / last.0.elapsed().as_secs_f64();
            last = (Instant::now(), ok);
            let p99 = live
                .window
                .lock()
                .expect("live lock")
                .take()
                .map_or(0, |h| h.value_at_quantile(0.99));
            b.set_position(if by_ops {
                ok + errors
            } else {
                started.elapsed().as_secs()
            });
            b.set_message(format!(
                "{rate:>8.0} ops/s  p99 {:>8.1} ms  errors {errors}",
                p99 as f64 / 1e3
            ));
        }
    });
    (bar, task)
}

struct Shared {
    client: Client,
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
}

/// Run a workload end to end.
pub async fn run(o: RunOptions) -> Result<RunResult, RunError> {
    let w = match o.loaded.clone() {
        Some(w) => w,
        None => Workload::load(&o.workload)?,
    };
    let mut w = resolve(w, &o)?;
    if let Some((i, n)) = o.generator {
        split(&mut w, i, n)?;
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
    let f = &w.file;
    let started_at = SystemTime::now();
    let dir = o.out.clone().unwrap_or_else(|| {
        let ts = humantime::format_rfc3339_seconds(started_at)
            .to_string()
            .replace(':', "");
        {
            let gen_suffix = o
                .generator
                .map_or(String::new(), |(i, n)| format!("-g{i}of{n}"));
            PathBuf::from("results")
                .join(format!("{ts}-{}-{}{gen_suffix}", f.name, f.cluster.backend))
        }
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
    let (cluster, backend, live) = match &o.cluster {
        Some(path) => {
            let cluster = Cluster::attach(path, &dir.join("cluster"))?.into_dyn();
            check_live(&cluster).await?;
            let file = cluster.cluster_file();
            let live = serde_json::json!({
                "cluster_file": path,
                "nodes": file.nodes,
            });
            (cluster, file.backend, Some(live))
        }
        None => {
            let c = &f.cluster;
            let mut backend = BackendConfig::new(c.backend, "").with_fsync(c.fsync);
            backend.memwal = c.memwal.clone();
            backend.rocksdb = c.rocksdb.clone();
            let spec = ClusterSpec {
                nodes: c.nodes,
                backend: backend.clone(),
                raft: RaftSettings {
                    tick_ms: c.tick_ms,
                    election_ticks: c.election_ticks,
                    snapshot_interval: c.snapshot_interval,
                    compact_lag: c.compact_lag,
                },
                dir: dir.join("cluster"),
                binary: o.binary.clone(),
            };
            let cluster = Cluster::start(spec)?.into_dyn();
            cluster.wait_for_leader(Duration::from_secs(30)).await?;
            (cluster, backend, None)
        }
    };
    let endpoints: Vec<String> = cluster
        .nodes()
        .values()
        .map(|n| n.client_addr.clone())
        .collect();
    let cluster = Arc::new(Mutex::new(cluster));
    // Split generators: a partition of the keys, and their own random streams (the
    // workload's seed, recorded, stays the same for all of them).
    let (partition, seed) = match o.generator {
        Some((i, n)) => (
            ((f.data.keys - (i - 1)).div_ceil(n), n, i - 1),
            f.seed ^ (i - 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        ),
        None => ((f.data.keys, 1, 0), f.seed),
    };
    let shared = Arc::new(Shared {
        client: Client::new(&endpoints, client_timeout(f)),
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
        run_start: Instant::now(),
        key_size: f.data.key_size,
        keys: partition.0,
        key_stride: partition.1,
        key_offset: partition.2,
        quiet: o.quiet,
    });
    let stop_sampling = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = tokio::spawn(sample_resources(
        cluster.clone(),
        shared.run_start,
        stop_sampling.clone(),
    ));

    let mut phases = Vec::new();
    let mut event_rows: Vec<EventRow> = Vec::new();
    let mut recovery: Vec<RecoveryRow> = Vec::new();
    let mut verify = None;
    let mut faults = Faults::default();
    for (i, p) in f.phases.iter().enumerate() {
        let p = p.get_ref();
        if p.verify {
            let r = run_verify(&shared).await;
            if !o.quiet {
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
            verify = Some(r);
            continue;
        }
        let out = run_phase(
            &shared,
            &cluster,
            &mut faults,
            seed,
            i,
            p,
            &f.data.key_distribution,
            &mut event_rows,
            &mut recovery,
        )
        .await;
        if !o.quiet {
            eprintln!("{}", output::phase_line(i, p, &out));
        }
        phases.push(out);
    }
    stop_sampling.store(true, Ordering::Relaxed);
    let resources = sampler.await.unwrap_or_default();
    cluster.lock().await.shutdown();

    let summary = output::write_all(
        &dir,
        &output::RunInfo {
            workload: &w,
            cli: &o.cli,
            backend: &backend,
            started_at,
            duration_s: shared.run_start.elapsed().as_secs_f64(),
            keys_written: shared.model.key_count(),
            live_cluster: live,
            generator: o.generator,
        },
        &phases,
        &event_rows,
        &recovery,
        &resources,
        verify.as_ref(),
    )
    .map_err(|source| RunError::Output {
        path: dir.clone(),
        source,
    })?;
    Ok(RunResult {
        dir,
        verify,
        summary,
    })
}

fn choose_op(mix: &super::spec::Mix, rng: &mut StdRng) -> Op {
    let x: f64 = rng.random::<f64>() * mix.total();
    if x < mix.put {
        Op::Put
    } else if x < mix.put + mix.get {
        Op::Get
    } else {
        Op::Delete
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_phase(
    shared: &Arc<Shared>,
    cluster: &Arc<Mutex<Cluster>>,
    faults: &mut Faults,
    seed: u64,
    index: usize,
    p: &Phase,
    default_keys: &super::spec::KeyDistribution,
    event_rows: &mut Vec<EventRow>,
    recovery: &mut Vec<RecoveryRow>,
) -> PhaseOutput {
    let start = Instant::now();
    let cpu_before = self_cpu_time();
    let offset_s = start.duration_since(shared.run_start).as_secs_f64();
    let end = p.duration.map(|d| start + d.0);
    let warmup_end = start + p.warmup.map_or(Duration::ZERO, |w| w.0);
    let budget = Arc::new(AtomicU64::new(p.ops.unwrap_or(u64::MAX)));
    let chooser = Arc::new(KeyChooser::new(
        p.key_distribution.as_ref().unwrap_or(default_keys),
        shared.keys,
        shared.keys_shared.clone(),
    ));
    let consistency = match p.read_consistency {
        ReadConsistency::Linearizable => Consistency::Linearizable,
        ReadConsistency::Local => Consistency::Local,
    };
    let timeout = p.timeout.map(|t| t.0);
    // Live figures only feed the progress display: with --quiet the workers skip them.
    let live = (!shared.quiet).then(|| Arc::new(Live::default()));
    let progress = live.clone().map(|l| spawn_progress(p, index, l));
    // Open loop: a pacer thread releases each operation at its intended time (OS sleeps are
    // accurate to ~0.1 ms; tokio's timer wheel only to 1 ms, which would show up as
    // latency), round-robin over the workers. A busy worker's tickets queue up — that
    // waiting is exactly what corrected latency must include.
    let mut tickets: Vec<Option<tokio::sync::mpsc::UnboundedReceiver<Instant>>> =
        (0..p.concurrency).map(|_| None).collect();
    if let Some(rate) = p.rate {
        let mut senders = Vec::with_capacity(p.concurrency);
        for t in tickets.iter_mut() {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            senders.push(tx);
            *t = Some(rx);
        }
        let budget = budget.clone();
        std::thread::spawn(move || {
            for k in 0u64.. {
                let intended = start + Duration::from_secs_f64(k as f64 / rate);
                if end.is_some_and(|e| intended >= e)
                    || budget
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1))
                        .is_err()
                {
                    break;
                }
                let now = Instant::now();
                if intended > now {
                    std::thread::sleep(intended - now);
                }
                if senders[(k % senders.len() as u64) as usize]
                    .send(intended)
                    .is_err()
                {
                    break;
                }
            }
        });
    }
    let mut workers = Vec::with_capacity(p.concurrency);
    for (w, mut ticket) in tickets.into_iter().enumerate() {
        let (shared, budget, chooser, mix, live) = (
            shared.clone(),
            budget.clone(),
            chooser.clone(),
            p.mix.clone(),
            live.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed ^ ((index as u64) << 32) ^ w as u64);
            let mut rec = Recorder::default();
            let mut last_done = start;
            loop {
                let intended = match &mut ticket {
                    Some(rx) => match rx.recv().await {
                        Some(t) => t,
                        None => break,
                    },
                    None => {
                        let now = Instant::now();
                        if end.is_some_and(|e| now >= e)
                            || budget
                                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                                    b.checked_sub(1)
                                })
                                .is_err()
                        {
                            break;
                        }
                        now
                    }
                };
                let op = choose_op(&mix, &mut rng);
                let local = chooser.next(&mut rng);
                let key = local * shared.key_stride + shared.key_offset;
                let name = key_name(key, shared.key_size);
                let sent = Instant::now();
                let invoked_us = sent.duration_since(shared.run_start).as_micros() as u64;
                let outcome = match op {
                    Op::Get => {
                        let r = with_timeout(timeout, shared.client.get(&name, consistency)).await;
                        if r.is_ok() {
                            Outcome::Ok
                        } else {
                            Outcome::Error
                        }
                    }
                    Op::Put | Op::Delete => {
                        let id = shared.next_write_id.fetch_add(1, Ordering::Relaxed);
                        let r = if op == Op::Put {
                            let mut v = shared.values.make(&mut rng);
                            if v.len() < 8 {
                                v.resize(8, 0);
                            }
                            v[..8].copy_from_slice(&id.to_be_bytes());
                            with_timeout(timeout, shared.client.put(&name, Bytes::from(v))).await
                        } else {
                            with_timeout(timeout, shared.client.delete(&name)).await
                        };
                        let now_us = shared.run_start.elapsed().as_micros() as u64;
                        let outcome = match &r {
                            Ok(()) => Outcome::Ok,
                            Err(e) if e.is_indeterminate() => Outcome::Indeterminate,
                            Err(_) => Outcome::Error,
                        };
                        if outcome != Outcome::Error {
                            let acked = (outcome == Outcome::Ok).then_some(now_us);
                            shared
                                .model
                                .record(key, id, op == Op::Delete, invoked_us, acked);
                            shared.keys_shared.wrote(local);
                        }
                        outcome
                    }
                };
                let done = Instant::now();
                if let Some(live) = &live {
                    live.record(outcome, done.duration_since(intended).as_micros() as u64);
                }
                rec.record(
                    op,
                    outcome,
                    done.duration_since(intended).as_micros() as u64,
                    done.duration_since(sent).as_micros() as u64,
                    invoked_us,
                    done.duration_since(shared.run_start).as_micros() as u64,
                    intended < warmup_end,
                );
                last_done = done;
            }
            (rec, last_done)
        }));
    }

    // Events, in time order, concurrently with the load.
    let mut evs: Vec<_> = p.events.iter().map(|e| e.get_ref().clone()).collect();
    evs.sort_by_key(|e| e.at);
    let mut followups = Vec::new();
    for ev in evs {
        tokio::time::sleep_until((start + ev.at.0).into()).await;
        let done = events::execute(cluster, faults, &ev).await;
        let t_ms = done.at.duration_since(shared.run_start).as_millis() as u64;
        // Run-relative, like the timeline and the acknowledgement times.
        let at_s = done.at.duration_since(shared.run_start).as_secs_f64();
        let (node, detail, follow) = (done.nodes, done.detail, done.follow);
        let idx = event_rows.len();
        event_rows.push(EventRow {
            t_ms,
            phase: p.name.clone(),
            action: format!("{:?}", ev.action).to_lowercase(),
            node,
            detail,
        });
        let cl = cluster.clone();
        followups.push((
            idx,
            ev.action,
            at_s,
            tokio::spawn(async move { events::measure(&cl, follow).await }),
        ));
    }
    let mut rec = Recorder::default();
    let mut finished = start;
    for w in workers {
        if let Ok((r, last)) = w.await {
            rec.merge(&r);
            finished = finished.max(last);
        }
    }
    // The load's own span: events still finishing after the last operation do not count.
    let elapsed = finished.duration_since(start);
    if let Some((bar, task)) = progress {
        task.abort();
        bar.finish_and_clear();
    }
    let ops_done: u64 = rec
        .ops
        .values()
        .chain(rec.warmup.values())
        .map(|p| p.corrected.len())
        .sum();
    let generator_cpu_us_per_op =
        (self_cpu_time() - cpu_before).as_secs_f64() * 1e6 / ops_done.max(1) as f64;
    let mut phase_recovery = Vec::new();
    for (idx, action, at_s, h) in followups {
        let action_s = format!("{action:?}").to_lowercase();
        let rows = h.await.unwrap_or_default();
        let mut window_end = at_s;
        for (node, metric, ms) in rows {
            if metric.ends_with("_ms") {
                window_end = window_end.max(at_s + ms / 1e3);
            }
            phase_recovery.push(RecoveryRow {
                event: idx,
                action: action_s.clone(),
                node,
                metric: metric.into(),
                ms,
            });
        }
        // Writes resumed: from the last acknowledgement before the event to the first
        // acknowledgement of a write *sent* after it (a write sent before may still be
        // answered just after a kill).
        let at_us = (at_s * 1e6) as u64;
        let before = rec
            .write_acks
            .iter()
            .map(|w| w.1)
            .filter(|t| *t <= at_us)
            .max();
        let after = rec
            .write_acks
            .iter()
            .filter(|w| w.0 > at_us)
            .map(|w| w.1)
            .min();
        if let (Some(b), Some(a)) = (before, after) {
            let ms = (a - b) as f64 / 1e3;
            window_end = window_end.max(a as f64 / 1e6);
            phase_recovery.push(RecoveryRow {
                event: idx,
                action: action_s.clone(),
                node: 0,
                metric: "writes_resumed_ms".into(),
                ms,
            });
        }
        if let Some(p99) = rec.p99_between(at_s as u64, window_end.ceil() as u64) {
            phase_recovery.push(RecoveryRow {
                event: idx,
                action: action_s,
                node: 0,
                metric: "p99_during_recovery_us".into(),
                ms: p99 as f64,
            });
        }
    }
    recovery.extend(phase_recovery);
    PhaseOutput {
        name: p.name.clone(),
        offset_s,
        elapsed,
        warmup: p.warmup.map(|w| w.0),
        target_rate: p.rate,
        recorder: rec,
        generator_cpu_us_per_op,
    }
}

async fn with_timeout<T>(
    timeout: Option<Duration>,
    f: impl std::future::Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    match timeout {
        None => f.await,
        Some(t) => tokio::time::timeout(t, f)
            .await
            .unwrap_or(Err(ClientError::Timeout(t))),
    }
}

/// Read every key ever written, linearizably, and classify it against the model.
async fn run_verify(shared: &Arc<Shared>) -> VerifyReport {
    let keys = shared.model.keys();
    let mut report = VerifyReport::default();
    // A cluster without quorum must not turn verify into a hang: give up after this.
    let deadline = Instant::now() + Duration::from_secs(300);
    let sem = Arc::new(tokio::sync::Semaphore::new(16));
    let mut reads = Vec::with_capacity(keys.len());
    for k in keys {
        let (shared, sem) = (shared.clone(), sem.clone());
        reads.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await;
            let name = key_name(k, shared.key_size);
            let mut backoff = Duration::from_millis(50);
            for _ in 0..5 {
                if Instant::now() >= deadline {
                    break;
                }
                match shared.client.get(&name, Consistency::Linearizable).await {
                    Ok(Some(v)) => return (k, write_id(&v)),
                    Ok(None) => return (k, Seen::Missing),
                    Err(_) => {
                        tokio::time::sleep(backoff).await;
                        backoff *= 2;
                    }
                }
            }
            (k, Seen::Unreadable)
        }));
    }
    for r in reads {
        if let Ok((k, seen)) = r.await {
            shared.model.classify(k, seen, &mut report);
        }
    }
    report
}

/// Sample every node's RSS, disk, I/O and CPU once a second until `stop` is set.
async fn sample_resources(
    cluster: Arc<Mutex<Cluster>>,
    run_start: Instant,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<ResourceRow> {
    let mut rows = Vec::new();
    let mut last_cpu: std::collections::HashMap<u64, (u64, Instant)> = Default::default();
    let ticks = crate::procinfo::CLOCK_TICKS_PER_SEC;
    let http = crate::client::http_client();
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    while !stop.load(Ordering::Relaxed) {
        interval.tick().await;
        // Local nodes: /proc, read under the lock (fast). Attached nodes: their /status,
        // queried after releasing it, so a slow node cannot hold up event injection.
        let mut sampled = Vec::new();
        let mut remote = Vec::new();
        {
            let c = cluster.lock().await;
            for n in c.nodes().values() {
                if c.attached().is_some() {
                    if c.state(n.id) == crate::cluster::NodeState::Running {
                        remote.push((n.id, c.url(n.id).unwrap_or_default()));
                    }
                } else if let Ok(r) = c.resources(n.id) {
                    sampled.push((n.id, c.pid(n.id), r));
                }
            }
        }
        for (id, url) in remote {
            if let Ok(s) = crate::cluster::fetch_status(&http, &url, id).await {
                sampled.push((id, None, crate::cluster::reported_resources(&s)));
            }
        }
        for (id, pid, r) in sampled {
            let cpu = pid.and_then(|pid| {
                let used = crate::procinfo::cpu_ticks(pid)?;
                let now = Instant::now();
                let pct = last_cpu.get(&id).map(|(u, t)| {
                    used.saturating_sub(*u) as f64 / ticks / now.duration_since(*t).as_secs_f64()
                        * 100.0
                });
                last_cpu.insert(id, (used, now));
                pct
            });
            rows.push(ResourceRow {
                t_s: (run_start.elapsed().as_secs_f64() * 1e3).round() / 1e3,
                node: id,
                rss_bytes: r.rss_bytes,
                disk_bytes: r.disk_bytes,
                read_bytes: r.read_bytes,
                write_bytes: r.write_bytes,
                cpu_pct: cpu.unwrap_or(0.0),
            });
        }
    }
    rows
}

/// CPU time (user + system) this process has used.
fn self_cpu_time() -> Duration {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF);
    usage.map_or(Duration::ZERO, |u| {
        let t = |tv: nix::sys::time::TimeVal| {
            Duration::from_secs(tv.tv_sec() as u64) + Duration::from_micros(tv.tv_usec() as u64)
        };
        t(u.user_time()) + t(u.system_time())
    })
}

/// The client's overall deadline: 10 s, or longer when a phase asks for a longer timeout.
fn client_timeout(f: &super::spec::WorkloadFile) -> Duration {
    f.phases
        .iter()
        .filter_map(|p| p.get_ref().timeout)
        .map(|t| t.0)
        .max()
        .unwrap_or_default()
        .max(Duration::from_secs(10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_shares_rates_ops_concurrency_and_events() {
        let path = std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/workloads/quickstart.toml"
        ));
        let w = Workload::load(path).unwrap();
        let mut a = w.clone();
        let mut b = w.clone();
        split(&mut a, 1, 3).unwrap();
        split(&mut b, 3, 3).unwrap();
        let phase = |w: &Workload, n: &str| {
            w.file
                .phases
                .iter()
                .map(|p| p.get_ref().clone())
                .find(|p| p.name == n)
                .unwrap()
        };
        // 10000 ops: 3334 + 3333 + 3333.
        assert_eq!(phase(&a, "load").ops, Some(3334));
        assert_eq!(phase(&b, "load").ops, Some(3333));
        assert_eq!(phase(&a, "run").rate, Some(1000.0 / 3.0));
        assert_eq!(phase(&a, "run").concurrency, 11);
        assert_eq!(
            phase(&a, "run").events.len(),
            3,
            "generator 1 injects the events"
        );
        assert!(phase(&b, "run").events.is_empty(), "the others do not");
        assert!(split(&mut w.clone(), 4, 3).is_err());
        assert!(split(&mut w.clone(), 0, 3).is_err());
    }

    /// `--restart-cache` changes every restart and nothing else; the file's own `cache`
    /// stands without it.
    #[test]
    fn restart_cache_override_applies_to_restarts_only() {
        let path = std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/workloads/restart-recovery.toml"
        ));
        let opts = |c: Option<CacheState>| RunOptions {
            workload: path.to_path_buf(),
            loaded: None,
            backend: None,
            nodes: None,
            out: None,
            seed: None,
            restart_cache: c,
            scale: 1.0,
            quiet: true,
            binary: "raftbench".into(),
            cli: Vec::new(),
            cluster: None,
            generator: None,
        };
        let events = |w: &Workload| -> Vec<(Action, CacheState)> {
            w.file
                .phases
                .iter()
                .flat_map(|p| p.get_ref().events.iter())
                .map(|e| (e.get_ref().action, e.get_ref().cache))
                .collect()
        };
        let w = Workload::load(path).unwrap();
        let cold = resolve(w.clone(), &opts(Some(CacheState::Cold))).unwrap();
        let ev = events(&cold);
        assert_eq!(ev.len(), 4);
        for (action, cache) in ev {
            let want = if action == Action::Restart {
                CacheState::Cold
            } else {
                CacheState::Warm
            };
            assert_eq!(cache, want, "{action:?}");
        }
        let mut file_cold = w.clone();
        file_cold.set_restart_cache(CacheState::Cold);
        let kept = resolve(file_cold.clone(), &opts(None)).unwrap();
        assert_eq!(events(&kept), events(&cold));
        let warm = resolve(file_cold, &opts(Some(CacheState::Warm))).unwrap();
        assert!(events(&warm).iter().all(|(_, c)| *c == CacheState::Warm));
    }
}
