//! Test-set evaluation of a trained run: computes what the run folder then writes. For
//! classification the metrics report and the predictions; for segmentation the
//! per-image scores, their summaries per label, predicted masks and overlays; for both,
//! bootstrap confidence intervals of the headline metrics (the `[eval]` section).

use std::collections::BTreeMap;
use std::path::PathBuf;

use image::{GrayImage, Rgb, RgbImage};
use radrun_data::SettingError;
use radrun_data::{Sample, Target};
use radrun_train::metrics::{
    ClassificationReport, SegmentationScores, Summary, classification_report, segmentation_scores, summarize, surface,
};
use radrun_train::predict::Predictor;
use radrun_train::stats::{Bootstrap, Interval, units_by_group};
use serde::{Deserialize, Serialize};

/// The `[eval]` section: how the test set is summarized.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalSettings {
    /// Bootstrap resamples for the confidence intervals of the test metrics (0: none).
    pub bootstrap: u32,
    /// Coverage of the intervals.
    pub confidence: f64,
    /// Seed of the resampling: the same predictions always give the same intervals.
    pub bootstrap_seed: u64,
}

impl Default for EvalSettings {
    fn default() -> Self {
        Self { bootstrap: 2000, confidence: 0.95, bootstrap_seed: 1 }
    }
}

impl EvalSettings {
    pub fn validate(&self) -> Result<(), SettingError> {
        if self.bootstrap > 100_000 {
            return Err(SettingError::new(
                "eval.bootstrap",
                format!("must be at most 100000 resamples (2000 is usual), found {}", self.bootstrap),
            ));
        }
        if !(self.confidence > 0.5 && self.confidence < 1.0) {
            return Err(SettingError::new(
                "eval.confidence",
                format!("must be between 0.5 and 1 (exclusive), e.g. 0.95, found {}", self.confidence),
            ));
        }
        Ok(())
    }
}

/// A test metric with its confidence interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricInterval {
    /// A headline name (`accuracy`, `macro_roc_auc`, `dice_mean`...) or a per-class one
    /// (`sensitivity`, `specificity`, `f1`, `roc_auc`, `dice`...).
    pub metric: String,
    /// The class or label of a per-class metric.
    pub class: Option<String>,
    pub value: f64,
    /// None when bootstrapping is off or the metric is undefined on most resamples.
    pub interval: Option<Interval>,
}

/// Intervals of `names` (with their classes), whose values on the whole test set are
/// `statistics(all images)`.
fn with_intervals(
    eval: &EvalSettings,
    groups: &[Option<&str>],
    names: Vec<(String, Option<String>)>,
    statistics: impl Fn(&[usize]) -> Vec<Option<f64>> + Sync,
) -> Vec<MetricInterval> {
    let all: Vec<usize> = (0..groups.len()).collect();
    let values = statistics(&all);
    let intervals = if eval.bootstrap > 0 {
        let bootstrap = Bootstrap { resamples: eval.bootstrap, confidence: eval.confidence, seed: eval.bootstrap_seed };
        bootstrap.intervals(&units_by_group(groups), statistics)
    } else {
        vec![None; values.len()]
    };
    names
        .into_iter()
        .zip(values)
        .zip(intervals)
        .filter_map(|(((metric, class), value), interval)| {
            value.map(|value| MetricInterval { metric, class, value, interval })
        })
        .collect()
}

/// What the test split says about a trained network.
pub enum Evaluation {
    Classification(ClassificationEvaluation),
    Segmentation(SegmentationEvaluation),
}

pub struct ClassificationEvaluation {
    pub report: ClassificationReport,
    pub intervals: Vec<MetricInterval>,
    pub classes: Vec<String>,
    pub files: Vec<PathBuf>,
    pub truth: Vec<usize>,
    pub probabilities: Vec<Vec<f32>>,
}

/// The scores of one label on one test image.
pub struct ImageScores {
    pub file: PathBuf,
    pub label: String,
    pub scores: SegmentationScores,
}

/// One test image's predicted mask and its overlay (truth green, prediction magenta).
pub struct PredictedImage {
    pub stem: String,
    pub mask: GrayImage,
    pub overlay: RgbImage,
}

/// Summaries of one label over the test images.
#[derive(Debug, Serialize)]
pub struct LabelSummary {
    pub label: String,
    pub images: usize,
    pub dice: Summary,
    pub iou: Summary,
    pub sensitivity: Summary,
    pub precision: Summary,
    pub hd95_pixels: Summary,
    /// Over the images whose pixel spacing is known.
    pub hd95_mm: Option<Summary>,
}

pub struct SegmentationEvaluation {
    pub rows: Vec<ImageScores>,
    pub intervals: Vec<MetricInterval>,
    pub summaries: Vec<LabelSummary>,
    pub images: Vec<PredictedImage>,
}

/// Evaluates the predictor's network on the test split of its dataset.
pub fn evaluate(predictor: &Predictor, eval: &EvalSettings) -> Evaluation {
    let groups: Vec<Option<&str>> = predictor.dataset.test.samples.iter().map(|s| s.origin.group.as_deref()).collect();
    match predictor.dataset.task {
        radrun_data::Task::Classification => Evaluation::Classification(classification(predictor, eval, &groups)),
        radrun_data::Task::Segmentation => Evaluation::Segmentation(segmentation(predictor, eval, &groups)),
    }
}

impl Evaluation {
    /// The intervals of the headline metrics, kept in status.json.
    pub fn headline_intervals(&self) -> BTreeMap<String, Interval> {
        let intervals = match self {
            Evaluation::Classification(e) => &e.intervals,
            Evaluation::Segmentation(e) => &e.intervals,
        };
        intervals
            .iter()
            .filter(|m| m.class.is_none())
            .filter_map(|m| m.interval.map(|i| (m.metric.clone(), i)))
            .collect()
    }

    /// The headline test metrics kept in status.json and summary.csv.
    pub fn headline(&self) -> BTreeMap<String, f64> {
        match self {
            Evaluation::Classification(e) => {
                let r = &e.report;
                let mut headline = BTreeMap::from([
                    ("accuracy".to_string(), r.accuracy),
                    ("balanced_accuracy".to_string(), r.balanced_accuracy),
                    ("macro_f1".to_string(), r.macro_avg.f1),
                ]);
                if let Some(auc) = r.macro_avg.roc_auc {
                    headline.insert("macro_roc_auc".into(), auc);
                }
                headline
            }
            Evaluation::Segmentation(e) => {
                let over_all = |f: fn(&SegmentationScores) -> f64| {
                    summarize(&e.rows.iter().map(|r| f(&r.scores)).collect::<Vec<_>>())
                };
                BTreeMap::from([
                    ("dice_mean".to_string(), over_all(|s| s.dice).mean),
                    ("iou_mean".to_string(), over_all(|s| s.iou).mean),
                    ("sensitivity_mean".to_string(), over_all(|s| s.sensitivity).mean),
                    ("precision_mean".to_string(), over_all(|s| s.precision).mean),
                    ("hd95_pixels_median".to_string(), over_all(|s| s.hd95_pixels).median),
                ])
            }
        }
    }
}

fn classification(predictor: &Predictor, eval: &EvalSettings, groups: &[Option<&str>]) -> ClassificationEvaluation {
    let dataset = predictor.dataset;
    let probabilities = predictor.class_probabilities(&dataset.test);
    let truth = dataset.test.class_labels();
    let classes = &dataset.classes;
    let mut names: Vec<(String, Option<String>)> =
        ["accuracy", "balanced_accuracy", "macro_f1", "macro_roc_auc"].iter().map(|m| (m.to_string(), None)).collect();
    for class in classes {
        for metric in ["sensitivity", "specificity", "f1", "roc_auc"] {
            names.push((metric.to_string(), Some(class.clone())));
        }
    }
    let statistics = |images: &[usize]| -> Vec<Option<f64>> {
        let t: Vec<usize> = images.iter().map(|&i| truth[i]).collect();
        let p: Vec<Vec<f32>> = images.iter().map(|&i| probabilities[i].clone()).collect();
        let r = classification_report(classes, &t, &p);
        let mut values = vec![Some(r.accuracy), Some(r.balanced_accuracy), Some(r.macro_avg.f1), r.macro_avg.roc_auc];
        for m in &r.per_class {
            // a class absent from a resample has no sensitivity
            let present = m.support > 0;
            values.extend([present.then_some(m.recall), Some(m.specificity), present.then_some(m.f1), m.roc_auc]);
        }
        values
    };
    let intervals = with_intervals(eval, groups, names, statistics);
    ClassificationEvaluation {
        report: classification_report(&dataset.classes, &truth, &probabilities),
        intervals,
        classes: dataset.classes.clone(),
        files: dataset.test.samples.iter().map(|s| s.path.clone()).collect(),
        truth,
        probabilities,
    }
}

const TRUTH: Rgb<u8> = Rgb([0, 220, 0]);
const PREDICTION: Rgb<u8> = Rgb([255, 0, 255]);

fn segmentation(predictor: &Predictor, eval: &EvalSettings, groups: &[Option<&str>]) -> SegmentationEvaluation {
    let dataset = predictor.dataset;
    let predictions = predictor.masks(&dataset.test);
    let labels = dataset.classes.len().max(2);
    let mut rows = Vec::new();
    let mut images = Vec::new();
    for (sample, predicted) in dataset.test.samples.iter().zip(&predictions) {
        let Target::Mask(truth) = &sample.target else { continue };
        let (scores, overlay) = score_image(sample, truth, predicted, labels, (dataset.height, dataset.width));
        rows.extend(scores.into_iter().enumerate().map(|(i, scores)| ImageScores {
            file: sample.path.clone(),
            label: dataset.classes[i + 1].clone(),
            scores,
        }));
        let (h, w) = (dataset.height, dataset.width);
        let scale = if labels == 2 { 255 } else { 1 };
        let mask = GrayImage::from_fn(w as u32, h as u32, |x, y| {
            image::Luma([predicted[y as usize * w + x as usize] * scale])
        });
        let stem = sample.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        images.push(PredictedImage { stem, mask, overlay });
    }
    let summaries = (1..labels).map(|label| summarize_label(&dataset.classes[label], &rows)).collect();
    let intervals = segmentation_intervals(eval, groups, &rows, &dataset.classes[1..labels]);
    SegmentationEvaluation { rows, intervals, summaries, images }
}

/// Scores of each foreground label of one image, and the overlay of the outlines of
/// truth and prediction on the image.
fn score_image(
    sample: &Sample,
    truth: &[u8],
    predicted: &[u8],
    labels: usize,
    (h, w): (usize, usize),
) -> (Vec<SegmentationScores>, RgbImage) {
    let mut overlay = RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let v = (sample.image[y as usize * w + x as usize] * 255.0).round() as u8;
        Rgb([v, v, v])
    });
    let mut scores = Vec::with_capacity(labels - 1);
    for label in 1..labels {
        let t: Vec<bool> = truth.iter().map(|&v| usize::from(v) == label).collect();
        let p: Vec<bool> = predicted.iter().map(|&v| usize::from(v) == label).collect();
        scores.push(segmentation_scores(&t, &p, h, w, sample.pixel_spacing_mm));
        for (mask, color) in [(&t, TRUTH), (&p, PREDICTION)] {
            for (r, c) in surface(mask, h, w) {
                overlay.put_pixel(c as u32, r as u32, color);
            }
        }
    }
    (scores, overlay)
}

/// Intervals of the headline segmentation metrics (over every label, as
/// [`Evaluation::headline`]) and of each label's mean Dice and median HD95. `rows` hold
/// the labels of each image in turn.
fn segmentation_intervals(
    eval: &EvalSettings,
    groups: &[Option<&str>],
    rows: &[ImageScores],
    labels: &[String],
) -> Vec<MetricInterval> {
    let per_image = labels.len();
    // name, score, summarized by the median (else the mean)
    type Column = (&'static str, fn(&SegmentationScores) -> f64, bool);
    let headline: [Column; 5] = [
        ("dice_mean", |s| s.dice, false),
        ("iou_mean", |s| s.iou, false),
        ("sensitivity_mean", |s| s.sensitivity, false),
        ("precision_mean", |s| s.precision, false),
        ("hd95_pixels_median", |s| s.hd95_pixels, true),
    ];
    let mut names: Vec<(String, Option<String>)> = headline.iter().map(|(n, _, _)| (n.to_string(), None)).collect();
    for label in labels {
        names.push(("dice".into(), Some(label.clone())));
        names.push(("hd95_pixels_median".into(), Some(label.clone())));
    }
    let statistics = |images: &[usize]| -> Vec<Option<f64>> {
        let pick = |f: fn(&SegmentationScores) -> f64, label: Option<usize>| -> Vec<f64> {
            images
                .iter()
                .flat_map(|&i| (0..per_image).filter(|&l| label.is_none_or(|x| x == l)).map(move |l| i * per_image + l))
                .map(|r| f(&rows[r].scores))
                .collect()
        };
        let stat = |values: Vec<f64>, median: bool| {
            let s = summarize(&values);
            Some(if median { s.median } else { s.mean })
        };
        let mut values: Vec<Option<f64>> =
            headline.iter().map(|(_, f, median)| stat(pick(*f, None), *median)).collect();
        for l in 0..per_image {
            values.push(stat(pick(|s| s.dice, Some(l)), false));
            values.push(stat(pick(|s| s.hd95_pixels, Some(l)), true));
        }
        values
    };
    with_intervals(eval, groups, names, statistics)
}

fn summarize_label(label: &str, rows: &[ImageScores]) -> LabelSummary {
    let scores: Vec<&SegmentationScores> = rows.iter().filter(|r| r.label == label).map(|r| &r.scores).collect();
    let col = |f: fn(&SegmentationScores) -> f64| summarize(&scores.iter().map(|s| f(s)).collect::<Vec<_>>());
    let mm: Vec<f64> = scores.iter().filter_map(|s| s.hd95_mm).collect();
    LabelSummary {
        label: label.to_string(),
        images: scores.len(),
        dice: col(|s| s.dice),
        iou: col(|s| s.iou),
        sensitivity: col(|s| s.sensitivity),
        precision: col(|s| s.precision),
        hd95_pixels: col(|s| s.hd95_pixels),
        hd95_mm: (!mm.is_empty()).then(|| summarize(&mm)),
    }
}
