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
//! - [`node`] — a raft key-value node process: the raft loop (owns `RawNode` and the
//!   backend), configuration and cluster files, status.
//! - [`transport`] — peer TCP with per-peer queues, reconnects and fault injection.
//! - [`api`] — a node's HTTP API (client and admin endpoints).
//! - [`cluster`] — the local cluster launcher (spawn, kill, restart, pause nodes; find the
//!   leader; per-process resources) used by `raftbench cluster up`, tests and the runner,
//!   and the same control of live clusters through their cluster files' commands.
//! - [`pagecache`] — evicting a node's data directory from the page cache (cold restarts).
//! - [`client`] — HTTP client of a cluster: leader tracking, redirects, retries.
//! - [`loadtest`] — a small closed-loop load (`raftbench loadtest`).
//! - [`cli`] — command-line definitions (`clap`); `main.rs` only dispatches.
//!
//! - [`workload`] — workload files (format + validation), key/value generators and the
//!   runner (`raftbench run`) with events, recovery timing, verification and results files.
//! - [`metrics`] — HdrHistogram recorders (corrected and service latency, per second).
//!
//! - [`report`] — charts (plotters, PNG + SVG) and the HTML report of a run (`raftbench plot`).
//! - [`study`] — experiments that drive the runner: backend comparison (`raftbench compare`),
//!   capacity planning (`raftbench capacity`) and merging load generators (`raftbench merge`).

// raft's protobuf messages carry bookkeeping fields (`cached_size`, `unknown_fields`), so
// they are built with `default()` and field assignments, as raft-rs itself does.
#![allow(clippy::field_reassign_with_default)]

pub mod wire;

// The server wing.
pub mod api;
pub mod kv;
pub mod node;
pub mod server;
pub mod storage;
pub mod transport;

// The harness wing.
pub mod client;
pub mod cluster;
pub mod loadtest;
pub mod metrics;
pub mod pagecache;
pub mod procinfo;
pub mod report;
pub mod study;
pub mod workload;

pub mod cli;
