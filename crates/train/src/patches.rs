//! Volume patches as [`TrainingData`]: the run's stored training cases cut into the
//! patches of [`PatchPlan`] (each epoch sees every training case once, or as many
//! batches as `train.iterations_per_epoch` says; batches and their
//! augmentation drawn from (seed, epoch, batch), so a resumed run goes on with the same
//! patches), and the validation cases into fixed patches, not augmented, the same every
//! epoch, each case once, with the same share forced onto a label. For classification
//! (`cnn3d`) the same, with whole cases cropped or padded about their centre instead of
//! patches and each case's class as its target.

use std::sync::Arc;

use radrun_data::volume_store::{PatchPlan, StoredCase};
use radrun_data::{Batches, Task};

use crate::fit::{FitConfig, HostBatch, TrainingData};
use crate::sliding_window::SlidingWindow;

/// The epoch validation patches are drawn from (training epochs count from 1).
const VALIDATION_EPOCH: u64 = 0;

/// A volume run's stored cases and how patches are cut from them.
#[derive(Debug, Clone)]
pub struct VolumePatches {
    pub train: Arc<[StoredCase]>,
    pub validation: Arc<[StoredCase]>,
    /// Classification when it cuts whole cases ([`PatchPlan::centred`]), each stored
    /// case with its class; segmentation otherwise.
    pub plan: PatchPlan,
    /// Labels with the background (segmentation), or classes.
    pub labels: usize,
    /// `eval.val_mode = "volumes"`: the window validation segments whole cases by.
    pub whole_validation: Option<SlidingWindow>,
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
            let batch = plan.batch(&cases, epoch, start + i);
            match plan.centred {
                true => {
                    let classes = batch.cases.iter().map(|&(c, _)| class_of(&cases[c])).collect();
                    HostBatch::volume_classes(batch, classes, device)
                }
                false => HostBatch::patches(batch, device),
            }
        })
    }
}

/// A stored case's class as a target.
fn class_of(case: &StoredCase) -> i64 {
    case.class.expect("the cases of a classification run are stored with their class") as i64
}

impl TrainingData for VolumePatches {
    fn task(&self) -> Task {
        if self.plan.centred { Task::Classification } else { Task::Segmentation }
    }

    fn classes(&self) -> usize {
        self.labels
    }

    fn training(&self, config: &FitConfig, epoch: u32, start_batch: usize) -> Batches<HostBatch> {
        Self::batches(&self.train, self.plan.clone(), u64::from(epoch), start_batch, config)
    }

    fn validation(&self, config: &FitConfig) -> Batches<HostBatch> {
        // validation patches are not augmented
        Self::batches(
            &self.validation,
            PatchPlan { augment: None, iterations: 0, ..self.plan.clone() },
            VALIDATION_EPOCH,
            0,
            config,
        )
    }

    fn validation_volumes(&self) -> Option<(&[StoredCase], &SlidingWindow)> {
        self.whole_validation.as_ref().map(|window| (&self.validation[..], window))
    }
}
