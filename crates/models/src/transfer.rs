//! The tutorial's `TransferLearning` network: an ImageNet backbone and a head of global
//! average pooling, Dense(256, ReLU), dropout and the output layer. The tutorial's heads
//! differed per backbone (a fixed 7x7 pooling for ResNet50 that only fit 224-pixel
//! images, flatten for MobileNetV2); global average pooling works at every input size, so
//! every backbone uses it. Gray inputs are repeated to 3 channels and normalised the way
//! the backbone's ImageNet weights expect.

use tch::{Kind, Tensor, nn};

use crate::backbones::Features;
use crate::layers::{WeightInit, dense};
use crate::network::{Body, Ctx};
use radrun_settings::{Normalize, TransferSettings};

/// Name of the head's variables (`head.dense.*`, `head.output.*`); everything else is
/// the backbone.
pub const HEAD: &str = "head";

#[derive(Debug)]
pub struct Transfer {
    backbone: Box<dyn Features>,
    /// (mean, std) as [1, 3, 1, 1] tensors, when normalising.
    normalize: Option<(Tensor, Tensor)>,
    dense: nn::Linear,
    output: nn::Linear,
    dropout: f64,
    /// Channels the backbone takes; gray images are repeated to this many.
    input_channels: i64,
}

impl Transfer {
    pub fn new(root: &nn::Path, s: &TransferSettings, classes: i64) -> Self {
        let backbone = crate::backbones::build(s.backbone, root);
        let facts = s.backbone.facts();
        let normalize = (s.normalize == Normalize::Imagenet).then(|| {
            let (mean, std) = facts.normalization;
            let as_tensor =
                |v: [f64; 3]| Tensor::from_slice(&v).to_kind(Kind::Float).view([1, 3, 1, 1]).to_device(root.device());
            (as_tensor(mean), as_tensor(std))
        });
        let head = root / HEAD;
        let units = i64::from(s.head_units);
        Self {
            backbone,
            normalize,
            dense: dense(&head / "dense", facts.feature_channels, units, WeightInit::GlorotUniform),
            output: dense(&head / "output", units, classes, WeightInit::GlorotUniform),
            dropout: s.head_dropout,
            input_channels: facts.input_channels,
        }
    }
}

impl Body for Transfer {
    fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Tensor {
        let mut x =
            if x.size()[1] == 1 { x.expand([-1, self.input_channels, -1, -1], false) } else { x.shallow_clone() };
        if let Some((mean, std)) = &self.normalize {
            x = (x - mean) / std;
        }
        let features = self.backbone.forward(&x, ctx);
        let pooled = features.adaptive_avg_pool2d([1, 1]).flatten(1, -1);
        ctx.trace.record("head.pool", &pooled);
        let hidden = pooled.apply(&self.dense).relu().dropout(self.dropout, ctx.train);
        ctx.trace.record("head.dense", &hidden);
        let out = hidden.apply(&self.output);
        ctx.trace.record("head.output", &out);
        out
    }
}
