//! raftbench's integration tests, as one test binary.
//!
//! One binary rather than one per file: each test binary links the whole library (and
//! RocksDB's C++), so nine of them cost nine links and nine copies on disk. Modules are the
//! former files; run one with `cargo nextest run --test it -E 'test(/^crash::/)'` or
//! `cargo test --test it crash::`.
//!
//! - `conformance`: the storage suite (`raftbench::storage::conformance`) per backend and
//!   fsync policy, and model-based random sequences against raft's `MemStorage`.
//! - `corruption`, `crash`: damaged data directories, and SIGKILL during writes.
//! - `cluster`: real node processes on 127.0.0.1.
//! - `server`: a node in-process through `server::run` on port-0 listeners.
//! - `cli`, `run`, `live`, `report`, `workloads`, `diff`: the binary, black-box, as a user
//!   runs it.
//! - `faultfs`: the FUSE fault file system through real mounts (power loss, torn writes,
//!   injected faults, stale mounts, the CLI, storage engines on top).
//! - `power`: power cuts and disk faults through the fault file system, end to end.
//! - `security`: the network surface under attack: strangers, wrong secrets, forged raft
//!   messages, oversized frames, connection floods, chunked snapshots, admin tokens.
//! - `etcd`: etcd as a peer target: real etcd members over gRPC, the runner, compare.
//! - `schema`: the committed results schemas, and the files they describe.
//! - `layering`: the two wings meet only at `wire` (checked on the source).
//! - `common`: helpers shared by the above.

mod common;

mod cli;
mod cluster;
mod conformance;
mod corruption;
mod crash;
mod diff;
mod etcd;
mod faultfs;
mod hosts;
mod layering;
mod live;
mod power;
mod report;
mod run;
mod schema;
mod security;
mod server;
mod workloads;
