//! Finding a volume dataset's cases (`data.dims = 3`) before anything is read: which
//! files or series folders make each case's channels, its mask or class, and its split.
//!
//! - **Folders** (the tutorial's layouts): `<root>/<split>/<class>/` holding NIfTI files
//!   (`.nii`, `.nii.gz`) or DICOM series folders (a folder whose files are DICOM; other
//!   folders are walked into, e.g. one per patient) for classification;
//!   `<root>/<split>/<images folder>/` and `<root>/<split>/<masks folder>/` for
//!   segmentation, a mask (NIfTI) paired with the image of the same case name; or a
//!   labels table (`data.labels`) whose `file` column names the volume files or folders.
//! - **Decathlon** (the Medical Segmentation Decathlon and nnU-Net v2 raw layout):
//!   `dataset.json`, `imagesTr/<case>_0000.nii.gz` (one file per channel, numbered from
//!   0000), `labelsTr/<case>.nii.gz`, `imagesTs/`, and `labelsTs/` when the test cases
//!   are labelled. The Decathlon's own first `dataset.json` form (`modality`, `labels` by
//!   value, a `training` list of 4D images) is read too. Without labelled test cases, the
//!   test set is held out of the training cases (`data.test_fraction`).
//!
//! A case's name is its file name without `.nii`/`.nii.gz` (a series: its folder), as a
//! path under its class or images folder; masks pair by it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::Error;
use crate::decode::FileKind;
use crate::discover::{self, CandidateLabel};
use crate::nifti::is_nifti;
use crate::paths::slash_path;
use crate::settings::{DataSettings, Task};
use crate::volume_settings::{ChannelsFrom, DatasetLayout};

/// One case: its channels (each a NIfTI file or a DICOM series folder), and its mask or
/// class.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeCase {
    pub name: String,
    pub channels: Vec<PathBuf>,
    pub mask: Option<PathBuf>,
    pub class: Option<usize>,
    /// The patient, when the layout names it (a labels table's `patient` column).
    pub patient: Option<String>,
}

/// The cases of one split folder.
#[derive(Debug, Clone)]
pub struct CaseFolder {
    pub folder: PathBuf,
    pub cases: Vec<VolumeCase>,
}

/// A volume dataset's cases, found and paired, nothing read.
#[derive(Debug, Clone)]
pub struct VolumeLayout {
    pub settings: DataSettings,
    /// `folders` or `decathlon` (never `auto`).
    pub layout: DatasetLayout,
    /// Class names (classification).
    pub classes: Vec<String>,
    /// Label values and names declared by `dataset.json` (Decathlon), background
    /// included; empty: the values found in the masks, named "label N".
    pub label_names: BTreeMap<u32, String>,
    /// Channel names (`dataset.json`), empty when the layout names none.
    pub channel_names: Vec<String>,
    pub train: CaseFolder,
    /// `None`: split off the training cases.
    pub validation: Option<CaseFolder>,
    /// `None`: held out of the training cases (`data.test_fraction`).
    pub test: Option<CaseFolder>,
    /// Cases without labels (`imagesTs/` of a Decathlon layout), for prediction only.
    pub unlabelled: usize,
    /// Files that are neither volumes nor DICOM.
    pub ignored: Vec<PathBuf>,
}

impl VolumeCase {
    /// Every file the case is read from: each channel's file (a series folder's own
    /// DICOM files), then its mask's.
    pub fn files(&self) -> Result<Vec<PathBuf>, Error> {
        let mut files = Vec::new();
        for path in self.channels.iter().chain(&self.mask) {
            if path.is_dir() { files.extend(series_files(path)?) } else { files.push(path.clone()) }
        }
        Ok(files)
    }
}

impl VolumeLayout {
    /// The cases of every folder: training, validation, test.
    pub fn cases(&self) -> impl Iterator<Item = &VolumeCase> {
        [Some(&self.train), self.validation.as_ref(), self.test.as_ref()].into_iter().flatten().flat_map(|f| &f.cases)
    }

    /// Every file of every case.
    pub fn files(&self) -> Result<Vec<PathBuf>, Error> {
        Ok(self.cases().map(VolumeCase::files).collect::<Result<Vec<_>, _>>()?.concat())
    }
}

/// Finds the volume dataset `settings` describes (its `root` resolved).
pub fn discover_volumes(settings: &DataSettings) -> Result<VolumeLayout, Error> {
    let root = &settings.root;
    if !root.is_dir() {
        return Err(if root.exists() { Error::RootNotAFolder(root.clone()) } else { Error::MissingRoot(root.clone()) });
    }
    let decathlon = root.join("dataset.json");
    match settings.layout {
        DatasetLayout::Decathlon => decathlon_layout(settings, &decathlon),
        DatasetLayout::Auto if decathlon.is_file() => decathlon_layout(settings, &decathlon),
        _ if !settings.labels.as_os_str().is_empty() => table_layout(settings),
        _ => folders_layout(settings),
    }
}

/// A folder's entries, sorted, hidden ones (`.DS_Store`, macOS `._` files) left out.
fn entries(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    Ok(discover::sorted_entries(dir)?.into_iter().filter(|p| !discover::is_hidden(p)).collect())
}

/// The cases under a class or images folder `dir`: NIfTI files, DICOM files (one
/// multi-frame file, or a slice that is then refused as a volume of one slice) and
/// series folders (a folder holding DICOM files, its own files the series' slices);
/// other folders are walked into. A link to a folder is followed unless it leads into
/// `data.root` or above `dir` (a test folder linked into the training folder must not
/// pass as training cases). Names are paths under `under`; two cases of one name are
/// refused.
fn volume_entries(dir: &Path, under: &Path, walk: &mut CaseWalk) -> Result<(), Error> {
    for path in entries(dir)? {
        let relative = slash_path(path.strip_prefix(under).unwrap_or(&path));
        if path.is_dir() {
            if walk.leads_back(&path) {
                tracing::warn!("left out {}: a link back into the dataset or above it", path.display());
                walk.ignored.push(path);
                continue;
            }
            if !series_files(&path)?.is_empty() {
                walk.add(relative.clone(), path.clone())?;
            }
            volume_entries(&path, under, walk)?;
        } else if is_nifti(&path) {
            walk.add(case_name(&relative), path)?;
        } else if FileKind::of(&path) == Some(FileKind::Dicom) {
            // directly under the class or images folder, a DICOM file is a volume of its
            // own (a multi-frame file); deeper, it is a slice of its folder's series
            if dir == under {
                walk.add(relative, path)?;
            }
        } else if FileKind::of(&path).is_some() {
            return Err(Error::ImageIn3d(path));
        } else {
            walk.ignored.push(path);
        }
    }
    Ok(())
}

/// The scans under `path` for a prediction, each with its name: `path` itself when it
/// is a NIfTI file, a DICOM file or a series folder, else the cases found in it as a
/// dataset's folder would give them (NIfTI files, multi-frame DICOM files and series
/// folders, named by their path under `path`).
pub fn scans_under(path: &Path) -> Result<Vec<(String, PathBuf)>, Error> {
    let name = |p: &Path| case_name(&p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
    if path.is_dir() && series_files(path)?.is_empty() {
        let mut walk = CaseWalk::new(path);
        volume_entries(path, path, &mut walk)?;
        return Ok(walk.found);
    }
    if path.is_dir() || is_nifti(path) || FileKind::of(path) == Some(FileKind::Dicom) {
        return Ok(vec![(name(path), path.to_path_buf())]);
    }
    let why = "is neither a NIfTI file nor a DICOM series folder; give scans as .nii/.nii.gz files or series folders";
    Err(Error::CaseLayout { file: path.to_path_buf(), why: why.into() })
}

/// What a walk for cases gathers, and where it must not go.
struct CaseWalk {
    /// `data.root`, canonical.
    root: PathBuf,
    found: Vec<(String, PathBuf)>,
    ignored: Vec<PathBuf>,
}

impl CaseWalk {
    fn new(root: &Path) -> CaseWalk {
        let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
        CaseWalk { root, found: Vec::new(), ignored: Vec::new() }
    }

    /// Whether `folder` is a link into `data.root` or to a folder above it.
    fn leads_back(&self, folder: &Path) -> bool {
        let linked = std::fs::symlink_metadata(folder).is_ok_and(|m| m.file_type().is_symlink());
        let target = std::fs::canonicalize(folder);
        linked && target.is_ok_and(|t| t.starts_with(&self.root) || self.root.starts_with(&t))
    }

    fn add(&mut self, name: String, path: PathBuf) -> Result<(), Error> {
        if let Some((_, other)) = self.found.iter().find(|(n, _)| *n == name) {
            let why = format!("has the same case name (\"{name}\") as {}; rename one", crate::paths::path_text(other));
            return Err(Error::CaseLayout { file: path, why });
        }
        self.found.push((name, path));
        Ok(())
    }
}

/// The DICOM files directly in a folder (hidden files and DICOMDIR left out): a series
/// folder's slices; empty for any other folder.
pub(crate) fn series_files(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let is_dicomdir = |p: &Path| p.file_name().is_some_and(|n| n.eq_ignore_ascii_case("DICOMDIR"));
    Ok(entries(dir)?
        .into_iter()
        .filter(|p| p.is_file() && !is_dicomdir(p) && FileKind::of(p) == Some(FileKind::Dicom))
        .collect())
}

/// A file's case name: without `.nii.gz` or `.nii`.
fn case_name(file: &str) -> String {
    let lower = file.to_ascii_lowercase();
    let cut = if lower.ends_with(".nii.gz") {
        7
    } else if lower.ends_with(".nii") {
        4
    } else {
        0
    };
    file[..file.len() - cut].to_string()
}

fn one_channel(name: String, path: PathBuf) -> VolumeCase {
    VolumeCase { name, channels: vec![path], mask: None, class: None, patient: None }
}

/// Class folders or image and mask folders, as in 2D.
fn folders_layout(settings: &DataSettings) -> Result<VolumeLayout, Error> {
    let root = &settings.root;
    let (train_dir, test_dir, validation_dir) = discover::split_folders(settings)?;
    let classes = match settings.task {
        Task::Classification => discover::class_folders(&train_dir)?,
        _ => Vec::new(),
    };
    let mut ignored = Vec::new();
    let mut find = |key: &str, folder: PathBuf| -> Result<CaseFolder, Error> {
        let cases = match settings.task {
            Task::Classification => class_cases(root, &folder, &classes, Some(key), &mut ignored)?,
            _ => segmentation_cases(&folder, settings, &mut ignored)?,
        };
        if cases.is_empty() {
            return Err(Error::EmptySplit(folder));
        }
        Ok(CaseFolder { folder, cases })
    };
    let train = find("train", train_dir)?;
    let test = Some(find("test", test_dir)?);
    let validation = validation_dir.map(|d| find("validation", d)).transpose()?;
    Ok(VolumeLayout {
        settings: settings.clone(),
        layout: DatasetLayout::Folders,
        classes,
        label_names: BTreeMap::new(),
        channel_names: Vec::new(),
        train,
        validation,
        test,
        unlabelled: 0,
        ignored,
    })
}

/// The cases of the class folders of `split`, each class's index in `classes`; a folder
/// of another name is an error, and so is a class without a case when `key` names the
/// split's setting (an external set, `None`, may lack classes).
fn class_cases(
    root: &Path,
    split: &Path,
    classes: &[String],
    key: Option<&str>,
    ignored: &mut Vec<PathBuf>,
) -> Result<Vec<VolumeCase>, Error> {
    let mut cases = Vec::new();
    for folder in discover::subfolders(split)? {
        let name = folder.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if !classes.contains(&name) {
            return Err(Error::ClassOnlyIn { class: name, split: split.to_path_buf(), classes: classes.join(", ") });
        }
    }
    for (index, class) in classes.iter().enumerate() {
        let dir = split.join(class);
        let mut walk = CaseWalk::new(root);
        if dir.is_dir() {
            volume_entries(&dir, &dir, &mut walk)?;
        }
        ignored.append(&mut walk.ignored);
        let found = walk.found;
        if let (true, Some(key)) = (found.is_empty(), key) {
            let (class, split, key) = (class.clone(), split.to_path_buf(), format!("data.{key}"));
            return Err(Error::ClassMissing { class, split, key });
        }
        cases
            .extend(found.into_iter().map(|(name, path)| VolumeCase { class: Some(index), ..one_channel(name, path) }));
    }
    Ok(cases)
}

fn segmentation_cases(
    split: &Path,
    settings: &DataSettings,
    ignored: &mut Vec<PathBuf>,
) -> Result<Vec<VolumeCase>, Error> {
    let images_dir = discover::split_folder(split, "images_folder", &settings.images_folder)?;
    let masks_dir = discover::masks_folder(split, settings)?;
    let (mut images, mut masks) = (CaseWalk::new(&settings.root), CaseWalk::new(&settings.root));
    volume_entries(&images_dir, &images_dir, &mut images)?;
    volume_entries(&masks_dir, &masks_dir, &mut masks)?;
    ignored.extend(images.ignored.into_iter().chain(masks.ignored));
    let (images, mut by_name) = (images.found, masks.found.into_iter().collect::<BTreeMap<String, PathBuf>>());
    let mut cases = Vec::new();
    for (name, image) in images {
        let Some(mask) = by_name.remove(&name) else {
            return Err(Error::MaskMissing { expected: masks_dir.join(format!("{name}.nii.gz")), image });
        };
        cases.push(VolumeCase { mask: Some(mask), ..one_channel(name, image) });
    }
    match by_name.into_values().next() {
        Some(mask) => Err(Error::ImageMissing { mask, images: images_dir }),
        None => Ok(cases),
    }
}

/// The cases of an external set (`radrun evaluate` on a volume run), every one a test
/// case: class folders of the run's `classes` (a class the run does not know is an
/// error, one the set lacks is not) or image and mask folders, directly in
/// `settings.root` or in split folders named as the run's, pooled; or every labelled
/// case of a Decathlon layout; a name two cases share becomes each one's path
/// ([`distinct_names`]).
pub fn external_layout(settings: &DataSettings, classes: &[String]) -> Result<VolumeLayout, Error> {
    let root = &settings.root;
    if !root.is_dir() {
        return Err(if root.exists() { Error::RootNotAFolder(root.clone()) } else { Error::MissingRoot(root.clone()) });
    }
    if !settings.labels.as_os_str().is_empty() {
        let why = "is a labels table; an external volume set is read from class folders, image and mask folders or \
                   a Decathlon layout so far: arrange its cases so";
        return Err(Error::CaseLayout { file: root.join(&settings.labels), why: why.into() });
    }
    let everything = |layout: VolumeLayout, cases: Vec<VolumeCase>, ignored| VolumeLayout {
        train: CaseFolder { folder: root.clone(), cases: Vec::new() },
        validation: None,
        test: Some(CaseFolder { folder: root.clone(), cases }),
        ignored,
        ..layout
    };
    let decathlon = root.join("dataset.json");
    if decathlon.is_file() {
        let layout = decathlon_layout(settings, &decathlon)?;
        if layout.unlabelled > 0 {
            tracing::warn!("{} case(s) without a label map are left out (imagesTs/)", layout.unlabelled);
        }
        let cases = distinct_names(root, layout.cases().cloned().collect());
        let ignored = layout.ignored.clone();
        return Ok(everything(layout, cases, ignored));
    }
    let mut found: Vec<VolumeCase> = Vec::new();
    let mut ignored = Vec::new();
    for folder in crate::external::layout_folders(settings) {
        let cases = match settings.task {
            Task::Classification => {
                let unknown: Vec<String> = discover::subfolders(&folder)?
                    .iter()
                    .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .filter(|name| !classes.contains(name))
                    .collect();
                if !unknown.is_empty() {
                    let (unknown, known) = (unknown.join(", "), classes.join(", "));
                    return Err(Error::UnknownClasses { source_path: folder, unknown, known });
                }
                class_cases(root, &folder, classes, None, &mut ignored)?
            }
            _ => segmentation_cases(&folder, settings, &mut ignored)?,
        };
        found.extend(cases);
    }
    let cases = distinct_names(root, found);
    if cases.is_empty() {
        return Err(Error::EmptySplit(root.clone()));
    }
    let layout = VolumeLayout {
        settings: settings.clone(),
        layout: DatasetLayout::Folders,
        classes: classes.to_vec(),
        label_names: BTreeMap::new(),
        channel_names: Vec::new(),
        train: CaseFolder { folder: root.clone(), cases: Vec::new() },
        validation: None,
        test: None,
        unlabelled: 0,
        ignored: Vec::new(),
    };
    Ok(everything(layout, cases, ignored))
}

/// `cases` with a name each: a name two cases share (pooled split folders, two classes,
/// a Decathlon set's imagesTr and imagesTs) becomes the case's path under `root`, without
/// its extension (`Test/Images/organ_018`).
fn distinct_names(root: &Path, mut cases: Vec<VolumeCase>) -> Vec<VolumeCase> {
    let mut counts: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for case in &cases {
        *counts.entry(case.name.clone()).or_default() += 1;
    }
    for case in &mut cases {
        if counts[&case.name] > 1 {
            let source = &case.channels[0];
            case.name = case_name(&slash_path(source.strip_prefix(root).unwrap_or(source)));
        }
    }
    cases
}

/// A labels table's rows as cases (classification).
fn table_layout(settings: &DataSettings) -> Result<VolumeLayout, Error> {
    let table = discover::discover(settings)?;
    let cases = |files: &discover::SplitFiles| -> Vec<VolumeCase> {
        let under = &settings.root;
        let listed = files.found.candidates.iter().map(|c| {
            let name = case_name(&slash_path(c.path.strip_prefix(under).unwrap_or(&c.path)));
            let class = match c.label {
                CandidateLabel::Class(i) => Some(i),
                _ => None,
            };
            VolumeCase { class, patient: c.group.clone(), ..one_channel(name, c.path.clone()) }
        });
        listed.collect()
    };
    let folder = |files: &discover::SplitFiles| CaseFolder { folder: files.folder.clone(), cases: cases(files) };
    Ok(VolumeLayout {
        settings: settings.clone(),
        layout: DatasetLayout::Folders,
        classes: table.classes.clone(),
        label_names: BTreeMap::new(),
        channel_names: Vec::new(),
        train: folder(&table.train),
        validation: table.validation.as_ref().map(folder),
        test: Some(folder(&table.test)),
        unlabelled: 0,
        ignored: Vec::new(),
    })
}

/// `dataset.json`, in either form.
#[derive(Debug, Deserialize)]
struct DatasetJson {
    /// nnU-Net v2: channel number to name.
    channel_names: Option<BTreeMap<String, String>>,
    /// The Decathlon's first form: the same, under another name.
    modality: Option<BTreeMap<String, String>>,
    /// v2: name to value; the Decathlon: value (as text) to name.
    labels: BTreeMap<String, serde_json::Value>,
    file_ending: Option<String>,
    /// The Decathlon: `{ "image": "./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz" }`.
    training: Option<Vec<DecathlonPair>>,
}

#[derive(Debug, Deserialize)]
struct DecathlonPair {
    image: String,
    label: String,
}

/// The Decathlon / nnU-Net v2 layout.
fn decathlon_layout(settings: &DataSettings, json: &Path) -> Result<VolumeLayout, Error> {
    let bad = |why: String| Error::CaseLayout { file: json.to_path_buf(), why };
    let text = std::fs::read_to_string(json).map_err(|e| bad(format!("cannot be read ({e})")))?;
    let declared: DatasetJson = serde_json::from_str(&text).map_err(|e| {
        bad(format!(
            "is not a Decathlon / nnU-Net dataset.json ({e}); if the dataset is in split folders, set `data.layout = \
             \"folders\"`"
        ))
    })?;
    if settings.task != Task::Segmentation {
        return Err(bad("describes a segmentation dataset; set `data.task = \"segmentation\"`".into()));
    }
    let label_names = label_names(&declared.labels).map_err(bad)?;
    let channels =
        declared.channel_names.as_ref().or(declared.modality.as_ref()).ok_or_else(|| {
            bad("names no channels (`channel_names` in nnU-Net v2, `modality` in the Decathlon)".into())
        })?;
    let channel_names: Vec<String> = (0..channels.len())
        .map(|i| channels.get(&i.to_string()).cloned().ok_or_else(|| bad(format!("channel \"{i}\" is not named"))))
        .collect::<Result<_, _>>()?;
    let ending = declared.file_ending.clone().unwrap_or_else(|| ".nii.gz".into());
    if ending != ".nii.gz" && ending != ".nii" {
        return Err(bad(format!("`file_ending` is \"{ending}\"; radrun reads NIfTI volumes (.nii.gz, .nii)")));
    }
    let root = &settings.root;
    // nnU-Net v1 lists its cases as the first form does, but stores numbered channel files
    let numbered = |pair: &DecathlonPair| {
        let listed = root.join(pair.image.trim_start_matches("./"));
        let stem = case_name(&listed.to_string_lossy());
        !listed.is_file() && Path::new(&format!("{stem}_0000{ending}")).is_file()
    };
    let first_form = declared.training.as_ref().filter(|pairs| !pairs.first().is_some_and(numbered));
    let (train, test, unlabelled) = match first_form {
        Some(pairs) => {
            if channel_names.len() > 1 && settings.channels_from != ChannelsFrom::LastAxis {
                return Err(bad(format!(
                    "lists {} channels ({}) stored as 4D images; set `data.channels_from = \"last_axis\"`",
                    channel_names.len(),
                    channel_names.join(", ")
                )));
            }
            let cases = pairs.iter().map(|p| first_form_case(root, p)).collect::<Result<Vec<_>, _>>()?;
            // the Decathlon's test images come without labels
            let images_ts = root.join("imagesTs");
            let unlabelled =
                if images_ts.is_dir() { entries(&images_ts)?.iter().filter(|p| is_nifti(p)).count() } else { 0 };
            (cases, None, unlabelled)
        }
        None => {
            let cases = channel_cases(root, "imagesTr", "labelsTr", channel_names.len(), &ending)?;
            let (test, unlabelled) = labelled_test(root, channel_names.len(), &ending)?;
            (cases, test, unlabelled)
        }
    };
    Ok(VolumeLayout {
        settings: settings.clone(),
        layout: DatasetLayout::Decathlon,
        classes: Vec::new(),
        label_names,
        channel_names,
        train: CaseFolder { folder: root.join("imagesTr"), cases: train },
        validation: None,
        test,
        unlabelled,
        ignored: Vec::new(),
    })
}

/// The declared labels, by value: v2 maps names to values, the Decathlon values to names.
fn label_names(labels: &BTreeMap<String, serde_json::Value>) -> Result<BTreeMap<u32, String>, String> {
    let mut names = BTreeMap::new();
    for (key, value) in labels {
        let (number, name) = match (value.as_u64(), value.as_str(), key.parse::<u32>()) {
            (Some(v), _, _) => (u32::try_from(v).map_err(|_| format!("label \"{key}\" has value {v}"))?, key.clone()),
            (_, Some(name), Ok(v)) => (v, name.to_string()),
            _ => {
                return Err(format!(
                    "label \"{key}\" = {value} is neither a value (nnU-Net v2: \"name\": 1) nor a name (Decathlon: \
                     \"1\": \"name\"); region-based labels (lists) are not read"
                ));
            }
        };
        names.insert(number, name);
    }
    if !names.contains_key(&0) {
        return Err("declares no background (value 0) among its labels".into());
    }
    Ok(names)
}

fn first_form_case(root: &Path, pair: &DecathlonPair) -> Result<VolumeCase, Error> {
    let image = root.join(pair.image.trim_start_matches("./"));
    let mask = root.join(pair.label.trim_start_matches("./"));
    let name = case_name(&image.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
    for file in [&image, &mask] {
        if !file.is_file() {
            let why = format!("lists {}, which does not exist", crate::paths::path_text(file));
            return Err(Error::CaseLayout { file: root.join("dataset.json"), why });
        }
    }
    Ok(VolumeCase { mask: Some(mask), ..one_channel(name, image) })
}

/// The cases of `images` with `_NNNN` channel files, each with its mask in `labels`.
fn channel_cases(
    root: &Path,
    images: &str,
    labels: &str,
    channels: usize,
    ending: &str,
) -> Result<Vec<VolumeCase>, Error> {
    let images_dir = root.join(images);
    if !images_dir.is_dir() {
        let why = "is missing: a Decathlon / nnU-Net layout keeps its cases in imagesTr/ and labelsTr/ beside \
                   dataset.json (set `data.layout = \"folders\"` for split folders)";
        return Err(Error::CaseLayout { file: images_dir, why: why.into() });
    }
    let mut files: BTreeMap<String, BTreeMap<usize, PathBuf>> = BTreeMap::new();
    for path in entries(&images_dir)? {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let Some(stem) = name.strip_suffix(ending) else { continue };
        let channel = stem.rsplit_once('_').filter(|(_, n)| n.len() == 4).and_then(|(c, n)| Some((c, n.parse().ok()?)));
        let Some((case, channel)) = channel else {
            let why = format!("is not named <case>_<channel, 4 digits>{ending} (e.g. case_001_0000{ending})");
            return Err(Error::CaseLayout { file: path, why });
        };
        files.entry(case.to_string()).or_default().insert(channel, path);
    }
    let mut cases = Vec::new();
    for (name, mut by_channel) in files {
        let declared = channels;
        let channels: Vec<PathBuf> = (0..declared)
            .map(|c| {
                by_channel.remove(&c).ok_or_else(|| Error::ChannelMissing {
                    case: name.clone(),
                    expected: images_dir.join(format!("{name}_{c:04}{ending}")),
                    channels: declared,
                })
            })
            .collect::<Result<_, _>>()?;
        if let Some(extra) = by_channel.into_values().next() {
            let why = format!("is a channel dataset.json does not declare (it declares {declared})");
            return Err(Error::CaseLayout { file: extra, why });
        }
        let mask = root.join(labels).join(format!("{name}{ending}"));
        if !mask.is_file() {
            return Err(Error::MaskMissing { expected: mask, image: channels[0].clone() });
        }
        cases.push(VolumeCase { name, channels, mask: Some(mask), class: None, patient: None });
    }
    if cases.is_empty() {
        return Err(Error::EmptySplit(images_dir));
    }
    Ok(cases)
}

/// The labelled test cases (`imagesTs` with `labelsTs`), or `None` and how many test
/// images have no labels.
fn labelled_test(root: &Path, channels: usize, ending: &str) -> Result<(Option<CaseFolder>, usize), Error> {
    let images_dir = root.join("imagesTs");
    if !images_dir.is_dir() {
        return Ok((None, 0));
    }
    if root.join("labelsTs").is_dir() {
        let cases = channel_cases(root, "imagesTs", "labelsTs", channels, ending)?;
        return Ok((Some(CaseFolder { folder: images_dir, cases }), 0));
    }
    let count = entries(&images_dir)?.iter().filter(|p| is_nifti(p)).count();
    Ok((None, count.div_ceil(channels.max(1))))
}
