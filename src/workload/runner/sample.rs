//! Resource sampling during a run: every node's memory, disk, I/O and CPU once a second
//! (`resources.csv`), its own metrics at the same time (`server-metrics.csv`, see
//! [`super::scrape`]), and the load generator's own CPU time (per phase, in `run.json`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::cluster::{Cluster, ProcResources};
use crate::target::NodeStatus;
use crate::workload::output::{ResourceRow, ServerMetricsRow};

/// What the sampler collected: every node's samples, and the load generator's (this
/// process's) largest resident set size seen.
#[derive(Default)]
pub(super) struct Samples {
    pub rows: Vec<ResourceRow>,
    pub server: Vec<ServerMetricsRow>,
    pub generator_peak_rss_bytes: u64,
}

/// Sample every node's RSS, disk, I/O and CPU once a second until `stop` is set, and this
/// process's own RSS (a study runs several runs in one process, so its lifetime peak from
/// `getrusage` would not be this run's).
pub(super) async fn sample_resources(
    cluster: Arc<Mutex<Cluster>>,
    run_start: Instant,
    stop: Arc<AtomicBool>,
) -> Samples {
    let mut rows = Vec::new();
    let mut peak = 0;
    let mut cpu = CpuMeter::default();
    let mut server = super::scrape::Rows::default();
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    // After a slow round (a node taking its whole timeout), wait a full second again rather
    // than firing the missed ticks back to back: per-second growth needs second-long gaps.
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::Relaxed) {
        interval.tick().await;
        // When the round's queries go out, for every node alike: a node that answers late
        // must not move the others' rows.
        let t_s = (run_start.elapsed().as_secs_f64() * 1e3).round() / 1e3;
        peak = peak.max(generator_rss_bytes());
        // At once: a node that does not answer one query must not delay the other.
        let (sampled, scraped) = tokio::join!(sample_nodes(&cluster), scrape_nodes(&cluster));
        for (id, s) in scraped {
            server.push(t_s, id, s);
        }
        for (id, pid, r, status) in sampled {
            // The raft loop's and engine's figures are raftbench's (etcd has none of them).
            let status = status.as_ref().and_then(|s| s.raftbench.as_ref());
            let cpu_pct = pid.and_then(|pid| cpu.percent(id, pid));
            rows.push(ResourceRow {
                t_s,
                node: id,
                rss_bytes: r.rss_bytes,
                disk_bytes: r.disk_bytes,
                read_bytes: r.read_bytes,
                write_bytes: r.write_bytes,
                cpu_pct: cpu_pct.unwrap_or(0.0),
                raft_readies: status.map(|s| s.raft.readies),
                raft_busy_us: status.map(|s| s.raft.busy_us),
                raft_stall_us: status.map(|s| s.raft.recent_longest_turn_us),
                engine_flush_bytes: status.map(|s| s.storage.engine_flush_bytes),
                engine_compaction_bytes: status.map(|s| s.storage.engine_compaction_bytes),
            });
        }
    }
    Samples {
        rows,
        server: server.rows,
        generator_peak_rss_bytes: peak.max(generator_rss_bytes()),
    }
}

/// Every node's `/metrics` now, parsed: `None` for a node that is not running or did not
/// answer (or answered something unreadable, logged once per node). All are asked at
/// once, outside the cluster lock.
async fn scrape_nodes(cluster: &Mutex<Cluster>) -> Vec<(u64, Option<super::scrape::Scraped>)> {
    let (api, nodes) = {
        let c = cluster.lock().await;
        let nodes: Vec<(crate::cluster::Member, bool)> = c
            .nodes()
            .values()
            .map(|n| {
                (
                    n.clone(),
                    c.state(n.id) == crate::cluster::NodeState::Running,
                )
            })
            .collect();
        (c.shared_api(), nodes)
    };
    futures::future::join_all(nodes.iter().map(|(m, running)| {
        let api = api.clone();
        async move {
            if !running {
                return (m.id, None);
            }
            let text = api.metrics_text(m).await.ok();
            let parsed = text.map(|t| super::scrape::parse(&t));
            match parsed {
                Some(Ok(s)) => (m.id, Some(s)),
                Some(Err(e)) => {
                    tracing::debug!(node = m.id, "unreadable /metrics: {e}");
                    (m.id, None)
                }
                None => (m.id, None),
            }
        }
    }))
    .await
}

/// This process's resident set size now.
pub(super) fn generator_rss_bytes() -> u64 {
    crate::procinfo::rss_bytes(std::process::id())
}

/// One sample of every node that can be sampled: (id, pid of a local node, figures, its
/// status when it answered).
async fn sample_nodes(
    cluster: &Mutex<Cluster>,
) -> Vec<(u64, Option<u32>, ProcResources, Option<NodeStatus>)> {
    // Local nodes: /proc, read under the lock (fast). Every running node's status (an
    // attached node's resources too) is queried after releasing it, so a slow node cannot
    // hold up event injection.
    let mut local = Vec::new();
    let mut running = Vec::new();
    let attached;
    let api;
    {
        let c = cluster.lock().await;
        attached = c.attached().is_some();
        api = c.shared_api();
        for n in c.nodes().values() {
            if c.state(n.id) == crate::cluster::NodeState::Running {
                running.push(n.clone());
            }
            if !attached && let Ok(r) = c.resources(n.id) {
                local.push((n.id, c.pid(n.id), r));
            }
        }
    }
    // All at once: one paused or partitioned node (whose query times out) must not delay
    // the others' samples by its timeout.
    let answers = futures::future::join_all(running.iter().map(|m| {
        let api = api.clone();
        async move { (m.id, api.status(m).await) }
    }))
    .await;
    let mut statuses: HashMap<_, _> = answers
        .into_iter()
        .filter_map(|(id, r)| r.ok().map(|s| (id, s)))
        .collect();
    if attached {
        return statuses
            .into_values()
            .map(|s| (s.id, None, crate::cluster::reported_resources(&s), Some(s)))
            .collect();
    }
    local
        .into_iter()
        .map(|(id, pid, r)| (id, pid, r, statuses.remove(&id)))
        .collect()
}

/// Every running member's own WAL fsync and backend commit counters now (a phase's
/// server-side figures are their growth over it). Members that do not answer are left
/// out; all are asked at once, outside the cluster lock.
pub(super) async fn server_counters(
    cluster: &Mutex<Cluster>,
) -> std::collections::BTreeMap<u64, crate::target::server::ServerCounters> {
    let (api, running) = {
        let c = cluster.lock().await;
        let running: Vec<crate::cluster::Member> = c
            .nodes()
            .values()
            .filter(|n| c.state(n.id) == crate::cluster::NodeState::Running)
            .cloned()
            .collect();
        (c.shared_api(), running)
    };
    futures::future::join_all(running.iter().map(|m| {
        let api = api.clone();
        async move { (m.id, api.server_counters(m).await) }
    }))
    .await
    .into_iter()
    .filter_map(|(id, r)| r.ok().map(|c| (id, c)))
    .collect()
}

/// A node's CPU use as % of one core, from the growth of its CPU ticks between samples.
#[derive(Default)]
struct CpuMeter {
    /// Per node: ticks used and when, at the last sample.
    last: HashMap<u64, (u64, Instant)>,
}

impl CpuMeter {
    /// `None` at a node's first sample, or when its ticks cannot be read.
    fn percent(&mut self, id: u64, pid: u32) -> Option<f64> {
        let used = crate::procinfo::cpu_ticks(pid)?;
        let now = Instant::now();
        let pct = self.last.get(&id).map(|(u, t)| {
            used.saturating_sub(*u) as f64
                / crate::procinfo::CLOCK_TICKS_PER_SEC
                / now.duration_since(*t).as_secs_f64()
                * 100.0
        });
        self.last.insert(id, (used, now));
        pct
    }
}

/// CPU time (user + system) this process has used.
pub(super) fn self_cpu_time() -> Duration {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF);
    usage.map_or(Duration::ZERO, |u| {
        let t = |tv: nix::sys::time::TimeVal| {
            Duration::from_secs(tv.tv_sec() as u64) + Duration::from_micros(tv.tv_usec() as u64)
        };
        t(u.user_time()) + t(u.system_time())
    })
}
