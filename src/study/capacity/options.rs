//! The study's options: parsing `--sizes` and `--target-keys`, and checking everything
//! against the workload before hours of runs start.

use std::path::PathBuf;

use thiserror::Error;

use super::slo::SloTerm;
use super::workloads::{growth_workload, measured, probe_workload, restart_cache, start_rate};
use crate::study::{Launch, StudyError, check_backends};
use crate::wire::BackendKind;
use crate::workload::Workload;
use crate::workload::spec::Phase;

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

/// Parse one key count like `10k` or `1M` (for `--target-keys`).
pub fn parse_count(s: &str) -> Result<u64, String> {
    let expected = || format!("expected one key count like 250000, 100k or 1M, got {s:?}");
    match parse_sizes(s).map_err(|_| expected())?.as_slice() {
        [n] => Ok(*n),
        _ => Err(expected()),
    }
}

/// A `--sizes` list that cannot be used (clap names the option).
#[derive(Debug, Error, PartialEq)]
pub enum SizesError {
    #[error("bad size {0:?}; expected key counts like 10k,100k,1M")]
    Bad(String),
    #[error("sizes must be positive")]
    Zero,
    #[error("{0:?} is too large")]
    TooLarge(String),
}

/// Parse `10k,100k,1M` (k = 1000, M = 10⁶, G = 10⁹).
pub fn parse_sizes(s: &str) -> Result<Vec<u64>, SizesError> {
    let mut out = Vec::new();
    for t in s.split(',') {
        let t = t.trim();
        let (num, mult) = match t.char_indices().last() {
            Some((i, 'k' | 'K')) => (&t[..i], 1_000),
            Some((i, 'M')) => (&t[..i], 1_000_000),
            Some((i, 'G')) => (&t[..i], 1_000_000_000),
            _ => (t, 1),
        };
        let n: u64 = num
            .trim()
            .replace('_', "")
            .parse()
            .map_err(|_| SizesError::Bad(t.to_string()))?;
        if n == 0 {
            return Err(SizesError::Zero);
        }
        out.push(
            n.checked_mul(mult)
                .ok_or_else(|| SizesError::TooLarge(t.to_string()))?,
        );
    }
    Ok(out)
}

/// Check the options against the workload: everything a run would refuse hours in is
/// refused now.
pub(super) fn check(o: &CapacityOptions, w: &Workload) -> Result<(), StudyError> {
    check_backends(&o.backends)?;
    o.launch.check_each_backend(w, &o.backends)?;
    if o.slo.is_empty() {
        return Err(StudyError::Invalid("--slo: give at least one term".into()));
    }
    let mut sizes = o.sizes.clone();
    sizes.sort_unstable();
    sizes.dedup();
    if sizes.len() < 2 {
        return Err(StudyError::Invalid(
            "--sizes: give at least two different sizes to fit a growth model".into(),
        ));
    }
    if o.steps == 0 {
        return Err(StudyError::Invalid("--steps must be at least 1".into()));
    }
    if o.repeat == 0 {
        return Err(StudyError::Invalid("--repeat must be at least 1".into()));
    }
    if let Some(r) = o.start_rate
        && !(r.is_finite() && r > 0.0)
    {
        return Err(StudyError::Invalid("--start-rate must be positive".into()));
    }
    let phases: Vec<&Phase> = w
        .file
        .phases
        .iter()
        .map(|p| p.get_ref())
        .filter(|p| measured(p))
        .collect();
    if phases.is_empty() {
        return Err(StudyError::Invalid(format!(
            "{}: no phase bounded by `duration` to search the rate with",
            w.path.display()
        )));
    }
    // The generated workloads must be valid before hours of runs start.
    let rate = start_rate(o, w);
    let generated = |what: String| move |source| StudyError::Generated { what, source };
    probe_workload(w, rate, &o.slo)
        .revalidate()
        .map_err(generated("rate-search probe".into()))?;
    for s in &sizes {
        growth_workload(w, *s, o.target_value_size, restart_cache(o))
            .revalidate()
            .map_err(generated(format!("growth run with {s} keys")))?;
    }
    for t in &o.slo {
        let used = phases.iter().any(|p| match t.op.as_str() {
            "put" => p.mix.put > 0.0,
            "get" => p.mix.get > 0.0,
            _ => p.mix.delete > 0.0,
        });
        if !used {
            return Err(StudyError::Invalid(format!(
                "--slo term {t}: {} has no duration-bound phase with {} operations",
                w.path.display(),
                t.op
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes() {
        assert_eq!(
            parse_sizes("10k, 100k,1M,250").unwrap(),
            vec![10_000, 100_000, 1_000_000, 250]
        );
        assert_eq!(parse_sizes("10x"), Err(SizesError::Bad("10x".into())));
        assert_eq!(parse_sizes("0"), Err(SizesError::Zero));
        assert!(parse_sizes("").is_err());
        assert!(matches!(
            parse_sizes("99999999999G"),
            Err(SizesError::TooLarge(_))
        ));
        assert_eq!(parse_count("250k"), Ok(250_000));
        assert!(parse_count("1k,2k").is_err());
    }
}
