//! Training controls a recipe can add: learning-rate schedules with warm-up, early
//! stopping on any validation metric, gradient clipping; and the patience counter that
//! early stopping and the plateau schedule share. Their state lives in
//! the train crate's `Progress`, so a resumed run continues them where they were.

use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use radrun_metrics::EpochRecord;

/// A validation metric a control watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    ValLoss,
    ValAccuracy,
    /// Segmentation only.
    ValDice,
    /// Segmentation only.
    ValIou,
}

impl Metric {
    /// The metric's value in an epoch's record (NaN when the task has none).
    pub fn of(self, record: &EpochRecord) -> f64 {
        match self {
            Metric::ValLoss => record.val_loss,
            Metric::ValAccuracy => record.val_accuracy,
            Metric::ValDice => record.val_dice.unwrap_or(f64::NAN),
            Metric::ValIou => record.val_iou.unwrap_or(f64::NAN),
        }
    }

    /// Losses improve downwards, everything else upwards.
    pub fn natural_mode(self) -> Mode {
        match self {
            Metric::ValLoss => Mode::Min,
            Metric::ValAccuracy | Metric::ValDice | Metric::ValIou => Mode::Max,
        }
    }

    /// The name as written in a recipe and in metrics.csv.
    pub fn name(self) -> &'static str {
        match self {
            Metric::ValLoss => "val_loss",
            Metric::ValAccuracy => "val_accuracy",
            Metric::ValDice => "val_dice",
            Metric::ValIou => "val_iou",
        }
    }
}

/// Whether smaller or larger values are better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Min,
    Max,
}

/// Whether early stopping ends the phase (the next phase still trains) or the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    #[default]
    Phase,
    Run,
}

/// `train.early_stopping = { metric = "val_loss", mode = "min", patience = 5, min_delta = 0 }`:
/// training stops after `patience` epochs in a row without an improvement larger than
/// `min_delta`. Keras' `EarlyStopping` rule; `mode` defaults to the metric's natural one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct EarlyStopping {
    pub metric: Metric,
    /// Filled in from the metric when the recipe leaves it out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    pub patience: u32,
    pub min_delta: f64,
    /// "phase" (default): each phase stops on its own; "run": the first stop ends training.
    pub scope: Scope,
}

impl Default for EarlyStopping {
    fn default() -> Self {
        Self { metric: Metric::ValLoss, mode: None, patience: 5, min_delta: 0.0, scope: Scope::Phase }
    }
}

impl EarlyStopping {
    pub fn mode(&self) -> Mode {
        self.mode.unwrap_or_else(|| self.metric.natural_mode())
    }
}

/// `train.gradient_clip = { norm = 1.0 }`: the gradients of all trainable parameters
/// are scaled together so that their joint L2 norm is at most `norm` (PyTorch's
/// `clip_grad_norm_`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GradientClip {
    pub norm: f64,
}

/// How the learning rate changes from epoch to epoch within a phase, after its warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Schedule {
    /// The phase's rate throughout (the tutorial's).
    #[default]
    Constant,
    /// Multiplied by `factor` every `every` epochs.
    Step { every: u32, factor: f64 },
    /// Cosine annealing from the phase's rate down towards `min` over the phase's epochs.
    Cosine {
        #[serde(default)]
        min: f64,
    },
    /// Multiplied by `factor` (not below `min`) when `val_loss` has not improved for
    /// `patience` epochs (Keras' `ReduceLROnPlateau`, min_delta 0).
    Plateau {
        #[serde(default = "plateau_patience")]
        patience: u32,
        #[serde(default = "plateau_factor")]
        factor: f64,
        #[serde(default)]
        min: f64,
    },
}

fn plateau_patience() -> u32 {
    3
}

fn plateau_factor() -> f64 {
    0.5
}

/// The schema of the forms [`deserialize_schedule`] reads.
pub(crate) fn schedule_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let table = generator.subschema_for::<Schedule>();
    schemars::json_schema!({ "anyOf": [{ "enum": ["constant", "cosine", "plateau"] }, table] })
}

/// The schedule as a recipe writes it: a name (`"constant"`, `"cosine"`) or a table
/// with `kind`.
pub(crate) fn deserialize_schedule<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Schedule>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Schedule;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(
                "\"constant\", \"cosine\", or a table such as { kind = \"step\", every = 10, factor = 0.1 }, \
                 { kind = \"cosine\", min = 1e-6 } or { kind = \"plateau\", patience = 3, factor = 0.5 }",
            )
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Schedule, E> {
            match v {
                "constant" => Ok(Schedule::Constant),
                "cosine" => Ok(Schedule::Cosine { min: 0.0 }),
                "plateau" => Ok(Schedule::Plateau { patience: plateau_patience(), factor: plateau_factor(), min: 0.0 }),
                "step" => Err(E::custom("\"step\" needs its values: { kind = \"step\", every = 10, factor = 0.1 }")),
                other => Err(E::custom(format!(
                    "unknown schedule \"{other}\"; use \"constant\", \"cosine\", \"plateau\" or {{ kind = \"step\", \
                     every = 10, factor = 0.1 }}"
                ))),
            }
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Schedule, A::Error> {
            Schedule::deserialize(de::value::MapAccessDeserializer::new(map))
        }
    }
    d.deserialize_any(V).map(Some)
}

impl Schedule {
    /// The rate of epoch `index` (from 0) of a phase of `epochs` epochs whose rate is
    /// `base`: a linear warm-up over the first `warmup` epochs (epoch i at
    /// `base (i + 1) / (warmup + 1)`), then the schedule counted from the end of the
    /// warm-up. `plateau_scale` is the plateau schedule's current factor.
    pub fn learning_rate(&self, base: f64, warmup: u32, epochs: u32, index: u32, plateau_scale: f64) -> f64 {
        if index < warmup {
            return base * f64::from(index + 1) / f64::from(warmup + 1);
        }
        let (k, n) = (index - warmup, epochs.saturating_sub(warmup).max(1));
        match *self {
            Schedule::Constant => base,
            Schedule::Step { every, factor } => base * factor.powi((k / every.max(1)) as i32),
            Schedule::Cosine { min } => {
                min + (base - min) * (1.0 + (std::f64::consts::PI * f64::from(k) / f64::from(n)).cos()) / 2.0
            }
            Schedule::Plateau { min, .. } => (base * plateau_scale).max(min),
        }
    }

    /// Checks the values against the phase's rate `base`.
    pub(crate) fn check(&self, base: f64) -> Result<(), String> {
        match *self {
            Schedule::Constant => Ok(()),
            Schedule::Step { every, factor } => {
                if every == 0 {
                    return Err("`every` must be at least 1 epoch".into());
                }
                check_factor(factor)
            }
            Schedule::Cosine { min } => check_min(min, base),
            Schedule::Plateau { factor, min, .. } => check_factor(factor).and_then(|()| check_min(min, base)),
        }
    }
}

fn check_factor(factor: f64) -> Result<(), String> {
    if factor > 0.0 && factor < 1.0 { Ok(()) } else { Err(format!("`factor` must be in (0, 1), found {factor}")) }
}

fn check_min(min: f64, base: f64) -> Result<(), String> {
    if (0.0..base).contains(&min) {
        Ok(())
    } else {
        Err(format!("`min` must be at least 0 and below the learning rate {base}, found {min}"))
    }
}

/// Epochs without improvement of a watched metric. Non-finite values never improve.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Patience {
    /// The best finite value so far.
    pub best: Option<f64>,
    /// Epochs since it was reached.
    pub waited: u32,
}

impl Patience {
    /// Counts one epoch's value; true when it improved on the best by more than `min_delta`.
    pub fn observe(&mut self, value: f64, mode: Mode, min_delta: f64) -> bool {
        let improved = value.is_finite()
            && self.best.is_none_or(|best| match mode {
                Mode::Min => value < best - min_delta,
                Mode::Max => value > best + min_delta,
            });
        if improved {
            self.best = Some(value);
            self.waited = 0;
        } else {
            self.waited += 1;
        }
        improved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_follow_their_formulas() {
        // float64 rates of at most 1 from a power, a cosine or a few products: each of a few
        // roundings is at most 1.1e-16
        let close = |a: f64, b: f64| assert!((a - b).abs() < 1e-15, "{a} != {b}");
        let step = Schedule::Step { every: 2, factor: 0.1 };
        let rates: Vec<f64> = (0..5).map(|i| step.learning_rate(1.0, 0, 5, i, 1.0)).collect();
        for (got, want) in rates.iter().zip([1.0, 1.0, 0.1, 0.1, 0.01]) {
            close(*got, want);
        }
        // cosine over 4 epochs: 1, (1 + cos(pi/4))/2, 1/2, (1 + cos(3pi/4))/2 above min 0
        let cosine = Schedule::Cosine { min: 0.0 };
        close(cosine.learning_rate(1.0, 0, 4, 2, 1.0), 0.5);
        close(cosine.learning_rate(1.0, 0, 4, 1, 1.0), (1.0 + (std::f64::consts::PI / 4.0).cos()) / 2.0);
        // two warm-up epochs at 1/3 and 2/3, then the schedule starts from its beginning
        close(cosine.learning_rate(0.3, 2, 6, 0, 1.0), 0.1);
        close(cosine.learning_rate(0.3, 2, 6, 1, 1.0), 0.2);
        close(cosine.learning_rate(0.3, 2, 6, 2, 1.0), 0.3);
        let plateau = Schedule::Plateau { patience: 1, factor: 0.5, min: 0.2 };
        close(plateau.learning_rate(1.0, 0, 5, 3, 0.25), 0.25);
        close(plateau.learning_rate(1.0, 0, 5, 3, 0.125), 0.2);
    }

    #[test]
    fn patience_ignores_non_finite_values() {
        let mut p = Patience::default();
        assert!(!p.observe(f64::NAN, Mode::Min, 0.0));
        assert!(p.observe(1.0, Mode::Min, 0.0));
        assert!(!p.observe(0.95, Mode::Min, 0.1), "an improvement below min_delta does not count");
        assert!(!p.observe(f64::INFINITY, Mode::Min, 0.0));
        assert_eq!((p.best, p.waited), (Some(1.0), 2));
        assert!(p.observe(0.5, Mode::Min, 0.1));
        assert!(Patience::default().observe(0.7, Mode::Max, 0.0));
    }
}
