//! Volume runs from the command line: a 3D U-Net with deep supervision trained on
//! patches of the example's CT set, its organ and lesion made one structure (one map,
//! read through its sigmoid), validated on whole cases, writes each test case's predicted mask on its source scan (the image's shape and
//! affine, whatever orientation the file was stored in), scores exactly the masks it
//! wrote (the Dice in volume_metrics.csv is the one the files on disk give), learns the
//! organ, leaves no working files behind, and keeps what a prediction needs: `radrun
//! predict` on the test scans writes the same masks byte for byte, on a DICOM series
//! too. A done run is skipped while its files are unchanged but refused once one
//! changed. A 3D CNN classifies whole CT series, learns the nodules, scores exactly the
//! probabilities it wrote, and `radrun predict` gives them again.

use std::collections::BTreeMap;
use std::path::Path;

use radrun_data::nifti::{self, NiftiOptions};
use radrun_data::volume::Volume;
use radrun_data::volume_settings::DEFAULT_MAX_VOXELS;

use crate::common::{Project, only_run, repo, stderr};
use crate::volume_datasets::nifti_project;

const OPTIONS: NiftiOptions =
    NiftiOptions { max_voxels: DEFAULT_MAX_VOXELS, channels_from_last_axis: false, nan_to_zero: false };

/// A small U-Net on a coarse grid (24 x 32 x 32 voxels of 6 x 3 x 3 mm): about 2 s an
/// epoch on 2 cores.
const RECIPE: &str = r#"
[data]
dims = 3
task = "segmentation"
root = "data"
masks_folder = "Masks"
normalize = "ct"
spacing = [6.0, 3.0, 3.0]
validation_fraction = 0.25

[model]
kind = "unet3d"
initial_features = 8
depth = 3
deep_supervision = true

[train]
epochs = 16
batch_size = 2
learning_rate = 0.003

[eval]
mirror = false
bootstrap = 100
keep_largest_component = [1]
val_mode = "volumes"
"#;

fn read(path: &Path) -> Volume {
    nifti::read(path, &OPTIONS).unwrap_or_else(|e| panic!("{}: {e}", path.display())).volume
}

/// Dice of `label` between two label maps of one grid (1 when both lack it).
fn dice(a: &Volume, b: &Volume, label: f32) -> f64 {
    let (mut both, mut count) = (0usize, 0usize);
    for (x, y) in a.voxels.iter().zip(&b.voxels) {
        both += usize::from(*x == label && *y == label);
        count += usize::from(*x == label) + usize::from(*y == label);
    }
    if count == 0 { 1.0 } else { 2.0 * both as f64 / count as f64 }
}

/// The project's masks with the lesion (2) made organ (1): one structure.
fn one_structure(project: &Project) {
    for split in ["Train", "Test"] {
        for entry in std::fs::read_dir(project.path().join("data").join(split).join("Masks")).unwrap() {
            let path = entry.unwrap().path();
            let mut mask = read(&path);
            mask.voxels.iter_mut().filter(|v| **v == 2.0).for_each(|v| *v = 1.0);
            std::fs::write(&path, nifti::encode(&mask)).unwrap();
        }
    }
}

#[test]
fn a_3d_unet_run_writes_its_test_masks_on_the_source_scans_and_scores_them() {
    let project = nifti_project();
    one_structure(&project);
    project.recipe("recipe.toml", RECIPE);
    let out = project.run(&["recipe.toml", "--quiet"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let run = only_run(&project, "recipe");
    let status: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("status.json")).unwrap()).unwrap();
    assert_eq!(status["state"], "done", "{status}");
    for metric in ["dice_mean", "iou_mean", "nsd_mean", "hd95_mm_median", "assd_mm_median"] {
        assert!(status["test"][metric].is_number(), "{metric} missing: {status}");
    }
    for kept in ["best.safetensors", "preprocessing.json", "split.csv", "metrics.csv", "intervals.csv"] {
        assert!(run.join(kept).is_file(), "{kept} missing");
    }
    assert!(!run.join("working").exists(), "the working cases are removed after training");
    let summary = std::fs::read_to_string(run.join("data_summary.txt")).unwrap();
    assert!(summary.contains("each epoch validates on the validation cases whole"), "{summary}");
    // each test case and label, as written
    let mut reader = csv::Reader::from_path(run.join("volume_metrics.csv")).unwrap();
    let mut written: BTreeMap<(String, String), f64> = BTreeMap::new();
    for row in reader.records() {
        let row = row.unwrap();
        written.insert((row[0].to_string(), row[1].to_string()), row[2].parse().unwrap());
    }
    assert_eq!(written.len(), 6, "6 test cases, 1 structure: {written:?}");
    let data = project.path().join("data/Test");
    let mut organ = Vec::new();
    for i in 18..24 {
        let case = format!("organ_{i:03}");
        let predicted = read(&run.join(format!("predictions/{case}.nii.gz")));
        let image = read(&data.join(format!("Images/{case}.nii.gz")));
        let reference = read(&data.join(format!("Masks/{case}.nii.gz")));
        // the source's grid, as stored (some cases are stored LPS, the network saw RAS)
        assert_eq!(predicted.shape, image.shape, "{case}");
        for (row, want) in predicted.affine.iter().zip(&image.affine) {
            for (have, want) in row.iter().zip(want) {
                assert!((have - want).abs() < 1e-4, "{case}: affine {:?} vs {:?}", predicted.affine, image.affine);
            }
        }
        let from_files = dice(&reference, &predicted, 1.0);
        let scored = written[&(case.clone(), "label 1".to_string())];
        assert!((from_files - scored).abs() < 1e-9, "{case}: files give {from_files}, scored {scored}");
        organ.push(from_files);
    }
    // (this machine: 0.83-0.89 per case; a network that learnt nothing, or a single map
    // read through a softmax, scores 0)
    let mean = organ.iter().sum::<f64>() / organ.len() as f64;
    assert!(mean > 0.75, "organ Dice per test case: {organ:?}");

    // `radrun predict` on new scans does what the test evaluation did: the same masks,
    // byte for byte, and the volumes scored; a DICOM series of one case as well
    let series = repo().join("datasets.example/organs3d/series/Test/Images/organ_018");
    let inputs = [run.to_str().unwrap(), "data/Test/Images", series.to_str().unwrap(), "--out", "new.csv"];
    let predicted = project.run(&[&["predict"], &inputs[..]].concat());
    assert_eq!(predicted.status.code(), Some(0), "{}", stderr(&predicted));
    let mut reader = csv::Reader::from_path(project.path().join("new.csv")).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 7, "6 test scans and the series");
    let mut scored = csv::Reader::from_path(run.join("volume_metrics.csv")).unwrap();
    let predicted_ml: BTreeMap<(String, String), f64> = scored
        .records()
        .map(|r| r.unwrap())
        .map(|r| ((r[0].to_string(), r[1].to_string()), r[8].parse().unwrap()))
        .collect();
    for (row, i) in rows.iter().zip(18..24) {
        let case = format!("organ_{i:03}");
        let mask = std::fs::read(project.path().join(&row[1])).unwrap();
        assert_eq!(mask, std::fs::read(run.join(format!("predictions/{case}.nii.gz"))).unwrap(), "{case}");
        let ml: f64 = row[2].parse().unwrap();
        assert!((ml - predicted_ml[&(case.clone(), "label 1".into())]).abs() < 1e-9, "{case}: {ml} mL");
    }
    // the series holds organ_018's voxels (stored LPS, as its NIfTI): the same volume, to
    // the float32 rounding of the series' spacing
    let (series_ml, nifti_ml): (f64, f64) = (rows[6][2].parse().unwrap(), rows[0][2].parse().unwrap());
    assert!((series_ml - nifti_ml).abs() < 1e-3, "series {series_ml} mL, NIfTI {nifti_ml} mL");
    evaluate_on_series(&project, &run, &written);
    let ct = &read_json(&run.join("preprocessing.json"))["ct"][0];
    let rounded = |key: &str| format!("{}", (ct[key].as_f64().unwrap() * 1e4).round() / 1e4);
    let clip = format!("clipped to [{}, {}]", rounded("lower"), rounded("upper"));
    let external = "The external set `series` (2 cases of";
    check_volume_methods(&project, &["The cases were NIfTI (24)", &clip, "surface Dice at a tolerance of", external]);

    let report = project.run(&["report", "runs/recipe"]);
    assert_eq!(report.status.code(), Some(0), "{}", stderr(&report));
    let html = std::fs::read_to_string(project.path().join("runs/recipe/report.html")).unwrap();
    assert!(html.contains("Per test case and label") && html.contains("organ_023"), "the report's volume table");
    // each case's three slices, drawn in the report, worst Dice first
    let slices = image::open(run.join("predictions/organ_018_slices.png")).unwrap();
    assert!(slices.width() > slices.height(), "three slices side by side");
    assert!(
        html.contains("Axial, coronal and sagittal slices") && html.contains("organ_018 · label 1: Dice"),
        "the slices in the report"
    );

    // done and unchanged: skipped; a mask changed since: refused, naming it
    let again = project.run(&["recipe.toml"]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert!(stderr(&again).contains("skipped (done"), "{}", stderr(&again));
    let mask = data.join("Masks/organ_020.nii.gz");
    let mut changed = read(&mask);
    changed.voxels[0] = 1.0;
    std::fs::write(&mask, nifti::encode(&changed)).unwrap();
    let refused = project.run(&["recipe.toml", "--quiet"]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    let message = stderr(&refused);
    assert!(message.contains("1 modified (Test/Masks/organ_020.nii.gz)"), "{message}");
}

/// `radrun evaluate` of the U-Net run on external sets: its own dataset is refused as
/// leakage; the DICOM series copy of two of its test cases (Test/Images/<series>,
/// Test/Masks/*.nii.gz) is refused while its masks hold a label the run merged away,
/// then scored: the masks written on the series' grid, the Dice of volume_metrics.csv
/// the one those files give, and, the series holding the NIfTI cases' voxels, the Dice
/// the run gave those cases (`written`).
fn evaluate_on_series(project: &Project, run: &Path, written: &BTreeMap<(String, String), f64>) {
    let run_arg = run.to_str().unwrap();
    let leaked = project.run(&["evaluate", run_arg, "data"]);
    assert_eq!(leaked.status.code(), Some(2), "{}", stderr(&leaked));
    assert!(stderr(&leaked).contains("the same file content as"), "{}", stderr(&leaked));
    let site = project.path().join("series_site");
    crate::volume_datasets::copy_tree(&repo().join("datasets.example/organs3d/series/Test"), &site.join("Test"));
    let refused = project.run(&["evaluate", run_arg, "series_site"]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("mask label value(s) 2 that the run was not trained on"), "{}", stderr(&refused));
    for entry in std::fs::read_dir(site.join("Test/Masks")).unwrap() {
        let path = entry.unwrap().path();
        let mut mask = read(&path);
        mask.voxels.iter_mut().filter(|v| **v == 2.0).for_each(|v| *v = 1.0);
        std::fs::write(&path, nifti::encode(&mask)).unwrap();
    }
    let scored = project.run(&["evaluate", run_arg, "series_site", "--name", "series"]);
    assert_eq!(scored.status.code(), Some(0), "{}", stderr(&scored));
    let folder = project.path().join("runs/recipe/external/series");
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(folder.join("external.json")).unwrap()).unwrap();
    assert_eq!(record["images"].as_u64(), Some(2), "{record}");
    assert_eq!(record["leakage"]["shared_files"].as_u64(), Some(0), "{record}");
    let mut reader = csv::Reader::from_path(folder.join("volume_metrics.csv")).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2, "two cases, one structure");
    for row in &rows {
        let case = &row[0];
        let predicted = read(&folder.join(format!("predictions/{case}.nii.gz")));
        let reference = read(&site.join(format!("Test/Masks/{case}.nii.gz")));
        assert_eq!(predicted.shape, reference.shape, "{case}: the mask on the series' grid");
        let scored: f64 = row[2].parse().unwrap();
        assert!((dice(&reference, &predicted, 1.0) - scored).abs() < 1e-9, "{case}: scored {scored}");
        // the series were written from the NIfTI cases' voxels: read to the same working
        // grid, segmented by the same network, they score as the run scored them
        let internal = written[&(case.to_string(), "label 1".to_string())];
        assert!((scored - internal).abs() < 1e-6, "{case}: external {scored}, internal {internal}");
    }
    assert!(folder.join("split.csv").is_file() && folder.join("intervals.csv").is_file());
    // the set's data summary: its cases, read from DICOM series
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(folder.join("data_summary.json")).unwrap()).unwrap();
    assert_eq!(summary["splits"][0]["cases"].as_u64(), Some(2), "{summary}");
    assert_eq!(summary["formats"], serde_json::json!({"DICOM series": 2}), "{summary}");
    assert!(summary["dicom_modalities"]["CT"].as_u64() == Some(2), "{summary}");
    assert!(std::fs::read_to_string(folder.join("data_summary.txt")).unwrap().contains("2 cases"));
}

#[test]
fn a_volume_run_naming_a_label_no_mask_holds_fails_before_training_saying_so() {
    let project = nifti_project();
    project.recipe("recipe.toml", &RECIPE.replace("keep_largest_component = [1]", "keep_largest_component = [7]"));
    let out = project.run(&["recipe.toml", "--quiet"]);
    assert_eq!(out.status.code(), Some(1), "a failed run: {}", stderr(&out));
    let run = only_run(&project, "recipe");
    let status: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("status.json")).unwrap()).unwrap();
    let error = status["error"].as_str().unwrap_or_default();
    assert!(error.contains("names label 7, which no mask holds (labels: 0, 1, 2)"), "{status}");
    assert!(!run.join("metrics.csv").exists() && !run.join("working").exists(), "nothing trained");
}

/// subgroups.csv of one level holding all `cases` (one patient each): scored with the
/// test set's `accuracy`, and compared with nothing.
fn assert_subgroup_is_everything(path: &Path, cases: usize, accuracy: Option<f64>) {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_string).collect();
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let row = rows.iter().find(|r| &r[column("metric")] == "accuracy").expect("an accuracy row");
    assert_eq!((&row[column("subgroup")], &row[column("level")]), ("PhotometricInterpretation", "MONOCHROME2"));
    assert_eq!((&row[column("patients")], &row[column("images")]), (&cases.to_string()[..], &cases.to_string()[..]));
    assert_eq!(row[column("value")].parse::<f64>().ok(), accuracy);
    assert!(rows.iter().all(|r| r[column("p_value")].is_empty()), "no rest to compare with");
}

/// The example's CT series (datasets.example/ctslices: normal or nodule, 10 slices of
/// 32 x 32 per patient) classified whole by recipes/nodule_cnn3d.toml's network.
fn nodule_recipe() -> String {
    let recipe = std::fs::read_to_string(repo().join("recipes/nodule_cnn3d.toml")).unwrap();
    let root = repo().join("datasets.example/ctslices");
    let recipe = recipe.replace("\"../datasets.example/ctslices\"", &format!("{:?}", root.to_str().unwrap()));
    assert!(recipe.contains(root.to_str().unwrap()), "the recipe's root");
    format!("{recipe}\n[eval]\nbootstrap = 100\nsubgroups = [\"PhotometricInterpretation\"]\nmin_subgroup = 5\n")
}

#[test]
fn a_3d_cnn_classifies_whole_series_and_predict_gives_the_same_probabilities() {
    let project = Project { dir: tempfile::tempdir().unwrap() };
    project.recipe("recipe.toml", &nodule_recipe());
    let out = project.run(&["recipe.toml", "--quiet"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let run = only_run(&project, "recipe");
    let status: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("status.json")).unwrap()).unwrap();
    assert_eq!(status["state"], "done", "{status}");
    let labels: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("labels.json")).unwrap()).unwrap();
    assert_eq!(labels, serde_json::json!({"0": "nodule", "1": "normal"}), "the classes, in class order");
    // it learns: (this machine: training loss 0.69 -> 0.01 over 40 epochs)
    let mut metrics = csv::Reader::from_path(run.join("metrics.csv")).unwrap();
    let losses: Vec<f64> = metrics.records().map(|r| r.unwrap()[3].parse().unwrap()).collect();
    assert_eq!(losses.len(), 40);
    assert!(losses[39] < losses[0] / 2.0, "training loss {losses:?}");
    // one row per test series (a series is its folder), its probabilities summing to 1;
    // the accuracy kept is the share of those rows whose most probable class is right
    let mut reader = csv::Reader::from_path(run.join("predictions.csv")).unwrap();
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        ["file", "true_class", "predicted_class", "p_nodule", "p_normal"]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 8, "8 test patients");
    let mut written = BTreeMap::new();
    for row in &rows {
        let series = Path::new(&row[0]);
        assert!(series.is_dir(), "{series:?}: the series folder");
        assert_eq!(series.parent().unwrap().file_name().unwrap().to_str(), Some(&row[1]), "its class folder");
        let p: [f64; 2] = [row[3].parse().unwrap(), row[4].parse().unwrap()];
        assert!((p[0] + p[1] - 1.0).abs() < 1e-6, "{p:?}");
        written.insert(series.file_name().unwrap().to_string_lossy().to_string(), p);
    }
    let right = rows.iter().filter(|r| r[1] == r[2]).count();
    assert_eq!(status["test"]["accuracy"].as_f64(), Some(right as f64 / 8.0), "{status}");
    // every series is MONOCHROME2: one level, the whole test set, scored as it was
    assert_subgroup_is_everything(&run.join("subgroups.csv"), 8, status["test"]["accuracy"].as_f64());
    // (this machine: 8 of 8; a network that learnt nothing gets about 4)
    assert!(right >= 7, "{right} of 8 test series classified right");
    // every file of every series is in split.csv, with its class
    let mut split = csv::Reader::from_path(run.join("split.csv")).unwrap();
    let class = split.headers().unwrap().iter().position(|h| h == "class").unwrap();
    let files: Vec<csv::StringRecord> = split.records().map(Result::unwrap).collect();
    assert_eq!(files.len(), 24 * 10, "24 series of 10 slices");
    assert!(files.iter().all(|f| f[0].contains(&format!("/{}/", &f[class]))), "each file's class");

    // `radrun predict` on the test series: the probabilities of the evaluation (to the
    // float32 rounding of a convolution summed in another order: another batch)
    let test = repo().join("datasets.example/ctslices/Test");
    let predicted = project.run(&["predict", run.to_str().unwrap(), test.to_str().unwrap(), "--out", "new.csv"]);
    assert_eq!(predicted.status.code(), Some(0), "{}", stderr(&predicted));
    let mut reader = csv::Reader::from_path(project.path().join("new.csv")).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_string).collect();
    assert_eq!(header[..4], ["file", "predicted_class", "p_nodule", "p_normal"], "{header:?}");
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 8, "the 8 test series");
    for row in &rows {
        let name = Path::new(&row[0]).file_name().unwrap().to_string_lossy().to_string();
        let p: [f64; 2] = [row[2].parse().unwrap(), row[3].parse().unwrap()];
        let want = written[&name];
        assert!((p[0] - want[0]).abs() < 1e-5 && (p[1] - want[1]).abs() < 1e-5, "{name}: {p:?} vs {want:?}");
    }

    // `radrun evaluate` on another seed's series (other synthetic patients; its Train and
    // Test folders pooled): every series scored at the run's own threshold, the accuracy
    // the share of its predictions.csv rows that are right
    let Some(copy) = crate::manuscript::external_copy(&project.path().join("generated"), "ctslices") else { return };
    let scored = project.run(&["evaluate", run.to_str().unwrap(), copy.to_str().unwrap(), "--name", "seed7"]);
    assert_eq!(scored.status.code(), Some(0), "{}", stderr(&scored));
    let folder = project.path().join("runs/recipe/external/seed7");
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(folder.join("external.json")).unwrap()).unwrap();
    assert_eq!(record["images"].as_u64(), Some(24), "24 series of the copy: {record}");
    assert!(status["test"]["threshold"].is_number(), "{status}");
    assert_eq!(record["decisions"]["threshold"], status["test"]["threshold"], "the run's own threshold");
    assert_eq!(record["leakage"]["shared_files"].as_u64(), Some(0), "{record}");
    let mut reader = csv::Reader::from_path(folder.join("predictions.csv")).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 24);
    for row in &rows {
        let series = Path::new(&row[0]);
        assert_eq!(series.parent().unwrap().file_name().unwrap().to_str(), Some(&row[1]), "its class folder");
    }
    let right = rows.iter().filter(|r| r[1] == r[2]).count() as f64;
    assert_eq!(record["test"]["accuracy"].as_f64(), Some(right / 24.0), "{record}");
    assert_subgroup_is_everything(&folder.join("subgroups.csv"), 24, record["test"]["accuracy"].as_f64());
    // (this machine: 24 of 24, as on its own test series; classes swapped would give
    // about none right, a network that learnt nothing about half)
    assert!(right >= 18.0, "{right} of 24 series of the copy classified right");
    let series = "The cases were DICOM series (24) (DICOM modalities CT (24))";
    check_volume_methods(&project, &[series, "cropped or padded about its centre", "The external set `seed7`"]);
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The methods and the checklist of the project's volume recipe (`runs/recipe`), drafted
/// from its records: every number recorded, and these `facts` stated.
fn check_volume_methods(project: &Project, facts: &[&str]) {
    let folder = project.path().join("runs/recipe");
    crate::manuscript::check_methods(&folder);
    let methods = std::fs::read_to_string(folder.join("methods.md")).unwrap();
    for fact in facts {
        assert!(methods.contains(fact), "{fact}: {methods}");
    }
}
