//! Service-level objectives: `put.p99<20ms,get.p99.9<5ms`, for `capacity --slo` (does a
//! probe meet it) and `run --slo` (does this run meet it: PASS/FAIL per term, `run.json`
//! and the exit code).
//!
//! A term bounds one percentile of one operation's *corrected* latency (successful
//! operations, from their intended start), so a generator that falls behind cannot make
//! an overloaded system look compliant. Failed and in-doubt operations count as slower
//! than any bound: a system must not pass by failing requests.

use std::fmt;
use std::io;
use std::path::Path;

use hdrhistogram::Histogram;
use thiserror::Error;

use super::StudyError;
use crate::metrics::merge_into;
use crate::report::data::{Kind, RunData};
use crate::wire::{RunManifest, SloTermVerdict, SloVerdict};
use crate::workload::Workload;

const EXPECTED: &str = "expected OP.PERCENTILE<DURATION terms separated by commas, e.g. \
\"put.p99<20ms,get.p99.9<5ms\" (OP: put, get or delete; PERCENTILE: p50, p90, p99, p99.9, \
p999, p99.99 or max; DURATION: a number with us, ms or s)";

/// An `--slo` expression that cannot be used.
#[derive(Debug, Error, PartialEq)]
#[error("bad --slo term {term:?}: {problem}; {EXPECTED}")]
pub struct SloError {
    pub term: String,
    pub problem: String,
}

/// One bound: `op.pNN < bound`.
#[derive(Debug, Clone, PartialEq)]
pub struct SloTerm {
    pub op: String,
    /// Quantile in (0, 1]; 1.0 = max.
    pub quantile: f64,
    pub bound_us: f64,
    /// As written, normalised (`put.p99<20ms`).
    pub text: String,
}

impl fmt::Display for SloTerm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl SloTerm {
    /// The term's percentile of `h`, in µs.
    pub fn measure(&self, h: &Histogram<u64>) -> u64 {
        if self.quantile >= 1.0 {
            h.max()
        } else {
            h.value_at_quantile(self.quantile)
        }
    }

    /// `put.p99`, the measured quantity's name.
    pub fn name(&self) -> &str {
        self.text.split('<').next().unwrap_or(&self.text)
    }

    /// How a term fared over some phases of a run.
    pub fn judge(
        &self,
        run: &RunData,
        is_judged: &dyn Fn(&str) -> bool,
    ) -> Result<SloTermVerdict, StudyError> {
        let mut h: Option<Histogram<u64>> = None;
        for ((phase, op, kind), x) in &run.histograms {
            if *kind == Kind::Corrected && op == &self.op && is_judged(phase) {
                match &mut h {
                    Some(acc) => merge_into(acc, x).map_err(|source| StudyError::Merge {
                        what: format!(
                            "{}: corrected {op} latency of phase {phase} onto the other judged phases",
                            run.dir.display()
                        ),
                        source,
                    })?,
                    None => h = Some(x.clone()),
                }
            }
        }
        let failed: u64 = run
            .summary
            .iter()
            .filter(|r| {
                is_judged(&r.phase)
                    && r.op == self.op
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
            let bound = h.lowest_equivalent(self.bound_us.ceil() as u64);
            h.count_between(0, bound.saturating_sub(1))
        });
        let over_bound = ok - within.min(ok) + failed;
        let total = ok + failed;
        // 1 − 0.9 is 0.09999…: without the epsilon p90 of 10 ops would allow none.
        let allowed = ((1.0 - self.quantile) * total as f64 + 1e-9).floor() as u64;
        Ok(SloTermVerdict {
            term: self.text.clone(),
            bound_us: self.bound_us,
            measured_us: h.filter(|h| !h.is_empty()).map(|h| self.measure(&h)),
            ok,
            failed,
            over_bound,
            allowed,
            // No successful operation is no evidence of meeting anything.
            pass: ok > 0 && over_bound <= allowed,
        })
    }
}

/// Operations the open-loop schedules of the judged phases never sent (the target fell
/// behind by more than the drain time): the slowest of all, and missing from the
/// histograms, so any fails an objective.
pub fn unsent_ops(run: &RunData, is_judged: &dyn Fn(&str) -> bool) -> u64 {
    run.manifest
        .phases
        .iter()
        .filter(|p| is_judged(&p.name))
        .map(|p| p.unsent)
        .sum()
}

/// `run --slo`: judge the results in `dir` against `terms` over `phases` (default: every
/// load phase; warm-up and verify phases are never judged) and record the verdict in its
/// `run.json` (replacing an earlier one). Operations an open-loop schedule never sent
/// (`unsent`) are missing from the histograms, so any fails the objective.
pub fn judge_run(
    dir: &Path,
    terms: &[SloTerm],
    phases: Option<&[String]>,
) -> Result<SloVerdict, StudyError> {
    let run = RunData::load(dir)?;
    let known: Vec<String> = run.manifest.phases.iter().map(|p| p.name.clone()).collect();
    let judged: Vec<String> = match phases {
        None => known.clone(),
        Some(names) => {
            for n in names {
                if !known.contains(n) {
                    return Err(StudyError::Invalid(format!(
                        "--slo-phases: {}: no load phase {n:?} (its load phases: {})",
                        dir.display(),
                        known.join(", ")
                    )));
                }
            }
            names.to_vec()
        }
    };
    let is_judged = |p: &str| judged.iter().any(|j| j == p);
    let verdicts = terms
        .iter()
        .map(|t| t.judge(&run, &is_judged))
        .collect::<Result<Vec<_>, _>>()?;
    let unsent = unsent_ops(&run, &is_judged);
    let verdict = SloVerdict {
        expression: terms
            .iter()
            .map(|t| t.text.as_str())
            .collect::<Vec<_>>()
            .join(","),
        pass: unsent == 0 && verdicts.iter().all(|v| v.pass),
        phases: judged,
        terms: verdicts,
        unsent,
    };
    let path = dir.join("run.json");
    let mut manifest: RunManifest<Workload> = run.manifest;
    manifest.slo = Some(verdict.clone());
    manifest
        .save(&path)
        .map_err(|source| StudyError::Report(crate::report::ReportError::Io { path, source }))?;
    Ok(verdict)
}

/// Refuse `--slo-phases` names that are not load phases of `w`, naming those it has.
pub fn check_phase_names(w: &Workload, names: &[String]) -> Result<(), StudyError> {
    let load: Vec<&str> = w
        .file
        .phases
        .iter()
        .map(|p| p.get_ref())
        .filter(|p| !p.verify)
        .map(|p| p.name.as_str())
        .collect();
    match names.iter().find(|n| !load.contains(&n.as_str())) {
        Some(n) => Err(StudyError::Invalid(format!(
            "--slo-phases: {}: no load phase {n:?} (its load phases: {})",
            w.path.display(),
            load.join(", ")
        ))),
        None => Ok(()),
    }
}

/// The verdict for a terminal: one PASS/FAIL line per term, then the overall one.
pub fn write_verdict(v: &SloVerdict, out: &mut dyn io::Write) -> io::Result<()> {
    let fmt = crate::report::plot::fmt_us;
    for t in &v.terms {
        let measured = t
            .measured_us
            .map_or_else(|| "no successful operation".to_string(), |m| fmt(m as f64));
        writeln!(
            out,
            "slo {} {}: {} ({} of {} operations over {}, {} failed or in doubt; {} allowed)",
            if t.pass { "PASS" } else { "FAIL" },
            t.term,
            measured,
            t.over_bound,
            t.ok + t.failed,
            fmt(t.bound_us),
            t.failed,
            t.allowed,
        )?;
    }
    if v.unsent > 0 {
        writeln!(
            out,
            "slo FAIL schedule: {} operations of the open-loop schedule were never sent (the target fell behind)",
            v.unsent
        )?;
    }
    writeln!(
        out,
        "slo {}: {} over phases {}",
        if v.pass { "PASS" } else { "FAIL" },
        v.expression,
        v.phases.join(", ")
    )
}

fn parse_quantile(p: &str) -> Option<f64> {
    if p == "max" {
        return Some(1.0);
    }
    let digits = p.strip_prefix('p')?;
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    // `p999` is the common spelling of 99.9 (as in summary.csv's p999_us), `p9999` of 99.99.
    let normalised = if !digits.contains('.') && digits.len() > 2 && digits.starts_with("99") {
        format!("{}.{}", &digits[..2], &digits[2..])
    } else {
        digits.to_string()
    };
    let pct: f64 = normalised.parse().ok()?;
    (pct > 0.0 && pct < 100.0).then_some(pct / 100.0)
}

fn parse_duration_us(d: &str) -> Option<f64> {
    let (num, mult) = if let Some(n) = d.strip_suffix("us").or_else(|| d.strip_suffix("µs")) {
        (n, 1.0)
    } else if let Some(n) = d.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = d.strip_suffix('s') {
        (n, 1e6)
    } else {
        return None;
    };
    let v: f64 = num.trim().parse().ok()?;
    (v.is_finite() && v > 0.0).then_some(v * mult)
}

/// Parse `put.p99<20ms,get.p99<5ms`.
pub fn parse(expr: &str) -> Result<Vec<SloTerm>, SloError> {
    let mut terms = Vec::new();
    for raw in expr.split(',') {
        let term = raw.trim();
        let bad = |problem: &str| SloError {
            term: term.to_string(),
            problem: problem.to_string(),
        };
        if term.is_empty() {
            return Err(bad("empty term"));
        }
        let (lhs, rhs) = term
            .split_once('<')
            .ok_or_else(|| bad("no '<' between the percentile and the bound"))?;
        let rhs = rhs.strip_prefix('=').unwrap_or(rhs).trim();
        let (op, pct) = lhs
            .trim()
            .split_once('.')
            .ok_or_else(|| bad("no '.' between the operation and the percentile"))?;
        if !matches!(op, "put" | "get" | "delete") {
            return Err(bad(&format!("unknown operation {op:?}")));
        }
        let quantile =
            parse_quantile(pct).ok_or_else(|| bad(&format!("unknown percentile {pct:?}")))?;
        let bound_us =
            parse_duration_us(rhs).ok_or_else(|| bad(&format!("bad duration {rhs:?}")))?;
        terms.push(SloTerm {
            op: op.to_string(),
            quantile,
            bound_us,
            text: format!("{op}.{pct}<{rhs}"),
        });
    }
    Ok(terms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_terms() {
        let t = parse("put.p99<20ms, get.p99.9<500us,delete.max<1.5s,get.p999<2ms").unwrap();
        assert_eq!(t.len(), 4);
        assert_eq!(
            (t[0].op.as_str(), t[0].quantile, t[0].bound_us),
            ("put", 0.99, 20_000.0)
        );
        assert!((t[1].quantile - 0.999).abs() < 1e-12);
        assert_eq!(t[1].bound_us, 500.0);
        assert_eq!((t[2].quantile, t[2].bound_us), (1.0, 1_500_000.0));
        assert!((t[3].quantile - 0.999).abs() < 1e-12);
        assert_eq!(t[0].name(), "put.p99");
    }

    #[test]
    fn rejects_bad_terms_saying_what_was_expected() {
        for bad in [
            "",
            "put.p99",
            "put<20ms",
            "scan.p99<1ms",
            "put.p100<1ms",
            "put.q99<1ms",
            "put.p99<20",
            "put.p99<-1ms",
            "put.p99<20ms,",
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains("expected OP.PERCENTILE<DURATION"), "{bad}: {e}");
        }
        let e = parse("put.p99<20").unwrap_err();
        assert_eq!(e.term, "put.p99<20");
        assert!(e.problem.contains("bad duration"));
    }
}
