//! Inference over a split: class probabilities or predicted label masks, in file order.

use radrun_data::{Dataset, Split, epoch_batches};
use radrun_models::Network;
use tch::{Device, Kind, Tensor};

use crate::fit::{batch_tensors, plain_batches};
use crate::loss::predicted_labels;

fn to_vec_f32(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.to_kind(Kind::Float).flatten(0, -1).to_device(Device::Cpu)).expect("float tensor")
}

/// Softmax probabilities, one row per image of `split`.
pub fn class_probabilities(network: &Network, dataset: &Dataset, split: &Split, batch_size: usize, channels: usize, device: Device) -> Vec<Vec<f32>> {
    let classes = dataset.classes.len();
    let mut rows = Vec::with_capacity(split.len());
    tch::no_grad(|| {
        for batch in epoch_batches(split, plain_batches(dataset, batch_size, channels)) {
            let (x, _) = batch_tensors(&batch, device);
            let p = to_vec_f32(&network.forward(&x, false).softmax(1, Kind::Float));
            rows.extend(p.chunks(classes).map(<[f32]>::to_vec));
        }
    });
    rows
}

/// Predicted label mask per image of `split` (threshold 0.5 on a sigmoid map, else
/// argmax), with the foreground probability map (the sigmoid, or 1 - P(background)).
pub fn predicted_masks(network: &Network, dataset: &Dataset, split: &Split, batch_size: usize, channels: usize, device: Device) -> Vec<(Vec<u8>, Vec<f32>)> {
    let plane = dataset.height * dataset.width;
    let mut out = Vec::with_capacity(split.len());
    tch::no_grad(|| {
        for batch in epoch_batches(split, plain_batches(dataset, batch_size, channels)) {
            let (x, _) = batch_tensors(&batch, device);
            let logits = network.forward(&x, false);
            let labels: Vec<u8> = to_vec_f32(&predicted_labels(&logits)).into_iter().map(|v| v as u8).collect();
            let foreground = if logits.size()[1] == 1 {
                logits.sigmoid()
            } else {
                1.0 - logits.softmax(1, Kind::Float).narrow(1, 0, 1)
            };
            let probability = to_vec_f32(&foreground);
            out.extend(labels.chunks(plane).zip(probability.chunks(plane)).map(|(l, p)| (l.to_vec(), p.to_vec())));
        }
    });
    out
}
