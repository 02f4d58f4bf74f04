//! raftbench: a pluggable storage-engine benchmarking harness for a raft key-value store.
//!
//! # Layout: two wings that meet only at `wire`
//!
//! The **server wing** is a raft key-value node; the **harness wing** starts, loads, faults
//! and measures clusters of them. They meet only at a node's HTTP API and at process
//! signals, and share only the vocabulary in [`wire`], so a run against a cluster the
//! harness started and one against a live cluster on other hosts measure the same thing
//! (`tests/it/layering.rs` checks the imports).
//!
//! - [`wire`] — the shared vocabulary: the `/status` report, cluster files (nodes,
//!   addresses, raft settings, backend section, control commands), the API's limits and
//!   [`ErrorCode`](wire::ErrorCode), backend and fsync names, the run manifest (`run.json`).
//!
//! Server wing:
//! - [`server`] — the composition root: [`server::run`] wires storage, raft thread, peer
//!   transport and HTTP API together and runs until a shutdown future completes;
//! - [`node`] — [`node::start`] opens the storage and starts the raft loop (the OS thread
//!   that owns `RawNode` and the backend); its [`node::NodeHandle`] is what the API uses;
//! - [`api`] — a node's HTTP API (client and admin endpoints), given a handle;
//! - [`transport`] — peer TCP with per-peer queues, reconnects and fault injection;
//! - [`kv`] — the state-machine commands carried in raft entries;
//! - [`storage`] — the [`StorageBackend`](storage::StorageBackend) contract (raft log +
//!   applied KV state) and its engines: [`storage::memwal`] (memory + checksummed WAL and
//!   snapshot files), `storage::rocks` (RocksDB; cargo feature `rocksdb`, on by default),
//!   the [`storage::conformance`] suite every engine must pass, and [`storage::stress`] (the
//!   crash-test workload).
//!
//! Harness wing:
//! - [`client`] — HTTP client of a cluster: leader tracking, redirects, retries, outcome
//!   classification;
//! - [`target`] — what the harness drives: raftbench nodes or a peer system (etcd, over
//!   gRPC), behind one data plane ([`target::KvClient`]) and one control plane
//!   ([`target::TargetApi`]: status, membership, snapshots), and how etcd members are
//!   launched;
//! - [`cluster`] — clusters to drive: [`cluster::Cluster`] over a
//!   [`cluster::NodeControl`] (local processes, or an attached cluster's control
//!   commands); `raftbench cluster up`;
//! - [`workload`] — workload files (format + validation), key/value generators and the
//!   runner (`raftbench run`) with events, recovery timing, verification and results files;
//! - [`metrics`] — HdrHistogram recorders (corrected and service latency, per second);
//! - [`report`] — charts (plotters, PNG + SVG) and the HTML report (`raftbench plot`);
//! - [`study`] — experiments that drive the runner: `compare`, `capacity`, `merge`;
//! - [`loadtest`] — a small closed-loop load (`raftbench loadtest`);
//! - [`remote`] — hosts: nodes and load generators on other machines, reached over ssh or
//!   a command prefix (`cluster up --cluster`, `run --cluster` with generator hosts);
//! - [`faultfs`] — a FUSE file system under a node's data directory that can lose what
//!   was not fsynced (power loss, torn write-back), slow or fail fsyncs and fill up
//!   (`raftbench faultfs`);
//! - [`pagecache`], [`procinfo`] — evicting a node's data from the page cache (cold
//!   restarts); `/proc` and machine facts.
//!
//! [`cli`] holds the command-line definitions (`clap`); `main.rs` only dispatches.

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
pub mod faultfs;
pub mod loadtest;
pub mod metrics;
pub mod pagecache;
pub mod procinfo;
pub mod remote;
pub mod report;
pub mod study;
pub mod target;
pub mod workload;

pub mod cli;
