//! `claim.md`: the CLAIM 2024 checklist (Checklist for Artificial Intelligence in
//! Medical Imaging, Tejani AS et al., Radiol Artif Intell 2024;6(4):e240300), each item
//! that the run records answer filled with what they say and the file that holds it,
//! the others marked for the authors. The items' wording is the checklist's as RSNA
//! publishes it (rsna.github.io/claim); the answers follow the methods section's rule:
//! no number is typed, each is a recorded value (tests/cli/manuscript.rs checks them
//! with the methods section's).

use std::fmt::Write as _;
use std::path::Path;

use radrun_data::{GroupBy, Task};
use radrun_metrics::evaluate::Threshold;
use radrun_settings::Keep;
use serde_json::Value;

use super::{Finished, items, split, units};
use crate::report::PlanRecord;
use crate::store::external::ExternalRecord;

/// The 44 items: number, section, wording.
const ITEMS: [(u8, &str, &str); 44] = [
    (
        1,
        "Title/Abstract",
        "Identification as a study of AI methodology, specifying the category of technology used (e.g., deep learning)",
    ),
    (2, "Abstract", "Summary of study design, methods, results, and conclusions"),
    (
        3,
        "Introduction",
        "Scientific and/or clinical background, including the intended use and role of the AI approach",
    ),
    (4, "Introduction", "Study aims, objectives, and hypotheses"),
    (5, "Methods: Study Design", "Prospective or retrospective study"),
    (6, "Methods: Study Design", "Study goal"),
    (7, "Methods: Data", "Data sources"),
    (8, "Methods: Data", "Inclusion and exclusion criteria"),
    (9, "Methods: Data", "Data pre-processing"),
    (10, "Methods: Data", "Selection of data subsets"),
    (11, "Methods: Data", "De-identification methods"),
    (12, "Methods: Data", "How missing data were handled"),
    (13, "Methods: Data", "Image acquisition protocol"),
    (14, "Methods: Reference Standard", "Definition of method(s) used to obtain reference standard"),
    (15, "Methods: Reference Standard", "Rationale for choosing the reference standard"),
    (16, "Methods: Reference Standard", "Source of reference standard annotations"),
    (17, "Methods: Reference Standard", "Annotation of test set"),
    (
        18,
        "Methods: Reference Standard",
        "Measures of inter- and intra-rater variability of features described by the annotators",
    ),
    (19, "Methods: Data Partitions", "How data were assigned to partitions"),
    (20, "Methods: Data Partitions", "Level at which partitions are disjoint"),
    (21, "Methods: Testing Data", "Intended sample size"),
    (22, "Methods: Model", "Detailed description of model"),
    (23, "Methods: Model", "Software libraries, frameworks, and packages"),
    (24, "Methods: Model", "Initialization of model parameters"),
    (25, "Methods: Training", "Details of training approach"),
    (26, "Methods: Training", "Method of selecting the final model"),
    (27, "Methods: Training", "Ensembling techniques"),
    (28, "Methods: Evaluation", "Metrics of model performance"),
    (29, "Methods: Evaluation", "Statistical measures of significance and uncertainty"),
    (30, "Methods: Evaluation", "Robustness or sensitivity analysis"),
    (31, "Methods: Evaluation", "Methods for explainability or interpretability"),
    (32, "Methods: Evaluation", "Evaluation on internal data"),
    (33, "Methods: Evaluation", "Testing on external data"),
    (34, "Methods: Evaluation", "Clinical trial registration"),
    (35, "Results: Data", "Numbers of patients or examinations included and excluded"),
    (36, "Results: Data", "Demographic and clinical characteristics of cases in each partition"),
    (37, "Results: Model performance", "Performance metrics and measures of statistical uncertainty"),
    (38, "Results: Model performance", "Estimates of diagnostic performance and their precision"),
    (39, "Results: Model performance", "Failure analysis of incorrect results"),
    (40, "Discussion", "Study limitations"),
    (41, "Discussion", "Implications for practice, including intended use and/or clinical role"),
    (42, "Other information", "Provide a reference to the full study protocol or to additional technical details"),
    (43, "Other information", "Statement about the availability of software, trained model, and/or data"),
    (44, "Other information", "Sources of funding and other support; role of funders"),
];

/// Who answers an item.
#[derive(Clone, Copy, PartialEq)]
enum By {
    /// The records answer it.
    Records,
    /// The records answer part of it; the authors add the rest.
    Partly,
    /// Only the authors can.
    Authors,
}

impl By {
    fn words(self) -> &'static str {
        match self {
            By::Records => "radrun",
            By::Partly => "radrun in part; **authors**",
            By::Authors => "**authors**",
        }
    }
}

/// What the recipe's records hold, as the answers need it.
struct Records<'a> {
    plan: &'a PlanRecord,
    first: &'a Finished,
    finished: usize,
    externals: &'a [ExternalRecord],
    /// Whether a finished run drew a Grad-CAM gallery.
    gallery: bool,
}

/// claim.md of a recipe's runs `folder`: a table of the 44 items with who answers each
/// and, where the records do, what they say and where.
pub(super) fn checklist(folder: &Path, plan: &PlanRecord, runs: &[Finished], externals: &[ExternalRecord]) -> String {
    let gallery = runs.iter().any(|r| folder.join(&r.status.run_id).join("gallery.csv").is_file());
    let r = Records { plan, first: &runs[0], finished: runs.len(), externals, gallery };
    let answered = ITEMS.iter().filter(|(n, _, _)| answer(*n, &r).0 != By::Authors).count();
    let mut text = format!(
        "# CLAIM 2024 checklist: recipe `{}`\n\n*Written by radrun {} from the records of the recipe's finished \
         runs: the items the records answer say what they hold and where ({answered} of the {} items, some in \
         part); the others are for the authors. Item wording: the CLAIM 2024 checklist (Tejani AS et al., Radiol \
         Artif Intell 2024; rsna.github.io/claim). The methods are drafted in `methods.md`.*\n\n| Item | CLAIM \
         2024 | Answered by | What the records say, and where |\n|---|---|---|---|\n",
        plan.recipe_name,
        r.first.status.radrun_version,
        ITEMS.len()
    );
    let mut section = "";
    for (number, item_section, wording) in ITEMS {
        if item_section != section {
            section = item_section;
            let _ = writeln!(text, "| | **{section}** | | |");
        }
        let (by, what) = answer(number, &r);
        let _ = writeln!(text, "| {number} | {wording} | {} | {} |", by.words(), cell(&what));
    }
    text
}

/// A table cell of `text`: its pipes escaped, its line breaks spaces (recorded paths and
/// names may hold either).
fn cell(text: &str) -> String {
    text.replace(['\n', '\r'], " ").replace('|', "\\|")
}

/// Who answers item `number`, and what the records say.
fn answer(number: u8, r: &Records) -> (By, String) {
    match number {
        7..=13 => data_answer(number, r),
        19..=21 | 35 | 36 => partition_answer(number, r),
        22..=33 => model_answer(number, r),
        37..=39 | 42 | 43 => result_answer(number, r),
        _ => (By::Authors, String::new()),
    }
}

fn data_answer(number: u8, r: &Records) -> (By, String) {
    let d = &r.first.data;
    let volumes = r.first.settings.data.dims == 3;
    let count = |key: &str| d[key].as_array().map_or(0, Vec::len);
    let skipped = match count("skipped") {
        0 if volumes => "no unreadable case (one stops the run)".to_string(),
        0 => "no unreadable image".to_string(),
        n => format!("{n} unreadable image(s) left out (`skipped.csv`)"),
    };
    match number {
        7 => (
            By::Partly,
            format!(
                "the dataset folder `{}` and its fingerprint (`status.json`, `provenance.dataset`); where and when \
                 the images were acquired is for the authors",
                d["root"].as_str().unwrap_or_default()
            ),
        ),
        8 => (
            By::Partly,
            format!(
                "{skipped} and {} non-image file(s) ignored (`data_summary.json`); the clinical criteria are for \
                 the authors",
                count("ignored")
            ),
        ),
        9 => {
            let fitted = if volumes { "; what was fitted on the training cases in `preprocessing.json`" } else { "" };
            (
                By::Records,
                format!(
                    "`methods.md`, Preprocessing; the `[data]` and `[augment]` of each run's `recipe.toml`{fitted}"
                ),
            )
        }
        10 => {
            (By::Partly, "the classes and splits used (`data_summary.json`); why this subset is for the authors".into())
        }
        11 => (
            By::Partly,
            "the patient column of each run's `split.csv` is a salted hash, but file paths are written as they are; \
             how the images were de-identified is for the authors"
                .into(),
        ),
        12 if volumes => (
            By::Partly,
            "an unreadable case stops the run before training (volumes are never skipped); other missing data \
             (labels, clinical values) are for the authors"
                .into(),
        ),
        12 => (
            By::Partly,
            format!(
                "unreadable images: `data.on_unreadable = \"{}\"`, {skipped}; other missing data (labels, clinical \
                 values) are for the authors",
                super::value_text(&r.first.settings.data.on_unreadable)
            ),
        ),
        _ => {
            let modalities = d["dicom_modalities"].as_object().filter(|m| !m.is_empty());
            let recorded = modalities.map_or("no DICOM file".to_string(), |_| {
                format!("DICOM modalities {}", super::counts(&d["dicom_modalities"]))
            });
            (By::Partly, format!("{recorded} (`data_summary.json`); the acquisition protocol is for the authors"))
        }
    }
}

fn partition_answer(number: u8, r: &Records) -> (By, String) {
    let d = &r.first.data;
    let test = split(d, "test");
    let items = items(r.first);
    let test_size =
        test.map_or(String::new(), |t| format!("{} {items} of {} {}", t[items], t["groups"], units(r.first)));
    match number {
        19 => (By::Records, "`methods.md`, Data partitions; every file's split in each run's `split.csv`".into()),
        20 => disjoint(r),
        21 => (
            By::Partly,
            format!("the test set: {test_size} (`data_summary.json`); how its size was decided is for the authors"),
        ),
        35 => (
            By::Partly,
            format!(
                "per split, {items} and {} included, files left out and why (`data_summary.txt`); a flow diagram is \
                 for the authors",
                units(r.first)
            ),
        ),
        _ => {
            let subgroups: Vec<&str> = r.first.settings.eval.subgroups.iter().map(|s| s.name()).collect();
            if subgroups.is_empty() {
                return (
                    By::Authors,
                    "no subgroup recorded (`eval.subgroups` scores the test set by attribute)".into(),
                );
            }
            let scored = format!("test-set levels of {} (`subgroups.csv`)", subgroups.join(", "));
            (By::Partly, format!("{scored}; the demographic table is for the authors"))
        }
    }
}

/// Item 20: the level at which the partitions are disjoint, as the run's grouping and
/// its leakage check say.
fn disjoint(r: &Records) -> (By, String) {
    let d = &r.first.data;
    let grouping = d["grouping"].as_str().unwrap_or_default();
    let warnings: Vec<&str> = d["warnings"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    if r.first.settings.data.group_by == GroupBy::None {
        let items = items(r.first);
        let why = format!(
            "{items} only: `data.group_by = \"none\"` groups no patient, so a patient's {items} may be on two sides; \
             the patient level is for the authors"
        );
        return (By::Partly, why);
    }
    match warnings.first().filter(|_| r.first.settings.data.allow_leakage) {
        Some(warning) => (
            By::Partly,
            format!(
                "groups by the {grouping}, but leakage was allowed (`data.allow_leakage`): \"{}\" \
                 (`data_summary.json`)",
                warning.lines().next().unwrap_or_default()
            ),
        ),
        None => (
            By::Records,
            format!("groups by the {grouping}: no group on two sides, checked before training (`split.csv`)"),
        ),
    }
}

fn model_answer(number: u8, r: &Records) -> (By, String) {
    let s = &r.first.settings;
    let ensembles = r.externals.iter().filter(|e| e.runs.len() > 1).count();
    let intervals = match s.eval.bootstrap {
        0 => "no bootstrap interval (`eval.bootstrap = 0`)",
        _ => "every metric's interval in `intervals.csv`",
    };
    match number {
        22 => (By::Records, "`methods.md`, Model; the layers and parameters in `model_summary.txt`".into()),
        23 => {
            let cuda = r.first.status.provenance.cuda_version.as_ref().map_or("", |_| ", CUDA and cuDNN");
            (By::Records, format!("`methods.md`, Software (radrun, libtorch{cuda}); `status.json`, `provenance`"))
        }
        24 => (
            By::Records,
            "`methods.md`, Model (random initialisation with `train.seed`, or the pretrained weights named)".into(),
        ),
        25 => (
            By::Records,
            format!(
                "`methods.md`, Training; {} of {} planned run(s) finished (`plan.json`, `summary.csv`)",
                r.finished,
                r.plan.runs.len()
            ),
        ),
        26 => (
            By::Records,
            match s.train.keep {
                Keep::BestValidationLoss => {
                    "the epoch of lowest validation loss, never the test set (`methods.md`, \
                                             Model selection)"
                }
                Keep::Last => "the last epoch's weights (`train.keep = \"last\"`), never chosen on the test set",
            }
            .into(),
        ),
        27 if ensembles > 0 => (
            By::Records,
            format!("{ensembles} external evaluation(s) averaged the probabilities of several runs (`external.json`)"),
        ),
        27 => (By::Records, "none: each run is evaluated alone".into()),
        28 | 29 => (By::Records, format!("`methods.md`, Evaluation; {intervals}")),
        30 if r.finished > 1 => (
            By::Partly,
            "the spread over the recipe's finished runs (folds, seeds, swept values) in `aggregate.csv`; other \
             analyses are for the authors"
                .into(),
        ),
        31 if r.gallery => (
            By::Partly,
            "Grad-CAM maps of test images (`gallery/`, `gallery.csv`); how they were validated is for the authors"
                .into(),
        ),
        30 | 31 => (By::Authors, String::new()),
        32 if r.first.data["test_held_out"].is_number() => (
            By::Records,
            "the test cases held out of the training cases before anything else (`data.test_fraction`; \
             `status.json`, `test`; `summary.md`)"
                .into(),
        ),
        32 => (By::Records, "the separate test set (`status.json`, `test`; `summary.md`)".into()),
        _ if r.externals.is_empty() => (By::Authors, "no external set evaluated yet (`radrun evaluate`)".into()),
        _ => {
            let items = items(r.first);
            let sets: Vec<String> =
                r.externals.iter().map(|e| format!("`{}` ({} {items})", e.name, e.images)).collect();
            let sets = sets.join(", ");
            (
                By::Partly,
                format!(
                    "{sets} (`external/<name>/external.json`; `methods.md`, Evaluation); whether they are external \
                     (another site or period) is for the authors"
                ),
            )
        }
    }
}

fn result_answer(number: u8, r: &Records) -> (By, String) {
    let s = &r.first.settings;
    let task = s.data.task;
    let two_classes = task == Task::Classification && r.first.data["classes"].as_array().map_or(0, Vec::len) == 2;
    let (per_class, predictions) = match task {
        Task::Classification => {
            ("`per_class.csv`", "every test prediction (`predictions.csv`) and the confusion matrix")
        }
        Task::Multilabel => ("`per_label.csv`", "every test prediction (`predictions.csv`)"),
        Task::Segmentation if s.data.dims == 3 => {
            ("`volume_metrics.csv`", "each test case's mask on its own scan (`predictions/<case>.nii.gz`) and scores")
        }
        Task::Segmentation => ("`segmentation_metrics.csv`", "each test image's scores and overlay (`predictions/`)"),
    };
    let intervals = if s.eval.bootstrap > 0 { "with intervals" } else { "without intervals (`eval.bootstrap = 0`)" };
    match number {
        37 => (By::Records, format!("`summary.md` and `summary.tex` (values {intervals}), each run's `intervals.csv`")),
        38 if two_classes => {
            let threshold = match s.eval.threshold {
                Threshold::Value(_) => "the fixed threshold (`eval.threshold`)",
                _ => "the threshold chosen on validation",
            };
            (
                By::Records,
                format!(
                    "sensitivity, specificity, PPV and NPV at {threshold}, with Wilson intervals \
                     (`operating_point.json`)"
                ),
            )
        }
        38 => (By::Partly, format!("each class's metrics {intervals} ({per_class}, `intervals.csv`)")),
        39 => (By::Partly, format!("{predictions}; the analysis of the errors is for the authors")),
        42 => (
            By::Partly,
            "the recipe as run (`plan.json`, each run's resolved `recipe.toml`) reproduces the experiment (`radrun \
             reproduce`); the protocol is for the authors"
                .into(),
        ),
        _ => (
            By::Partly,
            "the trained weights (`best.safetensors`, `last.safetensors`) and the recipe; the availability statement \
             is for the authors"
                .into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_items_are_numbered_in_order() {
        let numbers: Vec<u8> = super::ITEMS.iter().map(|i| i.0).collect();
        assert_eq!(numbers, (1..=44).collect::<Vec<u8>>());
    }
}
