//! Networks for radrun: builds the model of a recipe's `[model]` section (the tutorial's
//! CNN, ImageNet backbones with a transfer head, U-Net) on libtorch through tch, and reads
//! and writes weight files. It knows nothing of datasets or files beyond weights.

pub mod backbones;
pub mod catalogue;
pub mod cnn;
pub mod layers;
pub mod network;
mod pth;
pub mod settings;
pub mod transfer;
pub mod unet;
pub mod weights;

use std::path::PathBuf;

pub use catalogue::{Backbone, BackboneFacts, WeightsSource};
pub use network::{ModelSummary, Network, SummaryRow};
pub use settings::{
    Activation, CnnSettings, ModelSettings, Normalize, TransferSettings, UnetSettings, Upsampling, Weights,
};

/// Errors from building networks and reading weights.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Setting(#[from] radrun_data::SettingError),
    #[error("weights file {}: {message}", radrun_data::paths::path_text(path))]
    Weights { path: PathBuf, message: String },
    /// A safetensors file whose tensors do not match the checksum radrun wrote with them
    /// (see [`weights`]).
    #[error(
        "weights file {} is damaged: its tensors do not match the SHA-256 written with them (`{}` in its \
         header), so the file changed after radrun wrote it (a disk, copy or transfer error); copy it again \
         from a good copy, or train the run that wrote it again",
        radrun_data::paths::path_text(path),
        weights::CHECKSUM_KEY
    )]
    Damaged { path: PathBuf },
}
