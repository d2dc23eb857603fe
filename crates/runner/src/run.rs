//! Running a plan: one folder per run under `runs/<recipe>/<run id>/`, the resolved recipe
//! and a status record written before training, done runs skipped on a rerun, a failed
//! run recorded with its error while the sweep goes on, and summary.csv rewritten after
//! every run. A run folder is self-contained: another process or machine can read its
//! `recipe.toml` and `status.json` and pick it up.

use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use radrun_data::{Dataset, Images, Task};
use radrun_models::{ModelSettings, Network};
use radrun_train::predict::Predictor;
use radrun_train::{EpochRecord, FitConfig, Keep, Observer, Phase};

use crate::error::RadrunError;
use crate::evaluate;
use crate::log::RunLog;
use crate::plan::{Plan, PlannedRun};
use crate::provenance::{self, Provenance};
use crate::reporter::{Event, Reporter, epoch_line, phase_line};
use crate::run_dir::{RunDir, State, Status, WeightsFile, WriteError, host_name, write_summary};

/// Counts of what happened.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub done: usize,
    pub skipped: usize,
    pub failed: usize,
}

/// Datasets decoded in this process, shared by the runs whose `[data]` is the same (each
/// run splits them its own way: folds), and dropped after the last run that uses them.
pub(crate) struct Datasets {
    loaded: HashMap<String, Arc<Images>>,
    /// For each data key, the index of the last run of the plan that uses it.
    last_use: HashMap<String, usize>,
}

impl Datasets {
    pub(crate) fn new(plan: &Plan) -> Self {
        let last_use = plan.runs.iter().enumerate().map(|(i, run)| (run.data_key(), i)).collect();
        Self { loaded: HashMap::new(), last_use }
    }

    /// The dataset of `run`, split as its `[split]` says and checked for leakage; with
    /// the seconds spent decoding when its images were decoded now (the first run on
    /// this `[data]`).
    pub(crate) fn get(&mut self, run: &PlannedRun) -> Result<(Dataset, Option<f64>), radrun_data::Error> {
        let key = run.data_key();
        let (images, seconds) = match self.loaded.get(&key) {
            Some(images) => (images.clone(), None),
            None => {
                let started = Instant::now();
                let images = Arc::new(radrun_data::discover(&run.settings.data)?.load()?);
                self.loaded.insert(key, images.clone());
                (images, Some(started.elapsed().as_secs_f64()))
            }
        };
        Ok((images.split(&run.settings.split)?, seconds))
    }

    /// Frees the datasets no run after `index` needs.
    fn release_after(&mut self, index: usize) {
        let last_use = &self.last_use;
        self.loaded.retain(|key, _| last_use.get(key).is_some_and(|&last| last > index));
    }
}

/// How to run a plan.
pub struct Runner<'a> {
    /// Folder holding one folder per recipe (default `runs`).
    pub runs_root: PathBuf,
    /// Retrain runs that are already done.
    pub force: bool,
    pub reporter: &'a mut dyn Reporter,
    pub log: RunLog,
}

impl Runner<'_> {
    /// The folder of one recipe's runs.
    pub fn recipe_folder(&self, plan: &Plan) -> PathBuf {
        self.runs_root.join(&plan.recipe_name)
    }

    fn run_dir(&self, plan: &Plan, run: &PlannedRun) -> RunDir {
        RunDir::new(self.recipe_folder(plan).join(&run.id))
    }

    /// Trains every run of the plan that is not done yet; fails when a run failed.
    pub fn run_plan(&mut self, plan: &Plan) -> Result<Tally, RadrunError> {
        let mut tally = Tally::default();
        let mut datasets = Datasets::new(plan);
        let folder = self.recipe_folder(plan);
        self.reporter.report(&Event::PlanStarted { plan, folder: &folder });
        let total = plan.runs.len();
        let provenance = Provenance::of_plan(&plan.recipe_path)?;
        let mut files_now: HashMap<String, Vec<PathBuf>> = HashMap::new();
        for (i, run) in plan.runs.iter().enumerate() {
            let dir = self.run_dir(plan, run);
            if let Some(skip) = skip_reason(&dir, self.force) {
                if skip == Skip::Done {
                    check_unchanged(plan, run, &dir, &mut files_now)?;
                }
                tally.skipped += 1;
                let reason = skip.to_string();
                self.reporter.report(&Event::RunSkipped { index: i + 1, total, run, reason: &reason });
                continue;
            }
            dir.clear()?;
            self.reporter.report(&Event::RunStarted { index: i + 1, total, run, folder: dir.path() });
            let status = self.execute(plan, run, &dir, &mut datasets, provenance.clone())?;
            datasets.release_after(i);
            match status.state {
                State::Done => tally.done += 1,
                State::Running | State::Failed => tally.failed += 1,
            }
            self.reporter.report(&Event::RunFinished { run, status: &status, folder: dir.path() });
            self.write_plan_summary(plan)?;
        }
        self.write_plan_summary(plan)?;
        self.reporter.report(&Event::PlanFinished { tally, folder: &folder });
        if tally.failed > 0 {
            return Err(RadrunError::RunsFailed { failed: tally.failed, total, summary: folder.join("summary.csv") });
        }
        Ok(tally)
    }

    /// Rewrites `runs/<recipe>/summary.csv`, `aggregate.csv`, `summary.md` and
    /// `summary.tex` from the status of every run of the plan.
    fn write_plan_summary(&self, plan: &Plan) -> Result<(), WriteError> {
        let rows: Vec<(String, Vec<String>, Option<Status>)> = plan
            .runs
            .iter()
            .map(|run| {
                let values = run.swept.iter().map(|(_, v)| crate::plan::display_value(v)).collect();
                (run.id.clone(), values, self.run_dir(plan, run).status())
            })
            .collect();
        let folder = self.recipe_folder(plan);
        write_summary(&folder.join("summary.csv"), &plan.swept_keys, &rows)?;
        let confidence = plan.runs.first().map_or(0.95, |r| r.settings.eval.confidence);
        crate::aggregate::write_aggregates(&folder, &plan.recipe_name, &plan.swept_keys, &rows, confidence)
    }

    /// Trains and evaluates one run, recording the outcome in its status; only failures
    /// to write the run folder itself are errors here.
    fn execute(
        &mut self,
        plan: &Plan,
        run: &PlannedRun,
        dir: &RunDir,
        datasets: &mut Datasets,
        provenance: Provenance,
    ) -> Result<Status, WriteError> {
        let mut status = Status::started(plan, run, provenance);
        let header = format!(
            "# Resolved recipe of run {} (from {}), every default written out.\n# `radrun run` on this file reproduces the run.\n\n",
            run.id,
            plan.recipe_path.display()
        );
        let body = toml::to_string(&run.settings).expect("settings serialize as TOML");
        dir.write_recipe(&format!("{header}{body}"))?;
        dir.write_status(&status)?;
        self.log.set(Some(&dir.log_path()));
        tracing::info!("run {} started", run.id);
        let started = Instant::now();
        let mut work = RunWork { run, dir, reporter: &mut *self.reporter, status: &mut status };
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| work.train_and_evaluate(datasets)));
        let error = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("{e:#}")),
            Err(panic) => Some(
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "the run panicked".into()),
            ),
        };
        if let Some(e) = &error {
            tracing::error!("run {} failed: {e}", run.id);
        }
        status.state = if error.is_some() { State::Failed } else { State::Done };
        status.error = error;
        status.finished = Some(jiff::Timestamp::now().to_string());
        status.seconds = Some(started.elapsed().as_secs_f64());
        dir.write_status(&status)?;
        self.log.set(None);
        Ok(status)
    }
}

fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Why a run is not trained now.
#[derive(Debug, PartialEq)]
enum Skip {
    Done,
    /// Another live process on this machine trains it.
    Busy(u32),
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::Done => f.write_str("done"),
            Skip::Busy(pid) => write!(f, "being trained by process {pid} on this machine"),
        }
    }
}

/// Why a run is not trained now, if it is not.
fn skip_reason(dir: &RunDir, force: bool) -> Option<Skip> {
    let status = dir.status()?;
    match status.state {
        State::Done if !force => Some(Skip::Done),
        State::Running
            if status.host == host_name() && status.pid != std::process::id() && process_alive(status.pid) =>
        {
            Some(Skip::Busy(status.pid))
        }
        _ => None,
    }
}

/// A done run is kept only while the files it read are unchanged: results of an old
/// and a new dataset must not be mixed in one recipe's tables. `files_now` caches the
/// files found per `[data]`.
fn check_unchanged(
    plan: &Plan,
    run: &PlannedRun,
    dir: &RunDir,
    files_now: &mut HashMap<String, Vec<PathBuf>>,
) -> Result<(), RadrunError> {
    let key = run.data_key();
    if !files_now.contains_key(&key) {
        let layout = radrun_data::discover(&run.settings.data)
            .map_err(|source| RadrunError::Dataset { recipe: plan.recipe_path.clone(), source })?;
        files_now.insert(key.clone(), layout.files().into_iter().map(Path::to_path_buf).collect());
    }
    let files: Vec<&Path> = files_now[&key].iter().map(PathBuf::as_path).collect();
    match provenance::DatasetChanges::of_run(dir.path(), &run.settings.data, &files) {
        Some(changes) if !changes.is_empty() => {
            Err(RadrunError::DatasetChanged { run: dir.path().to_path_buf(), changes: changes.describe() })
        }
        _ => Ok(()),
    }
}

impl Status {
    /// The status of a run that starts now in this process.
    fn started(plan: &Plan, run: &PlannedRun, provenance: Provenance) -> Status {
        Status {
            state: State::Running,
            run_id: run.id.clone(),
            recipe_file: plan.recipe_path.canonicalize().unwrap_or_else(|_| plan.recipe_path.clone()),
            started: jiff::Timestamp::now().to_string(),
            finished: None,
            seconds: None,
            error: None,
            device: None,
            radrun_version: env!("CARGO_PKG_VERSION").into(),
            libtorch_version: radrun_train::device::loaded_libtorch_version(),
            host: host_name(),
            pid: std::process::id(),
            evaluated_epoch: None,
            validation: BTreeMap::new(),
            test: BTreeMap::new(),
            test_intervals: BTreeMap::new(),
            provenance,
        }
    }
}

/// One run being trained: what it reads and where it reports.
struct RunWork<'a> {
    run: &'a PlannedRun,
    dir: &'a RunDir,
    reporter: &'a mut dyn Reporter,
    status: &'a mut Status,
}

impl RunWork<'_> {
    /// Loads (or reuses) and splits the data, trains and evaluates. A dataset that
    /// cannot be used (an unreadable file, leakage) fails the run before training, like
    /// any other run error: the sweep goes on.
    fn train_and_evaluate(&mut self, datasets: &mut Datasets) -> Result<()> {
        let settings = &self.run.settings;
        let train = &settings.train;
        if train.threads > 0 {
            tch::set_num_threads(train.threads as i32);
        }
        tch::manual_seed(train.seed as i64);
        let device = radrun_train::device::resolve(train.device)?;
        let device_name = radrun_train::device::describe(device);
        self.status.device = Some(device_name.clone());
        self.status.provenance.set_device(device);
        let (dataset, seconds) = datasets.get(self.run)?;
        if let Some(seconds) = seconds {
            self.reporter.report(&Event::DataLoaded { summary: &dataset.summary, seconds });
        }
        let dataset = &dataset;
        self.dir.write_data_summary(&dataset.summary)?;
        let files = provenance::file_records(dataset, &settings.data.root);
        let tables = provenance::table_hashes(&settings.data);
        self.status.provenance.dataset = Some(provenance::fingerprint(&files, tables));
        self.dir.write_split(&files, &dataset.classes, &provenance::group_salt(&settings.data.root)?)?;
        self.dir.write_status(self.status)?;

        let channels = settings.data.input_channels();
        let input = [channels as i64, dataset.height as i64, dataset.width as i64];
        let mut network = Network::build(&settings.model, input, dataset.classes.len() as i64, device)?;
        if let ModelSettings::Transfer(transfer) = &settings.model {
            crate::weights::load_pretrained(&mut network, transfer)?;
        }
        let summary = network.summary();
        self.dir.write_model_summary(&summary)?;
        tracing::info!("\n{summary}");
        self.reporter.report(&Event::ModelBuilt { device: &device_name, summary: &summary });

        let class_weights = match dataset.task {
            Task::Classification => {
                train.class_weights.resolve(&dataset.classes, &dataset.train.class_counts(dataset.classes.len()))?
            }
            Task::Segmentation | Task::Multilabel => None,
        };
        let augment = settings.augment.enabled.then(|| settings.augment.clone());
        let config = FitConfig { settings: train, model: &settings.model, augment, channels, device, class_weights };
        let mut folder =
            FolderObserver { dir: self.dir, total_epochs: train.total_epochs(), records: Vec::new(), failed: None };
        let mut progress = ReporterObserver {
            run: self.run,
            reporter: &mut *self.reporter,
            total_epochs: train.total_epochs(),
            started: Instant::now(),
        };
        let outcome = radrun_train::fit(&mut network, dataset, &config, &mut Both(&mut folder, &mut progress))?;
        if let Some(error) = folder.failed {
            return Err(error.into());
        }
        self.keep_weights(&mut network, &outcome)?;
        let predictor =
            Predictor { network: &network, dataset, batch_size: train.batch_size as usize, channels, device };
        let evaluation = evaluate::evaluate(&predictor, &settings.eval)?;
        self.dir.write_evaluation(&evaluation)?;
        self.status.test = evaluation.headline();
        self.status.test_intervals = evaluation.headline_intervals();
        Ok(())
    }

    /// Saves the best and last weights and leaves in `network` the ones `train.keep`
    /// evaluates; records that epoch and its validation metrics in the status.
    fn keep_weights(&mut self, network: &mut Network, outcome: &radrun_train::FitOutcome) -> Result<()> {
        self.dir.write_weights(WeightsFile::Last, network)?;
        let last_epoch = outcome.epochs.last().map_or(0, |r| r.epoch);
        outcome.best.restore(network);
        self.dir.write_weights(WeightsFile::Best, network)?;
        let evaluated = match self.run.settings.train.keep {
            Keep::BestValidationLoss => outcome.best.epoch,
            Keep::Last => {
                network.load(&self.dir.weights_path(WeightsFile::Last))?;
                last_epoch
            }
        };
        self.status.evaluated_epoch = Some(evaluated);
        let record = outcome.epochs.iter().find(|r| r.epoch == evaluated).expect("evaluated epoch was trained");
        self.status.validation = [
            ("val_loss", Some(record.val_loss)),
            ("val_accuracy", Some(record.val_accuracy)),
            ("val_dice", record.val_dice),
            ("val_iou", record.val_iou),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
        .collect();
        Ok(())
    }
}

/// Writes the run folder as training goes: metrics.csv after every epoch, and the
/// phase and epoch lines into train.log.
struct FolderObserver<'a> {
    dir: &'a RunDir,
    total_epochs: u32,
    records: Vec<EpochRecord>,
    /// The first write that failed: the run fails with it after training.
    failed: Option<WriteError>,
}

impl Observer for FolderObserver<'_> {
    fn phase_started(&mut self, phase: &Phase, trainable_parameters: i64) {
        tracing::info!("{}", phase_line(phase, trainable_parameters));
    }

    fn epoch_finished(&mut self, record: &EpochRecord) {
        tracing::info!("{}", epoch_line(record, self.total_epochs));
        self.records.push(record.clone());
        if let Err(e) = self.dir.write_metrics(&self.records)
            && self.failed.is_none()
        {
            self.failed = Some(e);
        }
    }
}

/// Turns training progress into reporter events.
struct ReporterObserver<'a> {
    run: &'a PlannedRun,
    reporter: &'a mut dyn Reporter,
    total_epochs: u32,
    started: Instant,
}

impl Observer for ReporterObserver<'_> {
    fn phase_started(&mut self, phase: &Phase, trainable_parameters: i64) {
        self.reporter.report(&Event::PhaseStarted { run: self.run, phase, trainable_parameters });
    }

    fn epoch_started(&mut self, epoch: u32, batches: usize) {
        self.reporter.report(&Event::EpochStarted { epoch, total_epochs: self.total_epochs, batches });
    }

    fn batch_finished(&mut self, batches_done: usize, loss: f64, accuracy: f64, images_per_second: f64) {
        self.reporter.report(&Event::BatchProgress { batches_done, loss, accuracy, images_per_second });
    }

    fn epoch_finished(&mut self, record: &EpochRecord) {
        self.reporter.report(&Event::EpochFinished {
            run: self.run,
            record,
            total_epochs: self.total_epochs,
            elapsed_seconds: self.started.elapsed().as_secs_f64(),
        });
    }
}

/// Two observers of one training.
struct Both<'a, 'b>(&'a mut dyn Observer, &'b mut dyn Observer);

impl Observer for Both<'_, '_> {
    fn phase_started(&mut self, phase: &Phase, trainable_parameters: i64) {
        self.0.phase_started(phase, trainable_parameters);
        self.1.phase_started(phase, trainable_parameters);
    }

    fn epoch_started(&mut self, epoch: u32, batches: usize) {
        self.0.epoch_started(epoch, batches);
        self.1.epoch_started(epoch, batches);
    }

    fn batch_finished(&mut self, batches_done: usize, loss: f64, accuracy: f64, images_per_second: f64) {
        self.0.batch_finished(batches_done, loss, accuracy, images_per_second);
        self.1.batch_finished(batches_done, loss, accuracy, images_per_second);
    }

    fn epoch_finished(&mut self, record: &EpochRecord) {
        self.0.epoch_finished(record);
        self.1.epoch_finished(record);
    }
}
