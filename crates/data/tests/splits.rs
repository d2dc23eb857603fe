//! Grouped splits, folds and the leakage check on small crafted datasets.

use std::path::{Path, PathBuf};

use radrun_data::{DataSettings, Error, GroupBy, Split, SplitSettings};

/// Writes a 4x4 PNG whose pixels encode `seed` (distinct seeds: distinct bytes).
fn png(path: &Path, seed: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let image = image::GrayImage::from_fn(4, 4, |x, y| image::Luma([((seed * 31 + x * 7 + y * 3) % 251) as u8]));
    image.save(path).unwrap();
}

/// Train: classes a and b, `patients` patients each with 3 images named
/// `<patient>_<n>.png`; Test: 2 other patients per class.
fn dataset(patients: u32) -> (tempfile::TempDir, DataSettings) {
    let dir = tempfile::tempdir().unwrap();
    let mut seed = 0;
    for (split, count, prefix) in [("Train", patients, "P"), ("Test", 2, "T")] {
        for class in ["a", "b"] {
            for p in 0..count {
                for n in 0..3 {
                    seed += 1;
                    png(&dir.path().join(format!("{split}/{class}/{prefix}{class}{p:02}_{n}.png")), seed);
                }
            }
        }
    }
    let settings = DataSettings {
        root: dir.path().to_path_buf(),
        image_size: [4, 4],
        group_by: GroupBy::Pattern("^(?P<group>[^_]+)_".into()),
        ..DataSettings::default()
    };
    (dir, settings)
}

fn patient(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().split('_').next().unwrap().to_string()
}

fn patients(split: &Split) -> std::collections::BTreeSet<String> {
    split.samples.iter().map(|s| patient(&s.path)).collect()
}

#[test]
fn folds_keep_each_patient_whole_and_cover_the_training_folder_once() {
    let (_dir, settings) = dataset(10);
    let images = radrun_data::discover(&settings).unwrap().load().unwrap();
    let mut validated = Vec::new();
    for fold in 1..=5 {
        let d = images.split(&SplitSettings { folds: 5, fold }).unwrap();
        assert!(patients(&d.train).is_disjoint(&patients(&d.validation)), "fold {fold}");
        // 20 patients in 5 folds, stratified: 2 of each class per fold, 6 images
        assert_eq!(d.validation.class_counts(2), vec![6, 6], "fold {fold}");
        assert!(d.validation.samples.iter().all(|s| s.origin.fold == Some(fold)));
        assert!(d.train.samples.iter().all(|s| s.origin.fold.is_some_and(|f| f != fold)));
        assert_eq!(d.test.len(), 12);
        validated.extend(d.validation.samples.iter().map(|s| s.path.clone()));
    }
    validated.sort();
    validated.dedup();
    assert_eq!(validated.len(), 60, "every training image is validated exactly once");
    // the same seed gives the same folds
    let again = images.split(&SplitSettings { folds: 5, fold: 2 }).unwrap();
    let first = images.split(&SplitSettings { folds: 5, fold: 2 }).unwrap();
    assert_eq!(patients(&again.validation), patients(&first.validation));
}

#[test]
fn the_held_out_validation_split_is_grouped() {
    let (_dir, mut settings) = dataset(10);
    settings.validation_fraction = 0.2;
    let d = radrun_data::load(&settings, &SplitSettings::default()).unwrap();
    assert!(patients(&d.train).is_disjoint(&patients(&d.validation)));
    assert_eq!(d.validation.class_counts(2), vec![6, 6]);
    let validation = d.summary.splits.iter().find(|s| s.name == "validation").unwrap();
    assert_eq!((validation.groups, validation.class_share_gap), (4, Some(0.0)));
}

#[test]
fn a_patient_in_train_and_test_is_leakage_naming_both_files() {
    let (dir, settings) = dataset(3);
    // the test patient Ta00 also has an image in the training folder
    png(&dir.path().join("Train/a/Ta00_9.png"), 999);
    let Err(Error::Leakage(message)) = radrun_data::load(&settings, &SplitSettings::default()) else {
        panic!("leakage not found")
    };
    assert!(message.starts_with("leakage: 1 patient(s)"), "{message}");
    assert!(message.contains("Train/a/Ta00_9.png (") && message.contains("Test/a/Ta00_0.png (test)"), "{message}");
    assert!(message.contains("same group") && message.contains("data.allow_leakage"), "{message}");
    assert!(!message.contains("\"Ta00\""), "the group itself is not shown: {message}");
}

#[test]
fn a_copied_file_is_leakage_even_without_groups_and_can_be_allowed() {
    let (dir, mut settings) = dataset(3);
    settings.group_by = GroupBy::None;
    std::fs::copy(dir.path().join("Test/b/Tb01_2.png"), dir.path().join("Train/b/copy.png")).unwrap();
    let Err(Error::Leakage(message)) = radrun_data::load(&settings, &SplitSettings::default()) else {
        panic!("duplicate not found")
    };
    assert!(message.contains("Train/b/copy.png (train)") && message.contains("byte-identical"), "{message}");
    settings.allow_leakage = true;
    let d = radrun_data::load(&settings, &SplitSettings::default()).unwrap();
    assert_eq!(d.summary.warnings.len(), 1);
    assert!(d.summary.to_string().contains("warning: leakage"));
}

#[test]
fn groups_from_a_csv_file_and_from_folders() {
    let (dir, mut settings) = dataset(4);
    let mut table = String::from("file,patient_id\n");
    for entry in pngs_under(dir.path()) {
        let rel = entry.strip_prefix(dir.path()).unwrap().to_string_lossy().to_string();
        // one patient per class and split: every image of a class in one group
        let group = rel.split('/').take(2).collect::<Vec<_>>().join("-");
        table.push_str(&format!("{rel},{group}\n"));
    }
    std::fs::write(dir.path().join("patients.csv"), &table).unwrap();
    settings.group_by = GroupBy::Csv(PathBuf::from("patients.csv"));
    let images = radrun_data::discover(&settings).unwrap().load().unwrap();
    let d = images.split(&SplitSettings { folds: 2, fold: 1 }).unwrap();
    // two groups (one per class) in two folds: each fold holds one whole class
    assert_eq!(d.summary.splits[1].groups, 1);
    // an image missing from the table is named
    png(&dir.path().join("Train/a/new_0.png"), 500);
    let Err(e) = radrun_data::discover(&settings) else { panic!("missing row accepted") };
    assert!(e.to_string().contains("Train/a/new_0.png") && e.to_string().contains("not in the `file` column"), "{e}");

    settings.group_by = GroupBy::Folder;
    let Err(e) = radrun_data::discover(&settings) else { panic!("image outside a patient folder accepted") };
    assert!(e.to_string().contains("not in a sub-folder") && e.to_string().contains("other image(s)"), "{e}");
}

#[test]
fn folds_refuse_a_validation_folder() {
    let (dir, settings) = dataset(2);
    png(&dir.path().join("Validation/a/v_0.png"), 700);
    png(&dir.path().join("Validation/b/v_0.png"), 701);
    let images = radrun_data::discover(&settings).unwrap().load().unwrap();
    let e = images.split(&SplitSettings { folds: 3, fold: 1 }).unwrap_err();
    assert!(matches!(e, Error::FoldsWithValidationFolder { .. }), "{e}");
}

#[test]
fn a_fold_left_without_training_images_names_the_groups() {
    // every image shares one patient (anonymised DICOMs often do): a fold takes them all
    let (dir, mut settings) = dataset(3);
    let mut table = String::from("file,patient\n");
    for file in pngs_under(dir.path()) {
        table.push_str(&format!("{},same\n", file.strip_prefix(dir.path()).unwrap().display()));
    }
    std::fs::write(dir.path().join("groups.csv"), table).unwrap();
    settings.group_by = GroupBy::Csv(PathBuf::from("groups.csv"));
    settings.allow_leakage = true;
    let images = radrun_data::discover(&settings).unwrap().load().unwrap();
    let e = images.split(&SplitSettings { folds: 3, fold: 1 }).unwrap_err().to_string();
    assert!(e.contains("no training images") && e.contains("1 patient(s)") && e.contains("fold 1 of 3"), "{e}");
}

fn pngs_under(dir: &Path) -> Vec<PathBuf> {
    radrun_data::testing::files_under(dir).into_iter().filter(|p| p.extension().is_some_and(|e| e == "png")).collect()
}
