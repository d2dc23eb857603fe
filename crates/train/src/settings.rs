//! The `[train]` section of a recipe: optimizer, learning rate, epochs or phases, batch
//! size, class weights, loss, seed and device, with the tutorial's defaults per model kind.

use std::collections::BTreeMap;
use std::fmt;

use radrun_models::ModelSettings;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

/// Optimizers the tutorial offered, with Keras' update rules (see [`crate::optim`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
        if self == OptimizerName::Sgd { 0.01 } else { 0.001 }
    }
}

/// A learning rate, or `"auto"`: the optimizer's Keras default (the tutorial's `None`),
/// except for the U-Net whose tutorial default is Adam at 1e-4.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LearningRate {
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
    pub fn resolve(&self, classes: &[String], counts: &[usize]) -> Result<Option<Vec<f64>>, Error> {
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Keep {
    /// The epoch with the lowest validation loss.
    BestValidationLoss,
    /// The last epoch.
    Last,
}

/// Loss functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
}

/// What a phase trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trainable {
    /// Everything.
    All,
    /// Only the new head; the backbone is frozen (its batch norms in inference mode).
    Head,
    /// The tutorial's per-backbone unfreezing (see `Backbone::tutorial_frozen`).
    Tutorial,
}

/// One phase of training with its own optimizer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseSettings {
    /// Written in metrics.csv's `phase` column.
    pub name: String,
    /// 0 skips the phase.
    pub epochs: u32,
    pub optimizer: OptimizerName,
    #[serde(default = "auto_rate")]
    pub learning_rate: LearningRate,
    #[serde(default = "all")]
    pub trainable: Trainable,
}

fn auto_rate() -> LearningRate {
    LearningRate::Auto
}

fn all() -> Trainable {
    Trainable::All
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

/// The `[train]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSettings {
    /// Epochs (single-phase models). Default 15 (the tutorial's CNN).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epochs: Option<u32>,
    /// Default: adam.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub optimizer: Option<OptimizerName>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learning_rate: Option<LearningRate>,
    /// Default 10 (CNN), 6 (transfer), 8 (U-Net).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<u32>,
    /// SGD/RMSprop momentum (0 = Keras' default).
    pub momentum: f64,
    /// SGD Nesterov momentum.
    pub nesterov: bool,
    /// RMSprop decay rate (Keras' 0.9).
    pub rho: f64,
    pub class_weights: ClassWeights,
    /// Classification: target smoothing epsilon (0 = off).
    pub label_smoothing: f64,
    pub loss: LossName,
    /// Seeds weight initialisation, dropout, shuffling and augmentation.
    pub seed: u64,
    pub device: DeviceChoice,
    pub keep: Keep,
    /// CPU threads for libtorch (0 = all cores).
    pub threads: u32,
    /// Multi-phase training (transfer learning). When set, `epochs`, `optimizer` and
    /// `learning_rate` above are not used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phases: Option<Vec<PhaseSettings>>,
}

impl Default for TrainSettings {
    fn default() -> Self {
        Self {
            epochs: None,
            optimizer: None,
            learning_rate: None,
            batch_size: None,
            momentum: 0.0,
            nesterov: false,
            rho: 0.9,
            class_weights: ClassWeights::None,
            label_smoothing: 0.0,
            loss: LossName::Auto,
            seed: 42,
            device: DeviceChoice::Auto,
            keep: Keep::BestValidationLoss,
            threads: 0,
            phases: None,
        }
    }
}

fn invalid(key: &str, message: String) -> Error {
    Error::InvalidSetting { key: format!("train.{key}"), message }
}

impl TrainSettings {
    /// Fills every default that depends on the model kind, so that the resolved recipe
    /// states exactly what ran, and checks the values.
    pub fn resolve(&mut self, model: &ModelSettings) -> Result<(), Error> {
        let unet = matches!(model, ModelSettings::Unet(_));
        let transfer = matches!(model, ModelSettings::Transfer(_));
        self.batch_size.get_or_insert(if transfer {
            6
        } else if unet {
            8
        } else {
            10
        });
        if transfer && self.phases.is_none() {
            if self.epochs.is_some() || self.optimizer.is_some() {
                return Err(invalid(
                    "epochs",
                    "transfer models train in phases: use [[train.phases]] (name, epochs, optimizer, \
                     learning_rate, trainable) instead of train.epochs / train.optimizer"
                        .into(),
                ));
            }
            self.phases = Some(vec![
                PhaseSettings {
                    name: "frozen".into(),
                    epochs: 4,
                    optimizer: OptimizerName::Adam,
                    learning_rate: LearningRate::Auto,
                    trainable: Trainable::Head,
                },
                PhaseSettings {
                    name: "fine_tune".into(),
                    epochs: 20,
                    optimizer: OptimizerName::Rmsprop,
                    learning_rate: LearningRate::Value(1e-4),
                    trainable: Trainable::Tutorial,
                },
            ]);
        }
        let default_rate = |o: OptimizerName| if unet { 1e-4 } else { o.keras_learning_rate() };
        match &mut self.phases {
            Some(phases) => {
                if let Some(key) = [
                    ("epochs", self.epochs.is_some()),
                    ("optimizer", self.optimizer.is_some()),
                    ("learning_rate", self.learning_rate.is_some()),
                ]
                .iter()
                .find_map(|(k, set)| set.then_some(*k))
                {
                    return Err(invalid(
                        key,
                        "is set together with [[train.phases]]; set it in each phase instead".into(),
                    ));
                }
                if phases.is_empty() {
                    return Err(invalid("phases", "must list at least one phase".into()));
                }
                for (i, p) in phases.iter_mut().enumerate() {
                    if p.learning_rate == LearningRate::Auto {
                        p.learning_rate = LearningRate::Value(default_rate(p.optimizer));
                    }
                    if !transfer && p.trainable != Trainable::All {
                        return Err(invalid(
                            &format!("phases.{i}.trainable"),
                            format!("\"{:?}\" needs a transfer model; use \"all\"", p.trainable).to_lowercase(),
                        ));
                    }
                }
            }
            None => {
                self.epochs.get_or_insert(15);
                let optimizer = *self.optimizer.get_or_insert(OptimizerName::Adam);
                if matches!(self.learning_rate, None | Some(LearningRate::Auto)) {
                    self.learning_rate = Some(LearningRate::Value(default_rate(optimizer)));
                }
            }
        }
        self.validate()
    }

    fn validate(&self) -> Result<(), Error> {
        let rate_ok = |r: Option<LearningRate>| match r {
            Some(LearningRate::Value(v)) => v > 0.0 && v < 10.0,
            _ => true,
        };
        if !rate_ok(self.learning_rate) {
            return Err(invalid(
                "learning_rate",
                format!("must be between 0 and 10 (exclusive), found {:?}", self.learning_rate),
            ));
        }
        if let Some(phases) = &self.phases {
            for (i, p) in phases.iter().enumerate() {
                if !rate_ok(Some(p.learning_rate)) {
                    return Err(invalid(
                        &format!("phases.{i}.learning_rate"),
                        format!("must be between 0 and 10 (exclusive), found {:?}", p.learning_rate),
                    ));
                }
            }
            if phases.iter().all(|p| p.epochs == 0) {
                return Err(invalid("phases", "every phase has 0 epochs: nothing would be trained".into()));
            }
        }
        if self.epochs == Some(0) {
            return Err(invalid("epochs", "must be at least 1".into()));
        }
        match self.batch_size {
            Some(b) if (1..=4096).contains(&b) => {}
            other => return Err(invalid("batch_size", format!("must be between 1 and 4096, found {other:?}"))),
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
        if let ClassWeights::Explicit(map) = &self.class_weights
            && let Some((class, w)) = map.iter().find(|(_, w)| !(**w > 0.0 && w.is_finite()))
        {
            return Err(invalid(&format!("class_weights.{class}"), format!("must be a positive number, found {w}")));
        }
        Ok(())
    }

    /// The phases to run: the recipe's, or one phase from `epochs`, `optimizer` and
    /// `learning_rate`. Call after [`TrainSettings::resolve`].
    pub fn phases(&self) -> Vec<PhaseSettings> {
        self.phases.clone().unwrap_or_else(|| {
            vec![PhaseSettings {
                name: "train".into(),
                epochs: self.epochs.unwrap_or(15),
                optimizer: self.optimizer.unwrap_or(OptimizerName::Adam),
                learning_rate: self.learning_rate.unwrap_or(LearningRate::Auto),
                trainable: Trainable::All,
            }]
        })
    }

    /// Batch size after resolution.
    pub fn batch(&self) -> usize {
        self.batch_size.unwrap_or(10) as usize
    }
}

impl LearningRate {
    /// The value (after resolution "auto" no longer occurs).
    pub fn value(self, optimizer: OptimizerName) -> f64 {
        match self {
            LearningRate::Value(v) => v,
            LearningRate::Auto => optimizer.keras_learning_rate(),
        }
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
        assert!((w[0] - 5270.0 / 2848.0).abs() < 1e-12 && (w[1] - 5270.0 / 7692.0).abs() < 1e-12);
        let explicit = ClassWeights::Explicit([("PNEUMONIA".to_string(), 0.5)].into());
        assert_eq!(explicit.resolve(&classes, &[1, 1]).unwrap(), Some(vec![1.0, 0.5]));
        let wrong = ClassWeights::Explicit([("PNEUMONIE".to_string(), 0.5)].into());
        assert!(wrong.resolve(&classes, &[1, 1]).unwrap_err().to_string().contains("NORMAL, PNEUMONIA"));
    }

    #[test]
    fn defaults_resolve_per_model_kind() {
        let mut cnn = TrainSettings::default();
        cnn.resolve(&ModelSettings::default()).unwrap();
        assert_eq!(
            (cnn.epochs, cnn.batch_size, cnn.learning_rate),
            (Some(15), Some(10), Some(LearningRate::Value(0.001)))
        );
        let mut sgd = TrainSettings { optimizer: Some(OptimizerName::Sgd), ..Default::default() };
        sgd.resolve(&ModelSettings::default()).unwrap();
        assert_eq!(sgd.learning_rate, Some(LearningRate::Value(0.01)));
        let mut unet = TrainSettings::default();
        unet.resolve(&ModelSettings::Unet(Default::default())).unwrap();
        assert_eq!(unet.learning_rate, Some(LearningRate::Value(1e-4)));
        let mut transfer = TrainSettings::default();
        transfer.resolve(&ModelSettings::Transfer(Default::default())).unwrap();
        let phases = transfer.phases.unwrap();
        assert_eq!((phases[0].epochs, phases[1].epochs, transfer.batch_size), (4, 20, Some(6)));
        assert_eq!(phases[0].learning_rate, LearningRate::Value(0.001));
        assert_eq!(phases[1].learning_rate, LearningRate::Value(1e-4));
    }
}
