//! One file on disk to one gray image with intensities in [0, 1]: each file to its
//! decoder by kind (PNG and JPEG in `raster`, DICOM in `dicom`), and masks as label
//! indices. The types it takes and gives are `decoded`'s, re-exported here.

use std::path::Path;

pub use crate::decoded::{
    DecodeError, DecodeNote, DecodeOptions, DicomInfo, FileKind, GrayImage, ImageInfo, LabelMask, apply_window,
};
use crate::raster::{decode_jpeg, decode_raster, open_raster};
use crate::settings::{DEFAULT_MAX_PIXELS, Window, Windows};

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

/// A DICOM file's SeriesInstanceUID, read from its header without decoding its pixels
/// (how `radrun dicom series` groups files before reading each series once).
pub fn series_uid(path: &Path) -> Result<Option<String>, DecodeError> {
    Ok(header_texts(path, &[dicom_dictionary_std::tags::SERIES_INSTANCE_UID])?.pop().flatten())
}

/// The text values of attributes of a DICOM file's header, its pixels not decoded (the
/// subgroup attributes of `eval.subgroups`); none where absent or empty.
pub fn header_texts(path: &Path, wanted: &[dicom_core::Tag]) -> Result<Vec<Option<String>>, DecodeError> {
    let bytes = std::fs::read(path).map_err(|e| DecodeError::new(path, e))?;
    crate::dicom::dicom_texts(path, bytes, wanted)
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
