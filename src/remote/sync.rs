//! The coordinator's conversation with its load generators, one line at a time over each
//! generator's session (its stdin and stdout through the host's transport).
//!
//! A coordinated generator (`run --client-id I --clients N --coordinated`) says where it
//! stands and waits to be told when to go:
//!
//! ```text
//! generator -> coordinator      coordinator -> generator
//! READY run                     GO run <unix ns, in the generator's clock>
//! READY phase-<i>               GO phase-<i> <unix ns>
//! DONE                          EVENTS <n> <phase>:<µs since the run started> ...
//! RESUMED <n> <before|->,<after|-> ...
//! ```
//!
//! `GO run` fixes the instant every generator (and the coordinator) counts run time from,
//! so their timelines and acknowledgement times share one time base, as exact as the
//! clock offsets measured before the run. Each phase starts at its own `GO`, so a phase
//! bound by an op count that one generator finishes early does not overlap the next
//! phase of another. The coordinator alone injects events; at the end it names them and
//! each generator answers, per event, the last acknowledgement before it and the first
//! acknowledgement of a write sent after it, from which the coordinator computes writes
//! resuming across all generators.
//!
//! Protocol lines carry [`PREFIX`] so that anything else a generator prints on stdout is
//! just output. A generator whose stdin reaches its end before it has answered `RESUMED`
//! has lost its coordinator and exits at once ([`ABORT_EXIT`]): a generator never runs on
//! alone.

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use thiserror::Error;
use tokio::sync::mpsc;

/// What every protocol line starts with.
pub const PREFIX: &str = "@raftbench-sync ";
/// A generator's exit status when its coordinator goes away.
pub const ABORT_EXIT: i32 = 3;
/// The barrier label of the run's start.
pub const RUN: &str = "run";

/// The barrier label of phase `i` (0-based, in workload order).
pub fn phase_label(i: usize) -> String {
    format!("phase-{i}")
}

/// A generator's answer for one event: (last acknowledgement before it, first
/// acknowledgement of a write sent after it), each `None` where it has none.
pub type Resumed = (Option<u64>, Option<u64>);

/// One protocol message, either way.
#[derive(Debug, Clone, PartialEq)]
pub enum Msg {
    Ready(String),
    Go(String, i128),
    Done,
    /// Each event as (phase index, µs since the run started).
    Events(Vec<(usize, u64)>),
    /// Per event: (last acknowledgement before it, first acknowledgement of a write sent
    /// after it), µs since the run started; `None` where this generator has none.
    Resumed(Vec<Resumed>),
}

/// A line that is not the protocol it should be.
#[derive(Debug, Error)]
pub enum SyncError {
    #[error("bad protocol line {line:?}: {why}")]
    Bad { line: String, why: String },
    #[error("expected {expected}, got {got:?}")]
    Unexpected { expected: String, got: Msg },
    #[error("the coordinator's session ended")]
    Ended,
}

impl Msg {
    /// The line for this message (with [`PREFIX`], without the newline).
    pub fn line(&self) -> String {
        let body = match self {
            Msg::Ready(l) => format!("READY {l}"),
            Msg::Go(l, ns) => format!("GO {l} {ns}"),
            Msg::Done => "DONE".into(),
            Msg::Events(evs) => {
                let mut s = format!("EVENTS {}", evs.len());
                for (p, t) in evs {
                    s.push_str(&format!(" {p}:{t}"));
                }
                s
            }
            Msg::Resumed(rs) => {
                let mut s = format!("RESUMED {}", rs.len());
                let side = |t: &Option<u64>| t.map_or("-".to_string(), |t| t.to_string());
                for (b, a) in rs {
                    s.push_str(&format!(" {},{}", side(b), side(a)));
                }
                s
            }
        };
        format!("{PREFIX}{body}")
    }

    /// Parse a protocol line; `Ok(None)` for a line without [`PREFIX`] (plain output).
    pub fn parse(line: &str) -> Result<Option<Msg>, SyncError> {
        let Some(body) = line.trim_end().strip_prefix(PREFIX) else {
            return Ok(None);
        };
        let bad = |why: &str| SyncError::Bad {
            line: line.to_string(),
            why: why.into(),
        };
        let words: Vec<&str> = body.split(' ').collect();
        let num = |w: &str| w.parse::<u64>().map_err(|_| bad("not a number"));
        // A counted list: the count first, then exactly that many items.
        let counted = |words: &[&str]| -> Result<Vec<String>, SyncError> {
            let n = words.first().ok_or_else(|| bad("no count"))?;
            let n = n.parse::<usize>().map_err(|_| bad("bad count"))?;
            if words.len() - 1 != n {
                return Err(bad("count does not match the items"));
            }
            Ok(words[1..].iter().map(|w| w.to_string()).collect())
        };
        Ok(Some(match words.as_slice() {
            ["READY", l] => Msg::Ready(l.to_string()),
            ["GO", l, ns] => Msg::Go(l.to_string(), ns.parse().map_err(|_| bad("bad time"))?),
            ["DONE"] => Msg::Done,
            ["EVENTS", rest @ ..] => Msg::Events(
                counted(rest)?
                    .iter()
                    .map(|w| {
                        let (p, t) = w.split_once(':').ok_or_else(|| bad("expected P:T"))?;
                        Ok((p.parse().map_err(|_| bad("bad phase"))?, num(t)?))
                    })
                    .collect::<Result<_, SyncError>>()?,
            ),
            ["RESUMED", rest @ ..] => Msg::Resumed(
                counted(rest)?
                    .iter()
                    .map(|w| {
                        let (b, a) = w.split_once(',').ok_or_else(|| bad("expected B,A"))?;
                        let side = |t: &str| (t != "-").then(|| num(t)).transpose();
                        Ok((side(b)?, side(a)?))
                    })
                    .collect::<Result<_, SyncError>>()?,
            ),
            _ => return Err(bad("unknown message")),
        }))
    }
}

/// Now, in nanoseconds since the Unix epoch.
pub fn unix_ns(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

/// The instant on the monotonic clock at which this machine's wall clock reads (or read)
/// `ns`: a moment already past stays in the past, so that a late `GO` does not shift
/// the time base it sets.
pub fn instant_at(ns: i128) -> Instant {
    let now = Instant::now();
    let ahead = ns - unix_ns(SystemTime::now());
    let by = Duration::from_nanos(ahead.unsigned_abs().min(u64::MAX as u128) as u64);
    if ahead >= 0 {
        now + by
    } else {
        now.checked_sub(by).unwrap_or(now)
    }
}

/// The generator's side: protocol lines out on stdout, the coordinator's in from stdin.
pub struct Follower {
    lines: mpsc::UnboundedReceiver<String>,
    /// Set once the generator has said all it had to: its stdin may end after that.
    finished: Arc<AtomicBool>,
}

impl Follower {
    /// Start reading stdin. Its end (or a read error) before [`Follower::resumed`] exits
    /// the process with [`ABORT_EXIT`]: the coordinator is gone, and so is the run.
    pub fn start() -> Follower {
        let (tx, lines) = mpsc::unbounded_channel();
        let finished = Arc::new(AtomicBool::new(false));
        let done = finished.clone();
        // A thread of its own, not tokio's stdin: tokio reads stdin on a blocking thread
        // that the runtime waits for when it shuts down, so a generator would not exit
        // until its coordinator closed the session.
        std::thread::spawn(move || {
            let stdin = std::io::stdin();
            let mut lines = stdin.lock().lines();
            loop {
                match lines.next() {
                    Some(Ok(l)) => {
                        let _ = tx.send(l);
                    }
                    end => {
                        if done.load(Ordering::SeqCst) {
                            return;
                        }
                        let why = match end {
                            Some(Err(e)) => format!("reading it failed: {e}"),
                            _ => "it closed".into(),
                        };
                        // Not eprintln: with the session gone, stderr may be a broken
                        // pipe, and eprintln would panic this thread instead of exiting.
                        let _ = writeln!(
                            std::io::stderr(),
                            "coordinator's session ended ({why}): stopping this generator"
                        );
                        std::process::exit(ABORT_EXIT);
                    }
                }
            }
        });
        Follower { lines, finished }
    }

    fn say(&self, m: &Msg) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", m.line());
        let _ = out.flush();
    }

    async fn hear(&mut self) -> Result<Msg, SyncError> {
        loop {
            let line = self.lines.recv().await.ok_or(SyncError::Ended)?;
            if let Some(m) = Msg::parse(&line)? {
                return Ok(m);
            }
        }
    }

    /// Say `READY label`, wait for `GO label`, then until the moment it names; returns
    /// that moment.
    pub async fn barrier(&mut self, label: &str) -> Result<Instant, SyncError> {
        self.say(&Msg::Ready(label.into()));
        match self.hear().await? {
            Msg::Go(l, ns) if l == label => {
                let at = instant_at(ns);
                let late = Instant::now().saturating_duration_since(at);
                if late > Duration::from_millis(100) {
                    eprintln!(
                        "warning: GO {label} arrived {late:?} after the moment it names \
                         (clocks or the link are slower than the coordinator's lead)"
                    );
                }
                tokio::time::sleep_until(at.into()).await;
                Ok(at)
            }
            got => Err(SyncError::Unexpected {
                expected: format!("GO {label}"),
                got,
            }),
        }
    }

    /// Say `DONE`; the events the coordinator injected.
    pub async fn events(&mut self) -> Result<Vec<(usize, u64)>, SyncError> {
        self.say(&Msg::Done);
        match self.hear().await? {
            Msg::Events(e) => Ok(e),
            got => Err(SyncError::Unexpected {
                expected: "EVENTS".into(),
                got,
            }),
        }
    }

    /// Answer the events; after this the session may end.
    pub fn resumed(&self, r: Vec<Resumed>) {
        self.finished.store(true, Ordering::SeqCst);
        self.say(&Msg::Resumed(r));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_reads_back_as_written() {
        for m in [
            Msg::Ready(RUN.into()),
            Msg::Go(phase_label(3), 1_765_000_000_123_456_789),
            Msg::Done,
            Msg::Events(vec![]),
            Msg::Events(vec![(1, 2_500_000), (3, 9)]),
            Msg::Resumed(vec![(Some(1), Some(2)), (None, None), (Some(3), None)]),
        ] {
            assert_eq!(Msg::parse(&m.line()).unwrap(), Some(m.clone()), "{m:?}");
        }
    }

    #[test]
    fn plain_output_is_not_protocol_and_bad_lines_are_named() {
        assert_eq!(Msg::parse("results: results/x").unwrap(), None);
        for bad in [
            "GO run soon",
            "EVENTS 2 1:5",
            "RESUMED 1 5",
            "RESUMED 1 -",
            "RESUMED x",
            "HELLO",
            "EVENTS 1 a:5",
        ] {
            let e = Msg::parse(&format!("{PREFIX}{bad}")).unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn instants_follow_the_wall_clock() {
        let now = unix_ns(SystemTime::now());
        let at = instant_at(now + 200_000_000);
        let ahead = at.duration_since(Instant::now());
        assert!(ahead > Duration::from_millis(150) && ahead <= Duration::from_millis(200));
        assert!(
            instant_at(now - 1_000_000_000) <= Instant::now(),
            "past: now"
        );
    }
}
