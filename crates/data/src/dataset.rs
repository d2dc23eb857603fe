//! Finding a dataset's files in its folder layout, decoding them all in parallel into an
//! in-memory cache of resized images, and splitting off validation.
//!
//! Classification: `<root>/<split>/<class>/<image>` (images may sit in sub-folders of a
//! class folder, e.g. one per patient). Segmentation: `<root>/<split>/<images folder>/`
//! and `<root>/<split>/<masks folder>/`, paired by file stem.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;

use crate::Error;
use crate::decode::{self, DecodeOptions, FileKind, ImageInfo};
use crate::resize::{resize_image, resize_mask};
use crate::settings::{AUTO, DataSettings, Task, UnreadablePolicy};
use crate::split::stratified;
use crate::summary::{DataSummary, SkippedFile};

/// What a sample is labelled with.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// Index into [`Dataset::classes`].
    Class(usize),
    /// One label index per pixel of the resized image (0 = background).
    Mask(Vec<u8>),
}

/// One decoded, resized image and its label.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub path: PathBuf,
    pub target: Target,
    /// Intensities in [0, 1], `height x width`, row-major.
    pub image: Vec<f32>,
    pub patient_id: Option<String>,
    /// Millimetres per pixel of the resized image (rows, columns), when the file said.
    pub pixel_spacing_mm: Option<[f64; 2]>,
}

/// The samples of one split, cheap to clone and share between threads.
#[derive(Debug, Clone)]
pub struct Split {
    /// "train", "validation" or "test".
    pub name: &'static str,
    pub samples: Arc<[Sample]>,
}

impl Split {
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Images per class (classification) or images in which each label is present
    /// (segmentation), for `classes` classes or labels.
    pub fn class_counts(&self, classes: usize) -> Vec<usize> {
        let mut counts = vec![0; classes];
        for sample in self.samples.iter() {
            match &sample.target {
                Target::Class(c) => counts[*c] += 1,
                Target::Mask(mask) => {
                    let present: BTreeSet<u8> = mask.iter().copied().collect();
                    for label in present.into_iter().map(usize::from).filter(|&l| l < classes) {
                        counts[label] += 1;
                    }
                }
            }
        }
        counts
    }

    /// Class index of every sample (classification only; masks give 0).
    pub fn class_labels(&self) -> Vec<usize> {
        self.samples
            .iter()
            .map(|s| match s.target {
                Target::Class(c) => c,
                Target::Mask(_) => 0,
            })
            .collect()
    }
}

/// A loaded dataset: every image decoded and resized once, kept in memory for all epochs.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub task: Task,
    /// Class names (folder names, sorted), or for segmentation the label names
    /// ("background", then "foreground" or "label 1", "label 2", ...).
    pub classes: Vec<String>,
    pub height: usize,
    pub width: usize,
    pub train: Split,
    pub validation: Split,
    pub test: Split,
    pub summary: DataSummary,
}

/// A file found on disk, before decoding.
#[derive(Debug, Clone)]
struct Candidate {
    path: PathBuf,
    label: CandidateLabel,
}

#[derive(Debug, Clone)]
enum CandidateLabel {
    Class(usize),
    Mask(PathBuf),
}

/// Files found in one split folder.
#[derive(Debug, Default)]
struct Found {
    candidates: Vec<Candidate>,
    /// Non-image files that were ignored.
    ignored: Vec<PathBuf>,
    /// Problems with the layout itself (a mask without image, ...), skippable by policy.
    problems: Vec<Error>,
}

/// Lists the entries of a folder sorted by name, hidden entries left out.
fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let read = fs::read_dir(dir).map_err(|source| Error::Io { path: dir.to_path_buf(), source })?;
    let mut entries = Vec::new();
    for entry in read {
        let entry = entry.map_err(|source| Error::Io { path: dir.to_path_buf(), source })?;
        entries.push(entry.path());
    }
    entries.sort();
    Ok(entries)
}

fn is_hidden(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'))
}

/// All files under `dir` (recursively, sorted), split into images and other files.
fn walk_images(dir: &Path, images: &mut Vec<PathBuf>, ignored: &mut Vec<PathBuf>) -> Result<(), Error> {
    for path in sorted_entries(dir)? {
        if path.is_dir() {
            if !is_hidden(&path) {
                walk_images(&path, images, ignored)?;
            }
        } else if !is_hidden(&path) && FileKind::of(&path).is_some() {
            images.push(path);
        } else {
            ignored.push(path);
        }
    }
    Ok(())
}

fn subfolders(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    Ok(sorted_entries(dir)?.into_iter().filter(|p| p.is_dir() && !is_hidden(p)).collect())
}

fn folder_names(dir: &Path) -> String {
    let names: Vec<String> = subfolders(dir)
        .unwrap_or_default()
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    if names.is_empty() { "no folders".into() } else { names.join(", ") }
}

/// The folder of a split, which must exist.
fn split_folder(root: &Path, key: &str, name: &str) -> Result<PathBuf, Error> {
    let path = root.join(name);
    if path.is_dir() {
        Ok(path)
    } else {
        Err(Error::MissingSplit { key: format!("data.{key}"), path, found: folder_names(root) })
    }
}

fn find_classification(split_dir: &Path, classes: &[String], split_key: &str) -> Result<Found, Error> {
    let mut found = Found::default();
    let folders = subfolders(split_dir)?;
    let names: BTreeSet<String> =
        folders.iter().filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())).collect();
    if let Some(extra) = names.iter().find(|n| !classes.contains(n)) {
        return Err(Error::ClassOnlyIn {
            class: extra.clone(),
            split: split_dir.to_path_buf(),
            classes: classes.join(", "),
        });
    }
    for path in sorted_entries(split_dir)? {
        if path.is_file() {
            found.ignored.push(path);
        }
    }
    for (index, class) in classes.iter().enumerate() {
        let mut images = Vec::new();
        let dir = split_dir.join(class);
        if dir.is_dir() {
            walk_images(&dir, &mut images, &mut found.ignored)?;
        }
        if images.is_empty() {
            return Err(Error::ClassMissing {
                class: class.clone(),
                split: split_dir.to_path_buf(),
                key: format!("data.{split_key}"),
            });
        }
        found.candidates.extend(images.into_iter().map(|path| Candidate { path, label: CandidateLabel::Class(index) }));
    }
    Ok(found)
}

fn masks_folder(split_dir: &Path, settings: &DataSettings) -> Result<PathBuf, Error> {
    if settings.masks_folder != AUTO {
        return split_folder(split_dir, "masks_folder", &settings.masks_folder);
    }
    ["Segmentation", "Masks"].iter().map(|n| split_dir.join(n)).find(|p| p.is_dir()).ok_or_else(|| {
        Error::MissingSplit {
            key: "data.masks_folder".into(),
            path: split_dir.join("Segmentation"),
            found: folder_names(split_dir),
        }
    })
}

fn stem(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

fn find_segmentation(split_dir: &Path, settings: &DataSettings) -> Result<Found, Error> {
    let mut found = Found::default();
    let images_dir = split_folder(split_dir, "images_folder", &settings.images_folder)?;
    let masks_dir = masks_folder(split_dir, settings)?;
    let (mut images, mut masks) = (Vec::new(), Vec::new());
    walk_images(&images_dir, &mut images, &mut found.ignored)?;
    walk_images(&masks_dir, &mut masks, &mut found.ignored)?;
    let mut by_stem: BTreeMap<String, PathBuf> = masks.into_iter().map(|m| (stem(&m), m)).collect();
    for image in images {
        match by_stem.remove(&stem(&image)) {
            Some(mask) => found.candidates.push(Candidate { path: image, label: CandidateLabel::Mask(mask) }),
            None => found
                .problems
                .push(Error::MaskMissing { expected: masks_dir.join(format!("{}.png", stem(&image))), image }),
        }
    }
    for mask in by_stem.into_values() {
        found.problems.push(Error::ImageMissing { mask, images: images_dir.clone() });
    }
    Ok(found)
}

/// A decoded candidate, or why it was left out.
type Loaded = Result<(Sample, ImageInfo), Error>;

fn load_one(candidate: &Candidate, settings: &DataSettings) -> Loaded {
    let options = DecodeOptions { window: settings.window, frame: settings.dicom_frame };
    let (image, info) = decode::decode(&candidate.path, &options)?;
    let (height, width) = settings.height_width();
    let spacing = info
        .dicom
        .as_ref()
        .and_then(|d| d.pixel_spacing_mm)
        .map(|[r, c]| [r * info.height as f64 / height as f64, c * info.width as f64 / width as f64]);
    let patient_id = info.dicom.as_ref().and_then(|d| d.patient_id.clone());
    let target = match &candidate.label {
        CandidateLabel::Class(c) => Target::Class(*c),
        CandidateLabel::Mask(mask_path) => {
            let mask = decode::decode_mask(mask_path)?;
            if (mask.height, mask.width) != (info.height, info.width) {
                return Err(Error::MaskSize {
                    mask: mask_path.clone(),
                    mask_size: (mask.height, mask.width),
                    image: candidate.path.clone(),
                    image_size: (info.height, info.width),
                });
            }
            Target::Mask(resize_mask(mask, height, width).labels)
        }
    };
    let image = resize_image(image, height, width).pixels;
    Ok((Sample { path: candidate.path.clone(), target, image, patient_id, pixel_spacing_mm: spacing }, info))
}

/// The files of one split folder, found and paired but not decoded.
#[derive(Debug)]
struct SplitFiles {
    name: &'static str,
    folder: PathBuf,
    found: Found,
}

/// A dataset's files found on disk and checked against the folder layout, before any
/// image is decoded: what `radrun plan` checks for every run, so that a wrong folder is
/// a recipe error before any run folder exists.
#[derive(Debug)]
pub struct Layout {
    settings: DataSettings,
    /// Class folder names (classification); empty for segmentation until masks are read.
    classes: Vec<String>,
    train: SplitFiles,
    /// `None`: split off the training folder.
    validation: Option<SplitFiles>,
    test: SplitFiles,
}

/// Finds the dataset described by `settings` (whose `root` is already resolved: the
/// runner resolves it against the recipe's folder) and checks its layout: split folders,
/// class folders with images, image/mask pairs. Nothing is decoded.
pub fn discover(settings: &DataSettings) -> Result<Layout, Error> {
    let root = &settings.root;
    if !root.is_dir() {
        return Err(Error::MissingRoot(root.clone()));
    }
    let train_dir = split_folder(root, "train", &settings.train)?;
    let test_dir = split_folder(root, "test", &settings.test)?;
    let validation_dir = if settings.validation == AUTO {
        Some(root.join("Validation")).filter(|p| p.is_dir())
    } else {
        Some(split_folder(root, "validation", &settings.validation)?)
    };
    let classes = match settings.task {
        Task::Classification => class_folders(&train_dir)?,
        Task::Segmentation => Vec::new(),
    };
    let find = |name: &'static str, folder: PathBuf| -> Result<SplitFiles, Error> {
        let mut found = match settings.task {
            Task::Classification => find_classification(&folder, &classes, name)?,
            Task::Segmentation => find_segmentation(&folder, settings)?,
        };
        if settings.on_unreadable == UnreadablePolicy::Error && !found.problems.is_empty() {
            return Err(found.problems.swap_remove(0));
        }
        if found.candidates.is_empty() && found.problems.is_empty() {
            return Err(Error::EmptySplit(folder));
        }
        Ok(SplitFiles { name, folder, found })
    };
    let train = find("train", train_dir)?;
    let test = find("test", test_dir)?;
    let validation = validation_dir.map(|d| find("validation", d)).transpose()?;
    Ok(Layout { settings: settings.clone(), classes, train, validation, test })
}

/// The class folders of the training folder: at least two.
fn class_folders(train_dir: &Path) -> Result<Vec<String>, Error> {
    let classes: Vec<String> =
        subfolders(train_dir)?.iter().filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())).collect();
    match classes.len() {
        0 => Err(Error::NoClasses(train_dir.to_path_buf())),
        1 => Err(Error::OneClass { split: train_dir.to_path_buf(), class: classes[0].clone() }),
        _ => Ok(classes),
    }
}

/// Opens the dataset described by `settings` (see [`discover`]) and decodes every image
/// once, in parallel, keeping them in memory.
pub fn load(settings: &DataSettings) -> Result<Dataset, Error> {
    discover(settings)?.load()
}

impl Layout {
    /// Decodes every image of the layout; with `on_unreadable = "skip"`, files that
    /// cannot be used are left out and listed in the summary.
    pub fn load(self) -> Result<Dataset, Error> {
        let settings = &self.settings;
        let mut summary = DataSummary::new(&settings.root, settings.task);
        let train_dir = self.train.folder.clone();
        let train_all = decode_split(self.train, settings, &mut summary)?;
        let test = decode_split(self.test, settings, &mut summary)?;
        let validation = self.validation.map(|v| decode_split(v, settings, &mut summary)).transpose()?;
        let classes = match settings.task {
            Task::Classification => self.classes,
            Task::Segmentation => label_names(train_all.iter().chain(validation.iter().flatten()).chain(&test)),
        };
        let (train, validation) = match validation {
            Some(v) => (train_all, v),
            None => {
                summary.validation_split_off = Some(settings.validation_fraction);
                split_off_validation(train_all, settings)
            }
        };
        if validation.is_empty() {
            return Err(Error::NoValidation { train: train_dir, fraction: settings.validation_fraction });
        }
        let (height, width) = settings.height_width();
        let split = |name, samples: Vec<Sample>| Split { name, samples: samples.into() };
        let (train, validation, test) = (split("train", train), split("validation", validation), split("test", test));
        summary.classes = classes.clone();
        for s in [&train, &validation, &test] {
            summary.record_split(s.name, s.len(), &s.class_counts(classes.len()));
        }
        Ok(Dataset { task: settings.task, classes, height, width, train, validation, test, summary })
    }
}

/// Decodes the files of one split, recording what was read and what was skipped.
fn decode_split(files: SplitFiles, settings: &DataSettings, summary: &mut DataSummary) -> Result<Vec<Sample>, Error> {
    summary.ignored.extend(files.found.ignored);
    let loaded: Vec<Loaded> = files.found.candidates.par_iter().map(|c| load_one(c, settings)).collect();
    let mut samples = Vec::with_capacity(loaded.len());
    for item in files.found.problems.into_iter().map(Err).chain(loaded) {
        match item {
            Ok((sample, info)) => {
                summary.record_image(&info);
                samples.push(sample);
            }
            Err(error) if settings.on_unreadable == UnreadablePolicy::Skip && error.is_about_one_file() => {
                tracing::warn!("skipped: {error}");
                summary.skipped.push(SkippedFile::from_error(&error));
            }
            Err(error) => return Err(error),
        }
    }
    if samples.is_empty() {
        return Err(Error::EmptySplit(files.folder));
    }
    summary.record_split_folder(files.name, &files.folder);
    Ok(samples)
}

/// Segmentation label names from the largest label in the masks of every split (a label
/// seen only in validation or test masks is still trained and scored): "background",
/// then "foreground" for binary masks, else "label 1", "label 2", ...
fn label_names<'a>(samples: impl Iterator<Item = &'a Sample>) -> Vec<String> {
    let max_label = samples
        .filter_map(|s| match &s.target {
            Target::Mask(m) => m.iter().copied().max(),
            Target::Class(_) => None,
        })
        .max()
        .unwrap_or(1)
        .max(1);
    std::iter::once("background".to_string())
        .chain((1..=max_label).map(|l| if max_label == 1 { "foreground".into() } else { format!("label {l}") }))
        .collect()
}

/// (training, validation): `validation_fraction` of the training images held out,
/// stratified by class and seeded by `split_seed`.
fn split_off_validation(train_all: Vec<Sample>, settings: &DataSettings) -> (Vec<Sample>, Vec<Sample>) {
    let labels: Vec<usize> = train_all.iter().map(|s| if let Target::Class(c) = s.target { c } else { 0 }).collect();
    let (keep, held) = stratified(&labels, settings.validation_fraction, settings.split_seed);
    let mut train_all: Vec<Option<Sample>> = train_all.into_iter().map(Some).collect();
    let mut pick = |idx: Vec<usize>| -> Vec<Sample> {
        idx.into_iter().map(|i| train_all[i].take().expect("index used once")).collect()
    };
    let validation = pick(held);
    (pick(keep), validation)
}
