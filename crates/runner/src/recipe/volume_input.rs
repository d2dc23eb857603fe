//! What a volume run's network takes in, once its training cases are known: the patch
//! (`data.patch_size`, or "auto" from the median training shape within
//! `train.memory_budget`), the working grid's spacing and, for a 3D U-Net, its levels by
//! nnU-Net's rule. `radrun plan` prints it; training builds the network from it.

use std::fmt;

use radrun_data::volume_dataset::Preprocessing;
use radrun_data::volume_settings::PatchSize;
use radrun_data::volume_store::forced_patches;
use radrun_data::{DataSettings, SettingError};
use radrun_metrics::evaluate::{EvalSettings, ValMode};
use radrun_settings::{ModelSettings, StagePlan, TrainSettings};

/// A volume network's input.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeInput {
    /// Channels per voxel.
    pub channels: i64,
    /// `[z, y, x]` voxels.
    pub patch: [i64; 3],
    /// The working grid's spacing `[z, y, x]` mm.
    pub spacing: [f64; 3],
    /// The median training shape the patch came from (`data.patch_size = "auto"`).
    pub auto_from: Option<[i64; 3]>,
    /// The 3D U-Net's levels and its estimated training memory in bytes.
    pub unet: Option<(StagePlan, f64)>,
    /// The network kind.
    kind: &'static str,
    batch: u32,
    /// Patches of each training batch forced onto a label.
    forced: usize,
    /// What each epoch's validation reads (a U-Net's).
    val_mode: ValMode,
}

impl VolumeInput {
    /// The input of `model` for the cases `preprocessing` was fitted on
    /// (`data.normalize = "window"` makes one channel per window).
    pub fn resolve(
        model: &ModelSettings,
        data: &DataSettings,
        (train, eval): (&TrainSettings, &EvalSettings),
        preprocessing: &Preprocessing,
    ) -> Result<Self, SettingError> {
        let spacing = preprocessing.working_spacing_zyx();
        let median = preprocessing.median_shape_zyx().map(|s| s as i64);
        let channels = data.volume_channels(preprocessing.channels) as i64;
        let batch = i64::from(train.batch_size);
        let (patch, auto_from, unet) = match (model, data.patch_size) {
            (ModelSettings::Unet3d(s), size) => {
                let plan = match size {
                    PatchSize::Auto => s.auto_patch(median, spacing, channels, batch, train.memory_budget)?,
                    PatchSize::Voxels(v) => s.stages(v.map(|n| n as i64), spacing)?,
                };
                let bytes = s.training_bytes(&plan, channels, batch);
                let auto_from = (size == PatchSize::Auto).then_some(median);
                (plan.stages[0].size, auto_from, Some((plan, bytes)))
            }
            (ModelSettings::Cnn3d(s), size) => {
                // auto: the median shape, padded where the blocks need more
                let patch = match size {
                    PatchSize::Auto => median.map(|side| side.max(s.smallest_side())),
                    PatchSize::Voxels(v) => v.map(|n| n as i64),
                };
                s.validate_volume(patch)?;
                (patch, (size == PatchSize::Auto).then_some(median), None)
            }
            (other, _) => {
                other.validate_volume()?;
                unreachable!("validate_volume refuses 2D kinds")
            }
        };
        let forced = forced_patches(batch as usize, data.foreground_oversample);
        let (kind, batch, val_mode) = (model.kind(), train.batch_size, eval.val_mode);
        Ok(Self { channels, patch, spacing, auto_from, unet, kind, batch, forced, val_mode })
    }

    /// A batch's shape without its first axis: `[channels, z, y, x]`.
    pub fn input_shape(&self) -> [i64; 4] {
        let [z, y, x] = self.patch;
        [self.channels, z, y, x]
    }
}

fn axes(v: [i64; 3]) -> String {
    format!("{}x{}x{}", v[0], v[1], v[2])
}

impl fmt::Display for VolumeInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [z, y, x] = self.spacing;
        write!(
            f,
            "    {}: {} channel(s), patch {} [z, y, x] at {z:.2} x {y:.2} x {x:.2} mm",
            self.kind,
            self.channels,
            axes(self.patch)
        )?;
        if let Some(median) = self.auto_from {
            write!(f, " (auto, from the median training shape {})", axes(median))?;
        }
        match &self.unet {
            Some((plan, bytes)) => {
                let validation = match self.val_mode {
                    ValMode::Patches => "fixed patches of the validation cases",
                    ValMode::Volumes => "the validation cases whole, by sliding window",
                };
                writeln!(
                    f,
                    "; about {:.2} GiB of activations per batch of {} ({} forced onto a label); each epoch \
                     validates on {validation}",
                    bytes / f64::from(1u32 << 30),
                    self.batch,
                    self.forced
                )?;
                write!(f, "{plan}")
            }
            None => writeln!(f, "; each volume cropped or padded to it about its centre"),
        }
    }
}
