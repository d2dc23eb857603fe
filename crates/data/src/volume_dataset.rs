//! A volume dataset read (`data.dims = 3`): every case once, in parallel, keeping its
//! facts, not its voxels: its working shape and spacing (after `data.orientation`), its
//! stored axes, its patient, its label voxel counts, and (for `data.normalize = "ct"`)
//! a sample of its foreground intensities. Each run then splits the cases its own way
//! and fits its preprocessing on its training cases alone ([`VolumeSplit::fit`]).
//!
//! Checked for every case: its channel files and its mask share one grid (shape equal,
//! affines within 1e-4 mm; `data.mask_geometry = "resample"` moves a mask onto its
//! image's grid by nearest voxel instead); a mask holds whole label values, and in a
//! Decathlon layout only those `dataset.json` declares.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::Error;
use crate::decode::FileKind;
use crate::intensity::{CtStatistics, percentile};
use crate::nifti::{self, NiftiOptions};
use crate::paths::path_text;
use crate::resample::{labels_onto, shape_for};
use crate::series_volume::{SeriesTags, read_series};
use crate::settings::{DataSettings, GroupBy, SplitSettings, group_pattern};
use crate::split::{grouped_stratified, held_out};
use crate::volume::Volume;
use crate::volume_cases::{CaseFolder, VolumeCase, VolumeLayout, discover_volumes, external_layout, series_files};
use crate::volume_settings::{ChannelsFrom, MaskGeometry, NanPolicy, Normalize, TargetSpacing};

/// The most foreground intensities kept per case and channel for the CT statistics:
/// nnU-Net's 10,000, taken at an even stride through the foreground (not at random, so
/// the statistics do not depend on a draw).
pub const CT_SAMPLES_PER_CASE: usize = 10_000;

/// Two grids are one when their shapes are equal and their affines within this (mm).
pub const GRID_TOLERANCE_MM: f64 = 1e-4;

/// What a case's reading left: no voxels.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseFacts {
    pub name: String,
    /// Its first channel's file or series folder.
    pub source: PathBuf,
    /// Its patient: DICOM PatientID, a labels table's patient, or the case name.
    pub group: String,
    /// Its DICOM PatientID (a series or DICOM file), whatever `data.group_by` says.
    pub patient_id: Option<String>,
    /// Its first channel's DICOM Modality (a series or DICOM file).
    pub modality: Option<String>,
    pub class: Option<usize>,
    /// Voxels per axis after `data.orientation` (x, y, z).
    pub shape: [usize; 3],
    /// Spacing per axis after `data.orientation` (mm).
    pub spacing: [f64; 3],
    pub channels: usize,
    /// The stored axis codes (nibabel's `aff2axcodes`, e.g. "LPS").
    pub stored_axes: String,
    pub oblique: bool,
    /// Voxels of each label value (segmentation).
    pub labels: BTreeMap<u32, u64>,
    /// Per channel, up to [`CT_SAMPLES_PER_CASE`] foreground intensities
    /// (`data.normalize = "ct"` only).
    pub samples: Vec<Vec<f32>>,
    /// NaN voxels read as 0 (`data.nan = "zero"`).
    pub nan_zeroed: usize,
    pub mask_resampled: bool,
    /// SHA-256 of its voxels (all channels, as read), shape and affine: one volume under
    /// two names or formats has one fingerprint.
    pub fingerprint: [u8; 32],
}

impl CaseFacts {
    /// Voxels per channel.
    pub fn voxels(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Every case of a volume dataset read, before any run's split.
#[derive(Debug)]
pub struct VolumeImages {
    pub(crate) settings: DataSettings,
    pub(crate) layout: VolumeLayout,
    pub(crate) train: Vec<CaseFacts>,
    pub(crate) validation: Option<Vec<CaseFacts>>,
    /// `None`: held out of the training cases (`data.test_fraction`).
    pub(crate) test: Option<Vec<CaseFacts>>,
}

/// Finds and reads the volume dataset `settings` describes.
pub fn read_volumes(settings: &DataSettings) -> Result<VolumeImages, Error> {
    VolumeImages::read(discover_volumes(settings)?)
}

/// Finds and reads an external set at `settings.root` (every case a test case) for a
/// run of `classes` (see [`crate::volume_cases::external_layout`]).
pub fn read_external_volumes(settings: &DataSettings, classes: &[String]) -> Result<VolumeImages, Error> {
    VolumeImages::read(external_layout(settings, classes)?)
}

impl VolumeImages {
    /// Reads every case of `layout` (in parallel).
    pub fn read(layout: VolumeLayout) -> Result<VolumeImages, Error> {
        let settings = layout.settings.clone();
        let read = |folder: &CaseFolder| -> Result<Vec<CaseFacts>, Error> {
            folder.cases.par_iter().map(|case| read_case(case, &layout)).collect()
        };
        let train = read(&layout.train)?;
        let validation = layout.validation.as_ref().map(read).transpose()?;
        let test = layout.test.as_ref().map(read).transpose()?;
        let images = VolumeImages { settings, layout, train, validation, test };
        images.check_channels()?;
        Ok(images)
    }

    /// The `[data]` settings they were read with.
    pub fn settings(&self) -> &DataSettings {
        &self.settings
    }

    /// The class names (classification), in class order.
    pub fn classes(&self) -> &[String] {
        &self.layout.classes
    }

    /// The case of the layout `facts` were read from (by its first channel's path: a
    /// name is unique within its folder only, a training and a test case may share one).
    pub fn layout_case(&self, facts: &CaseFacts) -> &VolumeCase {
        self.layout.cases().find(|c| c.channels[0] == facts.source).expect("the case was read from this layout")
    }

    /// A case's channels and mask read again (as when it was first read).
    pub fn read_again(&self, facts: &CaseFacts) -> Result<(Volume, Option<Volume>), Error> {
        let case = self.layout_case(facts);
        let (image, _, _) = read_channels(case, &self.settings)?;
        let mask = match &case.mask {
            Some(path) => Some(read_mask(case, path, &image, &self.settings)?.0),
            None => None,
        };
        Ok((image, mask))
    }

    /// Every case has the same channels, as many as the layout names.
    fn check_channels(&self) -> Result<(), Error> {
        let mut cases = self.cases().map(|(_, c)| c);
        let Some(first) = cases.next() else { return Ok(()) };
        let names = &self.layout.channel_names;
        if !names.is_empty() && names.len() != first.channels {
            let why = format!(
                "has {} channel(s), but dataset.json names {} ({}); check `data.channels_from`",
                first.channels,
                names.len(),
                names.join(", ")
            );
            return Err(Error::CaseLayout { file: first.source.clone(), why });
        }
        match cases.find(|c| c.channels != first.channels) {
            Some(other) => {
                let why = format!(
                    "has {} channel(s), but {} has {}; every case needs the same channels",
                    other.channels,
                    path_text(&first.source),
                    first.channels
                );
                Err(Error::CaseLayout { file: other.source.clone(), why })
            }
            None => Ok(()),
        }
    }

    /// Every case read, with the name of its split folder.
    pub fn cases(&self) -> impl Iterator<Item = (&'static str, &CaseFacts)> {
        fn named<'a>(
            name: &'static str,
            cases: Option<&'a Vec<CaseFacts>>,
        ) -> impl Iterator<Item = (&'static str, &'a CaseFacts)> {
            cases.into_iter().flatten().map(move |c| (name, c))
        }
        named("train", Some(&self.train))
            .chain(named("validation", self.validation.as_ref()))
            .chain(named("test", self.test.as_ref()))
    }

    /// The label values and names: `dataset.json`'s, else those the masks hold.
    pub fn label_names(&self) -> BTreeMap<u32, String> {
        if !self.layout.label_names.is_empty() {
            return self.layout.label_names.clone();
        }
        let values =
            self.cases().flat_map(|(_, c)| c.labels.keys().copied()).collect::<std::collections::BTreeSet<_>>();
        values.into_iter().map(|v| (v, if v == 0 { "background".into() } else { format!("label {v}") })).collect()
    }

    /// The cases of one run: training and validation as `split` says (a validation
    /// folder, `data.validation_fraction`, or one fold of k), and the test cases (the
    /// test folder, or `data.test_fraction` held out first, the same for every run);
    /// a patient in two of them is an error unless `data.allow_leakage`.
    pub fn split(&self, split: &SplitSettings) -> Result<VolumeSplit<'_>, Error> {
        let settings = &self.settings;
        let all: Vec<&CaseFacts> = self.train.iter().collect();
        let (pool, test) = match &self.test {
            Some(test) => (all, test.iter().collect()),
            None => {
                let parts = parts_of(&all, 2, |part, n| held(part, n, settings.test_fraction), settings.split_seed);
                partition(&all, &parts, |part| part == 0)
            }
        };
        let (train, validation, how) = match (&self.validation, split.folds) {
            (Some(_), 1..) => {
                return Err(Error::FoldsWithValidationFolder {
                    folder: self.layout.validation.as_ref().map(|v| v.folder.clone()).unwrap_or_default(),
                    folds: split.folds,
                });
            }
            (Some(validation), 0) => (pool.clone(), validation.iter().collect(), "the validation folder".to_string()),
            (None, 0) => {
                let fraction = settings.validation_fraction;
                let parts = parts_of(&pool, 2, |part, n| held(part, n, fraction), settings.split_seed);
                let (train, validation) = partition(&pool, &parts, |part| part == 0);
                (train, validation, format!("{fraction} of the training cases held out"))
            }
            (None, k) => {
                let parts = parts_of(&pool, k as usize, |_, n| n as f64 / f64::from(k), settings.split_seed);
                let (train, validation) = partition(&pool, &parts, |part| part + 1 != split.fold as usize);
                (train, validation, format!("fold {} of {k}", split.fold))
            }
        };
        if train.is_empty() || validation.is_empty() {
            return Err(Error::SplitLeftEmpty {
                part: if train.is_empty() { "training" } else { "validation" },
                train: self.layout.train.folder.clone(),
                how,
                groups: count_groups(&pool),
            });
        }
        let split = VolumeSplit { train, validation, test, how };
        split.check_leakage(settings)?;
        Ok(split)
    }
}

/// The target of part `part` (1: held out) for a class of `n` cases.
fn held(part: usize, n: usize, fraction: f64) -> f64 {
    let out = held_out(fraction, n) as f64;
    if part == 1 { out } else { n as f64 - out }
}

/// The part of each case: grouped by patient, stratified by class.
fn parts_of(cases: &[&CaseFacts], parts: usize, target: impl Fn(usize, usize) -> f64, seed: u64) -> Vec<usize> {
    let labels: Vec<usize> = cases.iter().map(|c| c.class.unwrap_or(0)).collect();
    let mut index: HashMap<&str, usize> = HashMap::new();
    let groups: Vec<usize> = cases
        .iter()
        .map(|c| {
            let next = index.len();
            *index.entry(c.group.as_str()).or_insert(next)
        })
        .collect();
    grouped_stratified(&labels, &groups, parts, target, seed)
}

fn partition<'a>(
    cases: &[&'a CaseFacts],
    parts: &[usize],
    first: impl Fn(usize) -> bool,
) -> (Vec<&'a CaseFacts>, Vec<&'a CaseFacts>) {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for (case, &part) in cases.iter().zip(parts) {
        if first(part) { a.push(*case) } else { b.push(*case) }
    }
    (a, b)
}

pub(crate) fn count_groups(cases: &[&CaseFacts]) -> usize {
    cases.iter().map(|c| c.group.as_str()).collect::<std::collections::HashSet<_>>().len()
}

/// The cases of one run.
#[derive(Debug)]
pub struct VolumeSplit<'a> {
    pub train: Vec<&'a CaseFacts>,
    pub validation: Vec<&'a CaseFacts>,
    pub test: Vec<&'a CaseFacts>,
    /// How validation was chosen, in words.
    pub how: String,
}

impl VolumeSplit<'_> {
    /// A patient in two sets, or one volume (the same voxels on the same grid, whatever
    /// its file is called or how it is stored) in two sets, is an error unless
    /// `data.allow_leakage`, which makes it a warning.
    fn check_leakage(&self, settings: &DataSettings) -> Result<(), Error> {
        for message in self.leaks() {
            if !settings.allow_leakage {
                return Err(Error::Leakage(message));
            }
            tracing::warn!("{message}");
        }
        Ok(())
    }

    /// Each patient, and each volume, found in two of the sets, in words.
    pub fn leaks(&self) -> Vec<String> {
        let mut patients: HashMap<&str, &str> = HashMap::new();
        let mut volumes: HashMap<&[u8; 32], (&str, &CaseFacts)> = HashMap::new();
        let mut leaks = Vec::new();
        for (name, cases) in [("training", &self.train), ("validation", &self.validation), ("test", &self.test)] {
            for case in cases {
                let message =
                    match (patients.insert(case.group.as_str(), name), volumes.insert(&case.fingerprint, (name, case)))
                    {
                        (_, Some((other, twin))) if other != name => format!(
                            "case \"{}\" in the {name} set holds the same volume as case \"{}\" in the {other} set \
                             ({} and {}): a copy; remove one",
                            case.name,
                            twin.name,
                            path_text(&case.source),
                            path_text(&twin.source)
                        ),
                        (Some(other), _) if other != name => format!(
                            "patient \"{}\" has cases in the {other} and the {name} set (case \"{}\"); a patient's \
                             cases must stay on one side: move them, or check `data.group_by`",
                            case.group, case.name
                        ),
                        _ => continue,
                    };
                leaks.push(message);
            }
        }
        leaks
    }

    /// The preprocessing fitted on this run's training cases only: the target spacing
    /// (`"median"`: the median of each axis over them) and, for `data.normalize = "ct"`,
    /// each channel's CT statistics from their foreground samples. Validation and test
    /// cases never move them.
    pub fn fit(&self, settings: &DataSettings) -> Preprocessing {
        let median_spacing = std::array::from_fn(|axis| {
            let mut values: Vec<f64> = self.train.iter().map(|c| c.spacing[axis]).collect();
            percentile(&mut values, 50.0)
        });
        let spacing = match settings.spacing {
            TargetSpacing::Median => Some(median_spacing),
            TargetSpacing::AsStored => None,
            TargetSpacing::Mm(mm) => Some(mm),
        };
        let median_shape = std::array::from_fn(|axis| {
            let mut values: Vec<f64> = self
                .train
                .iter()
                .map(|c| spacing.map_or(c.shape, |s| shape_for(c.shape, c.spacing, s))[axis] as f64)
                .collect();
            percentile(&mut values, 50.0).round() as usize
        });
        // the samples are kept for `ct` only
        let ct_channels = match settings.normalize {
            Normalize::Ct => self.train.first().map_or(0, |c| c.channels),
            _ => 0,
        };
        let ct = (0..ct_channels)
            .filter_map(|channel| {
                let mut values: Vec<f64> =
                    self.train.iter().flat_map(|c| c.samples[channel].iter().map(|&v| f64::from(v))).collect();
                CtStatistics::of_values(&mut values)
            })
            .collect();
        let channels = self.train.first().map_or(1, |c| c.channels);
        Preprocessing { cases: self.train.len(), channels, spacing, median_spacing, median_shape, ct }
    }
}

/// What one run's training cases give its preprocessing (kept in the run's
/// preprocessing.json, so that a prediction on a new scan prepares it the same way).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Preprocessing {
    /// The training cases it was fitted on.
    pub cases: usize,
    /// Channels of a case as stored.
    pub channels: usize,
    /// The spacing volumes are resampled to (x, y, z), `None`: as stored.
    pub spacing: Option<[f64; 3]>,
    /// The training cases' median spacing (x, y, z).
    pub median_spacing: [f64; 3],
    /// The median training shape on that grid (x, y, z).
    pub median_shape: [usize; 3],
    /// Per channel (`data.normalize = "ct"`).
    pub ct: Vec<CtStatistics>,
}

impl Preprocessing {
    /// The spacing of the working grid `[z, y, x]`: the one volumes are resampled to, or
    /// (kept as stored) the training cases' median, which the U-Net's pooling follows.
    pub fn working_spacing_zyx(&self) -> [f64; 3] {
        let [x, y, z] = self.spacing.unwrap_or(self.median_spacing);
        [z, y, x]
    }

    /// The median training shape on the working grid, `[z, y, x]`.
    pub fn median_shape_zyx(&self) -> [usize; 3] {
        let [x, y, z] = self.median_shape;
        [z, y, x]
    }
}

impl fmt::Display for Preprocessing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.spacing {
            Some(s) => write!(f, "spacing {} mm", zyx(s.map(|v| format!("{v:.3}"))))?,
            None => write!(f, "spacing as stored")?,
        }
        write!(
            f,
            ", median shape {} (from its {} training cases)",
            zyx(self.median_shape.map(|v| v.to_string())),
            self.cases
        )?;
        for (channel, ct) in self.ct.iter().enumerate() {
            write!(
                f,
                "; CT channel {channel}: clip [{:.1}, {:.1}], mean {:.2}, SD {:.2}",
                ct.lower, ct.upper, ct.mean, ct.sd
            )?;
        }
        Ok(())
    }
}

/// Three per-axis values (x, y, z) written `[z, y, x]`, as recipes write them.
fn zyx(values: [String; 3]) -> String {
    let [x, y, z] = values;
    format!("[{z}, {y}, {x}]")
}

/// Reads one case: its channels, its mask, its patient.
fn read_case(case: &VolumeCase, layout: &VolumeLayout) -> Result<CaseFacts, Error> {
    let settings = &layout.settings;
    let (image, tags, nan_zeroed) = read_channels(case, settings)?;
    let SeriesTags { patient_id: patient, modality } = tags;
    let stored_axes = image.axis_codes();
    let oblique = image.is_oblique();
    // the working grid's shape and spacing, without moving a voxel: a volume without
    // voxels reoriented
    let probe = Volume { voxels: Vec::new(), shape: image.shape, channels: 0, affine: image.affine };
    let working = probe.reoriented(settings.orientation);
    let (mask, mask_resampled) = match &case.mask {
        Some(path) => {
            let (mask, resampled) = read_mask(case, path, &image, settings)?;
            (Some(mask), resampled)
        }
        None => (None, false),
    };
    let labels = match &mask {
        Some(mask) => label_counts(case, mask, layout)?,
        None => BTreeMap::new(),
    };
    let samples =
        if settings.normalize == Normalize::Ct { foreground_samples(&image, mask.as_ref()) } else { Vec::new() };
    Ok(CaseFacts {
        name: case.name.clone(),
        source: case.channels[0].clone(),
        group: group_of(case, patient.clone(), &settings.group_by)?,
        patient_id: patient,
        modality,
        class: case.class,
        shape: working.shape,
        spacing: working.spacing(),
        channels: image.channels,
        stored_axes,
        oblique,
        labels,
        samples,
        nan_zeroed,
        mask_resampled,
        fingerprint: fingerprint(&image),
    })
}

/// The SHA-256 of a volume's voxels, shape and affine.
fn fingerprint(volume: &Volume) -> [u8; 32] {
    let mut hash = Sha256::new();
    for n in volume.shape {
        hash.update((n as u64).to_le_bytes());
    }
    for v in volume.affine.iter().flatten() {
        hash.update(v.to_le_bytes());
    }
    hash.update(bytemuck::cast_slice::<f32, u8>(&volume.voxels));
    hash.finalize().into()
}

/// One NIfTI file or DICOM series folder: the volume, its DICOM tags, its NaN voxels.
fn read_volume(path: &Path, settings: &DataSettings) -> Result<(Volume, SeriesTags, usize), Error> {
    let series = if path.is_dir() {
        Some(series_files(path)?)
    } else {
        (FileKind::of(path) == Some(FileKind::Dicom)).then(|| vec![path.to_path_buf()])
    };
    if let Some(files) = series {
        let series = read_series(&files, settings.max_voxels)?;
        return Ok((series.volume, series.tags, 0));
    }
    let options = NiftiOptions {
        max_voxels: settings.max_voxels,
        channels_from_last_axis: settings.channels_from == ChannelsFrom::LastAxis,
        nan_to_zero: settings.nan == NanPolicy::Zero,
    };
    let read = nifti::read(path, &options)?;
    Ok((read.volume, SeriesTags::default(), read.nan_voxels))
}

/// A case's channels, each on the first's grid, as one volume.
fn read_channels(case: &VolumeCase, settings: &DataSettings) -> Result<(Volume, SeriesTags, usize), Error> {
    let (mut image, tags, mut nan) = read_volume(&case.channels[0], settings)?;
    for path in &case.channels[1..] {
        let (channel, _, more) = read_volume(path, settings)?;
        let fix = "Resample the channel file onto the first one's grid (or fix its header)";
        check_grid(case, (&case.channels[0], &image), (path, &channel), fix)?;
        image.voxels.extend(channel.voxels);
        image.channels += channel.channels;
        nan += more;
    }
    if image.voxels.len() as u64 > settings.max_voxels {
        let why = format!(
            "case \"{}\" holds {} voxels in its {} channels, above data.max_voxels = {}; raise it if the case is real",
            case.name,
            image.voxels.len(),
            image.channels,
            settings.max_voxels
        );
        return Err(Error::CaseLayout { file: case.channels[0].clone(), why });
    }
    Ok((image, tags, nan))
}

/// One scan (a NIfTI file or a DICOM series folder) read as a dataset's case would be
/// under `settings`: for a prediction on a new scan.
pub fn read_scan(name: &str, path: &Path, settings: &DataSettings) -> Result<Volume, Error> {
    let case =
        VolumeCase { name: name.into(), channels: vec![path.to_path_buf()], mask: None, class: None, patient: None };
    Ok(read_channels(&case, settings)?.0)
}

/// Whether two volumes share one grid.
pub fn same_grid(a: &Volume, b: &Volume) -> bool {
    a.shape == b.shape
        && a.affine.iter().flatten().zip(b.affine.iter().flatten()).all(|(x, y)| (x - y).abs() <= GRID_TOLERANCE_MM)
}

fn check_grid(
    case: &VolumeCase,
    (first, a): (&Path, &Volume),
    (other, b): (&Path, &Volume),
    fix: &'static str,
) -> Result<(), Error> {
    if same_grid(a, b) {
        return Ok(());
    }
    Err(Error::GridMismatch {
        case: case.name.clone(),
        image: first.to_path_buf(),
        other: other.to_path_buf(),
        why: format!(
            "{} against {}; a case's channels and mask must share one shape and affine (within 1e-4 mm). {fix}",
            geometry(a),
            geometry(b)
        ),
    })
}

/// A grid in words: shape, spacing, origin, axes.
fn geometry(v: &Volume) -> String {
    let round = |values: [f64; 3]| values.map(|x| format!("{x:.4}")).join(", ");
    format!(
        "shape [{}], spacing [{}] mm, origin [{}] mm, axes {}",
        v.shape.map(|n| n.to_string()).join(", "),
        round(v.spacing()),
        round(v.origin()),
        v.axis_codes()
    )
}

/// A case's mask, on its image's grid (resampled there when `data.mask_geometry` says).
fn read_mask(case: &VolumeCase, path: &Path, image: &Volume, settings: &DataSettings) -> Result<(Volume, bool), Error> {
    let (mask, _, _) = read_volume(path, settings)?;
    if mask.channels != 1 {
        let why = format!("holds {} volumes; a mask (case \"{}\") holds one", mask.channels, case.name);
        return Err(Error::CaseLayout { file: path.to_path_buf(), why });
    }
    if same_grid(image, &mask) {
        return Ok((mask, false));
    }
    if settings.mask_geometry == MaskGeometry::Resample
        && let Some(moved) = labels_onto(&mask, &image.affine, image.shape)
    {
        return Ok((moved, true));
    }
    let fix = match settings.mask_geometry {
        MaskGeometry::Error => "Fix the mask, or set `data.mask_geometry = \"resample\"` to resample it onto its image",
        MaskGeometry::Resample => "The mask's affine cannot be inverted, so it cannot be resampled: fix its header",
    };
    check_grid(case, (&case.channels[0], image), (path, &mask), fix).map(|()| (mask, false))
}

/// Voxels per label value; a value that is not a whole label, or (Decathlon) not
/// declared, is an error naming the case.
fn label_counts(case: &VolumeCase, mask: &Volume, layout: &VolumeLayout) -> Result<BTreeMap<u32, u64>, Error> {
    let path = case.mask.clone().unwrap_or_default();
    let mut counts = BTreeMap::new();
    for &v in &mask.voxels {
        if !(v >= 0.0 && v.fract() == 0.0 && v < 65536.0) {
            return Err(Error::MaskValue { case: case.name.clone(), mask: path, value: v });
        }
        *counts.entry(v as u32).or_insert(0u64) += 1;
    }
    let declared = &layout.label_names;
    let undeclared: Vec<String> =
        counts.keys().filter(|v| !declared.is_empty() && !declared.contains_key(v)).map(u32::to_string).collect();
    if !undeclared.is_empty() {
        let declared: Vec<String> = declared.iter().map(|(v, n)| format!("{v} {n}")).collect();
        let why = format!(
            "{} that {} does not declare (it declares {})",
            undeclared.join(", "),
            path_text(&layout.settings.root.join("dataset.json")),
            declared.join(", ")
        );
        return Err(Error::UndeclaredLabel { case: case.name.clone(), mask: path, why });
    }
    Ok(counts)
}

/// Per channel, up to [`CT_SAMPLES_PER_CASE`] intensities at an even stride through the
/// foreground (the mask above 0; every voxel without a mask).
fn foreground_samples(image: &Volume, mask: Option<&Volume>) -> Vec<Vec<f32>> {
    let per_channel = image.shape.iter().product::<usize>();
    let channels = image.voxels.chunks_exact(per_channel.max(1));
    let Some(mask) = mask else {
        let stride = per_channel.div_ceil(CT_SAMPLES_PER_CASE).max(1);
        return channels.map(|channel| channel.iter().step_by(stride).copied().collect()).collect();
    };
    let inside: Vec<usize> = mask.voxels.iter().enumerate().filter(|(_, l)| **l > 0.0).map(|(i, _)| i).collect();
    let stride = inside.len().div_ceil(CT_SAMPLES_PER_CASE).max(1);
    channels.map(|channel| inside.iter().step_by(stride).map(|&i| channel[i]).collect()).collect()
}

/// The case's patient under `data.group_by`.
fn group_of(case: &VolumeCase, patient_id: Option<String>, group_by: &GroupBy) -> Result<String, Error> {
    let named = case.patient.clone().or(patient_id.clone());
    // a case on its own: its file, unique where its name (per split and class) is not
    let own = || path_text(&case.channels[0]);
    match group_by {
        GroupBy::None => Ok(own()),
        GroupBy::Auto => Ok(named.unwrap_or_else(own)),
        GroupBy::PatientId => patient_id.ok_or_else(|| Error::NoGroup {
            file: case.channels[0].clone(),
            reason: "it has no DICOM PatientID (a NIfTI file carries none)".into(),
            others: 0,
        }),
        GroupBy::Pattern(pattern) => {
            let regex = group_pattern(pattern).map_err(Error::GroupBy)?;
            let captures = regex.captures(&case.name).ok_or_else(|| Error::NoGroup {
                file: case.channels[0].clone(),
                reason: format!("its case name \"{}\" does not match {pattern:?}", case.name),
                others: 0,
            })?;
            let group = captures.name("group").or_else(|| captures.get(1)).or_else(|| captures.get(0));
            group.map(|m| m.as_str().to_string()).filter(|g| !g.is_empty()).ok_or_else(|| Error::NoGroup {
                file: case.channels[0].clone(),
                reason: format!("{pattern:?} captures nothing in its case name \"{}\"", case.name),
                others: 0,
            })
        }
        // refused by the settings check for volumes
        GroupBy::Study | GroupBy::Folder | GroupBy::Csv(_) => Err(Error::GroupBy(format!(
            "{} is not read for volumes; use \"auto\", \"none\", \"patient_id\" or a pattern",
            group_by.describe()
        ))),
    }
}

/// The per-case table (`radrun plan --cases`): split, case, patient, shape, spacing and
/// voxels, in the working orientation.
pub fn case_table(images: &VolumeImages) -> String {
    let mut out = String::from(
        "  split       case                          shape [z, y, x]    spacing [z, y, x] mm       voxels\n",
    );
    for (split, case) in images.cases() {
        out.push_str(&format!(
            "  {split:<11} {:<29} {:<18} {:<26} {}\n",
            case.name,
            zyx(case.shape.map(|n| n.to_string())),
            zyx(case.spacing.map(|v| format!("{v:.3}"))),
            case.voxels()
        ));
    }
    out
}
