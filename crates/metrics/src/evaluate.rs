//! Test-set evaluation of a trained run: computes what the run folder then writes. For
//! classification the metrics report and the predictions; for segmentation the
//! per-image scores, their summaries per label, predicted masks and overlays; for both,
//! bootstrap confidence intervals of the headline metrics (the `[eval]` section).

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::calibration::{
    CALIBRATION_METRICS, CalibrationEvaluation, Headline, Outcomes, Scale, calibrate, class_logits, fit_temperature,
    floored_logit, label_logits, scaled, sigmoid,
};
use crate::stats::{
    Bootstrap, DelongAuc, Interval, threshold_for_sensitivity, units_by_group, wilson, youden_threshold,
};
use crate::surface::SurfaceScores;
use crate::volumes::{VOLUME_HEADLINE, VolumeEvaluation};
use crate::{
    ClassMetrics, ClassificationReport, MultilabelReport, SegmentationScores, Summary, argmax, classification_report,
    multilabel_report, segmentation_scores, summarize, surface,
};
use image::{GrayImage, Rgb, RgbImage};
use radrun_data::SettingError;
use radrun_data::paths::distinct_stems;
use radrun_data::subgroups::Subgroup;
use radrun_data::{Dataset, Sample, Split, Target};
use serde::{Deserialize, Serialize};

/// The `[eval]` section: how the test set is summarized.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct EvalSettings {
    /// Bootstrap resamples for the confidence intervals of the test metrics (0: none).
    #[schemars(range(max = 100000))]
    pub bootstrap: u32,
    /// Coverage of the intervals.
    #[schemars(extend("exclusiveMinimum" = 0.5, "exclusiveMaximum" = 1))]
    pub confidence: f64,
    /// Seed of the resampling: the same predictions always give the same intervals.
    pub bootstrap_seed: u64,
    /// Two-class tasks: how the decision threshold on the positive class's probability
    /// is chosen on the validation images, before the test set is looked at.
    pub threshold: Threshold,
    /// Two-class tasks: the class called positive; "auto": the class that is not named
    /// like a negative finding ("normal", "negative", "healthy", "benign", "control",
    /// "no_finding") when exactly one is, else the second class in name order.
    pub positive_class: String,
    /// Volumes: the share of a sliding window its neighbour covers, in [0, 1).
    #[schemars(range(min = 0), extend("exclusiveMaximum" = 1))]
    pub overlap: f64,
    /// Volumes: how overlapping windows are weighted.
    pub blend: Blend,
    /// Volumes: test-time mirroring along the axes training mirrored (all three).
    pub mirror: bool,
    /// Volumes: the tolerance of the normalised surface distance, in mm.
    #[schemars(extend("exclusiveMinimum" = 0))]
    pub nsd_tolerance: f64,
    /// Volumes: labels whose prediction keeps only its largest connected component
    /// (26-connected), nnU-Net's optional post-processing; none by default.
    pub keep_largest_component: Vec<u32>,
    /// Volume segmentation: what each epoch's validation reads.
    pub val_mode: ValMode,
    /// Two-class tasks and each label of multi-label ones: the thresholds of the decision
    /// curve ([`crate::calibration`]).
    pub decision_curve: DecisionCurveSettings,
    /// Classification and multilabel: whether the test probabilities are also reported
    /// after a recalibration fitted on the validation images.
    pub calibrate: Calibrate,
    /// Attributes whose subgroups of the test set are each scored and compared with the
    /// rest ([`crate::subgroups`]): DICOM attributes and table columns.
    pub subgroups: Vec<Subgroup>,
    /// The levels of fewer patients than this are pooled into one unnamed level (see
    /// [`crate::subgroups`]); at least 5 ([`MIN_SUBGROUP_FLOOR`]).
    pub min_subgroup: u32,
}

/// The smallest `eval.min_subgroup`: below it a subgroup's scores could describe one
/// patient.
pub const MIN_SUBGROUP_FLOOR: u32 = 5;

/// `eval.calibrate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Calibrate {
    /// The network's probabilities only.
    None,
    /// Temperature scaling (Guo et al. 2017): one temperature fitted on the validation
    /// images; the calibration metrics and decision curves also of the scaled test
    /// probabilities.
    Temperature,
}

/// `eval.decision_curve`: net benefit from `from` to `to` by `step`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionCurveSettings {
    pub from: f64,
    pub to: f64,
    pub step: f64,
}

impl Default for DecisionCurveSettings {
    fn default() -> Self {
        Self { from: 0.01, to: 0.99, step: 0.01 }
    }
}

/// What a volume segmentation validates on after each epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ValMode {
    /// Fixed patches of the validation cases, as nnU-Net validates while training: fast.
    Patches,
    /// Each validation case whole, by the sliding window of the test cases (without
    /// mirroring), as MONAI's training scripts validate: slower, the Dice a test reports.
    Volumes,
}

/// How the overlapping windows of a sliding-window inference are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Blend {
    /// A Gaussian centred on the window, sigma 1/8 of the window (nnU-Net, MONAI).
    Gaussian,
    /// Every voxel of a window weighs the same.
    Constant,
}

impl Default for EvalSettings {
    fn default() -> Self {
        Self {
            bootstrap: 2000,
            confidence: 0.95,
            bootstrap_seed: 1,
            threshold: Threshold::Youden,
            positive_class: "auto".into(),
            overlap: 0.5,
            blend: Blend::Gaussian,
            mirror: true,
            nsd_tolerance: 2.0,
            keep_largest_component: Vec::new(),
            val_mode: ValMode::Patches,
            decision_curve: DecisionCurveSettings::default(),
            calibrate: Calibrate::None,
            subgroups: Vec::new(),
            min_subgroup: 20,
        }
    }
}

/// How the decision threshold of a two-class task is chosen on validation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    /// `"youden"`: the threshold with the largest sensitivity + specificity - 1.
    Youden,
    /// `{ sensitivity = 0.95 }`: the highest threshold that keeps this sensitivity.
    Sensitivity(f64),
    /// A number: this probability.
    Value(f64),
}

impl Serialize for Threshold {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            Threshold::Youden => s.serialize_str("youden"),
            Threshold::Value(v) => s.serialize_f64(*v),
            Threshold::Sensitivity(v) => {
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry("sensitivity", v)?;
                map.end()
            }
        }
    }
}

impl schemars::JsonSchema for Threshold {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Threshold".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "anyOf": [
                { "const": "youden" },
                { "type": "number", "minimum": 0, "maximum": 1 },
                {
                    "type": "object",
                    "properties": { "sensitivity": { "type": "number", "exclusiveMinimum": 0, "maximum": 1 } },
                    "required": ["sensitivity"],
                    "additionalProperties": false
                }
            ]
        })
    }
}

impl<'de> Deserialize<'de> for Threshold {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{self, MapAccess, Visitor};
        struct ThresholdVisitor;
        impl<'de> Visitor<'de> for ThresholdVisitor {
            type Value = Threshold;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("\"youden\", a table { sensitivity = 0.95 } or a probability such as 0.5")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Threshold, E> {
                match v {
                    "youden" => Ok(Threshold::Youden),
                    _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Threshold, E> {
                Ok(Threshold::Value(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Threshold, E> {
                Ok(Threshold::Value(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Threshold, E> {
                Ok(Threshold::Value(v as f64))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Threshold, A::Error> {
                let mut sensitivity = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "sensitivity" => sensitivity = Some(map.next_value::<f64>()?),
                        other => return Err(de::Error::unknown_field(other, &["sensitivity"])),
                    }
                }
                sensitivity.map(Threshold::Sensitivity).ok_or_else(|| de::Error::missing_field("sensitivity"))
            }
        }
        d.deserialize_any(ThresholdVisitor)
    }
}

/// Class names that mean "no finding": the other class of a two-class task is positive.
const NEGATIVE_NAMES: [&str; 7] = ["normal", "negative", "healthy", "benign", "control", "no_finding", "no finding"];

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
        if !(0.0..1.0).contains(&self.overlap) {
            return Err(SettingError::new(
                "eval.overlap",
                format!("must be at least 0 and below 1 (a share of the window; 0.5 is usual), found {}", self.overlap),
            ));
        }
        if !(self.nsd_tolerance > 0.0 && self.nsd_tolerance.is_finite()) {
            return Err(SettingError::new(
                "eval.nsd_tolerance",
                format!("must be a distance above 0 mm (e.g. 2.0), found {}", self.nsd_tolerance),
            ));
        }
        let DecisionCurveSettings { from, to, step } = self.decision_curve;
        let points = (to - from) / step;
        if !(from > 0.0 && from < to && to < 1.0 && step > 0.0 && points < 10_000.0) {
            return Err(SettingError::new(
                "eval.decision_curve",
                format!(
                    "needs 0 < from < to < 1 and a step above 0 giving at most 10000 thresholds, e.g. {{ from = 0.01, \
                     to = 0.99, step = 0.01 }}; found {{ from = {from}, to = {to}, step = {step} }}"
                ),
            ));
        }
        self.validate_subgroups()?;
        if self.keep_largest_component.contains(&0) {
            return Err(SettingError::new(
                "eval.keep_largest_component",
                "lists foreground labels (1 and up); 0 is the background: remove it",
            ));
        }
        match self.threshold {
            Threshold::Sensitivity(s) if !(s > 0.0 && s <= 1.0) => Err(SettingError::new(
                "eval.threshold",
                format!("the target sensitivity must be above 0 and at most 1, found {s}"),
            )),
            Threshold::Value(v) if !(0.0..=1.0).contains(&v) => Err(SettingError::new(
                "eval.threshold",
                format!("a threshold is a probability between 0 and 1, found {v}"),
            )),
            _ => Ok(()),
        }
    }

    /// Each `eval.subgroups` entry readable, none twice, and `eval.min_subgroup` at least
    /// its floor.
    fn validate_subgroups(&self) -> Result<(), SettingError> {
        for (i, subgroup) in self.subgroups.iter().enumerate() {
            subgroup.validate("eval.subgroups")?;
            if self.subgroups[..i].iter().any(|s| s.name() == subgroup.name()) {
                return Err(SettingError::new(
                    "eval.subgroups",
                    format!("names {} twice: keep one entry for it", subgroup.name()),
                ));
            }
        }
        if self.min_subgroup < MIN_SUBGROUP_FLOOR {
            return Err(SettingError::new(
                "eval.min_subgroup",
                format!(
                    "must be at least {MIN_SUBGROUP_FLOOR} patients (below, a subgroup's scores could describe one \
                     patient; 20 is the default), found {}",
                    self.min_subgroup
                ),
            ));
        }
        Ok(())
    }

    /// The keys only a volume run reads that differ from their defaults.
    pub fn volume_keys_set(&self) -> Vec<&'static str> {
        let d = Self::default();
        [
            ("overlap", self.overlap != d.overlap),
            ("blend", self.blend != d.blend),
            ("mirror", self.mirror != d.mirror),
            ("nsd_tolerance", self.nsd_tolerance != d.nsd_tolerance),
            ("keep_largest_component", self.keep_largest_component != d.keep_largest_component),
            ("val_mode", self.val_mode != d.val_mode),
        ]
        .into_iter()
        .filter(|(_, differs)| *differs)
        .map(|(key, _)| key)
        .collect()
    }

    /// The positive class of a two-class task (see `positive_class`).
    pub fn positive(&self, classes: &[String]) -> Result<usize, SettingError> {
        if self.positive_class != "auto" {
            return classes.iter().position(|c| *c == self.positive_class).ok_or_else(|| {
                SettingError::new(
                    "eval.positive_class",
                    format!("\"{}\" is not a class of the dataset ({})", self.positive_class, classes.join(", ")),
                )
            });
        }
        let negative: Vec<usize> =
            (0..classes.len()).filter(|&c| NEGATIVE_NAMES.contains(&classes[c].to_lowercase().as_str())).collect();
        Ok(if negative.len() == 1 { 1 - negative[0] } else { 1 })
    }
}

/// A two-class task's decision rule and what it gives on the test images.
#[derive(Debug, Clone, Serialize)]
pub struct OperatingPoint {
    pub positive_class: String,
    /// How the threshold was chosen (`eval.threshold`).
    pub rule: Threshold,
    /// Images whose positive-class probability is at least this are called positive.
    pub threshold: f64,
    /// With temperature scaling: the same threshold on the calibrated probabilities (the
    /// rule chosen on the calibrated validation probabilities gives it: the scaling keeps
    /// their order; a fixed `eval.threshold` is read as a calibrated probability).
    pub threshold_calibrated: Option<f64>,
    pub true_positives: u64,
    pub false_positives: u64,
    pub true_negatives: u64,
    pub false_negatives: u64,
    /// sensitivity, specificity, ppv and npv with Wilson intervals (`eval.confidence`).
    pub metrics: Vec<MetricInterval>,
}

/// A validation split's classes and probabilities, computed when called.
pub type ValidationRows<'a> = Box<dyn FnOnce() -> (Vec<usize>, Vec<Vec<f32>>) + 'a>;

/// Where a test evaluation's decisions come from: a two-class task's threshold and the
/// temperature of `eval.calibrate = "temperature"`.
pub enum Decisions<'a> {
    /// Chosen here on the validation split: its classes and probabilities, asked for
    /// only when a decision needs them.
    FromValidation(ValidationRows<'a>),
    /// Chosen by the run on its own validation split and applied as they are: an
    /// external set is scored at the run's decisions, never re-tuned on itself.
    Chosen(Chosen),
}

/// The decisions a run chose on its validation split (see [`Decisions::Chosen`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Chosen {
    /// Two classes: the threshold on the network's positive-class probability.
    pub threshold: Option<f64>,
    /// The same threshold on the calibrated probabilities (with a temperature).
    pub threshold_calibrated: Option<f64>,
    pub temperature: Option<f64>,
}

/// The threshold on the positive class's probability by the rule of `eval.threshold`,
/// chosen on the `validation` classes and probabilities, with the same threshold on the
/// calibrated scale when there is a `temperature`.
fn choose_threshold(
    eval: &EvalSettings,
    positive: usize,
    validation: (&[usize], &[Vec<f32>]),
    temperature: Option<f64>,
) -> Option<(f64, Option<f64>)> {
    let val_scores: Vec<f64> = validation.1.iter().map(|p| f64::from(p[positive])).collect();
    let val_positive: Vec<bool> = validation.0.iter().map(|&t| t == positive).collect();
    let threshold = match eval.threshold {
        Threshold::Youden => youden_threshold(&val_scores, &val_positive)?,
        Threshold::Sensitivity(target) => threshold_for_sensitivity(&val_scores, &val_positive, target)?,
        // a calibrated probability, on the network's scale: logit(p) = T x logit(p')
        Threshold::Value(v) => temperature.map_or(v, |t| sigmoid(t * floored_logit(v))),
    };
    // on the calibrated scale: the value set, or the scaled probability of the
    // validation image the rule chose (as each test image is scaled)
    let threshold_calibrated = temperature.map(|t| match eval.threshold {
        Threshold::Value(v) => v,
        _ => {
            let chosen = validation.1.iter().find(|p| f64::from(p[positive]) == threshold).cloned();
            let row = chosen.unwrap_or_else(|| {
                let mut row = vec![(1.0 - threshold) as f32; 2];
                row[positive] = threshold as f32;
                row
            });
            f64::from(scaled(&class_logits(&row), t)[positive] as f32)
        }
    });
    Some((threshold, threshold_calibrated))
}

/// Test sensitivity, specificity, PPV and NPV at `threshold` (with its calibrated
/// value), with Wilson score intervals.
fn operating_point(
    eval: &EvalSettings,
    positive: usize,
    classes: &[String],
    (threshold, threshold_calibrated): (f64, Option<f64>),
    test: (&[usize], &[Vec<f32>]),
) -> OperatingPoint {
    let [tp, fp, tn, fn_] = confusion_at(positive, threshold, test, 0..test.0.len());
    let class = classes[positive].clone();
    let metrics =
        [("sensitivity", tp, tp + fn_), ("specificity", tn, tn + fp), ("ppv", tp, tp + fp), ("npv", tn, tn + fn_)]
            .into_iter()
            .filter(|(_, _, n)| *n > 0)
            .map(|(name, k, n)| MetricInterval {
                metric: format!("threshold_{name}"),
                class: Some(class.clone()),
                value: k as f64 / n as f64,
                interval: wilson(k, n, eval.confidence),
            })
            .collect();
    OperatingPoint {
        positive_class: class,
        rule: eval.threshold,
        threshold,
        threshold_calibrated,
        true_positives: tp,
        false_positives: fp,
        true_negatives: tn,
        false_negatives: fn_,
        metrics,
    }
}

/// True and false positives, true and false negatives of the test `images` (repeats
/// counted) when the `positive` class's probability is called positive at `threshold`.
fn confusion_at(
    positive: usize,
    threshold: f64,
    (truth, probabilities): (&[usize], &[Vec<f32>]),
    images: impl IntoIterator<Item = usize>,
) -> [u64; 4] {
    let mut counts = [0u64; 4];
    for i in images {
        let cell = match (f64::from(probabilities[i][positive]) >= threshold, truth[i] == positive) {
            (true, true) => 0,
            (true, false) => 1,
            (false, false) => 2,
            (false, true) => 3,
        };
        counts[cell] += 1;
    }
    counts
}

/// The headline metrics of classification that are bootstrapped.
const CLASSIFICATION_HEADLINE: [&str; 4] = ["accuracy", "balanced_accuracy", "macro_f1", "macro_roc_auc"];

/// The values of [`CLASSIFICATION_HEADLINE`] in a report.
fn classification_headline(r: &ClassificationReport) -> Vec<Option<f64>> {
    vec![Some(r.accuracy), Some(r.balanced_accuracy), Some(r.macro_avg.f1), r.macro_avg.roc_auc]
}

/// The classification report of the test `images` (repeats counted).
fn subset_report(
    classes: &[String],
    truth: &[usize],
    probabilities: &[Vec<f32>],
    images: &[usize],
) -> ClassificationReport {
    let t: Vec<usize> = images.iter().map(|&i| truth[i]).collect();
    let p: Vec<Vec<f32>> = images.iter().map(|&i| probabilities[i].clone()).collect();
    classification_report(classes, &t, &p)
}

/// The headline metrics of multi-label classification that are bootstrapped.
const MULTILABEL_HEADLINE: [&str; 4] = ["subset_accuracy", "label_accuracy", "macro_f1", "macro_roc_auc"];

/// The values of [`MULTILABEL_HEADLINE`] in a report.
fn multilabel_headline(r: &MultilabelReport) -> Vec<Option<f64>> {
    vec![Some(r.subset_accuracy), Some(r.label_accuracy), Some(r.macro_avg.f1), r.macro_avg.roc_auc]
}

/// The multi-label report of the test `images` (repeats counted).
fn subset_multilabel_report(
    labels: &[String],
    truth: &[Vec<bool>],
    probabilities: &[Vec<f32>],
    images: &[usize],
) -> MultilabelReport {
    let t: Vec<Vec<bool>> = images.iter().map(|&i| truth[i].clone()).collect();
    let p: Vec<Vec<f32>> = images.iter().map(|&i| probabilities[i].clone()).collect();
    multilabel_report(labels, &t, &p)
}

/// The names of the bootstrapped metrics: `headline` ones, then for each class its
/// [`per_class_values`].
fn interval_names(headline: &[&str], classes: &[String]) -> Vec<(String, Option<String>)> {
    let mut names: Vec<(String, Option<String>)> = headline.iter().map(|m| (m.to_string(), None)).collect();
    for class in classes {
        for metric in ["sensitivity", "specificity", "f1", "roc_auc"] {
            names.push((metric.to_string(), Some(class.clone())));
        }
    }
    names
}

/// Sensitivity, specificity, F1 and AUC of a class on a resample of `images` images;
/// undefined (left out of the bootstrap) when the resample has no positive or no
/// negative image of the class.
fn per_class_values(m: &ClassMetrics, images: u64) -> [Option<f64>; 4] {
    let (positives, negatives) = (m.support > 0, m.support < images);
    [positives.then_some(m.recall), negatives.then_some(m.specificity), positives.then_some(m.f1), m.roc_auc]
}

/// DeLong's interval of the AUC of `scores` for `positive` images, as `class`'s
/// `roc_auc_delong`; none with fewer than 2 positive or negative images.
fn delong_interval(eval: &EvalSettings, class: &str, scores: &[f64], positive: &[bool]) -> Option<MetricInterval> {
    let auc = DelongAuc::of(scores, positive)?;
    Some(MetricInterval {
        metric: "roc_auc_delong".into(),
        class: Some(class.to_string()),
        value: auc.auc,
        interval: Some(auc.interval(eval.confidence)),
    })
}

/// The probability column `c` of `probabilities`.
fn column(probabilities: &[Vec<f32>], c: usize) -> Vec<f64> {
    probabilities.iter().map(|p| f64::from(p[c])).collect()
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
pub(crate) fn with_intervals(
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
    Classification(Box<ClassificationEvaluation>),
    Multilabel(Box<MultilabelEvaluation>),
    Segmentation(SegmentationEvaluation),
    Volumes(VolumeEvaluation),
}

pub struct MultilabelEvaluation {
    pub report: MultilabelReport,
    pub intervals: Vec<MetricInterval>,
    /// Each label's calibration and decision curve.
    pub calibration: CalibrationEvaluation,
    /// The same of the probabilities scaled by `temperature` (`eval.calibrate`).
    pub recalibrated: Option<CalibrationEvaluation>,
    /// The temperature fitted on the validation images (one for every label).
    pub temperature: Option<f64>,
    pub labels: Vec<String>,
    pub files: Vec<PathBuf>,
    pub truth: Vec<Vec<bool>>,
    pub probabilities: Vec<Vec<f32>>,
}

pub struct ClassificationEvaluation {
    pub report: ClassificationReport,
    pub intervals: Vec<MetricInterval>,
    /// Two-class tasks: the threshold chosen on validation and its test results.
    pub operating_point: Option<OperatingPoint>,
    /// The positive class's calibration and decision curve (two classes), or each
    /// class's and the top label's calibration.
    pub calibration: CalibrationEvaluation,
    /// The same of the probabilities scaled by `temperature` (`eval.calibrate`).
    pub recalibrated: Option<CalibrationEvaluation>,
    /// The temperature fitted on the validation images; none without `eval.calibrate`
    /// or when no finite one exists.
    pub temperature: Option<f64>,
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
    /// The image's file name without extension, as written, told apart from another
    /// test image's of the same name by its folders (see [`distinct_stems`]).
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

/// What a trained network predicts for a dataset's splits, in file order: what the test
/// set is scored on. The train crate's `Predictor` runs networks for it; scoring needs
/// only the numbers.
pub trait Predictions {
    /// The dataset the predictions are of.
    fn dataset(&self) -> &Dataset;
    /// Class probabilities, one row per image of `split`: softmax (one class per image),
    /// or each label's sigmoid (multi-label).
    fn class_probabilities(&self, split: &Split) -> Vec<Vec<f32>>;
    /// The predicted label mask of each image of `split` (row-major, label indices).
    fn masks(&self, split: &Split) -> Vec<Vec<u8>>;
}

/// Scores the predictions of a dataset's test split, with the decisions (threshold,
/// temperature) `chosen` by a run, or else chosen on the dataset's validation split.
pub fn evaluate(
    predictor: &dyn Predictions,
    eval: &EvalSettings,
    chosen: Option<Chosen>,
) -> Result<Evaluation, SettingError> {
    let dataset = predictor.dataset();
    let groups: Vec<Option<&str>> = dataset.test.samples.iter().map(|s| s.origin.group.as_deref()).collect();
    let decisions = || match chosen {
        Some(chosen) => Decisions::Chosen(chosen),
        None => Decisions::FromValidation(Box::new(|| {
            (dataset.validation.class_labels(), predictor.class_probabilities(&dataset.validation))
        })),
    };
    Ok(match dataset.task {
        radrun_data::Task::Classification => {
            Evaluation::Classification(Box::new(classification(predictor, eval, &groups, decisions())?))
        }
        radrun_data::Task::Multilabel => {
            Evaluation::Multilabel(Box::new(multilabel(predictor, eval, &groups, decisions())))
        }
        radrun_data::Task::Segmentation => Evaluation::Segmentation(segmentation(predictor, eval, &groups)),
    })
}

/// The labels a multi-label sample holds.
fn label_set(sample: &Sample) -> Vec<bool> {
    match &sample.target {
        Target::Labels(present) => present.clone(),
        _ => unreachable!("a multi-label dataset holds label sets"),
    }
}

/// Probabilities in the single precision evaluations hold them in.
fn as_f32(values: Vec<f64>) -> Vec<f32> {
    values.into_iter().map(|v| v as f32).collect()
}

fn multilabel(
    predictor: &dyn Predictions,
    eval: &EvalSettings,
    groups: &[Option<&str>],
    decisions: Decisions,
) -> MultilabelEvaluation {
    let dataset = predictor.dataset();
    let probabilities = predictor.class_probabilities(&dataset.test);
    let truth: Vec<Vec<bool>> = dataset.test.samples.iter().map(label_set).collect();
    let labels = &dataset.classes;
    let names = interval_names(&MULTILABEL_HEADLINE, labels);
    let statistics = |images: &[usize]| -> Vec<Option<f64>> {
        let r = subset_multilabel_report(labels, &truth, &probabilities, images);
        let mut values = multilabel_headline(&r);
        values.extend(r.per_label.iter().flat_map(|m| per_class_values(m, r.images)));
        values
    };
    let mut intervals = with_intervals(eval, groups, names, statistics);
    intervals.extend(labels.iter().enumerate().filter_map(|(c, label)| {
        let positive: Vec<bool> = truth.iter().map(|t| t[c]).collect();
        delong_interval(eval, label, &column(&probabilities, c), &positive)
    }));
    let outcomes = |rows: &[Vec<f32>]| -> Vec<Outcomes> {
        let label = |(c, name): (usize, &String)| Outcomes {
            name: name.clone(),
            probabilities: column(rows, c),
            holds: truth.iter().map(|t| t[c]).collect(),
        };
        labels.iter().enumerate().map(label).collect()
    };
    let (calibration, calibrated) = calibrate(&outcomes(&probabilities), Headline::Labels, eval, groups, Scale::Raw);
    intervals.extend(calibrated);
    let temperature = match (eval.calibrate, decisions) {
        (Calibrate::None, _) => None,
        (Calibrate::Temperature, Decisions::Chosen(chosen)) => chosen.temperature,
        (Calibrate::Temperature, Decisions::FromValidation(_)) => {
            let validation = predictor.class_probabilities(&dataset.validation);
            let decisions = dataset.validation.samples.iter().map(label_set).zip(&validation);
            let rows: Vec<(Vec<f64>, usize)> = decisions
                .flat_map(|(present, p)| {
                    present.into_iter().zip(p).map(|(h, &p)| (label_logits(p).to_vec(), usize::from(!h)))
                })
                .collect();
            fit_temperature(&rows)
        }
    };
    let recalibrated = temperature.map(|t| {
        let scale = |p: &Vec<f32>| p.iter().map(|&v| scaled(&label_logits(v), t)[0] as f32).collect();
        let rows: Vec<Vec<f32>> = probabilities.iter().map(scale).collect();
        let (evaluation, calibrated) = calibrate(&outcomes(&rows), Headline::Labels, eval, groups, Scale::Calibrated);
        intervals.extend(calibrated);
        evaluation
    });
    MultilabelEvaluation {
        report: multilabel_report(labels, &truth, &probabilities),
        intervals,
        calibration,
        recalibrated,
        temperature,
        labels: labels.clone(),
        files: dataset.test.samples.iter().map(|s| s.path.clone()).collect(),
        truth,
        probabilities,
    }
}

impl Evaluation {
    /// The intervals of the headline metrics, kept in status.json.
    pub fn headline_intervals(&self) -> BTreeMap<String, Interval> {
        let intervals = match self {
            Evaluation::Classification(e) => &e.intervals,
            Evaluation::Multilabel(e) => &e.intervals,
            Evaluation::Segmentation(e) => &e.intervals,
            Evaluation::Volumes(e) => &e.intervals,
        };
        intervals
            .iter()
            .filter(|m| m.class.is_none() || m.metric.starts_with("threshold_"))
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
                if let Some(point) = &e.operating_point {
                    headline.insert("threshold".into(), point.threshold);
                    if let Some(calibrated) = point.threshold_calibrated {
                        headline.insert("threshold_calibrated".into(), calibrated);
                    }
                    headline.extend(point.metrics.iter().map(|m| (m.metric.clone(), m.value)));
                }
                headline.extend(calibration_headline(&e.intervals, e.temperature));
                headline
            }
            Evaluation::Multilabel(e) => {
                let r = &e.report;
                let mut headline = BTreeMap::from([
                    ("subset_accuracy".to_string(), r.subset_accuracy),
                    ("label_accuracy".to_string(), r.label_accuracy),
                    ("macro_f1".to_string(), r.macro_avg.f1),
                ]);
                if let Some(auc) = r.macro_avg.roc_auc {
                    headline.insert("macro_roc_auc".into(), auc);
                }
                headline.extend(calibration_headline(&e.intervals, e.temperature));
                headline
            }
            Evaluation::Segmentation(e) => {
                let rows: Vec<&SegmentationScores> = e.rows.iter().map(|r| &r.scores).collect();
                headline_of(&rows, &IMAGE_HEADLINE)
            }
            Evaluation::Volumes(e) => {
                let rows: Vec<&SurfaceScores> = e.rows.iter().map(|r| &r.scores).collect();
                headline_of(&rows, &VOLUME_HEADLINE)
            }
        }
    }
}

/// The value of each of a list of metrics on the test images listed (indices in test
/// order, repeats counted); none where undefined there.
pub type SubsetStatistics<'a> = Box<dyn Fn(&[usize]) -> Vec<Option<f64>> + Sync + 'a>;

/// An evaluation's headline metrics as functions of a subset of its test images (or
/// cases): what a subgroup is scored on.
pub struct HeadlineStatistics<'a> {
    pub names: Vec<&'static str>,
    pub of: SubsetStatistics<'a>,
}

impl Evaluation {
    /// The bootstrapped headline metrics ([`Evaluation::headline_intervals`] without the
    /// calibration ones), as functions of a subset of the test images; two-class tasks
    /// add sensitivity and specificity at the run's threshold.
    pub fn headline_statistics(&self) -> HeadlineStatistics<'_> {
        match self {
            Evaluation::Classification(e) => {
                let mut names = CLASSIFICATION_HEADLINE.to_vec();
                let point = e.operating_point.as_ref().map(|p| {
                    names.extend(["threshold_sensitivity", "threshold_specificity"]);
                    (e.classes.iter().position(|c| *c == p.positive_class).expect("a class"), p.threshold)
                });
                let of = move |images: &[usize]| {
                    let mut values =
                        classification_headline(&subset_report(&e.classes, &e.truth, &e.probabilities, images));
                    if let Some((positive, threshold)) = point {
                        let rows = (&e.truth[..], &e.probabilities[..]);
                        let [tp, fp, tn, fn_] = confusion_at(positive, threshold, rows, images.iter().copied());
                        let share = |k: u64, n: u64| (n > 0).then(|| k as f64 / n as f64);
                        values.extend([share(tp, tp + fn_), share(tn, tn + fp)]);
                    }
                    values
                };
                HeadlineStatistics { names, of: Box::new(of) }
            }
            Evaluation::Multilabel(e) => HeadlineStatistics {
                names: MULTILABEL_HEADLINE.to_vec(),
                of: Box::new(|images: &[usize]| {
                    multilabel_headline(&subset_multilabel_report(&e.labels, &e.truth, &e.probabilities, images))
                }),
            },
            Evaluation::Segmentation(e) => {
                let rows: Vec<&SegmentationScores> = e.rows.iter().map(|r| &r.scores).collect();
                HeadlineStatistics::of_columns(rows, e.summaries.len(), &IMAGE_HEADLINE)
            }
            Evaluation::Volumes(e) => {
                let rows: Vec<&SurfaceScores> = e.rows.iter().map(|r| &r.scores).collect();
                HeadlineStatistics::of_columns(rows, e.labels.len(), &VOLUME_HEADLINE)
            }
        }
    }
}

impl<'a> HeadlineStatistics<'a> {
    /// The `columns` over every label of the images listed; `rows` hold `per_image`
    /// labels of each image in turn.
    fn of_columns<S: Sync>(rows: Vec<&'a S>, per_image: usize, columns: &'static [Column<S>]) -> Self {
        HeadlineStatistics {
            names: columns.iter().map(|c| c.0).collect(),
            of: Box::new(move |images: &[usize]| column_values(&rows, per_image, (columns, &[]), images)),
        }
    }
}

/// The headline calibration metrics among `intervals` (those without a class, of the
/// raw and the calibrated probabilities), and the temperature.
fn calibration_headline(intervals: &[MetricInterval], temperature: Option<f64>) -> Vec<(String, f64)> {
    let raw = |m: &MetricInterval| m.metric.strip_suffix(Scale::Calibrated.suffix()).unwrap_or(&m.metric).to_string();
    intervals
        .iter()
        .filter(|m| m.class.is_none() && CALIBRATION_METRICS.contains(&raw(m).as_str()))
        .map(|m| (m.metric.clone(), m.value))
        .chain(temperature.map(|t| ("temperature".to_string(), t)))
        .collect()
}

fn classification(
    predictor: &dyn Predictions,
    eval: &EvalSettings,
    groups: &[Option<&str>],
    decisions: Decisions,
) -> Result<ClassificationEvaluation, SettingError> {
    let dataset = predictor.dataset();
    let test = Classified {
        files: dataset.test.samples.iter().map(|s| s.path.clone()).collect(),
        truth: dataset.test.class_labels(),
        probabilities: predictor.class_probabilities(&dataset.test),
    };
    classify(&dataset.classes, test, decisions, groups, eval)
}

/// The temperature (with `eval.calibrate = "temperature"`) and, with a `positive`
/// class, the threshold (and its calibrated value) of `decisions`: as chosen, or chosen
/// now on the validation split.
fn decide(
    decisions: Decisions,
    eval: &EvalSettings,
    positive: Option<usize>,
) -> (Option<f64>, Option<(f64, Option<f64>)>) {
    let calibrating = eval.calibrate == Calibrate::Temperature;
    match decisions {
        Decisions::Chosen(chosen) => {
            let temperature = chosen.temperature.filter(|_| calibrating);
            (temperature, chosen.threshold.map(|t| (t, chosen.threshold_calibrated.filter(|_| calibrating))))
        }
        Decisions::FromValidation(validation) => match (positive.is_some() || calibrating).then(validation) {
            Some((truth, probabilities)) => {
                let logits: Vec<(Vec<f64>, usize)> =
                    truth.iter().zip(&probabilities).map(|(&t, p)| (class_logits(p), t)).collect();
                let temperature = if calibrating { fit_temperature(&logits) } else { None };
                let validation = (&truth[..], &probabilities[..]);
                (temperature, positive.and_then(|p| choose_threshold(eval, p, validation, temperature)))
            }
            None => (None, None),
        },
    }
}

/// Each image's largest probability, against whether its class was right (the first
/// largest on ties, as the predicted class).
fn top_label(truth: &[usize], probabilities: &[Vec<f32>]) -> Outcomes {
    Outcomes {
        name: "top_label".into(),
        probabilities: probabilities.iter().map(|p| f64::from(p[argmax(p)])).collect(),
        holds: truth.iter().zip(probabilities).map(|(&t, p)| argmax(p) == t).collect(),
    }
}

/// A test set's classes and predicted probabilities (one row per image or volume).
pub struct Classified {
    pub files: Vec<PathBuf>,
    pub truth: Vec<usize>,
    pub probabilities: Vec<Vec<f32>>,
}

/// Scores `test` of `classes` (patients by `groups`); for two classes, the operating
/// point at the threshold of `decisions`, and the calibrated probabilities at its
/// temperature.
pub fn classify(
    classes: &[String],
    test: Classified,
    decisions: Decisions,
    groups: &[Option<&str>],
    eval: &EvalSettings,
) -> Result<ClassificationEvaluation, SettingError> {
    let Classified { files, truth, probabilities } = test;
    let names = interval_names(&CLASSIFICATION_HEADLINE, classes);
    let statistics = |images: &[usize]| -> Vec<Option<f64>> {
        let r = subset_report(classes, &truth, &probabilities, images);
        let mut values = classification_headline(&r);
        values.extend(r.per_class.iter().flat_map(|m| per_class_values(m, r.images)));
        values
    };
    let mut intervals = with_intervals(eval, groups, names, statistics);
    intervals.extend(classes.iter().enumerate().filter_map(|(c, class)| {
        let positive: Vec<bool> = truth.iter().map(|&t| t == c).collect();
        delong_interval(eval, class, &column(&probabilities, c), &positive)
    }));
    let positive = if classes.len() == 2 { Some(eval.positive(classes)?) } else { None };
    let (temperature, threshold) = decide(decisions, eval, positive);
    let operating_point = positive.zip(threshold).map(|(positive, threshold)| {
        operating_point(eval, positive, classes, threshold, (&truth[..], &probabilities[..]))
    });
    intervals.extend(operating_point.iter().flat_map(|p| p.metrics.iter().cloned()));
    // the positive class (two classes), else each class against the rest and the top label
    let outcomes = |rows: &[Vec<f32>]| -> (Vec<Outcomes>, Headline) {
        let class = |c: usize| Outcomes {
            name: classes[c].clone(),
            probabilities: column(rows, c),
            holds: truth.iter().map(|&t| t == c).collect(),
        };
        match positive {
            Some(positive) => (vec![class(positive)], Headline::Positive),
            None => ((0..classes.len()).map(class).chain([top_label(&truth, rows)]).collect(), Headline::Classes),
        }
    };
    let (raw, headline) = outcomes(&probabilities);
    let (calibration, calibrated) = calibrate(&raw, headline, eval, groups, Scale::Raw);
    intervals.extend(calibrated);
    let recalibrated = temperature.map(|t| {
        let rows: Vec<Vec<f32>> = probabilities.iter().map(|p| as_f32(scaled(&class_logits(p), t))).collect();
        let (scaled_outcomes, headline) = outcomes(&rows);
        calibrate(&scaled_outcomes, headline, eval, groups, Scale::Calibrated)
    });
    let recalibrated = recalibrated.map(|(evaluation, calibrated)| {
        intervals.extend(calibrated);
        evaluation
    });
    Ok(ClassificationEvaluation {
        report: classification_report(classes, &truth, &probabilities),
        intervals,
        operating_point,
        calibration,
        recalibrated,
        temperature,
        classes: classes.to_vec(),
        files,
        truth,
        probabilities,
    })
}

const TRUTH: Rgb<u8> = Rgb([0, 220, 0]);
const PREDICTION: Rgb<u8> = Rgb([255, 0, 255]);

fn segmentation(predictor: &dyn Predictions, eval: &EvalSettings, groups: &[Option<&str>]) -> SegmentationEvaluation {
    let dataset = predictor.dataset();
    let predictions = predictor.masks(&dataset.test);
    let labels = dataset.classes.len().max(2);
    let mut rows = Vec::new();
    let mut images = Vec::new();
    let paths: Vec<&std::path::Path> = dataset.test.samples.iter().map(|s| s.path.as_path()).collect();
    let stems = distinct_stems(&paths);
    for ((sample, predicted), stem) in dataset.test.samples.iter().zip(&predictions).zip(stems) {
        let Target::Mask(truth) = &sample.target else { continue };
        let (scores, overlay) = score_image(sample, truth, predicted, labels, (dataset.height, dataset.width));
        rows.extend(scores.into_iter().enumerate().map(|(i, scores)| ImageScores {
            file: sample.path.clone(),
            label: dataset.classes[i + 1].clone(),
            scores,
        }));
        let mask = mask_image(predicted, labels, dataset.height, dataset.width);
        images.push(PredictedImage { stem, mask, overlay });
    }
    let summaries = (1..labels).map(|label| summarize_label(&dataset.classes[label], &rows)).collect();
    let intervals = segmentation_intervals(eval, groups, &rows, &dataset.classes[1..labels]);
    SegmentationEvaluation { rows, intervals, summaries, images }
}

/// A predicted label mask as the PNG radrun writes: 0/255 for one structure, else the
/// label indices.
pub fn mask_image(predicted: &[u8], labels: usize, h: usize, w: usize) -> GrayImage {
    let scale = if labels == 2 { 255 } else { 1 };
    GrayImage::from_fn(w as u32, h as u32, |x, y| image::Luma([predicted[y as usize * w + x as usize] * scale]))
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
    let gray = sample.image.to_vec();
    let mut overlay = RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let v = (gray[y as usize * w + x as usize] * 255.0).round() as u8;
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

/// A score column of the segmentation intervals: its name, how it is read from one
/// label's scores, and whether it is summarized by the median (else the mean).
pub(crate) type Column<S> = (&'static str, fn(&S) -> f64, bool);

/// Intervals of the headline segmentation metrics (over every label, as
/// [`Evaluation::headline`]) and of each label's `per_label` columns. `rows` hold the
/// labels of each image (or volume) in turn, one image per entry of `groups`.
pub(crate) fn label_intervals<S: Sync>(
    eval: &EvalSettings,
    groups: &[Option<&str>],
    rows: &[&S],
    labels: &[String],
    headline: &[Column<S>],
    per_label: &[Column<S>],
) -> Vec<MetricInterval> {
    let per_image = labels.len();
    let mut names: Vec<(String, Option<String>)> = headline.iter().map(|(n, _, _)| (n.to_string(), None)).collect();
    for label in labels {
        names.extend(per_label.iter().map(|(n, _, _)| (n.to_string(), Some(label.clone()))));
    }
    let statistics = |images: &[usize]| column_values(rows, per_image, (headline, per_label), images);
    with_intervals(eval, groups, names, statistics)
}

/// The `headline` columns over every label of the `images` (repeats counted), then
/// each label's `per_label` columns; `rows` hold `per_image` labels of each image in turn.
fn column_values<S>(
    rows: &[&S],
    per_image: usize,
    (headline, per_label): (&[Column<S>], &[Column<S>]),
    images: &[usize],
) -> Vec<Option<f64>> {
    let pick = |f: fn(&S) -> f64, label: Option<usize>| -> Vec<f64> {
        images
            .iter()
            .flat_map(|&i| (0..per_image).filter(|&l| label.is_none_or(|x| x == l)).map(move |l| i * per_image + l))
            .map(|r| f(rows[r]))
            .collect()
    };
    let stat = |values: Vec<f64>, median: bool| {
        let s = summarize(&values);
        Some(if median { s.median } else { s.mean })
    };
    let mut values: Vec<Option<f64>> = headline.iter().map(|(_, f, median)| stat(pick(*f, None), *median)).collect();
    for l in 0..per_image {
        values.extend(per_label.iter().map(|(_, f, median)| stat(pick(*f, Some(l)), *median)));
    }
    values
}

/// The headline of segmentation scores: each column over every label and image.
fn headline_of<S>(rows: &[&S], columns: &[Column<S>]) -> BTreeMap<String, f64> {
    columns
        .iter()
        .map(|(name, f, median)| {
            let s = summarize(&rows.iter().map(|r| f(r)).collect::<Vec<_>>());
            (name.to_string(), if *median { s.median } else { s.mean })
        })
        .collect()
}

/// The headline metrics of 2D segmentation, over every label.
const IMAGE_HEADLINE: [Column<SegmentationScores>; 5] = [
    ("dice_mean", |s| s.dice, false),
    ("iou_mean", |s| s.iou, false),
    ("sensitivity_mean", |s| s.sensitivity, false),
    ("precision_mean", |s| s.precision, false),
    ("hd95_pixels_median", |s| s.hd95_pixels, true),
];

/// Intervals of 2D segmentation: the headline and each label's mean Dice and median HD95.
fn segmentation_intervals(
    eval: &EvalSettings,
    groups: &[Option<&str>],
    rows: &[ImageScores],
    labels: &[String],
) -> Vec<MetricInterval> {
    let rows: Vec<&SegmentationScores> = rows.iter().map(|r| &r.scores).collect();
    let per_label: [Column<SegmentationScores>; 2] =
        [("dice", |s| s.dice, false), ("hd95_pixels_median", |s| s.hd95_pixels, true)];
    label_intervals(eval, groups, &rows, labels, &IMAGE_HEADLINE, &per_label)
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
