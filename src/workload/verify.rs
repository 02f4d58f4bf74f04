//! The model of what the cluster must hold, and the classification of what it does hold.
//!
//! Every written value starts with an 8-byte write id, so a value read back names the write
//! that produced it. Per key the model keeps every write: when it was invoked, and when it was
//! acknowledged (`None` for an indeterminate one, which may or may not have taken effect).
//! A write `x` can legitimately be the final state of its key unless some *acknowledged*
//! write `w` was invoked after `x` was acknowledged (then `w` is ordered after `x`).
//!
//! Classification of a key's final read:
//! - `ok`: the value (or absence, after a delete) is an acknowledged write that may be final;
//! - `indeterminate_resolved`: it is a write whose outcome the client never learned;
//! - `stale`: it is an acknowledged write that a later acknowledged write superseded — an
//!   acknowledged write was lost;
//! - `lost`: the key is missing (or holds an unknown value) although an acknowledged write
//!   should be visible.
//!
//! A verify phase then makes what it read the key's new starting point ([`Model::rebase`]),
//! so a later verify phase judges only the writes since: a workload with a verify after
//! each power cut measures each cut's loss, not the sum of all before it.

use std::collections::HashMap;
use std::sync::Mutex;

/// One write to a key.
#[derive(Debug, Clone, Copy)]
struct Write {
    id: u64,
    delete: bool,
    invoked_us: u64,
    acked_us: Option<u64>,
    /// What an earlier verify read, standing in for the writes before it (not counted as
    /// an acknowledged write again).
    baseline: bool,
    /// An in-doubt write an earlier verify already counted (it may still take effect, so
    /// it stays, but is not counted again).
    counted: bool,
}

/// Per-key record of writes, shared by all workers.
#[derive(Default)]
pub struct Model {
    keys: Mutex<HashMap<u64, Vec<Write>>>,
}

/// The classification's result, as `run.json` records it.
pub use crate::wire::VerifyReport;

/// What a verify read saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    Missing,
    Value(u64),
    /// A value too short to carry a write id (never written by the runner).
    Unknown,
    /// The key could not be read.
    Unreadable,
}

/// Read the write id a value starts with.
pub fn write_id(value: &[u8]) -> Seen {
    match value.get(..8) {
        Some(b) => Seen::Value(u64::from_be_bytes(b.try_into().expect("8 bytes"))),
        None => Seen::Unknown,
    }
}

impl Model {
    /// Record a finished write (`acked_us = None`: outcome unknown). Failed writes (certainly
    /// not applied) are not recorded.
    pub fn record(&self, key: u64, id: u64, delete: bool, invoked_us: u64, acked_us: Option<u64>) {
        self.keys
            .lock()
            .expect("model lock")
            .entry(key)
            .or_default()
            .push(Write {
                id,
                delete,
                invoked_us,
                acked_us,
                baseline: false,
                counted: false,
            });
    }

    /// How many distinct keys were given a value (by a put, acknowledged or in doubt);
    /// keys only ever deleted do not count.
    pub fn key_count(&self) -> u64 {
        let map = self.keys.lock().expect("model lock");
        map.values()
            .filter(|writes| writes.iter().any(|w| !w.delete))
            .count() as u64
    }

    /// Keys written so far, sorted.
    pub fn keys(&self) -> Vec<u64> {
        let mut k: Vec<u64> = self
            .keys
            .lock()
            .expect("model lock")
            .keys()
            .copied()
            .collect();
        k.sort_unstable();
        k
    }

    /// Make what a verify read at `at_us` the key's state: one write acknowledged then (the
    /// value read, or a delete if the key was missing), plus every write still in doubt,
    /// which may yet take effect (counted once, by this verify). Unreadable keys and values
    /// of unknown origin keep their history.
    pub fn rebase(&self, key: u64, seen: Seen, at_us: u64) {
        let mut map = self.keys.lock().expect("model lock");
        let Some(writes) = map.get_mut(&key) else {
            return;
        };
        // Whatever is done below, this verify counted the writes in doubt.
        for w in writes.iter_mut().filter(|w| w.acked_us.is_none()) {
            w.counted = true;
        }
        let (id, delete) = match seen {
            Seen::Value(id) if writes.iter().any(|w| w.id == id && !w.delete) => (id, false),
            Seen::Missing => (0, true),
            Seen::Value(_) | Seen::Unknown | Seen::Unreadable => return,
        };
        writes.retain(|w| w.acked_us.is_none() && w.id != id);
        writes.push(Write {
            id,
            delete,
            invoked_us: at_us,
            acked_us: Some(at_us),
            baseline: true,
            counted: true,
        });
    }

    /// Classify `seen` for `key` into `report`.
    pub fn classify(&self, key: u64, seen: Seen, report: &mut VerifyReport) {
        let map = self.keys.lock().expect("model lock");
        let Some(writes) = map.get(&key) else { return };
        report.keys += 1;
        if seen == Seen::Unreadable {
            report.unreadable += 1;
            return;
        }
        report.acknowledged += writes
            .iter()
            .filter(|w| w.acked_us.is_some() && !w.baseline)
            .count() as u64;
        report.indeterminate += writes
            .iter()
            .filter(|w| w.acked_us.is_none() && !w.counted)
            .count() as u64;
        // The latest invocation among acknowledged writes: anything acknowledged before it
        // started is superseded.
        let last_acked_invoke = writes
            .iter()
            .filter(|w| w.acked_us.is_some())
            .map(|w| w.invoked_us)
            .max();
        let may_be_final = |w: &Write| match (w.acked_us, last_acked_invoke) {
            (Some(acked), Some(latest)) => acked >= latest,
            _ => true,
        };
        let mut bad = false;
        match seen {
            Seen::Value(id) => match writes.iter().find(|w| w.id == id && !w.delete) {
                Some(w) if !may_be_final(w) => {
                    report.stale += 1;
                    bad = true;
                }
                Some(w) if w.acked_us.is_none() => report.indeterminate_resolved += 1,
                Some(_) => report.ok += 1,
                None => {
                    report.lost += 1;
                    bad = true;
                }
            },
            Seen::Unreadable => unreachable!("handled above"),
            Seen::Unknown => {
                report.lost += 1;
                bad = true;
            }
            Seen::Missing => {
                let explained = writes.iter().filter(|w| w.delete).find(|w| may_be_final(w));
                match explained {
                    Some(w) if w.acked_us.is_none() => report.indeterminate_resolved += 1,
                    Some(_) => report.ok += 1,
                    // No write was acknowledged: nothing had to be there.
                    None if last_acked_invoke.is_none() => report.indeterminate_resolved += 1,
                    None => {
                        report.lost += 1;
                        bad = true;
                    }
                }
            }
        }
        if bad {
            // The write that should have been visible is the newest acknowledged one (an
            // earlier verify's read counts as acknowledged when it was read).
            let newest_ms = writes
                .iter()
                .filter_map(|w| w.acked_us)
                .max()
                .map(|us| us / 1000);
            report.newest_lost_acked_ms = report.newest_lost_acked_ms.max(newest_ms);
            if report.bad_keys.len() < 20 {
                report.bad_keys.push(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_each_case() {
        let m = Model::default();
        // key 1: w1 acked at 10, w2 invoked at 20 and acked at 30.
        m.record(1, 1, false, 0, Some(10));
        m.record(1, 2, false, 20, Some(30));
        let mut r = VerifyReport::default();
        m.classify(1, Seen::Value(2), &mut r);
        assert_eq!(r.ok, 1);
        m.classify(1, Seen::Value(1), &mut r);
        assert_eq!(r.stale, 1, "w1 was superseded by w2");
        m.classify(1, Seen::Missing, &mut r);
        assert_eq!(r.lost, 1);
        assert_eq!(r.newest_lost_acked_ms, Some(0), "acknowledged at 30 µs");
        m.record(1, 9, false, 40, Some(7_000));
        m.classify(1, Seen::Missing, &mut r);
        assert_eq!(r.newest_lost_acked_ms, Some(7));
        // key 2: concurrent writes (both invoked before either acked): either may be final.
        m.record(2, 3, false, 0, Some(50));
        m.record(2, 4, false, 10, Some(40));
        let mut r = VerifyReport::default();
        m.classify(2, Seen::Value(3), &mut r);
        m.classify(2, Seen::Value(4), &mut r);
        assert_eq!(r.ok, 2);
        // key 3: an indeterminate write may have won.
        m.record(3, 5, false, 0, Some(10));
        m.record(3, 6, false, 20, None);
        let mut r = VerifyReport::default();
        m.classify(3, Seen::Value(6), &mut r);
        m.classify(3, Seen::Value(5), &mut r);
        assert_eq!((r.indeterminate_resolved, r.ok), (1, 1));
        // key 4: acked delete.
        m.record(4, 7, true, 0, Some(5));
        let mut r = VerifyReport::default();
        m.classify(4, Seen::Missing, &mut r);
        assert_eq!(r.ok, 1);
        assert_eq!(write_id(&9u64.to_be_bytes()), Seen::Value(9));
        assert_eq!(write_id(b"short"), Seen::Unknown);
    }

    #[test]
    fn a_rebased_key_is_judged_on_later_writes_only() {
        let m = Model::default();
        // w1 acked, then lost: the verify at 100 finds the key missing.
        m.record(1, 1, false, 0, Some(10));
        m.record(1, 2, false, 20, None);
        let mut r = VerifyReport::default();
        m.classify(1, Seen::Missing, &mut r);
        assert_eq!(r.lost, 1);
        m.rebase(1, Seen::Missing, 100);
        // Still missing at the next verify: nothing new was lost, and the write in doubt
        // was counted by the first verify already.
        let mut r = VerifyReport::default();
        m.classify(1, Seen::Missing, &mut r);
        assert_eq!(
            (r.ok, r.lost, r.acknowledged, r.indeterminate),
            (1, 0, 0, 0)
        );
        // The write that was in doubt may still have landed.
        m.classify(1, Seen::Value(2), &mut r);
        assert_eq!(r.indeterminate_resolved, 1);
        // A write acknowledged after the verify must be there.
        m.record(1, 3, false, 200, Some(210));
        let mut r = VerifyReport::default();
        m.classify(1, Seen::Missing, &mut r);
        assert_eq!(r.lost, 1);
        m.classify(1, Seen::Value(3), &mut r);
        assert_eq!(r.ok, 1);
    }
}
