//! What decoding takes and gives, shared by every decoder: the options, the gray image
//! and mask, what a file said (its kind, size, DICOM facts), the error naming the file,
//! and the arithmetic all decoders share (luma, the window, the pixel limit).

use std::fs::File;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::settings::{DEFAULT_MAX_PIXELS, Windows};

/// A gray image, row-major, intensities in [0, 1]: one plane, or one plane per window
/// (`data.window = [...]`), planes one after the other.
#[derive(Debug, Clone, PartialEq)]
pub struct GrayImage {
    pub height: usize,
    pub width: usize,
    pub planes: usize,
    pub pixels: Vec<f32>,
}

impl GrayImage {
    pub fn new(height: usize, width: usize, pixels: Vec<f32>) -> Self {
        Self::stacked(height, width, 1, pixels)
    }

    /// `planes` planes of `height` x `width`, one after the other in `pixels`.
    pub fn stacked(height: usize, width: usize, planes: usize, pixels: Vec<f32>) -> Self {
        assert_eq!(pixels.len(), planes * height * width, "pixel count must be planes x height x width");
        Self { height, width, planes, pixels }
    }
}

/// The kinds of image file radrun reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    Png,
    Jpeg,
    Dicom,
}

impl FileKind {
    /// The kind of `path` from its extension; a file without a known extension is DICOM
    /// when it carries the `DICM` marker (DICOM files often have no extension at all).
    pub fn of(path: &Path) -> Option<FileKind> {
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("png") => Some(FileKind::Png),
            Some("jpg" | "jpeg") => Some(FileKind::Jpeg),
            Some("dcm" | "dicom" | "dic") => Some(FileKind::Dicom),
            _ => has_dicom_marker(path).then_some(FileKind::Dicom),
        }
    }
}

fn has_dicom_marker(path: &Path) -> bool {
    let mut head = [0u8; 132];
    File::open(path).and_then(|mut f| f.read_exact(&mut head)).is_ok() && &head[128..] == b"DICM"
}

/// What was learnt about a file while decoding it, for the data summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageInfo {
    pub kind: FileKind,
    /// Size as stored, before resizing.
    pub height: usize,
    pub width: usize,
    /// Bits per sample as stored (8 or 16 for PNG, 8 for JPEG, BitsStored for DICOM).
    pub bits: u16,
    pub dicom: Option<DicomInfo>,
    /// What the decoder accepted but the data summary tells (each kind once per file).
    #[serde(default)]
    pub notes: Vec<DecodeNote>,
}

/// Something a decoder accepted, and read as other readers do, that a user should still
/// hear of: counted per kind in the data summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum DecodeNote {
    /// A DICOM frame's rescale, window, pixel spacing or position came from the
    /// functional groups of an Enhanced multi-frame image (PS3.3 C.7.6.16).
    FunctionalGroups,
    /// Bytes after a JPEG's end-of-image marker (padding written by older equipment)
    /// were ignored, as libjpeg, pylibjpeg and Pillow ignore them.
    BytesAfterEndOfImage,
}

impl std::fmt::Display for DecodeNote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DecodeNote::FunctionalGroups => "values from Enhanced functional groups",
            DecodeNote::BytesAfterEndOfImage => "bytes after JPEG end-of-image ignored",
        })
    }
}

/// DICOM header facts worth reporting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DicomInfo {
    pub modality: Option<String>,
    /// Transfer syntax name, e.g. "RLE Lossless".
    pub transfer_syntax: String,
    pub photometric: String,
    pub frames: u32,
    pub patient_id: Option<String>,
    pub study_uid: Option<String>,
    /// Row and column spacing in millimetres (PixelSpacing, else ImagerPixelSpacing).
    pub pixel_spacing_mm: Option<[f64; 2]>,
    /// The window actually applied (center, width); the first one when several.
    pub window: (f64, f64),
    pub bits_allocated: u32,
    pub samples_per_pixel: usize,
    /// (RescaleSlope, RescaleIntercept) applied to gray images; `None` for colour images
    /// and when a Modality LUT Sequence maps the values instead.
    pub rescale: Option<[f64; 2]>,
    /// For ordering the slices of a series: SeriesInstanceUID, ImagePositionPatient,
    /// ImageOrientationPatient (row and column directions), InstanceNumber, SliceThickness.
    pub series_uid: Option<String>,
    pub position_mm: Option<[f64; 3]>,
    pub orientation: Option<[f64; 6]>,
    pub instance_number: Option<i64>,
    pub slice_thickness_mm: Option<f64>,
}

/// How to turn stored values into intensities.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeOptions {
    /// One gray plane per window (DICOM; other images have one plane).
    pub windows: Windows,
    /// Frame of a multi-frame DICOM file.
    pub frame: u32,
    /// Images with more pixels (per frame) are refused before decoding.
    pub max_pixels: u64,
    /// Colour DICOM images (RGB, YBR, palette) as red, green and blue planes instead of
    /// luma: `data.channels = 3` with one window.
    pub colour: bool,
    /// Gray DICOM values as stored, without the modality LUT or MONOCHROME1 inversion
    /// (masks, whose stored values are labels).
    pub stored: bool,
    /// Gray DICOM values through the modality LUT only, no window and no MONOCHROME1
    /// inversion: the values of a volume's slices (Hounsfield units for CT), one plane.
    pub modality_values: bool,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            windows: Windows::default(),
            frame: 0,
            max_pixels: DEFAULT_MAX_PIXELS,
            colour: false,
            stored: false,
            modality_values: false,
        }
    }
}

/// Why a file could not be decoded; always carries the file's path.
#[derive(Debug, thiserror::Error)]
#[error("cannot read image {}: {reason}", crate::paths::path_text(path))]
pub struct DecodeError {
    pub path: std::path::PathBuf,
    pub reason: String,
}

impl DecodeError {
    pub(crate) fn new(path: &Path, reason: impl ToString) -> Self {
        Self { path: path.to_path_buf(), reason: reason.to_string() }
    }

    /// An error whose reason is `error` and every cause below it.
    pub(crate) fn with_cause(path: &Path, error: &dyn std::error::Error) -> Self {
        Self::new(path, cause_chain(error))
    }
}

/// An error and its causes, joined by ": " ("could not decode pixel data: JPEG sample
/// precision 12 is not supported"), skipping a cause its parent already spells out.
pub(crate) fn cause_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let part = c.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = c.source();
    }
    text
}

/// ITU-R BT.601 luma, as Pillow's `convert("L")` (what the tutorial's Keras loader used).
pub(crate) fn luma(r: f64, g: f64, b: f64) -> f64 {
    0.299 * r + 0.587 * g + 0.114 * b
}

/// Refuses an image above `data.max_pixels`, before it is decoded.
pub(crate) fn within_pixel_limit(height: u64, width: u64, max_pixels: u64) -> Result<(), String> {
    let pixels = height * width;
    if pixels > max_pixels {
        return Err(format!(
            "the image is {height} x {width} = {pixels} pixels, above data.max_pixels = {max_pixels}; raise it if \
             this is intended"
        ));
    }
    Ok(())
}

/// Clips to [center - width/2, center + width/2] and scales to [0, 1] (the tutorial's
/// formula).
pub fn apply_window(values: &[f64], center: f64, width: f64) -> Vec<f32> {
    let lower = center - width / 2.0;
    let scale = 1.0 / width;
    values.iter().map(|&v| ((v - lower) * scale).clamp(0.0, 1.0) as f32).collect()
}

/// A segmentation mask: one label index per pixel.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelMask {
    pub height: usize,
    pub width: usize,
    pub labels: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_clips_and_scales_like_the_tutorial() {
        // center 40, width 400 -> [-160, 240]
        let out = apply_window(&[-1000.0, -160.0, 40.0, 240.0, 3000.0], 40.0, 400.0);
        assert_eq!(out, vec![0.0, 0.0, 0.5, 1.0, 1.0]);
    }

    #[test]
    fn bt601_luma() {
        assert!((luma(1.0, 0.0, 0.0) - 0.299).abs() < 1e-12);
        assert!((luma(1.0, 1.0, 1.0) - 1.0).abs() < 1e-12);
    }
}
