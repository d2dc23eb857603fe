//! The image cache (`data.cache = "disk"`): what it gives back is what decoding gives,
//! it is reused, rebuilt when damaged or when a file changed, shared between processes
//! that load at once, and chosen by "auto" only for datasets larger than the budget.

use std::path::{Path, PathBuf};

use radrun_data::{CacheMode, CachePlace, DataSettings, Images, ImagesSource, Series, SplitSettings, Task};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets.example").join(name)
}

fn settings(root: PathBuf, task: Task, cache: CacheMode) -> DataSettings {
    DataSettings { root, task, image_size: [24, 24], cache, ..DataSettings::default() }
}

fn load(settings: &DataSettings, place: &CachePlace) -> Images {
    radrun_data::discover(settings).unwrap().load_cached(place).unwrap()
}

fn place(dir: &Path, memory_budget: u64) -> CachePlace {
    CachePlace { dir: dir.join("cache"), memory_budget }
}

/// The same images, targets, origins and summary, split after split.
fn assert_same(a: &Images, b: &Images) {
    assert_eq!(a.summary(), b.summary());
    let (a, b) = (a.split(&SplitSettings::default()).unwrap(), b.split(&SplitSettings::default()).unwrap());
    assert_eq!(a.classes, b.classes);
    for (a, b) in [(&a.train, &b.train), (&a.validation, &b.validation), (&a.test, &b.test)] {
        assert_eq!(a.len(), b.len(), "{}", a.name);
        assert!(a.samples.iter().zip(b.samples.iter()).all(|(a, b)| a == b), "{} differs", a.name);
    }
}

fn cache_files(place: &CachePlace) -> Vec<PathBuf> {
    radrun_data::testing::files_under(&place.dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "images"))
        .collect()
}

fn written(images: &Images) -> (PathBuf, Option<String>) {
    match images.source() {
        ImagesSource::Written { path, replaced } => (path.clone(), replaced.clone()),
        other => panic!("expected a new cache file, got {other:?}"),
    }
}

#[test]
fn the_cache_gives_back_what_decoding_gives_and_is_reused() {
    let dir = tempfile::tempdir().unwrap();
    let place = place(dir.path(), 0);
    let ct = |series| DataSettings {
        series,
        validation_fraction: 0.25,
        ..settings(example("ctslices"), Task::Classification, CacheMode::Disk)
    };
    for data in [
        settings(example("chest6"), Task::Classification, CacheMode::Disk),
        settings(example("lungs"), Task::Segmentation, CacheMode::Disk),
        ct(Series::Slab(3)),
        ct(Series::Slices),
        ct(Series::Middle),
    ] {
        let memory = radrun_data::discover(&data).unwrap().load().unwrap();
        assert_eq!(memory.source(), &ImagesSource::Memory);
        let first = load(&data, &place);
        let (path, replaced) = written(&first);
        assert_eq!(replaced, None);
        assert_same(&memory, &first);
        let again = load(&data, &place);
        assert_eq!(again.source(), &ImagesSource::Cache(path.clone()), "{}", data.root.display());
        assert_same(&memory, &again);
        // the images are read from the file, not kept in memory
        let split = again.split(&SplitSettings::default()).unwrap();
        assert!(split.train.samples.iter().all(|s| s.image.bytes() == 0));
    }
    assert_eq!(cache_files(&place).len(), 5, "one file per dataset");
    // how the training folder is split does not change the images: the same file
    let chest = settings(example("chest6"), Task::Classification, CacheMode::Disk);
    let resplit = DataSettings { split_seed: 7, validation_fraction: 0.3, allow_leakage: true, ..chest };
    assert!(matches!(load(&resplit, &place).source(), ImagesSource::Cache(_)));
}

#[test]
fn a_damaged_cache_is_rebuilt_not_trained_on() {
    let dir = tempfile::tempdir().unwrap();
    let place = place(dir.path(), 0);
    let data = settings(example("lungs"), Task::Segmentation, CacheMode::Disk);
    let memory = radrun_data::discover(&data).unwrap().load().unwrap();
    let (path, _) = written(&load(&data, &place));
    // one flipped bit among the images
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let rebuilt = load(&data, &place);
    assert_eq!(written(&rebuilt), (path.clone(), Some("its checksum does not match".into())));
    assert_same(&memory, &rebuilt);
    // cut short, as by a full disk
    let length = std::fs::metadata(&path).unwrap().len();
    std::fs::File::options().write(true).open(&path).unwrap().set_len(length - 100).unwrap();
    let (_, replaced) = written(&load(&data, &place));
    let why = replaced.unwrap();
    assert!(why.contains(&format!("{} bytes where its header says {length}", length - 100)), "{why}");
    assert_eq!(load(&data, &place).source(), &ImagesSource::Cache(path));
}

#[test]
fn a_changed_file_makes_a_new_cache_that_replaces_the_old() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lungs");
    for file in radrun_data::testing::files_under(&example("lungs")) {
        let to = root.join(file.strip_prefix(example("lungs")).unwrap());
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&file, &to).unwrap();
    }
    let place = place(dir.path(), 0);
    let data = settings(root.clone(), Task::Segmentation, CacheMode::Disk);
    let first = load(&data, &place);
    let (old, _) = written(&first);
    // a mask edited (new modification time): its image's cache entry is stale
    let masks = radrun_data::testing::files_under(&root.join("Train/Segmentation"));
    let touch = |file: &Path, day: u64| {
        let file = std::fs::File::options().write(true).open(file).unwrap();
        file.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(86_400 * day)).unwrap();
    };
    touch(&masks[0], 1);
    let second = load(&data, &place);
    let (new, replaced) = written(&second);
    assert_ne!(new, old);
    assert_eq!(replaced, None);
    let mut both = vec![old.clone(), new.clone()];
    both.sort();
    assert_eq!(cache_files(&place), both, "the stale file is kept while this process reads it");
    drop((first, second));
    touch(&masks[1], 2);
    let (newest, _) = written(&load(&data, &place));
    assert_eq!(cache_files(&place), vec![newest], "stale files nobody reads are deleted");
    // another [data] has its own file, and leaves this one alone
    let bigger = DataSettings { image_size: [32, 32], ..data };
    written(&load(&bigger, &place));
    assert_eq!(cache_files(&place).len(), 2);
}

#[test]
fn processes_loading_at_once_decode_once() {
    let dir = tempfile::tempdir().unwrap();
    let place = place(dir.path(), 0);
    let data = settings(example("chest6"), Task::Classification, CacheMode::Disk);
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| load(&data, &place));
        let b = s.spawn(|| load(&data, &place));
        (a.join().unwrap(), b.join().unwrap())
    });
    let mut sources = [a.source(), b.source()].map(|s| matches!(s, ImagesSource::Cache(_)));
    sources.sort();
    assert_eq!(sources, [false, true], "one decodes, the other reads: {:?} {:?}", a.source(), b.source());
    assert_same(&a, &b);
}

#[test]
fn auto_keeps_what_fits_the_budget_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let data = settings(example("lungs"), Task::Segmentation, CacheMode::Auto);
    // about 120 images of 24 x 24, 2 bytes a value: about 140 kB
    assert_eq!(load(&data, &place(dir.path(), 1 << 20)).source(), &ImagesSource::Memory);
    written(&load(&data, &place(dir.path(), 100_000)));
    let memory = DataSettings { cache: CacheMode::Memory, ..data };
    assert_eq!(load(&memory, &place(dir.path(), 0)).source(), &ImagesSource::Memory);
}
