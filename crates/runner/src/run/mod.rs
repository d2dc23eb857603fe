//! Running a plan: one folder per run under `runs/<recipe>/<run id>/`, the resolved recipe
//! and a status record written before training, done runs skipped on a rerun, a failed
//! run recorded with its error while the sweep goes on, and summary.csv rewritten after
//! every run. A run folder is self-contained: another process or machine can read its
//! `recipe.toml` and `status.json` and pick it up.
//!
//! Here, what needs no libtorch: which runs a process trains (selection, done runs
//! checked against their files), the plan's tables written after each run, how a plan's
//! training ends, and the folder's `datasets` (decoded once per `[data]`), `reporter`
//! (what a person or a script sees), `signals`, `log` and `mlflow` (the runs sent to an
//! MLflow tracking server). Training each run (its work
//! and the observers watching it) is the `radrun` crate's `run` module, on libtorch.
//!
//! May import: `recipe`, `store`, `report` (written once the runs are over), `error`;
//! nothing of `cluster` or `commands`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub mod datasets;
pub mod log;
pub mod mlflow;
pub mod reporter;
pub mod signals;

use crate::error::RadrunError;
use crate::recipe::plan::{DatasetError, Plan, PlannedRun};
use crate::store::provenance;
use crate::store::{RunDir, State, Status, WriteError, write_summary};

/// The environment variable that gives a worker its libtorch CPU threads (a recipe's
/// `train.threads` above 0 wins).
pub const THREADS_VARIABLE: &str = "RADRUN_WORKER_THREADS";
/// How many workers train at once (each then keeps less of a dataset in memory: see
/// `data.cache`).
pub const WORKERS_VARIABLE: &str = "RADRUN_WORKERS";

/// Counts of what happened.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub done: usize,
    pub skipped: usize,
    pub failed: usize,
    /// Stopped by a signal, with a checkpoint to go on from.
    pub interrupted: usize,
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

/// The runs of the plan that this process should train (in plan order), and the done
/// ones, counted as skipped (unless `force`), each checked against its files now.
pub fn select_pending(plan: &Plan, folder: &Path, force: bool) -> Result<(Vec<usize>, Tally), RadrunError> {
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

/// Rewrites the recipe folder's summary tables, methods and report.html once its runs
/// are over.
pub fn write_results(plan: &Plan, folder: &Path) -> Result<(), WriteError> {
    write_plan_summary(folder, plan)?;
    // methods are written from finished 2D runs: none yet is no error
    match std::panic::catch_unwind(|| crate::report::write_methods(folder)) {
        Ok(Ok(_) | Err(crate::report::ReportError::Unreadable { .. })) => {}
        Ok(Err(e)) => tracing::warn!("methods.md not written: {e}"),
        Err(_) => tracing::warn!("methods.md not written: the methods could not be drafted"),
    }
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
pub fn outcome(plan: &Plan, folder: &Path, tally: Tally, left_out: bool) -> Result<Tally, RadrunError> {
    // a signal that came while the last run was being evaluated stopped nothing
    if let Some(signal) = signals::requested()
        && (tally.interrupted > 0 || left_out)
    {
        let name = signals::name(signal);
        return Err(RadrunError::Interrupted { signal, name, summary: folder.join("summary.csv") });
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
            let values = run.swept.iter().map(|(_, v)| crate::recipe::plan::display_value(v)).collect();
            (run.id.clone(), values, RunDir::new(folder.join(&run.id)).status())
        })
        .collect();
    write_summary(&folder.join("summary.csv"), &plan.swept_keys, &rows)?;
    let record = serde_json::to_vec_pretty(&crate::report::PlanRecord::new(plan)).expect("plain data serializes");
    crate::store::write_atomic(&folder.join("plan.json"), &record)?;
    let confidence = plan.runs.first().map_or(0.95, |r| r.settings.eval.confidence);
    crate::store::aggregate::write_aggregates(folder, &plan.recipe_name, &plan.swept_keys, &rows, confidence)
    // the lock is released when `lock` is closed
}

/// The indices of the plan's runs the selection names.
pub fn select(plan: &Plan, selection: &Selection) -> Result<Vec<usize>, RadrunError> {
    let ids = || plan.runs.iter().map(|r| r.id.as_str()).collect::<Vec<_>>().join(", ");
    match selection {
        Selection::All => Ok((0..plan.runs.len()).collect()),
        Selection::Index(i) if *i < plan.runs.len() => Ok(vec![*i]),
        Selection::Index(i) => Err(RadrunError::Selection(format!(
            "--index {i} is past the plan's last run: {} has {} run(s), numbered from 0 (see `radrun plan`)",
            radrun_data::paths::path_text(&plan.recipe_path),
            plan.runs.len()
        ))),
        Selection::Id(id) => plan.runs.iter().position(|r| &r.id == id).map(|i| vec![i]).ok_or_else(|| {
            RadrunError::Selection(format!(
                "--run {id} is not a run of {} (with these --set flags); its runs are {}",
                radrun_data::paths::path_text(&plan.recipe_path),
                ids()
            ))
        }),
    }
}

pub fn is_done(dir: &RunDir) -> bool {
    dir.status().is_some_and(|s| s.state == State::Done)
}

/// A done run is kept only while the files it read are unchanged: results of an old
/// and a new dataset must not be mixed in one recipe's tables. `files_now` caches the
/// files found per `[data]`.
pub fn check_unchanged(
    plan: &Plan,
    run: &PlannedRun,
    dir: &RunDir,
    files_now: &mut HashMap<String, Vec<PathBuf>>,
) -> Result<(), RadrunError> {
    let key = run.data_key();
    if !files_now.contains_key(&key) {
        let data = &run.settings.data;
        let files = if data.dims == 3 {
            radrun_data::volume_cases::discover_volumes(data).and_then(|layout| layout.files())
        } else {
            radrun_data::discover(data).map(|layout| layout.files().into_iter().map(Path::to_path_buf).collect())
        };
        let files = files.map_err(|source| DatasetError { recipe: plan.recipe_path.clone(), source })?;
        files_now.insert(key.clone(), files);
    }
    let files: Vec<&Path> = files_now[&key].iter().map(PathBuf::as_path).collect();
    match provenance::DatasetChanges::of_run(dir.path(), &run.settings.data, &files) {
        Some(changes) if !changes.is_empty() => {
            Err(RadrunError::DatasetChanged { run: dir.path().to_path_buf(), changes: changes.describe() })
        }
        _ => Ok(()),
    }
}
