//! The nodes' own metrics during a run: every member's `GET /metrics` once a second, turned
//! into `server-metrics.csv` rows (per-second growth of its counters and histograms).
//!
//! This is etcd benchmark's `run_metrics` idea: when a client tail appears in the
//! timeline, the server's fsync p99, apply lag and leader changes of the same second say
//! whether the disk, the apply or an election caused it. raftbench nodes and etcd are read
//! alike, each under its own metric names ([`NAMES`]).

use std::collections::BTreeMap;

use crate::target::prom;
use crate::target::server::Cumulative;
use crate::workload::output::ServerMetricsRow;

/// Which metric carries each figure, for raftbench nodes and for etcd.
struct Names {
    fsync: &'static str,
    fsync_entries: Option<&'static str>,
    apply: &'static str,
    ready: Option<&'static str>,
    leader_changes: &'static str,
    is_leader: &'static str,
    term: Option<&'static str>,
    commit: &'static str,
    applied: &'static str,
    stall: Option<&'static str>,
    dropped_proposals: &'static str,
    peer_sent: &'static str,
    peer_received: &'static str,
    peer_dropped: &'static str,
    disk: &'static str,
}

const NAMES: [Names; 2] = [
    Names {
        fsync: "raftbench_persist_seconds",
        fsync_entries: Some("raftbench_persist_entries"),
        apply: "raftbench_apply_seconds",
        ready: Some("raftbench_ready_seconds"),
        leader_changes: "raftbench_leader_changes_total",
        is_leader: "raftbench_is_leader",
        term: Some("raftbench_term"),
        commit: "raftbench_commit_index",
        applied: "raftbench_applied_index",
        stall: Some("raftbench_raft_loop_recent_stall_seconds"),
        dropped_proposals: "raftbench_proposals_dropped_total",
        peer_sent: "raftbench_peer_sent_bytes_total",
        peer_received: "raftbench_peer_received_bytes_total",
        peer_dropped: "raftbench_peer_dropped_messages_total",
        disk: "raftbench_storage_disk_bytes",
    },
    Names {
        fsync: "etcd_disk_wal_fsync_duration_seconds",
        fsync_entries: None,
        apply: "etcd_server_apply_duration_seconds",
        ready: None,
        leader_changes: "etcd_server_leader_changes_seen_total",
        is_leader: "etcd_server_is_leader",
        term: None,
        // etcd counts proposals by raft index: committed and applied are its indexes.
        commit: "etcd_server_proposals_committed_total",
        applied: "etcd_server_proposals_applied_total",
        stall: None,
        dropped_proposals: "etcd_server_proposals_failed_total",
        peer_sent: "etcd_network_peer_sent_bytes_total",
        peer_received: "etcd_network_peer_received_bytes_total",
        peer_dropped: "etcd_network_peer_sent_failures_total",
        disk: "etcd_mvcc_db_total_size_in_bytes",
    },
];

/// One scrape of one node, reduced to what the rows need.
#[derive(Debug, Clone, Default)]
pub(super) struct Scraped {
    fsync: Option<Cumulative>,
    fsync_entries: Option<Cumulative>,
    apply: Option<Cumulative>,
    ready: Option<Cumulative>,
    leader_changes: Option<f64>,
    is_leader: Option<f64>,
    term: Option<f64>,
    commit: Option<f64>,
    applied: Option<f64>,
    stall_s: Option<f64>,
    dropped_proposals: Option<f64>,
    peer_sent: Option<f64>,
    peer_received: Option<f64>,
    peer_dropped: Option<f64>,
    disk: Option<f64>,
    rss: Option<f64>,
    started: Option<f64>,
}

/// Parse one node's `/metrics` text. Whether it is a raftbench node or etcd is told by
/// the fsync histogram it has; a text with neither is an error.
pub(super) fn parse(text: &str) -> Result<Scraped, String> {
    let scrape = prom::parse(text)?;
    let names = NAMES
        .iter()
        .find(|n| prom::histogram(&scrape, n.fsync).is_some())
        .ok_or("/metrics has neither raftbench's nor etcd's fsync histogram")?;
    let sum = |name: &str| prom::sum(&scrape, name);
    let opt = |name: Option<&str>| name.and_then(|n| prom::sum(&scrape, n));
    Ok(Scraped {
        fsync: prom::histogram(&scrape, names.fsync),
        fsync_entries: names
            .fsync_entries
            .and_then(|n| prom::histogram(&scrape, n)),
        apply: prom::histogram(&scrape, names.apply),
        ready: names.ready.and_then(|n| prom::histogram(&scrape, n)),
        leader_changes: sum(names.leader_changes),
        is_leader: sum(names.is_leader),
        term: opt(names.term),
        commit: sum(names.commit),
        applied: sum(names.applied),
        stall_s: opt(names.stall),
        dropped_proposals: sum(names.dropped_proposals),
        peer_sent: sum(names.peer_sent),
        peer_received: sum(names.peer_received),
        peer_dropped: sum(names.peer_dropped),
        disk: sum(names.disk),
        rss: sum("process_resident_memory_bytes"),
        started: sum("process_start_time_seconds"),
    })
}

/// Two start times further apart than this are two processes.
const SAME_PROCESS_S: f64 = 0.5;

/// Turns each node's scrapes into rows, remembering its previous one.
#[derive(Default)]
pub(super) struct Rows {
    last: BTreeMap<u64, Scraped>,
    pub rows: Vec<ServerMetricsRow>,
}

impl Rows {
    /// Node `node` at `t_s`: its scrape, or `None` when it did not answer (a row with
    /// `up` 0; its next scrape has no growth to report, since the gap is unknown).
    pub fn push(&mut self, t_s: f64, node: u64, scraped: Option<Scraped>) {
        let Some(now) = scraped else {
            self.last.remove(&node);
            self.rows.push(ServerMetricsRow {
                t_s,
                node,
                up: 0,
                ..Default::default()
            });
            return;
        };
        let prev = self.last.get(&node).filter(|p| {
            // A restarted process starts its counters anew: no growth across it.
            !matches!((p.started, now.started), (Some(a), Some(b)) if (a - b).abs() > SAME_PROCESS_S)
        });
        let grown = |f: fn(&Scraped) -> Option<f64>| -> Option<u64> {
            let (n, p) = (f(&now)?, f(prev?)?);
            Some((n - p).max(0.0).round() as u64)
        };
        let hist = |f: fn(&Scraped) -> &Option<Cumulative>| -> Option<Cumulative> {
            Some(f(&now).as_ref()?.since(f(prev?).as_ref()?))
        };
        let us = |s: f64| (s * 1e6 * 10.0).round() / 10.0;
        let fsync = hist(|s| &s.fsync);
        let entries = hist(|s| &s.fsync_entries);
        let p99 = |h: Option<Cumulative>| h.and_then(|h| h.quantile(0.99)).map(us);
        let int = |v: Option<f64>| v.map(|v| v.max(0.0).round() as u64);
        self.rows.push(ServerMetricsRow {
            t_s,
            node,
            up: 1,
            term: int(now.term),
            is_leader: now.is_leader.map(|v| u8::from(v > 0.5)),
            leader_changes: grown(|s| s.leader_changes),
            commit_index: int(now.commit),
            applied_index: int(now.applied),
            apply_lag: now
                .commit
                .zip(now.applied)
                .map(|(c, a)| (c - a).max(0.0).round() as u64),
            fsyncs: fsync.as_ref().map(|h| h.count.round() as u64),
            fsync_mean_us: fsync.as_ref().and_then(Cumulative::mean).map(us),
            fsync_p99_us: p99(fsync),
            entries_per_fsync: entries
                .filter(|h| h.count > 0.0)
                .map(|h| (h.sum / h.count * 10.0).round() / 10.0),
            apply_p99_us: p99(hist(|s| &s.apply)),
            ready_p99_us: p99(hist(|s| &s.ready)),
            raft_stall_us: now.stall_s.map(|s| (s * 1e6).round() as u64),
            proposals_dropped: grown(|s| s.dropped_proposals),
            peer_sent_bytes: grown(|s| s.peer_sent),
            peer_received_bytes: grown(|s| s.peer_received),
            peer_dropped_messages: grown(|s| s.peer_dropped),
            disk_bytes: int(now.disk),
            rss_bytes: int(now.rss),
        });
        self.last.insert(node, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(persists: u64, slow: u64, leader_changes: u64, started: f64) -> String {
        format!(
            "# TYPE raftbench_persist_seconds histogram\n\
             raftbench_persist_seconds_bucket{{node=\"1\",le=\"0.001\"}} {persists}\n\
             raftbench_persist_seconds_bucket{{node=\"1\",le=\"0.01\"}} {}\n\
             raftbench_persist_seconds_bucket{{node=\"1\",le=\"+Inf\"}} {}\n\
             raftbench_persist_seconds_sum{{node=\"1\"}} 0.5\n\
             raftbench_persist_seconds_count{{node=\"1\"}} {}\n\
             # TYPE raftbench_leader_changes counter\n\
             raftbench_leader_changes_total{{node=\"1\"}} {leader_changes}\n\
             # TYPE raftbench_commit_index gauge\n\
             raftbench_commit_index{{node=\"1\"}} 120\n\
             # TYPE raftbench_applied_index gauge\n\
             raftbench_applied_index{{node=\"1\"}} 100\n\
             # TYPE raftbench_peer_sent_bytes counter\n\
             raftbench_peer_sent_bytes_total{{node=\"1\",peer=\"2\"}} {}\n\
             raftbench_peer_sent_bytes_total{{node=\"1\",peer=\"3\"}} 10\n\
             # TYPE process_start_time_seconds gauge\n\
             process_start_time_seconds{{node=\"1\"}} {started}\n\
             # EOF\n",
            persists + slow,
            persists + slow,
            persists + slow,
            persists * 100,
        )
    }

    #[test]
    fn rows_are_the_growth_between_scrapes_and_start_anew_after_a_restart() {
        let mut rows = Rows::default();
        rows.push(1.0, 1, Some(parse(&text(100, 0, 1, 1000.0)).unwrap()));
        // 100 fast and 100 slow persists in the second: p99 lies among the slow ones.
        rows.push(2.0, 1, Some(parse(&text(200, 100, 3, 1000.1)).unwrap()));
        rows.push(3.0, 1, None);
        rows.push(4.0, 1, Some(parse(&text(5, 0, 0, 1003.0)).unwrap()));
        rows.push(5.0, 1, Some(parse(&text(10, 0, 0, 2000.0)).unwrap()));
        let r = &rows.rows;
        assert_eq!(r.len(), 5);
        assert_eq!((r[0].up, r[0].fsyncs, r[0].apply_lag), (1, None, Some(20)));
        assert_eq!(r[1].fsyncs, Some(200));
        let p99 = r[1].fsync_p99_us.unwrap();
        assert!(p99 > 1000.0 && p99 <= 10_000.0, "{p99}");
        assert_eq!(r[1].leader_changes, Some(2));
        // Both peers' bytes, summed: 100 × 100 more to peer 2.
        assert_eq!(r[1].peer_sent_bytes, Some(10_000));
        assert_eq!((r[2].up, r[2].fsyncs), (0, None));
        // After a gap, no growth is claimed; after a restart (new start time), neither.
        assert_eq!(r[3].fsyncs, None);
        assert_eq!(r[4].fsyncs, None);
        assert_eq!(r[4].commit_index, Some(120));
    }

    #[test]
    fn etcd_metrics_are_read_under_their_own_names() {
        let t = "# TYPE etcd_disk_wal_fsync_duration_seconds histogram\n\
                 etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.001\"} 4\n\
                 etcd_disk_wal_fsync_duration_seconds_bucket{le=\"+Inf\"} 5\n\
                 etcd_disk_wal_fsync_duration_seconds_sum 0.01\n\
                 etcd_disk_wal_fsync_duration_seconds_count 5\n\
                 # TYPE etcd_server_is_leader gauge\n\
                 etcd_server_is_leader 1\n\
                 # TYPE etcd_server_proposals_committed_total gauge\n\
                 etcd_server_proposals_committed_total 50\n\
                 # TYPE etcd_server_proposals_applied_total gauge\n\
                 etcd_server_proposals_applied_total 48\n";
        let mut rows = Rows::default();
        rows.push(1.0, 7, Some(parse(t).unwrap()));
        let r = &rows.rows[0];
        assert_eq!((r.is_leader, r.apply_lag, r.term), (Some(1), Some(2), None));
        assert!(parse("# TYPE x counter\nx_total 1\n").is_err());
    }
}
