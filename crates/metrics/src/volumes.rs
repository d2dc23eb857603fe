//! Test-set evaluation of a volume segmentation run: each label's surface scores
//! ([`crate::surface`]) in each test case, measured on the case's source scan (its grid
//! and spacing in mm, where the predicted mask is written); their summaries per label;
//! and patient-bootstrap intervals of the headline (mean Dice, IoU and NSD, median HD95
//! and ASSD, over every label and case) and of each label's mean Dice and NSD and median
//! HD95.

use std::path::PathBuf;

use serde::Serialize;

use crate::evaluate::{Column, EvalSettings, MetricInterval, label_intervals};
use crate::surface::SurfaceScores;
use crate::{Summary, summarize};

/// The scores of one label in one test case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseScores {
    pub case: String,
    /// The case's first channel's file or series folder.
    pub source: PathBuf,
    pub label: String,
    pub scores: SurfaceScores,
}

/// Summaries of one label over the test cases.
#[derive(Debug, Clone, Serialize)]
pub struct VolumeLabelSummary {
    pub label: String,
    pub cases: usize,
    pub dice: Summary,
    pub iou: Summary,
    pub hd95_mm: Summary,
    pub assd_mm: Summary,
    pub nsd: Summary,
    pub reference_ml: Summary,
    pub predicted_ml: Summary,
    pub volume_difference_ml: Summary,
}

/// A volume run's test evaluation; evaluation.json holds the tolerance and summaries.
#[derive(Debug, Clone, Serialize)]
pub struct VolumeEvaluation {
    /// `eval.nsd_tolerance`.
    pub nsd_tolerance_mm: f64,
    pub labels: Vec<VolumeLabelSummary>,
    /// Each case's labels in turn.
    #[serde(skip)]
    pub rows: Vec<CaseScores>,
    #[serde(skip)]
    pub intervals: Vec<MetricInterval>,
}

/// The headline metrics of volume segmentation, over every label and case.
pub(crate) const VOLUME_HEADLINE: [Column<SurfaceScores>; 5] = [
    ("dice_mean", |s| s.dice, false),
    ("iou_mean", |s| s.iou, false),
    ("nsd_mean", |s| s.nsd, false),
    ("hd95_mm_median", |s| s.hd95_mm, true),
    ("assd_mm_median", |s| s.assd_mm, true),
];

/// The evaluation of `rows` (each case's `labels` in turn, in that order); `groups`
/// holds each case's patient, the unit of the bootstrap.
pub fn evaluate_volumes(
    rows: Vec<CaseScores>,
    groups: &[&str],
    labels: &[String],
    eval: &EvalSettings,
) -> VolumeEvaluation {
    assert_eq!(rows.len(), groups.len() * labels.len(), "one row per case and label");
    let scores: Vec<&SurfaceScores> = rows.iter().map(|r| &r.scores).collect();
    let per_label: [Column<SurfaceScores>; 3] =
        [("dice", |s| s.dice, false), ("nsd", |s| s.nsd, false), ("hd95_mm_median", |s| s.hd95_mm, true)];
    let groups: Vec<Option<&str>> = groups.iter().map(|g| Some(*g)).collect();
    let intervals = label_intervals(eval, &groups, &scores, labels, &VOLUME_HEADLINE, &per_label);
    let summaries = labels
        .iter()
        .map(|label| {
            let of: Vec<&SurfaceScores> = rows.iter().filter(|r| r.label == *label).map(|r| &r.scores).collect();
            let col = |f: fn(&SurfaceScores) -> f64| summarize(&of.iter().map(|s| f(s)).collect::<Vec<_>>());
            VolumeLabelSummary {
                label: label.clone(),
                cases: of.len(),
                dice: col(|s| s.dice),
                iou: col(|s| s.iou),
                hd95_mm: col(|s| s.hd95_mm),
                assd_mm: col(|s| s.assd_mm),
                nsd: col(|s| s.nsd),
                reference_ml: col(|s| s.reference_ml),
                predicted_ml: col(|s| s.predicted_ml),
                volume_difference_ml: col(|s| s.volume_difference_ml),
            }
        })
        .collect();
    VolumeEvaluation { nsd_tolerance_mm: eval.nsd_tolerance, labels: summaries, rows, intervals }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(dice: f64, hd95_mm: f64) -> SurfaceScores {
        SurfaceScores {
            dice,
            iou: dice / (2.0 - dice),
            hd95_mm,
            assd_mm: hd95_mm / 2.0,
            nsd: dice,
            reference_ml: 10.0,
            predicted_ml: 10.0 * dice,
            volume_difference_ml: 10.0 * dice - 10.0,
        }
    }

    #[test]
    fn the_headline_pools_labels_and_the_summaries_keep_them_apart() {
        let labels = ["organ".to_string(), "lesion".to_string()];
        let row = |case: &str, label: &str, s| CaseScores {
            case: case.into(),
            source: PathBuf::from(case),
            label: label.into(),
            scores: s,
        };
        let rows = vec![
            row("a", "organ", scores(0.9, 2.0)),
            row("a", "lesion", scores(0.5, 8.0)),
            row("b", "organ", scores(0.8, 4.0)),
            row("b", "lesion", scores(0.3, 10.0)),
        ];
        let eval = EvalSettings { bootstrap: 0, ..Default::default() };
        let e = evaluate_volumes(rows, &["p1", "p2"], &labels, &eval);
        let headline = crate::evaluate::Evaluation::Volumes(e.clone()).headline();
        // mean Dice of the four rows; median HD95 of 2, 4, 8, 10
        assert!((headline["dice_mean"] - 0.625).abs() < 1e-12, "{headline:?}");
        assert!((headline["hd95_mm_median"] - 6.0).abs() < 1e-12, "{headline:?}");
        assert!((e.labels[0].dice.mean - 0.85).abs() < 1e-12 && (e.labels[1].dice.mean - 0.4).abs() < 1e-12);
        assert!((e.labels[1].volume_difference_ml.mean + 6.0).abs() < 1e-12);
        let lesion_dice = e.intervals.iter().find(|m| m.metric == "dice" && m.class.as_deref() == Some("lesion"));
        assert!((lesion_dice.unwrap().value - 0.4).abs() < 1e-12);
    }
}
