//! `raftbench cluster up`: start a local cluster, print how to reach it, keep it running
//! until a signal, then stop every node it started.
//!
//! SIGINT (Ctrl-C), SIGTERM (systemd, `timeout`, CI runners) and SIGHUP (a closed terminal)
//! all stop the nodes gracefully: a signal sent to this process alone (SIGTERM from a
//! service manager) would otherwise leave them running, and nodes a `start` control command
//! relaunched run in their own sessions, out of reach of the terminal. The handlers are
//! installed before the first node starts, so no signal can slip in between. (The nodes
//! this process started share its process group: a terminal's Ctrl-C reaches them directly
//! too, and they stop on it themselves.)

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};

use super::{Cluster, ClusterError, ClusterSpec, io};
use crate::wire::{BackendConfig, BackendKind, FsyncPolicy, RaftArgs, RaftSettings};

/// How long `up` waits for the new cluster to elect a leader.
const ELECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// `raftbench cluster up`'s flags.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    pub nodes: u64,
    /// What to run: raftbench nodes, or etcd members (from the `etcd` binary on PATH, as
    /// a peer to compare against; same as `--backend etcd`).
    #[arg(long, value_enum, default_value = "raftbench")]
    pub target: TargetArg,
    /// Storage engine of raftbench nodes (or `etcd`).
    #[arg(long, default_value = "memwal")]
    pub backend: BackendKind,
    /// When writes are forced to disk: always | never.
    #[arg(long, default_value = "always")]
    pub fsync: FsyncPolicy,
    /// How fast a background snapshot may write its file, per second (0: no limit).
    #[arg(long, default_value = "32MiB")]
    pub snapshot_write_rate: bytesize::ByteSize,
    /// Directory for the nodes' data and logs (created; must not hold another cluster).
    /// With `--cluster`: where the control log goes (default: beside the cluster file).
    #[arg(long, required_unless_present = "cluster")]
    pub dir: Option<PathBuf>,
    /// Start the nodes of this cluster file on the [[host]] entries they name (over ssh
    /// or the host's command prefix), instead of a local cluster.
    #[arg(long, conflicts_with_all = ["nodes", "target", "backend", "fsync", "cluster_file"])]
    pub cluster: Option<PathBuf>,
    #[command(flatten)]
    pub raft: RaftArgs,
    /// Write the cluster file here (default: <dir>/cluster.toml).
    #[arg(long)]
    pub cluster_file: Option<PathBuf>,
}

/// `cluster up --target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TargetArg {
    Raftbench,
    Etcd,
}

/// Completes on the first of SIGINT, SIGTERM and SIGHUP, naming it.
pub(crate) struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    pub(crate) fn install() -> Result<Signals, ClusterError> {
        let sig =
            |kind, name: &str| signal(kind).map_err(io(format!("installing the {name} handler")));
        Ok(Signals {
            int: sig(SignalKind::interrupt(), "SIGINT")?,
            term: sig(SignalKind::terminate(), "SIGTERM")?,
            hup: sig(SignalKind::hangup(), "SIGHUP")?,
        })
    }

    pub(crate) async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
            _ = self.hup.recv() => "SIGHUP",
        }
    }
}

/// Run `raftbench cluster up` with `binary` as the nodes' executable; what a user should
/// see goes to `out`. Returns once a signal stopped every node.
pub fn up(args: &UpArgs, binary: PathBuf, out: &mut dyn Write) -> Result<(), ClusterError> {
    if let Some(file) = &args.cluster {
        let log_dir = args.dir.clone().unwrap_or_else(|| {
            file.parent()
                .unwrap_or(std::path::Path::new("."))
                .join("control")
        });
        return crate::remote::up::up_on_hosts(file, &log_dir, out);
    }
    let Some(dir) = args.dir.clone() else {
        return Err(ClusterError::Invalid(
            "--dir is needed for a local cluster".into(),
        ));
    };
    let rt = tokio::runtime::Runtime::new().map_err(io("starting the tokio runtime"))?;
    let kind = match args.target {
        TargetArg::Etcd => BackendKind::Etcd,
        TargetArg::Raftbench => args.backend,
    };
    let backend = BackendConfig {
        snapshot_write_rate: args.snapshot_write_rate,
        ..BackendConfig::new(kind, "").with_fsync(args.fsync)
    };
    backend.validate().map_err(ClusterError::Invalid)?;
    let spec = ClusterSpec {
        nodes: args.nodes,
        backend,
        raft: args.raft.apply(RaftSettings::default()),
        dir: dir.clone(),
        binary,
        fault_disks: None,
        node_args: Vec::new(),
    };
    let mut signals = {
        let _guard = rt.enter();
        Signals::install()?
    };
    let mut cluster = Cluster::start(spec)?;
    let waited = rt.block_on(async {
        tokio::select! {
            l = cluster.wait_for_leader(ELECTION_TIMEOUT) => Ok(l),
            s = signals.recv() => Err(s),
        }
    });
    let leader = match waited {
        Err(sig) => {
            cluster.shutdown();
            return Err(ClusterError::Invalid(format!(
                "{sig} before the cluster elected a leader; nodes stopped"
            )));
        }
        Ok(Ok(l)) => l,
        Ok(Err(e)) => {
            cluster.shutdown();
            return Err(ClusterError::Invalid(format!(
                "{e}; see the node logs in {}",
                dir.join("logs").display()
            )));
        }
    };
    // The cluster file, with control commands (signals to the recorded pids), so that
    // `raftbench run --cluster` can drive this cluster like one on other hosts.
    let controlled = cluster.controlled_cluster_file();
    for path in std::iter::once(cluster.cluster_file_path()).chain(args.cluster_file.clone()) {
        controlled.save(&path)?;
    }
    let print = |out: &mut dyn Write, line: String| {
        writeln!(out, "{line}").map_err(io("writing to stdout"))
    };
    print(
        out,
        format!(
            "raftbench cluster: {} nodes, backend {} (fsync {}), data in {}",
            args.nodes,
            kind,
            args.fsync,
            dir.display()
        ),
    )?;
    for n in cluster.nodes().values() {
        let role = if n.id == leader { "  (leader)" } else { "" };
        print(
            out,
            format!(
                "  node {}: http://{}  peer {}  pid {}{role}",
                n.id,
                n.client_addr,
                n.peer_addr,
                cluster.pid(n.id).unwrap_or(0)
            ),
        )?;
    }
    let url = cluster.url(leader)?;
    print(
        out,
        format!("cluster file: {}", cluster.cluster_file_path().display()),
    )?;
    if let Some(secret) = cluster.secret_path() {
        print(
            out,
            format!(
                "cluster secret: {} (peers prove it to each other; admin calls off loopback carry it)",
                secret.display()
            ),
        )?;
    }
    print(out, "try:".into())?;
    if kind.is_peer() {
        // etcd's JSON gateway (base64 keys and values): no etcdctl needed.
        let addr = &cluster.node(leader)?.client_addr;
        print(
            out,
            format!(
                "  curl -X POST http://{addr}/v3/kv/put -d '{{\"key\":\"Z3JlZXRpbmc=\",\"value\":\"aGVsbG8=\"}}'"
            ),
        )?;
        print(
            out,
            format!("  curl -X POST http://{addr}/v3/kv/range -d '{{\"key\":\"Z3JlZXRpbmc=\"}}'"),
        )?;
        print(out, format!("  curl http://{addr}/metrics"))?;
    } else {
        print(
            out,
            format!("  curl -X PUT --data-binary hello {url}/kv/greeting"),
        )?;
        print(out, format!("  curl {url}/kv/greeting"))?;
        print(out, format!("  curl {url}/status"))?;
    }
    print(out, "Ctrl-C (or SIGTERM, SIGHUP) stops every node.".into())?;
    out.flush().map_err(io("writing to stdout"))?;
    let sig = rt.block_on(async {
        loop {
            tokio::select! {
                s = signals.recv() => return s,
                _ = tokio::time::sleep(Duration::from_millis(100)) => cluster.reap(),
            }
        }
    });
    // The nodes are stopped even when nobody reads our output any more (a closed pipe).
    let _ = writeln!(out, "{sig}: stopping...").and_then(|()| out.flush());
    cluster.shutdown();
    // Nodes relaunched by a `start` control command are not our children.
    cluster.stop_relaunched();
    Ok(())
}
