//! The `[data]` and `[augment]` sections of a recipe: what they mean, their defaults
//! (the tutorial's), and the checks on their values.

use std::fmt;
use std::path::PathBuf;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::SettingError;
use crate::volume::Orientation;
use crate::volume_augment::VolumeAugment;
use crate::volume_settings::{
    ChannelsFrom, DEFAULT_MAX_VOXELS, DatasetLayout, Interpolation, MaskGeometry, MaskInterpolation, NanPolicy,
    Normalize, PatchSize, TargetSpacing,
};

/// What the dataset is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// One label per image: `<root>/<split>/<class>/<image>`.
    Classification,
    /// One mask per image: `<root>/<split>/<images folder>/<image>` paired by file stem
    /// with `<root>/<split>/<masks folder>/<mask>.png`.
    Segmentation,
    /// Any number of labels per image (findings that can co-occur), from a labels table
    /// (`data.labels`): one sigmoid output per label, binary cross-entropy.
    Multilabel,
}

impl Task {
    /// The name as written in a recipe.
    pub fn name(self) -> &'static str {
        match self {
            Task::Classification => "classification",
            Task::Segmentation => "segmentation",
            Task::Multilabel => "multilabel",
        }
    }
}

/// `data.series`: what a DICOM series (the files of one SeriesInstanceUID in one folder,
/// or the frames of a multi-frame file) becomes. Slices are ordered by their position
/// along the normal of their plane (ImagePositionPatient projected on the cross product
/// of the ImageOrientationPatient directions), then InstanceNumber, then file name;
/// frames keep their order in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Series {
    /// Every file one image, every multi-frame file its `dicom_frame` (the default).
    #[default]
    Files,
    /// Every slice one image; the series is their group for splitting when `group_by`
    /// gives none.
    Slices,
    /// One image per series: its middle slice (index n / 2 counting from 0).
    Middle,
    /// Every slice one image whose channels are the slice and its neighbours: `slab`
    /// slices (odd) centred on it, the first and last repeated at the ends.
    Slab(u32),
}

impl Serialize for Series {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            Series::Files => s.serialize_str("files"),
            Series::Slices => s.serialize_str("slices"),
            Series::Middle => s.serialize_str("middle"),
            Series::Slab(k) => {
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry("slab", k)?;
                map.end()
            }
        }
    }
}

impl schemars::JsonSchema for Series {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Series".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "anyOf": [
                { "enum": ["files", "slices", "middle"] },
                {
                    "type": "object",
                    "properties": { "slab": { "type": "integer", "minimum": 1 } },
                    "required": ["slab"],
                    "additionalProperties": false
                }
            ]
        })
    }
}

impl<'de> Deserialize<'de> for Series {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const EXPECTED: &str = "\"files\", \"slices\", \"middle\" or { slab = 3 }";
        struct SeriesVisitor;
        impl<'de> Visitor<'de> for SeriesVisitor {
            type Value = Series;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(EXPECTED)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Series, E> {
                match v {
                    "files" => Ok(Series::Files),
                    "slices" => Ok(Series::Slices),
                    "middle" => Ok(Series::Middle),
                    other => Err(E::custom(format!("unknown series choice \"{other}\"; expected {EXPECTED}"))),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Series, A::Error> {
                let mut slab = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "slab" => slab = Some(map.next_value::<u32>()?),
                        other => return Err(de::Error::unknown_field(other, &["slab"])),
                    }
                }
                slab.map(Series::Slab).ok_or_else(|| de::Error::missing_field("slab"))
            }
        }
        d.deserialize_any(SeriesVisitor)
    }
}

/// What to do with a file that looks like an image but cannot be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UnreadablePolicy {
    /// Stop, naming the file (the default: a silently smaller dataset is worse).
    Error,
    /// Leave the file out, warn naming it, and list it in the data summary.
    Skip,
}

/// `data.max_pixels` by default: 100 megapixels, above any radiograph (a 43 x 43 cm
/// detector at 0.1 mm is 18.5 megapixels).
pub const DEFAULT_MAX_PIXELS: u64 = 100_000_000;

/// The `[data]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DataSettings {
    /// Folder holding the split folders. A relative path is resolved against the folder
    /// of the recipe file.
    pub root: PathBuf,
    /// `classification` or `segmentation`.
    pub task: Task,
    /// Training split folder name.
    pub train: String,
    /// Validation split: a folder name, or `"auto"`: the folder `Validation` when it
    /// exists, else `validation_fraction` of the training folder split off (grouped by
    /// `group_by`, stratified by class, seeded by `split_seed`).
    pub validation: String,
    /// Test split folder name (required: the test set must be separate from the start).
    pub test: String,
    /// Fraction of the training folder held out for validation when there is no
    /// validation folder (the tutorial's `validation_split = 0.11`).
    #[schemars(extend("exclusiveMinimum" = 0, "exclusiveMaximum" = 1))]
    pub validation_fraction: f64,
    /// Seed of the automatic validation split (the tutorial's 42).
    pub split_seed: u64,
    /// Images are resized to `[height, width]`.
    #[serde(deserialize_with = "height_width")]
    pub image_size: [u32; 2],
    /// How images are resized to `image_size`: see [`Resize`].
    pub resize: Resize,
    /// 1 (gray) or 3 (the gray image repeated, for ImageNet backbones; colour DICOM
    /// images keep their red, green and blue). With several windows, one channel per
    /// window; with a slab, one per slice.
    pub channels: u32,
    /// DICOM display window, or a list of them: one input channel per window; see
    /// [`Windows`].
    pub window: Windows,
    /// Which frame of a multi-frame DICOM file to use (0 = the first).
    pub dicom_frame: u32,
    /// What a DICOM series becomes: see [`Series`].
    pub series: Series,
    /// Images with more pixels than this (per frame) are refused before they are
    /// decoded, so that a damaged or hostile header cannot exhaust memory.
    pub max_pixels: u64,
    /// `error` or `skip`.
    pub on_unreadable: UnreadablePolicy,
    /// Segmentation: the images folder inside each split.
    pub images_folder: String,
    /// Segmentation: the masks folder inside each split, or `"auto"` for `Segmentation`
    /// or `Masks`, whichever exists.
    pub masks_folder: String,
    /// A table of labels inside `root`, a CSV file or a workbook (columns `file`,
    /// `label`, optionally `split` and `patient`) instead of class folders; empty: class
    /// folders. Required by `task = "multilabel"`.
    pub labels: PathBuf,
    /// The sheet of `labels` when it is a workbook (`.xlsx`, `.xlsm`, `.xlsb`, `.xls`,
    /// `.ods`); empty: its first. Other workbooks (`group_by = { csv = ... }`, a
    /// subgroup's table) are read from their first sheet.
    pub sheet: String,
    /// Which images belong together (one patient): they never straddle training,
    /// validation, test or folds. See [`GroupBy`].
    pub group_by: GroupBy,
    /// Images of one group or patient, or byte-identical files, in two splits are an error
    /// (leakage); `true` makes it a warning in the data summary.
    pub allow_leakage: bool,
    /// Where the decoded images are kept between epochs: see [`CacheMode`].
    pub cache: CacheMode,
    /// 2 (images: PNG, JPEG, DICOM files) or 3 (volumes: NIfTI files, DICOM series).
    /// The keys below are for volumes; see [`crate::volume_settings`].
    pub dims: u32,
    /// How the folders hold the cases: see [`DatasetLayout`].
    pub layout: DatasetLayout,
    /// The axis order and directions volumes are turned to, by flips and permutations
    /// only: "RAS" (nibabel's canonical), "LPS" (DICOM's and ITK's) or "as_stored".
    pub orientation: Orientation,
    /// The voxel spacing volumes are resampled to: see [`TargetSpacing`].
    pub spacing: TargetSpacing,
    /// How image voxels are resampled: see [`Interpolation`].
    pub interpolation: Interpolation,
    /// How label maps are resampled: see [`MaskInterpolation`].
    pub mask_interpolation: MaskInterpolation,
    /// How volume intensities are scaled: see [`Normalize`].
    pub normalize: Normalize,
    /// Crop each volume to the box of its voxels above 0 (MONAI's `CropForeground`);
    /// outputs are put back in place.
    pub crop_foreground: bool,
    /// Where a case's channels come from: see [`ChannelsFrom`].
    pub channels_from: ChannelsFrom,
    /// NaN voxels: see [`NanPolicy`].
    pub nan: NanPolicy,
    /// A mask on another grid than its image's: see [`MaskGeometry`].
    pub mask_geometry: MaskGeometry,
    /// Volumes declaring more voxels (all channels) than this are refused before they
    /// are read.
    pub max_voxels: u64,
    /// The share of the training cases held out as the test set when the dataset has no
    /// labelled test cases (a Decathlon layout without `labelsTs/`): grouped by patient,
    /// seeded by `split_seed`.
    #[schemars(extend("exclusiveMinimum" = 0, "exclusiveMaximum" = 1))]
    pub test_fraction: f64,
    pub patch_size: PatchSize,
    /// The share of each batch of training patches forced onto a labelled voxel
    /// (nnU-Net's `oversample_foreground_percent`, MONAI's `RandCropByPosNegLabel`).
    #[schemars(range(min = 0, max = 1))]
    pub foreground_oversample: f64,
}

/// `data.cache`: where a dataset's decoded, resized images are kept for the epochs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CacheMode {
    /// `memory` when the images fit in a quarter of the machine's memory (shared among
    /// the workers of `--jobs`), else `disk`.
    #[default]
    Auto,
    /// Decoded by each process and kept in its memory.
    Memory,
    /// Decoded once into an image cache file beside the runs (`runs/.image-cache/`),
    /// which this run, the other runs of the sweep and later runs read each batch from;
    /// memory then holds only the batches being made.
    Disk,
}

/// Where an image's group (its patient, usually) comes from. Every split made from the
/// training folder keeps a group whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// The DICOM PatientID of the files that carry one; an image without one is a group
    /// of its own.
    Auto,
    /// No groups: every image on its own.
    None,
    /// The DICOM PatientID (0010,0020); a file without one is an error.
    PatientId,
    /// The DICOM StudyInstanceUID (0020,000D); a file without one is an error.
    Study,
    /// The first sub-folder under the class folder (or images folder), e.g.
    /// `Train/nodule/<patient>/image.png`.
    Folder,
    /// A regular expression on the image's path relative to its class folder (or images
    /// folder), `/`-separated; the group is the capture named `group`, else the first
    /// capture, else the whole match: `{ pattern = "^(?P<group>[^_]+)_" }`.
    Pattern(String),
    /// A CSV file (relative to `data.root`) with a `file` column (the image's path
    /// relative to `data.root`) and a `patient` or `patient_id` column:
    /// `{ csv = "patients.csv" }`.
    Csv(PathBuf),
}

impl GroupBy {
    /// In words, for the data summary.
    pub fn describe(&self) -> String {
        match self {
            GroupBy::Auto => "DICOM PatientID where present (data.group_by = \"auto\")".into(),
            GroupBy::None => "none: every image on its own (data.group_by = \"none\")".into(),
            GroupBy::PatientId => "DICOM PatientID".into(),
            GroupBy::Study => "DICOM StudyInstanceUID".into(),
            GroupBy::Folder => "sub-folder of the class folder".into(),
            GroupBy::Pattern(p) => format!("pattern {p:?} on the file path"),
            GroupBy::Csv(file) => format!("patient column of {}", file.display()),
        }
    }
}

/// The `[split]` section, resolved: k-fold cross-validation on the training folder.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SplitSettings {
    /// 0: one validation split (a folder, or `data.validation_fraction` of the training
    /// folder). k >= 2: the training folder is cut into k folds (grouped, stratified by
    /// class, seeded by `data.split_seed`); each run validates on one fold and trains on
    /// the others. The test folder is never touched.
    pub folds: u32,
    /// The fold this run validates on, 1 to `folds` (0 without folds).
    pub fold: u32,
}

impl SplitSettings {
    pub fn validate(&self) -> Result<(), SettingError> {
        if self.folds == 1 || self.folds > 100 {
            return Err(SettingError::new(
                "split.folds",
                format!("must be 0 (no cross-validation) or between 2 and 100, found {}", self.folds),
            ));
        }
        if self.folds == 0 && self.fold != 0 {
            return Err(SettingError::new("split.fold", "needs `split.folds` (the number of folds) to be set"));
        }
        if self.folds > 0 && !(1..=self.folds).contains(&self.fold) {
            return Err(SettingError::new(
                "split.fold",
                format!("must be between 1 and {} (split.folds), found {}", self.folds, self.fold),
            ));
        }
        Ok(())
    }
}

impl Default for DataSettings {
    fn default() -> Self {
        Self {
            root: PathBuf::from("data"),
            task: Task::Classification,
            train: "Train".into(),
            validation: AUTO.into(),
            test: "Test".into(),
            validation_fraction: 0.11,
            split_seed: 42,
            image_size: [64, 64],
            resize: Resize::Bilinear,
            channels: 1,
            window: Windows::default(),
            dicom_frame: 0,
            series: Series::Files,
            max_pixels: DEFAULT_MAX_PIXELS,
            on_unreadable: UnreadablePolicy::Error,
            images_folder: "Images".into(),
            masks_folder: AUTO.into(),
            labels: PathBuf::new(),
            sheet: String::new(),
            group_by: GroupBy::Auto,
            allow_leakage: false,
            cache: CacheMode::Auto,
            dims: 2,
            layout: DatasetLayout::Auto,
            orientation: Orientation::Ras,
            spacing: TargetSpacing::Median,
            interpolation: Interpolation::Cubic,
            mask_interpolation: MaskInterpolation::Linear,
            normalize: Normalize::Zscore,
            crop_foreground: false,
            channels_from: ChannelsFrom::Files,
            nan: NanPolicy::Error,
            mask_geometry: MaskGeometry::Error,
            max_voxels: DEFAULT_MAX_VOXELS,
            test_fraction: 0.2,
            patch_size: PatchSize::Auto,
            foreground_oversample: 0.33,
        }
    }
}

/// How an image is resized to `data.image_size` (masks are always resized by `nearest`:
/// labels are never blended).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Resize {
    /// Antialiased bilinear: each output pixel averages the input area it covers when
    /// shrinking, so fine detail and noise do not alias (Pillow's `BILINEAR`). The default.
    Bilinear,
    /// The nearest input pixel, exactly as Pillow's `NEAREST`, which the tutorial's Keras
    /// `flow_from_directory` used: reproduces the tutorial's inputs to the pixel, but a
    /// shrunk image keeps one pixel in several and aliases.
    Nearest,
    /// Antialiased bicubic (Pillow's `BICUBIC`, a = -0.5): a little sharper than bilinear.
    Bicubic,
}

/// The word that asks radrun to choose (validation folder, masks folder).
pub const AUTO: &str = "auto";

impl DataSettings {
    /// The model's input channels: one per window when several are listed, else
    /// `channels`.
    pub fn input_channels(&self) -> usize {
        match (self.series, self.window.0.len()) {
            (Series::Slab(k), _) => k as usize,
            (_, n) if n > 1 => n,
            _ => self.channels as usize,
        }
    }

    /// A volume network's input channels for cases of `stored` channels: one per window
    /// with `normalize = "window"` (from the first channel), else `stored`.
    pub fn volume_channels(&self, stored: usize) -> usize {
        if self.normalize == Normalize::Window { self.window.0.len() } else { stored }
    }

    /// Checks each value on its own; the folders are checked when the dataset is opened.
    pub fn validate(&self) -> Result<(), SettingError> {
        self.check_validation_fraction()?;
        self.check_image_size()?;
        self.check_channels()?;
        self.check_folder_names()?;
        self.check_splits_apart()?;
        self.check_series()?;
        self.check_max_pixels()?;
        self.check_windows()?;
        check_volume_keys(self)?;
        self.check_labels()?;
        self.check_group_by()
    }

    /// `validation_fraction` is strictly between 0 and 1.
    fn check_validation_fraction(&self) -> Result<(), SettingError> {
        if !(self.validation_fraction > 0.0 && self.validation_fraction < 1.0) {
            return refuse(
                "validation_fraction",
                format!("must be between 0 and 1 (exclusive), found {}", self.validation_fraction),
            );
        }
        Ok(())
    }

    /// Each side of `image_size` is 4 to 8192 pixels.
    fn check_image_size(&self) -> Result<(), SettingError> {
        if self.image_size.iter().any(|&s| !(4..=8192).contains(&s)) {
            return refuse(
                "image_size",
                format!(
                    "each side must be between 4 and 8192 pixels, found [{}, {}] (height, width)",
                    self.image_size[0], self.image_size[1]
                ),
            );
        }
        Ok(())
    }

    /// `channels` is 1 or 3, or with several windows 1 or one per window.
    fn check_channels(&self) -> Result<(), SettingError> {
        let windows = self.window.0.len();
        if windows > 1 && self.channels != 1 && self.channels as usize != windows {
            return refuse(
                "channels",
                format!(
                    "is {} but data.window lists {windows} windows, one channel each; leave channels out",
                    self.channels
                ),
            );
        }
        if windows <= 1 && self.channels != 1 && self.channels != 3 {
            return refuse("channels", format!("must be 1 (gray) or 3 (gray repeated), found {}", self.channels));
        }
        Ok(())
    }

    /// The training and test folders are named, and every folder setting names a folder
    /// inside `data.root`.
    fn check_folder_names(&self) -> Result<(), SettingError> {
        for (key, name) in [("train", &self.train), ("test", &self.test)] {
            if name.is_empty() || name == AUTO {
                return refuse(key, format!("must name a folder, found \"{name}\""));
            }
        }
        let folders = [
            ("train", &self.train),
            ("validation", &self.validation),
            ("test", &self.test),
            ("images_folder", &self.images_folder),
            ("masks_folder", &self.masks_folder),
        ];
        for (key, name) in folders {
            let inside = std::path::Path::new(name).components().all(|c| matches!(c, std::path::Component::Normal(_)));
            if !inside {
                return refuse(
                    key,
                    format!(
                        "must name a folder inside `data.root` (like \"Train\" or \"scans/Train\"), found \"{name}\"; \
                         to use another folder, change `data.root`"
                    ),
                );
            }
        }
        Ok(())
    }

    /// The test and validation folders are not the training folder, nor each other.
    fn check_splits_apart(&self) -> Result<(), SettingError> {
        // The test set must be separate from the images the model learns from.
        let same_folder =
            |a: &str, b: &str| std::path::Path::new(a).components().eq(std::path::Path::new(b).components());
        if same_folder(&self.test, &self.train) {
            return refuse(
                "test",
                format!(
                    "names the training folder (\"{}\"): the test images must be kept apart from training; \
                     point `data.test` at a separate folder",
                    self.test
                ),
            );
        }
        if let Some(clash) = [&self.train, &self.test].into_iter().find(|n| same_folder(&self.validation, n)) {
            return refuse(
                "validation",
                format!("names the same folder as another split (\"{clash}\"); use a separate folder or \"auto\""),
            );
        }
        Ok(())
    }

    /// A slab is an odd number of slices from 3 to 31 and makes the channels itself.
    fn check_series(&self) -> Result<(), SettingError> {
        if let Series::Slab(k) = self.series {
            if !(3..=31).contains(&k) || k % 2 == 0 {
                return refuse("series", format!("slab must be an odd number of slices from 3 to 31, found {k}"));
            }
            if self.channels != 1 {
                return refuse(
                    "channels",
                    format!("is {} but a slab of {k} slices makes {k} channels; leave channels out", self.channels),
                );
            }
            if self.window.0.len() > 1 {
                return refuse("series", "a slab and several windows both make channels; choose one".to_string());
            }
        }
        Ok(())
    }

    /// `max_pixels` is 1 to 10^10.
    fn check_max_pixels(&self) -> Result<(), SettingError> {
        if !(1..=10_000_000_000).contains(&self.max_pixels) {
            return refuse("max_pixels", format!("must be between 1 and 10000000000, found {}", self.max_pixels));
        }
        Ok(())
    }

    /// `window` lists at least one window, and each explicit one has a positive width.
    fn check_windows(&self) -> Result<(), SettingError> {
        if self.window.0.is_empty() {
            return refuse("window", "is an empty list; give one window or several (one channel each)".to_string());
        }
        for window in &self.window.0 {
            if let Window::Explicit { center, width } = *window
                && !(width > 0.0 && center.is_finite())
            {
                return refuse("window", format!("width must be positive, found center {center}, width {width}"));
            }
        }
        Ok(())
    }

    /// A labels table is given for `multilabel` and not for `segmentation`.
    fn check_labels(&self) -> Result<(), SettingError> {
        match (self.task, self.labels.as_os_str().is_empty()) {
            (Task::Multilabel, true) => refuse(
                "labels",
                "is required by `data.task = \"multilabel\"`: name a CSV file with `file` and `label` columns \
                 (labels separated by |)"
                    .into(),
            ),
            (Task::Segmentation, false) => {
                refuse("labels", "is for classification; segmentation reads masks, not a labels table".into())
            }
            _ => Ok(()),
        }
    }

    /// A `group_by` pattern is a valid regular expression.
    fn check_group_by(&self) -> Result<(), SettingError> {
        if let GroupBy::Pattern(pattern) = &self.group_by {
            group_pattern(pattern).map_err(|message| SettingError::new("data.group_by", message))?;
        }
        Ok(())
    }

    /// Image height and width in pixels.
    pub fn height_width(&self) -> (usize, usize) {
        (self.image_size[0] as usize, self.image_size[1] as usize)
    }
}

/// The volume keys with their defaults, to tell which a recipe set.
fn volume_keys_set(data: &DataSettings) -> Vec<&'static str> {
    let d = DataSettings::default();
    let set = [
        ("layout", data.layout != d.layout),
        ("orientation", data.orientation != d.orientation),
        ("spacing", data.spacing != d.spacing),
        ("interpolation", data.interpolation != d.interpolation),
        ("mask_interpolation", data.mask_interpolation != d.mask_interpolation),
        ("normalize", data.normalize != d.normalize),
        ("crop_foreground", data.crop_foreground != d.crop_foreground),
        ("channels_from", data.channels_from != d.channels_from),
        ("nan", data.nan != d.nan),
        ("mask_geometry", data.mask_geometry != d.mask_geometry),
        ("max_voxels", data.max_voxels != d.max_voxels),
        ("test_fraction", data.test_fraction != d.test_fraction),
        ("patch_size", data.patch_size != d.patch_size),
        ("foreground_oversample", data.foreground_oversample != d.foreground_oversample),
    ];
    set.into_iter().filter(|(_, differs)| *differs).map(|(key, _)| key).collect()
}

/// The 2D keys a recipe set away from their defaults.
fn image_keys_set(data: &DataSettings) -> Vec<&'static str> {
    let d = DataSettings::default();
    let set = [
        ("image_size", data.image_size != d.image_size),
        ("resize", data.resize != d.resize),
        ("channels", data.channels != d.channels),
        ("dicom_frame", data.dicom_frame != d.dicom_frame),
        ("series", data.series != d.series),
        ("max_pixels", data.max_pixels != d.max_pixels),
    ];
    set.into_iter().filter(|(_, differs)| *differs).map(|(key, _)| key).collect()
}

/// `dims` is 2 or 3; the keys of the other kind are not set; each volume key's value is
/// usable.
fn check_volume_keys(data: &DataSettings) -> Result<(), SettingError> {
    let refuse = |key: &str, message: String| Err(SettingError::new(format!("data.{key}"), message));
    match data.dims {
        2 => {
            if let Some(key) = volume_keys_set(data).first() {
                return refuse(key, "is for volumes; set `data.dims = 3` to read CT and MR volumes".into());
            }
            return Ok(());
        }
        3 => {}
        other => return refuse("dims", format!("must be 2 (images) or 3 (volumes), found {other}")),
    }
    if let Some(key) = image_keys_set(data).first() {
        let instead = match *key {
            "image_size" | "resize" => "volumes keep their voxels and are resampled to `data.spacing`",
            "channels" | "series" | "dicom_frame" => {
                "a volume's channels are its files (or `data.channels_from = \"last_axis\"`)"
            }
            _ => "volumes are bounded by `data.max_voxels`",
        };
        return refuse(key, format!("is for 2D images (data.dims = 2); {instead}"));
    }
    if matches!(data.group_by, GroupBy::Study | GroupBy::Folder | GroupBy::Csv(_)) {
        return refuse(
            "group_by",
            "for volumes is \"auto\" (the DICOM PatientID, a labels table's patient, else the case), \"none\", \
             \"patient_id\" or { pattern = \"...\" } on the case name"
                .into(),
        );
    }
    if data.task == Task::Multilabel {
        return refuse("task", "\"multilabel\" is for 2D images; volumes are classified or segmented".into());
    }
    if let TargetSpacing::Mm(mm) = data.spacing
        && mm.iter().any(|s| !(s.is_finite() && *s >= 0.01 && *s <= 100.0))
    {
        let [x, y, z] = mm;
        return refuse("spacing", format!("each value must be between 0.01 and 100 mm, found [{z}, {y}, {x}]"));
    }
    if !(0.0..=1.0).contains(&data.foreground_oversample) {
        return refuse(
            "foreground_oversample",
            format!("must be between 0 and 1 (a share of each batch), found {}", data.foreground_oversample),
        );
    }
    if data.on_unreadable == UnreadablePolicy::Skip {
        return refuse(
            "on_unreadable",
            "\"skip\" is for 2D images; a volume dataset stops at the first case it cannot read, naming it".into(),
        );
    }
    if data.normalize != Normalize::Window && data.window != Windows::default() {
        return refuse(
            "window",
            "windows volumes only with `data.normalize = \"window\"`; set that, or leave window out".into(),
        );
    }
    if data.normalize == Normalize::Window && data.window.0.contains(&Window::Auto) {
        return refuse(
            "window",
            "must name the windows when `data.normalize = \"window\"` (e.g. \"abdomen\" or { center = 40, width = 400 \
             }): a volume file carries no window of its own"
                .into(),
        );
    }
    if !(1..=100_000_000_000).contains(&data.max_voxels) {
        return refuse("max_voxels", format!("must be between 1 and 100000000000, found {}", data.max_voxels));
    }
    if !(data.test_fraction > 0.0 && data.test_fraction < 1.0) {
        return refuse("test_fraction", format!("must be between 0 and 1 (exclusive), found {}", data.test_fraction));
    }
    Ok(())
}

/// The error for the value of `data.<key>`.
fn refuse(key: &str, message: String) -> Result<(), SettingError> {
    Err(SettingError::new(format!("data.{key}"), message))
}

/// The regular expression of `group_by = { pattern = ... }`, compiled.
pub(crate) fn group_pattern(pattern: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(pattern).map_err(|e| format!("pattern {pattern:?} is not a valid regular expression: {e}"))
}

/// `image_size` is exactly two sides: a third value is a mistake, not something to drop.
fn height_width<'de, D: Deserializer<'de>>(d: D) -> Result<[u32; 2], D::Error> {
    let sides = Vec::<u32>::deserialize(d)?;
    <[u32; 2]>::try_from(sides.as_slice()).map_err(|_| de::Error::invalid_length(sides.len(), &"[height, width]"))
}

/// `data.window`: one window, or several giving one input channel each (the common way
/// to feed CT to ImageNet backbones: `["lung", "mediastinum", "bone"]`). One window is
/// written as a single value, so recipes and run ids from before lists stay the same.
#[derive(Debug, Clone, PartialEq)]
pub struct Windows(pub Vec<Window>);

impl Default for Windows {
    fn default() -> Self {
        Windows(vec![Window::Auto])
    }
}

impl Windows {
    pub fn one(window: Window) -> Self {
        Windows(vec![window])
    }
}

impl Serialize for Windows {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => one.serialize(s),
            many => many.serialize(s),
        }
    }
}

impl schemars::JsonSchema for Windows {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Windows".into()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let window = generator.subschema_for::<Window>();
        schemars::json_schema!({ "anyOf": [window, { "type": "array", "items": window, "minItems": 1 }] })
    }
}

impl<'de> Deserialize<'de> for Windows {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct WindowsVisitor;
        impl<'de> Visitor<'de> for WindowsVisitor {
            type Value = Windows;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "{WINDOW_EXPECTED}, or a list of them")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Windows, E> {
                WindowVisitor.visit_str(v).map(Windows::one)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Windows, A::Error> {
                WindowVisitor.visit_map(map).map(Windows::one)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Windows, A::Error> {
                let mut windows = Vec::new();
                while let Some(window) = seq.next_element::<Window>()? {
                    windows.push(window);
                }
                Ok(Windows(windows))
            }
        }
        d.deserialize_any(WindowsVisitor)
    }
}

/// How DICOM stored values become intensities in [0, 1]: values are clipped to
/// `[center - width/2, center + width/2]` and scaled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Window {
    /// The file's WindowCenter/WindowWidth when readable, else the full range of the
    /// image's values (right for radiographs without window tags).
    Auto,
    /// The tutorial's rule: the file's window when readable, else center 40, width 400.
    File,
    /// A named preset.
    Preset(WindowPreset),
    /// An explicit window, in the modality's units (Hounsfield units on CT).
    Explicit { center: f64, width: f64 },
}

/// Common CT windows (center, width in Hounsfield units).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowPreset {
    Lung,
    Mediastinum,
    Bone,
    Brain,
    Abdomen,
}

impl WindowPreset {
    pub const ALL: [WindowPreset; 5] =
        [WindowPreset::Lung, WindowPreset::Mediastinum, WindowPreset::Bone, WindowPreset::Brain, WindowPreset::Abdomen];

    pub fn name(self) -> &'static str {
        match self {
            WindowPreset::Lung => "lung",
            WindowPreset::Mediastinum => "mediastinum",
            WindowPreset::Bone => "bone",
            WindowPreset::Brain => "brain",
            WindowPreset::Abdomen => "abdomen",
        }
    }

    /// (center, width).
    pub fn center_width(self) -> (f64, f64) {
        match self {
            WindowPreset::Lung => (-600.0, 1500.0),
            WindowPreset::Mediastinum => (50.0, 350.0),
            WindowPreset::Bone => (400.0, 1800.0),
            WindowPreset::Brain => (40.0, 80.0),
            WindowPreset::Abdomen => (40.0, 400.0),
        }
    }
}

/// The tutorial's fallback window when a file has none.
pub const TUTORIAL_DEFAULT_WINDOW: (f64, f64) = (40.0, 400.0);

impl Serialize for Window {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            Window::Auto => s.serialize_str("auto"),
            Window::File => s.serialize_str("file"),
            Window::Preset(p) => s.serialize_str(p.name()),
            Window::Explicit { center, width } => {
                let mut map = s.serialize_map(Some(2))?;
                map.serialize_entry("center", center)?;
                map.serialize_entry("width", width)?;
                map.end()
            }
        }
    }
}

const WINDOW_EXPECTED: &str = "\"auto\", \"file\", a preset (\"lung\", \"mediastinum\", \"bone\", \
     \"brain\", \"abdomen\") or a table { center = 40, width = 400 }";

struct WindowVisitor;

impl<'de> Visitor<'de> for WindowVisitor {
    type Value = Window;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(WINDOW_EXPECTED)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Window, E> {
        match v {
            "auto" => Ok(Window::Auto),
            "file" => Ok(Window::File),
            _ => WindowPreset::ALL
                .into_iter()
                .find(|p| p.name() == v)
                .map(Window::Preset)
                .ok_or_else(|| E::custom(format!("unknown window \"{v}\"; expected {WINDOW_EXPECTED}"))),
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Window, A::Error> {
        let (mut center, mut width) = (None, None);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "center" => center = Some(map.next_value::<f64>()?),
                "width" => width = Some(map.next_value::<f64>()?),
                other => {
                    return Err(de::Error::unknown_field(other, &["center", "width"]));
                }
            }
        }
        match (center, width) {
            (Some(center), Some(width)) => Ok(Window::Explicit { center, width }),
            (None, _) => Err(de::Error::missing_field("center")),
            (_, None) => Err(de::Error::missing_field("width")),
        }
    }
}

impl schemars::JsonSchema for Window {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Window".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let names: Vec<&str> = ["auto", "file"].into_iter().chain(WindowPreset::ALL.map(WindowPreset::name)).collect();
        schemars::json_schema!({
            "anyOf": [
                { "enum": names },
                {
                    "type": "object",
                    "properties": {
                        "center": { "type": "number" },
                        "width": { "type": "number", "exclusiveMinimum": 0 }
                    },
                    "required": ["center", "width"],
                    "additionalProperties": false
                }
            ]
        })
    }
}

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(WindowVisitor)
    }
}

/// How pixels outside the image are filled when augmentation moves it (Keras' fill modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FillMode {
    /// Repeat the edge pixel (the tutorial's choice).
    Nearest,
    /// Fill with `fill_value`.
    Constant,
    /// Mirror the image at its edge.
    Reflect,
    /// Tile the image.
    Wrap,
}

/// The `[augment]` section: random changes applied to training images only, drawn anew
/// each epoch. Defaults are the tutorial's Keras `ImageDataGenerator` settings for
/// images; volumes take nnU-Net's set from `[augment.volume]` and refuse the image keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentSettings {
    /// Master switch.
    pub enabled: bool,
    /// Rotation drawn uniformly in [-rotation, +rotation] degrees.
    pub rotation: f64,
    /// Horizontal shift, as a fraction of the width, drawn in [-x, +x].
    pub width_shift: f64,
    /// Vertical shift, as a fraction of the height.
    pub height_shift: f64,
    /// Zoom factors drawn in [1 - zoom, 1 + zoom], independently for each axis as Keras
    /// does (a factor above 1 shows a larger field of view, so anatomy looks smaller).
    pub zoom: f64,
    /// Mirror left-right with probability 1/2.
    pub horizontal_flip: bool,
    /// Mirror top-bottom with probability 1/2.
    pub vertical_flip: bool,
    /// How the area uncovered by a shift or rotation is filled.
    pub fill: FillMode,
    /// Value used by `fill = "constant"` (intensities are in [0, 1]).
    pub fill_value: f64,
    /// Intensity: an offset drawn in [-brightness, +brightness] is added (image only,
    /// never the mask). 0 = off, the tutorial's choice.
    pub brightness: f64,
    /// Intensity: a factor drawn in [1 - contrast, 1 + contrast] scales the image around
    /// its mean. 0 = off.
    pub contrast: f64,
    /// Volumes (`data.dims = 3`): each 3D transform's probability and range.
    pub volume: VolumeAugment,
}

impl Default for AugmentSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            rotation: 15.0,
            width_shift: 0.2,
            height_shift: 0.2,
            zoom: 0.3,
            horizontal_flip: false,
            vertical_flip: false,
            fill: FillMode::Nearest,
            fill_value: 0.0,
            brightness: 0.0,
            contrast: 0.0,
            volume: VolumeAugment::default(),
        }
    }
}

impl AugmentSettings {
    /// Each value in its range, and only the keys of the data's kind set: `augment.volume`
    /// for volumes (`dims` 3), the others for images.
    pub fn validate(&self, dims: u32) -> Result<(), SettingError> {
        let d = AugmentSettings::default();
        if dims == 3 {
            let image_keys = [
                ("rotation", self.rotation != d.rotation),
                ("width_shift", self.width_shift != d.width_shift),
                ("height_shift", self.height_shift != d.height_shift),
                ("zoom", self.zoom != d.zoom),
                ("horizontal_flip", self.horizontal_flip != d.horizontal_flip),
                ("vertical_flip", self.vertical_flip != d.vertical_flip),
                ("fill", self.fill != d.fill),
                ("fill_value", self.fill_value != d.fill_value),
                ("brightness", self.brightness != d.brightness),
                ("contrast", self.contrast != d.contrast),
            ];
            if let Some((key, _)) = image_keys.iter().find(|(_, set)| *set) {
                return Err(SettingError::new(
                    format!("augment.{key}"),
                    "is for 2D images (data.dims = 2); volumes take their transforms from [augment.volume] \
                     (see docs/recipes.md)",
                ));
            }
            return self.volume.validate();
        }
        if self.volume != d.volume {
            return Err(SettingError::new(
                "augment.volume",
                "is for volumes; set `data.dims = 3` to read CT and MR volumes, or remove [augment.volume]",
            ));
        }
        let checks: [(&str, f64, f64, f64); 7] = [
            ("rotation", self.rotation, 0.0, 180.0),
            ("width_shift", self.width_shift, 0.0, 1.0),
            ("height_shift", self.height_shift, 0.0, 1.0),
            ("zoom", self.zoom, 0.0, 0.95),
            ("fill_value", self.fill_value, 0.0, 1.0),
            ("brightness", self.brightness, 0.0, 1.0),
            ("contrast", self.contrast, 0.0, 1.0),
        ];
        for (key, value, lo, hi) in checks {
            if !(lo..=hi).contains(&value) {
                return Err(SettingError::new(
                    format!("augment.{key}"),
                    format!("must be between {lo} and {hi}, found {value}"),
                ));
            }
        }
        Ok(())
    }

    /// True when no transform would change an image.
    pub fn is_identity(&self) -> bool {
        !self.enabled
            || (self.rotation == 0.0
                && self.width_shift == 0.0
                && self.height_shift == 0.0
                && self.zoom == 0.0
                && !self.horizontal_flip
                && !self.vertical_flip
                && self.brightness == 0.0
                && self.contrast == 0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_volume_recipe_refuses_the_image_augment_keys_and_an_image_recipe_augment_volume() {
        let turned = AugmentSettings { rotation: 30.0, ..AugmentSettings::default() };
        let error = turned.validate(3).unwrap_err();
        assert_eq!(error.key, "augment.rotation");
        assert!(error.message.contains("[augment.volume]"), "{}", error.message);
        assert!(turned.validate(2).is_ok());
        let elastic = VolumeAugment { elastic_probability: 0.2, ..VolumeAugment::default() };
        let volume = AugmentSettings { volume: elastic, ..AugmentSettings::default() };
        assert!(volume.validate(3).is_ok());
        assert_eq!(volume.validate(2).unwrap_err().key, "augment.volume");
        let bad = AugmentSettings {
            volume: VolumeAugment { noise_probability: -0.1, ..VolumeAugment::default() },
            ..AugmentSettings::default()
        };
        assert_eq!(bad.validate(3).unwrap_err().key, "augment.volume.noise_probability");
    }

    #[test]
    fn volume_keys_need_dims_3_and_image_keys_dims_2() {
        let volume_key_in_2d = DataSettings { crop_foreground: true, ..DataSettings::default() };
        assert_eq!(check_volume_keys(&volume_key_in_2d).unwrap_err().key, "data.crop_foreground");
        let image_key_in_3d = DataSettings { dims: 3, image_size: [32, 32], ..DataSettings::default() };
        assert_eq!(check_volume_keys(&image_key_in_3d).unwrap_err().key, "data.image_size");
        let fine = DataSettings { dims: 3, crop_foreground: true, ..DataSettings::default() };
        assert!(check_volume_keys(&fine).is_ok());
        let four = DataSettings { dims: 4, ..DataSettings::default() };
        assert_eq!(check_volume_keys(&four).unwrap_err().key, "data.dims");
    }
}
