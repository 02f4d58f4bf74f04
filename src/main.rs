//! The `raftbench` binary: parse the command line, call the library.

use std::io::Write;

use anyhow::Context;
use clap::Parser;
use raftbench::cli::{
    BackendArgs, CapacityArgs, Cli, ClusterCommand, ClusterUpArgs, Command, CompareArgs,
    LoadtestArgs, ReplayArgs, RunArgs, StorageCommand,
};
use raftbench::cluster::{ClusterSpec, LocalCluster};
use raftbench::loadtest::{self, LoadOp, LoadtestOptions};
use raftbench::node::NodeConfig;
use raftbench::storage::{self, BackendConfig, StorageBackend, stress};
use raftbench::wire::{ClusterFile, RaftSettings};

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Node(args) => {
            let cfg = NodeConfig::from_args(*args)?;
            raftbench::server::run_process(cfg)?;
        }
        Command::Cluster(ClusterCommand::Up(args)) => cluster_up(args)?,
        Command::Loadtest(args) => run_loadtest(args)?,
        Command::Validate { files, cluster } => validate(&files, cluster.as_deref())?,
        Command::Run(args) => run_workload(args)?,
        Command::Compare(args) => compare(args)?,
        Command::Merge { dirs, out, force } => {
            let m = raftbench::study::merge::merge(&raftbench::study::merge::MergeOptions {
                dirs,
                out,
                force,
                cli: std::env::args().collect(),
            })?;
            println!("results: {}", m.dir.display());
            println!("report: {}", m.dir.join("report.html").display());
            if let Some(v) = &m.verify
                && v.lost + v.stale > 0
            {
                anyhow::bail!("{} acknowledged writes were lost", v.lost + v.stale);
            }
        }
        Command::Capacity(args) => capacity(args)?,
        Command::Plot { dir } if raftbench::study::compare::is_comparison(&dir) => {
            let report = raftbench::study::compare::replot(&dir)?;
            println!("{}", report.display());
        }
        Command::Plot { dir } => {
            let p = raftbench::report::plot::plot_run(&dir)?;
            for c in &p.charts {
                println!("{}", c.png.display());
                println!("{}", c.svg.display());
            }
            println!("{}", p.report.display());
        }
        Command::Storage(StorageCommand::Open(args)) => {
            let cfg = backend_config(&args);
            let b = storage::open_backend(&cfg)
                .with_context(|| format!("opening {} at {}", cfg.kind, cfg.dir.display()))?;
            let report = serde_json::json!({
                "backend": cfg.kind,
                "dir": cfg.dir,
                "fsync": cfg.fsync,
                "open": b.open_report(),
                "stats": b.stats(),
            });
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Command::Storage(StorageCommand::Stress(args)) => {
            let mut cfg = backend_config(&args.backend);
            if let Some(s) = args.segment_size {
                cfg.memwal.segment_size = bytesize::ByteSize::b(s);
            }
            let opts = stress::StressOptions {
                batch: args.batch,
                payload: args.payload,
                snapshot_every: args.snapshot_every,
                max_index: args.max_index,
                ..Default::default()
            };
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            let last = stress::run(&cfg, &opts, &mut out)
                .with_context(|| format!("stress on {} at {}", cfg.kind, cfg.dir.display()))?;
            writeln!(out, "done {last}")?;
        }
    }
    Ok(())
}

fn backend_config(args: &BackendArgs) -> BackendConfig {
    BackendConfig::new(args.backend, &args.dir).with_fsync(args.fsync)
}

/// `raftbench cluster up`: start nodes, wait for a leader, print how to reach them, and
/// keep running until Ctrl-C.
fn cluster_up(args: ClusterUpArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let spec = ClusterSpec {
        nodes: args.nodes,
        backend: BackendConfig::new(args.backend, "").with_fsync(args.fsync),
        raft: RaftSettings {
            snapshot_interval: args.snapshot_interval,
            ..RaftSettings::default()
        },
        dir: args.dir.clone(),
        binary: std::env::current_exe().context("locating the raftbench executable")?,
    };
    // The SIGINT handler is installed before any node starts: a Ctrl-C that arrived before
    // it would kill this process with the default action and orphan the nodes, which run
    // in their own sessions.
    let mut sigint = {
        let _guard = rt.enter();
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .context("installing the SIGINT handler")?
    };
    let mut cluster = LocalCluster::start(spec)?;
    let waited = rt.block_on(async {
        tokio::select! {
            l = cluster.wait_for_leader(std::time::Duration::from_secs(30)) => Some(l),
            _ = sigint.recv() => None,
        }
    });
    let leader = match waited {
        None => {
            cluster.shutdown();
            anyhow::bail!("interrupted before the cluster elected a leader; nodes stopped");
        }
        Some(Ok(l)) => l,
        Some(Err(e)) => {
            cluster.shutdown();
            anyhow::bail!(
                "{e}; see the node logs in {}",
                args.dir.join("logs").display()
            );
        }
    };
    // The cluster file, with control commands (signals to the recorded pids), so that
    // `raftbench run --cluster` can drive this cluster like one on other hosts.
    let controlled = cluster.controlled_cluster_file();
    for path in std::iter::once(cluster.cluster_file_path()).chain(args.cluster_file.clone()) {
        controlled
            .save(&path)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "raftbench cluster: {} nodes, backend {} (fsync {}), data in {}",
        args.nodes,
        args.backend,
        args.fsync,
        args.dir.display()
    );
    for n in cluster.nodes().values() {
        let role = if n.id == leader { "  (leader)" } else { "" };
        println!(
            "  node {}: http://{}  peer {}  pid {}{role}",
            n.id,
            n.client_addr,
            n.peer_addr,
            n.pid().unwrap_or(0)
        );
    }
    let url = cluster.url(leader)?;
    println!("cluster file: {}", cluster.cluster_file_path().display());
    println!("try:");
    println!("  curl -X PUT --data-binary hello {url}/kv/greeting");
    println!("  curl {url}/kv/greeting");
    println!("  curl {url}/status");
    println!("Ctrl-C stops every node.");
    rt.block_on(async {
        loop {
            tokio::select! {
                _ = sigint.recv() => return,
                _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => cluster.reap(),
            }
        }
    });
    println!("stopping...");
    cluster.shutdown();
    // Nodes relaunched by a `start` control command are not our children.
    cluster.stop_relaunched();
    Ok(())
}

/// `raftbench loadtest`: closed-loop runs for each client count, as a table.
fn run_loadtest(args: LoadtestArgs) -> anyhow::Result<()> {
    let endpoints = match &args.cluster_file {
        Some(f) => ClusterFile::load(f)?
            .nodes
            .iter()
            .map(|n| n.client_addr.clone())
            .collect(),
        None if !args.endpoints.is_empty() => args.endpoints.clone(),
        None => anyhow::bail!("give --cluster-file or --endpoints"),
    };
    let op = match args.op.as_str() {
        "put" => LoadOp::Put,
        "get" => LoadOp::Get,
        other => anyhow::bail!("unknown --op {other:?}; expected put or get"),
    };
    if args.seconds.is_nan() || args.seconds <= 0.0 {
        anyhow::bail!("--seconds must be positive");
    }
    let rt = tokio::runtime::Runtime::new()?;
    if let Some(dir) = &args.disk_baseline {
        let p50 = loadtest::fdatasync_p50_us(dir, args.value_size, 2000)
            .with_context(|| format!("measuring fdatasync in {}", dir.display()))?;
        println!(
            "disk: fdatasync of {} B appends, p50 {p50} us",
            args.value_size
        );
    }
    println!("clients      ops/s     p50_us   p90_us   p99_us   max_us  errors");
    for clients in &args.clients {
        let opts = LoadtestOptions {
            endpoints: endpoints.clone(),
            clients: (*clients).max(1),
            duration: std::time::Duration::from_secs_f64(args.seconds),
            value_size: args.value_size,
            keys: args.keys,
            op,
        };
        let r = rt.block_on(loadtest::run(&opts));
        println!(
            "{:>7} {:>10.0} {:>10} {:>8} {:>8} {:>8} {:>7}",
            r.clients, r.ops_per_sec, r.p50_us, r.p90_us, r.p99_us, r.max_us, r.errors
        );
    }
    Ok(())
}

/// How `compare` and `capacity` launch their runs.
fn launch(r: &ReplayArgs) -> anyhow::Result<raftbench::study::Launch> {
    Ok(raftbench::study::Launch {
        seed: r.seed,
        restart_cache: r.restart_cache,
        scale: r.scale,
        quiet: r.quiet,
        binary: std::env::current_exe().context("locating the raftbench executable")?,
        cli: std::env::args().collect(),
    })
}

/// `raftbench compare`: run, then print the table and where everything is.
fn compare(args: CompareArgs) -> anyhow::Result<()> {
    let opts = raftbench::study::compare::CompareOptions {
        workload: args.workload,
        backends: args.backends,
        repeat: args.repeat,
        out: args.out,
        launch: launch(&args.replay)?,
    };
    let rt = tokio::runtime::Runtime::new()?;
    let c = rt.block_on(raftbench::study::compare::compare(opts))?;
    print!("{}", std::fs::read_to_string(c.dir.join("comparison.md"))?);
    println!("\nresults: {}", c.dir.display());
    println!("report: {}", c.report.display());
    if c.lost > 0 {
        anyhow::bail!(
            "{} acknowledged writes were lost (see the verify line of each run's report)",
            c.lost
        );
    }
    Ok(())
}

/// `raftbench capacity`: run the study, print the recommendation's inputs.
fn capacity(args: CapacityArgs) -> anyhow::Result<()> {
    use raftbench::study::capacity;
    let opts = capacity::CapacityOptions {
        workload: args.workload,
        backends: args.backends,
        slo: args.slo,
        sizes: args.sizes,
        target_keys: args.target_keys,
        target_value_size: args.target_value_size.map(|b| b.as_u64()),
        steps: args.steps,
        repeat: args.repeat,
        start_rate: args.start_rate,
        out: args.out,
        launch: launch(&args.replay)?,
    };
    let rt = tokio::runtime::Runtime::new()?;
    let r = rt.block_on(capacity::capacity(opts))?;
    println!("projection to {} keys:", r.target_keys);
    for b in &r.backends {
        let bytes =
            |m: &str| b.projection_text(m, r.target_keys, &raftbench::report::plot::fmt_bytes);
        let ms = |m: &str| {
            b.projection_text(m, r.target_keys, &|v| {
                raftbench::report::plot::fmt_us(v * 1e3)
            })
        };
        println!(
            "  {:<8} max rate at SLO {}, RSS/node {}, disk/node {}, restart caught up {}",
            b.backend.to_string(),
            b.max_rate_text(),
            bytes("rss_bytes_per_node"),
            bytes("disk_bytes_per_node"),
            ms("caught_up_ms"),
        );
    }
    println!("results: {}", r.dir.display());
    println!("report: {}", r.report.display());
    Ok(())
}

/// `raftbench validate`: check every file, report each problem, fail if any.
fn validate(files: &[std::path::PathBuf], cluster: Option<&std::path::Path>) -> anyhow::Result<()> {
    let mut bad = 0;
    for f in files {
        let checked = raftbench::workload::Workload::load(f)
            .map_err(anyhow::Error::from)
            .and_then(|w| {
                if let Some(c) = cluster {
                    raftbench::workload::runner::check_controls(&w, c)?;
                }
                Ok(w)
            });
        match checked {
            Ok(w) => println!(
                "{}: ok ({} phases, {} keys)",
                f.display(),
                w.file.phases.len(),
                w.file.data.keys
            ),
            Err(e) => {
                eprintln!("{e}");
                bad += 1;
            }
        }
    }
    if bad > 0 {
        anyhow::bail!("{bad} of {} workload files are invalid", files.len());
    }
    Ok(())
}

/// `raftbench run`: replay a workload; exit non-zero if any acknowledged write was lost.
fn run_workload(args: RunArgs) -> anyhow::Result<()> {
    let opts = raftbench::workload::runner::RunOptions {
        workload: args.workload.clone(),
        loaded: None,
        backend: args.backend,
        nodes: args.nodes,
        out: args.out.clone(),
        seed: args.replay.seed,
        restart_cache: args.replay.restart_cache,
        scale: args.replay.scale,
        quiet: args.replay.quiet,
        binary: std::env::current_exe().context("locating the raftbench executable")?,
        cli: std::env::args().collect(),
        cluster: args.cluster.clone(),
        generator: match (args.client_id, args.clients) {
            (Some(i), Some(n)) => Some((i, n)),
            (None, None) => None,
            _ => anyhow::bail!("--client-id and --clients go together"),
        },
    };
    let rt = tokio::runtime::Runtime::new()?;
    let result = rt.block_on(raftbench::workload::runner::run(opts))?;
    println!("results: {}", result.dir.display());
    match raftbench::report::plot::plot_run(&result.dir) {
        Ok(p) => println!("report: {}", p.report.display()),
        // The measurements are on disk; a chart failure must not hide them.
        Err(e) => eprintln!("warning: charts/report not written: {e}"),
    }
    println!(
        "{:<16} {:<7} {:<13} {:>8} {:>9} {:>8} {:>8} {:>9} {:>9}",
        "phase", "op", "outcome", "count", "ops/s", "p50_us", "p99_us", "p99.9_us", "max_us"
    );
    for r in result
        .summary
        .iter()
        .filter(|r| r.latency_kind == "corrected")
    {
        println!(
            "{:<16} {:<7} {:<13} {:>8} {:>9.0} {:>8} {:>8} {:>9} {:>9}",
            r.phase,
            r.op,
            r.outcome,
            r.count,
            r.ops_per_sec,
            r.p50_us,
            r.p99_us,
            r.p999_us,
            r.max_us
        );
    }
    if let Some(v) = &result.verify {
        println!(
            "verify: {} keys, {} acknowledged writes: {} ok, {} lost, {} stale, {} in doubt resolved",
            v.keys, v.acknowledged, v.ok, v.lost, v.stale, v.indeterminate_resolved
        );
        if v.unreadable > 0 {
            eprintln!(
                "warning: {} keys could not be read back; they were not verified",
                v.unreadable
            );
        }
        if v.lost + v.stale > 0 {
            anyhow::bail!(
                "{} acknowledged writes were lost (keys {:?})",
                v.lost + v.stale,
                v.bad_keys
            );
        }
    }
    Ok(())
}
