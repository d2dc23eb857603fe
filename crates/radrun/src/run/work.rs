//! One run's work: its data split, network built (pretrained weights loaded), training
//! watched by the run folder's and the reporter's observers, weights kept, test set
//! evaluated and gallery drawn. A failure here fails the run, not the sweep.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::Result;
use radrun_data::subgroups::{Levels, read_levels};
use radrun_data::{Dataset, Task};
use radrun_metrics::evaluate;
use radrun_metrics::subgroups::score_subgroups;
use radrun_models::Network;
use radrun_settings::weights_file::Checked;
use radrun_settings::{Keep, ModelSettings};
use radrun_train::fit::TrainingData;
use radrun_train::predict::Predictor;
use radrun_train::{Checkpoint, FitConfig};

use crate::gallery::Cam;
use radrun_runner::recipe::plan::PlannedRun;
use radrun_runner::run::datasets::{Datasets, Loaded};
use radrun_runner::run::reporter::{Event, Reporter};
use radrun_runner::run::{THREADS_VARIABLE, signals};
use radrun_runner::store::claim::Claim;
use radrun_runner::store::provenance::{self, DatasetFingerprint, Provenance};
use radrun_runner::store::{RunDir, Status, WeightsFile, WriteError};

use super::observers::{Both, FolderObserver, ReporterObserver, TrackingObserver};
use crate::checkpoint::{self, SavedCheckpoint};

/// One run being trained: what it reads and where it reports.
pub struct RunWork<'a> {
    pub run: &'a PlannedRun,
    pub dir: &'a RunDir,
    pub reporter: &'a mut dyn Reporter,
    pub status: &'a mut Status,
    pub resume: Option<SavedCheckpoint>,
    pub claim: &'a Claim,
    pub checkpoint_every: std::time::Duration,
    pub report: &'a radrun_runner::recipe::ReportSection,
    pub track: &'a radrun_runner::recipe::TrackSection,
    /// The tracker of the recipe's MLflow server.
    pub mlflow: Option<&'a radrun_runner::run::mlflow::Tracker>,
}

impl RunWork<'_> {
    /// Loads (or reuses) and splits the data, trains and evaluates. A dataset that
    /// cannot be used (an unreadable file, leakage) fails the run before training, like
    /// any other run error: the sweep goes on.
    pub fn train_and_evaluate(&mut self, datasets: &mut Datasets) -> Result<()> {
        let device = self.choose_device()?;
        let (dataset, fingerprint) = self.load_data(datasets)?;
        let settings = &self.run.settings;
        // read before training: an unreadable subgroup must not cost a training run
        let levels = read_levels(&settings.eval.subgroups, &dataset.test.paths(), &settings.data)?;
        let (mut network, cam_layer) = self.build_network(&dataset, device)?;
        let class_weights = match dataset.task {
            Task::Classification => settings
                .train
                .class_weights
                .resolve(&dataset.classes, &dataset.train.class_counts(dataset.classes.len()))?,
            Task::Segmentation | Task::Multilabel => None,
        };
        let outcome = self.fit(&mut network, &dataset, class_weights, device, &fingerprint)?;
        let held = self.claim.hold().ok_or_else(taken_over)?;
        self.keep_weights(&mut network, &outcome)?;
        drop(held);
        self.evaluate(&network, &dataset, device, cam_layer.as_deref(), &levels)
    }

    /// Sets libtorch's threads and seed, and resolves `train.device`.
    pub(super) fn choose_device(&mut self) -> Result<tch::Device> {
        let train = &self.run.settings.train;
        // a worker of `--jobs` gets its share of the cores, unless the recipe says
        let worker_threads = std::env::var(THREADS_VARIABLE).ok().and_then(|v| v.parse::<i32>().ok());
        match (train.threads, worker_threads) {
            (1.., _) => tch::set_num_threads(train.threads as i32),
            (0, Some(threads)) => tch::set_num_threads(threads),
            (0, None) => {}
        }
        tch::manual_seed(train.seed as i64);
        let device = radrun_train::device::resolve(train.device)?;
        self.status.device = Some(radrun_train::device::describe(device));
        record_gpu_software(&mut self.status.provenance, device);
        Ok(device)
    }

    /// The run's split dataset and its fingerprint, with data_summary.json, split.csv
    /// and the fingerprint in status.json written.
    fn load_data(&mut self, datasets: &mut Datasets) -> Result<(Dataset, DatasetFingerprint)> {
        let settings = &self.run.settings;
        let (dataset, loaded) = datasets.get(self.run)?;
        if let Some(Loaded { seconds, source }) = &loaded {
            self.reporter.report(&Event::DataLoaded { summary: &dataset.summary, seconds: *seconds, source });
        }
        self.dir.write_data_summary(&dataset.summary)?;
        let files = provenance::file_records(&dataset, &settings.data.root);
        let tables = provenance::table_hashes(&settings.data);
        let fingerprint = provenance::fingerprint(&files, tables);
        self.status.provenance.dataset = Some(fingerprint.clone());
        self.dir.write_split(&files, &dataset.classes, &provenance::group_salt(&settings.data.root)?)?;
        self.dir.write_status(self.status)?;
        Ok((dataset, fingerprint))
    }

    /// The network (pretrained weights loaded) and the Grad-CAM layer of the gallery,
    /// checked before training: a misspelt layer must not cost a training run.
    fn build_network(&mut self, dataset: &Dataset, device: tch::Device) -> Result<(Network, Option<String>)> {
        let settings = &self.run.settings;
        let input = [settings.data.input_channels() as i64, dataset.height as i64, dataset.width as i64];
        let mut network = Network::build(&settings.model, input, dataset.classes.len() as i64, device)?;
        if let ModelSettings::Transfer(transfer) = &settings.model {
            crate::imagenet::load_pretrained(&mut network, transfer)?;
        }
        let cam_layer = (dataset.task == Task::Classification && self.report.gallery > 0)
            .then(|| radrun_train::gradcam::cam_layer(&network, &self.report.gradcam_layer, "report.gradcam_layer"))
            .transpose()?;
        self.model_built(&network)?;
        Ok((network, cam_layer))
    }

    /// Writes the network's summary and tells the reporter it is built.
    pub(super) fn model_built(&mut self, network: &Network) -> Result<(), WriteError> {
        let summary = network.summary();
        self.dir.write_model_summary(&summary)?;
        tracing::info!("\n{summary}");
        let device_name = self.status.device.as_deref().unwrap_or_default();
        self.reporter.report(&Event::ModelBuilt { device: device_name, summary: &summary });
        Ok(())
    }

    /// Trains the network through the recipe's phases (from the checkpoint when one
    /// fits), the run folder and the reporter watching.
    pub(super) fn fit(
        &mut self,
        network: &mut Network,
        data: &dyn TrainingData,
        class_weights: Option<Vec<f64>>,
        device: tch::Device,
        fingerprint: &DatasetFingerprint,
    ) -> Result<radrun_train::FitOutcome> {
        let settings = &self.run.settings;
        let train = &settings.train;
        let checkpoint = self.checkpoint_for(network, fingerprint)?;
        let write_failed = AtomicBool::new(false);
        let claim = self.claim;
        let stop = || signals::requested().is_some() || claim.lost() || write_failed.load(Ordering::SeqCst);
        let config = FitConfig {
            settings: train,
            model: &settings.model,
            augment: settings.augment.enabled.then(|| settings.augment.clone()),
            channels: settings.data.input_channels(),
            device,
            class_weights,
            stop: &stop,
            checkpoint_every: self.checkpoint_every,
        };
        let mut folder = FolderObserver {
            dir: self.dir,
            run_id: &self.run.id,
            dataset: serde_json::to_string(fingerprint).expect("plain data serializes"),
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
        let first_epoch = folder.records.len() as u32 + 1;
        let mut trackers =
            TrackingObserver::open(self.track.tensorboard, self.mlflow, self.dir, &self.run.id, first_epoch);
        let mut watchers = Both(&mut folder, &mut progress);
        let fitted = radrun_train::fit(network, data, &config, &mut Both(&mut watchers, &mut trackers), checkpoint);
        if let Some(error) = folder.failed {
            return Err(error.into());
        }
        Ok(fitted?)
    }

    /// Evaluates the kept weights on the test set, writes the evaluation files and the
    /// gallery, and puts the headline results in the status.
    fn evaluate(
        &mut self,
        network: &Network,
        dataset: &Dataset,
        device: tch::Device,
        cam_layer: Option<&str>,
        levels: &[Levels],
    ) -> Result<()> {
        let settings = &self.run.settings;
        let batch_size = settings.train.batch_size as usize;
        let channels = settings.data.input_channels();
        let predictor = Predictor { networks: &[network], dataset, batch_size, channels, device };
        let evaluation = evaluate::evaluate(&predictor, &settings.eval, None)?;
        let _held = self.claim.hold().ok_or_else(taken_over)?;
        self.dir.write_evaluation(&evaluation)?;
        write_subgroups(self.dir, &evaluation, &dataset.test.groups(), levels, &settings.eval)?;
        if let (Some(layer), evaluate::Evaluation::Classification(e)) = (cam_layer, &evaluation) {
            let cam = Cam { network, dataset, layer, batch_size, channels };
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
        let Some(SavedCheckpoint { meta, tensors, checked }) = self.resume.take() else { return Ok(None) };
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
                let unchecked = match checked {
                    Checked::Verified => "",
                    Checked::Unchecked => "; it has no checksum (an older radrun wrote it), so it was not checked",
                };
                format!(
                    "resumed from its checkpoint after epoch {} (batch {} of the next){unchecked}",
                    p.records.len(),
                    p.batches
                )
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
    pub(super) fn keep_weights(&mut self, network: &mut Network, outcome: &radrun_train::FitOutcome) -> Result<()> {
        checkpoint::write_weights(self.dir, WeightsFile::Last, network)?;
        let last_epoch = outcome.epochs.last().map_or(0, |r| r.epoch);
        outcome.best.restore(network);
        checkpoint::write_weights(self.dir, WeightsFile::Best, network)?;
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

/// subgroups.csv of a test evaluation, when `eval.subgroups` names any (`levels` of the
/// test images or cases, whose patients are `groups`).
pub(crate) fn write_subgroups(
    dir: &RunDir,
    evaluation: &evaluate::Evaluation,
    groups: &[Option<&str>],
    levels: &[Levels],
    eval: &evaluate::EvalSettings,
) -> Result<(), WriteError> {
    if levels.is_empty() {
        return Ok(());
    }
    dir.write_subgroups(&score_subgroups(evaluation, groups, levels, eval))
}

/// The error of a run whose claim another process took over while it trained.
pub(super) fn taken_over() -> anyhow::Error {
    anyhow::anyhow!("another process took the run over; this one stopped")
}

/// Records the GPU software of `device` in the run's provenance.
fn record_gpu_software(provenance: &mut Provenance, device: tch::Device) {
    if device.is_cuda() {
        let version = |v: i64| format!("{}.{}", v / 1000, (v % 1000) / 10);
        provenance.cuda_version = Some(version(tch::utils::version_cudart()));
        provenance.cudnn_version = Some(tch::utils::version_cudnn().to_string());
    }
}
