//! The rate search: which rate to probe next, and whether a probe met the SLO.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::slo::SloTerm;
use crate::report::data::RunData;
use crate::study::StudyError;

/// One probe of the rate search (also as `capacity.json` records it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Probe {
    /// The offered rate, ops/s.
    pub offered: f64,
    /// The lowest achieved rate among the measured phases, ops/s.
    pub achieved: f64,
    /// Per SLO term: the measured value in µs over successful operations (`None`: no
    /// successful operation).
    pub measured_us: Vec<Option<u64>>,
    /// Per SLO term: the op's failed or in-doubt operations (counted as over the bound).
    pub failed: Vec<u64>,
    pub met: bool,
    /// The probe's results directory (in `capacity.json`, relative to the study's).
    pub dir: PathBuf,
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
) -> Result<(Vec<Probe>, Option<f64>), StudyError>
where
    F: FnMut(usize, f64) -> Fut,
    Fut: std::future::Future<Output = Result<Probe, StudyError>>,
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
pub(super) const MAX_RATE: f64 = 10_000_000.0;

/// `1200`, or `12.5` for rates below 100 ops/s.
pub(super) fn fmt_rate(r: f64) -> String {
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

/// Judge a probe. A term `op.pQ < bound` holds ([`SloTerm::judge`]) when at most (1 − Q)
/// of the op's operations in the measured phases were slower than the bound, counting every
/// failed or in-doubt operation as slower (an overloaded system must not pass by failing
/// requests); `max` allows none. Every measured phase must also achieve ≥ 95 % of the offered rate.
pub fn judge(
    run: &RunData,
    measured: &[String],
    slo: &[SloTerm],
    rate: f64,
    dir: PathBuf,
) -> Result<Probe, StudyError> {
    let is_measured = |phase: &str| measured.iter().any(|m| m == phase);
    let achieved = run
        .manifest
        .phases
        .iter()
        .filter(|p| is_measured(&p.name))
        .map(|p| p.achieved_rate)
        .fold(f64::INFINITY, f64::min);
    let achieved = if achieved.is_finite() { achieved } else { 0.0 };
    let unsent = super::slo::unsent_ops(run, &is_measured);
    let mut met = achieved >= 0.95 * rate && unsent == 0;
    let mut measured_us = Vec::new();
    let mut failed_counts = Vec::new();
    for t in slo {
        let v = t.judge(run, &is_measured)?;
        met &= v.pass;
        measured_us.push(v.measured_us);
        failed_counts.push(v.failed);
    }
    Ok(Probe {
        offered: rate,
        achieved,
        measured_us,
        failed: failed_counts,
        met,
        dir,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::study::capacity::BackendCapacity;
    use crate::wire::BackendKind;
    use std::collections::BTreeMap;

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
        let p = judge(&run, &measured, &slo("put.p50<10s"), achieved, dir.into()).unwrap();
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
        let p = judge(&run, &measured, &slo("put.max<100s"), achieved, dir.into()).unwrap();
        assert_eq!(p.failed[0], failed_puts);
        assert_eq!(p.met, failed_puts == 0, "{p:?}");
        // Under-achieving the offered rate fails whatever the latency.
        let p = judge(
            &run,
            &measured,
            &slo("put.p50<10s"),
            achieved * 1.2,
            dir.into(),
        )
        .unwrap();
        assert!(!p.met);
        // A bound below the median fails.
        let p = judge(&run, &measured, &slo("get.p50<1us"), achieved, dir.into()).unwrap();
        assert!(!p.met);
    }
}
