//! Decoding a dataset's files, all in parallel, into resized images kept for all epochs
//! (in memory, or in the image cache through [`crate::cache`]'s keepers), and cutting
//! each run's training and validation images from them, checked for leakage.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::Error;
use crate::decode::{self, DecodeError, DecodeOptions, ImageInfo};
use crate::discover::{Candidate, CandidateLabel, Layout, SplitFiles, discover};
use crate::paths::path_text;
use crate::pixels::Pixels;
use crate::resize::{resize_image, resize_mask};
use crate::sample::{Dataset, Keep, Origin, Sample, Split, Target, class_counts, class_labels};
use crate::series::{self, Decoded};
use crate::settings::{DataSettings, GroupBy, Series, SplitSettings, Task, UnreadablePolicy};
use crate::split::{grouped_stratified, held_out};
use crate::summary::{DataSummary, SkippedFile};

/// A decoded candidate (several images for the frames of a multi-frame file read as a
/// series), or why it was left out.
type Loaded = Result<Vec<Decoded>, Error>;

/// How a dataset with these settings decodes its files.
fn decode_options(settings: &DataSettings) -> DecodeOptions {
    DecodeOptions {
        windows: settings.window.clone(),
        frame: settings.dicom_frame,
        max_pixels: settings.max_pixels,
        colour: settings.channels == 3 && settings.window.0.len() == 1 && !matches!(settings.series, Series::Slab(_)),
        stored: false,
        modality_values: false,
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

/// Where a dataset's images came from.
#[derive(Debug, Clone, PartialEq)]
pub enum ImagesSource {
    /// Decoded and kept in memory.
    Memory,
    /// Read from this image cache file.
    Cache(PathBuf),
    /// Decoded and written to this new image cache file; `replaced`: why the file of
    /// that name could not be used.
    Written { path: PathBuf, replaced: Option<String> },
}

impl std::fmt::Display for ImagesSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImagesSource::Memory => write!(f, "decoded into memory"),
            ImagesSource::Cache(path) => write!(f, "read from image cache {}", path_text(path)),
            ImagesSource::Written { path, .. } => write!(f, "decoded into image cache {}", path_text(path)),
        }
    }
}

impl Layout {
    /// Decodes every image of the layout into memory; with `on_unreadable = "skip"`,
    /// files that cannot be used are left out and listed in the summary. See
    /// [`Layout::load_cached`] for the image cache.
    pub fn load(self) -> Result<Images, Error> {
        let (settings, classes, reads) = self.decode(&mut Ok, &mut Ok)?;
        Ok(Images::new(settings, classes, reads, ImagesSource::Memory))
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
    pub(crate) fn record(&self, summary: &mut DataSummary) {
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
        summary.warnings = crate::table::table_warnings(&settings);
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
                (0, Some((folder, _))) => format!("the folders (validation: {})", path_text(folder)),
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

pub(crate) fn group_count(samples: &[Sample]) -> usize {
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
            text.push_str(&format!("\n  - {} ({split_a}) and {} ({split_b}): same {what}", path_text(a), path_text(b)));
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
pub(crate) fn decode_split(
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
    // one line for the split, not one per file: the data summary names the first few
    if !skipped.is_empty() {
        tracing::warn!(
            "{} unreadable file(s) in {} left out (data.on_unreadable = \"skip\"); the data summary names them",
            skipped.len(),
            path_text(&folder)
        );
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
pub(crate) fn label_names<'a>(samples: impl Iterator<Item = &'a Sample>) -> Vec<String> {
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
