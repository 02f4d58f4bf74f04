//! Node configuration: from `raftbench node` flags or from a cluster file.
//!
//! A **cluster file** (TOML) lists every node of a cluster with its addresses, plus the
//! settings all nodes share. `raftbench node --cluster-file F --id N` starts node N of it;
//! the local launcher writes one for the clusters it starts, and the workload runner reads
//! it to find a live cluster.
//!
//! ```toml
//! tick_ms = 50
//! election_ticks = 10
//! snapshot_interval = 100000
//! compact_lag = 5000
//! [backend]
//! kind = "rocksdb"
//! fsync = "always"
//! [[node]]
//! id = 1
//! peer_addr = "127.0.0.1:7001"
//! client_addr = "127.0.0.1:8001"
//! data_dir = "data/1"          # optional; `raftbench node --data-dir` overrides
//! [node.control]                # optional: how `raftbench run --cluster` controls the node
//! kill = "ssh db1 sudo systemctl kill -s KILL raftbench"
//! start = "ssh db1 sudo systemctl start raftbench"
//! ```
//!
//! Control commands (`start`, `stop`, `kill`, `pause`, `resume`) run through `sh -c` with
//! the node's id and addresses in `RAFTBENCH_NODE_ID`, `RAFTBENCH_CLIENT_ADDR`,
//! `RAFTBENCH_PEER_ADDR` and `RAFTBENCH_DATA_DIR`; they are how a run injects failures into
//! a cluster it did not start.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::storage::BackendConfig;

/// Why a node configuration is unusable.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{0}")]
    Invalid(String),
    #[error("reading cluster file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cluster file {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
}

/// One member's addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberAddrs {
    /// Where peers reach its raft transport.
    pub peer_addr: String,
    /// Where clients reach its HTTP API.
    pub client_addr: String,
}

/// Raft timing and log-retention settings shared by a cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftSettings {
    /// Milliseconds per raft tick.
    pub tick_ms: u64,
    /// Ticks without a leader before a follower campaigns (heartbeats go every tick).
    pub election_ticks: usize,
    /// Take a snapshot (and compact the log) every this many applied entries; 0 = never.
    pub snapshot_interval: u64,
    /// Entries kept below the snapshot when compacting, so slightly lagging followers catch
    /// up from the log instead of a snapshot.
    pub compact_lag: u64,
}

impl Default for RaftSettings {
    fn default() -> Self {
        RaftSettings {
            tick_ms: 50,
            election_ticks: 10,
            // etcd's defaults: snapshots are expensive (the whole state), so take them rarely
            // and keep enough log for a briefly lagging follower to catch up without one.
            snapshot_interval: 100_000,
            compact_lag: 5_000,
        }
    }
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
}

impl NodeConfig {
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

/// A node entry of a cluster file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterNode {
    pub id: u64,
    pub peer_addr: String,
    pub client_addr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "ControlCommands::is_empty")]
    pub control: ControlCommands,
}

/// Shell commands that control a node raftbench did not start (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlCommands {
    /// Start the node's process on its data directory (used by `restart`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// Stop it gracefully (SIGTERM or the service manager's stop).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<String>,
    /// Kill it without warning (SIGKILL), as in a crash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill: Option<String>,
    /// Freeze it (SIGSTOP): it keeps its sockets but stops answering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<String>,
    /// Unfreeze a paused node (SIGCONT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<String>,
}

impl ControlCommands {
    pub fn is_empty(&self) -> bool {
        *self == ControlCommands::default()
    }

    /// The command for `name` (`start`, `stop`, `kill`, `pause`, `resume`).
    pub fn get(&self, name: &str) -> Option<&str> {
        match name {
            "start" => self.start.as_deref(),
            "stop" => self.stop.as_deref(),
            "kill" => self.kill.as_deref(),
            "pause" => self.pause.as_deref(),
            "resume" => self.resume.as_deref(),
            _ => None,
        }
    }
}

/// A cluster file (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    #[serde(flatten)]
    pub raft: RaftSettings,
    pub backend: BackendConfig,
    #[serde(rename = "node")]
    pub nodes: Vec<ClusterNode>,
}

impl ClusterFile {
    /// Read and check a cluster file.
    pub fn load(path: &Path) -> Result<ClusterFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let file: ClusterFile = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut ids = BTreeSet::new();
        for n in &file.nodes {
            if n.id == 0 || !ids.insert(n.id) {
                return Err(ConfigError::Parse {
                    path: path.to_path_buf(),
                    message: format!("node id {} is 0 or listed twice", n.id),
                });
            }
        }
        Ok(file)
    }

    /// The members as `(id, addresses)`.
    pub fn members(&self) -> Vec<(u64, MemberAddrs)> {
        self.nodes
            .iter()
            .map(|n| {
                (
                    n.id,
                    MemberAddrs {
                        peer_addr: n.peer_addr.clone(),
                        client_addr: n.client_addr.clone(),
                    },
                )
            })
            .collect()
    }

    /// Write as TOML.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let text = toml::to_string_pretty(self).expect("cluster file serialises");
        std::fs::write(path, text)
    }
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

    #[test]
    fn cluster_file_round_trips() {
        let t = tempfile::tempdir().unwrap();
        let f = ClusterFile {
            raft: RaftSettings::default(),
            backend: BackendConfig::new(crate::storage::BackendKind::Memwal, ""),
            nodes: vec![ClusterNode {
                id: 1,
                peer_addr: "127.0.0.1:1".into(),
                client_addr: "127.0.0.1:2".into(),
                data_dir: None,
                control: ControlCommands {
                    kill: Some("kill -9 $(cat /tmp/pid)".into()),
                    ..Default::default()
                },
            }],
        };
        let path = t.path().join("c.toml");
        f.save(&path).unwrap();
        assert_eq!(ClusterFile::load(&path).unwrap(), f);
    }
}
