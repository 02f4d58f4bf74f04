//! Local clusters: `raftbench node` processes on free 127.0.0.1 ports.
//!
//! Used by `raftbench cluster up`, by the tests and by the workload runner. Nodes are real
//! OS processes, so a kill is a real `SIGKILL` and a restart really reopens the data
//! directory. The launcher only talks to nodes through their HTTP API and signals, exactly
//! as it would to a cluster on other hosts.
//!
//! Layout of a cluster directory: `cluster.toml` (the cluster file), `node-<id>/` (each
//! node's data), `node-<id>.pid` and `logs/node-<id>.log` (each node's stderr, appended
//! across restarts).
//!
//! The same type also drives a cluster someone else started ([`LocalCluster::attach`]):
//! its nodes are reached through the cluster file's addresses and killed, stopped, paused
//! or restarted only through the file's control commands.

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

use crate::client::http_client;
use crate::procinfo;
use crate::wire::{
    BackendConfig, ClusterFile, ClusterNode, ControlCommands, RaftSettings, Role, StatusReport,
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
    /// For a node of an attached cluster: its control commands, and whether it is up as
    /// far as those commands have told us.
    control: Option<ControlCommands>,
    up: bool,
}

impl LocalNode {
    /// OS process id, while running (local nodes only).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is running (possibly paused).
    pub fn is_running(&self) -> bool {
        self.child.is_some() || (self.control.is_some() && self.up)
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

/// A running local cluster (dropping it kills every node), or a cluster someone else
/// runs, attached through its cluster file ([`LocalCluster::attach`]): its nodes are
/// controlled by the file's commands and never stopped by raftbench on its own.
pub struct LocalCluster {
    spec: ClusterSpec,
    nodes: BTreeMap<u64, LocalNode>,
    http: reqwest::Client,
    /// The cluster file of an attached cluster.
    attached: Option<PathBuf>,
}

/// A free TCP port on 127.0.0.1 for a node to listen on.
///
/// The port is checked by binding and released, so a node started right after gets it —
/// unless someone else takes it first. Ports are therefore drawn at random *below* the
/// kernel's ephemeral range: outgoing connections (every HTTP client, every peer link) take
/// ephemeral ports, and a port from `bind(:0)` could be handed to one of them before the
/// node binds it. Ports in `taken` (those already given to this cluster's nodes, which
/// may not have bound them yet) are never returned.
pub fn free_addr(taken: &std::collections::BTreeSet<u16>) -> Result<String, ClusterError> {
    use rand::Rng;
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    if low > 11_000 {
        let mut rng = rand::rng();
        for _ in 0..100 {
            let port = rng.random_range(10_000..low);
            if taken.contains(&port) {
                continue;
            }
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
    pub fn start(mut spec: ClusterSpec) -> Result<LocalCluster, ClusterError> {
        // Absolute: the cluster file and its control commands are used from other
        // working directories.
        spec.dir = std::path::absolute(&spec.dir)
            .map_err(io(format!("resolving {}", spec.dir.display())))?;
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
            attached: None,
        };
        for id in 1..=cluster.spec.nodes {
            cluster.add_node_entry(id, false)?;
        }
        cluster.cluster_file().save(&cluster.cluster_file_path())?;
        let ids: Vec<u64> = cluster.nodes.keys().copied().collect();
        for id in ids {
            cluster.spawn(id)?;
        }
        Ok(cluster)
    }

    fn add_node_entry(&mut self, id: u64, join: bool) -> Result<(), ClusterError> {
        let port = |a: &str| a.rsplit(':').next()?.parse::<u16>().ok();
        let mut taken: std::collections::BTreeSet<u16> = self
            .nodes
            .values()
            .flat_map(|n| [port(&n.peer_addr), port(&n.client_addr)])
            .flatten()
            .collect();
        let peer_addr = free_addr(&taken)?;
        taken.extend(port(&peer_addr));
        let client_addr = free_addr(&taken)?;
        let node = LocalNode {
            id,
            peer_addr,
            client_addr,
            data_dir: self.spec.dir.join(format!("node-{id}")),
            log_path: self.spec.dir.join("logs").join(format!("node-{id}.log")),
            join,
            child: None,
            paused: false,
            control: None,
            up: false,
        };
        self.nodes.insert(id, node);
        Ok(())
    }

    /// Attach to the cluster a cluster file describes (started by someone else, possibly on
    /// other hosts). Nothing is started or checked here; `log_dir` receives
    /// `control.log`, the output of every control command run.
    pub fn attach(path: &Path, log_dir: &Path) -> Result<LocalCluster, ClusterError> {
        let file = ClusterFile::load(path)?;
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
                (
                    n.id,
                    LocalNode {
                        id: n.id,
                        peer_addr: n.peer_addr.clone(),
                        client_addr: n.client_addr.clone(),
                        data_dir: n.data_dir.clone().unwrap_or_default(),
                        log_path: log_dir.join("control.log"),
                        join: false,
                        child: None,
                        paused: false,
                        control: Some(n.control.clone()),
                        up: true,
                    },
                )
            })
            .collect();
        Ok(LocalCluster {
            spec: ClusterSpec {
                nodes: file.nodes.len() as u64,
                backend: file.backend.clone(),
                raft: file.raft.clone(),
                dir: log_dir.to_path_buf(),
                binary: PathBuf::new(),
            },
            nodes,
            http: http_client(),
            attached: Some(path.to_path_buf()),
        })
    }

    /// The cluster file of an attached cluster (`None` for a cluster raftbench started).
    pub fn attached(&self) -> Option<&Path> {
        self.attached.as_deref()
    }

    /// Run a control command that starts (`up`) or takes down a node, and record it.
    fn control_and_mark(&mut self, id: u64, which: &str, up: bool) -> Result<(), ClusterError> {
        let node = self.node(id)?;
        if node.up == up {
            return Err(ClusterError::Node {
                id,
                message: if up {
                    "already running".into()
                } else {
                    "already down".into()
                },
            });
        }
        // A frozen process cannot act on a stop signal: unfreeze it first.
        if !up && node.paused && node.control.as_ref().is_some_and(|c| c.resume.is_some()) {
            self.control(id, "resume")?;
        }
        self.control(id, which)?;
        let node = self.nodes.get_mut(&id).expect("checked by control");
        node.up = up;
        node.paused = false;
        Ok(())
    }

    /// Run node `id`'s `which` control command (attached clusters), waiting up to two
    /// minutes for it; its output is appended to `control.log`.
    fn control(&mut self, id: u64, which: &str) -> Result<(), ClusterError> {
        let file = self.attached.clone().unwrap_or_default();
        let node = self
            .nodes
            .get_mut(&id)
            .ok_or(ClusterError::UnknownNode(id))?;
        let cmd = node
            .control
            .as_ref()
            .and_then(|c| c.get(which))
            .ok_or_else(|| {
                ClusterError::Invalid(format!(
                    "node {id} has no `{which}` control command in {}",
                    file.display()
                ))
            })?
            .to_string();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log_path)
            .map_err(io(format!("opening {}", node.log_path.display())))?;
        use std::io::Write as _;
        let _ = writeln!(&log, "# node {id} {which}: {cmd}");
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .env("RAFTBENCH_NODE_ID", id.to_string())
            .env("RAFTBENCH_CLIENT_ADDR", &node.client_addr)
            .env("RAFTBENCH_PEER_ADDR", &node.peer_addr)
            .env("RAFTBENCH_DATA_DIR", &node.data_dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(io("control log"))?)
            .stderr(log)
            .spawn()
            .map_err(io(format!("running node {id}'s `{which}` command")))?;
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(ClusterError::Node {
                        id,
                        message: format!("`{which}` command `{cmd}` did not finish in 120 s"),
                    });
                }
            }
        };
        if !status.success() {
            return Err(ClusterError::Node {
                id,
                message: format!(
                    "`{which}` command `{cmd}` failed ({status}); its output is in {}",
                    node.log_path.display()
                ),
            });
        }
        info!(id, which, "control command ran");
        Ok(())
    }

    /// Where the cluster file is.
    pub fn cluster_file_path(&self) -> PathBuf {
        self.spec.dir.join("cluster.toml")
    }

    /// The cluster file describing the initial members (for an attached cluster: the file
    /// it was attached with, control commands included).
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
                    data_dir: (!n.data_dir.as_os_str().is_empty()).then(|| n.data_dir.clone()),
                    control: n.control.clone().unwrap_or_default(),
                })
                .collect(),
        }
    }

    /// The cluster file with control commands for every node — plain signals to the pid
    /// in `node-<id>.pid`, and `start` relaunching the node in the background as
    /// [`Self::spawn`] does — so that `raftbench run --cluster` can drive this cluster as
    /// it would one on other hosts.
    pub fn controlled_cluster_file(&self) -> ClusterFile {
        let mut file = self.cluster_file();
        let binary = sh_quote(&self.spec.binary.to_string_lossy());
        let cluster_file = sh_quote(&self.cluster_file_path().to_string_lossy());
        for n in &mut file.nodes {
            let Some(node) = self.nodes.get(&n.id) else {
                continue;
            };
            let pid_file = sh_quote(
                &self
                    .spec
                    .dir
                    .join(format!("node-{}.pid", n.id))
                    .to_string_lossy(),
            );
            // Signal, then wait (10 s at most) until the process is gone.
            let signal_and_wait = |sig: &str| {
                format!(
                    "pid=$(cat {pid_file}) && kill -{sig} $pid && \
                     for i in $(seq 200); do kill -0 $pid 2>/dev/null || exit 0; sleep 0.05; done; exit 1"
                )
            };
            n.control = ControlCommands {
                // Refuses to start a second process; `setsid` puts the node in its own
                // session, so a Ctrl-C aimed at `raftbench run` does not reach it.
                start: Some(format!(
                    "if [ -f {pid_file} ] && kill -0 $(cat {pid_file}) 2>/dev/null; then \
                     echo \"node {id} is already running\" >&2; exit 1; fi; \
                     setsid nohup {binary} node --id {id} --cluster-file {cluster_file} --peer-addr {peer} \
                     --client-addr {client} --data-dir {data} >> {log} 2>&1 < /dev/null & echo $! > {pid_file}",
                    id = n.id,
                    peer = sh_quote(&node.peer_addr),
                    client = sh_quote(&node.client_addr),
                    data = sh_quote(&node.data_dir.to_string_lossy()),
                    log = sh_quote(&node.log_path.to_string_lossy()),
                )),
                stop: Some(signal_and_wait("TERM")),
                kill: Some(signal_and_wait("KILL")),
                pause: Some(format!("kill -STOP $(cat {pid_file})")),
                resume: Some(format!("kill -CONT $(cat {pid_file})")),
            };
        }
        file
    }

    /// Stop node processes that a `start` control command relaunched (they are not this
    /// process's children): the pid in `node-<id>.pid`, if it is a node on this node's
    /// data directory, gets SIGCONT and SIGTERM, and SIGKILL if still there after 10 s.
    pub fn stop_relaunched(&mut self) {
        let mut pids = Vec::new();
        for node in self.nodes.values().filter(|n| n.child.is_none()) {
            let pid_file = self.spec.dir.join(format!("node-{}.pid", node.id));
            let Some(pid) = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
            else {
                continue;
            };
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let data_dir = node.data_dir.to_string_lossy();
            let ours = args
                .windows(2)
                .any(|w| w[0] == b"--data-dir" && w[1] == data_dir.as_bytes());
            if ours {
                let pid = Pid::from_raw(pid);
                let _ = kill(pid, Signal::SIGCONT);
                let _ = kill(pid, Signal::SIGTERM);
                pids.push(pid);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for pid in pids {
            while kill(pid, None).is_ok() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if kill(pid, None).is_ok() {
                let _ = kill(pid, Signal::SIGKILL);
            }
        }
    }

    /// Notice node processes that exited (killed from outside, e.g. by a control command)
    /// and reap them, so that they are not left as zombies.
    pub fn reap(&mut self) {
        for node in self.nodes.values_mut() {
            if let Some(child) = node.child.as_mut()
                && let Ok(Some(_)) = child.try_wait()
            {
                node.child = None;
                node.paused = false;
            }
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
        if self.attached.is_some() {
            return self.control_and_mark(id, "start", true);
        }
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
        // The pid file is what the control commands of `controlled_cluster_file` use.
        let pid_file = self.spec.dir.join(format!("node-{id}.pid"));
        std::fs::write(&pid_file, format!("{}\n", child.id()))
            .map_err(io(format!("writing {}", pid_file.display())))?;
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
        if self.attached.is_some() {
            return self.control_and_mark(id, "kill", false);
        }
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
        if self.attached.is_some() {
            return self.control_and_mark(id, "stop", false);
        }
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
        if self.attached.is_some() {
            self.control(id, "pause")?;
        } else {
            self.signal(id, Signal::SIGSTOP)?;
        }
        self.nodes.get_mut(&id).expect("checked").paused = true;
        Ok(())
    }

    /// SIGCONT a paused node.
    pub fn resume(&mut self, id: u64) -> Result<(), ClusterError> {
        if self.attached.is_some() {
            self.control(id, "resume")?;
        } else {
            self.signal(id, Signal::SIGCONT)?;
        }
        self.nodes.get_mut(&id).expect("checked").paused = false;
        Ok(())
    }

    /// Start a new, empty node with `--join` and return its id. Add it to the membership
    /// with `POST /members/{id}` on the leader (see [`Self::add_member`]).
    pub fn spawn_joining_node(&mut self) -> Result<u64, ClusterError> {
        if let Some(f) = &self.attached {
            return Err(ClusterError::Invalid(format!(
                "add-node starts a new node process, which raftbench cannot do for the cluster of {}",
                f.display()
            )));
        }
        let id = self.nodes.keys().max().copied().unwrap_or(0) + 1;
        self.add_node_entry(id, true)?;
        self.spawn(id)?;
        Ok(id)
    }

    /// `GET /status` of node `id`.
    pub async fn status(&self, id: u64) -> Result<StatusReport, ClusterError> {
        fetch_status(&self.http, &self.url(id)?, id).await
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
            disk_bytes: procinfo::dir_size(&node.data_dir),
            ..Default::default()
        };
        if let Some(pid) = node.pid() {
            r.rss_bytes = procinfo::rss_bytes(pid);
            (r.read_bytes, r.write_bytes) = procinfo::io_bytes(pid);
        }
        Ok(r)
    }

    /// Stop every node gracefully (SIGTERM). An attached cluster is left running.
    pub fn shutdown(&mut self) {
        if self.attached.is_some() {
            return;
        }
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

/// RSS and data-directory size as a node reports them in `/status` — the only view of a
/// node on another host (no storage I/O counters there).
pub fn reported_resources(s: &StatusReport) -> ProcResources {
    ProcResources {
        rss_bytes: s.rss_bytes,
        disk_bytes: s.storage.disk_bytes,
        ..Default::default()
    }
}

/// `s` quoted for `sh`.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}
