//! raftbench: a pluggable storage-engine benchmarking harness for a raft key-value store.
//!
//! # Layout
//!
//! - [`storage`] — the [`StorageBackend`](storage::StorageBackend) contract (raft log + applied
//!   KV state in one engine) and its engines:
//!   - [`storage::memwal`]: in-memory log and map over a checksummed write-ahead log and
//!     snapshot files;
//!   - [`storage::rocks`]: RocksDB with `raft_log`, `raft_meta` and `kv` column families
//!     (cargo feature `rocksdb`, on by default);
//!   - [`storage::conformance`]: the test suite every backend must pass;
//!   - [`storage::stress`]: the crash-test workload and its checker.
//! - [`kv`] — the state-machine commands carried in raft entries.
//! - [`cli`] — command-line definitions (`clap`); `main.rs` only dispatches.
//!
//! Still to come (see the issues): the raft node and its HTTP API, the local cluster
//! launcher, the workload runner, metrics and reports.

// raft's protobuf messages carry bookkeeping fields (`cached_size`, `unknown_fields`), so
// they are built with `default()` and field assignments, as raft-rs itself does.
#![allow(clippy::field_reassign_with_default)]

pub mod cli;
pub mod kv;
pub mod storage;
