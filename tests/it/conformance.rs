//! The storage conformance suite (`raftbench::storage::conformance`), once per backend and
//! fsync policy, plus model-based random sequences checked against raft's `MemStorage`.
#![allow(clippy::field_reassign_with_default)]

use proptest::prelude::*;
use raftbench::storage::conformance::{self, Op};
use raftbench::storage::{BackendConfig, BackendKind, FsyncPolicy};

fn template(kind: BackendKind, fsync: FsyncPolicy) -> BackendConfig {
    let mut cfg = BackendConfig::new(kind, "").with_fsync(fsync);
    // Small segments so that rotation and segment deletion are exercised.
    cfg.memwal.segment_size = bytesize::ByteSize::kib(4);
    cfg.rocksdb.block_cache_size = bytesize::ByteSize::mib(8);
    cfg.rocksdb.write_buffer_size = bytesize::ByteSize::mib(4);
    cfg
}

macro_rules! suite {
    ($modname:ident, $kind:expr, $fsync:expr) => {
        mod $modname {
            use super::*;

            fn cfg() -> BackendConfig {
                template($kind, $fsync)
            }

            #[test]
            fn term_table() {
                conformance::term_table(&cfg());
            }
            #[test]
            fn entries_table() {
                conformance::entries_table(&cfg());
            }
            #[test]
            fn first_last_index_table() {
                conformance::first_last_index_table(&cfg());
            }
            #[test]
            fn compact_table() {
                conformance::compact_table(&cfg());
            }
            #[test]
            fn create_snapshot_table() {
                conformance::create_snapshot_table(&cfg());
            }
            #[test]
            fn append_table() {
                conformance::append_table(&cfg());
            }
            #[test]
            fn apply_snapshot_table() {
                conformance::apply_snapshot_table(&cfg());
            }
            #[test]
            fn reopen_after_every_write() {
                conformance::reopen_after_every_write(&cfg());
            }
            #[test]
            fn apply_is_atomic() {
                conformance::apply_is_atomic(&cfg());
            }
            #[test]
            fn snapshot_installs_on_every_backend() {
                for other in BackendKind::ALL {
                    conformance::cross_backend_snapshot(&cfg(), &template(other, $fsync));
                }
            }

            proptest! {
                #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]
                #[test]
                fn matches_memstorage_model(ops in proptest::collection::vec(op(), 1..40)) {
                    conformance::check_against_model(&cfg(), &ops);
                }
            }
        }
    };
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

suite!(memwal_always, BackendKind::Memwal, FsyncPolicy::Always);
suite!(memwal_never, BackendKind::Memwal, FsyncPolicy::Never);
suite!(rocksdb_always, BackendKind::Rocksdb, FsyncPolicy::Always);
suite!(rocksdb_never, BackendKind::Rocksdb, FsyncPolicy::Never);
