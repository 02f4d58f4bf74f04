//! The storage conformance suite (`raftbench::storage::conformance`), once per engine and
//! fsync policy, plus model-based random sequences checked against raft's `MemStorage`.
//!
//! Adding an engine: implement `conformance::BackendBuilder` for it and list it in
//! `conformance_suites!` at the bottom, once per fsync policy. It then gets every check,
//! and every engine's snapshots are installed on it and its snapshots on every engine.

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use raftbench::storage::FsyncPolicy::{Always, Never};
#[cfg(feature = "rocksdb")]
use raftbench::storage::conformance::RocksdbBuilder;
use raftbench::storage::conformance::{self, BackendBuilder, MemwalBuilder, ModeBuilder, Op};

/// For each `name => builder;`, a module `name` of tests running the suite on `builder`;
/// and `install_on_every_backend`, which installs a snapshot on every builder listed.
macro_rules! conformance_suites {
    ($($(#[$attr:meta])* $name:ident => $builder:expr;)+) => {
        /// A snapshot of `source` installs on every listed engine and fsync policy.
        fn install_on_every_backend(source: &impl BackendBuilder) {
            $(
                $(#[$attr])*
                conformance::cross_backend_snapshot(source, &$builder);
            )+
        }
        $(
            $(#[$attr])*
            conformance_suite!($name, $builder);
        )+
    };
}

/// A module `$name` of tests running the whole suite on `$builder`.
macro_rules! conformance_suite {
    ($name:ident, $builder:expr) => {
        mod $name {
            use super::*;

            fn builder() -> impl BackendBuilder {
                $builder
            }

            #[test]
            fn term_table() {
                conformance::term_table(&builder());
            }
            #[test]
            fn entries_table() {
                conformance::entries_table(&builder());
            }
            #[test]
            fn first_last_index_table() {
                conformance::first_last_index_table(&builder());
            }
            #[test]
            fn compact_table() {
                conformance::compact_table(&builder());
            }
            #[test]
            fn create_snapshot_table() {
                conformance::create_snapshot_table(&builder());
            }
            #[test]
            fn background_snapshot() {
                conformance::background_snapshot(&builder());
            }
            #[test]
            fn append_table() {
                conformance::append_table(&builder());
            }
            #[test]
            fn apply_snapshot_table() {
                conformance::apply_snapshot_table(&builder());
            }
            #[test]
            fn reopen_after_every_write() {
                conformance::reopen_after_every_write(&builder());
            }
            #[test]
            fn apply_is_atomic() {
                conformance::apply_is_atomic(&builder());
            }
            #[test]
            fn snapshot_installs_on_every_backend() {
                install_on_every_backend(&builder());
            }

            proptest! {
                #![proptest_config(proptest_config())]
                #[test]
                fn matches_memstorage_model(ops in proptest::collection::vec(op(), 1..40)) {
                    conformance::check_against_model(&builder(), &ops);
                }
            }
        }
    };
}

/// 128 random sequences per suite. Failing cases are kept in
/// `tests/it/conformance.proptest-regressions`, next to this file, and replayed first:
/// proptest's default would look for `tests/proptest-regressions/conformance.txt`, because
/// it places the file relative to the nearest `main.rs` (`tests/it/main.rs`).
fn proptest_config() -> ProptestConfig {
    ProptestConfig {
        cases: 128,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u64..4, 1u64..6, any::<bool>()).prop_map(|(back, n, bump)| Op::Append { back, n, bump }),
        1 => (1u64..3).prop_map(|skip| Op::AppendGap { skip }),
        3 => (0u64..3, 0u64..3).prop_map(|(back, vote)| Op::HardState { back, vote }),
        3 => (1u64..6).prop_map(|n| Op::Apply { n }),
        2 => (0u64..3).prop_map(|back| Op::Compact { back }),
        1 => Just(Op::CreateSnapshot),
        1 => (1u64..4, 0u8..5).prop_map(|(ahead, pairs)| Op::Install { ahead, pairs }),
        2 => Just(Op::Reopen),
    ]
}

conformance_suites! {
    memwal_always => MemwalBuilder { fsync: Always };
    memwal_never => MemwalBuilder { fsync: Never };
    #[cfg(feature = "rocksdb")]
    rocksdb_always => RocksdbBuilder { fsync: Always };
    #[cfg(feature = "rocksdb")]
    rocksdb_never => RocksdbBuilder { fsync: Never };
    wal_memory_always => ModeBuilder::new("wal+memory", Always);
    wal_memory_never => ModeBuilder::new("wal+memory", Never);
    #[cfg(feature = "rocksdb")]
    rocksdb_rocksdb_no_state_wal_always => ModeBuilder::new("rocksdb+rocksdb", Always)
        .with("state_wal = false", |c| c.rocksdb.state_wal = false);
    #[cfg(feature = "rocksdb")]
    rocksdb_rocksdb_no_state_wal_never => ModeBuilder::new("rocksdb+rocksdb", Never)
        .with("state_wal = false", |c| c.rocksdb.state_wal = false);
    raft_engine_redb_immediate_always => ModeBuilder::new("raft-engine+redb", Always)
        .with("apply_durability = immediate", |c| {
            c.redb.apply_durability = raftbench::wire::RedbDurability::Immediate
        });
    wal_redb_always => ModeBuilder::new("wal+redb", Always);
    wal_redb_never => ModeBuilder::new("wal+redb", Never);
    raft_engine_memory_always => ModeBuilder::new("raft-engine+memory", Always);
    raft_engine_memory_never => ModeBuilder::new("raft-engine+memory", Never);
    raft_engine_redb_always => ModeBuilder::new("raft-engine+redb", Always);
    raft_engine_redb_never => ModeBuilder::new("raft-engine+redb", Never);
    #[cfg(feature = "rocksdb")]
    wal_rocksdb_always => ModeBuilder::new("wal+rocksdb", Always);
    #[cfg(feature = "rocksdb")]
    wal_rocksdb_never => ModeBuilder::new("wal+rocksdb", Never);
    #[cfg(feature = "rocksdb")]
    rocksdb_memory_always => ModeBuilder::new("rocksdb+memory", Always);
    #[cfg(feature = "rocksdb")]
    rocksdb_memory_never => ModeBuilder::new("rocksdb+memory", Never);
    #[cfg(feature = "rocksdb")]
    rocksdb_redb_always => ModeBuilder::new("rocksdb+redb", Always);
    #[cfg(feature = "rocksdb")]
    rocksdb_redb_never => ModeBuilder::new("rocksdb+redb", Never);
    #[cfg(feature = "rocksdb")]
    rocksdb_rocksdb_always => ModeBuilder::new("rocksdb+rocksdb", Always);
    #[cfg(feature = "rocksdb")]
    rocksdb_rocksdb_never => ModeBuilder::new("rocksdb+rocksdb", Never);
    #[cfg(feature = "rocksdb")]
    raft_engine_rocksdb_always => ModeBuilder::new("raft-engine+rocksdb", Always);
    #[cfg(feature = "rocksdb")]
    raft_engine_rocksdb_never => ModeBuilder::new("raft-engine+rocksdb", Never);
}
