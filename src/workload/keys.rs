//! Key and value generators.
//!
//! Every worker draws from its own seeded RNG, so a workload is deterministic per seed and
//! worker. Keys are indexes in `[0, keys)` rendered as zero-padded decimals of `key_size`
//! bytes. Zipfian ranks come from `rand_distr::Zipf` and are scrambled by a bijection of the
//! key space (as YCSB's scrambled zipfian does with a hash), so the hottest keys are spread
//! over the space instead of clustered at its start.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rand::Rng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Zipf};

use super::spec::{KeyDistribution, ValueSize, ValueSizeDist};

/// Counters shared by the workers of a run: the next sequential key, and the highest key
/// written so far (for `latest`).
#[derive(Debug, Default)]
pub struct SharedKeys {
    next_sequential: AtomicU64,
    latest: AtomicU64,
}

impl SharedKeys {
    /// Note that key index `k` was written.
    pub fn wrote(&self, k: u64) {
        self.latest.fetch_max(k, Ordering::Relaxed);
    }
}

/// Chooses key indexes according to a distribution.
pub struct KeyChooser {
    keys: u64,
    kind: Kind,
    shared: Arc<SharedKeys>,
}

enum Kind {
    Uniform,
    Zipfian { zipf: Zipf<f64>, mult: u64 },
    Latest { zipf: Zipf<f64> },
    Hotspot { hot: u64, share: f64 },
    Sequential,
}

/// A multiplier coprime with `n`, so `i * mult % n` permutes `[0, n)`.
fn coprime_multiplier(n: u64) -> u64 {
    fn gcd(a: u64, b: u64) -> u64 {
        if b == 0 { a } else { gcd(b, a % b) }
    }
    if n <= 2 {
        return 1;
    }
    let mut m = (0x9E37_79B9_7F4A_7C15u64 % n).max(2);
    while gcd(m, n) != 1 {
        m = m % (n - 1) + 1;
    }
    m
}

impl KeyChooser {
    pub fn new(dist: &KeyDistribution, keys: u64, shared: Arc<SharedKeys>) -> KeyChooser {
        let keys = keys.max(1);
        let zipf = |theta: f64| Zipf::new(keys as f64, theta).expect("validated theta");
        let kind = match dist {
            KeyDistribution::Uniform => Kind::Uniform,
            KeyDistribution::Zipfian { theta } => Kind::Zipfian {
                zipf: zipf(*theta),
                mult: coprime_multiplier(keys),
            },
            KeyDistribution::Latest { theta } => Kind::Latest { zipf: zipf(*theta) },
            KeyDistribution::Hotspot {
                hot_key_fraction,
                hot_op_share,
            } => Kind::Hotspot {
                hot: ((keys as f64 * hot_key_fraction).ceil() as u64).clamp(1, keys),
                share: *hot_op_share,
            },
            KeyDistribution::Sequential => Kind::Sequential,
        };
        KeyChooser { keys, kind, shared }
    }

    /// The next key index.
    pub fn next(&self, rng: &mut StdRng) -> u64 {
        let n = self.keys;
        match &self.kind {
            Kind::Uniform => rng.random_range(0..n),
            Kind::Zipfian { zipf, mult } => {
                let rank = zipf.sample(rng) as u64 - 1; // 0 = hottest
                ((rank as u128 * *mult as u128) % n as u128) as u64
            }
            Kind::Latest { zipf } => {
                let rank = zipf.sample(rng) as u64 - 1;
                let latest = self.shared.latest.load(Ordering::Relaxed) % n;
                (latest + n - rank % n) % n
            }
            Kind::Hotspot { hot, share } => {
                if *hot == n || rng.random_bool(*share) {
                    rng.random_range(0..*hot)
                } else {
                    rng.random_range(*hot..n)
                }
            }
            Kind::Sequential => self.shared.next_sequential.fetch_add(1, Ordering::Relaxed) % n,
        }
    }
}

/// The key string of index `i`: zero-padded to `size` bytes.
pub fn key_name(i: u64, size: usize) -> String {
    format!("{i:0size$}")
}

/// Makes values of the configured sizes and compressibility.
pub struct ValueMaker {
    size: ValueSize,
    random_share: f64,
    /// Random bytes values are cut from (cheaper than generating each value).
    pool: Arc<Vec<u8>>,
}

const POOL: usize = 1 << 20;

impl ValueMaker {
    pub fn new(size: &ValueSize, random_share: f64, seed: u64) -> ValueMaker {
        use rand::SeedableRng;
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5EED_FA11u64);
        let mut pool = vec![0u8; POOL + crate::wire::MAX_VALUE_BYTES.min(8 << 20)];
        rng.fill(&mut pool[..]);
        ValueMaker {
            size: size.clone(),
            random_share,
            pool: Arc::new(pool),
        }
    }

    /// A size drawn from the distribution.
    pub fn size(&self, rng: &mut StdRng) -> usize {
        match &self.size {
            ValueSize::Fixed(n) => *n,
            ValueSize::Dist(ValueSizeDist::Uniform { min, max }) => rng.random_range(*min..=*max),
            ValueSize::Dist(ValueSizeDist::Weighted { sizes }) => {
                let total: f64 = sizes.iter().map(|(_, w)| w).sum();
                let mut x = rng.random::<f64>() * total;
                for (s, w) in sizes {
                    if x < *w {
                        return *s;
                    }
                    x -= w;
                }
                sizes.last().map_or(0, |(s, _)| *s)
            }
        }
    }

    /// A value: `random_share` of it random bytes, the rest a repeated byte.
    pub fn make(&self, rng: &mut StdRng) -> Vec<u8> {
        let len = self.size(rng);
        let random = ((len as f64) * self.random_share).round() as usize;
        let start = rng.random_range(0..POOL);
        let mut v = Vec::with_capacity(len);
        v.extend_from_slice(&self.pool[start..start + random]);
        v.resize(len, b'x');
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn counts(dist: KeyDistribution, keys: u64, draws: usize) -> Vec<u64> {
        let c = KeyChooser::new(&dist, keys, Arc::default());
        let mut rng = StdRng::seed_from_u64(7);
        let mut counts = vec![0u64; keys as usize];
        for _ in 0..draws {
            counts[c.next(&mut rng) as usize] += 1;
        }
        counts
    }

    /// Share of draws that hit the hottest `fraction` of keys.
    fn top_share(mut counts: Vec<u64>, fraction: f64) -> f64 {
        let total: u64 = counts.iter().sum();
        counts.sort_unstable_by(|a, b| b.cmp(a));
        let top = ((counts.len() as f64) * fraction).ceil() as usize;
        counts[..top].iter().sum::<u64>() as f64 / total as f64
    }

    #[test]
    fn zipfian_hottest_one_percent_matches_theory() {
        let (n, theta) = (10_000u64, 0.99);
        // Theory: P(rank <= k) = H(k, theta) / H(n, theta).
        let h = |k: u64| (1..=k).map(|i| 1.0 / (i as f64).powf(theta)).sum::<f64>();
        let expected = h(n / 100) / h(n);
        let got = top_share(counts(KeyDistribution::Zipfian { theta }, n, 400_000), 0.01);
        assert!(
            (got - expected).abs() < 0.02,
            "hottest 1% got {got:.3} of draws, theory {expected:.3}"
        );
        // Scrambled: the hot keys are not simply the first ones.
        let c = counts(KeyDistribution::Zipfian { theta }, n, 100_000);
        let first_percent: u64 = c[..100].iter().sum();
        assert!(
            (first_percent as f64) < 0.2 * 100_000.0,
            "hot keys clustered at the start"
        );
    }

    #[test]
    fn uniform_is_flat_and_hotspot_hits_its_share() {
        let c = counts(KeyDistribution::Uniform, 100, 200_000);
        let (min, max) = (c.iter().min().unwrap(), c.iter().max().unwrap());
        assert!(*min > 1700 && *max < 2300, "uniform spread {min}..{max}");
        let c = counts(
            KeyDistribution::Hotspot {
                hot_key_fraction: 0.1,
                hot_op_share: 0.9,
            },
            1000,
            200_000,
        );
        let hot: u64 = c[..100].iter().sum();
        let share = hot as f64 / 200_000.0;
        assert!((share - 0.9).abs() < 0.01, "hot share {share}");
    }

    #[test]
    fn sequential_and_latest() {
        let shared = Arc::new(SharedKeys::default());
        let seq = KeyChooser::new(&KeyDistribution::Sequential, 5, shared.clone());
        let mut rng = StdRng::seed_from_u64(1);
        let got: Vec<u64> = (0..7).map(|_| seq.next(&mut rng)).collect();
        assert_eq!(got, vec![0, 1, 2, 3, 4, 0, 1]);
        shared.wrote(500);
        let latest = KeyChooser::new(&KeyDistribution::Latest { theta: 0.99 }, 1000, shared);
        let hits = (0..10_000)
            .filter(|_| {
                let k = latest.next(&mut rng);
                (490..=500).contains(&k)
            })
            .count();
        assert!(
            hits > 3_000,
            "latest keys are the hottest ({hits} of 10000 near 500)"
        );
    }

    #[test]
    fn values_have_the_right_size_and_compressibility() {
        let vm = ValueMaker::new(
            &ValueSize::Dist(ValueSizeDist::Weighted {
                sizes: vec![(100, 3.0), (1000, 1.0)],
            }),
            0.25,
            9,
        );
        let mut rng = StdRng::seed_from_u64(3);
        let sizes: Vec<usize> = (0..4000).map(|_| vm.make(&mut rng).len()).collect();
        let small = sizes.iter().filter(|s| **s == 100).count() as f64 / 4000.0;
        assert!((small - 0.75).abs() < 0.03, "weighted share {small}");
        let v = vm.make(&mut rng);
        let filler = v.iter().rev().take_while(|b| **b == b'x').count();
        assert!(filler as f64 >= 0.74 * v.len() as f64);
        assert_eq!(key_name(42, 8), "00000042");
    }
}
