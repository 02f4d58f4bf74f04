//! The terminal's progress display: one bar per phase with ops/s, p99 and errors, fed by
//! the workers (not with `--quiet`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::metrics::Outcome;
use crate::workload::spec::Phase;

/// Live figures for the progress display: counters, and the last second's latencies.
#[derive(Default)]
pub(super) struct Live {
    ok: AtomicU64,
    errors: AtomicU64,
    window: std::sync::Mutex<Option<hdrhistogram::Histogram<u64>>>,
}

impl Live {
    pub(super) fn record(&self, outcome: Outcome, corrected_us: u64) {
        if outcome == Outcome::Ok {
            self.ok.fetch_add(1, Ordering::Relaxed);
        } else {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let mut w = self.window.lock().expect("live lock");
        w.get_or_insert_with(crate::metrics::histogram)
            .saturating_record(corrected_us.max(1));
    }
}

/// A phase's progress bar and the task that refreshes it.
pub(super) struct Progress {
    bar: indicatif::ProgressBar,
    task: tokio::task::JoinHandle<()>,
}

impl Progress {
    /// Show phase `index`'s bar, refreshed twice a second from `live`.
    pub(super) fn start(p: &Phase, index: usize, live: Arc<Live>) -> Progress {
        let (bar, task) = spawn_progress(p, index, live);
        Progress { bar, task }
    }

    /// Stop refreshing and clear the bar (the caller prints the phase's line instead).
    pub(super) fn finish(self) {
        self.task.abort();
        self.bar.finish_and_clear();
    }
}

/// A progress bar for a phase, refreshed twice a second with ops/s, p99 and errors.
fn spawn_progress(
    p: &Phase,
    index: usize,
    live: Arc<Live>,
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
    let task = tokio::spawn(async move {
        let started = Instant::now();
        let mut last = (Instant::now(), 0u64);
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let ok = live.ok.load(Ordering::Relaxed);
            let errors = live.errors.load(Ordering::Relaxed);
            let rate = (ok - last.1) as f64 / last.0.elapsed().as_secs_f64();
            last = (Instant::now(), ok);
            let p99 = live
                .window
                .lock()
                .expect("live lock")
                .take()
                .map_or(0, |h| h.value_at_quantile(0.99));
            b.set_position(if by_ops {
                ok + errors
            } else {
                started.elapsed().as_secs()
            });
            b.set_message(format!(
                "{rate:>8.0} ops/s  p99 {:>8.1} ms  errors {errors}",
                p99 as f64 / 1e3
            ));
        }
    });
    (bar, task)
}
