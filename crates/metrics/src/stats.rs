//! Confidence intervals for test metrics: the percentile bootstrap, resampling whole
//! patients (groups) when they are known, else images. Seeded: the same predictions and
//! seed give the same intervals on any machine and any number of threads.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::percentile;

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
    /// the resample holds one class) is left out there, and has no interval unless it is
    /// defined on more than half of them.
    pub fn intervals(
        &self,
        units: &[Vec<usize>],
        statistics: impl Fn(&[usize]) -> Vec<Option<f64>> + Sync,
    ) -> Vec<Option<Interval>> {
        let draws = self.draws(units, statistics);
        let count = draws.first().map_or(0, Vec::len);
        (0..count)
            .map(|k| {
                let mut values: Vec<f64> = draws.iter().filter_map(|d| d[k]).filter(|v| v.is_finite()).collect();
                (values.len() * 2 > draws.len()).then(|| self.percentile_interval(&mut values))
            })
            .collect()
    }

    /// The percentile interval of `values` at the bootstrap's confidence.
    fn percentile_interval(&self, values: &mut [f64]) -> Interval {
        let tail = (1.0 - self.confidence) / 2.0 * 100.0;
        Interval { lower: percentile(values, tail), upper: percentile(values, 100.0 - tail) }
    }

    /// The generator of resample `r`: stream `r` of ChaCha8 seeded with `seed`.
    fn stream(&self, r: u32) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(u64::from(r));
        rng
    }

    /// The value of each statistic on each resample (see [`Bootstrap::intervals`]).
    pub fn draws(
        &self,
        units: &[Vec<usize>],
        statistics: impl Fn(&[usize]) -> Vec<Option<f64>> + Sync,
    ) -> Vec<Vec<Option<f64>>> {
        (0..self.resamples).into_par_iter().map(|r| statistics(&resample(&mut self.stream(r), units))).collect()
    }
}

/// The images of as many of `units` as there are, drawn with replacement from `rng`.
fn resample(rng: &mut ChaCha8Rng, units: &[Vec<usize>]) -> Vec<usize> {
    let mut images = Vec::new();
    for _ in 0..units.len() {
        images.extend_from_slice(&units[rng.random_range(0..units.len())]);
    }
    images
}

/// A two-sample bootstrap comparison of a statistic (see [`Bootstrap::compare`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    /// Percentile interval of the difference (first sample minus second).
    pub interval: Interval,
    /// Two-sided p-value of no difference.
    pub p_value: f64,
}

impl Bootstrap {
    /// Compares `statistics` between two independent samples of units, `a` and `b`
    /// (each a list of images as in [`Bootstrap::intervals`]): resample `r` draws, from
    /// its own stream `r`, `a.len()` units of `a` with replacement and then `b.len()`
    /// units of `b`, and takes the difference of each statistic (a's minus b's), left
    /// out where either is undefined. The interval is the percentile interval of those
    /// differences; the p-value is the two-sided bootstrap p-value
    /// min(1, 2 (1 + k) / (n + 1)), k the number of the n differences on the smaller side
    /// of zero (those equal to zero count on both). None unless a statistic is defined on
    /// more than half of the resamples.
    pub fn compare(
        &self,
        a: &[Vec<usize>],
        b: &[Vec<usize>],
        statistics: impl Fn(&[usize]) -> Vec<Option<f64>> + Sync,
    ) -> Vec<Option<Comparison>> {
        let draws: Vec<Vec<Option<f64>>> = (0..self.resamples)
            .into_par_iter()
            .map(|r| {
                let mut rng = self.stream(r);
                let first = resample(&mut rng, a);
                let second = resample(&mut rng, b);
                let (x, y) = (statistics(&first), statistics(&second));
                x.into_iter().zip(y).map(|(x, y)| Some(x? - y?).filter(|d| d.is_finite())).collect()
            })
            .collect();
        let count = draws.first().map_or(0, Vec::len);
        (0..count)
            .map(|k| {
                let mut values: Vec<f64> = draws.iter().filter_map(|d| d[k]).collect();
                let n = values.len();
                (n * 2 > draws.len()).then(|| {
                    let below = values.iter().filter(|&&d| d <= 0.0).count();
                    let above = values.iter().filter(|&&d| d >= 0.0).count();
                    let p_value = (2.0 * (1 + below.min(above)) as f64 / (n + 1) as f64).min(1.0);
                    Comparison { interval: self.percentile_interval(&mut values), p_value }
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

/// The standard normal quantile of `p`.
fn normal_quantile(p: f64) -> f64 {
    use statrs::distribution::{ContinuousCDF, Normal};
    Normal::standard().inverse_cdf(p)
}

/// Two-sided p-value of a standard normal statistic.
fn two_sided_p(z: f64) -> f64 {
    use statrs::distribution::{ContinuousCDF, Normal};
    2.0 * Normal::standard().sf(z.abs())
}

/// Wilson's score interval for a proportion `successes / n` (statsmodels'
/// `proportion_confint(method="wilson")`); none when `n` is 0.
pub fn wilson(successes: u64, n: u64, confidence: f64) -> Option<Interval> {
    if n == 0 {
        return None;
    }
    let (k, n) = (successes as f64, n as f64);
    let z = normal_quantile(0.5 + confidence / 2.0);
    let p = k / n;
    let denominator = 1.0 + z * z / n;
    let center = (p + z * z / (2.0 * n)) / denominator;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / denominator;
    Some(Interval { lower: center - half, upper: center + half })
}

/// Midranks (1-based, ties averaged) of `values`.
fn midranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        for &k in &order[i..=j] {
            ranks[k] = (i + j) as f64 / 2.0 + 1.0;
        }
        i = j + 1;
    }
    ranks
}

/// DeLong's structural components of the AUC of `scores` for `positive` labels (Sun and
/// Xu's midrank algorithm): for each positive, the share of negatives it outscores (ties
/// half), and for each negative, the share of positives that outscore it.
fn delong_components(scores: &[f64], positive: &[bool]) -> Option<(Vec<f64>, Vec<f64>)> {
    let pos: Vec<f64> = scores.iter().zip(positive).filter(|(_, p)| **p).map(|(s, _)| *s).collect();
    let neg: Vec<f64> = scores.iter().zip(positive).filter(|(_, p)| !**p).map(|(s, _)| *s).collect();
    let (m, n) = (pos.len(), neg.len());
    if m < 2 || n < 2 {
        return None;
    }
    let all: Vec<f64> = pos.iter().chain(&neg).copied().collect();
    let (rank_all, rank_pos, rank_neg) = (midranks(&all), midranks(&pos), midranks(&neg));
    let v10 = (0..m).map(|i| (rank_all[i] - rank_pos[i]) / n as f64).collect();
    let v01 = (0..n).map(|j| 1.0 - (rank_all[m + j] - rank_neg[j]) / m as f64).collect();
    Some((v10, v01))
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// Sample covariance (n - 1).
fn covariance(a: &[f64], b: &[f64]) -> f64 {
    let (ma, mb) = (mean(a), mean(b));
    a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum::<f64>() / (a.len() - 1) as f64
}

/// An AUC with DeLong's variance.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DelongAuc {
    pub auc: f64,
    pub variance: f64,
}

impl DelongAuc {
    /// DeLong's AUC and variance; none with fewer than 2 positives or 2 negatives.
    pub fn of(scores: &[f64], positive: &[bool]) -> Option<DelongAuc> {
        let (v10, v01) = delong_components(scores, positive)?;
        let variance = covariance(&v10, &v10) / v10.len() as f64 + covariance(&v01, &v01) / v01.len() as f64;
        Some(DelongAuc { auc: mean(&v10), variance })
    }

    /// The normal-theory interval auc +- z sqrt(variance), clipped to [0, 1].
    pub fn interval(&self, confidence: f64) -> Interval {
        let half = normal_quantile(0.5 + confidence / 2.0) * self.variance.sqrt();
        Interval { lower: (self.auc - half).max(0.0), upper: (self.auc + half).min(1.0) }
    }
}

/// DeLong's test of two correlated AUCs (two models' scores on the same images).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DelongComparison {
    pub auc_a: f64,
    pub auc_b: f64,
    /// (auc_a - auc_b) / sd of the difference; infinite (written `null` in JSON) when
    /// the difference has no variance but the AUCs differ.
    pub z: f64,
    pub p_value: f64,
}

impl DelongComparison {
    pub fn of(scores_a: &[f64], scores_b: &[f64], positive: &[bool]) -> Option<DelongComparison> {
        let (a10, a01) = delong_components(scores_a, positive)?;
        let (b10, b01) = delong_components(scores_b, positive)?;
        let (m, n) = (a10.len() as f64, a01.len() as f64);
        let var =
            |x10: &[f64], y10: &[f64], x01: &[f64], y01: &[f64]| covariance(x10, y10) / m + covariance(x01, y01) / n;
        let variance = var(&a10, &a10, &a01, &a01) + var(&b10, &b10, &b01, &b01) - 2.0 * var(&a10, &b10, &a01, &b01);
        let (auc_a, auc_b) = (mean(&a10), mean(&b10));
        // no variance: equal AUCs do not differ; unequal ones differ for certain
        let z = match (variance > 0.0, auc_a == auc_b) {
            (true, _) => (auc_a - auc_b) / variance.sqrt(),
            (false, true) => 0.0,
            (false, false) => (auc_a - auc_b).signum() * f64::INFINITY,
        };
        Some(DelongComparison { auc_a, auc_b, z, p_value: two_sided_p(z) })
    }
}

/// The threshold that maximizes Youden's J (sensitivity + specificity - 1) when scores
/// at or above it are called positive: among the distinct scores, the highest of the
/// best (scikit-learn's `thresholds[argmax(tpr - fpr)]` of `roc_curve`).
pub fn youden_threshold(scores: &[f64], positive: &[bool]) -> Option<f64> {
    best_threshold(scores, positive, |sensitivity, specificity| Some(sensitivity + specificity - 1.0))
}

/// The highest threshold whose sensitivity is at least `target`: the most specific
/// operating point that still finds that share of the positives.
pub fn threshold_for_sensitivity(scores: &[f64], positive: &[bool], target: f64) -> Option<f64> {
    best_threshold(scores, positive, |sensitivity, _| (sensitivity >= target).then_some(1.0))
}

/// The highest distinct score whose (sensitivity, specificity) has the largest `value`.
fn best_threshold(scores: &[f64], positive: &[bool], value: impl Fn(f64, f64) -> Option<f64>) -> Option<f64> {
    let n_pos = positive.iter().filter(|&&p| p).count() as f64;
    let n_neg = positive.len() as f64 - n_pos;
    if n_pos == 0.0 || n_neg == 0.0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut best: Option<(f64, f64)> = None;
    let mut i = 0;
    while i < order.len() {
        let threshold = scores[order[i]];
        while i < order.len() && scores[order[i]] == threshold {
            if positive[order[i]] {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
            i += 1;
        }
        if let Some(v) = value(tp / n_pos, 1.0 - fp / n_neg)
            && best.is_none_or(|(b, _)| v > b)
        {
            best = Some((v, threshold));
        }
    }
    best.map(|(_, threshold)| threshold)
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
        // not rounding: the resampled means sit on the grid k/400 (0.0025); a 2.5 %
        // quantile of 4000 of them is off by sqrt(0.025 x 0.975 / 4000) / phi(1.96) x SE =
        // 0.042 x 0.02 = 8.5e-4 (one SD; three: 2.5e-3); the skew of a proportion moves the
        // percentile ends from the normal ones by 7e-4: 0.0025 + 0.0025 + 0.0007 < 0.006
        // (the seeded draws are the same on every machine)
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
        // as above for n = 200: the ends on the grid k/200 (0.005), each off by a Monte
        // Carlo SD of 0.042 x 0.028 = 1.2e-3 (the width by 1.7e-3): 0.01 takes a grid step
        // and nearly three SDs of the width, well below the 0.032 by which counting images
        // (n = 400) would narrow the interval
        assert!((ci.upper - ci.lower - 2.0 * half).abs() < 0.01, "{ci:?} vs +-{half}");
    }

    #[test]
    fn wilson_and_delong_by_hand() {
        // 8 of 10, 95 %: (0.4902, 0.9433) (Wilson 1927; statsmodels agrees)
        let w = wilson(8, 10, 0.95).unwrap();
        // the references are given to 6 decimals (5e-7); float64 adds nothing to see
        assert!((w.lower - 0.490_162).abs() < 1e-6 && (w.upper - 0.943_318).abs() < 1e-6, "{w:?}");
        // positives 0.9, 0.8, 0.4; negatives 0.7, 0.3, 0.4: 7.5 of 9 pairs
        let d = DelongAuc::of(&[0.9, 0.8, 0.4, 0.7, 0.3, 0.4], &[true, true, true, false, false, false]).unwrap();
        // float64 sums of a few fractions: 1e-16 each; 1e-12 leaves room, tells 1/36 apart
        assert!((d.auc - 7.5 / 9.0).abs() < 1e-12);
        // V10 = (1, 1, 0.5), V01 = (2/3, 1, 5/6): var = (1/12)/3 + (1/36)/3
        assert!((d.variance - (1.0 / 36.0 + 1.0 / 108.0)).abs() < 1e-12, "{d:?}");
        assert_eq!(
            youden_threshold(&[0.9, 0.8, 0.4, 0.7, 0.3, 0.4], &[true, true, true, false, false, false]),
            Some(0.8)
        );
        assert_eq!(
            threshold_for_sensitivity(&[0.9, 0.8, 0.4, 0.7, 0.3, 0.4], &[true, true, true, false, false, false], 1.0),
            Some(0.4)
        );
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
