//! PNG and JPEG files to gray images: through the `image` crate, JPEG through zune-jpeg
//! in strict mode after a check of its marker structure (also used for JPEG frames in
//! DICOM files), colour converted to BT.601 luma.

use std::path::Path;

use crate::decoded::{DecodeError, DecodeNote, FileKind, GrayImage, ImageInfo, luma, within_pixel_limit};

/// What decoding a PNG or JPEG may allocate besides its pixels: its metadata (a colour
/// profile, text chunks) decompressed. A 1 MB PNG whose iCCP chunk inflates to 1 GB
/// passes the pixel limit; with this budget the png crate stops inflating it (and drops
/// the profile, which radrun does not use: it reads the stored values, as Pillow does).
const METADATA_BUDGET: u64 = 16 << 20;

/// Opens a PNG or JPEG, refusing one above `max_pixels` from its header alone, before
/// anything is allocated for its pixels; every allocation is bounded by the image's own
/// size (8 bytes a pixel, the largest format) plus [`METADATA_BUDGET`].
pub(crate) fn open_raster(path: &Path, bytes: &[u8], max_pixels: u64) -> Result<image::DynamicImage, DecodeError> {
    let reader = |max_alloc: u64| -> Result<_, DecodeError> {
        let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| DecodeError::new(path, e))?;
        let mut limits = image::Limits::default();
        limits.max_alloc = Some(max_alloc);
        reader.limits(limits);
        Ok(reader)
    };
    let (width, height) = reader(METADATA_BUDGET)?.into_dimensions().map_err(|e| DecodeError::with_cause(path, &e))?;
    within_pixel_limit(u64::from(height), u64::from(width), max_pixels).map_err(|e| DecodeError::new(path, e))?;
    let pixels = u64::from(height) * u64::from(width);
    reader(pixels * 8 + METADATA_BUDGET)?.decode().map_err(|e| DecodeError::with_cause(path, &e))
}

/// A JPEG through zune-jpeg (the decoder the image crate uses) in strict mode: a damaged
/// stream is an error naming the fault, not a picture with a smear where the damage was.
/// Gray JPEGs stay gray; colour ones are converted to RGB, then BT.601 luma.
pub(crate) fn decode_jpeg(path: &Path, bytes: &[u8], max_pixels: u64) -> Result<(GrayImage, ImageInfo), DecodeError> {
    use zune_core::colorspace::ColorSpace;
    use zune_core::options::DecoderOptions;
    let trailing = jpeg_structure(bytes).map_err(|e| DecodeError::new(path, format!("the JPEG is damaged: {e}")))?;
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
    let notes = trailing.then_some(DecodeNote::BytesAfterEndOfImage).into_iter().collect();
    Ok((
        GrayImage::new(height, width, pixels),
        ImageInfo { kind: FileKind::Jpeg, height, width, bits: 8, dicom: None, notes },
    ))
}

/// Checks a JPEG's marker structure, which the Rust decoders do not (they decode a stream
/// with a stray marker or garbage in the middle as if it were fine, where libjpeg warns
/// "Corrupt JPEG data"): marker segments whose lengths fit, entropy-coded data in which
/// 0xFF is only followed by 0x00 (stuffing) or the next restart marker, up to an
/// end-of-image marker. Damage that keeps this structure (bytes replaced by other valid
/// entropy-coded bytes) cannot be seen without a decoder that reports losing
/// synchronisation.
///
/// Returns whether bytes other than padding follow the end-of-image marker. They are no
/// part of the image (older equipment pads multi-frame fragments with them), and libjpeg,
/// pylibjpeg and Pillow ignore them; so does radrun, with a note in the data summary.
/// One byte of any value, or zeros, is padding to an even length and goes unmentioned.
/// More markers after it are damage, not padding (see [`after_end_of_image`]).
pub(crate) fn jpeg_structure(bytes: &[u8]) -> Result<bool, String> {
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
            0xD9 => return after_end_of_image(&bytes[at..], at),
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

/// What follows a JPEG's end-of-image marker: padding or stray bytes (`Ok(true)` when
/// worth a note), or more JPEG markers (0xFF and a marker code), which say the marker
/// was not the image's end but damage in the middle of its data, after which the
/// decoders would fill the rest of the picture with grey.
fn after_end_of_image(rest: &[u8], at: usize) -> Result<bool, String> {
    if let Some(i) = rest.windows(2).position(|w| w[0] == 0xFF && !matches!(w[1], 0x00 | 0xFF)) {
        return Err(format!(
            "an end-of-image marker at byte {} is followed by another marker at byte {}: the image data is \
             damaged",
            at - 2,
            at + i
        ));
    }
    Ok(rest.len() > 1 && rest.iter().any(|&b| b != 0))
}

pub(crate) fn decode_raster(
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
    let bits = color.bits_per_pixel() / u16::from(color.channel_count());
    let info = ImageInfo { kind, height, width, bits, dicom: None, notes: Vec::new() };
    Ok((GrayImage::new(height, width, pixels), info))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::DEFAULT_MAX_PIXELS;

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

    fn jpeg() -> Vec<u8> {
        let gray = image::GrayImage::from_fn(16, 8, |x, y| image::Luma([(x * 16 + y) as u8]));
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new(&mut bytes).encode_image(&gray).unwrap();
        bytes
    }

    #[test]
    fn bytes_after_the_end_of_image_are_ignored_with_a_note_but_a_cut_file_is_refused() {
        let path = Path::new("x.jpg");
        let (clean, info) = decode_jpeg(path, &jpeg(), u64::MAX).unwrap();
        assert!(info.notes.is_empty());
        // one stray byte or zeros: padding to an even length, not worth a note
        for padding in [&[0x7Fu8][..], &[0, 0, 0, 0]] {
            let (image, info) = decode_jpeg(path, &[jpeg(), padding.to_vec()].concat(), u64::MAX).unwrap();
            assert_eq!((image.pixels.as_slice(), info.notes.as_slice()), (clean.pixels.as_slice(), &[][..]));
        }
        let padded = [jpeg(), vec![0x12, 0x34, 0x56, 0x78, 0x9A]].concat();
        let (image, info) = decode_jpeg(path, &padded, u64::MAX).unwrap();
        assert_eq!(image.pixels, clean.pixels);
        assert_eq!(info.notes, [DecodeNote::BytesAfterEndOfImage]);
        let bytes = jpeg();
        let cut = decode_jpeg(path, &bytes[..bytes.len() - 3], u64::MAX).unwrap_err().to_string();
        assert!(cut.contains("x.jpg") && cut.contains("cut short"), "{cut}");
    }
}
