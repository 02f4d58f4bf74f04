//! The `raftbench` binary: parse the command line, call the library, print where the
//! results are, and turn lost writes into a non-zero exit.

use std::io::stdout;

use anyhow::{Context, bail};
use clap::Parser;
use raftbench::cli::{Cli, ClusterCommand, Command, StorageCommand};
use raftbench::node::NodeConfig;
use raftbench::storage::inspect;
use raftbench::study::{self, Launch};
use raftbench::workload::{self, runner};

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        // Node processes write their stderr to log files: colours only on a terminal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let exe = || std::env::current_exe().context("locating the raftbench executable");
    let rt = || tokio::runtime::Runtime::new().context("starting the tokio runtime");
    match Cli::parse().command {
        Command::Node(args) => raftbench::server::run_process(NodeConfig::from_args(*args)?)?,
        Command::Cluster(ClusterCommand::Up(args)) => {
            raftbench::cluster::up::up(&args, exe()?, &mut stdout())?
        }
        Command::Loadtest(args) => raftbench::loadtest::command(&args, &mut stdout())?,
        Command::Validate { files, cluster } => {
            let bad = workload::validate_files(
                &files,
                cluster.as_deref(),
                &mut stdout(),
                &mut std::io::stderr(),
            )?;
            if bad > 0 {
                bail!("{bad} of {} workload files are invalid", files.len());
            }
        }
        Command::Run(args) => {
            if let Some(names) = &args.slo_phases {
                // Named phases are checked before the run, not after minutes of load.
                let w = workload::Workload::load(&args.workload)?;
                study::slo::check_phase_names(&w, names)?;
            }
            let opts = runner::RunOptions {
                workload: args.workload.clone(),
                loaded: None,
                backend: args.backend,
                nodes: args.nodes,
                out: args.out.clone(),
                replay: args
                    .replay
                    .replay()
                    .context("locating the raftbench executable")?,
                cluster: args.cluster.clone(),
                // clap makes --client-id and --clients require each other.
                generator: args.client_id.zip(args.clients),
                coordinated: args.coordinated,
            };
            let result = rt()?.block_on(runner::run(opts))?;
            println!("results: {}", result.dir.display());
            if args.coordinated {
                // The coordinator draws and prints the merged run; this generator's own
                // figures are in its results, which it fetches.
                return Ok(());
            }
            match raftbench::report::plot::plot_run(&result.dir) {
                Ok(p) => println!("report: {}", p.report.display()),
                // The measurements are on disk; a chart failure must not hide them.
                Err(e) => eprintln!("warning: charts/report not written: {e}"),
            }
            result.write_table(&mut stdout())?;
            let slo = match &args.slo {
                Some(terms) => {
                    let v = study::slo::judge_run(&result.dir, terms, args.slo_phases.as_deref())?;
                    study::slo::write_verdict(&v, &mut stdout())?;
                    Some(v)
                }
                None => None,
            };
            if let Some(v) = &result.verify {
                if v.unreadable > 0 {
                    eprintln!(
                        "warning: {} keys could not be read back; they were not verified",
                        v.unreadable
                    );
                }
                if v.fails() {
                    bail!(
                        "{} acknowledged writes were lost (keys {:?})",
                        v.lost_writes(),
                        v.bad_keys
                    );
                }
                if v.lost_writes() > 0 {
                    eprintln!(
                        "expected loss (expect_loss, fsync = \"never\"): {}",
                        v.loss_summary()
                    );
                }
            }
            if let Some(v) = slo.filter(|v| !v.pass) {
                bail!("the run did not meet its SLO ({})", v.expression);
            }
        }
        Command::Compare(args) => {
            let opts = study::compare::CompareOptions {
                workload: args.workload,
                backends: args.backends,
                repeat: args.repeat,
                out: args.out,
                launch: Launch {
                    replay: args.replay.replay()?,
                },
            };
            let c = rt()?.block_on(study::compare::compare(opts))?;
            c.write_summary(&mut stdout())?;
            if c.lost > 0 {
                bail!(
                    "{} acknowledged writes were lost (see the verify line of each run's report)",
                    c.lost
                );
            }
        }
        Command::Capacity(args) => {
            let opts = study::capacity::CapacityOptions {
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
                launch: Launch {
                    replay: args.replay.replay()?,
                },
            };
            rt()?
                .block_on(study::capacity::capacity(opts))?
                .write_summary(&mut stdout())?;
        }
        Command::Diff(args) => {
            let name = args
                .new
                .file_name()
                .map_or("new".into(), |n| n.to_string_lossy().to_string());
            let opts = study::diff::DiffOptions {
                out: args
                    .out
                    .unwrap_or_else(|| study::default_out_dir("diff", &name)),
                base: args.base,
                new: args.new,
                thresholds: args.threshold,
                alpha: args.alpha,
            };
            let r = study::diff::diff(&opts)?;
            study::diff::write_markdown(&r, &mut stdout())?;
            println!("\nreport: {}", opts.out.join("diff.md").display());
            if r.regressions > 0 {
                use std::io::Write as _;
                stdout().flush()?;
                // 1 is any error, 2 a bad command line: 3 is a regression.
                std::process::exit(3);
            }
        }
        Command::Schema { dir } => {
            for p in study::schema::write(&dir)? {
                println!("{}", p.display());
            }
        }
        Command::Merge { dirs, out, force } => {
            let cli = std::env::args().collect();
            let opts = study::merge::MergeOptions {
                dirs,
                out,
                force,
                cli,
            };
            let m = study::merge::merge(&opts)?;
            println!("results: {}", m.dir.display());
            println!("report: {}", m.dir.join("report.html").display());
            if let Some(v) = m.verify.filter(|v| v.fails()) {
                bail!("{} acknowledged writes were lost", v.lost_writes());
            }
        }
        Command::Plot { dir } if study::compare::is_comparison(&dir) => {
            println!("{}", study::compare::replot(&dir)?.display());
        }
        Command::Plot { dir } => {
            let p = raftbench::report::plot::plot_run(&dir)?;
            for c in &p.charts {
                println!("{}\n{}", c.png.display(), c.svg.display());
            }
            println!("{}", p.report.display());
        }
        Command::Faultfs(cmd) => raftbench::faultfs::cmd::run(&cmd, &mut stdout())?,
        Command::Storage(StorageCommand::Open(args)) => inspect::open_command(&args, &mut stdout())
            .with_context(|| format!("opening {} at {}", args.backend, args.dir.display()))?,
        Command::Storage(StorageCommand::Stress(args)) => {
            let b = &args.backend;
            inspect::stress_command(&args, &mut stdout().lock())
                .with_context(|| format!("stress on {} at {}", b.backend, b.dir.display()))?
        }
    }
    Ok(())
}
