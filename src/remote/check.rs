//! Before anything starts on a set of hosts: each is reachable through its transport, has
//! a raftbench binary of this very version, and has its clock offset measured. All hosts
//! are checked at once, and every failure is reported together, each naming its host.

use serde::{Deserialize, Serialize};

use super::clock::{self, ClockOffset};
use super::exec::{ExecError, HostExec};
use std::time::Duration;

/// What the check found on one host (recorded in `run.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostReport {
    pub host: String,
    /// `raftbench --version` there.
    pub version: String,
    pub clock: ClockOffset,
}

/// What `raftbench --version` prints for this build.
pub fn our_version() -> String {
    format!("raftbench {}", env!("CARGO_PKG_VERSION"))
}

async fn check_one(h: &HostExec) -> Result<HostReport, ExecError> {
    let script = format!(
        "mkdir -p {wd} && cd {wd} && {bin} --version",
        wd = h.in_workdir(""),
        bin = h.binary()
    );
    let out = h
        .run("the raftbench check", &script, &[], Duration::from_secs(20))
        .await?;
    let version = String::from_utf8_lossy(&out).trim().to_string();
    if version != our_version() {
        return Err(ExecError::Invalid {
            host: h.name().into(),
            message: format!(
                "{} is {version:?}, and this coordinator is {:?}: install the same build",
                h.binary(),
                our_version()
            ),
        });
    }
    let clock = clock::measure(h).await?;
    Ok(HostReport {
        host: h.name().into(),
        version,
        clock,
    })
}

/// Check every host; all reports, or every failure (one per line).
pub async fn check_hosts(hosts: &[HostExec]) -> Result<Vec<HostReport>, String> {
    let results = futures::future::join_all(hosts.iter().map(check_one)).await;
    let mut reports = Vec::new();
    let mut failures = Vec::new();
    for r in results {
        match r {
            Ok(r) => reports.push(r),
            Err(e) => failures.push(e.to_string()),
        }
    }
    if failures.is_empty() {
        Ok(reports)
    } else {
        Err(failures.join("\n"))
    }
}
