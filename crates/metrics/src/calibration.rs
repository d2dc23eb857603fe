//! Whether predicted probabilities mean what they say, and what acting on them is worth:
//! the Brier score, the expected calibration error over equal-width and equal-mass bins
//! (the bins of scikit-learn's `calibration_curve`), the calibration slope and intercept
//! (logistic recalibration, Van Calster et al. 2016 and 2019), and decision curves (net
//! benefit, Vickers and Elkin 2006, as the `dcurves` package computes it). Each function
//! takes one probability per image and whether the image holds the class (one class
//! against the rest, or one label); multi-class summaries are built from them in
//! [`crate::evaluate`].

use serde::Serialize;

use crate::evaluate::{DecisionCurveSettings, EvalSettings, MetricInterval, with_intervals};
use crate::percentile;
use crate::stats::{Bootstrap, Interval, units_by_group};

/// Bins of the expected calibration error and the reliability diagram (Guo et al. 2017,
/// and the usual choice since).
pub const CALIBRATION_BINS: usize = 15;

/// Probabilities are kept in [`LOGIT_CLIP`, 1 - `LOGIT_CLIP`] before their logit is taken,
/// so that a softmax that saturated in single precision (exactly 0 or 1) still has a
/// finite logit (about ±16).
pub const LOGIT_CLIP: f64 = 1e-7;

/// How the [0, 1] range of probabilities is cut into bins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binning {
    /// Bins of equal width: `calibration_curve(strategy="uniform")`.
    EqualWidth,
    /// Bins holding about as many images each, cut at the probabilities' quantiles
    /// (NumPy's linear percentiles): `calibration_curve(strategy="quantile")`.
    EqualMass,
}

/// One bin of a reliability diagram.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bin {
    pub lower: f64,
    pub upper: f64,
    pub images: usize,
    /// The mean probability of its images; none for an empty bin.
    pub mean_predicted: Option<f64>,
    /// The share of its images that hold the class; none for an empty bin.
    pub observed: Option<f64>,
}

/// NumPy's `linspace(0, 1, bins + 1)`: `k * (1 / bins)`, the last edge exactly 1.
fn unit_edges(bins: usize) -> Vec<f64> {
    let step = 1.0 / bins as f64;
    (0..=bins).map(|k| if k == bins { 1.0 } else { k as f64 * step }).collect()
}

/// The reliability diagram's bins of `probabilities` (`bins` of them, empty ones kept):
/// an image goes to the bin whose inner edges below it are fewer than it (NumPy's
/// `searchsorted`, left side), as `calibration_curve` puts it.
pub fn reliability(probabilities: &[f64], holds: &[bool], bins: usize, binning: Binning) -> Vec<Bin> {
    let edges = match binning {
        Binning::EqualWidth => unit_edges(bins),
        Binning::EqualMass if probabilities.is_empty() => return Vec::new(),
        Binning::EqualMass => {
            let mut sorted = probabilities.to_vec();
            unit_edges(bins).into_iter().map(|q| percentile(&mut sorted, q * 100.0)).collect()
        }
    };
    let inner = &edges[1..bins];
    let (mut sums, mut positives, mut counts) = (vec![0.0; bins], vec![0.0; bins], vec![0usize; bins]);
    for (&p, &holds) in probabilities.iter().zip(holds) {
        let bin = inner.partition_point(|&edge| edge < p);
        sums[bin] += p;
        positives[bin] += f64::from(u8::from(holds));
        counts[bin] += 1;
    }
    (0..bins)
        .map(|b| {
            let n = counts[b];
            Bin {
                lower: edges[b],
                upper: edges[b + 1],
                images: n,
                mean_predicted: (n > 0).then(|| sums[b] / n as f64),
                observed: (n > 0).then(|| positives[b] / n as f64),
            }
        })
        .collect()
}

/// The expected calibration error of `bins`: the mean over images of the gap between
/// their bin's mean probability and the share of its images that hold the class.
pub fn expected_calibration_error(bins: &[Bin]) -> Option<f64> {
    let total: usize = bins.iter().map(|b| b.images).sum();
    (total > 0).then(|| {
        bins.iter().filter_map(|b| Some(b.images as f64 * (b.mean_predicted? - b.observed?).abs())).sum::<f64>()
            / total as f64
    })
}

/// The Brier score: the mean squared gap between probability and outcome (0 or 1).
pub fn brier(probabilities: &[f64], holds: &[bool]) -> Option<f64> {
    (!probabilities.is_empty()).then(|| {
        probabilities.iter().zip(holds).map(|(&p, &h)| (p - f64::from(u8::from(h))).powi(2)).sum::<f64>()
            / probabilities.len() as f64
    })
}

/// A probability's logit, the probability kept in [`LOGIT_CLIP`], 1 - `LOGIT_CLIP`].
pub fn logit(p: f64) -> f64 {
    let p = p.clamp(LOGIT_CLIP, 1.0 - LOGIT_CLIP);
    (p / (1.0 - p)).ln()
}

/// The logistic function, the inverse of [`logit`].
pub(crate) fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Newton steps of a logistic fit at most; a fit that has not converged by then has no
/// finite solution.
const NEWTON_STEPS: usize = 200;

/// The outcomes as 0 and 1 and the probabilities' logits, or none when every image is of
/// one kind (no logistic fit exists).
fn fit_data(probabilities: &[f64], holds: &[bool]) -> Option<(Vec<f64>, Vec<f64>)> {
    let positives = holds.iter().filter(|&&h| h).count();
    if positives == 0 || positives == holds.len() {
        return None;
    }
    Some((probabilities.iter().map(|&p| logit(p)).collect(), holds.iter().map(|&h| f64::from(u8::from(h))).collect()))
}

/// The calibration slope (logistic recalibration, Van Calster et al., J Clin Epidemiol
/// 2016): `b` of `logit P(holds) = a + b x`, `x` the logit of each probability; 1 when the
/// probabilities are neither too extreme (below 1) nor too moderate (above 1). Maximum
/// likelihood by Newton's method; none when it has no finite solution (every image of
/// one kind, or the two kinds separated by the probability).
pub fn calibration_slope(probabilities: &[f64], holds: &[bool]) -> Option<f64> {
    let (x, y) = fit_data(probabilities, holds)?;
    slope(&x, &y)
}

/// The calibration intercept, or calibration-in-the-large (Van Calster et al. 2016):
/// `a` of `logit P(holds) = a + x`, the slope fixed at 1 (the logit as an offset); 0 when
/// the probabilities are right on average, below 0 when they are too high.
pub fn calibration_intercept(probabilities: &[f64], holds: &[bool]) -> Option<f64> {
    let (x, y) = fit_data(probabilities, holds)?;
    intercept(&x, &y)
}

/// `a` of `logit P = a + x`.
fn intercept(x: &[f64], y: &[f64]) -> Option<f64> {
    logistic_fit(x, y, false).map(|(a, _)| a)
}

/// `b` of `logit P = a + b x`.
fn slope(x: &[f64], y: &[f64]) -> Option<f64> {
    logistic_fit(x, y, true).map(|(_, b)| b)
}

/// `log(1 + e^eta)` without overflow.
fn softplus(eta: f64) -> f64 {
    if eta > 0.0 { eta + (-eta).exp().ln_1p() } else { eta.exp().ln_1p() }
}

/// The maximum-likelihood `(a, b)` of `logit P(y = 1) = a + b x`, or of `a + x` (`b` held
/// at 1) without `with_slope`: Newton's method from `a = 0` (and `b = 0`, where
/// statsmodels starts), each step halved until the likelihood does not fall, so that the
/// large logits of an overconfident network (a first full step of 10^5 and more) still
/// converge. None when it does not converge in [`NEWTON_STEPS`] or the information
/// vanishes: no finite maximum (the kinds separated by `x`).
fn logistic_fit(x: &[f64], y: &[f64], with_slope: bool) -> Option<(f64, f64)> {
    let likelihood =
        |a: f64, b: f64| -> f64 { x.iter().zip(y).map(|(&x, &y)| y * (a + b * x) - softplus(a + b * x)).sum() };
    let (mut a, mut b) = (0.0, if with_slope { 0.0 } else { 1.0 });
    let mut current = likelihood(a, b);
    for _ in 0..NEWTON_STEPS {
        // the score and the information matrix [[saa, sab], [sab, sbb]]
        let (mut ga, mut gb, mut saa, mut sab, mut sbb) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for (&x, &y) in x.iter().zip(y) {
            let p = sigmoid(a + b * x);
            let w = p * (1.0 - p);
            ga += y - p;
            gb += (y - p) * x;
            saa += w;
            sab += w * x;
            sbb += w * x * x;
        }
        let (da, db) = if with_slope {
            let determinant = saa * sbb - sab * sab;
            if determinant.is_nan() || determinant <= 0.0 {
                return None;
            }
            ((sbb * ga - sab * gb) / determinant, (saa * gb - sab * ga) / determinant)
        } else {
            if saa.is_nan() || saa <= 0.0 {
                return None;
            }
            (ga / saa, 0.0)
        };
        let mut scale = 1.0;
        let mut next = likelihood(a + da, b + db);
        while (next.is_nan() || next < current) && scale > 1e-12 {
            scale /= 2.0;
            next = likelihood(a + scale * da, b + scale * db);
        }
        let (step_a, step_b) = (scale * da, scale * db);
        a += step_a;
        b += step_b;
        current = next;
        if step_a.abs() < 1e-12 * (1.0 + a.abs()) && step_b.abs() < 1e-12 * (1.0 + b.abs()) {
            return (a.is_finite() && b.is_finite()).then_some((a, b));
        }
    }
    None
}

/// The thresholds of a decision curve: `from` to `to` by `step`, as
/// `eval.decision_curve` gives them (each rounded to 12 decimals, so that 0.01 steps
/// read 0.07, not 0.07000000000000001).
pub fn thresholds(from: f64, to: f64, step: f64) -> Vec<f64> {
    let count = ((to - from) / step + 1e-9).floor() as usize + 1;
    (0..count).map(|k| ((from + k as f64 * step) * 1e12).round() / 1e12).collect()
}

/// The net benefit of calling an image positive when its probability is at least `t`,
/// for each `t` of `thresholds`: true positives per image, less false positives per
/// image weighted by the odds of the threshold, `TP/n - FP/n x t/(1 - t)` (Vickers and
/// Elkin 2006; dcurves 1.1.7's `net_benefit`, positives at `risk >= threshold`).
pub fn net_benefit(probabilities: &[f64], holds: &[bool], thresholds: &[f64]) -> Vec<f64> {
    let n = probabilities.len() as f64;
    // from the highest probability down: each threshold counts the images at or above it
    // (a probability that is not a number is never called positive)
    let mut order: Vec<usize> = (0..probabilities.len()).filter(|&i| !probabilities[i].is_nan()).collect();
    order.sort_by(|&a, &b| probabilities[b].total_cmp(&probabilities[a]));
    let mut by_threshold: Vec<usize> = (0..thresholds.len()).collect();
    by_threshold.sort_by(|&a, &b| thresholds[b].total_cmp(&thresholds[a]));
    let mut out = vec![0.0; thresholds.len()];
    let (mut next, mut tp, mut fp) = (0, 0.0, 0.0);
    for t in by_threshold {
        while next < order.len() && probabilities[order[next]] >= thresholds[t] {
            if holds[order[next]] {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
            next += 1;
        }
        out[t] = tp / n - fp / n * thresholds[t] / (1.0 - thresholds[t]);
    }
    out
}

/// The net benefit of calling every image positive: `prevalence - (1 - prevalence) x
/// t/(1 - t)` (calling none is worth 0 at every threshold).
pub fn treat_all(holds: &[bool], thresholds: &[f64]) -> Vec<f64> {
    let prevalence = holds.iter().filter(|&&h| h).count() as f64 / holds.len() as f64;
    thresholds.iter().map(|&t| prevalence - (1.0 - prevalence) * t / (1.0 - t)).collect()
}

/// Log-probabilities below this (ln 10^-30) are taken as it: a softmax that underflowed
/// to 0 in single precision still has a finite logit for temperature scaling.
const LOG_FLOOR: f64 = -69.077_552_789_821_37;

/// The logits of a softmax's probabilities, up to a constant (which a softmax ignores):
/// their logarithms, at least [`LOG_FLOOR`].
pub fn class_logits(probabilities: &[f32]) -> Vec<f64> {
    probabilities.iter().map(|&p| f64::from(p).ln().max(LOG_FLOOR)).collect()
}

/// `ln p - ln(1 - p)`, each logarithm at least [`LOG_FLOOR`]: a probability's logit as
/// temperature scaling takes it (not clipped to [`LOGIT_CLIP`]: single precision holds
/// sigmoids far below 10^-7, and scaling must keep them apart).
pub fn floored_logit(p: f64) -> f64 {
    p.ln().max(LOG_FLOOR) - (-p).ln_1p().max(LOG_FLOOR)
}

/// The logits of one label's sigmoid as a two-way softmax: (present, absent) =
/// ([`floored_logit`], 0).
pub fn label_logits(probability: f32) -> [f64; 2] {
    [floored_logit(f64::from(probability)), 0.0]
}

/// `softmax(logits / temperature)`.
pub fn scaled(logits: &[f64], temperature: f64) -> Vec<f64> {
    let top = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = logits.iter().map(|&l| ((l - top) / temperature).exp()).collect();
    let total: f64 = weights.iter().sum();
    weights.into_iter().map(|w| w / total).collect()
}

/// Temperature scaling (Guo et al., ICML 2017): the `T > 0` that minimises the negative
/// log-likelihood of `softmax(logits / T)` over `rows` (each decision's logits and the
/// index of its truth), fitted on validation images only. The likelihood's derivative
/// in `1 / T` increases, so its root is found by bisection of `ln(1 / T)` between
/// `T = 1000` and `T = 0.001`, to the last bits of a float64; none when it has no root
/// there: a validation set whose every decision is right at any temperature (nothing to
/// fit), or no decision at all.
pub fn fit_temperature(rows: &[(Vec<f64>, usize)]) -> Option<f64> {
    let slope = |beta: f64| -> f64 {
        rows.iter()
            .map(|(logits, truth)| {
                let p = scaled(logits, 1.0 / beta);
                p.iter().zip(logits).map(|(p, l)| p * l).sum::<f64>() - logits[*truth]
            })
            .sum()
    };
    let (mut low, mut high) = (1e-3f64.ln(), 1e3f64.ln());
    let (at_low, at_high) = (slope(low.exp()), slope(high.exp()));
    // (a probability that is not a number gives no temperature either)
    if rows.is_empty() || at_low.is_nan() || at_high.is_nan() || at_low >= 0.0 || at_high <= 0.0 {
        return None;
    }
    while high - low > 1e-15 * (1.0 + low.abs()) {
        let middle = 0.5 * (low + high);
        if middle <= low || middle >= high {
            break;
        }
        if slope(middle.exp()) < 0.0 { low = middle } else { high = middle }
    }
    Some(1.0 / (0.5 * (low + high)).exp())
}

/// The five calibration metrics of one set of probabilities, in this order.
pub const CALIBRATION_METRICS: [&str; 5] =
    ["brier", "ece", "ece_equal_mass", "calibration_slope", "calibration_intercept"];

/// The probabilities of one class against the rest (or of one label, or of each image's
/// top class), with whether each image holds it.
pub struct Outcomes {
    /// The class or label, or `top_label`.
    pub name: String,
    pub probabilities: Vec<f64>,
    pub holds: Vec<bool>,
}

impl Outcomes {
    /// The [`CALIBRATION_METRICS`] of `images` (indices, repeats allowed).
    fn metrics(&self, images: &[usize]) -> [Option<f64>; 5] {
        let p: Vec<f64> = images.iter().map(|&i| self.probabilities[i]).collect();
        let h: Vec<bool> = images.iter().map(|&i| self.holds[i]).collect();
        let width = reliability(&p, &h, CALIBRATION_BINS, Binning::EqualWidth);
        let mass = reliability(&p, &h, CALIBRATION_BINS, Binning::EqualMass);
        [
            brier(&p, &h),
            expected_calibration_error(&width),
            expected_calibration_error(&mass),
            calibration_slope(&p, &h),
            calibration_intercept(&p, &h),
        ]
    }
}

/// How an evaluation's headline calibration is made from its outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Headline {
    /// Two classes: the one outcome is the positive class, its five metrics the
    /// headline, and its decision curve drawn.
    Positive,
    /// Several classes, one per image: each class against the rest, then the top label
    /// last; the headline `brier` is the multi-class Brier score (the sum of the classes'
    /// scores: scikit-learn's `brier_score_loss`), `ece` the top label's (Guo et al.
    /// 2017). No decision curve: a decision is between two calls.
    Classes,
    /// Labels, each present or not: the headline `brier` and `ece` are the means of the
    /// labels', and each label has its decision curve.
    Labels,
}

/// One outcome on the whole test set.
#[derive(Debug, Clone, Serialize)]
pub struct CalibrationRow {
    pub name: String,
    pub images: usize,
    pub positives: usize,
    /// The [`CALIBRATION_METRICS`], none where undefined.
    pub metrics: [Option<f64>; 5],
    /// The reliability diagram: [`CALIBRATION_BINS`] equal-width bins.
    pub bins: Vec<Bin>,
}

/// One threshold of a decision curve.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionPoint {
    pub threshold: f64,
    pub net_benefit: f64,
    /// Its patient-bootstrap interval (`eval.bootstrap`, `eval.confidence`).
    pub interval: Option<Interval>,
    /// Calling every image positive (calling none is worth 0).
    pub treat_all: f64,
}

/// The decision curve of one class or label.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionCurve {
    pub name: String,
    pub points: Vec<DecisionPoint>,
}

/// Which probabilities a [`CalibrationEvaluation`] is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scale {
    /// The network's.
    Raw,
    /// After temperature scaling (`eval.calibrate = "temperature"`).
    Calibrated,
}

impl Scale {
    /// What its metrics' names end with in `intervals.csv` and the headline.
    pub fn suffix(self) -> &'static str {
        match self {
            Scale::Raw => "",
            Scale::Calibrated => "_calibrated",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Scale::Raw => "raw",
            Scale::Calibrated => "calibrated",
        }
    }
}

/// The calibration of a test evaluation and its decision curves.
pub struct CalibrationEvaluation {
    pub scale: Scale,
    pub rows: Vec<CalibrationRow>,
    pub curves: Vec<DecisionCurve>,
}

/// Calibrates `outcomes` on the test images (patients by `groups`), as `headline` says;
/// also the metrics with their patient-bootstrap intervals: the headline ones without a
/// class, and for [`Headline::Classes`] and [`Headline::Labels`] each outcome's with it.
pub fn calibrate(
    outcomes: &[Outcomes],
    headline: Headline,
    eval: &EvalSettings,
    groups: &[Option<&str>],
    scale: Scale,
) -> (CalibrationEvaluation, Vec<MetricInterval>) {
    let all: Vec<usize> = (0..groups.len()).collect();
    let rows = outcomes
        .iter()
        .map(|o| CalibrationRow {
            name: o.name.clone(),
            images: o.holds.len(),
            positives: o.holds.iter().filter(|&&h| h).count(),
            metrics: o.metrics(&all),
            bins: reliability(&o.probabilities, &o.holds, CALIBRATION_BINS, Binning::EqualWidth),
        })
        .collect();
    let suffix = scale.suffix();
    let metric_names =
        |class: Option<&str>| CALIBRATION_METRICS.map(|m| (format!("{m}{suffix}"), class.map(str::to_string)));
    let names: Vec<(String, Option<String>)> = match headline {
        Headline::Positive => metric_names(None).to_vec(),
        Headline::Classes | Headline::Labels => outcomes
            .iter()
            .flat_map(|o| metric_names(Some(&o.name)))
            .chain([(format!("brier{suffix}"), None), (format!("ece{suffix}"), None)])
            .collect(),
    };
    let statistics = |images: &[usize]| -> Vec<Option<f64>> {
        let each: Vec<[Option<f64>; 5]> = outcomes.iter().map(|o| o.metrics(images)).collect();
        let (brier, ece) = match headline {
            Headline::Positive => return each[0].to_vec(),
            Headline::Classes => {
                let classes = &each[..each.len() - 1];
                (classes.iter().map(|m| m[0]).sum::<Option<f64>>(), each[each.len() - 1][1])
            }
            Headline::Labels => {
                let mean = |k: usize| each.iter().map(|m| m[k]).sum::<Option<f64>>().map(|s| s / each.len() as f64);
                (mean(0), mean(1))
            }
        };
        each.iter().flatten().copied().chain([brier, ece]).collect()
    };
    let intervals = with_intervals(eval, groups, names, statistics);
    let curved = match headline {
        Headline::Positive => &outcomes[..1],
        Headline::Classes => &[],
        Headline::Labels => outcomes,
    };
    let curves = curved.iter().map(|o| decision_curve(o, eval, groups)).collect();
    (CalibrationEvaluation { scale, rows, curves }, intervals)
}

/// The decision curve of `outcome` at `eval.decision_curve`'s thresholds, with
/// patient-bootstrap intervals of its net benefit.
fn decision_curve(outcome: &Outcomes, eval: &EvalSettings, groups: &[Option<&str>]) -> DecisionCurve {
    let DecisionCurveSettings { from, to, step } = eval.decision_curve;
    let at = thresholds(from, to, step);
    let benefit = net_benefit(&outcome.probabilities, &outcome.holds, &at);
    let intervals = if eval.bootstrap > 0 {
        let bootstrap = Bootstrap { resamples: eval.bootstrap, confidence: eval.confidence, seed: eval.bootstrap_seed };
        bootstrap.intervals(&units_by_group(groups), |images| {
            let p: Vec<f64> = images.iter().map(|&i| outcome.probabilities[i]).collect();
            let h: Vec<bool> = images.iter().map(|&i| outcome.holds[i]).collect();
            net_benefit(&p, &h, &at).into_iter().map(Some).collect()
        })
    } else {
        vec![None; at.len()]
    };
    let all = treat_all(&outcome.holds, &at);
    let points = (0..at.len())
        .map(|k| DecisionPoint { threshold: at[k], net_benefit: benefit[k], interval: intervals[k], treat_all: all[k] })
        .collect();
    DecisionCurve { name: outcome.name.clone(), points }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_benefit_by_hand() {
        // 4 images, 2 positive. At 0.5: 0.9 (TP) and 0.6 (FP) called, 1/4 - 1/4 x 1 = 0;
        // at 0.2: 0.9, 0.6 and 0.3 called (TP 2, FP 1), 2/4 - 1/4 x 0.25; at 0.3 the image
        // at exactly 0.3 is called (>=); at 0.95 none is
        let p = [0.9, 0.6, 0.3, 0.1];
        let h = [true, false, true, false];
        let nb = net_benefit(&p, &h, &[0.5, 0.2, 0.95, 0.3]);
        assert!((nb[0] - 0.0).abs() < 1e-15, "{nb:?}");
        assert!((nb[1] - (0.5 - 0.25 * 0.25)).abs() < 1e-15, "{nb:?}");
        assert_eq!(nb[2], 0.0);
        assert!((nb[3] - (0.5 - 0.25 * 0.3 / 0.7)).abs() < 1e-15, "{nb:?}");
        let all = treat_all(&h, &[0.5, 0.2]);
        assert!((all[0] - 0.0).abs() < 1e-15 && (all[1] - (0.5 - 0.5 * 0.25)).abs() < 1e-15, "{all:?}");
    }

    #[test]
    fn a_probability_on_an_edge_falls_in_the_bin_below_and_ece_weighs_bins_by_images() {
        // 5 bins of 0.2: 0.2 lies on the first inner edge, so in the first bin
        // (searchsorted, left side); bins: {0.1, 0.2}, {0.3}, {}, {}, {0.9}
        let (p, h) = ([0.1, 0.2, 0.3, 0.9], [false, true, false, true]);
        let bins = reliability(&p, &h, 5, Binning::EqualWidth);
        assert_eq!(bins.iter().map(|b| b.images).collect::<Vec<_>>(), [2, 1, 0, 0, 1]);
        assert_eq!(
            (bins[0].mean_predicted, bins[0].observed, bins[2].observed),
            (Some(0.15000000000000002), Some(0.5), None)
        );
        // (2 x |0.15 - 0.5| + 1 x |0.3 - 0| + 1 x |0.9 - 1|) / 4
        assert!((expected_calibration_error(&bins).unwrap() - 0.275).abs() < 1e-15);
        // two bins of equal mass cut at the median, 0.25
        let halves = reliability(&p, &h, 2, Binning::EqualMass);
        assert_eq!((halves[0].upper, halves[0].images, halves[1].images), (0.25, 2, 2));
        assert!((brier(&p, &h).unwrap() - (0.01 + 0.64 + 0.09 + 0.01) / 4.0).abs() < 1e-15);
    }

    #[test]
    fn a_label_scaled_at_temperature_one_is_itself_and_tiny_ones_stay_apart() {
        for p in [1e-12f32, 3e-9, 0.2, 0.5, 0.97, 1.0 - 1e-7] {
            let back = scaled(&label_logits(p), 1.0)[0];
            assert!((back - f64::from(p)).abs() <= 1e-12 * f64::from(p).max(1e-3), "{p} -> {back}");
        }
        // no clip at 1e-7: 1e-12 and 1e-9 keep their order and their ratio's logarithm
        let (a, b) = (scaled(&label_logits(1e-12), 3.0)[0], scaled(&label_logits(1e-9), 3.0)[0]);
        assert!(a < b && ((b / a).ln() - (1e3f64).ln() / 3.0).abs() < 1e-3, "{a} {b}");
    }

    #[test]
    fn thresholds_step_without_drift() {
        let t = thresholds(0.01, 0.99, 0.01);
        assert_eq!(t.len(), 99);
        assert_eq!((t[0], t[6], t[98]), (0.01, 0.07, 0.99));
    }

    #[test]
    fn perfectly_calibrated_logits_give_slope_one_and_intercept_zero() {
        // outcomes drawn at exactly the predicted rate in each group: the fit is exact
        let mut p = Vec::new();
        let mut h = Vec::new();
        for (prob, positives, total) in [(0.2, 2, 10), (0.5, 5, 10), (0.8, 8, 10)] {
            for i in 0..total {
                p.push(prob);
                h.push(i < positives);
            }
        }
        let (slope, intercept) = (calibration_slope(&p, &h).unwrap(), calibration_intercept(&p, &h).unwrap());
        assert!((slope - 1.0).abs() < 1e-9 && intercept.abs() < 1e-9, "{slope} {intercept}");
        // too extreme probabilities (each logit doubled) give a slope of 1/2
        let extreme: Vec<f64> = p.iter().map(|&q| sigmoid(2.0 * logit(q))).collect();
        assert!((calibration_slope(&extreme, &h).unwrap() - 0.5).abs() < 1e-9);
        // separated classes have no finite slope (the intercept has one); one kind, neither
        let separated = ([0.1, 0.2, 0.8, 0.9], [false, false, true, true]);
        assert!(calibration_slope(&separated.0, &separated.1).is_none());
        assert!(calibration_intercept(&separated.0, &separated.1).is_some());
        assert!(calibration_slope(&[0.1, 0.2], &[true, true]).is_none());
    }
}
