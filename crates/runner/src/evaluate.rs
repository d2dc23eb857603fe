//! Test-set evaluation of a trained run: computes what the run folder then writes. For
//! classification the metrics report and the predictions; for segmentation the
//! per-image scores, their summaries per label, predicted masks and overlays.

use std::collections::BTreeMap;
use std::path::PathBuf;

use image::{GrayImage, Rgb, RgbImage};
use radrun_data::{Sample, Target};
use radrun_train::metrics::{
    ClassificationReport, SegmentationScores, Summary, classification_report, segmentation_scores, summarize, surface,
};
use radrun_train::predict::Predictor;
use serde::Serialize;

/// What the test split says about a trained network.
pub enum Evaluation {
    Classification(ClassificationEvaluation),
    Segmentation(SegmentationEvaluation),
}

pub struct ClassificationEvaluation {
    pub report: ClassificationReport,
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
    pub summaries: Vec<LabelSummary>,
    pub images: Vec<PredictedImage>,
}

/// Evaluates the predictor's network on the test split of its dataset.
pub fn evaluate(predictor: &Predictor) -> Evaluation {
    match predictor.dataset.task {
        radrun_data::Task::Classification => Evaluation::Classification(classification(predictor)),
        radrun_data::Task::Segmentation => Evaluation::Segmentation(segmentation(predictor)),
    }
}

impl Evaluation {
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

fn classification(predictor: &Predictor) -> ClassificationEvaluation {
    let dataset = predictor.dataset;
    let probabilities = predictor.class_probabilities(&dataset.test);
    let truth = dataset.test.class_labels();
    ClassificationEvaluation {
        report: classification_report(&dataset.classes, &truth, &probabilities),
        classes: dataset.classes.clone(),
        files: dataset.test.samples.iter().map(|s| s.path.clone()).collect(),
        truth,
        probabilities,
    }
}

const TRUTH: Rgb<u8> = Rgb([0, 220, 0]);
const PREDICTION: Rgb<u8> = Rgb([255, 0, 255]);

fn segmentation(predictor: &Predictor) -> SegmentationEvaluation {
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
    SegmentationEvaluation { rows, summaries, images }
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
