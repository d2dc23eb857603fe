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

use anyhow::{Context, Result};
use radrun_data::{Dataset, Task};
use radrun_models::{ModelSettings, Network};
use radrun_train::predict::Predictor;
use radrun_train::{FitConfig, Keep};
use serde_json::json;

use crate::evaluate;
use crate::outputs::{State, Status, host_name, write_atomic, write_metrics, write_summary};
use crate::plan::{Plan, PlannedRun, display_value};
use crate::report::{Mode, Progress, RunLog, emit};

/// How to run a plan.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Folder holding one folder per recipe (default `runs`).
    pub runs_root: PathBuf,
    /// Retrain runs that are already done.
    pub force: bool,
    pub mode: Mode,
}

/// Counts of what happened.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub done: usize,
    pub skipped: usize,
    pub failed: usize,
}

/// Datasets loaded in this process, shared by the runs whose `[data]` is the same.
#[derive(Default)]
struct Cache(HashMap<String, Arc<Dataset>>);

impl Cache {
    fn get(&mut self, settings: &radrun_data::DataSettings, mode: Mode) -> Result<Arc<Dataset>> {
        let key = serde_json::to_string(settings).expect("settings serialize");
        if let Some(d) = self.0.get(&key) {
            return Ok(d.clone());
        }
        let started = Instant::now();
        let dataset = Arc::new(radrun_data::load(settings)?);
        if matches!(mode, Mode::Bars | Mode::Lines) {
            eprintln!("{}  (loaded in {:.1} s)", dataset.summary, started.elapsed().as_secs_f64());
        }
        self.0.insert(key, dataset.clone());
        Ok(dataset)
    }
}

fn run_dir(options: &RunOptions, plan: &Plan, run: &PlannedRun) -> PathBuf {
    options.runs_root.join(&plan.recipe_name).join(&run.id)
}

fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Why a run is not trained now, if it is not.
fn skip_reason(dir: &Path, force: bool) -> Option<String> {
    let status = Status::read(&dir.join("status.json"))?;
    match status.state {
        State::Done if !force => Some("done".into()),
        State::Running
            if status.host == host_name() && status.pid != std::process::id() && process_alive(status.pid) =>
        {
            Some(format!("being trained by process {} on this machine", status.pid))
        }
        _ => None,
    }
}

/// Trains every run of the plan that is not done yet.
pub fn run_plan(plan: &Plan, options: &RunOptions, log: &RunLog) -> Result<Tally> {
    let mut tally = Tally::default();
    let mut cache = Cache::default();
    let total = plan.runs.len();
    for (index, run) in plan.runs.iter().enumerate() {
        let dir = run_dir(options, plan, run);
        if let Some(reason) = skip_reason(&dir, options.force) {
            tally.skipped += 1;
            match options.mode {
                Mode::Json => emit(json!({"event": "run_skipped", "run": run.id, "reason": reason})),
                _ => eprintln!("run {}/{total} {}: skipped ({reason}; --force retrains it)", index + 1, run.id),
            }
            continue;
        }
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("cannot clear the old run folder {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create the run folder {}", dir.display()))?;
        let swept: Vec<String> = run.swept.iter().map(|(k, v)| format!("{k} = {}", display_value(v))).collect();
        match options.mode {
            Mode::Json => {
                emit(json!({"event": "run_started", "run": run.id, "index": index + 1, "runs": total, "folder": dir}))
            }
            Mode::Quiet => {}
            _ => eprintln!(
                "\nrun {}/{total} {}{}",
                index + 1,
                run.id,
                if swept.is_empty() { String::new() } else { format!(" ({})", swept.join(", ")) }
            ),
        }
        let status = execute(plan, run, &dir, &mut cache, options.mode, log)?;
        match status.state {
            State::Done => tally.done += 1,
            _ => tally.failed += 1,
        }
        match options.mode {
            Mode::Json => emit(json!({
                "event": "run_finished", "run": run.id, "state": status.state, "error": status.error,
                "validation": status.validation, "test": status.test, "folder": dir,
            })),
            _ => eprintln!("{}", result_line(&run.id, &status)),
        }
        write_plan_summary(plan, options)?;
    }
    write_plan_summary(plan, options)?;
    Ok(tally)
}

fn result_line(id: &str, status: &Status) -> String {
    match status.state {
        State::Done => {
            let metrics: Vec<String> = status.test.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
            format!("  {id}: done, test {}", metrics.join(", "))
        }
        _ => format!("  {id}: FAILED: {}", status.error.as_deref().unwrap_or("unknown error")),
    }
}

/// Rewrites `runs/<recipe>/summary.csv` from the status of every run of the plan.
pub fn write_plan_summary(plan: &Plan, options: &RunOptions) -> Result<()> {
    let rows: Vec<(String, Vec<String>, Option<Status>)> = plan
        .runs
        .iter()
        .map(|run| {
            let status = Status::read(&run_dir(options, plan, run).join("status.json"));
            (run.id.clone(), run.swept.iter().map(|(_, v)| display_value(v)).collect(), status)
        })
        .collect();
    let path = options.runs_root.join(&plan.recipe_name).join("summary.csv");
    write_summary(&path, &plan.swept_keys, &rows)?;
    Ok(())
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

/// Trains and evaluates one run, recording the outcome in its status; only failures to
/// write the status itself are errors here.
fn execute(plan: &Plan, run: &PlannedRun, dir: &Path, cache: &mut Cache, mode: Mode, log: &RunLog) -> Result<Status> {
    let mut status = Status {
        state: State::Running,
        run_id: run.id.clone(),
        recipe_file: plan.recipe_path.canonicalize().unwrap_or_else(|_| plan.recipe_path.clone()),
        started: now(),
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
    };
    let header = format!(
        "# Resolved recipe of run {} (from {}), every default written out.\n# `radrun run` on this file reproduces the run.\n\n",
        run.id,
        plan.recipe_path.display()
    );
    let body = toml::to_string(&run.recipe).context("cannot write the resolved recipe")?;
    write_atomic(&dir.join("recipe.toml"), format!("{header}{body}").as_bytes())?;
    status.write(&dir.join("status.json"))?;
    log.set(Some(&dir.join("train.log")));
    tracing::info!("run {} started", run.id);
    let started = Instant::now();
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| train_and_evaluate(run, dir, cache, mode, &mut status)));
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
    status.state = if error.is_some() { State::Failed } else { State::Done };
    if let Some(e) = &error {
        tracing::error!("run {} failed: {e}", run.id);
    }
    status.error = error;
    status.finished = Some(now());
    status.seconds = Some(started.elapsed().as_secs_f64());
    status.write(&dir.join("status.json"))?;
    log.set(None);
    Ok(status)
}

fn train_and_evaluate(run: &PlannedRun, dir: &Path, cache: &mut Cache, mode: Mode, status: &mut Status) -> Result<()> {
    let recipe = &run.recipe;
    let train = &recipe.train;
    if train.threads > 0 {
        tch::set_num_threads(train.threads as i32);
    }
    tch::manual_seed(train.seed as i64);
    let device = radrun_train::device::resolve(train.device)?;
    status.device = Some(radrun_train::device::describe(device));
    let dataset = cache.get(&recipe.data, mode)?;
    write_atomic(&dir.join("data_summary.txt"), dataset.summary.to_string().as_bytes())?;
    write_atomic(&dir.join("data_summary.json"), &serde_json::to_vec_pretty(&dataset.summary)?)?;

    let channels = recipe.data.channels as usize;
    let input = [channels as i64, dataset.height as i64, dataset.width as i64];
    let mut network = Network::build(&recipe.model, input, dataset.classes.len() as i64, device)?;
    if let ModelSettings::Transfer(transfer) = &recipe.model {
        crate::weights::load_pretrained(&mut network, transfer)?;
    }
    let summary = network.summary();
    write_atomic(&dir.join("model_summary.txt"), summary.to_string().as_bytes())?;
    tracing::info!("\n{summary}");
    if matches!(mode, Mode::Bars | Mode::Lines) {
        eprintln!("  device: {}\n{}", status.device.as_deref().unwrap_or("?"), indent(&summary.to_string()));
    }

    let counts: Vec<usize> = {
        let mut c = vec![0; dataset.classes.len()];
        for label in dataset.train.class_labels() {
            c[label] += 1;
        }
        c
    };
    let class_weights = match dataset.task {
        Task::Classification => train.class_weights.resolve(&dataset.classes, &counts)?,
        Task::Segmentation => None,
    };
    let augment = recipe.augment.enabled.then(|| recipe.augment.clone());
    let config = FitConfig { settings: train, model: &recipe.model, augment, channels, device, class_weights };
    let metrics_path = dir.join("metrics.csv");
    let total_epochs: u32 = train.phases().iter().map(|p| p.epochs).sum();
    let mut progress = Progress::new(
        mode,
        &run.id,
        total_epochs,
        Box::new(move |records| {
            if let Err(e) = write_metrics(&metrics_path, records) {
                tracing::error!("{e}");
            }
        }),
    );
    let outcome = radrun_train::fit(&mut network, &dataset, &config, &mut progress)?;

    network.save(&dir.join("last.safetensors"))?;
    let last_epoch = outcome.epochs.last().map_or(0, |r| r.epoch);
    outcome.best.restore(&network);
    network.save(&dir.join("best.safetensors"))?;
    let evaluated = match train.keep {
        Keep::BestValidationLoss => outcome.best.epoch,
        Keep::Last => {
            network.load(&dir.join("last.safetensors"))?;
            last_epoch
        }
    };
    status.evaluated_epoch = Some(evaluated);
    let record = outcome.epochs.iter().find(|r| r.epoch == evaluated).expect("evaluated epoch was trained");
    status.validation = [
        ("val_loss", Some(record.val_loss)),
        ("val_accuracy", Some(record.val_accuracy)),
        ("val_dice", record.val_dice),
        ("val_iou", record.val_iou),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
    .collect();
    let predictor = Predictor { network: &network, dataset: &dataset, batch_size: train.batch(), channels, device };
    status.test = match dataset.task {
        Task::Classification => evaluate::classification(&predictor, dir)?,
        Task::Segmentation => evaluate::segmentation(&predictor, dir)?,
    };
    Ok(())
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
}
