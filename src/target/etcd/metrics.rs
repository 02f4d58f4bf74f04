//! etcd's server-side figures from its `/metrics` (Prometheus text, served on the client
//! URL), parsed with `prometheus-parse`.

use crate::target::server::ServerCounters;

/// WAL fsync latency, in seconds.
pub const WAL_FSYNC: &str = "etcd_disk_wal_fsync_duration_seconds";
/// bbolt commit latency, in seconds.
pub const BACKEND_COMMIT: &str = "etcd_disk_backend_commit_duration_seconds";

/// The WAL fsync and backend commit histograms of one `/metrics` text.
pub fn parse(text: &str) -> Result<ServerCounters, String> {
    crate::target::prom::server_counters(text, "etcd /metrics", WAL_FSYNC, Some(BACKEND_COMMIT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcds_histograms_are_read() {
        let text = "\
# HELP etcd_disk_wal_fsync_duration_seconds The latency distributions of fsync called by WAL.
# TYPE etcd_disk_wal_fsync_duration_seconds histogram
etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.001\"} 10
etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.002\"} 18
etcd_disk_wal_fsync_duration_seconds_bucket{le=\"+Inf\"} 20
etcd_disk_wal_fsync_duration_seconds_sum 0.025
etcd_disk_wal_fsync_duration_seconds_count 20
# HELP etcd_disk_backend_commit_duration_seconds The latency distributions of commit called by backend.
# TYPE etcd_disk_backend_commit_duration_seconds histogram
etcd_disk_backend_commit_duration_seconds_bucket{le=\"0.001\"} 1
etcd_disk_backend_commit_duration_seconds_bucket{le=\"+Inf\"} 2
etcd_disk_backend_commit_duration_seconds_sum 0.003
etcd_disk_backend_commit_duration_seconds_count 2
";
        let c = parse(text).unwrap();
        assert_eq!(c.wal_fsync.count, 20.0);
        assert_eq!(c.wal_fsync.sum, 0.025);
        assert_eq!(c.wal_fsync.buckets.len(), 3);
        assert_eq!(c.backend_commit.unwrap().count, 2.0);
        assert_eq!(c.started, None);
        let started = format!(
            "{text}# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds 1.7e+09\n"
        );
        assert_eq!(parse(&started).unwrap().started, Some(1.7e9));
        assert!(parse("up 1\n").unwrap_err().contains(WAL_FSYNC));
    }
}
