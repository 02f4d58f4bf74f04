//! How the harness acts on a node's process: [`NodeControl`].
//!
//! A cluster raftbench started is controlled through its child processes and signals
//! ([`super::Processes`]); a cluster someone else runs, through the control commands of
//! its cluster file ([`super::Commands`]). Events, recovery timing and verification are
//! written once against this trait, so a run against either measures the same thing.

use std::path::Path;
use std::time::Duration;

use super::{ClusterError, Member};
use crate::wire::{ControlCommands, DiskLayer};

/// A fault of a node's disk (its data directory on the fault file system).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskFault {
    /// fsyncs (and, with `writes`, writes) of files under `files` take `latency` longer,
    /// for `duration` or until healed.
    Slow {
        latency: Duration,
        duration: Option<Duration>,
        writes: bool,
        files: Option<String>,
    },
    /// The next `count` fsyncs fail with EIO.
    FailFsyncs { count: u64 },
    /// Writes fail with ENOSPC until healed.
    Full,
    /// End `Slow`, `FailFsyncs` and `Full`.
    Heal,
}

/// How one node's power cut went: what its disk lost, or why it could not be cut (the
/// node is killed all the same).
pub type CutOutcome = Result<PowerCut, ClusterError>;

/// What a power cut took from one node's disk (`None`: its controller cannot tell).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PowerCut {
    /// Bytes written but not yet synced that the disk lost.
    pub dropped_bytes: Option<u64>,
    /// Directory changes (create, rename, unlink) not yet synced that were undone.
    pub undone_metadata_ops: Option<u64>,
}

/// Whether a node's process is up, as far as its controller knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// Running and answering (as far as signals go).
    Running,
    /// Frozen with SIGSTOP (or the cluster's `pause` command): it keeps its sockets but
    /// does not answer.
    Paused,
    /// Not running: never started, killed or stopped.
    Down,
}

/// Start, stop, kill, pause and resume node processes.
///
/// Every method acts on one node and returns once the action is done as far as the
/// controller can tell (a killed local process is reaped; a command has exited). A
/// method called in a state it cannot act on (`kill` of a node that is down, `start` of
/// one that runs) is an error and changes nothing.
pub trait NodeControl: Send + Sync {
    /// Start the node's process on its data directory (first start, or after a kill or a
    /// stop: recovery is the node's).
    fn start(&mut self, node: &Member) -> Result<(), ClusterError>;
    /// Stop it gracefully (SIGTERM): it finishes its current raft turn first.
    fn stop(&mut self, node: &Member) -> Result<(), ClusterError>;
    /// Kill it without warning (SIGKILL): nothing is flushed, as in a crash.
    fn kill(&mut self, node: &Member) -> Result<(), ClusterError>;
    /// Freeze it (SIGSTOP).
    fn pause(&mut self, node: &Member) -> Result<(), ClusterError>;
    /// Unfreeze a paused node (SIGCONT).
    fn resume(&mut self, node: &Member) -> Result<(), ClusterError>;
    /// Stop (if up) and start again.
    fn restart(&mut self, node: &Member) -> Result<(), ClusterError> {
        if self.state(node.id) != NodeState::Down {
            self.stop(node)?;
        }
        self.start(node)
    }
    /// What the controller knows of node `id`'s process.
    fn state(&self, id: u64) -> NodeState;
    /// The OS process id, for processes on this machine (resource sampling from `/proc`).
    fn pid(&self, _id: u64) -> Option<u32> {
        None
    }
    /// Notice processes that exited on their own (killed from outside) and reap them.
    fn reap(&mut self) {}
    /// Stop every node this controller owns (SIGTERM, SIGKILL after 10 s). A controller of
    /// someone else's cluster owns none and leaves it running.
    fn shutdown(&mut self, _nodes: &[&Member]) {}
    /// Why new nodes cannot be started (`add-node`), if they cannot.
    fn cannot_add_nodes(&self) -> Option<String> {
        None
    }
    /// The cluster file of a cluster raftbench did not start.
    fn attached(&self) -> Option<&Path> {
        None
    }
    /// The control commands node `id` is driven with, as a cluster file gives them (none
    /// for processes raftbench started itself).
    fn commands(&self, _id: u64) -> ControlCommands {
        ControlCommands::default()
    }
    /// Cut the power of `nodes` together: first every disk loses what it had not made
    /// durable (with `torn = Some(seed)`, a seeded part of it reaches the disk), then every
    /// process dies. The nodes are down afterwards, even those whose cut failed; `start`
    /// brings each back on what its disk kept. Returns how each node's cut went; an error
    /// means nothing could be done at all.
    fn power_cut(
        &mut self,
        nodes: &[&Member],
        _torn: Option<u64>,
    ) -> Result<Vec<(u64, CutOutcome)>, ClusterError> {
        Err(ClusterError::Invalid(format!(
            "nodes {:?} have no fault disk: a power cut needs a cluster raftbench starts \
             (for a workload with power-loss events), or a `power_loss` control command",
            nodes.iter().map(|n| n.id).collect::<Vec<_>>()
        )))
    }
    /// Inject `fault` into `node`'s disk; returns what was done.
    fn disk_fault(&mut self, node: &Member, _fault: &DiskFault) -> Result<String, ClusterError> {
        Err(ClusterError::Node {
            id: node.id,
            message: "its data is not on a fault disk".into(),
        })
    }
    /// What the nodes' data is stored on, when it is not a plain directory (`run.json`).
    fn disk_layer(&self) -> Option<DiskLayer> {
        None
    }
}
