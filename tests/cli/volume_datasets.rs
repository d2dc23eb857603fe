//! Volume datasets in recipes (`data.dims = 3`): `radrun plan` reads the example's three
//! copies of one CT set (NIfTI split folders, DICOM series, the Decathlon layout) to the
//! same voxels case by case, fits each run's preprocessing on its training cases only,
//! and refuses a broken layout naming the case and the fix.

use std::collections::BTreeMap;
use std::path::Path;

use radrun_data::nifti::{self, NiftiOptions};
use radrun_data::volume_settings::DEFAULT_MAX_VOXELS;

use crate::common::{Project, radrun, repo, stderr, stdout};

const OPTIONS: NiftiOptions =
    NiftiOptions { max_voxels: DEFAULT_MAX_VOXELS, channels_from_last_axis: false, nan_to_zero: false };

/// `radrun plan` in `dir` with `args`, which must succeed; its output.
fn plan(dir: &Path, args: &[&str]) -> String {
    let mut all = vec!["plan"];
    all.extend_from_slice(args);
    let out = radrun(dir, &all);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    stdout(&out)
}

/// The `--cases` table: case name to (shape, voxels), per dataset in plan order.
fn case_tables(output: &str) -> Vec<BTreeMap<String, (String, u64)>> {
    let mut tables = Vec::new();
    for line in output.lines() {
        if line.starts_with("Volumes in ") {
            tables.push(BTreeMap::new());
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        // split, case, shape (3 fields), spacing (3 fields), voxels
        if let ["train" | "validation" | "test", case, shape @ .., voxels] = fields.as_slice()
            && fields.len() == 9
            && let Ok(voxels) = voxels.parse::<u64>()
        {
            let table = tables.last_mut().expect("a table after its summary");
            table.insert(case.to_string(), (shape[..3].join(" "), voxels));
        }
    }
    tables
}

/// The preprocessing line of each run.
fn fitted(output: &str) -> Vec<String> {
    output
        .lines()
        .filter(|l| l.trim_start().starts_with("run ") && l.contains(" training, "))
        .map(|l| l.split_once("; ").unwrap().1.to_string())
        .collect()
}

#[test]
fn the_three_copies_of_the_example_read_to_the_same_cases() {
    let recipe = repo().join("recipes/organs_3d.toml");
    let out = plan(&repo(), &[recipe.to_str().unwrap(), "--cases"]);
    let [nifti, series, decathlon] = <[_; 3]>::try_from(case_tables(&out)).expect("three datasets");
    assert_eq!(nifti.len(), 24, "{out}");
    assert_eq!(nifti, decathlon, "the Decathlon copy holds the NIfTI copy's cases");
    assert_eq!(series.len(), 6, "{out}");
    for (case, facts) in &series {
        assert_eq!(Some(facts), nifti.get(case), "{case}: the DICOM series and its NIfTI file differ");
    }
    // shape [z, y, x] = [44..52, 64, 64]
    assert!(nifti.values().all(|(shape, voxels)| shape.ends_with("64, 64]") && voxels % 4096 == 0), "{out}");
    assert!(out.contains("Decathlon / nnU-Net layout") && out.contains("organ: in 24 of 24 cases"), "{out}");
    assert!(out.contains("stored as  LPS 6, RAS 18"), "{out}");
    let runs = fitted(&out);
    assert_eq!(runs[0], runs[2], "the same training cases give the same preprocessing");
    assert!(runs[0].starts_with("spacing [3.000, 1.500, 1.500] mm"), "{}", runs[0]);
}

#[test]
fn the_plan_shows_the_unet3d_levels_nnunet_pools_by_the_spacing_and_refuses_a_patch_that_does_not_divide() {
    let project = nifti_project();
    let recipe = std::fs::read_to_string(project.path().join("recipe.toml")).unwrap();
    // 3 mm slices at 1.5 mm in plane: level 1 is not pooled (nor convolved) along z
    let fixed = recipe
        .replace("kind = \"unet3d\"\n", "kind = \"unet3d\"\ndepth = 3\n")
        .replace("normalize = \"ct\"\n", "normalize = \"ct\"\npatch_size = [20, 32, 32]\n");
    project.recipe("fixed.toml", &fixed);
    let out = plan(project.path(), &["fixed.toml"]);
    assert!(out.contains("unet3d: 1 channel(s), patch 20x32x32 [z, y, x] at 3.00 x 1.50 x 1.50 mm"), "{out}");
    // nnU-Net's oversampling: 2 - round(2 x 0.67) of a batch of 2
    assert!(out.contains("per batch of 2 (1 forced onto a label)"), "{out}");
    // windows make the network's channels: one each
    let windows = ["--set", "data.normalize=\"window\"", "--set", "data.window=[\"abdomen\", \"bone\"]"];
    let windowed = plan(project.path(), &[&["fixed.toml"], &windows[..]].concat());
    assert!(windowed.contains("unet3d: 2 channel(s), patch 20x32x32"), "{windowed}");
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .filter(|f: &Vec<&str>| f.first().is_some_and(|w| w.starts_with("encoder") || *w == "bottleneck"))
        .collect();
    let kernels_and_pools: Vec<(&str, &str, &str)> = rows.iter().map(|r| (r[0], r[3], r[4])).collect();
    assert_eq!(
        kernels_and_pools,
        [
            ("encoder1", "1x3x3", "1x2x2"),
            ("encoder2", "3x3x3", "2x2x2"),
            ("encoder3", "3x3x3", "2x2x2"),
            ("bottleneck", "3x3x3", "-")
        ],
        "{out}"
    );
    // the default: auto, the median shape made divisible, within the memory budget
    let out = plan(project.path(), &["recipe.toml"]);
    assert!(out.contains("(auto, from the median training shape"), "{out}");
    // a patch the pooling does not divide: the key, its line and the patch that fits
    project.recipe("odd.toml", &fixed.replace("[20, 32, 32]", "[20, 30, 32]"));
    let refused = radrun(project.path(), &["plan", "odd.toml"]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    let message = stderr(&refused);
    assert!(
        message.contains("odd.toml:") && message.contains("`data.patch_size`") && message.contains("use 20x32x32"),
        "{message}"
    );
}

/// A copy of the example's NIfTI split folders in a temporary project.
pub fn nifti_project() -> Project {
    let project = Project { dir: tempfile::tempdir().unwrap() };
    copy_tree(&repo().join("datasets.example/organs3d/nifti"), &project.path().join("data"));
    project.recipe(
        "recipe.toml",
        "[data]\ndims = 3\ntask = \"segmentation\"\nroot = \"data\"\nmasks_folder = \"Masks\"\nnormalize = \"ct\"\n\
         [model]\nkind = \"unet3d\"\n",
    );
    project
}

pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() { copy_tree(&path, &target) } else { std::fs::copy(&path, &target).map(|_| ()).unwrap() }
    }
}

/// Rewrites a NIfTI file through `change` (read and written by radrun's own reader and
/// writer, which the volume tests check against nibabel).
fn rewrite(path: &Path, change: impl FnOnce(&mut radrun_data::volume::Volume)) {
    let mut volume = nifti::read(path, &OPTIONS).unwrap().volume;
    change(&mut volume);
    std::fs::write(path, nifti::encode(&volume)).unwrap();
}

#[test]
fn the_ct_statistics_come_from_the_training_cases_only() {
    let project = nifti_project();
    let before = fitted(&plan(project.path(), &["recipe.toml"]));
    assert!(before[0].contains("CT channel 0: clip"), "{before:?}");
    // a test case with extreme values moves nothing
    let images = project.path().join("data");
    rewrite(&images.join("Test/Images/organ_020.nii.gz"), |v| {
        v.voxels.iter_mut().for_each(|x| *x = *x * 40.0 + 3000.0);
    });
    assert_eq!(fitted(&plan(project.path(), &["recipe.toml"])), before, "a test case moved the statistics");
    // a training case does (so the check above can fail)
    rewrite(&images.join("Train/Images/organ_003.nii.gz"), |v| {
        v.voxels.iter_mut().for_each(|x| *x = *x * 40.0 + 3000.0);
    });
    assert_ne!(fitted(&plan(project.path(), &["recipe.toml"])), before);
}

/// `radrun plan` on the project's recipe fails with exit 2; its message.
fn plan_refused(project: &Project, extra: &[&str]) -> String {
    let mut args = vec!["plan", "recipe.toml"];
    args.extend_from_slice(extra);
    let out = radrun(project.path(), &args);
    assert_eq!(out.status.code(), Some(2), "exit 2 expected:\n{}{}", stdout(&out), stderr(&out));
    stderr(&out)
}

#[test]
fn a_mask_off_its_image_grid_is_named_or_resampled_when_asked() {
    let project = nifti_project();
    let mask = project.path().join("data/Train/Masks/organ_004.nii.gz");
    rewrite(&mask, |v| v.affine[0][3] += 0.5);
    let message = plan_refused(&project, &[]);
    assert!(message.contains("organ_004") && message.contains("Images/organ_004.nii.gz"), "{message}");
    assert!(message.contains("Masks/organ_004.nii.gz") && message.contains("origin"), "{message}");
    assert!(message.contains("data.mask_geometry = \"resample\""), "{message}");
    let out = plan(project.path(), &["recipe.toml", "--set", "data.mask_geometry=\"resample\""]);
    assert!(out.contains("masks      1 resampled onto their image's grid"), "{out}");
}

/// A two-channel Decathlon layout (nnU-Net v2) made from the example's files.
fn decathlon_project(labels: &str) -> Project {
    let project = Project { dir: tempfile::tempdir().unwrap() };
    let (from, to) = (repo().join("datasets.example/organs3d/nifti"), project.path().join("data"));
    for folder in ["imagesTr", "labelsTr"] {
        std::fs::create_dir_all(to.join(folder)).unwrap();
    }
    for case in ["organ_000", "organ_001", "organ_003", "organ_004", "organ_005"] {
        for channel in ["0000", "0001"] {
            std::fs::copy(
                from.join(format!("Train/Images/{case}.nii.gz")),
                to.join(format!("imagesTr/{case}_{channel}.nii.gz")),
            )
            .unwrap();
        }
        std::fs::copy(from.join(format!("Train/Masks/{case}.nii.gz")), to.join(format!("labelsTr/{case}.nii.gz")))
            .unwrap();
    }
    let json = format!(
        r#"{{"channel_names": {{"0": "CT", "1": "CT copy"}}, "labels": {labels}, "numTraining": 5, "file_ending": ".nii.gz"}}"#
    );
    std::fs::write(to.join("dataset.json"), json).unwrap();
    project.recipe(
        "recipe.toml",
        "[data]\ndims = 3\ntask = \"segmentation\"\nroot = \"data\"\ntest_fraction = 0.4\n[model]\nkind = \"unet3d\"\n",
    );
    project
}

#[test]
fn the_decathlon_layout_gives_channels_and_label_names_and_holds_out_a_test_set() {
    let project = decathlon_project(r#"{"background": 0, "organ": 1, "lesion": 2}"#);
    let out = plan(project.path(), &["recipe.toml"]);
    assert!(out.contains("channels   2 (CT, CT copy)") && out.contains("lesion: in"), "{out}");
    assert!(out.contains("test       0.4 of the training cases held out"), "{out}");
    // 5 cases: 2 held out for test (0.4), then one of the 3 left validates (0.11 of 3
    // rounds to 0, and a split keeps at least one)
    assert!(out.contains(": 2 training, 1 validation (0.11 of the training cases held out), 2 test cases"), "{out}");
}

#[test]
fn a_decathlon_case_without_a_channel_or_with_an_undeclared_label_is_named() {
    let project = decathlon_project(r#"{"background": 0, "organ": 1, "lesion": 2}"#);
    std::fs::remove_file(project.path().join("data/imagesTr/organ_003_0001.nii.gz")).unwrap();
    let message = plan_refused(&project, &[]);
    assert!(
        message.contains("case \"organ_003\" lacks channel file") && message.contains("organ_003_0001.nii.gz"),
        "{message}"
    );

    let project = decathlon_project(r#"{"background": 0, "organ": 1}"#);
    let message = plan_refused(&project, &[]);
    assert!(message.contains("holds label value(s) 2") && message.contains("dataset.json"), "{message}");
    assert!(message.contains("case \"organ_00"), "{message}");
}

#[test]
fn volumes_in_2d_and_images_in_3d_are_refused_saying_which_key_to_set() {
    let project = nifti_project();
    project.recipe(
        "recipe.toml",
        "[data]\ntask = \"segmentation\"\nroot = \"data\"\nmasks_folder = \"Masks\"\n[model]\nkind = \"unet\"\n",
    );
    let message = plan_refused(&project, &[]);
    assert!(message.contains("is a volume (NIfTI); set `data.dims = 3`"), "{message}");
    let message = plan_refused(&project, &["--set", "data.spacing=[3.0, 1.5, 1.5]"]);
    assert!(message.contains("data.spacing") && message.contains("set `data.dims = 3`"), "{message}");
    let volumes = nifti_project();
    let message = plan_refused(&volumes, &["--set", "train.loss=\"bce_dice\""]);
    assert!(message.contains("train.loss") && message.contains("use \"dice_ce\""), "{message}");

    let chest = Project::new(2);
    chest.recipe("recipe.toml", "[data]\ndims = 3\nroot = \"data\"\n");
    let message = plan_refused(&chest, &[]);
    assert!(message.contains("is a 2D image; with `data.dims = 3`"), "{message}");
    let message = plan_refused(&chest, &["--set", "data.image_size=[32, 32]"]);
    assert!(message.contains("data.image_size") && message.contains("for 2D images"), "{message}");
    // the volume run's evaluation and epoch keys, in a 2D recipe
    chest.recipe("recipe.toml", "[data]\nroot = \"data\"\n");
    for (set, key) in [
        ("eval.overlap=0.25", "eval.overlap"),
        ("train.iterations_per_epoch=50", "train.iterations_per_epoch"),
        ("eval.val_mode=\"volumes\"", "eval.val_mode"),
    ] {
        let message = plan_refused(&chest, &["--set", set]);
        assert!(message.contains(key) && message.contains("applies to volumes (`data.dims = 3`) only"), "{message}");
    }
}

#[test]
fn whole_volume_validation_is_for_segmentation_and_deep_supervision_for_deep_unets() {
    let series = Project { dir: tempfile::tempdir().unwrap() };
    let root = repo().join("datasets.example/ctslices");
    series.recipe("recipe.toml", &format!("[data]\ndims = 3\nroot = {:?}\n", root.to_str().unwrap()));
    let message = plan_refused(&series, &["--set", "eval.val_mode=\"volumes\""]);
    assert!(message.contains("eval.val_mode") && message.contains("cnn3d validates on whole volumes"), "{message}");
    let volumes = nifti_project();
    let message = plan_refused(&volumes, &["--set", "model.depth=2", "--set", "model.deep_supervision=true"]);
    assert!(message.contains("model.deep_supervision") && message.contains("needs depth 3 or more"), "{message}");
    // the plan says what each epoch validates on
    let planned = plan(volumes.path(), &["recipe.toml", "--set", "eval.val_mode=\"volumes\""]);
    assert!(planned.contains("each epoch validates on the validation cases whole, by sliding window"), "{planned}");
    let planned = plan(volumes.path(), &["recipe.toml"]);
    assert!(planned.contains("each epoch validates on fixed patches of the validation cases"), "{planned}");
}

#[test]
fn class_folders_of_dicom_series_are_classified_cases_grouped_by_patient() {
    // datasets.example/ctslices: <split>/<class>/<patient>/NN.dcm, one series per patient
    let project = Project { dir: tempfile::tempdir().unwrap() };
    let root = repo().join("datasets.example/ctslices");
    let text = format!("[data]\ndims = 3\nroot = {:?}\nvalidation_fraction = 0.25\n", root.to_str().unwrap());
    project.recipe("recipe.toml", &text);
    let out = plan(project.path(), &["recipe.toml", "--cases"]);
    assert!(out.contains("train      16 cases, nodule 8, normal 8"), "{out}");
    assert!(out.contains("test       8 cases, nodule 4, normal 4"), "{out}");
    // 10 slices of 32 x 32, 2.5 mm apart
    let [table] = <[_; 1]>::try_from(case_tables(&out)).unwrap();
    assert!(table.values().all(|(shape, voxels)| shape == "[10, 32, 32]" && *voxels == 10_240), "{out}");
    // a quarter of 16 patients validates, grouped by PatientID (one series each)
    assert!(out.contains(": 12 training, 4 validation"), "{out}");
}

#[test]
fn a_labels_table_names_volume_files_and_their_classes() {
    let project = nifti_project();
    let mut table = String::from("file,label,split,patient\n");
    for (split, range) in [("Train", 0..18), ("Test", 18..24)] {
        for i in range {
            // the example's lesions: every case but those with i % 3 == 2
            let label = if i % 3 == 2 { "clear" } else { "lesion" };
            let row = format!("{split}/Images/organ_{i:03}.nii.gz,{label},{},P{}\n", split.to_lowercase(), i / 2);
            table.push_str(&row);
        }
    }
    std::fs::write(project.path().join("data/labels.csv"), table).unwrap();
    project.recipe("recipe.toml", "[data]\ndims = 3\nroot = \"data\"\nlabels = \"labels.csv\"\n");
    let out = plan(project.path(), &["recipe.toml"]);
    assert!(out.contains("(labels table, classification)"), "{out}");
    assert!(out.contains("train      18 cases, clear 6, lesion 12"), "{out}");
    // two cases per patient: the patients, not the cases, are split (9 patients)
    assert!(out.contains("grouping   DICOM PatientID (or the labels table's patient)"), "{out}");
    let run = out.lines().find(|l| l.contains(" training, ")).unwrap();
    let counts: Vec<usize> = run
        .split(": ")
        .nth(1)
        .unwrap()
        .split(", ")
        .take(2)
        .map(|p| p.split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert!(counts.iter().all(|n| n % 2 == 0) && counts.iter().sum::<usize>() == 18, "{run}");
}

#[test]
fn the_decathlons_first_form_reads_4d_images_as_channels_when_asked() {
    let project = Project { dir: tempfile::tempdir().unwrap() };
    let (from, to) = (repo().join("datasets.example/organs3d/nifti/Train"), project.path().join("data"));
    for folder in ["imagesTr", "labelsTr"] {
        std::fs::create_dir_all(to.join(folder)).unwrap();
    }
    let mut pairs = Vec::new();
    for case in ["organ_000", "organ_001", "organ_003", "organ_004"] {
        // two channels in one 4D file: the image and its negative
        let mut volume = nifti::read(&from.join(format!("Images/{case}.nii.gz")), &OPTIONS).unwrap().volume;
        let negative: Vec<f32> = volume.voxels.iter().map(|v| -v).collect();
        volume.voxels.extend(negative);
        volume.channels = 2;
        std::fs::write(to.join(format!("imagesTr/{case}.nii.gz")), nifti::encode(&volume)).unwrap();
        std::fs::copy(from.join(format!("Masks/{case}.nii.gz")), to.join(format!("labelsTr/{case}.nii.gz"))).unwrap();
        pairs.push(format!(r#"{{"image": "./imagesTr/{case}.nii.gz", "label": "./labelsTr/{case}.nii.gz"}}"#));
    }
    let json = format!(
        r#"{{"modality": {{"0": "CT", "1": "negative"}}, "labels": {{"0": "background", "1": "organ", "2": "lesion"}},
            "training": [{}], "test": []}}"#,
        pairs.join(", ")
    );
    std::fs::write(to.join("dataset.json"), json).unwrap();
    project.recipe(
        "recipe.toml",
        "[data]\ndims = 3\ntask = \"segmentation\"\nroot = \"data\"\ntest_fraction = 0.25\n[model]\nkind = \"unet3d\"\n",
    );
    let message = plan_refused(&project, &[]);
    assert!(message.contains("set `data.channels_from = \"last_axis\"`"), "{message}");
    let out = plan(project.path(), &["recipe.toml", "--set", "data.channels_from=\"last_axis\""]);
    assert!(out.contains("channels   2 (CT, negative)") && out.contains("label 2    lesion"), "{out}");
}

#[test]
fn a_linked_test_folder_duplicate_names_and_unequal_channels_are_caught() {
    // a link from the training folder to the test cases is left out, not trained on
    let project = nifti_project();
    let data = project.path().join("data");
    std::os::unix::fs::symlink(data.join("Test/Images"), data.join("Train/Images/more")).unwrap();
    let out = plan(project.path(), &["recipe.toml"]);
    assert!(out.contains("train      18 cases"), "{out}");

    // two files of one case name
    let project = nifti_project();
    let images = project.path().join("data/Train/Images");
    // (gzipped under a .nii name: radrun reads a file by its bytes)
    std::fs::copy(images.join("organ_000.nii.gz"), images.join("organ_000.nii")).unwrap();
    let message = plan_refused(&project, &[]);
    assert!(message.contains("same case name (\"organ_000\")"), "{message}");

    // one case with two channels among cases of one
    let project = nifti_project();
    let case = project.path().join("data/Train/Images/organ_005.nii.gz");
    rewrite(&case, |v| {
        let copy = v.voxels.clone();
        v.voxels.extend(copy);
        v.channels = 2;
    });
    let message = plan_refused(&project, &["--set", "data.channels_from=\"last_axis\""]);
    assert!(message.contains("channel(s)") && message.contains("every case needs the same channels"), "{message}");
}

#[test]
fn one_volume_in_two_sets_is_refused_whatever_its_name() {
    let project = nifti_project();
    let data = project.path().join("data");
    for folder in ["Images", "Masks"] {
        let from = data.join(format!("Train/{folder}/organ_007.nii.gz"));
        std::fs::copy(from, data.join(format!("Test/{folder}/renamed.nii.gz"))).unwrap();
    }
    let message = plan_refused(&project, &[]);
    assert!(message.contains("holds the same volume as case \"organ_007\""), "{message}");
    assert!(message.contains("Test/Images/renamed.nii.gz"), "{message}");
    // allowed, it is a warning and the plan goes on
    plan(project.path(), &["recipe.toml", "--set", "data.allow_leakage=true"]);
}
