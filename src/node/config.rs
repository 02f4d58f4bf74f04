//! Node configuration: from `raftbench node` flags or from a cluster file.
//!
//! The cluster file's format is shared vocabulary: [`crate::wire::cluster_file`].

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;

use thiserror::Error;

use crate::transport::Limits;
use crate::transport::frames::MIN_MAX_FRAME;
use crate::wire::{
    BackendConfig, BackendKind, ClusterFile, ClusterFileError, ClusterSecret, FsyncPolicy,
    MemberAddrs, RaftArgs, RaftSettings, SecretError,
};

/// Why a node configuration is unusable.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    ClusterFile(#[from] ClusterFileError),
    #[error(transparent)]
    Secret(#[from] SecretError),
}

/// When the admin endpoints (membership, snapshot, transfer-leader, partition, heal)
/// require the cluster secret as a bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum AdminAuth {
    /// Only when the client address is not a loopback address.
    #[default]
    Auto,
    /// Always (on a shared host, loopback is reachable by every local user).
    Always,
}

/// `raftbench node`'s flags. Merged with the cluster file, if any, by
/// [`NodeConfig::from_args`] (flags win).
#[derive(Debug, clap::Args)]
pub struct NodeArgs {
    /// Raft id of this node (1 or more).
    #[arg(long)]
    pub id: u64,
    /// Take addresses, peers and settings from this cluster file (flags override it).
    #[arg(long)]
    pub cluster_file: Option<PathBuf>,
    /// Listen address of the raft transport.
    #[arg(long)]
    pub peer_addr: Option<String>,
    /// Listen address of the HTTP API.
    #[arg(long)]
    pub client_addr: Option<String>,
    /// Peer address other nodes should use (default: --peer-addr).
    #[arg(long)]
    pub advertise_peer_addr: Option<String>,
    /// Client address clients should be redirected to (default: --client-addr).
    #[arg(long)]
    pub advertise_client_addr: Option<String>,
    /// Initial members: ID=PEER_ADDR/CLIENT_ADDR,... (this node included).
    #[arg(long)]
    pub peers: Option<String>,
    /// Start empty and wait to be added with POST /members/{id} on the leader.
    #[arg(long)]
    pub join: bool,
    /// Node directory (the backend's data goes to <data-dir>/storage).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Storage engine.
    #[arg(long)]
    pub backend: Option<BackendKind>,
    /// When writes are forced to disk: always | never.
    #[arg(long)]
    pub fsync: Option<FsyncPolicy>,
    /// How fast a background snapshot may write its file, per second (0: no limit;
    /// default: the cluster file's, else 32MiB).
    #[arg(long)]
    pub snapshot_write_rate: Option<bytesize::ByteSize>,
    /// The cluster secret (default: the cluster file's `secret_file`). Without one, peers
    /// are not authenticated: a warning at start-up and in /status.
    #[arg(long)]
    pub cluster_secret_file: Option<PathBuf>,
    /// When admin endpoints require the secret as a bearer token: auto (on non-loopback
    /// client binds) | always.
    #[arg(long, value_enum, default_value_t = AdminAuth::Auto)]
    pub admin_auth: AdminAuth,
    /// Largest peer frame sent or accepted; larger messages (snapshots) travel in chunks.
    #[arg(long, default_value = "32MiB")]
    pub peer_max_frame: bytesize::ByteSize,
    #[command(flatten)]
    pub raft: RaftArgs,
}

/// Everything one `raftbench node` process needs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Raft id, never 0.
    pub id: u64,
    /// Address the raft transport listens on.
    pub peer_listen: SocketAddr,
    /// Address the HTTP API listens on.
    pub client_listen: SocketAddr,
    /// This node's addresses as other nodes and clients should use them (differs from the
    /// listen addresses when binding 0.0.0.0 on a multi-host setup).
    pub advertise: MemberAddrs,
    /// Initial members (including this node) of a new cluster; empty with `join`.
    pub peers: Vec<(u64, MemberAddrs)>,
    /// Start empty and wait to be added with `POST /members/{id}`.
    pub join: bool,
    /// Node directory; the backend's data lives in `<data_dir>/storage`.
    pub data_dir: PathBuf,
    pub backend: BackendConfig,
    pub raft: RaftSettings,
    /// The cluster secret; `None` runs unauthenticated (quick local tries).
    pub secret: Option<ClusterSecret>,
    /// When admin endpoints require the secret.
    pub admin_auth: AdminAuth,
    /// Peer transport limits.
    pub peer_limits: Limits,
}

impl NodeConfig {
    /// Whether admin requests must carry the secret: always, or when clients reach this
    /// node on something other than loopback. Without a secret, such a node refuses every
    /// admin request (there is nothing it could check).
    pub fn admin_token_required(&self) -> bool {
        self.admin_auth == AdminAuth::Always || !self.client_listen.ip().is_loopback()
    }

    /// Build a node's configuration from its flags and, if given, its cluster file (flags
    /// win), and check it.
    pub fn from_args(args: NodeArgs) -> Result<NodeConfig, ConfigError> {
        let file = args
            .cluster_file
            .as_deref()
            .map(ClusterFile::load)
            .transpose()?;
        let me = file
            .as_ref()
            .and_then(|f| f.nodes.iter().find(|n| n.id == args.id).cloned());
        let id = args.id;
        let pick = |flag: Option<String>, from_file: Option<String>, what: &str| {
            flag.or(from_file).ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "node {id}: no {what}: pass --{what} or list the node in --cluster-file"
                ))
            })
        };
        let peer_addr = pick(
            args.peer_addr,
            me.as_ref().map(|n| n.peer_addr.clone()),
            "peer-addr",
        )?;
        let client_addr = pick(
            args.client_addr,
            me.as_ref().map(|n| n.client_addr.clone()),
            "client-addr",
        )?;
        let data_dir = args
            .data_dir
            .or_else(|| me.as_ref().and_then(|n| n.data_dir.clone()))
            .ok_or_else(|| ConfigError::Invalid(format!("node {id}: no --data-dir given")))?;
        let peers = match (&args.peers, &file) {
            (Some(p), _) => parse_peers(p)?,
            (None, Some(f)) if !args.join => f.members(),
            _ => Vec::new(),
        };
        let mut backend = file
            .as_ref()
            .map(|f| f.backend.clone())
            .unwrap_or_else(|| BackendConfig::new(BackendKind::Memwal, ""));
        if let Some(kind) = args.backend {
            backend.kind = kind;
        }
        if let Some(fsync) = args.fsync {
            backend.fsync = fsync;
        }
        if let Some(rate) = args.snapshot_write_rate {
            backend.snapshot_write_rate = rate;
        }
        let raft = args
            .raft
            .apply(file.as_ref().map(|f| f.raft.clone()).unwrap_or_default());
        let secret = match (&args.cluster_secret_file, &file, &args.cluster_file) {
            (Some(p), _, _) => Some(ClusterSecret::load(p)?),
            (None, Some(f), Some(path)) => f.secret(path)?,
            _ => None,
        };
        let max_frame = usize::try_from(args.peer_max_frame.as_u64()).unwrap_or(usize::MAX);
        if max_frame < MIN_MAX_FRAME {
            return Err(ConfigError::Invalid(format!(
                "--peer-max-frame {} is below the minimum of {}",
                args.peer_max_frame,
                bytesize::ByteSize(MIN_MAX_FRAME as u64)
            )));
        }
        let cfg = NodeConfig {
            id,
            peer_listen: resolve(&peer_addr)?,
            client_listen: resolve(&client_addr)?,
            advertise: MemberAddrs {
                peer_addr: args.advertise_peer_addr.unwrap_or(peer_addr),
                client_addr: args.advertise_client_addr.unwrap_or(client_addr),
            },
            peers,
            join: args.join,
            data_dir,
            backend,
            raft,
            secret,
            admin_auth: args.admin_auth,
            peer_limits: Limits {
                max_frame,
                ..Limits::default()
            },
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Check the settings a node cannot run with.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.id == 0 {
            return bad("node id must be at least 1 (raft reserves 0 for \"none\")".into());
        }
        if self.raft.tick_ms == 0 {
            return bad("tick_ms must be at least 1".into());
        }
        if self.raft.election_ticks < 3 {
            return bad(format!(
                "election_ticks must be at least 3 (heartbeats go every tick), got {}",
                self.raft.election_ticks
            ));
        }
        if !self.join && !self.peers.iter().any(|(id, _)| *id == self.id) {
            return bad(format!(
                "node {} is not among the initial peers {:?}; list it, or start it with --join",
                self.id,
                self.peers.iter().map(|p| p.0).collect::<Vec<_>>()
            ));
        }
        let mut seen = BTreeSet::new();
        for (id, _) in &self.peers {
            if *id == 0 {
                return bad("peer id 0 is not allowed".into());
            }
            if !seen.insert(*id) {
                return bad(format!("peer id {id} is listed twice"));
            }
        }
        Ok(())
    }
}

/// Parse `--peers "1=127.0.0.1:7001/127.0.0.1:8001,2=..."`: id, peer address and, after a
/// slash, the client address.
pub fn parse_peers(s: &str) -> Result<Vec<(u64, MemberAddrs)>, ConfigError> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let err = || {
            ConfigError::Invalid(format!(
                "bad peer {part:?}: expected ID=PEER_ADDR/CLIENT_ADDR, e.g. 1=127.0.0.1:7001/127.0.0.1:8001"
            ))
        };
        let (id, addrs) = part.split_once('=').ok_or_else(err)?;
        let id: u64 = id.trim().parse().map_err(|_| err())?;
        let (peer, client) = addrs.split_once('/').ok_or_else(err)?;
        out.push((
            id,
            MemberAddrs {
                peer_addr: peer.trim().to_string(),
                client_addr: client.trim().to_string(),
            },
        ));
    }
    Ok(out)
}

/// Resolve `addr` (e.g. `127.0.0.1:0` or `localhost:8000`) to a socket address.
pub fn resolve(addr: &str) -> Result<SocketAddr, ConfigError> {
    use std::net::ToSocketAddrs;
    addr.to_socket_addrs()
        .map_err(|e| ConfigError::Invalid(format!("cannot resolve {addr:?}: {e}")))?
        .next()
        .ok_or_else(|| ConfigError::Invalid(format!("{addr:?} resolves to no address")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_and_reject() {
        let p = parse_peers("1=127.0.0.1:7001/127.0.0.1:8001, 2=h:7/h:8").unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].1.client_addr, "h:8");
        for bad in ["1=127.0.0.1:7001", "x=a/b", "1:a/b"] {
            let e = parse_peers(bad).unwrap_err().to_string();
            assert!(e.contains("ID=PEER_ADDR/CLIENT_ADDR"), "{e}");
        }
    }
}
