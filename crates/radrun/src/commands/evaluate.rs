//! `radrun evaluate RUN DATA`: a finished run (or the best run, or a configuration's
//! ensemble) scored on a labelled external set with exactly its preprocessing, at the
//! decisions it chose on its own validation split, into `runs/<recipe>/external/<name>/`
//! (see `radrun_runner::store::external`); the recipe's summary tables and report then
//! show the external results beside the internal ones.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use radrun_data::external::{External, load_external};
use radrun_data::paths::path_text;
use radrun_data::subgroups::{Levels, Subgroup, read_levels};
use radrun_data::{CachePlace, DataSettings, GroupBy};
use radrun_metrics::evaluate::{Chosen, Evaluation};
use radrun_metrics::stats::Interval;
use radrun_models::Network;
use radrun_runner::cli::EvaluateArgs;
use radrun_runner::commands::usage_error;
use radrun_runner::error::RadrunError;
use radrun_runner::recipe::settings::Settings;
use radrun_runner::run::datasets::cache_place;
use radrun_runner::store::external::{Compared, EXTERNAL_FOLDER, ExternalRecord, LeakageCheck};
use radrun_runner::store::provenance::{self, existing_salt};
use radrun_runner::store::{RunDir, Status, WriteError};
use radrun_train::predict::Predictor;

use super::predict::{TrainedRun, check_runs, members, run_settings};
use crate::run::work::write_subgroups;

pub fn evaluate(args: &EvaluateArgs) -> Result<(), RadrunError> {
    let folders = members(&args.run, args.best.as_deref(), args.ensemble)?;
    let device = radrun_train::device::resolve(args.device).map_err(|e| RadrunError::Device(e.to_string()))?;
    let recipe_folder = recipe_folder(args, &folders)?;
    if run_settings(&folders[0].join("recipe.toml")).is_ok_and(|s| s.data.dims == 3) {
        return super::evaluate_volumes::evaluate(args, &folders, &recipe_folder, device);
    }
    let runs = folders.iter().map(|f| TrainedRun::open(f, device)).collect::<Result<Vec<_>, _>>()?;
    check_runs(&runs, "evaluate")?;
    let first = &runs[0];
    let name = set_name(args)?;
    let mut notes = Vec::new();
    let data = external_settings(&first.settings.data, args, &mut notes)?;
    // scratch files (an external set too large for memory) beside the runs' image caches
    let place = cache_place(recipe_folder.parent().unwrap_or(&recipe_folder));
    let External { dataset, missing_classes } = read_set(data.clone(), (&first.classes, &place), args, &mut notes)?;
    let salt = existing_salt(&first.settings.data.root);
    let compared: Vec<Compared> = dataset.test.samples.iter().map(Compared::of_sample).collect();
    let leakage = leakage_check(&folders, &compared, salt.as_deref(), args, &mut notes)?;
    let chosen = decisions(&folders, &mut notes);
    let settings = &first.settings;
    let levels = subgroup_levels(settings, &dataset.test.paths(), &data, &mut notes);
    let batch_size = args.batch.map_or(settings.train.batch_size as usize, usize::from);
    let networks: Vec<&Network> = runs.iter().map(|r| &r.network).collect();
    let channels = settings.data.input_channels();
    let predictor = Predictor { networks: &networks, dataset: &dataset, batch_size, channels, device };
    let evaluation = radrun_metrics::evaluate::evaluate(&predictor, &settings.eval, Some(chosen))
        .map_err(|e| usage_error(&first.folder.join("recipe.toml"), e.to_string()))?;
    let statuses: Vec<Status> = runs.iter().filter_map(|r| RunDir::new(r.folder.clone()).status()).collect();
    let (internal, internal_intervals) = internal_results(&statuses);
    let files = provenance::file_records(&dataset, &data.root);
    let record = ExternalRecord {
        name: name.clone(),
        data: data.root.clone(),
        labels: (!data.labels.as_os_str().is_empty()).then(|| path_text(&data.root.join(&data.labels))),
        runs: statuses.iter().map(|s| s.run_id.clone()).collect(),
        decisions: chosen,
        images: dataset.test.len(),
        patients: dataset.summary.splits.first().map_or(0, |s| s.groups),
        missing_classes,
        fingerprint: provenance::fingerprint(&files, provenance::table_hashes(&data)),
        leakage,
        notes,
        internal,
        internal_intervals,
        test: evaluation.headline(),
        test_intervals: evaluation.headline_intervals(),
        evaluated: jiff::Timestamp::now().to_string(),
        radrun_version: env!("CARGO_PKG_VERSION").to_string(),
        device: radrun_train::device::describe(device),
    };
    let out = recipe_folder.join(EXTERNAL_FOLDER).join(&name);
    // the groups hashed as the run's split.csv hashes them, so the two compare
    let salt = match salt {
        Some(salt) => salt,
        None => provenance::group_salt(&data.root).map_err(|e| RadrunError::Installation(format!("{e:#}")))?,
    };
    write_folder(&out, |dir| {
        dir.write_evaluation(&evaluation)?;
        write_subgroups(dir, &evaluation, &dataset.test.groups(), &levels, &settings.eval)?;
        dir.write_data_summary(&dataset.summary)?;
        dir.write_split(&files, &dataset.classes, &salt)?;
        record.write(dir.path())
    })?;
    rewrite_tables(&recipe_folder, settings.eval.confidence);
    print_result(&record, &evaluation, &out, "image(s)");
    Ok(())
}

/// The levels of the run's `eval.subgroups` in the external set; those it cannot give (a
/// table it lacks) are left out, noted: the set is scored without them.
pub(super) fn subgroup_levels(
    settings: &Settings,
    samples: &[&Path],
    data: &DataSettings,
    notes: &mut Vec<String>,
) -> Vec<Levels> {
    let subgroups = &settings.eval.subgroups;
    // all at once (each file read once), else one by one to keep those that can be read
    read_levels(subgroups, samples, data).unwrap_or_else(|_| {
        let one = |subgroup: &Subgroup| match read_levels(std::slice::from_ref(subgroup), samples, data) {
            Ok(mut levels) => levels.pop(),
            Err(e) => {
                notes.push(format!("subgroup {} not scored on this set: {e}", subgroup.name()));
                None
            }
        };
        subgroups.iter().filter_map(one).collect()
    })
}

/// The recipe's runs folder the external folder goes in: a run folder's parent, kept as
/// the user wrote it (`.` and `..` have no written parent: theirs is found from the
/// absolute path), or the runs folder given.
pub(super) fn recipe_folder(args: &EvaluateArgs, folders: &[PathBuf]) -> Result<PathBuf, RadrunError> {
    Ok(match (folders.len() == 1 && folders[0] == args.run, args.run.file_name()) {
        (false, _) => args.run.clone(),
        (true, Some(_)) => args.run.parent().map_or_else(PathBuf::new, Path::to_path_buf),
        (true, None) => {
            let run = std::path::absolute(&args.run).map_err(|e| usage_error(&args.run, e.to_string()))?;
            run.parent().map_or_else(|| run.clone(), Path::to_path_buf)
        }
    })
}

/// The set's name: --name, else DATA's folder name; one folder name, not hidden.
pub(super) fn set_name(args: &EvaluateArgs) -> Result<String, RadrunError> {
    let from_folder = || {
        let absolute = std::path::absolute(&args.data).unwrap_or_else(|_| args.data.clone());
        absolute.file_name().map(|n| n.to_string_lossy().into_owned())
    };
    let name = args.name.clone().or_else(from_folder).unwrap_or_default();
    if name.is_empty() || name.starts_with('.') || name.contains(['/', '\\']) {
        return Err(usage_error(
            &args.data,
            format!("--name \"{name}\": give the external set a plain folder name (letters, digits, - and _)"),
        ));
    }
    Ok(name)
}

/// The run's `[data]` settings with the external set as the root: the same decoding,
/// size and channels. Its labels table is --labels, else the run's (a labelled run needs
/// one); a patient table the set lacks leaves the DICOM PatientIDs (noted).
pub(super) fn external_settings(
    run: &DataSettings,
    args: &EvaluateArgs,
    notes: &mut Vec<String>,
) -> Result<DataSettings, RadrunError> {
    let root = args
        .data
        .canonicalize()
        .map_err(|e| usage_error(&args.data, format!("cannot be opened ({e}); give the external set's folder")))?;
    let mut data = DataSettings { root, ..run.clone() };
    match &args.labels {
        Some(table) => {
            data.labels = std::path::absolute(table).map_err(|e| usage_error(table, e.to_string()))?;
        }
        None if !run.labels.as_os_str().is_empty() && !data.root.join(&run.labels).is_file() => {
            return Err(usage_error(
                &args.data,
                format!(
                    "has no labels table {}: the run was labelled by one (`data.labels`); give the external \
                     set's table with --labels TABLE",
                    path_text(&run.labels)
                ),
            ));
        }
        None => {}
    }
    if let GroupBy::Csv(table) = &run.group_by
        && !data.root.join(table).is_file()
    {
        data.group_by = GroupBy::Auto;
        notes.push(format!(
            "the run grouped images into patients by the table {}, which the external set lacks: its patients are \
             its DICOM PatientIDs (and the labels table's patient column), other images one each",
            path_text(table)
        ));
    }
    Ok(data)
}

/// The set read with the run's settings; when its grouping cannot be told for the set
/// (no patient folder, pattern or DICOM tag where the run had one), by the DICOM
/// PatientIDs instead, noted.
fn read_set(
    data: DataSettings,
    (classes, place): (&[String], &CachePlace),
    args: &EvaluateArgs,
    notes: &mut Vec<String>,
) -> Result<External, RadrunError> {
    let unreadable = |e: radrun_data::Error| usage_error(&args.data, e.to_string());
    match load_external(&data, classes, place) {
        Err(radrun_data::Error::NoGroup { file, reason, .. }) if data.group_by != GroupBy::Auto => {
            notes.push(format!(
                "the run's grouping ({}) cannot be told for the external set ({}: {reason}): its patients are its \
                 DICOM PatientIDs (and the labels table's patient column), other images one each",
                data.group_by.describe(),
                path_text(&file)
            ));
            load_external(&DataSettings { group_by: GroupBy::Auto, ..data }, classes, place).map_err(unreadable)
        }
        loaded => loaded.map_err(unreadable),
    }
}

/// The set compared with the runs' data (their split.csv): an error when they share
/// files or patients, unless --allow-leakage (noted).
pub(super) fn leakage_check(
    folders: &[PathBuf],
    compared: &[Compared],
    salt: Option<&str>,
    args: &EvaluateArgs,
    notes: &mut Vec<String>,
) -> Result<LeakageCheck, RadrunError> {
    let split_csvs: Vec<PathBuf> = folders.iter().map(|f| f.join("split.csv")).collect();
    let leakage = LeakageCheck::of_items(&split_csvs, compared, salt)
        .map_err(|e| usage_error(&split_csvs[0], format!("cannot be read for the leakage check: {e}")))?;
    if leakage.found() {
        if !args.allow_leakage {
            return Err(usage_error(&args.data, leakage.describe()));
        }
        notes.push(format!("evaluated with --allow-leakage: {}", leakage.describe()));
    }
    if leakage.patients_unchecked {
        notes.push(
            "patients were not compared with the run's data: its dataset's salt (.radrun-salt) is gone; only \
             file contents were"
                .into(),
        );
    } else if leakage.run_patients == 0 {
        notes.push(
            "patients were not compared with the run's data: its split.csv records no patient (the run grouped \
             no image, `data.group_by`); only file contents were"
                .into(),
        );
    }
    Ok(leakage)
}

/// The threshold and temperature the run chose on its validation split (status.json's
/// headline); none for an ensemble, whose runs each chose their own.
pub(super) fn decisions(folders: &[PathBuf], notes: &mut Vec<String>) -> Chosen {
    if folders.len() > 1 {
        notes.push(
            "an ensemble: each run chose its own threshold and temperature on its own validation images, so \
             none is applied (no operating point, no recalibrated probabilities)"
                .into(),
        );
        return Chosen::default();
    }
    let Some(status) = RunDir::new(folders[0].clone()).status() else { return Chosen::default() };
    let get = |key: &str| status.test.get(key).copied();
    Chosen {
        threshold: get("threshold"),
        threshold_calibrated: get("threshold_calibrated"),
        temperature: get("temperature"),
    }
}

/// The runs' internal test results: one run's values with their intervals, or the mean
/// over the runs of an ensemble (each metric over the runs that report it).
pub(super) fn internal_results(statuses: &[Status]) -> (BTreeMap<String, f64>, BTreeMap<String, Interval>) {
    if let [status] = statuses {
        return (status.test.clone(), status.test_intervals.clone());
    }
    let mut values: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for status in statuses {
        for (metric, value) in &status.test {
            values.entry(metric.clone()).or_default().push(*value);
        }
    }
    let means = values.into_iter().map(|(m, v)| (m, v.iter().sum::<f64>() / v.len() as f64)).collect();
    (means, BTreeMap::new())
}

/// Writes the folder `out` whole: into a new folder beside it, which then replaces it,
/// so an earlier evaluation under the same name is never left half overwritten nor
/// mixed with this one's files.
pub(super) fn write_folder(
    out: &Path,
    write: impl FnOnce(&RunDir) -> Result<(), WriteError>,
) -> Result<(), RadrunError> {
    let parent = out.parent().expect("external/<name>");
    std::fs::create_dir_all(parent).map_err(|source| WriteError { path: parent.to_path_buf(), source })?;
    let staging = tempfile::Builder::new()
        .prefix(".evaluating-")
        .tempdir_in(parent)
        .map_err(|source| WriteError { path: parent.to_path_buf(), source })?;
    write(&RunDir::new(staging.path().to_path_buf()))?;
    let staged = staging.keep();
    let replaced = |source| WriteError { path: out.to_path_buf(), source };
    if out.exists() {
        std::fs::remove_dir_all(out).map_err(replaced)?;
    }
    std::fs::rename(&staged, out).map_err(replaced)?;
    Ok(())
}

/// summary.md, summary.tex and report.html of the runs folder again, with the external
/// results; a folder without plan.json (made by an older radrun) keeps its tables.
pub(super) fn rewrite_tables(folder: &Path, confidence: f64) {
    if let Err(e) = radrun_runner::report::rewrite_tables(folder, confidence) {
        eprintln!("note: the summary tables and report of {} were not rewritten: {e}", path_text(folder));
    }
}

/// One line per headline metric, internal beside external, and where the files are.
pub(super) fn print_result(record: &ExternalRecord, evaluation: &Evaluation, out: &Path, unit: &str) {
    eprintln!(
        "{} {unit} of {} patient(s) scored with {} -> {}",
        record.images,
        record.patients,
        record.runs.join(", "),
        path_text(out)
    );
    if !record.missing_classes.is_empty() {
        eprintln!("  classes without images in the external set: {}", record.missing_classes.join(", "));
    }
    for note in &record.notes {
        eprintln!("  note: {note}");
    }
    let internal = |metric: &str| record.internal.get(metric).map_or("-".to_string(), |v| format!("{v:.3}"));
    for (metric, value) in evaluation.headline() {
        let interval = record.test_intervals.get(&metric).map(|i| format!(" ({:.3}-{:.3})", i.lower, i.upper));
        println!("{metric:<24} internal {:<8} external {value:.3}{}", internal(&metric), interval.unwrap_or_default());
    }
}
