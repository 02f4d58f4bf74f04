//! Latency recording: HdrHistograms per (operation, outcome), per worker, merged — never
//! averaged percentiles.
//!
//! Each worker owns a [`Recorder`] (no locks on the hot path). Every operation is recorded
//! twice: **corrected** latency, measured from the operation's *intended* start (open loop:
//! its slot in the schedule; closed loop: when it was sent), and **service** time, measured
//! from when it was actually sent. Under open loop a stalled target shows up in the corrected
//! histogram even though each request, once sent, was quick (coordinated omission). A
//! per-second timeline keeps one histogram per (second, op) for the timeline and for
//! percentiles over recovery windows.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use hdrhistogram::errors::AdditionError;
use serde::Serialize;
use thiserror::Error;

/// Operation kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Put,
    Get,
    Delete,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Put => "put",
            Op::Get => "get",
            Op::Delete => "delete",
        }
    }
}

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    /// Failed for sure (a write that was certainly not applied, or a read that failed).
    Error,
    /// A write whose fate is unknown (timed out, or the node said so): neither lost nor
    /// acknowledged.
    Indeterminate,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Indeterminate => "indeterminate",
        }
    }
}

/// The largest latency recorded, in µs (10 minutes): longer ones are recorded as this.
pub const MAX_US: u64 = 600_000_000;

/// A histogram in microseconds, 3 significant digits, that grows to the largest value
/// recorded in it (at most [`MAX_US`], through [`record_us`]). A histogram sized for 10
/// minutes from the start holds 172 KiB of counters, and a run keeps one per worker, op,
/// outcome and second: hundreds of MiB of the load generator's memory for a one-minute
/// quickstart. Grown to the values seen (a few ms to a few s), it holds 40–90 KiB.
pub fn histogram() -> Histogram<u64> {
    let mut h = Histogram::new_with_bounds(1, 2, 3).expect("valid bounds");
    h.auto(true);
    h
}

/// Record `us` into `h`, within 1 µs to [`MAX_US`].
pub fn record_us(h: &mut Histogram<u64>, us: u64) {
    // An auto-resizing histogram grows to the value (`saturating_record` would not grow
    // it); a fixed one that cannot hold it saturates at its highest value.
    let us = us.clamp(1, MAX_US);
    if h.record(us).is_err() {
        h.saturating_record(us);
    }
}

/// Adding one histogram into another failed: the added one holds values beyond the range
/// the other tracks (histograms read from files written elsewhere can have any bounds).
#[derive(Debug, Error)]
#[error(
    "cannot add a histogram of {count} values up to {max} into one that tracks {low} to {high}: {source}"
)]
pub struct MergeError {
    /// Values in the histogram being added, and its largest.
    pub count: u64,
    pub max: u64,
    /// The range the receiving histogram tracks.
    pub low: u64,
    pub high: u64,
    #[source]
    pub source: AdditionError,
}

/// Add `h` into `acc`: the one way histograms are merged (percentiles of the sum are the
/// percentiles of all the values together; percentiles are never averaged).
pub fn merge_into(acc: &mut Histogram<u64>, h: &Histogram<u64>) -> Result<(), MergeError> {
    acc.add(h).map_err(|source| MergeError {
        count: h.len(),
        max: h.max(),
        low: acc.low(),
        high: acc.high(),
        source,
    })
}

/// Latencies of one (op, outcome).
#[derive(Clone)]
pub struct Pair {
    pub corrected: Histogram<u64>,
    pub service: Histogram<u64>,
}

impl Pair {
    fn new() -> Self {
        Pair {
            corrected: histogram(),
            service: histogram(),
        }
    }
}

/// One second of the timeline for one op.
#[derive(Clone)]
pub struct Second {
    pub ok: Histogram<u64>,
    pub errors: u64,
}

/// Why merging a recorder's histograms cannot fail (see [`Recorder::merge`]).
const SAME_BOUNDS: &str = "recorder histograms grow to what is added (histogram())";

/// Per-second histograms by (second since the run started, op): see [`Recorder::timeline`].
pub type Timeline = BTreeMap<(u64, Op), Second>;

/// Add `src`'s seconds into `dst`, moving in those `dst` does not have yet.
pub fn absorb_seconds(dst: &mut Timeline, src: Timeline) {
    for (k, s) in src {
        match dst.entry(k) {
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(s);
            }
            std::collections::btree_map::Entry::Occupied(mut o) => {
                let d = o.get_mut();
                merge_into(&mut d.ok, &s.ok).expect(SAME_BOUNDS);
                d.errors += s.errors;
            }
        }
    }
}

/// Everything one worker (or, merged, one phase) measured.
#[derive(Clone, Default)]
pub struct Recorder {
    /// Measured window.
    pub ops: BTreeMap<(Op, Outcome), Pair>,
    /// Warm-up, kept apart.
    pub warmup: BTreeMap<(Op, Outcome), Pair>,
    /// Per second since the run started (by completion time), per op (corrected latency of
    /// successes).
    pub timeline: Timeline,
    /// Acknowledged writes as (sent, acknowledged) µs since the run started, for recovery
    /// windows ("writes resumed").
    pub write_acks: Vec<(u64, u64)>,
}

impl Recorder {
    /// Record one operation. `corrected_us` counts from the intended start, `service_us` from
    /// the send; `sent_us` and `at_us` are when it was sent and completed, in µs since the
    /// run started.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &mut self,
        op: Op,
        outcome: Outcome,
        corrected_us: u64,
        service_us: u64,
        sent_us: u64,
        at_us: u64,
        warmup: bool,
    ) {
        let map = if warmup {
            &mut self.warmup
        } else {
            &mut self.ops
        };
        let p = map.entry((op, outcome)).or_insert_with(Pair::new);
        record_us(&mut p.corrected, corrected_us);
        record_us(&mut p.service, service_us);
        let s = self
            .timeline
            .entry((at_us / 1_000_000, op))
            .or_insert_with(|| Second {
                ok: histogram(),
                errors: 0,
            });
        if outcome == Outcome::Ok {
            record_us(&mut s.ok, corrected_us);
            if op != Op::Get {
                self.write_acks.push((sent_us, at_us));
            }
        } else {
            s.errors += 1;
        }
    }

    /// Add `other` into `self`.
    ///
    /// Cannot fail: every histogram of a recorder comes from [`histogram()`], which grows to
    /// whatever is added into it.
    pub fn merge(&mut self, other: &Recorder) {
        for (dst, src) in [
            (&mut self.ops, &other.ops),
            (&mut self.warmup, &other.warmup),
        ] {
            for (k, p) in src {
                let d = dst.entry(*k).or_insert_with(Pair::new);
                merge_into(&mut d.corrected, &p.corrected).expect(SAME_BOUNDS);
                merge_into(&mut d.service, &p.service).expect(SAME_BOUNDS);
            }
        }
        absorb_seconds(&mut self.timeline, other.timeline.clone());
        self.write_acks.extend_from_slice(&other.write_acks);
    }

    /// Remove and return the timeline's seconds before `second`. A worker's operations
    /// complete in time order, so once one completes in `second` the earlier ones are
    /// final and can go to the phase's shared timeline: a worker keeping its own
    /// histogram per second and op for a whole phase would hold tens of KiB per second per
    /// worker (hundreds of MiB for a long run with many workers).
    pub fn take_seconds_before(&mut self, second: u64) -> Timeline {
        let keep = self.timeline.split_off(&(second, Op::Put));
        std::mem::replace(&mut self.timeline, keep)
    }

    /// Successful operations of all kinds in the measured window.
    pub fn ok_count(&self) -> u64 {
        self.ops
            .iter()
            .filter(|((_, o), _)| *o == Outcome::Ok)
            .map(|(_, p)| p.corrected.len())
            .sum()
    }

    /// p99 (µs) of successful operations completed in `[from_s, to_s]`.
    pub fn p99_between(&self, from_s: u64, to_s: u64) -> Option<u64> {
        let mut h = histogram();
        for ((s, _), sec) in self.timeline.range((from_s, Op::Put)..=(to_s, Op::Delete)) {
            let _ = s;
            merge_into(&mut h, &sec.ok).expect(SAME_BOUNDS);
        }
        (!h.is_empty()).then(|| h.value_at_quantile(0.99))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_into_names_what_did_not_fit() {
        let mut small = Histogram::<u64>::new_with_bounds(1, 1000, 3).unwrap();
        let mut big = histogram();
        big.record(5_000_000).unwrap();
        let e = merge_into(&mut small, &big).unwrap_err();
        assert_eq!((e.count, e.low, e.high), (1, 1, small.high()));
        assert!(
            e.max >= 5_000_000 && e.to_string().contains("values up to"),
            "{e}"
        );
        assert!(std::error::Error::source(&e).is_some());
        assert!(small.is_empty());
        merge_into(&mut big, &small).unwrap();
    }

    #[test]
    fn histograms_grow_to_what_they_hold_up_to_the_maximum() {
        let mut h = histogram();
        record_us(&mut h, 0);
        record_us(&mut h, 10_000);
        record_us(&mut h, u64::MAX);
        assert_eq!(h.len(), 3);
        assert_eq!(h.min(), 1);
        assert_eq!(h.value_at_quantile(0.5), h.highest_equivalent(10_000));
        assert_eq!(h.max(), h.highest_equivalent(MAX_US));
        let mut fixed = Histogram::<u64>::new_with_bounds(1, 1000, 3).unwrap();
        record_us(&mut fixed, 5000);
        assert_eq!(fixed.max(), fixed.highest_equivalent(1000));
    }

    #[test]
    fn merge_adds_histograms_not_percentiles() {
        let mut a = Recorder::default();
        let mut b = Recorder::default();
        for i in 1..=100 {
            a.record(Op::Put, Outcome::Ok, i, i, 0, 10, false);
        }
        for _ in 0..100 {
            b.record(Op::Put, Outcome::Ok, 10_000, 5, 1_490_000, 1_500_000, false);
        }
        a.merge(&b);
        let p = &a.ops[&(Op::Put, Outcome::Ok)];
        assert_eq!(p.corrected.len(), 200);
        // The merged p75 is in b's range: averaging the two p75s would give ~5 ms.
        assert!(p.corrected.value_at_quantile(0.75) >= 9_990);
        assert!(p.service.value_at_quantile(0.75) <= 100);
        assert_eq!(a.write_acks.len(), 200);
        assert_eq!(
            a.p99_between(1, 1),
            Some(p.corrected.value_at_quantile(1.0))
        );
    }

    #[test]
    fn finished_seconds_move_to_a_shared_timeline_and_add_up() {
        let mut shared = Timeline::new();
        let mut a = Recorder::default();
        let mut b = Recorder::default();
        for (r, us) in [(&mut a, 100), (&mut b, 300)] {
            r.record(Op::Put, Outcome::Ok, us, us, 0, 200_000, false);
            r.record(Op::Get, Outcome::Error, us, us, 0, 900_000, false);
            r.record(Op::Put, Outcome::Ok, us, us, 0, 1_100_000, false);
        }
        let done = a.take_seconds_before(1);
        assert_eq!(
            done.keys().copied().collect::<Vec<_>>(),
            [(0, Op::Put), (0, Op::Get)]
        );
        assert_eq!(
            a.timeline.keys().copied().collect::<Vec<_>>(),
            [(1, Op::Put)]
        );
        absorb_seconds(&mut shared, done);
        absorb_seconds(&mut shared, b.take_seconds_before(5));
        assert!(b.timeline.is_empty());
        absorb_seconds(&mut shared, std::mem::take(&mut a.timeline));
        assert_eq!(shared[&(0, Op::Put)].ok.len(), 2);
        assert_eq!(
            shared[&(0, Op::Put)].ok.max(),
            shared[&(0, Op::Put)].ok.highest_equivalent(300)
        );
        assert_eq!(shared[&(0, Op::Get)].errors, 2);
        assert_eq!(shared[&(1, Op::Put)].ok.len(), 2);
    }
}
