//! DICOM files to gray images, right or refused with the reason.
//!
//! dicom-object parses the data set and dicom-pixeldata decompresses JPEG 2000 and
//! JPEG-LS; everything else is done here, following PS3.3 and PS3.5 and checked against
//! pydicom on its whole test corpus (`crates/data/tests/dicom_corpus.rs`):
//! 1. [`scan`]: no length field may make radrun allocate out of proportion to the file:
//!    every declared length is checked against the bytes present before dicom-object
//!    reads it (a deflated data set is inflated here, up to 64 x the file plus 64 MiB);
//!    what follows the root's Pixel Data is cut off; a frame's size is checked against
//!    `data.max_pixels`, and a compressed frame's own header against Rows x Columns,
//!    before any decoder allocates for it.
//! 2. The frame's stored samples: native data in the file's byte order (1, 8, 16 and
//!    32 bits, PlanarConfiguration 0 or 1, subsampled YBR_FULL_422); JPEG through
//!    jpeg-decoder with the colour transform the DICOM header implies (12-bit JPEG
//!    through libjpeg-turbo, [`decode_12_bit`]), after a check of its marker structure;
//!    RLE through [`rle_samples`] (8 to 32 bits); JPEG 2000 and JPEG-LS through
//!    dicom-pixeldata. Values are masked to BitsStored and sign-extended.
//! 3. Colour: YBR_FULL(_422) to RGB (pydicom's formula), PALETTE COLOR through its
//!    lookup tables (segmented ones expanded by [`expand_segmented`]), then BT.601 luma
//!    scaled by the largest storable value, or red, green and blue planes
//!    (`DecodeOptions::colour`).
//! 4. Gray: the Modality LUT Sequence, else RescaleSlope/Intercept; then, per window of
//!    `data.window` (one plane each), the recipe's window, or the file's VOI LUT Sequence,
//!    or its window, or the value range; MONOCHROME1 inverted.
//!
//! Numeric attributes stored with VR UN (as some anonymisers write them) are read with
//! their dictionary VR; a data set declared explicit VR but written implicit is read as
//! implicit, as pydicom does.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::Path;

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom_core::value::{PixelFragmentSequence, PrimitiveValue, Value};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::{StandardDataDictionary, tags};
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::mem::InMemElement;
use dicom_object::{DefaultDicomObject, InMemDicomObject, OpenFileOptions};
use dicom_parser::dataset::DataToken;
use dicom_parser::dataset::read::DataSetReader;
use dicom_pixeldata::PixelDecoder;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use crate::decoded::{
    DecodeError, DecodeNote, DecodeOptions, DicomInfo, FileKind, GrayImage, ImageInfo, apply_window, cause_chain, luma,
    within_pixel_limit,
};
use crate::jpeg12::decode_12_bit;
use crate::palette::expand_segmented;
use crate::raster::jpeg_structure;
use crate::settings::{TUTORIAL_DEFAULT_WINDOW, Window};

/// Decodes the chosen frame of a DICOM file (see the module doc for the steps).
pub(crate) fn decode_dicom(
    path: &Path,
    bytes: Vec<u8>,
    options: &DecodeOptions,
) -> Result<(GrayImage, ImageInfo), DecodeError> {
    let mut frames = decode_dicom_frames(path, bytes, options, false)?;
    Ok(frames.pop().expect("one frame"))
}

/// The text values of the `wanted` attributes of a DICOM file's header (the file scanned
/// and parsed as for decoding, its pixel data not decoded); none where absent or empty.
pub(crate) fn dicom_texts(path: &Path, mut bytes: Vec<u8>, wanted: &[Tag]) -> Result<Vec<Option<String>>, DecodeError> {
    let fail = |reason: String| DecodeError::new(path, reason);
    scan(&mut bytes).map_err(fail)?;
    let start = if bytes.len() >= 132 && &bytes[128..132] == b"DICM" { 128 } else { 0 };
    let obj = OpenFileOptions::new()
        .read_to(tags::PIXEL_DATA)
        .from_reader(&bytes[start..])
        .map_err(|e| DecodeError::with_cause(path, &e))?;
    // the first frame's functional groups first (enhanced CT and MR keep KVP or
    // SliceThickness there), then the top level
    let header = Header::new(&obj, false).for_frame(0);
    Ok(wanted.iter().map(|&tag| header.text(tag)).collect())
}

/// The WindowCenter and WindowWidth a DICOM file states (the first of several values),
/// when it states both and the width is positive; its pixels are not decoded.
pub fn stated_window(path: &Path) -> Option<(f64, f64)> {
    let bytes = std::fs::read(path).ok()?;
    let texts = dicom_texts(path, bytes, &[tags::WINDOW_CENTER, tags::WINDOW_WIDTH]).ok()?;
    let first = |text: &Option<String>| text.as_deref()?.split('\\').next()?.trim().parse::<f64>().ok();
    let (center, width) = (first(&texts[0])?, first(&texts[1])?);
    (width > 0.0 && center.is_finite() && width.is_finite()).then_some((center, width))
}

/// Decodes the chosen frame, or with `all_frames` every frame, of a DICOM file, parsing
/// it once.
pub(crate) fn decode_dicom_frames(
    path: &Path,
    mut bytes: Vec<u8>,
    options: &DecodeOptions,
    all_frames: bool,
) -> Result<Vec<(GrayImage, ImageInfo)>, DecodeError> {
    let fail = |reason: String| DecodeError::new(path, reason);
    let scan = scan(&mut bytes).map_err(fail)?;
    if scan.ignored_after_pixels {
        tracing::warn!(
            "{}: ignored what follows the pixel data (padding or damaged elements)",
            crate::paths::path_text(path)
        );
    }
    let start = if bytes.len() >= 132 && &bytes[128..132] == b"DICM" { 128 } else { 0 };
    let mut obj = OpenFileOptions::new()
        .read_to(tags::PIXEL_DATA)
        .from_reader(&bytes[start..])
        .map_err(|e| DecodeError::with_cause(path, &e))?;
    if let Some(ts) = scan.encapsulation {
        // the data set was read as implicit VR; its pixel data keep the declared syntax
        obj.meta_mut().set_transfer_syntax(ts);
    }
    let ts_uid = obj.meta().transfer_syntax().trim_end_matches('\0').trim().to_string();
    let ts = TransferSyntaxRegistry.get(&ts_uid);
    let header = Header::new(&obj, ts.is_some_and(|ts| ts.endianness() == dicom_encoding::Endianness::Big));
    let layout = Layout::read(&header, options).map_err(fail)?;
    let frames = if all_frames { 0..layout.frames } else { options.frame..options.frame + 1 };
    frames
        .map(|frame| {
            let header = header.for_frame(frame);
            let frame = FrameSource { obj: &obj, header: &header, layout: &layout, ts_uid: &ts_uid, frame };
            decode_frame(path, &frame, &scan, options)
        })
        .collect()
}

/// One frame of a parsed DICOM file.
struct FrameSource<'a> {
    obj: &'a DefaultDicomObject,
    header: &'a Header<'a>,
    layout: &'a Layout,
    ts_uid: &'a str,
    frame: u32,
}

/// Decodes one frame: its stored samples, then gray planes (one per window) or colour
/// planes, and the facts reported about it.
fn decode_frame(
    path: &Path,
    source: &FrameSource,
    scan: &Scan,
    options: &DecodeOptions,
) -> Result<(GrayImage, ImageInfo), DecodeError> {
    let fail = |reason: String| DecodeError::new(path, reason);
    let (header, layout) = (source.header, source.layout);
    let (samples, space) = frame_samples(source.obj, header, layout, source.ts_uid, source.frame).map_err(fail)?;
    // gray: one plane per window; colour has nothing to window: one plane, which the
    // batches repeat into every channel
    let gray = layout.samples == 1 && space != Space::Palette;
    let rescale = reported_rescale(header, gray).map_err(fail)?;
    let planes = if gray {
        gray_planes(header, layout, samples, options)
    } else {
        colour_planes(header, layout, samples, space, options.colour)
    };
    let Planes { pixels, planes, window } = planes.map_err(fail)?;
    if pixels.len() != planes * layout.rows * layout.columns {
        return Err(fail(format!(
            "the pixel data decodes to {} values, not {planes} x Rows x Columns = {}",
            pixels.len(),
            planes * layout.rows * layout.columns
        )));
    }
    let info = frame_info(header, layout, scan, window, rescale);
    Ok((GrayImage::stacked(layout.rows, layout.columns, planes, pixels), info))
}

/// A frame's intensities in [0, 1], plane after plane, and the window reported for them.
struct Planes {
    pixels: Vec<f32>,
    planes: usize,
    /// The first window applied (gray), or the middle and span of the stored range (colour).
    window: (f64, f64),
}

/// The (RescaleSlope, RescaleIntercept) reported for a gray frame (1 and 0 when absent);
/// `None` for colour and when a Modality LUT Sequence maps the values instead.
fn reported_rescale(header: &Header, gray: bool) -> Result<Option<[f64; 2]>, String> {
    let lut_maps = header.items(tags::MODALITY_LUT_SEQUENCE).is_some();
    if !gray || lut_maps {
        return Ok(None);
    }
    let slope = header.float(tags::RESCALE_SLOPE)?.unwrap_or(1.0);
    Ok(Some([slope, header.float(tags::RESCALE_INTERCEPT)?.unwrap_or(0.0)]))
}

/// Gray samples through the modality LUT (unless `options.stored`) and then each window
/// of `options.windows` in turn, one plane each; MONOCHROME1 inverted.
fn gray_planes(header: &Header, layout: &Layout, samples: Vec<f64>, options: &DecodeOptions) -> Result<Planes, String> {
    let values = if options.stored { samples } else { modality_values(header, layout, &samples)? };
    if options.modality_values {
        // the range of the values as the window reported: none is applied
        let (low, high) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
        let pixels = values.iter().map(|&v| v as f32).collect();
        return Ok(Planes { pixels, planes: 1, window: ((low + high) / 2.0, high - low) });
    }
    let invert = layout.photometric == "MONOCHROME1" && !options.stored;
    let mut pixels = Vec::with_capacity(values.len() * options.windows.0.len());
    let mut first = None;
    for &window in &options.windows.0 {
        let (plane, used) = voi(header, &values, window)?;
        pixels.extend(plane.into_iter().map(|x| if invert { 1.0 - x } else { x }));
        first = first.or(Some(used));
    }
    let window = first.ok_or_else(|| "no window to apply".to_string())?;
    Ok(Planes { pixels, planes: options.windows.0.len(), window })
}

/// Colour samples as RGB scaled by the largest storable value: red, green and blue
/// planes with `colour`, else one plane of BT.601 luma.
fn colour_planes(
    header: &Header,
    layout: &Layout,
    samples: Vec<f64>,
    space: Space,
    colour: bool,
) -> Result<Planes, String> {
    let (rgb, bits) = rgb_values(header, layout, samples, space)?;
    let max = 2f64.powi(bits as i32) - 1.0;
    let scaled = |v: f64| (v / max).clamp(0.0, 1.0) as f32;
    if colour {
        // red, green and blue planes
        let pixels = (0..3).flat_map(|c| rgb.chunks_exact(3).map(move |p| p[c])).map(scaled).collect();
        Ok(Planes { pixels, planes: 3, window: (max / 2.0, max) })
    } else {
        let pixels = rgb.chunks_exact(3).map(|p| scaled(luma(p[0], p[1], p[2]))).collect();
        Ok(Planes { pixels, planes: 1, window: (max / 2.0, max) })
    }
}

/// What is reported about a decoded frame: its size and bits, and the DICOM header facts.
fn frame_info(
    header: &Header,
    layout: &Layout,
    scan: &Scan,
    window: (f64, f64),
    rescale: Option<[f64; 2]>,
) -> ImageInfo {
    ImageInfo {
        kind: FileKind::Dicom,
        height: layout.rows,
        width: layout.columns,
        bits: layout.bits_stored,
        dicom: Some(DicomInfo {
            modality: header.text(tags::MODALITY),
            transfer_syntax: transfer_syntax_name(&scan.declared),
            photometric: layout.photometric.clone(),
            frames: layout.frames,
            patient_id: header.text(tags::PATIENT_ID),
            study_uid: header.text(tags::STUDY_INSTANCE_UID),
            pixel_spacing_mm: pixel_spacing(header),
            window,
            bits_allocated: layout.bits_allocated,
            samples_per_pixel: layout.samples,
            rescale,
            series_uid: header.text(tags::SERIES_INSTANCE_UID),
            position_mm: frame_position(header),
            orientation: fixed(header.floats(tags::IMAGE_ORIENTATION_PATIENT).ok().flatten()),
            instance_number: header.float(tags::INSTANCE_NUMBER).ok().flatten().map(|n| n as i64),
            slice_thickness_mm: header.float(tags::SLICE_THICKNESS).ok().flatten(),
        }),
        notes: header.notes.borrow().iter().copied().collect(),
    }
}

/// The frame's ImagePositionPatient (its functional groups', else the file's), moved by
/// its GridFrameOffsetVector entry when the file has one per frame (RT Dose, PS3.3
/// C.8.8.3.2): the frames' z coordinates in the older form (the first offset equal to
/// the position's z, the plane transverse), else distances along the normal of the plane
/// from the position. Without an orientation the position is kept.
fn frame_position(header: &Header) -> Option<[f64; 3]> {
    let position: [f64; 3] = fixed(header.floats(tags::IMAGE_POSITION_PATIENT).ok().flatten())?;
    let offsets = header.floats(tags::GRID_FRAME_OFFSET_VECTOR).ok().flatten().unwrap_or_default();
    let orientation: Option<[f64; 6]> = fixed(header.floats(tags::IMAGE_ORIENTATION_PATIENT).ok().flatten());
    let (Some(&offset), Some(o)) = (offsets.get(header.frame as usize), orientation) else { return Some(position) };
    let normal = [o[1] * o[5] - o[2] * o[4], o[2] * o[3] - o[0] * o[5], o[0] * o[4] - o[1] * o[3]];
    let length = normal.iter().map(|v| v * v).sum::<f64>().sqrt();
    let transverse = (normal[2] / length - 1.0).abs() < 1e-6;
    if offsets[0] != 0.0 && transverse && (offsets[0] - position[2]).abs() < 1e-3 {
        return Some([position[0], position[1], offset]);
    }
    if length < 1e-6 {
        return Some(position);
    }
    Some(std::array::from_fn(|i| position[i] + offset * normal[i] / length))
}

/// Row and column spacing in millimetres: PixelSpacing, else ImagerPixelSpacing, when
/// both values are positive.
fn pixel_spacing(header: &Header) -> Option<[f64; 2]> {
    header
        .floats(tags::PIXEL_SPACING)
        .ok()
        .flatten()
        .or_else(|| header.floats(tags::IMAGER_PIXEL_SPACING).ok().flatten())
        .filter(|v| v.len() >= 2 && v[0] > 0.0 && v[1] > 0.0)
        .map(|v| [v[0], v[1]])
}

/// What the scan of a file's structure found.
struct Scan {
    /// The transfer syntax the file meta declares, when its data set turned out to be
    /// implicit VR little endian (the meta was rewritten to say so, see [`scan`]).
    encapsulation: Option<&'static dicom_encoding::TransferSyntax>,
    /// Damaged or unparsable content follows the pixel data.
    ignored_after_pixels: bool,
    /// The transfer syntax UID as the file declares it (the meta may have been rewritten
    /// for reading: inflated or implicit).
    declared: String,
}

const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";

/// Overwrites the meta's transfer syntax value in place (NUL-padded: the group length
/// stays right).
fn rewrite_transfer_syntax(value: &mut [u8], uid: &str) -> Result<(), String> {
    if value.len() < uid.len() {
        return Err(format!("the file meta's transfer syntax is too short to be read as {uid}"));
    }
    value.fill(0);
    value[..uid.len()].copy_from_slice(uid.as_bytes());
    Ok(())
}

/// Value representations with a 2-byte length in explicit VR.
const SHORT_VRS: [&[u8]; 21] = [
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"PN", b"SH", b"SL", b"SS",
    b"ST", b"TM", b"UI", b"UL", b"US",
];

/// Refuses a file any of whose declared lengths exceeds the bytes it holds, before
/// dicom-object allocates a buffer of that length (a 674-byte file could otherwise
/// claim gigabytes). The file meta group is walked here; the data set through
/// dicom-parser's token reader, which yields each header before reading its value.
///
/// A data set declared explicit VR but written implicit VR little endian (pydicom reads
/// such files with a warning) has its meta's transfer syntax rewritten in `bytes` to
/// implicit VR (same length, padded with NULs); the declared syntax is returned for the
/// pixel data.
fn scan(bytes: &mut Vec<u8>) -> Result<Scan, String> {
    let meta = file_meta(bytes)?;
    let (declared, mut ts) = declared_transfer_syntax(bytes, &meta)?;
    if matches!(ts.codec(), dicom_encoding::Codec::Dataset(_)) {
        // deflated: inflate (bounded) and read on as explicit VR little endian
        inflate_data_set(bytes, meta.body)?;
        rewrite_transfer_syntax(&mut bytes[meta.ts_range.clone()], EXPLICIT_VR_LE)?;
        ts = TransferSyntaxRegistry.get(EXPLICIT_VR_LE).expect("explicit VR little endian is registered");
    }
    let (ts, encapsulation) = syntax_as_written(bytes, &meta, ts)?;
    let walk = walk_data_set(&bytes[meta.body..], ts, bytes.len())?;
    if let Some(end) = walk.pixels_end {
        // nothing after the root's Pixel Data matters to radrun: dicom-object never sees it
        bytes.truncate(meta.body + end);
    }
    Ok(Scan { encapsulation, ignored_after_pixels: walk.ignored_after_pixels, declared })
}

/// The refusal of a length larger than the whole file.
fn too_long(what: String, len: u64, file_len: usize) -> String {
    format!("{what} declares {len} bytes but the file holds {file_len} bytes: the file is damaged or not DICOM")
}

/// The little-endian `u16` at `at`, when the bytes hold it.
fn u16_le(bytes: &[u8], at: usize) -> Option<u16> {
    bytes.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]))
}

/// The little-endian `u32` at `at`, when the bytes hold it.
fn u32_le(bytes: &[u8], at: usize) -> Option<u32> {
    bytes.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Where the file meta group ends and where it holds the transfer syntax.
struct FileMeta {
    /// Where the data set starts: just after the file meta group.
    body: usize,
    /// The bytes of the transfer syntax UID (0002,0010).
    ts_range: std::ops::Range<usize>,
}

/// Walks the file meta group (after the preamble, when there is one): each element's
/// length and the group length are checked against the file, and the group must hold
/// a transfer syntax.
fn file_meta(bytes: &[u8]) -> Result<FileMeta, String> {
    let file_len = bytes.len();
    let mut pos = if bytes.len() >= 132 && &bytes[128..132] == b"DICM" { 132 } else { 0 };
    let mut ts_value = None;
    let mut meta_end = None;
    while u16_le(bytes, pos) == Some(0x0002) {
        let (element, header, len) = meta_element_header(bytes, pos)?;
        let end = pos as u64 + header + u64::from(len);
        if end > file_len as u64 {
            return Err(too_long(format!("file meta element (0002,{element:04X})"), u64::from(len), file_len));
        }
        if element == 0x0010 {
            ts_value = Some(pos + header as usize..end as usize);
        }
        let group_length = (element == 0x0000).then(|| u32_le(bytes, pos + header as usize)).flatten();
        if let Some(group_length) = group_length {
            if group_length as usize > file_len {
                return Err(too_long("the file meta group length".to_string(), u64::from(group_length), file_len));
            }
            meta_end = Some(end as usize + group_length as usize);
        }
        pos = end as usize;
    }
    if meta_end.is_some_and(|end| end != pos) {
        return Err("the file meta group's length does not match its elements: the file is damaged".to_string());
    }
    let Some(ts_range) = ts_value else {
        return Err("no file meta information with a transfer syntax (0002,0010): not a DICOM Part 10 file, or a \
                    damaged one; re-save it with a DICOM tool"
            .to_string());
    };
    Ok(FileMeta { body: pos, ts_range })
}

/// The file meta element at `pos`: its element number, the size of its header and the
/// length its value declares; a value representation DICOM does not define is refused.
fn meta_element_header(bytes: &[u8], pos: usize) -> Result<(u16, u64, u32), String> {
    let element = u16_le(bytes, pos + 2).unwrap_or(0);
    let vr = bytes.get(pos + 4..pos + 6).unwrap_or_default();
    let long = matches!(
        vr,
        b"OB" | b"OD" | b"OF" | b"OL" | b"OV" | b"OW" | b"SQ" | b"SV" | b"UC" | b"UN" | b"UR" | b"UT" | b"UV"
    );
    if !long && !SHORT_VRS.contains(&vr) {
        return Err(format!(
            "file meta element (0002,{element:04X}) has the value representation {:?}, which DICOM does not define: \
             the file is damaged",
            String::from_utf8_lossy(vr)
        ));
    }
    let (len, header) = if long {
        (u32_le(bytes, pos + 8).ok_or("the file meta group is cut short")?, 12)
    } else {
        (u32::from(u16_le(bytes, pos + 6).ok_or("the file meta group is cut short")?), 8)
    };
    Ok((element, header, len))
}

/// The transfer syntax UID the file meta declares, and the syntax radrun knows by it.
fn declared_transfer_syntax(
    bytes: &[u8],
    meta: &FileMeta,
) -> Result<(String, &'static dicom_encoding::TransferSyntax), String> {
    let uid = String::from_utf8_lossy(&bytes[meta.ts_range.clone()]).trim_end_matches(['\0', ' ']).to_string();
    let Some(ts) = TransferSyntaxRegistry.get(&uid) else {
        return Err(format!("the transfer syntax {uid:?} is not one radrun knows"));
    };
    Ok((uid, ts))
}

/// Replaces the deflated data set after `body` by its inflated bytes, refusing one that
/// inflates beyond 64 x the file plus 64 MiB.
fn inflate_data_set(bytes: &mut Vec<u8>, body: usize) -> Result<(), String> {
    let limit = 64 * bytes.len() as u64 + (64 << 20);
    let mut inflated = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(flate2::read::DeflateDecoder::new(&bytes[body..]), limit + 1),
        &mut inflated,
    )
    .map_err(|e| format!("the deflated data set cannot be inflated: {e}"))?;
    if inflated.len() as u64 > limit {
        return Err(format!("the deflated data set inflates beyond {limit} bytes: the file is damaged or hostile"));
    }
    bytes.truncate(body);
    bytes.extend_from_slice(&inflated);
    Ok(())
}

/// The syntax to read the data set with, and the declared one its pixel data keep when
/// the two differ: a data set declared explicit VR little endian but written implicit
/// VR is read as implicit (the meta rewritten to say so); one declared implicit VR but
/// written explicit is refused.
fn syntax_as_written(
    bytes: &mut [u8],
    meta: &FileMeta,
    ts: &'static dicom_encoding::TransferSyntax,
) -> Result<(&'static dicom_encoding::TransferSyntax, Option<&'static dicom_encoding::TransferSyntax>), String> {
    let vr_bytes = bytes.get(meta.body + 4..meta.body + 6).unwrap_or_default();
    let looks_explicit = vr_bytes.len() == 2 && vr_bytes.iter().all(u8::is_ascii_uppercase);
    let explicit = ts.uid() != IMPLICIT_VR_LE;
    if explicit && !looks_explicit && ts.endianness() == dicom_encoding::Endianness::Little {
        rewrite_transfer_syntax(&mut bytes[meta.ts_range.clone()], IMPLICIT_VR_LE)?;
        let implicit = TransferSyntaxRegistry.get(IMPLICIT_VR_LE).expect("implicit VR little endian is registered");
        return Ok((implicit, Some(ts)));
    }
    if !explicit && looks_explicit {
        return Err("the file meta declares implicit VR but the data set is explicit VR: re-save it with a DICOM tool"
            .to_string());
    }
    Ok((ts, None))
}

/// What the walk of a data set found about its root's Pixel Data.
#[derive(Default)]
struct DataSetWalk {
    depth: usize,
    /// The last element header read is the root's Pixel Data.
    pixel_element: bool,
    /// The last pixel sequence started is the root's.
    pixel_sequence: bool,
    /// The root's Pixel Data has been read whole; what follows it may be padding or
    /// damage, which is ignored rather than refused.
    pixels_done: bool,
    /// Where the root's Pixel Data ends, from the start of the data set.
    pixels_end: Option<usize>,
    /// Damaged or unparsable content follows the pixel data.
    ignored_after_pixels: bool,
}

/// Reads the data set token by token, refusing any declared length beyond the file's
/// `file_len` bytes, up to the end of the root's Pixel Data; damage after it is noted
/// and the walk stops there.
fn walk_data_set(data: &[u8], ts: &dicom_encoding::TransferSyntax, file_len: usize) -> Result<DataSetWalk, String> {
    let read = std::cell::Cell::new(0usize);
    let source = CountingReader { bytes: data, read: &read };
    let reader = DataSetReader::new_with_ts(source, ts).map_err(|e| cause_chain(&e))?;
    let mut walk = DataSetWalk::default();
    for token in reader {
        let token = match token {
            Ok(token) => token,
            Err(_) if walk.pixels_done => {
                walk.ignored_after_pixels = true;
                break;
            }
            Err(e) => return Err(cause_chain(&e)),
        };
        let Some((what, len)) = walk.follow(token, read.get()) else { continue };
        if let Some(len) = len.get()
            && len as usize > file_len
        {
            if walk.pixels_done {
                walk.ignored_after_pixels = true;
                break;
            }
            return Err(too_long(what, u64::from(len), file_len));
        }
    }
    Ok(walk)
}

impl DataSetWalk {
    /// Takes in one token, `read` bytes into the data set; returns what it is and the
    /// length it declares, for the tokens that declare one.
    fn follow(&mut self, token: DataToken, read: usize) -> Option<(String, dicom_core::Length)> {
        match token {
            DataToken::ElementHeader(h) => {
                self.pixel_element = self.depth == 0 && h.tag == tags::PIXEL_DATA;
                Some((format!("element {}", h.tag), h.len))
            }
            DataToken::PrimitiveValue(_) => {
                self.pixels_done |= self.pixel_element;
                self.pixels_end = self.pixels_end.or(self.pixels_done.then_some(read));
                None
            }
            DataToken::SequenceStart { tag, len } => {
                self.depth += 1;
                Some((format!("sequence {tag}"), len))
            }
            DataToken::PixelSequenceStart => {
                self.pixel_sequence = self.depth == 0;
                self.depth += 1;
                None
            }
            DataToken::SequenceEnd => {
                self.depth = self.depth.saturating_sub(1);
                self.pixels_done |= self.pixel_sequence && self.depth == 0;
                self.pixels_end = self.pixels_end.or(self.pixels_done.then_some(read));
                None
            }
            DataToken::ItemStart { len } => Some(("an item".to_string(), len)),
            _ => None,
        }
    }
}

/// The first N values, when there are at least N.
fn fixed<const N: usize>(values: Option<Vec<f64>>) -> Option<[f64; N]> {
    values.filter(|v| v.len() >= N).map(|v| std::array::from_fn(|i| v[i]))
}

/// A byte slice read through `Read`, counting what was read (the scan's position).
struct CountingReader<'a> {
    bytes: &'a [u8],
    read: &'a std::cell::Cell<usize>,
}

impl std::io::Read for CountingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = std::io::Read::read(&mut &self.bytes[self.read.get()..], buf)?;
        self.read.set(self.read.get() + n);
        Ok(n)
    }
}

/// Attribute access that reads values stored with VR UN through their dictionary VR.
///
/// A frame's header ([`Header::for_frame`]) looks an attribute up as PS3.3 C.7.6.16 says
/// for Enhanced multi-frame images (Enhanced CT, MR, XA, PET...): first in the frame's
/// item of the Per-Frame Functional Groups Sequence, then in the Shared Functional Groups
/// Sequence, then at the top level. Each group item holds functional group macros (Pixel
/// Value Transformation, Frame VOI LUT, Pixel Measures, Plane Position, Plane
/// Orientation...), each a sequence of one item with the attributes themselves; the
/// attributes radrun reads appear in one macro each, so any macro's item may answer.
struct Header<'a> {
    obj: &'a InMemDicomObject,
    big_endian: bool,
    /// The frame this header answers for (0 for the file as a whole).
    frame: u32,
    /// The frame's functional group macro items: per-frame ones first, then shared ones.
    groups: Vec<&'a InMemDicomObject>,
    /// What the frame's decoding noted (a value found in a functional group, bytes after
    /// a JPEG frame's end), for the data summary.
    notes: RefCell<BTreeSet<DecodeNote>>,
}

impl<'a> Header<'a> {
    fn new(obj: &'a InMemDicomObject, big_endian: bool) -> Header<'a> {
        Header { obj, big_endian, frame: 0, groups: Vec::new(), notes: RefCell::default() }
    }

    fn item<'b>(&'b self, obj: &'b InMemDicomObject) -> Header<'b> {
        Header::new(obj, self.big_endian)
    }

    /// The header of one frame: attributes from its functional groups first.
    fn for_frame(&self, frame: u32) -> Header<'a> {
        let macros = |group: Option<&'a InMemDicomObject>| {
            group
                .into_iter()
                .flat_map(|group| group.iter())
                .filter_map(|element| element.items().and_then(|items| items.first()))
        };
        let sequence = |tag| self.obj.element_opt(tag).ok().flatten().and_then(|e| e.items());
        let per_frame = sequence(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE).and_then(|i| i.get(frame as usize));
        let shared = sequence(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE).and_then(|i| i.first());
        let groups = macros(per_frame).chain(macros(shared)).collect();
        Header { groups, frame, ..Header::new(self.obj, self.big_endian) }
    }

    fn note(&self, note: DecodeNote) {
        self.notes.borrow_mut().insert(note);
    }

    /// The element for `tag`: from the frame's functional groups, else the top level.
    fn element(&self, tag: Tag) -> Option<&'a InMemElement> {
        if let Some(element) = self.groups.iter().find_map(|group| group.element_opt(tag).ok().flatten()) {
            self.note(DecodeNote::FunctionalGroups);
            return Some(element);
        }
        self.obj.element_opt(tag).ok().flatten()
    }

    fn text(&self, tag: Tag) -> Option<String> {
        let element = self.element(tag)?;
        let value = match element.vr() {
            VR::UN => String::from_utf8_lossy(&element.to_bytes().ok()?).into_owned(),
            _ => element.to_str().ok()?.into_owned(),
        };
        let value = value.trim().trim_end_matches('\0').trim();
        (!value.is_empty()).then(|| value.to_string())
    }

    /// The element's numbers; `Ok(None)` when absent or empty, an error naming the
    /// attribute when its value is not a number. The error never shows the value: text in
    /// a number's place may be anything an operator typed there, a patient's name or
    /// record number included.
    fn floats(&self, tag: Tag) -> Result<Option<Vec<f64>>, String> {
        let Some(element) = self.element(tag) else { return Ok(None) };
        let name = StandardDataDictionary.by_tag(tag).map(|e| e.alias().to_string()).unwrap_or_else(|| tag.to_string());
        let not_numbers = || format!("{name} {tag} is not a number: correct or remove it");
        let vr = match (element.vr(), StandardDataDictionary.by_tag(tag).map(|e| e.vr())) {
            (VR::UN, Some(VirtualVr::Exact(vr))) => vr,
            (VR::UN, Some(VirtualVr::Xs)) => VR::US,
            (vr, _) => vr,
        };
        let values = if element.vr() == VR::UN || matches!(vr, VR::DS | VR::IS) {
            let bytes = element.to_bytes().map_err(|e| e.to_string())?;
            numbers_from_bytes(&bytes, vr, self.big_endian).map_err(|()| not_numbers())?
        } else {
            element.to_multi_float64().map_err(|_| not_numbers())?
        };
        if values.iter().any(|v| !v.is_finite()) {
            return Err(not_numbers());
        }
        Ok((!values.is_empty()).then_some(values))
    }

    fn float(&self, tag: Tag) -> Result<Option<f64>, String> {
        Ok(self.floats(tag)?.and_then(|v| v.first().copied()))
    }

    /// A whole number that must be present (Rows, Columns, BitsAllocated...).
    fn required(&self, tag: Tag, name: &str) -> Result<u32, String> {
        let value = self.float(tag)?.ok_or_else(|| format!("{name} {tag} is missing"))?;
        if value < 0.0 || value.fract() != 0.0 || value > f64::from(u32::MAX) {
            return Err(format!("{name} {tag} is not a whole number from 0 to {}: correct or remove it", u32::MAX));
        }
        Ok(value as u32)
    }

    fn items(&self, tag: Tag) -> Option<&'a [InMemDicomObject]> {
        self.element(tag)?.items().filter(|items| !items.is_empty())
    }

    /// A lookup table's descriptor: its entries (0 meaning 65536), first mapped value and
    /// bits per entry. `signed` reads a first value above 32767 stored as US as negative.
    fn lut_descriptor(&self, descriptor: Tag, signed: bool) -> Result<(usize, f64, u32), String> {
        let d = self.floats(descriptor)?.filter(|d| d.len() == 3).ok_or_else(|| {
            format!("LUT descriptor {descriptor} is missing or does not hold 3 values (entries, first value, bits)")
        })?;
        let whole = |v: f64| v.fract() == 0.0 && (-32768.0..=65535.0).contains(&v);
        if !d.iter().all(|&v| whole(v)) || d[0] < 0.0 {
            return Err(format!(
                "LUT descriptor {descriptor} is {d:?}: not three whole numbers (entries, first value, bits)"
            ));
        }
        let entries = if d[0] == 0.0 { 65536 } else { d[0] as usize };
        let first = if signed && d[1] > 32767.0 { d[1] - 65536.0 } else { d[1] };
        Ok((entries, first, d[2] as u32))
    }

    /// A lookup table: its descriptor (entries, first mapped value, bits per entry) and
    /// entries. `signed` reads a first value above 32767 stored as US as negative.
    fn lut(&self, descriptor: Tag, data: Tag, signed: bool) -> Result<Lut, String> {
        let (entries, first, bits) = self.lut_descriptor(descriptor, signed)?;
        let element = self.element(data).ok_or_else(|| format!("LUT data {data} is missing"))?;
        // OW and US values arrive as 16-bit words in machine order; OB and UN as the file's bytes
        let table: Vec<f64> = match element.value() {
            Value::Primitive(PrimitiveValue::U16(words)) => words.iter().take(entries).map(|&w| f64::from(w)).collect(),
            Value::Primitive(PrimitiveValue::I16(words)) => {
                words.iter().take(entries).map(|&w| f64::from(w as u16)).collect()
            }
            _ => {
                let raw = element.to_bytes().map_err(|e| e.to_string())?;
                if bits <= 8 && raw.len() == entries {
                    raw.iter().map(|&b| f64::from(b)).collect()
                } else {
                    let word = |b: &[u8]| match self.big_endian {
                        true => u16::from_be_bytes([b[0], b[1]]),
                        false => u16::from_le_bytes([b[0], b[1]]),
                    };
                    raw.chunks_exact(2).take(entries).map(|b| f64::from(word(b))).collect()
                }
            }
        };
        if table.len() < entries {
            return Err(format!(
                "LUT data {data} holds {} entries, fewer than the {entries} its descriptor says",
                table.len()
            ));
        }
        if !(1..=16).contains(&bits) {
            return Err(format!("LUT descriptor {descriptor} gives {bits} bits per entry (1 to 16 are valid)"));
        }
        Ok(Lut { first, table, bits })
    }

    /// A palette's lookup table from its Segmented Palette Color Lookup Table Data (PS3.3
    /// C.7.9.2), expanded to the entries its descriptor gives.
    fn segmented_lut(&self, descriptor: Tag, data: Tag) -> Result<Lut, String> {
        let (entries, first, bits) = self.lut_descriptor(descriptor, false)?;
        let element = self.element(data).ok_or_else(|| format!("segmented LUT data {data} is missing"))?;
        // the segments are read from the file's bytes; OW and US values arrive as 16-bit
        // words in machine order, OB and UN as the file's bytes
        let in_file = |w: u16| if self.big_endian { w.to_be_bytes() } else { w.to_le_bytes() };
        let raw: Cow<[u8]> = match element.value() {
            Value::Primitive(PrimitiveValue::U16(words)) => words.iter().flat_map(|&w| in_file(w)).collect(),
            Value::Primitive(PrimitiveValue::I16(words)) => words.iter().flat_map(|&w| in_file(w as u16)).collect(),
            _ => element.to_bytes().map_err(|e| e.to_string())?,
        };
        let table = expand_segmented(&raw, self.big_endian, bits, entries)
            .map_err(|e| format!("segmented LUT data {data}: {e}"))?;
        Ok(Lut { first, table, bits })
    }
}

/// Values of a DS/IS (text) or binary numeric element given as bytes.
fn numbers_from_bytes(bytes: &[u8], vr: VR, big_endian: bool) -> Result<Vec<f64>, ()> {
    macro_rules! binary {
        ($t:ty, $n:expr) => {
            bytes
                .chunks_exact($n)
                .map(|b| {
                    let b: [u8; $n] = b.try_into().unwrap();
                    (if big_endian { <$t>::from_be_bytes(b) } else { <$t>::from_le_bytes(b) }) as f64
                })
                .collect()
        };
    }
    Ok(match vr {
        VR::US | VR::OW => binary!(u16, 2),
        VR::SS => binary!(i16, 2),
        VR::UL => binary!(u32, 4),
        VR::SL => binary!(i32, 4),
        VR::FL => binary!(f32, 4),
        VR::FD => binary!(f64, 8),
        _ => {
            let text = std::str::from_utf8(bytes).map_err(|_| ())?;
            let text = text.trim_end_matches(['\0', ' ']);
            if text.trim().is_empty() {
                return Ok(Vec::new());
            }
            text.split('\\').map(|v| v.trim().parse::<f64>().map_err(|_| ())).collect::<Result<_, _>>()?
        }
    })
}

struct Lut {
    first: f64,
    table: Vec<f64>,
    bits: u32,
}

impl Lut {
    /// pydicom's rule: values below the first mapped value take the first entry, above
    /// the last the last; others are truncated to an index.
    fn apply(&self, v: f64) -> f64 {
        let index = (v - self.first).clamp(0.0, (self.table.len() - 1) as f64) as usize;
        self.table[index]
    }

    fn max(&self) -> f64 {
        2f64.powi(self.bits as i32) - 1.0
    }
}

/// How the pixel data is laid out, from the image pixel module.
struct Layout {
    rows: usize,
    columns: usize,
    samples: usize,
    bits_allocated: u32,
    bits_stored: u16,
    signed: bool,
    planar: bool,
    frames: u32,
    photometric: String,
}

impl Layout {
    fn read(header: &Header, options: &DecodeOptions) -> Result<Layout, String> {
        if header.obj.element_opt(tags::PIXEL_DATA).ok().flatten().is_none() {
            let float = header.obj.element_opt(tags::FLOAT_PIXEL_DATA).ok().flatten().is_some()
                || header.obj.element_opt(tags::DOUBLE_FLOAT_PIXEL_DATA).ok().flatten().is_some();
            return Err(if float {
                "float pixel data (parametric maps) is not supported".to_string()
            } else {
                "the file holds no pixel data (not an image: a report, structure set, plan or waveform?)".to_string()
            });
        }
        let rows = header.required(tags::ROWS, "Rows")? as usize;
        let columns = header.required(tags::COLUMNS, "Columns")? as usize;
        if rows == 0 || columns == 0 {
            return Err(format!("the image is {rows} x {columns} pixels (Rows x Columns): it holds no image"));
        }
        let samples = match header.float(tags::SAMPLES_PER_PIXEL)? {
            None => 1,
            Some(_) => header.required(tags::SAMPLES_PER_PIXEL, "SamplesPerPixel")? as usize,
        };
        let bits_allocated = header.required(tags::BITS_ALLOCATED, "BitsAllocated")?;
        let bits_stored = match header.float(tags::BITS_STORED)? {
            None => bits_allocated,
            Some(_) => header.required(tags::BITS_STORED, "BitsStored")?,
        };
        let photometric = header
            .text(tags::PHOTOMETRIC_INTERPRETATION)
            .unwrap_or_else(|| if samples == 1 { "MONOCHROME2" } else { "RGB" }.to_string());
        let frames = match header.float(tags::NUMBER_OF_FRAMES)? {
            None => 1,
            Some(_) => header.required(tags::NUMBER_OF_FRAMES, "NumberOfFrames")?.max(1),
        };
        if !matches!(samples, 1 | 3) {
            return Err(format!("SamplesPerPixel is {samples}; radrun reads 1 (gray) or 3 (colour)"));
        }
        let expected_samples = match photometric.as_str() {
            "MONOCHROME1" | "MONOCHROME2" | "PALETTE COLOR" => 1,
            _ => 3,
        };
        if samples != expected_samples {
            return Err(format!(
                "photometric interpretation {photometric} with {samples} sample(s) per pixel is not valid"
            ));
        }
        if bits_allocated == 1 && samples != 1 {
            return Err("1-bit pixel data must be gray (1 sample per pixel)".to_string());
        }
        if !matches!(bits_allocated, 1 | 8 | 16 | 32) {
            return Err(format!("BitsAllocated is {bits_allocated}; radrun reads 1, 8, 16 or 32"));
        }
        if bits_stored == 0 || bits_stored > bits_allocated {
            return Err(format!("BitsStored is {bits_stored} with BitsAllocated {bits_allocated}"));
        }
        within_pixel_limit(rows as u64, columns as u64, options.max_pixels)?;
        if options.frame >= frames {
            return Err(format!(
                "the file has {frames} frame(s) but data.dicom_frame = {} (frames count from 0)",
                options.frame
            ));
        }
        Ok(Layout {
            rows,
            columns,
            samples,
            bits_allocated,
            bits_stored: bits_stored as u16,
            signed: header.float(tags::PIXEL_REPRESENTATION)? == Some(1.0),
            planar: samples == 3 && header.float(tags::PLANAR_CONFIGURATION)? == Some(1.0),
            frames,
            photometric,
        })
    }

    fn pixels(&self) -> usize {
        self.rows * self.columns
    }

    /// A stored sample as its value: bits above BitsStored dropped, sign extended.
    fn value(&self, raw: u32) -> f64 {
        let bits = u32::from(self.bits_stored);
        let raw = if bits < 32 { raw & ((1u32 << bits) - 1) } else { raw };
        if self.signed && bits > 1 && raw >> (bits - 1) & 1 == 1 {
            f64::from(raw) - 2f64.powi(bits as i32)
        } else {
            f64::from(raw)
        }
    }
}

/// The colour space of a frame's samples after decompression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Space {
    Gray,
    Rgb,
    YbrFull,
    Palette,
}

fn space_of(photometric: &str) -> Result<Space, String> {
    Ok(match photometric {
        "MONOCHROME1" | "MONOCHROME2" => Space::Gray,
        "RGB" | "YBR_RCT" | "YBR_ICT" => Space::Rgb, // JPEG 2000 decoders return RGB for these
        "YBR_FULL" | "YBR_FULL_422" => Space::YbrFull,
        "PALETTE COLOR" => Space::Palette,
        other => return Err(format!("photometric interpretation {other:?} is not supported")),
    })
}

/// The frame's stored samples, pixel-interleaved (Rows x Columns x Samples), and their
/// colour space.
fn frame_samples(
    obj: &DefaultDicomObject,
    header: &Header,
    layout: &Layout,
    ts_uid: &str,
    frame: u32,
) -> Result<(Vec<f64>, Space), String> {
    let space = space_of(&layout.photometric)?;
    let element = obj.element(tags::PIXEL_DATA).map_err(|e| e.to_string())?;
    match element.value() {
        Value::Primitive(value) => Ok((native_samples(value, header, layout, frame)?, space)),
        Value::PixelSequence(sequence) if is_jpeg(ts_uid) => jpeg_samples(sequence, header, layout, frame),
        Value::PixelSequence(sequence) if ts_uid == RLE_LOSSLESS => {
            Ok((rle_samples(&frame_fragments(sequence, layout.frames, frame)?, layout)?, space))
        }
        Value::PixelSequence(sequence) => {
            let (height, width, components) =
                codestream_size(ts_uid, &frame_fragments(sequence, layout.frames, frame)?)?;
            if (height, width, components) != (layout.rows, layout.columns, layout.samples) {
                return Err(format!(
                    "the compressed frame is {height} x {width} pixels with {components} component(s) but Rows x \
                     Columns x SamplesPerPixel say {} x {} x {}",
                    layout.rows, layout.columns, layout.samples
                ));
            }
            let decoded = obj
                .decode_pixel_data_frame(frame)
                .map_err(|e| format!("could not decode pixel data: {}", cause_chain(&e)))?;
            let bytes = decoded.frame_data(0).map_err(|e| e.to_string())?;
            let space = space_of(decoded.photometric_interpretation().as_ref())?;
            let planar = decoded.planar_configuration() == dicom_pixeldata::PlanarConfiguration::PixelFirst;
            Ok((samples_from(bytes, layout, decoded.bits_allocated().into(), planar, false)?, space))
        }
        Value::Sequence(_) => Err("Pixel Data is a sequence of items, not pixels".to_string()),
    }
}

fn is_jpeg(ts_uid: &str) -> bool {
    matches!(
        ts_uid,
        "1.2.840.10008.1.2.4.50" | "1.2.840.10008.1.2.4.51" | "1.2.840.10008.1.2.4.57" | "1.2.840.10008.1.2.4.70"
    )
}

/// Native (uncompressed) samples of one frame, in the file's byte order.
fn native_samples(value: &PrimitiveValue, header: &Header, layout: &Layout, frame: u32) -> Result<Vec<f64>, String> {
    // OW values arrive as 16-bit words already in machine order, so only 32-bit samples
    // read from words need the file's word order; bytes (OB) keep the file's byte order.
    let (bytes, big_endian): (Cow<[u8]>, bool) = match value {
        PrimitiveValue::U8(b) => (Cow::Borrowed(&b[..]), header.big_endian),
        PrimitiveValue::U16(w) => {
            let words_swapped = header.big_endian && layout.bits_allocated == 32;
            let bytes = if words_swapped {
                w.chunks_exact(2).flat_map(|p| [p[1], p[0]]).flat_map(u16::to_le_bytes).collect()
            } else {
                w.iter().flat_map(|v| v.to_le_bytes()).collect()
            };
            (Cow::Owned(bytes), false)
        }
        PrimitiveValue::U32(v) => (Cow::Owned(v.iter().flat_map(|v| v.to_le_bytes()).collect()), false),
        PrimitiveValue::Empty => return Err("Pixel Data is empty".to_string()),
        _ => return Err("Pixel Data holds text or numbers, not pixels".to_string()),
    };
    let ybr422 = layout.photometric == "YBR_FULL_422";
    // two pixels of YBR_FULL_422 share one Cb and one Cr: Y0 Y1 Cb Cr
    let samples_per_pixel = if ybr422 { 2 } else { layout.samples as u64 };
    let overflow = || "Rows x Columns x SamplesPerPixel x BitsAllocated x frames is too large".to_string();
    let frame_bits = (layout.pixels() as u64)
        .checked_mul(samples_per_pixel * u64::from(layout.bits_allocated))
        .ok_or_else(overflow)?;
    let needed = frame_bits.checked_mul(u64::from(layout.frames)).ok_or_else(overflow)?.div_ceil(8);
    if (bytes.len() as u64) < needed {
        return Err(format!(
            "Pixel Data holds {} bytes but Rows x Columns x SamplesPerPixel x BitsAllocated x frames needs {needed}: \
             the file is truncated",
            bytes.len()
        ));
    }
    let start_bit = frame_bits * u64::from(frame);
    if layout.bits_allocated == 1 {
        let bit = |i: u64| {
            let at = start_bit + i;
            f64::from(bytes[(at / 8) as usize] >> (at % 8) & 1)
        };
        return Ok((0..(layout.pixels() * layout.samples) as u64).map(bit).collect());
    }
    let start = (start_bit / 8) as usize;
    let data = &bytes[start..start + (frame_bits / 8) as usize];
    if ybr422 {
        if layout.bits_allocated != 8 {
            return Err("YBR_FULL_422 with more than 8 bits per sample is not supported".to_string());
        }
        if !layout.columns.is_multiple_of(2) {
            return Err("YBR_FULL_422 with an odd number of columns is not valid".to_string());
        }
        let s: Vec<f64> = data.iter().map(|&b| f64::from(b)).collect();
        return Ok(s.chunks_exact(4).flat_map(|q| [q[0], q[2], q[3], q[1], q[2], q[3]]).collect());
    }
    samples_from(data, layout, layout.bits_allocated, layout.planar, big_endian)
}

/// Samples of 8, 16 or 32 bits from `bytes`, de-planarised when `planar` (colour planes
/// one after the other, PlanarConfiguration 1).
fn samples_from(bytes: &[u8], layout: &Layout, bits: u32, planar: bool, big_endian: bool) -> Result<Vec<f64>, String> {
    let count = layout.pixels() * layout.samples;
    let width = (bits / 8).max(1) as usize;
    if bytes.len() < count * width {
        return Err(format!("the decoded frame holds {} bytes, {} expected", bytes.len(), count * width));
    }
    let raw = |i: usize| -> u32 {
        let b = &bytes[i * width..(i + 1) * width];
        match (width, big_endian) {
            (1, _) => u32::from(b[0]),
            (2, false) => u32::from(u16::from_le_bytes([b[0], b[1]])),
            (2, true) => u32::from(u16::from_be_bytes([b[0], b[1]])),
            (_, false) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            (_, true) => u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        }
    };
    let values: Vec<f64> = (0..count).map(|i| layout.value(raw(i))).collect();
    Ok(if planar && layout.samples == 3 {
        let n = layout.pixels();
        (0..count).map(|i| values[(i % 3) * n + i / 3]).collect()
    } else {
        values
    })
}

/// The frame's bytes of an encapsulated JPEG: one fragment per frame, or the fragments
/// the offset table assigns to it (all of them for a single frame).
fn frame_fragments(sequence: &PixelFragmentSequence<Vec<u8>>, frames: u32, frame: u32) -> Result<Vec<u8>, String> {
    let fragments = sequence.fragments();
    if frames == 1 {
        return Ok(fragments.concat());
    }
    if fragments.len() == frames as usize {
        return Ok(fragments[frame as usize].clone());
    }
    let offsets = sequence.offset_table();
    if offsets.len() != frames as usize {
        return Err(format!(
            "{frames} frames in {} fragments and no basic offset table to tell which is which",
            fragments.len()
        ));
    }
    let (start, end) = (u64::from(offsets[frame as usize]), offsets.get(frame as usize + 1).map(|&o| u64::from(o)));
    let mut at = 0u64;
    let mut out = Vec::new();
    for fragment in fragments {
        if at >= start && end.is_none_or(|end| at < end) {
            out.extend_from_slice(fragment);
        }
        at += 8 + fragment.len() as u64;
    }
    Ok(out)
}

/// A JPEG frame (baseline, extended, lossless) through jpeg-decoder. When the DICOM
/// header says RGB and the JPEG has neither a JFIF nor an Adobe marker asking for a
/// colour transform, the components are taken as RGB (as libjpeg with DICOM readers do);
/// otherwise jpeg-decoder's own rules apply and YCbCr comes back as RGB.
fn jpeg_samples(
    sequence: &PixelFragmentSequence<Vec<u8>>,
    header: &Header,
    layout: &Layout,
    frame: u32,
) -> Result<(Vec<f64>, Space), String> {
    let data = frame_fragments(sequence, layout.frames, frame)?;
    if jpeg_structure(&data).map_err(|e| format!("the JPEG frame {frame} is damaged: {e}"))? {
        header.note(DecodeNote::BytesAfterEndOfImage);
    }
    let mut decoder = jpeg_decoder::Decoder::new(std::io::Cursor::new(&data));
    decoder.set_max_decoding_buffer_size(layout.pixels() * layout.samples * 2 + 1024);
    if layout.samples == 3 && layout.photometric == "RGB" && !asks_for_colour_transform(&data) {
        decoder.set_color_transform(jpeg_decoder::ColorTransform::RGB);
    }
    match decoder.read_info() {
        Err(jpeg_decoder::Error::Unsupported(jpeg_decoder::UnsupportedFeature::SamplePrecision(9..=12))) => {
            return twelve_bit_samples(&data, layout);
        }
        read => read.map_err(|e| jpeg_error(e, frame))?,
    }
    let info = decoder.info().ok_or("the JPEG frame has no header")?;
    if (usize::from(info.height), usize::from(info.width)) != (layout.rows, layout.columns) {
        return Err(format!(
            "the JPEG frame is {} x {} pixels but Rows x Columns say {} x {}",
            info.height, info.width, layout.rows, layout.columns
        ));
    }
    let pixels = decoder.decode().map_err(|e| jpeg_error(e, frame))?;
    let mask = |v: u32| layout.value(v);
    let samples: Vec<f64> = match info.pixel_format {
        jpeg_decoder::PixelFormat::L16 => {
            pixels.chunks_exact(2).map(|b| mask(u32::from(u16::from_ne_bytes([b[0], b[1]])))).collect()
        }
        jpeg_decoder::PixelFormat::L8 | jpeg_decoder::PixelFormat::RGB24 => {
            pixels.iter().map(|&b| mask(u32::from(b))).collect()
        }
        jpeg_decoder::PixelFormat::CMYK32 => return Err("CMYK JPEG pixel data is not supported".to_string()),
    };
    if samples.len() != layout.pixels() * layout.samples {
        return Err(format!(
            "the JPEG frame has {} samples, {} expected",
            samples.len(),
            layout.pixels() * layout.samples
        ));
    }
    let space = if layout.samples == 3 { Space::Rgb } else { space_of(&layout.photometric)? };
    Ok((samples, space))
}

/// The samples of a JPEG frame with 9 to 12-bit samples, through libjpeg-turbo
/// ([`decode_12_bit`]), masked to BitsStored as every frame's are.
fn twelve_bit_samples(data: &[u8], layout: &Layout) -> Result<(Vec<f64>, Space), String> {
    let values = decode_12_bit(data, (layout.rows, layout.columns, layout.samples))?;
    let samples = values.into_iter().map(|v| layout.value(u32::from(v))).collect();
    let space = if layout.samples == 3 { Space::Rgb } else { space_of(&layout.photometric)? };
    Ok((samples, space))
}

/// The size a JPEG 2000 (SIZ marker) or JPEG-LS (SOF55 marker) codestream declares:
/// (height, width, components), checked against the DICOM header before the decoders
/// (OpenJPEG, CharLS) allocate for it. A codestream whose size cannot be found is
/// refused rather than decoded blind.
fn codestream_size(ts_uid: &str, data: &[u8]) -> Result<(usize, usize, usize), String> {
    let be16 = |p: usize| data.get(p..p + 2).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])));
    let be32 = |p: usize| data.get(p..p + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize);
    if ts_uid.starts_with("1.2.840.10008.1.2.4.8") {
        // JPEG-LS: walk the marker segments from SOI to SOF55 (Lf P Y X Nf)
        let mut at = 2;
        while let (Some(&0xFF), Some(&marker)) = (data.get(at), data.get(at + 1)) {
            if marker == 0xF7 {
                let size = (be16(at + 5), be16(at + 7), data.get(at + 9));
                if let (Some(h), Some(w), Some(&n)) = size {
                    return Ok((h, w, usize::from(n)));
                }
                break;
            }
            at += 2 + be16(at + 2).ok_or("the JPEG-LS header is cut short")?;
        }
        return Err("the JPEG-LS frame has no frame header (SOF55) where one must be".to_string());
    }
    // JPEG 2000: SIZ follows SOC directly (Lsiz Rsiz Xsiz Ysiz XOsiz YOsiz XTsiz YTsiz
    // XTOsiz YTOsiz Csiz), inside a JP2 wrapper when there is one
    let head = &data[..data.len().min(1 << 16)];
    let siz = head.windows(4).position(|w| w == [0xFF, 0x4F, 0xFF, 0x51]).map(|p| p + 2);
    let size = siz.and_then(|siz| {
        let (x, y, x0, y0) = (be32(siz + 6)?, be32(siz + 10)?, be32(siz + 14)?, be32(siz + 18)?);
        Some((y.checked_sub(y0)?, x.checked_sub(x0)?, be16(siz + 38)?))
    });
    size.ok_or_else(|| "the JPEG 2000 frame has no readable image size (SIZ marker)".to_string())
}

const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";

/// An RLE Lossless frame (PS3.5 Annex G): a 64-byte header of segment offsets, one
/// PackBits segment per byte of each sample, most significant byte first. Written here
/// because dicom-pixeldata's RLE reader refuses 32-bit samples (dose grids); each
/// segment's output is capped at Rows x Columns bytes.
fn rle_samples(data: &[u8], layout: &Layout) -> Result<Vec<f64>, String> {
    let bytes_per_sample = (layout.bits_allocated / 8).max(1) as usize;
    let segments = layout.samples * bytes_per_sample;
    let u32_at = |p: usize| data.get(p..p + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
    let declared = u32_at(0).ok_or("the RLE frame has no header")?;
    if declared != segments {
        return Err(format!("the RLE frame has {declared} segments; {segments} expected for these samples"));
    }
    let n = layout.pixels();
    // every segment is decoded (and checked) before the frame is allocated, so the
    // memory used stays within what the file's bytes can expand to
    let mut planes = Vec::with_capacity(segments);
    for segment in 0..segments {
        let start = u32_at(4 + 4 * segment).ok_or("the RLE header is cut short")?;
        let end = if segment + 1 < segments { u32_at(8 + 4 * segment).unwrap_or(data.len()) } else { data.len() };
        let input = data.get(start..end.min(data.len())).ok_or("an RLE segment offset is past the frame's end")?;
        let plane = packbits(input, n);
        if plane.len() < n {
            return Err(format!("an RLE segment decodes to {} bytes, {n} expected", plane.len()));
        }
        planes.push(plane);
    }
    let mut raw = vec![0u32; n * layout.samples];
    for (segment, plane) in planes.iter().enumerate() {
        let (sample, byte) = (segment / bytes_per_sample, segment % bytes_per_sample);
        let shift = 8 * (bytes_per_sample - 1 - byte);
        for (pixel, &b) in plane.iter().enumerate() {
            raw[pixel * layout.samples + sample] |= u32::from(b) << shift;
        }
    }
    Ok(raw.into_iter().map(|v| layout.value(v)).collect())
}

/// PackBits, stopping at `limit` output bytes.
fn packbits(input: &[u8], limit: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < input.len() && out.len() < limit {
        let n = input[at] as i8;
        at += 1;
        if n >= 0 {
            let run = &input[at..(at + n as usize + 1).min(input.len())];
            out.extend_from_slice(run);
            at += run.len();
        } else if n != -128 {
            let Some(&b) = input.get(at) else { break };
            out.extend(std::iter::repeat_n(b, (1 - i32::from(n)) as usize));
            at += 1;
        }
    }
    out.truncate(limit);
    out
}

fn jpeg_error(error: jpeg_decoder::Error, frame: u32) -> String {
    match error {
        jpeg_decoder::Error::Unsupported(jpeg_decoder::UnsupportedFeature::SamplePrecision(bits)) => format!(
            "JPEG with {bits}-bit samples is not supported (radrun reads lossy JPEG with 8 to 12-bit samples and \
             lossless JPEG up to 16); decompress the file first, e.g. `dcmdjpeg IN OUT` (DCMTK) or `gdcmconv --raw \
             IN OUT`"
        ),
        e => format!("could not decode the JPEG frame {frame}: {e}"),
    }
}

/// Whether a JPEG stream carries a JFIF (APP0) marker or an Adobe (APP14) marker with a
/// non-zero transform flag, the two ways a JPEG says its components are YCbCr.
fn asks_for_colour_transform(jpeg: &[u8]) -> bool {
    let mut at = 2; // after SOI
    while at + 4 <= jpeg.len() && jpeg[at] == 0xFF {
        let marker = jpeg[at + 1];
        let len = usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
        let payload = jpeg.get(at + 4..at + 2 + len).unwrap_or_default();
        match marker {
            0xE0 if payload.starts_with(b"JFIF\0") => return true,
            0xEE if payload.starts_with(b"Adobe") => return payload.get(11).is_some_and(|&t| t != 0),
            0xDA | 0xC0..=0xCF if marker != 0xC4 && marker != 0xCC => return false, // frame or scan: no more APPn
            _ => {}
        }
        at += 2 + len;
    }
    false
}

/// Gray values after the modality LUT: the Modality LUT Sequence, else RescaleSlope and
/// RescaleIntercept (1 and 0 when absent), times DoseGridScaling when the file has one
/// (RT Dose: the values in Gy; SimpleITK leaves this factor to its user).
fn modality_values(header: &Header, layout: &Layout, samples: &[f64]) -> Result<Vec<f64>, String> {
    if let Some(item) = header.items(tags::MODALITY_LUT_SEQUENCE).and_then(|items| items.first()) {
        let lut = header.item(item).lut(tags::LUT_DESCRIPTOR, tags::LUT_DATA, layout.signed)?;
        return Ok(samples.iter().map(|&v| lut.apply(v)).collect());
    }
    let slope = header.float(tags::RESCALE_SLOPE)?.unwrap_or(1.0);
    let intercept = header.float(tags::RESCALE_INTERCEPT)?.unwrap_or(0.0);
    if slope == 0.0 || !slope.is_finite() || !intercept.is_finite() {
        return Err(format!("RescaleSlope {slope} and RescaleIntercept {intercept} do not make a valid rescale"));
    }
    let dose = header.float(tags::DOSE_GRID_SCALING)?.unwrap_or(1.0);
    if !(dose.is_finite() && dose > 0.0) {
        return Err(format!("DoseGridScaling {dose} is not a positive number"));
    }
    Ok(samples.iter().map(|&v| (v * slope + intercept) * dose).collect())
}

/// Intensities in [0, 1] and the window used (for a VOI LUT: the span of its inputs).
fn voi(header: &Header, values: &[f64], window: Window) -> Result<(Vec<f32>, (f64, f64)), String> {
    let from_file = matches!(window, Window::File | Window::Auto);
    if from_file && let Some(item) = header.items(tags::VOILUT_SEQUENCE).and_then(|items| items.first()) {
        let lut = header.item(item).lut(tags::LUT_DESCRIPTOR, tags::LUT_DATA, true)?;
        let max = lut.max();
        let pixels = values.iter().map(|&v| (lut.apply(v) / max).clamp(0.0, 1.0) as f32).collect();
        let span = lut.table.len() as f64;
        return Ok((pixels, (lut.first + span / 2.0, span)));
    }
    let file_window = || -> Result<Option<(f64, f64)>, String> {
        let center = header.float(tags::WINDOW_CENTER)?;
        let width = header.float(tags::WINDOW_WIDTH)?;
        Ok(center.zip(width).filter(|&(c, w)| w > 0.0 && c.is_finite() && w.is_finite()))
    };
    let (center, width) = match window {
        Window::Explicit { center, width } => (center, width),
        Window::Preset(p) => p.center_width(),
        Window::File => file_window()?.unwrap_or(TUTORIAL_DEFAULT_WINDOW),
        Window::Auto => file_window()?.unwrap_or_else(|| full_range_window(values)),
    };
    Ok((apply_window(values, center, width), (center, width)))
}

/// The window spanning the image's own value range (used by `window = "auto"` when the
/// file has none).
pub(crate) fn full_range_window(values: &[f64]) -> (f64, f64) {
    let (lo, hi) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() || hi <= lo {
        return (lo.max(0.0), 1.0);
    }
    ((lo + hi) / 2.0, hi - lo)
}

/// RGB values and their bit depth: YBR_FULL converted with pydicom's formula (8-bit),
/// palette indices looked up.
fn rgb_values(header: &Header, layout: &Layout, samples: Vec<f64>, space: Space) -> Result<(Vec<f64>, u32), String> {
    let bits = u32::from(layout.bits_stored);
    match space {
        Space::Rgb => Ok((samples, bits)),
        Space::Gray => Err(format!("{} with {} samples per pixel", layout.photometric, layout.samples)),
        Space::YbrFull => {
            if layout.bits_allocated != 8 {
                return Err(format!("{} with {bits} bits is not supported", layout.photometric));
            }
            let rgb = samples
                .chunks_exact(3)
                .flat_map(|p| {
                    let (y, cb, cr) = (p[0], p[1] - 128.0, p[2] - 128.0);
                    [y + 1.402 * cr, y - (0.114 * 1.772 / 0.587) * cb - (0.299 * 1.402 / 0.587) * cr, y + 1.772 * cb]
                        .map(|v: f64| (v as f32 + 0.5).floor().clamp(0.0, 255.0) as f64)
                })
                .collect();
            Ok((rgb, 8))
        }
        Space::Palette => {
            // the plain tables, else the segmented ones: pydicom's choice, made on red for all three
            let segmented = header.element(tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA).is_none()
                && header.element(tags::SEGMENTED_RED_PALETTE_COLOR_LOOKUP_TABLE_DATA).is_some();
            let luts = [
                (
                    tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
                    tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
                    tags::SEGMENTED_RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
                ),
                (
                    tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
                    tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
                    tags::SEGMENTED_GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
                ),
                (
                    tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
                    tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
                    tags::SEGMENTED_BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
                ),
            ]
            .map(|(d, t, s)| if segmented { header.segmented_lut(d, s) } else { header.lut(d, t, false) });
            let [r, g, b] = luts;
            let (r, g, b) = (r?, g?, b?);
            let rgb = samples.iter().flat_map(|&v| [r.apply(v), g.apply(v), b.apply(v)]).collect();
            Ok((rgb, r.bits))
        }
    }
}

/// A readable name for a transfer syntax UID.
fn transfer_syntax_name(uid: &str) -> String {
    use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
    TransferSyntaxRegistry.get(uid).map(|ts| ts.name().to_string()).unwrap_or_else(|| format!("unknown ({uid})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_range_window_spans_min_to_max() {
        assert_eq!(full_range_window(&[100.0, 300.0, 200.0]), (200.0, 200.0));
        let flat = full_range_window(&[7.0, 7.0]);
        assert!(flat.1 > 0.0);
    }
}
