//! Running against a live cluster (`run --cluster FILE`): what is checked before any load.
//!
//! raftbench controls such a cluster only through the cluster file's control commands and
//! measures it only through the nodes' HTTP API, so a workload that needs anything else is
//! refused before it starts, and so is a cluster that does not answer or has no leader.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use super::RunError;
use crate::cluster::Cluster;
use crate::wire::{BackendConfig, ClusterNode, LiveCluster};
use crate::workload::Workload;
use crate::workload::spec::{Action, CacheState, Target};

/// Attach to the cluster `path` describes (control log in `log_dir`) once it is healthy
/// (see [`check_live`]); returns it, the backend it runs, and what `run.json` records of it.
pub(super) async fn attach(
    path: &Path,
    log_dir: &Path,
) -> Result<(Cluster, BackendConfig, LiveCluster), RunError> {
    let cluster = Cluster::attach(path, log_dir)?.into_dyn();
    check_live(&cluster).await?;
    // Its nodes with their control commands, less what the file marks sensitive.
    let file = cluster.cluster_file();
    let live = LiveCluster {
        cluster_file: path.to_path_buf(),
        nodes: file.nodes,
    };
    Ok((cluster, file.backend, live))
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
        let mut leaders = BTreeMap::new();
        let mut bad = Vec::new();
        for n in c.nodes().values() {
            match c.node_status(n.id).await {
                Ok(s) => {
                    leaders.insert(n.id, s.leader_id);
                }
                Err(e) => bad.push(format!("node {} at {}: {e}", n.id, n.client_addr)),
            }
        }
        if !bad.is_empty() {
            return Err(RunError::Invalid(format!(
                "{file}: nodes do not answer {}: {}",
                if c.kind().is_peer() {
                    "etcd's Maintenance.Status"
                } else {
                    "GET /status"
                },
                bad.join("; ")
            )));
        }
        let distinct: BTreeSet<u64> = leaders.values().copied().collect();
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
    let file = crate::remote::nodes::load_controlled(path)?;
    for p in &w.file.phases {
        let p = p.get_ref();
        for ev in &p.events {
            let e = ev.get_ref();
            if let Some(why) = crate::target::refusal(file.backend.kind, e.action) {
                return Err(RunError::Invalid(format!(
                    "{}: phase {:?}: the cluster of {} runs {}, which cannot: {why}",
                    w.locate(ev.span().start),
                    p.name,
                    path.display(),
                    file.backend.kind
                )));
            }
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
            if matches!(
                e.action,
                Action::TornWrite | Action::DiskSlow | Action::DiskFail | Action::DiskHeal
            ) {
                return Err(RunError::Invalid(format!(
                    "{}: phase {:?}: `{}` needs the node's data on raftbench's fault file \
                     system, which only a cluster raftbench starts has; against {} only \
                     `power-loss` is possible, through a `power_loss` control command",
                    w.locate(ev.span().start),
                    p.name,
                    e.action.name(),
                    path.display()
                )));
            }
            let which = match e.action {
                Action::PowerLoss => "power_loss",
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
            let targets: Vec<&ClusterNode> = match e.target {
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
                        w.locate(ev.span().start),
                        p.name,
                        e.action.name(),
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
