//! [`Processes`]: control of a local cluster's nodes as child processes of raftbench.
//!
//! A kill is a real `SIGKILL` and a restart really reopens the data directory. Each start
//! writes the node's pid to `node-<id>.pid` in the cluster directory, which is what the
//! control commands of [`Processes::controlled_cluster_file`] signal, so the same cluster
//! can also be driven as if it ran on other hosts (`raftbench run --cluster`).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tracing::{debug, info};

use super::control::{CutOutcome, DiskFault, NodeControl, NodeState};
use super::disks::FaultDisks;
use super::{ClusterError, Member, io, sh_quote};
use crate::target::etcd::launch::EtcdLaunch;
use crate::wire::{ClusterFile, ControlCommands, DiskLayer};

/// How long a graceful stop may take before the process is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// What a node process runs.
enum Program {
    /// `raftbench node` on the cluster file.
    Raftbench {
        binary: PathBuf,
        cluster_file: PathBuf,
    },
    /// An etcd member.
    Etcd(EtcdLaunch),
}

/// The node processes raftbench started, by node id.
pub struct Processes {
    program: Program,
    dir: PathBuf,
    children: BTreeMap<u64, Child>,
    paused: BTreeSet<u64>,
    /// The nodes' data directories on the fault file system, when the workload cuts power
    /// or fails disks. Declared after `children`: dropped (unmounted) after they are killed.
    disks: Option<FaultDisks>,
    /// Extra flags for every node process.
    node_args: Vec<String>,
}

impl Processes {
    /// A controller that runs `binary node ...` for each node of the cluster in `dir`
    /// (pid files there), with `cluster_file` as the nodes' cluster file.
    pub fn new(binary: &Path, dir: &Path, cluster_file: &Path) -> Self {
        Self::running(
            Program::Raftbench {
                binary: binary.to_path_buf(),
                cluster_file: cluster_file.to_path_buf(),
            },
            dir,
        )
    }

    /// A controller that runs etcd members as `launch` says (pid files in `dir`).
    pub fn etcd(launch: EtcdLaunch, dir: &Path) -> Self {
        Self::running(Program::Etcd(launch), dir)
    }

    fn running(program: Program, dir: &Path) -> Self {
        Processes {
            program,
            dir: dir.to_path_buf(),
            children: BTreeMap::new(),
            paused: BTreeSet::new(),
            disks: None,
            node_args: Vec::new(),
        }
    }

    /// Pass `args` to every node process (after the flags this controller sets).
    pub fn with_node_args(mut self, args: Vec<String>) -> Self {
        self.node_args = args;
        self
    }

    /// Put every node's data directory on the fault file system (mounted at each start).
    pub fn with_fault_disks(mut self, disks: FaultDisks) -> Self {
        self.disks = Some(disks);
        self
    }

    /// The executable and arguments of `node`'s process.
    fn command_line(&self, node: &Member) -> (&Path, Vec<String>) {
        match &self.program {
            Program::Raftbench {
                binary,
                cluster_file,
            } => {
                let mut args: Vec<String> = vec![
                    "node".into(),
                    "--id".into(),
                    node.id.to_string(),
                    "--cluster-file".into(),
                    cluster_file.to_string_lossy().into_owned(),
                    "--peer-addr".into(),
                    node.peer_addr.clone(),
                    "--client-addr".into(),
                    node.client_addr.clone(),
                    "--data-dir".into(),
                    node.data_dir.to_string_lossy().into_owned(),
                ];
                args.extend(self.node_args.iter().cloned());
                args.extend(node.join_args.iter().cloned());
                (binary, args)
            }
            Program::Etcd(l) => (
                &l.binary,
                l.args(
                    node.id,
                    &node.peer_addr,
                    &node.client_addr,
                    &node.data_dir,
                    &node.join_args,
                ),
            ),
        }
    }

    fn pid_file(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node-{id}.pid"))
    }

    fn signal(&self, id: u64, sig: Signal) -> Result<(), ClusterError> {
        let child = self.children.get(&id).ok_or_else(|| ClusterError::Node {
            id,
            message: "not running".into(),
        })?;
        kill(Pid::from_raw(child.id() as i32), sig).map_err(|e| ClusterError::Node {
            id,
            message: format!("sending {sig}: {e}"),
        })
    }

    /// `file` with control commands for every node — plain signals to the pid in
    /// `node-<id>.pid`, and `start` relaunching the node in the background as
    /// [`NodeControl::start`] does — so that `raftbench run --cluster` can drive this
    /// cluster as it would one on other hosts.
    pub fn controlled_cluster_file(
        &self,
        mut file: ClusterFile,
        members: &BTreeMap<u64, Member>,
    ) -> ClusterFile {
        for n in &mut file.nodes {
            let Some(node) = members.get(&n.id) else {
                continue;
            };
            let pid_file = sh_quote(&self.pid_file(n.id).to_string_lossy());
            // Signal, then wait (10 s at most) until the process is gone.
            let signal_and_wait = |sig: &str| {
                format!(
                    "pid=$(cat {pid_file}) && kill -{sig} $pid && \
                     for i in $(seq 200); do kill -0 $pid 2>/dev/null || exit 0; sleep 0.05; done; exit 1"
                )
            };
            let (binary, args) = self.command_line(node);
            let command = std::iter::once(binary.to_string_lossy().into_owned())
                .chain(args)
                .map(|a| sh_quote(&a))
                .collect::<Vec<_>>()
                .join(" ");
            n.control = ControlCommands {
                // Refuses to start a second process; `setsid` puts the node in its own
                // session, so a Ctrl-C aimed at `raftbench run` does not reach it.
                start: Some(format!(
                    "if [ -f {pid_file} ] && kill -0 $(cat {pid_file}) 2>/dev/null; then \
                     echo \"node {id} is already running\" >&2; exit 1; fi; \
                     setsid nohup {command} >> {log} 2>&1 < /dev/null & echo $! > {pid_file}",
                    id = n.id,
                    log = sh_quote(&node.log_path.to_string_lossy()),
                )),
                stop: Some(signal_and_wait("TERM")),
                kill: Some(signal_and_wait("KILL")),
                pause: Some(format!("kill -STOP $(cat {pid_file})")),
                resume: Some(format!("kill -CONT $(cat {pid_file})")),
                // `cluster up` puts no fault file system under its nodes.
                power_loss: None,
            };
        }
        file
    }

    /// Stop node processes that a `start` control command relaunched (they are not this
    /// process's children): the pid in `node-<id>.pid`, if it is a node on that node's
    /// data directory, gets SIGCONT and SIGTERM, and SIGKILL if still there after 10 s.
    pub fn stop_relaunched(&mut self, members: &BTreeMap<u64, Member>) {
        let mut pids = Vec::new();
        for node in members
            .values()
            .filter(|n| !self.children.contains_key(&n.id))
        {
            let Some(pid) = std::fs::read_to_string(self.pid_file(node.id))
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
            else {
                continue;
            };
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let data_dir = node.data_dir.to_string_lossy();
            // raftbench's and etcd's flag alike.
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
        let deadline = Instant::now() + STOP_GRACE;
        for pid in pids {
            while kill(pid, None).is_ok() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if kill(pid, None).is_ok() {
                let _ = kill(pid, Signal::SIGKILL);
            }
        }
    }
}

impl NodeControl for Processes {
    fn start(&mut self, node: &Member) -> Result<(), ClusterError> {
        let id = node.id;
        if self.children.contains_key(&id) {
            return Err(ClusterError::Node {
                id,
                message: "already running".into(),
            });
        }
        if let Some(disks) = &mut self.disks {
            // After a power cut the disk is mounted again: the node sees what was durable.
            disks.ensure_mounted(node)?;
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log_path)
            .map_err(io(format!("opening {}", node.log_path.display())))?;
        let (binary, args) = self.command_line(node);
        let mut cmd = Command::new(binary);
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(io("log file"))?)
            .stderr(log);
        if std::env::var_os("RUST_LOG").is_none() {
            // `raft::` (not `raft`): a target directive matches by prefix, and `raft` would also
            // silence `raftbench`.
            cmd.env("RUST_LOG", "info,raft::=warn");
        }
        let child = cmd
            .spawn()
            .map_err(io(format!("starting {}", binary.display())))?;
        debug!(id, pid = child.id(), "node process started");
        let pid_file = self.pid_file(id);
        std::fs::write(&pid_file, format!("{}\n", child.id()))
            .map_err(io(format!("writing {}", pid_file.display())))?;
        self.children.insert(id, child);
        self.paused.remove(&id);
        Ok(())
    }

    fn kill(&mut self, node: &Member) -> Result<(), ClusterError> {
        self.signal(node.id, Signal::SIGKILL)?;
        if let Some(mut child) = self.children.remove(&node.id) {
            let _ = child.wait();
        }
        self.paused.remove(&node.id);
        info!(id = node.id, "node killed");
        Ok(())
    }

    fn stop(&mut self, node: &Member) -> Result<(), ClusterError> {
        let id = node.id;
        if self.paused.contains(&id) {
            self.resume(node)?;
        }
        self.signal(id, Signal::SIGTERM)?;
        let Some(mut child) = self.children.remove(&id) else {
            return Ok(());
        };
        let deadline = Instant::now() + STOP_GRACE;
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

    fn pause(&mut self, node: &Member) -> Result<(), ClusterError> {
        self.signal(node.id, Signal::SIGSTOP)?;
        self.paused.insert(node.id);
        Ok(())
    }

    fn resume(&mut self, node: &Member) -> Result<(), ClusterError> {
        self.signal(node.id, Signal::SIGCONT)?;
        self.paused.remove(&node.id);
        Ok(())
    }

    fn state(&self, id: u64) -> NodeState {
        if !self.children.contains_key(&id) {
            NodeState::Down
        } else if self.paused.contains(&id) {
            NodeState::Paused
        } else {
            NodeState::Running
        }
    }

    fn pid(&self, id: u64) -> Option<u32> {
        self.children.get(&id).map(Child::id)
    }

    fn reap(&mut self) {
        let mut exited = Vec::new();
        for (id, child) in &mut self.children {
            if let Ok(Some(_)) = child.try_wait() {
                exited.push(*id);
            }
        }
        for id in exited {
            self.children.remove(&id);
            self.paused.remove(&id);
        }
    }

    fn shutdown(&mut self, nodes: &[&Member]) {
        for node in nodes {
            if self.children.contains_key(&node.id) {
                let _ = self.stop(node);
            }
        }
        if let Some(d) = &mut self.disks {
            d.unmount_all();
        }
    }

    /// Freeze every disk first (each drops what it had not made durable at once; the
    /// remaining nodes can go on acknowledging only for the few milliseconds until theirs
    /// freezes), then kill every process, which fails every I/O meanwhile, and unmount
    /// every disk — all of them, whatever failed on the way.
    fn power_cut(
        &mut self,
        nodes: &[&Member],
        torn: Option<u64>,
    ) -> Result<Vec<(u64, CutOutcome)>, ClusterError> {
        let Some(disks) = &mut self.disks else {
            return Err(ClusterError::Invalid(
                "this cluster's nodes are not on fault disks".into(),
            ));
        };
        let mut outcomes: Vec<(u64, CutOutcome)> = nodes
            .iter()
            .enumerate()
            // Different seeds per node: their write-back is not the same.
            .map(|(i, n)| {
                (
                    n.id,
                    disks.cut(n.id, torn.map(|s| s.wrapping_add(i as u64))),
                )
            })
            .collect();
        for (n, (_, outcome)) in nodes.iter().zip(&mut outcomes) {
            if self.children.contains_key(&n.id)
                && let Err(e) = self.kill(n)
                && outcome.is_ok()
            {
                *outcome = Err(e);
            }
            if let Some(d) = &mut self.disks {
                d.unmount(n.id);
            }
        }
        Ok(outcomes)
    }

    fn disk_fault(&mut self, node: &Member, fault: &DiskFault) -> Result<String, ClusterError> {
        match &mut self.disks {
            Some(d) => d.fault(node.id, fault),
            None => Err(ClusterError::Node {
                id: node.id,
                message: "its data is not on a fault disk".into(),
            }),
        }
    }

    fn disk_layer(&self) -> Option<DiskLayer> {
        self.disks.as_ref().map(|d| DiskLayer {
            kind: "raftbench-faultfs".into(),
            metadata: d.metadata().to_string(),
        })
    }
}

impl Drop for Processes {
    /// Kill whatever still runs: a cluster must never outlive the harness that started it.
    fn drop(&mut self) {
        for (id, mut child) in std::mem::take(&mut self.children) {
            if self.paused.contains(&id) {
                let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGCONT);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
