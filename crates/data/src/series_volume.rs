//! DICOM series as volumes: the slices of one series (files, or the frames of an
//! Enhanced multi-frame file with their per-frame positions) stacked in the order of
//! their position along the normal of their plane, with the geometry SimpleITK's
//! `ImageSeriesReader` gives them.
//!
//! - **Values**: the modality values (the stored values through RescaleSlope and
//!   RescaleIntercept or the Modality LUT: Hounsfield units for CT), no window, no
//!   MONOCHROME1 inversion.
//! - **Geometry**: in-plane spacing from PixelSpacing (its second value along a row, the
//!   first down a column), directions from ImageOrientationPatient, the origin at the
//!   first slice's ImagePositionPatient, and the slice spacing from the distance between
//!   the slices' positions (SliceThickness says how thick a slice is, not how far apart
//!   slices are). DICOM's patient axes are LPS; the volume's affine is RAS+ as NIfTI's
//!   (x and y negated).
//! - **Refused, naming the series**: one slice; two slices at one position; slices of
//!   different sizes, pixel spacings or orientations; positions that do not lie along the
//!   normal (a gantry tilt); and spacing between neighbours that differs from the mean by
//!   more than 1% (at least 0.001 mm), said as a gap (slices missing) where a step is a
//!   multiple of the others.

use std::path::{Path, PathBuf};

use crate::decode::{DecodeOptions, FileKind, decode_all_frames};
use crate::decoded::DecodeError;
use crate::volume::{Affine, Volume};

/// A series read as a volume, and the file (and frame) of each slice in volume order.
#[derive(Debug, Clone)]
pub struct SeriesVolume {
    pub volume: Volume,
    pub slices: Vec<(PathBuf, u32)>,
    /// What its first slice says of the patient and the acquisition.
    pub tags: SeriesTags,
}

/// A series' first slice's PatientID (for grouping cases by patient) and Modality (for
/// the data summary), each when it has a non-blank one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeriesTags {
    pub patient_id: Option<String>,
    pub modality: Option<String>,
}

/// Why a series cannot be a volume: the series (its first file's folder) and the reason.
#[derive(Debug, thiserror::Error)]
pub enum SeriesError {
    #[error(transparent)]
    File(#[from] DecodeError),
    #[error("the DICOM series in {} cannot be read as a volume: {reason}", crate::paths::path_text(folder))]
    Geometry { folder: PathBuf, reason: String },
}

/// One decoded slice: its modality values and geometry.
struct Slice {
    file: PathBuf,
    frame: u32,
    /// The frames of its file.
    frames: u32,
    rows: usize,
    columns: usize,
    values: Vec<f32>,
    position: [f64; 3],
    orientation: [f64; 6],
    spacing: [f64; 2],
    tags: SeriesTags,
}

/// The DICOM files under `folder` (by their name or their DICM preamble), recursively,
/// sorted: a folder holding one series.
pub fn dicom_files_under(folder: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(folder)? {
        let path = entry?.path();
        if path.is_dir() {
            files.extend(dicom_files_under(&path)?);
        } else if FileKind::of(&path) == Some(FileKind::Dicom) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Reads the files of one series (each file's frames, for multi-frame files) as a
/// volume. `max_voxels` bounds the whole volume.
pub fn read_series(files: &[PathBuf], max_voxels: u64) -> Result<SeriesVolume, SeriesError> {
    let folder = files.first().and_then(|f| f.parent()).map(Path::to_path_buf).unwrap_or_default();
    let fail = |reason: String| SeriesError::Geometry { folder: folder.clone(), reason };
    let mut slices = Vec::new();
    for file in files {
        read_slices(file, &mut slices, max_voxels)?;
        let voxels: u64 = slices.iter().map(|s| (s.rows * s.columns) as u64).sum();
        if voxels > max_voxels {
            return Err(fail(format!(
                "it holds more than data.max_voxels = {max_voxels} voxels; raise it if the series is real"
            )));
        }
    }
    if slices.len() < 2 {
        return Err(fail(format!(
            "it has {} slice(s); a volume needs two or more (a single image is read in 2D)",
            slices.len()
        )));
    }
    check_alike(&slices).map_err(fail)?;
    let normal = normal(&slices[0].orientation);
    let along = |s: &Slice| dot(&s.position, &normal);
    slices.sort_by(|a, b| along(a).total_cmp(&along(b)));
    let spacing = slice_spacing(&slices, &normal).map_err(fail)?;
    Ok(stack(slices, normal, spacing))
}

/// Decodes every frame of `file` to its modality values.
fn read_slices(file: &Path, slices: &mut Vec<Slice>, max_voxels: u64) -> Result<(), DecodeError> {
    let options = DecodeOptions { modality_values: true, max_pixels: max_voxels, ..DecodeOptions::default() };
    // the file parsed once for all its frames
    for (frame, (image, info)) in decode_all_frames(file, &options)?.into_iter().enumerate() {
        let frame = frame as u32;
        let Some(dicom) = info.dicom else {
            return Err(DecodeError::new(file, "it is not a DICOM file; a series is made of DICOM slices"));
        };
        let missing = |what: &str| {
            DecodeError::new(file, format!("it has no {what}, which a slice of a volume needs (frame {frame})"))
        };
        if dicom.samples_per_pixel != 1 {
            return Err(DecodeError::new(file, "it is a colour image; a volume's slices are grey"));
        }
        slices.push(Slice {
            file: file.to_path_buf(),
            frame,
            frames: dicom.frames,
            rows: image.height,
            columns: image.width,
            values: image.pixels,
            position: dicom.position_mm.ok_or_else(|| missing("ImagePositionPatient"))?,
            orientation: dicom.orientation.ok_or_else(|| missing("ImageOrientationPatient"))?,
            spacing: dicom.pixel_spacing_mm.ok_or_else(|| missing("PixelSpacing"))?,
            tags: SeriesTags {
                patient_id: dicom.patient_id.filter(|id| !id.trim().is_empty()),
                modality: dicom.modality.filter(|m| !m.trim().is_empty()),
            },
        });
    }
    Ok(())
}

/// Every slice the size, spacing and orientation of the first.
fn check_alike(slices: &[Slice]) -> Result<(), String> {
    let first = &slices[0];
    let name = Slice::name;
    for s in &slices[1..] {
        if (s.rows, s.columns) != (first.rows, first.columns) {
            return Err(format!(
                "{} is {} x {} pixels, {} is {} x {}",
                name(s),
                s.rows,
                s.columns,
                name(first),
                first.rows,
                first.columns
            ));
        }
        if s.spacing.iter().zip(&first.spacing).any(|(a, b)| (a - b).abs() > 1e-4) {
            return Err(format!("{} has PixelSpacing {:?}, {} {:?}", name(s), s.spacing, name(first), first.spacing));
        }
        if s.orientation.iter().zip(&first.orientation).any(|(a, b)| (a - b).abs() > 1e-4) {
            return Err(format!(
                "its slices lie in different planes: {} has ImageOrientationPatient {:?}, {} {:?}; split the series",
                name(s),
                s.orientation,
                name(first),
                first.orientation
            ));
        }
    }
    Ok(())
}

impl Slice {
    /// The slice in words: its file, and its frame in a multi-frame file.
    fn name(&self) -> String {
        let file = crate::paths::path_text(&self.file);
        if self.frames > 1 { format!("{file} (frame {})", self.frame) } else { file }
    }
}

/// The distance between neighbouring slices, checked to be one distance.
fn slice_spacing(slices: &[Slice], normal: &[f64; 3]) -> Result<f64, String> {
    let along: Vec<f64> = slices.iter().map(|s| dot(&s.position, normal)).collect();
    let steps: Vec<f64> = along.windows(2).map(|w| w[1] - w[0]).collect();
    if let Some(at) = steps.iter().position(|&d| d < 1e-4) {
        let (a, b) = (&slices[at], &slices[at + 1]);
        let fix = if a.file == b.file {
            "the file gives its frames no positions of their own (a PerFrameFunctionalGroupsSequence or a \
             GridFrameOffsetVector); it cannot be placed as a volume"
        } else {
            "remove the duplicate"
        };
        return Err(format!(
            "two slices lie at one position, {:.3} mm along the normal ({} and {}); {fix}",
            along[at],
            a.name(),
            b.name()
        ));
    }
    let first = &slices[0].position;
    for s in slices {
        let offset: [f64; 3] = std::array::from_fn(|i| s.position[i] - first[i]);
        let distance = dot(&offset, normal);
        let off_axis = (0..3).map(|i| offset[i] - distance * normal[i]).map(|d| d * d).sum::<f64>().sqrt();
        if off_axis > 1e-3_f64.max(0.01 * distance.abs()) {
            return Err(format!(
                "its slice positions do not lie along the normal of their plane ({off_axis:.3} mm off at {}): a \
                 tilted gantry; resample it first",
                crate::paths::path_text(&s.file)
            ));
        }
    }
    let mean = (along[along.len() - 1] - along[0]) / (along.len() - 1) as f64;
    let smallest = steps.iter().copied().fold(f64::INFINITY, f64::min);
    let tolerance = 1e-3_f64.max(0.01 * smallest);
    if let Some(at) = steps.iter().position(|d| (d - smallest).abs() > tolerance) {
        let multiple = steps[at] / smallest;
        let what = if (multiple - multiple.round()).abs() * smallest <= tolerance {
            format!("a gap: about {} slice(s) are missing", multiple.round() as i64 - 1)
        } else {
            "uneven spacing".to_string()
        };
        return Err(format!(
            "{what} between {:.3} and {:.3} mm along the normal ({:.3} mm apart where the others are {smallest:.3}); \
             a volume needs evenly spaced slices",
            along[at],
            along[at + 1],
            steps[at]
        ));
    }
    Ok(mean)
}

/// The volume of sorted slices: columns along i, rows along j, slices along k.
fn stack(slices: Vec<Slice>, normal: [f64; 3], spacing: f64) -> SeriesVolume {
    let first = &slices[0];
    let (row, column) = (&first.orientation[..3], &first.orientation[3..]);
    // LPS direction columns scaled by spacing: i along the row direction (PixelSpacing[1]),
    // j along the column direction (PixelSpacing[0]), k along the normal
    let axes = [
        [row[0] * first.spacing[1], row[1] * first.spacing[1], row[2] * first.spacing[1]],
        [column[0] * first.spacing[0], column[1] * first.spacing[0], column[2] * first.spacing[0]],
        [normal[0] * spacing, normal[1] * spacing, normal[2] * spacing],
    ];
    let origin = first.position;
    // LPS to RAS: x and y change sign
    let sign = [-1.0, -1.0, 1.0];
    let affine: Affine = [
        [sign[0] * axes[0][0], sign[0] * axes[1][0], sign[0] * axes[2][0], sign[0] * origin[0]],
        [sign[1] * axes[0][1], sign[1] * axes[1][1], sign[1] * axes[2][1], sign[1] * origin[1]],
        [sign[2] * axes[0][2], sign[2] * axes[1][2], sign[2] * axes[2][2], sign[2] * origin[2]],
        [0.0, 0.0, 0.0, 1.0],
    ]
    // -0 (a zero negated) as 0
    .map(|row| row.map(|v| v + 0.0));
    let shape = [first.columns, first.rows, slices.len()];
    let order: Vec<(PathBuf, u32)> = slices.iter().map(|s| (s.file.clone(), s.frame)).collect();
    let tags = first.tags.clone();
    let voxels = slices.into_iter().flat_map(|s| s.values).collect();
    SeriesVolume { volume: Volume { voxels, shape, channels: 1, affine }, slices: order, tags }
}

/// The unit normal of a plane given by ImageOrientationPatient (row x column).
fn normal(o: &[f64; 6]) -> [f64; 3] {
    let n = [o[1] * o[5] - o[2] * o[4], o[2] * o[3] - o[0] * o[5], o[0] * o[4] - o[1] * o[3]];
    let length = dot(&n, &n).sqrt();
    if length > 0.0 { n.map(|v| v / length) } else { n }
}

fn dot(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}
