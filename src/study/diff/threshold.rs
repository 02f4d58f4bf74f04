//! `--threshold p99=+10%,ops_per_sec=-5%`: how much worse a metric may get before `diff`
//! calls it a regression.

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The metrics `diff` compares, and which way is worse for each.
pub const METRICS: &[(&str, Worse)] = &[
    ("ops_per_sec", Worse::Lower),
    ("p50", Worse::Higher),
    ("p90", Worse::Higher),
    ("p99", Worse::Higher),
    ("p999", Worse::Higher),
    ("max", Worse::Higher),
];

/// Which direction of change is a regression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Worse {
    Higher,
    Lower,
}

/// The thresholds `diff` uses when none are given.
pub const DEFAULT: &str = "p99=+10%,ops_per_sec=-5%";

const EXPECTED: &str = "expected [OP.]METRIC=+N% or [OP.]METRIC=-N% terms separated by commas, \
e.g. \"p99=+10%,ops_per_sec=-5%\" or \"put.p999=+20%\" (OP: put, get or delete; METRIC: \
ops_per_sec, p50, p90, p99, p999 or max; + for metrics where higher is worse, the latencies, \
- for ops_per_sec)";

/// A `--threshold` expression that cannot be used.
#[derive(Debug, Error, PartialEq)]
#[error("bad --threshold term {term:?}: {problem}; {EXPECTED}")]
pub struct ThresholdError {
    pub term: String,
    pub problem: String,
}

/// One threshold: `[op.]metric` may change by at most `pct` percent in its worse direction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Threshold {
    /// `None`: every operation.
    pub op: Option<String>,
    pub metric: String,
    /// Signed, as written: +10 for `p99=+10%`, -5 for `ops_per_sec=-5%`.
    pub change_pct: f64,
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(op) = &self.op {
            write!(f, "{op}.")?;
        }
        write!(f, "{}={:+}%", self.metric, self.change_pct)
    }
}

impl Threshold {
    /// Whether this threshold applies to `op`'s `metric`.
    pub fn applies(&self, op: &str, metric: &str) -> bool {
        self.metric == metric && self.op.as_deref().is_none_or(|o| o == op)
    }

    /// Whether a change of `change_pct` crosses it, in the metric's worse direction (so
    /// `ops_per_sec=-0%` means any drop at all).
    pub fn crossed(&self, change_pct: f64) -> bool {
        let allowed = self.change_pct.abs();
        match worse(&self.metric) {
            Some(Worse::Lower) => change_pct < -allowed,
            _ => change_pct > allowed,
        }
    }
}

/// Which way is worse for `metric`, if it is one `diff` knows.
pub fn worse(metric: &str) -> Option<Worse> {
    METRICS.iter().find(|(m, _)| *m == metric).map(|(_, w)| *w)
}

/// Parse `p99=+10%,ops_per_sec=-5%`. A term naming an operation overrides the general
/// term for that operation's metric.
pub fn parse(expr: &str) -> Result<Vec<Threshold>, ThresholdError> {
    let mut out = Vec::new();
    for raw in expr.split(',') {
        let term = raw.trim();
        let bad = |problem: String| ThresholdError {
            term: term.to_string(),
            problem,
        };
        if term.is_empty() {
            return Err(bad("empty term".into()));
        }
        let (lhs, rhs) = term
            .split_once('=')
            .ok_or_else(|| bad("no '=' between the metric and the change".into()))?;
        let (op, metric) = match lhs.trim().split_once('.') {
            Some((op, m)) => {
                if !matches!(op, "put" | "get" | "delete") {
                    return Err(bad(format!("unknown operation {op:?}")));
                }
                (Some(op.to_string()), m)
            }
            None => (None, lhs.trim()),
        };
        let w = worse(metric).ok_or_else(|| bad(format!("unknown metric {metric:?}")))?;
        let rhs = rhs.trim();
        let number = rhs
            .strip_suffix('%')
            .ok_or_else(|| bad(format!("{rhs:?} does not end in %")))?;
        if !number.starts_with(['+', '-']) {
            return Err(bad(format!(
                "{rhs:?} has no sign: write + or - for the direction that is worse"
            )));
        }
        let pct: f64 = number
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .ok_or_else(|| bad(format!("{number:?} is not a number")))?;
        match w {
            Worse::Higher if number.starts_with('-') => {
                return Err(bad(format!(
                    "{metric} gets worse as it rises: write {metric}=+{}%",
                    pct.abs()
                )));
            }
            Worse::Lower if number.starts_with('+') => {
                return Err(bad(format!(
                    "{metric} gets worse as it falls: write {metric}=-{}%",
                    pct.abs()
                )));
            }
            _ => {}
        }
        if out
            .iter()
            .any(|t: &Threshold| t.metric == metric && t.op == op)
        {
            return Err(bad(format!("{lhs} is given twice")));
        }
        out.push(Threshold {
            op,
            metric: metric.to_string(),
            change_pct: pct,
        });
    }
    Ok(out)
}

/// The threshold for `op`'s `metric`: the term naming the operation, else the general one.
pub fn find<'a>(ts: &'a [Threshold], op: &str, metric: &str) -> Option<&'a Threshold> {
    ts.iter()
        .find(|t| t.op.as_deref() == Some(op) && t.metric == metric)
        .or_else(|| ts.iter().find(|t| t.op.is_none() && t.metric == metric))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_thresholds_and_finds_the_most_specific() {
        let t = parse("p99=+10%, ops_per_sec=-5%,put.p99=+20.5%").unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(find(&t, "get", "p99").unwrap().change_pct, 10.0);
        assert_eq!(find(&t, "put", "p99").unwrap().change_pct, 20.5);
        assert!(find(&t, "put", "p50").is_none());
        let tp = find(&t, "get", "ops_per_sec").unwrap();
        assert!(tp.crossed(-6.0) && !tp.crossed(-4.0) && !tp.crossed(30.0));
        assert!(t[0].crossed(10.5) && !t[0].crossed(10.0) && !t[0].crossed(-50.0));
        assert_eq!(t[2].to_string(), "put.p99=+20.5%");
        assert!(parse(DEFAULT).is_ok());
        // Zero thresholds: any change in the worse direction crosses them.
        let z = parse("ops_per_sec=-0%,p99=+0%").unwrap();
        assert!(z[0].crossed(-0.1) && !z[0].crossed(0.0) && !z[0].crossed(5.0));
        assert!(z[1].crossed(0.1) && !z[1].crossed(0.0) && !z[1].crossed(-5.0));
    }

    #[test]
    fn bad_thresholds_say_what_was_expected() {
        for (bad, problem) in [
            ("", "empty term"),
            ("p99", "no '='"),
            ("p98=+10%", "unknown metric"),
            ("scan.p99=+1%", "unknown operation"),
            ("p99=+10", "does not end in %"),
            ("p99=10%", "no sign"),
            ("p99=+ten%", "not a number"),
            ("p99=-10%", "gets worse as it rises"),
            ("ops_per_sec=+5%", "gets worse as it falls"),
            ("ops_per_sec=+0%", "gets worse as it falls"),
            ("p99=-0%", "gets worse as it rises"),
            ("p99=+1%,p99=+2%", "given twice"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.problem.contains(problem), "{bad}: {e}");
            assert!(e.to_string().contains("expected [OP.]METRIC=+N%"), "{e}");
        }
    }
}
