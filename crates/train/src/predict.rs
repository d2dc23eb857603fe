//! Inference over a split: class probabilities or predicted label masks, in file order,
//! and the probabilities of a network's outputs (shared by `radrun predict`, its
//! ensembles and the TorchScript export, so all three give the same numbers).

use radrun_data::{Dataset, Split, Task};
use radrun_metrics::evaluate::Predictions;
use radrun_models::Network;
use tch::{Device, Kind, Tensor};

use crate::fit::{device_batches, plain_batches};

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
fn class_rows(probabilities: &Tensor) -> Vec<Vec<f32>> {
    let classes = probabilities.size()[1] as usize;
    to_vec_f32(probabilities).chunks(classes).map(<[f32]>::to_vec).collect()
}

/// One label mask per image (row-major) from segmentation probabilities `[n, maps, h, w]`:
/// above 0.5 on one map, else the most probable label.
fn label_masks(probabilities: &Tensor) -> Vec<Vec<u8>> {
    let size = probabilities.size();
    let labels = if size[1] == 1 { probabilities.squeeze_dim(1).gt(0.5) } else { probabilities.argmax(1, false) };
    let plane = (size[2] * size[3]) as usize;
    to_vec_f32(&labels).into_iter().map(|v| v as u8).collect::<Vec<u8>>().chunks(plane).map(<[u8]>::to_vec).collect()
}

/// The class probabilities (softmax, averaged over `networks`) of whole volumes, each of
/// `blocks` one volume's channels `[c, z, y, x]` of `shape`.
pub fn volume_class_probabilities(
    networks: &[&Network],
    blocks: &[Vec<f32>],
    shape: [i64; 4],
    device: Device,
) -> Vec<Vec<f32>> {
    tch::no_grad(|| {
        let [c, z, y, x] = shape;
        let input = Tensor::from_slice(&blocks.concat()).view([blocks.len() as i64, c, z, y, x]).to_device(device);
        let sum = networks
            .iter()
            .map(|n| probabilities(&n.forward(&input, false), Task::Classification))
            .reduce(|sum, p| sum + p)
            .expect("a prediction has a network");
        class_rows(&(sum / networks.len() as f64).to_device(Device::Cpu))
    })
}

/// Trained networks (one, or an ensemble whose probabilities are averaged), the dataset
/// they were trained on, and how to feed them.
pub struct Predictor<'a> {
    pub networks: &'a [&'a Network],
    pub dataset: &'a Dataset,
    pub batch_size: usize,
    pub channels: usize,
    pub device: Device,
}

impl Predictor<'_> {
    /// The (mean) probabilities of each batch of `split`, in file order, on the CPU: one
    /// batch at a time, so an ensemble of segmentations holds one batch of maps.
    fn batches(&self, split: &Split, mut each: impl FnMut(Tensor)) {
        tch::no_grad(|| {
            let options = plain_batches(self.dataset, self.batch_size, self.channels);
            for host in device_batches(split, options, self.device, false) {
                let (x, _) = host.on_device();
                let mut networks =
                    self.networks.iter().map(|n| probabilities(&n.forward(&x, false), self.dataset.task));
                let first = networks.next().expect("a predictor has a network");
                let mean = match self.networks.len() {
                    1 => first,
                    n => networks.fold(first, |sum, p| sum + p) / n as f64,
                };
                each(mean.to_device(Device::Cpu));
            }
        });
    }
}

impl Predictions for Predictor<'_> {
    fn dataset(&self) -> &Dataset {
        self.dataset
    }

    fn class_probabilities(&self, split: &Split) -> Vec<Vec<f32>> {
        let mut rows = Vec::with_capacity(split.len());
        self.batches(split, |p| rows.extend(class_rows(&p)));
        rows
    }

    fn masks(&self, split: &Split) -> Vec<Vec<u8>> {
        let mut out = Vec::with_capacity(split.len());
        self.batches(split, |p| out.extend(label_masks(&p)));
        out
    }
}
