//! `radrun predict RUN INPUT...`: a trained run applied to new files, with exactly its
//! own preprocessing, read from its resolved recipe.toml: class probabilities (and, for a
//! two-class run, the call at its chosen threshold), or predicted masks with their areas.

use std::path::{Path, PathBuf};

use radrun_data::paths::{path_text, stem_text};
use radrun_data::{Dataset, FileKind, Series, Task};
use radrun_metrics::evaluate::Predictions;
use radrun_models::Network;
use radrun_settings::Keep;
use radrun_train::predict::Predictor;

use crate::gallery::{Cam, heat_overlay};
use radrun_runner::report::{PlanRecord, ReportError};
use radrun_runner::store::aggregate::points;

use radrun_runner::cli::PredictArgs;
use radrun_runner::commands::usage_error;
use radrun_runner::error::RadrunError;
use radrun_runner::recipe::settings::{Settings, read_resolved};
use radrun_runner::store::{RunDir, State, Status, WeightsFile, WriteError, write_csv, write_png};

/// Files decoded and predicted at a time.
const FILES_AT_ONCE: usize = 256;

pub fn predict(args: &PredictArgs) -> Result<(), RadrunError> {
    let folders = members(&args.run, args.best.as_deref(), args.ensemble)?;
    let device = radrun_train::device::resolve(args.device).map_err(|e| RadrunError::Device(e.to_string()))?;
    if run_settings(&folders[0].join("recipe.toml")).is_ok_and(|s| s.data.dims == 3) {
        return super::predict_volumes::predict(args, &folders, device);
    }
    let runs = folders.iter().map(|f| TrainedRun::open(f, device)).collect::<Result<Vec<_>, _>>()?;
    check_runs(&runs, "predict")?;
    if runs.iter().any(|r| inside(&args.out, &r.folder)) {
        return Err(usage_error(&args.out, "is inside the run folder; write the predictions elsewhere (--out)".into()));
    }
    let first = &runs[0];
    let settings = &first.settings;
    let written: Vec<PathBuf> =
        [args.out.clone(), masks_folder(&args.out)].into_iter().chain(args.heatmaps.clone()).collect();
    let files = input_files(&args.inputs, &written)?;
    if settings.data.task == Task::Segmentation {
        clear_masks(&masks_folder(&args.out), "_mask.png");
    }
    let heatmaps = heatmaps_folder(args, &runs)?;
    // one run, or the runs whose probabilities are averaged
    let networks: Vec<&Network> = runs.iter().map(|r| &r.network).collect();
    let prediction = Prediction {
        networks: &networks,
        first,
        // each fold chose its threshold on its own validation images: an average has none
        threshold: if runs.len() == 1 { first.threshold } else { None },
        heatmaps: heatmaps.as_ref().map(|(folder, layer)| (folder.as_path(), layer.as_str())),
        batch_size: args.batch.map_or(settings.train.batch_size as usize, usize::from),
        channels: settings.data.input_channels(),
        device,
        out: &args.out,
    };
    let ((header, rows), errors) = prediction.all(&files)?;
    write_csv(&args.out, &header, &rows)?;
    let members: Vec<(&Path, &Path)> = runs.iter().map(|r| (r.folder.as_path(), r.weights.as_path())).collect();
    summarize(args, &members, &files, &errors)
}

/// Refuses runs that cannot be applied together (an ensemble of runs that read their
/// data differently), and runs on series, which `radrun <command>` does not apply.
pub(super) fn check_runs(runs: &[TrainedRun], command: &str) -> Result<(), RadrunError> {
    let first = &runs[0];
    // one configuration's runs differ in split and seed only; a changed recipe.toml or
    // dataset between them is caught here
    if let Some(other) = runs.iter().find(|r| {
        r.classes != first.classes
            || radrun_data::DataSettings { cache: first.settings.data.cache, ..r.settings.data.clone() }
                != first.settings.data
    }) {
        return Err(usage_error(
            &other.folder.join("recipe.toml"),
            format!(
                "reads its data or names its classes differently from {}; an ensemble averages runs that \
                 differ only in their fold and seed",
                path_text(&first.folder)
            ),
        ));
    }
    if first.settings.data.series != Series::Files {
        return Err(usage_error(
            &first.folder.join("recipe.toml"),
            format!("is a run on series (`data.series`); `radrun {command}` applies runs on single image files so far"),
        ));
    }
    Ok(())
}

/// With --heatmaps, the folder for the Grad-CAM maps (made here) and the layer they are
/// taken at: for one classification run only.
fn heatmaps_folder<'a>(
    args: &'a PredictArgs,
    runs: &[TrainedRun],
) -> Result<Option<(&'a PathBuf, String)>, RadrunError> {
    let first = &runs[0];
    match (&args.heatmaps, first.settings.data.task) {
        (None, _) => Ok(None),
        (Some(folder), _) if runs.len() > 1 => {
            Err(usage_error(folder, "--heatmaps: Grad-CAM maps are drawn for one run; leave out --ensemble".into()))
        }
        (Some(folder), Task::Classification) => {
            let layer = radrun_train::gradcam::cam_layer(&first.network, &args.gradcam_layer, "--gradcam-layer")
                .map_err(|e| usage_error(&first.folder.join("model_summary.txt"), e.to_string()))?;
            std::fs::create_dir_all(folder).map_err(|source| WriteError { path: folder.clone(), source })?;
            Ok(Some((folder, layer)))
        }
        (Some(folder), _) => Err(usage_error(
            folder,
            "--heatmaps: Grad-CAM maps are drawn for single-label classification runs only".into(),
        )),
    }
}

/// A table's header and rows.
type Table = (Vec<String>, Vec<Vec<String>>);

/// Per file, why it could not be decoded (`None`: it was).
type FileErrors = Vec<Option<radrun_data::Error>>;

/// How the files are predicted: by which runs, with which settings, and where the
/// masks and heatmaps go.
struct Prediction<'a> {
    /// One run, or the runs whose probabilities are averaged.
    networks: &'a [&'a Network],
    /// The run whose settings and classes apply (the first of an ensemble).
    first: &'a TrainedRun,
    threshold: Option<(usize, f64)>,
    /// The folder for Grad-CAM maps and the layer they are taken at.
    heatmaps: Option<(&'a Path, &'a str)>,
    batch_size: usize,
    channels: usize,
    device: tch::Device,
    /// The predictions file (segmentation masks go beside it).
    out: &'a Path,
}

impl Prediction<'_> {
    /// All files predicted, a chunk decoded at a time (memory stays bounded on large
    /// folders): the table (its header, one row per file), and each file's decoding error.
    fn all(&self, files: &[PathBuf]) -> Result<(Table, FileErrors), RadrunError> {
        let (mut header, mut rows, mut errors) = (Vec::new(), Vec::new(), Vec::new());
        let bar = progress_bar(files.len());
        for (chunk, files) in files.chunks(FILES_AT_ONCE).enumerate() {
            let data = &self.first.settings.data;
            let (dataset, chunk_errors) = radrun_data::load::for_prediction(files, data, self.first.classes.clone());
            let predicted;
            (header, predicted) = self.chunk(&dataset, chunk * FILES_AT_ONCE)?;
            rows.extend(file_rows(files, &chunk_errors, header.len(), predicted));
            errors.extend(chunk_errors);
            bar.inc(files.len() as u64);
        }
        bar.finish_and_clear();
        Ok(((header, rows), errors))
    }

    /// The header and the values of a chunk's decoded files (numbered from `first`):
    /// class probabilities (and heatmaps), or masks.
    fn chunk(&self, dataset: &Dataset, first: usize) -> Result<Table, RadrunError> {
        let predictor = Predictor {
            networks: self.networks,
            dataset,
            batch_size: self.batch_size,
            channels: self.channels,
            device: self.device,
        };
        match dataset.task {
            Task::Classification | Task::Multilabel => {
                let probabilities = predictor.class_probabilities(&dataset.test);
                let (mut header, mut rows) =
                    class_table(dataset.task, &dataset.classes, &probabilities, self.threshold);
                if let Some((folder, layer)) = self.heatmaps {
                    let (batch_size, channels) = (self.batch_size, self.channels);
                    let cam = Cam { network: &self.first.network, dataset, layer, batch_size, channels };
                    let paths = write_heatmaps(&cam, &probabilities, folder, first)?;
                    header.insert(header.len() - 1, "heatmap".into());
                    rows.iter_mut().zip(paths).for_each(|(row, path)| row.push(path));
                }
                Ok((header, rows))
            }
            Task::Segmentation => mask_rows(dataset, predictor.masks(&dataset.test), self.out, first),
        }
    }
}

/// A chunk's rows: each file, then its predicted values (`predicted`, one per decoded
/// file, in order), or blanks and why it was not decoded; `columns` in all.
pub(super) fn file_rows(
    files: &[PathBuf],
    errors: &[Option<radrun_data::Error>],
    columns: usize,
    predicted: Vec<Vec<String>>,
) -> Vec<Vec<String>> {
    let mut predicted = predicted.into_iter();
    let mut rows = Vec::new();
    for (file, error) in files.iter().zip(errors) {
        let mut row = vec![path_text(file)];
        match error {
            Some(e) => {
                row.extend(std::iter::repeat_n(String::new(), columns - 2));
                row.push(e.to_string());
            }
            None => {
                row.extend(predicted.next().expect("one prediction per decoded file"));
                row.push(String::new());
            }
        }
        rows.push(row);
    }
    rows
}

/// Says how many files were predicted, by which run(s), into which file; then lists the
/// files that could not be read, and fails, if there are any.
pub(super) fn summarize(
    args: &PredictArgs,
    runs: &[(&Path, &Path)],
    files: &[PathBuf],
    errors: &[Option<radrun_data::Error>],
) -> Result<(), RadrunError> {
    let failed = errors.iter().filter(|e| e.is_some()).count();
    let by = match runs {
        [(folder, weights)] => format!(
            "{} ({} weights)",
            path_text(folder),
            weights.file_name().map(|n| path_text(Path::new(n))).unwrap_or_default()
        ),
        _ => format!("the mean of {} runs of {}", runs.len(), path_text(&args.run)),
    };
    eprintln!("{} file(s) predicted with {by} -> {}", files.len() - failed, path_text(&args.out));
    if failed > 0 {
        for (file, error) in files.iter().zip(errors) {
            if let Some(e) = error {
                eprintln!("  {}: {e}", path_text(file));
            }
        }
        return Err(RadrunError::FilesUnreadable { unreadable: failed, total: files.len() });
    }
    Ok(())
}

/// A bar over the files to predict on a terminal (advancing a chunk of files at a
/// time), nothing otherwise.
fn progress_bar(files: usize) -> indicatif::ProgressBar {
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(files as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("predicting [{bar:30}] {pos}/{len} files, {eta} left")
            .expect("valid template"),
    );
    bar
}

/// Whether the file `out` would be written into the run folder `run` (which stays as
/// the run left it).
pub(super) fn inside(out: &Path, run: &Path) -> bool {
    let out_folder = std::path::absolute(out).ok().and_then(|p| p.parent()?.canonicalize().ok());
    out_folder.is_some() && out_folder == run.canonicalize().ok()
}

/// A finished run ready to apply to new files: its resolved settings, its classes, and
/// its network with the weights its test evaluation used.
pub(super) struct TrainedRun {
    pub folder: PathBuf,
    pub settings: Settings,
    pub classes: Vec<String>,
    pub network: Network,
    pub weights: PathBuf,
    /// A two-class run's positive class and the threshold chosen on validation.
    pub threshold: Option<(usize, f64)>,
}

/// A done run's folder and its resolved settings; an error saying what to give if
/// `folder` is not one.
pub(super) fn finished_run(folder: &Path) -> Result<(RunDir, Settings), RadrunError> {
    let dir = RunDir::new(folder.to_path_buf());
    if dir.status().is_none_or(|s| s.state != State::Done) {
        return Err(usage_error(
            &folder.join("status.json"),
            "is missing or not of a finished run; give the folder of a done run (runs/<recipe>/<run id>), \
             or a recipe's runs folder with --best METRIC or --ensemble"
                .into(),
        ));
    }
    Ok((dir, run_settings(&folder.join("recipe.toml"))?))
}

/// The error of libtorch failing to do `what` with the run in `folder`.
pub(super) fn libtorch_error(what: &str, folder: &Path) -> impl FnOnce(radrun_models::Error) -> RadrunError {
    let what = format!("{what} of {}", path_text(folder));
    move |e| RadrunError::Libtorch { what, source: e.into() }
}

/// Loads into `network` the weights the run's test evaluation used (`train.keep`);
/// returns their file.
pub(super) fn load_evaluated(network: &mut Network, dir: &RunDir, settings: &Settings) -> Result<PathBuf, RadrunError> {
    let weights = dir.weights_path(match settings.train.keep {
        Keep::BestValidationLoss => WeightsFile::Best,
        Keep::Last => WeightsFile::Last,
    });
    network.load(&weights).map_err(|e| match e {
        // the file is at fault, not libtorch: its message says what to do
        damaged @ radrun_models::Error::File(radrun_settings::WeightsError::Damaged { .. }) => {
            RadrunError::Weights(damaged.into())
        }
        other => libtorch_error("load the weights", dir.path())(other),
    })?;
    Ok(weights)
}

impl TrainedRun {
    pub(super) fn open(folder: &Path, device: tch::Device) -> Result<Self, RadrunError> {
        let (dir, settings) = finished_run(folder)?;
        let classes = trained_classes(&folder.join("data_summary.json"))?;
        let data = &settings.data;
        let (height, width) = data.height_width();
        let input = [data.input_channels() as i64, height as i64, width as i64];
        let mut network = Network::build(&settings.model, input, classes.len() as i64, device)
            .map_err(libtorch_error("build the network", folder))?;
        let weights = load_evaluated(&mut network, &dir, &settings)?;
        let threshold = match data.task {
            Task::Classification => operating_point(&folder.join("operating_point.json"), &classes)?,
            Task::Multilabel | Task::Segmentation => None,
        };
        Ok(Self { folder: folder.to_path_buf(), settings, classes, network, weights, threshold })
    }
}

/// The run folders `radrun predict` applies: RUN itself; with --best, the done run of
/// the runs folder RUN with the best validation metric; with --ensemble, its done runs
/// (with --best too, those of the configuration with the best mean over folds and seeds).
/// Only configurations whose runs are all done are averaged: a mean over some folds
/// would silently be another model.
pub(super) fn members(run: &Path, best: Option<&str>, ensemble: bool) -> Result<Vec<PathBuf>, RadrunError> {
    if best.is_none() && !ensemble {
        return Ok(vec![run.to_path_buf()]);
    }
    let flag = if ensemble { "--ensemble" } else { "--best" };
    let plan = PlanRecord::read(run).map_err(|e| match e {
        ReportError::NotARunsFolder { .. } => usage_error(
            run,
            format!(
                "has no plan.json: with {flag}, give a recipe's runs folder (runs/<recipe>); `radrun status \
                 RECIPE` writes plan.json into one made by an older radrun"
            ),
        ),
        other => other.into(),
    })?;
    let runs: Vec<(String, Vec<String>, Option<Status>)> =
        plan.runs.iter().map(|(id, values)| (id.clone(), values.clone(), RunDir::new(run.join(id)).status())).collect();
    let (keys, configurations) = points(&plan.swept_keys, &runs);
    let candidates: Vec<Vec<&Status>> = if ensemble {
        if best.is_none() && configurations.len() > 1 {
            return Err(usage_error(
                run,
                format!(
                    "--ensemble: its runs differ in {} besides fold and seed; add --best METRIC (e.g. val_loss) \
                     to average the runs of the best configuration",
                    keys.join(", ")
                ),
            ));
        }
        // a configuration is averaged only when all its runs are done
        let (complete, partial): (Vec<_>, Vec<_>) = configurations.iter().partition(|c| c.done.len() == c.planned);
        if let ([], [one]) = (complete.as_slice(), partial.as_slice()) {
            return Err(usage_error(
                run,
                format!(
                    "--ensemble: {} of the {} runs to average are done; wait for the others or finish them \
                     (`radrun status`, `radrun RECIPE` resumes)",
                    one.done.len(),
                    one.planned
                ),
            ));
        }
        if complete.is_empty() {
            return Err(usage_error(
                run,
                "--ensemble: no configuration has all its runs done yet; wait for them or finish them \
                 (`radrun status`, `radrun RECIPE` resumes)"
                    .into(),
            ));
        }
        if !partial.is_empty() {
            eprintln!("--ensemble: {} configuration(s) with runs not done are left out", partial.len());
        }
        complete.into_iter().map(|c| c.done.clone()).collect()
    } else {
        configurations.iter().flat_map(|c| c.done.iter().map(|s| vec![*s])).collect()
    };
    if candidates.is_empty() {
        return Err(usage_error(run, "has no finished run yet (see `radrun status`)".into()));
    }
    let chosen = match best {
        Some(metric) => &candidates[best_by(run, metric, &candidates)?],
        None => &candidates[0],
    };
    Ok(chosen.iter().map(|s| run.join(&s.run_id)).collect())
}

/// The candidate (a run, or a configuration's runs) with the best mean of a validation
/// metric: lowest for losses, highest otherwise; the first of equals (configurations in
/// plan order, runs in plan order within them).
fn best_by(folder: &Path, metric: &str, candidates: &[Vec<&Status>]) -> Result<usize, RadrunError> {
    if metric.starts_with("test_") {
        return Err(usage_error(
            folder,
            format!(
                "--best {metric}: choosing a model by a test metric makes its test result optimistic; \
                 choose by a validation metric (val_loss, val_accuracy, ...)"
            ),
        ));
    }
    let mean = |runs: &[&Status]| -> Option<f64> {
        let values: Option<Vec<f64>> = runs.iter().map(|s| s.validation.get(metric).copied()).collect();
        values.map(|v| v.iter().sum::<f64>() / v.len() as f64).filter(|m| m.is_finite())
    };
    let lower_is_better = metric.ends_with("loss");
    let mut best: Option<(usize, f64)> = None;
    for (i, runs) in candidates.iter().enumerate() {
        let Some(value) = mean(runs) else { continue };
        if best.is_none_or(|(_, b)| if lower_is_better { value < b } else { value > b }) {
            best = Some((i, value));
        }
    }
    let Some((index, value)) = best else {
        let known: std::collections::BTreeSet<&String> =
            candidates.iter().flat_map(|runs| runs.iter().flat_map(|s| s.validation.keys())).collect();
        return Err(usage_error(
            folder,
            format!(
                "--best {metric}: no finished run has this validation metric; known: {}",
                known.into_iter().map(String::as_str).collect::<Vec<_>>().join(", ")
            ),
        ));
    };
    let ids: Vec<&str> = candidates[index].iter().map(|s| s.run_id.as_str()).collect();
    eprintln!("--best {metric}: {} ({metric} {value:.4})", ids.join(", "));
    Ok(index)
}

/// The columns after `file` (and before `error`) and their values per decoded file:
/// the predicted class (or labels), one probability per class, and for a two-class run
/// the threshold chosen on validation and the call at it.
pub(super) fn class_table(
    task: Task,
    classes: &[String],
    probabilities: &[Vec<f32>],
    threshold: Option<(usize, f64)>,
) -> (Vec<String>, Vec<Vec<String>>) {
    let multilabel = task == Task::Multilabel;
    let mut header = vec!["file".to_string(), if multilabel { "predicted_labels" } else { "predicted_class" }.into()];
    header.extend(classes.iter().map(|c| format!("p_{c}")));
    if threshold.is_some() {
        header.extend(["threshold".to_string(), "predicted_at_threshold".to_string()]);
    }
    header.push("error".into());
    let rows = probabilities
        .iter()
        .map(|p| {
            let predicted = if multilabel {
                let present = classes.iter().zip(p).filter(|(_, v)| **v >= 0.5);
                present.map(|(c, _)| c.as_str()).collect::<Vec<_>>().join("|")
            } else {
                classes[radrun_metrics::argmax(p)].clone()
            };
            let mut row: Vec<String> = std::iter::once(predicted).chain(p.iter().map(|v| format!("{v}"))).collect();
            if let Some((positive, t)) = threshold {
                let call = if f64::from(p[positive]) >= t { positive } else { 1 - positive };
                row.extend([format!("{t}"), classes[call].clone()]);
            }
            row
        })
        .collect();
    (header, rows)
}

/// Each decoded file's Grad-CAM overlay of its predicted class, written into `folder`
/// (numbered from `first`: two folders may hold files of the same name); their paths.
fn write_heatmaps(
    cam: &Cam,
    probabilities: &[Vec<f32>],
    folder: &Path,
    first: usize,
) -> Result<Vec<String>, RadrunError> {
    let predicted: Vec<i64> = probabilities.iter().map(|p| radrun_metrics::argmax(p) as i64).collect();
    let indices: Vec<usize> = (0..predicted.len()).collect();
    let maps = cam.maps(&indices, &predicted);
    let (h, w) = (cam.dataset.height, cam.dataset.width);
    let mut paths = Vec::new();
    for (i, (sample, map)) in cam.dataset.test.samples.iter().zip(&maps).enumerate() {
        let path = folder.join(format!("{:05}_{}_gradcam.png", first + i, stem_text(&sample.path)));
        write_png(&path, &heat_overlay(&cam.gray(i), map, h, w))?;
        paths.push(path_text(&path));
    }
    Ok(paths)
}

/// For a segmentation run: each predicted mask written as a PNG beside the CSV
/// (`<out>_masks/`), and per foreground label its area in pixels of the network's input
/// size and, when DICOM gave the pixel spacing, in mm².
fn mask_rows(
    dataset: &Dataset,
    masks: Vec<Vec<u8>>,
    out: &Path,
    first: usize,
) -> Result<(Vec<String>, Vec<Vec<String>>), RadrunError> {
    let labels = dataset.classes.len().max(2);
    let folder = masks_folder(out);
    let mut header = vec!["file".to_string(), "mask".to_string()];
    for label in &dataset.classes[1..labels] {
        header.extend([format!("area_pixels_{label}"), format!("area_mm2_{label}")]);
    }
    header.push("error".into());
    let mut rows = Vec::new();
    for (i, (sample, mask)) in dataset.test.samples.iter().zip(&masks).enumerate() {
        // numbered: two series may hold files of the same name
        let path = folder.join(format!("{:05}_{}_mask.png", first + i, stem_text(&sample.path)));
        write_png(&path, &radrun_metrics::evaluate::mask_image(mask, labels, dataset.height, dataset.width))?;
        let mut row = vec![path_text(&path)];
        for label in 1..labels {
            let pixels = mask.iter().filter(|&&v| usize::from(v) == label).count();
            let mm2 = sample.pixel_spacing_mm.map(|[r, c]| pixels as f64 * r * c);
            row.extend([pixels.to_string(), mm2.map(|a| format!("{a}")).unwrap_or_default()]);
        }
        rows.push(row);
    }
    Ok((header, rows))
}

/// Removes the masks (files ending in `suffix`) of an earlier prediction into the same
/// folder: they must not mix with these.
pub(super) fn clear_masks(folder: &Path, suffix: &str) {
    if let Ok(entries) = std::fs::read_dir(folder) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().ends_with(suffix) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// Where the masks of a segmentation prediction into `out` go: `<out stem>_masks/` (the
/// stem's bytes as they are).
pub(super) fn masks_folder(out: &Path) -> PathBuf {
    let mut name = out.file_stem().unwrap_or(std::ffi::OsStr::new("predictions")).to_os_string();
    name.push("_masks");
    out.with_file_name(name)
}

/// A two-class run's positive class and threshold, from its operating_point.json.
pub(super) fn operating_point(path: &Path, classes: &[String]) -> Result<Option<(usize, f64)>, RadrunError> {
    let Ok(text) = std::fs::read(path) else { return Ok(None) };
    let point: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| usage_error(path, format!("is not valid JSON: {e}")))?;
    let positive = point["positive_class"].as_str().and_then(|c| classes.iter().position(|k| k == c));
    match (positive, point["threshold"].as_f64()) {
        (Some(positive), Some(threshold)) if classes.len() == 2 => Ok(Some((positive, threshold))),
        _ => Err(usage_error(path, "names no class of the run, or no threshold".into())),
    }
}

/// A run's settings from its resolved recipe (see [`read_resolved`]).
pub(super) fn run_settings(path: &Path) -> Result<Settings, RadrunError> {
    Ok(read_resolved(path)?)
}

/// The class names the run was trained with, from its data_summary.json.
fn trained_classes(path: &Path) -> Result<Vec<String>, RadrunError> {
    let text =
        std::fs::read(path).map_err(|e| usage_error(path, format!("cannot be read ({e}); is this a run folder?")))?;
    let summary: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| usage_error(path, format!("is not valid JSON: {e}")))?;
    summary["classes"]
        .as_array()
        .and_then(|a| a.iter().map(|c| c.as_str().map(str::to_string)).collect::<Option<Vec<_>>>())
        .filter(|c| !c.is_empty())
        .ok_or_else(|| usage_error(path, "lists no classes".into()))
}

/// The files to predict: each file given, and every image under each folder given
/// (PNG, JPEG, DICOM with or without extension), sorted, once each (links followed
/// once), hidden entries, DICOMDIR indexes and the paths in `skip` (this command's own
/// output) left out.
fn input_files(inputs: &[PathBuf], skip: &[PathBuf]) -> Result<Vec<PathBuf>, RadrunError> {
    let mut walk =
        InputWalk { skip: skip.iter().filter_map(|p| p.canonicalize().ok()).collect(), ..Default::default() };
    for input in inputs {
        if input.is_dir() {
            walk.folder(input)?;
        } else if input.is_file() {
            walk.file(input.clone());
        } else {
            return Err(usage_error(input, "does not exist; give image files or folders of them".into()));
        }
    }
    if walk.files.is_empty() {
        let given = inputs.first().map_or(Path::new("(none)"), PathBuf::as_path);
        return Err(usage_error(given, "holds no PNG, JPEG or DICOM file to predict".into()));
    }
    Ok(walk.files)
}

#[derive(Default)]
struct InputWalk {
    files: Vec<PathBuf>,
    /// Canonical paths already taken, folders and files.
    seen: std::collections::HashSet<PathBuf>,
    skip: Vec<PathBuf>,
}

impl InputWalk {
    fn first_time(&mut self, path: &Path) -> bool {
        let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        !self.skip.contains(&canonical) && self.seen.insert(canonical)
    }

    fn file(&mut self, path: PathBuf) {
        if self.first_time(&path) {
            self.files.push(path);
        }
    }

    fn folder(&mut self, folder: &Path) -> Result<(), RadrunError> {
        if !self.first_time(folder) {
            return Ok(());
        }
        let mut entries: Vec<PathBuf> = std::fs::read_dir(folder)
            .map_err(|e| usage_error(folder, format!("cannot be read: {e}")))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.file_name().is_some_and(|n| !n.to_string_lossy().starts_with('.') && n != "DICOMDIR"))
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                self.folder(&path)?;
            } else if FileKind::of(&path).is_some() {
                self.file(path);
            }
        }
        Ok(())
    }
}
