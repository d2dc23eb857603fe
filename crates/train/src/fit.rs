//! The training loop: phases of epochs over a dataset's batches, each phase with its own
//! optimizer, trainable layers and learning-rate schedule; validation after each epoch;
//! the best weights (lowest finite validation loss) kept in memory; early stopping.
//! Progress goes to an [`Observer`]: this crate prints and writes nothing.
//!
//! Training can stop and continue with the same results. At the end of every epoch, every
//! `checkpoint_every` within one, and when the caller's stop flag is raised (after the
//! current batch), the loop hands the observer a [`Checkpoint`]: weights, optimizer moments, the best snapshot and every
//! counter ([`Progress`]). [`fit`] given that checkpoint goes on from there. Randomness
//! needs no saved state: the data order and augmentation are drawn from (seed, epoch,
//! image), and libtorch's generator (dropout) is seeded again before every batch from
//! (seed, epoch, batch), so a resumed run draws what an uninterrupted one would have.

use std::collections::HashMap;
use std::time::Instant;

use radrun_data::SettingError;
use radrun_data::volume_store::{PatchBatch, StoredCase};
use radrun_data::{
    AugmentSettings, Batch, BatchOptions, BatchTargets, Batches, Dataset, Split, Task, epoch_batches_with,
};
use radrun_metrics::{EpochRecord, dice_iou};
use radrun_models::Network;
use radrun_settings::controls::{Metric, Mode, Patience, Schedule, Scope};
use radrun_settings::{ModelSettings, deep_supervision_weights};
use radrun_settings::{Phase, Precision, TrainSettings, Trainable};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Reduction, Tensor};

use crate::Error;
use crate::loss::{SegmentationLoss, cross_entropy, predicted_labels};
use crate::optim::{Optimizer, OptimizerConfig, OptimizerState};
use crate::precision::{self, Autocast, GradScaler};
use crate::sliding_window::{SlidingWindow, infer};

/// Receives progress; the runner turns it into progress bars, logs and files.
pub trait Observer {
    fn phase_started(&mut self, _phase: &Phase, _trainable_parameters: i64) {}
    fn epoch_started(&mut self, _epoch: u32, _batches: usize) {}
    /// Every few training batches and after the last, with the batches done and the
    /// running means of the epoch so far.
    fn batch_finished(
        &mut self,
        _batches_done: usize,
        _running_loss: f64,
        _running_accuracy: f64,
        _images_per_second: f64,
    ) {
    }
    fn epoch_finished(&mut self, _record: &EpochRecord) {}
    /// Early stopping ended a phase (or, by `scope = "run"`, the training) after `epoch`.
    fn stopped_early(&mut self, _phase: &Phase, _epoch: u32, _metric: Metric, _best: Option<f64>) {}
    /// Everything needed to go on from here: after every epoch, and once more when the
    /// stop flag ended training in the middle of one.
    fn checkpoint(&mut self, _checkpoint: &Checkpoint) {}
}

/// Variable values at one moment.
pub struct Snapshot {
    pub epoch: u32,
    pub val_loss: f64,
    tensors: Vec<(String, Tensor)>,
}

impl Snapshot {
    fn take(network: &Network, epoch: u32, val_loss: f64) -> Self {
        let tensors = tch::no_grad(|| network.vs.variables().into_iter().map(|(n, t)| (n, t.copy())).collect());
        Self { epoch, val_loss, tensors }
    }

    /// Copies these values back into the network.
    pub fn restore(&self, network: &Network) {
        copy_into(network, self.tensors.iter().map(|(n, t)| (n.as_str(), t)));
    }
}

/// Copies named values into the network's variables of those names.
fn copy_into<'t>(network: &Network, values: impl Iterator<Item = (&'t str, &'t Tensor)>) {
    let vars = network.vs.variables();
    tch::no_grad(|| {
        for (name, value) in values {
            vars[name].shallow_clone().copy_(value);
        }
    });
}

/// What training leaves.
pub struct FitOutcome {
    pub epochs: Vec<EpochRecord>,
    /// The weights with the lowest finite validation loss (the last epoch's when no
    /// epoch had a finite one).
    pub best: Snapshot,
}

/// Running sums of an epoch's training batches so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PartialEpoch {
    /// Sum over batches of the batch's mean loss times its images.
    pub loss_sum: f64,
    /// Images (or pixels, or labels) predicted right.
    pub correct: f64,
    /// What `correct` counts out of.
    pub counted: f64,
    pub images: usize,
    /// Training seconds spent on these batches.
    pub seconds: f64,
    /// Of those, seconds spent waiting for a batch.
    #[serde(default)]
    pub data_wait_seconds: f64,
}

impl PartialEpoch {
    /// The sums now, the device's running sums read back.
    fn read(&self, loss_sum: &Tensor, correct: &Tensor) -> Self {
        Self { loss_sum: loss_sum.double_value(&[]), correct: correct.double_value(&[]), ..*self }
    }
}

/// Where training stands: every counter a checkpoint needs besides its tensors.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Index of the current phase in the settings' phases.
    pub phase: usize,
    /// Epochs of that phase done.
    pub phase_epochs: u32,
    /// Training batches of the next epoch already done (0 at an epoch's end).
    pub batches: usize,
    pub partial: PartialEpoch,
    /// metrics.csv so far.
    pub records: Vec<EpochRecord>,
    /// Epoch of the best snapshot (lowest finite val_loss).
    pub best_epoch: Option<u32>,
    /// Early stopping's counter (reset at each phase when its scope is "phase").
    pub early_stopping: Patience,
    /// True once early stopping ended the current phase, or the run (scope "run").
    pub stopped: bool,
    /// The plateau schedule's counter and how often it cut the rate, this phase.
    pub plateau: Patience,
    pub plateau_cuts: u32,
    /// The current phase's optimizer.
    pub optimizer: OptimizerState,
}

/// Training's whole state at one moment: [`Progress`] and the tensors (on the CPU),
/// named `model/<variable>`, `best/<variable>` and `optimizer/<parameter>/<moment>`.
pub struct Checkpoint {
    pub progress: Progress,
    pub tensors: Vec<(String, Tensor)>,
}

impl Checkpoint {
    /// Why this checkpoint cannot continue training `network`, if it cannot: a variable
    /// missing or of another shape.
    pub fn mismatch(&self, network: &Network) -> Option<String> {
        let vars = network.vs.variables();
        let saved: HashMap<&str, &Tensor> = self.tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        for (name, var) in &vars {
            for prefix in ["model", "best"] {
                let key = format!("{prefix}/{name}");
                match saved.get(key.as_str()) {
                    None if prefix == "best" && self.progress.best_epoch.is_none() => {}
                    None => return Some(format!("it has no {key}")),
                    Some(t) if t.size() != var.size() => {
                        return Some(format!("{key} has shape {:?}, the network {:?}", t.size(), var.size()));
                    }
                    Some(_) => {}
                }
            }
        }
        for (name, t) in &self.tensors {
            let variable = match name.split_once('/') {
                Some(("optimizer", rest)) => rest.rsplit_once('/').map_or(rest, |(p, _)| p),
                Some(("model" | "best", variable)) => variable,
                _ => return Some(format!("{name} is not part of a checkpoint")),
            };
            if vars.get(variable).is_none_or(|v| v.size() != t.size()) {
                return Some(format!("{name} fits no variable of the network"));
            }
        }
        None
    }

    fn prefixed<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a Tensor)> + 'a {
        self.tensors.iter().filter_map(move |(n, t)| n.strip_prefix(prefix).map(|v| (v, t)))
    }
}

/// Everything the loop needs besides the network and the data.
pub struct FitConfig<'a> {
    pub settings: &'a TrainSettings,
    pub model: &'a ModelSettings,
    pub augment: Option<AugmentSettings>,
    pub channels: usize,
    pub device: Device,
    /// Class weights per class index (classification).
    pub class_weights: Option<Vec<f64>>,
    /// Asked after every batch: true (a signal arrived) stops training there; the loop
    /// hands the observer a checkpoint and returns [`Error::Interrupted`].
    pub stop: &'a dyn Fn() -> bool,
    /// Also checkpoint in the middle of an epoch once this long has passed since the
    /// last checkpoint, so that a crash loses less of a long epoch.
    pub checkpoint_every: std::time::Duration,
}

impl FitConfig<'_> {
    /// Whether images and kernels are laid out NHWC (`train.channels_last`).
    fn channels_last(&self) -> bool {
        self.settings.channels_last.applies(self.device.is_cuda())
    }
}

/// The task-specific parts of a step.
enum Objective {
    Classes {
        weights: Option<Tensor>,
        smoothing: f64,
    },
    /// Multi-label: binary cross-entropy on each label's logit.
    Labels,
    /// Segmentation; with deep supervision, the weight of the main output and of each
    /// auxiliary output (none without).
    Masks {
        loss: SegmentationLoss,
        supervision: Vec<f64>,
    },
}

impl Objective {
    fn new(data: &dyn TrainingData, config: &FitConfig) -> Result<Self, Error> {
        Ok(match data.task() {
            Task::Classification => Objective::Classes {
                weights: config
                    .class_weights
                    .as_ref()
                    .map(|w| Tensor::from_slice(w).to_kind(Kind::Float).to_device(config.device)),
                smoothing: config.settings.label_smoothing,
            },
            // Settings::from_recipe refuses class weights for a multi-label task
            Task::Multilabel => Objective::Labels,
            Task::Segmentation => Objective::Masks {
                loss: SegmentationLoss::resolve(config.settings.loss, data.classes(), config.model.is_volume())
                    .map_err(|message| SettingError::new("train.loss", message))?,
                supervision: match config.model {
                    ModelSettings::Unet3d(s) if s.deep_supervision => deep_supervision_weights(s.depth),
                    _ => Vec::new(),
                },
            },
        })
    }

    /// (loss, correct count as a tensor, count) of a batch; `weighted` applies class
    /// weights. Nothing here waits for the device.
    fn evaluate(&self, logits: &Tensor, targets: &Tensor, weighted: bool) -> (Tensor, Tensor, f64) {
        match self {
            Objective::Classes { weights, smoothing } => {
                let w = if weighted { weights.as_ref() } else { None };
                let loss = cross_entropy(logits, targets, w, if weighted { *smoothing } else { 0.0 });
                let correct = logits.argmax(1, false).eq_tensor(targets).sum(Kind::Float);
                (loss, correct, targets.size()[0] as f64)
            }
            Objective::Labels => {
                let loss = logits.binary_cross_entropy_with_logits::<Tensor>(targets, None, None, Reduction::Mean);
                // label-wise agreement at probability 0.5 (logit 0)
                let correct = logits.ge(0.0).to_kind(Kind::Float).eq_tensor(targets).sum(Kind::Float);
                (loss, correct, targets.numel() as f64)
            }
            Objective::Masks { loss, .. } => {
                let l = loss.compute(logits, targets);
                let correct = predicted_labels(logits).eq_tensor(targets).sum(Kind::Float);
                (l, correct, targets.numel() as f64)
            }
        }
    }

    /// A training batch's loss with deep supervision: the main output's `main` loss and
    /// each of the `auxiliary` outputs' against the labels at its resolution, weighted as
    /// nnU-Net weighs them; `main` as it is without deep supervision.
    fn supervised(&self, main: Tensor, auxiliary: &[Tensor], targets: &Tensor) -> Tensor {
        let Objective::Masks { loss, supervision } = self else { return main };
        let Some((first, rest)) = supervision.split_first() else { return main };
        auxiliary.iter().zip(rest).fold(main * *first, |total, (output, weight)| {
            total + loss.compute(output, &at_resolution(targets, output)) * *weight
        })
    }
}

/// `targets` (`[n, z, y, x]` labels) at the resolution of `output` (`[n, maps, z', y',
/// x']`, each side a whole fraction of the targets'), by nearest voxel as nnU-Net takes
/// them (PyTorch's `nearest-exact`): voxel i of a side downsampled by f is voxel
/// i x f + f / 2.
pub fn at_resolution(targets: &Tensor, output: &Tensor) -> Tensor {
    let (full, low) = (targets.size(), output.size());
    (1..full.len()).fold(targets.shallow_clone(), |t, d| {
        let factor = full[d] / low[d + 1];
        t.slice(d as i64, factor / 2, None, factor)
    })
}

/// Training batches between two reads of the running loss from the device: each read
/// waits for the GPU, so reading every batch would stall it.
const REPORT_EVERY: usize = 10;

/// A batch as host tensors, in page-locked memory when it goes to a GPU, so that its
/// copy does not make the CPU wait for the device.
pub struct HostBatch {
    pub images: Tensor,
    pub targets: Tensor,
    /// Images (or patches) in the batch.
    pub n: usize,
    /// Segmentation: the label of every pixel or voxel, sample after sample.
    pub masks: Option<Vec<u8>>,
    /// Where the tensors go.
    device: Device,
}

fn pinned(t: Tensor, device: Device) -> Tensor {
    if device.is_cuda() { t.pin_memory(device) } else { t }
}

impl HostBatch {
    /// `channels_last`: the images laid out NHWC (see [`channels_last`]).
    pub fn new(mut batch: Batch, device: Device, channels_last: bool) -> Self {
        let [n, c, h, w] = batch.shape.map(|d| d as i64);
        let images = Tensor::from_slice(&std::mem::take(&mut batch.images)).view([n, c, h, w]);
        let images = if channels_last { precision::channels_last(&images) } else { images };
        let targets = match &batch.targets {
            BatchTargets::Classes(classes) => Tensor::from_slice(classes),
            BatchTargets::Masks(masks) => Tensor::from_slice(masks).view([n, h, w]).to_kind(Kind::Int64),
            BatchTargets::Labels(labels) => Tensor::from_slice(labels).view([n, -1]),
        };
        let masks = match batch.targets {
            BatchTargets::Masks(masks) => Some(masks),
            _ => None,
        };
        Self { images: pinned(images, device), targets: pinned(targets, device), n: n as usize, masks, device }
    }

    /// A batch of volume patches.
    pub fn patches(batch: PatchBatch, device: Device) -> Self {
        let [n, c, z, y, x] = batch.shape.map(|d| d as i64);
        let images = Tensor::from_slice(&batch.images).view([n, c, z, y, x]);
        let targets = Tensor::from_slice(&batch.labels).view([n, z, y, x]).to_kind(Kind::Int64);
        Self {
            images: pinned(images, device),
            targets: pinned(targets, device),
            n: n as usize,
            masks: Some(batch.labels),
            device,
        }
    }

    /// A batch of whole volumes and their `classes`.
    pub fn volume_classes(batch: PatchBatch, classes: Vec<i64>, device: Device) -> Self {
        let [n, c, z, y, x] = batch.shape.map(|d| d as i64);
        let images = Tensor::from_slice(&batch.images).view([n, c, z, y, x]);
        let targets = Tensor::from_slice(&classes);
        Self { images: pinned(images, device), targets: pinned(targets, device), n: n as usize, masks: None, device }
    }

    /// (images, targets) on the device; from page-locked memory the copy is queued on the
    /// device's stream and the CPU goes on.
    pub fn on_device(&self) -> (Tensor, Tensor) {
        let to = |t: &Tensor| t.to_device_(self.device, t.kind(), true, false);
        (to(&self.images), to(&self.targets))
    }
}

/// An epoch's batches of `split`, made (NHWC with `channels_last`) and pinned on the
/// batch thread.
pub fn device_batches(split: &Split, options: BatchOptions, device: Device, channels_last: bool) -> Batches<HostBatch> {
    epoch_batches_with(split, options, move |batch| HostBatch::new(batch, device, channels_last))
}

/// What [`fit`] trains on: 2D images ([`Dataset`]) or volume patches
/// ([`crate::patches::VolumePatches`]).
pub trait TrainingData {
    fn task(&self) -> Task;
    /// Classes, or labels with the background.
    fn classes(&self) -> usize;
    /// The training batches of `epoch` from batch `start_batch` on, shuffled and
    /// augmented by (seed, epoch).
    fn training(&self, config: &FitConfig, epoch: u32, start_batch: usize) -> Batches<HostBatch>;
    /// The validation batches, the same every epoch.
    fn validation(&self, config: &FitConfig) -> Batches<HostBatch>;
    /// Whole validation volumes and the sliding window that segments them
    /// (`eval.val_mode = "volumes"`), read instead of [`Self::validation`]'s batches.
    fn validation_volumes(&self) -> Option<(&[StoredCase], &SlidingWindow)> {
        None
    }
}

impl TrainingData for Dataset {
    fn task(&self) -> Task {
        self.task
    }

    fn classes(&self) -> usize {
        self.classes.len()
    }

    fn training(&self, config: &FitConfig, epoch: u32, start_batch: usize) -> Batches<HostBatch> {
        let options = BatchOptions {
            shuffle: true,
            augment: config.augment.clone(),
            seed: config.settings.seed,
            epoch: u64::from(epoch),
            start_batch,
            ..plain_batches(self, config.settings.batch_size as usize, config.channels)
        };
        device_batches(&self.train, options, config.device, config.channels_last())
    }

    fn validation(&self, config: &FitConfig) -> Batches<HostBatch> {
        let options = plain_batches(self, config.settings.batch_size as usize, config.channels);
        device_batches(&self.validation, options, config.device, config.channels_last())
    }
}

/// Options for visiting a split without augmentation, in file order.
pub fn plain_batches(dataset: &Dataset, batch_size: usize, channels: usize) -> BatchOptions {
    BatchOptions {
        batch_size,
        channels,
        shuffle: false,
        augment: None,
        seed: 0,
        epoch: 0,
        start_batch: 0,
        height: dataset.height,
        width: dataset.width,
    }
}

/// Variable prefixes frozen by a phase's `trainable` choice.
fn frozen_prefixes(network: &Network, model: &ModelSettings, trainable: Trainable) -> Vec<String> {
    match (trainable, model) {
        (Trainable::All, _) => Vec::new(),
        (Trainable::Head, _) => {
            let mut tops: Vec<String> = network
                .parameter_names()
                .iter()
                .filter_map(|n| n.split('.').next())
                .filter(|top| *top != radrun_models::transfer::HEAD)
                .map(str::to_string)
                .collect();
            tops.dedup();
            tops
        }
        (Trainable::Tutorial, ModelSettings::Transfer(s)) => s.backbone.tutorial_frozen(),
        (Trainable::Tutorial, _) => Vec::new(),
    }
}

/// Trains `network` on `data` through every phase of the settings, from the start or
/// from `resume` (a [`Checkpoint`] of the same settings whose [`Checkpoint::mismatch`]
/// is `None`).
pub fn fit(
    network: &mut Network,
    data: &dyn TrainingData,
    config: &FitConfig,
    observer: &mut dyn Observer,
    resume: Option<Checkpoint>,
) -> Result<FitOutcome, Error> {
    let objective = Objective::new(data, config)?;
    let settings = config.settings;
    if config.device.is_cuda() {
        // the input shape is fixed: let cuDNN time its algorithms once and keep the fastest
        tch::Cuda::cudnn_set_benchmark(true);
    }
    let (mut progress, mut best, mut saved_moments) = match resume {
        None => (Progress::default(), None, HashMap::new()),
        Some(checkpoint) => resumed(network, checkpoint, config.device),
    };
    if config.channels_last() {
        precision::lay_out_channels_last(network);
    }
    let mut scaler = (settings.precision == Precision::Fp16).then(GradScaler::default);
    while progress.phase < settings.phases.len() {
        let phase = &settings.phases[progress.phase];
        if progress.phase_epochs < phase.epochs && !progress.stopped {
            let (mut optimizer, names) =
                phase_optimizer(network, config, phase, &progress, &mut saved_moments, observer);
            let mut trainer = Trainer {
                network,
                data,
                config,
                objective: &objective,
                optimizer: &mut optimizer,
                scaler: scaler.as_mut(),
                names: &names,
                phase,
                last_checkpoint: Instant::now(),
            };
            while progress.phase_epochs < phase.epochs && !progress.stopped {
                trainer.epoch(&mut progress, &mut best, observer)?;
            }
        }
        next_phase(&mut progress, settings);
    }
    let best = match best {
        Some(best) => best,
        // no epoch had a finite validation loss: the last weights stand in
        None => {
            let last = progress.records.last().expect("at least one epoch was trained");
            Snapshot::take(network, last.epoch, last.val_loss)
        }
    };
    Ok(FitOutcome { epochs: progress.records, best })
}

/// Where `checkpoint` left training: its weights copied into `network`, its progress,
/// its best snapshot (on `device`), and its optimizer moments by name.
fn resumed(
    network: &Network,
    checkpoint: Checkpoint,
    device: Device,
) -> (Progress, Option<Snapshot>, HashMap<String, Tensor>) {
    copy_into(network, checkpoint.prefixed("model/"));
    let progress = checkpoint.progress.clone();
    let best = progress.best_epoch.map(|epoch| {
        let val_loss = progress.records.iter().find(|r| r.epoch == epoch).map_or(f64::NAN, |r| r.val_loss);
        let tensors = checkpoint.prefixed("best/").map(|(n, t)| (n.to_string(), t.to_device(device)));
        Snapshot { epoch, val_loss, tensors: tensors.collect() }
    });
    let moments =
        checkpoint.prefixed("optimizer/").map(|(n, t)| (n.to_string(), t.shallow_clone())).collect::<HashMap<_, _>>();
    (progress, best, moments)
}

/// A phase's optimizer over the layers it trains (frozen here, and told to the
/// observer), and those parameters' names in its order. Resuming within the phase, it
/// takes the checkpoint's state and `saved_moments` (which it empties).
fn phase_optimizer(
    network: &mut Network,
    config: &FitConfig,
    phase: &Phase,
    progress: &Progress,
    saved_moments: &mut HashMap<String, Tensor>,
    observer: &mut dyn Observer,
) -> (Optimizer, Vec<String>) {
    let settings = config.settings;
    network.set_frozen(frozen_prefixes(network, config.model, phase.trainable));
    let params = network.trainable_parameters();
    observer.phase_started(phase, params.iter().map(|(_, t)| t.numel() as i64).sum());
    let names: Vec<String> = params.iter().map(|(n, _)| n.clone()).collect();
    let mut optimizer = Optimizer::new(
        OptimizerConfig {
            name: phase.optimizer,
            learning_rate: phase.learning_rate,
            momentum: settings.momentum,
            nesterov: settings.nesterov,
            rho: settings.rho,
            weight_decay: settings.weight_decay,
        },
        params.into_iter().map(|(_, t)| t).collect(),
    );
    if progress.phase_epochs > 0 || progress.batches > 0 {
        let moments = std::mem::take(saved_moments);
        optimizer.import(progress.optimizer, |i, moment| {
            moments.get(&format!("{}/{moment}", names[i])).map(Tensor::shallow_clone)
        });
    }
    (optimizer, names)
}

/// Moves `progress` on to the next phase: its epochs and plateau schedule start afresh,
/// and early stopping too when its scope is the phase.
fn next_phase(progress: &mut Progress, settings: &TrainSettings) {
    progress.phase += 1;
    progress.phase_epochs = 0;
    progress.plateau = Patience::default();
    progress.plateau_cuts = 0;
    if stop_scope(settings) == Scope::Phase {
        progress.early_stopping = Patience::default();
        progress.stopped = false;
    }
}

fn stop_scope(settings: &TrainSettings) -> Scope {
    settings.early_stopping.map_or(Scope::Phase, |e| e.scope)
}

/// The seed of libtorch's generator for one training batch: dropout then draws the
/// same values whether or not the run was resumed.
fn batch_seed(seed: u64, epoch: u32, batch: usize) -> i64 {
    // SplitMix64 over the three numbers
    let mut z = seed ^ (u64::from(epoch) << 40) ^ (batch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 1) as i64
}

/// Everything a phase's epochs touch.
struct Trainer<'a> {
    network: &'a Network,
    data: &'a dyn TrainingData,
    config: &'a FitConfig<'a>,
    objective: &'a Objective,
    optimizer: &'a mut Optimizer,
    /// Float16's loss scaling (`train.precision = "fp16"`), kept across phases.
    scaler: Option<&'a mut GradScaler>,
    /// The optimizer's parameters' names, in its order.
    names: &'a [String],
    phase: &'a Phase,
    last_checkpoint: Instant,
}

impl Trainer<'_> {
    /// One epoch (or the rest of one): training, validation, the best snapshot, the
    /// schedule and early stopping; then a checkpoint.
    fn epoch(
        &mut self,
        progress: &mut Progress,
        best: &mut Option<Snapshot>,
        observer: &mut dyn Observer,
    ) -> Result<(), Error> {
        let (phase, settings) = (self.phase, self.config.settings);
        let epoch = progress.records.len() as u32 + 1;
        if (self.config.stop)() {
            // the checkpoint of the epoch before is the latest state
            return Err(Error::Interrupted { epoch });
        }
        let index = progress.phase_epochs;
        let scale = match phase.schedule() {
            Schedule::Plateau { factor, .. } => factor.powi(progress.plateau_cuts as i32),
            _ => 1.0,
        };
        let rate =
            phase.schedule().learning_rate(phase.learning_rate, phase.warmup_epochs(), phase.epochs, index, scale);
        self.optimizer.set_learning_rate(rate);
        let started = Instant::now();
        // training seconds of this epoch before a resume
        let seconds_before = progress.partial.seconds;
        let trained = self.train_epoch(epoch, progress, best, observer)?;
        let validation = validate(self.network, self.data, self.objective, self.config)?;
        let record = EpochRecord {
            epoch,
            phase: phase.name.clone(),
            learning_rate: rate,
            train_loss: trained.loss_sum / trained.images as f64,
            train_accuracy: trained.correct / trained.counted,
            val_loss: validation.loss,
            val_accuracy: validation.accuracy,
            val_dice: validation.dice,
            val_iou: validation.iou,
            seconds: started.elapsed().as_secs_f64() + seconds_before,
            images_per_second: trained.images as f64 / trained.seconds,
            data_wait_seconds: trained.data_wait_seconds,
        };
        // a NaN validation loss is never the best
        if record.val_loss.is_finite() && best.as_ref().is_none_or(|b| record.val_loss < b.val_loss) {
            *best = Some(Snapshot::take(self.network, epoch, record.val_loss));
            progress.best_epoch = Some(epoch);
        }
        observer.epoch_finished(&record);
        if let Schedule::Plateau { patience, .. } = phase.schedule()
            && index >= phase.warmup_epochs()
            && !progress.plateau.observe(record.val_loss, Mode::Min, 0.0)
            && progress.plateau.waited >= patience
        {
            progress.plateau_cuts += 1;
            progress.plateau.waited = 0;
        }
        if let Some(stopping) = settings.early_stopping {
            let value = stopping.metric.of(&record);
            if !progress.early_stopping.observe(value, stopping.mode(), stopping.min_delta)
                && progress.early_stopping.waited >= stopping.patience
            {
                progress.stopped = true;
                observer.stopped_early(phase, epoch, stopping.metric, progress.early_stopping.best);
            }
        }
        progress.records.push(record);
        progress.phase_epochs += 1;
        progress.batches = 0;
        progress.partial = PartialEpoch::default();
        observer.checkpoint(&self.checkpoint(progress, best));
        Ok(())
    }

    /// The state now, copied to the CPU.
    fn checkpoint(&mut self, progress: &mut Progress, best: &Option<Snapshot>) -> Checkpoint {
        self.last_checkpoint = Instant::now();
        let (state, moments) = self.optimizer.export();
        progress.optimizer = state;
        let cpu = |t: &Tensor| t.to_device(Device::Cpu);
        let mut tensors: Vec<(String, Tensor)> =
            self.network.vs.variables().into_iter().map(|(n, t)| (format!("model/{n}"), cpu(&t))).collect();
        if let Some(best) = best {
            tensors.extend(best.tensors.iter().map(|(n, t)| (format!("best/{n}"), cpu(t))));
        }
        tensors.extend(moments.into_iter().map(|(i, m, t)| (format!("optimizer/{}/{m}", self.names[i]), t)));
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        Checkpoint { progress: progress.clone(), tensors }
    }

    /// The epoch's training batches from where `progress` says (the start, or where a
    /// stopped run left it); a raised stop flag ends it after the current batch with a
    /// checkpoint and [`Error::Interrupted`].
    fn train_epoch(
        &mut self,
        epoch: u32,
        progress: &mut Progress,
        best: &Option<Snapshot>,
        observer: &mut dyn Observer,
    ) -> Result<PartialEpoch, Error> {
        let (config, started) = (self.config, Instant::now());
        let mut batches = self.data.training(config, epoch, progress.batches);
        let total = progress.batches + batches.len();
        observer.epoch_started(epoch, total);
        let before = progress.partial;
        let scalar = |v: f64| Tensor::from(v).to_kind(Kind::Float).to_device(config.device);
        let (mut loss_sum, mut correct) = (scalar(before.loss_sum), scalar(before.correct));
        let mut sums = before;
        let clip = config.settings.gradient_clip.map(|c| c.norm);
        for index in progress.batches.. {
            let waiting = Instant::now();
            let Some(host) = batches.next() else { break };
            sums.data_wait_seconds += waiting.elapsed().as_secs_f64();
            tch::manual_seed(batch_seed(config.settings.seed, epoch, index));
            let (x, y) = host.on_device();
            let (batch_loss, right, count) = {
                let _cast = Autocast::enter(config.device, config.settings.precision);
                let (logits, auxiliary) = self.network.forward_supervised(&x, true);
                let (loss, right, count) = self.objective.evaluate(&logits, &y, true);
                (self.objective.supervised(loss, &auxiliary, &y), right, count)
            };
            // a float16 step whose gradients overflowed is skipped, its batch not counted
            if self.optimizer.minimize_scaled(&batch_loss, clip, self.scaler.as_deref_mut()) {
                let n = host.n;
                sums.images += n;
                sums.counted += count;
                loss_sum += batch_loss.detach() * n as f64;
                correct += right;
            }
            sums.seconds = before.seconds + started.elapsed().as_secs_f64();
            let stopping = (config.stop)();
            let due = self.last_checkpoint.elapsed() >= config.checkpoint_every;
            // (every float16 step so far may have been skipped: then there is no loss yet)
            let report = (index + 1) % REPORT_EVERY == 0 || index + 1 == total || stopping;
            if report && sums.images > 0 {
                let loss = loss_sum.double_value(&[]) / sums.images as f64;
                if !loss.is_finite() {
                    return Err(Error::NonFiniteLoss { epoch, phase: self.phase.name.clone() });
                }
                let rate = (sums.images - before.images) as f64 / started.elapsed().as_secs_f64();
                observer.batch_finished(index + 1, loss, correct.double_value(&[]) / sums.counted, rate);
            }
            if (stopping || due) && index + 1 < total {
                progress.batches = index + 1;
                progress.partial = sums.read(&loss_sum, &correct);
                observer.checkpoint(&self.checkpoint(progress, best));
                if stopping {
                    return Err(Error::Interrupted { epoch });
                }
            }
        }
        if sums.images == 0 {
            // float16 overflowed at every step (the scale halving each time): nothing trains
            return Err(Error::NonFiniteLoss { epoch, phase: self.phase.name.clone() });
        }
        Ok(sums.read(&loss_sum, &correct))
    }
}

struct Validation {
    loss: f64,
    accuracy: f64,
    dice: Option<f64>,
    iou: Option<f64>,
}

/// Loss (without class weights or smoothing), accuracy and, for masks, mean Dice and IoU
/// on the validation split.
fn validate(
    network: &Network,
    data: &dyn TrainingData,
    objective: &Objective,
    config: &FitConfig,
) -> Result<Validation, Error> {
    let mut tally = Tally::new(config.device, data.classes());
    tch::no_grad(|| match data.validation_volumes() {
        Some((cases, window)) => {
            for case in cases.iter() {
                let [z, y, x] = case.shape.map(|side| side as i64);
                let image = Tensor::from_slice(case.voxels()).view([case.channels as i64, z, y, x]);
                let truth = case.labels().expect("the validation cases of a segmentation have labels");
                let logits = infer(&image, window, config.device, &mut |patches| {
                    let _cast = Autocast::enter(config.device, config.settings.precision);
                    network.forward(patches, false)
                });
                let targets = Tensor::from_slice(truth).view([1, z, y, x]).to_kind(Kind::Int64);
                tally.add(objective, &logits.unsqueeze(0), &targets, Some(truth), 1);
            }
        }
        None => {
            for host in data.validation(config) {
                let (x, y) = host.on_device();
                let _cast = Autocast::enter(config.device, config.settings.precision);
                let logits = network.forward(&x, false);
                tally.add(objective, &logits, &y, host.masks.as_deref(), host.n);
            }
        }
    });
    Ok(tally.finish(data.task() == Task::Segmentation))
}

/// The running sums of a validation.
struct Tally {
    loss_sum: Tensor,
    correct: Tensor,
    counted: f64,
    images: usize,
    dice: f64,
    iou: f64,
    scored: usize,
    labels: usize,
}

impl Tally {
    fn new(device: Device, labels: usize) -> Self {
        let zero = || Tensor::zeros([], (Kind::Float, device));
        Self { loss_sum: zero(), correct: zero(), counted: 0.0, images: 0, dice: 0.0, iou: 0.0, scored: 0, labels }
    }

    /// Adds a batch of `n` images or volumes: its loss and right answers, and, for a
    /// segmentation, the Dice and IoU of each of its label maps against `truth`.
    fn add(&mut self, objective: &Objective, logits: &Tensor, targets: &Tensor, truth: Option<&[u8]>, n: usize) {
        let (loss, right, count) = objective.evaluate(logits, targets, false);
        let device = self.loss_sum.device();
        self.loss_sum += loss.to_device(device) * n as f64;
        self.correct += right.to_device(device);
        self.counted += count;
        self.images += n;
        let Some(truth) = truth else { return };
        let predicted: Vec<u8> = Vec::<i64>::try_from(predicted_labels(logits).flatten(0, -1).to_device(Device::Cpu))
            .expect("int64 labels")
            .into_iter()
            .map(|v| v as u8)
            .collect();
        let plane = truth.len() / n;
        for (t, p) in truth.chunks(plane).zip(predicted.chunks(plane)) {
            for label in 1..self.labels.max(2) {
                let tb: Vec<bool> = t.iter().map(|&v| usize::from(v) == label).collect();
                let pb: Vec<bool> = p.iter().map(|&v| usize::from(v) == label).collect();
                let (d, i) = dice_iou(&tb, &pb);
                self.dice += d;
                self.iou += i;
                self.scored += 1;
            }
        }
    }

    fn finish(self, segmentation: bool) -> Validation {
        Validation {
            loss: self.loss_sum.double_value(&[]) / self.images as f64,
            accuracy: self.correct.double_value(&[]) / self.counted,
            dice: segmentation.then(|| self.dice / self.scored as f64),
            iou: segmentation.then(|| self.iou / self.scored as f64),
        }
    }
}
