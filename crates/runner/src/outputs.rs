//! The files a run leaves, all written atomically (a temporary file in the same folder,
//! then a rename), so an interrupted run never leaves half a file: the status record,
//! metrics.csv, the test evaluation, predictions and the recipe's summary.csv.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use radrun_train::EpochRecord;
use radrun_train::metrics::{Averages, ClassificationReport};
use serde::{Deserialize, Serialize};

/// Errors writing run files.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {}: {source}", path.display())]
pub struct WriteError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let err = |source| WriteError { path: path.to_path_buf(), source };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(err)?;
    let mut tmp = tempfile::Builder::new().prefix(".partial-").tempfile_in(dir).map_err(err)?;
    tmp.write_all(bytes).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

/// Writes rows as CSV atomically.
pub fn write_csv(path: &Path, header: &[String], rows: &[Vec<String>]) -> Result<(), WriteError> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let io = |e: csv::Error| WriteError { path: path.to_path_buf(), source: std::io::Error::other(e) };
    writer.write_record(header).map_err(io)?;
    for row in rows {
        writer.write_record(row).map_err(io)?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| WriteError { path: path.to_path_buf(), source: std::io::Error::other(e.to_string()) })?;
    write_atomic(path, &bytes)
}

/// A number for CSV: full precision, empty when missing or NaN.
pub fn num(value: Option<f64>) -> String {
    match value {
        Some(v) if v.is_finite() => format!("{v}"),
        _ => String::new(),
    }
}

/// State of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Running,
    Done,
    Failed,
}

/// `status.json`: what a process or machine picking up the run needs to know.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub state: State,
    pub run_id: String,
    /// The recipe file the run came from.
    pub recipe_file: PathBuf,
    pub started: String,
    pub finished: Option<String>,
    pub seconds: Option<f64>,
    pub error: Option<String>,
    pub device: Option<String>,
    pub radrun_version: String,
    pub libtorch_version: Option<String>,
    pub host: String,
    pub pid: u32,
    /// Epoch whose weights were evaluated.
    pub evaluated_epoch: Option<u32>,
    /// Validation metrics of that epoch.
    pub validation: BTreeMap<String, f64>,
    /// Headline test metrics (all of them are in evaluation.json).
    pub test: BTreeMap<String, f64>,
}

impl Status {
    pub fn read(path: &Path) -> Option<Status> {
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }

    pub fn write(&self, path: &Path) -> Result<(), WriteError> {
        write_atomic(path, &serde_json::to_vec_pretty(self).expect("status serializes"))
    }
}

/// The machine's host name.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// metrics.csv, one row per epoch.
pub fn write_metrics(path: &Path, records: &[EpochRecord]) -> Result<(), WriteError> {
    let segmentation = records.first().is_some_and(|r| r.val_dice.is_some());
    let mut header: Vec<String> = ["epoch", "phase", "lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if segmentation {
        header.extend(["val_dice".to_string(), "val_iou".to_string()]);
    }
    header.extend(["seconds".to_string(), "images_per_second".to_string()]);
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
            row.extend([format!("{:.3}", r.seconds), format!("{:.1}", r.images_per_second)]);
            row
        })
        .collect();
    write_csv(path, &header, &rows)
}

/// Classification test outputs: evaluation.json, per_class.csv, confusion_matrix.csv.
pub fn write_classification_report(
    dir: &Path,
    report: &ClassificationReport,
    classes: &[String],
) -> Result<(), WriteError> {
    write_atomic(&dir.join("evaluation.json"), &serde_json::to_vec_pretty(report).expect("report serializes"))?;
    let header: Vec<String> = ["class", "precision", "recall", "specificity", "f1", "support", "roc_auc"]
        .iter()
        .map(|s| s.to_string())
        .collect();
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
    let mut rows: Vec<Vec<String>> = report
        .per_class
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
    rows.push(row("macro avg", &report.macro_avg, report.images));
    rows.push(row("weighted avg", &report.weighted_avg, report.images));
    write_csv(&dir.join("per_class.csv"), &header, &rows)?;
    let header: Vec<String> = std::iter::once("true \\ predicted".to_string()).chain(classes.iter().cloned()).collect();
    let rows: Vec<Vec<String>> = classes
        .iter()
        .zip(&report.confusion)
        .map(|(c, row)| std::iter::once(c.clone()).chain(row.iter().map(u64::to_string)).collect())
        .collect();
    write_csv(&dir.join("confusion_matrix.csv"), &header, &rows)
}

/// predictions.csv: file, true class, predicted class, one probability column per class.
pub fn write_predictions(
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
            let predicted = radrun_train::metrics::argmax(p);
            [f.display().to_string(), classes[t].clone(), classes[predicted].clone()]
                .into_iter()
                .chain(p.iter().map(|v| format!("{v}")))
                .collect()
        })
        .collect();
    write_csv(path, &header, &rows)
}

/// summary.csv of a recipe: one row per run, ranked by validation loss (the test set
/// must not choose the model), with the swept values and headline metrics.
pub fn write_summary(
    path: &Path,
    swept_keys: &[String],
    runs: &[(String, Vec<String>, Option<Status>)],
) -> Result<(), WriteError> {
    // every metric any run reported, sorted
    let keys = |pick: fn(&Status) -> &BTreeMap<String, f64>| -> Vec<String> {
        let all: BTreeSet<String> =
            runs.iter().filter_map(|(_, _, s)| s.as_ref()).flat_map(|s| pick(s).keys().cloned()).collect();
        all.into_iter().collect()
    };
    let validation_keys = keys(|s| &s.validation);
    let test_keys = keys(|s| &s.test);
    let mut ordered: Vec<&(String, Vec<String>, Option<Status>)> = runs.iter().collect();
    let val_loss = |s: &Option<Status>| {
        s.as_ref()
            .filter(|s| s.state == State::Done)
            .and_then(|s| s.validation.get("val_loss").copied())
            .unwrap_or(f64::INFINITY)
    };
    ordered.sort_by(|a, b| val_loss(&a.2).total_cmp(&val_loss(&b.2)));
    let header: Vec<String> = ["rank", "run_id"]
        .iter()
        .map(|s| s.to_string())
        .chain(swept_keys.iter().cloned())
        .chain(["status".to_string(), "evaluated_epoch".to_string()])
        .chain(validation_keys.iter().cloned())
        .chain(test_keys.iter().map(|k| format!("test_{k}")))
        .collect();
    let rows: Vec<Vec<String>> = ordered
        .iter()
        .enumerate()
        .map(|(i, (id, values, status))| {
            let done = status.as_ref().is_some_and(|s| s.state == State::Done);
            let state = match status {
                Some(s) => format!("{:?}", s.state).to_lowercase(),
                None => "pending".into(),
            };
            let get = |map: Option<&BTreeMap<String, f64>>, k: &String| num(map.and_then(|m| m.get(k).copied()));
            [if done { (i + 1).to_string() } else { String::new() }, id.clone()]
                .into_iter()
                .chain(values.iter().cloned())
                .chain([
                    state,
                    status.as_ref().and_then(|s| s.evaluated_epoch).map(|e| e.to_string()).unwrap_or_default(),
                ])
                .chain(validation_keys.iter().map(|k| get(status.as_ref().map(|s| &s.validation), k)))
                .chain(test_keys.iter().map(|k| get(status.as_ref().map(|s| &s.test), k)))
                .collect()
        })
        .collect();
    write_csv(path, &header, &rows)
}
