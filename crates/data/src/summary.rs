//! The data summary: what was found on disk, what was left out and why, and what the
//! files were (formats, sizes, DICOM modalities and transfer syntaxes). Printed by
//! `radrun plan` and stored in each run folder.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::decode::{FileKind, ImageInfo};
use crate::settings::Task;

/// Skipped files the printed summary names; the rest are counted (thousands of unreadable
/// files made thousands of lines). data_summary.json, and skipped.csv in the run folder,
/// hold every one.
const SKIPPED_NAMED: usize = 5;

/// A file left out under `on_unreadable = "skip"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkippedFile {
    #[serde(serialize_with = "crate::paths::serialize_path")]
    pub path: PathBuf,
    pub reason: String,
}

impl SkippedFile {
    pub fn from_error(error: &Error) -> Self {
        Self { path: error.file().map(Path::to_path_buf).unwrap_or_default(), reason: error.to_string() }
    }
}

/// Images of one split.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SplitSummary {
    /// "train", "validation" or "test".
    pub name: String,
    /// Where its images came from.
    pub source: String,
    pub images: usize,
    /// Images per class (classification) or with each label present (segmentation).
    pub per_class: BTreeMap<String, usize>,
    /// Groups (patients, see `data.group_by`); an image without a group counts as one.
    pub groups: usize,
    /// For splits cut from the training folder: the largest difference, in percentage
    /// points, between a class's share of this split and of the whole folder (0 = as
    /// stratified as can be; groups can make it larger).
    pub class_share_gap: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DataSummary {
    #[serde(serialize_with = "crate::paths::serialize_path")]
    pub root: PathBuf,
    pub task: Task,
    pub classes: Vec<String>,
    pub splits: Vec<SplitSummary>,
    /// Fraction of the training folder held out as validation, when there was no folder.
    pub validation_split_off: Option<f64>,
    /// Cross-validation: (this run's fold, number of folds).
    pub fold: Option<(u32, u32)>,
    /// How images are grouped (see `data.group_by`).
    pub grouping: String,
    /// Problems that did not stop the run (leakage under `data.allow_leakage`).
    pub warnings: Vec<String>,
    /// Files that are not images (ignored).
    #[serde(serialize_with = "crate::paths::serialize_paths")]
    pub ignored: Vec<PathBuf>,
    /// Images that could not be read and were skipped, with the reason.
    pub skipped: Vec<SkippedFile>,
    /// Count of files per format ("PNG 8-bit", "DICOM", ...).
    pub formats: BTreeMap<String, usize>,
    /// Count of files per stored size ("height x width").
    pub sizes: BTreeMap<String, usize>,
    pub dicom_modalities: BTreeMap<String, usize>,
    pub dicom_transfer_syntaxes: BTreeMap<String, usize>,
    pub dicom_photometric: BTreeMap<String, usize>,
    /// Count of files per decoder note (values from Enhanced functional groups, bytes
    /// after a JPEG's end ignored...).
    pub notes: BTreeMap<String, usize>,
    /// Distinct DICOM PatientIDs seen.
    pub patients: usize,
    #[serde(skip)]
    patient_ids: BTreeSet<String>,
    #[serde(skip)]
    split_sources: BTreeMap<String, String>,
}

impl DataSummary {
    pub(crate) fn new(root: &Path, task: Task) -> Self {
        Self {
            root: root.to_path_buf(),
            task,
            classes: Vec::new(),
            splits: Vec::new(),
            validation_split_off: None,
            fold: None,
            grouping: String::new(),
            warnings: Vec::new(),
            ignored: Vec::new(),
            skipped: Vec::new(),
            formats: BTreeMap::new(),
            sizes: BTreeMap::new(),
            dicom_modalities: BTreeMap::new(),
            dicom_transfer_syntaxes: BTreeMap::new(),
            dicom_photometric: BTreeMap::new(),
            notes: BTreeMap::new(),
            patients: 0,
            patient_ids: BTreeSet::new(),
            split_sources: BTreeMap::new(),
        }
    }

    pub(crate) fn record_image(&mut self, info: &ImageInfo) {
        let format = match info.kind {
            FileKind::Png => format!("PNG {}-bit", info.bits),
            FileKind::Jpeg => "JPEG".to_string(),
            FileKind::Dicom => "DICOM".to_string(),
        };
        *self.formats.entry(format).or_default() += 1;
        *self.sizes.entry(format!("{} x {}", info.height, info.width)).or_default() += 1;
        for note in &info.notes {
            *self.notes.entry(note.to_string()).or_default() += 1;
        }
        if let Some(d) = &info.dicom {
            let modality = d.modality.clone().unwrap_or_else(|| "(none)".into());
            *self.dicom_modalities.entry(modality).or_default() += 1;
            *self.dicom_transfer_syntaxes.entry(d.transfer_syntax.clone()).or_default() += 1;
            *self.dicom_photometric.entry(d.photometric.clone()).or_default() += 1;
            if let Some(id) = &d.patient_id {
                self.patient_ids.insert(id.clone());
                self.patients = self.patient_ids.len();
            }
        }
    }

    pub(crate) fn record_split_folder(&mut self, name: &str, folder: &Path) {
        self.split_sources.insert(name.to_string(), crate::paths::path_text(folder));
    }

    /// Records one split: its image count and the count per class (`counts[c]` for
    /// `self.classes[c]`).
    pub(crate) fn record_split(
        &mut self,
        name: &str,
        images: usize,
        counts: &[usize],
        groups: usize,
        class_share_gap: Option<f64>,
    ) {
        let per_class: BTreeMap<String, usize> = self.classes.iter().cloned().zip(counts.iter().copied()).collect();
        let train = self.split_sources.get("train").map(String::as_str).unwrap_or("train");
        let source = match (self.fold, self.validation_split_off, name) {
            (_, _, "test") | (None, None, _) => self.split_sources.get(name).cloned().unwrap_or_default(),
            (Some((fold, k)), _, "validation") => format!("fold {fold} of {k} of {train} (grouped, stratified)"),
            (Some((_, k)), _, _) => format!("the other {} folds of {train}", k - 1),
            (None, Some(fraction), "validation") => format!("{fraction} of {train} (grouped, stratified, seeded)"),
            (None, Some(_), _) => format!("the rest of {train}"),
        };
        self.splits.push(SplitSummary { name: name.to_string(), source, images, per_class, groups, class_share_gap });
    }
}

fn write_counts(f: &mut fmt::Formatter<'_>, title: &str, counts: &BTreeMap<String, usize>) -> fmt::Result {
    if counts.is_empty() {
        return Ok(());
    }
    let parts: Vec<String> = counts.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    writeln!(f, "  {title:<22}{}", parts.join(", "))
}

impl fmt::Display for DataSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let task = self.task.name();
        writeln!(f, "Data: {} ({task}, {} classes)", crate::paths::path_text(&self.root), self.classes.len())?;
        let width = self.classes.iter().map(String::len).max().unwrap_or(5).max(5);
        write!(f, "  {:<12}{:>7}{:>8}", "split", "images", "groups")?;
        for class in &self.classes {
            write!(f, "  {class:>width$}")?;
        }
        writeln!(f, "  class gap  source")?;
        for split in &self.splits {
            write!(f, "  {:<12}{:>7}{:>8}", split.name, split.images, split.groups)?;
            for class in &self.classes {
                write!(f, "  {:>width$}", split.per_class.get(class).copied().unwrap_or(0))?;
            }
            let gap = split.class_share_gap.map(|g| format!("{g:.1} pt")).unwrap_or_default();
            writeln!(f, "  {gap:>9}  {}", split.source)?;
        }
        writeln!(f, "  {:<22}{}", "grouped by", self.grouping)?;
        if self.splits.iter().any(|s| s.class_share_gap.is_some()) {
            writeln!(
                f,
                "  {:<22}largest difference between a class's share of the split and of the training folder",
                "class gap"
            )?;
        }
        write_counts(f, "formats", &self.formats)?;
        let mut sizes: Vec<(&String, &usize)> = self.sizes.iter().collect();
        sizes.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let shown: Vec<String> = sizes.iter().take(5).map(|(k, v)| format!("{k}: {v}")).collect();
        let more = if sizes.len() > 5 { format!(" (+{} other sizes)", sizes.len() - 5) } else { String::new() };
        writeln!(f, "  {:<22}{}{more}", "stored sizes", shown.join(", "))?;
        write_counts(f, "DICOM modalities", &self.dicom_modalities)?;
        write_counts(f, "DICOM transfer syntax", &self.dicom_transfer_syntaxes)?;
        write_counts(f, "DICOM photometric", &self.dicom_photometric)?;
        write_counts(f, "notes (files)", &self.notes)?;
        if self.patients > 0 {
            writeln!(f, "  {:<22}{}", "DICOM patients", self.patients)?;
        }
        writeln!(f, "  {:<22}{}", "non-image files", self.ignored.len())?;
        writeln!(f, "  {:<22}{}", "skipped (unreadable)", self.skipped.len())?;
        for skipped in self.skipped.iter().take(SKIPPED_NAMED) {
            writeln!(f, "    - {}", skipped.reason)?;
        }
        if self.skipped.len() > SKIPPED_NAMED {
            let more = self.skipped.len() - SKIPPED_NAMED;
            writeln!(f, "    and {more} more: each run folder's skipped.csv lists every one, and why")?;
        }
        for warning in &self.warnings {
            writeln!(f, "  warning: {warning}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::DecodeNote;

    /// Each file counts once per kind of note, and the printed summary shows the counts.
    #[test]
    fn decoder_notes_are_counted_per_file_and_printed() {
        let mut summary = DataSummary::new(Path::new("data"), Task::Classification);
        let info = |notes: Vec<DecodeNote>| ImageInfo {
            kind: FileKind::Dicom,
            height: 2,
            width: 2,
            bits: 16,
            dicom: None,
            notes,
        };
        summary.record_image(&info(vec![DecodeNote::FunctionalGroups, DecodeNote::BytesAfterEndOfImage]));
        summary.record_image(&info(vec![DecodeNote::FunctionalGroups]));
        summary.record_image(&info(Vec::new()));
        assert_eq!(summary.notes["values from Enhanced functional groups"], 2);
        assert_eq!(summary.notes["bytes after JPEG end-of-image ignored"], 1);
        let printed = summary.to_string();
        assert!(printed.contains("values from Enhanced functional groups: 2"), "{printed}");
    }
}
