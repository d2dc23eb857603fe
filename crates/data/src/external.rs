//! An external validation set: labelled images from elsewhere (another hospital,
//! scanner or period), read with a trained run's `[data]` settings (`root` pointing at
//! the set) and every image scored as a test set. It is never split or trained on.
//!
//! Its folder holds one of radrun's layouts: class folders (classification), image and
//! mask folders (segmentation), or a labels table (`data.labels`, every row scored
//! whatever its `split` column says). The layout sits either directly in the folder or in
//! split folders named as the run's (`data.train`, `data.test`, the validation folder),
//! which are then pooled: a copy of a training dataset's layout is read whole. Classes
//! the run does not know are an error naming them; classes the set lacks are reported.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::Error;
use crate::cache::{CachePlace, decode_to_scratch};
use crate::discover::{
    self, Found, checked_split, estimated_bytes, find_classification, find_segmentation, subfolders,
};
use crate::load::{decode_split, group_count, label_names};
use crate::paths::path_text;
use crate::sample::{Dataset, Split};
use crate::settings::{AUTO, DataSettings, Task};
use crate::summary::DataSummary;

/// An external set read for scoring: every image in the dataset's test split (training
/// and validation are empty), with the run's classes in the run's order.
#[derive(Debug)]
pub struct External {
    pub dataset: Dataset,
    /// The run's classes (labels, for segmentation) no image of the set holds.
    pub missing_classes: Vec<String>,
}

/// Reads the external set at `settings.root` as a run with these settings reads its
/// data; `classes` are the run's (segmentation: its label names).
///
/// Its images stay in memory unless `data.cache` says disk, or (`"auto"`) they would
/// take more than `place`'s memory budget: they are then kept in a scratch file under
/// `place`'s folder, deleted when they are dropped (an external set is scored once, so no
/// cache file is left for later).
pub fn load_external(settings: &DataSettings, classes: &[String], place: &CachePlace) -> Result<External, Error> {
    let root = &settings.root;
    if !root.is_dir() {
        return Err(if root.exists() { Error::RootNotAFolder(root.clone()) } else { Error::MissingRoot(root.clone()) });
    }
    let mut found = if settings.labels.as_os_str().is_empty() {
        in_folders(settings, classes)?
    } else {
        in_table(settings, classes)?
    };
    discover::assign_groups(settings, found.candidates.iter_mut())?;
    let files = checked_split("test", root.clone(), found, settings)?;
    let read = if place.on_disk(settings, estimated_bytes(settings, files.found.candidates.len())) {
        tracing::info!("the external set's images are kept in a scratch file in {}", path_text(&place.dir));
        decode_to_scratch(files, settings, place)?
    } else {
        decode_split(files, settings, &mut Ok, &mut Ok)?
    };
    if settings.task == Task::Segmentation {
        let found_labels = label_names(read.samples.iter());
        if found_labels.len() > classes.len() {
            return Err(Error::UnknownClasses {
                source_path: root.clone(),
                unknown: found_labels[classes.len()..].join(", "),
                known: classes.join(", "),
            });
        }
    }
    let mut summary = DataSummary::new(root, settings.task);
    summary.grouping = settings.group_by.describe();
    summary.warnings = crate::table::table_warnings(settings);
    read.record(&mut summary);
    summary.classes = classes.to_vec();
    let test = Split { name: "test", samples: Arc::from(read.samples) };
    let counts = test.class_counts(classes.len());
    summary.record_split("test", test.len(), &counts, group_count(&test.samples), None);
    let missing_classes = classes.iter().zip(&counts).filter(|(_, n)| **n == 0).map(|(c, _)| c.clone()).collect();
    let (height, width) = settings.height_width();
    let empty = |name| Split { name, samples: Arc::from(Vec::new()) };
    let dataset = Dataset {
        task: settings.task,
        classes: classes.to_vec(),
        height,
        width,
        train: empty("train"),
        validation: empty("validation"),
        test,
        summary,
    };
    Ok(External { dataset, missing_classes })
}

/// The folders holding the set's layout: those of its sub-folders named as the run's
/// split folders, or else the set's folder itself.
pub(crate) fn layout_folders(settings: &DataSettings) -> Vec<PathBuf> {
    let validation = if settings.validation == AUTO { "Validation" } else { settings.validation.as_str() };
    let named: BTreeSet<&str> = [settings.train.as_str(), settings.test.as_str(), validation].into();
    let splits: Vec<PathBuf> = named.into_iter().map(|name| settings.root.join(name)).filter(|p| p.is_dir()).collect();
    if splits.is_empty() { vec![settings.root.clone()] } else { splits }
}

/// The images of the class folders (or image and mask folders) of every layout folder.
fn in_folders(settings: &DataSettings, classes: &[String]) -> Result<Found, Error> {
    let mut pooled = Found::default();
    for folder in layout_folders(settings) {
        let found = match settings.task {
            Task::Classification | Task::Multilabel => {
                let names: Vec<String> = subfolders(&folder)?
                    .iter()
                    .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .collect();
                let unknown: Vec<&String> = names.iter().filter(|n| !classes.contains(n)).collect();
                if !unknown.is_empty() {
                    return Err(unknown_classes(&folder, &unknown, classes));
                }
                find_classification(&folder, classes, None)?
            }
            Task::Segmentation => find_segmentation(&folder, settings)?,
        };
        pooled.candidates.extend(found.candidates);
        pooled.ignored.extend(found.ignored);
        pooled.problems.extend(found.problems);
    }
    Ok(pooled)
}

/// The images the labels table lists, every row (its labels must be the run's classes).
fn in_table(settings: &DataSettings, classes: &[String]) -> Result<Found, Error> {
    let table = settings.root.join(&settings.labels);
    let rows = discover::read_table_rows(settings, &table, true)?;
    let named: BTreeSet<&String> = rows.iter().flat_map(|r| r.labels.iter()).collect();
    let unknown: Vec<&String> = named.into_iter().filter(|l| !classes.contains(l)).collect();
    if !unknown.is_empty() {
        return Err(unknown_classes(&table, &unknown, classes));
    }
    let mut splits = discover::found_from_rows(settings, &table, &rows, classes);
    Ok(splits.remove("test").unwrap_or_default())
}

fn unknown_classes(source: &Path, unknown: &[&String], classes: &[String]) -> Error {
    let unknown: Vec<&str> = unknown.iter().map(|c| c.as_str()).collect();
    Error::UnknownClasses { source_path: source.to_path_buf(), unknown: unknown.join(", "), known: classes.join(", ") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::GroupBy;

    /// Images kept in memory, whatever their size.
    fn memory() -> CachePlace {
        CachePlace { dir: PathBuf::from("/nonexistent"), memory_budget: u64::MAX }
    }

    fn png(path: &Path, value: u8) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::GrayImage::from_pixel(8, 8, image::Luma([value])).save(path).unwrap();
    }

    fn settings(root: &Path) -> DataSettings {
        DataSettings { root: root.to_path_buf(), image_size: [8, 8], group_by: GroupBy::None, ..Default::default() }
    }

    fn classes(names: &[&str]) -> Vec<String> {
        names.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn class_folders_are_read_directly_or_pooled_from_split_folders() {
        let dir = tempfile::tempdir().unwrap();
        png(&dir.path().join("flat/normal/a.png"), 10);
        png(&dir.path().join("flat/nodule/b.png"), 200);
        let known = classes(&["nodule", "normal", "effusion"]);
        let external = load_external(&settings(&dir.path().join("flat")), &known, &memory()).unwrap();
        assert_eq!(external.dataset.test.class_labels(), vec![0, 1]);
        assert_eq!(external.missing_classes, vec!["effusion".to_string()]);
        assert!(external.dataset.train.samples.is_empty() && external.dataset.validation.samples.is_empty());
        // a copy of a training layout: its split folders pooled
        png(&dir.path().join("copy/Train/normal/c.png"), 10);
        png(&dir.path().join("copy/Test/nodule/d.png"), 200);
        png(&dir.path().join("copy/Test/normal/e.png"), 10);
        let data = DataSettings { train: "Train".into(), test: "Test".into(), ..settings(&dir.path().join("copy")) };
        let found = in_folders(&data, &known).unwrap();
        let names: Vec<String> =
            found.candidates.iter().map(|c| path_text(Path::new(c.path.file_name().unwrap()))).collect();
        assert_eq!(names, ["d.png", "e.png", "c.png"]);
        assert_eq!(load_external(&data, &known, &memory()).unwrap().dataset.summary.splits[0].images, 3);
    }

    #[test]
    fn a_class_the_run_does_not_know_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        png(&dir.path().join("normal/a.png"), 10);
        png(&dir.path().join("fracture/b.png"), 200);
        png(&dir.path().join("mass/c.png"), 200);
        let error =
            load_external(&settings(dir.path()), &classes(&["normal", "nodule"]), &memory()).unwrap_err().to_string();
        assert!(error.contains("fracture, mass"), "{error}");
        assert!(error.contains("normal, nodule"), "{error}");
        assert!(error.contains(&path_text(dir.path())), "{error}");
    }

    #[test]
    fn every_row_of_a_labels_table_is_scored_and_unknown_labels_are_named() {
        let dir = tempfile::tempdir().unwrap();
        png(&dir.path().join("img/a.png"), 10);
        png(&dir.path().join("img/b.png"), 200);
        let table = dir.path().join("labels.csv");
        std::fs::write(&table, "file,label,split\nimg/a.png,normal,train\nimg/b.png,nodule,test\n").unwrap();
        let data = DataSettings { labels: "labels.csv".into(), ..settings(dir.path()) };
        let external = load_external(&data, &classes(&["nodule", "normal"]), &memory()).unwrap();
        assert_eq!(external.dataset.test.class_labels(), vec![1, 0]);
        std::fs::write(&table, "file,label\nimg/a.png,normal\nimg/b.png,polyp\n").unwrap();
        let error = load_external(&data, &classes(&["nodule", "normal"]), &memory()).unwrap_err().to_string();
        assert!(error.contains("polyp") && error.contains("labels.csv"), "{error}");
    }

    #[test]
    fn a_set_above_the_memory_budget_is_decoded_into_a_scratch_file_with_the_same_pixels() {
        let dir = tempfile::tempdir().unwrap();
        png(&dir.path().join("set/normal/a.png"), 10);
        png(&dir.path().join("set/nodule/b.png"), 200);
        let known = classes(&["nodule", "normal"]);
        let data = settings(&dir.path().join("set"));
        let in_memory = load_external(&data, &known, &memory()).unwrap().dataset.test;
        // two 8 x 8 gray images take 2 x 64 x 2 bytes by the estimate: above a budget of 100
        let scratch = dir.path().join("scratch");
        let place = CachePlace { dir: scratch.clone(), memory_budget: 100 };
        let on_disk = load_external(&data, &known, &place).unwrap().dataset.test;
        assert_eq!(on_disk.len(), 2);
        for (disk, memory) in on_disk.samples.iter().zip(in_memory.samples.iter()) {
            assert_eq!(disk.image.bytes(), 0, "{}: its pixels are not in memory", disk.path.display());
            assert_eq!(disk.image, memory.image, "{}: the same pixels", disk.path.display());
        }
        // unnamed files: nothing is left in the folder
        assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0);
    }
}
