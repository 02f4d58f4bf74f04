//! The two-sided Mann-Whitney U test (Wilcoxon rank-sum): do two samples come from the same
//! distribution, or does one tend to be larger?
//!
//! Why this test for benchmark results: it assumes no distribution (per-second latency
//! percentiles are skewed and heavy-tailed, far from normal), one outlier second moves it
//! by one rank only, and its p-value is deterministic (a bootstrap's would vary from run
//! to run of `diff` unless seeded, and needs many more samples to be stable).
//!
//! Small samples without ties get the exact distribution of U; larger ones (or with ties)
//! the normal approximation with the tie correction and a continuity correction, as
//! SciPy's `mannwhitneyu(method="auto")` does.

/// Samples of at most this size (both) without ties get the exact p-value.
const EXACT_MAX: usize = 8;

/// The result of one test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mwu {
    /// U of the first sample: pairs (x, y) with x > y, ties counting ½.
    pub u: f64,
    /// Two-sided p-value.
    pub p: f64,
}

/// Test `x` against `y`; `None` when either is empty or every value is the same (no test
/// can tell anything apart then).
pub fn mann_whitney(x: &[f64], y: &[f64]) -> Option<Mwu> {
    let (n1, n2) = (x.len(), y.len());
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let mut all: Vec<(f64, usize)> = x
        .iter()
        .map(|v| (*v, 0))
        .chain(y.iter().map(|v| (*v, 1)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Average ranks over runs of ties, and Σ(t³ − t) for the variance's tie correction.
    let n = all.len();
    let mut rank_x = 0.0;
    let mut ties = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let t = (j - i + 1) as f64;
        let avg = (i + j) as f64 / 2.0 + 1.0;
        rank_x += avg * all[i..=j].iter().filter(|v| v.1 == 0).count() as f64;
        ties += t * t * t - t;
        i = j + 1;
    }
    let (f1, f2) = (n1 as f64, n2 as f64);
    let u = rank_x - f1 * (f1 + 1.0) / 2.0;
    let mean = f1 * f2 / 2.0;
    let nn = (n1 + n2) as f64;
    let var = f1 * f2 / 12.0 * ((nn + 1.0) - ties / (nn * (nn - 1.0)));
    if var <= 0.0 {
        return None;
    }
    let p = if ties == 0.0 && n1 <= EXACT_MAX && n2 <= EXACT_MAX {
        exact_two_sided(n1, n2, u)
    } else {
        let z = ((u - mean).abs() - 0.5).max(0.0) / var.sqrt();
        (2.0 * normal_sf(z)).min(1.0)
    };
    Some(Mwu { u, p })
}

/// P(|U − mean| ≥ |u − mean|) under the null, counting the arrangements of n1 + n2 ranks.
fn exact_two_sided(n1: usize, n2: usize, u: f64) -> f64 {
    // counts[a][b][k]: arrangements of a x's and b y's with U = k, built up one value at a
    // time (the largest is an x, adding b to U, or a y).
    let max_u = n1 * n2;
    let mut counts = vec![vec![vec![0f64; max_u + 1]; n2 + 1]; n1 + 1];
    for row in counts.iter_mut() {
        row[0][0] = 1.0;
    }
    for cell in counts[0].iter_mut() {
        cell[0] = 1.0;
    }
    for a in 1..=n1 {
        for b in 1..=n2 {
            for k in 0..=a * b {
                let with_x = if k >= b { counts[a - 1][b][k - b] } else { 0.0 };
                let with_y = counts[a][b - 1][k];
                counts[a][b][k] = with_x + with_y;
            }
        }
    }
    let dist = &counts[n1][n2];
    let total: f64 = dist.iter().sum();
    let mean = max_u as f64 / 2.0;
    let d = (u - mean).abs();
    let extreme: f64 = dist
        .iter()
        .enumerate()
        .filter(|(k, _)| (*k as f64 - mean).abs() >= d - 1e-9)
        .map(|(_, c)| c)
        .sum();
    (extreme / total).min(1.0)
}

/// The standard normal's upper tail, P(Z > z).
fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// erfc(x) for x ≥ 0 (Numerical Recipes' Chebyshev fit, relative error < 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference values from SciPy 1.x, `mannwhitneyu(x, y, alternative="two-sided")`.
    #[test]
    fn agrees_with_scipy() {
        // Exact (no ties, small): U = 0 for fully separated samples of 4 and 4: p = 2/70.
        let r = mann_whitney(&[1.0, 2.0, 3.0, 4.0], &[5.0, 6.0, 7.0, 8.0]).unwrap();
        assert_eq!(r.u, 0.0);
        assert!((r.p - 2.0 / 70.0).abs() < 1e-12, "{}", r.p);
        // 3 and 3, separated: the smallest p there is, 0.1 (three repeats cannot show
        // significance at 5 %).
        let r = mann_whitney(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]).unwrap();
        assert!((r.p - 0.1).abs() < 1e-12, "{}", r.p);
        // Interleaved.
        let r = mann_whitney(&[1.0, 3.0, 5.0, 7.0], &[2.0, 4.0, 6.0, 8.0]).unwrap();
        assert_eq!(r.u, 6.0);
        assert!((r.p - 0.685_714_285_7).abs() < 1e-9, "{}", r.p);
        // Normal approximation with ties.
        let x = [1.0, 2.0, 2.0, 3.0, 4.0, 5.0, 5.0, 6.0, 7.0, 8.0];
        let y = [5.0, 6.0, 7.0, 8.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0];
        let r = mann_whitney(&x, &y).unwrap();
        assert_eq!(r.u, 9.0);
        assert!((r.p - 0.002_110_313).abs() < 1e-6, "{}", r.p);
        // Larger samples, no ties: the normal approximation.
        let x: Vec<f64> = (1..=20).map(f64::from).collect();
        let y: Vec<f64> = x.iter().map(|v| v + 3.5).collect();
        let r = mann_whitney(&x, &y).unwrap();
        assert_eq!(r.u, 136.0);
        assert!((r.p - 0.085_854_88).abs() < 1e-6, "{}", r.p);
    }

    #[test]
    fn nothing_to_tell_apart_is_no_test() {
        assert_eq!(mann_whitney(&[], &[1.0]), None);
        assert_eq!(mann_whitney(&[2.0, 2.0], &[2.0, 2.0, 2.0]), None);
        let same = mann_whitney(&[1.0, 2.0, 3.0, 4.0, 5.0], &[1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
        assert_eq!((same.u, same.p), (12.5, 1.0));
    }

    #[test]
    fn the_normal_tail_is_right() {
        assert!((normal_sf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_sf(1.959_964) - 0.025).abs() < 1e-6);
        assert!((normal_sf(3.0) - 0.001_349_9).abs() < 1e-6);
    }
}
