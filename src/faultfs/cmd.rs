//! `raftbench faultfs ...`: the command-line arguments and what each command does.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::FaultFsError;
use super::control::{ControlClient, FailKind, FaultCommand};
use super::model::MetadataMode;
use super::mount::{self, MountOptions};

/// `raftbench faultfs ...`
#[derive(Debug, Subcommand)]
pub enum FaultfsCommand {
    /// Mount SRC at MNT through faultfs, in the foreground, until SIGINT/SIGTERM/SIGHUP.
    Mount(MountArgs),
    /// Send a command to a mounted faultfs and print its JSON reply.
    Ctl {
        /// The control socket (`mount --control`).
        sock: PathBuf,
        #[command(subcommand)]
        cmd: CtlCommand,
    },
    /// Unmount faultfs mounts left at or under DIR by a run that died.
    Clean {
        /// Directory to look under.
        dir: PathBuf,
    },
}

/// `raftbench faultfs mount`
#[derive(Debug, Args)]
pub struct MountArgs {
    /// Source directory: where the data really lives.
    pub src: PathBuf,
    /// Mount point: an empty directory, neither inside SRC nor containing it.
    pub mnt: PathBuf,
    /// Serve the control socket at this path.
    #[arg(long)]
    pub control: Option<PathBuf>,
    /// When directory-entry changes become durable: `strict` (once the parent directory
    /// is fsynced) or `durable` (at once).
    #[arg(long, value_enum, default_value_t = MetadataMode::Strict)]
    pub metadata: MetadataMode,
    /// Unmount and exit when process PID, which must be this one's parent, exits (how the
    /// harness's mounts go away with a run that dies, even by SIGKILL).
    #[arg(long, value_name = "PID")]
    pub exit_with_parent: Option<u32>,
}

/// `raftbench faultfs ctl SOCK ...`
#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// Freeze the file system and drop everything not fsynced.
    PowerLoss,
    /// Like power-loss, but a seeded subset of the unsynced pages survives.
    Torn {
        #[arg(long)]
        seed: u64,
    },
    /// Slow down fsyncs (and writes, with --writes).
    Slow {
        /// Added to each matching operation, e.g. 50ms.
        #[arg(long, value_parser = humantime::parse_duration)]
        latency: Duration,
        /// How long the fault lasts (default: until heal), e.g. 10s.
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
        /// Only files under this prefix, or matching this glob, relative to the mount.
        #[arg(long)]
        files: Option<String>,
        /// Slow down writes too.
        #[arg(long)]
        writes: bool,
    },
    /// Make fsyncs fail with EIO, or writes with ENOSPC.
    #[command(subcommand)]
    Fail(FailCommand),
    /// End every slow and fail fault.
    Heal,
    /// Print the state.
    Status,
}

/// `raftbench faultfs ctl SOCK fail ...`
#[derive(Debug, Subcommand)]
pub enum FailCommand {
    /// The next COUNT fsyncs fail with EIO (and sync nothing).
    Eio {
        #[arg(long, default_value_t = 1)]
        count: u64,
    },
    /// Writes fail with ENOSPC until heal.
    Enospc,
}

impl CtlCommand {
    /// The control-socket command this stands for.
    pub fn to_command(&self) -> FaultCommand {
        let ms = |d: &Duration| d.as_millis().try_into().unwrap_or(u64::MAX);
        match self {
            CtlCommand::PowerLoss => FaultCommand::PowerLoss,
            CtlCommand::Torn { seed } => FaultCommand::Torn { seed: *seed },
            CtlCommand::Slow {
                latency,
                duration,
                files,
                writes,
            } => FaultCommand::Slow {
                latency_ms: ms(latency),
                duration_ms: duration.as_ref().map(ms),
                files: files.clone(),
                writes: *writes,
            },
            CtlCommand::Fail(FailCommand::Eio { count }) => FaultCommand::Fail {
                kind: FailKind::Eio,
                count: Some(*count),
            },
            CtlCommand::Fail(FailCommand::Enospc) => FaultCommand::Fail {
                kind: FailKind::Enospc,
                count: None,
            },
            CtlCommand::Heal => FaultCommand::Heal,
            CtlCommand::Status => FaultCommand::Status,
        }
    }
}

/// Runs a `raftbench faultfs` command; replies and cleaned mounts go to `out`.
pub fn run(cmd: &FaultfsCommand, out: &mut dyn Write) -> Result<(), FaultFsError> {
    let w = |e: std::io::Error| FaultFsError::Io {
        op: "writing",
        path: "stdout".into(),
        source: e,
    };
    match cmd {
        FaultfsCommand::Mount(a) => mount::run_foreground(
            &a.src,
            &a.mnt,
            MountOptions {
                metadata: a.metadata,
                control: a.control.clone(),
            },
            a.exit_with_parent,
        ),
        FaultfsCommand::Ctl { sock, cmd } => {
            let cmd = cmd.to_command();
            let reply = ControlClient::new(sock).call_raw(&cmd)?;
            let text = serde_json::to_string_pretty(&reply).unwrap_or_default();
            writeln!(out, "{text}").map_err(w)?;
            reply.checked(&cmd).map(drop)
        }
        FaultfsCommand::Clean { dir } => {
            for m in mount::clean_stale_mounts(dir)? {
                writeln!(out, "unmounted {}", m.display()).map_err(w)?;
            }
            Ok(())
        }
    }
}
