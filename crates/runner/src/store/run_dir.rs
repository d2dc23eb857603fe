//! A run folder and every file in it: [`RunDir`] owns their names (recipe, status,
//! metrics, checkpoint, weights, split, evaluation files) and writes each through
//! [`super::io`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use radrun_data::DataSummary;
use radrun_data::paths::{path_text, slash_path};
use radrun_data::volume_dataset::Preprocessing;
use radrun_data::volume_summary::VolumeDataSummary;
use radrun_metrics::EpochRecord;
use radrun_metrics::calibration::{CALIBRATION_METRICS, CalibrationEvaluation};
use radrun_metrics::evaluate::{
    ClassificationEvaluation, Evaluation, MetricInterval, MultilabelEvaluation, SegmentationEvaluation,
};
use radrun_metrics::subgroups::SubgroupScore;
use radrun_metrics::volumes::VolumeEvaluation;
use radrun_metrics::{Averages, ClassMetrics, ClassificationReport};
use radrun_settings::ModelSummary;
use serde::{Deserialize, Serialize};

use super::claim::{CLAIM_FILE, CLAIM_PREFIXES};
use super::io::{WriteError, columns, num, remove_if_present, write_atomic, write_csv, write_png};
use super::provenance::{FileRecord, VolumeFile, group_hash};
use super::status::Status;

/// A volume run's preprocessing, which predictions on new scans follow.
const PREPROCESSING_FILE: &str = "preprocessing.json";
/// A volume run's label values and names.
const LABELS_FILE: &str = "labels.json";

/// The logs of earlier attempts of a run: `train.log.1`, `train.log.2`, ...
const EARLIER_LOG_PREFIX: &str = "train.log.";

/// One run's folder, `runs/<recipe>/<run id>/`: the only place that knows its file names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    path: PathBuf,
}

/// Which weights of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightsFile {
    /// The epoch with the lowest validation loss.
    Best,
    /// The last epoch.
    Last,
}

impl RunDir {
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes what an earlier attempt left, all but the claim that makes the folder
    /// this process's and the logs of earlier attempts: the last one's `train.log`
    /// becomes `train.log.N` (the next free number), so that why a killed or retrained
    /// attempt ended stays readable.
    pub fn clear(&self) -> Result<(), WriteError> {
        let err = |source| WriteError { path: self.path.clone(), source };
        std::fs::create_dir_all(&self.path).map_err(err)?;
        self.keep_earlier_log()?;
        for entry in std::fs::read_dir(&self.path).map_err(err)? {
            let entry = entry.map_err(err)?;
            // the claim, the files other processes are claiming with, and earlier logs stay
            let name = entry.file_name().to_string_lossy().into_owned();
            if CLAIM_PREFIXES.iter().chain([&EARLIER_LOG_PREFIX]).any(|prefix| name.starts_with(prefix)) {
                continue;
            }
            let path = entry.path();
            let removed = if entry.file_type().map_err(err)?.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            match removed {
                // a temporary file renamed into place meanwhile
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                other => other.map_err(|source| WriteError { path, source })?,
            }
        }
        Ok(())
    }

    /// Renames the last attempt's `train.log`, if any, to the next free `train.log.N`.
    fn keep_earlier_log(&self) -> Result<(), WriteError> {
        let log = self.log_path();
        if !log.is_file() {
            return Ok(());
        }
        let kept = (1..)
            .map(|n| self.path.join(format!("{EARLIER_LOG_PREFIX}{n}")))
            .find(|path| !path.exists())
            .expect("a free number");
        std::fs::rename(&log, &kept).map_err(|source| WriteError { path: kept, source })
    }

    /// Removes the temporary files of atomic writes a killed process left.
    pub fn remove_partial_files(&self) -> Result<(), WriteError> {
        let err = |source| WriteError { path: self.path.clone(), source };
        for entry in std::fs::read_dir(&self.path).map_err(err)? {
            let entry = entry.map_err(err)?;
            if entry.file_name().to_string_lossy().starts_with(".partial-") {
                remove_if_present(&entry.path())?;
            }
        }
        Ok(())
    }

    /// Removes metrics.csv (of an attempt whose checkpoint could not be used).
    pub fn remove_metrics(&self) -> Result<(), WriteError> {
        remove_if_present(&self.path.join("metrics.csv"))
    }

    pub fn claim_path(&self) -> PathBuf {
        self.path.join(CLAIM_FILE)
    }

    /// `checkpoint.safetensors`: the tensors and progress record training resumes from.
    pub fn checkpoint_path(&self) -> PathBuf {
        self.path.join("checkpoint.safetensors")
    }

    /// Removes the checkpoint of a run that is done.
    pub fn remove_checkpoint(&self) -> Result<(), WriteError> {
        remove_if_present(&self.checkpoint_path())?;
        remove_if_present(&self.path.join("checkpoint.json"))
    }

    /// The progress of the last checkpoint, as `checkpoint.json` says.
    pub fn checkpoint_meta(&self) -> Option<CheckpointMeta> {
        serde_json::from_slice(&std::fs::read(self.path.join("checkpoint.json")).ok()?).ok()
    }

    /// The run's status, if it has a readable one.
    pub fn status(&self) -> Option<Status> {
        serde_json::from_slice(&std::fs::read(self.path.join("status.json")).ok()?).ok()
    }

    pub fn write_status(&self, status: &Status) -> Result<(), WriteError> {
        self.write_json("status.json", status)
    }

    /// The resolved recipe, with a header saying where it came from.
    pub fn write_recipe(&self, text: &str) -> Result<(), WriteError> {
        write_atomic(&self.path.join("recipe.toml"), text.as_bytes())
    }

    /// The log file `tracing` appends to while the run trains.
    pub fn log_path(&self) -> PathBuf {
        self.path.join("train.log")
    }

    /// data_summary.txt and .json, and skipped.csv: every file left out under
    /// `data.on_unreadable = "skip"` and why (the printed summary names only the first few);
    /// none when nothing was skipped.
    pub fn write_data_summary(&self, summary: &DataSummary) -> Result<(), WriteError> {
        write_atomic(&self.path.join("data_summary.txt"), summary.to_string().as_bytes())?;
        let skipped = self.path.join("skipped.csv");
        if summary.skipped.is_empty() {
            remove_if_present(&skipped)?;
        } else {
            // the file as split.csv names it: relative to data.root
            let relative = |path: &Path| path.strip_prefix(&summary.root).map_or_else(|_| path_text(path), slash_path);
            let rows: Vec<Vec<String>> =
                summary.skipped.iter().map(|s| vec![relative(&s.path), s.reason.clone()]).collect();
            write_csv(&skipped, &columns(&["file", "reason"]), &rows)?;
        }
        self.write_json("data_summary.json", summary)
    }

    pub fn write_model_summary(&self, summary: &ModelSummary) -> Result<(), WriteError> {
        write_atomic(&self.path.join("model_summary.txt"), summary.to_string().as_bytes())
    }

    pub fn weights_path(&self, which: WeightsFile) -> PathBuf {
        self.path.join(match which {
            WeightsFile::Best => "best.safetensors",
            WeightsFile::Last => "last.safetensors",
        })
    }

    /// The val_loss column of metrics.csv, one value per epoch written (NaN where empty).
    pub fn val_losses(&self) -> Vec<f64> {
        let Ok(mut reader) = csv::Reader::from_path(self.path.join("metrics.csv")) else { return Vec::new() };
        let Some(column) = reader.headers().ok().and_then(|h| h.iter().position(|c| c == "val_loss")) else {
            return Vec::new();
        };
        reader
            .records()
            .filter_map(Result::ok)
            .map(|r| r.get(column).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN))
            .collect()
    }

    /// metrics.csv, one row per epoch so far.
    pub fn write_metrics(&self, records: &[EpochRecord]) -> Result<(), WriteError> {
        write_metrics(&self.path.join("metrics.csv"), records)
    }

    /// split.csv: every file of the run's dataset with its split, fold, class, group
    /// (as a salted hash) and its size and SHA-256, so anyone can rebuild the exact split
    /// and check the files are the same.
    pub fn write_split(&self, records: &[FileRecord], classes: &[String], salt: &str) -> Result<(), WriteError> {
        let header = columns(&["file", "split", "fold", "class", "group", "bytes", "sha256"]);
        let rows: Vec<Vec<String>> = records
            .iter()
            .map(|r| {
                let o = &r.sample.origin;
                let class = match &r.sample.target {
                    radrun_data::Target::Class(c) => classes[*c].clone(),
                    radrun_data::Target::Labels(present) => label_set(present.iter().copied(), classes),
                    radrun_data::Target::Mask(_) => String::new(),
                };
                vec![
                    r.relative.clone(),
                    r.split.to_string(),
                    o.fold.map(|f| f.to_string()).unwrap_or_default(),
                    class,
                    o.group.as_deref().map(|g| group_hash(salt, g)).unwrap_or_default(),
                    o.bytes.to_string(),
                    o.sha256.clone(),
                ]
            })
            .collect();
        write_csv(&self.path.join("split.csv"), &header, &rows)
    }

    /// split.csv of a volume run: every file its cases were read from (the columns of
    /// the 2D split.csv, `fold` empty, and the case).
    pub fn write_volume_split(&self, files: &[VolumeFile]) -> Result<(), WriteError> {
        let header = columns(&["file", "split", "fold", "class", "group", "bytes", "sha256", "case"]);
        let rows: Vec<Vec<String>> = files
            .iter()
            .map(|f| {
                let split = f.split.to_string();
                let (bytes, sha256) = (f.bytes.to_string(), f.sha256.clone());
                vec![
                    f.relative.clone(),
                    split,
                    String::new(),
                    f.class.clone(),
                    f.group.clone(),
                    bytes,
                    sha256,
                    f.case.clone(),
                ]
            })
            .collect();
        write_csv(&self.path.join("split.csv"), &header, &rows)
    }

    /// A volume run's data_summary.txt (`summary`: the dataset, its split, the
    /// preprocessing and the network's input, as `radrun plan` prints them) and
    /// data_summary.json (`facts`), preprocessing.json and labels.json (label value to
    /// name), which a prediction on a new scan is made by.
    pub fn write_volume_data(
        &self,
        (summary, facts): (&str, &VolumeDataSummary),
        preprocessing: &Preprocessing,
        labels: &BTreeMap<u32, String>,
    ) -> Result<(), WriteError> {
        self.write_volume_summary(summary, facts)?;
        self.write_json(PREPROCESSING_FILE, preprocessing)?;
        self.write_json(LABELS_FILE, labels)
    }

    /// data_summary.txt and data_summary.json of a volume run or external volume set.
    pub fn write_volume_summary(&self, summary: &str, facts: &VolumeDataSummary) -> Result<(), WriteError> {
        write_atomic(&self.path.join("data_summary.txt"), summary.as_bytes())?;
        self.write_json("data_summary.json", facts)
    }

    /// The run's preprocessing.json and labels.json, if it has readable ones.
    pub fn volume_data(&self) -> Option<(Preprocessing, BTreeMap<u32, String>)> {
        let read = |name: &str| std::fs::read(self.path.join(name)).ok();
        Some((
            serde_json::from_slice(&read(PREPROCESSING_FILE)?).ok()?,
            serde_json::from_slice(&read(LABELS_FILE)?).ok()?,
        ))
    }

    /// Where a test case's predicted mask is written: `predictions/<case>.nii.gz` (a
    /// case named by a path, `a/b`, in the folders of its path).
    pub fn mask_path(&self, case: &str) -> PathBuf {
        self.path.join("predictions").join(format!("{case}.nii.gz"))
    }

    /// Where the report's picture of a test case goes: `predictions/<case>_slices.png`.
    pub fn slices_path(&self, case: &str) -> PathBuf {
        self.path.join("predictions").join(format!("{case}_slices.png"))
    }

    /// Where a volume run keeps its working cases while it trains.
    pub fn working_folder(&self) -> PathBuf {
        self.path.join("working")
    }

    /// The test evaluation's files, and intervals.csv.
    pub fn write_evaluation(&self, evaluation: &Evaluation) -> Result<(), WriteError> {
        let intervals = match evaluation {
            Evaluation::Classification(e) => {
                self.write_classification(e)?;
                &e.intervals
            }
            Evaluation::Multilabel(e) => {
                self.write_multilabel(e)?;
                &e.intervals
            }
            Evaluation::Segmentation(e) => {
                self.write_segmentation(e)?;
                &e.intervals
            }
            Evaluation::Volumes(e) => {
                self.write_volumes(e)?;
                &e.intervals
            }
        };
        self.write_intervals(intervals)
    }

    /// subgroups.csv (`eval.subgroups`): for each level of each attribute, its patients
    /// and images and each headline metric with its interval and its difference from
    /// the rest (interval, p-value); a level too small to report is one row with its
    /// note and no number.
    pub fn write_subgroups(&self, scores: &[SubgroupScore]) -> Result<(), WriteError> {
        let header = columns(&[
            "subgroup",
            "level",
            "patients",
            "images",
            "metric",
            "value",
            "lower",
            "upper",
            "difference",
            "difference_lower",
            "difference_upper",
            "p_value",
            "note",
        ]);
        let count = |n: Option<usize>| n.map(|n| n.to_string()).unwrap_or_default();
        let rows: Vec<Vec<String>> = scores
            .iter()
            .flat_map(|s| {
                let first = [s.subgroup.clone(), s.level.clone(), count(s.patients), count(s.images)];
                let note = s.note.clone().unwrap_or_default();
                let metrics: Vec<Vec<String>> = s
                    .metrics
                    .iter()
                    .map(|m| {
                        let compared = m.comparison;
                        let numbers = [
                            Some(m.value),
                            m.interval.map(|i| i.lower),
                            m.interval.map(|i| i.upper),
                            m.difference,
                            compared.map(|c| c.interval.lower),
                            compared.map(|c| c.interval.upper),
                            compared.map(|c| c.p_value),
                        ];
                        let cells = std::iter::once(m.metric.clone()).chain(numbers.map(num));
                        first.iter().cloned().chain(cells).chain([note.clone()]).collect()
                    })
                    .collect();
                if metrics.is_empty() {
                    let empty = std::iter::repeat_n(String::new(), 8);
                    vec![first.iter().cloned().chain(empty).chain([note]).collect()]
                } else {
                    metrics
                }
            })
            .collect();
        write_csv(&self.path.join("subgroups.csv"), &header, &rows)
    }

    /// intervals.csv: each test metric with its bootstrap confidence interval.
    fn write_intervals(&self, intervals: &[MetricInterval]) -> Result<(), WriteError> {
        let header = columns(&["metric", "class", "value", "lower", "upper"]);
        let rows: Vec<Vec<String>> = intervals
            .iter()
            .map(|m| {
                vec![
                    m.metric.clone(),
                    m.class.clone().unwrap_or_default(),
                    num(Some(m.value)),
                    num(m.interval.map(|i| i.lower)),
                    num(m.interval.map(|i| i.upper)),
                ]
            })
            .collect();
        write_csv(&self.path.join("intervals.csv"), &header, &rows)
    }

    /// evaluation.json, per_class.csv, confusion_matrix.csv, predictions.csv, the
    /// calibration's files, and for a two-class task operating_point.json.
    fn write_classification(&self, e: &ClassificationEvaluation) -> Result<(), WriteError> {
        self.write_json("evaluation.json", &e.report)?;
        if let Some(point) = &e.operating_point {
            self.write_json("operating_point.json", point)?;
        }
        write_classification_report(&self.path, &e.report, &e.classes)?;
        write_calibration(&self.path, std::iter::once(&e.calibration).chain(&e.recalibrated))?;
        write_predictions(&self.path.join("predictions.csv"), &e.files, &e.truth, &e.probabilities, &e.classes)
    }

    /// evaluation.json, per_label.csv, the calibration's files, predictions.csv (file,
    /// true_labels and predicted_labels joined by `|`, p_<label> per label).
    fn write_multilabel(&self, e: &MultilabelEvaluation) -> Result<(), WriteError> {
        let r = &e.report;
        self.write_json("evaluation.json", r)?;
        write_per_class(&self.path.join("per_label.csv"), "label", &r.per_label, [&r.macro_avg, &r.weighted_avg])?;
        write_calibration(&self.path, std::iter::once(&e.calibration).chain(&e.recalibrated))?;
        let header: Vec<String> = ["file", "true_labels", "predicted_labels"]
            .iter()
            .map(|s| s.to_string())
            .chain(e.labels.iter().map(|l| format!("p_{l}")))
            .collect();
        let rows: Vec<Vec<String>> = e
            .files
            .iter()
            .zip(&e.truth)
            .zip(&e.probabilities)
            .map(|((f, t), p)| {
                [
                    path_text(f),
                    label_set(t.iter().copied(), &e.labels),
                    label_set(p.iter().map(|&v| v >= 0.5), &e.labels),
                ]
                .into_iter()
                .chain(p.iter().map(|v| format!("{v}")))
                .collect()
            })
            .collect();
        write_csv(&self.path.join("predictions.csv"), &header, &rows)
    }

    /// evaluation.json, segmentation_metrics.csv, and per test image its predicted mask
    /// and an overlay of truth and prediction in predictions/.
    fn write_segmentation(&self, e: &SegmentationEvaluation) -> Result<(), WriteError> {
        let header = columns(&["file", "label", "dice", "iou", "sensitivity", "precision", "hd95_pixels", "hd95_mm"]);
        let rows: Vec<Vec<String>> = e
            .rows
            .iter()
            .map(|r| {
                let s = &r.scores;
                vec![
                    path_text(&r.file),
                    r.label.clone(),
                    num(Some(s.dice)),
                    num(Some(s.iou)),
                    num(Some(s.sensitivity)),
                    num(Some(s.precision)),
                    num(Some(s.hd95_pixels)),
                    num(s.hd95_mm),
                ]
            })
            .collect();
        write_csv(&self.path.join("segmentation_metrics.csv"), &header, &rows)?;
        self.write_json("evaluation.json", &e.summaries)?;
        let folder = self.path.join("predictions");
        for image in &e.images {
            write_png(&folder.join(format!("{}_mask.png", image.stem)), &image.mask)?;
            write_png(&folder.join(format!("{}_overlay.png", image.stem)), &image.overlay)?;
        }
        Ok(())
    }

    /// volume_metrics.csv (each case and label, distances in mm, volumes in mL) and
    /// evaluation.json (the NSD tolerance and each label's summaries).
    fn write_volumes(&self, e: &VolumeEvaluation) -> Result<(), WriteError> {
        let header = columns(&[
            "case",
            "label",
            "dice",
            "iou",
            "hd95_mm",
            "assd_mm",
            "nsd",
            "reference_ml",
            "predicted_ml",
            "volume_difference_ml",
        ]);
        let rows: Vec<Vec<String>> = e
            .rows
            .iter()
            .map(|r| {
                let s = &r.scores;
                let values = [s.dice, s.iou, s.hd95_mm, s.assd_mm, s.nsd, s.reference_ml, s.predicted_ml];
                [r.case.clone(), r.label.clone()]
                    .into_iter()
                    .chain(values.into_iter().chain([s.volume_difference_ml]).map(|v| num(Some(v))))
                    .collect()
            })
            .collect();
        write_csv(&self.path.join("volume_metrics.csv"), &header, &rows)?;
        self.write_json("evaluation.json", e)
    }

    fn write_json(&self, name: &str, value: &impl Serialize) -> Result<(), WriteError> {
        write_atomic(&self.path.join(name), &serde_json::to_vec_pretty(value).expect("plain data serializes"))
    }
}
/// A multi-label image's labels as the labels tables write them: the present ones
/// joined by `|`.
fn label_set(present: impl Iterator<Item = bool>, labels: &[String]) -> String {
    present.zip(labels).filter(|(p, _)| *p).map(|(_, l)| l.as_str()).collect::<Vec<_>>().join("|")
}

/// What a checkpoint says besides its tensors. `P` is training's progress record: the
/// train crate's `Progress` where training resumes from it, [`EpochsSoFar`] (the part
/// of it a person reads) for `radrun status` and messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta<P = EpochsSoFar> {
    /// A checkpoint continues only the run it was written by.
    pub run_id: String,
    /// The dataset's fingerprint when it was written: other files, no resume.
    pub dataset: Option<String>,
    pub written: String,
    pub progress: P,
}

/// Of a checkpoint's progress record, the epochs done so far and the training batches
/// of the next one already done.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EpochsSoFar {
    pub records: Vec<EpochRecord>,
    pub batches: usize,
}

/// metrics.csv, one row per epoch.
fn write_metrics(path: &Path, records: &[EpochRecord]) -> Result<(), WriteError> {
    let segmentation = records.first().is_some_and(|r| r.val_dice.is_some());
    let mut header = columns(&["epoch", "phase", "lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy"]);
    if segmentation {
        header.extend(columns(&["val_dice", "val_iou"]));
    }
    header.extend(columns(&["seconds", "images_per_second", "data_wait_seconds"]));
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            let mut row = vec![
                r.epoch.to_string(),
                r.phase.clone(),
                num(Some(r.learning_rate)),
                num(Some(r.train_loss)),
                num(Some(r.train_accuracy)),
                num(Some(r.val_loss)),
                num(Some(r.val_accuracy)),
            ];
            if segmentation {
                row.extend([num(r.val_dice), num(r.val_iou)]);
            }
            row.extend([
                format!("{:.3}", r.seconds),
                format!("{:.1}", r.images_per_second),
                format!("{:.3}", r.data_wait_seconds),
            ]);
            row
        })
        .collect();
    write_csv(path, &header, &rows)
}

/// calibration.csv (each calibrated class or label: its images, positives and
/// calibration metrics), reliability.csv (its equal-width bins) and, for a two-class or
/// multi-label task, decision_curve.csv (net benefit at each threshold with its interval,
/// against calling every image positive or none); in each, the `probabilities` column
/// says whether a row is of the network's (`raw`) or the temperature-scaled ones
/// (`calibrated`).
fn write_calibration<'a>(
    dir: &Path,
    evaluations: impl Iterator<Item = &'a CalibrationEvaluation> + Clone,
) -> Result<(), WriteError> {
    let mut header = columns(&["probabilities", "class", "images", "positives"]);
    header.extend(CALIBRATION_METRICS.iter().map(|m| m.to_string()));
    let rows: Vec<Vec<String>> = evaluations
        .clone()
        .flat_map(|c| {
            c.rows.iter().map(|r| {
                [c.scale.name().to_string(), r.name.clone(), r.images.to_string(), r.positives.to_string()]
                    .into_iter()
                    .chain(r.metrics.iter().map(|&m| num(m)))
                    .collect()
            })
        })
        .collect();
    write_csv(&dir.join("calibration.csv"), &header, &rows)?;
    let header = columns(&["probabilities", "class", "bin", "lower", "upper", "images", "mean_predicted", "observed"]);
    let rows: Vec<Vec<String>> = evaluations
        .clone()
        .flat_map(|c| {
            c.rows.iter().flat_map(move |r| {
                r.bins.iter().enumerate().map(move |(i, b)| {
                    vec![
                        c.scale.name().to_string(),
                        r.name.clone(),
                        (i + 1).to_string(),
                        num(Some(b.lower)),
                        num(Some(b.upper)),
                        b.images.to_string(),
                        num(b.mean_predicted),
                        num(b.observed),
                    ]
                })
            })
        })
        .collect();
    write_csv(&dir.join("reliability.csv"), &header, &rows)?;
    let header =
        columns(&["probabilities", "class", "threshold", "net_benefit", "lower", "upper", "treat_all", "treat_none"]);
    let rows: Vec<Vec<String>> = evaluations
        .flat_map(|c| {
            c.curves.iter().flat_map(move |curve| {
                curve.points.iter().map(move |p| {
                    vec![
                        c.scale.name().to_string(),
                        curve.name.clone(),
                        num(Some(p.threshold)),
                        num(Some(p.net_benefit)),
                        num(p.interval.map(|i| i.lower)),
                        num(p.interval.map(|i| i.upper)),
                        num(Some(p.treat_all)),
                        "0".into(),
                    ]
                })
            })
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    write_csv(&dir.join("decision_curve.csv"), &header, &rows)
}

/// Classification test outputs: per_class.csv, confusion_matrix.csv.
fn write_classification_report(
    dir: &Path,
    report: &ClassificationReport,
    classes: &[String],
) -> Result<(), WriteError> {
    write_per_class(&dir.join("per_class.csv"), "class", &report.per_class, [&report.macro_avg, &report.weighted_avg])?;
    let header: Vec<String> = std::iter::once("true \\ predicted".to_string()).chain(classes.iter().cloned()).collect();
    let rows: Vec<Vec<String>> = classes
        .iter()
        .zip(&report.confusion)
        .map(|(c, row)| std::iter::once(c.clone()).chain(row.iter().map(u64::to_string)).collect())
        .collect();
    write_csv(&dir.join("confusion_matrix.csv"), &header, &rows)
}

/// A per-class (or per-label) table with a macro and a weighted average row, whose
/// support is the sum of the classes' (the images, for one class per image).
fn write_per_class(
    path: &Path,
    first_column: &str,
    per_class: &[ClassMetrics],
    [macro_avg, weighted_avg]: [&Averages; 2],
) -> Result<(), WriteError> {
    let support: u64 = per_class.iter().map(|m| m.support).sum();
    let header = columns(&[first_column, "precision", "recall", "specificity", "f1", "support", "roc_auc"]);
    let row = |name: &str, a: &Averages, support: u64| {
        vec![
            name.to_string(),
            num(Some(a.precision)),
            num(Some(a.recall)),
            num(Some(a.specificity)),
            num(Some(a.f1)),
            support.to_string(),
            num(a.roc_auc),
        ]
    };
    let mut rows: Vec<Vec<String>> = per_class
        .iter()
        .map(|m| {
            let own = Averages {
                precision: m.precision,
                recall: m.recall,
                specificity: m.specificity,
                f1: m.f1,
                roc_auc: m.roc_auc,
            };
            row(&m.class, &own, m.support)
        })
        .collect();
    rows.push(row("macro avg", macro_avg, support));
    rows.push(row("weighted avg", weighted_avg, support));
    write_csv(path, &header, &rows)
}

/// predictions.csv: file, true class, predicted class, one probability column per class.
fn write_predictions(
    path: &Path,
    files: &[PathBuf],
    truth: &[usize],
    probabilities: &[Vec<f32>],
    classes: &[String],
) -> Result<(), WriteError> {
    let header: Vec<String> = ["file", "true_class", "predicted_class"]
        .iter()
        .map(|s| s.to_string())
        .chain(classes.iter().map(|c| format!("p_{c}")))
        .collect();
    let rows: Vec<Vec<String>> = files
        .iter()
        .zip(truth)
        .zip(probabilities)
        .map(|((f, &t), p)| {
            let predicted = radrun_metrics::argmax(p);
            [path_text(f), classes[t].clone(), classes[predicted].clone()]
                .into_iter()
                .chain(p.iter().map(|v| format!("{v}")))
                .collect()
        })
        .collect();
    write_csv(path, &header, &rows)
}
