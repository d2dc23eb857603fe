//! The `[train]` section of a recipe: optimizer, learning rate, epochs or phases, batch
//! size, class weights, loss, seed and device. Two forms, as uv keeps its settings:
//! [`TrainRecipe`] is what a recipe may write (the keys whose default depends on the
//! model kind are optional), [`TrainSettings`] is what runs, every default filled in by
//! [`TrainRecipe::resolve`] from the model kind's facts.

use std::collections::BTreeMap;
use std::fmt;

use crate::model::ModelSettings;
use radrun_data::SettingError;

use crate::controls::{EarlyStopping, GradientClip, Schedule, deserialize_schedule};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Optimizers the tutorial offered, with Keras' update rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerName {
    Adam,
    Adamax,
    Nadam,
    Rmsprop,
    Sgd,
}

impl OptimizerName {
    /// Keras' default learning rate: 0.001, and 0.01 for SGD.
    pub fn keras_learning_rate(self) -> f64 {
        match self {
            OptimizerName::Sgd => 0.01,
            OptimizerName::Adam | OptimizerName::Adamax | OptimizerName::Nadam | OptimizerName::Rmsprop => 0.001,
        }
    }

    /// The name as written in a recipe.
    pub fn name(self) -> &'static str {
        match self {
            OptimizerName::Adam => "adam",
            OptimizerName::Adamax => "adamax",
            OptimizerName::Nadam => "nadam",
            OptimizerName::Rmsprop => "rmsprop",
            OptimizerName::Sgd => "sgd",
        }
    }
}

/// A learning rate, or `"auto"`: the optimizer's Keras default (the tutorial's `None`),
/// except for the U-Net whose tutorial default is Adam at 1e-4.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum LearningRate {
    #[default]
    Auto,
    Value(f64),
}

impl Serialize for LearningRate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            LearningRate::Auto => s.serialize_str("auto"),
            LearningRate::Value(v) => s.serialize_f64(*v),
        }
    }
}

impl schemars::JsonSchema for LearningRate {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "LearningRate".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "anyOf": [{ "const": "auto" }, { "type": "number", "exclusiveMinimum": 0 }]
        })
    }
}

impl<'de> Deserialize<'de> for LearningRate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = LearningRate;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a positive number or \"auto\" (the optimizer's Keras default)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<LearningRate, E> {
                if v == "auto" {
                    Ok(LearningRate::Auto)
                } else {
                    Err(E::custom(format!("expected a positive number or \"auto\", found \"{v}\"")))
                }
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<LearningRate, E> {
                Ok(LearningRate::Value(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<LearningRate, E> {
                Ok(LearningRate::Value(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<LearningRate, E> {
                Ok(LearningRate::Value(v as f64))
            }
        }
        d.deserialize_any(V)
    }
}

/// Per-class loss weights.
#[derive(Debug, Clone, PartialEq)]
pub enum ClassWeights {
    /// Every class weighs 1.
    None,
    /// total / (classes x count of the class), computed on the training split (the
    /// tutorial's formula).
    Balanced,
    /// A weight per class name; classes not listed weigh 1.
    Explicit(BTreeMap<String, f64>),
}

impl Serialize for ClassWeights {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ClassWeights::None => s.serialize_str("none"),
            ClassWeights::Balanced => s.serialize_str("balanced"),
            ClassWeights::Explicit(map) => map.serialize(s),
        }
    }
}

impl schemars::JsonSchema for ClassWeights {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ClassWeights".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "anyOf": [
                { "enum": ["none", "balanced"] },
                { "type": "object", "additionalProperties": { "type": "number", "minimum": 0 } }
            ]
        })
    }
}

impl<'de> Deserialize<'de> for ClassWeights {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ClassWeights;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("\"none\", \"balanced\" or a table { CLASS = weight, ... }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ClassWeights, E> {
                match v {
                    "none" => Ok(ClassWeights::None),
                    "balanced" => Ok(ClassWeights::Balanced),
                    _ => Err(E::custom(format!(
                        "expected \"none\", \"balanced\" or a table {{ CLASS = weight }}, found \"{v}\""
                    ))),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ClassWeights, A::Error> {
                let mut weights = BTreeMap::new();
                while let Some((k, v)) = map.next_entry::<String, f64>()? {
                    weights.insert(k, v);
                }
                Ok(ClassWeights::Explicit(weights))
            }
        }
        d.deserialize_any(V)
    }
}

impl ClassWeights {
    /// Per-class loss weights for the training split's class counts (`counts[c]` images
    /// of class `c`), or `None` when every class weighs 1.
    pub fn resolve(&self, classes: &[String], counts: &[usize]) -> Result<Option<Vec<f64>>, SettingError> {
        match self {
            ClassWeights::None => Ok(None),
            ClassWeights::Balanced => {
                let total: usize = counts.iter().sum();
                let k = counts.len() as f64;
                Ok(Some(counts.iter().map(|&n| if n == 0 { 0.0 } else { total as f64 / (k * n as f64) }).collect()))
            }
            ClassWeights::Explicit(map) => {
                if let Some(unknown) = map.keys().find(|k| !classes.contains(k)) {
                    return Err(invalid(
                        &format!("class_weights.{unknown}"),
                        format!("names no class; the classes are {}", classes.join(", ")),
                    ));
                }
                Ok(Some(classes.iter().map(|c| map.get(c).copied().unwrap_or(1.0)).collect()))
            }
        }
    }
}

/// Which weights are evaluated on the test split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Keep {
    /// The epoch with the lowest validation loss.
    BestValidationLoss,
    /// The last epoch.
    Last,
}

/// Loss functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LossName {
    /// Classification: cross-entropy; segmentation: binary cross-entropy for one
    /// structure (the tutorial's), cross-entropy for several labels.
    Auto,
    /// Softmax cross-entropy (classification, or label masks).
    CrossEntropy,
    /// Binary cross-entropy on a sigmoid map (binary masks).
    BinaryCrossEntropy,
    /// Soft Dice loss, 1 - Dice, averaged over images and foreground labels.
    Dice,
    /// Binary cross-entropy plus Dice loss.
    BceDice,
    /// Cross-entropy (binary for one structure) plus soft Dice: nnU-Net's loss, and
    /// "auto" for volumes.
    DiceCe,
}

/// What a phase trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trainable {
    /// Everything.
    All,
    /// Only the new head; the backbone is frozen (its batch norms in inference mode).
    Head,
    /// The tutorial's per-backbone unfreezing (see `Backbone::tutorial_frozen`).
    Tutorial,
}

/// One phase of training with its own optimizer, as it runs (`Phase<LearningRate>`, the
/// form a recipe writes, may leave the rate `"auto"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(bound = "Rate: schemars::JsonSchema + Default + Serialize")]
pub struct Phase<Rate = f64> {
    /// Written in metrics.csv's `phase` column.
    pub name: String,
    /// 0 skips the phase.
    pub epochs: u32,
    pub optimizer: OptimizerName,
    #[serde(default)]
    pub learning_rate: Rate,
    #[serde(default = "all")]
    pub trainable: Trainable,
    /// This phase's schedule; `train.schedule` when left out (always written once resolved).
    #[schemars(schema_with = "crate::controls::schedule_schema")]
    #[serde(default, deserialize_with = "deserialize_schedule", skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// This phase's warm-up epochs; `train.warmup_epochs` when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_epochs: Option<u32>,
}

impl Phase {
    /// The resolved schedule.
    pub fn schedule(&self) -> Schedule {
        self.schedule.unwrap_or_default()
    }

    /// The resolved warm-up.
    pub fn warmup_epochs(&self) -> u32 {
        self.warmup_epochs.unwrap_or(0)
    }
}

/// A phase as a recipe writes it.
pub type PhaseRecipe = Phase<LearningRate>;

fn all() -> Trainable {
    Trainable::All
}

/// `train.precision`: the arithmetic of the forward pass and the loss. Weights, their
/// gradients and the optimizer's moments stay 32-bit in every case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats throughout: the tutorial's arithmetic (the default).
    #[default]
    Fp32,
    /// Autocast to bfloat16 (8-bit mantissa, fp32's range): matrix products and
    /// convolutions in bf16, reductions and the loss in fp32. No scaling needed.
    Bf16,
    /// Autocast to float16 (10-bit mantissa, range to 65504) with a gradient scaler:
    /// the loss is multiplied by a scale (from 65536) before the backward pass, the
    /// gradients divided by it; a step whose gradients overflow is skipped and the scale
    /// halved, and the scale doubles after 2000 steps without overflow (PyTorch's
    /// GradScaler).
    Fp16,
}

/// `train.channels_last`: keep images and convolution weights in NHWC order, which
/// tensor-core convolutions read directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChannelsLast {
    /// On for CUDA (every radrun network is convolutional), off on the CPU.
    #[default]
    Auto,
    On,
    Off,
}

impl ChannelsLast {
    /// Whether a network on the device is laid out channels-last (`on_cuda`: the device
    /// is a CUDA GPU).
    pub fn applies(self, on_cuda: bool) -> bool {
        match self {
            ChannelsLast::Auto => on_cuda,
            ChannelsLast::On => true,
            ChannelsLast::Off => false,
        }
    }
}

/// How the device is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    /// CUDA GPU 0 when present, else the CPU.
    Auto,
    Cpu,
    Cuda(usize),
}

impl Serialize for DeviceChoice {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            DeviceChoice::Auto => s.serialize_str("auto"),
            DeviceChoice::Cpu => s.serialize_str("cpu"),
            DeviceChoice::Cuda(0) => s.serialize_str("cuda"),
            DeviceChoice::Cuda(n) => s.serialize_str(&format!("cuda:{n}")),
        }
    }
}

impl schemars::JsonSchema for DeviceChoice {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "DeviceChoice".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^(auto|cpu|cuda|gpu|cuda:[0-9]+)$"
        })
    }
}

impl<'de> Deserialize<'de> for DeviceChoice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        match text.as_str() {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" | "gpu" => Ok(DeviceChoice::Cuda(0)),
            other => {
                other.strip_prefix("cuda:").and_then(|n| n.parse().ok()).map(DeviceChoice::Cuda).ok_or_else(|| {
                    de::Error::custom(format!("expected \"auto\", \"cpu\", \"cuda\" or \"cuda:N\", found \"{other}\""))
                })
            }
        }
    }
}

/// The `[train]` section as a recipe writes it. `epochs`, `optimizer` and
/// `learning_rate` describe a single phase; `phases` several (transfer learning).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TrainRecipe {
    /// Epochs of the single phase. Default 15 (the tutorial's CNN).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epochs: Option<u32>,
    /// Optimizer of the single phase. Default adam.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub optimizer: Option<OptimizerName>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learning_rate: Option<LearningRate>,
    /// Default per model kind (the tutorial's): cnn 10, transfer 6, unet 8, cnn3d 4, unet3d 2
    /// ([`ModelSettings::default_batch_size`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4096))]
    pub batch_size: Option<u32>,
    /// Multi-phase training. Default for transfer models: the tutorial's two phases.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phases: Option<Vec<PhaseRecipe>>,
    /// SGD/RMSprop momentum (0 = Keras' default).
    pub momentum: f64,
    /// SGD Nesterov momentum.
    pub nesterov: bool,
    /// RMSprop decay rate (Keras' 0.9).
    pub rho: f64,
    pub class_weights: ClassWeights,
    /// Classification: target smoothing epsilon (0 = off).
    pub label_smoothing: f64,
    /// Volumes: GiB a training batch of patches may take (the network's activations in
    /// float32, estimated); `data.patch_size = "auto"` stays within it.
    pub memory_budget: f64,
    /// Volumes: training batches per epoch; 0 (the default): enough batches to see
    /// each training case once.
    pub iterations_per_epoch: u32,
    pub loss: LossName,
    /// Seeds weight initialisation, dropout, shuffling and augmentation.
    pub seed: u64,
    pub device: DeviceChoice,
    pub keep: Keep,
    /// CPU threads for libtorch (0 = all cores).
    pub threads: u32,
    /// Arithmetic of the forward pass and loss: see [`Precision`].
    pub precision: Precision,
    /// Memory layout of images and convolution weights: see [`ChannelsLast`].
    pub channels_last: ChannelsLast,
    /// Learning-rate schedule of every phase that does not set its own (default constant).
    #[schemars(schema_with = "crate::controls::schedule_schema")]
    #[serde(deserialize_with = "deserialize_schedule", skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// Epochs of linear warm-up at the start of every phase that does not set its own.
    pub warmup_epochs: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub early_stopping: Option<EarlyStopping>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gradient_clip: Option<GradientClip>,
    /// Decoupled weight decay (AdamW's rule, for every optimizer): before each update,
    /// every trainable weight is multiplied by 1 - learning rate x weight_decay.
    pub weight_decay: f64,
}

impl Default for TrainRecipe {
    fn default() -> Self {
        Self {
            epochs: None,
            optimizer: None,
            learning_rate: None,
            batch_size: None,
            phases: None,
            momentum: 0.0,
            nesterov: false,
            rho: 0.9,
            class_weights: ClassWeights::None,
            label_smoothing: 0.0,
            memory_budget: 8.0,
            iterations_per_epoch: 0,
            loss: LossName::Auto,
            seed: 42,
            device: DeviceChoice::Auto,
            keep: Keep::BestValidationLoss,
            threads: 0,
            precision: Precision::Fp32,
            channels_last: ChannelsLast::Auto,
            schedule: None,
            warmup_epochs: 0,
            early_stopping: None,
            gradient_clip: None,
            weight_decay: 0.0,
        }
    }
}

/// The `[train]` section as it runs: every default filled in, written out in each run's
/// `recipe.toml` (which reads back as a [`TrainRecipe`] with the same meaning).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainSettings {
    pub batch_size: u32,
    pub momentum: f64,
    pub nesterov: bool,
    pub rho: f64,
    pub class_weights: ClassWeights,
    pub label_smoothing: f64,
    pub memory_budget: f64,
    pub iterations_per_epoch: u32,
    pub loss: LossName,
    pub seed: u64,
    pub device: DeviceChoice,
    pub keep: Keep,
    pub threads: u32,
    pub precision: Precision,
    pub channels_last: ChannelsLast,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub early_stopping: Option<EarlyStopping>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gradient_clip: Option<GradientClip>,
    pub weight_decay: f64,
    /// At least one phase with epochs; each with its schedule and warm-up filled in.
    pub phases: Vec<Phase>,
}

fn invalid(key: &str, message: impl Into<String>) -> SettingError {
    SettingError::new(format!("train.{key}"), message)
}

/// The tutorial's transfer learning: 4 epochs of the head alone with Adam, then 20 of
/// fine-tuning by its per-backbone rule with RMSprop at 1e-4.
fn tutorial_transfer_phases() -> Vec<PhaseRecipe> {
    vec![
        Phase {
            name: "frozen".into(),
            epochs: 4,
            optimizer: OptimizerName::Adam,
            learning_rate: LearningRate::Auto,
            trainable: Trainable::Head,
            schedule: None,
            warmup_epochs: None,
        },
        Phase {
            name: "fine_tune".into(),
            epochs: 20,
            optimizer: OptimizerName::Rmsprop,
            learning_rate: LearningRate::Value(1e-4),
            trainable: Trainable::Tutorial,
            schedule: None,
            warmup_epochs: None,
        },
    ]
}

impl TrainRecipe {
    /// Fills every default that depends on the model kind and checks the values, so that
    /// the resolved recipe states exactly what ran.
    pub fn resolve(self, model: &ModelSettings) -> Result<TrainSettings, SettingError> {
        // errors name the key the recipe wrote: `train.epochs`, or `train.phases.1.epochs`
        let key_in = |i: usize, key: &str| if self.phases.is_some() { format!("phases.{i}.{key}") } else { key.into() };
        let phases: Vec<Phase> = self
            .phases_for(model)?
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                let p = PhaseRecipe {
                    schedule: p.schedule.or(self.schedule).or(Some(Schedule::Constant)),
                    warmup_epochs: p.warmup_epochs.or(Some(self.warmup_epochs)),
                    ..p
                };
                resolve_phase(p, model, |key| key_in(i, key))
            })
            .collect::<Result<_, _>>()?;
        if phases.iter().all(|p| p.epochs == 0) {
            let (key, what) = match self.phases {
                Some(_) => ("phases", "every phase has 0 epochs: nothing would be trained"),
                None => ("epochs", "must be at least 1"),
            };
            return Err(invalid(key, what));
        }
        let settings = TrainSettings {
            batch_size: self.batch_size.unwrap_or_else(|| model.default_batch_size()),
            momentum: self.momentum,
            nesterov: self.nesterov,
            rho: self.rho,
            class_weights: self.class_weights,
            label_smoothing: self.label_smoothing,
            memory_budget: self.memory_budget,
            iterations_per_epoch: self.iterations_per_epoch,
            loss: self.loss,
            seed: self.seed,
            device: self.device,
            keep: self.keep,
            threads: self.threads,
            precision: self.precision,
            channels_last: self.channels_last,
            early_stopping: self.early_stopping.map(|e| EarlyStopping { mode: Some(e.mode()), ..e }),
            gradient_clip: self.gradient_clip,
            weight_decay: self.weight_decay,
            phases,
        };
        settings.validate()?;
        Ok(settings)
    }

    /// The phases as written, or built from the single-phase keys, or the kind's default.
    fn phases_for(&self, model: &ModelSettings) -> Result<Vec<PhaseRecipe>, SettingError> {
        let single = [
            ("epochs", self.epochs.is_some()),
            ("optimizer", self.optimizer.is_some()),
            ("learning_rate", self.learning_rate.is_some()),
        ];
        let written = single.iter().find_map(|(k, set)| set.then_some(*k));
        if let Some(phases) = &self.phases {
            if let Some(key) = written {
                return Err(invalid(key, "is set together with [[train.phases]]; set it in each phase instead"));
            }
            if phases.is_empty() {
                return Err(invalid("phases", "must list at least one phase"));
            }
            return Ok(phases.clone());
        }
        match model {
            ModelSettings::Transfer(_) => match written {
                Some(key) => Err(invalid(
                    key,
                    "transfer models train in phases: use [[train.phases]] (name, epochs, optimizer, \
                     learning_rate, trainable) instead of train.epochs / train.optimizer / train.learning_rate",
                )),
                None => Ok(tutorial_transfer_phases()),
            },
            ModelSettings::Cnn(_) | ModelSettings::Unet(_) | ModelSettings::Cnn3d(_) | ModelSettings::Unet3d(_) => {
                Ok(vec![Phase {
                    name: "train".into(),
                    epochs: self.epochs.unwrap_or(15),
                    optimizer: self.optimizer.unwrap_or(OptimizerName::Adam),
                    learning_rate: self.learning_rate.unwrap_or_default(),
                    trainable: Trainable::All,
                    schedule: None,
                    warmup_epochs: None,
                }])
            }
        }
    }
}

/// A phase's rate filled in ("auto": the kind's own default, else the optimizer's
/// Keras default) and its `trainable` checked against the kind.
fn resolve_phase(
    phase: PhaseRecipe,
    model: &ModelSettings,
    key: impl Fn(&str) -> String,
) -> Result<Phase, SettingError> {
    let transfer = match model {
        ModelSettings::Transfer(_) => true,
        ModelSettings::Cnn(_) | ModelSettings::Unet(_) | ModelSettings::Cnn3d(_) | ModelSettings::Unet3d(_) => false,
    };
    if !transfer && phase.trainable != Trainable::All {
        return Err(invalid(
            &key("trainable"),
            format!("\"{}\" needs a transfer model; use \"all\"", phase.trainable.name()),
        ));
    }
    let learning_rate = match phase.learning_rate {
        LearningRate::Value(v) => v,
        LearningRate::Auto => model.default_learning_rate().unwrap_or_else(|| phase.optimizer.keras_learning_rate()),
    };
    if !(learning_rate > 0.0 && learning_rate < 10.0) {
        return Err(invalid(
            &key("learning_rate"),
            format!("must be between 0 and 10 (exclusive), found {learning_rate}"),
        ));
    }
    if let Some(schedule) = &phase.schedule {
        schedule.check(learning_rate).map_err(|message| invalid(&key("schedule"), message))?;
    }
    let warmup = phase.warmup_epochs.unwrap_or(0);
    if phase.epochs > 0 && warmup >= phase.epochs {
        return Err(invalid(
            &key("warmup_epochs"),
            format!("is {warmup}, which leaves none of the phase's {} epochs after the warm-up", phase.epochs),
        ));
    }
    Ok(Phase {
        name: phase.name,
        epochs: phase.epochs,
        optimizer: phase.optimizer,
        learning_rate,
        trainable: phase.trainable,
        schedule: phase.schedule,
        warmup_epochs: phase.warmup_epochs,
    })
}

impl Trainable {
    /// The name as written in a recipe.
    pub fn name(self) -> &'static str {
        match self {
            Trainable::All => "all",
            Trainable::Head => "head",
            Trainable::Tutorial => "tutorial",
        }
    }
}

impl TrainSettings {
    fn validate(&self) -> Result<(), SettingError> {
        if !(1..=4096).contains(&self.batch_size) {
            return Err(invalid("batch_size", format!("must be between 1 and 4096, found {}", self.batch_size)));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(invalid("momentum", format!("must be in [0, 1), found {}", self.momentum)));
        }
        if !(0.0..1.0).contains(&self.rho) || self.rho == 0.0 {
            return Err(invalid("rho", format!("must be in (0, 1), found {}", self.rho)));
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return Err(invalid("label_smoothing", format!("must be in [0, 1), found {}", self.label_smoothing)));
        }
        if !(self.memory_budget >= 0.01 && self.memory_budget <= 4096.0) {
            return Err(invalid(
                "memory_budget",
                format!("must be between 0.01 and 4096 GiB, found {}", self.memory_budget),
            ));
        }
        if !(0.0..1.0).contains(&self.weight_decay) {
            return Err(invalid("weight_decay", format!("must be in [0, 1), found {}", self.weight_decay)));
        }
        if let Some(clip) = self.gradient_clip
            && !(clip.norm > 0.0 && clip.norm.is_finite())
        {
            return Err(invalid("gradient_clip.norm", format!("must be a positive number, found {}", clip.norm)));
        }
        if let Some(stop) = self.early_stopping
            && !(stop.min_delta >= 0.0 && stop.min_delta.is_finite())
        {
            return Err(invalid(
                "early_stopping.min_delta",
                format!("must be 0 or a positive number, found {}", stop.min_delta),
            ));
        }
        if let ClassWeights::Explicit(map) = &self.class_weights
            && let Some((class, w)) = map.iter().find(|(_, w)| !(**w > 0.0 && w.is_finite()))
        {
            return Err(invalid(&format!("class_weights.{class}"), format!("must be a positive number, found {w}")));
        }
        Ok(())
    }

    /// Epochs over all phases.
    pub fn total_epochs(&self) -> u32 {
        self.phases.iter().map(|p| p.epochs).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balanced_weights_follow_the_tutorial_formula() {
        // tutorial data: 1,424 NORMAL and 3,846 PNEUMONIA -> total / (2 x count)
        let classes = vec!["NORMAL".to_string(), "PNEUMONIA".to_string()];
        let w = ClassWeights::Balanced.resolve(&classes, &[1424, 3846]).unwrap().unwrap();
        // one float64 division each: 1e-16 of values near 1
        assert!((w[0] - 5270.0 / 2848.0).abs() < 1e-12 && (w[1] - 5270.0 / 7692.0).abs() < 1e-12);
        let explicit = ClassWeights::Explicit([("PNEUMONIA".to_string(), 0.5)].into());
        assert_eq!(explicit.resolve(&classes, &[1, 1]).unwrap(), Some(vec![1.0, 0.5]));
        let wrong = ClassWeights::Explicit([("PNEUMONIE".to_string(), 0.5)].into());
        assert!(wrong.resolve(&classes, &[1, 1]).unwrap_err().to_string().contains("NORMAL, PNEUMONIA"));
    }

    #[test]
    fn defaults_resolve_per_model_kind() {
        let cnn = TrainRecipe::default().resolve(&ModelSettings::default()).unwrap();
        let p = &cnn.phases[0];
        assert_eq!((cnn.phases.len(), p.epochs, cnn.batch_size, p.learning_rate), (1, 15, 10, 0.001));
        let sgd = TrainRecipe { optimizer: Some(OptimizerName::Sgd), ..Default::default() };
        assert_eq!(sgd.resolve(&ModelSettings::default()).unwrap().phases[0].learning_rate, 0.01);
        let unet = TrainRecipe::default().resolve(&ModelSettings::Unet(Default::default())).unwrap();
        assert_eq!((unet.phases[0].learning_rate, unet.batch_size), (1e-4, 8));
        let transfer = TrainRecipe::default().resolve(&ModelSettings::Transfer(Default::default())).unwrap();
        let phases = transfer.phases;
        assert_eq!((phases[0].epochs, phases[1].epochs, transfer.batch_size), (4, 20, 6));
        assert_eq!((phases[0].learning_rate, phases[1].learning_rate), (0.001, 1e-4));
    }

    #[test]
    fn single_phase_keys_and_phases_do_not_mix() {
        let phase = Phase {
            name: "a".into(),
            epochs: 1,
            optimizer: OptimizerName::Adam,
            learning_rate: LearningRate::Auto,
            trainable: Trainable::All,
            schedule: None,
            warmup_epochs: None,
        };
        let both = TrainRecipe { epochs: Some(3), phases: Some(vec![phase]), ..Default::default() };
        assert_eq!(both.resolve(&ModelSettings::default()).unwrap_err().key, "train.epochs");
        let transfer = TrainRecipe { epochs: Some(3), ..Default::default() };
        assert_eq!(transfer.resolve(&ModelSettings::Transfer(Default::default())).unwrap_err().key, "train.epochs");
        let zero = TrainRecipe { epochs: Some(0), ..Default::default() };
        assert_eq!(
            zero.resolve(&ModelSettings::default()).unwrap_err().to_string(),
            "`train.epochs` must be at least 1"
        );
    }
}
