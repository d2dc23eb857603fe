//! Networks for radrun: builds the model a recipe's `[model]` section describes
//! (`radrun_settings::ModelSettings`: the tutorial's CNN, ImageNet backbones with a
//! transfer head, U-Net) on libtorch through tch, and reads and writes weight files. It
//! knows nothing of datasets or files beyond weights.

pub mod backbones;
pub mod cnn;
pub mod layers;
pub mod network;
mod pth;
pub mod transfer;
pub mod unet;
pub mod weights;

pub use network::Network;

/// Errors from building networks and reading weights.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Setting(#[from] radrun_data::SettingError),
    /// A weights file radrun cannot use (missing, of another format, or damaged).
    #[error(transparent)]
    File(#[from] radrun_settings::WeightsError),
}
