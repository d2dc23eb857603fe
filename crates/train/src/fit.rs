//! The training loop: phases of epochs over a dataset's batches, each phase with its own
//! optimizer and trainable layers; validation after each epoch; the best weights (lowest
//! validation loss) kept in memory. Progress goes to an [`Observer`]: this crate prints
//! and writes nothing.

use std::time::Instant;

use radrun_data::SettingError;
use radrun_data::{AugmentSettings, Batch, BatchOptions, BatchTargets, Dataset, Task, epoch_batches};
use radrun_models::{ModelSettings, Network};
use serde::Serialize;
use tch::{Device, Kind, Reduction, Tensor};

use crate::Error;
use crate::loss::{SegmentationLoss, cross_entropy, predicted_labels};
use crate::metrics::dice_iou;
use crate::optim::{Optimizer, OptimizerConfig};
use crate::settings::{Phase, TrainSettings, Trainable};

/// One row of metrics.csv.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpochRecord {
    /// Counted from 1 across phases.
    pub epoch: u32,
    pub phase: String,
    pub learning_rate: f64,
    pub train_loss: f64,
    /// Classification: images classified right; segmentation: pixels labelled right.
    pub train_accuracy: f64,
    pub val_loss: f64,
    pub val_accuracy: f64,
    /// Segmentation: mean Dice over validation images and foreground labels.
    pub val_dice: Option<f64>,
    pub val_iou: Option<f64>,
    /// Wall time of the epoch, training and validation.
    pub seconds: f64,
    /// Training images per second (augmentation, forward, backward, update).
    pub images_per_second: f64,
}

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
        let vars = network.vs.variables();
        tch::no_grad(|| {
            for (name, value) in &self.tensors {
                vars[name].shallow_clone().copy_(value);
            }
        });
    }
}

/// What training leaves.
pub struct FitOutcome {
    pub epochs: Vec<EpochRecord>,
    /// The weights with the lowest validation loss.
    pub best: Snapshot,
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
}

/// The task-specific parts of a step.
enum Objective {
    Classes {
        weights: Option<Tensor>,
        smoothing: f64,
    },
    /// Multi-label: binary cross-entropy on each label's logit.
    Labels,
    Masks(SegmentationLoss),
}

impl Objective {
    fn new(dataset: &Dataset, config: &FitConfig) -> Result<Self, Error> {
        Ok(match dataset.task {
            Task::Classification => Objective::Classes {
                weights: config
                    .class_weights
                    .as_ref()
                    .map(|w| Tensor::from_slice(w).to_kind(Kind::Float).to_device(config.device)),
                smoothing: config.settings.label_smoothing,
            },
            // Settings::from_recipe refuses class weights for a multi-label task
            Task::Multilabel => Objective::Labels,
            Task::Segmentation => Objective::Masks(
                SegmentationLoss::resolve(config.settings.loss, dataset.classes.len())
                    .map_err(|message| SettingError::new("train.loss", message))?,
            ),
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
            Objective::Masks(loss) => {
                let l = loss.compute(logits, targets);
                let correct = predicted_labels(logits).eq_tensor(targets).sum(Kind::Float);
                (l, correct, targets.numel() as f64)
            }
        }
    }
}

/// Training batches between two reads of the running loss from the device: each read
/// waits for the GPU, so reading every batch would stall it.
const REPORT_EVERY: usize = 10;

/// Moves a batch to the device as (images, targets).
pub fn batch_tensors(batch: &Batch, device: Device) -> (Tensor, Tensor) {
    let [n, c, h, w] = batch.shape.map(|d| d as i64);
    let images = Tensor::from_slice(&batch.images).view([n, c, h, w]).to_device(device);
    let targets = match &batch.targets {
        BatchTargets::Classes(classes) => Tensor::from_slice(classes),
        BatchTargets::Masks(masks) => Tensor::from_slice(masks).view([n, h, w]).to_kind(Kind::Int64),
        BatchTargets::Labels(labels) => Tensor::from_slice(labels).view([n, -1]),
    };
    (images, targets.to_device(device))
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

/// Trains `network` on `dataset` through every phase of the settings.
pub fn fit(
    network: &mut Network,
    dataset: &Dataset,
    config: &FitConfig,
    observer: &mut dyn Observer,
) -> Result<FitOutcome, Error> {
    let objective = Objective::new(dataset, config)?;
    let mut epochs: Vec<EpochRecord> = Vec::new();
    let mut best: Option<Snapshot> = None;
    for phase in config.settings.phases.iter().filter(|p| p.epochs > 0) {
        network.set_frozen(frozen_prefixes(network, config.model, phase.trainable));
        let params = network.trainable_parameters();
        observer.phase_started(phase, params.iter().map(|(_, t)| t.numel() as i64).sum());
        let settings = config.settings;
        let mut optimizer = Optimizer::new(
            OptimizerConfig {
                name: phase.optimizer,
                learning_rate: phase.learning_rate,
                momentum: settings.momentum,
                nesterov: settings.nesterov,
                rho: settings.rho,
            },
            params.into_iter().map(|(_, t)| t).collect(),
        );
        for _ in 0..phase.epochs {
            let epoch = epochs.len() as u32 + 1;
            let started = Instant::now();
            let mut step = Step { network, dataset, config, objective: &objective, optimizer: &mut optimizer };
            let trained = step.train_epoch(epoch, phase, observer)?;
            let validation = validate(network, dataset, &objective, config)?;
            let record = EpochRecord {
                epoch,
                phase: phase.name.clone(),
                learning_rate: optimizer.learning_rate(),
                train_loss: trained.loss,
                train_accuracy: trained.accuracy,
                val_loss: validation.loss,
                val_accuracy: validation.accuracy,
                val_dice: validation.dice,
                val_iou: validation.iou,
                seconds: started.elapsed().as_secs_f64(),
                images_per_second: trained.images as f64 / trained.seconds,
            };
            if best.as_ref().is_none_or(|b| record.val_loss < b.val_loss) {
                best = Some(Snapshot::take(network, epoch, record.val_loss));
            }
            observer.epoch_finished(&record);
            epochs.push(record);
        }
    }
    // resolved settings have at least one phase with epochs
    let best = best.expect("at least one epoch was trained");
    Ok(FitOutcome { epochs, best })
}

/// What one epoch of training measured.
struct Trained {
    loss: f64,
    accuracy: f64,
    images: usize,
    seconds: f64,
}

/// Everything a training step touches.
struct Step<'a> {
    network: &'a Network,
    dataset: &'a Dataset,
    config: &'a FitConfig<'a>,
    objective: &'a Objective,
    optimizer: &'a mut Optimizer,
}

impl Step<'_> {
    /// One pass over the shuffled, augmented training split.
    fn train_epoch(&mut self, epoch: u32, phase: &Phase, observer: &mut dyn Observer) -> Result<Trained, Error> {
        let (config, started) = (self.config, Instant::now());
        let options = BatchOptions {
            shuffle: true,
            augment: config.augment.clone(),
            seed: config.settings.seed,
            epoch: u64::from(epoch),
            ..plain_batches(self.dataset, config.settings.batch_size as usize, config.channels)
        };
        let batches = epoch_batches(&self.dataset.train, options);
        let total = batches.len();
        observer.epoch_started(epoch, total);
        let zero = || Tensor::zeros([], (Kind::Float, config.device));
        let (mut loss_sum, mut correct) = (zero(), zero());
        let (mut counted, mut images) = (0.0, 0usize);
        let (mut loss, mut accuracy) = (f64::NAN, f64::NAN);
        for (index, batch) in batches.enumerate() {
            let (x, y) = batch_tensors(&batch, config.device);
            self.optimizer.zero_grad();
            let logits = self.network.forward(&x, true);
            let (batch_loss, right, count) = self.objective.evaluate(&logits, &y, true);
            batch_loss.backward();
            self.optimizer.step();
            let n = batch.shape[0];
            images += n;
            counted += count;
            loss_sum += batch_loss.detach() * n as f64;
            correct += right;
            if (index + 1) % REPORT_EVERY == 0 || index + 1 == total {
                loss = loss_sum.double_value(&[]) / images as f64;
                accuracy = correct.double_value(&[]) / counted;
                if !loss.is_finite() {
                    return Err(Error::NonFiniteLoss { epoch, phase: phase.name.clone() });
                }
                let rate = images as f64 / started.elapsed().as_secs_f64();
                observer.batch_finished(index + 1, loss, accuracy, rate);
            }
        }
        Ok(Trained { loss, accuracy, images, seconds: started.elapsed().as_secs_f64() })
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
    dataset: &Dataset,
    objective: &Objective,
    config: &FitConfig,
) -> Result<Validation, Error> {
    let options = plain_batches(dataset, config.settings.batch_size as usize, config.channels);
    let zero = || Tensor::zeros([], (Kind::Float, config.device));
    let (mut loss_sum, mut correct) = (zero(), zero());
    let (mut counted, mut images) = (0.0, 0usize);
    let (mut dice, mut iou, mut scored) = (0.0, 0.0, 0usize);
    let labels = dataset.classes.len();
    tch::no_grad(|| {
        for batch in epoch_batches(&dataset.validation, options) {
            let (x, y) = batch_tensors(&batch, config.device);
            let logits = network.forward(&x, false);
            let (loss, right, count) = objective.evaluate(&logits, &y, false);
            let n = batch.shape[0];
            loss_sum += loss * n as f64;
            correct += right;
            counted += count;
            images += n;
            if let BatchTargets::Masks(truth) = &batch.targets {
                let predicted: Vec<u8> =
                    Vec::<i64>::try_from(predicted_labels(&logits).flatten(0, -1).to_device(Device::Cpu))
                        .expect("int64 labels")
                        .into_iter()
                        .map(|v| v as u8)
                        .collect();
                let plane = dataset.height * dataset.width;
                for (t, p) in truth.chunks(plane).zip(predicted.chunks(plane)) {
                    for label in 1..labels.max(2) {
                        let tb: Vec<bool> = t.iter().map(|&v| usize::from(v) == label).collect();
                        let pb: Vec<bool> = p.iter().map(|&v| usize::from(v) == label).collect();
                        let (d, i) = dice_iou(&tb, &pb);
                        dice += d;
                        iou += i;
                        scored += 1;
                    }
                }
            }
        }
    });
    let seg = dataset.task == Task::Segmentation;
    Ok(Validation {
        loss: loss_sum.double_value(&[]) / images as f64,
        accuracy: correct.double_value(&[]) / counted,
        dice: seg.then(|| dice / scored as f64),
        iou: seg.then(|| iou / scored as f64),
    })
}
