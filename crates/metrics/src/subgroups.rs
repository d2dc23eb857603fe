//! Scores by subgroup (`eval.subgroups`): for each level of each attribute (the data
//! crate's [`Levels`]), its patients and images, every bootstrapped headline metric of
//! the test set on the level's images with its patient-bootstrap interval, and the
//! difference from the rest of the test set with its interval and p-value.
//!
//! - **Too small.** A level of fewer patients than `eval.min_subgroup` is listed as too
//!   small: neither scored nor counted, so that no row describes a handful of patients.
//!   A level is compared with the rest only when the rest also has that many patients.
//! - **Intervals.** As the test set's ([`crate::stats::Bootstrap::intervals`]): whole
//!   patients resampled within the level, `eval.bootstrap` times.
//! - **Difference from the rest.** [`crate::stats::Bootstrap::compare`]: the level's and
//!   the rest's patients resampled independently; the percentile interval of the
//!   difference (level minus rest) and a two-sided bootstrap p-value. The p-values are
//!   not adjusted for the number of comparisons. An attribute that differs between the
//!   images of one patient (a scanner, a file format) can put that patient on both
//!   sides; the comparison then treats the two sides as independent.
//! - **Patients.** The test set's groups (`data.group_by`); an image without one is a
//!   patient of its own.

use radrun_data::subgroups::Levels;
use serde::Serialize;

use crate::evaluate::{EvalSettings, Evaluation};
use crate::stats::{Bootstrap, Comparison, Interval, units_by_group};

/// One level of one subgroup attribute.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SubgroupScore {
    /// The attribute (a DICOM keyword or a column).
    pub subgroup: String,
    pub level: String,
    /// None for a level too small to report.
    pub patients: Option<usize>,
    pub images: Option<usize>,
    pub metrics: Vec<LevelMetric>,
    /// Why the level is not scored or not compared, in words.
    pub note: Option<String>,
}

/// A headline metric on a level's images.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LevelMetric {
    pub metric: String,
    pub value: f64,
    pub interval: Option<Interval>,
    /// The level's value minus the rest's.
    pub difference: Option<f64>,
    pub comparison: Option<Comparison>,
}

/// The scores of every level of `levels` (each holding one level per test image or
/// case, in test order), whose patients are `groups`.
pub fn score_subgroups(
    evaluation: &Evaluation,
    groups: &[Option<&str>],
    levels: &[Levels],
    eval: &EvalSettings,
) -> Vec<SubgroupScore> {
    let statistics = evaluation.headline_statistics();
    let minimum = eval.min_subgroup as usize;
    let bootstrap = Bootstrap { resamples: eval.bootstrap, confidence: eval.confidence, seed: eval.bootstrap_seed };
    let mut scores = Vec::new();
    for attribute in levels {
        assert_eq!(attribute.of_image.len(), groups.len(), "one level per test image");
        for level in &attribute.order {
            let (inside, rest): (Vec<usize>, Vec<usize>) =
                (0..groups.len()).partition(|&i| attribute.of_image[i] == *level);
            let units = |images: &[usize]| -> Vec<Vec<usize>> {
                let of: Vec<Option<&str>> = images.iter().map(|&i| groups[i]).collect();
                units_by_group(&of).into_iter().map(|u| u.into_iter().map(|k| images[k]).collect()).collect()
            };
            let (level_units, rest_units) = (units(&inside), units(&rest));
            let mut score = SubgroupScore {
                subgroup: attribute.name.clone(),
                level: level.clone(),
                patients: None,
                images: None,
                metrics: Vec::new(),
                note: None,
            };
            if level_units.len() < minimum {
                score.note = Some(format!("fewer than {minimum} patients: not scored"));
                scores.push(score);
                continue;
            }
            score.patients = Some(level_units.len());
            score.images = Some(inside.len());
            let values = (statistics.of)(&inside);
            let intervals = if eval.bootstrap > 0 {
                bootstrap.intervals(&level_units, &statistics.of)
            } else {
                vec![None; values.len()]
            };
            let compared = rest_units.len() >= minimum;
            let rest_values = if compared { (statistics.of)(&rest) } else { vec![None; values.len()] };
            let comparisons = if compared && eval.bootstrap > 0 {
                bootstrap.compare(&level_units, &rest_units, &statistics.of)
            } else {
                vec![None; values.len()]
            };
            if !compared {
                score.note = Some(format!("the rest has fewer than {minimum} patients: not compared"));
            }
            for (k, name) in statistics.names.iter().enumerate() {
                let Some(value) = values[k] else { continue };
                score.metrics.push(LevelMetric {
                    metric: name.to_string(),
                    value,
                    interval: intervals[k],
                    difference: rest_values[k].map(|r| value - r),
                    comparison: comparisons[k],
                });
            }
            scores.push(score);
        }
    }
    scores
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::{Classified, Decisions, classify};

    /// Two classes, 40 patients of one image each: the first 20 of level "a", all
    /// right; the others of level "b", right one time in two.
    fn evaluation() -> (Evaluation, Vec<Levels>) {
        let classes = vec!["normal".to_string(), "nodule".to_string()];
        let truth: Vec<usize> = (0..40).map(|i| i % 2).collect();
        let probabilities: Vec<Vec<f32>> = (0..40)
            .map(|i| {
                let right = i < 20 || i % 4 < 2;
                let p = if (i % 2 == 1) == right { 0.8 } else { 0.2 };
                vec![1.0 - p, p]
            })
            .collect();
        let test = Classified { files: vec![Default::default(); 40], truth, probabilities };
        let eval = EvalSettings { threshold: crate::evaluate::Threshold::Value(0.5), ..Default::default() };
        let groups = vec![None; 40];
        let e = classify(&classes, test, Decisions::FromValidation(Box::new(|| (vec![], vec![]))), &groups, &eval);
        let of_image: Vec<String> = (0..40).map(|i| if i < 20 { "a" } else { "b" }.to_string()).collect();
        let levels = Levels { name: "site".into(), of_image, order: vec!["a".into(), "b".into(), "c".into()] };
        (Evaluation::Classification(Box::new(e.unwrap())), vec![levels])
    }

    #[test]
    fn each_level_is_scored_and_compared_with_the_rest() {
        let (evaluation, levels) = evaluation();
        let groups = vec![None; 40];
        let eval = EvalSettings { bootstrap: 500, min_subgroup: 10, ..Default::default() };
        let scores = score_subgroups(&evaluation, &groups, &levels, &eval);
        assert_eq!(scores.len(), 3);
        let metric = |s: &SubgroupScore, name: &str| s.metrics.iter().find(|m| m.metric == name).cloned().unwrap();
        let a = metric(&scores[0], "accuracy");
        assert_eq!((scores[0].patients, scores[0].images), (Some(20), Some(20)));
        assert_eq!(a.value, 1.0);
        assert_eq!(a.difference, Some(0.5));
        let comparison = a.comparison.unwrap();
        // the level is always right, the rest right on 10 of 20: every resampled
        // difference is above 0, so p is the smallest possible, 2 / (n + 1)
        assert!(comparison.interval.lower > 0.0 && comparison.interval.upper <= 1.0, "{comparison:?}");
        assert!((comparison.p_value - 2.0 / 501.0).abs() < 1e-12, "{comparison:?}");
        assert_eq!(metric(&scores[1], "accuracy").value, 0.5);
        assert_eq!(metric(&scores[1], "threshold_sensitivity").value, 0.5);
        // a level without images is too small, and says so without a count
        assert_eq!((scores[2].patients, scores[2].images), (None, None));
        assert!(scores[2].metrics.is_empty() && scores[2].note.as_deref().unwrap().contains("fewer than 10"));
    }

    #[test]
    fn a_level_whose_rest_is_too_small_is_scored_but_not_compared() {
        let (evaluation, levels) = evaluation();
        let eval = EvalSettings { bootstrap: 0, min_subgroup: 20, ..Default::default() };
        let mut groups: Vec<Option<&str>> = vec![None; 40];
        // the second level's 20 images are 5 patients of 4 images
        let names = ["p1", "p2", "p3", "p4", "p5"];
        for (i, group) in groups.iter_mut().enumerate().skip(20) {
            *group = Some(names[(i - 20) / 4]);
        }
        let scores = score_subgroups(&evaluation, &groups, &levels, &eval);
        assert_eq!(scores[0].patients, Some(20));
        assert!(scores[0].metrics.iter().all(|m| m.difference.is_none() && m.comparison.is_none()));
        assert!(scores[0].note.as_deref().unwrap().contains("the rest has fewer than 20"));
        assert_eq!(scores[1].patients, None, "5 patients are too few");
    }
}
