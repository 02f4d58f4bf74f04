//! How the harness acts on a node's process: [`NodeControl`].
//!
//! A cluster raftbench started is controlled through its child processes and signals
//! ([`super::Processes`]); a cluster someone else runs, through the control commands of
//! its cluster file ([`super::Commands`]). Events, recovery timing and verification are
//! written once against this trait, so a run against either measures the same thing.

use std::path::Path;

use super::{ClusterError, Member};
use crate::wire::ControlCommands;

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
}
