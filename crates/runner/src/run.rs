//! Running a plan: one folder per run under `runs/<recipe>/<run id>/`, the resolved recipe
//! and a status record written before training, done runs skipped on a rerun, a failed
//! run recorded with its error while the sweep goes on, and summary.csv rewritten after
//! every run. A run folder is self-contained: another process or machine can read its
//! `recipe.toml` and `status.json` and pick it up.

use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::Result;
use radrun_data::{CachePlace, Dataset, Images, ImagesSource, Task};
use radrun_models::{ModelSettings, Network};
use radrun_train::controls::Metric;
use radrun_train::predict::Predictor;
use radrun_train::{Checkpoint, EpochRecord, FitConfig, Keep, Observer, Phase};

use crate::claim::{self, Claim, Claimed};
use crate::error::RadrunError;
use crate::evaluate;
use crate::gallery::Cam;
use crate::log::RunLog;
use crate::plan::{Plan, PlannedRun};
use crate::provenance::{self, DatasetFingerprint, Provenance};
use crate::reporter::{Event, Reporter, epoch_line, phase_line};
use crate::run_dir::{
    CheckpointMeta, RunDir, SavedCheckpoint, State, Status, WeightsFile, WriteError, host_name, write_summary,
};

/// Counts of what happened.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub done: usize,
    pub skipped: usize,
    pub failed: usize,
    /// Stopped by a signal, with a checkpoint to go on from.
    pub interrupted: usize,
}

/// Datasets decoded in this process, shared by the runs whose `[data]` is the same (each
/// run splits them its own way: folds), and dropped after the last run that uses them.
pub(crate) struct Datasets {
    loaded: HashMap<String, Arc<Images>>,
    /// For each data key, the index of the last run of the plan that uses it.
    last_use: HashMap<String, usize>,
    cache: CachePlace,
}

/// How a dataset came to be in this process: see [`Datasets::get`].
pub(crate) struct Loaded {
    pub seconds: f64,
    pub source: ImagesSource,
}

impl Datasets {
    /// Datasets for `plan`'s runs, whose image cache files (`data.cache`) go in
    /// `runs_root/.image-cache`.
    pub(crate) fn new(plan: &Plan, runs_root: &Path) -> Self {
        let last_use = plan.runs.iter().enumerate().map(|(i, run)| (run.data_key(), i)).collect();
        let cache = CachePlace { dir: runs_root.join(".image-cache"), memory_budget: memory_budget() };
        Self { loaded: HashMap::new(), last_use, cache }
    }

    /// The dataset of `run`, split as its `[split]` says and checked for leakage; with
    /// how it was loaded when that happened now (the first run on this `[data]`).
    pub(crate) fn get(&mut self, run: &PlannedRun) -> Result<(Dataset, Option<Loaded>), radrun_data::Error> {
        let key = run.data_key();
        let (images, loaded) = match self.loaded.get(&key) {
            Some(images) => (images.clone(), None),
            None => {
                let started = Instant::now();
                let images = Arc::new(radrun_data::discover(&run.settings.data)?.load_cached(&self.cache)?);
                self.loaded.insert(key, images.clone());
                let source = images.source().clone();
                tracing::info!("images {source}");
                (images, Some(Loaded { seconds: started.elapsed().as_secs_f64(), source }))
            }
        };
        Ok((images.split(&run.settings.split)?, loaded))
    }

    /// Frees the datasets no run after `index` needs.
    fn release_after(&mut self, index: usize) {
        let last_use = &self.last_use;
        self.loaded.retain(|key, _| last_use.get(key).is_some_and(|&last| last > index));
    }
}

/// The memory a dataset may take before `data.cache = "auto"` puts it in an image cache
/// file: a quarter of what this process may use (the machine's memory, or less when its
/// control group or its Slurm job limits it), shared among the workers of `--jobs`.
fn memory_budget() -> u64 {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let machine = read("/proc/meminfo").and_then(|info| {
        let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
        line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kib| kib * 1024)
    });
    let slurm = |var: &str| std::env::var(var).ok()?.parse::<u64>().ok().filter(|&mb| mb > 0).map(|mb| mb << 20);
    let cpus = std::env::var("SLURM_CPUS_ON_NODE").ok().and_then(|n| n.parse::<u64>().ok());
    let per_cpu = slurm("SLURM_MEM_PER_CPU").zip(cpus);
    let limits = [machine, control_group_limit(), slurm("SLURM_MEM_PER_NODE"), per_cpu.map(|(mb, cpus)| mb * cpus)];
    let workers = std::env::var(crate::jobs::WORKERS_VARIABLE).ok().and_then(|v| v.parse::<u64>().ok());
    let usable = limits.into_iter().flatten().min();
    usable.map_or(u64::MAX, |usable| usable / 4 / workers.unwrap_or(1).max(1))
}

/// The tightest memory limit of this process's control group and its ancestors (cgroup
/// v2, then v1), if any ("max" and v1's huge sentinel parse as none).
fn control_group_limit() -> Option<u64> {
    let groups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let (root, own) = groups.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        match controllers {
            "" => Some(("/sys/fs/cgroup", path.to_string())),
            c if c.split(',').any(|c| c == "memory") => Some(("/sys/fs/cgroup/memory", path.to_string())),
            _ => None,
        }
    })?;
    let file = if root.ends_with("memory") { "memory.limit_in_bytes" } else { "memory.max" };
    std::path::Path::new(&own)
        .ancestors()
        .filter_map(|group| {
            let path = Path::new(root).join(group.strip_prefix("/").unwrap_or(group)).join(file);
            std::fs::read_to_string(path).ok()?.trim().parse::<u64>().ok()
        })
        .min()
}

/// Which runs of the plan this process trains.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Selection {
    /// Every run not done yet.
    #[default]
    All,
    /// The run at this index of the plan (from 0, as `radrun plan` lists them and as a
    /// Slurm array task is numbered).
    Index(usize),
    /// The run with this id.
    Id(String),
}

/// How to run a plan.
pub struct Runner<'a> {
    /// Folder holding one folder per recipe (default `runs`).
    pub runs_root: PathBuf,
    /// Retrain runs that are already done.
    pub force: bool,
    pub selection: Selection,
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

    /// Trains every selected run of the plan that is neither done nor claimed by a live
    /// process; fails when a run failed, and says so when a signal stopped training.
    pub fn run_plan(&mut self, plan: &Plan) -> Result<Tally, RadrunError> {
        crate::signals::install();
        let selected = select(plan, &self.selection)?;
        let mut tally = Tally::default();
        let mut datasets = Datasets::new(plan, &self.runs_root);
        let folder = self.recipe_folder(plan);
        self.reporter.report(&Event::PlanStarted { plan, folder: &folder });
        let total = plan.runs.len();
        let provenance = Provenance::of_plan(&plan.recipe_path)?;
        let mut files_now: HashMap<String, Vec<PathBuf>> = HashMap::new();
        // runs a signal kept from starting
        let mut left_out = false;
        for i in selected {
            if crate::signals::requested().is_some() {
                left_out = true;
                break;
            }
            let run = &plan.runs[i];
            let dir = self.run_dir(plan, run);
            let skip = |reporter: &mut dyn Reporter, reason: &str| {
                reporter.report(&Event::RunSkipped { index: i + 1, total, run, reason });
            };
            if !self.force && is_done(&dir) {
                check_unchanged(plan, run, &dir, &mut files_now)?;
                tally.skipped += 1;
                skip(&mut *self.reporter, "done; --force retrains it");
                continue;
            }
            let claim = match claim::claim(dir.path(), plan.stale_after) {
                Err(e) => {
                    // this run cannot be claimed now; the others may
                    let reason = format!("cannot claim it: {e}");
                    tracing::warn!("run {}: {reason}", run.id);
                    tally.failed += 1;
                    skip(&mut *self.reporter, &reason);
                    continue;
                }
                Ok(Claimed::Taken(owner)) => {
                    let reason = format!(
                        "claimed by process {} on {}, heartbeat {:.0} s ago",
                        owner.pid,
                        owner.host,
                        owner.heartbeat_age()
                    );
                    tally.skipped += 1;
                    skip(&mut *self.reporter, &reason);
                    continue;
                }
                Ok(Claimed::Ours(claim)) => claim,
            };
            // another process may have finished it between the look and the claim
            if !self.force && is_done(&dir) {
                tally.skipped += 1;
                skip(&mut *self.reporter, "done; --force retrains it");
                continue;
            }
            self.reporter.report(&Event::RunStarted { index: i + 1, total, run, folder: dir.path() });
            if let Some((owner, reason)) = &claim.took_over {
                let message = format!("took over the claim of process {} on {}: {reason}", owner.pid, owner.host);
                self.reporter.report(&Event::Note { run, message: &message });
            }
            let resume = if self.force { None } else { self.resume_point(run, &dir) };
            match resume {
                None => dir.clear()?,
                // temporary files of a process killed while writing
                Some(_) => dir.remove_partial_files()?,
            }
            let status = self.execute(plan, run, &dir, &mut datasets, provenance.clone(), resume, &claim)?;
            drop(claim);
            datasets.release_after(i);
            match status.state {
                State::Done => tally.done += 1,
                State::Interrupted => tally.interrupted += 1,
                State::Running | State::Failed => tally.failed += 1,
            }
            self.reporter.report(&Event::RunFinished { run, status: &status, folder: dir.path() });
            self.write_plan_summary(plan)?;
        }
        write_results(plan, &folder)?;
        self.reporter.report(&Event::PlanFinished { tally, folder: &folder });
        outcome(plan, &folder, tally, left_out)
    }

    /// The run's checkpoint when it can continue this run; a checkpoint that cannot
    /// be read or belongs to another run is reported and ignored.
    fn resume_point(&mut self, run: &PlannedRun, dir: &RunDir) -> Option<SavedCheckpoint> {
        let ignored = match dir.read_checkpoint() {
            Ok(None) => return None,
            Ok(Some(saved)) if saved.meta.run_id != run.id => format!("it was written by run {}", saved.meta.run_id),
            Ok(Some(saved)) => return Some(saved),
            Err(e) => format!("it cannot be read ({e})"),
        };
        let message = format!("its checkpoint is not used, {ignored}; training from scratch");
        tracing::warn!("run {}: {message}", run.id);
        self.reporter.report(&Event::Note { run, message: &message });
        None
    }

    fn write_plan_summary(&self, plan: &Plan) -> Result<(), WriteError> {
        write_plan_summary(&self.recipe_folder(plan), plan)
    }

    /// Trains (or resumes) and evaluates one run, recording the outcome in its status;
    /// only failures to write the run folder itself are errors here.
    #[allow(clippy::too_many_arguments)]
    fn execute(
        &mut self,
        plan: &Plan,
        run: &PlannedRun,
        dir: &RunDir,
        datasets: &mut Datasets,
        provenance: Provenance,
        resume: Option<SavedCheckpoint>,
        claim: &Claim,
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
        tracing::info!("run {} started by process {} on {}", run.id, std::process::id(), host_name());
        let started = Instant::now();
        let mut work = RunWork {
            run,
            dir,
            reporter: &mut *self.reporter,
            status: &mut status,
            resume,
            claim,
            checkpoint_every: plan.checkpoint_every,
            report: &plan.report,
        };
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| work.train_and_evaluate(datasets)));
        // stopped by the stop flag, not failed for another reason while a signal came
        let interrupted = matches!(
            &outcome,
            Ok(Err(e)) if matches!(e.downcast_ref::<radrun_train::Error>(), Some(radrun_train::Error::Interrupted { .. }))
        );
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
        status.finished = Some(jiff::Timestamp::now().to_string());
        status.seconds = Some(started.elapsed().as_secs_f64());
        let Some(_held) = claim.hold() else {
            // another process owns the folder now: write nothing more into it
            tracing::error!("run {}: the claim was taken over by another process; stopped", run.id);
            status.state = State::Failed;
            status.error = Some("the claim was taken over by another process (this one stalled too long)".into());
            self.log.set(None);
            return Ok(status);
        };
        match (&error, crate::signals::requested()) {
            (None, _) => status.state = State::Done,
            (Some(_), Some(signal)) if interrupted => {
                let stopped = dir.checkpoint_meta().map_or("before its first checkpoint".to_string(), |m| {
                    format!("after epoch {} (batch {})", m.progress.records.len(), m.progress.batches)
                });
                tracing::info!("run {} stopped by {}", run.id, crate::signals::name(signal));
                status.state = State::Interrupted;
                status.note = Some(format!(
                    "stopped by {} {stopped}; run the same command again to go on from its checkpoint",
                    crate::signals::name(signal)
                ));
            }
            (Some(e), _) => {
                // into train.log only: the terminal shows the error once, in the result line
                tracing::info!("run {} failed: {e}", run.id);
                status.state = State::Failed;
                status.error = error;
            }
        }
        dir.write_status(&status)?;
        if status.state == State::Done
            && let Err(e) = dir.remove_checkpoint()
        {
            // the results are written; a checkpoint left behind only takes space
            tracing::warn!("{e}: {}", e.source);
        }
        self.log.set(None);
        Ok(status)
    }
}

/// The runs of the plan that this process should train (in plan order), and the done
/// ones, counted as skipped (unless `force`), each checked against its files now.
pub(crate) fn select_pending(plan: &Plan, folder: &Path, force: bool) -> Result<(Vec<usize>, Tally), RadrunError> {
    let (mut pending, mut tally, mut files_now) = (Vec::new(), Tally::default(), HashMap::new());
    for (i, run) in plan.runs.iter().enumerate() {
        let dir = RunDir::new(folder.join(&run.id));
        if !force && is_done(&dir) {
            check_unchanged(plan, run, &dir, &mut files_now)?;
            tally.skipped += 1;
        } else {
            pending.push(i);
        }
    }
    Ok((pending, tally))
}

/// Rewrites the recipe folder's summary tables and report.html once its runs are over.
pub(crate) fn write_results(plan: &Plan, folder: &Path) -> Result<(), WriteError> {
    write_plan_summary(folder, plan)?;
    // the results are written; a report that cannot be made only says why
    match std::panic::catch_unwind(|| crate::report::write_report(folder)) {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!("report.html not written: {e}"),
        Err(_) => tracing::warn!("report.html not written: the report could not be drawn"),
    }
    Ok(())
}

/// What a plan's training ends with: interrupted when a signal stopped a run or kept
/// runs from starting (`left_out`), else failed when a run failed.
pub(crate) fn outcome(plan: &Plan, folder: &Path, tally: Tally, left_out: bool) -> Result<Tally, RadrunError> {
    // a signal that came while the last run was being evaluated stopped nothing
    if let Some(signal) = crate::signals::requested()
        && (tally.interrupted > 0 || left_out)
    {
        return Err(RadrunError::Interrupted { signal, summary: folder.join("summary.csv") });
    }
    if tally.failed > 0 {
        let total = plan.runs.len();
        return Err(RadrunError::RunsFailed { failed: tally.failed, total, summary: folder.join("summary.csv") });
    }
    Ok(tally)
}

/// Rewrites `summary.csv`, `aggregate.csv`, `summary.md` and `summary.tex` in a
/// recipe's runs `folder` from the status of every run of the plan, holding the
/// folder's lock so that processes finishing at once never lose a row.
pub fn write_plan_summary(folder: &Path, plan: &Plan) -> Result<(), WriteError> {
    let lock_path = folder.join(".summary.lock");
    let err = |source| WriteError { path: lock_path.clone(), source };
    std::fs::create_dir_all(folder).map_err(err)?;
    let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(err)?;
    lock.lock().map_err(err)?;
    let rows: Vec<(String, Vec<String>, Option<Status>)> = plan
        .runs
        .iter()
        .map(|run| {
            let values = run.swept.iter().map(|(_, v)| crate::plan::display_value(v)).collect();
            (run.id.clone(), values, RunDir::new(folder.join(&run.id)).status())
        })
        .collect();
    write_summary(&folder.join("summary.csv"), &plan.swept_keys, &rows)?;
    let record = serde_json::to_vec_pretty(&crate::report::PlanRecord::new(plan)).expect("plain data serializes");
    crate::run_dir::write_atomic(&folder.join("plan.json"), &record)?;
    let confidence = plan.runs.first().map_or(0.95, |r| r.settings.eval.confidence);
    crate::aggregate::write_aggregates(folder, &plan.recipe_name, &plan.swept_keys, &rows, confidence)
    // the lock is released when `lock` is closed
}

/// The indices of the plan's runs the selection names.
fn select(plan: &Plan, selection: &Selection) -> Result<Vec<usize>, RadrunError> {
    let ids = || plan.runs.iter().map(|r| r.id.as_str()).collect::<Vec<_>>().join(", ");
    match selection {
        Selection::All => Ok((0..plan.runs.len()).collect()),
        Selection::Index(i) if *i < plan.runs.len() => Ok(vec![*i]),
        Selection::Index(i) => Err(RadrunError::Selection(format!(
            "--index {i} is past the plan's last run: {} has {} run(s), numbered from 0 (see `radrun plan`)",
            plan.recipe_path.display(),
            plan.runs.len()
        ))),
        Selection::Id(id) => plan.runs.iter().position(|r| &r.id == id).map(|i| vec![i]).ok_or_else(|| {
            RadrunError::Selection(format!(
                "--run {id} is not a run of {} (with these --set flags); its runs are {}",
                plan.recipe_path.display(),
                ids()
            ))
        }),
    }
}

fn is_done(dir: &RunDir) -> bool {
    dir.status().is_some_and(|s| s.state == State::Done)
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
            note: None,
            device: None,
            radrun_version: env!("CARGO_PKG_VERSION").into(),
            libtorch_version: radrun_train::device::loaded_libtorch_version(),
            host: host_name(),
            pid: std::process::id(),
            slurm: crate::slurm::SlurmTask::current(),
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
    resume: Option<SavedCheckpoint>,
    claim: &'a Claim,
    checkpoint_every: std::time::Duration,
    report: &'a crate::recipe::ReportSection,
}

impl RunWork<'_> {
    /// Loads (or reuses) and splits the data, trains and evaluates. A dataset that
    /// cannot be used (an unreadable file, leakage) fails the run before training, like
    /// any other run error: the sweep goes on.
    fn train_and_evaluate(&mut self, datasets: &mut Datasets) -> Result<()> {
        let settings = &self.run.settings;
        let train = &settings.train;
        // a worker of `--jobs` gets its share of the cores, unless the recipe says
        let worker_threads = std::env::var(crate::jobs::THREADS_VARIABLE).ok().and_then(|v| v.parse::<i32>().ok());
        match (train.threads, worker_threads) {
            (1.., _) => tch::set_num_threads(train.threads as i32),
            (0, Some(threads)) => tch::set_num_threads(threads),
            (0, None) => {}
        }
        tch::manual_seed(train.seed as i64);
        let device = radrun_train::device::resolve(train.device)?;
        let device_name = radrun_train::device::describe(device);
        self.status.device = Some(device_name.clone());
        self.status.provenance.set_device(device);
        let (dataset, loaded) = datasets.get(self.run)?;
        if let Some(Loaded { seconds, source }) = &loaded {
            self.reporter.report(&Event::DataLoaded { summary: &dataset.summary, seconds: *seconds, source });
        }
        let dataset = &dataset;
        self.dir.write_data_summary(&dataset.summary)?;
        let files = provenance::file_records(dataset, &settings.data.root);
        let tables = provenance::table_hashes(&settings.data);
        let fingerprint = provenance::fingerprint(&files, tables);
        self.status.provenance.dataset = Some(fingerprint.clone());
        self.dir.write_split(&files, &dataset.classes, &provenance::group_salt(&settings.data.root)?)?;
        self.dir.write_status(self.status)?;

        let channels = settings.data.input_channels();
        let input = [channels as i64, dataset.height as i64, dataset.width as i64];
        let mut network = Network::build(&settings.model, input, dataset.classes.len() as i64, device)?;
        if let ModelSettings::Transfer(transfer) = &settings.model {
            crate::weights::load_pretrained(&mut network, transfer)?;
        }
        // checked before training: a misspelt layer must not cost a training run
        let cam_layer = (dataset.task == Task::Classification && self.report.gallery > 0)
            .then(|| radrun_train::gradcam::cam_layer(&network, &self.report.gradcam_layer, "report.gradcam_layer"))
            .transpose()?;
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
        let checkpoint = self.checkpoint_for(&network, &fingerprint)?;
        let write_failed = AtomicBool::new(false);
        let claim = self.claim;
        let stop = || crate::signals::requested().is_some() || claim.lost() || write_failed.load(Ordering::SeqCst);
        let config = FitConfig {
            settings: train,
            model: &settings.model,
            augment,
            channels,
            device,
            class_weights,
            stop: &stop,
            checkpoint_every: self.checkpoint_every,
        };
        let mut folder = FolderObserver {
            dir: self.dir,
            run_id: &self.run.id,
            dataset: serde_json::to_string(&fingerprint).expect("plain data serializes"),
            claim,
            total_epochs: train.total_epochs(),
            records: checkpoint.as_ref().map(|c| c.progress.records.clone()).unwrap_or_default(),
            failed: None,
            write_failed: &write_failed,
        };
        let mut progress = ReporterObserver {
            run: self.run,
            reporter: &mut *self.reporter,
            total_epochs: train.total_epochs(),
            started: Instant::now(),
        };
        let fitted =
            radrun_train::fit(&mut network, dataset, &config, &mut Both(&mut folder, &mut progress), checkpoint);
        if let Some(error) = folder.failed {
            return Err(error.into());
        }
        let outcome = fitted?;
        let taken = || anyhow::anyhow!("another process took the run over; this one stopped");
        let held = claim.hold().ok_or_else(taken)?;
        self.keep_weights(&mut network, &outcome)?;
        drop(held);
        let predictor =
            Predictor { networks: &[&network], dataset, batch_size: train.batch_size as usize, channels, device };
        let evaluation = evaluate::evaluate(&predictor, &settings.eval)?;
        let _held = claim.hold().ok_or_else(taken)?;
        self.dir.write_evaluation(&evaluation)?;
        if let (Some(layer), evaluate::Evaluation::Classification(e)) = (&cam_layer, &evaluation) {
            let cam = Cam { network: &network, dataset, layer, batch_size: train.batch_size as usize, channels };
            // the run is trained and evaluated: a gallery that cannot be made only says why
            let made = std::panic::catch_unwind(AssertUnwindSafe(|| {
                crate::gallery::write_gallery(self.dir.path(), &cam, &e.truth, &e.probabilities, self.report.gallery)
            }));
            match made {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!("run {}: gallery not written: {e}", self.run.id),
                Err(_) => tracing::warn!("run {}: gallery not written: Grad-CAM failed", self.run.id),
            }
        }
        self.status.test = evaluation.headline();
        self.status.test_intervals = evaluation.headline_intervals();
        Ok(())
    }

    /// The checkpoint to go on from, if the run has one that fits this dataset and
    /// network; otherwise says why it is not used (and training starts from scratch).
    fn checkpoint_for(
        &mut self,
        network: &Network,
        fingerprint: &DatasetFingerprint,
    ) -> Result<Option<Checkpoint>, WriteError> {
        let Some(SavedCheckpoint { meta, tensors }) = self.resume.take() else { return Ok(None) };
        let dataset = serde_json::to_string(fingerprint).expect("plain data serializes");
        let checkpoint = Checkpoint { progress: meta.progress, tensors };
        let why = if meta.dataset.as_deref() != Some(dataset.as_str()) {
            Some("the dataset's files changed since it was written".to_string())
        } else {
            checkpoint.mismatch(network).map(|m| format!("it does not fit the network: {m}"))
        };
        let message = match &why {
            Some(why) => format!("its checkpoint is not used, {why}; training from scratch"),
            None => {
                let p = &checkpoint.progress;
                format!("resumed from its checkpoint after epoch {} (batch {} of the next)", p.records.len(), p.batches)
            }
        };
        tracing::info!("{message}");
        self.reporter.report(&Event::Note { run: self.run, message: &message });
        self.status.note = Some(message);
        if why.is_some() {
            // nothing of the attempt it belonged to may mix with this one
            self.dir.remove_checkpoint()?;
            self.dir.remove_metrics()?;
            return Ok(None);
        }
        Ok(Some(checkpoint))
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
        // JSON has no NaN: a metric that is not finite is left out
        .filter_map(|(k, v)| v.filter(|v| v.is_finite()).map(|v| (k.to_string(), v)))
        .collect();
        Ok(())
    }
}

/// Writes the run folder as training goes: metrics.csv and the checkpoint after every
/// epoch, and the phase and epoch lines into train.log.
struct FolderObserver<'a> {
    dir: &'a RunDir,
    run_id: &'a str,
    /// The dataset's fingerprint as JSON, kept in checkpoints.
    dataset: String,
    claim: &'a Claim,
    total_epochs: u32,
    records: Vec<EpochRecord>,
    /// The first write that failed: training stops, and the run fails with it.
    failed: Option<WriteError>,
    write_failed: &'a AtomicBool,
}

impl FolderObserver<'_> {
    fn record_failure(&mut self, result: Result<(), WriteError>) {
        if let Err(e) = result
            && self.failed.is_none()
        {
            self.failed = Some(e);
            self.write_failed.store(true, Ordering::SeqCst);
        }
    }
}

impl Observer for FolderObserver<'_> {
    fn phase_started(&mut self, phase: &Phase, trainable_parameters: i64) {
        tracing::info!("{}", phase_line(phase, trainable_parameters));
    }

    fn epoch_finished(&mut self, record: &EpochRecord) {
        tracing::info!("{}", epoch_line(record, self.total_epochs));
        self.records.push(record.clone());
        if let Some(_held) = self.claim.hold() {
            let written = self.dir.write_metrics(&self.records);
            self.record_failure(written);
        }
    }

    fn stopped_early(&mut self, phase: &Phase, epoch: u32, metric: Metric, best: Option<f64>) {
        tracing::info!("{}", early_stopping_line(phase, epoch, metric, best));
    }

    fn checkpoint(&mut self, checkpoint: &Checkpoint) {
        if self.failed.is_some() {
            return;
        }
        let Some(_held) = self.claim.hold() else { return };
        let meta = CheckpointMeta {
            run_id: self.run_id.to_string(),
            dataset: Some(self.dataset.clone()),
            written: jiff::Timestamp::now().to_string(),
            progress: checkpoint.progress.clone(),
        };
        let started = Instant::now();
        let written = self.dir.write_checkpoint(&meta, &checkpoint.tensors);
        if written.is_ok() {
            let bytes: usize = checkpoint.tensors.iter().map(|(_, t)| t.numel() * t.kind().elt_size_in_bytes()).sum();
            tracing::info!(
                "checkpoint after epoch {} (batch {}): {:.1} MB in {:.2} s",
                meta.progress.records.len(),
                meta.progress.batches,
                bytes as f64 / 1e6,
                started.elapsed().as_secs_f64()
            );
        }
        self.record_failure(written);
        self.claim.set_progress(format!(
            "epoch {} of {}{}",
            meta.progress.records.len(),
            self.total_epochs,
            if meta.progress.batches > 0 { format!(", batch {}", meta.progress.batches) } else { String::new() }
        ));
    }
}

fn early_stopping_line(phase: &Phase, epoch: u32, metric: Metric, best: Option<f64>) -> String {
    let best = best.map_or("none finite".to_string(), |b| format!("best {b:.6}"));
    format!("early stopping: phase \"{}\" ends after epoch {epoch} ({} {best})", phase.name, metric.name())
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

    fn stopped_early(&mut self, phase: &Phase, epoch: u32, metric: Metric, best: Option<f64>) {
        let message = early_stopping_line(phase, epoch, metric, best);
        self.reporter.report(&Event::Note { run: self.run, message: &message });
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

    fn stopped_early(&mut self, phase: &Phase, epoch: u32, metric: Metric, best: Option<f64>) {
        self.0.stopped_early(phase, epoch, metric, best);
        self.1.stopped_early(phase, epoch, metric, best);
    }

    fn checkpoint(&mut self, checkpoint: &Checkpoint) {
        self.0.checkpoint(checkpoint);
        self.1.checkpoint(checkpoint);
    }
}
