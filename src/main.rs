//! The `raftbench` binary: parse the command line, call the library.

use std::io::Write;

use anyhow::Context;
use clap::Parser;
use raftbench::cli::{
    BackendArgs, CapacityArgs, Cli, ClusterCommand, Command, CompareArgs, ReplayArgs, RunArgs,
    StorageCommand,
};

use raftbench::node::NodeConfig;
use raftbench::storage::{self, BackendConfig, StorageBackend, stress};

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        // Node processes write their stderr to log files: colours only on a terminal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Node(args) => {
            let cfg = NodeConfig::from_args(*args)?;
            raftbench::server::run_process(cfg)?;
        }
        Command::Cluster(ClusterCommand::Up(args)) => raftbench::cluster::up::up(
            &args,
            std::env::current_exe().context("locating the raftbench executable")?,
            &mut std::io::stdout(),
        )?,
        Command::Loadtest(args) => raftbench::loadtest::command(&args, &mut std::io::stdout())?,
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
