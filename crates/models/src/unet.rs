//! The tutorial's U-Net (`U_Net`): an encoder of `depth` levels of two 3x3 convolutions
//! (same padding, ReLU, He-normal initialisation) with F, 2F, 4F, ... maps, each followed
//! by 2x2 max pooling and dropout after the deepest level; a bottleneck of two 3x3
//! convolutions with F x 2^depth maps and dropout; a decoder that upsamples 2x, applies a
//! 2x2 convolution, concatenates the matching encoder output and applies two 3x3
//! convolutions; a head of a 3x3 convolution with 2 maps and a 1x1 convolution to the
//! output maps (1 for a binary mask, one per label otherwise; logits, the sigmoid or
//! softmax is part of the loss).

use tch::{Tensor, nn};

use crate::layers::{Conv, ConvOptions, WeightInit, conv, keras_batch_norm};
use crate::network::{Body, Ctx};
use radrun_settings::{UnetSettings, Upsampling};

/// Two 3x3 convolutions, each optionally followed by batch norm, with ReLU.
#[derive(Debug)]
struct DoubleConv {
    name: String,
    conv1: Conv,
    norm1: Option<nn::BatchNorm>,
    conv2: Conv,
    norm2: Option<nn::BatchNorm>,
}

const HE: ConvOptions = ConvOptions { stride: 1, padding: [1, 1], groups: 1, bias: true, init: WeightInit::HeNormal };

impl DoubleConv {
    fn new(root: &nn::Path, name: String, inputs: i64, maps: i64, batch_norm: bool) -> Self {
        let path = root / name.as_str();
        Self {
            conv1: conv(&path / "conv1", inputs, maps, 3, HE),
            norm1: batch_norm.then(|| keras_batch_norm(&path / "norm1", maps)),
            conv2: conv(&path / "conv2", maps, maps, 3, HE),
            norm2: batch_norm.then(|| keras_batch_norm(&path / "norm2", maps)),
            name,
        }
    }

    fn forward(&self, x: &Tensor, ctx: &Ctx) -> Tensor {
        let mut x = self.conv1.forward(x);
        if let Some(bn) = &self.norm1 {
            x = x.apply_t(bn, ctx.batch_norm_trains(&format!("{}.norm1", self.name)));
        }
        x = self.conv2.forward(&x.relu());
        if let Some(bn) = &self.norm2 {
            x = x.apply_t(bn, ctx.batch_norm_trains(&format!("{}.norm2", self.name)));
        }
        x.relu()
    }
}

#[derive(Debug)]
struct Up {
    mode: Upsampling,
    conv: Conv,
}

impl Up {
    fn forward(&self, x: &Tensor) -> Tensor {
        match self.mode {
            Upsampling::Upsample => {
                let (h, w) = (x.size()[2], x.size()[3]);
                let up = x.upsample_nearest2d([2 * h, 2 * w], None, None);
                // Keras "same" padding for an even kernel pads one row/column after.
                self.conv.forward(&up.constant_pad_nd([0, 1, 0, 1])).relu()
            }
            Upsampling::Transposed => {
                x.conv_transpose2d(&self.conv.weight, self.conv.bias.as_ref(), [2], [0], [0], 1, [1]).relu()
            }
        }
    }
}

#[derive(Debug)]
pub struct Unet {
    encoders: Vec<DoubleConv>,
    bottleneck: DoubleConv,
    ups: Vec<Up>,
    decoders: Vec<DoubleConv>,
    head_conv: Conv,
    head_output: Conv,
    dropout: f64,
}

impl Unet {
    /// `outputs`: number of labels including background; 2 gives one sigmoid map.
    pub fn new(root: &nn::Path, s: &UnetSettings, channels: i64, outputs: i64) -> Self {
        let f = i64::from(s.initial_features);
        let depth = s.depth as i64;
        let mut encoders = Vec::new();
        let mut inputs = channels;
        for level in 1..=depth {
            let maps = f << (level - 1);
            encoders.push(DoubleConv::new(root, format!("encoder{level}"), inputs, maps, s.batch_norm));
            inputs = maps;
        }
        let bottleneck = DoubleConv::new(root, "bottleneck".into(), inputs, f << depth, s.batch_norm);
        let (mut ups, mut decoders) = (Vec::new(), Vec::new());
        let mut below = f << depth;
        for level in (1..=depth).rev() {
            let maps = f << (level - 1);
            let path = root / format!("decoder{level}");
            let conv = match s.upsampling {
                Upsampling::Upsample => conv(&path / "up", below, maps, 2, ConvOptions { padding: [0, 0], ..HE }),
                // a transposed convolution's weight is [in, out, k, k]
                Upsampling::Transposed => {
                    let mut c = conv(&path / "up", maps, below, 2, ConvOptions { padding: [0, 0], bias: false, ..HE });
                    c.bias = Some((&path / "up").zeros("bias", &[maps]));
                    c
                }
            };
            ups.push(Up { mode: s.upsampling, conv });
            decoders.push(DoubleConv::new(root, format!("decoder{level}"), 2 * maps, maps, s.batch_norm));
            below = maps;
        }
        let label_maps = if outputs <= 2 { 1 } else { outputs };
        let head_maps = if outputs <= 2 { 2 } else { outputs };
        let head = root / "head";
        Self {
            encoders,
            bottleneck,
            ups,
            decoders,
            head_conv: conv(&head / "conv", f, head_maps, 3, HE),
            head_output: conv(&head / "output", head_maps, label_maps, 1, ConvOptions::default()),
            dropout: s.dropout,
        }
    }
}

impl Body for Unet {
    fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Tensor {
        let mut skips = Vec::new();
        let mut x = x.shallow_clone();
        let deepest = self.encoders.len() - 1;
        for (level, encoder) in self.encoders.iter().enumerate() {
            x = encoder.forward(&x, ctx);
            if level == deepest {
                x = x.dropout(self.dropout, ctx.train);
            }
            ctx.trace.record(&encoder.name, &x);
            skips.push(x.shallow_clone());
            x = x.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false);
        }
        x = self.bottleneck.forward(&x, ctx).dropout(self.dropout, ctx.train);
        ctx.trace.record("bottleneck", &x);
        for ((up, decoder), skip) in self.ups.iter().zip(&self.decoders).zip(skips.iter().rev()) {
            let upsampled = up.forward(&x);
            x = decoder.forward(&Tensor::cat(&[skip, &upsampled], 1), ctx);
            ctx.trace.record(&decoder.name, &x);
        }
        x = self.head_conv.forward(&x).relu();
        let x = self.head_output.forward(&x);
        ctx.trace.record("head", &x);
        x
    }
}
