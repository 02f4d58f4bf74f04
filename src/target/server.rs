//! Server-side figures of a phase: what the members themselves measured of their WAL
//! fsyncs and backend commits, to set beside the client's latency.
//!
//! Each member's counters are read at a phase's start and end ([`ServerCounters`]); the
//! phase's figures are their growth, summed over the members ([`phase_figures`]). etcd
//! gives histograms (`etcd_disk_wal_fsync_duration_seconds`,
//! `etcd_disk_backend_commit_duration_seconds`); a raftbench node the histogram of its
//! synced persists, the log append and its fsync timed together
//! (`raftbench_persist_seconds`). Both give a mean and a p99 (interpolated in the buckets).

use std::collections::BTreeMap;

use crate::wire::ServerFigures;

/// A cumulative histogram (Prometheus style): `(upper bound in seconds, observations at or
/// below it)` in increasing order, with the sum (seconds) and count of all observations.
/// Without buckets it is only a sum and a count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cumulative {
    pub buckets: Vec<(f64, f64)>,
    pub sum: f64,
    pub count: f64,
}

impl Cumulative {
    /// What was observed since `earlier` (the same member's previous reading). A count,
    /// sum or bucket that went down is a restarted member, whose counters are all new.
    /// (A member that restarted and then outgrew its old counts looks like growth here;
    /// [`ServerCounters::started`] catches that.)
    pub fn since(&self, earlier: &Cumulative) -> Cumulative {
        let shrank = self.count < earlier.count
            || self.sum < earlier.sum
            || self.buckets.len() != earlier.buckets.len()
            || self
                .buckets
                .iter()
                .zip(&earlier.buckets)
                .any(|((le, n), (le0, m))| le != le0 || n < m);
        if shrank {
            return self.clone();
        }
        Cumulative {
            buckets: self
                .buckets
                .iter()
                .zip(&earlier.buckets)
                .map(|((le, n), (_, m))| (*le, n - m))
                .collect(),
            sum: self.sum - earlier.sum,
            count: self.count - earlier.count,
        }
    }

    /// Add another member's histogram (the same bucket bounds; otherwise only the sum and
    /// count are kept).
    pub fn add(&mut self, other: &Cumulative) {
        if self.count == 0.0 && self.buckets.is_empty() {
            *self = other.clone();
            return;
        }
        if self.buckets.len() == other.buckets.len()
            && self
                .buckets
                .iter()
                .zip(&other.buckets)
                .all(|(a, b)| a.0 == b.0)
        {
            for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
                a.1 += b.1;
            }
        } else {
            self.buckets.clear();
        }
        self.sum += other.sum;
        self.count += other.count;
    }

    /// Mean observation, in seconds.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0.0).then(|| self.sum / self.count)
    }

    /// The `q` quantile in seconds, interpolated linearly inside its bucket as Prometheus's
    /// `histogram_quantile` does (so it is as coarse as the buckets: etcd's double from
    /// 1 ms). `None` without buckets or observations; the largest finite bound when the
    /// quantile falls in the `+Inf` bucket.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.buckets.last()?.1;
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let mut prev = (0.0, 0.0);
        for &(le, n) in &self.buckets {
            if n >= rank {
                if le.is_infinite() {
                    return Some(prev.0);
                }
                let width = n - prev.1;
                let share = if width > 0.0 {
                    (rank - prev.1) / width
                } else {
                    1.0
                };
                return Some(prev.0 + (le - prev.0) * share);
            }
            prev = (le, n);
        }
        Some(prev.0)
    }
}

/// One member's counters at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerCounters {
    /// Where they come from, for the record (`etcd /metrics`, `raftbench /metrics`).
    pub source: &'static str,
    /// WAL fsyncs (raftbench: synced persists, the log append included).
    pub wal_fsync: Cumulative,
    /// Backend commits (etcd's bbolt transactions); raftbench has none of its own.
    pub backend_commit: Option<Cumulative>,
    /// When the member's process started (seconds since the epoch, its
    /// `process_start_time_seconds`), so that a member restarted between two readings has
    /// its counters counted anew.
    pub started: Option<f64>,
}

/// Two start times further apart than this are two processes (a margin for a start time
/// reported rounded; a restart takes longer than this anyway).
const SAME_PROCESS: f64 = 0.5;

impl ServerCounters {
    /// What was counted since `earlier`, the same member's previous reading.
    fn since(&self, earlier: &ServerCounters) -> (Cumulative, Option<Cumulative>) {
        let restarted = matches!(
            (self.started, earlier.started),
            (Some(a), Some(b)) if (a - b).abs() > SAME_PROCESS
        );
        let grown = |now: &Cumulative, then: &Cumulative| {
            if restarted {
                now.clone()
            } else {
                now.since(then)
            }
        };
        let commit = match (&self.backend_commit, &earlier.backend_commit) {
            (Some(a), Some(b)) => Some(grown(a, b)),
            _ => None,
        };
        (grown(&self.wal_fsync, &earlier.wal_fsync), commit)
    }
}

/// A phase's server-side figures from every member's counters at its start and end
/// (members missing from either reading are left out). `None` when no member answered.
pub fn phase_figures(
    before: &BTreeMap<u64, ServerCounters>,
    after: &BTreeMap<u64, ServerCounters>,
) -> Option<ServerFigures> {
    let mut fsync = Cumulative::default();
    let mut commit: Option<Cumulative> = None;
    let mut source = None;
    for (id, a) in after {
        let Some(b) = before.get(id) else { continue };
        source = Some(a.source);
        let (f, c) = a.since(b);
        fsync.add(&f);
        if let Some(c) = c {
            commit.get_or_insert_with(Cumulative::default).add(&c);
        }
    }
    let us = |s: f64| (s * 1e6 * 10.0).round() / 10.0;
    Some(ServerFigures {
        source: source?.to_string(),
        wal_fsyncs: fsync.count as u64,
        wal_fsync_mean_us: fsync.mean().map(us),
        wal_fsync_p99_us: fsync.quantile(0.99).map(us),
        backend_commits: commit.as_ref().map(|c| c.count as u64),
        backend_commit_mean_us: commit.as_ref().and_then(Cumulative::mean).map(us),
        backend_commit_p99_us: commit.as_ref().and_then(|c| c.quantile(0.99)).map(us),
    })
}

/// `GET http://{client_addr}/metrics` of `m`, as text (2 s deadline).
pub async fn fetch_metrics(
    http: &reqwest::Client,
    m: &crate::cluster::Member,
) -> Result<String, crate::cluster::ClusterError> {
    let err = |e: reqwest::Error| crate::cluster::ClusterError::Node {
        id: m.id,
        message: format!("GET /metrics: {e}"),
    };
    http.get(format!("http://{}/metrics", m.client_addr))
        .timeout(std::time::Duration::from_secs(2))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(err)?
        .text()
        .await
        .map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(buckets: &[(f64, f64)], sum: f64) -> Cumulative {
        Cumulative {
            buckets: buckets.to_vec(),
            sum,
            count: buckets.last().map_or(0.0, |b| b.1),
        }
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        let h = hist(
            &[
                (0.001, 50.0),
                (0.002, 90.0),
                (0.004, 100.0),
                (f64::INFINITY, 100.0),
            ],
            0.15,
        );
        // Rank 50 is the top of the first bucket; rank 99 lies 9/10 into (2 ms, 4 ms].
        assert!((h.quantile(0.5).unwrap() - 0.001).abs() < 1e-12);
        assert!((h.quantile(0.99).unwrap() - 0.0038).abs() < 1e-12);
        assert_eq!(h.mean(), Some(0.0015));
        let inf = hist(&[(0.001, 1.0), (f64::INFINITY, 10.0)], 1.0);
        assert_eq!(inf.quantile(0.99), Some(0.001));
    }

    #[test]
    fn a_phase_is_the_growth_summed_over_members_and_a_restart_counts_anew() {
        let b = |n: f64| ServerCounters {
            source: "etcd /metrics",
            wal_fsync: hist(&[(0.001, n), (f64::INFINITY, n)], n * 0.0005),
            backend_commit: None,
            started: Some(1000.0),
        };
        let before = BTreeMap::from([(1, b(10.0)), (2, b(100.0))]);
        // Node 2 restarted: its counters went down, so all 4 are new.
        let after = BTreeMap::from([(1, b(30.0)), (2, b(4.0))]);
        let f = phase_figures(&before, &after).unwrap();
        assert_eq!(f.wal_fsyncs, 24);
        assert_eq!(f.wal_fsync_mean_us, Some(500.0));
        assert_eq!(f.backend_commits, None);
        assert!(phase_figures(&BTreeMap::new(), &after).is_none());
    }

    #[test]
    fn a_member_restarted_between_readings_counts_anew_even_when_it_outgrew_its_old_counts() {
        let c = |n: f64, started: f64| ServerCounters {
            source: "etcd /metrics",
            wal_fsync: hist(&[(0.001, n), (f64::INFINITY, n)], n * 0.0005),
            backend_commit: Some(hist(&[(0.01, n / 2.0), (f64::INFINITY, n)], n * 0.002)),
            started: Some(started),
        };
        // Member 1 ran on; member 2 was restarted and has done 50 fsyncs since, more than
        // the 30 it had done before.
        let before = BTreeMap::from([(1, c(10.0, 1000.0)), (2, c(30.0, 1000.0))]);
        let after = BTreeMap::from([(1, c(20.0, 1000.2)), (2, c(50.0, 1060.0))]);
        let f = phase_figures(&before, &after).unwrap();
        assert_eq!(f.wal_fsyncs, 10 + 50);
        assert_eq!(f.backend_commits, Some(60));
        // A bucket that went down is a restart too, even when the total grew.
        let now = hist(&[(0.001, 1.0), (f64::INFINITY, 12.0)], 0.5);
        let then = hist(&[(0.001, 5.0), (f64::INFINITY, 10.0)], 0.1);
        assert_eq!(now.since(&then), now);
        // The growth stays a cumulative histogram.
        let grown = hist(&[(0.001, 7.0), (f64::INFINITY, 12.0)], 0.5).since(&then);
        assert_eq!(grown.buckets, vec![(0.001, 2.0), (f64::INFINITY, 2.0)]);
    }
}
