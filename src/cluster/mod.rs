//! Clusters the harness drives: nodes it started on this machine, or a live cluster
//! someone else runs.
//!
//! - [`Cluster`] knows each node's addresses and directories and talks to the nodes only
//!   through their HTTP API (status, leader, membership), exactly as it would to a cluster
//!   on other hosts;
//! - [`NodeControl`] acts on their processes: [`Processes`] for nodes raftbench started
//!   (real `SIGKILL`s, real restarts on the data directory), [`Commands`] for an attached
//!   cluster (its cluster file's control commands);
//! - [`up`]: `raftbench cluster up`.
//!
//! Layout of a local cluster directory: `cluster.toml` (the cluster file), `node-<id>/`
//! (each node's data), `node-<id>.pid` and `logs/node-<id>.log` (each node's stderr,
//! appended across restarts).

mod commands;
mod control;
mod disks;
mod ports;
mod processes;
pub mod up;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use thiserror::Error;

pub use commands::Commands;
pub use control::{CutOutcome, DiskFault, NodeControl, NodeState, PowerCut};
pub use disks::FaultDisks;
pub use ports::free_addr;
pub use processes::Processes;

use crate::client::http_client_with;
use crate::procinfo;
use crate::target::{NodeStatus, TargetApi};
use crate::wire::{
    BackendConfig, ClusterFile, ClusterNode, ClusterSecret, RaftSettings, Role, SECRET_FILE_NAME,
    StatusReport,
};

/// Why a cluster operation failed.
#[derive(Debug, Error)]
pub enum ClusterError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("node {0} is not part of this cluster")]
    UnknownNode(u64),
    #[error("node {id}: {message}")]
    Node { id: u64, message: String },
    #[error("no leader after {0:?}")]
    NoLeader(Duration),
    #[error(transparent)]
    ClusterFile(#[from] crate::wire::ClusterFileError),
    #[error("{0}")]
    Invalid(String),
}

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClusterError {
    let what = what.into();
    move |source| ClusterError::Io { what, source }
}

/// What to start.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Number of initial nodes (ids 1..=nodes).
    pub nodes: u64,
    /// Backend settings (its `dir` is ignored: each node gets its own).
    pub backend: BackendConfig,
    pub raft: RaftSettings,
    /// Cluster directory (created; must not already hold a cluster).
    pub dir: PathBuf,
    /// The `raftbench` executable to run nodes with.
    pub binary: PathBuf,
    /// Put each node's data directory on the fault file system, with this treatment of
    /// directory changes (`None`: plain directories).
    pub fault_disks: Option<crate::faultfs::MetadataMode>,
    /// Extra `raftbench node` flags for every node (e.g. `--admin-auth always`).
    pub node_args: Vec<String>,
}

/// One node of a cluster: where it is. Whether it runs is its controller's business
/// ([`Cluster::state`]).
#[derive(Debug, Clone)]
pub struct Member {
    pub id: u64,
    pub peer_addr: String,
    pub client_addr: String,
    /// The node's directory (empty when an attached cluster's file does not say).
    pub data_dir: PathBuf,
    /// Where the node's (or its control commands') output goes.
    pub log_path: PathBuf,
    /// Added later, rather than an initial member.
    pub join: bool,
    /// The flags a member added later starts with, as its membership change said
    /// (raftbench: `--join`; etcd: the membership it joins).
    pub join_args: Vec<String>,
}

/// Per-process resource figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProcResources {
    pub rss_bytes: u64,
    /// Bytes the process read from / wrote to storage (`/proc/<pid>/io`).
    pub read_bytes: u64,
    pub write_bytes: u64,
    /// Size of the node's data directory.
    pub disk_bytes: u64,
}

/// A cluster and the controller of its nodes' processes. `Cluster<Processes>` is one
/// raftbench started (dropping it kills every node); `Cluster<Commands>` one it attached
/// to; code that drives either takes the default, `Cluster` (a boxed controller).
pub struct Cluster<C: NodeControl = Box<dyn NodeControl>> {
    spec: ClusterSpec,
    nodes: BTreeMap<u64, Member>,
    /// Sends the cluster secret (if any) as the bearer token of every request.
    http: reqwest::Client,
    control: C,
    /// The cluster's secret, and the file it is in (named in cluster files written for it).
    secret: Option<(ClusterSecret, PathBuf)>,
    /// The control plane of what the nodes run (raftbench nodes, or etcd members).
    api: std::sync::Arc<dyn TargetApi>,
}

impl NodeControl for Box<dyn NodeControl> {
    fn start(&mut self, node: &Member) -> Result<(), ClusterError> {
        (**self).start(node)
    }
    fn stop(&mut self, node: &Member) -> Result<(), ClusterError> {
        (**self).stop(node)
    }
    fn kill(&mut self, node: &Member) -> Result<(), ClusterError> {
        (**self).kill(node)
    }
    fn pause(&mut self, node: &Member) -> Result<(), ClusterError> {
        (**self).pause(node)
    }
    fn resume(&mut self, node: &Member) -> Result<(), ClusterError> {
        (**self).resume(node)
    }
    fn restart(&mut self, node: &Member) -> Result<(), ClusterError> {
        (**self).restart(node)
    }
    fn state(&self, id: u64) -> NodeState {
        (**self).state(id)
    }
    fn pid(&self, id: u64) -> Option<u32> {
        (**self).pid(id)
    }
    fn reap(&mut self) {
        (**self).reap()
    }
    fn shutdown(&mut self, nodes: &[&Member]) {
        (**self).shutdown(nodes)
    }
    fn cannot_add_nodes(&self) -> Option<String> {
        (**self).cannot_add_nodes()
    }
    fn attached(&self) -> Option<&Path> {
        (**self).attached()
    }
    fn commands(&self, id: u64) -> crate::wire::ControlCommands {
        (**self).commands(id)
    }
    fn power_cut(
        &mut self,
        nodes: &[&Member],
        torn: Option<u64>,
    ) -> Result<Vec<(u64, CutOutcome)>, ClusterError> {
        (**self).power_cut(nodes, torn)
    }
    fn disk_fault(&mut self, node: &Member, fault: &DiskFault) -> Result<String, ClusterError> {
        (**self).disk_fault(node, fault)
    }
    fn disk_layer(&self) -> Option<crate::wire::DiskLayer> {
        (**self).disk_layer()
    }
}

impl Cluster<Processes> {
    /// Create the cluster directory, write the cluster file and start every node. Does not
    /// wait for a leader (see [`Self::wait_for_leader`]).
    pub fn start(mut spec: ClusterSpec) -> Result<Cluster<Processes>, ClusterError> {
        // Absolute: the cluster file and its control commands are used from other
        // working directories.
        spec.dir = std::path::absolute(&spec.dir)
            .map_err(io(format!("resolving {}", spec.dir.display())))?;
        if spec.nodes == 0 {
            return Err(ClusterError::Invalid(
                "a cluster needs at least one node".into(),
            ));
        }
        let file = spec.dir.join("cluster.toml");
        if file.exists() {
            return Err(ClusterError::Invalid(format!(
                "{} already holds a cluster (cluster.toml exists); use a fresh directory",
                spec.dir.display()
            )));
        }
        std::fs::create_dir_all(spec.dir.join("logs"))
            .map_err(io(format!("creating {}", spec.dir.display())))?;
        if spec.backend.kind.is_peer() {
            return Self::start_etcd(spec, &file);
        }
        // Every cluster raftbench starts has a secret: its peers authenticate each other
        // and its admin calls carry it. One already in the directory (the user's, or a
        // failed start's) is used.
        let secret_path = spec.dir.join(SECRET_FILE_NAME);
        let secret = if secret_path.exists() {
            ClusterSecret::load(&secret_path)
        } else {
            let s = ClusterSecret::generate();
            s.save_new(&secret_path).map(|()| s)
        }
        .map_err(|e| ClusterError::Invalid(e.to_string()))?;
        let mut control =
            Processes::new(&spec.binary, &spec.dir, &file).with_node_args(spec.node_args.clone());
        if let Some(metadata) = spec.fault_disks {
            control = control.with_fault_disks(FaultDisks::new(&spec.binary, &spec.dir, metadata)?);
        }
        let http = http_client_with(Some(&secret));
        let mut cluster = Cluster {
            nodes: BTreeMap::new(),
            api: crate::target::api_for(spec.backend.kind, http.clone()),
            http,
            control,
            spec,
            secret: Some((secret, secret_path)),
        };
        cluster.add_founders()?;
        cluster.save_and_spawn(&file)?;
        Ok(cluster)
    }

    /// Entries, with fresh ports, for the founding members 1..=nodes.
    fn add_founders(&mut self) -> Result<(), ClusterError> {
        for id in 1..=self.spec.nodes {
            self.add_entry(id, false)?;
        }
        Ok(())
    }

    /// Write the cluster file, then start every member.
    fn save_and_spawn(&mut self, file: &Path) -> Result<(), ClusterError> {
        self.cluster_file().save(file)?;
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            self.spawn(id)?;
        }
        Ok(())
    }

    /// Start an etcd cluster: members from the `etcd` binary, on free loopback ports, with
    /// the spec's raft settings translated ([`crate::target::etcd::launch`]).
    fn start_etcd(spec: ClusterSpec, file: &Path) -> Result<Cluster<Processes>, ClusterError> {
        if spec.fault_disks.is_some() {
            return Err(ClusterError::Invalid(
                "etcd members cannot run on raftbench's fault file system".into(),
            ));
        }
        let binary = crate::target::etcd::launch::resolve_binary(&spec.backend.etcd.binary)
            .map_err(|e| ClusterError::Invalid(e.to_string()))?;
        let http = crate::client::http_client();
        let mut cluster = Cluster {
            nodes: BTreeMap::new(),
            api: crate::target::api_for(spec.backend.kind, http.clone()),
            http,
            // Replaced below: the members' command lines need every founder's address,
            // which the entries pick. Nothing is started before.
            control: Processes::new(&binary, &spec.dir, file),
            spec,
            secret: None,
        };
        cluster.add_founders()?;
        let initial_cluster = cluster
            .nodes
            .values()
            .map(|n| {
                format!(
                    "{}=http://{}",
                    crate::target::etcd::launch::member_name(n.id),
                    n.peer_addr
                )
            })
            .collect::<Vec<_>>()
            .join(",");
        let launch = crate::target::etcd::launch::EtcdLaunch {
            binary,
            initial_cluster,
            token: format!("raftbench-{:016x}", rand::random::<u64>()),
            raft: cluster.spec.raft.clone(),
            options: cluster.spec.backend.etcd.clone(),
        };
        cluster.control = Processes::etcd(launch, &cluster.spec.dir);
        cluster.save_and_spawn(file)?;
        Ok(cluster)
    }

    /// The cluster file with control commands for every node (see
    /// [`Processes::controlled_cluster_file`]).
    pub fn controlled_cluster_file(&self) -> ClusterFile {
        self.control
            .controlled_cluster_file(self.cluster_file(), &self.nodes)
    }

    /// Stop node processes that a `start` control command relaunched (see
    /// [`Processes::stop_relaunched`]).
    pub fn stop_relaunched(&mut self) {
        self.control.stop_relaunched(&self.nodes);
    }
}

impl Cluster<Commands> {
    /// Attach to the cluster a cluster file describes (started by someone else, possibly on
    /// other hosts). Nothing is started or checked here; `log_dir` receives
    /// `control.log`, the output of every control command run.
    pub fn attach(path: &Path, log_dir: &Path) -> Result<Cluster<Commands>, ClusterError> {
        // Nodes on hosts are controlled through their hosts' transports.
        let file = crate::remote::nodes::load_controlled(path)?;
        let secret = file
            .secret(path)
            .map_err(|e| ClusterError::Invalid(e.to_string()))?
            .zip(file.secret_path(path));
        if file.nodes.is_empty() {
            return Err(ClusterError::Invalid(format!(
                "{}: lists no [[node]]",
                path.display()
            )));
        }
        std::fs::create_dir_all(log_dir).map_err(io(format!("creating {}", log_dir.display())))?;
        let nodes = file
            .nodes
            .iter()
            .map(|n| {
                let m = Member {
                    id: n.id,
                    peer_addr: n.peer_addr.clone(),
                    client_addr: n.client_addr.clone(),
                    data_dir: n.data_dir.clone().unwrap_or_default(),
                    log_path: log_dir.join("control.log"),
                    join: false,
                    join_args: Vec::new(),
                };
                (n.id, m)
            })
            .collect::<BTreeMap<u64, Member>>();
        let http = http_client_with(secret.as_ref().map(|s| &s.0));
        let api = crate::target::api_for(file.backend.kind, http.clone());
        for m in nodes.values() {
            api.know(m);
        }
        Ok(Cluster {
            api,
            spec: ClusterSpec {
                nodes: file.nodes.len() as u64,
                backend: file.backend.clone(),
                raft: file.raft.clone(),
                dir: log_dir.to_path_buf(),
                binary: PathBuf::new(),
                fault_disks: None,
                node_args: Vec::new(),
            },
            nodes,
            http,
            secret,
            control: Commands::new(path, file.nodes.iter().map(|n| (n.id, n.control.clone())))
                .redacting(file.redact.clone()),
        })
    }
}

impl<C: NodeControl + 'static> Cluster<C> {
    /// The same cluster behind a boxed controller, so that one code path drives local and
    /// attached clusters alike.
    pub fn into_dyn(self) -> Cluster {
        Cluster {
            spec: self.spec,
            nodes: self.nodes,
            http: self.http,
            control: Box::new(self.control),
            secret: self.secret,
            api: self.api,
        }
    }
}

impl<C: NodeControl> Cluster<C> {
    /// Add a node entry with fresh ports; it starts with [`Cluster::spawn`].
    fn add_entry(&mut self, id: u64, join: bool) -> Result<(), ClusterError> {
        let mut taken: BTreeSet<u16> = self
            .nodes
            .values()
            .flat_map(|n| [ports::port_of(&n.peer_addr), ports::port_of(&n.client_addr)])
            .flatten()
            .collect();
        let peer_addr = free_addr(&taken)?;
        taken.extend(ports::port_of(&peer_addr));
        let client_addr = free_addr(&taken)?;
        let node = Member {
            id,
            peer_addr,
            client_addr,
            data_dir: self.spec.dir.join(format!("node-{id}")),
            log_path: self.spec.dir.join("logs").join(format!("node-{id}.log")),
            join,
            join_args: Vec::new(),
        };
        self.api.know(&node);
        self.nodes.insert(id, node);
        Ok(())
    }

    /// Add a new node to the cluster (local clusters only) and return its id: started
    /// empty and then added as a voter (raftbench), or added and then started with the
    /// membership it joins (etcd), as the target needs.
    pub async fn add_node(&mut self) -> Result<u64, ClusterError> {
        if let Some(why) = self.control.cannot_add_nodes() {
            return Err(ClusterError::Invalid(why));
        }
        let id = self.nodes.keys().max().copied().unwrap_or(0) + 1;
        self.add_entry(id, true)?;
        let mut member = false;
        let joined = self.join(id, &mut member).await;
        if joined.is_err() && !member {
            // Not a member: no entry, and no process, so that quorum counts and the next
            // id are as before. (A member whose process failed to start stays, down.)
            if self.control.state(id) != NodeState::Down {
                let _ = self.kill(id);
            }
            self.nodes.remove(&id);
        }
        joined.map(|()| id)
    }

    /// Start node `id` (an entry already) and make it a member, in the order the target
    /// needs; `member` is set once the membership change is done.
    async fn join(&mut self, id: u64, member: &mut bool) -> Result<(), ClusterError> {
        let leader = self.wait_for_leader(Duration::from_secs(10)).await?;
        let (leader, new) = (self.node(leader)?.clone(), self.node(id)?.clone());
        match self.api.start_empty_args() {
            // Started empty: it waits until the leader adds it.
            Some(args) => {
                self.set_join_args(id, args);
                self.spawn(id)?;
                self.api.add_member(&leader, &new).await?;
                *member = true;
            }
            // Told the membership it joins, so started after the change.
            None => {
                let args = self.api.add_member(&leader, &new).await?;
                *member = true;
                self.set_join_args(id, args);
                self.spawn(id)?;
            }
        }
        Ok(())
    }

    fn set_join_args(&mut self, id: u64, args: Vec<String>) {
        if let Some(n) = self.nodes.get_mut(&id) {
            n.join_args = args;
        }
    }

    /// The control plane of what the nodes run.
    pub fn api(&self) -> &dyn TargetApi {
        self.api.as_ref()
    }

    /// The same, to use without holding the cluster (a slow node must not hold up others).
    pub fn shared_api(&self) -> std::sync::Arc<dyn TargetApi> {
        self.api.clone()
    }

    /// What the nodes run.
    pub fn kind(&self) -> crate::wire::BackendKind {
        self.spec.backend.kind
    }

    /// The cluster file of an attached cluster (`None` for a cluster raftbench started).
    pub fn attached(&self) -> Option<&Path> {
        self.control.attached()
    }

    /// Where the cluster file is.
    pub fn cluster_file_path(&self) -> PathBuf {
        self.spec.dir.join("cluster.toml")
    }

    /// The cluster file describing the initial members (for an attached cluster: with the
    /// control commands it was attached with).
    pub fn cluster_file(&self) -> ClusterFile {
        ClusterFile {
            secret_file: self.secret.as_ref().map(|s| s.1.clone()),
            raft: self.spec.raft.clone(),
            backend: self.spec.backend.with_dir(""),
            nodes: self
                .nodes
                .values()
                .filter(|n| !n.join)
                .map(|n| ClusterNode {
                    id: n.id,
                    peer_addr: n.peer_addr.clone(),
                    client_addr: n.client_addr.clone(),
                    data_dir: (!n.data_dir.as_os_str().is_empty()).then(|| n.data_dir.clone()),
                    host: None,
                    control: self.control.commands(n.id),
                })
                .collect(),
            redact: Vec::new(),
            hosts: Vec::new(),
            generators: Vec::new(),
        }
    }

    /// The HTTP client for the nodes' APIs: it carries the cluster secret as its bearer
    /// token, as admin calls on non-loopback nodes need.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The cluster's secret file, if it has one.
    pub fn secret_path(&self) -> Option<&Path> {
        self.secret.as_ref().map(|s| s.1.as_path())
    }

    /// The nodes, by id.
    pub fn nodes(&self) -> &BTreeMap<u64, Member> {
        &self.nodes
    }

    /// One node.
    pub fn node(&self, id: u64) -> Result<&Member, ClusterError> {
        self.nodes.get(&id).ok_or(ClusterError::UnknownNode(id))
    }

    /// `http://<client addr>` of node `id`.
    pub fn url(&self, id: u64) -> Result<String, ClusterError> {
        Ok(format!("http://{}", self.node(id)?.client_addr))
    }

    /// What the controller knows of node `id`'s process.
    pub fn state(&self, id: u64) -> NodeState {
        self.control.state(id)
    }

    /// Whether node `id`'s process is running (possibly paused).
    pub fn is_running(&self, id: u64) -> bool {
        self.state(id) != NodeState::Down
    }

    /// Whether node `id` is frozen.
    pub fn is_paused(&self, id: u64) -> bool {
        self.state(id) == NodeState::Paused
    }

    /// OS process id of node `id`, while it runs on this machine.
    pub fn pid(&self, id: u64) -> Option<u32> {
        self.control.pid(id)
    }

    fn with_node<T>(
        &mut self,
        id: u64,
        act: impl FnOnce(&mut C, &Member) -> Result<T, ClusterError>,
    ) -> Result<T, ClusterError> {
        let node = self.nodes.get(&id).ok_or(ClusterError::UnknownNode(id))?;
        act(&mut self.control, node)
    }

    /// Start (or restart) node `id`'s process on its data directory.
    pub fn spawn(&mut self, id: u64) -> Result<(), ClusterError> {
        self.with_node(id, |c, n| c.start(n))
    }

    /// Kill node `id` (SIGKILL): nothing is flushed, as in a crash.
    pub fn kill(&mut self, id: u64) -> Result<(), ClusterError> {
        self.with_node(id, |c, n| c.kill(n))
    }

    /// Stop node `id` gracefully (SIGTERM) and wait for it.
    pub fn stop(&mut self, id: u64) -> Result<(), ClusterError> {
        self.with_node(id, |c, n| c.stop(n))
    }

    /// Freeze node `id` (SIGSTOP): it keeps its sockets but stops answering, like a hung
    /// process.
    pub fn pause(&mut self, id: u64) -> Result<(), ClusterError> {
        self.with_node(id, |c, n| c.pause(n))
    }

    /// Unfreeze a paused node (SIGCONT).
    pub fn resume(&mut self, id: u64) -> Result<(), ClusterError> {
        self.with_node(id, |c, n| c.resume(n))
    }

    /// Cut the power of nodes `ids` together (see [`NodeControl::power_cut`]).
    pub fn power_cut(
        &mut self,
        ids: &[u64],
        torn: Option<u64>,
    ) -> Result<Vec<(u64, CutOutcome)>, ClusterError> {
        let nodes = ids
            .iter()
            .map(|id| self.nodes.get(id).ok_or(ClusterError::UnknownNode(*id)))
            .collect::<Result<Vec<&Member>, _>>()?;
        self.control.power_cut(&nodes, torn)
    }

    /// Inject `fault` into node `id`'s disk.
    pub fn disk_fault(&mut self, id: u64, fault: &DiskFault) -> Result<String, ClusterError> {
        self.with_node(id, |c, n| c.disk_fault(n, fault))
    }

    /// What the nodes' data is stored on, when not plain directories.
    pub fn disk_layer(&self) -> Option<crate::wire::DiskLayer> {
        self.control.disk_layer()
    }

    /// Notice node processes that exited (killed from outside, e.g. by a control command)
    /// and reap them, so that they are not left as zombies.
    pub fn reap(&mut self) {
        self.control.reap();
    }

    /// Stop every node raftbench started (SIGTERM, SIGKILL after 10 s). An attached
    /// cluster is left running.
    pub fn shutdown(&mut self) {
        let nodes: Vec<&Member> = self.nodes.values().collect();
        self.control.shutdown(&nodes);
    }

    /// Node `id`'s status, as its target reports it (raftbench: `GET /status`; etcd:
    /// Maintenance.Status).
    pub async fn node_status(&self, id: u64) -> Result<NodeStatus, ClusterError> {
        self.api.status(self.node(id)?).await
    }

    /// A raftbench node's whole `GET /status` (an etcd member has none: use
    /// [`Self::node_status`]).
    pub async fn status(&self, id: u64) -> Result<StatusReport, ClusterError> {
        fetch_status(&self.http, &self.url(id)?, id).await
    }

    /// The leader that a majority of the running, unpaused nodes agree on, if any.
    pub async fn leader(&self) -> Option<u64> {
        let live: Vec<u64> = self
            .nodes
            .values()
            .filter(|n| self.state(n.id) == NodeState::Running)
            .map(|n| n.id)
            .collect();
        let statuses: Vec<NodeStatus> =
            futures::future::join_all(live.iter().map(|id| self.node_status(*id)))
                .await
                .into_iter()
                .flatten()
                .collect();
        let leader = statuses
            .iter()
            .filter(|s| s.role == Role::Leader)
            .max_by_key(|s| s.term)?;
        let voters = &leader.voters;
        let agree = statuses
            .iter()
            .filter(|s| s.leader_id == leader.id && s.term == leader.term)
            .filter(|s| voters.contains(&s.id))
            .count();
        (agree > voters.len() / 2).then_some(leader.id)
    }

    /// Wait until [`Self::leader`] names a leader.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<u64, ClusterError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(id) = self.leader().await {
                return Ok(id);
            }
            if Instant::now() >= deadline {
                return Err(ClusterError::NoLeader(timeout));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Ask the leader to remove node `id` from the membership.
    pub async fn remove_member(&self, id: u64) -> Result<(), ClusterError> {
        let leader = self.wait_for_leader(Duration::from_secs(10)).await?;
        self.api.remove_member(self.node(leader)?, id).await
    }

    /// RSS and I/O of node `id`'s process (zeros when it is not running here) and its data
    /// directory's size.
    pub fn resources(&self, id: u64) -> Result<ProcResources, ClusterError> {
        let node = self.node(id)?;
        let mut r = ProcResources {
            disk_bytes: procinfo::dir_size(&node.data_dir),
            ..Default::default()
        };
        if let Some(pid) = self.pid(id) {
            r.rss_bytes = procinfo::rss_bytes(pid);
            (r.read_bytes, r.write_bytes) = procinfo::io_bytes(pid);
        }
        Ok(r)
    }

    /// The cluster directory.
    pub fn dir(&self) -> &Path {
        &self.spec.dir
    }
}

/// `GET {url}/status` of node `id` (2 s timeout).
pub async fn fetch_status(
    http: &reqwest::Client,
    url: &str,
    id: u64,
) -> Result<StatusReport, ClusterError> {
    let node_err = |e: reqwest::Error| ClusterError::Node {
        id,
        message: format!("GET /status: {e}"),
    };
    let resp = http
        .get(format!("{url}/status"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .map_err(node_err)?;
    resp.json().await.map_err(node_err)
}

/// RSS and data size as a node reports them — the only view of a node on another host
/// (no storage I/O counters there; etcd reports its db size and no RSS).
pub fn reported_resources(s: &NodeStatus) -> ProcResources {
    ProcResources {
        rss_bytes: s.rss_bytes.unwrap_or(0),
        disk_bytes: s.disk_bytes.unwrap_or(0),
        ..Default::default()
    }
}

/// `s` quoted for `sh`.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}
