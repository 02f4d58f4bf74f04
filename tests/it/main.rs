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
//! - `cli`, `run`, `live`, `report`, `workloads`: the binary, black-box, as a user runs it.
//! - `common`: helpers shared by the above.

mod common;

mod cli;
mod cluster;
mod conformance;
mod corruption;
mod crash;
mod live;
mod report;
mod run;
mod workloads;
