//! What a recipe's `[model]` and `[train]` sections say, resolved and checked: the model
//! kinds and the backbone catalogue, optimizers, learning rates, phases, schedules, early
//! stopping, and the weight files a recipe names (checked without loading them). Nothing
//! here touches libtorch, so `radrun plan`, `status` and the other light commands read a
//! recipe without it; the `models` crate builds networks from these settings and the
//! `train` crate trains by them.

pub mod catalogue;
pub mod controls;
pub mod model;
pub mod summary;
pub mod train;
pub mod unet3d;
pub mod weights_file;

pub use catalogue::{Backbone, BackboneFacts, WeightsSource};
pub use model::{
    Activation, CnnSettings, ModelSettings, Normalize, TransferSettings, UnetSettings, Upsampling, Weights,
};
pub use summary::{ModelSummary, SummaryRow};
pub use train::{
    ChannelsLast, ClassWeights, DeviceChoice, Keep, LearningRate, LossName, OptimizerName, Phase, PhaseRecipe,
    Precision, TrainRecipe, TrainSettings, Trainable,
};
pub use unet3d::{Norm, Stage, StagePlan, Unet3dSettings, deep_supervision_weights};
pub use weights_file::WeightsError;
