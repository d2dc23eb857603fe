//! One volume run's work (`data.dims = 3`): its cases split and their files hashed
//! (split.csv, the dataset fingerprint), the preprocessing fitted on its training cases
//! (preprocessing.json), its working cases kept memory-mapped under the run folder while
//! it trains (removed after), the network built for its patch and trained on patches by
//! the same loop as the 2D runs, then each test case segmented by sliding window, put
//! back on its source scan, written as `predictions/<case>.nii.gz` and scored against
//! its mask in millimetres on that scan's grid. A classification (`cnn3d`) trains on
//! whole cases cropped or padded about their centre and is evaluated in
//! [`super::volume_classes`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use rayon::prelude::*;

use radrun_data::Task;
use radrun_data::components::keep_largest_component;
use radrun_data::nifti;
use radrun_data::subgroups::{Levels, read_levels};
use radrun_data::volume::Volume;
use radrun_data::volume_dataset::{CaseFacts, Preprocessing, VolumeImages, VolumeSplit};
use radrun_data::volume_store::{PatchPlan, StoredCase, WorkingCase};
use radrun_data::volume_summary::{VolumeDataSummary, VolumeSummary};
use radrun_metrics::evaluate::{Evaluation, ValMode};
use radrun_metrics::slices::case_slices;
use radrun_metrics::surface::{Grid, surface_scores};
use radrun_metrics::volumes::{CaseScores, evaluate_volumes};
use radrun_models::Network;
use radrun_runner::recipe::settings::Settings;
use radrun_runner::recipe::volume_input::VolumeInput;
use radrun_runner::run::datasets::Datasets;
use radrun_runner::run::reporter::Event;
use radrun_runner::store::claim::Claim;
use radrun_runner::store::provenance::{self, DatasetFingerprint};
use radrun_runner::store::{write_atomic, write_png};
use radrun_train::patches::VolumePatches;
use radrun_train::sliding_window::{SlidingWindow, segment};

use super::work::{RunWork, taken_over, write_subgroups};

/// What a volume run reads, once its cases are split.
pub(super) struct VolumeRun<'a> {
    pub images: &'a VolumeImages,
    pub split: VolumeSplit<'a>,
    pub preprocessing: Preprocessing,
    pub input: VolumeInput,
    /// The network's outputs: its maps ([`label_maps`]) or classes.
    pub outputs: BTreeMap<u32, String>,
    pub task: Task,
    /// The test cases' levels of `eval.subgroups`, read before training.
    pub levels: Vec<Levels>,
}

impl RunWork<'_> {
    /// Reads (or reuses) and splits the cases, trains on patches and evaluates the test
    /// cases. A dataset that cannot be used fails the run before training.
    pub fn train_and_evaluate_volumes(&mut self, datasets: &mut Datasets) -> Result<()> {
        let device = self.choose_device()?;
        let (images, seconds) = datasets.volumes(self.run)?;
        if let Some(seconds) = seconds {
            let message = format!("read {} cases in {seconds:.1} s", images.cases().count());
            self.reporter.report(&Event::Note { run: self.run, message: &message });
        }
        let volumes = self.prepare(&images)?;
        let fingerprint = self.record_data(&volumes)?;
        let settings = &self.run.settings;
        let input = volumes.input.input_shape();
        let outputs = volumes.output_count() as i64;
        let mut network = Network::build_volume(&settings.model, input, volumes.input.spacing, outputs, device)?;
        self.model_built(&network)?;
        let class_weights = match volumes.task {
            Task::Classification => {
                let mut counts = vec![0; volumes.outputs.len()];
                volumes.split.train.iter().filter_map(|case| case.class).for_each(|c| counts[c] += 1);
                let classes: Vec<String> = volumes.outputs.values().cloned().collect();
                settings.train.class_weights.resolve(&classes, &counts)?
            }
            Task::Segmentation | Task::Multilabel => None,
        };
        let working = WorkingFolder { path: self.dir.working_folder(), claim: self.claim };
        let patches = self.store_cases(&volumes, &working)?;
        let outcome = self.fit(&mut network, &patches, class_weights, device, &fingerprint);
        // the working cases are made again from the sources by a resumed run
        drop((patches, working));
        let outcome = outcome?;
        let held = self.claim.hold().ok_or_else(taken_over)?;
        self.keep_weights(&mut network, &outcome)?;
        drop(held);
        match volumes.task {
            Task::Classification => self.evaluate_volume_classes(&network, &volumes, device),
            Task::Segmentation | Task::Multilabel => self.evaluate_volumes(&network, &volumes, device),
        }
    }

    /// The run's split, preprocessing and network input.
    fn prepare<'a>(&self, images: &'a VolumeImages) -> Result<VolumeRun<'a>> {
        let settings = &self.run.settings;
        let split = images.split(&settings.split)?;
        let preprocessing = split.fit(&settings.data);
        let input =
            VolumeInput::resolve(&settings.model, &settings.data, (&settings.train, &settings.eval), &preprocessing)?;
        let task = settings.model.task();
        let outputs = match task {
            Task::Classification => {
                images.classes().iter().enumerate().map(|(c, name)| (c as u32, name.clone())).collect()
            }
            Task::Segmentation | Task::Multilabel => self.checked_labels(images)?,
        };
        let sources: Vec<&std::path::Path> = split.test.iter().map(|case| case.source.as_path()).collect();
        let levels = read_levels(&settings.eval.subgroups, &sources, &settings.data)?;
        Ok(VolumeRun { images, split, preprocessing, input, outputs, task, levels })
    }

    /// The labels of a segmentation's masks, value to name, once checked against what
    /// radrun segments and what `eval.keep_largest_component` names.
    fn checked_labels(&self, images: &VolumeImages) -> Result<BTreeMap<u32, String>> {
        let names = images.label_names();
        let maps = label_maps(&names);
        anyhow::ensure!(
            maps <= 256,
            "the masks hold label {}; radrun segments labels 0 to 255: renumber the labels of the masks",
            maps - 1
        );
        let keep = &self.run.settings.eval.keep_largest_component;
        if let Some(absent) = keep.iter().find(|l| !names.contains_key(l)) {
            anyhow::bail!(
                "`eval.keep_largest_component` names label {absent}, which no mask holds (labels: {}); remove it",
                names.keys().map(u32::to_string).collect::<Vec<_>>().join(", ")
            );
        }
        Ok(names)
    }

    /// split.csv, data_summary.txt, preprocessing.json and the fingerprint in the status.
    fn record_data(&mut self, volumes: &VolumeRun) -> Result<DatasetFingerprint> {
        let data = &self.run.settings.data;
        let salt = provenance::group_salt(&data.root)?;
        let (files, fingerprint) = provenance::volume_files(volumes.images, &volumes.split, data, &salt)?;
        self.dir.write_volume_split(&files)?;
        let split = &volumes.split;
        let summary = format!(
            "{}\nThis run: {} training, {} validation ({}), {} test cases; {}\n{}",
            VolumeSummary::of(volumes.images),
            split.train.len(),
            split.validation.len(),
            split.how,
            split.test.len(),
            volumes.preprocessing,
            volumes.input
        );
        let facts = VolumeDataSummary {
            input_voxels: Some(volumes.input.patch),
            ..VolumeDataSummary::of(volumes.images, split, Some(&self.run.settings.split))
        };
        self.dir.write_volume_data((&summary, &facts), &volumes.preprocessing, &volumes.outputs)?;
        self.status.provenance.dataset = Some(fingerprint.clone());
        self.dir.write_status(self.status)?;
        Ok(fingerprint)
    }

    /// The training and validation cases on their working grid, kept under the run
    /// folder, and the patches training cuts from them.
    fn store_cases(&self, volumes: &VolumeRun, working: &WorkingFolder) -> Result<VolumePatches> {
        let folder = &working.path;
        if folder.exists() {
            // an earlier attempt's, which stopped before removing it
            std::fs::remove_dir_all(folder).with_context(|| format!("cannot remove {}", folder.display()))?;
        }
        std::fs::create_dir_all(folder).with_context(|| format!("cannot create {}", folder.display()))?;
        let keep = |cases: &[&CaseFacts], first: usize| -> Result<Vec<StoredCase>, radrun_data::Error> {
            cases
                .par_iter()
                .enumerate()
                .map(|(i, case)| {
                    let working = volumes.images.working_case(case, &volumes.preprocessing)?;
                    let mut stored = StoredCase::keep(&working, folder, first + i)?;
                    stored.class = case.class;
                    Ok(stored)
                })
                .collect()
        };
        let split = &volumes.split;
        let train = keep(&split.train, 0)?;
        let validation = keep(&split.validation, split.train.len())?;
        let settings = &self.run.settings;
        let plan = PatchPlan {
            patch: volumes.input.patch.map(|side| side as usize),
            batch_size: settings.train.batch_size as usize,
            foreground_share: settings.data.foreground_oversample,
            seed: settings.train.seed,
            iterations: settings.train.iterations_per_epoch as usize,
            augment: settings.augment.enabled.then(|| settings.augment.volume.clone()),
            centred: volumes.task == Task::Classification,
        };
        let labels = volumes.output_count();
        // validation segments whole cases as the test cases are, without mirroring
        let whole_validation = (settings.eval.val_mode == ValMode::Volumes).then(|| SlidingWindow {
            mirror_axes: Vec::new(),
            ..test_window(settings, volumes.input.patch, plan.batch_size)
        });
        Ok(VolumePatches { train: Arc::from(train), validation: Arc::from(validation), plan, labels, whole_validation })
    }

    /// Segments each test case, writes its mask on its source scan, scores it against
    /// the case's mask, and writes the evaluation files and the headline in the status.
    fn evaluate_volumes(&mut self, network: &Network, volumes: &VolumeRun, device: tch::Device) -> Result<()> {
        let eval = &self.run.settings.eval;
        let window = test_window(&self.run.settings, volumes.input.patch, self.run.settings.train.batch_size as usize);
        let foreground: Vec<(u32, String)> =
            volumes.outputs.iter().filter(|(value, _)| **value > 0).map(|(v, name)| (*v, name.clone())).collect();
        let (mut rows, mut groups, mut scored) = (Vec::new(), Vec::new(), Vec::new());
        for (index, case) in volumes.split.test.iter().enumerate() {
            let (working, mask) = volumes.images.working_case_and_mask(case, &volumes.preprocessing)?;
            let predicted = segment(&[(network, &working.image)], &window, device);
            let on_working = post_processed(predicted, &working, &eval.keep_largest_component);
            let placed = working.placement.place_back(&on_working);
            let picture =
                (self.report.gallery > 0).then(|| case_slices(&working.image, working.labels.as_ref(), &on_working));
            {
                let _held = self.claim.hold().ok_or_else(taken_over)?;
                write_atomic(&self.dir.mask_path(&case.name), &nifti::encode(&placed))?;
                if let Some(picture) = &picture {
                    write_png(&self.dir.slices_path(&case.name), picture)?;
                }
            }
            let Some(mask) = mask else { continue };
            anyhow::ensure!(
                mask.shape == placed.shape,
                "case {}: the mask put back has {:?} voxels, its source {:?}",
                case.name,
                placed.shape,
                mask.shape
            );
            rows.extend(score_case(case, &mask, &placed, &foreground, eval.nsd_tolerance));
            groups.push(case.group.as_str());
            scored.push(index);
        }
        let label_names: Vec<String> = foreground.into_iter().map(|(_, name)| name).collect();
        let evaluation = Evaluation::Volumes(evaluate_volumes(rows, &groups, &label_names, eval));
        let _held = self.claim.hold().ok_or_else(taken_over)?;
        self.dir.write_evaluation(&evaluation)?;
        let levels: Vec<Levels> = volumes.levels.iter().map(|l| l.of(&scored)).collect();
        let groups: Vec<Option<&str>> = groups.into_iter().map(Some).collect();
        write_subgroups(self.dir, &evaluation, &groups, &levels, eval)?;
        self.status.test = evaluation.headline();
        self.status.test_intervals = evaluation.headline_intervals();
        Ok(())
    }
}

impl VolumeRun<'_> {
    fn output_count(&self) -> usize {
        network_outputs(self.task, &self.outputs)
    }
}

/// A volume network's outputs for `task`: one per class of `names` (class index to
/// name), or the label maps of [`label_maps`] (label value to name).
pub fn network_outputs(task: Task, names: &BTreeMap<u32, String>) -> usize {
    match task {
        Task::Classification => names.len(),
        Task::Segmentation | Task::Multilabel => label_maps(names),
    }
}

/// The network's output maps for the label values of `labels`: one per value up to the
/// largest, background included, and at least two (background and one structure).
pub fn label_maps(labels: &BTreeMap<u32, String>) -> usize {
    labels.keys().max().map_or(1, |&largest| largest.max(1) as usize) + 1
}

/// How a run of `settings` with `patch` segments a whole case: its `[eval]` window,
/// `batch` windows at a time.
pub fn test_window(settings: &Settings, patch: [i64; 3], batch: usize) -> SlidingWindow {
    let eval = &settings.eval;
    SlidingWindow {
        patch,
        overlap: eval.overlap,
        blend: eval.blend,
        // the axes training mirrors along (augment.volume), when it augments
        mirror_axes: match eval.mirror && settings.augment.enabled {
            true => settings.augment.volume.mirrored_axes(),
            false => Vec::new(),
        },
        batch,
    }
}

/// A label map of `working`'s grid (one label per voxel, in the grid's voxel order)
/// with the largest component kept for each of `keep_largest`, as a volume of that grid.
pub fn post_processed(mut labels: Vec<u8>, working: &WorkingCase, keep_largest: &[u32]) -> Volume {
    let [nx, ny, nz] = working.image.shape;
    for &label in keep_largest {
        keep_largest_component(&mut labels, [nz, ny, nx], label as u8);
    }
    Volume {
        voxels: labels.into_iter().map(f32::from).collect(),
        shape: working.image.shape,
        channels: 1,
        affine: working.image.affine,
    }
}

/// The run's working cases on disk while it trains, removed when dropped (after
/// training, or when the run fails or panics), as long as this process still holds the
/// run: a folder left behind only takes space, so a removal that fails is a warning.
struct WorkingFolder<'a> {
    path: PathBuf,
    claim: &'a Claim,
}

impl Drop for WorkingFolder<'_> {
    fn drop(&mut self) {
        let Some(_held) = self.claim.hold() else { return };
        match std::fs::remove_dir_all(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!("the working cases in {} are left: {e}", self.path.display());
            }
            _ => {}
        }
    }
}

/// The scores of each foreground label of `predicted` against `reference`, both on the
/// case's source grid, distances in mm at its spacing.
pub(crate) fn score_case(
    case: &CaseFacts,
    reference: &Volume,
    predicted: &Volume,
    labels: &[(u32, String)],
    tolerance_mm: f64,
) -> Vec<CaseScores> {
    let [nx, ny, nz] = predicted.shape;
    let [sx, sy, sz] = predicted.spacing();
    let grid = Grid::volume([nz, ny, nx], [sz, sy, sx]);
    labels
        .iter()
        .map(|(value, name)| {
            let of = |v: &Volume| v.voxels.iter().map(|&x| x as u32 == *value).collect::<Vec<bool>>();
            CaseScores {
                case: case.name.clone(),
                source: case.source.clone(),
                label: name.clone(),
                scores: surface_scores(&of(reference), &of(predicted), &grid, tolerance_mm),
            }
        })
        .collect()
}
