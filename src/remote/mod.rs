//! Hosts: running raftbench's nodes and load generators on other machines from one
//! coordinator, over plain OpenSSH (or any command prefix), as Jepsen, roachprod and tiup
//! do, rather than through agents of raftbench's own.
//!
//! - [`exec`]: a command on a host through its transport, and copies both ways;
//! - [`clock`]: a host's clock offset, measured over one session;
//! - [`check`]: the check before anything starts (reachable, same build, clock);
//! - [`nodes`]: the control commands of a node on a host, from its transport;
//! - [`up`]: `cluster up --cluster`, the nodes started on their hosts;
//! - [`sync`]: the line protocol between the coordinator and its load generators;
//! - [`generators`]: the coordinator's sessions with its generators.

pub mod check;
pub mod clock;
pub mod exec;
pub mod generators;
pub mod nodes;
pub mod sync;
pub mod up;

pub use check::{HostReport, check_hosts};
pub use clock::ClockOffset;
pub use exec::{ExecError, HostExec};
