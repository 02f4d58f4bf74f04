//! Executing workload events against a local cluster, and timing the recovery they cause.
//!
//! Processes are acted on through the cluster's [`crate::cluster::NodeControl`]; admin
//! actions (partition, snapshot, membership, leader transfer) through its target's
//! [`crate::target::TargetApi`]. Recovery is measured from the outside, as a client would
//! see it: by polling nodes' status every 10 ms. Leader loss: `leader_elected_ms` (until a surviving majority agrees
//! on a new leader). Restart: `process_up_ms` (until the node answers), `replay_ms` (as the
//! node reports it) and `caught_up_ms` (until its applied index reaches the leader's commit
//! at restart). Snapshot: its duration and size as the node reports them. Write resumption
//! and latency over the window are computed afterwards from the recorded operations.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::spec::{Action, CacheState, DiskError, Event, Target};
use crate::cluster::{Cluster, DiskFault};

/// A line of `events.csv`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventRow {
    /// Milliseconds since the run started.
    pub t_ms: u64,
    pub phase: String,
    pub action: String,
    pub node: String,
    pub detail: String,
}

/// A line of `recovery.csv`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecoveryRow {
    /// Index of the event in `events.csv`.
    pub event: usize,
    pub action: String,
    pub node: u64,
    pub metric: String,
    pub ms: f64,
}

/// Nodes taken down (killed, stopped, powered off) or paused and not yet brought back.
#[derive(Debug, Default)]
pub struct Faults {
    pub down: BTreeSet<u64>,
    pub paused: BTreeSet<u64>,
    /// Seeds the torn write-back of `torn-write` events (the workload's seed).
    pub seed: u64,
    /// `torn-write` events so far: each gets its own seed.
    pub torn: u64,
    /// Nodes with a network fault injected (partition, link-slow) and not healed since.
    /// A node is registered *before* its fault is injected (as roachprod registers a
    /// fault with its recovery first), so that a fault whose call failed halfway is still
    /// healed when the run ends ([`heal_all`]).
    pub links: BTreeSet<u64>,
}

/// Heal every node with a registered network fault (see [`Faults::links`]); what could
/// not be healed, one line per node. Called when a run ends, whatever its phases did, so
/// that a live cluster is never left partitioned.
pub async fn heal_all(cluster: &Arc<Mutex<Cluster>>, faults: &mut Faults) -> Vec<String> {
    let c = cluster.lock().await;
    let mut failed = Vec::new();
    for id in std::mem::take(&mut faults.links) {
        if !c.is_running(id) {
            continue; // its transport, and its faults, went with the process
        }
        if c.is_paused(id) {
            failed.push(format!(
                "node {id}: paused, so its network faults stay until it is resumed and healed"
            ));
            continue;
        }
        let r = match c.node(id) {
            Ok(m) => c.api().heal(m).await,
            Err(e) => Err(e),
        };
        if let Err(e) = r {
            failed.push(format!("node {id}: {e}"));
        }
    }
    failed
}

const POLL: Duration = Duration::from_millis(10);
const RECOVERY_LIMIT: Duration = Duration::from_secs(60);

/// What an executed event needs measured afterwards.
pub enum Followup {
    None,
    /// A leader went away at `at`: time the election.
    LeaderLost {
        old: u64,
        at: Instant,
    },
    /// Nodes restarted at `at`, to catch up to `commit` (the leader's then; `None` when
    /// there was no leader, as after a whole-cluster power cut: then the first leader
    /// elected afterwards gives it); `cache_resident` = (node, bytes of its data directory
    /// still in the page cache after a cold restart's eviction).
    Restarted {
        ids: Vec<u64>,
        at: Instant,
        commit: Option<u64>,
        cache_resident: Vec<(u64, u64)>,
    },
    /// A node was added at `at`: time its catch-up.
    Added {
        id: u64,
        at: Instant,
        commit: u64,
    },
    /// Snapshots were taken: (node, duration ms, bytes) as the nodes reported them.
    Snapshots(Vec<(u64, f64, u64)>),
    /// Power was cut: what each disk lost (node, bytes dropped, directory changes undone),
    /// and the leader, if it was among them.
    PowerCut {
        lost: Vec<(u64, crate::cluster::PowerCut)>,
        leader: Option<(u64, Instant)>,
    },
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The first leader agreed on within the recovery limit from `at`, and its last index
/// (which includes the entry a new leader appends in its term, so it is at least what was
/// committed before).
async fn wait_for_any_leader(cluster: &Arc<Mutex<Cluster>>, at: Instant) -> Option<(u64, u64)> {
    while at.elapsed() < RECOVERY_LIMIT {
        let c = cluster.lock().await;
        if let Some(l) = c.leader().await
            && let Ok(s) = c.node_status(l).await
        {
            return Some((l, s.last_index));
        }
        drop(c);
        tokio::time::sleep(POLL).await;
    }
    None
}

/// Time from `at` until a leader other than `old` is agreed on (no row if none is within
/// the recovery limit).
async fn time_election(
    cluster: &Arc<Mutex<Cluster>>,
    old: u64,
    at: Instant,
) -> Option<(u64, &'static str, f64)> {
    while at.elapsed() < RECOVERY_LIMIT {
        let l = cluster.lock().await.leader().await;
        if let Some(l) = l.filter(|l| *l != old) {
            return Some((l, "leader_elected_ms", ms(at.elapsed())));
        }
        tokio::time::sleep(POLL).await;
    }
    None
}

async fn resolve(c: &Cluster, faults: &Faults, target: Target) -> Result<Vec<u64>, String> {
    let live: Vec<u64> = c
        .nodes()
        .values()
        .filter(|n| c.state(n.id) == crate::cluster::NodeState::Running)
        .map(|n| n.id)
        .collect();
    // Only leader/follower targets need a leader; waiting otherwise would delay the very
    // restart or resume that restores quorum.
    let leader = || async {
        c.wait_for_leader(Duration::from_secs(15))
            .await
            .map_err(|e| e.to_string())
    };
    Ok(match target {
        Target::Leader => vec![leader().await?],
        Target::Follower => {
            let l = leader().await?;
            vec![*live.iter().find(|id| **id != l).ok_or("no live follower")?]
        }
        Target::Node(n) => vec![n],
        Target::Killed => faults.down.iter().copied().collect(),
        Target::All => c.nodes().keys().copied().collect(),
    })
}

/// The data directory of node `id`, which must be down for a cold restart (pages written
/// by a live process after the eviction would stay resident).
fn down_data_dir(c: &Cluster, id: u64) -> Result<std::path::PathBuf, String> {
    let node = c.node(id).map_err(|e| e.to_string())?;
    if c.is_running(id) {
        return Err("still running: a cold restart needs the node down".into());
    }
    Ok(node.data_dir.clone())
}

/// Write back and evict a data directory from the page cache, on a blocking thread: a
/// large directory's fdatasync and residency scans take a while.
async fn evict_dir(dir: std::path::PathBuf) -> crate::pagecache::Eviction {
    let shown = dir.display().to_string();
    let ev = tokio::task::spawn_blocking(move || crate::pagecache::evict(&dir))
        .await
        .unwrap_or_else(|e| crate::pagecache::Eviction {
            errors: vec![format!("eviction task failed: {e}")],
            ..Default::default()
        });
    tracing::info!(dir = %shown, %ev, "evicted data directory from the page cache");
    ev
}

/// What [`execute`] did.
pub struct Executed {
    /// Nodes acted on, space-separated.
    pub nodes: String,
    pub detail: String,
    /// When the action itself started (after the target was resolved).
    pub at: Instant,
    pub follow: Followup,
}

/// Run one event.
pub async fn execute(cluster: &Arc<Mutex<Cluster>>, faults: &mut Faults, ev: &Event) -> Executed {
    // A cold restart first evicts the nodes' data from the page cache. That can take
    // seconds on a large directory, so it runs without the cluster lock: the resource
    // sampler and earlier events' recovery timers go on meanwhile. Events of a phase run
    // one after another, so nothing starts these nodes in between.
    let mut evicted = Vec::new();
    let mut cache_resident = Vec::new();
    if ev.action == Action::Restart && ev.cache == CacheState::Cold {
        let dirs: Vec<(u64, Result<std::path::PathBuf, String>)> = {
            let c = cluster.lock().await;
            match resolve(&c, faults, ev.target).await {
                Ok(ids) => ids.iter().map(|id| (*id, down_data_dir(&c, *id))).collect(),
                // Reported below, when the target is resolved again.
                Err(_) => Vec::new(),
            }
        };
        for (id, dir) in dirs {
            match dir {
                Ok(dir) => {
                    let ev = evict_dir(dir).await;
                    cache_resident.push((id, ev.resident_after));
                    evicted.push(format!("node {id}: {ev}"));
                }
                Err(e) => evicted.push(format!("node {id}: not evicted: {e}")),
            }
        }
    }
    let mut c = cluster.lock().await;
    let ids = match resolve(&c, faults, ev.target).await {
        Ok(ids) => ids,
        Err(e) => {
            return Executed {
                nodes: "-".into(),
                detail: format!("target not resolved: {e}"),
                at: Instant::now(),
                follow: Followup::None,
            };
        }
    };
    let node_list = ids.iter().map(u64::to_string).collect::<Vec<_>>().join(" ");
    // A leader target was just resolved by waiting for the leader: asking again could
    // find none for a moment (a slow /status) and lose the leader-loss follow-up.
    let old_leader = match ev.target {
        Target::Leader => ids.first().copied(),
        _ => c.leader().await,
    };
    let mut now = Instant::now();
    let mut details = Vec::new();
    let mut follow = Followup::None;
    match ev.action {
        Action::Kill | Action::Stop => {
            for id in &ids {
                let r = if ev.action == Action::Kill {
                    c.kill(*id)
                } else {
                    c.stop(*id)
                };
                match r {
                    Ok(()) => {
                        faults.down.insert(*id);
                    }
                    Err(e) => details.push(e.to_string()),
                }
            }
            // The fault took effect when the process was gone: a control command (ssh,
            // a service manager) can take a while, and the node served until then.
            now = Instant::now();
            if let Some(l) = old_leader.filter(|l| ids.contains(l)) {
                follow = Followup::LeaderLost { old: l, at: now };
            }
        }
        Action::Pause => {
            for id in &ids {
                match c.pause(*id) {
                    Ok(()) => {
                        faults.paused.insert(*id);
                    }
                    Err(e) => details.push(e.to_string()),
                }
            }
            now = Instant::now();
            if let Some(l) = old_leader.filter(|l| ids.contains(l)) {
                follow = Followup::LeaderLost { old: l, at: now };
            }
        }
        Action::Resume => {
            let targets: Vec<u64> = match ev.target {
                Target::Node(_) => ids.clone(),
                _ => faults.paused.iter().copied().collect(),
            };
            for id in targets {
                if let Err(e) = c.resume(id) {
                    details.push(e.to_string());
                }
                faults.paused.remove(&id);
            }
        }
        Action::Restart => {
            // Read after any eviction: the target is what was committed when the node
            // starts, and recovery is timed from then (`now`), not from the eviction.
            let commit = match old_leader {
                Some(l) => c.node_status(l).await.ok().map(|s| s.commit_index),
                None => None,
            };
            details.append(&mut evicted);
            now = Instant::now();
            let mut started = Vec::new();
            for id in &ids {
                // Starting a node on a fault disk mounts it first: seconds, not microseconds.
                match blocking(|| c.spawn(*id)) {
                    Ok(()) => {
                        faults.down.remove(id);
                        started.push(*id);
                    }
                    Err(e) => details.push(e.to_string()),
                }
            }
            follow = Followup::Restarted {
                ids: started,
                at: now,
                commit,
                cache_resident,
            };
        }
        Action::Partition => {
            let direction = ev.direction.unwrap_or_default();
            faults.links.extend(ids.iter().copied());
            for id in &ids {
                let others: Vec<u64> = c.nodes().keys().copied().filter(|o| o != id).collect();
                let r = match c.node(*id) {
                    Ok(m) => c.api().partition(m, &others, direction).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = r {
                    details.push(format!("partition: {e}"));
                }
            }
            if let Some(l) = old_leader.filter(|l| ids.contains(l)) {
                follow = Followup::LeaderLost { old: l, at: now };
            }
        }
        Action::LinkSlow => {
            // Both ways: the target delays what it sends, and every other node what it
            // sends to the target.
            let link = |peers: Vec<u64>| crate::wire::LinkRequest {
                peers,
                delay_ms: ev.delay.map_or(0, |d| d.0.as_millis() as u64),
                jitter_ms: ev.jitter.map_or(0, |d| d.0.as_millis() as u64),
                loss: ev.loss.unwrap_or(0.0),
            };
            for id in &ids {
                let others: Vec<u64> = c.nodes().keys().copied().filter(|o| o != id).collect();
                let mut calls = vec![(*id, link(others.clone()))];
                calls.extend(others.iter().map(|o| (*o, link(vec![*id]))));
                faults.links.extend(calls.iter().map(|(on, _)| *on));
                for (on, req) in calls {
                    if !c.is_running(on) || c.is_paused(on) {
                        continue;
                    }
                    let r = match c.node(on) {
                        Ok(m) => c.api().degrade(m, &req).await,
                        Err(e) => Err(e),
                    };
                    if let Err(e) = r {
                        details.push(format!("link-slow on node {on}: {e}"));
                    }
                }
            }
        }
        Action::Heal => {
            // A paused node would never answer: skip it and say so.
            for n in c.nodes().values().filter(|n| c.is_running(n.id)) {
                if c.is_paused(n.id) {
                    details.push(format!("node {} is paused: not healed", n.id));
                    continue;
                }
                match c.api().heal(n).await {
                    Ok(()) => {
                        faults.links.remove(&n.id);
                    }
                    Err(e) => details.push(format!("heal: {e}")),
                }
            }
        }
        Action::Snapshot | Action::Compact => {
            let mut taken = Vec::new();
            for id in &ids {
                if c.is_paused(*id) || !c.is_running(*id) {
                    details.push(format!("node {id} is down or paused: no snapshot"));
                    continue;
                }
                let r = match c.node(*id) {
                    Ok(m) => c.api().snapshot(m).await,
                    Err(e) => Err(e),
                };
                match r {
                    Ok(t) => {
                        taken.push((*id, t.duration_ms, t.bytes));
                        details.push(format!(
                            "node {id}: snapshot at {} of {} bytes in {:.1} ms",
                            t.index, t.bytes, t.duration_ms
                        ));
                    }
                    Err(e) => details.push(e.to_string()),
                }
            }
            follow = Followup::Snapshots(taken);
        }
        Action::AddNode => {
            let commit = match old_leader {
                Some(l) => c.node_status(l).await.map(|s| s.commit_index).unwrap_or(0),
                None => 0,
            };
            match c.add_node().await {
                Ok(id) => {
                    follow = Followup::Added {
                        id,
                        at: now,
                        commit,
                    }
                }
                Err(e) => details.push(e.to_string()),
            }
        }
        Action::RemoveNode => {
            for id in &ids {
                if let Err(e) = c.remove_member(*id).await {
                    details.push(e.to_string());
                }
            }
        }
        Action::PowerLoss | Action::TornWrite => {
            let torn = (ev.action == Action::TornWrite).then(|| {
                faults.torn += 1;
                faults
                    .seed
                    .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    .wrapping_add(faults.torn)
            });
            // Whether the nodes left running after the cut still form a quorum.
            let left = c
                .nodes()
                .keys()
                .filter(|id| c.is_running(**id) && !ids.contains(id));
            let quorum_left = 2 * left.count() > c.nodes().len();
            // The cut takes effect when the first disk freezes, not once every process is
            // reaped and every disk unmounted.
            now = Instant::now();
            let outcomes = match blocking(|| c.power_cut(&ids, torn)) {
                Ok(o) => o,
                Err(e) => {
                    details.push(format!("FAILED: {e}"));
                    Vec::new()
                }
            };
            // Whatever the cuts reported, the processes are gone (or an error says why).
            for id in &ids {
                if !c.is_running(*id) {
                    faults.down.insert(*id);
                }
            }
            let mut lost = Vec::new();
            for (id, outcome) in outcomes {
                match outcome {
                    Ok(cut) => {
                        if let (Some(b), Some(m)) = (cut.dropped_bytes, cut.undone_metadata_ops) {
                            details.push(format!(
                                "node {id}: {b} unsynced bytes and {m} directory changes lost"
                            ));
                        }
                        lost.push((id, cut));
                    }
                    Err(e) => details.push(format!(
                        "node {id}: power cut FAILED ({e}); it was killed with its unsynced \
                         writes kept, as by kill -9"
                    )),
                }
            }
            // Without a quorum left, no election can happen before a restart: the restart
            // times it then.
            follow = Followup::PowerCut {
                lost,
                leader: old_leader
                    .filter(|l| ids.contains(l) && quorum_left)
                    .map(|l| (l, now)),
            };
        }
        Action::DiskSlow | Action::DiskFail | Action::DiskHeal => {
            let fault = disk_fault(ev);
            for id in &ids {
                match blocking(|| c.disk_fault(*id, &fault)) {
                    Ok(d) => details.push(format!("node {id}: {d}")),
                    Err(e) => details.push(e.to_string()),
                }
            }
            now = Instant::now();
        }
        Action::TransferLeader => {
            if let (Some(l), Some(to)) = (old_leader, ids.first()) {
                let r = match (c.node(l), c.node(*to)) {
                    (Ok(from), Ok(to)) => c.api().transfer_leader(from, to).await,
                    (Err(e), _) | (_, Err(e)) => Err(e),
                };
                if let Err(e) = r {
                    details.push(format!("transfer-leader: {e}"));
                }
                follow = Followup::LeaderLost { old: l, at: now };
            }
        }
    }
    Executed {
        nodes: node_list,
        detail: details.join("; "),
        at: now,
        follow,
    }
}

/// Run `f`, which blocks (process control, mounts), without stalling the other tasks of
/// the runtime's worker: the load's workers go on. (Tasks that need the cluster lock the
/// caller holds, the sampler and recovery timers, wait for it as for any event.)
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// The disk fault a `disk-*` event injects.
fn disk_fault(ev: &Event) -> DiskFault {
    match (ev.action, ev.error) {
        (Action::DiskSlow, _) => DiskFault::Slow {
            latency: ev.latency.map_or(Duration::ZERO, |l| l.0),
            duration: ev.duration.map(|d| d.0),
            writes: ev.writes,
            files: ev.files.clone(),
        },
        (Action::DiskFail, Some(DiskError::Enospc)) => DiskFault::Full,
        (Action::DiskFail, _) => DiskFault::FailFsyncs {
            count: ev.count.unwrap_or(1),
        },
        _ => DiskFault::Heal,
    }
}

/// Measure what `follow` calls for; returns (node, metric, ms) rows.
pub async fn measure(
    cluster: &Arc<Mutex<Cluster>>,
    follow: Followup,
) -> Vec<(u64, &'static str, f64)> {
    let mut rows = Vec::new();
    match follow {
        Followup::None => {}
        Followup::Snapshots(taken) => {
            for (id, duration_ms, bytes) in taken {
                rows.push((id, "snapshot_ms", duration_ms));
                rows.push((id, "snapshot_bytes", bytes as f64));
            }
        }
        Followup::LeaderLost { old, at } => rows.extend(time_election(cluster, old, at).await),
        Followup::PowerCut { lost, leader } => {
            for (id, cut) in lost {
                if let Some(b) = cut.dropped_bytes {
                    rows.push((id, "unsynced_dropped_bytes", b as f64));
                }
                if let Some(m) = cut.undone_metadata_ops {
                    rows.push((id, "metadata_ops_undone", m as f64));
                }
            }
            if let Some((old, at)) = leader {
                rows.extend(time_election(cluster, old, at).await);
            }
        }
        Followup::Restarted {
            ids,
            at,
            commit,
            cache_resident,
        } => {
            for (id, bytes) in cache_resident {
                rows.push((id, "cache_resident_bytes", bytes as f64));
            }
            // Each node's own start first: when it answers, and what its open cost.
            let mut up = Vec::new();
            for id in ids {
                while at.elapsed() < RECOVERY_LIMIT {
                    if let Ok(s) = cluster.lock().await.node_status(id).await {
                        rows.push((id, "process_up_ms", ms(at.elapsed())));
                        // What a raftbench node reports of its own start (etcd does not).
                        if let Some(r) = &s.raftbench {
                            rows.push((id, "replay_ms", r.startup.replay_ms));
                            rows.push((id, "open_ms", r.startup.open_ms));
                            // What recovery cut off a torn WAL tail (after a power cut).
                            let torn = r.startup.torn_bytes_truncated as f64;
                            rows.push((id, "torn_bytes_truncated", torn));
                        }
                        up.push(id);
                        break;
                    }
                    tokio::time::sleep(POLL).await;
                }
            }
            // No leader when they restarted (a whole-cluster cut): the election is part of
            // their recovery, and what the new leader holds (its own first entry included,
            // so at least everything committed before the cut) is what they must reach.
            let commit = match commit {
                Some(c) => Some(c),
                None => wait_for_any_leader(cluster, at).await.map(|(l, last)| {
                    rows.push((l, "leader_elected_ms", ms(at.elapsed())));
                    last
                }),
            };
            for id in up.into_iter().filter(|_| commit.is_some()) {
                let commit = commit.unwrap_or_default();
                while at.elapsed() < RECOVERY_LIMIT {
                    if let Ok(s) = cluster.lock().await.node_status(id).await
                        && s.applied_index >= commit
                    {
                        rows.push((id, "caught_up_ms", ms(at.elapsed())));
                        break;
                    }
                    tokio::time::sleep(POLL).await;
                }
            }
        }
        Followup::Added { id, at, commit } => {
            while at.elapsed() < RECOVERY_LIMIT {
                if let Ok(s) = cluster.lock().await.node_status(id).await
                    && s.applied_index >= commit.max(1)
                {
                    rows.push((id, "caught_up_ms", ms(at.elapsed())));
                    break;
                }
                tokio::time::sleep(POLL).await;
            }
        }
    }
    rows
}
