//! Hosts of a multi-host cluster file: where each node and load generator runs, and how
//! the coordinator reaches that host to run commands there.
//!
//! ```toml
//! [[host]]
//! name = "db1"
//! transport = "ssh"                 # "ssh", "local", or "command"
//! address = "10.0.0.11"             # ssh: the host to connect to
//! user = "bench"                    # ssh: optional (ssh's default user otherwise)
//! port = 22                         # ssh: optional
//! identity = "keys/id_ed25519"      # ssh: optional; relative to the cluster file's directory
//! known_hosts = "keys/known_hosts"  # ssh: optional; host keys are then checked strictly
//! ssh_options = ["Compression=no"]  # ssh: optional extra `-o` options
//! workdir = "/srv/raftbench"        # where nodes keep their data and generators write results
//! binary = "/srv/raftbench/raftbench"  # optional: `raftbench` on the host's PATH otherwise
//!
//! [[host]]
//! name = "lab1"
//! transport = "command"
//! command = "ip netns exec lab1"    # a prefix (one simple command): the coordinator appends `sh -c '…'`
//! workdir = "/tmp/lab1"
//!
//! [[node]]
//! id = 1
//! host = "db1"
//! peer_addr = "10.0.0.11:7001"
//! client_addr = "10.0.0.11:8001"
//!
//! [[generator]]
//! host = "load1"
//! ```
//!
//! A node on a host needs no control commands: the coordinator starts, stops, kills,
//! pauses and resumes it through the host's transport (commands written in `[node.control]`
//! still win). ssh always runs with `BatchMode=yes` (never a password prompt in the middle
//! of a run) and a `ConnectTimeout`, so an unreachable host is an error within seconds.
//!
//! Secrets are referenced by path only (`identity`, the cluster's `secret_file`), never
//! held in the file; strings listed in `redact` are replaced in what `run.json` records of
//! the cluster (a token inside a control command, say).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How the coordinator runs commands on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostTransport {
    /// OpenSSH's `ssh`, non-interactive.
    Ssh,
    /// This machine, through `sh -c`.
    Local,
    /// A command prefix that runs what follows it somewhere (`ip netns exec NS`,
    /// `docker exec CONTAINER`, `kubectl exec POD --`): one simple command, which the
    /// coordinator `exec`s (no `VAR=value` in front, no `&&` or pipes), so that killing it
    /// ends what it runs.
    Command,
}

/// A `[[host]]` entry (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    pub name: String,
    pub transport: HostTransport,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_hosts: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssh_options: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// The host's working directory: node data under `node-ID/`, logs, generator results.
    pub workdir: PathBuf,
    /// The raftbench binary on the host (`raftbench` from its PATH when left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<PathBuf>,
}

impl Host {
    /// This machine as a host named `name`, working in `workdir`.
    pub fn local(name: &str, workdir: &std::path::Path) -> Host {
        Host {
            name: name.to_string(),
            transport: HostTransport::Local,
            address: None,
            user: None,
            port: None,
            identity: None,
            known_hosts: None,
            ssh_options: Vec::new(),
            command: None,
            workdir: workdir.to_path_buf(),
            binary: None,
        }
    }

    /// What is wrong with this entry, if anything: the fields its transport needs, and
    /// none it does not use.
    pub fn check(&self) -> Result<(), String> {
        let name = &self.name;
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(format!(
                "host name {name:?}: use letters, digits, '-', '_' and '.' only"
            ));
        }
        let ssh_only = self.address.is_some()
            || self.user.is_some()
            || self.port.is_some()
            || self.identity.is_some()
            || self.known_hosts.is_some()
            || !self.ssh_options.is_empty();
        match self.transport {
            HostTransport::Ssh => {
                if self.address.as_deref().is_none_or(str::is_empty) {
                    return Err(format!("host {name}: transport \"ssh\" needs an `address`"));
                }
                if self.command.is_some() {
                    return Err(format!(
                        "host {name}: `command` belongs to transport \"command\""
                    ));
                }
                if let Some(o) = self.ssh_options.iter().find(|o| !o.contains('=')) {
                    return Err(format!(
                        "host {name}: ssh option {o:?} is not of the form Name=value"
                    ));
                }
            }
            HostTransport::Local | HostTransport::Command => {
                if ssh_only {
                    return Err(format!(
                        "host {name}: address, user, port, identity, known_hosts and \
                         ssh_options belong to transport \"ssh\""
                    ));
                }
                let has_command = self
                    .command
                    .as_deref()
                    .is_some_and(|c| !c.trim().is_empty());
                match (self.transport, has_command) {
                    (HostTransport::Command, false) => {
                        return Err(format!(
                            "host {name}: transport \"command\" needs a `command` prefix, \
                             such as \"ip netns exec NS\""
                        ));
                    }
                    (HostTransport::Local, true) => {
                        return Err(format!(
                            "host {name}: `command` belongs to transport \"command\""
                        ));
                    }
                    _ => {}
                }
            }
        }
        if !self.workdir.is_absolute() {
            return Err(format!(
                "host {name}: workdir {} must be an absolute path on the host",
                self.workdir.display()
            ));
        }
        Ok(())
    }
}

/// A `[[generator]]` entry: a load generator to start on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorHost {
    pub host: String,
}
