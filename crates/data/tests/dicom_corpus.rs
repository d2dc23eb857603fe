//! DICOM decoding against pydicom (+ pylibjpeg) on every file of pydicom's own test
//! corpus, plus files made from it for faults found on public corpora (VR UN rescale,
//! Modality and VOI LUT Sequences, uncompressed YBR_FULL, trailing padding): each file
//! decodes to pydicom's pixels (tests/reference/make_references.py: `dicom_expected`) or
//! is refused with an error that names it and the reason. Nothing is hand-picked: the
//! reference index lists every file of the corpus folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use radrun_data::decode::{DecodeNote, DecodeOptions, ImageInfo, decode};
use radrun_data::{FileKind, Window, Windows};

/// Files pydicom decodes and radrun refuses, with the reason it must give (none since
/// 12-bit JPEG is decoded through libjpeg-turbo).
const REFUSED: &[(&str, &str)] = &[];

fn index() -> Option<(PathBuf, Vec<serde_json::Value>)> {
    let dir = radrun_data::testing::reference_dir()?;
    let index = serde_json::from_slice(&std::fs::read(dir.join("dicom.json")).expect("dicom.json")).expect("json");
    Some((dir, index))
}

fn expected(dir: &Path, entry: &serde_json::Value) -> Vec<f32> {
    std::fs::read(dir.join("dicom").join(entry["expected"].as_str().unwrap()))
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

#[test]
fn every_corpus_file_decodes_like_pydicom_or_is_refused_with_its_reason() {
    let Some((dir, index)) = index() else { return };
    let corpus = index
        .iter()
        .map(|e| PathBuf::from(e["file"].as_str().unwrap()))
        .find(|f| f.ends_with("test_files/CT_small.dcm"))
        .expect("pydicom's corpus in the index")
        .parent()
        .unwrap()
        .to_path_buf();
    let on_disk = radrun_data::testing::files_under(&corpus);
    let listed: std::collections::BTreeSet<PathBuf> =
        index.iter().map(|e| PathBuf::from(e["file"].as_str().unwrap())).filter(|f| f.starts_with(&corpus)).collect();
    assert_eq!(listed.len(), on_disk.len(), "the reference index must list every file of {}", corpus.display());

    let mut failures = Vec::new();
    let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
    for entry in &index {
        let file = PathBuf::from(entry["file"].as_str().unwrap());
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let frame = entry["frame"].as_u64().unwrap_or(0) as u32;
        let options = DecodeOptions { frame, ..DecodeOptions::default() };
        let result = std::panic::catch_unwind(|| decode(&file, &options));
        let Ok(result) = result else {
            failures.push(format!("{name}: radrun panicked"));
            continue;
        };
        let pydicom = entry["pydicom"].as_str().unwrap();
        match (pydicom, result) {
            ("decoded", Ok((image, info))) => {
                failures.extend(frame_facts_differ(entry, &info).map(|fault| format!("{name} frame {frame}: {fault}")));
                let size = (entry["rows"].as_u64().unwrap() as usize, entry["columns"].as_u64().unwrap() as usize);
                if (image.height, image.width) != size {
                    failures.push(format!(
                        "{name}: {}x{} pixels, pydicom {}x{}",
                        image.height, image.width, size.0, size.1
                    ));
                    continue;
                }
                let tolerance = entry["tolerance"].as_f64().unwrap() as f32;
                let worst =
                    image.pixels.iter().zip(expected(&dir, entry)).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
                if tolerance > 1e-4 {
                    eprintln!("lossy {name}: max difference {worst} (bound {tolerance})");
                }
                if worst > tolerance {
                    failures.push(format!(
                        "{name} frame {frame} ({}): max difference {worst} > {tolerance}",
                        entry["intensities"].as_str().unwrap()
                    ));
                }
                *outcomes.entry("equal to pydicom").or_default() += 1;
                if matches!(entry["intensities"].as_str(), Some("colour" | "palette")) {
                    // data.channels = 3 keeps red, green and blue: their luma is the gray image
                    let (rgb, _) = decode(&file, &DecodeOptions { colour: true, ..options.clone() }).unwrap();
                    let plane = rgb.height * rgb.width;
                    assert_eq!(rgb.planes, 3, "{name}");
                    let worst = (0..plane)
                        .map(|i| {
                            let luma = 0.299 * rgb.pixels[i]
                                + 0.587 * rgb.pixels[plane + i]
                                + 0.114 * rgb.pixels[2 * plane + i];
                            (luma - image.pixels[i]).abs()
                        })
                        .fold(0f32, f32::max);
                    // the gray image is the float64 luma rounded once; here three planes,
                    // each rounded to float32, weighted and added in float32: six roundings
                    // of values <= 1 (6e-8 each) at most, far below 1e-5 and far below a
                    // plane out of place (1e-2 and more)
                    assert!(worst < 1e-5, "{name}: the colour planes' luma differs from the gray image by {worst}");
                }
            }
            ("decoded", Err(e)) => match REFUSED.iter().find(|(f, _)| *f == name) {
                Some((_, reason)) if e.to_string().contains(reason) => {
                    *outcomes.entry("refused, listed").or_default() += 1;
                }
                _ => failures.push(format!("{name}: pydicom decodes it, radrun refuses: {e}")),
            },
            (_, Ok(_)) => failures.push(format!("{name}: pydicom cannot decode it ({pydicom}) but radrun does")),
            (_, Err(e)) => {
                let message = e.to_string();
                if !message.contains(&file.display().to_string()) || message.trim_end().ends_with(':') {
                    failures.push(format!("{name}: the refusal must name the file and a reason: {message}"));
                }
                if FileKind::of(&file) == Some(FileKind::Dicom) {
                    eprintln!("refused as pydicom does: {message}");
                }
                *outcomes.entry("refused, as by pydicom").or_default() += 1;
            }
        }
    }
    eprintln!("{outcomes:?}");
    assert!(failures.is_empty(), "{} of {} cases fail:\n{}", failures.len(), index.len(), failures.join("\n"));
    assert!(outcomes["equal to pydicom"] >= 90, "{outcomes:?}");
}

/// The frame's position and pixel spacing, and whether values came from Enhanced
/// functional groups, against pydicom's view of the frame (`frame_view` in the
/// reference script): per-frame group, else shared group, else top level. Positions and
/// spacings are decimal strings read by both sides: equal to 1e-9.
fn frame_facts_differ(entry: &serde_json::Value, info: &ImageInfo) -> Option<String> {
    let dicom = info.dicom.as_ref()?;
    let numbers = |key: &str| -> Option<Vec<f64>> {
        entry.get(key).map(|v| v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect())
    };
    let close = |a: &[f64], b: &[f64]| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-9);
    if let Some(expected) = numbers("ImagePositionPatient")
        && !dicom.position_mm.is_some_and(|p| close(&p, &expected))
    {
        return Some(format!("position {:?}, pydicom {expected:?}", dicom.position_mm));
    }
    if let Some(expected) = numbers("PixelSpacing").filter(|s| s.len() == 2 && s.iter().all(|&v| v > 0.0))
        && !dicom.pixel_spacing_mm.is_some_and(|p| close(&p, &expected))
    {
        return Some(format!("pixel spacing {:?}, pydicom {expected:?}", dicom.pixel_spacing_mm));
    }
    let from_groups = info.notes.contains(&DecodeNote::FunctionalGroups);
    (entry["functional_groups"].as_bool() != Some(from_groups))
        .then(|| format!("values from functional groups: radrun {from_groups}, pydicom {}", entry["functional_groups"]))
}

#[test]
fn enhanced_frames_and_padded_jpeg_frames_are_in_the_corpus() {
    // the corpus test above covers them only if the reference made them: a guard against
    // a reference script that silently stopped writing them
    let Some((_, index)) = index() else { return };
    let frames = |name: &str| index.iter().filter(|e| e["file"].as_str().unwrap().ends_with(name)).count();
    assert_eq!(frames("enhanced_ct_per_frame_rescale.dcm"), 3);
    assert_eq!(frames("enhanced_mr_per_frame_window.dcm"), 3);
    let padded =
        index.iter().find(|e| e["file"].as_str().unwrap().ends_with("SC_rgb_jpeg_bytes_after_end.dcm")).unwrap();
    assert_eq!(padded["pydicom"], "decoded");
    let file = PathBuf::from(padded["file"].as_str().unwrap());
    let (_, info) = decode(&file, &DecodeOptions::default()).expect("stray bytes after the JPEG's end are ignored");
    assert_eq!(info.notes, [DecodeNote::BytesAfterEndOfImage]);
}

#[test]
fn explicit_and_preset_windows_override_the_file() {
    let Some((_, index)) = index() else { return };
    let ct = index.iter().find(|e| e["file"].as_str().unwrap().ends_with("test_files/CT_small.dcm")).unwrap();
    let file = PathBuf::from(ct["file"].as_str().unwrap());
    let with = |window, frame| DecodeOptions { windows: Windows::one(window), frame, ..DecodeOptions::default() };
    let (lung, _) = decode(&file, &with(Window::Preset(radrun_data::WindowPreset::Lung), 0)).unwrap();
    let (explicit, info) = decode(&file, &with(Window::Explicit { center: -600.0, width: 1500.0 }, 0)).unwrap();
    assert_eq!(lung.pixels, explicit.pixels);
    assert_eq!(info.dicom.unwrap().window, (-600.0, 1500.0));
    // several windows: one plane each, each the single-window image
    let presets =
        [radrun_data::WindowPreset::Lung, radrun_data::WindowPreset::Mediastinum, radrun_data::WindowPreset::Bone];
    let windows = Windows(presets.iter().map(|&p| Window::Preset(p)).collect());
    let (stacked, _) = decode(&file, &DecodeOptions { windows, ..DecodeOptions::default() }).unwrap();
    assert_eq!(stacked.planes, 3);
    for (plane, preset) in stacked.pixels.chunks_exact(stacked.height * stacked.width).zip(presets) {
        assert_eq!(plane, decode(&file, &with(Window::Preset(preset), 0)).unwrap().0.pixels.as_slice());
    }
    let too_far = decode(&file, &with(Window::Auto, 3)).unwrap_err();
    assert!(too_far.to_string().contains("has 1 frame(s) but data.dicom_frame = 3"), "{too_far}");
}

/// 1-bit DICOM masks (as DICOM SEG stores them) are read as label masks: pydicom's
/// liver_1frame.dcm, whose stored bits are the labels.
#[test]
fn one_bit_dicom_files_are_read_as_label_masks() {
    let Some((dir, index)) = index() else { return };
    for name in ["liver_1frame.dcm", "liver_expb_1frame.dcm"] {
        let entry = index.iter().find(|e| e["file"].as_str().unwrap().ends_with(name)).unwrap();
        let mask = radrun_data::decode::decode_mask(&PathBuf::from(entry["file"].as_str().unwrap())).unwrap();
        // pydicom's values (0 and 1) are what the reference's value-range window kept
        let expected: Vec<u8> = expected(&dir, entry).iter().map(|&v| v as u8).collect();
        assert_eq!(mask.labels, expected, "{name}");
        assert!(mask.labels.contains(&1) && mask.labels.contains(&0), "{name}");
    }
}

/// Every frame of a multi-frame file from one parse (`data.series` reads frames so):
/// the frames the reference holds equal pydicom's, the others what decoding them one by
/// one gives.
#[test]
fn all_frames_of_a_file_decode_from_one_parse() {
    let Some((dir, index)) = index() else { return };
    let mut checked = 0;
    for entry in index.iter().filter(|e| e["frame"].as_u64().is_some_and(|f| f > 0)) {
        let file = PathBuf::from(entry["file"].as_str().unwrap());
        let frames = radrun_data::decode::decode_all_frames(&file, &DecodeOptions::default()).unwrap();
        let frame = entry["frame"].as_u64().unwrap() as usize;
        assert!(frames.len() > frame, "{}", file.display());
        let last = &frames[frame].0.pixels;
        let worst = last.iter().zip(expected(&dir, entry)).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst <= entry["tolerance"].as_f64().unwrap() as f32, "{}: {worst}", file.display());
        for (frame, (image, _)) in frames.iter().enumerate().take(3) {
            let one = decode(&file, &DecodeOptions { frame: frame as u32, ..DecodeOptions::default() }).unwrap().0;
            assert_eq!(image.pixels, one.pixels, "{} frame {frame}", file.display());
        }
        checked += 1;
    }
    assert!(checked >= 5, "{checked} multi-frame files");
}
