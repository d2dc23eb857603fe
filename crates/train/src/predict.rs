//! Inference over a split: class probabilities or predicted label masks, in file order.

use radrun_data::{Dataset, Split, epoch_batches};
use radrun_models::Network;
use tch::{Device, Kind, Tensor};

use crate::fit::{batch_tensors, plain_batches};
use crate::loss::predicted_labels;

fn to_vec_f32(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.to_kind(Kind::Float).flatten(0, -1).to_device(Device::Cpu)).expect("float tensor")
}

/// A trained network, the dataset it was trained on, and how to feed it.
pub struct Predictor<'a> {
    pub network: &'a Network,
    pub dataset: &'a Dataset,
    pub batch_size: usize,
    pub channels: usize,
    pub device: Device,
}

impl Predictor<'_> {
    /// The network's outputs (logits) for each batch of `split`, in file order.
    fn outputs(&self, split: &Split, mut each: impl FnMut(Tensor)) {
        tch::no_grad(|| {
            for batch in epoch_batches(split, plain_batches(self.dataset, self.batch_size, self.channels)) {
                let (x, _) = batch_tensors(&batch, self.device);
                each(self.network.forward(&x, false));
            }
        });
    }

    /// Class probabilities, one row per image of `split`: softmax (one class per
    /// image), or each label's sigmoid (multi-label).
    pub fn class_probabilities(&self, split: &Split) -> Vec<Vec<f32>> {
        let classes = self.dataset.classes.len();
        let multilabel = self.dataset.task == radrun_data::Task::Multilabel;
        let mut rows = Vec::with_capacity(split.len());
        self.outputs(split, |logits| {
            let p = to_vec_f32(&if multilabel { logits.sigmoid() } else { logits.softmax(1, Kind::Float) });
            rows.extend(p.chunks(classes).map(<[f32]>::to_vec));
        });
        rows
    }

    /// Predicted label mask per image of `split`: threshold 0.5 on a sigmoid map, else
    /// the most probable label.
    pub fn masks(&self, split: &Split) -> Vec<Vec<u8>> {
        let plane = self.dataset.height * self.dataset.width;
        let mut out = Vec::with_capacity(split.len());
        self.outputs(split, |logits| {
            let labels: Vec<u8> = to_vec_f32(&predicted_labels(&logits)).into_iter().map(|v| v as u8).collect();
            out.extend(labels.chunks(plane).map(<[u8]>::to_vec));
        });
        out
    }
}
