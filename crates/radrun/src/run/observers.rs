//! The observers of one run's training: the run folder's (metrics.csv and checkpoints
//! as training goes, train.log), the trackers' (`[track]`: TensorBoard's event file, the
//! MLflow tracker) and the reporter's (events for the terminal or JSON).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use radrun_metrics::EpochRecord;
use radrun_settings::Phase;
use radrun_settings::controls::Metric;
use radrun_train::{Checkpoint, Observer};

use radrun_runner::recipe::plan::PlannedRun;
use radrun_runner::run::mlflow::Tracker;
use radrun_runner::run::reporter::{Event, Reporter, epoch_line, phase_line};
use radrun_runner::store::claim::Claim;
use radrun_runner::store::tensorboard::EventFile;
use radrun_runner::store::{CheckpointMeta, RunDir, WriteError};

/// Writes the run folder as training goes: metrics.csv and the checkpoint after every
/// epoch, and the phase and epoch lines into train.log.
pub struct FolderObserver<'a> {
    pub dir: &'a RunDir,
    pub run_id: &'a str,
    /// The dataset's fingerprint as JSON, kept in checkpoints.
    pub dataset: String,
    pub claim: &'a Claim,
    pub total_epochs: u32,
    pub records: Vec<EpochRecord>,
    /// The first write that failed: training stops, and the run fails with it.
    pub failed: Option<WriteError>,
    pub write_failed: &'a AtomicBool,
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
        let written = crate::checkpoint::write(self.dir, &meta, &checkpoint.tensors);
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

/// The run's trackers, after each epoch: its scalars into the TensorBoard event file
/// (`train/loss`, `train/accuracy`, `val/loss`, `val/accuracy`, `val/dice` and `val/iou`
/// for segmentation, `learning_rate` and `images_per_second`, at the epoch as step), and
/// the run folder to the MLflow tracker, which sends the new epoch of metrics.csv on its
/// own thread. A write that fails ends TensorBoard's events with a warning: a tracker is
/// a view of the run, never a reason for it to fail (metrics.csv holds the numbers).
pub struct TrackingObserver<'a> {
    events: Option<EventFile>,
    mlflow: Option<&'a Tracker>,
    dir: &'a RunDir,
    run_id: String,
}

impl<'a> TrackingObserver<'a> {
    /// An event file for the epochs from `first_epoch` on with `tensorboard`; `mlflow`,
    /// the tracker of the recipe's MLflow server.
    pub fn open(
        tensorboard: bool,
        mlflow: Option<&'a Tracker>,
        dir: &'a RunDir,
        run_id: &str,
        first_epoch: u32,
    ) -> Self {
        let events = tensorboard.then(|| EventFile::create(dir.path(), Some(first_epoch))).and_then(|opened| {
            opened.map_err(|e| tracing::warn!("run {run_id}: no TensorBoard events: {e}: {}", e.source)).ok()
        });
        Self { events, mlflow, dir, run_id: run_id.to_string() }
    }
}

impl Observer for TrackingObserver<'_> {
    fn epoch_finished(&mut self, r: &EpochRecord) {
        if let Some(tracker) = self.mlflow {
            tracker.send(self.dir.path());
        }
        let Some(events) = &mut self.events else { return };
        let named = [
            ("train/loss", Some(r.train_loss)),
            ("train/accuracy", Some(r.train_accuracy)),
            ("val/loss", Some(r.val_loss)),
            ("val/accuracy", Some(r.val_accuracy)),
            ("val/dice", r.val_dice),
            ("val/iou", r.val_iou),
            ("learning_rate", Some(r.learning_rate)),
            ("images_per_second", Some(r.images_per_second)),
        ];
        let values: Vec<(String, f64)> =
            named.into_iter().filter_map(|(tag, value)| Some((tag.to_string(), value?))).collect();
        if let Err(e) = events.scalars(r.epoch, &values) {
            tracing::warn!("run {}: TensorBoard events stop here: {e}: {}", self.run_id, e.source);
            self.events = None;
        }
    }
}

/// Turns training progress into reporter events.
pub struct ReporterObserver<'a> {
    pub run: &'a PlannedRun,
    pub reporter: &'a mut dyn Reporter,
    pub total_epochs: u32,
    pub started: Instant,
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
pub struct Both<'a, 'b>(pub &'a mut dyn Observer, pub &'b mut dyn Observer);

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
