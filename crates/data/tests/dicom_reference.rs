//! DICOM decoding against pydicom + numpy on pydicom's own test files (issue #2: rescale
//! slope/intercept, window, MONOCHROME1, compressed transfer syntaxes, first frame of a
//! multi-frame file). The reference values are computed by tests/reference/make_references.py,
//! which scripts/test.sh runs before the suite.

use std::path::PathBuf;

use radrun_data::decode::{DecodeOptions, decode};
use radrun_data::{FileKind, Window};

#[test]
fn decoded_pixels_match_pydicom() {
    let Some(dir) = radrun_data::testing::reference_dir() else { return };
    let index: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(dir.join("dicom.json")).expect("dicom.json")).expect("valid json");
    assert!(index.len() >= 10, "expected at least 10 reference files, found {}", index.len());
    let mut syntaxes = std::collections::BTreeSet::new();
    for entry in &index {
        let file = PathBuf::from(entry["file"].as_str().unwrap());
        let expected: Vec<f32> = std::fs::read(dir.join("dicom").join(entry["expected"].as_str().unwrap()))
            .unwrap()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let tolerance = entry["tolerance"].as_f64().unwrap() as f32 + 1e-5;
        assert_eq!(FileKind::of(&file), Some(FileKind::Dicom));
        let (image, info) = decode(&file, &DecodeOptions { window: Window::File, frame: 0 })
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert_eq!(
            (image.height, image.width),
            (entry["rows"].as_u64().unwrap() as usize, entry["columns"].as_u64().unwrap() as usize)
        );
        let worst = image.pixels.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst <= tolerance, "{}: max difference {worst} > {tolerance}", file.display());
        let dicom = info.dicom.expect("DICOM info");
        assert_eq!(dicom.photometric, entry["photometric"].as_str().unwrap());
        syntaxes.insert(dicom.transfer_syntax);
    }
    for needed in ["RLE Lossless", "Deflated Explicit VR Little Endian", "Explicit VR Big Endian"] {
        assert!(syntaxes.iter().any(|s| s.contains(needed)), "no reference file in {needed}: {syntaxes:?}");
    }
    assert!(syntaxes.iter().any(|s| s.contains("JPEG 2000")), "no JPEG 2000 reference: {syntaxes:?}");
}

#[test]
fn explicit_and_preset_windows_override_the_file() {
    let Some(dir) = radrun_data::testing::reference_dir() else { return };
    let index: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(dir.join("dicom.json")).unwrap()).unwrap();
    let ct = index.iter().find(|e| e["expected"] == "CT_small.f32").expect("CT_small reference");
    let file = PathBuf::from(ct["file"].as_str().unwrap());
    let (lung, _) =
        decode(&file, &DecodeOptions { window: Window::Preset(radrun_data::WindowPreset::Lung), frame: 0 }).unwrap();
    let (explicit, info) =
        decode(&file, &DecodeOptions { window: Window::Explicit { center: -600.0, width: 1500.0 }, frame: 0 }).unwrap();
    assert_eq!(lung.pixels, explicit.pixels);
    assert_eq!(info.dicom.unwrap().window, (-600.0, 1500.0));
    let too_far = decode(&file, &DecodeOptions { window: Window::Auto, frame: 3 }).unwrap_err();
    assert!(too_far.to_string().contains("has 1 frame(s) but data.dicom_frame = 3"), "{too_far}");
}
