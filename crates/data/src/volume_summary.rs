//! A volume dataset's data summary: printed by `radrun plan` and written in each run
//! folder as data_summary.txt ([`VolumeSummary`], the dataset as read) and
//! data_summary.json ([`VolumeDataSummary`], the dataset and the run's split of it, in
//! the keys of the 2D summary where they mean the same: the methods section and the
//! CLAIM checklist are drafted from it).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::decode::FileKind;
use crate::intensity::percentile;
use crate::paths::path_text;
use crate::settings::{GroupBy, SplitSettings, Task};
use crate::volume_dataset::{CaseFacts, VolumeImages, VolumeSplit, count_groups};
use crate::volume_settings::DatasetLayout;

/// Cases of one split of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseSplitSummary {
    /// "train", "validation" or "test".
    pub name: String,
    /// The folder its cases came from (or the one they were held out of).
    pub source: String,
    pub cases: usize,
    /// Patients (see `data.group_by`).
    pub groups: usize,
    /// Cases per class (classification) or holding each label (segmentation).
    pub per_class: BTreeMap<String, usize>,
}

/// A label of the masks: its value, name, and the cases and voxels holding it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelSummary {
    pub value: u32,
    pub name: String,
    pub cases: usize,
    pub voxels: u64,
}

/// Minimum, median and maximum of each axis, `[z, y, x]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AxisSpread {
    pub min: [f64; 3],
    pub median: [f64; 3],
    pub max: [f64; 3],
}

/// data_summary.json of a volume run (or an external volume set): the dataset as read
/// and the run's split of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VolumeDataSummary {
    #[serde(serialize_with = "crate::paths::serialize_path")]
    pub root: PathBuf,
    pub task: Task,
    /// "decathlon", "folders" or "labels table".
    pub layout: String,
    /// The classes (classification) or the labels' names, background left out
    /// (segmentation).
    pub classes: Vec<String>,
    pub splits: Vec<CaseSplitSummary>,
    /// `data.test_fraction`, when the test cases were held out of the training cases.
    pub test_held_out: Option<f64>,
    /// `data.validation_fraction`, when the validation cases were held out of them.
    pub validation_split_off: Option<f64>,
    /// Cross-validation: (this run's fold, number of folds).
    pub fold: Option<(u32, u32)>,
    /// How cases are grouped into patients (see `data.group_by`).
    pub grouping: String,
    /// A patient or a volume in two sets, allowed by `data.allow_leakage`.
    pub warnings: Vec<String>,
    /// Files that are neither volumes nor DICOM.
    #[serde(serialize_with = "crate::paths::serialize_paths")]
    pub ignored: Vec<PathBuf>,
    /// Cases without labels (a Decathlon layout's imagesTs/), not used.
    pub unlabelled: usize,
    /// Cases per format of their first channel ("NIfTI", "DICOM series", "DICOM file").
    pub formats: BTreeMap<String, usize>,
    /// Cases per DICOM Modality.
    pub dicom_modalities: BTreeMap<String, usize>,
    pub channels: usize,
    pub channel_names: Vec<String>,
    /// Voxels per axis after `data.orientation`.
    pub shape: AxisSpread,
    /// Spacing per axis after `data.orientation`, in mm.
    pub spacing_mm: AxisSpread,
    /// Cases per stored axis codes ("RAS", "LPS", ...).
    pub stored_axes: BTreeMap<String, usize>,
    /// Cases whose axes are oblique (kept with their rotation).
    pub oblique: usize,
    /// NaN voxels read as 0 (`data.nan = "zero"`).
    pub nan_zeroed: usize,
    /// Masks resampled onto their image's grid (`data.mask_geometry = "resample"`).
    pub masks_resampled: usize,
    /// Segmentation: each label of the masks.
    pub labels: Vec<LabelSummary>,
    /// The network's input block `[z, y, x]` (a patch, or a classification's centred
    /// block), in voxels of the working grid: set by the run, `None` for an external set.
    pub input_voxels: Option<[i64; 3]>,
}

impl VolumeDataSummary {
    /// The summary of `images` split as `split` (under `settings`; `None`: an external
    /// set, every case a test case).
    pub fn of(images: &VolumeImages, split: &VolumeSplit, settings: Option<&SplitSettings>) -> VolumeDataSummary {
        let (layout, data) = (&images.layout, &images.settings);
        let all: Vec<&CaseFacts> = images.cases().map(|(_, c)| c).collect();
        let train_folder = path_text(&layout.train.folder);
        let held = |what: &str| format!("{what} of {train_folder}");
        let validation = match &layout.validation {
            Some(folder) => path_text(&folder.folder),
            None => held("held out"),
        };
        let test = match &layout.test {
            Some(folder) => path_text(&folder.folder),
            None => held("held out"),
        };
        let splits = [
            ("train", &split.train, train_folder.clone()),
            ("validation", &split.validation, validation),
            ("test", &split.test, test),
        ]
        .into_iter()
        .filter(|(_, cases, _)| !cases.is_empty())
        .map(|(name, cases, source)| CaseSplitSummary {
            name: name.into(),
            source,
            cases: cases.len(),
            groups: count_groups(cases),
            per_class: per_class(images, cases),
        })
        .collect();
        let folds = settings.map_or(0, |s| s.folds);
        VolumeDataSummary {
            root: data.root.clone(),
            task: data.task,
            layout: layout_name(images).into(),
            classes: match data.task {
                Task::Classification => layout.classes.clone(),
                _ => images.label_names().into_iter().filter(|(v, _)| *v != 0).map(|(_, n)| n).collect(),
            },
            splits,
            test_held_out: (settings.is_some() && layout.test.is_none()).then_some(data.test_fraction),
            validation_split_off: (settings.is_some() && layout.validation.is_none() && folds == 0)
                .then_some(data.validation_fraction),
            fold: settings.filter(|s| s.folds > 0).map(|s| (s.fold, s.folds)),
            grouping: group_words(&data.group_by),
            warnings: [crate::table::table_warnings(data), split.leaks()].concat(),
            ignored: layout.ignored.clone(),
            unlabelled: layout.unlabelled,
            formats: tally(all.iter().map(|c| format_of(&c.source))),
            dicom_modalities: tally(all.iter().filter_map(|c| c.modality.clone())),
            channels: all.first().map_or(0, |c| c.channels),
            channel_names: layout.channel_names.clone(),
            shape: axis_spread(&all, |c| c.shape.map(|n| n as f64)),
            spacing_mm: axis_spread(&all, |c| c.spacing),
            stored_axes: tally(all.iter().map(|c| c.stored_axes.clone())),
            oblique: all.iter().filter(|c| c.oblique).count(),
            nan_zeroed: all.iter().map(|c| c.nan_zeroed).sum(),
            masks_resampled: all.iter().filter(|c| c.mask_resampled).count(),
            labels: match data.task {
                Task::Segmentation => label_summaries(images, &all),
                _ => Vec::new(),
            },
            input_voxels: None,
        }
    }
}

/// Cases per class, or holding each foreground label.
fn per_class(images: &VolumeImages, cases: &[&CaseFacts]) -> BTreeMap<String, usize> {
    match images.settings.task {
        Task::Classification => images
            .layout
            .classes
            .iter()
            .enumerate()
            .map(|(i, class)| (class.clone(), cases.iter().filter(|c| c.class == Some(i)).count()))
            .collect(),
        _ => label_summaries(images, cases).into_iter().filter(|l| l.value != 0).map(|l| (l.name, l.cases)).collect(),
    }
}

fn label_summaries(images: &VolumeImages, all: &[&CaseFacts]) -> Vec<LabelSummary> {
    images
        .label_names()
        .into_iter()
        .map(|(value, name)| LabelSummary {
            value,
            name,
            cases: all.iter().filter(|c| c.labels.get(&value).is_some_and(|&n| n > 0)).count(),
            voxels: all.iter().filter_map(|c| c.labels.get(&value)).sum(),
        })
        .collect()
}

fn tally(values: impl Iterator<Item = String>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for value in values {
        *counts.entry(value).or_default() += 1;
    }
    counts
}

/// "NIfTI", "DICOM series" (a folder) or "DICOM file" (a multi-frame one).
fn format_of(source: &Path) -> String {
    if source.is_dir() {
        "DICOM series".into()
    } else if FileKind::of(source) == Some(FileKind::Dicom) {
        "DICOM file".into()
    } else {
        "NIfTI".into()
    }
}

fn layout_name(images: &VolumeImages) -> &'static str {
    match images.layout.layout {
        DatasetLayout::Decathlon => "Decathlon / nnU-Net layout",
        _ if !images.settings.labels.as_os_str().is_empty() => "labels table",
        _ => "split folders",
    }
}

/// Each axis's minimum, median and maximum, `[z, y, x]`.
fn axis_spread(cases: &[&CaseFacts], value: impl Fn(&CaseFacts) -> [f64; 3]) -> AxisSpread {
    let stat = |q: f64| -> [f64; 3] {
        let [x, y, z] = std::array::from_fn(|axis| {
            let mut values: Vec<f64> = cases.iter().map(|c| value(c)[axis]).collect();
            if values.is_empty() { 0.0 } else { percentile(&mut values, q) }
        });
        [z, y, x]
    };
    AxisSpread { min: stat(0.0), median: stat(50.0), max: stat(100.0) }
}

impl AxisSpread {
    /// "min [z, y, x], median [...], max [...]", to `decimals` places.
    pub fn text(&self, decimals: usize) -> String {
        let axes = |v: [f64; 3]| format!("[{}]", v.map(|x| format!("{x:.decimals$}")).join(", "));
        format!("min {}, median {}, max {}", axes(self.min), axes(self.median), axes(self.max))
    }
}

/// The data summary of a volume dataset: what was read, before any split.
pub struct VolumeSummary<'a> {
    images: &'a VolumeImages,
}

impl VolumeSummary<'_> {
    /// The summary of `images`, to print.
    pub fn of(images: &VolumeImages) -> VolumeSummary<'_> {
        VolumeSummary { images }
    }
}

impl fmt::Display for VolumeSummary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let images = self.images;
        let layout = &images.layout;
        let settings = &images.settings;
        let kind = layout_name(images);
        writeln!(f, "Volumes in {} ({kind}, {})", path_text(&settings.root), settings.task.name())?;
        write_splits(f, images)?;
        let all: Vec<&CaseFacts> = images.cases().map(|(_, c)| c).collect();
        let channels = all.first().map_or(0, |c| c.channels);
        let names = if layout.channel_names.is_empty() {
            String::new()
        } else {
            format!(" ({})", layout.channel_names.join(", "))
        };
        writeln!(f, "  channels   {channels}{names}")?;
        writeln!(
            f,
            "  shape      {} voxels [z, y, x] after {}",
            axis_spread(&all, |c| c.shape.map(|n| n as f64)).text(0),
            settings.orientation.name()
        )?;
        writeln!(f, "  spacing    {} mm", axis_spread(&all, |c| c.spacing).text(3))?;
        let axes = tally(all.iter().map(|c| c.stored_axes.clone()));
        let axes: Vec<String> = axes.iter().map(|(a, n)| format!("{a} {n}")).collect();
        writeln!(f, "  stored as  {}", axes.join(", "))?;
        let oblique = all.iter().filter(|c| c.oblique).count();
        if oblique > 0 {
            writeln!(f, "  oblique    {oblique} case(s): kept with their rotation, not resampled onto the axes")?;
        }
        if settings.task == Task::Segmentation {
            write_labels(f, images, &all)?;
        }
        let nan: usize = all.iter().map(|c| c.nan_zeroed).sum();
        if nan > 0 {
            writeln!(f, "  NaN        {nan} voxel(s) read as 0 (data.nan = \"zero\")")?;
        }
        let resampled = all.iter().filter(|c| c.mask_resampled).count();
        if resampled > 0 {
            writeln!(
                f,
                "  masks      {resampled} resampled onto their image's grid (data.mask_geometry = \"resample\")"
            )?;
        }
        writeln!(f, "  grouping   {}", group_words(&settings.group_by))?;
        if !layout.ignored.is_empty() {
            writeln!(f, "  ignored    {} file(s) that are neither volumes nor DICOM", layout.ignored.len())?;
        }
        Ok(())
    }
}

/// Cases per split (and class), the held-out test set, the unlabelled cases.
fn write_splits(f: &mut fmt::Formatter<'_>, images: &VolumeImages) -> fmt::Result {
    let (layout, settings) = (&images.layout, &images.settings);
    let splits =
        [("train", Some(&images.train)), ("validation", images.validation.as_ref()), ("test", images.test.as_ref())];
    // an external set's cases are all test cases
    for (name, cases) in splits {
        if let Some(cases) = cases.filter(|c| !c.is_empty()) {
            write!(f, "  {name:<10} {} cases", cases.len())?;
            if settings.task == Task::Classification {
                for (i, class) in layout.classes.iter().enumerate() {
                    write!(f, ", {class} {}", cases.iter().filter(|c| c.class == Some(i)).count())?;
                }
            }
            writeln!(f)?;
        }
    }
    if images.test.is_none() {
        writeln!(f, "  test       {} of the training cases held out (data.test_fraction)", settings.test_fraction)?;
    }
    if layout.unlabelled > 0 {
        writeln!(f, "  unlabelled {} test case(s) without labels (imagesTs), for prediction only", layout.unlabelled)?;
    }
    Ok(())
}

fn write_labels(f: &mut fmt::Formatter<'_>, images: &VolumeImages, all: &[&CaseFacts]) -> fmt::Result {
    for LabelSummary { value, name, cases, voxels } in label_summaries(images, all) {
        // a value without a declared name is shown once
        let name = if name == format!("label {value}") { String::new() } else { format!("{name}: ") };
        writeln!(f, "  label {value:<4} {name}in {cases} of {} cases, {voxels} voxels", all.len())?;
    }
    Ok(())
}

fn group_words(group_by: &GroupBy) -> String {
    match group_by {
        GroupBy::Auto => "DICOM PatientID (or the labels table's patient) where present, else the case".into(),
        GroupBy::None => "none: every case on its own".into(),
        other => other.describe(),
    }
}
