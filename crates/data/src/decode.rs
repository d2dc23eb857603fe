//! One file on disk to one gray image with intensities in [0, 1]: PNG and JPEG through
//! the `image` crate, DICOM through dicom-object/dicom-pixeldata (rescale, window,
//! MONOCHROME1 inversion), and masks as label indices.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::settings::{Window, Windows};

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
}

/// `data.max_pixels` by default: 100 megapixels, above any radiograph (a 43 x 43 cm
/// detector at 0.1 mm is 18.5 megapixels).
pub const DEFAULT_MAX_PIXELS: u64 = 100_000_000;

impl Default for DecodeOptions {
    fn default() -> Self {
        Self { windows: Windows::default(), frame: 0, max_pixels: DEFAULT_MAX_PIXELS, colour: false, stored: false }
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
    let kind = FileKind::of(path).ok_or_else(|| DecodeError::new(path, "not a PNG, JPEG or DICOM file"))?;
    let bytes = std::fs::read(path).map_err(|e| DecodeError::new(path, e))?;
    decode_bytes(path, bytes, kind, options)
}

/// Every frame of a DICOM file, the file parsed once (`options.frame` is ignored); other
/// files have one.
pub fn decode_all_frames(path: &Path, options: &DecodeOptions) -> Result<Vec<(GrayImage, ImageInfo)>, DecodeError> {
    match FileKind::of(path) {
        Some(FileKind::Dicom) => {
            let bytes = std::fs::read(path).map_err(|e| DecodeError::new(path, e))?;
            crate::dicom::decode_dicom_frames(path, bytes, &DecodeOptions { frame: 0, ..options.clone() }, true)
        }
        _ => Ok(vec![decode(path, options)?]),
    }
}

/// Decodes the bytes of an image file of a known kind; `path` names it in errors. (The
/// fuzz targets in `fuzz/` call this.)
pub fn decode_bytes(
    path: &Path,
    bytes: Vec<u8>,
    kind: FileKind,
    options: &DecodeOptions,
) -> Result<(GrayImage, ImageInfo), DecodeError> {
    match kind {
        FileKind::Dicom => crate::dicom::decode_dicom(path, bytes, options),
        FileKind::Jpeg if bytes.starts_with(&[0xFF, 0xD8]) => decode_jpeg(path, &bytes, options.max_pixels),
        kind => decode_raster(path, &bytes, kind, options.max_pixels),
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
fn open_raster(path: &Path, bytes: &[u8], max_pixels: u64) -> Result<image::DynamicImage, DecodeError> {
    let reader = || -> Result<_, DecodeError> {
        image::ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| DecodeError::new(path, e))
    };
    let (width, height) = reader()?.into_dimensions().map_err(|e| DecodeError::with_cause(path, &e))?;
    within_pixel_limit(u64::from(height), u64::from(width), max_pixels).map_err(|e| DecodeError::new(path, e))?;
    reader()?.decode().map_err(|e| DecodeError::with_cause(path, &e))
}

/// A JPEG through zune-jpeg (the decoder the image crate uses) in strict mode: a damaged
/// stream is an error naming the fault, not a picture with a smear where the damage was.
/// Gray JPEGs stay gray; colour ones are converted to RGB, then BT.601 luma.
fn decode_jpeg(path: &Path, bytes: &[u8], max_pixels: u64) -> Result<(GrayImage, ImageInfo), DecodeError> {
    use zune_core::colorspace::ColorSpace;
    use zune_core::options::DecoderOptions;
    jpeg_structure(bytes).map_err(|e| DecodeError::new(path, format!("the JPEG is damaged: {e}")))?;
    let damaged = |e: zune_jpeg::errors::DecodeErrors| DecodeError::new(path, format!("the JPEG is damaged: {e}"));
    let options = DecoderOptions::default().set_strict_mode(true).set_max_width(1 << 16).set_max_height(1 << 16);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(zune_core::bytestream::ZCursor::new(bytes), options);
    decoder.decode_headers().map_err(damaged)?;
    let header = decoder.info().ok_or_else(|| DecodeError::new(path, "the JPEG has no frame header"))?;
    let (height, width) = (usize::from(header.height), usize::from(header.width));
    within_pixel_limit(height as u64, width as u64, max_pixels).map_err(|e| DecodeError::new(path, e))?;
    let gray = header.components == 1;
    let options = options.jpeg_set_out_colorspace(if gray { ColorSpace::Luma } else { ColorSpace::RGB });
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(zune_core::bytestream::ZCursor::new(bytes), options);
    let samples = decoder.decode().map_err(damaged)?;
    let pixels: Vec<f32> = if gray {
        samples.iter().map(|&v| f32::from(v) / 255.0).collect()
    } else {
        samples.chunks_exact(3).map(|p| (luma(p[0].into(), p[1].into(), p[2].into()) / 255.0) as f32).collect()
    };
    if pixels.len() != height * width {
        return Err(DecodeError::new(path, "the JPEG decodes to fewer pixels than its header says"));
    }
    Ok((GrayImage::new(height, width, pixels), ImageInfo { kind: FileKind::Jpeg, height, width, bits: 8, dicom: None }))
}

/// Checks a JPEG's marker structure, which the Rust decoders do not (they decode a stream
/// with a stray marker or garbage in the middle as if it were fine, where libjpeg warns
/// "Corrupt JPEG data"): marker segments whose lengths fit, entropy-coded data in which
/// 0xFF is only followed by 0x00 (stuffing) or the next restart marker, and nothing but
/// padding after the end-of-image marker. Damage that keeps this structure (bytes
/// replaced by other valid entropy-coded bytes) cannot be seen without a decoder that
/// reports losing synchronisation.
pub(crate) fn jpeg_structure(bytes: &[u8]) -> Result<(), String> {
    let mut at = 2; // after SOI
    loop {
        while bytes.get(at) == Some(&0xFF) && bytes.get(at + 1) == Some(&0xFF) {
            at += 1; // fill bytes
        }
        let (Some(&0xFF), Some(&marker)) = (bytes.get(at), bytes.get(at + 1)) else {
            return Err(format!("no marker at byte {at} where one must be (a cut or overwritten file)"));
        };
        at += 2;
        match marker {
            0xD9 => {
                // one byte of any value pads a DICOM fragment to an even length
                return match bytes.len() - at <= 1 || bytes[at..].iter().all(|&b| b == 0) {
                    true => Ok(()),
                    false => Err(format!("{} bytes follow the end-of-image marker", bytes.len() - at)),
                };
            }
            0x01 | 0xD0..=0xD7 => return Err(format!("a restart marker outside the image data at byte {}", at - 2)),
            _ => {}
        }
        let length = bytes.get(at..at + 2).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])));
        let length = length.filter(|&l| l >= 2 && at + l <= bytes.len()).ok_or("a marker segment runs past the end")?;
        at += length;
        if marker != 0xDA {
            continue;
        }
        // entropy-coded data of a scan
        let mut next_restart = 0xD0;
        loop {
            let Some(offset) = bytes[at..].iter().position(|&b| b == 0xFF) else {
                return Err("the image data ends without an end-of-image marker (the file is cut short)".into());
            };
            at += offset;
            match bytes.get(at + 1) {
                Some(0x00) => at += 2,
                Some(&m) if (0xD0..=0xD7).contains(&m) => {
                    if m != next_restart {
                        return Err(format!(
                            "restart marker {} where {} was due, at byte {at}",
                            m - 0xD0,
                            next_restart - 0xD0
                        ));
                    }
                    next_restart = if m == 0xD7 { 0xD0 } else { m + 1 };
                    at += 2;
                }
                Some(0xC4 | 0xD9 | 0xDA | 0xDB | 0xDC | 0xDD | 0xE0..=0xEF | 0xFE | 0xFF) => break,
                Some(&m) => return Err(format!("an unexpected marker 0xFF{m:02X} inside the image data at byte {at}")),
                None => return Err("the image data ends without an end-of-image marker (the file is cut short)".into()),
            }
        }
    }
}

fn decode_raster(
    path: &Path,
    bytes: &[u8],
    kind: FileKind,
    max_pixels: u64,
) -> Result<(GrayImage, ImageInfo), DecodeError> {
    let img = open_raster(path, bytes, max_pixels)?;
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

/// Reads a mask: a gray PNG, or a single-frame gray DICOM file (1-bit masks included),
/// whose values are label indices 0..K; a mask holding only 0 and 255 (or 65535) is
/// binary and that value becomes label 1. Colour masks are refused (say which file).
pub fn decode_mask(path: &Path) -> Result<LabelMask, DecodeError> {
    let bytes = std::fs::read(path).map_err(|e| DecodeError::new(path, e))?;
    let colour = || {
        DecodeError::new(path, "masks must be gray images holding label indices (0 = background), not colour images")
    };
    let (height, width, values) = if FileKind::of(path) == Some(FileKind::Dicom) {
        // the stored values themselves: a window spanning 0..65535, undone
        let window = Window::Explicit { center: 32767.5, width: 65535.0 };
        let options = DecodeOptions { windows: Windows::one(window), stored: true, ..DecodeOptions::default() };
        let (image, info) = crate::dicom::decode_dicom(path, bytes, &options)?;
        if info.dicom.as_ref().is_some_and(|d| d.samples_per_pixel != 1 || d.photometric == "PALETTE COLOR") {
            return Err(colour());
        }
        (image.height, image.width, image.pixels.iter().map(|&v| (f64::from(v) * 65535.0).round() as u16).collect())
    } else {
        let img = open_raster(path, &bytes, DEFAULT_MAX_PIXELS)?;
        if img.color().has_color() {
            return Err(colour());
        }
        let raw: Vec<u16> = img.to_luma16().into_raw();
        let bits16 = img.color().bits_per_pixel() / u16::from(img.color().channel_count()) > 8;
        // image's 8->16 bit conversion multiplies by 257; undo it.
        let values: Vec<u16> = if bits16 { raw } else { raw.into_iter().map(|v| v / 257).collect() };
        (img.height() as usize, img.width() as usize, values)
    };
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

    /// The strict JPEG path gives the pixels the image crate gave (same decoder, same
    /// conversion) on the example's JPEG files, gray and colour.
    #[test]
    fn strict_jpeg_decoding_equals_the_image_crates() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets.example/chest6/Test");
        let mut checked = 0;
        for class in std::fs::read_dir(root).unwrap() {
            for file in std::fs::read_dir(class.unwrap().path()).unwrap() {
                let path = file.unwrap().path();
                if FileKind::of(&path) != Some(FileKind::Jpeg) {
                    continue;
                }
                let bytes = std::fs::read(&path).unwrap();
                let (strict, _) = decode_jpeg(&path, &bytes, DEFAULT_MAX_PIXELS).unwrap();
                let img = open_raster(&path, &bytes, DEFAULT_MAX_PIXELS).unwrap();
                let expected: Vec<f32> = if img.color().has_color() {
                    img.to_rgb32f().pixels().map(|p| luma(p[0].into(), p[1].into(), p[2].into()) as f32).collect()
                } else {
                    img.to_luma32f().into_raw()
                };
                let worst = strict.pixels.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
                assert!(worst < 1e-6, "{}: {worst}", path.display());
                checked += 1;
            }
        }
        assert!(checked >= 10, "{checked} JPEG files");
    }

    #[test]
    fn bt601_luma() {
        assert!((luma(1.0, 0.0, 0.0) - 0.299).abs() < 1e-12);
        assert!((luma(1.0, 1.0, 1.0) - 1.0).abs() < 1e-12);
    }
}
