//! One file on disk to one gray image with intensities in [0, 1]: PNG and JPEG through
//! the `image` crate, DICOM through dicom-object/dicom-pixeldata (rescale, window,
//! MONOCHROME1 inversion), and masks as label indices.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use serde::Serialize;

use crate::settings::Window;

/// A single-channel image, row-major, intensities in [0, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct GrayImage {
    pub height: usize,
    pub width: usize,
    pub pixels: Vec<f32>,
}

impl GrayImage {
    pub fn new(height: usize, width: usize, pixels: Vec<f32>) -> Self {
        assert_eq!(pixels.len(), height * width, "pixel count must be height x width");
        Self { height, width, pixels }
    }
}

/// The kinds of image file radrun reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageInfo {
    pub kind: FileKind,
    /// Size as stored, before resizing.
    pub height: usize,
    pub width: usize,
    /// Bits per sample as stored (8 or 16 for PNG, 8 for JPEG, BitsStored for DICOM).
    pub bits: u16,
    pub dicom: Option<DicomInfo>,
}

/// DICOM header facts worth reporting.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    /// The window actually applied (center, width).
    pub window: (f64, f64),
}

/// How to turn stored values into intensities.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodeOptions {
    pub window: Window,
    /// Frame of a multi-frame DICOM file.
    pub frame: u32,
    /// Images with more pixels (per frame) are refused before decoding.
    pub max_pixels: u64,
}

/// `data.max_pixels` by default: 100 megapixels, above any radiograph (a 43 x 43 cm
/// detector at 0.1 mm is 18.5 megapixels).
pub const DEFAULT_MAX_PIXELS: u64 = 100_000_000;

impl Default for DecodeOptions {
    fn default() -> Self {
        Self { window: Window::Auto, frame: 0, max_pixels: DEFAULT_MAX_PIXELS }
    }
}

/// Why a file could not be decoded; always carries the file's path.
#[derive(Debug, thiserror::Error)]
#[error("cannot read image {}: {reason}", path.display())]
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

/// Decodes one image file.
pub fn decode(path: &Path, options: &DecodeOptions) -> Result<(GrayImage, ImageInfo), DecodeError> {
    match FileKind::of(path) {
        Some(FileKind::Dicom) => crate::dicom::decode_dicom(path, options),
        Some(kind) => decode_raster(path, kind, options.max_pixels),
        None => Err(DecodeError::new(path, "not a PNG, JPEG or DICOM file")),
    }
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

/// Opens a PNG or JPEG, refusing one above `max_pixels` from its header alone, before
/// anything is allocated for its pixels.
fn open_raster(path: &Path, max_pixels: u64) -> Result<image::DynamicImage, DecodeError> {
    let reader = || -> Result<_, DecodeError> {
        image::ImageReader::open(path)
            .map_err(|e| DecodeError::new(path, e))?
            .with_guessed_format()
            .map_err(|e| DecodeError::new(path, e))
    };
    let (width, height) = reader()?.into_dimensions().map_err(|e| DecodeError::with_cause(path, &e))?;
    within_pixel_limit(u64::from(height), u64::from(width), max_pixels).map_err(|e| DecodeError::new(path, e))?;
    reader()?.decode().map_err(|e| DecodeError::with_cause(path, &e))
}

fn decode_raster(path: &Path, kind: FileKind, max_pixels: u64) -> Result<(GrayImage, ImageInfo), DecodeError> {
    let img = open_raster(path, max_pixels)?;
    let color = img.color();
    let (width, height) = (img.width() as usize, img.height() as usize);
    // to_luma32f / to_rgb32f scale 8-bit samples by 1/255 and 16-bit ones by 1/65535.
    let pixels = if color.has_color() {
        img.to_rgb32f().pixels().map(|p| luma(p[0].into(), p[1].into(), p[2].into()) as f32).collect()
    } else {
        img.to_luma32f().into_raw()
    };
    let info =
        ImageInfo { kind, height, width, bits: color.bits_per_pixel() / u16::from(color.channel_count()), dicom: None };
    Ok((GrayImage::new(height, width, pixels), info))
}

/// Clips to [center - width/2, center + width/2] and scales to [0, 1] (the tutorial's
/// formula).
pub fn apply_window(values: &[f64], center: f64, width: f64) -> Vec<f32> {
    let lower = center - width / 2.0;
    let scale = 1.0 / width;
    values.iter().map(|&v| ((v - lower) * scale).clamp(0.0, 1.0) as f32).collect()
}

/// A readable name for a transfer syntax UID.
pub fn dicom_transfer_syntax_name(uid: &str) -> String {
    use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
    dicom_transfer_syntax_registry::TransferSyntaxRegistry
        .get(uid)
        .map(|ts| ts.name().to_string())
        .unwrap_or_else(|| format!("unknown ({uid})"))
}

/// A segmentation mask: one label index per pixel.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelMask {
    pub height: usize,
    pub width: usize,
    pub labels: Vec<u8>,
}

/// Reads a mask PNG: gray values are label indices 0..K; a mask holding only 0 and 255 is
/// binary and 255 becomes label 1. Color masks are refused (say which file).
pub fn decode_mask(path: &Path) -> Result<LabelMask, DecodeError> {
    let img = open_raster(path, DEFAULT_MAX_PIXELS)?;
    if img.color().has_color() {
        return Err(DecodeError::new(
            path,
            "masks must be gray PNGs holding label indices (0 = background), not color images",
        ));
    }
    let (width, height) = (img.width() as usize, img.height() as usize);
    let raw: Vec<u16> = img.to_luma16().into_raw();
    let bits16 = img.color().bits_per_pixel() / u16::from(img.color().channel_count()) > 8;
    // image's 8->16 bit conversion multiplies by 257; undo it.
    let values: Vec<u16> = if bits16 { raw } else { raw.into_iter().map(|v| v / 257).collect() };
    let binary_255 = values.iter().all(|&v| v == 0 || v == 255) && values.contains(&255);
    let binary_65535 = values.iter().all(|&v| v == 0 || v == 65535) && values.contains(&65535);
    let labels = values
        .into_iter()
        .map(|v| match v {
            0 => Ok(0u8),
            255 if binary_255 => Ok(1),
            65535 if binary_65535 => Ok(1),
            v if v < 255 => Ok(v as u8),
            v => Err(v),
        })
        .collect::<Result<Vec<u8>, u16>>()
        .map_err(|v| {
            DecodeError::new(path, format!("mask value {v} is not a label index (0..254) nor 255 of a binary mask"))
        })?;
    Ok(LabelMask { height, width, labels })
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
    fn full_range_window_spans_min_to_max() {
        use crate::dicom::full_range_window;
        assert_eq!(full_range_window(&[100.0, 300.0, 200.0]), (200.0, 200.0));
        let flat = full_range_window(&[7.0, 7.0]);
        assert!(flat.1 > 0.0);
    }

    #[test]
    fn bt601_luma() {
        assert!((luma(1.0, 0.0, 0.0) - 0.299).abs() < 1e-12);
        assert!((luma(1.0, 1.0, 1.0) - 1.0).abs() < 1e-12);
    }
}
