//! The tutorial's plain classification CNN (`build_cnn`), layer for layer:
//! per block two valid convolutions with the activation, optional batch norm, 2x2 max
//! pooling and dropout (rate / 2.5 after block 1); feature maps double per block; then
//! flatten, dense + activation, dropout, and the output layer (logits; the softmax is
//! part of the loss).

use tch::{Tensor, nn};

use crate::layers::{Conv, ConvOptions, activate, conv, dense, dropout, keras_batch_norm, weight_init};
use crate::network::{Body, Ctx};
use radrun_settings::{Activation, CnnSettings};

#[derive(Debug)]
struct Block {
    name: String,
    conv1: Conv,
    conv2: Conv,
    batch_norm: Option<(String, nn::BatchNorm)>,
    dropout: f64,
}

#[derive(Debug)]
pub struct Cnn {
    blocks: Vec<Block>,
    dense: nn::Linear,
    output: nn::Linear,
    activation: Activation,
    dropout: f64,
}

impl Cnn {
    /// Builds the network under `root` for images of `channels` x `height` x `width`.
    /// The settings must have been validated for this size.
    pub fn new(root: &nn::Path, s: &CnnSettings, channels: i64, height: i64, width: i64, classes: i64) -> Self {
        let init = weight_init(s.activation);
        let options = ConvOptions { init, ..Default::default() };
        let k = i64::from(s.kernel_size);
        let rate = s.effective_dropout();
        let (mut h, mut w, mut inputs) = (height, width, channels);
        let mut blocks = Vec::new();
        for b in 1..=i64::from(s.blocks) {
            let name = format!("block{b}");
            let maps = i64::from(s.feature_maps) << (b - 1);
            let path = root / name.as_str();
            blocks.push(Block {
                conv1: conv(&path / "conv1", inputs, maps, k, options),
                conv2: conv(&path / "conv2", maps, maps, k, options),
                batch_norm: s
                    .batch_norm
                    .then(|| (format!("{name}.batch_norm"), keras_batch_norm(&path / "batch_norm", maps))),
                dropout: if b == 1 { rate / 2.5 } else { rate },
                name,
            });
            (h, w, inputs) = ((h - 2 * (k - 1)) / 2, (w - 2 * (k - 1)) / 2, maps);
        }
        let units = i64::from(s.dense_units);
        Self {
            blocks,
            dense: dense(root / "dense", inputs * h * w, units, init),
            output: dense(root / "output", units, classes, init),
            activation: s.activation,
            dropout: rate,
        }
    }
}

impl Body for Cnn {
    fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Tensor {
        let act = self.activation;
        let mut x = x.shallow_clone();
        for block in &self.blocks {
            x = activate(act, &block.conv1.forward(&x));
            x = activate(act, &block.conv2.forward(&x));
            if let Some((name, bn)) = &block.batch_norm {
                x = x.apply_t(bn, ctx.batch_norm_trains(name));
            }
            x = x.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false);
            x = dropout(act, &x, block.dropout, ctx.train);
            ctx.trace.record(&block.name, &x);
        }
        x = x.flatten(1, -1);
        ctx.trace.record("flatten", &x);
        x = activate(act, &x.apply(&self.dense));
        x = dropout(act, &x, self.dropout, ctx.train);
        ctx.trace.record("dense", &x);
        let x = x.apply(&self.output);
        ctx.trace.record("output", &x);
        x
    }
}
