//! An external validation's folder, `runs/<recipe>/external/<name>/`: what `radrun
//! evaluate` applied to which set (`external.json`, beside the evaluation files of a run
//! folder), and the check that the set shares no patient and no file with the data the
//! run(s) learnt from, validated and tested on (their `split.csv`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use radrun_data::Sample;
use radrun_data::paths::path_text;
use radrun_metrics::evaluate::Chosen;
use radrun_metrics::stats::Interval;
use serde::{Deserialize, Serialize};

use super::provenance::{DatasetFingerprint, group_hash};
use super::{WriteError, write_atomic};

/// The folder of a recipe's external validations.
pub const EXTERNAL_FOLDER: &str = "external";

/// `external.json`: what was applied to which set, with what result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExternalRecord {
    /// The set's name (its folder under `external/`).
    pub name: String,
    /// The set's folder, and its labels table when one labelled it.
    #[serde(serialize_with = "radrun_data::paths::serialize_path")]
    pub data: PathBuf,
    pub labels: Option<String>,
    /// The runs applied (their probabilities averaged when several).
    pub runs: Vec<String>,
    /// The threshold and temperature used, as the run chose them on its own validation
    /// split (none for an ensemble: each fold chose its own).
    pub decisions: Chosen,
    pub images: usize,
    /// Patients (groups) of the set, by the run's `data.group_by`.
    pub patients: usize,
    /// The run's classes (labels) no image of the set holds.
    pub missing_classes: Vec<String>,
    pub fingerprint: DatasetFingerprint,
    pub leakage: LeakageCheck,
    /// What a reader must know (the grouping used, decisions not applied...).
    pub notes: Vec<String>,
    /// The headline test metrics of the run(s) on their internal test set (the mean
    /// over the runs of an ensemble), beside the external ones.
    pub internal: BTreeMap<String, f64>,
    /// Their intervals (one run only: a mean over runs has none).
    pub internal_intervals: BTreeMap<String, Interval>,
    pub test: BTreeMap<String, f64>,
    pub test_intervals: BTreeMap<String, Interval>,
    pub evaluated: String,
    pub radrun_version: String,
    pub device: String,
}

impl ExternalRecord {
    pub fn write(&self, folder: &Path) -> Result<(), WriteError> {
        let json = serde_json::to_vec_pretty(self).expect("plain data serializes");
        write_atomic(&folder.join("external.json"), &json)
    }

    /// Every external validation of a recipe's runs `folder`, by name (unreadable
    /// records left out).
    pub fn all(folder: &Path) -> Vec<(PathBuf, ExternalRecord)> {
        let Ok(entries) = std::fs::read_dir(folder.join(EXTERNAL_FOLDER)) else { return Vec::new() };
        let mut records: Vec<(PathBuf, ExternalRecord)> = entries
            .flatten()
            // not a set being written (`.evaluating-*`)
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .filter_map(|e| {
                let text = std::fs::read(e.path().join("external.json")).ok()?;
                Some((e.path(), serde_json::from_slice(&text).ok()?))
            })
            .collect();
        records.sort_by(|a, b| a.1.name.cmp(&b.1.name));
        records
    }
}

/// What the leakage check compared and found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LeakageCheck {
    /// Files and patients (groups) of the runs' split.csv compared against.
    pub run_files: usize,
    pub run_patients: usize,
    /// External images whose file content, or patient, the runs' data also holds.
    pub shared_files: usize,
    pub shared_patients: usize,
    /// The first few: (external file, what it shares, the run's file).
    pub examples: Vec<(String, String, String)>,
    /// Patients could not be compared (the training dataset's salt is gone).
    pub patients_unchecked: bool,
}

impl LeakageCheck {
    /// Compares the external `items` (images, or volume cases by each of their image
    /// files) with the files of the runs' `split_csvs` (the runs of one dataset): the
    /// same content (SHA-256), and the same patient (each of an item's identifiers
    /// hashed with the training dataset's `salt`, as split.csv holds groups). A split.csv
    /// that cannot be read is an error naming it.
    pub fn of_items(split_csvs: &[PathBuf], items: &[Compared], salt: Option<&str>) -> Result<LeakageCheck, String> {
        let mut rows = Vec::new();
        for path in split_csvs {
            rows.extend(split_rows(path)?);
        }
        let by_content: HashMap<&str, &str> = rows.iter().map(|r| (r.sha256.as_str(), r.file.as_str())).collect();
        let by_group: HashMap<&str, &str> =
            rows.iter().filter(|r| !r.group.is_empty()).map(|r| (r.group.as_str(), r.file.as_str())).collect();
        let files: std::collections::HashSet<&str> = rows.iter().map(|r| r.file.as_str()).collect();
        let mut check = LeakageCheck {
            run_files: files.len(),
            run_patients: by_group.len(),
            patients_unchecked: salt.is_none(),
            ..LeakageCheck::default()
        };
        for item in items {
            if let Some(file) = item.sha256.iter().find_map(|sha| by_content.get(sha)) {
                check.shared_files += 1;
                check.example(item.path, "the same file content as", file);
            }
            let Some(salt) = salt else { continue };
            let shared = item.ids.iter().find_map(|id| by_group.get(group_hash(salt, id).as_str()));
            if let Some(file) = shared {
                check.shared_patients += 1;
                check.example(item.path, "the same patient identifier as", file);
            }
        }
        Ok(check)
    }

    fn example(&mut self, external: &Path, what: &str, file: &str) {
        if self.examples.len() < 5 {
            self.examples.push((path_text(external), what.to_string(), file.to_string()));
        }
    }

    pub fn found(&self) -> bool {
        self.shared_files + self.shared_patients > 0
    }

    /// The message: counts and files only (a patient's ID is never written).
    pub fn describe(&self) -> String {
        let mut text = format!(
            "leakage: {} image(s) of the external set have the same file content, and {} the same patient, as \
             images the run(s) trained, validated or were tested on, e.g.",
            self.shared_files, self.shared_patients
        );
        for (external, what, file) in &self.examples {
            text.push_str(&format!("\n  - {external}: {what} {file} (split.csv)"));
        }
        text.push_str(
            "\nAn external set must be independent of the run's data: remove those images. Patients are \
             compared by their identifiers (the run's `data.group_by`); if these are other patients whose \
             identifiers only coincide (numbered locally at each site), pass --allow-leakage to evaluate anyway \
             (the record then says so).",
        );
        text
    }
}

/// An external image or case as the leakage check compares it.
pub struct Compared<'a> {
    pub path: &'a Path,
    /// SHA-256 of each of its files (hex).
    pub sha256: Vec<&'a str>,
    /// Its patient identifiers (group, DICOM PatientID), as they are: hashed here.
    pub ids: Vec<&'a str>,
}

impl<'a> Compared<'a> {
    /// An image: its file, its group and its DICOM PatientID.
    pub fn of_sample(sample: &'a Sample) -> Self {
        let o = &sample.origin;
        Compared {
            path: &sample.path,
            sha256: vec![o.sha256.as_str()],
            ids: [o.group.as_deref(), o.patient_id.as_deref()].into_iter().flatten().collect(),
        }
    }
}

/// A row of a run's split.csv, as the check reads it.
struct SplitRow {
    file: String,
    group: String,
    sha256: String,
}

fn split_rows(path: &Path) -> Result<Vec<SplitRow>, String> {
    let why = |e: &dyn std::fmt::Display| format!("{}: {e}", path_text(path));
    let mut reader = csv::Reader::from_path(path).map_err(|e| why(&e))?;
    let headers = reader.headers().map_err(|e| why(&e))?.clone();
    let column = |name: &str| headers.iter().position(|h| h == name).ok_or_else(|| why(&format!("no {name} column")));
    let (file, group, sha256) = (column("file")?, column("group")?, column("sha256")?);
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| why(&e))?;
        let cell = |c: usize| super::read_cell(record.get(c).unwrap_or_default()).to_string();
        rows.push(SplitRow { file: cell(file), group: cell(group), sha256: cell(sha256) });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use radrun_data::{Origin, Pixels, Target};

    fn sample(path: &str, sha256: &str, group: Option<&str>, patient_id: Option<&str>) -> Sample {
        Sample {
            path: PathBuf::from(path),
            target: Target::Class(0),
            image: Pixels::pack(vec![0.0]),
            pixel_spacing_mm: None,
            origin: Origin {
                group: group.map(str::to_string),
                patient_id: patient_id.map(str::to_string),
                sha256: sha256.into(),
                bytes: 1,
                fold: None,
            },
        }
    }

    #[test]
    fn shared_contents_and_patients_are_found_by_their_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let split = dir.path().join("split.csv");
        let salt = "s4lt";
        let (p1, p2) = (group_hash(salt, "P1"), group_hash(salt, "P2"));
        std::fs::write(
            &split,
            format!("file,split,fold,class,group,bytes,sha256\nTrain/a.png,train,,x,{p1},1,aaa\nTest/b.png,test,,x,{p2},1,bbb\n"),
        )
        .unwrap();
        let samples = [
            sample("ext/same_bytes.png", "bbb", Some("Q9"), None),
            sample("ext/same_patient.dcm", "ccc", None, Some("P1")),
            sample("ext/new.png", "ddd", Some("Q8"), Some("Q8")),
        ];
        let twice = [split.clone(), split.clone()];
        let compared: Vec<Compared> = samples.iter().map(Compared::of_sample).collect();
        let check = LeakageCheck::of_items(&twice, &compared, Some(salt)).unwrap();
        assert_eq!((check.run_files, check.run_patients, check.shared_files, check.shared_patients), (2, 2, 1, 1));
        assert!(check.found());
        let message = check.describe();
        assert!(message.contains("ext/same_bytes.png: the same file content as Test/b.png"), "{message}");
        assert!(message.contains("ext/same_patient.dcm: the same patient identifier as Train/a.png"), "{message}");
        assert!(!message.contains("P1"), "no patient ID is written: {message}");
        // without the salt only contents are compared
        let unsalted = LeakageCheck::of_items(&twice, &compared, None).unwrap();
        assert_eq!((unsalted.shared_files, unsalted.shared_patients, unsalted.patients_unchecked), (1, 0, true));
    }
}
