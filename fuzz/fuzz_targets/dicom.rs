//! The DICOM path, as radrun reads a training image: decode (every window preset, so
//! modality and VOI steps run), then resize to the model's size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use radrun_data::decode::{DecodeOptions, decode_bytes};
use radrun_data::{FileKind, Window, WindowPreset, Windows};

fuzz_target!(|data: &[u8]| {
    let options = DecodeOptions {
        windows: Windows(vec![Window::Auto, Window::File, Window::Preset(WindowPreset::Lung)]),
        frame: 0,
        max_pixels: 4_000_000,
        colour: true,
        stored: false,
        modality_values: false,
    };
    if let Ok((image, _)) = decode_bytes(std::path::Path::new("fuzz.dcm"), data.to_vec(), FileKind::Dicom, &options) {
        let _ = radrun_data::resize::resize_image(image, 32, 32, radrun_data::Resize::Bilinear);
    }
});
