//! faultfs: a FUSE file system that can lose what was not fsynced, as a power cut would.
//!
//! A raftbench node killed with `kill -9` loses nothing its kernel already accepted: the
//! page cache survives the process. A power cut also takes the page cache. To test the
//! stronger claim ("no acknowledged write is lost after a power loss"), a node's data
//! directory is put on faultfs, a pass-through to a source directory (SRC) that keeps
//! enough undo state to throw away, on command, everything not made durable — the approach
//! of LazyFS (used by etcd's robustness tests and Jepsen).
//!
//! - [`model`] — the durability model: per-file page pre-images and synced lengths, the
//!   log of non-durable directory-entry changes, power loss and torn write-back. Pure (no
//!   FUSE) and unit-tested on plain directories.
//! - [`faults`] — slow and failing fsyncs, a full disk, the counters.
//! - [`fs`] — the FUSE glue ([`fuser::Filesystem`]): a write-through pass-through to SRC.
//! - [`control`] — the JSON-lines control socket ([`FaultCommand`] in, [`FaultReply`] out)
//!   and its blocking client.
//! - [`mount`] — [`preflight`], [`clean_stale_mounts`], in-process mounts ([`FaultFs`]),
//!   the child-process wrapper the harness uses ([`FaultFsChild`]) and the
//!   foreground mount of `raftbench faultfs mount`;
//! - [`cmd`] — the `raftbench faultfs` arguments and commands.
//!
//! What a power loss means here: after [`FaultCommand::PowerLoss`] the file system is
//! frozen (every operation fails with EIO) and SRC holds exactly the durable state; unmount
//! and mount again (a "reboot") to go on. faultfs belongs to the harness wing: the node
//! never knows it runs on it.

use std::path::PathBuf;

use thiserror::Error;

pub mod cmd;
pub mod control;
pub mod faults;
pub mod fs;
pub mod model;
pub mod mount;

pub use control::{ControlClient, FailKind, FaultCommand, FaultReply, FaultStatus};
pub use model::{LossReport, MetadataMode};
pub use mount::{
    FaultFs, FaultFsChild, MountOptions, MountedFaultFs, clean_dead_mounts, clean_stale_mounts,
    preflight,
};

/// The file-system type faultfs mounts show in `/proc/self/mountinfo`
/// (`fuse.raftbench-faultfs`): how stale mounts are recognized.
pub const FSTYPE: &str = "fuse.raftbench-faultfs";

/// The source name (`fsname`) of faultfs mounts.
pub const FSNAME: &str = "raftbench-faultfs";

/// What went wrong mounting, controlling or unmounting faultfs.
#[derive(Debug, Error)]
pub enum FaultFsError {
    /// An operating-system call failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// FUSE cannot be used on this machine: what is missing and how to fix it.
    #[error("faultfs cannot mount here: {what}; {fix}")]
    Preflight { what: String, fix: String },

    /// The arguments of a mount are not acceptable (non-empty mount point, nesting...).
    #[error("faultfs: {0}")]
    Invalid(String),

    /// The control socket could not be reached or answered nonsense.
    #[error("faultfs control socket {}: {message}", sock.display())]
    Control {
        sock: PathBuf,
        message: String,
        #[source]
        source: Option<std::io::Error>,
    },

    /// The file system refused a command.
    #[error("faultfs refused {cmd}: {message}")]
    Rejected { cmd: String, message: String },

    /// The faultfs child process failed (or died); the tail of its log says why.
    #[error("faultfs process ({}): {message}\n--- last lines of {} ---\n{tail}", mnt.display(), log.display())]
    Child {
        mnt: PathBuf,
        message: String,
        log: PathBuf,
        tail: String,
    },

    /// A mount is still present after every way of unmounting it was tried.
    #[error("faultfs mount {} is still present: {message}", mnt.display())]
    StillMounted { mnt: PathBuf, message: String },
}

impl FaultFsError {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> FaultFsError {
        let path = path.into();
        move |source| FaultFsError::Io { op, path, source }
    }
}
