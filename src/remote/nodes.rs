//! Nodes on hosts: the commands that start, stop, kill, pause and resume node N on its
//! host, written from the host's transport, so that a cluster file with hosts needs no
//! `[node.control]` of its own (commands written there still win).
//!
//! A node runs detached on its host (`setsid nohup`, all three standard streams
//! redirected, so the ssh session that started it returns at once and can end), from the
//! host's working directory:
//! - `cluster.toml` (and `cluster.secret`): the cluster file, copied there by the
//!   coordinator;
//! - `node-N/`: its data directory (unless the node entry names another);
//! - `node-N.log`, `node-N.pid`: its log, and its process id for the signals.

use std::path::Path;

use super::exec::HostExec;
use crate::cluster::sh_quote as quote;
use crate::wire::{ClusterFile, ClusterFileError, ClusterNode, ControlCommands};

/// The cluster file's name in a host's working directory.
pub const HOST_CLUSTER_FILE: &str = "cluster.toml";
/// The secret's name there.
pub const HOST_SECRET_FILE: &str = "cluster.secret";

/// How long a graceful stop may take before the stop command gives up (tenths of a second).
const STOP_TENTHS: u32 = 300;

/// A shell function: whether pid `$1` is a live process (not a zombie left unreaped, and
/// not gone), from `/proc`.
const ALIVE: &str = "alive() { kill -0 \"$1\" 2>/dev/null && ! grep -q '^State:[[:space:]]*Z' \"/proc/$1/status\" 2>/dev/null; }";

/// The script that starts `node` on its host, unless it is running already.
pub fn start_script(exec: &HostExec, node: &ClusterNode) -> String {
    let id = node.id;
    let data = node
        .data_dir
        .as_ref()
        .map_or_else(|| format!("node-{id}"), |d| quote(&d.to_string_lossy()));
    format!(
        "{ALIVE}; cd {wd} || exit 1; \
         if [ -f node-{id}.pid ] && alive \"$(cat node-{id}.pid)\"; then exit 0; fi; \
         setsid nohup {bin} node --cluster-file {HOST_CLUSTER_FILE} --id {id} --data-dir {data} \
         </dev/null >>node-{id}.log 2>&1 & echo $! > node-{id}.pid",
        wd = quote(&exec.host.workdir.to_string_lossy()),
        bin = exec.binary(),
    )
}

/// `kill -SIGNAL` to node `id`'s recorded process (in `$p`); fails when it is not running.
fn signal_script(exec: &HostExec, id: u64, signal: &str) -> String {
    format!(
        "{ALIVE}; cd {wd} && p=$(cat node-{id}.pid) && alive \"$p\" && kill -{signal} \"$p\"",
        wd = quote(&exec.host.workdir.to_string_lossy()),
    )
}

/// Signal, then wait (bounded) until the process is gone, so that nothing signals its pid
/// afterwards (another process may get it).
fn signal_and_wait_script(exec: &HostExec, id: u64, signal: &str) -> String {
    format!(
        "{sig}; i=0; while alive \"$p\" && [ $i -lt {STOP_TENTHS} ]; do \
         sleep 0.1; i=$((i+1)); done; if alive \"$p\"; then exit 1; fi",
        // A paused node handles SIGTERM only once it runs again.
        sig = if signal == "TERM" {
            format!("{} && kill -CONT \"$p\"", signal_script(exec, id, signal))
        } else {
            signal_script(exec, id, signal)
        },
    )
}

/// `node`'s control commands: those its entry writes, the rest from its host's transport.
pub fn control_commands(exec: &HostExec, node: &ClusterNode) -> ControlCommands {
    let c = &node.control;
    let or =
        |given: &Option<String>, script: String| given.clone().or_else(|| Some(exec.line(&script)));
    ControlCommands {
        start: or(&c.start, start_script(exec, node)),
        stop: or(&c.stop, signal_and_wait_script(exec, node.id, "TERM")),
        kill: or(&c.kill, signal_and_wait_script(exec, node.id, "KILL")),
        pause: or(&c.pause, signal_script(exec, node.id, "STOP")),
        resume: or(&c.resume, signal_script(exec, node.id, "CONT")),
        // A power cut needs the host's cooperation (a fault file system, a switch): only
        // a command written out can do it.
        power_loss: c.power_loss.clone(),
    }
}

/// `file` (read from `path`) with the control commands of every node on a host filled in
/// from its host's transport (see [`control_commands`]).
pub fn with_host_controls(mut file: ClusterFile, path: &Path) -> ClusterFile {
    let base = path.parent().unwrap_or(Path::new("."));
    let hosts = file.hosts.clone();
    for n in &mut file.nodes {
        let host = n
            .host
            .as_ref()
            .and_then(|name| hosts.iter().find(|h| &h.name == name));
        if let Some(h) = host {
            n.control = control_commands(&HostExec::new(h.clone(), base), n);
        }
    }
    file
}

/// The cluster file at `path` as the harness controls it: [`ClusterFile::load`], then
/// [`with_host_controls`].
pub fn load_controlled(path: &Path) -> Result<ClusterFile, ClusterFileError> {
    Ok(with_host_controls(ClusterFile::load(path)?, path))
}
