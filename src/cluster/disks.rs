//! [`FaultDisks`]: the nodes' data directories on raftbench's fault file system
//! ([`crate::faultfs`]), for workloads that cut the power or fail the disk.
//!
//! Each node's data directory is the mount point of its own `raftbench faultfs mount`
//! child process, over a source directory `disk-<id>/` beside it in the cluster directory;
//! its control socket lives in a short private directory (socket paths are limited to 108
//! bytes). A mount outlives `kill`s of its node, as a disk outlives a process: unsynced
//! writes stay pending, and a later power cut still drops them. A power cut freezes the
//! mount and drops what was not durable; once the node is dead the mount is unmounted, and
//! the node's next start mounts it again, so it sees only what was durable.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tracing::{info, warn};

use super::control::{DiskFault, PowerCut};
use super::{ClusterError, Member, io};
use crate::faultfs::{self, FailKind, FaultCommand, FaultFsChild, MetadataMode, MountOptions};

/// The fault-file-system mounts of a local cluster's nodes.
pub struct FaultDisks {
    binary: PathBuf,
    dir: PathBuf,
    metadata: MetadataMode,
    /// Where the control sockets are.
    sockets: tempfile::TempDir,
    mounted: BTreeMap<u64, FaultFsChild>,
}

impl FaultDisks {
    /// Fault disks for the cluster in `dir`, mounted by `binary faultfs mount`. Fails, before
    /// anything is mounted, when this machine cannot mount FUSE file systems.
    pub fn new(binary: &Path, dir: &Path, metadata: MetadataMode) -> Result<Self, ClusterError> {
        faultfs::preflight().map_err(|e| ClusterError::Invalid(e.to_string()))?;
        // Mounts of an earlier run that died with its file systems are cleaned first.
        // Only mounts of fault disks (a `node-<id>` directory beside its cluster's file):
        // a dead mount of anything else is its owner's to clean.
        let fault_disk = |m: &Path| {
            m.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("node-"))
                && m.parent().is_some_and(|d| d.join("cluster.toml").exists())
        };
        match faultfs::clean_dead_mounts(fault_disk) {
            Ok(cleaned) if !cleaned.is_empty() => {
                warn!(?cleaned, "unmounted fault disks a crashed run left behind")
            }
            Ok(_) => {}
            Err(e) => warn!("could not clean dead fault-disk mounts: {e}"),
        }
        let sockets = tempfile::Builder::new()
            .prefix("raftbench-faultfs-")
            .tempdir()
            .map_err(io(
                "creating a directory for the fault disks' control sockets",
            ))?;
        Ok(FaultDisks {
            binary: binary.to_path_buf(),
            dir: dir.to_path_buf(),
            metadata,
            sockets,
            mounted: BTreeMap::new(),
        })
    }

    /// How directory changes are treated, for `run.json`.
    pub fn metadata(&self) -> MetadataMode {
        self.metadata
    }

    /// Mount node's disk on its data directory unless it is mounted.
    pub fn ensure_mounted(&mut self, node: &Member) -> Result<(), ClusterError> {
        if self.mounted.contains_key(&node.id) {
            return Ok(());
        }
        let src = self.dir.join(format!("disk-{}", node.id));
        for d in [&src, &node.data_dir] {
            std::fs::create_dir_all(d).map_err(io(format!("creating {}", d.display())))?;
        }
        let sock = self.sockets.path().join(format!("{}.sock", node.id));
        let log = node
            .log_path
            .with_file_name(format!("faultfs-{}.log", node.id));
        let opts = MountOptions {
            metadata: self.metadata,
            control: Some(sock.clone()),
        };
        let child = FaultFsChild::spawn(&self.binary, &src, &node.data_dir, &sock, &opts, &log)
            .map_err(|e| ClusterError::Node {
                id: node.id,
                message: format!("mounting its fault disk: {e}"),
            })?;
        info!(id = node.id, src = %src.display(), mnt = %node.data_dir.display(), "fault disk mounted");
        self.mounted.insert(node.id, child);
        Ok(())
    }

    fn call(&self, id: u64, cmd: &FaultCommand) -> Result<faultfs::FaultReply, ClusterError> {
        let child = self.mounted.get(&id).ok_or_else(|| ClusterError::Node {
            id,
            message: "its fault disk is not mounted".into(),
        })?;
        child.client().call(cmd).map_err(|e| ClusterError::Node {
            id,
            message: format!("fault disk {}: {e}", cmd.name()),
        })
    }

    /// Freeze node `id`'s disk and drop what it had not made durable (`torn`: a seeded part
    /// of it reaches the disk). The node's process is still there, failing every I/O.
    pub fn cut(&mut self, id: u64, torn: Option<u64>) -> Result<PowerCut, ClusterError> {
        let cmd = match torn {
            Some(seed) => FaultCommand::Torn { seed },
            None => FaultCommand::PowerLoss,
        };
        let reply = self.call(id, &cmd)?;
        let loss = reply.loss.unwrap_or_default();
        Ok(PowerCut {
            dropped_bytes: Some(loss.dropped_bytes),
            undone_metadata_ops: Some(loss.undone_metadata_ops),
        })
    }

    /// Unmount node `id`'s disk (after its process is gone).
    pub fn unmount(&mut self, id: u64) {
        if let Some(child) = self.mounted.remove(&id)
            && let Err(e) = child.unmount()
        {
            warn!(id, "unmounting the fault disk: {e}");
        }
    }

    /// Inject `fault` into node `id`'s disk; returns what the disk reports afterwards.
    pub fn fault(&mut self, id: u64, fault: &DiskFault) -> Result<String, ClusterError> {
        let cmd = match fault {
            DiskFault::Slow {
                latency,
                duration,
                writes,
                files,
            } => FaultCommand::Slow {
                latency_ms: latency.as_millis() as u64,
                duration_ms: duration.map(|d| d.as_millis() as u64),
                files: files.clone(),
                writes: *writes,
            },
            DiskFault::FailFsyncs { count } => FaultCommand::Fail {
                kind: FailKind::Eio,
                count: Some(*count),
            },
            DiskFault::Full => FaultCommand::Fail {
                kind: FailKind::Enospc,
                count: None,
            },
            DiskFault::Heal => FaultCommand::Heal,
        };
        let reply = self.call(id, &cmd)?;
        if !reply.ok {
            return Err(ClusterError::Node {
                id,
                message: format!(
                    "fault disk refused {}: {}",
                    cmd.name(),
                    reply.error.unwrap_or_default()
                ),
            });
        }
        Ok(format!("disk {}", cmd.name()))
    }

    /// Unmount every disk (the nodes must be stopped).
    pub fn unmount_all(&mut self) {
        let ids: Vec<u64> = self.mounted.keys().copied().collect();
        for id in ids {
            self.unmount(id);
        }
    }
}

impl Drop for FaultDisks {
    fn drop(&mut self) {
        self.unmount_all();
    }
}
