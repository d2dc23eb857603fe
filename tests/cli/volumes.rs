//! Volumes from the command line: `radrun inspect` on NIfTI files says what nibabel says
//! of them (shape, affine, orientation, values), refuses a damaged one naming it, and
//! reads DICOM, PNG and JPEG as `dicom inspect` did.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::{Project, radrun, stderr, stdout};

/// nibabel's facts of the reference volumes (tests/reference/volumes.py), or `None`
/// outside scripts/test.sh (the test skips; in CI a missing reference fails).
fn reference() -> Option<(PathBuf, Vec<Value>)> {
    let (dir, index) = reference_index()?;
    Some((dir, index["cases"].as_array().unwrap().clone()))
}

fn reference_index() -> Option<(PathBuf, Value)> {
    let dir = radrun_data::testing::reference_dir()?.join("volumes");
    let index: Value = serde_json::from_slice(&std::fs::read(dir.join("volumes.json")).unwrap()).unwrap();
    Some((dir, index))
}

fn case<'a>(cases: &'a [Value], name: &str) -> &'a Value {
    cases.iter().find(|c| c["file"].as_str().unwrap().ends_with(name)).expect(name)
}

fn numbers(value: &Value) -> Vec<f64> {
    match value.as_array() {
        Some(items) => items.iter().flat_map(numbers).collect(),
        None => vec![value.as_f64().unwrap()],
    }
}

#[test]
fn inspect_says_what_nibabel_reads_from_a_volume() {
    let Some((dir, cases)) = reference() else { return };
    let p = Project::new(1);
    let files = ["sform-lps.nii.gz", "qform-oblique-qfac.nii.gz", "two-channels.nii.gz"];
    let paths: Vec<String> = files.iter().map(|f| case(&cases, f)["file"].as_str().unwrap().to_string()).collect();
    let mut args = vec!["inspect", "--json"];
    args.extend(paths.iter().map(String::as_str));
    let out = radrun(p.path(), &args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let parsed: Value = serde_json::from_str(&stdout(&out)).unwrap();
    for (i, name) in files.iter().enumerate() {
        let (ours, theirs) = (&parsed[i]["volume"], case(&cases, name));
        let shape = numbers(&theirs["shape"]);
        assert_eq!(numbers(&ours["shape"]), shape[..3].to_vec(), "{name}");
        assert_eq!(ours["channels"].as_u64().unwrap() as f64, shape.get(3).copied().unwrap_or(1.0), "{name}");
        assert_eq!(ours["orientation"], theirs["codes"], "{name}");
        for (a, b) in numbers(&ours["affine"]).iter().zip(numbers(&theirs["affine"])) {
            assert!((a - b).abs() <= 1e-5, "{name}: affine {} against nibabel's {}", ours["affine"], theirs["affine"]);
        }
        // the values are int16 here, exact in f32; their sums in f64 differ only by the
        // order of additions: relative 1e-12 for these few voxels
        let voxels: Vec<f64> = std::fs::read(dir.join(theirs["voxels"].as_str().unwrap()))
            .unwrap()
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
            .collect();
        let n = voxels.len() as f64;
        let mean = voxels.iter().sum::<f64>() / n;
        let sd = (voxels.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
        let values = &ours["values"];
        let min = voxels.iter().copied().fold(f64::INFINITY, f64::min);
        assert_eq!(values["min"].as_f64().unwrap(), min, "{name}");
        assert!((values["mean"].as_f64().unwrap() - mean).abs() <= 1e-12 * mean.abs().max(1.0), "{name}");
        assert!((values["sd"].as_f64().unwrap() - sd).abs() <= 1e-12 * sd.max(1.0), "{name}");
    }
    assert_eq!(parsed[0]["volume"]["affine_from"], "sform");
    assert_eq!(parsed[1]["volume"]["affine_from"], "qform");
    assert_eq!(parsed[1]["volume"]["oblique"], true);
    let text = stdout(&radrun(p.path(), &["inspect", &paths[0]]));
    for expected in ["yes, 5 x 4 x 3 voxels", "NIfTI-1, gzip", "spacing          0.8 x 0.7 x 2.5 mm", "LPS"] {
        assert!(text.contains(expected), "{expected:?} missing:\n{text}");
    }
}

#[test]
fn inspect_refuses_a_damaged_volume_and_still_reads_the_other_formats() {
    let p = Project::new(1);
    let bomb = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fuzz-regressions/nifti/bomb.nii.gz");
    let png = radrun_data::testing::files_under(&p.path().join("data"))
        .into_iter()
        .find(|f| f.extension().is_some_and(|e| e == "png"))
        .unwrap();
    let out = radrun(p.path(), &["inspect", "--json", bomb.to_str().unwrap(), png.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let parsed: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let reason = parsed[0]["reason"].as_str().unwrap();
    assert!(reason.contains("68719476736 voxels") && reason.contains("data.max_voxels"), "{reason}");
    assert_eq!((&parsed[1]["decodes"], parsed[1]["volume"].is_null()), (&Value::Bool(true), true));
    assert!(stderr(&out).contains("1 of 2 file(s) cannot be decoded"));
}

#[test]
fn inspect_reads_a_folder_of_one_dicom_series_as_a_volume() {
    let p = Project::new(1);
    let series = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets.example/ctslices/Test/nodule/SYN-CTTE100");
    let out = radrun(p.path(), &["inspect", "--json", series.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let volume = &serde_json::from_str::<Value>(&stdout(&out)).unwrap()[0]["volume"];
    // the example's series: ten 32 x 32 axial slices 2.5 mm apart, 1 mm pixels, the first
    // at (-16, -16, 0) mm LPS, which is (16, 16, 0) in RAS+
    assert_eq!(numbers(&volume["shape"]), vec![32.0, 32.0, 10.0]);
    assert_eq!(numbers(&volume["spacing_mm"]), vec![1.0, 1.0, 2.5]);
    assert_eq!(numbers(&volume["origin_mm"]), vec![16.0, 16.0, 0.0]);
    assert_eq!(volume["orientation"], "LPS");
    assert!(volume["format"].as_str().unwrap().starts_with("DICOM series, 10 slices"), "{volume}");
    // air at -1000 HU and tissue above it: modality values, not a window's 0..1
    assert!(volume["values"]["min"].as_f64().unwrap() < -900.0, "{volume}");
}

/// What nibabel reads from a NIfTI file: affine, qform, shape and voxels (first axis fastest).
fn nibabel(file: &Path) -> Value {
    let python = radrun_data::testing::venv().expect("the venv").join("bin/python");
    let script = "import json, sys, nibabel as nib\n\
                  img = nib.load(sys.argv[1])\n\
                  print(json.dumps(dict(affine=img.affine.tolist(), qform=img.get_qform().tolist(), \
                  shape=list(img.shape), dtype=str(img.get_data_dtype()), \
                  voxels=img.get_fdata().ravel(order='F').tolist())))";
    let out = Command::new(python).args(["-c", script]).arg(file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn dicom_series_become_nifti_volumes_that_nibabel_reads_as_simpleitk_reads_the_series() {
    let Some((dir, index)) = reference_index() else { return };
    let p = Project::new(1);
    let src = p.path().join("exports");
    // the example's axial series, the sagittal and oblique copies, and a series with a gap
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let folders = [
        ("axial", repo.join("datasets.example/ctslices/Test/nodule/SYN-CTTE100")),
        ("sagittal", dir.join("series/sagittal")),
        ("oblique", dir.join("series/oblique")),
        ("gap", dir.join("series-bad/gap")),
    ];
    for (name, folder) in &folders {
        std::fs::create_dir_all(src.join(name)).unwrap();
        for file in radrun_data::testing::files_under(folder) {
            std::fs::copy(&file, src.join(name).join(file.file_name().unwrap())).unwrap();
        }
    }
    let out = radrun(p.path(), &["dicom", "series", "exports", "volumes"]);
    assert_eq!(out.status.code(), Some(1), "the gap is refused: {}", stderr(&out));
    assert!(stdout(&out).contains("refused gap: a gap"), "{}", stdout(&out));
    let table = std::fs::read_to_string(p.path().join("volumes/series.csv")).unwrap();
    assert_eq!(table.lines().count(), 5, "{table}");
    let series = index["series"].as_array().unwrap();
    for (name, folder) in &folders[..3] {
        let theirs = series
            .iter()
            .find(|c| Path::new(c["folder"].as_str().unwrap()).file_name() == folder.file_name())
            .expect("SimpleITK's reading of the series");
        let ours = nibabel(&p.path().join(format!("volumes/{name}.nii.gz")));
        assert_eq!(numbers(&ours["shape"]), numbers(&theirs["size"]), "{name}");
        assert_eq!(ours["dtype"], "int16", "{name}: modality values are whole numbers");
        // SimpleITK's LPS geometry as a RAS+ affine: x and y negated
        let (d, s, o) = (numbers(&theirs["direction"]), numbers(&theirs["spacing"]), numbers(&theirs["origin"]));
        let lps = [-1.0, -1.0, 1.0];
        let expected: Vec<f64> = (0..3)
            .flat_map(|r| (0..4).map(move |c| (r, c)))
            .map(|(r, c)| lps[r] * if c < 3 { d[3 * r + c] * s[c] } else { o[r] })
            .collect();
        // the header holds the affine in float32: each sform entry within its rounding,
        // |x| 2^-24; the qform's three quaternion components are float32 too, each within
        // 2^-24, which moves a rotation entry by at most about 4 x 2^-24 = 2.4e-7 per mm of
        // spacing (at most 2.5 mm here): 1e-6 covers both
        for (what, affine) in [("sform", &ours["affine"]), ("qform", &ours["qform"])] {
            for (a, b) in numbers(affine)[..12].iter().zip(&expected) {
                assert!(
                    (a - b).abs() <= b.abs() * 2f64.powi(-23) + 1e-6,
                    "{name} {what}: {affine} against {expected:?}"
                );
            }
        }
        let voxels: Vec<f64> = std::fs::read(dir.join(theirs["voxels"].as_str().unwrap()))
            .unwrap()
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(numbers(&ours["voxels"]), voxels, "{name}: voxels");
    }
}

/// A mask made on the working grid (reoriented to RAS, cropped to its foreground,
/// resampled twice as fine) goes back onto its source scan: nibabel reads the written
/// file with the source's shape and affine, and the labels voxel for voxel.
#[test]
fn a_mask_goes_back_onto_the_source_scan_that_nibabel_reads_it_with() {
    use radrun_data::placement::{Placement, Preparation};
    let Some((_, cases)) = reference() else { return };
    let source_file = PathBuf::from(case(&cases, "anatomical.nii")["file"].as_str().unwrap());
    let options =
        radrun_data::nifti::NiftiOptions { max_voxels: 1 << 30, channels_from_last_axis: false, nan_to_zero: true };
    let mut labels = radrun_data::nifti::read(&source_file, &options).unwrap().volume;
    // a "segmentation": the brighter voxels, a second label in the brightest
    let brightest = labels.voxels.iter().copied().fold(f32::MIN, f32::max);
    labels
        .voxels
        .iter_mut()
        .for_each(|v| *v = f32::from(u8::from(*v > brightest * 0.5) + u8::from(*v > brightest * 0.8)));
    let spacing = labels.reoriented(radrun_data::volume::Orientation::Ras).spacing().map(|s| s / 2.0);
    let how = Preparation {
        orientation: radrun_data::volume::Orientation::Ras,
        crop_foreground: true,
        spacing: Some(spacing),
        order: 0,
    };
    let (working, placement) = Placement::prepare(&labels, &how);
    let back = placement.place_back(&working);
    let scratch = tempfile::tempdir().unwrap();
    let written = scratch.path().join("mask.nii.gz");
    std::fs::write(&written, radrun_data::nifti::encode(&back)).unwrap();
    let (ours, theirs) = (nibabel(&written), nibabel(&source_file));
    assert_eq!(ours["shape"], theirs["shape"]);
    // the source's affine through f64 steps and back into the header's float32: 1e-5 mm
    for (a, b) in numbers(&ours["affine"]).iter().zip(numbers(&theirs["affine"])) {
        assert!((a - b).abs() <= 1e-5, "{} against {}", ours["affine"], theirs["affine"]);
    }
    let voxels: Vec<f64> = labels.voxels.iter().map(|&v| f64::from(v)).collect();
    assert_eq!(numbers(&ours["voxels"]), voxels);
}
