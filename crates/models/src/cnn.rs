//! The tutorial's plain classification CNN (`build_cnn`), layer for layer:
//! per block two valid convolutions with the activation, optional batch norm, 2x2 max
//! pooling and dropout (rate / 2.5 after block 1); feature maps double per block; then
//! flatten, dense + activation, dropout, and the output layer (logits; the softmax is
//! part of the loss). The same in 3D (`cnn3d`) with cubic kernels and 2x2x2 pooling.

use tch::{Tensor, nn};

use crate::layers::{Conv, ConvOptions, NormLayer, activate, conv_nd, dense, dropout, max_pool, weight_init};
use crate::network::{Body, Ctx};
use radrun_settings::{Activation, CnnSettings};

#[derive(Debug)]
struct Block {
    name: String,
    conv1: Conv,
    conv2: Conv,
    batch_norm: Option<NormLayer>,
    dropout: f64,
}

#[derive(Debug)]
pub struct Cnn {
    blocks: Vec<Block>,
    pool: Vec<i64>,
    dense: nn::Linear,
    output: nn::Linear,
    activation: Activation,
    dropout: f64,
}

impl Cnn {
    /// Builds the network under `root` for inputs of `channels` x `sides` (height x width,
    /// or z x y x x). The settings must have been validated for this size.
    pub fn new(root: &nn::Path, s: &CnnSettings, channels: i64, sides: &[i64], classes: i64) -> Self {
        let init = weight_init(s.activation);
        let options = ConvOptions { init, ..Default::default() };
        let kernel = vec![i64::from(s.kernel_size); sides.len()];
        let valid = vec![0; sides.len()];
        let rate = s.effective_dropout();
        let mut inputs = channels;
        let mut blocks = Vec::new();
        for b in 1..=i64::from(s.blocks) {
            let name = format!("block{b}");
            let maps = i64::from(s.feature_maps) << (b - 1);
            let path = root / name.as_str();
            blocks.push(Block {
                conv1: conv_nd(&path / "conv1", inputs, maps, &kernel, &valid, options),
                conv2: conv_nd(&path / "conv2", maps, maps, &kernel, &valid, options),
                batch_norm: s
                    .batch_norm
                    .then(|| NormLayer::batch(&path / "batch_norm", format!("{name}.batch_norm"), maps, sides.len())),
                dropout: if b == 1 { rate / 2.5 } else { rate },
                name,
            });
            inputs = maps;
        }
        let flat: i64 = s.block_sizes(sides).last().map_or(1, |last| last.iter().product());
        let units = i64::from(s.dense_units);
        Self {
            blocks,
            pool: vec![2; sides.len()],
            dense: dense(root / "dense", inputs * flat, units, init),
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
            if let Some(norm) = &block.batch_norm {
                x = norm.forward(&x, ctx);
            }
            x = max_pool(&x, &self.pool);
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
