//! Training a plan's runs in this process: each selected run claimed, resumed from its
//! checkpoint or started afresh, trained and evaluated (`work`, volumes in `volumes`,
//! watched by `observers`),
//! and its outcome recorded in its status; the plan's tables rewritten after every run.
//! What does not need libtorch (selecting runs, the tables, the reporter, signals) is
//! the runner's `run` folder.

use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub mod observers;
mod volume_classes;
pub mod volumes;
pub mod work;

use radrun_runner::error::RadrunError;
use radrun_runner::recipe::plan::{Plan, PlannedRun};
use radrun_runner::run::datasets::Datasets;
use radrun_runner::run::log::RunLog;
use radrun_runner::run::mlflow::Tracker;
use radrun_runner::run::reporter::{Event, Reporter};
use radrun_runner::run::{
    Selection, Tally, check_unchanged, is_done, outcome, select, signals, write_plan_summary, write_results,
};
use radrun_runner::store::claim::{self, Claim, Claimed};
use radrun_runner::store::provenance::Provenance;
use radrun_runner::store::{RunDir, State, Status, WriteError, host_name};
use work::RunWork;

use crate::checkpoint::SavedCheckpoint;

/// How to run a plan.
pub struct Runner<'a> {
    /// Folder holding one folder per recipe (default `runs`).
    pub runs_root: PathBuf,
    /// Retrain runs that are already done.
    pub force: bool,
    pub selection: Selection,
    pub reporter: &'a mut dyn Reporter,
    pub log: RunLog,
    /// The MLflow tracker while a plan with `[track] mlflow` runs.
    pub mlflow: Option<Tracker>,
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
        signals::install();
        let selected = select(plan, &self.selection)?;
        let mut tally = Tally::default();
        let mut datasets = Datasets::new(plan, &self.runs_root);
        let folder = self.recipe_folder(plan);
        let target = plan.mlflow_target().map_err(|message| {
            radrun_runner::commands::usage_error(&plan.recipe_path, format!("`track.mlflow` {message}"))
        })?;
        self.mlflow = target.map(|(uri, experiment)| Tracker::start(uri, experiment, MLFLOW_GRACE));
        // the run folders this process trains: it sends them once more at the end
        let mut trained = Vec::new();
        self.reporter.report(&Event::PlanStarted { plan, folder: &folder });
        let provenance = Provenance::of_plan(&plan.recipe_path)
            .map_err(|source| RadrunError::Unreadable { path: plan.recipe_path.clone(), source })?;
        let mut files_now: HashMap<String, Vec<PathBuf>> = HashMap::new();
        // runs a signal kept from starting
        let mut left_out = false;
        for i in selected {
            if signals::requested().is_some() {
                left_out = true;
                break;
            }
            let Some(claim) = self.claim_run(plan, i, &mut tally, &mut files_now)? else { continue };
            let run = &plan.runs[i];
            let dir = self.run_dir(plan, run);
            self.reporter.report(&Event::RunStarted { index: i + 1, total: plan.runs.len(), run, folder: dir.path() });
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
            trained.push(dir.path().to_path_buf());
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
        if let Some(tracker) = self.mlflow.take() {
            finish_tracking(tracker, &trained, &folder);
        }
        self.reporter.report(&Event::PlanFinished { tally, folder: &folder });
        outcome(plan, &folder, tally, left_out)
    }

    /// The claim of run `i` when this process should train it; otherwise the run is
    /// counted (done, or claimed by a live process: skipped; not claimable: failed) and
    /// reported as skipped. A done run is checked against the files now.
    fn claim_run(
        &mut self,
        plan: &Plan,
        i: usize,
        tally: &mut Tally,
        files_now: &mut HashMap<String, Vec<PathBuf>>,
    ) -> Result<Option<Claim>, RadrunError> {
        let run = &plan.runs[i];
        let dir = self.run_dir(plan, run);
        let total = plan.runs.len();
        let mut skip = |counter: &mut usize, reason: &str| {
            *counter += 1;
            self.reporter.report(&Event::RunSkipped { index: i + 1, total, run, reason });
        };
        if !self.force && is_done(&dir) {
            check_unchanged(plan, run, &dir, files_now)?;
            skip(&mut tally.skipped, "done; --force retrains it");
            return Ok(None);
        }
        let claim = match claim::claim(dir.path(), plan.stale_after) {
            Err(e) => {
                // this run cannot be claimed now; the others may
                let reason = format!("cannot claim it: {e}");
                tracing::warn!("run {}: {reason}", run.id);
                skip(&mut tally.failed, &reason);
                return Ok(None);
            }
            Ok(Claimed::Taken(owner)) => {
                let reason = format!(
                    "claimed by process {} on {}, heartbeat {:.0} s ago",
                    owner.pid,
                    owner.host,
                    owner.heartbeat_age()
                );
                skip(&mut tally.skipped, &reason);
                return Ok(None);
            }
            Ok(Claimed::Ours(claim)) => claim,
        };
        // another process may have finished it between the look and the claim
        if !self.force && is_done(&dir) {
            skip(&mut tally.skipped, "done; --force retrains it");
            return Ok(None);
        }
        Ok(Some(*claim))
    }

    /// The run's checkpoint when it can continue this run; a checkpoint that cannot
    /// be read, is damaged (its checksum does not match) or belongs to another run is
    /// reported and ignored: the run starts from scratch, never from such bytes.
    fn resume_point(&mut self, run: &PlannedRun, dir: &RunDir) -> Option<SavedCheckpoint> {
        let ignored = match crate::checkpoint::read(dir) {
            Ok(None) => return None,
            Ok(Some(saved)) if saved.meta.run_id != run.id => format!("it was written by run {}", saved.meta.run_id),
            Ok(Some(saved)) => return Some(saved),
            Err(why) => why,
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
        let mut status = started(plan, run, provenance);
        let header = format!(
            "# Resolved recipe of run {} (from {}), every default written out.\n# `radrun run` on this file reproduces the run.\n\n",
            run.id,
            radrun_data::paths::path_text(&plan.recipe_path)
        );
        let body = toml::to_string(&run.settings).expect("settings serialize as TOML");
        dir.write_recipe(&format!("{header}{body}"))?;
        dir.write_status(&status)?;
        if let Some(tracker) = &self.mlflow {
            let resumed_epochs = resume.as_ref().map_or(0, |r| r.meta.progress.records.len());
            if let Err(e) = tracker.track(dir.path(), resumed_epochs) {
                tracing::warn!("run {}: not tracked by MLflow: {e}", run.id);
            }
        }
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
            track: &plan.track,
            mlflow: self.mlflow.as_ref(),
        };
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            if run.settings.data.dims == 3 {
                work.train_and_evaluate_volumes(datasets)
            } else {
                work.train_and_evaluate(datasets)
            }
        }));
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
        record_outcome(&mut status, run, dir, outcome);
        if plan.track.tensorboard && status.state == State::Done {
            let step = status.evaluated_epoch.unwrap_or(0);
            if let Err(e) = radrun_runner::store::tensorboard::write_results(dir.path(), step, &status.test) {
                tracing::warn!("run {}: test results not written for TensorBoard: {e}: {}", run.id, e.source);
            }
        }
        dir.write_status(&status)?;
        if let Some(tracker) = &self.mlflow {
            tracker.send(dir.path());
        }
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

/// How long radrun goes on sending to MLflow after the last run, while the server does not
/// answer, before it leaves the rest to `radrun track sync`.
const MLFLOW_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Sends the runs this process trained once more (the report is written now), waits for
/// the tracker, and says what it could not send and how to send it later.
fn finish_tracking(tracker: Tracker, trained: &[PathBuf], folder: &Path) {
    for dir in trained {
        tracker.send(dir);
    }
    for (dir, error) in tracker.finish() {
        tracing::warn!(
            "MLflow has not all of {} ({error}); `radrun track sync {}` sends the rest once the server answers",
            radrun_data::paths::path_text(&dir),
            radrun_data::paths::path_text(folder)
        );
    }
}

/// Puts how a run's work ended into its status: done, interrupted by a signal (where
/// its last checkpoint is), or failed with its error (a panic's message included).
fn record_outcome(
    status: &mut Status,
    run: &PlannedRun,
    dir: &RunDir,
    outcome: std::thread::Result<anyhow::Result<()>>,
) {
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
    match (&error, signals::requested()) {
        (None, _) => status.state = State::Done,
        (Some(_), Some(signal)) if interrupted => {
            let stopped = dir.checkpoint_meta().map_or("before its first checkpoint".to_string(), |m| {
                format!("after epoch {} (batch {})", m.progress.records.len(), m.progress.batches)
            });
            tracing::info!("run {} stopped by {}", run.id, signals::name(signal));
            status.state = State::Interrupted;
            status.note = Some(format!(
                "stopped by {} {stopped}; run the same command again to go on from its checkpoint",
                signals::name(signal)
            ));
        }
        (Some(e), _) => {
            // into train.log only: the terminal shows the error once, in the result line
            tracing::info!("run {} failed: {e}", run.id);
            status.state = State::Failed;
            status.error = error;
        }
    }
}

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
        slurm: radrun_runner::store::SlurmTask::current(),
        evaluated_epoch: None,
        validation: BTreeMap::new(),
        test: BTreeMap::new(),
        test_intervals: BTreeMap::new(),
        provenance,
    }
}
