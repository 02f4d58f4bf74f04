//! Open-loop pacing: the schedule of intended start times, and a sleep precise enough to
//! keep them.
//!
//! Slot `k` of a phase at `rate` ops/s is intended to start `k / rate` seconds in. A worker
//! that is free claims the next slot (one atomic add: no pacer thread, no channel, no lock
//! per operation), sleeps until its instant, and sends. When every worker is busy the slots
//! wait, and the first worker to free up takes the oldest: that wait is exactly what
//! corrected latency must include (coordinated omission), and a stuck request holds up only
//! its own worker, not a queue of tickets dealt to it in advance.
//!
//! tokio's timer has a 1 ms resolution, which a corrected latency would show as up to 1 ms
//! of delay that no request had. The sleep is a `timerfd` in each worker, armed for the
//! slot's instant and awaited through tokio's reactor: microsecond-accurate, and woken on
//! whichever runtime thread polls the reactor, without a cross-thread hand-off per operation.

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// How long after a `duration` phase's end its workers still send the slots scheduled
/// before it: the phase's own duration, at most [`DRAIN_LIMIT`]. A stall near the end must
/// show in the latencies (those operations are sent late, and counted from their slot); a
/// target that cannot keep up with the rate at all would otherwise make the phase overrun
/// by the whole backlog. What is left after this is counted as unsent.
pub(super) fn drain_time(duration: Duration) -> Duration {
    duration.min(DRAIN_LIMIT)
}

/// The longest drain time, whatever the phase's duration.
pub(super) const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// A phase's open-loop schedule, shared by its workers.
pub(super) struct Schedule {
    start: Instant,
    /// Seconds between slots (`1 / rate`).
    interval: f64,
    /// Slots in the schedule: `ops`, or those before the phase's end.
    slots: u64,
    /// Workers stop claiming after this instant (`end` + [`drain_time`]; `None`: never).
    stop_claiming: Option<Instant>,
    next: AtomicU64,
}

impl Schedule {
    /// The schedule of a phase starting at `start` at `rate` ops/s: `ops` slots, or every
    /// slot before `end`.
    pub(super) fn new(start: Instant, rate: f64, end: Option<Instant>, ops: Option<u64>) -> Self {
        let by_time = end.map(|e| slots_before(e.duration_since(start), rate));
        Schedule {
            start,
            interval: 1.0 / rate,
            slots: match (by_time, ops) {
                (Some(t), Some(o)) => t.min(o),
                (Some(t), None) => t,
                (None, Some(o)) => o,
                (None, None) => u64::MAX,
            },
            stop_claiming: end.map(|e| e + drain_time(e.saturating_duration_since(start))),
            next: AtomicU64::new(0),
        }
    }

    /// The intended start of slot `k`.
    fn slot(&self, k: u64) -> Instant {
        self.start + Duration::from_secs_f64(k as f64 * self.interval)
    }

    /// Claim the next slot: its intended start, or `None` once the schedule is spent (or
    /// its drain time is over).
    pub(super) fn claim(&self) -> Option<Instant> {
        if self.stop_claiming.is_some_and(|t| Instant::now() >= t) {
            return None;
        }
        let k = self.next.fetch_add(1, Ordering::Relaxed);
        (k < self.slots).then(|| self.slot(k))
    }

    /// Slots of the schedule that were never claimed (so never sent): nonzero only when the
    /// drain time ran out, that is, when the target could not keep up with the rate.
    pub(super) fn unsent(&self) -> u64 {
        self.slots
            .saturating_sub(self.next.load(Ordering::Relaxed).min(self.slots))
    }
}

/// Slots `k` with `k / rate < span`: those intended to start before the phase's end.
fn slots_before(span: Duration, rate: f64) -> u64 {
    // ceil(span * rate), then corrected for floating-point rounding (1.1 s at 100/s is
    // 110.00000000000001, whose ceiling would add a slot at the end itself).
    let mut n = (span.as_secs_f64() * rate).ceil().max(0.0) as u64;
    while n > 0 && (n - 1) as f64 / rate >= span.as_secs_f64() {
        n -= 1;
    }
    while (n as f64) / rate < span.as_secs_f64() {
        n += 1;
    }
    n
}

/// A worker's sleep until an instant, precise to microseconds (see the module's notes).
pub(super) enum Sleeper {
    Precise(AsyncFd<Timer>),
    /// When a timer could not be made (out of file descriptors): tokio's 1 ms timer, with a
    /// warning that corrected latencies may be up to 1 ms high.
    Coarse,
}

impl Sleeper {
    pub(super) fn new() -> Sleeper {
        let timer = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )
        .map_err(io::Error::from)
        .and_then(|t| {
            // SAFETY: `Timer` owns the timerfd: its descriptor stays open, the same one, for
            // as long as the `AsyncFd` holds it, and `as_raw_fd` always returns it.
            unsafe { AsyncFd::register_with_interest(Timer(t), Interest::READABLE) }
                .map_err(|e| e.into_parts().1)
        });
        match timer {
            Ok(t) => Sleeper::Precise(t),
            Err(e) => {
                static WARNED: std::sync::atomic::AtomicBool =
                    std::sync::atomic::AtomicBool::new(false);
                if WARNED.swap(true, Ordering::Relaxed) {
                    return Sleeper::Coarse;
                }
                tracing::warn!(
                    "no timerfd for an open-loop worker ({e}): its sleeps use tokio's 1 ms timer, \
                     so its corrected latencies may read up to 1 ms high"
                );
                Sleeper::Coarse
            }
        }
    }

    /// Return at `t` (at once if it has passed).
    pub(super) async fn until(&mut self, t: Instant) {
        let wait = t.saturating_duration_since(Instant::now());
        if wait.is_zero() {
            return;
        }
        let timer = match self {
            Sleeper::Precise(timer) => timer,
            Sleeper::Coarse => return tokio::time::sleep_until(t.into()).await,
        };
        if let Err(e) = timer.get_ref().arm(wait) {
            tracing::warn!("arming an open-loop worker's timer failed ({e}): using tokio's timer");
            *self = Sleeper::Coarse;
            return tokio::time::sleep_until(t.into()).await;
        }
        loop {
            let Ok(mut ready) = timer.readable().await else {
                return tokio::time::sleep_until(t.into()).await;
            };
            // Reading the expiry count re-arms readiness; EAGAIN means a spurious wake.
            match ready.try_io(|fd| fd.get_ref().read_expirations()) {
                Ok(Ok(_)) => {
                    // The expiry is consumed: the next sleep starts from "not ready".
                    ready.clear_ready();
                    return;
                }
                Ok(Err(e)) => {
                    tracing::warn!("reading an open-loop worker's timer failed ({e})");
                    return tokio::time::sleep_until(t.into()).await;
                }
                Err(_would_block) => continue,
            }
        }
    }
}

/// A one-shot monotonic timer file descriptor.
pub(super) struct Timer(TimerFd);

impl Timer {
    /// Expire once, `after` from now.
    fn arm(&self, after: Duration) -> io::Result<()> {
        self.0
            .set(
                Expiration::OneShot(TimeSpec::from_duration(after)),
                TimerSetTimeFlags::empty(),
            )
            .map_err(io::Error::from)
    }

    /// Read the expiry count: `WouldBlock` until the timer has expired.
    fn read_expirations(&self) -> io::Result<u64> {
        let mut buf = [0u8; 8];
        match nix::unistd::read(self.0.as_fd(), &mut buf) {
            Ok(8) => Ok(u64::from_ne_bytes(buf)),
            Ok(n) => Err(io::Error::other(format!("timerfd read {n} bytes, not 8"))),
            Err(e) => Err(io::Error::from(e)),
        }
    }
}

impl AsRawFd for Timer {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_schedule_has_the_slots_before_its_end() {
        let t0 = Instant::now();
        assert_eq!(slots_before(Duration::from_secs(2), 1000.0), 2000);
        assert_eq!(slots_before(Duration::from_millis(2500), 2.0), 5);
        // Slot 0 starts at once, so even a rate slower than the phase gets one operation.
        assert_eq!(slots_before(Duration::from_secs(3), 0.1), 1);
        // Not one too many where span * rate rounds up past an exact multiple.
        assert_eq!(slots_before(Duration::from_millis(1100), 100.0), 110);
        assert_eq!(slots_before(Duration::from_millis(8300), 30.0), 249);
        assert_eq!(slots_before(Duration::from_millis(70), 100.0), 7);
        let s = Schedule::new(t0, 4.0, Some(t0 + Duration::from_secs(1)), None);
        let got: Vec<_> = std::iter::from_fn(|| s.claim()).collect();
        let want: Vec<_> = (0..4)
            .map(|k| t0 + Duration::from_millis(250 * k))
            .collect();
        assert_eq!(got, want);
        assert_eq!(s.unsent(), 0);
    }

    #[test]
    fn an_ops_schedule_has_exactly_its_ops_and_counts_what_was_not_claimed() {
        let t0 = Instant::now();
        let s = Schedule::new(t0, 1e6, None, Some(3));
        assert!(s.claim().is_some());
        assert_eq!(s.unsent(), 2);
        assert!(s.claim().is_some() && s.claim().is_some());
        assert_eq!(s.claim(), None);
        assert_eq!(s.unsent(), 0);
        // Both bounds: whichever comes first.
        let s = Schedule::new(t0, 10.0, Some(t0 + Duration::from_secs(1)), Some(100));
        assert_eq!(std::iter::from_fn(|| s.claim()).count(), 10);
    }

    #[test]
    fn no_slot_is_claimed_after_the_drain_time() {
        // A 1 s phase drains for 1 s: 2.5 s after its start, nothing more is sent.
        let Some(t0) = Instant::now().checked_sub(Duration::from_millis(2500)) else {
            return;
        };
        let s = Schedule::new(t0, 100.0, Some(t0 + Duration::from_secs(1)), None);
        assert_eq!(s.claim(), None);
        assert_eq!(s.unsent(), 100);
        // A long phase drains for DRAIN_LIMIT at most.
        assert_eq!(drain_time(Duration::from_secs(600)), DRAIN_LIMIT);
        // (Instants in the past: a machine up for less than a minute has none that early.)
        if let Some(t0) = Instant::now().checked_sub(Duration::from_secs(61)) {
            let s = Schedule::new(t0, 1.0, Some(t0 + Duration::from_secs(60)), None);
            assert!(s.claim().is_some(), "1 s after the end: still draining");
        }
    }

    #[tokio::test]
    async fn the_precise_sleep_ends_at_its_instant() {
        let mut s = Sleeper::new();
        assert!(matches!(s, Sleeper::Precise(_)));
        for _ in 0..20 {
            let t = Instant::now() + Duration::from_micros(700);
            s.until(t).await;
            let now = Instant::now();
            // Never early: an operation sent before its slot would read faster than it was.
            assert!(now >= t, "woke {:?} early", t - now);
        }
        // A past instant returns at once.
        let t = Instant::now();
        s.until(t - Duration::from_secs(1)).await;
        assert!(t.elapsed() < Duration::from_millis(50));
    }
}
