//! Service-level objectives: `put.p99<20ms,get.p99.9<5ms`.
//!
//! A term bounds one percentile of one operation's *corrected* latency (successful
//! operations, from their intended start), so a generator that falls behind cannot make
//! an overloaded system look compliant.

use std::fmt;

use hdrhistogram::Histogram;
use thiserror::Error;

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
