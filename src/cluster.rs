//! Local clusters: `raftbench node` processes on free 127.0.0.1 ports.
//!
//! Used by `raftbench cluster up`, by the tests and by the workload runner. Nodes are real
//! OS processes, so a kill is a real `SIGKILL` and a restart really reopens the data
//! directory. The launcher only talks to nodes through their HTTP API and signals, exactly
//! as it would to a cluster on other hosts.
//!
//! Layout of a cluster directory: `cluster.toml` (the cluster file), `node-<id>/` (each
//! node's data) and `logs/node-<id>.log` (each node's stderr, appended across restarts).

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::Serialize;
use thiserror::Error;
use tracing::{debug, info};

use crate::node::status::{Role, StatusReport, rss_of};
use crate::node::{ClusterFile, ClusterNode, RaftSettings};
use crate::storage::BackendConfig;

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
    #[error("{0}")]
    Invalid(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClusterError {
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
}

/// One node process of a local cluster.
#[derive(Debug)]
pub struct LocalNode {
    pub id: u64,
    pub peer_addr: String,
    pub client_addr: String,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    join: bool,
    child: Option<Child>,
    paused: bool,
}

impl LocalNode {
    /// OS process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is running (possibly paused).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Whether the process is stopped with SIGSTOP.
    pub fn is_paused(&self) -> bool {
        self.paused
    }
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

/// A running local cluster. Dropping it kills every node.
pub struct LocalCluster {
    spec: ClusterSpec,
    nodes: BTreeMap<u64, LocalNode>,
    http: reqwest::Client,
}

/// A free TCP port on 127.0.0.1 for a node to listen on.
///
/// The port is checked by binding and released, so a node started right after gets it —
/// unless someone else takes it first. Ports are therefore drawn at random *below* the
/// kernel's ephemeral range: outgoing connections (every HTTP client, every peer link) take
/// ephemeral ports, and a port from `bind(:0)` could be handed to one of them before the
/// node binds it.
pub fn free_addr() -> Result<String, ClusterError> {
    use rand::Rng;
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    if low > 11_000 {
        let mut rng = rand::rng();
        for _ in 0..100 {
            let port = rng.random_range(10_000..low);
            if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
                drop(l);
                return Ok(format!("127.0.0.1:{port}"));
            }
        }
    }
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(io("finding a free port"))?;
    let addr = l.local_addr().map_err(io("finding a free port"))?;
    Ok(addr.to_string())
}

impl LocalCluster {
    /// Create the cluster directory, write the cluster file and start every node. Does not
    /// wait for a leader (see [`Self::wait_for_leader`]).
    pub fn start(spec: ClusterSpec) -> Result<LocalCluster, ClusterError> {
        if spec.nodes == 0 {
            return Err(ClusterError::Invalid(
                "a cluster needs at least one node".into(),
            ));
        }
        if spec.dir.join("cluster.toml").exists() {
            return Err(ClusterError::Invalid(format!(
                "{} already holds a cluster (cluster.toml exists); use a fresh directory",
                spec.dir.display()
            )));
        }
        std::fs::create_dir_all(spec.dir.join("logs"))
            .map_err(io(format!("creating {}", spec.dir.display())))?;
        let mut cluster = LocalCluster {
            nodes: BTreeMap::new(),
            http: http_client(),
            spec,
        };
        for id in 1..=cluster.spec.nodes {
            cluster.add_node_entry(id, false)?;
        }
        cluster
            .cluster_file()
            .save(&cluster.cluster_file_path())
            .map_err(io("writing the cluster file"))?;
        let ids: Vec<u64> = cluster.nodes.keys().copied().collect();
        for id in ids {
            cluster.spawn(id)?;
        }
        Ok(cluster)
    }

    fn add_node_entry(&mut self, id: u64, join: bool) -> Result<(), ClusterError> {
        let node = LocalNode {
            id,
            peer_addr: free_addr()?,
            client_addr: free_addr()?,
            data_dir: self.spec.dir.join(format!("node-{id}")),
            log_path: self.spec.dir.join("logs").join(format!("node-{id}.log")),
            join,
            child: None,
            paused: false,
        };
        self.nodes.insert(id, node);
        Ok(())
    }

    /// Where the cluster file is.
    pub fn cluster_file_path(&self) -> PathBuf {
        self.spec.dir.join("cluster.toml")
    }

    /// The cluster file describing the initial members.
    pub fn cluster_file(&self) -> ClusterFile {
        ClusterFile {
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
                    data_dir: Some(n.data_dir.clone()),
                })
                .collect(),
        }
    }

    /// The nodes, by id.
    pub fn nodes(&self) -> &BTreeMap<u64, LocalNode> {
        &self.nodes
    }

    /// One node.
    pub fn node(&self, id: u64) -> Result<&LocalNode, ClusterError> {
        self.nodes.get(&id).ok_or(ClusterError::UnknownNode(id))
    }

    /// `http://<client addr>` of node `id`.
    pub fn url(&self, id: u64) -> Result<String, ClusterError> {
        Ok(format!("http://{}", self.node(id)?.client_addr))
    }

    /// Start (or restart) node `id`'s process on its data directory.
    pub fn spawn(&mut self, id: u64) -> Result<(), ClusterError> {
        let cluster_file = self.cluster_file_path();
        let binary = self.spec.binary.clone();
        let node = self
            .nodes
            .get_mut(&id)
            .ok_or(ClusterError::UnknownNode(id))?;
        if node.child.is_some() {
            return Err(ClusterError::Node {
                id,
                message: "already running".into(),
            });
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log_path)
            .map_err(io(format!("opening {}", node.log_path.display())))?;
        let mut cmd = Command::new(&binary);
        cmd.arg("node")
            .args(["--id", &id.to_string()])
            .arg("--cluster-file")
            .arg(&cluster_file)
            .args(["--peer-addr", &node.peer_addr])
            .args(["--client-addr", &node.client_addr])
            .arg("--data-dir")
            .arg(&node.data_dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(io("log file"))?)
            .stderr(log);
        if node.join {
            cmd.arg("--join");
        }
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info,raft=warn");
        }
        let child = cmd
            .spawn()
            .map_err(io(format!("starting {}", binary.display())))?;
        debug!(id, pid = child.id(), "node process started");
        node.child = Some(child);
        node.paused = false;
        Ok(())
    }

    fn signal(&mut self, id: u64, sig: Signal) -> Result<(), ClusterError> {
        let node = self
            .nodes
            .get_mut(&id)
            .ok_or(ClusterError::UnknownNode(id))?;
        let child = node.child.as_ref().ok_or_else(|| ClusterError::Node {
            id,
            message: "not running".into(),
        })?;
        kill(Pid::from_raw(child.id() as i32), sig).map_err(|e| ClusterError::Node {
            id,
            message: format!("sending {sig}: {e}"),
        })
    }

    /// SIGKILL node `id` and reap it: nothing is flushed, as in a crash.
    pub fn kill(&mut self, id: u64) -> Result<(), ClusterError> {
        self.signal(id, Signal::SIGKILL)?;
        let node = self.nodes.get_mut(&id).expect("checked");
        if let Some(mut child) = node.child.take() {
            let _ = child.wait();
        }
        node.paused = false;
        info!(id, "node killed");
        Ok(())
    }

    /// SIGTERM node `id` (graceful stop) and wait for it; SIGKILL after 10 s.
    pub fn stop(&mut self, id: u64) -> Result<(), ClusterError> {
        if self.node(id)?.paused {
            self.resume(id)?;
        }
        self.signal(id, Signal::SIGTERM)?;
        let node = self.nodes.get_mut(&id).expect("checked");
        let mut child = node.child.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
            }
        }
        info!(id, "node stopped");
        Ok(())
    }

    /// SIGSTOP node `id`: it keeps its sockets but stops answering, like a hung process.
    pub fn pause(&mut self, id: u64) -> Result<(), ClusterError> {
        self.signal(id, Signal::SIGSTOP)?;
        self.nodes.get_mut(&id).expect("checked").paused = true;
        Ok(())
    }

    /// SIGCONT a paused node.
    pub fn resume(&mut self, id: u64) -> Result<(), ClusterError> {
        self.signal(id, Signal::SIGCONT)?;
        self.nodes.get_mut(&id).expect("checked").paused = false;
        Ok(())
    }

    /// Start a new, empty node with `--join` and return its id. Add it to the membership
    /// with `POST /members/{id}` on the leader (see [`Self::add_member`]).
    pub fn spawn_joining_node(&mut self) -> Result<u64, ClusterError> {
        let id = self.nodes.keys().max().copied().unwrap_or(0) + 1;
        self.add_node_entry(id, true)?;
        self.spawn(id)?;
        Ok(id)
    }

    /// `GET /status` of node `id`.
    pub async fn status(&self, id: u64) -> Result<StatusReport, ClusterError> {
        let url = format!("{}/status", self.url(id)?);
        let node_err = |e: reqwest::Error| ClusterError::Node {
            id,
            message: format!("GET /status: {e}"),
        };
        let resp = self
            .http
            .get(&url)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .map_err(node_err)?;
        resp.json().await.map_err(node_err)
    }

    /// The leader that a majority of the running, unpaused nodes agree on, if any.
    pub async fn leader(&self) -> Option<u64> {
        let live: Vec<u64> = self
            .nodes
            .values()
            .filter(|n| n.is_running() && !n.paused)
            .map(|n| n.id)
            .collect();
        let mut statuses = Vec::new();
        for id in &live {
            if let Ok(s) = self.status(*id).await {
                statuses.push(s);
            }
        }
        let leader = statuses
            .iter()
            .filter(|s| s.raft.role == Role::Leader)
            .max_by_key(|s| s.raft.term)?;
        let voters = &leader.raft.voters;
        let agree = statuses
            .iter()
            .filter(|s| s.raft.leader_id == leader.id && s.raft.term == leader.raft.term)
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

    /// Ask the leader to add node `id` (already started with `--join`) as a voter.
    pub async fn add_member(&self, id: u64) -> Result<(), ClusterError> {
        let node = self.node(id)?;
        let body = serde_json::json!({
            "peer_addr": node.peer_addr,
            "client_addr": node.client_addr,
        });
        self.admin_on_leader(reqwest::Method::POST, &format!("/members/{id}"), Some(body))
            .await
    }

    /// Ask the leader to remove node `id` from the membership.
    pub async fn remove_member(&self, id: u64) -> Result<(), ClusterError> {
        self.admin_on_leader(reqwest::Method::DELETE, &format!("/members/{id}"), None)
            .await
    }

    async fn admin_on_leader(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(), ClusterError> {
        let leader = self.wait_for_leader(Duration::from_secs(10)).await?;
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url(leader)?))
            .timeout(Duration::from_secs(15));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| ClusterError::Node {
            id: leader,
            message: format!("{path}: {e}"),
        })?;
        if resp.status().is_success() {
            Ok(())
        } else {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            Err(ClusterError::Node {
                id: leader,
                message: format!("{path}: {status}: {text}"),
            })
        }
    }

    /// RSS and I/O of node `id`'s process (zeros when it is not running) and its data
    /// directory's size.
    pub fn resources(&self, id: u64) -> Result<ProcResources, ClusterError> {
        let node = self.node(id)?;
        let mut r = ProcResources {
            disk_bytes: crate::storage::datadir::dir_size(&node.data_dir),
            ..Default::default()
        };
        if let Some(pid) = node.pid() {
            r.rss_bytes = rss_of(&pid.to_string());
            if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/io")) {
                for line in text.lines() {
                    let mut parts = line.split(':');
                    let (Some(k), Some(v)) = (parts.next(), parts.next()) else {
                        continue;
                    };
                    let v: u64 = v.trim().parse().unwrap_or(0);
                    match k {
                        "read_bytes" => r.read_bytes = v,
                        "write_bytes" => r.write_bytes = v,
                        _ => {}
                    }
                }
            }
        }
        Ok(r)
    }

    /// Stop every node gracefully (SIGTERM).
    pub fn shutdown(&mut self) {
        let ids: Vec<u64> = self
            .nodes
            .values()
            .filter(|n| n.is_running())
            .map(|n| n.id)
            .collect();
        for id in ids {
            let _ = self.stop(id);
        }
    }

    /// The cluster directory.
    pub fn dir(&self) -> &Path {
        &self.spec.dir
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for node in self.nodes.values_mut() {
            if let Some(mut child) = node.child.take() {
                if node.paused {
                    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGCONT);
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// The HTTP client the launcher uses for status and admin calls.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(64)
        .build()
        .expect("HTTP client")
}
