//! `radrun predict RUN SCAN...` for a volume run: each scan (a NIfTI file, a DICOM
//! series folder, or the scans in a folder, found as a dataset's cases are) read as the
//! run read its cases, prepared by the run's own preprocessing (preprocessing.json).
//! A classification run (`cnn3d`) crops or pads it about its centre and writes its class
//! probabilities as a 2D run does (averaged over an ensemble's runs, each preparing the
//! scan its own way). A segmentation run segments it by sliding window as its test
//! cases were (the run's `[eval]`) and writes the labels back on the scan as
//! `<out stem>_masks/NNNN_<scan>.nii.gz` (the scan's shape and affine); the CSV gives
//! each scan's mask and each label's volume in mL. With
//! `--ensemble` each run prepares the scan its own way (its CT statistics) and their
//! probabilities are averaged voxel by voxel, so the runs must share one working grid:
//! runs resampled to different spacings (`data.spacing = "median"` differs by fold) are
//! refused, saying to set the spacing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use radrun_data::Task;
use radrun_data::nifti;
use radrun_data::paths::path_text;
use radrun_data::volume_cases::scans_under;
use radrun_data::volume_dataset::{Preprocessing, read_scan};
use radrun_data::volume_store::WorkingCase;
use radrun_models::Network;
use radrun_runner::cli::PredictArgs;
use radrun_runner::commands::usage_error;
use radrun_runner::error::RadrunError;
use radrun_runner::recipe::settings::Settings;
use radrun_runner::recipe::volume_input::VolumeInput;
use radrun_runner::store::{write_atomic, write_csv};
use radrun_train::predict::volume_class_probabilities;
use radrun_train::sliding_window::{SlidingWindow, segment};

use super::predict::{
    class_table, clear_masks, file_rows, finished_run, inside, libtorch_error, load_evaluated, masks_folder,
    operating_point, summarize,
};
use crate::run::volumes::{network_outputs, post_processed, test_window};

/// A done volume run ready to segment new scans.
pub(super) struct VolumeRun {
    pub(super) folder: PathBuf,
    pub(super) settings: Settings,
    preprocessing: Preprocessing,
    /// Label value to name, background included; or class index to name.
    pub(super) labels: BTreeMap<u32, String>,
    pub(super) input: VolumeInput,
    network: Network,
    weights: PathBuf,
}

impl VolumeRun {
    /// The channels a case of the run has.
    pub(super) fn channels(&self) -> usize {
        self.preprocessing.channels
    }

    pub(super) fn open(folder: &Path, device: tch::Device) -> Result<Self, RadrunError> {
        let (dir, settings) = finished_run(folder)?;
        let (preprocessing, labels) = dir.volume_data().ok_or_else(|| {
            let why = "or labels.json is missing or unreadable: the run folder is damaged or incomplete; run it again";
            usage_error(&folder.join("preprocessing.json"), why.into())
        })?;
        let input =
            VolumeInput::resolve(&settings.model, &settings.data, (&settings.train, &settings.eval), &preprocessing)
                .map_err(|e| usage_error(&folder.join("recipe.toml"), e.to_string()))?;
        let outputs = network_outputs(settings.model.task(), &labels) as i64;
        let mut network = Network::build_volume(&settings.model, input.input_shape(), input.spacing, outputs, device)
            .map_err(libtorch_error("build the network", folder))?;
        let weights = load_evaluated(&mut network, &dir, &settings)?;
        Ok(Self { folder: folder.to_path_buf(), settings, preprocessing, labels, input, network, weights })
    }
}

pub fn predict(args: &PredictArgs, folders: &[PathBuf], device: tch::Device) -> Result<(), RadrunError> {
    let runs = folders.iter().map(|f| VolumeRun::open(f, device)).collect::<Result<Vec<_>, _>>()?;
    check_runs(&runs, &args.out)?;
    let first = &runs[0];
    let mut scans = Vec::new();
    for input in &args.inputs {
        scans.extend(scans_under(input).map_err(|e| usage_error(input, e.to_string()))?);
    }
    if first.settings.model.task() == Task::Classification {
        return classify_scans(args, &runs, &scans, device);
    }
    let folder = masks_folder(&args.out);
    clear_masks(&folder, ".nii.gz");
    let batch = args.batch.map_or(first.settings.train.batch_size as usize, usize::from);
    let window = test_window(&first.settings, first.input.patch, batch);
    let foreground: Vec<(&u32, &String)> = first.labels.iter().filter(|(value, _)| **value > 0).collect();
    let mut header = vec!["file".to_string(), "mask".to_string()];
    header.extend(foreground.iter().map(|(_, name)| format!("ml_{name}")));
    header.push("error".into());
    let (mut rows, mut errors) = (Vec::new(), Vec::new());
    for (i, (name, path)) in scans.iter().enumerate() {
        let mut row = vec![path_text(path)];
        match read_scan(name, path, &first.settings.data) {
            Ok(source) => {
                let mask = folder.join(format!("{:04}_{}.nii.gz", i + 1, name.replace('/', "_")));
                let volumes = segment_scan(&runs, name, &source, &window, device);
                write_atomic(&mask, &nifti::encode(&volumes))?;
                row.push(path_text(&mask));
                let voxel_ml = volumes.spacing().iter().product::<f64>() / 1000.0;
                for (value, _) in &foreground {
                    let voxels = volumes.voxels.iter().filter(|&&v| v as u32 == **value).count();
                    row.push(format!("{}", voxels as f64 * voxel_ml));
                }
                row.push(String::new());
                errors.push(None);
            }
            Err(e) => {
                row.extend(std::iter::repeat_n(String::new(), foreground.len() + 1));
                row.push(e.to_string());
                errors.push(Some(e));
            }
        }
        rows.push(row);
    }
    write_csv(&args.out, &header, &rows)?;
    let members: Vec<(&Path, &Path)> = runs.iter().map(|r| (r.folder.as_path(), r.weights.as_path())).collect();
    let files: Vec<PathBuf> = scans.into_iter().map(|(_, path)| path).collect();
    summarize(args, &members, &files, &errors)
}

/// Writes the class probabilities of each of `scans` (averaged over `runs`), and, for one
/// two-class run, the call at the threshold it chose on validation.
fn classify_scans(
    args: &PredictArgs,
    runs: &[VolumeRun],
    scans: &[(String, PathBuf)],
    device: tch::Device,
) -> Result<(), RadrunError> {
    let first = &runs[0];
    let classes: Vec<String> = first.labels.values().cloned().collect();
    // each fold chose its threshold on its own validation cases: an average has none
    let threshold = match runs {
        [run] => operating_point(&run.folder.join("operating_point.json"), &classes)?,
        _ => None,
    };
    let (mut probabilities, mut errors) = (Vec::new(), Vec::new());
    for (name, path) in scans {
        match read_scan(name, path, &first.settings.data) {
            Ok(source) => {
                probabilities.push(case_probabilities(runs, name, &source, device));
                errors.push(None);
            }
            Err(e) => errors.push(Some(e)),
        }
    }
    let (header, predicted) = class_table(Task::Classification, &classes, &probabilities, threshold);
    let files: Vec<PathBuf> = scans.iter().map(|(_, path)| path.clone()).collect();
    write_csv(&args.out, &header, &file_rows(&files, &errors, header.len(), predicted))?;
    let members: Vec<(&Path, &Path)> = runs.iter().map(|r| (r.folder.as_path(), r.weights.as_path())).collect();
    summarize(args, &members, &files, &errors)
}

/// The class probabilities of `source` by `runs`, each preparing it its own way (its
/// centred block), averaged.
pub(super) fn case_probabilities(
    runs: &[VolumeRun],
    name: &str,
    source: &radrun_data::volume::Volume,
    device: tch::Device,
) -> Vec<f32> {
    let mut sum = vec![0f32; runs[0].labels.len()];
    for run in runs {
        let working = WorkingCase::prepare(name, source, None, &run.settings.data, &run.preprocessing);
        let block = working.centred_block(run.input.patch.map(|side| side as usize));
        let p = volume_class_probabilities(&[&run.network], &[block], run.input.input_shape(), device);
        sum.iter_mut().zip(&p[0]).for_each(|(s, v)| *s += v);
    }
    sum.into_iter().map(|s| s / runs.len() as f32).collect()
}

/// The label map of `source` by `runs` (each on the scan prepared its own way), on the
/// scan's grid.
pub(super) fn segment_scan(
    runs: &[VolumeRun],
    name: &str,
    source: &radrun_data::volume::Volume,
    window: &SlidingWindow,
    device: tch::Device,
) -> radrun_data::volume::Volume {
    let working: Vec<WorkingCase> =
        runs.iter().map(|r| WorkingCase::prepare(name, source, None, &r.settings.data, &r.preprocessing)).collect();
    let members: Vec<(&Network, &radrun_data::volume::Volume)> =
        runs.iter().zip(&working).map(|(r, w)| (&r.network, &w.image)).collect();
    let labels = segment(&members, window, device);
    let on_working = post_processed(labels, &working[0], &runs[0].settings.eval.keep_largest_component);
    working[0].placement.place_back(&on_working)
}

/// Refuses runs that cannot be averaged (other labels, data read otherwise, another
/// working grid for a segmentation), multi-channel runs, and an output file inside a run folder.
pub(super) fn check_runs(runs: &[VolumeRun], out: &Path) -> Result<(), RadrunError> {
    let first = &runs[0];
    let recipe = |run: &VolumeRun| run.folder.join("recipe.toml");
    if first.preprocessing.channels > 1 {
        let why = format!(
            "reads {} channels per case; `radrun predict` and `radrun evaluate` read one file or series per scan \
             so far",
            first.preprocessing.channels
        );
        return Err(usage_error(&recipe(first), why));
    }
    let same_data = |r: &VolumeRun| {
        radrun_data::DataSettings {
            cache: first.settings.data.cache,
            root: first.settings.data.root.clone(),
            ..r.settings.data.clone()
        } == first.settings.data
    };
    if let Some(other) = runs.iter().find(|r| r.labels != first.labels || !same_data(r)) {
        let why = format!(
            "reads its data or names its labels differently from {}; an ensemble averages runs that differ only in \
             their fold and seed",
            path_text(&first.folder)
        );
        return Err(usage_error(&recipe(other), why));
    }
    // a segmentation averages voxel by voxel; each run classifies its own block
    let segments = first.settings.model.task() == Task::Segmentation;
    if let Some(other) =
        runs.iter().find(|r| segments && (r.input.spacing != first.input.spacing || r.input.patch != first.input.patch))
    {
        let why = format!(
            "works on a grid of {:?} mm with patches of {:?}, {} on {:?} mm with {:?}: an ensemble averages \
             probabilities voxel by voxel on one grid; set `data.spacing` (and `data.patch_size`) in the recipe so \
             that every fold shares them",
            other.input.spacing,
            other.input.patch,
            path_text(&first.folder),
            first.input.spacing,
            first.input.patch
        );
        return Err(usage_error(&recipe(other), why));
    }
    if runs.iter().any(|r| inside(out, &r.folder)) {
        return Err(usage_error(out, "is inside the run folder; write the predictions elsewhere (--out)".into()));
    }
    Ok(())
}
