//! The command line of a local etcd member, translated from the workload's settings.
//!
//! What is translated, and how (the fairness statement of a comparison repeats it):
//! - raftbench heartbeats every tick, so `--heartbeat-interval` = `tick_ms`, and
//!   `--election-timeout` = `tick_ms × election_ticks`;
//! - `--snapshot-count` = `snapshot_interval` (applied entries between snapshots, as in
//!   raftbench; raftbench's `0`, never, becomes a count no run reaches, since etcd reads 0
//!   as its default of 100 000). etcd keeps 5 000 entries below a snapshot for slow
//!   followers, a constant of etcd 3.4 (raftbench's `compact_lag`);
//! - fsync: etcd always syncs its WAL before acknowledging (`fsync = "always"`; `never` is
//!   refused);
//! - `[cluster.etcd]` sets what has no raftbench counterpart: bbolt's batch interval and
//!   limit, the space quota and auto-compaction.

use std::path::{Path, PathBuf};

use crate::wire::{EtcdOptions, RaftSettings};

/// The name a member of a cluster raftbench starts has (`--name`).
pub fn member_name(id: u64) -> String {
    format!("node-{id}")
}

/// A snapshot count no run reaches: raftbench's "never snapshot".
const NEVER: u64 = 1 << 40;

/// How to launch every member of one local etcd cluster.
#[derive(Debug, Clone)]
pub struct EtcdLaunch {
    /// The etcd executable (resolved on `PATH`).
    pub binary: PathBuf,
    /// `--initial-cluster` of the founding members: `node-1=http://peer1,...`.
    pub initial_cluster: String,
    /// `--initial-cluster-token`: unique per cluster, so that members of two clusters
    /// never talk to each other.
    pub token: String,
    pub raft: RaftSettings,
    pub options: EtcdOptions,
}

/// Why a local etcd cluster cannot be launched.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(
        "no etcd executable {0:?} on PATH: install Debian's etcd-server package \
         (apt-get install etcd-server; scripts/test.sh and scripts/quickstart.sh do it when \
         run as root), or set [cluster.etcd] binary to its path"
    )]
    NotFound(String),
}

/// `name` as a path, or found on `PATH`.
pub fn resolve_binary(name: &str) -> Result<PathBuf, LaunchError> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(LaunchError::NotFound(name.to_string()))
        };
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| LaunchError::NotFound(name.to_string()))
}

impl EtcdLaunch {
    /// The arguments of member `id`. `join` is what a membership change told a member
    /// added later (its `--initial-cluster` and `--initial-cluster-state existing`); a
    /// founding member starts with the founding cluster. etcd reads these only when its
    /// data directory is empty: a restart comes back as it was.
    pub fn args(
        &self,
        id: u64,
        peer_addr: &str,
        client_addr: &str,
        data_dir: &Path,
        join: &[String],
    ) -> Vec<String> {
        let o = &self.options;
        let peer = format!("http://{peer_addr}");
        let client = format!("http://{client_addr}");
        let snapshot_count = match self.raft.snapshot_interval {
            0 => NEVER,
            n => n,
        };
        let mut args: Vec<String> = [
            "--name",
            &member_name(id),
            "--data-dir",
            &data_dir.to_string_lossy(),
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
            "--initial-cluster-token",
            &self.token,
            "--heartbeat-interval",
            &self.raft.tick_ms.to_string(),
            "--election-timeout",
            &(self.raft.tick_ms * self.raft.election_ticks as u64).to_string(),
            "--snapshot-count",
            &snapshot_count.to_string(),
            "--backend-batch-interval",
            &format!("{}ms", o.backend_batch_interval_ms),
            "--backend-batch-limit",
            &o.backend_batch_limit.to_string(),
            "--quota-backend-bytes",
            &o.quota_backend_bytes.as_u64().to_string(),
            // raftbench's nodes campaign with pre-vote; etcd 3.4 does only when asked.
            "--pre-vote",
            "--logger",
            "zap",
            "--log-outputs",
            "stderr",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if o.auto_compaction_retention > 0 {
            args.extend([
                "--auto-compaction-mode".into(),
                "revision".into(),
                "--auto-compaction-retention".into(),
                o.auto_compaction_retention.to_string(),
            ]);
        }
        if join.is_empty() {
            args.extend([
                "--initial-cluster".into(),
                self.initial_cluster.clone(),
                "--initial-cluster-state".into(),
                "new".into(),
            ]);
        } else {
            args.extend(join.iter().cloned());
        }
        args
    }

    /// Refuse raft settings etcd would refuse to start with (it wants an election timeout
    /// of at least five heartbeats and at most 50 s), as (field, message), so that a run
    /// is refused at the setting instead of timing out waiting for a leader.
    pub fn check(raft: &RaftSettings) -> Result<(), (&'static str, String)> {
        let timeout = raft.tick_ms.saturating_mul(raft.election_ticks as u64);
        if raft.election_ticks < 5 {
            return Err((
                "election_ticks",
                format!(
                    "etcd needs an election timeout of at least 5 heartbeats (election_ticks \
                     >= 5), got {}",
                    raft.election_ticks
                ),
            ));
        }
        if timeout > 50_000 {
            return Err((
                "tick_ms",
                format!(
                    "etcd's election timeout is at most 50000 ms, and tick_ms × election_ticks \
                     = {timeout} ms"
                ),
            ));
        }
        Ok(())
    }

    /// What differs between these members and raftbench nodes with the same settings,
    /// for the fairness statement.
    pub fn differences(raft: &RaftSettings, o: &EtcdOptions) -> String {
        format!(
            "etcd: its own raft, WAL and bbolt backend; WAL always fsynced; heartbeat {} ms and \
             election timeout {} ms (raftbench: {} ticks of {} ms), pre-vote on in both; \
             snapshot every {} entries, 5000 kept below it (etcd constant); bbolt commits \
             every {} ms or {} writes (writes are acknowledged from the WAL before); {}; \
             writes sent over gRPC to the leader; a `snapshot` event streams etcd's whole \
             bbolt database to the harness (Maintenance.Snapshot: no raft snapshot, no log \
             compaction), so its duration and size are not those of a raftbench snapshot",
            raft.tick_ms,
            raft.tick_ms * raft.election_ticks as u64,
            raft.election_ticks,
            raft.tick_ms,
            match raft.snapshot_interval {
                0 => "(never)".to_string(),
                n => n.to_string(),
            },
            o.backend_batch_interval_ms,
            o.backend_batch_limit,
            match o.auto_compaction_retention {
                0 => "every revision kept (no auto-compaction)".to_string(),
                n => format!("auto-compaction keeps {n} revisions"),
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn election_settings_etcd_refuses_are_refused_here() {
        let raft = |tick_ms, election_ticks| RaftSettings {
            tick_ms,
            election_ticks,
            ..RaftSettings::default()
        };
        assert_eq!(
            EtcdLaunch::check(&raft(50, 4)).unwrap_err().0,
            "election_ticks"
        );
        assert_eq!(
            EtcdLaunch::check(&raft(10_000, 6)).unwrap_err().0,
            "tick_ms"
        );
        EtcdLaunch::check(&raft(50, 10)).unwrap();
        EtcdLaunch::check(&raft(10_000, 5)).unwrap();
    }

    #[test]
    fn settings_are_translated_to_etcd_flags() {
        let l = EtcdLaunch {
            binary: "etcd".into(),
            initial_cluster: "node-1=http://127.0.0.1:1".into(),
            token: "t".into(),
            raft: RaftSettings {
                tick_ms: 20,
                election_ticks: 15,
                snapshot_interval: 0,
                compact_lag: 0,
            },
            options: EtcdOptions::default(),
        };
        let a = l.args(1, "127.0.0.1:1", "127.0.0.1:2", Path::new("/d"), &[]);
        let flag = |f: &str| a[a.iter().position(|x| x == f).unwrap() + 1].clone();
        assert_eq!(flag("--heartbeat-interval"), "20");
        assert_eq!(flag("--election-timeout"), "300");
        assert_eq!(flag("--snapshot-count"), NEVER.to_string());
        assert_eq!(flag("--initial-cluster-state"), "new");
        assert_eq!(flag("--name"), "node-1");
        assert!(a.iter().any(|x| x == "--pre-vote"));
        let joined = l.args(
            4,
            "127.0.0.1:7",
            "127.0.0.1:8",
            Path::new("/d"),
            &[
                "--initial-cluster".into(),
                "x".into(),
                "--initial-cluster-state".into(),
                "existing".into(),
            ],
        );
        assert!(
            joined
                .windows(2)
                .any(|w| w[0] == "--initial-cluster" && w[1] == "x")
        );
        assert!(!joined.iter().any(|x| x == "new"));
    }

    #[test]
    fn a_missing_binary_names_the_package() {
        let e = resolve_binary("etcd-that-does-not-exist").unwrap_err();
        assert!(e.to_string().contains("etcd-server"), "{e}");
    }
}
