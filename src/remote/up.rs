//! `raftbench cluster up --cluster hosts.toml`: start a cluster's nodes on their hosts, from
//! this machine, and stop them on a signal.
//!
//! Every host is checked first (reachable, the same raftbench build, clock offset): a host
//! that fails is named before anything starts anywhere. Each node host then receives the
//! cluster file (and the secret file, mode 0600) in its working directory, and each node is
//! started there through its `start` control command (its own, or the one its host's
//! transport gives: see [`super::nodes`]). Once a leader is elected the cluster runs until
//! SIGINT, SIGTERM or SIGHUP, which stop every node through its `stop` command.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Command;

use super::nodes::{HOST_CLUSTER_FILE, HOST_SECRET_FILE, with_host_controls};
use super::{HostExec, check_hosts};
use crate::cluster::up::Signals;
use crate::cluster::{Cluster, ClusterError, io};
use crate::wire::{ClusterFile, ClusterNode, ControlCommands};

/// How long the new cluster may take to elect a leader.
const ELECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one start or stop command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// The hosts of `file` (read from `path`) that `names` lists, reachable through their
/// transports; an error names a host the file does not have.
pub fn host_execs<'a>(
    file: &ClusterFile,
    path: &Path,
    names: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<HostExec>, ClusterError> {
    let base = path.parent().unwrap_or(Path::new("."));
    let mut out: Vec<HostExec> = Vec::new();
    for name in names {
        if out.iter().any(|h| h.name() == name) {
            continue;
        }
        let host = file.host(name).ok_or_else(|| {
            ClusterError::Invalid(format!("{}: no [[host]] named {name}", path.display()))
        })?;
        out.push(HostExec::new(host.clone(), base));
    }
    Ok(out)
}

/// Copy the cluster file (with its secret beside it) into each host's working directory,
/// as the nodes there read it.
pub async fn distribute(
    file: &ClusterFile,
    path: &Path,
    hosts: &[HostExec],
) -> Result<(), ClusterError> {
    let secret = match file.secret_path(path) {
        Some(p) => Some(std::fs::read(&p).map_err(io(format!("reading {}", p.display())))?),
        None => None,
    };
    // What the nodes read, and nothing else: no hosts, generators, control commands or
    // redacted strings travel to the hosts.
    let mut copy = file.clone();
    copy.secret_file = secret.as_ref().map(|_| PathBuf::from(HOST_SECRET_FILE));
    copy.redact.clear();
    copy.hosts.clear();
    copy.generators.clear();
    for n in &mut copy.nodes {
        n.host = None;
        n.control = ControlCommands::default();
    }
    let text = toml::to_string_pretty(&copy)
        .map_err(|e| ClusterError::Invalid(format!("writing the cluster file: {e}")))?;
    let sends = hosts.iter().map(|h| {
        let text = text.clone();
        let secret = secret.clone();
        async move {
            if let Some(s) = &secret {
                h.put_file(HOST_SECRET_FILE, s, 0o600).await?;
            }
            h.put_file(HOST_CLUSTER_FILE, text.as_bytes(), 0o600).await
        }
    });
    let failures: Vec<String> = futures::future::join_all(sends)
        .await
        .into_iter()
        .filter_map(|r| r.err().map(|e| e.to_string()))
        .collect();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(ClusterError::Invalid(failures.join("\n")))
    }
}

/// Run a control command (a line for `sh -c` here) of `node`, with the environment
/// `run --cluster` gives control commands.
async fn control(node: &ClusterNode, which: &str, line: Option<&str>) -> Result<(), ClusterError> {
    let id = node.id;
    let line = line.ok_or_else(|| {
        ClusterError::Invalid(format!("node {id} has no `{which}` control command"))
    })?;
    let out = tokio::time::timeout(
        COMMAND_TIMEOUT,
        Command::new("sh")
            .arg("-c")
            .arg(line)
            .env("RAFTBENCH_NODE_ID", id.to_string())
            .env("RAFTBENCH_CLIENT_ADDR", &node.client_addr)
            .env("RAFTBENCH_PEER_ADDR", &node.peer_addr)
            .env(
                "RAFTBENCH_DATA_DIR",
                node.data_dir
                    .clone()
                    .unwrap_or_else(|| format!("node-{id}").into()),
            )
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| ClusterError::Node {
        id,
        message: format!("`{which}` took longer than {COMMAND_TIMEOUT:?}"),
    })?
    .map_err(io(format!("running node {id}'s {which} command")))?;
    if out.status.success() {
        return Ok(());
    }
    Err(ClusterError::Node {
        id,
        message: format!(
            "`{which}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    })
}

/// Stop every node through its `stop` command, all at once; failures are reported, not
/// fatal (the others must still stop).
async fn stop_all(nodes: &[ClusterNode], out: &mut dyn Write) {
    let stops = nodes
        .iter()
        .map(|n| async move { (n.id, control(n, "stop", n.control.stop.as_deref()).await) });
    for (id, r) in futures::future::join_all(stops).await {
        if let Err(e) = r {
            let _ = writeln!(out, "node {id}: {e}");
        }
    }
}

/// `raftbench cluster up --cluster PATH` (control log in `log_dir`); see the module docs.
pub fn up_on_hosts(path: &Path, log_dir: &Path, out: &mut dyn Write) -> Result<(), ClusterError> {
    let file = ClusterFile::load(path)?;
    if let Some(n) = file.nodes.iter().find(|n| n.host.is_none()) {
        return Err(ClusterError::Invalid(format!(
            "{}: node {} names no host; `cluster up --cluster` starts nodes on the [[host]] \
             entries they name",
            path.display(),
            n.id
        )));
    }
    let rt = tokio::runtime::Runtime::new().map_err(io("starting the tokio runtime"))?;
    let mut signals = {
        let _guard = rt.enter();
        Signals::install()?
    };
    let hosts = host_execs(
        &file,
        path,
        file.nodes.iter().filter_map(|n| n.host.as_deref()),
    )?;
    let print = |out: &mut dyn Write, line: String| {
        writeln!(out, "{line}").map_err(io("writing to stdout"))
    };
    let reports = rt.block_on(check_hosts(&hosts)).map_err(|e| {
        ClusterError::Invalid(format!(
            "{}: hosts failed their check:\n{e}",
            path.display()
        ))
    })?;
    for r in &reports {
        print(
            out,
            format!(
                "host {}: {}, clock offset {:+.1} ms (±{:.1})",
                r.host, r.version, r.clock.offset_ms, r.clock.error_ms
            ),
        )?;
    }
    // Everything that can be refused here is, before anything starts anywhere: the secret
    // parses, and the cluster can be attached.
    file.secret(path)
        .map_err(|e| ClusterError::Invalid(e.to_string()))?;
    let cluster = Cluster::attach(path, log_dir)?;
    rt.block_on(distribute(&file, path, &hosts))?;
    let controlled = with_host_controls(file.clone(), path);
    let nodes: Vec<ClusterNode> = controlled.nodes;
    let started = rt.block_on(async {
        let starts = nodes
            .iter()
            .map(|n| async move { control(n, "start", n.control.start.as_deref()).await });
        futures::future::join_all(starts).await
    });
    if let Some(Err(e)) = started.into_iter().find(Result::is_err) {
        rt.block_on(stop_all(&nodes, out));
        return Err(e);
    }
    let waited = rt.block_on(async {
        tokio::select! {
            l = cluster.wait_for_leader(ELECTION_TIMEOUT) => Ok(l),
            s = signals.recv() => Err(s),
        }
    });
    let leader = match waited {
        Ok(Ok(l)) => l,
        Ok(Err(e)) => {
            rt.block_on(stop_all(&nodes, out));
            return Err(ClusterError::Invalid(format!(
                "{e}; see node-ID.log in each host's working directory"
            )));
        }
        Err(sig) => {
            rt.block_on(stop_all(&nodes, out));
            return Err(ClusterError::Invalid(format!(
                "{sig} before the cluster elected a leader; nodes stopped"
            )));
        }
    };
    let shown = show(&file, &hosts, leader, path, out);
    if shown.is_err() {
        rt.block_on(stop_all(&nodes, out));
    }
    shown?;
    let sig = rt.block_on(signals.recv());
    let _ = writeln!(out, "{sig}: stopping...").and_then(|()| out.flush());
    rt.block_on(stop_all(&nodes, out));
    Ok(())
}

/// What `up` prints once the cluster has a leader.
fn show(
    file: &ClusterFile,
    hosts: &[HostExec],
    leader: u64,
    path: &Path,
    out: &mut dyn Write,
) -> Result<(), ClusterError> {
    let print = |out: &mut dyn Write, line: String| {
        writeln!(out, "{line}").map_err(io("writing to stdout"))
    };
    print(
        out,
        format!(
            "raftbench cluster: {} nodes on {} hosts, backend {} (fsync {})",
            file.nodes.len(),
            hosts.len(),
            file.backend.kind,
            file.backend.fsync
        ),
    )?;
    for n in &file.nodes {
        let role = if n.id == leader { "  (leader)" } else { "" };
        print(
            out,
            format!(
                "  node {} on {}: http://{}  peer {}{role}",
                n.id,
                n.host.as_deref().unwrap_or(""),
                n.client_addr,
                n.peer_addr
            ),
        )?;
    }
    print(out, format!("cluster file: {}", path.display()))?;
    print(out, "Ctrl-C (or SIGTERM, SIGHUP) stops every node.".into())?;
    out.flush().map_err(io("writing to stdout"))
}
