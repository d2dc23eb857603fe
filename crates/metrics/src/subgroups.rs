//! Scores by subgroup (`eval.subgroups`): for each level of each attribute (the data
//! crate's [`Levels`]), its patients and images, every bootstrapped headline metric of
//! the test set on the level's images with its patient-bootstrap interval, and the
//! difference from the rest of the test set with its interval and p-value.
//!
//! - **Too small.** The levels of fewer patients than `eval.min_subgroup` are pooled
//!   into one unnamed level, with the smallest other levels added until it has that many
//!   ([`reportable`]): no row names or describes a handful of patients, and none can be
//!   recovered by subtracting the reported levels from the whole test set. A level is
//!   compared with the rest only when the rest also has that many patients. With
//!   `data.group_by = "none"` every image counts as a patient.
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

use crate::evaluate::{EvalSettings, Evaluation, HeadlineStatistics};
use crate::stats::{Bootstrap, Comparison, Interval, units_by_group};
use radrun_data::subgroups::Levels;

/// One level of one subgroup attribute.
#[derive(Debug, Clone, PartialEq)]
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
#[derive(Debug, Clone, PartialEq)]
pub struct LevelMetric {
    pub metric: String,
    pub value: f64,
    pub interval: Option<Interval>,
    /// The level's value minus the rest's.
    pub difference: Option<f64>,
    pub comparison: Option<Comparison>,
}

/// The scores of every reportable level ([`reportable`]) of `levels` (each holding one
/// level per test image or case, in test order), whose patients are `groups`.
pub fn score_subgroups(
    evaluation: &Evaluation,
    groups: &[Option<&str>],
    levels: &[Levels],
    eval: &EvalSettings,
) -> Vec<SubgroupScore> {
    let statistics = evaluation.headline_statistics();
    let mut scores = Vec::new();
    for attribute in levels {
        assert_eq!(attribute.of_image.len(), groups.len(), "one level per test image");
        for (level, inside) in reportable(attribute, groups, eval.min_subgroup as usize) {
            let rest: Vec<usize> = (0..groups.len()).filter(|i| inside.binary_search(i).is_err()).collect();
            let named = (attribute.name.clone(), level);
            scores.push(score_level(named, &statistics, groups, (&inside, &rest), eval));
        }
    }
    scores
}

/// The images (ascending) of `images`' patients, as resampling units.
fn units_of(groups: &[Option<&str>], images: &[usize]) -> Vec<Vec<usize>> {
    let of: Vec<Option<&str>> = images.iter().map(|&i| groups[i]).collect();
    units_by_group(&of).into_iter().map(|u| u.into_iter().map(|k| images[k]).collect()).collect()
}

/// The levels of `attribute` that may be reported, each with its images (ascending):
/// those of at least `minimum` patients by name, and the others pooled into one unnamed
/// level, to which the smallest named levels are added until it holds `minimum`
/// patients. No group of fewer patients can then be recovered by subtracting the
/// reported levels from the whole test set, and no name of a small level is written.
fn reportable(attribute: &Levels, groups: &[Option<&str>], minimum: usize) -> Vec<(String, Vec<usize>)> {
    let mut large: Vec<(String, Vec<usize>, usize)> = Vec::new();
    let mut small: Vec<usize> = Vec::new();
    let mut small_levels = 0;
    for level in &attribute.order {
        let images: Vec<usize> = (0..groups.len()).filter(|&i| attribute.of_image[i] == *level).collect();
        match units_of(groups, &images).len() {
            0 => {}
            n if n < minimum => {
                small.extend(images);
                small_levels += 1;
            }
            n => large.push((level.clone(), images, n)),
        }
    }
    if small_levels == 0 {
        return large.into_iter().map(|(level, images, _)| (level, images)).collect();
    }
    let mut merged = Vec::new();
    while units_of(groups, &small).len() < minimum {
        let Some(smallest) = (0..large.len()).min_by_key(|&k| large[k].2) else { break };
        let (level, images, _) = large.remove(smallest);
        small.extend(images);
        merged.push(level);
    }
    small.sort_unstable();
    let with = if merged.is_empty() { String::new() } else { format!(", pooled with {}", merged.join(", ")) };
    let pooled = format!("other: {small_levels} level(s) of fewer than {minimum} patients each{with}");
    large.into_iter().map(|(level, images, _)| (level, images)).chain([(pooled, small)]).collect()
}

/// The score of the level `(subgroup, level)`: its `inside` images against the `rest`
/// of the test set.
fn score_level(
    (subgroup, level): (String, String),
    statistics: &HeadlineStatistics,
    groups: &[Option<&str>],
    (inside, rest): (&[usize], &[usize]),
    eval: &EvalSettings,
) -> SubgroupScore {
    let minimum = eval.min_subgroup as usize;
    let bootstrap = Bootstrap { resamples: eval.bootstrap, confidence: eval.confidence, seed: eval.bootstrap_seed };
    let (level_units, rest_units) = (units_of(groups, inside), units_of(groups, rest));
    let mut score = SubgroupScore { subgroup, level, patients: None, images: None, metrics: Vec::new(), note: None };
    if level_units.len() < minimum {
        score.note = Some(format!("fewer than {minimum} patients: not scored"));
        return score;
    }
    score.patients = Some(level_units.len());
    score.images = Some(inside.len());
    let values = (statistics.of)(inside);
    let n = values.len();
    let intervals = if eval.bootstrap > 0 { bootstrap.intervals(&level_units, &statistics.of) } else { vec![None; n] };
    let compared = rest_units.len() >= minimum;
    let rest_values = if compared { (statistics.of)(rest) } else { vec![None; n] };
    let comparisons = if compared && eval.bootstrap > 0 {
        bootstrap.compare(&level_units, &rest_units, &statistics.of)
    } else {
        vec![None; n]
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
    score
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
        assert_eq!(scores.len(), 2, "a level without images is left out");
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
    }

    #[test]
    fn small_levels_are_pooled_unnamed_with_the_smallest_others_until_large_enough() {
        let (evaluation, mut levels) = evaluation();
        // level "a": 20 patients; "b": 17; "rare": 3
        for (i, level) in levels[0].of_image.iter_mut().enumerate() {
            *level = match i {
                0..20 => "a",
                20..37 => "b",
                _ => "rare",
            }
            .to_string();
        }
        levels[0].order = vec!["a".into(), "b".into(), "rare".into()];
        let eval = EvalSettings { bootstrap: 0, min_subgroup: 10, ..Default::default() };
        let scores = score_subgroups(&evaluation, &vec![None; 40], &levels, &eval);
        let names: Vec<&str> = scores.iter().map(|s| s.level.as_str()).collect();
        // "rare" alone (3) is too small and would be the whole set minus "a" and "b":
        // "b", the smallest, joins it
        assert_eq!(names, ["a", "other: 1 level(s) of fewer than 10 patients each, pooled with b"]);
        assert_eq!(scores[1].patients, Some(20));
        assert!(scores.iter().all(|s| !s.level.contains("rare")));
    }

    #[test]
    fn a_level_whose_rest_is_too_small_is_scored_but_not_compared() {
        let (evaluation, levels) = evaluation();
        let eval = EvalSettings { bootstrap: 0, min_subgroup: 20, ..Default::default() };
        let mut groups: Vec<Option<&str>> = vec![None; 40];
        // the second level's 20 images are 5 patients of 4 images: too few, pooled
        // with the first, which leaves no rest
        let names = ["p1", "p2", "p3", "p4", "p5"];
        for (i, group) in groups.iter_mut().enumerate().skip(20) {
            *group = Some(names[(i - 20) / 4]);
        }
        let scores = score_subgroups(&evaluation, &groups, &levels, &eval);
        assert_eq!(scores.len(), 1);
        assert_eq!((scores[0].patients, scores[0].images), (Some(25), Some(40)));
        assert!(scores[0].metrics.iter().all(|m| m.difference.is_none() && m.comparison.is_none()));
        assert!(scores[0].note.as_deref().unwrap().contains("the rest has fewer than 20"));
    }
}
