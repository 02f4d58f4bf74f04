//! `raftbench capacity`: how fast and how big, per backend.
//!
//! - **Throughput at SLO**: the workload's duration-bound phases are replayed open loop at
//!   an offered rate, searched (doubling, then bisection) for the highest rate at which every
//!   SLO term holds on corrected latency and every measured phase achieves ≥ 95 % of the
//!   offered rate. Each probe is a fresh run (fresh cluster, same seed), so probes do not
//!   inherit each other's compaction debt.
//! - **Growth with data**: for each size, a generated workload loads that many keys, then
//!   forces a snapshot on the leader, kills a follower and restarts it under light traffic.
//!   Disk and RSS per node are taken after the load (the last sample before the snapshot);
//!   snapshot size and time and the restart's replay and catch-up come from `recovery.csv`.
//! - **Projection**: each metric is fitted against size ([`crate::report::fit`]) and
//!   evaluated at the target size; the report states the fit, its R² and how far it
//!   extrapolates.
//!
//! In files: `options` (parsing and checking them), `workloads` (the probe and growth
//! workloads generated from the user's), `search` (the next rate, judging a probe),
//! `growth` (growth metrics and their fits), [`slo`] (SLO expressions, shared with `run`),
//! [`json`] (`capacity.json`), `charts` and
//! `output` (`capacity.csv`, `report.html`); this module runs the study.

mod charts;
mod growth;
pub mod json;
mod options;
mod output;
mod search;
mod workloads;

/// The SLO grammar, shared with `run --slo`.
pub use super::slo;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use growth::{GROWTH_METRICS, GrowthPoint, fit_growth, growth_metrics};
pub use options::{CapacityOptions, SizesError, parse_count, parse_sizes};
pub use search::{Probe, judge, next_rate, search_rates};

use super::{StudyError, check_out_dir, default_out_dir};
use crate::report::fit::Fit;
use crate::report::plot::fmt_us;
use crate::wire::BackendKind;
use crate::workload::Workload;
use search::fmt_rate;
use workloads::{growth_workload, measured_names, probe_workload, restart_cache, start_rate};

/// Everything measured for one backend.
#[derive(Debug, Clone)]
pub struct BackendCapacity {
    pub backend: BackendKind,
    pub probes: Vec<Probe>,
    pub max_rate: Option<f64>,
    pub growth: Vec<GrowthPoint>,
    /// metric → fit over the sizes.
    pub fits: BTreeMap<&'static str, Fit>,
}

impl BackendCapacity {
    /// `12000 ops/s`, `≥ 12000 ops/s (no probe missed; add --steps)` or why there is none.
    pub fn max_rate_text(&self) -> String {
        let bounded = self
            .max_rate
            .is_some_and(|m| self.probes.iter().any(|p| p.offered > m));
        match (self.max_rate, bounded) {
            (Some(x), true) => format!("{} ops/s", fmt_rate(x)),
            (Some(x), false) => format!(
                "≥ {} ops/s (no higher rate was tried; add --steps)",
                fmt_rate(x)
            ),
            (None, _) => "none: the SLO was missed at every probed rate".into(),
        }
    }

    /// The model of `metric` evaluated at `keys`, clamped at zero (a fitted line can go
    /// negative outside the data; nothing measured here can), and whether the fit is weak
    /// (R² < 0.9: the points do not follow the model).
    pub fn projection(&self, metric: &str, keys: u64) -> Option<(f64, bool)> {
        let f = self.fits.get(metric)?;
        Some((f.eval(keys as f64).max(0.0), f.r2 < 0.9))
    }

    /// A projection formatted with `fmt`, with the weak-fit flag; `-` without a model.
    pub fn projection_text(&self, metric: &str, keys: u64, fmt: &dyn Fn(f64) -> String) -> String {
        match self.projection(metric, keys) {
            None => "-".into(),
            Some((v, false)) => fmt(v),
            Some((v, true)) => format!(
                "{} (weak fit, R² {:.2})",
                fmt(v),
                self.fits.get(metric).map_or(0.0, |f| f.r2)
            ),
        }
    }
}

/// What `capacity` wrote.
#[derive(Debug)]
pub struct CapacityResult {
    pub dir: PathBuf,
    pub backends: Vec<BackendCapacity>,
    pub target_keys: u64,
    pub report: PathBuf,
}

impl CapacityResult {
    /// The projection per backend and where the results are, for a terminal.
    pub fn write_summary(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        use crate::report::plot::{fmt_bytes, fmt_us};
        writeln!(out, "projection to {} keys:", self.target_keys)?;
        for b in &self.backends {
            let bytes = |m: &str| b.projection_text(m, self.target_keys, &fmt_bytes);
            let ms = |m: &str| b.projection_text(m, self.target_keys, &|v| fmt_us(v * 1e3));
            writeln!(
                out,
                "  {:<8} max rate at SLO {}, RSS/node {}, disk/node {}, restart caught up {}",
                b.backend.to_string(),
                b.max_rate_text(),
                bytes("rss_bytes_per_node"),
                bytes("disk_bytes_per_node"),
                ms("caught_up_ms"),
            )?;
        }
        writeln!(out, "results: {}", self.dir.display())?;
        writeln!(out, "report: {}", self.report.display())
    }
}

/// Run the capacity study and write its directory.
pub async fn capacity(o: CapacityOptions) -> Result<CapacityResult, StudyError> {
    let w = o.launch.load(&o.workload)?;
    options::check(&o, &w)?;
    let mut sizes = o.sizes.clone();
    sizes.sort_unstable();
    sizes.dedup();
    let largest = *sizes.last().unwrap_or(&1);
    let target_keys = o.target_keys.unwrap_or(largest * 10);
    if target_keys == 0 {
        return Err(StudyError::Invalid("--target-keys must be positive".into()));
    }
    let dir = o
        .out
        .clone()
        .unwrap_or_else(|| default_out_dir("capacity", &w.file.name));
    check_out_dir(&dir)?;
    let ctx = Ctx {
        o: &o,
        w: &w,
        dir: &dir,
    };
    let mut results = Vec::new();
    for b in &o.backends {
        let (probes, max_rate) = ctx.search(*b).await?;
        let mut growth = Vec::new();
        for s in &sizes {
            growth.push(ctx.growth(*b, *s).await?);
        }
        let fits = fit_growth(&growth);
        results.push(BackendCapacity {
            backend: *b,
            probes,
            max_rate,
            growth,
            fits,
        });
    }
    output::write_csv(&dir, &o.slo, &results, target_keys)?;
    json::write(
        &dir,
        &json::report(&dir, &w.file.name, &o.slo, &results, target_keys),
    )?;
    let charts = charts::charts(&dir.join("charts"), &o, &w, &results, target_keys)?;
    let report = dir.join("report.html");
    output::write_report(
        &report,
        &dir,
        &o,
        &w,
        &results,
        target_keys,
        largest,
        &charts,
    )?;
    Ok(CapacityResult {
        dir,
        backends: results,
        target_keys,
        report,
    })
}

/// What every run of one study shares: its options, the user's workload, its directory.
struct Ctx<'a> {
    o: &'a CapacityOptions,
    w: &'a Workload,
    dir: &'a Path,
}

impl Ctx<'_> {
    /// Probe number `index` of `backend`'s search: one fresh run at `rate`, judged.
    async fn probe(
        &self,
        backend: BackendKind,
        index: usize,
        rate: f64,
    ) -> Result<Probe, StudyError> {
        // Named by position too: the search never repeats a rate, but two rates can print
        // alike.
        let dir = self.dir.join(backend.to_string()).join(format!(
            "rate-{}-{}",
            index + 1,
            fmt_rate(rate)
        ));
        eprintln!(
            "capacity: {backend}: probing {} ops/s -> {}",
            fmt_rate(rate),
            dir.display()
        );
        let run = self
            .o
            .launch
            .run(
                &probe_workload(self.w, rate, &self.o.slo),
                backend,
                &dir,
                self.o.launch.replay.scale,
            )
            .await?;
        let p = judge(&run, &measured_names(self.w), &self.o.slo, rate, dir)?;
        eprintln!(
            "capacity: {backend}: {} ops/s offered, {:.0} achieved: {} ({})",
            fmt_rate(rate),
            p.achieved,
            if p.met { "SLO met" } else { "SLO missed" },
            self.o
                .slo
                .iter()
                .zip(&p.measured_us)
                .zip(&p.failed)
                .map(|((t, v), f)| format!(
                    "{} = {}{}",
                    t.name(),
                    v.map_or("no successes".into(), |v| fmt_us(v as f64)),
                    if *f > 0 {
                        format!(", {f} failed")
                    } else {
                        String::new()
                    }
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok(p)
    }

    /// Doubling until the SLO fails (or halving until it holds), then bisection.
    async fn search(&self, backend: BackendKind) -> Result<(Vec<Probe>, Option<f64>), StudyError> {
        let start = start_rate(self.o, self.w);
        search_rates(start, self.o.steps, self.o.repeat, move |i, r| {
            self.probe(backend, i, r)
        })
        .await
    }

    /// The growth run of `backend` with `keys` keys.
    async fn growth(&self, backend: BackendKind, keys: u64) -> Result<GrowthPoint, StudyError> {
        let dir = self
            .dir
            .join(backend.to_string())
            .join(format!("size-{keys}"));
        eprintln!(
            "capacity: {backend}: growth run with {keys} keys -> {}",
            dir.display()
        );
        let run = self
            .o
            .launch
            .run(
                &growth_workload(
                    self.w,
                    keys,
                    self.o.target_value_size,
                    restart_cache(self.o),
                ),
                backend,
                &dir,
                // Never scaled: the load must write exactly `keys` keys.
                1.0,
            )
            .await?;
        Ok(GrowthPoint {
            keys,
            dir,
            metrics: growth_metrics(&run, keys),
        })
    }
}
