//! One load phase: the pacer, the workers and their operations, with the phase's events
//! injected alongside ([`super::recovery`]).
//!
//! Closed loop: a worker sends its next operation when the previous one completes. Open
//! loop (`rate`): operation `k` is intended to start `k / rate` seconds into the phase; the
//! first free worker takes it ([`super::pacer`]), and its corrected latency counts from that
//! instant.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Mutex;

use super::Shared;
use super::pacer::{Schedule, Sleeper};
use super::progress::{Live, Progress};
use super::recovery::{self, EventLog};
use super::sample::self_cpu_time;
use crate::client::{ClientError, Consistency};
use crate::cluster::Cluster;
use crate::metrics::{Op, Outcome, Recorder, Timeline, absorb_seconds};
use crate::workload::keys::{KeyChooser, key_name};
use crate::workload::output::PhaseOutput;
use crate::workload::spec::{KeyDistribution, Mix, Phase, ReadConsistency};

/// What every worker of a phase shares: its schedule, its remaining op budget, and how it
/// chooses and sends operations.
struct Plan {
    /// Phase index, for the workers' random streams.
    index: usize,
    /// The generator's seed (see [`super::split::generator_seed`]).
    seed: u64,
    start: Instant,
    /// Closed loop: `duration` phases stop at this instant…
    end: Option<Instant>,
    /// …`ops` phases when this reaches zero.
    budget: Arc<AtomicU64>,
    /// Open loop: the intended starts, claimed by the workers.
    schedule: Option<Schedule>,
    /// Operations intended to start before this are warm-up.
    warmup_end: Instant,
    chooser: KeyChooser,
    mix: Mix,
    consistency: Consistency,
    timeout: Option<Duration>,
    /// The progress display's counters (`None` with `--quiet`).
    live: Option<Arc<Live>>,
    /// The phase's per-second histograms: each worker hands over its finished seconds.
    timeline: std::sync::Mutex<Timeline>,
}

impl Plan {
    /// Add a worker's finished seconds to the phase's timeline (a lock once a second per
    /// worker, not per operation).
    fn hand_over(&self, seconds: Timeline) {
        if !seconds.is_empty() {
            absorb_seconds(
                &mut self.timeline.lock().unwrap_or_else(|e| e.into_inner()),
                seconds,
            );
        }
    }

    /// Take one operation from the budget; `false` when it is spent.
    fn take_one(&self) -> bool {
        self.budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1))
            .is_ok()
    }
}

/// Run phase `index` (`p`): its load and, concurrently, its events (recorded in `log`).
pub(super) async fn run_phase(
    shared: &Arc<Shared>,
    cluster: &Arc<Mutex<Cluster>>,
    log: &mut EventLog,
    seed: u64,
    index: usize,
    p: &Phase,
    default_keys: &KeyDistribution,
) -> PhaseOutput {
    let start = Instant::now();
    let cpu_before = self_cpu_time();
    // Live figures only feed the progress display: with --quiet the workers skip them.
    let live = (!shared.quiet).then(|| Arc::new(Live::default()));
    let progress = live
        .clone()
        .map(|l| Progress::start(p, index, l, shared.progress_lines));
    let plan = Arc::new(Plan {
        index,
        seed,
        start,
        end: p.duration.map(|d| start + d.0),
        budget: Arc::new(AtomicU64::new(p.ops.unwrap_or(u64::MAX))),
        schedule: p
            .rate
            .map(|rate| Schedule::new(start, rate, p.duration.map(|d| start + d.0), p.ops)),
        warmup_end: start + p.warmup.map_or(Duration::ZERO, |w| w.0),
        chooser: KeyChooser::new(
            p.key_distribution.as_ref().unwrap_or(default_keys),
            shared.keys,
            shared.keys_shared.clone(),
        ),
        mix: p.mix.clone(),
        consistency: match p.read_consistency {
            ReadConsistency::Linearizable => Consistency::Linearizable,
            ReadConsistency::Local => Consistency::Local,
        },
        timeout: p.timeout.map(|t| t.0),
        live,
        timeline: std::sync::Mutex::default(),
    });
    let workers: Vec<_> = (0..p.concurrency)
        .map(|w| tokio::spawn(worker(shared.clone(), plan.clone(), w)))
        .collect();

    let pending = recovery::inject(shared.run_start, cluster, log, p, start).await;

    let mut rec = Recorder::default();
    let mut finished = start;
    for w in workers {
        if let Ok((r, last)) = w.await {
            rec.merge(&r);
            finished = finished.max(last);
        }
    }
    // A phase that finished its schedule early (a low rate) still lasts its duration, so
    // the next phase starts where this one's span ends.
    if let Some(d) = p.duration {
        tokio::time::sleep_until((start + d.0).into()).await;
    }
    rec.timeline = std::mem::take(&mut *plan.timeline.lock().unwrap_or_else(|e| e.into_inner()));
    // The load's own span: events still finishing after the last operation do not count.
    // A `duration` phase offered its load over all of its duration, even when its last
    // operation (at a low rate) ended well before it: its throughput is over the whole span.
    let elapsed = finished
        .duration_since(start)
        .max(p.duration.map_or(Duration::ZERO, |d| d.0));
    if let Some(progress) = progress {
        progress.finish();
    }
    let ops_done: u64 = rec
        .ops
        .values()
        .chain(rec.warmup.values())
        .map(|p| p.corrected.len())
        .sum();
    let generator_cpu_us_per_op =
        (self_cpu_time() - cpu_before).as_secs_f64() * 1e6 / ops_done.max(1) as f64;
    let rows = recovery::measured(&rec, pending).await;
    log.recovery.extend(rows);
    PhaseOutput {
        name: p.name.clone(),
        offset_s: start.duration_since(shared.run_start).as_secs_f64(),
        elapsed,
        warmup: p.warmup.map(|w| w.0),
        target_rate: p.rate,
        recorder: rec,
        generator_cpu_us_per_op,
        unsent: plan.schedule.as_ref().map_or(0, Schedule::unsent),
        raft_loop: None,
        server: None,
    }
}

/// Worker `w`: operations until the phase ends (in open loop: until the schedule is spent);
/// returns what it measured and when its last operation completed.
async fn worker(shared: Arc<Shared>, plan: Arc<Plan>, w: usize) -> (Recorder, Instant) {
    let mut rng = StdRng::seed_from_u64(plan.seed ^ ((plan.index as u64) << 32) ^ w as u64);
    let mut rec = Recorder::default();
    let mut last_done = plan.start;
    let mut sleeper = plan.schedule.as_ref().map(|_| Sleeper::new());
    // The timeline's seconds before this one have been handed to the plan.
    let mut flushed = 0;
    loop {
        let intended = match (&plan.schedule, &mut sleeper) {
            (Some(schedule), Some(sleeper)) => {
                let Some(t) = schedule.claim() else { break };
                sleeper.until(t).await;
                t
            }
            _ => {
                let now = Instant::now();
                if plan.end.is_some_and(|e| now >= e) || !plan.take_one() {
                    break;
                }
                now
            }
        };
        let op = choose_op(&plan.mix, &mut rng);
        let local = plan.chooser.next(&mut rng);
        // The key's name is made before the clock starts: service time is the request's.
        let key = local * shared.key_stride + shared.key_offset;
        let name = key_name(key, shared.key_size);
        let sent = Instant::now();
        let invoked_us = sent.duration_since(shared.run_start).as_micros() as u64;
        let target = Target {
            local,
            key,
            name: &name,
        };
        let outcome = send(&shared, &plan, op, target, invoked_us, &mut rng).await;
        let done = Instant::now();
        let corrected_us = done.duration_since(intended).as_micros() as u64;
        if let Some(live) = &plan.live {
            live.record(outcome, corrected_us);
        }
        rec.record(
            op,
            outcome,
            corrected_us,
            done.duration_since(sent).as_micros() as u64,
            invoked_us,
            done.duration_since(shared.run_start).as_micros() as u64,
            intended < plan.warmup_end,
        );
        last_done = done;
        let second = done.duration_since(shared.run_start).as_secs();
        if second > flushed {
            plan.hand_over(rec.take_seconds_before(second));
            flushed = second;
        }
    }
    plan.hand_over(std::mem::take(&mut rec.timeline));
    (rec, last_done)
}

/// The key an operation is on: this generator's `local` index, the cluster-wide `key` and
/// its name.
struct Target<'a> {
    local: u64,
    key: u64,
    name: &'a str,
}

/// Send one operation on `t`, sent at `invoked_us`. A write carries a fresh write id in its
/// first 8 bytes and, unless it certainly failed, goes into the verification model.
async fn send(
    shared: &Shared,
    plan: &Plan,
    op: Op,
    t: Target<'_>,
    invoked_us: u64,
    rng: &mut StdRng,
) -> Outcome {
    let Target { local, key, name } = t;
    if op == Op::Get {
        let r = with_timeout(plan.timeout, shared.client.get(name, plan.consistency)).await;
        return if r.is_ok() {
            Outcome::Ok
        } else {
            Outcome::Error
        };
    }
    let id = shared.next_write_id.fetch_add(1, Ordering::Relaxed);
    let r = if op == Op::Put {
        let mut v = shared.values.make(rng);
        if v.len() < 8 {
            v.resize(8, 0);
        }
        v[..8].copy_from_slice(&id.to_be_bytes());
        with_timeout(plan.timeout, shared.client.put(name, Bytes::from(v))).await
    } else {
        with_timeout(plan.timeout, shared.client.delete(name)).await
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

fn choose_op(mix: &Mix, rng: &mut StdRng) -> Op {
    let x: f64 = rng.random::<f64>() * mix.total();
    if x < mix.put {
        Op::Put
    } else if x < mix.put + mix.get {
        Op::Get
    } else {
        Op::Delete
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
