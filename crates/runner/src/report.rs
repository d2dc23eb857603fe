//! What a person (or a script) sees while radrun works: progress bars on a terminal,
//! one line per epoch otherwise, nothing but results with `--quiet`, JSON lines with
//! `--json`; and the `tracing` log written into each run's folder.

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use radrun_train::{EpochRecord, Observer, PhaseSettings};
use serde_json::json;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Progress bars (a terminal).
    Bars,
    /// One line per epoch (a log file, a pipe).
    Lines,
    /// Only warnings and the final results.
    Quiet,
    /// One JSON object per line on stdout, for scripts and clusters.
    Json,
}

impl Mode {
    pub fn choose(quiet: bool, json: bool) -> Self {
        if json {
            Mode::Json
        } else if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Bars
        } else {
            Mode::Lines
        }
    }
}

/// Prints one JSON line on stdout.
pub fn emit(value: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

/// Called after each epoch with all records so far (the runner writes metrics.csv).
pub type EpochSink = Box<dyn FnMut(&[EpochRecord])>;

/// Progress of one run's training, shown according to the mode.
pub struct Progress {
    mode: Mode,
    run_id: String,
    total_epochs: u32,
    bar: Option<ProgressBar>,
    started: Instant,
    /// Called after each epoch with all records so far (writes metrics.csv).
    on_epoch: EpochSink,
    records: Vec<EpochRecord>,
}

impl Progress {
    pub fn new(mode: Mode, run_id: &str, total_epochs: u32, on_epoch: EpochSink) -> Self {
        Self {
            mode,
            run_id: run_id.to_string(),
            total_epochs,
            bar: None,
            started: Instant::now(),
            on_epoch,
            records: Vec::new(),
        }
    }
}

fn epoch_line(r: &EpochRecord, total: u32) -> String {
    let mut line = format!(
        "epoch {:>3}/{total} [{}] loss {:.4} acc {:.4} | val loss {:.4} acc {:.4}",
        r.epoch, r.phase, r.train_loss, r.train_accuracy, r.val_loss, r.val_accuracy
    );
    if let (Some(d), Some(i)) = (r.val_dice, r.val_iou) {
        line.push_str(&format!(" dice {d:.4} iou {i:.4}"));
    }
    line.push_str(&format!(" | {:.1} s, {:.0} img/s", r.seconds, r.images_per_second));
    line
}

impl Observer for Progress {
    fn phase_started(&mut self, phase: &PhaseSettings, trainable: i64) {
        let text = format!(
            "phase \"{}\": {} epoch(s), {}, learning rate {}, {trainable} trainable parameters",
            phase.name,
            phase.epochs,
            format!("{:?}", phase.optimizer).to_lowercase(),
            phase.learning_rate.value(phase.optimizer),
        );
        tracing::info!("{text}");
        match self.mode {
            Mode::Bars | Mode::Lines => eprintln!("  {text}"),
            Mode::Json => emit(
                json!({"event": "phase", "run": self.run_id, "phase": phase.name, "epochs": phase.epochs, "trainable_parameters": trainable}),
            ),
            Mode::Quiet => {}
        }
    }

    fn epoch_started(&mut self, epoch: u32, batches: usize) {
        if self.mode == Mode::Bars {
            let bar = ProgressBar::new(batches as u64);
            bar.set_style(
                ProgressStyle::with_template("  epoch {prefix} [{bar:28.cyan/blue}] {pos}/{len} {msg}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(format!("{epoch:>3}/{}", self.total_epochs));
            self.bar = Some(bar);
        }
    }

    fn batch_finished(&mut self, batches: usize, loss: f64, accuracy: f64, rate: f64) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("loss {loss:.4} acc {accuracy:.4} {rate:.0} img/s"));
            bar.set_position(batches as u64);
        }
    }

    fn epoch_finished(&mut self, record: &EpochRecord) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        let line = epoch_line(record, self.total_epochs);
        tracing::info!("{line}");
        match self.mode {
            Mode::Bars | Mode::Lines => eprintln!("  {line}"),
            Mode::Json => {
                let mut value = serde_json::to_value(record).expect("record serializes");
                value["event"] = json!("epoch");
                value["run"] = json!(self.run_id);
                value["elapsed_seconds"] = json!(self.started.elapsed().as_secs_f64());
                emit(value);
            }
            Mode::Quiet => {}
        }
        self.records.push(record.clone());
        (self.on_epoch)(&self.records);
    }
}

/// The per-run log file the `tracing` subscriber writes to (none between runs).
#[derive(Clone, Default)]
pub struct RunLog(Arc<Mutex<Option<File>>>);

impl RunLog {
    /// Sends the log to `path` (appending), or nowhere with `None`.
    pub fn set(&self, path: Option<&Path>) {
        let file = path.and_then(|p| std::fs::OpenOptions::new().create(true).append(true).open(p).ok());
        *self.0.lock().expect("log lock") = file;
    }
}

/// Writer handed to tracing: the current run's log file, if any.
pub struct RunLogWriter(Arc<Mutex<Option<File>>>);

impl Write for RunLogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.0.lock().expect("log lock").as_mut() {
            Some(f) => f.write(buf),
            None => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self.0.lock().expect("log lock").as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl<'a> MakeWriter<'a> for RunLog {
    type Writer = RunLogWriter;
    fn make_writer(&'a self) -> RunLogWriter {
        RunLogWriter(self.0.clone())
    }
}

/// Installs logging: warnings on stderr (`RADRUN_LOG` overrides, e.g. `RADRUN_LOG=debug`),
/// everything from `info` into the current run's `train.log`.
pub fn init_logging() -> RunLog {
    let log = RunLog::default();
    let stderr_filter = EnvFilter::try_from_env("RADRUN_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .with_filter(stderr_filter);
    let file = tracing_subscriber::fmt::layer()
        .with_writer(log.clone())
        .with_ansi(false)
        .with_target(false)
        .with_filter(EnvFilter::new("info,dicom=warn"));
    let _ = tracing_subscriber::registry().with(stderr).with(file).try_init();
    log
}
