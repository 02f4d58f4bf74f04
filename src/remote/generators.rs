//! The coordinator's side of its load generators: one session per generator through its
//! host's transport, the [`super::sync`] protocol over it, and their output streamed to
//! this terminal with the generator's name in front.
//!
//! A generator whose session ends before it has finished is a failed run: every wait here
//! returns an error naming its host, with the end of what it printed. Dropping
//! [`Generators`] kills every session still open, which ends each generator's stdin, and a
//! coordinated generator stops when its stdin ends.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::ChildStdin;
use tokio::sync::{mpsc, oneshot};

use super::clock::ClockOffset;
use super::exec::{ExecError, HostExec};
use super::sync::{Msg, Resumed, unix_ns};

/// Lines of a generator's stderr kept for the error that names it.
const TAIL_LINES: usize = 12;

/// Why the generators could not go on.
#[derive(Debug, Error)]
pub enum GeneratorError {
    #[error("{who}: {what}{}", tail_text(.stderr))]
    Failed {
        who: String,
        what: String,
        stderr: Vec<String>,
    },
    #[error(transparent)]
    Exec(#[from] ExecError),
}

fn tail_text(lines: &[String]) -> String {
    if lines.is_empty() {
        String::new()
    } else {
        format!("; its last output:\n  {}", lines.join("\n  "))
    }
}

/// One generator to start: where, its clock, and the script its host runs.
pub struct GeneratorSpec {
    pub exec: HostExec,
    pub clock: ClockOffset,
    pub script: String,
    /// How it is named in output and errors (`generator 2 on host h5`).
    pub who: String,
}

/// What a session's reader reports.
enum Report {
    Msg(Msg),
    /// A protocol line that did not parse.
    Bad(String),
    /// The session ended: its exit status, and whether it was a success.
    Exited(String, bool),
}

/// Where one generator stands.
struct Gen {
    who: String,
    clock: ClockOffset,
    stdin: ChildStdin,
    stderr: Arc<Mutex<VecDeque<String>>>,
    /// The barrier label it is waiting at, if any.
    ready: Option<String>,
    done: bool,
    resumed: Option<Vec<Resumed>>,
    /// `Some(success)` once its session ended.
    exited: Option<bool>,
    /// Dropping this kills the session.
    _kill: oneshot::Sender<()>,
}

/// The running generators.
pub struct Generators {
    gens: Vec<Gen>,
    rx: mpsc::UnboundedReceiver<(usize, Report)>,
    /// What the run is at, for errors (`phase-2`).
    pub stage: String,
    /// The first failure: (generator, what happened).
    failure: Option<(usize, String)>,
}

impl Generators {
    /// Start every generator's session.
    pub fn launch(specs: Vec<GeneratorSpec>) -> Result<Generators, GeneratorError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut gens = Vec::new();
        for (i, s) in specs.into_iter().enumerate() {
            let mut child =
                s.exec
                    .command(&s.script)
                    .spawn()
                    .map_err(|source| ExecError::Spawn {
                        host: s.exec.name().into(),
                        what: "starting the load generator".into(),
                        source,
                    })?;
            let (Some(stdin), Some(stdout), Some(stderr)) =
                (child.stdin.take(), child.stdout.take(), child.stderr.take())
            else {
                return Err(ExecError::Invalid {
                    host: s.exec.name().into(),
                    message: "the generator's session has no stdin, stdout or stderr".into(),
                }
                .into());
            };
            let tail = Arc::new(Mutex::new(VecDeque::new()));
            // stderr: streamed with the generator's name, and its end kept.
            let (who, keep) = (s.who.clone(), tail.clone());
            let stderr_done = tokio::spawn(async move {
                let mut r = BufReader::new(stderr);
                while let Some(l) = next_line(&mut r).await {
                    eprintln!("[{who}] {l}");
                    let mut t = keep.lock().unwrap_or_else(|e| e.into_inner());
                    if t.len() == TAIL_LINES {
                        t.pop_front();
                    }
                    t.push_back(l);
                }
            });
            // stdout: protocol lines reported, the rest streamed; then, once its stderr
            // is read to the end too (so that an error shows its last words), the exit
            // status.
            let (kill, mut killed) = oneshot::channel::<()>();
            let (who, tx) = (s.who.clone(), tx.clone());
            tokio::spawn(async move {
                let mut r = BufReader::new(stdout);
                let mut kill_sent = false;
                loop {
                    tokio::select! {
                        l = next_line(&mut r) => match l {
                            Some(l) => match Msg::parse(&l) {
                                Ok(Some(m)) => { let _ = tx.send((i, Report::Msg(m))); }
                                Ok(None) => eprintln!("[{who}] {l}"),
                                Err(e) => { let _ = tx.send((i, Report::Bad(e.to_string()))); }
                            },
                            None => break,
                        },
                        _ = &mut killed => {
                            let _ = child.start_kill();
                            kill_sent = true;
                            break;
                        }
                    }
                }
                let status = tokio::select! {
                    s = child.wait() => s,
                    _ = &mut killed, if !kill_sent => {
                        let _ = child.start_kill();
                        child.wait().await
                    }
                };
                // A grandchild may hold stderr open: wait for it a moment only.
                let _ = tokio::time::timeout(Duration::from_secs(1), stderr_done).await;
                let report = match status {
                    Ok(s) => Report::Exited(describe(s), s.success()),
                    Err(e) => Report::Exited(format!("could not be waited for: {e}"), false),
                };
                let _ = tx.send((i, report));
            });
            gens.push(Gen {
                who: s.who,
                clock: s.clock,
                stdin,
                stderr: tail,
                ready: None,
                done: false,
                resumed: None,
                exited: None,
                _kill: kill,
            });
        }
        Ok(Generators {
            gens,
            rx,
            stage: "start".into(),
            failure: None,
        })
    }

    /// How many generators there are.
    pub fn len(&self) -> usize {
        self.gens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.gens.is_empty()
    }

    fn failed(&self, i: usize, what: String) -> GeneratorError {
        let g = &self.gens[i];
        GeneratorError::Failed {
            who: g.who.clone(),
            what,
            stderr: g
                .stderr
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned()
                .collect(),
        }
    }

    /// Take the next report into the generators' state; an error for a generator that
    /// failed or spoke out of turn. `finishing`: a successful exit is expected now. The
    /// first failure sticks: every later call returns it again, so that one lost to a
    /// cancelled wait is not forgotten.
    async fn step(&mut self, finishing: bool) -> Result<(), GeneratorError> {
        if let Some((i, what)) = &self.failure {
            return Err(self.failed(*i, what.clone()));
        }
        let Some((i, r)) = self.rx.recv().await else {
            return Err(GeneratorError::Failed {
                who: "the generators".into(),
                what: "every session's reader has stopped".into(),
                stderr: Vec::new(),
            });
        };
        let stage = self.stage.clone();
        let g = &mut self.gens[i];
        let failure = match r {
            Report::Msg(Msg::Ready(l)) if g.ready.is_none() && !g.done => {
                g.ready = Some(l);
                None
            }
            Report::Msg(Msg::Done) if !g.done && g.ready.is_none() => {
                g.done = true;
                None
            }
            Report::Msg(Msg::Resumed(r)) if g.done && g.resumed.is_none() => {
                g.resumed = Some(r);
                None
            }
            Report::Msg(m) => Some(format!("said {m:?} out of turn at {stage}")),
            Report::Bad(e) => Some(e),
            Report::Exited(status, ok) => {
                g.exited = Some(ok);
                // A run missing a generator is no run.
                (!(ok && finishing && g.resumed.is_some()))
                    .then(|| format!("its session ended ({status}) at {stage}"))
            }
        };
        match failure {
            Some(what) => {
                self.failure = Some((i, what.clone()));
                Err(self.failed(i, what))
            }
            None => Ok(()),
        }
    }

    /// Until a generator fails (never returns otherwise): what to wait on beside the
    /// coordinator's own work, so that a failure stops it at once. Cancel-safe.
    pub async fn watch(&mut self) -> GeneratorError {
        loop {
            if let Err(e) = self.step(false).await {
                return e;
            }
        }
    }

    async fn send(&mut self, i: usize, m: &Msg) -> Result<(), GeneratorError> {
        let line = format!("{}\n", m.line());
        let g = &mut self.gens[i];
        if let Err(e) = g.stdin.write_all(line.as_bytes()).await {
            let what = format!(
                "its session has ended (writing to it: {e}) at {}",
                self.stage
            );
            self.failure = Some((i, what.clone()));
            return Err(self.failed(i, what));
        }
        Ok(())
    }

    /// Wait until every generator is at barrier `label`, then tell each to go `lead` from
    /// now, in its own clock; returns the moment in this machine's clock.
    pub async fn barrier(
        &mut self,
        label: &str,
        lead: Duration,
    ) -> Result<SystemTime, GeneratorError> {
        self.stage = label.to_string();
        while self.gens.iter().any(|g| g.ready.is_none()) {
            self.step(false).await?;
            // Done while others wait at a barrier: it skipped it.
            if let Some(i) = self.gens.iter().position(|g| g.done) {
                return Err(self.failed(i, format!("said DONE out of turn at {label}")));
            }
        }
        for i in 0..self.gens.len() {
            let at = self.gens[i].ready.take();
            if at.as_deref() != Some(label) {
                return Err(self.failed(i, format!("is at {at:?}, expected {label}")));
            }
        }
        let start = SystemTime::now() + lead;
        for i in 0..self.gens.len() {
            // The host's clock reads offset_ms more than ours.
            let ns = unix_ns(start) + (self.gens[i].clock.offset_ms * 1e6) as i128;
            self.send(i, &Msg::Go(label.into(), ns)).await?;
        }
        Ok(start)
    }

    /// Wait until every generator has finished its last phase (said `DONE`).
    pub async fn all_done(&mut self) -> Result<(), GeneratorError> {
        while self.gens.iter().any(|g| !g.done) {
            self.step(false).await?;
        }
        Ok(())
    }

    /// Once every generator is done: tell them the events, collect their answers, and wait
    /// for every session to end successfully. Per generator, its answer per event.
    pub async fn finish(
        &mut self,
        events: &[(usize, u64)],
    ) -> Result<Vec<Vec<Resumed>>, GeneratorError> {
        self.all_done().await?;
        self.stage = "the end".into();
        for i in 0..self.gens.len() {
            self.send(i, &Msg::Events(events.to_vec())).await?;
        }
        while self.gens.iter().any(|g| g.exited.is_none()) {
            self.step(true).await?;
        }
        let mut out = Vec::new();
        for i in 0..self.gens.len() {
            match self.gens[i].resumed.take() {
                Some(r) if r.len() == events.len() => out.push(r),
                r => {
                    let what = format!(
                        "answered {} events, expected {}",
                        r.map_or(0, |r| r.len()),
                        events.len()
                    );
                    return Err(self.failed(i, what));
                }
            }
        }
        Ok(out)
    }
}

/// The next line of `r` (invalid UTF-8 replaced, so that one bad byte does not stop the
/// pipe being drained); `None` at its end or on a read error.
async fn next_line<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Option<String> {
    let mut buf = Vec::new();
    match r.read_until(b'\n', &mut buf).await {
        Ok(0) | Err(_) => None,
        Ok(_) => {
            if buf.last() == Some(&b'\n') {
                buf.pop();
            }
            Some(String::from_utf8_lossy(&buf).into_owned())
        }
    }
}

fn describe(s: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::sync::{PREFIX, RUN};
    use crate::wire::Host;

    /// A generator played by a shell script on this machine (the `local` transport).
    fn spec(script: &str, who: &str) -> GeneratorSpec {
        GeneratorSpec {
            exec: HostExec::new(Host::local(who, &std::env::temp_dir()), Path::new(".")),
            clock: ClockOffset {
                offset_ms: 0.0,
                error_ms: 0.0,
            },
            script: script.into(),
            who: who.into(),
        }
    }

    use std::path::Path;

    /// Speaks the protocol: ready, told to go, done, told the events, answers.
    fn well_behaved(answer: &str) -> String {
        format!(
            r#"echo "{PREFIX}READY run"; read go; case "$go" in "{PREFIX}GO run "*) ;; *) exit 9;; esac
echo "progress line"; echo "{PREFIX}DONE"; read ev; echo "{PREFIX}RESUMED 1 {answer}""#
        )
    }

    #[tokio::test]
    async fn generators_meet_at_a_barrier_and_answer_the_events() {
        let mut g = Generators::launch(vec![
            spec(&well_behaved("5,9"), "g1"),
            spec(&well_behaved("-,7"), "g2"),
        ])
        .unwrap();
        let before = SystemTime::now();
        let at = g.barrier(RUN, Duration::from_millis(300)).await.unwrap();
        assert!(at >= before + Duration::from_millis(300));
        let answers = g.finish(&[(1, 100)]).await.unwrap();
        assert_eq!(
            answers,
            vec![vec![(Some(5), Some(9))], vec![(None, Some(7))]]
        );
    }

    #[tokio::test]
    async fn a_generator_that_dies_is_named_with_its_last_output() {
        let mut g = Generators::launch(vec![
            spec(&well_behaved("5,9"), "generator 1 on host a"),
            spec(
                "echo 'cannot reach node 2 at 10.0.0.12:8001' >&2; exit 7",
                "generator 2 on host b",
            ),
        ])
        .unwrap();
        let e = g
            .barrier(RUN, Duration::from_millis(10))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("generator 2 on host b")
                && e.contains("exit 7")
                && e.contains("cannot reach node 2"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_generator_that_ends_without_answering_fails_the_run() {
        let quits = format!(r#"echo "{PREFIX}READY run"; read go; echo "{PREFIX}DONE"; exit 0"#);
        let mut g = Generators::launch(vec![spec(&quits, "g1")]).unwrap();
        g.barrier(RUN, Duration::from_millis(10)).await.unwrap();
        let e = g.finish(&[]).await.unwrap_err().to_string();
        assert!(e.contains("g1") && e.contains("ended"), "{e}");
        let speaks = format!(r#"echo "{PREFIX}DONE"; sleep 5"#);
        let mut g = Generators::launch(vec![spec(&speaks, "g2")]).unwrap();
        let e = g
            .barrier(RUN, Duration::from_millis(10))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("g2") && e.contains("out of turn"), "{e}");
    }
}
