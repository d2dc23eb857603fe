//! Training for radrun: runs phases of epochs over a dataset's batches with Keras-style
//! optimizers, losses and class weights, validates each epoch, keeps the best weights,
//! predicts on a split and computes evaluation metrics. Progress is reported through
//! [`fit::Observer`]; where results go is the runner's business.

pub mod device;
pub mod fit;
pub mod gradcam;
pub mod loss;
pub mod optim;
pub mod patches;
pub mod precision;
pub mod predict;
pub mod sliding_window;

pub use fit::{Checkpoint, FitConfig, FitOutcome, Observer, Progress, Snapshot, fit};

/// Errors of training.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Setting(#[from] radrun_data::SettingError),
    #[error(
        "the loss became NaN or infinite in epoch {epoch} (phase \"{phase}\"): lower the learning \
         rate, or check the images for extreme values"
    )]
    NonFiniteLoss { epoch: u32, phase: String },
    #[error(
        "training was stopped in epoch {epoch}; its checkpoint was written, and running the same command again goes on from there"
    )]
    Interrupted { epoch: u32 },
    #[error("{0}")]
    Device(String),
}
