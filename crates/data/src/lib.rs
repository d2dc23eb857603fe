//! Datasets for radrun: turns a folder of PNG, JPEG and DICOM images described by the
//! recipe's `[data]` and `[augment]` sections into batches of tensors-to-be. Discovery,
//! decoding, resizing, splitting, augmentation and batching live here; this crate knows
//! nothing of models or training.
//!
//! From the bottom: `settings` (the recipe's sections), `paths`, `pixels`, `split`
//! (grouped, stratified parts); the decoders (`decode`, `dicom`, `resize`); the core types
//! (`sample`, `summary`); `subgroups` (the attribute of each test image that
//! `eval.subgroups` scores by); `discover` (files found, nothing decoded), `series` (frames
//! into slices or slabs), `load` (decoding, each run's split, the leakage check), `cache`
//! (the image cache file); then `augment` and `batch`. Volumes: `volume` (a volume and its
//! affine, reorientation), `nifti` (NIfTI read and written), `series_volume` (DICOM series
//! as volumes), `resample`, `intensity` and `placement` (the way to a working grid and
//! back), `components` (keeping a label's largest connected component);
//! `volume_settings` (the `[data]` keys of volumes), `volume_cases` (a volume dataset's
//! cases found), `volume_dataset` (cases read, summarised, split, and each run's
//! preprocessing fitted), `volume_store` and `volume_augment` (working cases kept on disk,
//! training patches cut and augmented). No module imports one that imports it (a test in
//! tests/cli/architecture.rs reads the `use` lines).

pub mod augment;
pub mod batch;
mod cache;
pub mod components;
pub mod decode;
mod decoded;
mod dicom;
pub mod discover;
pub mod external;
pub mod intensity;
mod jpeg12;
pub mod load;
pub mod nifti;
mod palette;
pub mod paths;
pub mod pixels;
pub mod placement;
mod raster;
pub mod resample;
pub mod resize;
pub mod sample;
pub mod series;
pub mod series_volume;
pub mod settings;
pub mod split;
pub mod subgroups;
pub mod summary;
mod table;
pub mod volume;
pub mod volume_augment;
pub mod volume_cases;
pub mod volume_dataset;
pub mod volume_settings;
pub mod volume_store;
pub mod volume_summary;

use std::path::{Path, PathBuf};

use crate::paths::path_text;

pub use batch::{Batch, BatchOptions, BatchTargets, Batches, epoch_batches, epoch_batches_with};
pub use cache::CachePlace;
pub use decode::{DecodeError, DecodeOptions, FileKind, GrayImage};
pub use dicom::stated_window;
pub use discover::{Layout, discover};
pub use load::{Images, ImagesSource, load};
pub use pixels::Pixels;
pub use sample::{Dataset, Origin, Sample, Split, Target};
pub use settings::{
    AugmentSettings, CacheMode, DataSettings, FillMode, GroupBy, Resize, Series, SplitSettings, Task, UnreadablePolicy,
    Window, WindowPreset, Windows,
};
pub use summary::DataSummary;

/// A recipe value that cannot be used: its dotted key and, in words, what is wrong and
/// what is allowed. Every crate's settings checks return this one type; the runner
/// locates the key in the recipe (file and line, variable or flag).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}` {message}")]
pub struct SettingError {
    /// Dotted recipe key, e.g. `model.blocks`.
    pub key: String,
    pub message: String,
}

impl SettingError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self { key: key.into(), message: message.into() }
    }
}

/// Everything that can go wrong between a recipe's `[data]` section and a batch. Each
/// message names the file or folder and says what to change.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "dataset folder {} does not exist; set `data.root` to the folder holding your split \
         folders (a relative path starts at the recipe file's folder)",
        path_text(.0)
    )]
    MissingRoot(PathBuf),
    #[error(
        "{} is a file, not a folder; set `data.root` to the folder holding your split folders (a \
         relative path starts at the recipe file's folder)",
        path_text(.0)
    )]
    RootNotAFolder(PathBuf),
    #[error("folder {} does not exist; set `{key}` to the folder's name (found there: {found})", path_text(path))]
    MissingSplit { key: String, path: PathBuf, found: String },
    #[error(
        "no class folders in {}: classification expects <root>/<split>/<class>/<image>, one \
         folder per class",
        path_text(.0)
    )]
    NoClasses(PathBuf),
    #[error("only one class folder (\"{class}\") in {}: classification needs at least two", path_text(split))]
    OneClass { split: PathBuf, class: String },
    #[error(
        "class \"{class}\" has no images in {} (`{key}`); every class of the training folder \
         must have images in every split",
        path_text(split)
    )]
    ClassMissing { class: String, split: PathBuf, key: String },
    #[error(
        "class folder \"{class}\" in {} is not a class of the training folder (classes: \
         {classes}); rename or remove it",
        path_text(split)
    )]
    ClassOnlyIn { class: String, split: PathBuf, classes: String },
    #[error(
        "{} holds class(es) {unknown} that the run was not trained on (its classes: {known}); an external set is \
         scored on the run's classes: remove or rename those, or evaluate a run that knows them",
        path_text(source_path)
    )]
    UnknownClasses { source_path: PathBuf, unknown: String, known: String },
    #[error("no usable images in {}", path_text(.0))]
    EmptySplit(PathBuf),
    #[error(
        "no {part} images are left from {} by {how}: it holds {groups} patient(s) or group(s), and a split \
         takes whole ones; add images, use a Validation folder, raise `data.validation_fraction` or lower \
         `split.folds`, or check `data.group_by` (one group for every image means the files share a PatientID)",
        path_text(train)
    )]
    SplitLeftEmpty { part: &'static str, train: PathBuf, how: String, groups: usize },
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("image {} has no mask: expected {}", path_text(image), path_text(expected))]
    MaskMissing { image: PathBuf, expected: PathBuf },
    #[error("mask {} has no image with the same name in {}", path_text(mask), path_text(images))]
    ImageMissing { mask: PathBuf, images: PathBuf },
    #[error(
        "mask {} is {}x{} pixels but its image {} is {}x{}; a mask must match its image",
        path_text(mask), mask_size.0, mask_size.1, path_text(image), image_size.0, image_size.1
    )]
    MaskSize { mask: PathBuf, mask_size: (usize, usize), image: PathBuf, image_size: (usize, usize) },
    #[error("cannot read folder {}: {source}", path_text(path))]
    Io { path: PathBuf, source: std::io::Error },
    #[error(
        "cannot keep the working volume {}: {source}; free space on that disk, or run where this user may \
         write the runs folder",
        path_text(path)
    )]
    Store { path: PathBuf, source: std::io::Error },
    #[error(
        "cannot tell the group (patient) of image {}: {reason}{}; fix `data.group_by`, or set it to \"none\" \
         to split images without groups",
        path_text(file),
        if *others > 0 { format!(" (and {others} other image(s))") } else { String::new() }
    )]
    NoGroup { file: PathBuf, reason: String, others: usize },
    #[error("labels table {}{}: {why}", path_text(table), if *line > 0 { format!(":{line}") } else { String::new() })]
    LabelTable { table: PathBuf, line: usize, why: String },
    #[error("labels table {}:{line} lists {}, which does not exist", path_text(table), path_text(file))]
    ListedFileMissing { table: PathBuf, line: usize, file: PathBuf },
    #[error("`data.group_by`: {0}")]
    GroupBy(String),
    #[error("{0}")]
    Leakage(String),
    #[error("`eval.subgroups`: {0}")]
    Subgroup(String),
    #[error(
        "`split.folds = {folds}` cuts the training folder into folds, each validated in turn, but a validation \
         folder is also there ({}); remove `split.folds`, or move that folder's images into the training folder",
        path_text(folder)
    )]
    FoldsWithValidationFolder { folder: PathBuf, folds: u32 },
    #[error(
        "{} is a volume (NIfTI); set `data.dims = 3` to read CT and MR volumes, or move it out of the dataset",
        path_text(.0)
    )]
    VolumeIn2d(PathBuf),
    #[error(
        "{} is a 2D image; with `data.dims = 3` radrun reads volumes (NIfTI files, DICOM series folders): set \
         `data.dims = 2` for images, or move it out of the dataset",
        path_text(.0)
    )]
    ImageIn3d(PathBuf),
    #[error("{} {why}", path_text(file))]
    CaseLayout { file: PathBuf, why: String },
    #[error(
        "case \"{case}\" lacks channel file {} (dataset.json declares {channels} channel(s), numbered from _0000); \
         add the file or remove the case's other files",
        path_text(expected)
    )]
    ChannelMissing { case: String, expected: PathBuf, channels: usize },
    #[error(
        "case \"{case}\": mask {} holds label value(s) {why}; fix the mask or add the labels to dataset.json",
        path_text(mask)
    )]
    UndeclaredLabel { case: String, mask: PathBuf, why: String },
    #[error("case \"{case}\": {} and {} are not on one grid: {why}", path_text(image), path_text(other))]
    GridMismatch { case: String, image: PathBuf, other: PathBuf, why: String },
    #[error(
        "case \"{case}\": mask {} holds value {value}; a mask holds whole label values 0, 1, 2...",
        path_text(mask)
    )]
    MaskValue { case: String, mask: PathBuf, value: f32 },
    #[error(transparent)]
    Series(#[from] series_volume::SeriesError),
    #[error(
        "cannot use the image cache {}: {source}; the folder must be writable, with free space and file \
         locks (or set `data.cache = \"memory\"`)",
        path_text(path)
    )]
    Cache { path: PathBuf, source: std::io::Error },
}

impl Error {
    /// True for problems with a single file, which `on_unreadable = "skip"` may skip.
    pub fn is_about_one_file(&self) -> bool {
        matches!(
            self,
            Error::Decode(_)
                | Error::MaskMissing { .. }
                | Error::ImageMissing { .. }
                | Error::MaskSize { .. }
                | Error::ListedFileMissing { .. }
        )
    }

    /// The file the error is about, if it is about one.
    pub fn file(&self) -> Option<&Path> {
        match self {
            Error::Decode(e) => Some(&e.path),
            Error::MaskMissing { image, .. } | Error::MaskSize { image, .. } => Some(image),
            Error::ImageMissing { mask, .. } => Some(mask),
            Error::ListedFileMissing { file, .. } => Some(file),
            _ => None,
        }
    }
}

/// For the workspace's tests: where `scripts/test.sh` put the reference files and the
/// Python venv. Outside that script these are unset: a test then skips, saying how to run
/// it, except under CI (see [`in_ci`]), where a missing reference is a failure.
#[doc(hidden)]
pub mod testing {
    use std::path::PathBuf;

    /// Whether the tests run under CI, where nothing may be skipped: `CI` is set to
    /// anything but empty, `0` or `false` (CI systems set `true`, `1` or their name).
    pub fn in_ci() -> bool {
        ci_value(std::env::var("CI").ok().as_deref())
    }

    /// [`in_ci`] for a value of `CI`.
    pub fn ci_value(value: Option<&str>) -> bool {
        value.map(str::trim).is_some_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
    }

    /// The folder named by the environment variable `var`, or `None` (skip) outside CI.
    fn folder_from(var: &str) -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os(var) {
            return Some(PathBuf::from(dir));
        }
        let message = format!("{var} is not set: run the tests with scripts/test.sh, which sets it up");
        assert!(!in_ci(), "{message}");
        eprintln!("skipped: {message}");
        None
    }

    #[test]
    fn any_ci_value_but_empty_0_or_false_is_ci() {
        // CI=1 (what many CI systems set) must not skip the tests CI has to run
        for value in ["true", "1", "yes", "gitlab", "TRUE"] {
            assert!(ci_value(Some(value)), "{value}");
        }
        for value in [None, Some(""), Some("0"), Some("false"), Some("False")] {
            assert!(!ci_value(value), "{value:?}");
        }
    }

    /// `$RADRUN_REFERENCE`: reference values computed by scikit-learn, pydicom, torchvision...
    pub fn reference_dir() -> Option<PathBuf> {
        folder_from("RADRUN_REFERENCE")
    }

    /// Every file under `dir`, recursively, sorted.
    pub fn files_under(dir: &std::path::Path) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() { files.extend(files_under(&path)) } else { files.push(path) }
        }
        files.sort();
        files
    }

    /// `$RADRUN_VENV`: the torch venv with the reference packages.
    pub fn venv() -> Option<PathBuf> {
        folder_from("RADRUN_VENV")
    }

    /// How far apart two float32 computations of one network may put its outputs,
    /// relative to their largest magnitude (take at least 1), when they add in other
    /// orders: other kernels (SIMD width, oneDNN or native), batch sizes, memory layouts,
    /// thread counts or CPUs. Each of the `depth` layers on the network's longest path
    /// rounds sums of at most `terms` products; roundings of either sign grow as the
    /// square root of a sum's length, each at most `f32::EPSILON` apart between the two
    /// computations (half of it each), and every layer adds its own to what reaches it:
    /// `depth` x sqrt(`terms`) x `f32::EPSILON`. A wrong layer, weight or preprocessing
    /// step moves outputs by 1e-2 and more.
    pub fn network_rounding(depth: u32, terms: u32) -> f64 {
        f64::from(depth) * f64::from(terms).sqrt() * f64::from(f32::EPSILON)
    }
}
