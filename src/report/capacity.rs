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
//! - **Projection**: each metric is fitted against size ([`super::fit`]) and evaluated at the
//!   target size; the report states the fit, its R² and how far it extrapolates.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use hdrhistogram::Histogram;
use toml::Spanned;

use super::charts::{AnyChart, ChartFile, Scale, Series, Style, XyChart, XyPanel, color};
use super::compare::check_backends;
use super::data::{Kind, RunData};
use super::fit::{Fit, fit};
use super::html::Page;
use super::plot::{fmt_bytes, fmt_us};
use super::slo::SloTerm;
use super::{Launch, ReportError};
use crate::wire::BackendKind;
use crate::workload::Workload;
use crate::workload::spec::{
    Action, CacheState, Event, HumanDuration, KeyDistribution, Mix, Phase, ReadConsistency, Target,
    ValueSize,
};

/// `raftbench capacity` options.
#[derive(Debug, Clone)]
pub struct CapacityOptions {
    pub workload: PathBuf,
    pub backends: Vec<BackendKind>,
    pub slo: Vec<SloTerm>,
    /// Data-set sizes (keys) for the growth runs.
    pub sizes: Vec<u64>,
    /// Keys to project to (default: 10 × the largest size).
    pub target_keys: Option<u64>,
    /// Value size for the growth runs and the projection (default: the workload's).
    pub target_value_size: Option<u64>,
    /// Rates tried per backend in the search.
    pub steps: usize,
    /// Probes per rate; a rate meets the SLO when most of its probes do (a single run on
    /// a shared machine can miss by noise alone and cut the search short).
    pub repeat: usize,
    /// First offered rate (default: the workload's rate, else 1000 ops/s).
    pub start_rate: Option<f64>,
    pub out: Option<PathBuf>,
    pub launch: Launch,
}

/// One probe of the rate search.
#[derive(Debug, Clone)]
pub struct Probe {
    pub offered: f64,
    /// The lowest achieved rate among the measured phases.
    pub achieved: f64,
    /// Per SLO term: the measured value in µs over successful operations (`None`: no
    /// successful operation).
    pub measured_us: Vec<Option<u64>>,
    /// Per SLO term: the op's failed or in-doubt operations (counted as over the bound).
    pub failed: Vec<u64>,
    pub met: bool,
    pub dir: PathBuf,
}

/// The growth metrics measured at one size.
#[derive(Debug, Clone)]
pub struct GrowthPoint {
    pub keys: u64,
    pub dir: PathBuf,
    /// metric name → value.
    pub metrics: BTreeMap<&'static str, f64>,
}

/// Metrics fitted against size, with units for the report.
pub const GROWTH_METRICS: [(&str, &str); 6] = [
    ("disk_bytes_per_node", "data directory per node (bytes)"),
    ("rss_bytes_per_node", "RSS per node (bytes)"),
    ("snapshot_bytes", "snapshot size (bytes)"),
    ("snapshot_ms", "snapshot time (ms)"),
    ("replay_ms", "restart: replay (ms)"),
    ("caught_up_ms", "restart: caught up (ms)"),
];

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

/// Parse one key count like `10k` or `1M` (for `--target-keys`).
pub fn parse_count(s: &str) -> Result<u64, String> {
    let expected = || format!("expected one key count like 250000, 100k or 1M, got {s:?}");
    match parse_sizes(s).map_err(|_| expected())?.as_slice() {
        [n] => Ok(*n),
        _ => Err(expected()),
    }
}

/// Parse `10k,100k,1M` (k = 1000, M = 10⁶, G = 10⁹).
pub fn parse_sizes(s: &str) -> Result<Vec<u64>, ReportError> {
    let mut out = Vec::new();
    for t in s.split(',') {
        let t = t.trim();
        let (num, mult) = match t.char_indices().last() {
            Some((i, 'k' | 'K')) => (&t[..i], 1_000),
            Some((i, 'M')) => (&t[..i], 1_000_000),
            Some((i, 'G')) => (&t[..i], 1_000_000_000),
            _ => (t, 1),
        };
        let n: u64 = num.trim().replace('_', "").parse().map_err(|_| {
            ReportError::Invalid(format!(
                "--sizes: bad size {t:?}; expected key counts like 10k,100k,1M"
            ))
        })?;
        if n == 0 {
            return Err(ReportError::Invalid(
                "--sizes: sizes must be positive".into(),
            ));
        }
        out.push(
            n.checked_mul(mult)
                .ok_or_else(|| ReportError::Invalid(format!("--sizes: {t:?} is too large")))?,
        );
    }
    Ok(out)
}

fn measured(p: &Phase) -> bool {
    !p.verify && p.duration.is_some()
}

fn check(o: &CapacityOptions, w: &Workload) -> Result<(), ReportError> {
    check_backends(&o.backends)?;
    if o.slo.is_empty() {
        return Err(ReportError::Invalid("--slo: give at least one term".into()));
    }
    let mut sizes = o.sizes.clone();
    sizes.sort_unstable();
    sizes.dedup();
    if sizes.len() < 2 {
        return Err(ReportError::Invalid(
            "--sizes: give at least two different sizes to fit a growth model".into(),
        ));
    }
    if o.steps == 0 {
        return Err(ReportError::Invalid("--steps must be at least 1".into()));
    }
    if o.repeat == 0 {
        return Err(ReportError::Invalid("--repeat must be at least 1".into()));
    }
    if let Some(r) = o.start_rate
        && !(r.is_finite() && r > 0.0)
    {
        return Err(ReportError::Invalid("--start-rate must be positive".into()));
    }
    let phases: Vec<&Phase> = w
        .file
        .phases
        .iter()
        .map(|p| p.get_ref())
        .filter(|p| measured(p))
        .collect();
    if phases.is_empty() {
        return Err(ReportError::Invalid(format!(
            "{}: no phase bounded by `duration` to search the rate with",
            w.path.display()
        )));
    }
    // The generated workloads must be valid before hours of runs start.
    let rate = start_rate(o, w);
    probe_workload(w, rate, &o.slo)
        .revalidate()
        .map_err(|e| ReportError::Invalid(format!("rate-search probe: {e}")))?;
    for s in &sizes {
        growth_workload(w, *s, o.target_value_size, restart_cache(o))
            .revalidate()
            .map_err(|e| ReportError::Invalid(format!("growth run with {s} keys: {e}")))?;
    }
    for t in &o.slo {
        let used = phases.iter().any(|p| match t.op.as_str() {
            "put" => p.mix.put > 0.0,
            "get" => p.mix.get > 0.0,
            _ => p.mix.delete > 0.0,
        });
        if !used {
            return Err(ReportError::Invalid(format!(
                "--slo term {t}: {} has no duration-bound phase with {} operations",
                w.path.display(),
                t.op
            )));
        }
    }
    Ok(())
}

/// The workload replayed at `rate`: measured phases open loop at that rate, with enough
/// concurrency that the generator itself never caps the rate (twice the rate × the
/// loosest SLO bound), and without verify phases.
fn probe_workload(w: &Workload, rate: f64, slo: &[SloTerm]) -> Workload {
    let mut w = w.clone();
    let loosest_s = slo.iter().map(|t| t.bound_us).fold(0.0, f64::max) / 1e6;
    let needed = (rate * loosest_s * 2.0).ceil().min(4096.0) as usize;
    w.file.phases.retain(|p| !p.get_ref().verify);
    for p in &mut w.file.phases {
        let p = p.get_mut();
        if measured(p) {
            p.rate = Some(rate);
            p.concurrency = p.concurrency.max(needed);
        }
    }
    w
}

fn phase(name: &str, mix: Mix) -> Phase {
    Phase {
        name: name.into(),
        ops: None,
        duration: None,
        warmup: None,
        concurrency: 8,
        rate: None,
        mix,
        read_consistency: ReadConsistency::Linearizable,
        key_distribution: None,
        timeout: None,
        verify: false,
        events: Vec::new(),
    }
}

/// The page cache of growth runs' restarts: cold unless `--restart-cache` says otherwise.
/// Capacity planning wants the restart a machine sees after a reboot, not the memory-speed
/// replay of a process restarted over its warm cache.
fn restart_cache(o: &CapacityOptions) -> CacheState {
    o.launch.restart_cache.unwrap_or(CacheState::Cold)
}

/// The growth run for `keys` keys: load them, then under light traffic snapshot the
/// leader, kill a follower and restart it.
fn growth_workload(
    w: &Workload,
    keys: u64,
    value_size: Option<u64>,
    cache: CacheState,
) -> Workload {
    let mut g = w.clone();
    let f = &mut g.file;
    f.name = format!("{}-growth-{keys}", w.file.name);
    f.description = format!(
        "capacity growth run: load {keys} keys, snapshot, restart a follower ({cache} page cache)"
    );
    f.data.keys = keys;
    f.data.key_size = f
        .data
        .key_size
        .max(keys.saturating_sub(1).to_string().len());
    if let Some(v) = value_size {
        f.data.value_size = ValueSize::Fixed(v as usize);
    }
    f.data.key_distribution = KeyDistribution::Uniform;
    let mut load = phase(
        "load",
        Mix {
            put: 1.0,
            ..Mix::default()
        },
    );
    load.ops = Some(keys);
    load.concurrency = 64;
    load.key_distribution = Some(KeyDistribution::Sequential);
    let mut after = phase(
        "restart",
        Mix {
            put: 0.5,
            get: 0.5,
            ..Mix::default()
        },
    );
    after.duration = Some(HumanDuration(std::time::Duration::from_secs(8)));
    after.rate = Some(100.0);
    let ev = |s: f64, action, target| {
        Spanned::new(
            0..0,
            Event {
                at: HumanDuration(std::time::Duration::from_secs_f64(s)),
                action,
                target,
                cache: if action == Action::Restart {
                    cache
                } else {
                    CacheState::Warm
                },
            },
        )
    };
    after.events = vec![
        // Resources are sampled once a second: wait two before the snapshot so that a
        // sample after the load exists even when the load took less than a second.
        ev(2.0, Action::Snapshot, Target::Leader),
        ev(3.5, Action::Kill, Target::Follower),
        ev(4.5, Action::Restart, Target::Killed),
    ];
    f.phases = vec![Spanned::new(0..0, load), Spanned::new(0..0, after)];
    g
}

struct Ctx<'a> {
    o: &'a CapacityOptions,
    w: &'a Workload,
    dir: &'a Path,
}

impl Ctx<'_> {
    async fn probe(
        &self,
        backend: BackendKind,
        index: usize,
        rate: f64,
    ) -> Result<Probe, ReportError> {
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
                self.o.launch.scale,
            )
            .await?;
        let p = judge(&run, &measured_names(self.w), &self.o.slo, rate, dir);
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
    async fn search(&self, backend: BackendKind) -> Result<(Vec<Probe>, Option<f64>), ReportError> {
        let start = start_rate(self.o, self.w);
        search_rates(start, self.o.steps, self.o.repeat, move |i, r| {
            self.probe(backend, i, r)
        })
        .await
    }

    async fn growth(&self, backend: BackendKind, keys: u64) -> Result<GrowthPoint, ReportError> {
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

/// The rate search, with the probe abstracted (it is handed the probe's index and the
/// rate): `steps` rates at most, `repeat` probes each, a rate passing when most of its
/// probes meet the SLO, the next rate from [`next_rate`]. Returns every probe and the
/// highest passing rate.
pub async fn search_rates<F, Fut>(
    start: f64,
    steps: usize,
    repeat: usize,
    mut probe: F,
) -> Result<(Vec<Probe>, Option<f64>), ReportError>
where
    F: FnMut(usize, f64) -> Fut,
    Fut: std::future::Future<Output = Result<Probe, ReportError>>,
{
    let repeat = repeat.max(1);
    let (mut pass, mut fail): (Option<f64>, Option<f64>) = (None, None);
    let mut probes: Vec<Probe> = Vec::new();
    let mut rate = Some(start);
    let mut tried = 0;
    while let Some(r) = rate.filter(|_| tried < steps) {
        tried += 1;
        let mut met = 0;
        for _ in 0..repeat {
            let p = probe(probes.len(), r).await?;
            met += usize::from(p.met);
            probes.push(p);
        }
        if 2 * met > repeat {
            pass = Some(pass.map_or(r, |x: f64| x.max(r)));
        } else {
            fail = Some(fail.map_or(r, |x: f64| x.min(r)));
        }
        rate = next_rate(pass, fail);
    }
    Ok((probes, pass))
}

/// The highest rate a workload file accepts (ops/s).
const MAX_RATE: f64 = 10_000_000.0;

/// The first rate to probe: `--start-rate`, else the workload's highest phase rate, else
/// 1000 ops/s.
fn start_rate(o: &CapacityOptions, w: &Workload) -> f64 {
    o.start_rate.unwrap_or_else(|| {
        w.file
            .phases
            .iter()
            .filter_map(|p| p.get_ref().rate)
            .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))))
            .unwrap_or(1000.0)
    })
}

/// `1200`, or `12.5` for rates below 100 ops/s.
fn fmt_rate(r: f64) -> String {
    if r >= 100.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.2}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

/// The next rate to probe, given the highest rate that met the SLO and the lowest that
/// missed it: double or halve until both are known, then bisect; `None` once they are
/// within 5 % of each other (closer than run-to-run noise) or the rate would drop below
/// 0.1 ops/s.
pub fn next_rate(pass: Option<f64>, fail: Option<f64>) -> Option<f64> {
    let r = match (pass, fail) {
        // Workload files accept at most 1e7 ops/s.
        (Some(p), None) if p * 2.0 > MAX_RATE => return None,
        (Some(p), None) => p * 2.0,
        (None, Some(f)) => f / 2.0,
        (Some(p), Some(f)) => {
            if f <= p * 1.05 {
                return None;
            }
            let mid = (p + f) / 2.0;
            // Round big rates for readable directory names, never onto a bracket.
            let rounded = if mid >= 100.0 { mid.round() } else { mid };
            if rounded > p && rounded < f {
                rounded
            } else {
                mid
            }
        }
        (None, None) => return None,
    };
    (r >= 0.1).then_some(r)
}

fn measured_names(w: &Workload) -> Vec<String> {
    w.file
        .phases
        .iter()
        .map(|p| p.get_ref())
        .filter(|p| measured(p))
        .map(|p| p.name.clone())
        .collect()
}

/// Judge a probe. A term `op.pQ < bound` holds when at most (1 − Q) of the op's
/// operations in the measured phases were slower than the bound, counting every failed or
/// in-doubt operation as slower (an overloaded system must not pass by failing requests);
/// `max` allows none. Every measured phase must also achieve ≥ 95 % of the offered rate.
pub fn judge(
    run: &RunData,
    measured: &[String],
    slo: &[SloTerm],
    rate: f64,
    dir: PathBuf,
) -> Probe {
    let is_measured = |phase: &str| measured.iter().any(|m| m == phase);
    let achieved = run
        .manifest
        .phases
        .iter()
        .filter(|p| is_measured(&p.name))
        .map(|p| p.achieved_rate)
        .fold(f64::INFINITY, f64::min);
    let achieved = if achieved.is_finite() { achieved } else { 0.0 };
    let mut met = achieved >= 0.95 * rate;
    let mut measured_us = Vec::new();
    let mut failed_counts = Vec::new();
    for t in slo {
        let mut h: Option<Histogram<u64>> = None;
        for ((phase, op, kind), x) in &run.histograms {
            if *kind == Kind::Corrected && op == &t.op && is_measured(phase) {
                match &mut h {
                    Some(acc) => {
                        let _ = acc.add(x);
                    }
                    None => h = Some(x.clone()),
                }
            }
        }
        let failed: u64 = run
            .summary
            .iter()
            .filter(|r| {
                is_measured(&r.phase)
                    && r.op == t.op
                    && r.outcome != "ok"
                    && r.latency_kind == "corrected"
            })
            .map(|r| r.count)
            .sum();
        let ok = h.as_ref().map_or(0, |h| h.len());
        let within = h.as_ref().map_or(0, |h| {
            // Recorded values are µs in buckets of 3 significant digits: count only the
            // buckets wholly below the bound, so a value the histogram cannot tell from
            // the bound counts as over it.
            let bound = h.lowest_equivalent(t.bound_us.ceil() as u64);
            h.count_between(0, bound.saturating_sub(1))
        });
        let slow = ok - within.min(ok) + failed;
        let total = ok + failed;
        // 1 − 0.9 is 0.09999…: without the epsilon p90 of 10 ops would allow none.
        let allowed = ((1.0 - t.quantile) * total as f64 + 1e-9).floor() as u64;
        met &= total > 0 && ok > 0 && slow <= allowed;
        measured_us.push(h.filter(|h| !h.is_empty()).map(|h| t.measure(&h)));
        failed_counts.push(failed);
    }
    Probe {
        offered: rate,
        achieved,
        measured_us,
        failed: failed_counts,
        met,
        dir,
    }
}

/// Growth metrics of a growth run (see the module docs for where each comes from).
pub fn growth_metrics(run: &RunData, keys: u64) -> BTreeMap<&'static str, f64> {
    let mut m = BTreeMap::new();
    let snap_t = run
        .events
        .iter()
        .find(|e| e.action == "snapshot")
        .map_or(f64::INFINITY, |e| e.t_ms as f64 / 1e3);
    // The last sample of each live node strictly before the snapshot started.
    let mut last: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for r in run
        .resources
        .iter()
        .filter(|r| r.t_s < snap_t && r.rss_bytes > 0)
    {
        last.insert(r.node, (r.disk_bytes, r.rss_bytes));
    }
    // Per key by the keys actually written (a failed load write leaves fewer).
    let per = run.keys_stored().unwrap_or(keys).max(1) as f64;
    if !last.is_empty() {
        let n = last.len() as f64;
        let disk = last.values().map(|v| v.0 as f64).sum::<f64>() / n;
        let rss = last.values().map(|v| v.1 as f64).sum::<f64>() / n;
        m.insert("disk_bytes_per_node", disk);
        m.insert("rss_bytes_per_node", rss);
        m.insert("disk_bytes_per_key", disk / per);
        m.insert("rss_bytes_per_key", rss / per);
    }
    for r in &run.recovery {
        let name = match r.metric.as_str() {
            "snapshot_ms" => "snapshot_ms",
            "snapshot_bytes" => "snapshot_bytes",
            "replay_ms" => "replay_ms",
            "caught_up_ms" => "caught_up_ms",
            "open_ms" => "open_ms",
            _ => continue,
        };
        let e = m.entry(name).or_insert(r.ms);
        *e = e.max(r.ms);
    }
    m
}

/// Run the capacity study and write its directory.
pub async fn capacity(o: CapacityOptions) -> Result<CapacityResult, ReportError> {
    let w = o.launch.load(&o.workload)?;
    check(&o, &w)?;
    let mut sizes = o.sizes.clone();
    sizes.sort_unstable();
    sizes.dedup();
    let largest = *sizes.last().unwrap_or(&1);
    let target_keys = o.target_keys.unwrap_or(largest * 10);
    if target_keys == 0 {
        return Err(ReportError::Invalid(
            "--target-keys must be positive".into(),
        ));
    }
    let dir = o.out.clone().unwrap_or_else(|| {
        let ts = humantime::format_rfc3339_seconds(SystemTime::now())
            .to_string()
            .replace(':', "");
        PathBuf::from("results").join(format!("{ts}-capacity-{}", w.file.name))
    });
    super::compare::check_out_dir(&dir)?;
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
        let mut fits = BTreeMap::new();
        for (m, _) in GROWTH_METRICS {
            let pts: Vec<(f64, f64)> = growth
                .iter()
                .filter_map(|g| Some((g.keys as f64, *g.metrics.get(m)?)))
                .collect();
            if let Some(f) = fit(&pts) {
                fits.insert(m, f);
            }
        }
        results.push(BackendCapacity {
            backend: *b,
            probes,
            max_rate,
            growth,
            fits,
        });
    }
    write_csv(&dir, &o, &results, target_keys)?;
    let charts = charts(&dir.join("charts"), &o, &w, &results, target_keys)?;
    let report = dir.join("report.html");
    write_report(
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

fn write_csv(
    dir: &Path,
    o: &CapacityOptions,
    results: &[BackendCapacity],
    target: u64,
) -> Result<(), ReportError> {
    let path = dir.join("capacity.csv");
    let err = |e: csv::Error| ReportError::file(&path, e);
    let mut w = csv::Writer::from_path(&path).map_err(err)?;
    w.write_record(["section", "backend", "metric", "x", "value", "note"])
        .map_err(err)?;
    let mut row = |s: &str, b: &BackendKind, m: &str, x: String, v: String, n: String| {
        w.write_record([s, &b.to_string(), m, &x, &v, &n])
    };
    for r in results {
        let b = &r.backend;
        for p in &r.probes {
            let x = fmt_rate(p.offered);
            row(
                "rate_search",
                b,
                "achieved_ops_per_sec",
                x.clone(),
                format!("{:.1}", p.achieved),
                String::new(),
            )
            .map_err(err)?;
            for ((t, v), f) in o.slo.iter().zip(&p.measured_us).zip(&p.failed) {
                row(
                    "rate_search",
                    b,
                    &format!("{}_us", t.name()),
                    x.clone(),
                    v.map_or(String::new(), |v| v.to_string()),
                    format!("bound {} us", t.bound_us),
                )
                .map_err(err)?;
                row(
                    "rate_search",
                    b,
                    &format!("{}_failed", t.op),
                    x.clone(),
                    f.to_string(),
                    "failed or in doubt; counted as over the bound".into(),
                )
                .map_err(err)?;
            }
            row(
                "rate_search",
                b,
                "slo_met",
                x.clone(),
                u8::from(p.met).to_string(),
                p.dir.display().to_string(),
            )
            .map_err(err)?;
        }
        row(
            "max_rate_at_slo",
            b,
            "ops_per_sec",
            String::new(),
            r.max_rate.map_or(String::new(), fmt_rate),
            o.slo
                .iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
                .join(","),
        )
        .map_err(err)?;
        for g in &r.growth {
            for (m, v) in &g.metrics {
                row(
                    "growth",
                    b,
                    m,
                    g.keys.to_string(),
                    format!("{v:.3}"),
                    String::new(),
                )
                .map_err(err)?;
            }
        }
        for (m, f) in &r.fits {
            row(
                "fit",
                b,
                m,
                String::new(),
                format!("{:.6}", f.r2),
                f.describe(),
            )
            .map_err(err)?;
            row(
                "projection",
                b,
                m,
                target.to_string(),
                format!("{:.3}", f.eval(target as f64).max(0.0)),
                String::new(),
            )
            .map_err(err)?;
        }
    }
    w.flush().map_err(|e| ReportError::file(&path, e))
}

fn charts(
    dir: &Path,
    o: &CapacityOptions,
    w: &Workload,
    results: &[BackendCapacity],
    target: u64,
) -> Result<Vec<ChartFile>, ReportError> {
    let title = format!("{} · fsync={}", w.file.name, w.file.cluster.fsync);
    let mut out = Vec::new();
    // Latency against achieved throughput, one panel per SLO term.
    let mut panels = Vec::new();
    for (ti, t) in o.slo.iter().enumerate() {
        let mut p = XyPanel::new(
            "achieved throughput (ops/s)",
            Scale::Linear,
            &format!(
                "{} {} latency (ms)",
                t.op,
                t.name().split_once('.').map_or("", |x| x.1)
            ),
            Scale::Log,
        );
        for (bi, r) in results.iter().enumerate() {
            // Every probe as a point; the line joins each rate's median (with --repeat).
            let mut by_rate: BTreeMap<u64, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
            let mut pts = Vec::new();
            for pr in &r.probes {
                let Some(v) = pr.measured_us[ti] else {
                    continue;
                };
                let y = v as f64 / 1e3;
                pts.push((pr.achieved, y));
                let e = by_rate.entry((pr.offered * 1e3) as u64).or_default();
                e.0.push(pr.achieved);
                e.1.push(y);
            }
            let medians = by_rate
                .into_values()
                .map(|(mut x, mut y)| {
                    (
                        super::compare::median(&mut x),
                        super::compare::median(&mut y),
                    )
                })
                .collect();
            p.series.push(Series {
                label: String::new(),
                color: color(bi),
                style: Style::Points,
                points: pts,
            });
            p.series.push(Series {
                label: format!("{} (max at SLO: {})", r.backend, r.max_rate_text()),
                color: color(bi),
                style: Style::Line,
                points: medians,
            });
        }
        p.hlines.push((t.bound_us / 1e3, format!("SLO {t}")));
        p.y_from_zero = false;
        panels.push(p);
    }
    let h = 120 + 380 * panels.len() as u32;
    out.push(
        AnyChart::Xy(XyChart {
            title: format!("{title} — latency against throughput"),
            panels,
            size: (1000, h),
        })
        .save(
            dir,
            "latency-vs-throughput",
            "Corrected latency of each rate-search probe against its achieved throughput, with the SLO",
        )?,
    );
    // Growth: one chart per metric, measured points and the fitted model up to the target.
    let lo = results
        .iter()
        .flat_map(|r| r.growth.iter().map(|g| g.keys))
        .min()
        .unwrap_or(1) as f64;
    let hi = (target as f64).max(lo * 1.01);
    let x_scale = if hi / lo >= 20.0 {
        Scale::Log
    } else {
        Scale::Linear
    };
    for (m, desc) in GROWTH_METRICS {
        let mut p = XyPanel::new("keys", x_scale, desc, Scale::Linear);
        for (bi, r) in results.iter().enumerate() {
            p.series.push(Series {
                label: format!("{} measured", r.backend),
                color: color(bi),
                style: Style::Points,
                points: r
                    .growth
                    .iter()
                    .filter_map(|g| Some((g.keys as f64, *g.metrics.get(m)?)))
                    .collect(),
            });
            if let Some(f) = r.fits.get(m) {
                let n = 60;
                let pts = (0..=n)
                    .map(|i| {
                        let x = if x_scale == Scale::Log {
                            lo * (hi / lo).powf(i as f64 / n as f64)
                        } else {
                            lo + (hi - lo) * i as f64 / n as f64
                        };
                        (x, f.eval(x))
                    })
                    .collect();
                p.series.push(Series {
                    label: format!(
                        "{} fit ({}, R² {:.3})",
                        r.backend,
                        match f.model {
                            super::fit::Model::Linear { .. } => "linear",
                            super::fit::Model::Power { .. } => "power law",
                        },
                        f.r2
                    ),
                    color: color(bi),
                    style: Style::Dashed,
                    points: pts,
                });
            }
        }
        p.markers.push((
            target as f64,
            format!("target {}", super::charts::fmt_num(target as f64)),
        ));
        p.x_range = Some((
            lo * if x_scale == Scale::Log { 0.8 } else { 1.0 },
            hi * 1.05,
        ));
        out.push(
            AnyChart::Xy(XyChart {
                title: format!("{title} — {desc} against data size"),
                panels: vec![p],
                size: (1000, 560),
            })
            .save(
                dir,
                &format!("growth-{}", m.replace('_', "-")),
                &format!("{desc}: measured at each size (points) and the fitted model extrapolated to the target (dashed)"),
            )?,
        );
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn write_report(
    path: &Path,
    dir: &Path,
    o: &CapacityOptions,
    w: &Workload,
    results: &[BackendCapacity],
    target: u64,
    largest: u64,
    charts: &[ChartFile],
) -> Result<(), ReportError> {
    let f = &w.file;
    let mut page = Page::new(&format!("raftbench capacity: {}", f.name));
    let value = match (o.target_value_size, &f.data.value_size) {
        (Some(v), _) => format!("{v} B values"),
        (None, ValueSize::Fixed(v)) => format!("{v} B values"),
        (None, other) => format!(
            "values {}",
            serde_json::to_string(other).unwrap_or_default()
        ),
    };
    let slo = o
        .slo
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    page.h2("Recommendation");
    page.p(&format!(
        "Projected for {} keys ({value}) per node of a {}-node cluster with fsync={}; max rate at the SLO ({slo}) as measured.",
        target, f.cluster.nodes, f.cluster.fsync
    ));
    let mut rows = Vec::new();
    for r in results {
        let proj = |m: &str, fmt: &dyn Fn(f64) -> String| r.projection_text(m, target, fmt);
        let ms = |v: f64| fmt_us(v * 1e3);
        rows.push(vec![
            r.backend.to_string(),
            proj("rss_bytes_per_node", &fmt_bytes),
            proj("disk_bytes_per_node", &fmt_bytes),
            proj("snapshot_bytes", &fmt_bytes),
            proj("snapshot_ms", &ms),
            proj("replay_ms", &ms),
            proj("caught_up_ms", &ms),
            r.max_rate_text(),
        ]);
    }
    page.table(
        &[
            "backend",
            "RAM (RSS) per node",
            "disk per node",
            "snapshot size",
            "snapshot time",
            "restart replay",
            "restart caught up",
            "max rate at SLO",
        ],
        &rows,
    );
    let ratio = target as f64 / largest as f64;
    let mut assumptions = format!(
        "Assumptions: each metric grows as the fitted model below says (a line unless a power law fits three or more points clearly better); \
         the projection extrapolates {ratio:.1}× beyond the largest measured size ({largest} keys); same key size, value size and \
         compressibility, node count, fsync policy and raft settings ({} snapshot interval, {} compaction lag) as measured; \
         this machine ({}); RSS includes each process's fixed baseline; disk and RSS are taken after loading, before the forced snapshot; \
         restart times are for {} on this machine's disk. \
         The max rate at the SLO was measured with the workload's own data set ({} keys) and phases, each probe a fresh cluster; \
         a probe passes when every SLO term holds on corrected latency (failed or in-doubt operations counting as over the bound) and each measured phase achieves ≥ 95 % of the offered rate; a rate passes when most of its {} probe(s) do.",
        f.cluster.snapshot_interval,
        f.cluster.compact_lag,
        match restart_cache(o) {
            CacheState::Cold =>
                "a cold page cache (the follower's data evicted before it starts, as after a reboot)",
            CacheState::Warm =>
                "a warm page cache (--restart-cache warm: a process restart, as after a crash)",
        },
        machine(),
        f.data.keys,
        o.repeat.max(1),
    );
    if ratio > 10.0 {
        let _ = write!(
            assumptions,
            " Extrapolating more than 10× is a guess: measure a size closer to the target before buying machines."
        );
    }
    page.p_class("note", &assumptions);

    page.h2("Throughput at the SLO");
    for r in results {
        let rows: Vec<Vec<String>> = r
            .probes
            .iter()
            .map(|p| {
                let mut row = vec![fmt_rate(p.offered), format!("{:.0}", p.achieved)];
                row.extend(p.measured_us.iter().zip(&p.failed).map(|(v, f)| {
                    let v = v.map_or("-".into(), |v| fmt_us(v as f64));
                    if *f > 0 {
                        format!("{v} ({f} failed)")
                    } else {
                        v
                    }
                }));
                row.push(if p.met { "met".into() } else { "missed".into() });
                row
            })
            .collect();
        let mut headers = vec!["offered ops/s", "achieved ops/s"];
        let names: Vec<String> = o.slo.iter().map(|t| t.to_string()).collect();
        headers.extend(names.iter().map(String::as_str));
        headers.push("SLO");
        page.p(&format!("{} — probes in the order run:", r.backend));
        page.table(&headers, &rows);
    }

    page.h2("Growth with data");
    for r in results {
        let mut rows = Vec::new();
        for g in &r.growth {
            let v = |m: &str| g.metrics.get(m).copied();
            rows.push(vec![
                g.keys.to_string(),
                v("disk_bytes_per_node").map_or("-".into(), fmt_bytes),
                v("disk_bytes_per_key").map_or("-".into(), |x| format!("{x:.0} B")),
                v("rss_bytes_per_node").map_or("-".into(), fmt_bytes),
                v("rss_bytes_per_key").map_or("-".into(), |x| format!("{x:.0} B")),
                v("snapshot_bytes").map_or("-".into(), fmt_bytes),
                v("snapshot_ms").map_or("-".into(), |x| fmt_us(x * 1e3)),
                v("replay_ms").map_or("-".into(), |x| fmt_us(x * 1e3)),
                v("caught_up_ms").map_or("-".into(), |x| fmt_us(x * 1e3)),
            ]);
        }
        page.p(&format!("{}:", r.backend));
        page.table(
            &[
                "keys",
                "disk/node",
                "disk/key",
                "RSS/node",
                "RSS/key",
                "snapshot",
                "snapshot time",
                "replay",
                "caught up",
            ],
            &rows,
        );
        let fits: Vec<Vec<String>> = r
            .fits
            .iter()
            .map(|(m, f)| vec![m.to_string(), f.describe()])
            .collect();
        page.table(&["metric", "model"], &fits);
    }
    page.h2("Charts");
    for c in charts {
        page.chart(c, dir)?;
    }
    page.h2("Runs");
    let mut list = String::from("<ul>");
    for r in results {
        let dirs = r
            .probes
            .iter()
            .map(|p| &p.dir)
            .chain(r.growth.iter().map(|g| &g.dir));
        for d in dirs {
            let rel = d.strip_prefix(dir).unwrap_or(d).join("report.html");
            let rel = super::html::esc(&rel.to_string_lossy());
            let _ = write!(list, "<li><a href=\"{rel}\">{rel}</a></li>");
        }
    }
    list.push_str("</ul>");
    page.raw(&list);
    page.write(path)
}

fn machine() -> String {
    let m = crate::workload::output::machine();
    format!(
        "{} cores, {} memory",
        m.cores,
        fmt_bytes(m.memory_bytes as f64)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_search_brackets_the_limit_without_repeating_a_rate() {
        for (start, limit) in [
            (1000.0, 16.4),
            (300.0, 5000.0),
            (1000.0, 1000.0),
            (50.0, 0.05),
        ] {
            let (mut pass, mut fail): (Option<f64>, Option<f64>) = (None, None);
            let mut tried: Vec<f64> = Vec::new();
            let mut rate = Some(start);
            while let Some(r) = rate.filter(|_| tried.len() < 40) {
                assert!(!tried.contains(&r), "{r} probed twice: {tried:?}");
                assert!(r >= 0.1);
                tried.push(r);
                if r <= limit {
                    pass = Some(pass.map_or(r, |x: f64| x.max(r)));
                } else {
                    fail = Some(fail.map_or(r, |x: f64| x.min(r)));
                }
                rate = next_rate(pass, fail);
            }
            assert!(tried.len() < 40, "no convergence: {tried:?}");
            if limit >= 0.1 {
                let (p, f) = (pass.unwrap(), fail.unwrap());
                assert!(
                    p <= limit && limit < f && f <= p * 1.05,
                    "{p} {f} for {limit}"
                );
            } else {
                assert_eq!(pass, None, "nothing below 0.1 ops/s passes");
            }
        }
    }

    fn fake_probe(offered: f64, met: bool) -> Probe {
        Probe {
            offered,
            achieved: offered,
            measured_us: vec![Some(1)],
            failed: vec![0],
            met,
            dir: PathBuf::new(),
        }
    }

    #[tokio::test]
    async fn a_rate_passes_when_most_of_its_probes_do() {
        // The first probe of every pair passes whatever the rate: only a strict majority
        // (both of two) keeps the search at the real limit.
        let limit = 3300.0;
        let (probes, max) = search_rates(1000.0, 6, 2, |i, r| async move {
            Ok(fake_probe(r, i % 2 == 0 || r <= limit))
        })
        .await
        .unwrap();
        assert_eq!(
            max,
            Some(3250.0),
            "{:?}",
            probes.iter().map(|p| p.offered).collect::<Vec<_>>()
        );
        assert_eq!(probes.len(), 12, "6 rates x 2 probes");
        let b = BackendCapacity {
            backend: BackendKind::Memwal,
            probes,
            max_rate: max,
            growth: Vec::new(),
            fits: BTreeMap::new(),
        };
        assert_eq!(b.max_rate_text(), "3250 ops/s");
        // Never missing: the maximum is only a lower bound.
        let (probes, max) =
            search_rates(1000.0, 2, 1, |_, r| async move { Ok(fake_probe(r, true)) })
                .await
                .unwrap();
        let b = BackendCapacity {
            probes,
            max_rate: max,
            ..b
        };
        assert!(
            b.max_rate_text().starts_with("≥ 2000 ops/s"),
            "{}",
            b.max_rate_text()
        );
        // Doubling stops at the largest rate a workload accepts.
        let (probes, _) = search_rates(4e6, 10, 1, |_, r| async move { Ok(fake_probe(r, true)) })
            .await
            .unwrap();
        assert!(
            probes.iter().all(|p| p.offered <= MAX_RATE),
            "{}",
            probes.len()
        );
    }

    #[test]
    fn growth_metrics_use_the_sample_before_the_snapshot_and_keys_written() {
        use crate::workload::events::EventRow;
        use crate::workload::output::ResourceRow;
        let dir = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/quickstart-run"
        ));
        let mut run = RunData::load(dir).unwrap();
        let row = |t_s: f64, node: u64, disk: u64, rss: u64| ResourceRow {
            t_s,
            node,
            rss_bytes: rss,
            disk_bytes: disk,
            read_bytes: 0,
            write_bytes: 0,
            cpu_pct: 0.0,
        };
        run.events = vec![EventRow {
            t_ms: 5200,
            phase: "restart".into(),
            action: "snapshot".into(),
            node: "1".into(),
            detail: String::new(),
        }];
        run.resources = vec![
            row(4.9, 1, 1000, 5000),
            row(4.9, 2, 3000, 7000),
            // Taken after the snapshot started: ignored.
            row(5.4, 1, 99_000, 99_000),
            // A dead node (RSS 0): ignored.
            row(5.0, 3, 0, 0),
        ];
        run.manifest.keys_written = Some(100);
        let m = growth_metrics(&run, 200);
        assert_eq!(m["disk_bytes_per_node"], 2000.0);
        assert_eq!(m["rss_bytes_per_node"], 6000.0);
        assert_eq!(
            m["disk_bytes_per_key"], 20.0,
            "divided by the 100 keys written"
        );
    }

    #[test]
    fn judge_counts_failures_against_the_slo() {
        let dir = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/quickstart-run"
        ));
        let run = RunData::load(dir).unwrap();
        let measured = vec!["run".to_string()];
        let achieved = run
            .manifest
            .phases
            .iter()
            .find(|p| p.name == "run")
            .unwrap()
            .achieved_rate;
        let slo = |e: &str| super::super::slo::parse(e).unwrap();
        let p = judge(&run, &measured, &slo("put.p50<10s"), achieved, dir.into());
        assert!(p.met, "{p:?}");
        assert_eq!(p.measured_us.len(), 1);
        // The fixture's run phase has failed/in-doubt puts: `max` allows none of them.
        let failed_puts: u64 = run
            .summary
            .iter()
            .filter(|r| {
                r.phase == "run"
                    && r.op == "put"
                    && r.outcome != "ok"
                    && r.latency_kind == "corrected"
            })
            .map(|r| r.count)
            .sum();
        let p = judge(&run, &measured, &slo("put.max<100s"), achieved, dir.into());
        assert_eq!(p.failed[0], failed_puts);
        assert_eq!(p.met, failed_puts == 0, "{p:?}");
        // Under-achieving the offered rate fails whatever the latency.
        let p = judge(
            &run,
            &measured,
            &slo("put.p50<10s"),
            achieved * 1.2,
            dir.into(),
        );
        assert!(!p.met);
        // A bound below the median fails.
        let p = judge(&run, &measured, &slo("get.p50<1us"), achieved, dir.into());
        assert!(!p.met);
    }

    #[test]
    fn parses_sizes() {
        assert_eq!(
            parse_sizes("10k, 100k,1M,250").unwrap(),
            vec![10_000, 100_000, 1_000_000, 250]
        );
        assert!(parse_sizes("10x").is_err());
        assert!(parse_sizes("0").is_err());
        assert!(parse_sizes("").is_err());
    }

    #[test]
    fn probe_workload_sets_rate_and_enough_concurrency() {
        let w = Workload::load(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/workloads/smoke.toml"
        )))
        .unwrap();
        let slo = super::super::slo::parse("put.p99<50ms").unwrap();
        let p = probe_workload(&w, 4000.0, &slo);
        let phases: Vec<&Phase> = p.file.phases.iter().map(|p| p.get_ref()).collect();
        assert!(phases.iter().all(|p| !p.verify));
        let mixed = phases.iter().find(|p| p.name == "mixed").unwrap();
        assert_eq!(mixed.rate, Some(4000.0));
        assert_eq!(mixed.concurrency, 400);
        let load = phases.iter().find(|p| p.name == "load").unwrap();
        assert_eq!(load.rate, None);
        let g = growth_workload(&w, 123_456, Some(1000), CacheState::Cold);
        assert_eq!(g.file.data.keys, 123_456);
        assert_eq!(g.file.data.value_size, ValueSize::Fixed(1000));
        g.revalidate().unwrap();
    }
}
