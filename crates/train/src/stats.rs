//! Confidence intervals for test metrics: the percentile bootstrap, resampling whole
//! patients (groups) when they are known, else images. Seeded: the same predictions and
//! seed give the same intervals on any machine and any number of threads.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::metrics::percentile;

/// A two-sided confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub lower: f64,
    pub upper: f64,
}

/// How a bootstrap is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bootstrap {
    /// Number of resamples (scikit-learn and SciPy users typically take 1000 to 10000).
    pub resamples: u32,
    /// Coverage, e.g. 0.95.
    pub confidence: f64,
    pub seed: u64,
}

impl Bootstrap {
    /// Percentile intervals of `statistics`: `units[u]` lists the images of unit `u` (a
    /// patient, or one image); each resample draws as many units as there are, with
    /// replacement, and evaluates `statistics` on the images of the drawn units (an
    /// image repeated as often as its unit was drawn). Resample `r` draws from its own
    /// stream `r` of a ChaCha8 generator seeded with `seed`. The bounds are numpy's
    /// linear percentiles at (1 - confidence) / 2 and (1 + confidence) / 2 of the values
    /// each statistic took; a statistic undefined on a resample (`None`, e.g. AUC when
    /// the resample holds one class) is left out there, and has no interval when it is
    /// undefined on more than half of them.
    pub fn intervals(
        &self,
        units: &[Vec<usize>],
        statistics: impl Fn(&[usize]) -> Vec<Option<f64>> + Sync,
    ) -> Vec<Option<Interval>> {
        let draws: Vec<Vec<Option<f64>>> = (0..self.resamples)
            .into_par_iter()
            .map(|r| {
                let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
                rng.set_stream(u64::from(r));
                let mut images = Vec::new();
                for _ in 0..units.len() {
                    images.extend_from_slice(&units[rng.random_range(0..units.len())]);
                }
                statistics(&images)
            })
            .collect();
        let count = draws.first().map_or(0, Vec::len);
        let tail = (1.0 - self.confidence) / 2.0 * 100.0;
        (0..count)
            .map(|k| {
                let mut values: Vec<f64> = draws.iter().filter_map(|d| d[k]).filter(|v| v.is_finite()).collect();
                (values.len() * 2 > draws.len()).then(|| Interval {
                    lower: percentile(&mut values, tail),
                    upper: percentile(&mut values, 100.0 - tail),
                })
            })
            .collect()
    }
}

/// Resampling units: the images of each group, in order of first appearance; an image
/// without a group is a unit of its own.
pub fn units_by_group(groups: &[Option<&str>]) -> Vec<Vec<usize>> {
    let mut index = std::collections::HashMap::new();
    let mut units: Vec<Vec<usize>> = Vec::new();
    for (i, group) in groups.iter().enumerate() {
        match group {
            Some(g) => {
                let u = *index.entry(*g).or_insert_with(|| {
                    units.push(Vec::new());
                    units.len() - 1
                });
                units[u].push(i);
            }
            None => units.push(vec![i]),
        }
    }
    units
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bootstrap interval of a proportion matches the normal approximation
    /// p +- 1.96 sqrt(p (1 - p) / n) (n = 400, p = 0.8: 0.8 +- 0.0392) within the
    /// bootstrap's own noise, and is reproducible with its seed.
    #[test]
    fn a_proportion_has_the_textbook_interval() {
        let correct: Vec<f64> = (0..400).map(|i| if i % 5 == 0 { 0.0 } else { 1.0 }).collect();
        let units: Vec<Vec<usize>> = (0..400).map(|i| vec![i]).collect();
        let mean = |idx: &[usize]| vec![Some(idx.iter().map(|&i| correct[i]).sum::<f64>() / idx.len() as f64)];
        let b = Bootstrap { resamples: 4000, confidence: 0.95, seed: 7 };
        let ci = b.intervals(&units, mean)[0].unwrap();
        let half = 1.96 * (0.8f64 * 0.2 / 400.0).sqrt();
        assert!((ci.lower - (0.8 - half)).abs() < 0.006, "{ci:?}");
        assert!((ci.upper - (0.8 + half)).abs() < 0.006, "{ci:?}");
        assert_eq!(b.intervals(&units, mean)[0].unwrap(), ci);
        let other = Bootstrap { seed: 8, ..b }.intervals(&units, mean)[0].unwrap();
        assert_ne!(other, ci);
    }

    /// Resampling patients: two images of one patient always move together, so a
    /// patient whose images are both right or both wrong widens the interval: with
    /// 200 patients of 2 identical images, the interval is that of n = 200, not 400.
    #[test]
    fn grouped_resampling_counts_patients_not_images() {
        let groups: Vec<String> = (0..400).map(|i| format!("p{}", i / 2)).collect();
        let correct: Vec<f64> = (0..400).map(|i| if (i / 2) % 5 == 0 { 0.0 } else { 1.0 }).collect();
        let units = units_by_group(&groups.iter().map(|g| Some(g.as_str())).collect::<Vec<_>>());
        assert_eq!(units.len(), 200);
        assert_eq!(units[3], vec![6, 7]);
        let mean = |idx: &[usize]| vec![Some(idx.iter().map(|&i| correct[i]).sum::<f64>() / idx.len() as f64)];
        let ci = Bootstrap { resamples: 4000, confidence: 0.95, seed: 1 }.intervals(&units, mean)[0].unwrap();
        let half = 1.96 * (0.8f64 * 0.2 / 200.0).sqrt();
        assert!((ci.upper - ci.lower - 2.0 * half).abs() < 0.01, "{ci:?} vs +-{half}");
    }

    #[test]
    fn a_statistic_undefined_on_most_resamples_has_no_interval() {
        let units: Vec<Vec<usize>> = (0..10).map(|i| vec![i]).collect();
        let b = Bootstrap { resamples: 100, confidence: 0.95, seed: 1 };
        assert_eq!(
            b.intervals(&units, |_| vec![None, Some(1.0)]),
            vec![None, Some(Interval { lower: 1.0, upper: 1.0 })]
        );
    }
}
