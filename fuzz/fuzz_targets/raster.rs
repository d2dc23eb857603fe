//! PNG and JPEG files as radrun reads them (the first byte chooses the kind), then resized.
#![no_main]

use libfuzzer_sys::fuzz_target;
use radrun_data::FileKind;
use radrun_data::decode::{DecodeOptions, decode_bytes};

fuzz_target!(|data: &[u8]| {
    let kind = if data.first() == Some(&0xFF) { FileKind::Jpeg } else { FileKind::Png };
    let options = DecodeOptions { max_pixels: 4_000_000, ..DecodeOptions::default() };
    if let Ok((image, _)) = decode_bytes(std::path::Path::new("fuzz.img"), data.to_vec(), kind, &options) {
        let _ = radrun_data::resize::resize_image(image, 32, 32, radrun_data::Resize::Bilinear);
    }
});
