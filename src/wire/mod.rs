//! The vocabulary both wings share, and nothing else.
//!
//! The server wing (`api`, `node`, `transport`, `kv`, `storage`) and the harness wing
//! (`client`, `cluster`, `workload`, `metrics`, `report`, `study`) meet only at a node's
//! HTTP API and at process signals. What crosses those seams is defined here, once:
//!
//! - [`status`]: the `GET /status` document ([`StatusReport`]) with the storage figures it
//!   carries;
//! - [`cluster_file`]: cluster files (nodes, addresses, raft settings, the backend section,
//!   control commands) and member addresses;
//! - [`hosts`]: the hosts of a multi-host cluster file, and how each is reached;
//! - [`api`]: the HTTP API's limits and its error vocabulary ([`ErrorCode`], [`ErrorBody`]);
//! - [`backend`]: backend kinds, fsync policies and engine options, by their names in files
//!   and on the command line;
//! - [`manifest`]: `run.json`, the manifest of a results directory ([`RunManifest`]);
//! - [`secret`]: the cluster secret ([`ClusterSecret`]): its file, and the bearer token admin
//!   calls carry.
//!
//! Nothing here runs: these are data types, their (de)serialisation and their checks.

pub mod api;
pub mod backend;
pub mod cluster_file;
pub mod hosts;
pub mod manifest;
pub mod secret;
pub mod status;

pub use api::{
    Direction, ErrorBody, ErrorCode, LinkRequest, MAX_KEY_BYTES, MAX_VALUE_BYTES, PartitionRequest,
};
pub use backend::{
    BackendConfig, BackendKind, Compression, EtcdOptions, FsyncPolicy, LogEngine, MemwalOptions,
    RaftEngineOptions, RedbDurability, RedbOptions, RocksdbOptions, StateEngine,
};
pub use cluster_file::{
    ClusterFile, ClusterFileError, ClusterNode, ControlCommands, MemberAddrs, RaftArgs,
    RaftSettings,
};
pub use hosts::{GeneratorHost, Host, HostTransport};
pub use manifest::{
    DiskLayer, Generator, HostRecord, LiveCluster, Machine, ManifestError, PhaseRecord,
    PhaseVerify, RUN_MANIFEST_SCHEMA, RaftLoopCost, RunManifest, ServerFigures, SloTermVerdict,
    SloVerdict, VerifyReport,
};
pub use secret::{ClusterSecret, SECRET_FILE_NAME, SecretError};
pub use status::{
    BackendStats, OpenReport, PeerSecurity, RaftStatus, Role, SnapshotBuilding, StatusReport,
};
