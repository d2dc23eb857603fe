//! `methods.md` and `methods.tex` of a recipe's runs folder: a methods section in plain
//! English, with `claim.md` (the CLAIM 2024 checklist, [`claim`]), written from the
//! records of its finished runs only (`plan.json`, each run's
//! resolved `recipe.toml`, `status.json`, `data_summary.json`, `model_summary.txt`, a
//! volume run's `preprocessing.json` ([`volumes`]), and the external sets'
//! `external.json`). No number is typed: each is a recorded value, a
//! rounding of one, or a sum or range of recorded values. Rewritten after each finished
//! recipe and by `radrun methods`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{PlanRecord, ReportError};

mod claim;
mod volumes;
use radrun_data::paths::path_text;
use radrun_data::{GroupBy, Task};
use radrun_metrics::evaluate::Threshold;

use crate::recipe::settings::{Settings, read_resolved};
use crate::store::aggregate::tex_escape;
use crate::store::external::ExternalRecord;
use crate::store::{RunDir, State, Status, write_atomic};

/// A finished run's records.
struct Finished {
    status: Status,
    settings: Settings,
    data: Value,
    /// "167,846" as model_summary.txt writes it.
    parameters: Option<String>,
    /// A volume run's preprocessing.json (null for 2D runs).
    preprocessing: Value,
}

/// Writes methods.md and methods.tex into the runs `folder`; returns methods.md's path.
pub fn write_methods(folder: &Path) -> Result<PathBuf, ReportError> {
    let plan = PlanRecord::read(folder)?;
    let runs: Vec<Finished> = plan.runs.iter().filter_map(|(id, _)| finished(&folder.join(id))).collect();
    let Some(first) = runs.first() else {
        return Err(ReportError::Unreadable {
            path: folder.to_path_buf(),
            message: "has no finished run yet: the methods are drafted from finished runs' records; train them \
                      (`radrun RECIPE`), or see why they failed (`radrun status RECIPE`)"
                .into(),
        });
    };
    let externals: Vec<ExternalRecord> = ExternalRecord::all(folder).into_iter().map(|(_, r)| r).collect();
    let mut text = format!(
        "# Methods\n\n*Written by radrun {} from the records of the {} finished run(s), of {} planned, of recipe \
         `{}`: every number is a recorded value. Where the runs differ (a sweep), the settings stated are the first \
         finished run's, each paragraph names the keys that differ, and the swept values are listed under Data \
         partitions. Reword freely; change a number only by changing the experiment.*\n\n",
        first.status.radrun_version,
        runs.len(),
        plan.runs.len(),
        plan.recipe_name
    );
    let volumes = first.settings.data.dims == 3;
    for (title, paragraph) in [
        ("Data", if volumes { volumes::data(first) } else { data(first) }),
        ("Preprocessing", if volumes { volumes::preprocessing(first) } else { preprocessing(&first.settings) }),
        ("Data partitions", partitions(&plan, first)),
        ("Model", model(first)),
        ("Training", training(&runs)),
        ("Model selection", selection(&runs)),
        ("Evaluation", evaluation(first, &externals)),
        ("Software", software(first)),
    ] {
        let _ = write!(text, "## {title}\n\n{paragraph}{}\n\n", swept_here(&plan, title));
    }
    text += &references(first, &externals);
    // claim.md and the LaTeX first: methods.md is the one a failed write leaves as it
    // was, with them
    let path = folder.join("methods.md");
    write_atomic(&folder.join("claim.md"), claim::checklist(folder, &plan, &runs, &externals).as_bytes())?;
    write_atomic(&folder.join("methods.tex"), latex(&text).as_bytes())?;
    write_atomic(&path, text.as_bytes())?;
    Ok(path)
}

/// The paragraph that states a recipe key's value.
fn paragraph_of(key: &str) -> &'static str {
    match key.split('.').next().unwrap_or_default() {
        "split" => "Data partitions",
        "data" if ["data.split_seed", "data.validation_fraction"].contains(&key) => "Data partitions",
        "data" if ["data.root", "data.group_by", "data.orientation", "data.test_fraction"].contains(&key) => "Data",
        "train" if key == "train.keep" => "Model selection",
        // a volume run states its batches per epoch with its patches
        "train" if key == "train.iterations_per_epoch" => "Preprocessing",
        "data" | "augment" => "Preprocessing",
        "model" => "Model",
        "train" => "Training",
        "eval" => "Evaluation",
        _ => "",
    }
}

/// The swept keys paragraph `title` states (Data partitions lists them all): the value
/// written is the first run's.
fn swept_here(plan: &PlanRecord, title: &str) -> String {
    let keys: Vec<String> = plan
        .swept_keys
        .iter()
        .filter(|key| title != "Data partitions" && paragraph_of(key) == title)
        .map(|key| format!("`{key}`"))
        .collect();
    if keys.is_empty() {
        return String::new();
    }
    format!(
        " The runs differed in {}: the value stated is the first finished run's; each run's is under Data \
         partitions.",
        keys.join(", ")
    )
}

fn finished(dir: &Path) -> Option<Finished> {
    let status = RunDir::new(dir.to_path_buf()).status().filter(|s| s.state == State::Done)?;
    let settings = read_resolved(&dir.join("recipe.toml")).ok()?;
    let data = serde_json::from_slice(&std::fs::read(dir.join("data_summary.json")).ok()?).ok()?;
    let summary = std::fs::read_to_string(dir.join("model_summary.txt")).unwrap_or_default();
    let parameters =
        summary.lines().find_map(|l| l.trim().strip_prefix("learnable parameters:").map(|p| p.trim().to_string()));
    let preprocessing = std::fs::read(dir.join("preprocessing.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    Some(Finished { status, settings, data, parameters, preprocessing })
}

/// "a (3), b (4)" of a JSON object of counts.
fn counts(value: &Value) -> String {
    let Some(map) = value.as_object() else { return String::new() };
    map.iter().map(|(k, v)| format!("{k} ({v})")).collect::<Vec<_>>().join(", ")
}

fn split<'a>(data: &'a Value, name: &str) -> Option<&'a Value> {
    data["splits"].as_array()?.iter().find(|s| s["name"] == name)
}

fn data(run: &Finished) -> String {
    let d = &run.data;
    let classes: Vec<&str> = d["classes"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let task = match run.settings.data.task {
        Task::Classification => format!("classification into one of {} classes", classes.len()),
        Task::Multilabel => format!("multi-label classification ({} labels, each present or not)", classes.len()),
        Task::Segmentation => format!("segmentation of {} labels", classes.len()),
    };
    let mut text = format!(
        "The task was {task} ({}), on the dataset in `{}`.",
        classes.join(", "),
        d["root"].as_str().unwrap_or_default()
    );
    let units = units(run);
    let (train, validation, test) = (split(d, "train"), split(d, "validation"), split(d, "test"));
    match (train, validation) {
        (Some(train), Some(validation)) if !d["validation_split_off"].is_number() && !d["fold"].is_array() => {
            let _ = write!(
                text,
                " The training data held {} images of {} {units}, the validation folder (`{}`) {} images of {} \
                 {units}",
                train["images"],
                train["groups"],
                validation["source"].as_str().unwrap_or_default(),
                validation["images"],
                validation["groups"]
            );
        }
        (Some(train), Some(validation)) => {
            let sum = |key: &str| train[key].as_u64().unwrap_or(0) + validation[key].as_u64().unwrap_or(0);
            let _ = write!(text, " The training data held {} images of {} {units}", sum("images"), sum("groups"));
        }
        _ => {}
    }
    if let Some(test) = test {
        let _ = write!(
            text,
            "; the test set, a separate folder (`{}`), {} images of {} {units}, per class: {}.",
            test["source"].as_str().unwrap_or_default(),
            test["images"],
            test["groups"],
            counts(&test["per_class"])
        );
    }
    let _ = write!(
        text,
        " {} The files were {}, of stored sizes {}",
        grouping(run),
        counts(&d["formats"]),
        counts(&d["sizes"])
    );
    if d["dicom_modalities"].as_object().is_some_and(|m| !m.is_empty()) {
        let _ = write!(text, "; DICOM modalities {}", counts(&d["dicom_modalities"]));
    }
    let skipped = d["skipped"].as_array().map_or(0, Vec::len);
    let ignored = d["ignored"].as_array().map_or(0, Vec::len);
    let _ = write!(text, ". {skipped} unreadable image(s) were left out and {ignored} non-image file(s) ignored.");
    text + &recorded_facts(run)
}

/// How patients were told apart, in a sentence.
fn grouping(run: &Finished) -> String {
    match run.settings.data.group_by {
        GroupBy::None => format!(
            "{} were not grouped by patient (`data.group_by = \"none\"`): each is its own unit in splits and \
             intervals.",
            if run.settings.data.dims == 3 { "Cases" } else { "Images" }
        ),
        // a volume run's grouping is a phrase, a 2D run's a setting
        _ if run.settings.data.dims == 3 => {
            format!("Patients were told apart by the {}.", run.data["grouping"].as_str().unwrap_or_default())
        }
        _ => format!("Patients were told apart by the `{}`.", run.data["grouping"].as_str().unwrap_or_default()),
    }
}

/// The warnings the data summary recorded, and the dataset's fingerprint.
fn recorded_facts(run: &Finished) -> String {
    let mut text = String::new();
    for warning in run.data["warnings"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        let _ = write!(text, " Warning recorded: {}.", warning.lines().next().unwrap_or_default());
    }
    if let Some(dataset) = &run.status.provenance.dataset {
        let _ = write!(
            text,
            " The dataset's fingerprint (SHA-256 over each file's path, size and SHA-256, {} files) is `{}`; each \
             run's `split.csv` lists every file with its split.",
            dataset.files, dataset.sha256
        );
    }
    text
}

/// What a group is: patients, or images (cases) when the run grouped none.
fn units(run: &Finished) -> &'static str {
    match (run.settings.data.group_by == GroupBy::None, run.settings.data.dims) {
        (false, _) => "patients",
        (true, 3) => "units (cases, not grouped)",
        (true, _) => "units (images, not grouped)",
    }
}

/// What the data is counted in: images, or cases for volume runs.
fn items(run: &Finished) -> &'static str {
    if run.settings.data.dims == 3 { "cases" } else { "images" }
}

/// `key = value` of each entry of a section, as the resolved recipe writes it.
fn entries<T: serde::Serialize>(section: &T) -> String {
    let Ok(toml::Value::Table(table)) = toml::Value::try_from(section) else { return String::new() };
    table
        .iter()
        .filter(|(_, v)| {
            !v.is_table() && !v.is_array() || v.as_array().is_some_and(|a| a.iter().all(|x| !x.is_table()))
        })
        .map(|(k, v)| format!("`{k} = {v}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn preprocessing(settings: &Settings) -> String {
    let d = &settings.data;
    let [height, width] = d.image_size;
    let mut text = format!(
        "Each image was decoded by radrun (DICOM files through their rescale or modality LUT, windowed by \
         `data.window = {}`, MONOCHROME1 inverted), scaled to 0 to 1, and resized to {height} x {width} pixels \
         (`data.resize = {}`), giving {} input channel(s).",
        toml_text(&d.window),
        toml_text(&d.resize),
        d.input_channels()
    );
    if settings.augment.enabled {
        let _ = write!(text, " Training images were augmented on the fly: {}.", entries(&settings.augment));
    } else {
        text += " No augmentation was used (`augment.enabled = false`).";
    }
    text
}

fn partitions(plan: &PlanRecord, run: &Finished) -> String {
    let s = &run.settings;
    let mut text = String::from("The test set was never used for training or model selection. ");
    let stratified = if s.data.task == Task::Segmentation { "" } else { " stratified by class" };
    if s.split.folds > 0 {
        let _ = write!(
            text,
            "The training data was cut into {} folds, whole {} each,{stratified} (seed {}); each run validated \
             on one fold and trained on the others.",
            s.split.folds,
            units(run),
            s.data.split_seed
        );
    } else if run.data["validation_split_off"].is_number() {
        let _ = write!(
            text,
            "A fraction {} of the training data, whole {}{stratified} (seed {}), was held out for validation.",
            s.data.validation_fraction,
            units(run),
            s.data.split_seed
        );
    } else {
        text += "Validation used its own folder.";
    }
    if !plan.swept_keys.is_empty() {
        let values: Vec<String> = plan
            .swept_keys
            .iter()
            .enumerate()
            .map(|(k, key)| {
                let mut seen: Vec<&str> = Vec::new();
                for value in plan.runs.iter().filter_map(|(_, v)| v.get(k)) {
                    if !seen.contains(&value.as_str()) {
                        seen.push(value);
                    }
                }
                format!("`{key}` in {}", seen.join(", "))
            })
            .collect();
        let _ = write!(text, " The recipe's {} planned runs took {}.", plan.runs.len(), values.join("; "));
    }
    text
}

fn model(run: &Finished) -> String {
    use radrun_settings::ModelSettings;
    let what = match &run.settings.model {
        ModelSettings::Cnn(_) => "the tutorial's convolutional network (`build_cnn`), randomly initialised",
        ModelSettings::Transfer(_) => {
            "a published backbone with a new classification head (the tutorial's `TransferLearning`), its \
             initial weights and input normalisation as `weights` and `normalize` say"
        }
        ModelSettings::Unet(_) => "a U-Net (the tutorial's `U_Net`), randomly initialised",
        ModelSettings::Cnn3d(_) => "the tutorial's convolutional network in 3D, randomly initialised",
        ModelSettings::Unet3d(_) => "a 3D U-Net pooled by nnU-Net's rule, randomly initialised",
    };
    let mut text = format!("The model was {what}: {}.", entries(&run.settings.model));
    if let ModelSettings::Transfer(transfer) = &run.settings.model {
        use radrun_settings::Weights;
        let _ = write!(
            text,
            " Its backbone {}.",
            match &transfer.weights {
                Weights::None => "was randomly initialised".to_string(),
                Weights::Imagenet => format!(
                    "started from the ImageNet weights in radrun's cache: the official file published at {}, put \
                     there by `radrun weights fetch` (which checks its SHA-256) or `radrun weights import` (a local \
                     copy, checked to fit the backbone)",
                    transfer.backbone.facts().weights.url
                ),
                Weights::File(path) => format!("started from the weights in `{}`", path_text(path)),
            }
        );
    }
    if let Some(parameters) = &run.parameters {
        let _ = write!(text, " It had {parameters} learnable parameters (`model_summary.txt`).");
    }
    text
}

fn training(runs: &[Finished]) -> String {
    let t = &runs[0].settings.train;
    let up_to = if t.early_stopping.is_some() { "up to " } else { "" };
    let phases: Vec<String> = t
        .phases
        .iter()
        .filter(|p| p.epochs > 0)
        .map(|p| {
            format!(
                "{up_to}{} epochs of {} at learning rate {} ({}, trainable: {})",
                p.epochs,
                value_text(&p.optimizer),
                p.learning_rate,
                p.schedule.as_ref().map(schedule_text).unwrap_or_else(|| "constant".into()),
                value_text(&p.trainable)
            )
        })
        .collect();
    let mut text = format!(
        "Training ran {}, in batches of {}, with `train.loss = \"{}\"`, class weights `{}`, weight decay {}, \
         label smoothing {}, {} precision, seed {}.",
        phases.join(", then "),
        t.batch_size,
        value_text(&t.loss),
        toml_text(&t.class_weights),
        t.weight_decay,
        t.label_smoothing,
        value_text(&t.precision),
        t.seed
    );
    match &t.early_stopping {
        Some(stop) => {
            let _ = write!(text, " Early stopping: {}.", entries(stop));
        }
        None => text += " No early stopping.",
    }
    let seconds: Vec<f64> = runs.iter().filter_map(|r| r.status.seconds).collect();
    let (low, high) = seconds.iter().fold((f64::INFINITY, 0f64), |(l, h), s| (l.min(*s), h.max(*s)));
    let devices: Vec<&str> = runs.iter().filter_map(|r| r.status.device.as_deref()).collect();
    if let Some(device) = devices.first() {
        let took = if runs.len() == 1 { format!("{high:.0} s") } else { format!("{low:.0} to {high:.0} s each") };
        let _ = write!(text, " Each run, training and evaluation, took {took} on {device}.");
    }
    text
}

/// A setting's value as a recipe writes it, in TOML (`"auto"`, `{ center = 40.0, ... }`).
fn toml_text<T: serde::Serialize>(value: &T) -> String {
    toml::Value::try_from(value).map(|v| v.to_string()).unwrap_or_default()
}

/// A setting's value as the recipe writes it (its serde name).
fn value_text<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// "cosine schedule": a schedule by its kind.
fn schedule_text<T: serde::Serialize>(schedule: &T) -> String {
    let value = serde_json::to_value(schedule).unwrap_or_default();
    format!("{} schedule", value["kind"].as_str().unwrap_or("constant"))
}

fn selection(runs: &[Finished]) -> String {
    let keep = &runs[0].settings.train.keep;
    let how = match keep {
        radrun_settings::Keep::BestValidationLoss => {
            "the epoch of lowest validation loss: chosen on the validation \
                                                      data only, never on the test set"
        }
        radrun_settings::Keep::Last => "the last epoch trained",
    };
    let epochs: Vec<String> = runs.iter().filter_map(|r| r.status.evaluated_epoch.map(|e| e.to_string())).collect();
    format!(
        "The weights evaluated were those of `train.keep = \"{}\"` ({how}): epoch(s) {} of the finished runs in \
         plan order.",
        value_text(keep),
        epochs.join(", ")
    )
}

fn evaluation(run: &Finished, externals: &[ExternalRecord]) -> String {
    let e = &run.settings.eval;
    let task = run.settings.data.task;
    let two_classes = task == Task::Classification && run.data["classes"].as_array().map_or(0, Vec::len) == 2;
    let mut text = match e.bootstrap {
        0 => "Test metrics are reported without bootstrap intervals (`eval.bootstrap = 0`).".to_string(),
        resamples => format!(
            "Test metrics are reported with confidence intervals at level {} from {resamples} bootstrap resamples \
             of {} (percentile method, seed {}).",
            e.confidence,
            units(run),
            e.bootstrap_seed
        ),
    };
    text += &match task {
        Task::Segmentation if run.settings.data.dims == 3 => volumes::segmentation_metrics(run),
        Task::Segmentation => " Per image and structure: Dice, IoU, sensitivity, precision and the 95th \
                               percentile Hausdorff distance."
            .to_string(),
        Task::Multilabel => " Per label, present at a probability of 0.5 or more: precision, recall \
                             (sensitivity), specificity, F1 and the ROC AUC with DeLong's interval; subset and \
                             label accuracy, macro averages; calibration of each label: Brier score, expected \
                             calibration error, calibration slope and intercept (`calibration.csv`)."
            .to_string(),
        Task::Classification => " Per class: precision, recall (sensitivity), specificity, F1 and the \
                                 one-against-the-rest ROC AUC with DeLong's interval; accuracy, balanced accuracy, \
                                 macro averages; calibration: Brier score, expected calibration error, calibration \
                                 slope and intercept (`calibration.csv`)."
            .to_string(),
    };
    if two_classes {
        let rule = match e.threshold {
            Threshold::Value(v) => format!("fixed at {v} (`eval.threshold`)"),
            rule => format!("chosen on the validation data by `eval.threshold = {}`", toml_text(&rule)),
        };
        let _ = write!(
            text,
            " The positive-class threshold was {rule}; sensitivity, specificity, PPV and NPV at it carry Wilson \
             score intervals, and the decision curve gives the net benefit across thresholds."
        );
    }
    if task != Task::Segmentation {
        let _ = write!(text, " Probabilities: `eval.calibrate = \"{}\"`.", value_text(&e.calibrate));
    }
    if !e.subgroups.is_empty() {
        let units = units(run);
        let attributes: Vec<String> = e.subgroups.iter().map(|s| format!("`{}`", toml_text(s))).collect();
        let scored = if e.bootstrap > 0 {
            format!(
                "scored with the same intervals and compared with the rest of the test set by a bootstrap \
                 resampling the {units} of each side independently (percentile interval of the difference, two-sided \
                 bootstrap p-value, not adjusted for multiple comparisons)"
            )
        } else {
            "scored and compared with the rest of the test set by the difference of the values (no bootstrap)".into()
        };
        let _ = write!(
            text,
            " Subgroups (`eval.subgroups`: {}): each level of at least {} {units} (`eval.min_subgroup`) was {scored}; \
             smaller levels were pooled into one, with the smallest others until it had as many (`subgroups.csv`).",
            attributes.join(", "),
            e.min_subgroup
        );
    }
    for r in externals {
        text += &external_sentence(r, items(run));
    }
    text
}

/// What an external set's record says was done, checked and found.
fn external_sentence(r: &ExternalRecord, items: &str) -> String {
    let l = &r.leakage;
    let decisions = match (r.decisions.threshold, r.decisions.temperature) {
        (None, None) => "without a threshold or temperature (none was chosen, or an ensemble's runs each chose their \
                         own)"
            .to_string(),
        _ => "at the threshold and temperature chosen on validation".to_string(),
    };
    let patients = if l.patients_unchecked || l.run_patients == 0 {
        "patients could not be compared".to_string()
    } else {
        format!("{} shared patient identifier(s)", l.shared_patients)
    };
    let mut text = format!(
        " The external set `{}` ({} {items} of {} patients) was scored by {} run(s) {decisions}; the leakage check \
         against the runs' {} files found {} shared file(s), and {patients}.",
        r.name,
        r.images,
        r.patients,
        r.runs.len(),
        l.run_files,
        l.shared_files
    );
    for note in &r.notes {
        let _ = write!(text, " Note: {}", note.lines().next().unwrap_or_default());
    }
    text
}

fn software(run: &Finished) -> String {
    let s = &run.status;
    let p = &s.provenance;
    format!(
        "radrun {} (commit {}), on libtorch {}{}{}.",
        s.radrun_version,
        p.radrun_commit.as_deref().unwrap_or("unknown"),
        s.libtorch_version.as_deref().unwrap_or("unknown"),
        p.cuda_version.as_deref().map(|v| format!(", CUDA {v}")).unwrap_or_default(),
        p.cudnn_version.as_deref().map(|v| format!(", cuDNN {v}")).unwrap_or_default()
    )
}

/// The works the text rests on, for what it says (not records: the number check
/// leaves them out).
fn references(run: &Finished, externals: &[ExternalRecord]) -> String {
    let task = run.settings.data.task;
    let two_classes = task == Task::Classification && run.data["classes"].as_array().map_or(0, Vec::len) == 2;
    let mut works =
        vec!["Paszke A et al. PyTorch: an imperative style, high-performance deep learning library. NeurIPS 2019."];
    if run.settings.eval.bootstrap > 0 {
        works.push("Efron B, Tibshirani RJ. An Introduction to the Bootstrap. Chapman & Hall, 1993.");
    }
    if task != Task::Segmentation {
        works.extend([
            "DeLong ER, DeLong DM, Clarke-Pearson DL. Comparing the areas under two or more correlated receiver \
             operating characteristic curves. Biometrics 1988;44:837-845.",
            "Van Calster B et al. A calibration hierarchy for risk models was defined: from utopia to empirical \
             data. J Clin Epidemiol 2016;74:167-176.",
        ]);
    }
    if run.settings.eval.calibrate == radrun_metrics::evaluate::Calibrate::Temperature {
        works.push("Guo C et al. On calibration of modern neural networks. ICML 2017.");
    }
    if two_classes {
        works.extend([
            "Wilson EB. Probable inference, the law of succession, and statistical inference. J Am Stat Assoc \
             1927;22:209-212.",
            "Vickers AJ, Elkin EB. Decision curve analysis. Med Decis Making 2006;26:565-574.",
        ]);
    }
    if !externals.is_empty() {
        works.push(
            "Tejani AS et al. Checklist for Artificial Intelligence in Medical Imaging (CLAIM): 2024 update. Radiol \
             Artif Intell 2024.",
        );
    }
    let mut text = String::from("## References\n\n");
    for work in works {
        let _ = writeln!(text, "- {work}");
    }
    text
}

/// The Markdown above as LaTeX: headings as sections, code as typewriter text,
/// emphasis as italics, lists as itemize; every other character escaped.
fn latex(markdown: &str) -> String {
    let mut out = String::from("% Written by radrun from the run records (see methods.md).\n");
    let mut in_list = false;
    for line in markdown.lines() {
        let item = line.strip_prefix("- ");
        if in_list && item.is_none() {
            out += "\\end{itemize}\n";
            in_list = false;
        }
        if let Some(title) = line.strip_prefix("## ") {
            let _ = writeln!(out, "\\subsection*{{{}}}", inline(title));
        } else if let Some(title) = line.strip_prefix("# ") {
            let _ = writeln!(out, "\\section*{{{}}}", inline(title));
        } else if let Some(item) = item {
            if !in_list {
                out += "\\begin{itemize}\n";
                in_list = true;
            }
            let _ = writeln!(out, "\\item {}", inline(item));
        } else {
            let _ = writeln!(out, "{}", inline(line));
        }
    }
    if in_list {
        out += "\\end{itemize}\n";
    }
    out
}

/// One line's text: `code` as \texttt, *emphasis* as \emph, the rest escaped.
fn inline(text: &str) -> String {
    let mut out = String::new();
    for (i, part) in text.split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "\\texttt{{{}}}", tex_escape(part));
            continue;
        }
        for (j, piece) in part.split('*').enumerate() {
            if j % 2 == 1 && !piece.is_empty() {
                let _ = write!(out, "\\emph{{{}}}", tex_escape(piece));
            } else {
                out += &tex_escape(piece);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_swept_key_is_named_in_the_paragraph_that_states_it() {
        let plan = PlanRecord {
            recipe_name: "r".into(),
            recipe_file: PathBuf::from("r.toml"),
            recipe_text: String::new(),
            set_flags: Vec::new(),
            swept_keys: vec!["train.learning_rate".into(), "data.split_seed".into(), "augment.enabled".into()],
            runs: Vec::new(),
            gallery: 0,
        };
        assert!(swept_here(&plan, "Training").contains("differed in `train.learning_rate`: the value stated"));
        assert_eq!(swept_here(&plan, "Preprocessing").matches('`').count(), 2, "augment only, not the split seed");
        assert_eq!(swept_here(&plan, "Data partitions"), "", "which lists every swept value itself");
        assert_eq!(swept_here(&plan, "Model"), "");
    }

    #[test]
    fn markdown_becomes_latex_with_its_characters_escaped() {
        let tex = latex("# Methods\n\n*Written* by `data.root = \"a_b\"` at 95%:\n- one & two\n- three\n\nend");
        assert!(tex.contains("\\section*{Methods}"), "{tex}");
        assert!(tex.contains("\\emph{Written} by \\texttt{data.root = \"a\\_b\"} at 95\\%:"), "{tex}");
        assert!(tex.contains("\\begin{itemize}\n\\item one \\& two\n\\item three\n\\end{itemize}\n\nend"), "{tex}");
    }
}
