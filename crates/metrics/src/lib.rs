//! Evaluation metrics, computed in f64 on plain vectors so they can be checked against
//! scikit-learn, SciPy and MONAI.
//!
//! Classification: accuracy, balanced accuracy, per-class precision, recall
//! (sensitivity), specificity, F1 and support, their macro and support-weighted averages,
//! one-vs-rest ROC AUC per class and macro, and the confusion matrix (rows = truth).
//! Undefined ratios (no predicted or no true sample of a class) are 0, as scikit-learn's
//! `zero_division=0`; a class without positives or without negatives has no ROC AUC
//! (empty cell) and is left out of the macro AUC.
//!
//! Segmentation, per image and foreground label: Dice, IoU, sensitivity, precision and
//! the 95th-percentile Hausdorff distance (MONAI's definition: surfaces are the mask
//! minus its erosion by a 3x3 cross; the 95th percentile of the distances from each
//! surface to the other, the larger of the two directions). Empty masks: when truth and
//! prediction are both empty every score is perfect (1, distance 0); when exactly one is
//! empty every score is the worst (0, distance = the image diagonal).

pub mod calibration;
pub mod epochs;
pub mod evaluate;
pub mod slices;
pub mod stats;
pub mod subgroups;
pub mod surface;
pub mod volumes;

/// numpy's `percentile` (linear), shared with the data crate's intensity statistics.
pub use radrun_data::intensity::percentile;

pub use epochs::EpochRecord;

use serde::Serialize;

/// Metrics of one class.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassMetrics {
    pub class: String,
    pub precision: f64,
    pub recall: f64,
    pub specificity: f64,
    pub f1: f64,
    pub support: u64,
    /// One-vs-rest ROC AUC; None when the class has no positive or no negative sample.
    pub roc_auc: Option<f64>,
}

/// Averages over classes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Averages {
    pub precision: f64,
    pub recall: f64,
    pub specificity: f64,
    pub f1: f64,
    pub roc_auc: Option<f64>,
}

/// Test-set evaluation of a classifier.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassificationReport {
    pub images: u64,
    pub accuracy: f64,
    pub balanced_accuracy: f64,
    pub per_class: Vec<ClassMetrics>,
    pub macro_avg: Averages,
    pub weighted_avg: Averages,
    /// confusion[true][predicted]
    pub confusion: Vec<Vec<u64>>,
}

fn ratio(num: f64, den: f64) -> f64 {
    if den > 0.0 { num / den } else { 0.0 }
}

/// Index of the largest probability (the first one on ties, as numpy's argmax).
pub fn argmax(p: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in p.iter().enumerate() {
        if v > p[best] {
            best = i;
        }
    }
    best
}

/// Area under the ROC curve of `scores` for `positive` labels, with ties counted half
/// (the Mann-Whitney statistic, equal to the trapezoidal area scikit-learn computes).
pub fn roc_auc(scores: &[f64], positive: &[bool]) -> Option<f64> {
    let n_pos = positive.iter().filter(|&&p| p).count();
    let n_neg = positive.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // average ranks (1-based) of tied groups
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum_pos += avg_rank * order[i..=j].iter().filter(|&&k| positive[k]).count() as f64;
        i = j + 1;
    }
    let (np, nn) = (n_pos as f64, n_neg as f64);
    Some((rank_sum_pos - np * (np + 1.0) / 2.0) / (np * nn))
}

/// The metrics of one class from its counts `[tp, fp, tn, fn]` and its one-vs-rest
/// scores.
fn class_metrics(name: &str, [tp, fp, tn, fn_]: [f64; 4], scores: &[f64], positive: &[bool]) -> ClassMetrics {
    ClassMetrics {
        class: name.to_string(),
        precision: ratio(tp, tp + fp),
        recall: ratio(tp, tp + fn_),
        specificity: ratio(tn, tn + fp),
        f1: ratio(2.0 * tp, 2.0 * tp + fp + fn_),
        support: (tp + fn_) as u64,
        roc_auc: roc_auc(scores, positive),
    }
}

/// Averages over classes with `weight` per class; the AUC over the classes that have one.
fn averages(per_class: &[ClassMetrics], weight: &dyn Fn(&ClassMetrics) -> f64) -> Averages {
    let w_sum: f64 = per_class.iter().map(weight).sum();
    let avg = |f: &dyn Fn(&ClassMetrics) -> f64| ratio(per_class.iter().map(|m| weight(m) * f(m)).sum(), w_sum);
    let aucs: Vec<(f64, f64)> = per_class.iter().filter_map(|m| m.roc_auc.map(|a| (weight(m), a))).collect();
    let auc_w: f64 = aucs.iter().map(|(w, _)| w).sum();
    Averages {
        precision: avg(&|m| m.precision),
        recall: avg(&|m| m.recall),
        specificity: avg(&|m| m.specificity),
        f1: avg(&|m| m.f1),
        roc_auc: (auc_w > 0.0).then(|| aucs.iter().map(|(w, a)| w * a).sum::<f64>() / auc_w),
    }
}

/// Test-set evaluation of a multi-label classifier: each label is called present when
/// its probability is at least 0.5.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MultilabelReport {
    pub images: u64,
    /// Images whose predicted label set is exactly right (scikit-learn's
    /// `accuracy_score` on label indicator arrays).
    pub subset_accuracy: f64,
    /// (image, label) decisions that are right: 1 - Hamming loss.
    pub label_accuracy: f64,
    /// Per label: precision, recall (sensitivity), specificity, F1, support (images with
    /// the label) and ROC AUC.
    pub per_label: Vec<ClassMetrics>,
    pub macro_avg: Averages,
    pub weighted_avg: Averages,
}

/// Evaluates per-label probabilities against the true label sets.
pub fn multilabel_report(labels: &[String], truth: &[Vec<bool>], probabilities: &[Vec<f32>]) -> MultilabelReport {
    assert_eq!(truth.len(), probabilities.len(), "one probability row per image");
    let n = truth.len() as f64;
    let predicted: Vec<Vec<bool>> = probabilities.iter().map(|p| p.iter().map(|&v| v >= 0.5).collect()).collect();
    let per_label: Vec<ClassMetrics> = labels
        .iter()
        .enumerate()
        .map(|(c, name)| {
            let mut counts = [0.0; 4];
            for (t, p) in truth.iter().zip(&predicted) {
                counts[match (p[c], t[c]) {
                    (true, true) => 0,
                    (true, false) => 1,
                    (false, false) => 2,
                    (false, true) => 3,
                }] += 1.0;
            }
            let scores: Vec<f64> = probabilities.iter().map(|p| f64::from(p[c])).collect();
            let positive: Vec<bool> = truth.iter().map(|t| t[c]).collect();
            class_metrics(name, counts, &scores, &positive)
        })
        .collect();
    let exact = truth.iter().zip(&predicted).filter(|(t, p)| t == p).count() as f64;
    let right: usize = truth.iter().zip(&predicted).map(|(t, p)| t.iter().zip(p).filter(|(a, b)| a == b).count()).sum();
    MultilabelReport {
        images: truth.len() as u64,
        subset_accuracy: ratio(exact, n),
        label_accuracy: ratio(right as f64, n * labels.len() as f64),
        macro_avg: averages(&per_label, &|_| 1.0),
        weighted_avg: averages(&per_label, &|m| m.support as f64),
        per_label,
    }
}

/// Evaluates predicted class probabilities against the true classes.
pub fn classification_report(classes: &[String], truth: &[usize], probabilities: &[Vec<f32>]) -> ClassificationReport {
    let k = classes.len();
    let n = truth.len();
    assert_eq!(n, probabilities.len(), "one probability row per image");
    let mut confusion = vec![vec![0u64; k]; k];
    for (t, p) in truth.iter().zip(probabilities) {
        confusion[*t][argmax(p)] += 1;
    }
    let total = n as f64;
    let correct: u64 = (0..k).map(|c| confusion[c][c]).sum();
    let mut per_class = Vec::with_capacity(k);
    for (c, name) in classes.iter().enumerate() {
        let tp = confusion[c][c] as f64;
        let support = confusion[c].iter().sum::<u64>();
        let predicted: u64 = (0..k).map(|r| confusion[r][c]).sum();
        let (fn_, fp) = (support as f64 - tp, predicted as f64 - tp);
        let tn = total - tp - fn_ - fp;
        let scores: Vec<f64> = probabilities.iter().map(|p| f64::from(p[c])).collect();
        let positive: Vec<bool> = truth.iter().map(|&t| t == c).collect();
        per_class.push(class_metrics(name, [tp, fp, tn, fn_], &scores, &positive));
    }
    let average = |weight: &dyn Fn(&ClassMetrics) -> f64| averages(&per_class, weight);
    let macro_avg = average(&|_| 1.0);
    let weighted_avg = average(&|m| m.support as f64);
    let present: Vec<&ClassMetrics> = per_class.iter().filter(|m| m.support > 0).collect();
    let balanced_accuracy = ratio(present.iter().map(|m| m.recall).sum(), present.len() as f64);
    ClassificationReport {
        images: n as u64,
        accuracy: ratio(correct as f64, total),
        balanced_accuracy,
        per_class,
        macro_avg,
        weighted_avg,
        confusion,
    }
}

// ------------------------------------------------------------------ segmentation

/// Overlap and distance scores of one label in one image.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SegmentationScores {
    pub dice: f64,
    pub iou: f64,
    pub sensitivity: f64,
    pub precision: f64,
    /// 95th-percentile Hausdorff distance in pixels.
    pub hd95_pixels: f64,
    /// The same in millimetres, when the pixel spacing is known.
    pub hd95_mm: Option<f64>,
}

/// Boundary pixels (row, column): the mask minus its erosion by a 3x3 cross (outside
/// the image counts as background), as `mask ^ scipy.ndimage.binary_erosion(mask)`.
pub fn surface(mask: &[bool], height: usize, width: usize) -> Vec<(usize, usize)> {
    surface::surface_voxels(mask, &surface::Grid::image(height, width, [1.0, 1.0]))
        .into_iter()
        .map(|[_, r, c]| (r, c))
        .collect()
}

/// HD95 between two non-empty masks with the given spacing.
fn hd95(truth: &[bool], predicted: &[bool], height: usize, width: usize, spacing: [f64; 2]) -> f64 {
    surface::hd95(predicted, truth, &surface::Grid::image(height, width, spacing))
}

/// Dice and IoU of one binary structure (both empty: 1; one empty: 0).
pub fn dice_iou(truth: &[bool], predicted: &[bool]) -> (f64, f64) {
    let tp = truth.iter().zip(predicted).filter(|(t, p)| **t && **p).count() as f64;
    let t_sum = truth.iter().filter(|&&t| t).count() as f64;
    let p_sum = predicted.iter().filter(|&&p| p).count() as f64;
    if t_sum + p_sum == 0.0 { (1.0, 1.0) } else { (2.0 * tp / (t_sum + p_sum), tp / (t_sum + p_sum - tp)) }
}

/// Scores of one binary structure; `spacing_mm` (row, column) enables `hd95_mm`.
pub fn segmentation_scores(
    truth: &[bool],
    predicted: &[bool],
    height: usize,
    width: usize,
    spacing_mm: Option<[f64; 2]>,
) -> SegmentationScores {
    let tp = truth.iter().zip(predicted).filter(|(t, p)| **t && **p).count() as f64;
    let t_sum = truth.iter().filter(|&&t| t).count() as f64;
    let p_sum = predicted.iter().filter(|&&p| p).count() as f64;
    let diagonal = |s: [f64; 2]| ((height as f64 * s[0]).powi(2) + (width as f64 * s[1]).powi(2)).sqrt();
    match (t_sum > 0.0, p_sum > 0.0) {
        (false, false) => SegmentationScores {
            dice: 1.0,
            iou: 1.0,
            sensitivity: 1.0,
            precision: 1.0,
            hd95_pixels: 0.0,
            hd95_mm: spacing_mm.map(|_| 0.0),
        },
        (true, true) => SegmentationScores {
            dice: dice_iou(truth, predicted).0,
            iou: dice_iou(truth, predicted).1,
            sensitivity: tp / t_sum,
            precision: tp / p_sum,
            hd95_pixels: hd95(truth, predicted, height, width, [1.0, 1.0]),
            hd95_mm: spacing_mm.map(|s| hd95(truth, predicted, height, width, s)),
        },
        _ => SegmentationScores {
            dice: 0.0,
            iou: 0.0,
            sensitivity: 0.0,
            precision: 0.0,
            hd95_pixels: diagonal([1.0, 1.0]),
            hd95_mm: spacing_mm.map(diagonal),
        },
    }
}

/// Mean, standard deviation (sample, n - 1) and median of values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    pub mean: f64,
    pub sd: f64,
    pub median: f64,
}

pub fn summarize(values: &[f64]) -> Summary {
    let n = values.len() as f64;
    if values.is_empty() {
        return Summary { mean: f64::NAN, sd: f64::NAN, median: f64::NAN };
    }
    let mean = values.iter().sum::<f64>() / n;
    let sd = if values.len() > 1 {
        (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    let mut sorted = values.to_vec();
    Summary { mean, sd, median: percentile(&mut sorted, 50.0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_counts_ties_half() {
        assert_eq!(roc_auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]), Some(0.75));
        assert_eq!(roc_auc(&[0.5, 0.5], &[false, true]), Some(0.5));
        assert_eq!(roc_auc(&[0.5, 0.6], &[true, true]), None);
    }

    #[test]
    fn report_on_a_hand_made_confusion() {
        // truth 0,0,1,1,2 ; predicted 0,1,1,1,0
        let classes: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let onehot = |c: usize| (0..3).map(|i| if i == c { 0.8 } else { 0.1 }).collect::<Vec<f32>>();
        let probs: Vec<Vec<f32>> = [0, 1, 1, 1, 0].iter().map(|&c| onehot(c)).collect();
        let r = classification_report(&classes, &[0, 0, 1, 1, 2], &probs);
        assert_eq!(r.confusion, vec![vec![1, 1, 0], vec![0, 2, 0], vec![1, 0, 0]]);
        // ratios of counts in float64 (a rounding or two of 1.1e-16): 1e-12 here and below
        assert!((r.accuracy - 0.6).abs() < 1e-12);
        let a = &r.per_class[0];
        assert!((a.precision - 0.5).abs() < 1e-12 && (a.recall - 0.5).abs() < 1e-12);
        assert!((a.specificity - 2.0 / 3.0).abs() < 1e-12);
        let c = &r.per_class[2];
        assert_eq!((c.precision, c.recall, c.f1), (0.0, 0.0, 0.0));
        assert!((r.balanced_accuracy - (0.5 + 1.0 + 0.0) / 3.0).abs() < 1e-12);
    }

    #[test]
    fn overlap_scores_of_two_squares() {
        // truth: rows 2..6, cols 2..6 (16 px); prediction shifted one column right
        let (h, w) = (10, 10);
        let sq = |c0: usize| {
            (0..h * w).map(|i| (2..6).contains(&(i / w)) && (c0..c0 + 4).contains(&(i % w))).collect::<Vec<bool>>()
        };
        let s = segmentation_scores(&sq(2), &sq(3), h, w, Some([0.5, 2.0]));
        assert!((s.dice - 24.0 / 32.0).abs() < 1e-12);
        assert!((s.iou - 12.0 / 20.0).abs() < 1e-12);
        assert!((s.sensitivity - 0.75).abs() < 1e-12 && (s.precision - 0.75).abs() < 1e-12);
        assert!((s.hd95_pixels - 1.0).abs() < 1e-12, "{}", s.hd95_pixels);
        assert!((s.hd95_mm.unwrap() - 2.0).abs() < 1e-12);
        let empty = vec![false; h * w];
        assert_eq!(segmentation_scores(&empty, &empty, h, w, None).dice, 1.0);
        let one_empty = segmentation_scores(&sq(2), &empty, h, w, None);
        assert_eq!(one_empty.dice, 0.0);
        assert!((one_empty.hd95_pixels - (200f64).sqrt()).abs() < 1e-12);
    }
}
