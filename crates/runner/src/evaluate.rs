//! Test-set evaluation of a trained run and the files it leaves: for classification the
//! metrics report, per-class table, confusion matrix and predictions; for segmentation
//! the per-image metrics table, their summaries, predicted masks and overlays.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use image::{GrayImage, Rgb, RgbImage};
use radrun_data::Target;
use radrun_train::metrics::{Summary, classification_report, segmentation_scores, summarize, surface};
use radrun_train::predict::Predictor;
use serde::Serialize;

use crate::outputs::{num, write_atomic, write_classification_report, write_csv, write_predictions};

/// Evaluates a classifier on the test split; returns the headline metrics for the status.
pub fn classification(predictor: &Predictor, dir: &Path) -> Result<BTreeMap<String, f64>> {
    let dataset = predictor.dataset;
    let probabilities = predictor.class_probabilities(&dataset.test);
    let truth = dataset.test.class_labels();
    let report = classification_report(&dataset.classes, &truth, &probabilities);
    write_classification_report(dir, &report, &dataset.classes)?;
    let files: Vec<_> = dataset.test.samples.iter().map(|s| s.path.clone()).collect();
    write_predictions(&dir.join("predictions.csv"), &files, &truth, &probabilities, &dataset.classes)?;
    let mut headline = BTreeMap::from([
        ("accuracy".to_string(), report.accuracy),
        ("balanced_accuracy".to_string(), report.balanced_accuracy),
        ("macro_f1".to_string(), report.macro_avg.f1),
    ]);
    if let Some(auc) = report.macro_avg.roc_auc {
        headline.insert("macro_roc_auc".into(), auc);
    }
    Ok(headline)
}

/// Summaries of one label over the test images.
#[derive(Debug, Serialize)]
struct LabelSummary {
    label: String,
    images: usize,
    dice: Summary,
    iou: Summary,
    sensitivity: Summary,
    precision: Summary,
    hd95_pixels: Summary,
    /// Over the images whose pixel spacing is known.
    hd95_mm: Option<Summary>,
}

const TRUTH: Rgb<u8> = Rgb([0, 220, 0]);
const PREDICTION: Rgb<u8> = Rgb([255, 0, 255]);

/// Evaluates a segmentation network on the test split.
pub fn segmentation(predictor: &Predictor, dir: &Path) -> Result<BTreeMap<String, f64>> {
    let dataset = predictor.dataset;
    let (h, w) = (dataset.height, dataset.width);
    let predictions = predictor.masks(&dataset.test);
    let folder = dir.join("predictions");
    std::fs::create_dir_all(&folder)?;
    let labels = dataset.classes.len().max(2);
    let mut per_label: Vec<Vec<radrun_train::metrics::SegmentationScores>> = vec![Vec::new(); labels - 1];
    let mut rows = Vec::new();
    for (sample, predicted) in dataset.test.samples.iter().zip(&predictions) {
        let Target::Mask(truth) = &sample.target else { continue };
        let stem = sample.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let mut overlay = RgbImage::from_fn(w as u32, h as u32, |x, y| {
            let v = (sample.image[y as usize * w + x as usize] * 255.0).round() as u8;
            Rgb([v, v, v])
        });
        for label in 1..labels {
            let t: Vec<bool> = truth.iter().map(|&v| usize::from(v) == label).collect();
            let p: Vec<bool> = predicted.iter().map(|&v| usize::from(v) == label).collect();
            let scores = segmentation_scores(&t, &p, h, w, sample.pixel_spacing_mm);
            for (mask, color) in [(&t, TRUTH), (&p, PREDICTION)] {
                for (r, c) in surface(mask, h, w) {
                    overlay.put_pixel(c as u32, r as u32, color);
                }
            }
            rows.push(vec![
                sample.path.display().to_string(),
                dataset.classes[label].clone(),
                num(Some(scores.dice)),
                num(Some(scores.iou)),
                num(Some(scores.sensitivity)),
                num(Some(scores.precision)),
                num(Some(scores.hd95_pixels)),
                num(scores.hd95_mm),
            ]);
            per_label[label - 1].push(scores);
        }
        let scale = if labels == 2 { 255 } else { 1 };
        let mask = GrayImage::from_fn(w as u32, h as u32, |x, y| {
            image::Luma([predicted[y as usize * w + x as usize] * scale])
        });
        save_png(&folder.join(format!("{stem}_mask.png")), &image::DynamicImage::ImageLuma8(mask))?;
        save_png(&folder.join(format!("{stem}_overlay.png")), &image::DynamicImage::ImageRgb8(overlay))?;
    }
    let header: Vec<String> = ["file", "label", "dice", "iou", "sensitivity", "precision", "hd95_pixels", "hd95_mm"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    write_csv(&dir.join("segmentation_metrics.csv"), &header, &rows)?;
    let summaries: Vec<LabelSummary> = per_label
        .iter()
        .enumerate()
        .map(|(i, scores)| {
            let col = |f: fn(&radrun_train::metrics::SegmentationScores) -> f64| {
                summarize(&scores.iter().map(f).collect::<Vec<_>>())
            };
            let mm: Vec<f64> = scores.iter().filter_map(|s| s.hd95_mm).collect();
            LabelSummary {
                label: dataset.classes[i + 1].clone(),
                images: scores.len(),
                dice: col(|s| s.dice),
                iou: col(|s| s.iou),
                sensitivity: col(|s| s.sensitivity),
                precision: col(|s| s.precision),
                hd95_pixels: col(|s| s.hd95_pixels),
                hd95_mm: (!mm.is_empty()).then(|| summarize(&mm)),
            }
        })
        .collect();
    write_atomic(&dir.join("evaluation.json"), &serde_json::to_vec_pretty(&summaries)?)?;
    let all: Vec<&radrun_train::metrics::SegmentationScores> = per_label.iter().flatten().collect();
    let mean = |f: fn(&radrun_train::metrics::SegmentationScores) -> f64| {
        summarize(&all.iter().map(|s| f(s)).collect::<Vec<_>>())
    };
    Ok(BTreeMap::from([
        ("dice_mean".to_string(), mean(|s| s.dice).mean),
        ("iou_mean".to_string(), mean(|s| s.iou).mean),
        ("sensitivity_mean".to_string(), mean(|s| s.sensitivity).mean),
        ("precision_mean".to_string(), mean(|s| s.precision).mean),
        ("hd95_pixels_median".to_string(), mean(|s| s.hd95_pixels).median),
    ]))
}

/// Writes a PNG atomically.
fn save_png(path: &Path, image: &image::DynamicImage) -> Result<()> {
    let mut bytes = Vec::new();
    image.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)?;
    write_atomic(path, &bytes)?;
    Ok(())
}
