//! A phase's events: injected at their times while the load runs, then measured — what
//! the nodes report (elections, restarts, snapshots: [`events::measure`]) and what the load
//! saw (writes resuming, p99 during recovery) — into `events.csv` and `recovery.csv` rows.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::cluster::Cluster;
use crate::metrics::Recorder;
use crate::workload::events::{self, EventRow, Faults, RecoveryRow};
use crate::workload::spec::{Action, Phase};

/// The run's events so far: the nodes they left down or paused, and their rows.
#[derive(Default)]
pub(super) struct EventLog {
    pub faults: Faults,
    pub rows: Vec<EventRow>,
    pub recovery: Vec<RecoveryRow>,
}

impl EventLog {
    /// How old the newest write a verify in `[since_ms, at_ms]` found lost
    /// (`newest_lost_acked_ms`) was when the last power cut of that span took it.
    pub fn newest_lost_age_ms(
        &self,
        since_ms: u64,
        at_ms: u64,
        newest_lost_acked_ms: Option<u64>,
    ) -> Option<u64> {
        self.last_power_cut_between(since_ms, at_ms)
            .zip(newest_lost_acked_ms)
            .map(|(cut, acked)| cut.saturating_sub(acked))
    }

    /// The last power cut that took effect in `[from_ms, to_ms]` since the run started.
    fn last_power_cut_between(&self, from_ms: u64, to_ms: u64) -> Option<u64> {
        let cuts = [
            action_name(Action::PowerLoss),
            action_name(Action::TornWrite),
        ];
        self.rows
            .iter()
            .filter(|r| cuts.contains(&r.action) && (from_ms..=to_ms).contains(&r.t_ms))
            .map(|r| r.t_ms)
            .max()
    }
}

/// An injected event whose follow-up measurement is still running.
pub(super) struct Pending {
    /// Its row in `events.csv`.
    index: usize,
    action: Action,
    /// When it took effect, in seconds since the run started.
    at_s: f64,
    measuring: JoinHandle<Vec<(u64, &'static str, f64)>>,
}

/// Inject `p`'s events in time order from the phase's `start`, each as its time comes;
/// their follow-ups are measured in the background.
pub(super) async fn inject(
    run_start: Instant,
    cluster: &Arc<Mutex<Cluster>>,
    log: &mut EventLog,
    p: &Phase,
    start: Instant,
) -> Vec<Pending> {
    let mut evs: Vec<_> = p.events.iter().map(|e| e.get_ref().clone()).collect();
    evs.sort_by_key(|e| e.at);
    let mut pending = Vec::new();
    for ev in evs {
        tokio::time::sleep_until((start + ev.at.0).into()).await;
        let done = events::execute(cluster, &mut log.faults, &ev).await;
        let t_ms = done.at.duration_since(run_start).as_millis() as u64;
        // Run-relative, like the timeline and the acknowledgement times.
        let at_s = done.at.duration_since(run_start).as_secs_f64();
        let index = log.rows.len();
        log.rows.push(EventRow {
            t_ms,
            phase: p.name.clone(),
            action: action_name(ev.action),
            node: done.nodes,
            detail: done.detail,
        });
        let (cl, follow) = (cluster.clone(), done.follow);
        pending.push(Pending {
            index,
            action: ev.action,
            at_s,
            measuring: tokio::spawn(async move { events::measure(&cl, follow).await }),
        });
    }
    pending
}

/// The recovery rows of the phase's events, once their measurements are done: the nodes'
/// figures, then from the load `rec` measured, `writes_resumed_ms` and
/// `p99_during_recovery_us` over each event's recovery window (from the event to the end
/// of the last recovery it measured).
pub(super) async fn measured(rec: &Recorder, pending: Vec<Pending>) -> Vec<RecoveryRow> {
    let mut out = Vec::new();
    for p in pending {
        let at_s = p.at_s;
        out.extend(
            p.rows(writes_resumed(rec, at_s), |from, to| {
                rec.p99_between(from, to)
            })
            .await,
        );
    }
    out
}

impl Pending {
    /// When it took effect, in seconds since the run started.
    pub fn at_s(&self) -> f64 {
        self.at_s
    }

    /// Its recovery rows, once its measurement is done: the nodes' figures, then
    /// `writes_resumed_ms` from `resumed` (µs since the run started, as
    /// [`writes_resumed`] gives them) and `p99_during_recovery_us` from `p99` over the
    /// recovery window in whole seconds since the run started.
    pub async fn rows(
        self,
        resumed: Option<(u64, u64)>,
        p99: impl Fn(u64, u64) -> Option<u64>,
    ) -> Vec<RecoveryRow> {
        let mut out = Vec::new();
        let action = action_name(self.action);
        let row = |node: u64, metric: &str, ms: f64| RecoveryRow {
            event: self.index,
            action: action.clone(),
            node,
            metric: metric.into(),
            ms,
        };
        let mut window_end = self.at_s;
        for (node, metric, ms) in self.measuring.await.unwrap_or_default() {
            if metric.ends_with("_ms") {
                window_end = window_end.max(self.at_s + ms / 1e3);
            }
            out.push(row(node, metric, ms));
        }
        if let Some((before, after)) = resumed {
            window_end = window_end.max(after as f64 / 1e6);
            out.push(row(0, "writes_resumed_ms", (after - before) as f64 / 1e3));
        }
        if let Some(p99) = p99(self.at_s as u64, window_end.ceil() as u64) {
            out.push(row(0, "p99_during_recovery_us", p99 as f64));
        }
        out
    }
}

/// Writes resumed: from the last acknowledgement before `at_s` to the first acknowledgement
/// of a write *sent* after it (a write sent before may still be answered just after a
/// kill), in µs since the run started.
pub(super) fn writes_resumed(rec: &Recorder, at_s: f64) -> Option<(u64, u64)> {
    let (before, after) = acks_around(rec, at_s);
    Some((before?, after?))
}

/// The last acknowledgement before `at_s`, and the first of a write sent after it (µs
/// since the run started); each `None` where there is none.
pub(super) fn acks_around(rec: &Recorder, at_s: f64) -> (Option<u64>, Option<u64>) {
    acks_around_us(rec, (at_s * 1e6) as u64)
}

/// [`acks_around`] of a moment in µs since the run started.
pub(super) fn acks_around_us(rec: &Recorder, at_us: u64) -> (Option<u64>, Option<u64>) {
    let before = rec
        .write_acks
        .iter()
        .map(|w| w.1)
        .filter(|t| *t <= at_us)
        .max();
    let after = rec
        .write_acks
        .iter()
        .filter(|w| w.0 > at_us)
        .map(|w| w.1)
        .min();
    (before, after)
}

/// An action as `events.csv` and `recovery.csv` name it (`kill`, `addnode`, ...).
fn action_name(a: Action) -> String {
    format!("{a:?}").to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Op, Outcome};

    /// Acknowledged writes as (sent, acknowledged) µs.
    fn recorder(acks: &[(u64, u64)]) -> Recorder {
        let mut rec = Recorder::default();
        for &(sent, at) in acks {
            rec.record(Op::Put, Outcome::Ok, 1, 1, sent, at, false);
        }
        rec
    }

    #[test]
    fn writes_resume_at_the_first_ack_of_a_write_sent_after_the_event() {
        // Event at 2 s. The write sent at 1.9 s and answered at 2.5 s was in flight: it
        // does not count as resumed; the one sent at 3 s does.
        let rec = recorder(&[
            (1_000_000, 1_500_000),
            (1_900_000, 2_500_000),
            (3_000_000, 3_200_000),
        ]);
        assert_eq!(writes_resumed(&rec, 2.0), Some((1_500_000, 3_200_000)));
        assert_eq!(writes_resumed(&rec, 4.0), None, "nothing after");
        assert_eq!(writes_resumed(&rec, 0.5), None, "nothing before");
    }

    #[tokio::test]
    async fn the_recovery_window_spans_the_slowest_measured_recovery() {
        let rec = recorder(&[(1_000_000, 1_100_000), (2_100_000, 2_200_000)]);
        let pending = vec![Pending {
            index: 3,
            action: Action::Kill,
            at_s: 2.0,
            measuring: tokio::spawn(async { vec![(2, "leader_elected_ms", 1500.0)] }),
        }];
        let rows = measured(&rec, pending).await;
        let got: Vec<(usize, &str, u64, &str, f64)> = rows
            .iter()
            .map(|r| (r.event, r.action.as_str(), r.node, r.metric.as_str(), r.ms))
            .collect();
        assert_eq!(
            got,
            vec![
                (3, "kill", 2, "leader_elected_ms", 1500.0),
                (3, "kill", 0, "writes_resumed_ms", 1100.0),
                (3, "kill", 0, "p99_during_recovery_us", 1.0),
            ]
        );
    }
}
