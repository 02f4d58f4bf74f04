//! Cluster files: the nodes of a cluster, their addresses, and the settings they share.
//!
//! A **cluster file** (TOML) lists every node of a cluster with its addresses, plus the
//! settings all nodes share. `raftbench node --cluster-file F --id N` starts node N of it;
//! `raftbench cluster up` writes one for the clusters it starts, and `raftbench run
//! --cluster F` reads one to find (and control) a live cluster.
//!
//! ```toml
//! secret_file = "cluster.secret"  # optional; relative to this file's directory
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
//! a cluster it did not start. Nodes ignore them (they are the harness's), but they live in
//! the same file so that one file describes a cluster to both wings.
//!
//! `secret_file` names the cluster's secret ([`ClusterSecret`]): nodes prove it to each
//! other and require it of admin calls on non-loopback binds, and the harness sends it.
//! The secret lives in a file of its own (mode 0600) so that the cluster file can be shared
//! and committed.
//!
//! A cluster file may also name **hosts** (`[[host]]`, see [`super::hosts`]): each node
//! then says on which `host` it runs, and `[[generator]]` entries name the hosts that run
//! load generators. `raftbench cluster up --cluster F` starts the nodes on their hosts and
//! `raftbench run W --cluster F` starts the generators there, from one coordinator.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::backend::BackendConfig;
use super::hosts::{GeneratorHost, Host};
use super::secret::{ClusterSecret, SecretError};

/// Why a cluster file could not be read, parsed or written.
#[derive(Debug, Error)]
pub enum ClusterFileError {
    #[error("reading cluster file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cluster file {}: {source}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("cluster file {}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("writing cluster file {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
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

/// Command-line overrides of [`RaftSettings`], one flag per setting (shared by every
/// command that starts nodes).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RaftArgs {
    /// Snapshot + compact every this many applied entries (0 = never).
    #[arg(long)]
    pub snapshot_interval: Option<u64>,
    /// Entries kept below a snapshot when compacting.
    #[arg(long)]
    pub compact_lag: Option<u64>,
    /// Milliseconds per raft tick.
    #[arg(long)]
    pub tick_ms: Option<u64>,
    /// Ticks before a follower without a leader campaigns.
    #[arg(long)]
    pub election_ticks: Option<usize>,
}

impl RaftArgs {
    /// `base` with every given flag applied.
    pub fn apply(&self, base: RaftSettings) -> RaftSettings {
        RaftSettings {
            tick_ms: self.tick_ms.unwrap_or(base.tick_ms),
            election_ticks: self.election_ticks.unwrap_or(base.election_ticks),
            snapshot_interval: self.snapshot_interval.unwrap_or(base.snapshot_interval),
            compact_lag: self.compact_lag.unwrap_or(base.compact_lag),
        }
    }
}

/// A node entry of a cluster file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterNode {
    pub id: u64,
    pub peer_addr: String,
    pub client_addr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// The `[[host]]` it runs on, when the file names hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "ControlCommands::is_empty")]
    pub control: ControlCommands,
}

/// Shell commands that control a node raftbench did not start (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
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
    /// Cut the node's power (used by `power-loss`): its disk must lose every write not yet
    /// synced and the process must be gone when the command exits — for example
    /// `raftbench faultfs ctl SOCK power-loss && kill -9 $(cat node.pid)` for a node whose
    /// data is on `raftbench faultfs mount`, or a real power switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_loss: Option<String>,
}

impl ControlCommands {
    pub fn is_empty(&self) -> bool {
        *self == ControlCommands::default()
    }

    /// The command for `name` (`start`, `stop`, `kill`, `pause`, `resume`, `power_loss`).
    pub fn get(&self, name: &str) -> Option<&str> {
        match name {
            "start" => self.start.as_deref(),
            "stop" => self.stop.as_deref(),
            "kill" => self.kill.as_deref(),
            "pause" => self.pause.as_deref(),
            "resume" => self.resume.as_deref(),
            "power_loss" => self.power_loss.as_deref(),
            _ => None,
        }
    }
}

/// `text` with every string of `redact` replaced by `[redacted]`.
pub fn redacted(redact: &[String], text: &str) -> String {
    redact
        .iter()
        .fold(text.to_string(), |t, r| t.replace(r.as_str(), "[redacted]"))
}

/// A cluster file (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    /// The cluster's secret file, relative to the cluster file's directory (or absolute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    #[serde(flatten)]
    pub raft: RaftSettings,
    pub backend: BackendConfig,
    /// Strings replaced by `[redacted]` wherever `run.json` records this file (a token in
    /// a control command, say).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redact: Vec<String>,
    #[serde(rename = "node")]
    pub nodes: Vec<ClusterNode>,
    #[serde(rename = "host", default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<Host>,
    #[serde(rename = "generator", default, skip_serializing_if = "Vec::is_empty")]
    pub generators: Vec<GeneratorHost>,
}

impl ClusterFile {
    /// Read and check a cluster file.
    pub fn load(path: &Path) -> Result<ClusterFile, ClusterFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ClusterFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let file: ClusterFile =
            toml::from_str(&text).map_err(|source| ClusterFileError::Parse {
                path: path.to_path_buf(),
                source,
            })?;
        file.check().map_err(|message| ClusterFileError::Invalid {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(file)
    }

    /// What is wrong with the file's entries: ids, and hosts that nodes and generators
    /// name.
    fn check(&self) -> Result<(), String> {
        let mut ids = BTreeSet::new();
        for n in &self.nodes {
            if n.id == 0 || !ids.insert(n.id) {
                return Err(format!("node id {} is 0 or listed twice", n.id));
            }
        }
        if !self.hosts.is_empty() && self.backend.kind.is_peer() {
            return Err(format!(
                "[[host]] entries start raftbench nodes; a {} cluster on hosts is attached \
                 with its own control commands instead",
                self.backend.kind
            ));
        }
        let mut names = BTreeSet::new();
        for h in &self.hosts {
            h.check()?;
            if !names.insert(h.name.as_str()) {
                return Err(format!("host {} is listed twice", h.name));
            }
        }
        let known = |what: String, host: &str| {
            if names.contains(host) {
                Ok(())
            } else if names.is_empty() {
                Err(format!(
                    "{what} names host {host:?}, and the file lists no [[host]]"
                ))
            } else {
                Err(format!(
                    "{what} names host {host:?}, which is not among the [[host]] entries ({})",
                    names.iter().copied().collect::<Vec<_>>().join(", ")
                ))
            }
        };
        for n in &self.nodes {
            match &n.host {
                Some(h) => known(format!("node {}", n.id), h)?,
                None if !self.hosts.is_empty() => {
                    return Err(format!(
                        "node {} names no host, and the file lists hosts: give each node a \
                         `host`",
                        n.id
                    ));
                }
                None => {}
            }
        }
        for (i, g) in self.generators.iter().enumerate() {
            known(format!("generator {}", i + 1), &g.host)?;
        }
        if let Some(r) = self.redact.iter().find(|r| r.is_empty()) {
            return Err(format!("redact lists an empty string {r:?}"));
        }
        Ok(())
    }

    /// The host entry `name`.
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// `text` with every string of `redact` replaced by `[redacted]`.
    pub fn redacted(&self, text: &str) -> String {
        redacted(&self.redact, text)
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

    /// Where the secret file of the cluster file at `path` is, if it names one.
    pub fn secret_path(&self, path: &Path) -> Option<PathBuf> {
        let f = self.secret_file.as_ref()?;
        Some(match path.parent() {
            Some(dir) if f.is_relative() => dir.join(f),
            _ => f.clone(),
        })
    }

    /// The secret of the cluster file at `path`, if it names one.
    pub fn secret(&self, path: &Path) -> Result<Option<ClusterSecret>, SecretError> {
        self.secret_path(path)
            .map(|p| ClusterSecret::load(&p))
            .transpose()
    }

    /// Write as TOML.
    pub fn save(&self, path: &Path) -> Result<(), ClusterFileError> {
        let write = |source| ClusterFileError::Write {
            path: path.to_path_buf(),
            source,
        };
        let text = toml::to_string_pretty(self)
            .map_err(|e| write(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        std::fs::write(path, text).map_err(write)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_file_round_trips() {
        let t = tempfile::tempdir().unwrap();
        let f = ClusterFile {
            secret_file: Some("cluster.secret".into()),
            raft: RaftSettings::default(),
            backend: BackendConfig::new(crate::wire::BackendKind::Memwal, ""),
            redact: Vec::new(),
            hosts: Vec::new(),
            generators: Vec::new(),
            nodes: vec![ClusterNode {
                id: 1,
                peer_addr: "127.0.0.1:1".into(),
                client_addr: "127.0.0.1:2".into(),
                data_dir: None,
                host: None,
                control: ControlCommands {
                    kill: Some("kill -9 $(cat /tmp/pid)".into()),
                    ..Default::default()
                },
            }],
        };
        let path = t.path().join("c.toml");
        f.save(&path).unwrap();
        let back = ClusterFile::load(&path).unwrap();
        assert_eq!(back, f);
        assert_eq!(
            back.secret_path(&path).unwrap(),
            t.path().join("cluster.secret")
        );
    }

    #[test]
    fn bad_cluster_files_are_named() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("c.toml");
        let node = |id, host| {
            format!("[[node]]\nid = {id}\npeer_addr = \"{host}:1\"\nclient_addr = \"{host}:2\"\n")
        };
        let base = format!("[backend]\nkind = \"memwal\"\n{}", node(1, "a"));
        std::fs::write(&path, format!("{base}{}", node(1, "b"))).unwrap();
        let e = ClusterFile::load(&path).unwrap_err().to_string();
        assert!(e.contains("listed twice") && e.contains("c.toml"), "{e}");
        std::fs::write(&path, format!("tick_msec = 5\n{base}")).unwrap();
        let e = ClusterFile::load(&path).unwrap_err().to_string();
        assert!(e.contains("tick_msec") && e.contains("c.toml"), "{e}");
        let e = ClusterFile::load(&t.path().join("missing.toml")).unwrap_err();
        assert!(matches!(e, ClusterFileError::Read { .. }), "{e}");
    }

    #[test]
    fn hosts_are_checked_against_their_transport_and_named_by_nodes_and_generators() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("hosts.toml");
        let host = |name: &str, extra: &str| {
            format!(
                "[[host]]\nname = \"{name}\"\ntransport = \"ssh\"\naddress = \"10.0.0.1\"\n\
                 workdir = \"/srv/rb\"\n{extra}"
            )
        };
        let node = |id: u64, host: &str| {
            format!(
                "[[node]]\nid = {id}\nhost = \"{host}\"\npeer_addr = \"10.0.0.1:{id}1\"\n\
                 client_addr = \"10.0.0.1:{id}2\"\n"
            )
        };
        let base = "[backend]\nkind = \"memwal\"\n";
        let good = format!(
            "{base}{}{}{}{}[[generator]]\nhost = \"g1\"\n",
            node(1, "db1"),
            node(2, "db1"),
            host("db1", "identity = \"id\"\n"),
            host("g1", "")
        );
        std::fs::write(&path, &good).unwrap();
        let f = ClusterFile::load(&path).unwrap();
        assert_eq!(f.hosts.len(), 2);
        assert_eq!(f.nodes[1].host.as_deref(), Some("db1"));
        assert_eq!(f.generators[0].host, "g1");
        let saved = t.path().join("saved.toml");
        f.save(&saved).unwrap();
        assert_eq!(ClusterFile::load(&saved).unwrap(), f);
        let bad = |text: String, says: &str| {
            std::fs::write(&path, &text).unwrap();
            let e = ClusterFile::load(&path).unwrap_err().to_string();
            assert!(e.contains(says) && e.contains("hosts.toml"), "{says}: {e}");
        };
        bad(good.replace("host = \"g1\"\n", "host = \"g9\"\n"), "\"g9\"");
        bad(
            format!(
                "{base}{}{}",
                node(1, "db1"),
                host("db1", "command = \"x\"\n")
            ),
            "belongs to transport \"command\"",
        );
        bad(
            format!(
                "{base}{}{}",
                node(1, "db1"),
                host("db1", "").replace("address = \"10.0.0.1\"\n", "")
            ),
            "needs an `address`",
        );
        bad(
            format!(
                "{base}{}{}{}",
                node(1, "db1"),
                host("db1", ""),
                host("db1", "")
            ),
            "listed twice",
        );
        bad(
            format!(
                "{base}{}{}",
                node(1, "db1").replace("host = \"db1\"\n", ""),
                host("db1", "")
            ),
            "names no host",
        );
        bad(
            format!("{base}{}{}", node(1, "db1"), host("db1", "")).replace("/srv/rb", "srv"),
            "absolute",
        );
        bad(
            format!("{base}{}{}", node(1, "db1"), host("db1", "")).replace("memwal", "etcd"),
            "start raftbench nodes",
        );
    }

    #[test]
    fn redacted_strings_do_not_reach_what_is_recorded() {
        let mut f = ClusterFile {
            secret_file: None,
            raft: RaftSettings::default(),
            backend: BackendConfig::new(crate::wire::BackendKind::Memwal, ""),
            redact: vec!["s3cr3t".into()],
            nodes: Vec::new(),
            hosts: Vec::new(),
            generators: Vec::new(),
        };
        assert_eq!(
            f.redacted("curl -H 'token: s3cr3t' x"),
            "curl -H 'token: [redacted]' x"
        );
        f.redact.clear();
        assert_eq!(f.redacted("s3cr3t"), "s3cr3t");
    }
}
