//! `radrun evaluate RUN DATA` for a volume run (`data.dims = 3`): every case of the
//! external set (class folders, image and mask folders, directly in DATA or in split
//! folders named as the run's, pooled; or a Decathlon layout's labelled cases) read as
//! the run read its own, prepared by the run's preprocessing (preprocessing.json), and
//! segmented by sliding window (its predicted mask written back on the case's scan,
//! `predictions/<case>.nii.gz`) or classified, then scored as the run's own test cases
//! were: the same files, metrics and patient-bootstrap intervals, at the run's own
//! threshold. The leakage check compares each case's image files (SHA-256) and its
//! patient (its group by the run's `data.group_by`, its DICOM PatientID) with the run's
//! split.csv; a case with neither (a NIfTI file, the run grouping none) is compared by
//! content only (noted).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use radrun_data::paths::{path_text, slash_path};
use radrun_data::volume_dataset::{CaseFacts, VolumeImages, VolumeSplit, read_external_volumes};
use radrun_data::volume_summary::{VolumeDataSummary, VolumeSummary};
use radrun_data::{DataSettings, GroupBy, Task, nifti};
use radrun_metrics::evaluate::{Chosen, Classified, Decisions, Evaluation, classify};
use radrun_metrics::volumes::evaluate_volumes;
use radrun_runner::cli::EvaluateArgs;
use radrun_runner::commands::usage_error;
use radrun_runner::error::RadrunError;
use radrun_runner::store::external::{Compared, EXTERNAL_FOLDER, ExternalRecord};
use radrun_runner::store::provenance::{self, VolumeFile, existing_salt};
use radrun_runner::store::{RunDir, Status, write_atomic};

use super::evaluate::{
    decisions, external_settings, internal_results, leakage_check, print_result, rewrite_tables, set_name,
    subgroup_levels, write_folder,
};
use super::predict_volumes::{VolumeRun, case_probabilities, check_runs, segment_scan};
use crate::run::volumes::{score_case, test_window};
use crate::run::work::write_subgroups;

pub(super) fn evaluate(
    args: &EvaluateArgs,
    folders: &[PathBuf],
    recipe_folder: &Path,
    device: tch::Device,
) -> Result<(), RadrunError> {
    let runs = folders.iter().map(|f| VolumeRun::open(f, device)).collect::<Result<Vec<_>, _>>()?;
    let name = set_name(args)?;
    let out = recipe_folder.join(EXTERNAL_FOLDER).join(&name);
    check_runs(&runs, &out)?;
    let settings = &runs[0].settings;
    if !settings.data.labels.as_os_str().is_empty() {
        let why = "is a volume run labelled by a table (`data.labels`); `radrun evaluate` reads an external volume \
                   set from class folders, image and mask folders or a Decathlon layout so far";
        return Err(usage_error(&folders[0].join("recipe.toml"), why.into()));
    }
    let mut notes = Vec::new();
    let data = external_settings(&settings.data, args, &mut notes)?;
    let images = read_set(&runs[0], data, args, &mut notes)?;
    let data = images.settings().clone();
    let cases: Vec<&CaseFacts> = images.cases().map(|(_, c)| c).collect();
    let missing_classes = missing_classes(&runs[0], &cases, &args.data)?;
    // the run's salt, so that the set's split.csv and the leakage check hash patients as
    // the run's split.csv does
    let salt = existing_salt(&settings.data.root);
    let hashed_with = match &salt {
        Some(salt) => salt.clone(),
        None => provenance::group_salt(&data.root).map_err(|e| RadrunError::Installation(format!("{e:#}")))?,
    };
    let split = VolumeSplit { train: Vec::new(), validation: Vec::new(), test: cases.clone(), how: String::new() };
    let (files, fingerprint) = provenance::volume_files(&images, &split, &data, &hashed_with)
        .map_err(|e| usage_error(&args.data, format!("{e:#}")))?;
    let compared = compared(&images, &cases, &files, &data, &mut notes);
    let leakage = leakage_check(folders, &compared, salt.as_deref(), args, &mut notes)?;
    let chosen = match settings.model.task() {
        Task::Classification => decisions(folders, &mut notes),
        _ => Chosen::default(),
    };
    let sources: Vec<&Path> = cases.iter().map(|c| c.source.as_path()).collect();
    let levels = subgroup_levels(settings, &sources, &data, &mut notes);
    let scored = score_cases(&runs, &images, &cases, chosen, (args, device))?;
    let statuses: Vec<Status> = folders.iter().filter_map(|f| RunDir::new(f.clone()).status()).collect();
    let (internal, internal_intervals) = internal_results(&statuses);
    let record = ExternalRecord {
        name,
        data: data.root.clone(),
        labels: None,
        runs: statuses.iter().map(|s| s.run_id.clone()).collect(),
        decisions: chosen,
        images: cases.len(),
        patients: cases.iter().map(|c| c.group.as_str()).collect::<HashSet<_>>().len(),
        missing_classes,
        fingerprint,
        leakage,
        notes,
        internal,
        internal_intervals,
        test: scored.evaluation.headline(),
        test_intervals: scored.evaluation.headline_intervals(),
        evaluated: jiff::Timestamp::now().to_string(),
        radrun_version: env!("CARGO_PKG_VERSION").to_string(),
        device: radrun_train::device::describe(device),
    };
    write_folder(&out, |dir| {
        dir.write_evaluation(&scored.evaluation)?;
        let groups: Vec<Option<&str>> = cases.iter().map(|c| Some(c.group.as_str())).collect();
        write_subgroups(dir, &scored.evaluation, &groups, &levels, &settings.eval)?;
        for (case, mask) in &scored.masks {
            write_atomic(&dir.mask_path(case), mask)?;
        }
        dir.write_volume_split(&files)?;
        let (text, facts) = (VolumeSummary::of(&images).to_string(), VolumeDataSummary::of(&images, &split, None));
        dir.write_volume_summary(&text, &facts)?;
        record.write(dir.path())
    })?;
    rewrite_tables(recipe_folder, settings.eval.confidence);
    print_result(&record, &scored.evaluation, &out, "case(s)");
    Ok(())
}

/// The set read with the run's settings, every case a test case, with as many channels
/// as the run reads; when its grouping cannot be told for the set (a pattern its case
/// names do not match, NIfTI files where the run grouped by PatientID), by the DICOM
/// PatientIDs instead, noted.
fn read_set(
    run: &VolumeRun,
    data: DataSettings,
    args: &EvaluateArgs,
    notes: &mut Vec<String>,
) -> Result<VolumeImages, RadrunError> {
    let classes: Vec<String> = match run.settings.model.task() {
        Task::Classification => run.labels.values().cloned().collect(),
        _ => Vec::new(),
    };
    let unreadable = |e: radrun_data::Error| usage_error(&args.data, e.to_string());
    let images = match read_external_volumes(&data, &classes) {
        Err(radrun_data::Error::NoGroup { file, reason, .. }) if data.group_by != GroupBy::Auto => {
            notes.push(format!(
                "the run's grouping ({}) cannot be told for the external set ({}: {reason}): its patients are its \
                 DICOM PatientIDs, other cases one each",
                data.group_by.describe(),
                path_text(&file)
            ));
            read_external_volumes(&DataSettings { group_by: GroupBy::Auto, ..data }, &classes).map_err(unreadable)?
        }
        read => read.map_err(unreadable)?,
    };
    let channels = run.channels();
    if let Some((_, other)) = images.cases().find(|(_, c)| c.channels != channels) {
        let why = format!("has {} channel(s); the run reads {channels}", other.channels);
        return Err(usage_error(&other.source, why));
    }
    Ok(images)
}

/// The run's classes (or foreground labels) no case of the set holds; a mask label the
/// run does not know is an error naming it.
fn missing_classes(run: &VolumeRun, cases: &[&CaseFacts], data: &Path) -> Result<Vec<String>, RadrunError> {
    if run.settings.model.task() == Task::Classification {
        let held: HashSet<usize> = cases.iter().filter_map(|c| c.class).collect();
        return Ok(run
            .labels
            .values()
            .enumerate()
            .filter(|(i, _)| !held.contains(i))
            .map(|(_, n)| n.clone())
            .collect());
    }
    let held: HashSet<u32> =
        cases.iter().flat_map(|c| c.labels.iter().filter(|(_, n)| **n > 0)).map(|(v, _)| *v).collect();
    let mut unknown: Vec<u32> = held.iter().copied().filter(|v| !run.labels.contains_key(v)).collect();
    if !unknown.is_empty() {
        unknown.sort_unstable();
        let unknown: Vec<String> = unknown.iter().map(u32::to_string).collect();
        let known: Vec<String> = run.labels.iter().map(|(v, n)| format!("{v} ({n})")).collect();
        return Err(usage_error(
            data,
            format!(
                "holds mask label value(s) {} that the run was not trained on (its labels: {}); an external set is \
                 scored on the run's labels: merge or remove those values, or evaluate a run that knows them",
                unknown.join(", "),
                known.join(", ")
            ),
        ));
    }
    let missing = run.labels.iter().filter(|(v, _)| **v > 0 && !held.contains(v));
    Ok(missing.map(|(_, name)| name.clone()).collect())
}

/// Each case as the leakage check compares it: its image files' contents (not its
/// mask's: two empty masks are alike), and its patient: its group as the run's
/// `data.group_by` tells it (not a case's own file, the group of a case without one)
/// and its DICOM PatientID.
fn compared<'a>(
    images: &'a VolumeImages,
    cases: &[&'a CaseFacts],
    files: &'a [VolumeFile],
    data: &DataSettings,
    notes: &mut Vec<String>,
) -> Vec<Compared<'a>> {
    let relative = |path: &Path| slash_path(path.strip_prefix(&data.root).unwrap_or(path));
    let mut unidentified = 0;
    let items = cases
        .iter()
        .map(|facts| {
            let mask = images.layout_case(facts).mask.as_deref().map(relative);
            let is_mask = |f: &VolumeFile| {
                mask.as_ref().is_some_and(|m| f.relative == *m || f.relative.starts_with(&format!("{m}/")))
            };
            let sha256 =
                files.iter().filter(|f| f.case == facts.name && !is_mask(f)).map(|f| f.sha256.as_str()).collect();
            let grouped = data.group_by != GroupBy::None && facts.group != path_text(&facts.source);
            let ids: Vec<&str> =
                grouped.then_some(facts.group.as_str()).into_iter().chain(facts.patient_id.as_deref()).collect();
            unidentified += usize::from(ids.is_empty());
            Compared { path: &facts.source, sha256, ids }
        })
        .collect();
    if unidentified > 0 {
        notes.push(format!(
            "{unidentified} case(s) carry no patient identifier (a NIfTI file holds none; the run's `data.group_by` \
             gives none): they were compared with the run's data by file content only"
        ));
    }
    items
}

/// A set's evaluation, and the predicted masks (NIfTI bytes) by case.
struct Scored {
    evaluation: Evaluation,
    masks: Vec<(String, Vec<u8>)>,
}

/// Segments and scores each case (its mask written back on its scan), or classifies
/// the cases at the run's `chosen` decisions.
fn score_cases(
    runs: &[VolumeRun],
    images: &VolumeImages,
    cases: &[&CaseFacts],
    chosen: Chosen,
    (args, device): (&EvaluateArgs, tch::Device),
) -> Result<Scored, RadrunError> {
    let settings = &runs[0].settings;
    let read = |facts: &CaseFacts| images.read_again(facts).map_err(|e| usage_error(&facts.source, e.to_string()));
    let groups: Vec<&str> = cases.iter().map(|c| c.group.as_str()).collect();
    if settings.model.task() == Task::Classification {
        let mut probabilities = Vec::new();
        for facts in cases {
            let (image, _) = read(facts)?;
            probabilities.push(case_probabilities(runs, &facts.name, &image, device));
        }
        let classes: Vec<String> = runs[0].labels.values().cloned().collect();
        let test = Classified {
            files: cases.iter().map(|c| c.source.clone()).collect(),
            truth: cases.iter().map(|c| c.class.expect("a case of a class folder")).collect(),
            probabilities,
        };
        let groups: Vec<Option<&str>> = groups.into_iter().map(Some).collect();
        let evaluation = classify(&classes, test, Decisions::Chosen(chosen), &groups, &settings.eval)
            .map_err(|e| usage_error(&runs[0].folder.join("recipe.toml"), e.to_string()))?;
        return Ok(Scored { evaluation: Evaluation::Classification(Box::new(evaluation)), masks: Vec::new() });
    }
    let batch = args.batch.map_or(settings.train.batch_size as usize, usize::from);
    let window = test_window(settings, runs[0].input.patch, batch);
    let foreground: Vec<(u32, String)> =
        runs[0].labels.iter().filter(|(value, _)| **value > 0).map(|(v, n)| (*v, n.clone())).collect();
    let (mut rows, mut masks) = (Vec::new(), Vec::new());
    for facts in cases {
        let (image, mask) = read(facts)?;
        let placed = segment_scan(runs, &facts.name, &image, &window, device);
        let mask = mask.expect("an external segmentation case has a mask");
        if mask.shape != placed.shape {
            let why = format!("has {:?} voxels, its mask put back {:?}", mask.shape, placed.shape);
            return Err(usage_error(&facts.source, why));
        }
        rows.extend(score_case(facts, &mask, &placed, &foreground, settings.eval.nsd_tolerance));
        masks.push((facts.name.clone(), nifti::encode(&placed)));
    }
    let labels: Vec<String> = foreground.into_iter().map(|(_, name)| name).collect();
    let evaluation = Evaluation::Volumes(evaluate_volumes(rows, &groups, &labels, &settings.eval));
    Ok(Scored { evaluation, masks })
}
