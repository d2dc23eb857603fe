//! `radrun init DATA_DIR`: a first recipe for a data folder, commented line by line and
//! written only once it plans. It finds the layout (class folders, image and mask
//! folders, a Decathlon dataset; NIfTI makes it a volume recipe), reads the data as
//! `radrun plan` does, and proposes from what it found: the classes or structures and
//! their counts, the image size, the window of CT, how patients are grouped, the
//! validation split and the model kind, each value with the reason for it, and the keys
//! a user changes next commented out.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use radrun_data::paths::path_text;
use radrun_data::summary::DataSummary;
use radrun_data::volume_dataset::read_volumes;
use radrun_data::volume_summary::VolumeSummary;

use crate::cli::{InitArgs, PlanArgs};
use crate::error::RadrunError;
use crate::recipe::plan::{DatasetError, Plan};
use crate::run::datasets::Datasets;
use crate::store::{WriteError, write_atomic};

/// The names each split folder is looked for under, in order.
const TRAIN: [&str; 4] = ["Train", "train", "Training", "training"];
const TEST: [&str; 4] = ["Test", "test", "Testing", "testing"];
const VALIDATION: [&str; 4] = ["Validation", "validation", "Val", "val"];
/// Mask folder names of a segmentation layout (`data.masks_folder = "auto"`'s).
const MASKS: [&str; 2] = ["Segmentation", "Masks"];
/// The largest image side proposed: larger images are resized down to it (a CPU trains
/// the tutorial's CNN at 256 x 256 in minutes per epoch; raise it on a GPU).
const LARGEST_SIDE: u32 = 256;

/// What the folder holds, as far as its folder names tell.
struct Layout {
    task: &'static str,
    /// Volumes (NIfTI files or a Decathlon dataset) rather than images.
    volumes: bool,
    decathlon: bool,
    /// The split folders found, when they are not radrun's default names.
    train: String,
    test: String,
    validation: Option<String>,
    /// A CSV table at the root with `file` and `patient`/`patient_id` columns.
    patients_table: Option<String>,
    /// A labels table at the root (`file` and `label` columns).
    labels: Option<String>,
}

pub fn init(args: &InitArgs) -> Result<(), RadrunError> {
    let refuse = |message: String| super::usage_error(&args.data, message);
    if args.out.exists() && !args.force {
        return Err(super::usage_error(
            &args.out,
            "exists already; give another --out, or --force to replace it".into(),
        ));
    }
    let layout = survey(&args.data, args.task.as_deref()).map_err(refuse)?;
    let root = root_as_written(&args.data, &args.out);
    let draft = draft(&layout, &root);
    let findings = read_data(&draft, &args.out, &args.data)?;
    let recipe = recipe(&layout, &root, &findings);
    check_and_write(&recipe, &args.out)?;
    println!("{}", path_text(&args.out));
    eprintln!("next: radrun plan {0}   (the runs and the data), then: radrun {0}", path_text(&args.out));
    Ok(())
}

/// The layout of `data` from its folder names; an error says what radrun expects.
fn survey(data: &Path, task: Option<&str>) -> Result<Layout, String> {
    if !data.is_dir() {
        return Err("is not a folder; give the folder holding Train/ and Test/ (or a dataset.json)".into());
    }
    let mut layout = Layout {
        task: "classification",
        volumes: false,
        decathlon: false,
        train: TRAIN[0].into(),
        test: TEST[0].into(),
        validation: None,
        patients_table: table_with(data, &["file"], &["patient", "patient_id"]),
        labels: table_with(data, &["file", "label"], &[]),
    };
    if data.join("dataset.json").is_file() {
        (layout.task, layout.volumes, layout.decathlon) = ("segmentation", true, true);
        return Ok(layout);
    }
    if let Some(table) = &layout.labels {
        layout.task = match task {
            Some("segmentation") => {
                return Err(format!("has the labels table {table}: segmentation reads masks, not labels"));
            }
            Some("multilabel") => "multilabel",
            _ if several_labels(&data.join(table)) => "multilabel",
            _ => "classification",
        };
        return Ok(layout);
    }
    let train = first_folder(data, &TRAIN).ok_or_else(|| {
        "has no training folder (looked for Train, train, Training, training): radrun reads \
         <root>/Train/<class>/<image> and <root>/Test/<class>/<image>, <root>/Train/Images with \
         <root>/Train/Masks, or a Decathlon dataset with its dataset.json (docs/data.md)"
            .to_string()
    })?;
    let test = first_folder(data, &TEST).ok_or_else(|| {
        format!(
            "has {train}/ but no test folder (looked for Test, test, Testing, testing): the test set must be \
                 a folder of its own from the start, laid out as {train}/"
        )
    })?;
    layout.validation = first_folder(data, &VALIDATION);
    layout.volumes = holds_nifti(&data.join(&train));
    let folders = sub_folders(&data.join(&train));
    let masks = MASKS.iter().find(|m| folders.contains(&m.to_string()));
    layout.task = match (task, masks) {
        (Some("segmentation"), None) => {
            return Err(format!(
                "{train}/ has no Segmentation or Masks folder beside its Images folder: a segmentation layout is \
                 <root>/{train}/Images with <root>/{train}/Masks"
            ));
        }
        (Some("multilabel"), _) => {
            return Err("has no labels table (a CSV file with `file` and `label` columns, labels joined by `|`): \
                        a multilabel task reads one (docs/data.md)"
                .into());
        }
        (_, Some(_)) if folders.iter().any(|f| f == "Images") => "segmentation",
        _ => "classification",
    };
    if layout.task == "classification" {
        match folders.as_slice() {
            [] => {
                return Err(format!(
                    "{train}/ has no class folders: put each class's images in a folder of its own, {train}/<class>/"
                ));
            }
            [one] => {
                return Err(format!(
                    "{train}/ has one class folder only ({one}): a classifier needs two or more; add a folder per \
                     class, e.g. {train}/normal and {train}/abnormal"
                ));
            }
            _ => {}
        }
    }
    (layout.train, layout.test) = (train, test);
    Ok(layout)
}

/// The first of `names` that is a folder of `root`.
fn first_folder(root: &Path, names: &[&str]) -> Option<String> {
    names.iter().find(|n| root.join(n).is_dir()).map(|n| n.to_string())
}

/// The visible sub-folders of `folder`, sorted.
fn sub_folders(folder: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(folder)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

/// Whether a NIfTI file lies in `folder` or its sub-folders (two levels down).
fn holds_nifti(folder: &Path) -> bool {
    let is_nifti = |p: &Path| p.to_string_lossy().ends_with(".nii") || p.to_string_lossy().ends_with(".nii.gz");
    let entries = |f: &Path| std::fs::read_dir(f).into_iter().flatten().filter_map(Result::ok).map(|e| e.path());
    entries(folder).any(|p| is_nifti(&p) || (p.is_dir() && entries(&p).any(|q| is_nifti(&q))))
}

/// The first CSV table at the root (by name) whose header has every one of `all` and, if
/// any are given, one of `one_of`.
fn table_with(root: &Path, all: &[&str], one_of: &[&str]) -> Option<String> {
    let mut tables: Vec<PathBuf> = std::fs::read_dir(root)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")))
        .collect();
    tables.sort();
    tables.into_iter().find_map(|path| {
        let header = csv::Reader::from_path(&path).ok()?.headers().ok()?.clone();
        let has = |name: &&str| header.iter().any(|c| c.trim() == *name);
        let name = path.file_name()?.to_string_lossy().into_owned();
        (all.iter().all(has) && (one_of.is_empty() || one_of.iter().any(has))).then_some(name)
    })
}

/// Whether a labels table gives some image several labels (`a|b`, `a;b`).
fn several_labels(table: &Path) -> bool {
    let Ok(mut reader) = csv::Reader::from_path(table) else { return false };
    let Some(at) = reader.headers().ok().and_then(|h| h.iter().position(|c| c.trim() == "label")) else { return false };
    reader.records().filter_map(Result::ok).any(|row| row.get(at).is_some_and(|l| l.contains(['|', ';'])))
}

/// `data.root` as the recipe writes it: relative to the recipe's folder (the folder as
/// given when the recipe goes into the current folder), else absolute.
fn root_as_written(data: &Path, out: &Path) -> String {
    let beside = out.parent().is_none_or(|p| p.as_os_str().is_empty() || p == Path::new("."));
    let root = if beside || data.is_absolute() {
        data.to_path_buf()
    } else {
        std::path::absolute(data).unwrap_or(data.into())
    };
    path_text(&root).replace('\\', "/")
}

/// `text` as a TOML string, quoted and escaped.
fn toml_string(text: &str) -> String {
    toml::Value::String(text.into()).to_string()
}

/// The recipe's layout keys alone, to read the data with.
fn draft(layout: &Layout, root: &str) -> String {
    let mut data = format!("[data]\nroot = {}\n", toml_string(root));
    if layout.volumes {
        data += "dims = 3\n";
    }
    if layout.task != "classification" {
        data += &format!("task = {:?}\n", layout.task);
    }
    for (key, found, default) in [("train", &layout.train, TRAIN[0]), ("test", &layout.test, TEST[0])] {
        if found != default && !layout.decathlon {
            data += &format!("{key} = {found:?}\n");
        }
    }
    if let Some(validation) = layout.validation.as_ref().filter(|v| *v != VALIDATION[0]) {
        data += &format!("validation = {validation:?}\n");
    }
    if let Some(table) = &layout.labels {
        data += &format!("labels = {table:?}\n");
    }
    if let Some(table) = &layout.patients_table {
        data += &format!("group_by = {{ csv = {table:?} }}\n");
    }
    let kind = match (layout.volumes, layout.task) {
        (false, "classification" | "multilabel") => "cnn",
        (false, _) => "unet",
        (true, "classification") => "cnn3d",
        (true, _) => "unet3d",
    };
    format!("{data}\n[model]\nkind = \"{kind}\"\n")
}

/// What reading the data as `radrun plan` does found.
struct Findings {
    /// The data summary, as `radrun plan` prints it.
    summary: String,
    /// Images: the 2D summary and the windows the CT files state.
    images: Option<(Box<DataSummary>, Windows)>,
    /// Volumes: the DICOM modalities of the cases.
    modalities: BTreeMap<String, usize>,
}

/// The WindowCenter/WindowWidth pairs the training files state, with their counts, and
/// the files read.
type Windows = (BTreeMap<(i64, i64), usize>, usize);

/// Reads the data of the draft recipe (written beside `out` for a moment, so that its
/// relative paths mean what they will in the recipe).
fn read_data(draft: &str, out: &Path, data: &Path) -> Result<Findings, RadrunError> {
    let scratch = out.with_file_name(format!(".radrun-init-{}.toml", std::process::id()));
    write_atomic(&scratch, draft.as_bytes())?;
    let read = load_plan(&scratch).and_then(|plan| read_plan_data(&plan));
    let _ = std::fs::remove_file(&scratch);
    // what the data holds is the folder's finding, not the scratch recipe's
    read.map_err(|e| {
        let said = e.to_string();
        let said = said.trim_start_matches("error: ");
        let said = said.strip_prefix(&format!("{}: ", path_text(&scratch))).unwrap_or(said);
        super::usage_error(data, said.to_string())
    })
}

fn load_plan(recipe: &Path) -> Result<Plan, RadrunError> {
    super::load_plan(&PlanArgs { recipe: Some(recipe.to_path_buf()), set: Vec::new() })
}

fn read_plan_data(plan: &Plan) -> Result<Findings, RadrunError> {
    let failed = |source| DatasetError { recipe: plan.recipe_path.clone(), source };
    let run = &plan.runs[0];
    if run.settings.data.dims == 3 {
        let images = read_volumes(&run.settings.data).map_err(failed)?;
        let mut modalities = BTreeMap::new();
        for (_, case) in images.cases() {
            if let Some(modality) = &case.modality {
                *modalities.entry(modality.clone()).or_default() += 1;
            }
        }
        return Ok(Findings { summary: VolumeSummary::of(&images).to_string(), images: None, modalities });
    }
    let mut datasets = Datasets::new(plan, Path::new("runs"));
    let (dataset, _) = datasets.get(run).map_err(failed)?;
    let mut windows = (BTreeMap::new(), 0);
    if dataset.summary.dicom_modalities.contains_key("CT") {
        for path in dataset.train.paths().into_iter().take(200) {
            windows.1 += 1;
            if let Some((center, width)) = radrun_data::stated_window(path) {
                *windows.0.entry((center.round() as i64, width.round() as i64)).or_default() += 1;
            }
        }
    }
    let summary = dataset.summary.to_string();
    Ok(Findings { summary, images: Some((Box::new(dataset.summary), windows)), modalities: BTreeMap::new() })
}

/// Lines `key = value` with their reason as a comment, aligned.
#[derive(Default)]
struct Lines(String);

impl Lines {
    fn key(&mut self, line: &str, why: &str) {
        let _ = writeln!(self.0, "{line:<38} # {why}");
    }
    /// A key to try, commented out, with what it does.
    fn hint(&mut self, line: &str, why: &str) {
        let _ = writeln!(self.0, "{:<38} # {why}", format!("# {line}"));
    }
    fn text(&mut self, text: &str) {
        self.0 += text;
        self.0.push('\n');
    }
}

/// The whole recipe: what was found as a comment, then each section.
fn recipe(layout: &Layout, root: &str, findings: &Findings) -> String {
    let mut r = Lines::default();
    r.text(&format!(
        "# A first recipe for {root}, written by `radrun init` from what it found there (below).\n\
         # Each value says why; the keys to try next are commented out; every key is in\n\
         # docs/recipes.md. `radrun plan` on this file lists the runs and the data, `radrun` on\n\
         # it trains. For an editor's completion: `radrun schema > recipe.schema.json` and a\n\
         # first line `#:schema ./recipe.schema.json`.\n#\n# What radrun found:"
    ));
    for line in findings.summary.lines() {
        r.text(format!("#   {line}").trim_end());
    }
    r.text("\n[data]");
    r.key(&format!("root = {}", toml_string(root)), "relative to this file's folder");
    data_keys(&mut r, layout, findings);
    r.text("");
    model_keys(&mut r, layout);
    r.text("\n[train]");
    r.hint("epochs = 15", "the tutorial's CNN: more for a larger model or set");
    r.hint("learning_rate = \"auto\"", "each optimizer's Keras default (Adam 0.001)");
    r.hint("early_stopping = { metric = \"val_loss\", patience = 5 }", "stop when validation stops improving");
    r.text("\n# [sweep]                              # several runs to compare, e.g.:");
    r.hint("\"train.learning_rate\" = [0.001, 0.0003]", "a grid of values");
    r.hint("seeds = [1, 2, 3]", "each configuration repeated, for its spread");
    r.text("");
    r.0
}

/// The `[data]` keys past the root, each with its reason.
fn data_keys(r: &mut Lines, layout: &Layout, findings: &Findings) {
    if layout.volumes {
        r.key("dims = 3", if layout.decathlon { "a Decathlon dataset (dataset.json)" } else { "NIfTI volumes" });
    }
    if layout.task != "classification" {
        let why = if layout.decathlon { "imagesTr with labelsTr" } else { "an Images folder with its masks" };
        r.key(&format!("task = {:?}", layout.task), why);
    }
    for (key, found, default) in [("train", &layout.train, TRAIN[0]), ("test", &layout.test, TEST[0])] {
        if found != default && !layout.decathlon {
            r.key(&format!("{key} = {found:?}"), "the split folder found");
        }
    }
    if let Some(validation) = &layout.validation {
        let line = format!("validation = {validation:?}");
        r.key(&line, "the validation folder found: the validation set as given");
    }
    if let Some(table) = &layout.labels {
        r.key(&format!("labels = {table:?}"), "the labels table found: each image's label(s) by its `file`");
    }
    if let Some(table) = &layout.patients_table {
        let why = format!("{table} gives each image's patient: one patient's images stay on one side of every split");
        r.key(&format!("group_by = {{ csv = {table:?} }}"), &why);
    }
    if layout.volumes && findings.modalities.contains_key("CT") {
        r.key("normalize = \"ct\"", "CT in Hounsfield units: clipped and scaled as nnU-Net does");
    } else if layout.volumes {
        r.hint("normalize = \"ct\"", "for CT in Hounsfield units (nnU-Net's rule)");
    }
    let Some((summary, windows)) = &findings.images else {
        r.hint("spacing = \"median\"", "the training cases' median spacing (the default)");
        r.hint("patch_size = \"auto\"", "fitted to train.memory_budget (the default)");
        return;
    };
    image_size(r, &summary.sizes);
    grouping(r, layout, summary);
    validation_share(r, layout, summary);
    if summary.dicom_modalities.contains_key("CT") {
        ct_window(r, windows);
    }
}

/// `image_size`: the median stored size, at most `LARGEST_SIDE` on a side, a multiple of
/// 8 and at least 32.
fn image_size(r: &mut Lines, sizes: &BTreeMap<String, usize>) {
    let mut sides: Vec<(u32, u32, usize)> = sizes
        .iter()
        .filter_map(|(size, &n)| {
            let (h, w) = size.split_once(" x ")?;
            Some((h.trim().parse().ok()?, w.trim().parse().ok()?, n))
        })
        .collect();
    let median = |side: fn(&(u32, u32, usize)) -> u32, sides: &mut Vec<(u32, u32, usize)>| {
        sides.sort_by_key(side);
        let half = sides.iter().map(|s| s.2).sum::<usize>() / 2;
        let mut seen = 0;
        sides
            .iter()
            .find(|s| {
                seen += s.2;
                seen > half
            })
            .map_or(64, side)
    };
    let (h, w) = (median(|s| s.0, &mut sides), median(|s| s.1, &mut sides));
    let scale = f64::from(LARGEST_SIDE) / f64::from(h.max(w));
    let fit = |side: u32| ((f64::from(side) * scale.min(1.0)) as u32 / 8 * 8).max(32);
    sides.sort_by_key(|s| std::cmp::Reverse(s.2));
    let stored: Vec<String> = sides.iter().take(4).map(|(h, w, n)| format!("{h} x {w} ({n})")).collect();
    let more = if sides.len() > 4 { format!(" and {} other sizes", sides.len() - 4) } else { String::new() };
    let why = match sides.as_slice() {
        [_] => format!("every image is stored {}", stored[0]),
        _ => format!("the median of the stored sizes {}{more}; each image is resized to it", stored.join(", ")),
    };
    let capped = if scale < 1.0 {
        format!("; at most {LARGEST_SIDE} a side for a CPU: raise it on a GPU")
    } else {
        String::new()
    };
    r.key(&format!("image_size = [{}, {}]", fit(h), fit(w)), &format!("{why}{capped}"));
}

/// How patients were found, and what to do when they were not.
fn grouping(r: &mut Lines, layout: &Layout, summary: &DataSummary) {
    if layout.patients_table.is_some() {
        return;
    }
    if summary.patients > 0 {
        let why =
            format!("the default: the DICOM PatientID ({} patients) keeps each patient on one side", summary.patients);
        r.hint("group_by = \"auto\"", &why);
    } else {
        r.text(
            "# no patient IDs found: each image counts as its own patient. If a patient has several\n\
             # images, say how to find them, or the validation and test scores come out optimistic:\n\
             # group_by = \"folder\"                 # Train/<class>/<patient>/<image>\n\
             # group_by = { pattern = \"^(?P<group>[^_]+)_\" }   # the patient in the file name",
        );
    }
}

/// The validation split the first run gets, in numbers.
fn validation_share(r: &mut Lines, layout: &Layout, summary: &DataSummary) {
    let Some(validation) = summary.splits.iter().find(|s| s.name == "validation") else { return };
    if layout.validation.is_none() {
        let share = summary.validation_split_off.unwrap_or(0.11);
        let why = format!(
            "the tutorial's share of {}/ as validation: {} images of {} patients, stratified by class",
            layout.train, validation.images, validation.groups
        );
        r.key(&format!("validation_fraction = {share}"), &why);
    }
}

/// CT: the window the files state most often, or the three usual windows as channels.
fn ct_window(r: &mut Lines, (stated, read): &Windows) {
    let stating: usize = stated.values().sum();
    match stated.iter().max_by_key(|(_, n)| **n) {
        Some(((center, width), most)) => {
            let why = format!(
                "each CT file's own WindowCenter/WindowWidth: {stating} of the {read} files read state one, \
                 {most} center {center}, width {width}"
            );
            r.key("window = \"auto\"", &why);
            r.hint(&format!("window = {{ center = {center}, width = {width} }}"), "one window for every file");
        }
        None => {
            let why = format!(
                "none of the {read} CT files read states a window, and their whole range of Hounsfield units \
                 would leave soft tissue grey: a soft-tissue window (\"lung\", \"bone\"...)"
            );
            r.key("window = \"mediastinum\"", &why);
        }
    }
    r.hint("window = [\"lung\", \"mediastinum\", \"bone\"]", "one channel per window (ImageNet backbones)");
}

/// `[model]` and `[augment]`: the model kind of the task, and the alternatives.
fn model_keys(r: &mut Lines, layout: &Layout) {
    r.text("[augment]");
    r.hint("enabled = false", "the tutorial's augmentation is on by default");
    r.text("\n[model]");
    match (layout.volumes, layout.task) {
        (false, "classification" | "multilabel") => {
            r.key("kind = \"cnn\"", "the tutorial's CNN (build_cnn), small enough for a CPU");
            r.hint("kind = \"transfer\"", "an ImageNet backbone, often better on few images:");
            r.hint("backbone = \"resnet18\"", "`radrun weights fetch resnet18` first");
        }
        (false, _) => r.key("kind = \"unet\"", "the tutorial's U-Net for masks"),
        (true, "classification") => r.key("kind = \"cnn3d\"", "a 3D CNN for one class per volume"),
        (true, _) => {
            r.key("kind = \"unet3d\"", "nnU-Net's 3D U-Net: patches in training, a sliding window in testing");
            r.hint("initial_features = 32", "nnU-Net's; fewer train faster on a CPU");
        }
    }
}

/// Plans the recipe (the recipe checks, every run) from a scratch copy beside `out`, then
/// puts it in place: a recipe that does not plan is never written.
fn check_and_write(recipe: &str, out: &Path) -> Result<(), RadrunError> {
    let scratch = out.with_file_name(format!(".radrun-init-{}.toml", std::process::id()));
    write_atomic(&scratch, recipe.as_bytes())?;
    // a recipe radrun init wrote that does not plan is radrun's mistake, not the user's
    let planned = load_plan(&scratch).map_err(|e| {
        super::usage_error(out, format!("radrun init wrote a recipe that does not plan ({e}); please report it"))
    });
    let placed = planned.and_then(|_| {
        std::fs::rename(&scratch, out)
            .map_err(|source| RadrunError::Disk(WriteError { path: out.to_path_buf(), source }))
    });
    let _ = std::fs::remove_file(&scratch);
    placed
}
