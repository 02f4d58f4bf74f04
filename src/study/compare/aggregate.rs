//! A metric across backends: each backend's repetitions reduced to median and min–max,
//! the ratio to the first backend, and which backend won.

use std::collections::BTreeMap;

use super::metrics::{Better, Metric};

/// A metric aggregated over a backend's repeated runs.
#[derive(Debug, Clone)]
pub struct Aggregate {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub runs: usize,
}

/// The median of `v` (sorted in place); NaN when `v` is empty.
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A metric across backends.
#[derive(Debug, Clone)]
pub struct Row {
    pub metric: String,
    pub better: Better,
    /// Per backend, in `--backends` order; `None` where a backend lacks the metric.
    pub values: Vec<Option<Aggregate>>,
}

impl Row {
    /// The ratio of backend `i`'s median to the first backend's.
    pub fn ratio(&self, i: usize) -> Option<f64> {
        let a = self.values.first()?.as_ref()?.median;
        let b = self.values.get(i)?.as_ref()?.median;
        (a != 0.0).then(|| b / a)
    }

    /// Which backend did best on this metric.
    pub fn winner(&self) -> Winner {
        let vals: Vec<(usize, &Aggregate)> = self
            .values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| Some((i, v.as_ref()?)))
            .collect();
        if vals.len() < 2 {
            return Winner::Incomparable;
        }
        let best = match self.better {
            Better::Lower => vals.iter().min_by(|a, b| a.1.median.total_cmp(&b.1.median)),
            Better::Higher => vals.iter().max_by(|a, b| a.1.median.total_cmp(&b.1.median)),
        };
        let Some(best) = best else {
            return Winner::Incomparable;
        };
        // Within 2 % of each other a single-run difference says nothing.
        let close = |a: f64, b: f64| (a - b).abs() <= 0.02 * a.abs().max(b.abs());
        if vals.iter().all(|v| close(v.1.median, best.1.median)) {
            return Winner::Tie;
        }
        let overlaps = vals.iter().filter(|v| v.0 != best.0).any(|v| {
            v.1.min <= best.1.max && best.1.min <= v.1.max && (v.1.runs > 1 || best.1.runs > 1)
        });
        Winner::Best {
            index: best.0,
            overlaps,
        }
    }
}

/// The verdict on one metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Winner {
    /// Backend `index` is best; `overlaps` when its min–max range overlaps another
    /// backend's (the win is within run-to-run noise).
    Best { index: usize, overlaps: bool },
    /// Every backend within 2 % of the best.
    Tie,
    /// Fewer than two backends have the metric.
    Incomparable,
}

/// Aggregate per-run metrics: `runs[backend] = [metrics of each repetition]`.
pub fn aggregate(runs: &[Vec<Vec<Metric>>]) -> Vec<Row> {
    let mut order: Vec<(String, Better)> = Vec::new();
    let mut vals: BTreeMap<(String, usize), Vec<f64>> = BTreeMap::new();
    for (b, reps) in runs.iter().enumerate() {
        for metrics in reps {
            for m in metrics {
                if !order.iter().any(|(n, _)| n == &m.name) {
                    order.push((m.name.clone(), m.better));
                }
                vals.entry((m.name.clone(), b)).or_default().push(m.value);
            }
        }
    }
    order
        .into_iter()
        .map(|(metric, better)| Row {
            values: (0..runs.len())
                .map(|b| {
                    let mut v = vals.get(&(metric.clone(), b))?.clone();
                    let (min, max) = v
                        .iter()
                        .fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
                    Some(Aggregate {
                        runs: v.len(),
                        median: median(&mut v),
                        min,
                        max,
                    })
                })
                .collect(),
            metric,
            better,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, better: Better, value: f64) -> Metric {
        Metric {
            name: name.into(),
            better,
            value,
        }
    }

    #[test]
    fn aggregates_medians_ratios_and_winners() {
        let runs = vec![
            vec![
                vec![
                    m("p99", Better::Lower, 10.0),
                    m("tput", Better::Higher, 100.0),
                ],
                vec![
                    m("p99", Better::Lower, 14.0),
                    m("tput", Better::Higher, 90.0),
                ],
                vec![
                    m("p99", Better::Lower, 12.0),
                    m("tput", Better::Higher, 95.0),
                ],
            ],
            vec![
                vec![
                    m("p99", Better::Lower, 30.0),
                    m("tput", Better::Higher, 92.0),
                ],
                vec![
                    m("p99", Better::Lower, 20.0),
                    m("tput", Better::Higher, 99.0),
                ],
                vec![
                    m("p99", Better::Lower, 24.0),
                    m("tput", Better::Higher, 91.0),
                ],
            ],
        ];
        let rows = aggregate(&runs);
        assert_eq!(rows[0].metric, "p99");
        let a = rows[0].values[0].as_ref().unwrap();
        assert_eq!((a.median, a.min, a.max, a.runs), (12.0, 10.0, 14.0, 3));
        assert_eq!(rows[0].ratio(1), Some(2.0));
        assert_eq!(
            rows[0].winner(),
            Winner::Best {
                index: 0,
                overlaps: false
            }
        );
        // 95 vs 92 with overlapping ranges: a win within the noise.
        assert_eq!(
            rows[1].winner(),
            Winner::Best {
                index: 0,
                overlaps: true
            }
        );
        let only_one = aggregate(&[vec![vec![m("x", Better::Lower, 1.0)]], vec![vec![]]]);
        assert_eq!(only_one[0].winner(), Winner::Incomparable);
        let tie = aggregate(&[
            vec![vec![m("x", Better::Lower, 100.0)]],
            vec![vec![m("x", Better::Lower, 101.0)]],
        ]);
        assert_eq!(tie[0].winner(), Winner::Tie);
        let mut even = [4.0, 1.0, 3.0, 2.0];
        assert_eq!(median(&mut even), 2.5);
    }
}
