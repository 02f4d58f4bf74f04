//! The control socket: one JSON [`FaultCommand`] per line in, one [`FaultReply`] per line
//! out, over a Unix socket whose path is given at mount.
//!
//! A Unix socket (not a signal, not a file in the mount) because a command must be answered
//! — a power loss reports what it dropped — and because the harness that sends it is
//! another process. A request that does not parse gets an error reply; the server never
//! goes down because of what a client sent.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::FaultFsError;
use super::faults::{CounterSnapshot, SlowStatus};
use super::model::{LossReport, MetadataMode};

/// A command to the file system.
///
/// JSON: `{"cmd":"power-loss"}`, `{"cmd":"torn","seed":7}`,
/// `{"cmd":"slow","latency_ms":50,"duration_ms":10000,"files":"wal/","writes":false}`,
/// `{"cmd":"fail","kind":"eio","count":3}`, `{"cmd":"fail","kind":"enospc"}`,
/// `{"cmd":"heal"}`, `{"cmd":"status"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case", deny_unknown_fields)]
pub enum FaultCommand {
    /// Freeze the file system and drop everything not durable.
    PowerLoss,
    /// Like `power-loss`, but a seeded subset of the dirty pages survives.
    Torn { seed: u64 },
    /// Add `latency_ms` to fsyncs (and writes, with `writes`) of the files under `files`
    /// (a prefix or glob relative to the mount's root; all files when absent), for
    /// `duration_ms` (until `heal` when absent).
    Slow {
        latency_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration_ms: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        files: Option<String>,
        #[serde(default)]
        writes: bool,
    },
    /// `eio`: the next `count` (default 1) fsyncs fail with EIO and sync nothing;
    /// `enospc`: writes fail with ENOSPC until `heal`.
    Fail {
        kind: FailKind,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        count: Option<u64>,
    },
    /// End every `slow` and `fail` fault.
    Heal,
    /// Report the state (also part of every other reply).
    Status,
}

impl FaultCommand {
    /// The command's name, as in its JSON `cmd`.
    pub fn name(&self) -> &'static str {
        match self {
            FaultCommand::PowerLoss => "power-loss",
            FaultCommand::Torn { .. } => "torn",
            FaultCommand::Slow { .. } => "slow",
            FaultCommand::Fail { .. } => "fail",
            FaultCommand::Heal => "heal",
            FaultCommand::Status => "status",
        }
    }
}

/// The kinds of `fail` fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailKind {
    Eio,
    Enospc,
}

/// The file system's state, as `status` reports it (and every reply carries).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultStatus {
    /// After a power loss: every operation fails with EIO until unmounted.
    pub frozen: bool,
    /// When directory-entry changes become durable.
    pub mode: MetadataMode,
    /// Bytes a power loss would drop now.
    pub dirty_bytes: u64,
    /// Files with unsynced data.
    pub dirty_files: u64,
    /// Directory-entry changes not yet durable.
    pub pending_metadata_ops: u64,
    pub slow: Option<SlowStatus>,
    /// fsyncs still to fail with EIO.
    pub fail_eio_remaining: u64,
    /// Whether writes fail with ENOSPC.
    pub enospc: bool,
    pub counters: CounterSnapshot,
    /// The source directory and the mount point.
    pub src: PathBuf,
    pub mountpoint: PathBuf,
}

/// The answer to a command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultReply {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What `power-loss` or `torn` dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<LossReport>,
    /// The state after the command (absent when the request did not parse).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<FaultStatus>,
}

impl FaultReply {
    /// An error reply.
    pub fn error(message: impl Into<String>, status: Option<FaultStatus>) -> FaultReply {
        FaultReply {
            ok: false,
            error: Some(message.into()),
            loss: None,
            status,
        }
    }
}

impl FaultReply {
    /// The reply if it is ok, else [`FaultFsError::Rejected`] naming `cmd`.
    pub fn checked(self, cmd: &FaultCommand) -> Result<FaultReply, FaultFsError> {
        if self.ok {
            Ok(self)
        } else {
            Err(FaultFsError::Rejected {
                cmd: cmd.name().to_string(),
                message: self.error.unwrap_or_default(),
            })
        }
    }
}

/// What executes commands: the mounted file system.
pub type Handler = Arc<dyn Fn(&FaultCommand) -> FaultReply + Send + Sync>;

/// The longest request line accepted.
const MAX_LINE: u64 = 64 * 1024;

/// A running control server. Stopping it (or dropping it) removes the socket file.
#[derive(Debug)]
pub struct ControlServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ControlServer {
    /// Listens on `path`. An existing socket file nobody answers on is replaced; one
    /// somebody answers on is refused (another faultfs uses it).
    pub fn start(path: &Path, handler: Handler) -> Result<ControlServer, FaultFsError> {
        if let Ok(m) = std::fs::symlink_metadata(path) {
            if !m.file_type().is_socket() {
                return Err(FaultFsError::Invalid(format!(
                    "control socket path {} exists and is not a socket",
                    path.display()
                )));
            }
            if UnixStream::connect(path).is_ok() {
                return Err(FaultFsError::Invalid(format!(
                    "control socket {} is in use by a running process",
                    path.display()
                )));
            }
            std::fs::remove_file(path).map_err(FaultFsError::io("removing stale socket", path))?;
        }
        let listener = UnixListener::bind(path).map_err(FaultFsError::io("binding", path))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("faultfs-control".into())
            .spawn(move || accept_loop(listener, stop2, handler))
            .map_err(FaultFsError::io("starting the control thread for", path))?;
        Ok(ControlServer {
            path: path.to_path_buf(),
            stop,
            thread: Some(thread),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops accepting connections and removes the socket file.
    pub fn stop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = UnixStream::connect(&self.path);
        let _ = thread.join();
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: UnixListener, stop: Arc<AtomicBool>, handler: Handler) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "faultfs: control accept failed");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let handler = Arc::clone(&handler);
        let spawned = std::thread::Builder::new()
            .name("faultfs-control-conn".into())
            .spawn(move || serve(conn, &handler));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "faultfs: could not serve a control connection");
        }
    }
}

/// Answers each request line of one connection until it closes (or idles for a minute).
fn serve(conn: UnixStream, handler: &Handler) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    loop {
        let mut line = Vec::new();
        match (&mut reader).take(MAX_LINE).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let reply = if line.last() != Some(&b'\n') && line.len() as u64 >= MAX_LINE {
            FaultReply::error(format!("request longer than {MAX_LINE} bytes"), None)
        } else {
            match serde_json::from_slice::<FaultCommand>(&line) {
                Ok(cmd) => handler(&cmd),
                Err(e) => FaultReply::error(format!("bad request: {e}"), None),
            }
        };
        let mut text = match serde_json::to_vec(&reply) {
            Ok(t) => t,
            Err(e) => format!("{{\"ok\":false,\"error\":\"reply not encodable: {e}\"}}").into(),
        };
        text.push(b'\n');
        if out.write_all(&text).is_err() {
            return;
        }
        if line.last() != Some(&b'\n') {
            return; // the rest of an overlong line is not a request
        }
    }
}

/// A blocking client of the control socket. Each call is one connection.
#[derive(Clone, Debug)]
pub struct ControlClient {
    sock: PathBuf,
    timeout: Duration,
}

impl ControlClient {
    /// A client of the socket at `sock`, with a 30 s timeout per call (a power loss of a
    /// large data directory takes a while).
    pub fn new(sock: impl Into<PathBuf>) -> ControlClient {
        ControlClient {
            sock: sock.into(),
            timeout: Duration::from_secs(30),
        }
    }

    /// The same client with another timeout per call.
    pub fn with_timeout(mut self, timeout: Duration) -> ControlClient {
        self.timeout = timeout;
        self
    }

    /// The socket's path.
    pub fn socket(&self) -> &Path {
        &self.sock
    }

    /// Sends `cmd` and returns the reply, whether it says ok or not.
    pub fn call_raw(&self, cmd: &FaultCommand) -> Result<FaultReply, FaultFsError> {
        let err = |message: &str| {
            let sock = self.sock.clone();
            let message = message.to_string();
            move |e: std::io::Error| FaultFsError::Control {
                sock,
                message,
                source: Some(e),
            }
        };
        let mut conn = UnixStream::connect(&self.sock).map_err(err("connecting"))?;
        conn.set_read_timeout(Some(self.timeout))
            .and_then(|()| conn.set_write_timeout(Some(self.timeout)))
            .map_err(err("setting timeouts"))?;
        let mut line = serde_json::to_vec(cmd).map_err(|e| FaultFsError::Control {
            sock: self.sock.clone(),
            message: format!("encoding {}: {e}", cmd.name()),
            source: None,
        })?;
        line.push(b'\n');
        conn.write_all(&line).map_err(err("sending"))?;
        let mut reply = Vec::new();
        BufReader::new(conn)
            .take(16 << 20)
            .read_until(b'\n', &mut reply)
            .map_err(err("waiting for the reply"))?;
        serde_json::from_slice(&reply).map_err(|e| FaultFsError::Control {
            sock: self.sock.clone(),
            message: format!(
                "reply to {} is not a FaultReply ({e}): {:?}",
                cmd.name(),
                String::from_utf8_lossy(&reply)
            ),
            source: None,
        })
    }

    /// Sends `cmd`; a reply that is not ok becomes [`FaultFsError::Rejected`].
    pub fn call(&self, cmd: &FaultCommand) -> Result<FaultReply, FaultFsError> {
        self.call_raw(cmd)?.checked(cmd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_from_the_documented_json() {
        let cases = [
            (r#"{"cmd":"power-loss"}"#, FaultCommand::PowerLoss),
            (r#"{"cmd":"torn","seed":7}"#, FaultCommand::Torn { seed: 7 }),
            (
                r#"{"cmd":"slow","latency_ms":50,"duration_ms":10000,"files":"wal/","writes":false}"#,
                FaultCommand::Slow {
                    latency_ms: 50,
                    duration_ms: Some(10000),
                    files: Some("wal/".into()),
                    writes: false,
                },
            ),
            (
                r#"{"cmd":"slow","latency_ms":5}"#,
                FaultCommand::Slow {
                    latency_ms: 5,
                    duration_ms: None,
                    files: None,
                    writes: false,
                },
            ),
            (
                r#"{"cmd":"fail","kind":"eio","count":3}"#,
                FaultCommand::Fail {
                    kind: FailKind::Eio,
                    count: Some(3),
                },
            ),
            (
                r#"{"cmd":"fail","kind":"enospc"}"#,
                FaultCommand::Fail {
                    kind: FailKind::Enospc,
                    count: None,
                },
            ),
            (r#"{"cmd":"heal"}"#, FaultCommand::Heal),
            (r#"{"cmd":"status"}"#, FaultCommand::Status),
        ];
        for (json, cmd) in cases {
            assert_eq!(
                serde_json::from_str::<FaultCommand>(json).unwrap(),
                cmd,
                "{json}"
            );
            let back = serde_json::to_string(&cmd).unwrap();
            assert_eq!(serde_json::from_str::<FaultCommand>(&back).unwrap(), cmd);
        }
        for bad in [
            r#"{"cmd":"torn"}"#,
            r#"{"cmd":"slow","latency":50}"#,
            r#"{"cmd":"explode"}"#,
            r#"{"cmd":"fail","kind":"eperm"}"#,
            "not json",
        ] {
            assert!(serde_json::from_str::<FaultCommand>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_server_answers_good_and_bad_requests_and_removes_its_socket() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("ctl.sock");
        let handler: Handler = Arc::new(|cmd: &FaultCommand| match cmd {
            FaultCommand::Heal => FaultReply::error("no", None),
            _ => FaultReply {
                ok: true,
                error: None,
                loss: None,
                status: None,
            },
        });
        let mut server = ControlServer::start(&sock, Arc::clone(&handler)).unwrap();
        assert!(
            ControlServer::start(&sock, Arc::clone(&handler)).is_err(),
            "in use"
        );
        let client = ControlClient::new(&sock).with_timeout(Duration::from_secs(5));
        assert!(client.call(&FaultCommand::Status).unwrap().ok);
        let err = client.call(&FaultCommand::Heal).unwrap_err();
        assert!(matches!(err, FaultFsError::Rejected { .. }), "{err}");
        // Garbage, then a good request on the same connection.
        let mut raw = UnixStream::connect(&sock).unwrap();
        raw.write_all(b"{\"cmd\":\"nope\"}\n{\"cmd\":\"status\"}\n")
            .unwrap();
        let mut lines = BufReader::new(raw).lines();
        let bad: FaultReply = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        assert!(!bad.ok && bad.error.unwrap().contains("bad request"));
        let good: FaultReply = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        assert!(good.ok);
        server.stop();
        assert!(!sock.exists());
        assert!(client.call(&FaultCommand::Status).is_err());
    }
}
