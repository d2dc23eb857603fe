//! What a person (or a script) sees while radrun works. The run loop emits [`Event`]s;
//! a [`Reporter`] renders them: progress bars on a terminal, one line per epoch
//! otherwise, only results with `--quiet`, JSON lines on stdout with `--json`.

use std::io::{IsTerminal, Write};
use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};
use radrun_data::paths::path_text;
use radrun_data::{DataSummary, ImagesSource};
use radrun_metrics::EpochRecord;
use radrun_settings::ModelSummary;
use radrun_settings::Phase;
use serde_json::json;

use crate::recipe::plan::{Plan, PlannedRun, display_value};
use crate::run::Tally;
use crate::store::{State, Status};

/// Something that happened while running a plan.
pub enum Event<'a> {
    /// The plan is about to run, its folders under `folder`.
    PlanStarted {
        plan: &'a Plan,
        folder: &'a Path,
    },
    /// A dataset was decoded, or read from its image cache.
    DataLoaded {
        summary: &'a DataSummary,
        seconds: f64,
        source: &'a ImagesSource,
    },
    /// Run `index` (from 1) of `total` starts in `folder`.
    RunStarted {
        index: usize,
        total: usize,
        run: &'a PlannedRun,
        folder: &'a Path,
    },
    /// Run `index` is not trained now, and why.
    RunSkipped {
        index: usize,
        total: usize,
        run: &'a PlannedRun,
        reason: &'a str,
    },
    /// The run's network is built on `device`.
    ModelBuilt {
        device: &'a str,
        summary: &'a ModelSummary,
    },
    PhaseStarted {
        run: &'a PlannedRun,
        phase: &'a Phase,
        trainable_parameters: i64,
    },
    EpochStarted {
        epoch: u32,
        total_epochs: u32,
        batches: usize,
    },
    /// Running means of the epoch so far, every few batches.
    BatchProgress {
        batches_done: usize,
        loss: f64,
        accuracy: f64,
        images_per_second: f64,
    },
    EpochFinished {
        run: &'a PlannedRun,
        record: &'a EpochRecord,
        total_epochs: u32,
        elapsed_seconds: f64,
    },
    /// Something about a run a person should know: it resumed from a checkpoint, or its
    /// checkpoint could not be used, or early stopping ended a phase.
    Note {
        run: &'a PlannedRun,
        message: &'a str,
    },
    RunFinished {
        run: &'a PlannedRun,
        status: &'a Status,
        folder: &'a Path,
    },
    PlanFinished {
        tally: Tally,
        folder: &'a Path,
    },
    /// Worker processes are about to train `runs` of the plan's runs, up to `jobs` at a
    /// time, on the GPUs `gpus` (none: on the CPU), each with `threads` CPU threads.
    PoolStarted {
        plan: &'a Plan,
        runs: usize,
        jobs: usize,
        gpus: &'a [usize],
        threads: usize,
    },
    /// Worker process `pid` started to train `run`, on GPU `gpu` if any.
    WorkerStarted {
        run: &'a PlannedRun,
        pid: u32,
        gpu: Option<usize>,
    },
    /// `run`'s worker could not start, ended before the run started, or left no status:
    /// the run counts as failed, for `reason`.
    WorkerFailed {
        run: &'a PlannedRun,
        reason: &'a str,
    },
    /// `run` ran out of GPU memory next to other runs: it runs again alone once they are done.
    RetryAlone {
        run: &'a PlannedRun,
    },
    /// An epoch of `run`, trained by a worker process (with `--json` the pool passes the
    /// worker's own line on instead).
    WorkerEpoch {
        run: &'a PlannedRun,
        record: &'a EpochRecord,
        total_epochs: u32,
    },
}

/// Renders events.
pub trait Reporter {
    fn report(&mut self, event: &Event);
}

/// The reporter for the command-line flags: JSON, quiet, bars on a terminal, else lines.
pub fn for_flags(quiet: bool, json: bool) -> Box<dyn Reporter> {
    if json {
        Box::new(JsonLines)
    } else if quiet {
        Box::new(Quiet)
    } else if std::io::stderr().is_terminal() {
        Box::new(Bars { bar: None })
    } else {
        Box::new(Lines)
    }
}

/// One line per epoch on stderr (a log file, a pipe).
pub struct Lines;

/// [`Lines`], plus a progress bar over each epoch's batches.
pub struct Bars {
    bar: Option<ProgressBar>,
}

/// Only the results of each run and of the plan, notes, and runs whose worker failed.
pub struct Quiet;

/// One JSON object per line on stdout, for scripts and clusters.
pub struct JsonLines;

/// The text of an epoch's line (also written to train.log).
pub fn epoch_line(r: &EpochRecord, total: u32) -> String {
    let mut line = format!(
        "epoch {:>3}/{total} [{}] loss {:.4} acc {:.4} | val loss {:.4} acc {:.4}",
        r.epoch, r.phase, r.train_loss, r.train_accuracy, r.val_loss, r.val_accuracy
    );
    if let (Some(d), Some(i)) = (r.val_dice, r.val_iou) {
        line.push_str(&format!(" dice {d:.4} iou {i:.4}"));
    }
    line.push_str(&format!(" | {:.1} s, {:.0} img/s", r.seconds, r.images_per_second));
    if r.data_wait_seconds > 0.1 * r.seconds {
        // the device waited for decoding or augmentation: say so where the user looks
        line.push_str(&format!(", {:.1} s waiting for data", r.data_wait_seconds));
    }
    line
}

/// The text of a phase's first line (also written to train.log).
pub fn phase_line(phase: &Phase, trainable: i64) -> String {
    format!(
        "phase \"{}\": {} epoch(s), {}, learning rate {}, {trainable} trainable parameters",
        phase.name,
        phase.epochs,
        phase.optimizer.name(),
        phase.learning_rate,
    )
}

fn result_line(run: &PlannedRun, status: &Status) -> String {
    match status.state {
        State::Done => {
            let metrics: Vec<String> = status.test.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
            format!("  {}: done, test {}", run.id, metrics.join(", "))
        }
        State::Interrupted => format!("  {}: interrupted: {}", run.id, status.note.as_deref().unwrap_or("")),
        State::Failed | State::Running => {
            format!("  {}: FAILED: {}", run.id, status.error.as_deref().unwrap_or("unknown error"))
        }
    }
}

fn finished_line(tally: Tally, folder: &Path) -> String {
    let interrupted =
        if tally.interrupted > 0 { format!(", {} interrupted", tally.interrupted) } else { String::new() };
    format!(
        "\n{} done, {} skipped, {} failed{interrupted}. Results: {} (summary.csv ranks the runs)",
        tally.done,
        tally.skipped,
        tally.failed,
        path_text(folder)
    )
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
}

impl Reporter for Lines {
    fn report(&mut self, event: &Event) {
        match event {
            Event::DataLoaded { summary, seconds, source } => eprintln!("{summary}  ({source} in {seconds:.1} s)"),
            Event::RunStarted { index, total, run, .. } => {
                let swept: Vec<String> = run.swept.iter().map(|(k, v)| format!("{k} = {}", display_value(v))).collect();
                let swept = if swept.is_empty() { String::new() } else { format!(" ({})", swept.join(", ")) };
                eprintln!("\nrun {index}/{total} {}{swept}", run.id);
            }
            Event::ModelBuilt { device, summary } => eprintln!("  device: {device}\n{}", indent(&summary.to_string())),
            Event::PhaseStarted { phase, trainable_parameters, .. } => {
                eprintln!("  {}", phase_line(phase, *trainable_parameters));
            }
            Event::EpochFinished { record, total_epochs, .. } => eprintln!("  {}", epoch_line(record, *total_epochs)),
            Event::EpochStarted { .. } | Event::BatchProgress { .. } => {}
            Event::PoolStarted { plan, runs, jobs, gpus, threads } => {
                let gpus = match gpus.len() {
                    0 => String::new(),
                    n => format!(" on {n} GPU(s)"),
                };
                eprintln!(
                    "{runs} run(s) of {} to train, up to {jobs} at a time{gpus}, {threads} CPU thread(s) each",
                    path_text(&plan.recipe_path)
                );
            }
            Event::WorkerStarted { run, pid, gpu } => {
                let place = gpu.map_or(String::new(), |g| format!(" on GPU {g}"));
                eprintln!("{}: started (worker {pid}{place})", run.id);
            }
            Event::RetryAlone { run } => {
                eprintln!("  {}: out of GPU memory next to other runs; it will run again alone", run.id);
            }
            Event::WorkerEpoch { run, record, total_epochs } => {
                eprintln!("  {}: {}", run.id, epoch_line(record, *total_epochs));
            }
            Event::PlanStarted { .. }
            | Event::RunSkipped { .. }
            | Event::Note { .. }
            | Event::RunFinished { .. }
            | Event::PlanFinished { .. }
            | Event::WorkerFailed { .. } => Quiet.report(event),
        }
    }
}

impl Reporter for Bars {
    fn report(&mut self, event: &Event) {
        match event {
            Event::EpochStarted { epoch, total_epochs, batches } => {
                let bar = ProgressBar::new(*batches as u64);
                bar.set_style(
                    ProgressStyle::with_template("  epoch {prefix} [{bar:28.cyan/blue}] {pos}/{len} {msg}")
                        .expect("valid template")
                        .progress_chars("=> "),
                );
                bar.set_prefix(format!("{epoch:>3}/{total_epochs}"));
                self.bar = Some(bar);
            }
            Event::BatchProgress { batches_done, loss, accuracy, images_per_second } => {
                if let Some(bar) = &self.bar {
                    bar.set_message(format!("loss {loss:.4} acc {accuracy:.4} {images_per_second:.0} img/s"));
                    bar.set_position(*batches_done as u64);
                }
            }
            _ => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
                Lines.report(event);
            }
        }
    }
}

impl Reporter for Quiet {
    fn report(&mut self, event: &Event) {
        match event {
            Event::PlanStarted { plan, folder } => {
                eprintln!("{}: {} run(s) -> {}", path_text(&plan.recipe_path), plan.runs.len(), path_text(folder));
            }
            Event::RunSkipped { index, total, run, reason } => {
                eprintln!("run {index}/{total} {}: skipped ({reason})", run.id);
            }
            Event::RunFinished { run, status, .. } => eprintln!("{}", result_line(run, status)),
            Event::PlanFinished { tally, folder } => eprintln!("{}", finished_line(*tally, folder)),
            Event::Note { run, message } => eprintln!("  {}: {message}", run.id),
            Event::WorkerFailed { run, reason } => eprintln!("  {}: FAILED: {reason}", run.id),
            _ => {}
        }
    }
}

/// Prints one JSON line on stdout.
fn emit(value: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

impl Reporter for JsonLines {
    fn report(&mut self, event: &Event) {
        match event {
            Event::RunStarted { index, total, run, folder } => {
                emit(json!({
                    "event": "run_started", "run": run.id, "index": index, "runs": total, "folder": path_text(folder),
                }));
            }
            Event::RunSkipped { run, reason, .. } => {
                emit(json!({"event": "run_skipped", "run": run.id, "reason": reason}));
            }
            Event::PhaseStarted { run, phase, trainable_parameters } => emit(json!({
                "event": "phase", "run": run.id, "phase": phase.name, "epochs": phase.epochs,
                "trainable_parameters": trainable_parameters,
            })),
            Event::EpochFinished { run, record, elapsed_seconds, total_epochs } => {
                let mut value = serde_json::to_value(record).expect("record serializes");
                value["event"] = json!("epoch");
                value["run"] = json!(run.id);
                value["epochs"] = json!(total_epochs);
                value["elapsed_seconds"] = json!(elapsed_seconds);
                emit(value);
            }
            Event::Note { run, message } => emit(json!({"event": "note", "run": run.id, "message": message})),
            Event::RunFinished { run, status, folder } => emit(json!({
                "event": "run_finished", "run": run.id, "state": status.state, "error": status.error,
                "note": status.note,
                "validation": status.validation, "test": status.test, "folder": path_text(folder),
            })),
            Event::PlanFinished { tally, folder } => emit(json!({
                "event": "finished", "done": tally.done, "skipped": tally.skipped, "failed": tally.failed,
                "interrupted": tally.interrupted,
                "summary": path_text(&folder.join("summary.csv")),
            })),
            Event::PoolStarted { .. }
            | Event::WorkerStarted { .. }
            | Event::WorkerFailed { .. }
            | Event::RetryAlone { .. } => emit_pool(event),
            // the pool prints each worker's own JSON lines, its epochs included
            Event::WorkerEpoch { .. } => {}
            Event::PlanStarted { .. }
            | Event::DataLoaded { .. }
            | Event::ModelBuilt { .. }
            | Event::EpochStarted { .. }
            | Event::BatchProgress { .. } => {}
        }
    }
}

/// The JSON line of a worker pool's event (see [`JsonLines`]); other events are left out.
fn emit_pool(event: &Event) {
    match event {
        Event::PoolStarted { plan, runs, jobs, gpus, threads } => emit(json!({
            "event": "pool_started", "recipe": path_text(&plan.recipe_path), "runs": runs, "jobs": jobs, "gpus": gpus,
            "threads": threads,
        })),
        Event::WorkerStarted { run, pid, gpu } => {
            emit(json!({"event": "worker_started", "run": run.id, "pid": pid, "gpu": gpu}));
        }
        Event::WorkerFailed { run, reason } => emit(json!({"event": "worker_failed", "run": run.id, "error": reason})),
        Event::RetryAlone { run } => emit(json!({
            "event": "retry_alone", "run": run.id, "reason": "out of GPU memory next to other runs",
        })),
        _ => {}
    }
}
