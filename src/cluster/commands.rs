//! [`Commands`]: control of a cluster raftbench did not start, through the control commands
//! of its cluster file (run with `sh -c`; see [`crate::wire::cluster_file`]).
//!
//! raftbench cannot see such processes, so a node's state is what the commands have told
//! it: up until a `kill`/`stop` succeeded, down until a `start` did. The cluster is never
//! stopped by raftbench on its own.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tracing::info;

use super::control::{CutOutcome, NodeControl, NodeState, PowerCut};
use super::{ClusterError, Member, io};
use crate::wire::ControlCommands;

/// How long one control command may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// Control commands per node, and what they have done.
pub struct Commands {
    file: PathBuf,
    /// Strings never written to the control log or an error (the cluster file's `redact`).
    redact: Vec<String>,
    nodes: BTreeMap<u64, Controlled>,
}

struct Controlled {
    commands: ControlCommands,
    state: NodeState,
}

impl Commands {
    /// The controller of the cluster described by `file`, whose nodes are assumed up.
    pub fn new(file: &Path, commands: impl IntoIterator<Item = (u64, ControlCommands)>) -> Self {
        Commands {
            file: file.to_path_buf(),
            redact: Vec::new(),
            nodes: commands
                .into_iter()
                .map(|(id, commands)| {
                    (
                        id,
                        Controlled {
                            commands,
                            state: NodeState::Running,
                        },
                    )
                })
                .collect(),
        }
    }

    /// Keep `redact` out of the control log and of errors.
    pub fn redacting(mut self, redact: Vec<String>) -> Self {
        self.redact = redact;
        self
    }

    fn shown(&self, cmd: &str) -> String {
        crate::wire::cluster_file::redacted(&self.redact, cmd)
    }

    fn controlled(&mut self, id: u64) -> Result<&mut Controlled, ClusterError> {
        self.nodes.get_mut(&id).ok_or(ClusterError::UnknownNode(id))
    }

    /// Refuse to signal a node the commands have taken down (as a local node that is not
    /// running cannot be signalled).
    fn require_up(&mut self, id: u64) -> Result<(), ClusterError> {
        if self.controlled(id)?.state == NodeState::Down {
            return Err(ClusterError::Node {
                id,
                message: "not running".into(),
            });
        }
        Ok(())
    }

    /// Run a command that takes a node up or down, and record the new state.
    fn transition(
        &mut self,
        node: &Member,
        which: &str,
        to: NodeState,
    ) -> Result<(), ClusterError> {
        let from = self.controlled(node.id)?.state;
        let up = to == NodeState::Running;
        if (from != NodeState::Down) == up {
            return Err(ClusterError::Node {
                id: node.id,
                message: if up {
                    "already running"
                } else {
                    "already down"
                }
                .into(),
            });
        }
        // A frozen process cannot act on a stop signal: unfreeze it first.
        if from == NodeState::Paused && self.controlled(node.id)?.commands.resume.is_some() {
            self.run(node, "resume")?;
            // Resumed: if the stop below fails, the node runs.
            self.controlled(node.id)?.state = NodeState::Running;
        }
        self.run(node, which)?;
        self.controlled(node.id)?.state = to;
        Ok(())
    }

    /// Run node's `which` control command, waiting up to two minutes for it; its output is
    /// appended to the node's log (`control.log`).
    fn run(&mut self, node: &Member, which: &str) -> Result<(), ClusterError> {
        let id = node.id;
        let file = self.file.clone();
        let cmd = self
            .controlled(id)?
            .commands
            .get(which)
            .ok_or_else(|| {
                ClusterError::Invalid(format!(
                    "node {id} has no `{which}` control command in {}",
                    file.display()
                ))
            })?
            .to_string();
        let shown = self.shown(&cmd);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log_path)
            .map_err(io(format!("opening {}", node.log_path.display())))?;
        use std::io::Write as _;
        writeln!(&log, "# node {id} {which}: {shown}")
            .map_err(io(format!("writing {}", node.log_path.display())))?;
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
        let deadline = Instant::now() + COMMAND_TIMEOUT;
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
                        message: format!(
                            "`{which}` command `{shown}` did not finish in {} s",
                            COMMAND_TIMEOUT.as_secs()
                        ),
                    });
                }
            }
        };
        if !status.success() {
            return Err(ClusterError::Node {
                id,
                message: format!(
                    "`{which}` command `{shown}` failed ({status}); its output is in {}",
                    node.log_path.display()
                ),
            });
        }
        info!(id, which, "control command ran");
        Ok(())
    }
}

impl NodeControl for Commands {
    fn start(&mut self, node: &Member) -> Result<(), ClusterError> {
        self.transition(node, "start", NodeState::Running)
    }

    fn stop(&mut self, node: &Member) -> Result<(), ClusterError> {
        self.transition(node, "stop", NodeState::Down)
    }

    fn kill(&mut self, node: &Member) -> Result<(), ClusterError> {
        self.transition(node, "kill", NodeState::Down)
    }

    fn pause(&mut self, node: &Member) -> Result<(), ClusterError> {
        self.require_up(node.id)?;
        self.run(node, "pause")?;
        self.controlled(node.id)?.state = NodeState::Paused;
        Ok(())
    }

    fn resume(&mut self, node: &Member) -> Result<(), ClusterError> {
        self.require_up(node.id)?;
        self.run(node, "resume")?;
        self.controlled(node.id)?.state = NodeState::Running;
        Ok(())
    }

    fn state(&self, id: u64) -> NodeState {
        self.nodes.get(&id).map_or(NodeState::Down, |c| c.state)
    }

    fn cannot_add_nodes(&self) -> Option<String> {
        Some(format!(
            "add-node starts a new node process, which raftbench cannot do for the cluster of {}",
            self.file.display()
        ))
    }

    fn attached(&self) -> Option<&Path> {
        Some(&self.file)
    }

    /// As recorded (in `run.json`): with the cluster file's `redact` strings replaced.
    fn commands(&self, id: u64) -> ControlCommands {
        let Some(c) = self.nodes.get(&id) else {
            return ControlCommands::default();
        };
        let shown = |cmd: &Option<String>| cmd.as_deref().map(|c| self.shown(c));
        let c = &c.commands;
        ControlCommands {
            start: shown(&c.start),
            stop: shown(&c.stop),
            kill: shown(&c.kill),
            pause: shown(&c.pause),
            resume: shown(&c.resume),
            power_loss: shown(&c.power_loss),
        }
    }

    /// Each node's `power_loss` command, in turn (what it loses is the command's business:
    /// raftbench cannot tell).
    fn power_cut(
        &mut self,
        nodes: &[&Member],
        _torn: Option<u64>,
    ) -> Result<Vec<(u64, CutOutcome)>, ClusterError> {
        Ok(nodes
            .iter()
            .map(|n| {
                let outcome = self
                    .transition(n, "power_loss", NodeState::Down)
                    .map(|()| PowerCut::default());
                (n.id, outcome)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(dir: &Path) -> Member {
        Member {
            id: 1,
            peer_addr: "127.0.0.1:1".into(),
            client_addr: "127.0.0.1:2".into(),
            data_dir: dir.join("data"),
            log_path: dir.join("control.log"),
            join: false,
            join_args: Vec::new(),
        }
    }

    /// Each command appends its name to a file, so the test sees what ran.
    fn commands(dir: &Path, fail_start: bool) -> Commands {
        let ran = dir.join("ran");
        let rec = |what: &str| Some(format!("echo {what} >> '{}'", ran.display()));
        let c = ControlCommands {
            start: if fail_start {
                Some("exit 3".into())
            } else {
                rec("start")
            },
            stop: rec("stop"),
            kill: rec("kill"),
            pause: rec("pause"),
            resume: rec("resume"),
            power_loss: rec("power_loss"),
        };
        Commands::new(&dir.join("cluster.toml"), [(1, c)])
    }

    fn ran(dir: &Path) -> String {
        std::fs::read_to_string(dir.join("ran")).unwrap_or_default()
    }

    /// Redacted strings reach neither what is recorded of the commands nor the control
    /// log, and the commands still run as written.
    #[test]
    fn redacted_strings_are_run_but_never_shown() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().display().to_string();
        let mut c = commands(t.path(), false).redacting(vec![dir.clone()]);
        let m = member(t.path());
        let recorded = c.commands(1);
        assert!(
            recorded
                .kill
                .as_deref()
                .is_some_and(|k| k.contains("[redacted]") && !k.contains(&dir)),
            "{recorded:?}"
        );
        c.kill(&m).unwrap();
        assert_eq!(ran(t.path()).trim(), "kill");
        let log = std::fs::read_to_string(&m.log_path).unwrap();
        assert!(log.contains("[redacted]") && !log.contains(&dir), "{log}");
    }

    #[test]
    fn commands_follow_the_nodes_state() {
        let t = tempfile::tempdir().unwrap();
        let (mut c, m) = (commands(t.path(), false), member(t.path()));
        assert_eq!(c.state(1), NodeState::Running);
        c.pause(&m).unwrap();
        assert_eq!(c.state(1), NodeState::Paused);
        // A paused node is resumed before it is stopped.
        c.stop(&m).unwrap();
        assert_eq!(c.state(1), NodeState::Down);
        assert_eq!(ran(t.path()), "pause\nresume\nstop\n");
        // Down: no signal, no second stop, nothing run.
        for e in [c.resume(&m), c.pause(&m), c.kill(&m), c.stop(&m)] {
            assert!(e.is_err(), "acted on a node that is down");
        }
        assert_eq!(ran(t.path()).lines().count(), 3);
        c.start(&m).unwrap();
        assert!(
            c.start(&m)
                .unwrap_err()
                .to_string()
                .contains("already running")
        );
        c.restart(&m).unwrap();
        assert_eq!(c.state(1), NodeState::Running);
        assert!(
            ran(t.path()).ends_with("start\nstop\nstart\n"),
            "{}",
            ran(t.path())
        );
        let log = std::fs::read_to_string(t.path().join("control.log")).unwrap();
        assert!(
            log.contains("# node 1 restart") || log.contains("# node 1 start"),
            "{log}"
        );
        // A power cut runs the node's command and takes it down; a second one is refused.
        let cut = c.power_cut(&[&m], None).unwrap();
        assert!(matches!(
            cut[..],
            [(
                1,
                Ok(PowerCut {
                    dropped_bytes: None,
                    ..
                })
            )]
        ));
        assert_eq!(c.state(1), NodeState::Down);
        assert!(ran(t.path()).ends_with("power_loss\n"));
        let again = c.power_cut(&[&m], None).unwrap();
        assert!(
            again[0].1.is_err(),
            "a node that is down has no power to cut"
        );
    }

    #[test]
    fn a_failing_command_changes_nothing_and_names_its_log() {
        let t = tempfile::tempdir().unwrap();
        let (mut c, m) = (commands(t.path(), true), member(t.path()));
        c.kill(&m).unwrap();
        let e = c.start(&m).unwrap_err().to_string();
        assert!(
            e.contains("`start` command") && e.contains("control.log"),
            "{e}"
        );
        assert_eq!(c.state(1), NodeState::Down);
        let missing = Commands::new(&t.path().join("c.toml"), [(1, ControlCommands::default())]);
        let mut missing = missing;
        let e = missing.kill(&m).unwrap_err().to_string();
        assert!(e.contains("no `kill` control command"), "{e}");
        assert_eq!(missing.state(1), NodeState::Running);
    }
}
