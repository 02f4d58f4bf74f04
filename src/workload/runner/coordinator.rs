//! `run FILE --cluster hosts.toml` with `[[generator]]` hosts: this process coordinates.
//!
//! It puts no load on the cluster itself. In order:
//! 1. every host (the nodes' and the generators') is checked: reachable, the same
//!    raftbench build, its clock offset measured (a failure names the host before anything
//!    starts), and the cluster must be healthy;
//! 2. each generator host receives the workload, the cluster file the nodes read and the
//!    secret (mode 0600) in its working directory;
//! 3. generator *i of N* starts on each, coordinated ([`crate::remote::sync`]): the run and
//!    every phase start at one absolute moment, which each generator waits for in its own
//!    clock, and their output streams here with their names;
//! 4. the coordinator alone injects the events, each registered before it is injected,
//!    and heals every network fault once every generator has finished its last phase, or
//!    the run has failed;
//! 5. at the end it fetches each generator's results through its transport into
//!    `generators/`, merges them exactly (`raftbench merge`: histograms added) into this
//!    results directory, and adds the events and their recovery figures, writes resuming
//!    computed across every generator's acknowledgements.
//!
//! A generator whose session ends early aborts the whole run with its host named: the
//! others are stopped (their sessions killed, so their stdin ends) and the faults healed.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Mutex;

use super::recovery::{EventLog, Pending};
use super::{RunError, RunOptions, RunResult, live, prepare_workload, results_dir};
use crate::cluster::Cluster;
use crate::remote::generators::{GeneratorError, GeneratorSpec, Generators};
use crate::remote::nodes::HOST_CLUSTER_FILE;
use crate::remote::sync::{self, Resumed};
use crate::remote::up::{distribute, host_execs};
use crate::remote::{HostExec, HostReport, check_hosts};
use crate::report::data::RunData;
use crate::study::merge::{self, MergeOptions};
use crate::wire::{ClusterFile, HostRecord, RunManifest};
use crate::workload::Workload;
use crate::workload::events::RecoveryRow;
use crate::workload::spec::WorkloadFile;

/// How far ahead of "now" each start is named: enough for the `GO` line to reach every
/// host over ssh.
const START_LEAD: Duration = Duration::from_millis(1500);

/// The coordinated run; see the module docs.
pub(super) async fn run(o: RunOptions, file: ClusterFile) -> Result<RunResult, RunError> {
    let path = o
        .cluster
        .clone()
        .expect("a coordinated run has a cluster file");
    if o.replay.restart_cache.is_some() {
        return Err(RunError::Invalid(
            "--restart-cache needs nodes raftbench starts itself; it does not apply to --cluster"
                .into(),
        ));
    }
    let w = prepare_workload(&o)?;
    let f = &w.file;
    let started_at = SystemTime::now();
    let dir = results_dir(&o, f, started_at)?;

    // 1. Hosts, then the cluster.
    let gen_hosts: Vec<&str> = file.generators.iter().map(|g| g.host.as_str()).collect();
    let node_hosts: Vec<&str> = file
        .nodes
        .iter()
        .filter_map(|n| n.host.as_deref())
        .collect();
    let all = host_execs(&file, &path, node_hosts.iter().chain(&gen_hosts).copied())?;
    let reports = check_hosts(&all).await.map_err(|e| {
        RunError::Invalid(format!(
            "{}: hosts failed their check, so nothing was started:\n{e}",
            path.display()
        ))
    })?;
    if !o.replay.quiet {
        for r in &reports {
            eprintln!(
                "host {}: {}, clock {:+.1} ms (± {:.1} ms)",
                r.host, r.version, r.clock.offset_ms, r.clock.error_ms
            );
        }
    }
    let (cluster, _backend, live) = live::attach(&path, &dir.join("cluster")).await?;
    let cluster = Arc::new(Mutex::new(cluster));

    // 2. What the generators read.
    let remote_dir = remote_dir(&dir, started_at);
    let gen_execs = host_execs(&file, &path, gen_hosts.iter().copied())?;
    distribute(&file, &path, &gen_execs).await?;
    let text = std::fs::read(&o.workload).map_err(|source| RunError::Output {
        path: o.workload.clone(),
        source,
    })?;
    let wl = format!("{remote_dir}/workload.toml");
    for h in &gen_execs {
        h.put_file(&wl, &text, 0o644)
            .await
            .map_err(|e| RunError::Invalid(e.to_string()))?;
    }

    // 3. The generators.
    let n = gen_hosts.len() as u64;
    let execs: BTreeMap<&str, &HostExec> = gen_execs.iter().map(|h| (h.name(), h)).collect();
    let clock = |name: &str| {
        reports
            .iter()
            .find(|r| r.host == name)
            .map(|r| r.clock)
            .expect("every generator host was checked")
    };
    let specs: Vec<GeneratorSpec> = gen_hosts
        .iter()
        .enumerate()
        .map(|(k, name)| {
            let i = k as u64 + 1;
            let exec = execs[name];
            GeneratorSpec {
                exec: exec.clone(),
                clock: clock(name),
                script: generator_script(exec, &o, &wl, &format!("{remote_dir}/g{i}"), i, n),
                who: format!("generator {i} on host {name}"),
            }
        })
        .collect();
    let mut gens = Generators::launch(specs).map_err(gen_error)?;
    let places = Places {
        execs: &execs,
        gen_hosts: &gen_hosts,
        remote_dir: &remote_dir,
    };

    // 4. The run, with its events; a signal stops it as a failure would, until the
    // results are merged.
    let mut log = EventLog::default();
    log.faults.seed = f.seed;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| RunError::Invalid(format!("installing the SIGTERM handler: {e}")))?;
    let driven = tokio::select! {
        d = drive(&mut gens, &cluster, &mut log, f) => d,
        _ = tokio::signal::ctrl_c() => Err(RunError::Invalid("SIGINT: run stopped".into())),
        _ = term.recv() => Err(RunError::Invalid("SIGTERM: run stopped".into())),
    };
    // Every generator has finished (or the run failed): nothing injected outlives it.
    for failed in crate::workload::events::heal_all(&cluster, &mut log.faults).await {
        eprintln!("warning: could not heal {failed}");
    }
    let ended = match driven {
        Ok((run_start, end, pending)) => tokio::select! {
            r = finish(&o, &dir, &mut gens, pending, &log, &places) => {
                r.map(|r| (end.duration_since(run_start), r))
            }
            _ = tokio::signal::ctrl_c() => Err(RunError::Invalid("SIGINT: run stopped".into())),
            _ = term.recv() => Err(RunError::Invalid("SIGTERM: run stopped".into())),
        },
        Err(e) => Err(e),
    };
    drop(gens); // kills every session still open
    cluster.lock().await.shutdown();
    let (duration, (merged, data_manifest)) = ended?;
    let mut manifest = data_manifest;
    manifest.workload = w;
    manifest.workload_file = o.workload.clone();
    manifest.live_cluster = Some(live);
    manifest.duration_s = duration.as_secs_f64();
    manifest.hosts = host_records(&file, &reports);
    let run_json = dir.join("run.json");
    manifest
        .save(&run_json)
        .map_err(|source| RunError::Output {
            path: run_json,
            source,
        })?;
    Ok(RunResult {
        dir,
        verify: merged.verify,
        summary: merged.summary,
    })
}

/// Where the generators' results are: each one's host, and the directory on it.
struct Places<'a> {
    execs: &'a BTreeMap<&'a str, &'a HostExec>,
    gen_hosts: &'a [&'a str],
    remote_dir: &'a str,
}

/// After the last phase: the generators' answers, their results fetched and merged, and
/// the events and recovery of the whole run written beside.
async fn finish(
    o: &RunOptions,
    dir: &Path,
    gens: &mut Generators,
    pending: Vec<(usize, Vec<Pending>)>,
    log: &EventLog,
    places: &Places<'_>,
) -> Result<(merge::Merged, RunManifest<Workload>), RunError> {
    let events: Vec<(usize, u64)> = pending
        .iter()
        .flat_map(|(i, ps)| ps.iter().map(|p| (*i, (p.at_s() * 1e6) as u64)))
        .collect();
    let answers = gens.finish(&events).await.map_err(gen_error)?;
    let mut dirs = Vec::new();
    for (k, name) in places.gen_hosts.iter().enumerate() {
        let i = k + 1;
        let local = dir.join("generators").join(format!("g{i}-{name}"));
        places.execs[name]
            .fetch_dir(&format!("{}/g{i}", places.remote_dir), &local)
            .await
            .map_err(|e| RunError::Invalid(e.to_string()))?;
        dirs.push(local);
    }
    let merged = merge::merge_in_place(&MergeOptions {
        dirs,
        out: dir.to_path_buf(),
        force: false,
        cli: o.replay.cli.clone(),
    })
    .map_err(|e| RunError::Invalid(format!("merging the generators' results: {e}")))?;
    let data = RunData::load(dir)
        .map_err(|e| RunError::Invalid(format!("reading the merged results: {e}")))?;
    let recovery = recovery_rows(pending, &answers, &data).await;
    crate::workload::output::write_events(dir, &log.rows, &recovery).map_err(|source| {
        RunError::Output {
            path: dir.to_path_buf(),
            source,
        }
    })?;
    let mut manifest = data.manifest;
    let mut merged = merged;
    lost_ages(&mut manifest, log);
    merged.verify = manifest.verify.clone();
    Ok((merged, manifest))
}

/// Each verify phase's `newest_lost_age_ms`: the power cuts were the coordinator's, so the
/// generators could not tell how old the newest write a cut took was. As a single run
/// does: from the last cut since the verify before it.
fn lost_ages(manifest: &mut RunManifest<Workload>, log: &EventLog) {
    let mut since = 0;
    let mut newest: Option<u64> = None;
    for pv in &mut manifest.verify_phases {
        let r = &mut pv.report;
        r.newest_lost_age_ms = log.newest_lost_age_ms(since, pv.t_ms, r.newest_lost_acked_ms);
        since = pv.t_ms;
        newest = match (newest, r.newest_lost_age_ms) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        };
    }
    if let Some(v) = &mut manifest.verify {
        v.newest_lost_age_ms = newest;
    }
}

/// Where on each generator host this run's files go, relative to its workdir: named by
/// the results directory and the moment, so that no earlier run's are in the way.
fn remote_dir(dir: &Path, started_at: SystemTime) -> String {
    let run_id = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "run".into());
    format!("runs/{run_id}-{}", sync::unix_ns(started_at) / 1_000_000)
}

/// The script that runs generator `i` of `n` in its host's working directory.
fn generator_script(
    h: &HostExec,
    o: &RunOptions,
    workload: &str,
    out: &str,
    i: u64,
    n: u64,
) -> String {
    let q = |s: &str| crate::cluster::sh_quote(s);
    let mut flags = String::new();
    let r = &o.replay;
    if let Some(s) = r.seed {
        flags.push_str(&format!(" --seed {s}"));
    }
    if r.scale != 1.0 {
        flags.push_str(&format!(" --scale {}", r.scale));
    }
    if let Some(p) = r.fsync {
        flags.push_str(&format!(" --fsync {}", q(&p.to_string())));
    }
    if r.expect_loss {
        flags.push_str(" --expect-loss");
    }
    if r.quiet {
        flags.push_str(" --quiet");
    }
    format!(
        "cd {wd} && exec {bin} run {wl} --cluster {HOST_CLUSTER_FILE} --client-id {i} \
         --clients {n} --coordinated --out {out}{flags}",
        wd = h.in_workdir(""),
        bin = h.binary(),
        wl = q(workload),
        out = q(out),
    )
}

/// The run under the coordinator: the start, then each phase at its barrier with its
/// events injected here, until every generator has finished its last phase; a failed
/// generator ends it at once. Returns the run's start, its end, and each load phase's
/// injected events (by phase index).
async fn drive(
    gens: &mut Generators,
    cluster: &Arc<Mutex<Cluster>>,
    log: &mut EventLog,
    f: &WorkloadFile,
) -> Result<(Instant, Instant, Vec<(usize, Vec<Pending>)>), RunError> {
    let run_start = instant_of(
        gens.barrier(sync::RUN, START_LEAD)
            .await
            .map_err(gen_error)?,
    );
    let mut pending = Vec::new();
    for (i, p) in f.phases.iter().enumerate() {
        let p = p.get_ref();
        let start = instant_of(
            gens.barrier(&sync::phase_label(i), START_LEAD)
                .await
                .map_err(gen_error)?,
        );
        if p.events.is_empty() {
            continue;
        }
        tokio::time::sleep_until(start.into()).await;
        let injected = tokio::select! {
            ps = super::recovery::inject(run_start, cluster, log, p, start) => ps,
            e = gens.watch() => return Err(gen_error(e)),
        };
        pending.push((i, injected));
    }
    gens.all_done().await.map_err(gen_error)?;
    Ok((run_start, Instant::now(), pending))
}

/// The monotonic instant at which this machine's clock reads `t`.
fn instant_of(t: SystemTime) -> Instant {
    sync::instant_at(sync::unix_ns(t))
}

fn gen_error(e: GeneratorError) -> RunError {
    RunError::Invalid(format!("load generator failed, run aborted: {e}"))
}

/// Every event's recovery rows: the nodes' figures; writes resuming from the last
/// acknowledgement before the event on any generator to the first acknowledgement of a
/// write sent after it on any generator; the p99 during recovery from the merged
/// per-second histograms.
async fn recovery_rows(
    pending: Vec<(usize, Vec<Pending>)>,
    answers: &[Vec<Resumed>],
    merged: &RunData,
) -> Vec<RecoveryRow> {
    let mut rows = Vec::new();
    let mut k = 0;
    for (i, ps) in pending {
        let phase = merged
            .manifest
            .workload
            .file
            .phases
            .get(i)
            .map(|p| p.get_ref().name.clone())
            .unwrap_or_default();
        for p in ps {
            let before = answers.iter().filter_map(|a| a.get(k)?.0).max();
            let after = answers.iter().filter_map(|a| a.get(k)?.1).min();
            k += 1;
            let p99 = |from: u64, to: u64| p99_between(merged, &phase, from, to);
            rows.extend(p.rows(before.zip(after), p99).await);
        }
    }
    rows
}

/// p99 of phase `phase`'s successful operations in the merged run's seconds `[from, to]`
/// (as a single generator's figure is of its phase's own operations).
fn p99_between(merged: &RunData, phase: &str, from: u64, to: u64) -> Option<u64> {
    let per_second = merged.timeline_histograms.as_ref()?;
    let mut h: Option<hdrhistogram::Histogram<u64>> = None;
    for ((t, p, _), sec) in per_second {
        if p == phase && (from..=to).contains(t) {
            match &mut h {
                Some(h) => crate::metrics::merge_into(h, sec).ok()?,
                None => h = Some(sec.clone()),
            }
        }
    }
    h.filter(|h| !h.is_empty())
        .map(|h| h.value_at_quantile(0.99))
}

/// What `run.json` records of each host: its roles, version and clock.
fn host_records(file: &ClusterFile, reports: &[HostReport]) -> Vec<HostRecord> {
    reports
        .iter()
        .map(|r| {
            let mut roles: Vec<String> = file
                .nodes
                .iter()
                .filter(|n| n.host.as_deref() == Some(r.host.as_str()))
                .map(|n| format!("node {}", n.id))
                .collect();
            roles.extend(
                file.generators
                    .iter()
                    .enumerate()
                    .filter(|(_, g)| g.host == r.host)
                    .map(|(k, _)| format!("generator {}", k + 1)),
            );
            HostRecord {
                host: r.host.clone(),
                roles,
                version: r.version.clone(),
                clock_offset_ms: r.clock.offset_ms,
                clock_error_ms: r.clock.error_ms,
            }
        })
        .collect()
}
