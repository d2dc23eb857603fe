//! Finding a dataset's files in its folder layout or labels table, before anything is
//! decoded: what `radrun plan` checks for every run, so that a wrong folder is a recipe
//! error before any run folder exists.
//!
//! Classification: `<root>/<split>/<class>/<image>` (images may sit in sub-folders of a
//! class folder, e.g. one per patient). Segmentation: `<root>/<split>/<images folder>/`
//! and `<root>/<split>/<masks folder>/`, paired by file stem. Or a CSV labels table
//! (`data.labels`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use crate::Error;
use crate::decode::FileKind;
use crate::paths::{path_text, slash_path, stem_text};
use crate::settings::{AUTO, DataSettings, GroupBy, Task, UnreadablePolicy, group_pattern};
use crate::table::{Table, cell};

/// A file found on disk, before decoding.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    pub(crate) path: PathBuf,
    /// Path relative to the class folder (or images folder), `/`-separated.
    pub(crate) relative: String,
    pub(crate) label: CandidateLabel,
    /// The group, for the `group_by` choices read from paths and CSV files.
    pub(crate) group: Option<String>,
}

impl Candidate {
    fn new(path: PathBuf, folder: &Path, label: CandidateLabel) -> Self {
        Self { relative: slash_path(path.strip_prefix(folder).unwrap_or(&path)), path, label, group: None }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum CandidateLabel {
    Class(usize),
    Labels(Vec<bool>),
    Mask(PathBuf),
}

/// Files found in one split folder.
#[derive(Debug, Default)]
pub(crate) struct Found {
    pub(crate) candidates: Vec<Candidate>,
    /// Non-image files that were ignored.
    pub(crate) ignored: Vec<PathBuf>,
    /// Problems with the layout itself (a mask without image, ...), skippable by policy.
    pub(crate) problems: Vec<Error>,
}

/// Lists the entries of a folder sorted by name (hidden ones too: callers decide).
pub(crate) fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let read = fs::read_dir(dir).map_err(|source| Error::Io { path: dir.to_path_buf(), source })?;
    let mut entries = Vec::new();
    for entry in read {
        let entry = entry.map_err(|source| Error::Io { path: dir.to_path_buf(), source })?;
        entries.push(entry.path());
    }
    entries.sort();
    Ok(entries)
}

pub(crate) fn is_hidden(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'))
}

/// All files under `dir` (recursively, sorted), split into images and other files.
///
/// Links are followed with care, since real exports and hand-made folders contain them:
/// a link to a file is followed, but a file reached twice (through links) counts once; a
/// link to a folder is followed unless it leads back into the dataset (the folder two
/// levels above `dir`: `<root>/<split>/<class>`), to a folder already walked, or above
/// one (`up -> ..`, `loop -> .`). What is left out joins the ignored files, with a
/// warning that names it and why.
fn walk_images(dir: &Path, images: &mut Vec<PathBuf>, ignored: &mut Vec<PathBuf>) -> Result<(), Error> {
    let canonical = |p: &Path| fs::canonicalize(p).map_err(|source| Error::Io { path: p.to_path_buf(), source });
    let top = dir.parent().and_then(Path::parent).map_or_else(|| canonical(dir), canonical)?;
    let mut walk = Walk { top, walked: vec![canonical(dir)?], files: HashSet::new(), images, ignored };
    walk.folder(dir)
}

struct Walk<'a> {
    top: PathBuf,
    walked: Vec<PathBuf>,
    files: HashSet<PathBuf>,
    images: &'a mut Vec<PathBuf>,
    ignored: &'a mut Vec<PathBuf>,
}

impl Walk<'_> {
    fn folder(&mut self, dir: &Path) -> Result<(), Error> {
        for path in sorted_entries(dir)? {
            let linked = fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
            let target = if linked { fs::canonicalize(&path).ok() } else { None };
            if linked && target.is_none() {
                self.leave_out(path, "a link to nothing");
            } else if path.is_dir() {
                if is_hidden(&path) {
                    continue;
                }
                if let Some(target) = target {
                    let back = target.starts_with(&self.top) || self.walked.iter().any(|w| w.starts_with(&target));
                    if back {
                        self.leave_out(path, "a link back into the dataset or to a folder above it");
                        continue;
                    }
                    self.walked.push(target);
                }
                self.folder(&path)?;
            } else if !is_hidden(&path) && FileKind::of(&path).is_some() {
                let file = target.or_else(|| fs::canonicalize(&path).ok()).unwrap_or_else(|| path.clone());
                if self.files.insert(file) {
                    self.images.push(path);
                } else {
                    self.leave_out(path, "the same file as one already listed (through a link)");
                }
            } else if crate::nifti::is_nifti(&path) {
                return Err(Error::VolumeIn2d(path));
            } else {
                self.ignored.push(path);
            }
        }
        Ok(())
    }

    fn leave_out(&mut self, path: PathBuf, why: &str) {
        tracing::warn!("left out {}: {why}", path.display());
        self.ignored.push(path);
    }
}

pub(crate) fn subfolders(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    Ok(sorted_entries(dir)?.into_iter().filter(|p| p.is_dir() && !is_hidden(p)).collect())
}

fn folder_names(dir: &Path) -> String {
    let names: Vec<String> = subfolders(dir)
        .unwrap_or_default()
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    if names.is_empty() { "no folders".into() } else { names.join(", ") }
}

/// The folder of a split, which must exist.
pub(crate) fn split_folder(root: &Path, key: &str, name: &str) -> Result<PathBuf, Error> {
    let path = root.join(name);
    if path.is_dir() {
        Ok(path)
    } else {
        Err(Error::MissingSplit { key: format!("data.{key}"), path, found: folder_names(root) })
    }
}

/// The images of each class folder of `split_dir`. A class without images is an error
/// naming `data.<split_key>`; with `split_key` `None` (an external set, which need not
/// hold every class) it is only left out.
pub(crate) fn find_classification(
    split_dir: &Path,
    classes: &[String],
    split_key: Option<&str>,
) -> Result<Found, Error> {
    let mut found = Found::default();
    let folders = subfolders(split_dir)?;
    let names: BTreeSet<String> =
        folders.iter().filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())).collect();
    if let Some(extra) = names.iter().find(|n| !classes.contains(n)) {
        return Err(Error::ClassOnlyIn {
            class: extra.clone(),
            split: split_dir.to_path_buf(),
            classes: classes.join(", "),
        });
    }
    for path in sorted_entries(split_dir)? {
        if path.is_file() {
            found.ignored.push(path);
        }
    }
    for (index, class) in classes.iter().enumerate() {
        let mut images = Vec::new();
        let dir = split_dir.join(class);
        if dir.is_dir() {
            walk_images(&dir, &mut images, &mut found.ignored)?;
        }
        if let (true, Some(key)) = (images.is_empty(), split_key) {
            return Err(Error::ClassMissing {
                class: class.clone(),
                split: split_dir.to_path_buf(),
                key: format!("data.{key}"),
            });
        }
        found
            .candidates
            .extend(images.into_iter().map(|path| Candidate::new(path, &dir, CandidateLabel::Class(index))));
    }
    Ok(found)
}

pub(crate) fn masks_folder(split_dir: &Path, settings: &DataSettings) -> Result<PathBuf, Error> {
    if settings.masks_folder != AUTO {
        return split_folder(split_dir, "masks_folder", &settings.masks_folder);
    }
    ["Segmentation", "Masks"].iter().map(|n| split_dir.join(n)).find(|p| p.is_dir()).ok_or_else(|| {
        Error::MissingSplit {
            key: "data.masks_folder".into(),
            path: split_dir.join("Segmentation"),
            found: folder_names(split_dir),
        }
    })
}

pub(crate) fn find_segmentation(split_dir: &Path, settings: &DataSettings) -> Result<Found, Error> {
    let mut found = Found::default();
    let images_dir = split_folder(split_dir, "images_folder", &settings.images_folder)?;
    let masks_dir = masks_folder(split_dir, settings)?;
    let (mut images, mut masks) = (Vec::new(), Vec::new());
    walk_images(&images_dir, &mut images, &mut found.ignored)?;
    walk_images(&masks_dir, &mut masks, &mut found.ignored)?;
    let mut by_stem: BTreeMap<String, PathBuf> = masks.into_iter().map(|m| (stem_text(&m), m)).collect();
    for image in images {
        match by_stem.remove(&stem_text(&image)) {
            Some(mask) => found.candidates.push(Candidate::new(image, &images_dir, CandidateLabel::Mask(mask))),
            None => found
                .problems
                .push(Error::MaskMissing { expected: masks_dir.join(format!("{}.png", stem_text(&image))), image }),
        }
    }
    for mask in by_stem.into_values() {
        found.problems.push(Error::ImageMissing { mask, images: images_dir.clone() });
    }
    Ok(found)
}

/// The files of one split folder, found and paired but not decoded.
#[derive(Debug)]
pub(crate) struct SplitFiles {
    pub(crate) name: &'static str,
    pub(crate) folder: PathBuf,
    pub(crate) found: Found,
}

/// A dataset's files found on disk and checked against the folder layout, before any
/// image is decoded: what `radrun plan` checks for every run, so that a wrong folder is
/// a recipe error before any run folder exists.
#[derive(Debug)]
pub struct Layout {
    pub(crate) settings: DataSettings,
    /// Class folder names (classification); empty for segmentation until masks are read.
    pub(crate) classes: Vec<String>,
    pub(crate) train: SplitFiles,
    /// `None`: split off the training folder.
    pub(crate) validation: Option<SplitFiles>,
    pub(crate) test: SplitFiles,
}

/// Finds the dataset described by `settings` (whose `root` is already resolved: the
/// runner resolves it against the recipe's folder) and checks its layout: split folders,
/// class folders with images, image/mask pairs. Nothing is decoded.
pub fn discover(settings: &DataSettings) -> Result<Layout, Error> {
    let root = &settings.root;
    if !root.is_dir() {
        return Err(if root.exists() { Error::RootNotAFolder(root.clone()) } else { Error::MissingRoot(root.clone()) });
    }
    if !settings.labels.as_os_str().is_empty() {
        let mut layout = discover_table(settings)?;
        assign_path_groups(&mut layout)?;
        return Ok(layout);
    }
    let (train_dir, test_dir, validation_dir) = split_folders(settings)?;
    let classes = match settings.task {
        Task::Classification => class_folders(&train_dir)?,
        // validation ensures a labels table
        Task::Segmentation | Task::Multilabel => Vec::new(),
    };
    let find = |name: &'static str, folder: PathBuf| -> Result<SplitFiles, Error> {
        let found = match settings.task {
            Task::Classification | Task::Multilabel => find_classification(&folder, &classes, Some(name))?,
            Task::Segmentation => find_segmentation(&folder, settings)?,
        };
        checked_split(name, folder, found, settings)
    };
    let train = find("train", train_dir)?;
    let test = find("test", test_dir)?;
    let validation = validation_dir.map(|d| find("validation", d)).transpose()?;
    let mut layout = Layout { settings: settings.clone(), classes, train, validation, test };
    assign_path_groups(&mut layout)?;
    Ok(layout)
}

/// The training, test and (when there is one) validation folders `settings` name: the
/// folder `Validation` under `data.validation = "auto"` when it exists.
pub(crate) fn split_folders(settings: &DataSettings) -> Result<(PathBuf, PathBuf, Option<PathBuf>), Error> {
    let root = &settings.root;
    let train = split_folder(root, "train", &settings.train)?;
    let test = split_folder(root, "test", &settings.test)?;
    let validation = if settings.validation == AUTO {
        Some(root.join("Validation")).filter(|p| p.is_dir())
    } else {
        Some(split_folder(root, "validation", &settings.validation)?)
    };
    Ok((train, test, validation))
}

/// See [`Layout::estimated_bytes`]: of `images` images decoded under `settings`.
pub(crate) fn estimated_bytes(settings: &DataSettings, images: usize) -> u64 {
    let (height, width) = settings.height_width();
    let mask = usize::from(settings.task == Task::Segmentation);
    (images * height * width * (2 * settings.input_channels() + mask)) as u64
}

/// A split's files, with the layout problems the policy does not skip as an error.
pub(crate) fn checked_split(
    name: &'static str,
    folder: PathBuf,
    mut found: Found,
    settings: &DataSettings,
) -> Result<SplitFiles, Error> {
    if settings.on_unreadable == UnreadablePolicy::Error && !found.problems.is_empty() {
        return Err(found.problems.swap_remove(0));
    }
    if found.candidates.is_empty() && found.problems.is_empty() {
        return Err(Error::EmptySplit(folder));
    }
    Ok(SplitFiles { name, folder, found })
}

/// One row of a labels table.
pub(crate) struct TableRow {
    split: &'static str,
    /// Path relative to `data.root`.
    pub(crate) file: String,
    pub(crate) labels: Vec<String>,
    patient: Option<String>,
    pub(crate) line: usize,
}

/// The columns of a labels table: `file` and `label` are required.
struct TableColumns {
    file: usize,
    label: usize,
    split: Option<usize>,
    patient: Option<usize>,
}

/// The layout of a dataset labelled by a CSV table (`data.labels`): columns `file` (the
/// image's path relative to `data.root`), `label` (a class; for `multilabel`, the
/// image's labels separated by `|` or `;`, empty for none), optionally `split`
/// (`train`, `validation` or `test`; without it, the split folder the file is in) and
/// `patient` or `patient_id` (the image's group under `group_by = "auto"`). Classes are
/// the labels named in the table, sorted; each must label a training image.
fn discover_table(settings: &DataSettings) -> Result<Layout, Error> {
    let table = settings.root.join(&settings.labels);
    let bad = |line: usize, why: String| Error::LabelTable { table: table.clone(), line, why };
    let rows = read_table_rows(settings, &table, false)?;
    let classes = table_classes(&rows, settings.task == Task::Multilabel).map_err(|why| bad(0, why))?;
    let mut splits = found_from_rows(settings, &table, &rows, &classes);
    let mut take =
        |name: &'static str| splits.remove(name).map(|found| checked_split(name, table.clone(), found, settings));
    let train = take("train").ok_or_else(|| bad(0, "lists no training images".into()))??;
    let test = take("test")
        .ok_or_else(|| bad(0, "lists no test images (the test set must be separate from the start)".into()))??;
    let validation = take("validation").transpose()?;
    check_classes_in_training(&train, &classes).map_err(|why| bad(0, why))?;
    Ok(Layout { settings: settings.clone(), classes, train, validation, test })
}

/// Reads the rows of the labels table `table`, refusing a row without a label or split
/// and a file listed twice.
/// With `pooled` (an external set, which is not split) every row is a test row, whatever
/// its `split` column or folder says.
pub(crate) fn read_table_rows(settings: &DataSettings, table: &Path, pooled: bool) -> Result<Vec<TableRow>, Error> {
    let bad = |line: usize, why: String| Error::LabelTable { table: table.to_path_buf(), line, why };
    let csv = Table::open(table, &settings.sheet).map_err(|e| {
        bad(
            e.line,
            if e.line > 0 {
                e.why
            } else {
                format!("{}; `data.labels` names a CSV file or a workbook inside `data.root`", e.why)
            },
        )
    })?;
    let file = csv.required(&["file"]).map_err(|e| bad(1, e))?;
    let label = csv.required(&["label", "labels"]).map_err(|e| bad(1, e))?;
    let (split, patient) = (csv.column(&["split"]), csv.column(&["patient", "patient_id"]));
    let columns = TableColumns { file, label, split, patient };
    let mut rows: Vec<TableRow> = Vec::new();
    let mut first_line: HashMap<String, usize> = HashMap::new();
    for (line, record) in csv.rows() {
        let row = table_row(settings, &columns, record, line, pooled).map_err(|why| bad(line, why))?;
        if let Some(first) = first_line.insert(row.file.clone(), line) {
            return Err(bad(
                line,
                format!(
                    "`{}` is listed again (first on line {first}); give each image one row (multi-label: its \
                     labels joined by |)",
                    row.file
                ),
            ));
        }
        rows.push(row);
    }
    Ok(rows)
}

/// One record of the labels table as a row: its file, labels, split and patient.
fn table_row(
    settings: &DataSettings,
    columns: &TableColumns,
    record: &[String],
    line: usize,
    pooled: bool,
) -> Result<TableRow, String> {
    let file = slash_path(Path::new(cell(record, columns.file)));
    let raw = cell(record, columns.label);
    let labels = row_labels(raw, &file, settings.task == Task::Multilabel)?;
    let split = match pooled {
        true => "test",
        false => row_split(settings, columns.split.and_then(|c| record.get(c)).map(String::as_str), &file)?,
    };
    let patient = columns.patient.map(|c| cell(record, c)).filter(|p| !p.is_empty()).map(str::to_string);
    Ok(TableRow { split, file, labels, patient, line })
}

/// A row's labels: for `multilabel`, those in `raw` separated by `|` or `;` (none when
/// empty); else `raw` itself, which must not be empty.
fn row_labels(raw: &str, file: &str, multilabel: bool) -> Result<Vec<String>, String> {
    if multilabel {
        Ok(raw.split(['|', ';']).map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect())
    } else if raw.is_empty() {
        Err(format!("`{file}` has no label"))
    } else {
        Ok(vec![raw.to_string()])
    }
}

/// A row's split: its `split` column when the table has one, else the split folder its
/// file is in.
fn row_split(settings: &DataSettings, column: Option<&str>, file: &str) -> Result<&'static str, String> {
    match column.map(|s| s.trim().to_lowercase()) {
        Some(s) if s == "train" || s == "training" => Ok("train"),
        Some(s) if s == "validation" || s == "val" => Ok("validation"),
        Some(s) if s == "test" => Ok("test"),
        Some(other) => Err(format!("split \"{other}\" is not train, validation or test")),
        None => split_of_folder(settings, file),
    }
}

/// The split whose folder holds `file` (a path relative to `data.root`).
fn split_of_folder(settings: &DataSettings, file: &str) -> Result<&'static str, String> {
    let first = file.split('/').next().unwrap_or_default();
    let validation = if settings.validation == AUTO { "Validation" } else { settings.validation.as_str() };
    match first {
        f if f == settings.train => Ok("train"),
        f if f == settings.test => Ok("test"),
        f if f == validation => Ok("validation"),
        _ => Err(format!(
            "`{file}` is in no split folder (`data.train` = \"{}\", `data.test` = \"{}\"); add a `split` column \
             (train, validation, test)",
            settings.train, settings.test
        )),
    }
}

/// The classes: the labels the rows name, sorted; at least two (one for `multilabel`).
fn table_classes(rows: &[TableRow], multilabel: bool) -> Result<Vec<String>, String> {
    let classes: Vec<String> =
        rows.iter().flat_map(|r| r.labels.iter().cloned()).collect::<BTreeSet<_>>().into_iter().collect();
    if classes.len() < 2 && !multilabel || classes.is_empty() {
        return Err(format!("names {} label(s); a classifier needs at least two", classes.len()));
    }
    Ok(classes)
}

/// The files the rows list, by split; a listed file that does not exist is a problem of
/// its split.
pub(crate) fn found_from_rows(
    settings: &DataSettings,
    table: &Path,
    rows: &[TableRow],
    classes: &[String],
) -> BTreeMap<&'static str, Found> {
    let multilabel = settings.task == Task::Multilabel;
    let mut splits: BTreeMap<&'static str, Found> = BTreeMap::new();
    for TableRow { split, file, labels, patient, line } in rows {
        let path = settings.root.join(file);
        let found = splits.entry(split).or_default();
        // a volume may be a series folder
        let exists = if settings.dims == 3 { path.exists() } else { path.is_file() };
        if !exists {
            found.problems.push(Error::ListedFileMissing { table: table.to_path_buf(), line: *line, file: path });
            continue;
        }
        let mut candidate = Candidate::new(path, &settings.root, row_label(labels, classes, multilabel));
        candidate.group = patient.clone();
        found.candidates.push(candidate);
    }
    splits
}

/// A row's labels as classes: which classes are present (`multilabel`), or its class.
fn row_label(labels: &[String], classes: &[String], multilabel: bool) -> CandidateLabel {
    let index = |l: &String| classes.iter().position(|c| c == l).expect("a listed label");
    if multilabel {
        let mut present = vec![false; classes.len()];
        for l in labels {
            present[index(l)] = true;
        }
        CandidateLabel::Labels(present)
    } else {
        CandidateLabel::Class(index(&labels[0]))
    }
}

/// Refuses a class that labels no training image: a model cannot learn it.
fn check_classes_in_training(train: &SplitFiles, classes: &[String]) -> Result<(), String> {
    let mut in_train = vec![false; classes.len()];
    for candidate in &train.found.candidates {
        match &candidate.label {
            CandidateLabel::Class(c) => in_train[*c] = true,
            CandidateLabel::Labels(present) => {
                present.iter().enumerate().filter(|(_, p)| **p).for_each(|(c, _)| in_train[c] = true);
            }
            CandidateLabel::Mask(_) => {}
        }
    }
    if let Some(c) = in_train.iter().position(|seen| !seen) {
        return Err(format!("label \"{}\" labels no training image; a model cannot learn it", classes[c]));
    }
    Ok(())
}

/// Sets each image's group for the `group_by` choices that come from paths or a CSV
/// file; an image whose group cannot be told is an error naming it.
fn assign_path_groups(layout: &mut Layout) -> Result<(), Error> {
    let splits = [Some(&mut layout.train), Some(&mut layout.test), layout.validation.as_mut()];
    let candidates = splits.into_iter().flatten().flat_map(|s| s.found.candidates.iter_mut());
    assign_groups(&layout.settings, candidates)
}

/// [`assign_path_groups`] for any candidates of a dataset with these settings.
pub(crate) fn assign_groups<'a>(
    settings: &DataSettings,
    candidates: impl Iterator<Item = &'a mut Candidate>,
) -> Result<(), Error> {
    let from_table = !settings.labels.as_os_str().is_empty();
    let pattern = match &settings.group_by {
        GroupBy::Pattern(p) => Some(group_pattern(p).map_err(Error::GroupBy)?),
        _ => None,
    };
    let table = match &settings.group_by {
        GroupBy::Csv(file) => Some(read_group_table(&settings.root.join(file))?),
        GroupBy::Folder | GroupBy::Pattern(_) => None,
        GroupBy::Auto | GroupBy::None | GroupBy::PatientId | GroupBy::Study => return Ok(()),
    };
    let mut missing: Vec<(PathBuf, String)> = Vec::new();
    for candidate in candidates {
        let group = match (&pattern, &table) {
            (Some(re), _) => re
                .captures(&candidate.relative)
                .and_then(|caps| caps.name("group").or_else(|| caps.get(1)).or_else(|| caps.get(0)))
                .map(|m| m.as_str().to_string())
                .filter(|g| !g.is_empty())
                .ok_or_else(|| format!("its path \"{}\" does not match the pattern", candidate.relative)),
            (None, Some((file, rows))) => {
                let relative = candidate.path.strip_prefix(&settings.root).unwrap_or(&candidate.path);
                rows.get(&slash_path(relative))
                    .cloned()
                    .ok_or_else(|| format!("it is not in the `file` column of {}", file.display()))
            }
            // a labels table has no class folders: the folder holding the image, below a
            // top folder (a split or images folder is not a patient)
            (None, None) if from_table => candidate
                .relative
                .rsplit_once('/')
                .and_then(|(folders, _)| folders.split_once('/').map(|(_, below)| below))
                .map(|below| below.rsplit('/').next().unwrap_or(below).to_string())
                .ok_or_else(|| "it is not in a patient folder below a top folder of `data.root`".to_string()),
            (None, None) => candidate
                .relative
                .split_once('/')
                .map(|(folder, _)| folder.to_string())
                .ok_or_else(|| "it is not in a sub-folder of its class (or images) folder".to_string()),
        };
        match group {
            Ok(g) => candidate.group = Some(g),
            Err(reason) => missing.push((candidate.path.clone(), reason)),
        }
    }
    match missing.first() {
        Some((file, reason)) => {
            Err(Error::NoGroup { file: file.clone(), reason: reason.clone(), others: missing.len() - 1 })
        }
        None => Ok(()),
    }
}

/// The `file` -> patient rows of a group CSV file (and the file's path).
fn read_group_table(path: &Path) -> Result<(PathBuf, HashMap<String, String>), Error> {
    let bad = |why: String| Error::GroupBy(format!("group table {}: {why}", path.display()));
    // a workbook's first sheet (`data.sheet` is the labels table's)
    let table =
        Table::open(path, "").map_err(|e| bad(e.with_hint("`data.group_by = { csv = ... }` starts at `data.root`")))?;
    let file_col = table.required(&["file"]).map_err(bad)?;
    let group_col = table.required(&["patient", "patient_id"]).map_err(bad)?;
    let mut rows = HashMap::new();
    for (line, record) in table.rows() {
        let (file, group) = (slash_path(Path::new(cell(record, file_col))), cell(record, group_col));
        if !group.is_empty() && rows.insert(file.clone(), group.to_string()).is_some() {
            return Err(bad(format!("line {line}: `{file}` is listed again; give each image one row")));
        }
    }
    Ok((path.to_path_buf(), rows))
}

/// The class folders of the training folder: at least two.
pub(crate) fn class_folders(train_dir: &Path) -> Result<Vec<String>, Error> {
    let classes: Vec<String> =
        subfolders(train_dir)?.iter().filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())).collect();
    match classes.len() {
        0 => Err(Error::NoClasses(train_dir.to_path_buf())),
        1 => Err(Error::OneClass { split: train_dir.to_path_buf(), class: classes[0].clone() }),
        _ => Ok(classes),
    }
}

impl Layout {
    /// The class names (classification, multi-label); empty for segmentation, whose
    /// labels come from the masks.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// Every image file of the layout (training, validation and test folders).
    pub fn files(&self) -> Vec<&Path> {
        [Some(&self.train), self.validation.as_ref(), Some(&self.test)]
            .into_iter()
            .flatten()
            .flat_map(|s| s.found.candidates.iter().map(|c| c.path.as_path()))
            .collect()
    }

    pub(crate) fn settings(&self) -> &DataSettings {
        &self.settings
    }

    pub(crate) fn splits(&self) -> impl Iterator<Item = &SplitFiles> {
        [Some(&self.train), self.validation.as_ref(), Some(&self.test)].into_iter().flatten()
    }

    /// At least as many bytes as the images take in memory: two per value of each input
    /// channel (a gray image repeated into three channels is kept once, but a colour one
    /// keeps three: which one a file is shows only once it is decoded), and one per mask
    /// pixel.
    pub(crate) fn estimated_bytes(&self) -> u64 {
        estimated_bytes(&self.settings, self.splits().map(|s| s.found.candidates.len()).sum())
    }

    /// What the decoded images depend on, beyond `[data]`: every file found (with its
    /// size and modification time, and its mask's), how it was labelled and grouped,
    /// the problems found and the files ignored, and the tables read.
    pub(crate) fn identity(&self) -> serde_json::Value {
        let stamp = |path: &Path| match fs::metadata(path) {
            Ok(m) => {
                use std::os::unix::fs::MetadataExt;
                serde_json::json!([m.len(), m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec(), m.ino()])
            }
            Err(e) => serde_json::json!(e.to_string()),
        };
        let splits: Vec<serde_json::Value> = self
            .splits()
            .map(|s| {
                let files: Vec<serde_json::Value> = s
                    .found
                    .candidates
                    .iter()
                    .map(|c| {
                        let mask = match &c.label {
                            CandidateLabel::Mask(mask) => Some((path_text(mask), stamp(mask))),
                            CandidateLabel::Class(_) | CandidateLabel::Labels(_) => None,
                        };
                        serde_json::json!([path_text(&c.path), stamp(&c.path), c.relative, format!("{:?}", c.label), c.group, mask])
                    })
                    .collect();
                let problems: Vec<String> = s.found.problems.iter().map(Error::to_string).collect();
                let ignored: Vec<String> = s.found.ignored.iter().map(|p| path_text(p)).collect();
                serde_json::json!({"name": s.name, "folder": path_text(&s.folder), "files": files, "problems": problems, "ignored": ignored})
            })
            .collect();
        let root = &self.settings.root;
        let mut tables = Vec::new();
        if !self.settings.labels.as_os_str().is_empty() {
            tables.push(root.join(&self.settings.labels));
        }
        if let GroupBy::Csv(table) = &self.settings.group_by {
            tables.push(root.join(table));
        }
        let tables: Vec<serde_json::Value> =
            tables.iter().map(|t| serde_json::json!([path_text(t), stamp(t)])).collect();
        serde_json::json!({"classes": self.classes, "splits": splits, "tables": tables})
    }
}
