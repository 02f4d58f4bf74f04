//! Running commands on a host through its transport: a command line for this machine's
//! `sh -c` that runs a script on the host (over `ssh`, through a prefix such as
//! `ip netns exec NS`, or here), plus the two copies the coordinator needs (a file to the
//! host, a directory back), both through the same transport, so that any host that can
//! run a command can be used.
//!
//! The script always runs under the host's `sh -c`, whatever the login shell there, and is
//! quoted for each shell it passes through ([`crate::cluster::sh_quote`]), so paths with
//! spaces survive.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::cluster::sh_quote as quote;
use crate::wire::{Host, HostTransport};

/// How long ssh may take to connect before the host counts as unreachable.
pub const CONNECT_TIMEOUT_S: u64 = 5;

/// Why a command on a host failed.
#[derive(Debug, Error)]
pub enum ExecError {
    #[error("host {host}: could not run {what}: {source}")]
    Spawn {
        host: String,
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("host {host}: {what} took longer than {timeout:?}")]
    Timeout {
        host: String,
        what: String,
        timeout: Duration,
    },
    #[error("host {host}: {what} failed ({status}){}", stderr_tail(stderr))]
    Failed {
        host: String,
        what: String,
        status: String,
        stderr: String,
    },
    #[error("host {host}: {message}")]
    Invalid { host: String, message: String },
}

fn stderr_tail(stderr: &str) -> String {
    let s = stderr.trim();
    if s.is_empty() {
        return String::new();
    }
    let tail: Vec<&str> = s.lines().rev().take(5).collect();
    format!(
        ": {}",
        tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
    )
}

/// One host, reached through its transport. Relative paths of the host entry (identity,
/// known_hosts) are relative to `base`, the cluster file's directory.
#[derive(Debug, Clone)]
pub struct HostExec {
    pub host: Host,
    base: PathBuf,
}

impl HostExec {
    pub fn new(host: Host, base: &Path) -> HostExec {
        HostExec {
            host,
            base: base.to_path_buf(),
        }
    }

    pub fn name(&self) -> &str {
        &self.host.name
    }

    fn local_path(&self, p: &Path) -> PathBuf {
        if p.is_relative() {
            self.base.join(p)
        } else {
            p.to_path_buf()
        }
    }

    /// The raftbench binary on the host, as a shell word.
    pub fn binary(&self) -> String {
        self.host
            .binary
            .as_ref()
            .map_or_else(|| "raftbench".to_string(), |b| quote(&b.to_string_lossy()))
    }

    /// A path inside the host's working directory, as a shell word.
    pub fn in_workdir(&self, rel: &str) -> String {
        quote(&self.host.workdir.join(rel).to_string_lossy())
    }

    /// The ssh arguments before the remote command (BatchMode, ConnectTimeout, keep-alives
    /// that notice a dead link within 15 s, and the entry's identity and host keys).
    fn ssh_args(&self) -> Vec<String> {
        let h = &self.host;
        let mut a: Vec<String> = vec![
            "ssh".into(),
            "-T".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            format!("ConnectTimeout={CONNECT_TIMEOUT_S}"),
            "-o".into(),
            "ServerAliveInterval=5".into(),
            "-o".into(),
            "ServerAliveCountMax=3".into(),
            "-o".into(),
            "LogLevel=ERROR".into(),
        ];
        if let Some(port) = h.port {
            a.extend(["-p".into(), port.to_string()]);
        }
        if let Some(id) = &h.identity {
            a.extend([
                "-i".into(),
                self.local_path(id).to_string_lossy().into_owned(),
                "-o".into(),
                "IdentitiesOnly=yes".into(),
            ]);
        }
        if let Some(kh) = &h.known_hosts {
            // ssh splits this option's value at spaces and expands `%` tokens: quote the
            // path and escape `%`.
            let path = self.local_path(kh).display().to_string().replace('%', "%%");
            a.extend([
                "-o".into(),
                format!("UserKnownHostsFile=\"{path}\""),
                "-o".into(),
                "StrictHostKeyChecking=yes".into(),
            ]);
        }
        for o in &h.ssh_options {
            a.extend(["-o".into(), o.clone()]);
        }
        let address = h.address.clone().unwrap_or_default();
        a.push(match &h.user {
            Some(u) => format!("{u}@{address}"),
            None => address,
        });
        a
    }

    /// A command line for this machine's `sh -c` that runs `script` under the host's
    /// `sh -c`.
    pub fn line(&self, script: &str) -> String {
        let remote = format!("sh -c {}", quote(script));
        match self.host.transport {
            HostTransport::Local => remote,
            HostTransport::Command => {
                format!("{} {remote}", self.host.command.as_deref().unwrap_or(""))
            }
            HostTransport::Ssh => {
                let mut words: Vec<String> = self.ssh_args().iter().map(|w| quote(w)).collect();
                // ssh joins its remaining arguments into the line the remote shell parses.
                words.push(quote(&remote));
                words.join(" ")
            }
        }
    }

    /// `script` on the host as a process (stdin, stdout and stderr piped; killed when
    /// dropped).
    pub fn command(&self, script: &str) -> Command {
        let mut c = Command::new("sh");
        // `exec`: the process is ssh (or the prefix) itself, not a shell around it, so
        // killing it ends the session.
        c.arg("-c")
            .arg(format!("exec {}", self.line(script)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        c
    }

    /// Run `script` on the host with `input` on its stdin; its stdout, or why it failed.
    pub async fn run(
        &self,
        what: &str,
        script: &str,
        input: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, ExecError> {
        let mut child = self
            .command(script)
            .spawn()
            .map_err(|source| ExecError::Spawn {
                host: self.name().into(),
                what: what.into(),
                source,
            })?;
        let mut stdin = child.stdin.take();
        let input = input.to_vec();
        let feed = async move {
            if let Some(s) = stdin.as_mut() {
                let _ = s.write_all(&input).await;
                let _ = s.shutdown().await;
            }
            drop(stdin);
        };
        let out = tokio::time::timeout(timeout, async {
            let (_, out) = tokio::join!(feed, child.wait_with_output());
            out
        })
        .await
        .map_err(|_| ExecError::Timeout {
            host: self.name().into(),
            what: what.into(),
            timeout,
        })?
        .map_err(|source| ExecError::Spawn {
            host: self.name().into(),
            what: what.into(),
            source,
        })?;
        if !out.status.success() {
            return Err(ExecError::Failed {
                host: self.name().into(),
                what: what.into(),
                status: match out.status.code() {
                    // ssh's own failures (unreachable, refused, bad key) exit 255.
                    Some(255) if self.host.transport == HostTransport::Ssh => {
                        "ssh could not reach or log in to the host: exit 255".into()
                    }
                    Some(c) => format!("exit {c}"),
                    None => "killed by a signal".into(),
                },
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(out.stdout)
    }

    /// Write `bytes` to `rel` in the host's working directory (created if need be), with
    /// `mode`; written to a temporary name and renamed, so a reader never sees half a file.
    pub async fn put_file(&self, rel: &str, bytes: &[u8], mode: u32) -> Result<(), ExecError> {
        let path = self.in_workdir(rel);
        let tmp = self.in_workdir(&format!("{rel}.tmp"));
        let script = format!(
            "mkdir -p \"$(dirname {path})\" && umask 077 && cat > {tmp} && chmod {mode:o} {tmp} && mv {tmp} {path}"
        );
        self.run(
            &format!("copying {rel}"),
            &script,
            bytes,
            Duration::from_secs(60),
        )
        .await
        .map(drop)
    }

    /// Copy the directory `rel` of the host's working directory into `local` (created),
    /// as a tar stream through the transport.
    pub async fn fetch_dir(&self, rel: &str, local: &Path) -> Result<(), ExecError> {
        let tar = self
            .run(
                &format!("fetching {rel}"),
                &format!("tar -C {} -cf - .", self.in_workdir(rel)),
                &[],
                Duration::from_secs(600),
            )
            .await?;
        std::fs::create_dir_all(local).map_err(|source| ExecError::Spawn {
            host: self.name().into(),
            what: format!("creating {}", local.display()),
            source,
        })?;
        let mut untar = Command::new("tar")
            .arg("-C")
            .arg(local)
            .args(["-xf", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| ExecError::Spawn {
                host: self.name().into(),
                what: "tar -x".into(),
                source,
            })?;
        if let Some(mut s) = untar.stdin.take() {
            let _ = s.write_all(&tar).await;
        }
        let out = untar
            .wait_with_output()
            .await
            .map_err(|source| ExecError::Spawn {
                host: self.name().into(),
                what: "tar -x".into(),
                source,
            })?;
        if !out.status.success() {
            return Err(ExecError::Failed {
                host: self.name().into(),
                what: format!("unpacking {rel} into {}", local.display()),
                status: format!("{}", out.status),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(transport: HostTransport) -> Host {
        Host {
            transport,
            ..Host::local("h1", Path::new("/w d"))
        }
    }

    #[tokio::test]
    async fn local_and_command_hosts_run_scripts_under_sh_with_their_quoting() {
        let t = tempfile::tempdir().unwrap();
        let local = HostExec::new(host(HostTransport::Local), t.path());
        let out = local
            .run(
                "echo",
                "printf '%s|' \"a b\" 'c'\"'\"'d'",
                &[],
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "a b|c'd|");
        // A prefix that runs its arguments: `env` stands for `ip netns exec NS`.
        let mut h = host(HostTransport::Command);
        h.command = Some("env RAFTBENCH_TEST=1".into());
        let prefixed = HostExec::new(h, t.path());
        let out = prefixed
            .run(
                "env",
                "echo \"$RAFTBENCH_TEST\"; cat",
                b"in",
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "1\nin");
        let e = local
            .run(
                "failing",
                "echo oops >&2; exit 3",
                &[],
                Duration::from_secs(5),
            )
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("h1") && e.contains("exit 3") && e.contains("oops"),
            "{e}"
        );
        let e = local
            .run("sleeping", "sleep 5", &[], Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(matches!(e, ExecError::Timeout { .. }), "{e}");
    }

    #[tokio::test]
    async fn files_go_to_the_workdir_and_directories_come_back() {
        let t = tempfile::tempdir().unwrap();
        let mut h = host(HostTransport::Local);
        h.workdir = t.path().join("host dir");
        let local = HostExec::new(h, t.path());
        local.put_file("a/b.txt", b"hello", 0o600).await.unwrap();
        let written = t.path().join("host dir/a/b.txt");
        assert_eq!(std::fs::read(&written).unwrap(), b"hello");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&written).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let back = t.path().join("back");
        local.fetch_dir("a", &back).await.unwrap();
        assert_eq!(std::fs::read(back.join("b.txt")).unwrap(), b"hello");
    }

    #[test]
    fn ssh_lines_carry_batch_mode_the_identity_and_the_quoted_script() {
        let mut h = host(HostTransport::Ssh);
        h.address = Some("10.0.0.1".into());
        h.user = Some("bench".into());
        h.port = Some(2222);
        h.identity = Some("keys/id".into());
        h.known_hosts = Some("/etc/k h%".into());
        let line = HostExec::new(h, Path::new("/cfg")).line("echo 'x y'");
        // The words ssh receives, once this machine's shell has unquoted the line.
        let words = shlex::split(&line).unwrap();
        let has = |pair: [&str; 2]| words.windows(2).any(|w| w == pair);
        for pair in [
            ["-o", "BatchMode=yes"],
            ["-o", "ConnectTimeout=5"],
            ["-p", "2222"],
            ["-i", "/cfg/keys/id"],
            ["-o", "UserKnownHostsFile=\"/etc/k h%%\""],
            ["-o", "StrictHostKeyChecking=yes"],
        ] {
            assert!(has(pair), "{pair:?} missing from {words:?}");
        }
        assert_eq!(words[0], "ssh");
        assert_eq!(words[words.len() - 2], "bench@10.0.0.1");
        // ssh hands the remote shell the last word as its line, which it splits into
        // `sh -c SCRIPT` with the script intact.
        let remote = shlex::split(words.last().unwrap()).unwrap();
        assert_eq!(remote, ["sh", "-c", "echo 'x y'"]);
    }
}
