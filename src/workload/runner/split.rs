//! Splitting one workload between several load generators (`run --client-id I --clients N`)
//! that drive the same cluster together.

use super::RunError;
use crate::workload::Workload;

/// Generator `i` of `n`'s share of a workload: 1/n of every phase's rate and op count
/// (the remainder to the first generators), ceil(1/n) of its concurrency, and — applied by
/// the runner — every n-th key starting at key i-1, so that generators never write the
/// same key and each can verify its own writes. Only generator 1 injects events: the
/// others would kill the same nodes again.
pub fn split(w: &mut Workload, i: u64, n: u64) -> Result<(), RunError> {
    if n == 0 || i == 0 || i > n {
        return Err(RunError::Invalid(format!(
            "--client-id must be between 1 and --clients ({n}), got {i}"
        )));
    }
    if w.file.data.keys < n {
        return Err(RunError::Invalid(format!(
            "{} keys cannot be split between {n} generators",
            w.file.data.keys
        )));
    }
    for p in &mut w.file.phases {
        let p = p.get_mut();
        if let Some(ops) = &mut p.ops {
            *ops = *ops / n + u64::from(i - 1 < *ops % n);
            *ops = (*ops).max(1);
        }
        if let Some(r) = &mut p.rate {
            *r /= n as f64;
        }
        p.concurrency = p.concurrency.div_ceil(n as usize).max(1);
        if i != 1 {
            p.events.clear();
        }
    }
    Ok(())
}

/// Generator `i` of `n`'s keys, as `(count, stride, offset)`: it uses key indexes
/// `local * stride + offset` for `local` in `[0, count)` — every n-th key from key i-1.
pub(super) fn key_partition(keys: u64, i: u64, n: u64) -> (u64, u64, u64) {
    ((keys - (i - 1)).div_ceil(n), n, i - 1)
}

/// Generator `i`'s random streams: its own, derived from the workload's seed (which, as
/// recorded, stays the same for every generator).
pub(super) fn generator_seed(seed: u64, i: u64) -> u64 {
    seed ^ (i - 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_shares_rates_ops_concurrency_and_events() {
        let path = std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/workloads/quickstart.toml"
        ));
        let w = Workload::load(path).unwrap();
        let mut a = w.clone();
        let mut b = w.clone();
        split(&mut a, 1, 3).unwrap();
        split(&mut b, 3, 3).unwrap();
        let phase = |w: &Workload, n: &str| {
            w.file
                .phases
                .iter()
                .map(|p| p.get_ref().clone())
                .find(|p| p.name == n)
                .unwrap()
        };
        // 10000 ops: 3334 + 3333 + 3333.
        assert_eq!(phase(&a, "load").ops, Some(3334));
        assert_eq!(phase(&b, "load").ops, Some(3333));
        assert_eq!(phase(&a, "run").rate, Some(1000.0 / 3.0));
        assert_eq!(phase(&a, "run").concurrency, 11);
        assert_eq!(
            phase(&a, "run").events.len(),
            3,
            "generator 1 injects the events"
        );
        assert!(phase(&b, "run").events.is_empty(), "the others do not");
        assert!(split(&mut w.clone(), 4, 3).is_err());
        assert!(split(&mut w.clone(), 0, 3).is_err());
    }

    /// The generators' partitions cover every key exactly once.
    #[test]
    fn key_partitions_cover_the_key_space_once() {
        for (keys, n) in [(10, 3), (9, 3), (7, 7), (100, 1)] {
            let mut all: Vec<u64> = (1..=n)
                .flat_map(|i| {
                    let (count, stride, offset) = key_partition(keys, i, n);
                    (0..count).map(move |l| l * stride + offset)
                })
                .collect();
            all.sort();
            assert_eq!(
                all,
                (0..keys).collect::<Vec<_>>(),
                "{keys} keys, {n} generators"
            );
        }
    }
}
