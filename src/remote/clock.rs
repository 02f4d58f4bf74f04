//! A host's clock offset from this machine's, measured as NTP does: over one session, this
//! machine asks for the host's time several times and keeps the exchange with the shortest
//! round trip, whose midpoint is the best estimate; half that round trip bounds the error.
//!
//! The coordinator uses it to start every generator at one absolute moment (each waits
//! for the moment in its own clock) and records it in `run.json`, since merged timelines
//! are only as aligned as the clocks.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::exec::{ExecError, HostExec};

/// Exchanges per measurement.
const SAMPLES: usize = 7;

/// A host's clock against this machine's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClockOffset {
    /// Host clock minus this machine's clock, in milliseconds.
    pub offset_ms: f64,
    /// The offset is within this many milliseconds (half the best round trip).
    pub error_ms: f64,
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// Measure `host`'s clock offset (10 s at most).
pub async fn measure(host: &HostExec) -> Result<ClockOffset, ExecError> {
    let failed = |message: String| ExecError::Invalid {
        host: host.name().into(),
        message,
    };
    // `date +%s%N` prints nanoseconds with GNU date; busybox prints a literal N, which is
    // caught below.
    let mut child = host
        .command("while read -r _; do date +%s%N; done")
        .spawn()
        .map_err(|source| ExecError::Spawn {
            host: host.name().into(),
            what: "the clock probe".into(),
            source,
        })?;
    let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(failed("the clock probe has no pipes".into()));
    };
    let mut lines = BufReader::new(stdout).lines();
    let exchange = async {
        let mut best: Option<(i128, i128)> = None; // (round trip, offset), ns
        for _ in 0..SAMPLES {
            let sent = now_ns();
            stdin
                .write_all(b"t\n")
                .await
                .map_err(|e| failed(format!("clock probe: {e}")))?;
            stdin
                .flush()
                .await
                .map_err(|e| failed(format!("clock probe: {e}")))?;
            let line = lines
                .next_line()
                .await
                .map_err(|e| failed(format!("clock probe: {e}")))?
                .ok_or_else(|| failed("the clock probe ended (is the host reachable?)".into()))?;
            let received = now_ns();
            let remote: i128 = line.trim().parse().map_err(|_| {
                failed(format!(
                    "`date +%s%N` printed {line:?}, not nanoseconds (GNU date is needed)"
                ))
            })?;
            let rtt = received - sent;
            let offset = remote - (sent + received) / 2;
            if best.is_none_or(|(r, _)| rtt < r) {
                best = Some((rtt, offset));
            }
        }
        Ok::<_, ExecError>(best)
    };
    let best = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| failed("the clock probe took longer than 10 s".into()))??;
    drop(stdin);
    let _ = child.kill().await;
    let (rtt, offset) = best.ok_or_else(|| failed("no clock sample".into()))?;
    Ok(ClockOffset {
        offset_ms: offset as f64 / 1e6,
        error_ms: rtt as f64 / 2e6,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Host;

    #[tokio::test]
    async fn this_machines_offset_from_itself_is_within_its_error() {
        let t = tempfile::tempdir().unwrap();
        let h = HostExec::new(Host::local("here", t.path()), t.path());
        let c = measure(&h).await.unwrap();
        // A fork of `date` takes about a millisecond; the same clock can be off by no more
        // than the error bound (and a little rounding).
        assert!(c.offset_ms.abs() <= c.error_ms + 1.0, "{c:?}");
        assert!(c.error_ms < 100.0, "{c:?}");
    }
}
