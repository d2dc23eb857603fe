//! Finding a dataset's files in its folder layout, decoding them all in parallel into
//! resized images kept for all epochs (in memory or in the image cache), and splitting
//! off validation.
//!
//! Classification: `<root>/<split>/<class>/<image>` (images may sit in sub-folders of a
//! class folder, e.g. one per patient). Segmentation: `<root>/<split>/<images folder>/`
//! and `<root>/<split>/<masks folder>/`, paired by file stem.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::Error;
use crate::cache::{self, CachePlace, ImagesSource};
use crate::decode::{self, DecodeError, DecodeOptions, FileKind, ImageInfo};
use crate::pixels::Pixels;
use crate::resize::{resize_image, resize_mask};
use crate::series::{self, Decoded};
use crate::settings::{AUTO, DataSettings, GroupBy, Series, SplitSettings, Task, UnreadablePolicy, group_pattern};
use crate::split::{grouped_stratified, held_out};
use crate::summary::{DataSummary, SkippedFile};

/// What a sample is labelled with.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// Index into [`Dataset::classes`].
    Class(usize),
    /// Multi-label: whether each of [`Dataset::classes`] is present.
    Labels(Vec<bool>),
    /// One label index per pixel of the resized image (0 = background).
    Mask(Vec<u8>),
}

/// One decoded, resized image and its label.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub path: PathBuf,
    pub target: Target,
    /// Intensities in [0, 1] (a little beyond after an interpolating resize), one or
    /// more planes of `height x width`, row-major, packed as [`Pixels`] says.
    pub image: Pixels,
    /// Millimetres per pixel of the resized image (rows, columns), when the file said.
    pub pixel_spacing_mm: Option<[f64; 2]>,
    /// Where the image came from, for splits that keep patients apart and for the
    /// record of the split. Never written out as is: it may identify a patient.
    pub origin: Origin,
}

/// Facts about an image file that splits and provenance need.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Origin {
    /// The group (see [`GroupBy`]); `None`: the image is a group of its own.
    pub group: Option<String>,
    /// The DICOM PatientID, whatever `group_by` says: the leakage check uses it too.
    pub patient_id: Option<String>,
    /// SHA-256 of the file's bytes, in hex.
    pub sha256: String,
    /// Size of the file in bytes.
    pub bytes: u64,
    /// Cross-validation: the fold (1 to k) of a training-folder image.
    pub fold: Option<u32>,
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

    /// Images per class (classification), images with each label (multi-label), or
    /// images in which each label is present (segmentation), for `classes` classes or
    /// labels.
    pub fn class_counts(&self, classes: usize) -> Vec<usize> {
        class_counts(&self.samples, classes)
    }

    /// Class index of every sample (classification; multi-label images give their
    /// first label; masks give 0).
    pub fn class_labels(&self) -> Vec<usize> {
        class_labels(&self.samples)
    }
}

/// See [`Split::class_counts`].
fn class_counts(samples: &[Sample], classes: usize) -> Vec<usize> {
    let mut counts = vec![0; classes];
    for sample in samples {
        match &sample.target {
            Target::Class(c) => counts[*c] += 1,
            Target::Labels(present) => {
                for (c, _) in present.iter().enumerate().filter(|(_, p)| **p) {
                    counts[c] += 1;
                }
            }
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

/// See [`Split::class_labels`].
fn class_labels(samples: &[Sample]) -> Vec<usize> {
    samples
        .iter()
        .map(|s| match &s.target {
            Target::Class(c) => *c,
            // multi-label images are stratified by their first label (one past the
            // last class when they have none)
            Target::Labels(present) => present.iter().position(|p| *p).unwrap_or(present.len()),
            Target::Mask(_) => 0,
        })
        .collect()
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
    /// Path relative to the class folder (or images folder), `/`-separated.
    relative: String,
    label: CandidateLabel,
    /// The group, for the `group_by` choices read from paths and CSV files.
    group: Option<String>,
}

impl Candidate {
    fn new(path: PathBuf, folder: &Path, label: CandidateLabel) -> Self {
        Self { relative: slash_path(path.strip_prefix(folder).unwrap_or(&path)), path, label, group: None }
    }
}

#[derive(Debug, Clone)]
enum CandidateLabel {
    Class(usize),
    Labels(Vec<bool>),
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
///
/// Links are followed with care, since real exports and hand-made folders contain them:
/// a link to a file is followed, but a file reached twice (through links) counts once; a
/// link to a folder is followed unless it leads back into the dataset (the folder two
/// levels above `dir`: `<root>/<split>/<class>`), to a folder already walked, or above
/// one (`up -> ..`, `loop -> .`). What is left out joins the ignored files, with a
/// warning that names it and why.
fn walk_images(dir: &Path, images: &mut Vec<PathBuf>, ignored: &mut Vec<PathBuf>) -> Result<(), Error> {
    let canonical = |p: &Path| fs::canonicalize(p).map_err(|source| Error::Io { path: p.to_path_buf(), source });
    let top = dir.parent().and_then(Path::parent).map_or_else(|| canonical(dir), canonical)?;
    let mut walk = Walk { top, walked: vec![canonical(dir)?], files: HashSet::new(), images, ignored };
    walk.folder(dir)
}

struct Walk<'a> {
    top: PathBuf,
    walked: Vec<PathBuf>,
    files: HashSet<PathBuf>,
    images: &'a mut Vec<PathBuf>,
    ignored: &'a mut Vec<PathBuf>,
}

impl Walk<'_> {
    fn folder(&mut self, dir: &Path) -> Result<(), Error> {
        for path in sorted_entries(dir)? {
            let linked = fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
            let target = if linked { fs::canonicalize(&path).ok() } else { None };
            if linked && target.is_none() {
                self.leave_out(path, "a link to nothing");
            } else if path.is_dir() {
                if is_hidden(&path) {
                    continue;
                }
                if let Some(target) = target {
                    let back = target.starts_with(&self.top) || self.walked.iter().any(|w| w.starts_with(&target));
                    if back {
                        self.leave_out(path, "a link back into the dataset or to a folder above it");
                        continue;
                    }
                    self.walked.push(target);
                }
                self.folder(&path)?;
            } else if !is_hidden(&path) && FileKind::of(&path).is_some() {
                let file = target.or_else(|| fs::canonicalize(&path).ok()).unwrap_or_else(|| path.clone());
                if self.files.insert(file) {
                    self.images.push(path);
                } else {
                    self.leave_out(path, "the same file as one already listed (through a link)");
                }
            } else {
                self.ignored.push(path);
            }
        }
        Ok(())
    }

    fn leave_out(&mut self, path: PathBuf, why: &str) {
        tracing::warn!("left out {}: {why}", path.display());
        self.ignored.push(path);
    }
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
        found
            .candidates
            .extend(images.into_iter().map(|path| Candidate::new(path, &dir, CandidateLabel::Class(index))));
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
            Some(mask) => found.candidates.push(Candidate::new(image, &images_dir, CandidateLabel::Mask(mask))),
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

/// A decoded candidate (several images for the frames of a multi-frame file read as a
/// series), or why it was left out.
type Loaded = Result<Vec<Decoded>, Error>;

/// Where a decoded image's pixels are kept (see [`cache`]): in memory as they are, or
/// written to a cache file.
pub(crate) type Keep<'a> = &'a mut dyn FnMut(Pixels) -> Result<Pixels, Error>;

/// How a dataset with these settings decodes its files.
fn decode_options(settings: &DataSettings) -> DecodeOptions {
    DecodeOptions {
        windows: settings.window.clone(),
        frame: settings.dicom_frame,
        max_pixels: settings.max_pixels,
        colour: settings.channels == 3 && settings.window.0.len() == 1 && !matches!(settings.series, Series::Slab(_)),
        stored: false,
    }
}

/// Millimetres per pixel after resizing to `height x width`, when the file said.
fn resized_spacing(info: &ImageInfo, height: usize, width: usize) -> Option<[f64; 2]> {
    info.dicom
        .as_ref()
        .and_then(|d| d.pixel_spacing_mm)
        .map(|[r, c]| [r * info.height as f64 / height as f64, c * info.width as f64 / width as f64])
}

/// New files decoded exactly as a dataset with these settings decodes its images
/// (window, frame, colour, size, resize rule), for prediction: a dataset whose test split
/// holds the files that decoded, in the order given, and per file the error of those that
/// did not. Each file is one image (the caller refuses series settings). `classes` are
/// the trained network's; the targets are placeholders.
pub fn for_prediction(
    files: &[PathBuf],
    settings: &DataSettings,
    classes: Vec<String>,
) -> (Dataset, Vec<Option<Error>>) {
    let (height, width) = settings.height_width();
    let decoded: Vec<Result<Sample, Error>> = files
        .par_iter()
        .map(|path| {
            let (image, info) = decode::decode(path, &decode_options(settings))?;
            let target = match settings.task {
                Task::Classification => Target::Class(0),
                Task::Multilabel => Target::Labels(vec![false; classes.len()]),
                Task::Segmentation => Target::Mask(vec![0; height * width]),
            };
            Ok(Sample {
                path: path.clone(),
                target,
                image: Pixels::pack(resize_image(image, height, width, settings.resize).pixels),
                pixel_spacing_mm: resized_spacing(&info, height, width),
                origin: Origin::default(),
            })
        })
        .collect();
    let mut samples = Vec::new();
    let errors = decoded
        .into_iter()
        .map(|d| match d {
            Ok(sample) => {
                samples.push(sample);
                None
            }
            Err(e) => Some(e),
        })
        .collect();
    let empty = |name| Split { name, samples: Arc::from(Vec::new()) };
    let dataset = Dataset {
        task: settings.task,
        classes,
        height,
        width,
        train: empty("train"),
        validation: empty("validation"),
        test: Split { name: "test", samples: samples.into() },
        summary: DataSummary::new(&settings.root, settings.task),
    };
    (dataset, errors)
}

fn load_one(candidate: &Candidate, settings: &DataSettings) -> Loaded {
    let options = decode_options(settings);
    if settings.series == Series::Files {
        let (image, info) = decode::decode(&candidate.path, &options)?;
        let sample = make_sample(candidate, settings, image, &info)?;
        return Ok(vec![Decoded { sample, info, frame: None }]);
    }
    // read as a series: every frame of a multi-frame file, in the file's order
    let frames = decode::decode_all_frames(&candidate.path, &options)?;
    let multi_frame = frames.len() > 1;
    frames
        .into_iter()
        .zip(0..)
        .map(|((image, info), frame)| {
            let sample = make_sample(candidate, settings, image, &info)?;
            Ok(Decoded { sample, info, frame: multi_frame.then_some(frame) })
        })
        .collect()
}

/// A decoded image as a sample: resized, with its target and origin.
fn make_sample(
    candidate: &Candidate,
    settings: &DataSettings,
    image: decode::GrayImage,
    info: &ImageInfo,
) -> Result<Sample, Error> {
    let (height, width) = settings.height_width();
    let spacing = resized_spacing(info, height, width);
    let bytes = fs::read(&candidate.path).map_err(|e| DecodeError::new(&candidate.path, e))?;
    let dicom = info.dicom.as_ref();
    let patient_id = dicom.and_then(|d| d.patient_id.clone());
    let from_dicom = |value: Option<&String>, tag: &str| {
        value.cloned().map(Some).ok_or_else(|| Error::NoGroup {
            file: candidate.path.clone(),
            reason: format!("it has no {tag}"),
            others: 0,
        })
    };
    let group = match &settings.group_by {
        // a labels table's patient column, else the DICOM PatientID
        GroupBy::Auto => candidate.group.clone().or_else(|| patient_id.clone()),
        GroupBy::None => None,
        GroupBy::PatientId => from_dicom(dicom.and_then(|d| d.patient_id.as_ref()), "DICOM PatientID")?,
        GroupBy::Study => from_dicom(dicom.and_then(|d| d.study_uid.as_ref()), "DICOM StudyInstanceUID")?,
        GroupBy::Folder | GroupBy::Pattern(_) | GroupBy::Csv(_) => candidate.group.clone(),
    };
    let origin = Origin {
        group,
        patient_id,
        sha256: Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect(),
        bytes: bytes.len() as u64,
        fold: None,
    };
    let target = match &candidate.label {
        CandidateLabel::Class(c) => Target::Class(*c),
        CandidateLabel::Labels(present) => Target::Labels(present.clone()),
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
    let image = Pixels::pack(resize_image(image, height, width, settings.resize).pixels);
    Ok(Sample { path: candidate.path.clone(), target, image, pixel_spacing_mm: spacing, origin })
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
    if !settings.labels.as_os_str().is_empty() {
        let mut layout = discover_table(settings)?;
        assign_path_groups(&mut layout)?;
        return Ok(layout);
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
        // validation ensures a labels table
        Task::Segmentation | Task::Multilabel => Vec::new(),
    };
    let find = |name: &'static str, folder: PathBuf| -> Result<SplitFiles, Error> {
        let found = match settings.task {
            Task::Classification | Task::Multilabel => find_classification(&folder, &classes, name)?,
            Task::Segmentation => find_segmentation(&folder, settings)?,
        };
        checked_split(name, folder, found, settings)
    };
    let train = find("train", train_dir)?;
    let test = find("test", test_dir)?;
    let validation = validation_dir.map(|d| find("validation", d)).transpose()?;
    let mut layout = Layout { settings: settings.clone(), classes, train, validation, test };
    assign_path_groups(&mut layout)?;
    Ok(layout)
}

/// A split's files, with the layout problems the policy does not skip as an error.
fn checked_split(
    name: &'static str,
    folder: PathBuf,
    mut found: Found,
    settings: &DataSettings,
) -> Result<SplitFiles, Error> {
    if settings.on_unreadable == UnreadablePolicy::Error && !found.problems.is_empty() {
        return Err(found.problems.swap_remove(0));
    }
    if found.candidates.is_empty() && found.problems.is_empty() {
        return Err(Error::EmptySplit(folder));
    }
    Ok(SplitFiles { name, folder, found })
}

/// One row of a labels table.
struct TableRow {
    split: &'static str,
    /// Path relative to `data.root`.
    file: String,
    labels: Vec<String>,
    patient: Option<String>,
    line: usize,
}

/// The layout of a dataset labelled by a CSV table (`data.labels`): columns `file` (the
/// image's path relative to `data.root`), `label` (a class; for `multilabel`, the
/// image's labels separated by `|` or `;`, empty for none), optionally `split`
/// (`train`, `validation` or `test`; without it, the split folder the file is in) and
/// `patient` or `patient_id` (the image's group under `group_by = "auto"`). Classes are
/// the labels named in the table, sorted; each must label a training image.
fn discover_table(settings: &DataSettings) -> Result<Layout, Error> {
    let table = settings.root.join(&settings.labels);
    let bad = |line: usize, why: String| Error::LabelTable { table: table.clone(), line, why };
    let mut csv = CsvTable::open(&table)
        .map_err(|e| bad(0, format!("{e}; `data.labels` names a CSV file inside `data.root`")))?;
    let file_col = csv.required(&["file"]).map_err(|e| bad(1, e))?;
    let label_col = csv.required(&["label", "labels"]).map_err(|e| bad(1, e))?;
    let (split_col, patient_col) = (csv.column(&["split"]), csv.column(&["patient", "patient_id"]));
    let multilabel = settings.task == Task::Multilabel;
    let mut rows: Vec<TableRow> = Vec::new();
    let mut first_line: HashMap<String, usize> = HashMap::new();
    for (i, record) in csv.reader.records().enumerate() {
        let line = i + 2;
        let record = record.map_err(|e| bad(line, e.to_string()))?;
        let file = slash_path(Path::new(record.get(file_col).unwrap_or_default().trim()));
        let raw = record.get(label_col).unwrap_or_default().trim();
        let labels: Vec<String> = if multilabel {
            raw.split(['|', ';']).map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect()
        } else if raw.is_empty() {
            return Err(bad(line, format!("`{file}` has no label")));
        } else {
            vec![raw.to_string()]
        };
        let split = match split_col.and_then(|c| record.get(c)).map(|s| s.trim().to_lowercase()) {
            Some(s) if s == "train" || s == "training" => "train",
            Some(s) if s == "validation" || s == "val" => "validation",
            Some(s) if s == "test" => "test",
            Some(other) => return Err(bad(line, format!("split \"{other}\" is not train, validation or test"))),
            None => {
                let first = file.split('/').next().unwrap_or_default();
                let validation = if settings.validation == AUTO { "Validation" } else { settings.validation.as_str() };
                match first {
                    f if f == settings.train => "train",
                    f if f == settings.test => "test",
                    f if f == validation => "validation",
                    _ => {
                        return Err(bad(
                            line,
                            format!(
                                "`{file}` is in no split folder (`data.train` = \"{}\", `data.test` = \"{}\"); add a \
                                 `split` column (train, validation, test)",
                                settings.train, settings.test
                            ),
                        ));
                    }
                }
            }
        };
        let patient =
            patient_col.and_then(|c| record.get(c)).map(str::trim).filter(|p| !p.is_empty()).map(str::to_string);
        if let Some(first) = first_line.insert(file.clone(), line) {
            return Err(bad(
                line,
                format!(
                    "`{file}` is listed again (first on line {first}); give each image one row (multi-label: its \
                     labels joined by |)"
                ),
            ));
        }
        rows.push(TableRow { split, file, labels, patient, line });
    }
    let classes: Vec<String> =
        rows.iter().flat_map(|r| r.labels.iter().cloned()).collect::<BTreeSet<_>>().into_iter().collect();
    if classes.len() < 2 && !multilabel || classes.is_empty() {
        return Err(bad(0, format!("names {} label(s); a classifier needs at least two", classes.len())));
    }
    let mut splits: BTreeMap<&'static str, Found> = BTreeMap::new();
    for TableRow { split, file, labels, patient, line } in &rows {
        let path = settings.root.join(file);
        let found = splits.entry(split).or_default();
        if !path.is_file() {
            found.problems.push(Error::ListedFileMissing { table: table.clone(), line: *line, file: path });
            continue;
        }
        let index = |l: &String| classes.iter().position(|c| c == l).expect("a listed label");
        let label = if multilabel {
            let mut present = vec![false; classes.len()];
            for l in labels {
                present[index(l)] = true;
            }
            CandidateLabel::Labels(present)
        } else {
            CandidateLabel::Class(index(&labels[0]))
        };
        let mut candidate = Candidate::new(path, &settings.root, label);
        candidate.group = patient.clone();
        found.candidates.push(candidate);
    }
    let mut take =
        |name: &'static str| splits.remove(name).map(|found| checked_split(name, table.clone(), found, settings));
    let train = take("train").ok_or_else(|| bad(0, "lists no training images".into()))??;
    let test = take("test")
        .ok_or_else(|| bad(0, "lists no test images (the test set must be separate from the start)".into()))??;
    let validation = take("validation").transpose()?;
    let mut in_train = vec![false; classes.len()];
    for candidate in &train.found.candidates {
        match &candidate.label {
            CandidateLabel::Class(c) => in_train[*c] = true,
            CandidateLabel::Labels(present) => {
                present.iter().enumerate().filter(|(_, p)| **p).for_each(|(c, _)| in_train[c] = true)
            }
            CandidateLabel::Mask(_) => {}
        }
    }
    if let Some(c) = in_train.iter().position(|seen| !seen) {
        return Err(bad(0, format!("label \"{}\" labels no training image; a model cannot learn it", classes[c])));
    }
    Ok(Layout { settings: settings.clone(), classes, train, validation, test })
}

/// Sets each image's group for the `group_by` choices that come from paths or a CSV
/// file; an image whose group cannot be told is an error naming it.
fn assign_path_groups(layout: &mut Layout) -> Result<(), Error> {
    let settings = &layout.settings;
    let from_table = !settings.labels.as_os_str().is_empty();
    let pattern = match &settings.group_by {
        GroupBy::Pattern(p) => Some(group_pattern(p).map_err(Error::GroupBy)?),
        _ => None,
    };
    let table = match &settings.group_by {
        GroupBy::Csv(file) => Some(read_group_table(&settings.root.join(file))?),
        GroupBy::Folder | GroupBy::Pattern(_) => None,
        GroupBy::Auto | GroupBy::None | GroupBy::PatientId | GroupBy::Study => return Ok(()),
    };
    let mut missing: Vec<(PathBuf, String)> = Vec::new();
    let splits = [Some(&mut layout.train), Some(&mut layout.test), layout.validation.as_mut()];
    for candidate in splits.into_iter().flatten().flat_map(|s| s.found.candidates.iter_mut()) {
        let group = match (&pattern, &table) {
            (Some(re), _) => re
                .captures(&candidate.relative)
                .and_then(|caps| caps.name("group").or_else(|| caps.get(1)).or_else(|| caps.get(0)))
                .map(|m| m.as_str().to_string())
                .filter(|g| !g.is_empty())
                .ok_or_else(|| format!("its path \"{}\" does not match the pattern", candidate.relative)),
            (None, Some((file, rows))) => {
                let relative = candidate.path.strip_prefix(&settings.root).unwrap_or(&candidate.path);
                rows.get(&slash_path(relative))
                    .cloned()
                    .ok_or_else(|| format!("it is not in the `file` column of {}", file.display()))
            }
            // a labels table has no class folders: the folder holding the image, below a
            // top folder (a split or images folder is not a patient)
            (None, None) if from_table => candidate
                .relative
                .rsplit_once('/')
                .and_then(|(folders, _)| folders.split_once('/').map(|(_, below)| below))
                .map(|below| below.rsplit('/').next().unwrap_or(below).to_string())
                .ok_or_else(|| "it is not in a patient folder below a top folder of `data.root`".to_string()),
            (None, None) => candidate
                .relative
                .split_once('/')
                .map(|(folder, _)| folder.to_string())
                .ok_or_else(|| "it is not in a sub-folder of its class (or images) folder".to_string()),
        };
        match group {
            Ok(g) => candidate.group = Some(g),
            Err(reason) => missing.push((candidate.path.clone(), reason)),
        }
    }
    match missing.first() {
        Some((file, reason)) => {
            Err(Error::NoGroup { file: file.clone(), reason: reason.clone(), others: missing.len() - 1 })
        }
        None => Ok(()),
    }
}

/// A path as `a/b/c` (what split.csv and the labels tables write).
pub fn slash_path(path: &Path) -> String {
    path.components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .map(|c| path_text(Path::new(c.as_os_str())))
        .collect::<Vec<_>>()
        .join("/")
}

/// A path as text, losslessly: bytes that are not UTF-8 (file names from old PACS
/// exports in Latin-1, say) are written `\xE9`, as Python's "backslashreplace" does, and a
/// backslash itself stays a backslash. Used wherever radrun writes a path (CSV, JSON).
pub fn path_text(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut text = String::new();
    for chunk in path.as_os_str().as_bytes().utf8_chunks() {
        text.push_str(chunk.valid());
        for byte in chunk.invalid() {
            text.push_str(&format!("\\x{byte:02X}"));
        }
    }
    text
}

pub(crate) fn serialize_path<S: serde::Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&path_text(path))
}

pub(crate) fn serialize_paths<S: serde::Serializer>(paths: &[PathBuf], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(paths.iter().map(|p| path_text(p)))
}

/// A CSV table (labels or groups) and its header.
struct CsvTable {
    reader: csv::Reader<fs::File>,
    headers: csv::StringRecord,
}

impl CsvTable {
    fn open(path: &Path) -> Result<Self, String> {
        let mut reader = csv::Reader::from_path(path).map_err(|e| format!("cannot be read ({e})"))?;
        let headers = reader.headers().map_err(|e| format!("cannot be read ({e})"))?.clone();
        Ok(Self { reader, headers })
    }

    /// The column named one of `names`.
    fn column(&self, names: &[&str]) -> Option<usize> {
        self.headers.iter().position(|h| names.contains(&h.trim()))
    }

    /// The column named one of `names`, or why the table lacks it.
    fn required(&self, names: &[&str]) -> Result<usize, String> {
        self.column(names).ok_or_else(|| {
            let wanted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
            let listed = self.headers.iter().collect::<Vec<_>>().join(", ");
            format!("has no {} column (columns: {listed})", wanted.join(" or "))
        })
    }
}

/// The `file` -> patient rows of a group CSV file (and the file's path).
fn read_group_table(path: &Path) -> Result<(PathBuf, HashMap<String, String>), Error> {
    let bad = |why: String| Error::GroupBy(format!("group CSV {}: {why}", path.display()));
    let mut table = CsvTable::open(path)
        .map_err(|e| bad(format!("{e}; `data.group_by = {{ csv = ... }}` starts at `data.root`")))?;
    let file_col = table.required(&["file"]).map_err(bad)?;
    let group_col = table.required(&["patient", "patient_id"]).map_err(bad)?;
    let mut rows = HashMap::new();
    for (line, record) in table.reader.records().enumerate() {
        let record = record.map_err(|e| bad(format!("line {}: {e}", line + 2)))?;
        let (file, group) = (record.get(file_col).unwrap_or_default(), record.get(group_col).unwrap_or_default());
        let file = slash_path(Path::new(file.trim()));
        if !group.trim().is_empty() && rows.insert(file.clone(), group.trim().to_string()).is_some() {
            return Err(bad(format!("line {}: `{file}` is listed again; give each image one row", line + 2)));
        }
    }
    Ok((path.to_path_buf(), rows))
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

/// Opens the dataset described by `settings` (see [`discover`]), decodes every image
/// once, in parallel, keeping them in memory, and makes the splits of `split`.
pub fn load(settings: &DataSettings, split: &SplitSettings) -> Result<Dataset, Error> {
    discover(settings)?.load()?.split(split)
}

/// Every image of a dataset decoded, before the training folder is split: what the runs
/// on one `[data]` section share (each fold and seed splits it again).
#[derive(Debug)]
pub struct Images {
    settings: DataSettings,
    classes: Vec<String>,
    train_dir: PathBuf,
    train_folder: Vec<Sample>,
    /// Shared with every run's split as they are (only the training folder is cut).
    validation_folder: Option<(PathBuf, Arc<[Sample]>)>,
    test: Arc<[Sample]>,
    /// What was read, without the splits.
    summary: DataSummary,
    source: ImagesSource,
}

impl Layout {
    /// The class names (classification, multi-label); empty for segmentation, whose
    /// labels come from the masks.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// Every image file of the layout (training, validation and test folders).
    pub fn files(&self) -> Vec<&Path> {
        [Some(&self.train), self.validation.as_ref(), Some(&self.test)]
            .into_iter()
            .flatten()
            .flat_map(|s| s.found.candidates.iter().map(|c| c.path.as_path()))
            .collect()
    }

    /// Decodes every image of the layout into memory; with `on_unreadable = "skip"`,
    /// files that cannot be used are left out and listed in the summary. See
    /// [`Layout::load_cached`] for the image cache.
    pub fn load(self) -> Result<Images, Error> {
        let (settings, classes, reads) = self.decode(&mut Ok, &mut Ok)?;
        Ok(Images::new(settings, classes, reads, ImagesSource::Memory))
    }

    /// As [`Layout::load`], keeping images where `data.cache` says: in memory, or in an
    /// image cache file under `place` (read back when it exists and is whole).
    pub fn load_cached(self, place: &CachePlace) -> Result<Images, Error> {
        cache::load(self, place)
    }

    pub(crate) fn settings(&self) -> &DataSettings {
        &self.settings
    }

    fn splits(&self) -> impl Iterator<Item = &SplitFiles> {
        [Some(&self.train), self.validation.as_ref(), Some(&self.test)].into_iter().flatten()
    }

    /// At least as many bytes as the images take in memory: two per value of each input
    /// channel (a gray image repeated into three channels is kept once, but a colour one
    /// keeps three: which one a file is shows only once it is decoded), and one per mask
    /// pixel.
    pub(crate) fn estimated_bytes(&self) -> u64 {
        let (height, width) = self.settings.height_width();
        let images: usize = self.splits().map(|s| s.found.candidates.len()).sum();
        let mask = usize::from(self.settings.task == Task::Segmentation);
        (images * height * width * (2 * self.settings.input_channels() + mask)) as u64
    }

    /// What the decoded images depend on, beyond `[data]`: every file found (with its
    /// size and modification time, and its mask's), how it was labelled and grouped,
    /// the problems found and the files ignored, and the tables read.
    pub(crate) fn identity(&self) -> serde_json::Value {
        let stamp = |path: &Path| match fs::metadata(path) {
            Ok(m) => {
                use std::os::unix::fs::MetadataExt;
                serde_json::json!([m.len(), m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec(), m.ino()])
            }
            Err(e) => serde_json::json!(e.to_string()),
        };
        let splits: Vec<serde_json::Value> = self
            .splits()
            .map(|s| {
                let files: Vec<serde_json::Value> = s
                    .found
                    .candidates
                    .iter()
                    .map(|c| {
                        let mask = match &c.label {
                            CandidateLabel::Mask(mask) => Some((path_text(mask), stamp(mask))),
                            CandidateLabel::Class(_) | CandidateLabel::Labels(_) => None,
                        };
                        serde_json::json!([path_text(&c.path), stamp(&c.path), c.relative, format!("{:?}", c.label), c.group, mask])
                    })
                    .collect();
                let problems: Vec<String> = s.found.problems.iter().map(Error::to_string).collect();
                let ignored: Vec<String> = s.found.ignored.iter().map(|p| path_text(p)).collect();
                serde_json::json!({"name": s.name, "folder": path_text(&s.folder), "files": files, "problems": problems, "ignored": ignored})
            })
            .collect();
        let root = &self.settings.root;
        let mut tables = Vec::new();
        if !self.settings.labels.as_os_str().is_empty() {
            tables.push(root.join(&self.settings.labels));
        }
        if let GroupBy::Csv(table) = &self.settings.group_by {
            tables.push(root.join(table));
        }
        let tables: Vec<serde_json::Value> =
            tables.iter().map(|t| serde_json::json!([path_text(t), stamp(t)])).collect();
        serde_json::json!({"classes": self.classes, "splits": splits, "tables": tables})
    }

    /// Decodes every split; `keep` decides where each image's pixels stay, `keep_frame`
    /// where a series' frames wait until the series is assembled.
    pub(crate) fn decode(
        self,
        keep: Keep<'_>,
        keep_frame: Keep<'_>,
    ) -> Result<(DataSettings, Vec<String>, SplitReads), Error> {
        let settings = self.settings;
        let train = decode_split(self.train, &settings, keep, keep_frame)?;
        let test = decode_split(self.test, &settings, keep, keep_frame)?;
        let validation = self.validation.map(|v| decode_split(v, &settings, keep, keep_frame)).transpose()?;
        Ok((settings, self.classes, SplitReads { train, validation, test }))
    }
}

/// The images of the three split folders as read.
pub(crate) struct SplitReads {
    pub train: SplitRead,
    pub validation: Option<SplitRead>,
    pub test: SplitRead,
}

impl SplitReads {
    /// Training, test, then validation folder (the order of the data summary).
    pub fn iter(&self) -> impl Iterator<Item = &SplitRead> {
        [Some(&self.train), Some(&self.test), self.validation.as_ref()].into_iter().flatten()
    }
}

/// One split folder's images as read: the samples with what each file said, and the
/// files left out.
pub(crate) struct SplitRead {
    /// "train", "validation" or "test".
    pub name: &'static str,
    pub folder: PathBuf,
    pub samples: Vec<Sample>,
    /// What each sample's file said (for the data summary).
    pub infos: Vec<ImageInfo>,
    pub skipped: Vec<SkippedFile>,
    /// Non-image files.
    pub ignored: Vec<PathBuf>,
}

impl SplitRead {
    fn record(&self, summary: &mut DataSummary) {
        summary.ignored.extend(self.ignored.iter().cloned());
        summary.skipped.extend(self.skipped.iter().cloned());
        for info in &self.infos {
            summary.record_image(info);
        }
        summary.record_split_folder(self.name, &self.folder);
    }
}

impl Images {
    /// The images as read, with the summary of what was read.
    pub(crate) fn new(settings: DataSettings, classes: Vec<String>, reads: SplitReads, source: ImagesSource) -> Self {
        let mut summary = DataSummary::new(&settings.root, settings.task);
        summary.grouping = settings.group_by.describe();
        for read in reads.iter() {
            read.record(&mut summary);
        }
        let SplitReads { train, validation, test } = reads;
        let validation_folder = validation.map(|v| (v.folder, Arc::<[Sample]>::from(v.samples)));
        let classes = match settings.task {
            Task::Classification | Task::Multilabel => classes,
            Task::Segmentation => label_names(
                train.samples.iter().chain(validation_folder.iter().flat_map(|(_, v)| v.iter())).chain(&test.samples),
            ),
        };
        summary.classes = classes.clone();
        Images {
            settings,
            classes,
            train_dir: train.folder,
            train_folder: train.samples,
            validation_folder,
            test: test.samples.into(),
            summary,
            source,
        }
    }

    /// Where the images came from: decoded into memory, or an image cache file.
    pub fn source(&self) -> &ImagesSource {
        &self.source
    }

    /// The dataset of one run: training and validation images as `split` says (a
    /// validation folder, a held-out fraction, or one fold of k), the test folder as is,
    /// checked for leakage between the three.
    pub fn split(&self, split: &SplitSettings) -> Result<Dataset, Error> {
        let settings = &self.settings;
        let mut summary = self.summary.clone();
        let pool = &self.train_folder;
        let (train, validation) = match (&self.validation_folder, split.folds) {
            (Some((folder, _)), 1..) => {
                return Err(Error::FoldsWithValidationFolder { folder: folder.clone(), folds: split.folds });
            }
            (Some((_, validation)), 0) => (pool.clone(), validation.to_vec()),
            (None, 0) => {
                summary.validation_split_off = Some(settings.validation_fraction);
                let fraction = settings.validation_fraction;
                let held = |n| held_out(fraction, n) as f64;
                let parts = self.parts(2, |part, n| if part == 1 { held(n) } else { n as f64 - held(n) });
                pick(pool, &parts, |part| part == 0, false)
            }
            (None, k) => {
                summary.fold = Some((split.fold, k));
                let parts = self.parts(k as usize, |_, n| n as f64 / f64::from(k));
                pick(pool, &parts, |part| part + 1 != split.fold as usize, true)
            }
        };
        if validation.is_empty() || train.is_empty() {
            let how = match (split.folds, &self.validation_folder) {
                (0, Some((folder, _))) => format!("the folders (validation: {})", folder.display()),
                (0, None) => format!("holding out {} of it for validation", settings.validation_fraction),
                (k, _) => format!("fold {} of {k} (each fold takes whole patients)", split.fold),
            };
            return Err(Error::SplitLeftEmpty {
                part: if train.is_empty() { "training" } else { "validation" },
                train: self.train_dir.clone(),
                how,
                groups: group_count(pool),
            });
        }
        let (height, width) = settings.height_width();
        let make = |name, samples: Vec<Sample>| Split { name, samples: samples.into() };
        let (train, validation) = (make("train", train), make("validation", validation));
        let test = Split { name: "test", samples: self.test.clone() };
        let classes = self.classes.len();
        let pool_counts = class_counts(pool, classes);
        for s in [&train, &validation, &test] {
            let counts = s.class_counts(classes);
            let from_pool = s.name != "test" && self.validation_folder.is_none();
            let gap = from_pool.then(|| proportion_gap(&counts, &pool_counts));
            summary.record_split(s.name, s.len(), &counts, group_count(&s.samples), gap);
        }
        if let Some(leak) = Leakage::find(&[&train, &validation, &test]) {
            let message = leak.describe(&settings.group_by);
            if !settings.allow_leakage {
                return Err(Error::Leakage(message));
            }
            tracing::warn!("{message}");
            summary.warnings.push(message);
        }
        Ok(Dataset {
            task: settings.task,
            classes: self.classes.clone(),
            height,
            width,
            train,
            validation,
            test,
            summary,
        })
    }

    /// The part (0 to `parts - 1`) of each training-folder image: grouped, stratified by
    /// class toward `target(part, class size)`, seeded by `data.split_seed`.
    fn parts(&self, parts: usize, target: impl Fn(usize, usize) -> f64) -> Vec<usize> {
        let labels = class_labels(&self.train_folder);
        grouped_stratified(&labels, &group_indices(&self.train_folder), parts, target, self.settings.split_seed)
    }

    /// What was read, before any split.
    pub fn summary(&self) -> &DataSummary {
        &self.summary
    }
}

/// (training, validation) images of `pool`, by the part of each; `folds`: the parts are
/// folds, recorded in each image's origin (part + 1).
fn pick(pool: &[Sample], parts: &[usize], trains: impl Fn(usize) -> bool, folds: bool) -> (Vec<Sample>, Vec<Sample>) {
    let (mut train, mut validation) = (Vec::new(), Vec::new());
    for (sample, &part) in pool.iter().zip(parts) {
        let mut sample = sample.clone();
        if folds {
            sample.origin.fold = Some(part as u32 + 1);
        }
        if trains(part) { train.push(sample) } else { validation.push(sample) }
    }
    (train, validation)
}

/// A dense index per distinct group; an image without a group gets one of its own.
fn group_indices(samples: &[Sample]) -> Vec<usize> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut next = 0;
    samples
        .iter()
        .map(|s| {
            let mut fresh = || {
                next += 1;
                next - 1
            };
            match &s.origin.group {
                Some(g) => *index.entry(g.as_str()).or_insert_with(fresh),
                None => fresh(),
            }
        })
        .collect()
}

fn group_count(samples: &[Sample]) -> usize {
    group_indices(samples).into_iter().max().map_or(0, |m| m + 1)
}

/// The largest difference, in percentage points, between a class's share of `counts`
/// and its share of `pool`.
fn proportion_gap(counts: &[usize], pool: &[usize]) -> f64 {
    let share = |c: &[usize], i: usize| c[i] as f64 / c.iter().sum::<usize>().max(1) as f64;
    (0..counts.len()).map(|i| (share(counts, i) - share(pool, i)).abs() * 100.0).fold(0.0, f64::max)
}

/// Images of one patient or group, or the same file, in more than one split.
struct Leakage {
    /// How many groups, patients or file contents are shared.
    count: usize,
    /// The first few: (file, its split, file, its split, what they share).
    examples: Vec<(PathBuf, &'static str, PathBuf, &'static str, &'static str)>,
}

impl Leakage {
    fn find(splits: &[&Split]) -> Option<Leakage> {
        let mut first: HashMap<(&'static str, &str), (&Path, &'static str)> = HashMap::new();
        let mut shared: BTreeSet<(&'static str, &str)> = BTreeSet::new();
        let mut examples = Vec::new();
        for split in splits {
            for sample in split.samples.iter() {
                let o = &sample.origin;
                let keys = [
                    o.group.as_deref().map(|g| ("group", g)),
                    o.patient_id.as_deref().map(|p| ("DICOM PatientID", p)),
                    Some(("file content (byte-identical)", o.sha256.as_str())),
                ];
                for key in keys.into_iter().flatten() {
                    match first.get(&key) {
                        None => {
                            first.insert(key, (&sample.path, split.name));
                        }
                        Some(&(path, name)) if name != split.name && shared.insert(key) => {
                            if examples.len() < 5 {
                                examples.push((path.to_path_buf(), name, sample.path.clone(), split.name, key.0));
                            }
                        }
                        Some(_) => {}
                    }
                }
            }
        }
        (!shared.is_empty()).then_some(Leakage { count: shared.len(), examples })
    }

    /// The message: counts and files only (a group or PatientID may identify a patient).
    fn describe(&self, group_by: &GroupBy) -> String {
        let mut text = format!(
            "leakage: {} patient(s), group(s) or identical file(s) have images in more than one of train, \
             validation and test, e.g.",
            self.count
        );
        for (a, split_a, b, split_b, what) in &self.examples {
            text.push_str(&format!("\n  - {} ({split_a}) and {} ({split_b}): same {what}", a.display(), b.display()));
        }
        text.push_str(&format!(
            "\nGroup images by patient with `data.group_by` (now: {}), move or remove the duplicates, or set \
             `data.allow_leakage = true` to train anyway (a warning then).",
            group_by.describe()
        ));
        text
    }
}

/// Images decoded at once: enough to keep the cores busy, few enough that a split too
/// large for memory passes through it on its way to the image cache.
const DECODE_CHUNK: usize = 256;

/// Decodes the files of one split, keeping what was read and what was skipped.
fn decode_split(
    files: SplitFiles,
    settings: &DataSettings,
    keep: Keep<'_>,
    keep_frame: Keep<'_>,
) -> Result<SplitRead, Error> {
    let SplitFiles { name, folder, found } = files;
    let mut skipped = Vec::new();
    let mut decoded = Vec::with_capacity(found.candidates.len());
    let mut take = |item: Loaded, skipped: &mut Vec<SkippedFile>| -> Result<(), Error> {
        match item {
            Ok(images) => {
                for mut d in images {
                    let pixels = std::mem::take(&mut d.sample.image);
                    d.sample.image = if settings.series == Series::Files { keep(pixels)? } else { keep_frame(pixels)? };
                    decoded.push(d);
                }
                Ok(())
            }
            Err(error) if settings.on_unreadable == UnreadablePolicy::Skip && error.is_about_one_file() => {
                tracing::warn!("skipped: {error}");
                skipped.push(SkippedFile::from_error(&error));
                Ok(())
            }
            Err(error) => Err(error),
        }
    };
    for problem in found.problems {
        take(Err(problem), &mut skipped)?;
    }
    for chunk in found.candidates.chunks(DECODE_CHUNK) {
        let loaded: Vec<Loaded> = chunk.par_iter().map(|c| load_one(c, settings)).collect();
        for item in loaded {
            take(item, &mut skipped)?;
        }
    }
    let (mut samples, mut infos) = (Vec::with_capacity(decoded.len()), Vec::with_capacity(decoded.len()));
    for d in series::arrange(decoded, settings.series, keep)? {
        infos.push(d.info);
        samples.push(d.sample);
    }
    if samples.is_empty() {
        return Err(Error::EmptySplit(folder));
    }
    Ok(SplitRead { name, folder, samples, infos, skipped, ignored: found.ignored })
}

/// Segmentation label names from the largest label in the masks of every split (a label
/// seen only in validation or test masks is still trained and scored): "background",
/// then "foreground" for binary masks, else "label 1", "label 2", ...
fn label_names<'a>(samples: impl Iterator<Item = &'a Sample>) -> Vec<String> {
    let max_label = samples
        .filter_map(|s| match &s.target {
            Target::Mask(m) => m.iter().copied().max(),
            Target::Class(_) | Target::Labels(_) => None,
        })
        .max()
        .unwrap_or(1)
        .max(1);
    std::iter::once("background".to_string())
        .chain((1..=max_label).map(|l| if max_label == 1 { "foreground".into() } else { format!("label {l}") }))
        .collect()
}
