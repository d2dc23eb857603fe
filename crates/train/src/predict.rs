//! Inference over a split: class probabilities or predicted label masks, in file order,
//! and the probabilities of a network's outputs (shared by `radrun predict`, its
//! ensembles and the TorchScript export, so all three give the same numbers).

use radrun_data::{Dataset, Split, Task, epoch_batches};
use radrun_models::Network;
use tch::{Device, Kind, Tensor};

use crate::fit::{batch_tensors, plain_batches};

fn to_vec_f32(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.to_kind(Kind::Float).flatten(0, -1).to_device(Device::Cpu)).expect("float tensor")
}

/// Probabilities from a network's outputs (logits) for `task`: softmax over the classes
/// (one class per image, or per pixel of a label map), each label's sigmoid (multi-label),
/// or the sigmoid of a one-map segmentation.
pub fn probabilities(logits: &Tensor, task: Task) -> Tensor {
    let sigmoid = match task {
        Task::Multilabel => true,
        Task::Classification => false,
        Task::Segmentation => logits.size()[1] == 1,
    };
    if sigmoid { logits.sigmoid() } else { logits.softmax(1, Kind::Float) }
}

/// One row of probabilities per image from `[n, classes]`.
pub fn class_rows(probabilities: &Tensor) -> Vec<Vec<f32>> {
    if probabilities.numel() == 0 {
        return Vec::new();
    }
    let classes = probabilities.size()[1] as usize;
    to_vec_f32(probabilities).chunks(classes).map(<[f32]>::to_vec).collect()
}

/// One label mask per image (row-major) from segmentation probabilities `[n, maps, h, w]`:
/// above 0.5 on one map, else the most probable label.
pub fn label_masks(probabilities: &Tensor) -> Vec<Vec<u8>> {
    if probabilities.numel() == 0 {
        return Vec::new();
    }
    let size = probabilities.size();
    let labels = if size[1] == 1 { probabilities.squeeze_dim(1).gt(0.5) } else { probabilities.argmax(1, false) };
    let plane = (size[2] * size[3]) as usize;
    to_vec_f32(&labels).into_iter().map(|v| v as u8).collect::<Vec<u8>>().chunks(plane).map(<[u8]>::to_vec).collect()
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
    /// The probabilities of each batch of `split`, in file order, on the CPU.
    fn batches(&self, split: &Split, mut each: impl FnMut(Tensor)) {
        tch::no_grad(|| {
            for batch in epoch_batches(split, plain_batches(self.dataset, self.batch_size, self.channels)) {
                let (x, _) = batch_tensors(&batch, self.device);
                each(probabilities(&self.network.forward(&x, false), self.dataset.task).to_device(Device::Cpu));
            }
        });
    }

    /// The probabilities of every image of `split` in one tensor on the CPU (`[n, classes]`
    /// or `[n, maps, h, w]`; empty for an empty split): what ensembles average.
    pub fn probabilities(&self, split: &Split) -> Tensor {
        let mut parts = Vec::new();
        self.batches(split, |p| parts.push(p));
        if parts.is_empty() { Tensor::zeros([0], (Kind::Float, Device::Cpu)) } else { Tensor::cat(&parts, 0) }
    }

    /// Class probabilities, one row per image of `split`: softmax (one class per
    /// image), or each label's sigmoid (multi-label).
    pub fn class_probabilities(&self, split: &Split) -> Vec<Vec<f32>> {
        let mut rows = Vec::with_capacity(split.len());
        self.batches(split, |p| rows.extend(class_rows(&p)));
        rows
    }

    /// Predicted label mask per image of `split` (see [`label_masks`]).
    pub fn masks(&self, split: &Split) -> Vec<Vec<u8>> {
        let mut out = Vec::with_capacity(split.len());
        self.batches(split, |p| out.extend(label_masks(&p)));
        out
    }
}
