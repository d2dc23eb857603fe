//! `radrun evaluate RUN DATA` for a volume run (`data.dims = 3`): every case of the
//! external set (class folders, image and mask folders, directly in DATA or in split
//! folders named as the run's, pooled; or a Decathlon layout's labelled cases) read as
//! the run read its own, prepared by the run's preprocessing (preprocessing.json), and
//! segmented by sliding window (its predicted mask written back on the case's scan,
//! `predictions/<case>.nii.gz`) or classified, then scored as the run's own test cases
//! were: the same files, metrics and patient-bootstrap intervals, at the run's own
//! threshold. The leakage check compares each case's image files (SHA-256) and, for
//! DICOM cases, its PatientID with the run's split.csv; a NIfTI file carries no patient
//! identifier, so NIfTI cases are compared by content only (noted).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use radrun_data::paths::slash_path;
use radrun_data::volume_dataset::{CaseFacts, VolumeImages, VolumeSplit, read_external_volumes};
use radrun_data::{DataSettings, FileKind, Task, nifti};
use radrun_metrics::evaluate::{Chosen, Classified, Decisions, Evaluation, classify};
use radrun_metrics::volumes::evaluate_volumes;
use radrun_runner::cli::EvaluateArgs;
use radrun_runner::commands::usage_error;
use radrun_runner::error::RadrunError;
use radrun_runner::store::external::{Compared, EXTERNAL_FOLDER, ExternalRecord};
use radrun_runner::store::provenance::{self, VolumeFile, existing_salt};
use radrun_runner::store::{RunDir, Status, write_atomic};

use super::evaluate::{
    decisions, external_settings, internal_results, leakage_check, print_result, rewrite_tables, set_name, write_folder,
};
use super::predict_volumes::{VolumeRun, case_probabilities, check_runs, segment_scan};
use crate::run::volumes::{score_case, test_window};

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
    let mut notes = Vec::new();
    let data = DataSettings { layout: Default::default(), ..external_settings(&settings.data, args, &mut notes)? };
    let classes: Vec<String> = runs[0].labels.values().cloned().collect();
    let images = read_external_volumes(&data, &classes).map_err(|e| usage_error(&args.data, e.to_string()))?;
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
    let chosen = decisions(folders, &mut notes);
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
        for (case, mask) in &scored.masks {
            write_atomic(&dir.mask_path(case), mask)?;
        }
        dir.write_volume_split(&files)?;
        record.write(dir.path())
    })?;
    rewrite_tables(recipe_folder, settings.eval.confidence);
    print_result(&record, &scored.evaluation, &out);
    Ok(())
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
/// mask's: two empty masks are alike) and, for a DICOM case, its PatientID.
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
            let dicom = facts.source.is_dir() || FileKind::of(&facts.source) == Some(FileKind::Dicom);
            unidentified += usize::from(!dicom);
            let ids = if dicom { vec![facts.group.as_str()] } else { Vec::new() };
            Compared { path: &facts.source, sha256, ids }
        })
        .collect();
    if unidentified > 0 {
        notes.push(format!(
            "{unidentified} case(s) are NIfTI files, which carry no patient identifier: they were compared with the \
             run's data by file content only"
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
