//! The `raftbench` binary: parse the command line, call the library.

use std::io::Write;

use anyhow::Context;
use clap::Parser;
use raftbench::cli::{BackendArgs, Cli, Command, StorageCommand};
use raftbench::storage::{self, BackendConfig, StorageBackend, stress};

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
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
