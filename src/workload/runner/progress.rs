//! The terminal's progress display: one bar per phase with ops/s, p99 and errors, fed by
//! the workers (not with `--quiet`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::metrics::Outcome;
use crate::workload::spec::Phase;

/// Live figures for the progress display: counters, and the last half second's latencies.
/// Every worker records into it, so it takes no lock: atomic counters and coarse buckets
/// (the display's p99 is within 1/16 of the value; the results' own histograms are exact).
#[derive(Default)]
pub(super) struct Live {
    ok: AtomicU64,
    errors: AtomicU64,
    window: Buckets,
}

impl Live {
    pub(super) fn record(&self, outcome: Outcome, corrected_us: u64) {
        if outcome == Outcome::Ok {
            self.ok.fetch_add(1, Ordering::Relaxed);
        } else {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.window.record(corrected_us);
    }
}

/// Sub-buckets per power of two: the display's precision (1/16 = 6.25%).
const SUB: u32 = 16;
/// Buckets for values up to 2^64 µs: exact below `SUB`, then `SUB` per power of two.
const BUCKETS: usize = (SUB as usize) * (64 - SUB.trailing_zeros() as usize + 1);

/// A lock-free log-linear histogram of µs values, for the live display only.
struct Buckets {
    counts: Vec<AtomicU64>,
}

impl Default for Buckets {
    fn default() -> Self {
        Buckets {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl Buckets {
    fn index(v: u64) -> usize {
        if v < SUB as u64 {
            return v as usize;
        }
        let exp = 63 - v.leading_zeros(); // v's highest bit, >= log2(SUB)
        let shift = exp - SUB.trailing_zeros();
        let mantissa = (v >> shift) as usize - SUB as usize; // 0..SUB
        (shift as usize + 1) * SUB as usize + mantissa
    }

    /// The largest value of bucket `i`.
    fn upper(i: usize) -> u64 {
        let sub = SUB as usize;
        if i < sub {
            return i as u64;
        }
        let shift = (i / sub - 1) as u32;
        let mantissa = (i % sub + sub) as u128;
        (((mantissa + 1) << shift) - 1).min(u64::MAX as u128) as u64
    }

    fn record(&self, v: u64) {
        self.counts[Self::index(v)].fetch_add(1, Ordering::Relaxed);
    }

    /// The `q` quantile of what was recorded since the last call (then cleared); 0 when
    /// nothing was.
    fn take_quantile(&self, q: f64) -> u64 {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .map(|c| c.swap(0, Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::upper(i);
            }
        }
        Self::upper(BUCKETS - 1)
    }
}

/// A phase's progress bar and the task that refreshes it.
pub(super) struct Progress {
    bar: indicatif::ProgressBar,
    task: tokio::task::JoinHandle<()>,
}

impl Progress {
    /// Show phase `index`'s bar, refreshed twice a second from `live`; with `lines`, also
    /// as a line every [`LINE_EVERY`] (for a coordinator, which streams a generator's
    /// output: a bar is drawn only on a terminal).
    pub(super) fn start(p: &Phase, index: usize, live: Arc<Live>, lines: bool) -> Progress {
        let (bar, task) = spawn_progress(p, index, live, lines);
        Progress { bar, task }
    }

    /// Stop refreshing and clear the bar (the caller prints the phase's line instead).
    pub(super) fn finish(self) {
        self.task.abort();
        self.bar.finish_and_clear();
    }
}

/// How often a progress line is printed, in display refreshes (half seconds).
const LINE_EVERY: u32 = 10;

/// A progress bar for a phase, refreshed twice a second with ops/s, p99 and errors.
fn spawn_progress(
    p: &Phase,
    index: usize,
    live: Arc<Live>,
    lines: bool,
) -> (indicatif::ProgressBar, tokio::task::JoinHandle<()>) {
    let (len, unit) = match (p.ops, p.duration) {
        (Some(ops), _) => (ops, "ops"),
        (None, Some(d)) => (d.0.as_secs().max(1), "s"),
        _ => (1, ""),
    };
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "phase {index:>2} {{prefix:<16}} [{{bar:30}}] {{pos}}/{{len}} {unit}  {{msg}}"
        ))
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(p.name.clone());
    let (b, by_ops) = (bar.clone(), p.ops.is_some());
    let (name, len) = (p.name.clone(), len);
    let task = tokio::spawn(async move {
        let started = Instant::now();
        let mut last = (Instant::now(), 0u64);
        let mut ticks = 0u32;
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let ok = live.ok.load(Ordering::Relaxed);
            let errors = live.errors.load(Ordering::Relaxed);
            let rate = (ok - last.1) as f64 / last.0.elapsed().as_secs_f64();
            last = (Instant::now(), ok);
            let p99 = live.window.take_quantile(0.99);
            let pos = if by_ops {
                ok + errors
            } else {
                started.elapsed().as_secs()
            };
            b.set_position(pos);
            let msg = format!(
                "{rate:>8.0} ops/s  p99 {:>8.1} ms  errors {errors}",
                p99 as f64 / 1e3
            );
            ticks += 1;
            if lines && ticks.is_multiple_of(LINE_EVERY) {
                eprintln!("progress {index:>2} {name:<16} {pos}/{len} {unit}  {msg}");
            }
            b.set_message(msg);
        }
    });
    (bar, task)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_live_buckets_hold_every_value_within_a_sixteenth() {
        for v in (0..5000u64).chain([65_535, 1 << 20, 123_456_789, u64::MAX / 3, u64::MAX]) {
            let i = Buckets::index(v);
            assert!(i < BUCKETS, "{v}: bucket {i}");
            let up = Buckets::upper(i);
            assert!(up >= v, "{v}: upper {up}");
            assert!(up - v <= v / 16, "{v}: upper {up} is more than 1/16 off");
            if i > 0 {
                assert!(Buckets::upper(i - 1) < v, "{v} also fits bucket {}", i - 1);
            }
        }
    }

    #[test]
    fn the_live_quantile_is_of_the_last_window_only() {
        let b = Buckets::default();
        for v in 1..=1000 {
            b.record(v);
        }
        let p99 = b.take_quantile(0.99);
        assert!((990..=990 + 990 / 16).contains(&p99), "p99 {p99}");
        assert_eq!(b.take_quantile(0.99), 0, "cleared");
        b.record(7);
        assert_eq!(b.take_quantile(0.5), 7);
    }
}
