//! What one epoch of training measured: a row of a run's metrics.csv, also kept in its
//! checkpoint.

use serde::{Deserialize, Serialize};

/// One row of metrics.csv.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Counted from 1 across phases.
    pub epoch: u32,
    pub phase: String,
    pub learning_rate: f64,
    #[serde(with = "nan_as_null")]
    pub train_loss: f64,
    /// Classification: images classified right; segmentation: pixels labelled right.
    #[serde(with = "nan_as_null")]
    pub train_accuracy: f64,
    #[serde(with = "nan_as_null")]
    pub val_loss: f64,
    #[serde(with = "nan_as_null")]
    pub val_accuracy: f64,
    /// Segmentation: mean Dice over validation images and foreground labels.
    pub val_dice: Option<f64>,
    pub val_iou: Option<f64>,
    /// Wall time of the epoch, training and validation.
    pub seconds: f64,
    /// Training images per second (augmentation, forward, backward, update).
    pub images_per_second: f64,
    /// Seconds the training loop waited for the next batch (decoding, augmentation):
    /// near `seconds`, the run is bound by its data, not by the device.
    #[serde(default)]
    pub data_wait_seconds: f64,
}

/// JSON has no NaN: a checkpoint writes it as null and reads null back as NaN.
mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() { s.serialize_f64(*v) } else { s.serialize_none() }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}
