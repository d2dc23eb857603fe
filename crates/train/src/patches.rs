//! Volume patches as [`TrainingData`]: the run's stored training cases cut into the
//! patches of [`PatchPlan`] (each epoch sees every training case once, or as many
//! batches as `train.iterations_per_epoch` says; batches and their
//! augmentation drawn from (seed, epoch, batch), so a resumed run goes on with the same
//! patches), and the validation cases into fixed patches, not augmented, the same every
//! epoch, each case once, with the same share forced onto a label.

use std::sync::Arc;

use radrun_data::volume_store::{PatchPlan, StoredCase};
use radrun_data::{Batches, Task};

use crate::fit::{FitConfig, HostBatch, TrainingData};

/// The epoch validation patches are drawn from (training epochs count from 1).
const VALIDATION_EPOCH: u64 = 0;

/// A segmentation run's stored cases and how patches are cut from them.
#[derive(Debug, Clone)]
pub struct VolumePatches {
    pub train: Arc<[StoredCase]>,
    pub validation: Arc<[StoredCase]>,
    pub plan: PatchPlan,
    /// Labels with the background.
    pub labels: usize,
}

impl VolumePatches {
    fn batches(
        cases: &Arc<[StoredCase]>,
        plan: PatchPlan,
        epoch: u64,
        start: usize,
        config: &FitConfig,
    ) -> Batches<HostBatch> {
        let (cases, device) = (Arc::clone(cases), config.device);
        let total = plan.batches_per_epoch(cases.len());
        Batches::spawn(total.saturating_sub(start), move |i| {
            HostBatch::patches(plan.batch(&cases, epoch, start + i), device)
        })
    }
}

impl TrainingData for VolumePatches {
    fn task(&self) -> Task {
        Task::Segmentation
    }

    fn classes(&self) -> usize {
        self.labels
    }

    fn training(&self, config: &FitConfig, epoch: u32, start_batch: usize) -> Batches<HostBatch> {
        Self::batches(&self.train, self.plan, u64::from(epoch), start_batch, config)
    }

    fn validation(&self, config: &FitConfig) -> Batches<HostBatch> {
        // validation patches are not augmented
        Self::batches(
            &self.validation,
            PatchPlan { augment: None, iterations: 0, ..self.plan },
            VALIDATION_EPOCH,
            0,
            config,
        )
    }
}
