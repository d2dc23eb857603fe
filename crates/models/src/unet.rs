//! The tutorial's U-Net (`U_Net`): an encoder of `depth` levels of two 3x3 convolutions
//! (same padding, ReLU, He-normal initialisation) with F, 2F, 4F, ... maps, each followed
//! by 2x2 max pooling and dropout after the deepest level; a bottleneck of two 3x3
//! convolutions with F x 2^depth maps and dropout; a decoder that upsamples 2x, applies a
//! 2x2 convolution, concatenates the matching encoder output and applies two 3x3
//! convolutions; a head of a 3x3 convolution with 2 maps and a 1x1 convolution to the
//! output maps (1 for a binary mask, one per label otherwise; logits, the sigmoid or
//! softmax is part of the loss).
//!
//! The same network in 3D (`unet3d`) takes its levels from a [`StagePlan`]: each level's
//! convolutions have the plan's kernel per axis (1 or 3, "same" padding) and its pooling
//! the plan's pool per axis (1 or 2); the upsampling mirrors the pooling; normalisation
//! may be instance normalisation.

use tch::{Tensor, nn};

use crate::layers::{Conv, ConvOptions, NormLayer, WeightInit, conv_nd, max_pool};
use crate::network::{Body, Ctx};
use radrun_settings::{Norm, StagePlan, Unet3dSettings, UnetSettings, Upsampling};

const HE: ConvOptions = ConvOptions { stride: 1, padding: [0, 0], groups: 1, bias: true, init: WeightInit::HeNormal };

/// A "same" convolution of `kernel` (odd sides) under `path`.
fn same(path: nn::Path, inputs: i64, maps: i64, kernel: &[i64]) -> Conv {
    let padding: Vec<i64> = kernel.iter().map(|k| k / 2).collect();
    conv_nd(path, inputs, maps, kernel, &padding, HE)
}

/// Two "same" convolutions, each optionally followed by normalisation, with ReLU.
#[derive(Debug)]
struct DoubleConv {
    name: String,
    conv1: Conv,
    norm1: Option<NormLayer>,
    conv2: Conv,
    norm2: Option<NormLayer>,
}

fn norm_layer(path: &nn::Path, name: String, maps: i64, norm: Norm, dims: usize) -> Option<NormLayer> {
    match norm {
        Norm::None => None,
        Norm::Batch => Some(NormLayer::batch(path.clone(), name, maps, dims)),
        Norm::Instance => Some(NormLayer::instance(path, maps)),
    }
}

impl DoubleConv {
    fn new(root: &nn::Path, name: String, inputs: i64, maps: i64, kernel: &[i64], norm: Norm) -> Self {
        let path = root / name.as_str();
        let dims = kernel.len();
        Self {
            conv1: same(&path / "conv1", inputs, maps, kernel),
            norm1: norm_layer(&(&path / "norm1"), format!("{name}.norm1"), maps, norm, dims),
            conv2: same(&path / "conv2", maps, maps, kernel),
            norm2: norm_layer(&(&path / "norm2"), format!("{name}.norm2"), maps, norm, dims),
            name,
        }
    }

    fn forward(&self, x: &Tensor, ctx: &Ctx) -> Tensor {
        let mut x = self.conv1.forward(x);
        if let Some(norm) = &self.norm1 {
            x = norm.forward(&x, ctx);
        }
        x = self.conv2.forward(&x.relu());
        if let Some(norm) = &self.norm2 {
            x = norm.forward(&x, ctx);
        }
        x.relu()
    }
}

/// Undoes a level's pooling: nearest upsampling then a convolution whose kernel is the
/// pool (Keras "same" padding for a kernel of 2: one voxel after), or a transposed
/// convolution with kernel and stride the pool.
#[derive(Debug)]
struct Up {
    mode: Upsampling,
    pool: Vec<i64>,
    conv: Conv,
}

impl Up {
    fn new(path: nn::Path, mode: Upsampling, pool: &[i64], below: i64, maps: i64) -> Self {
        let none = vec![0; pool.len()];
        let conv = match mode {
            Upsampling::Upsample => conv_nd(path, below, maps, pool, &none, HE),
            // a transposed convolution's weight is [in, out, k...]
            Upsampling::Transposed => {
                let mut c = conv_nd(path.clone(), maps, below, pool, &none, ConvOptions { bias: false, ..HE });
                c.bias = Some(path.zeros("bias", &[maps]));
                c
            }
        };
        Self { mode, pool: pool.to_vec(), conv }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let sides: Vec<i64> = x.size()[2..].iter().zip(&self.pool).map(|(s, p)| s * p).collect();
        let three = self.pool.len() == 3;
        match self.mode {
            Upsampling::Upsample => {
                let up = if three {
                    x.upsample_nearest3d(sides.as_slice(), None, None, None)
                } else {
                    x.upsample_nearest2d(sides.as_slice(), None, None)
                };
                // padding is given from the last axis back: (before, after) per axis
                let pad: Vec<i64> = self.pool.iter().rev().flat_map(|p| [0, p - 1]).collect();
                self.conv.forward(&up.constant_pad_nd(pad.as_slice())).relu()
            }
            Upsampling::Transposed => {
                let (w, b, stride) = (&self.conv.weight, self.conv.bias.as_ref(), self.pool.as_slice());
                let zeros = vec![0; self.pool.len()];
                if three {
                    x.conv_transpose3d(w, b, stride, zeros.as_slice(), zeros.as_slice(), 1, [1])
                } else {
                    x.conv_transpose2d(w, b, stride, zeros.as_slice(), zeros.as_slice(), 1, [1])
                }
                .relu()
            }
        }
    }
}

/// The shape of a U-Net: per encoder level its kernel and pool, then the bottleneck's
/// kernel, and the knobs shared by both ranks.
struct Shape {
    levels: Vec<(Vec<i64>, Vec<i64>)>,
    bottleneck: Vec<i64>,
    features: i64,
    norm: Norm,
    dropout: f64,
    upsampling: Upsampling,
    /// Deep supervision: a head on each decoder level but the first and the last.
    supervised: bool,
}

#[derive(Debug)]
pub struct Unet {
    encoders: Vec<DoubleConv>,
    pools: Vec<Vec<i64>>,
    bottleneck: DoubleConv,
    ups: Vec<Up>,
    decoders: Vec<DoubleConv>,
    /// Per decoder (deepest first), its deep supervision head and its name, if it has one.
    supervision: Vec<Option<(String, Conv)>>,
    head_conv: Conv,
    head_output: Conv,
    dropout: f64,
}

impl Unet {
    /// The tutorial's 2D U-Net. `outputs`: number of labels including background; 2
    /// gives one sigmoid map.
    pub fn new(root: &nn::Path, s: &UnetSettings, channels: i64, outputs: i64) -> Self {
        let shape = Shape {
            levels: vec![(vec![3, 3], vec![2, 2]); s.depth as usize],
            bottleneck: vec![3, 3],
            features: i64::from(s.initial_features),
            norm: if s.batch_norm { Norm::Batch } else { Norm::None },
            dropout: s.dropout,
            upsampling: s.upsampling,
            supervised: false,
        };
        Self::build(root, &shape, channels, outputs)
    }

    /// The 3D U-Net with the levels of `plan` ([`Unet3dSettings::stages`]).
    pub fn volume(root: &nn::Path, s: &Unet3dSettings, plan: &StagePlan, channels: i64, outputs: i64) -> Self {
        let shape = Shape {
            levels: plan.levels().iter().map(|l| (l.kernel.to_vec(), l.pool.to_vec())).collect(),
            bottleneck: plan.bottleneck().kernel.to_vec(),
            features: i64::from(s.initial_features),
            norm: s.norm,
            dropout: s.dropout,
            upsampling: s.upsampling,
            supervised: s.deep_supervision,
        };
        Self::build(root, &shape, channels, outputs)
    }

    fn build(root: &nn::Path, shape: &Shape, channels: i64, outputs: i64) -> Self {
        let f = shape.features;
        let mut encoders = Vec::new();
        let mut inputs = channels;
        for (level, (kernel, _)) in (1..).zip(&shape.levels) {
            let maps = f << (level - 1);
            encoders.push(DoubleConv::new(root, format!("encoder{level}"), inputs, maps, kernel, shape.norm));
            inputs = maps;
        }
        let depth = shape.levels.len() as i64;
        let bottleneck = DoubleConv::new(root, "bottleneck".into(), inputs, f << depth, &shape.bottleneck, shape.norm);
        let label_maps = if outputs <= 2 { 1 } else { outputs };
        let first_kernel = &shape.levels[0].0;
        let point = vec![1; first_kernel.len()];
        let pointwise = |path: nn::Path, inputs: i64, maps: i64| {
            conv_nd(path, inputs, maps, &point, &vec![0; point.len()], ConvOptions::default())
        };
        let (mut ups, mut decoders, mut supervision) = (Vec::new(), Vec::new(), Vec::new());
        let mut below = f << depth;
        for (level, (kernel, pool)) in shape.levels.iter().enumerate().rev() {
            let (level, maps) = (level + 1, f << level);
            let path = root / format!("decoder{level}");
            ups.push(Up::new(&path / "up", shape.upsampling, pool, below, maps));
            decoders.push(DoubleConv::new(root, format!("decoder{level}"), 2 * maps, maps, kernel, shape.norm));
            // nnU-Net weighs the deepest decoder level 0: it gets no head
            let supervised = shape.supervised && level > 1 && level < depth as usize;
            supervision.push(supervised.then(|| {
                let name = format!("supervision{level}");
                let head = pointwise(root / name.as_str(), maps, label_maps);
                (name, head)
            }));
            below = maps;
        }
        let head_maps = if outputs <= 2 { 2 } else { outputs };
        let head = root / "head";
        Self {
            encoders,
            pools: shape.levels.iter().map(|(_, p)| p.clone()).collect(),
            bottleneck,
            ups,
            decoders,
            supervision,
            head_conv: same(&head / "conv", f, head_maps, first_kernel),
            head_output: pointwise(&head / "output", head_maps, label_maps),
            dropout: shape.dropout,
        }
    }
}

impl Body for Unet {
    fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Tensor {
        let mut skips = Vec::new();
        let mut x = x.shallow_clone();
        let deepest = self.encoders.len() - 1;
        for (level, (encoder, pool)) in self.encoders.iter().zip(&self.pools).enumerate() {
            x = encoder.forward(&x, ctx);
            if level == deepest {
                x = x.dropout(self.dropout, ctx.train);
            }
            ctx.trace.record(&encoder.name, &x);
            skips.push(x.shallow_clone());
            x = max_pool(&x, pool);
        }
        x = self.bottleneck.forward(&x, ctx).dropout(self.dropout, ctx.train);
        ctx.trace.record("bottleneck", &x);
        let decoders = self.ups.iter().zip(&self.decoders).zip(&self.supervision);
        for (((up, decoder), supervision), skip) in decoders.zip(skips.iter().rev()) {
            let upsampled = up.forward(&x);
            x = decoder.forward(&Tensor::cat(&[skip, &upsampled], 1), ctx);
            ctx.trace.record(&decoder.name, &x);
            // run in training, and for the model summary's rows
            if let Some((name, head)) = supervision
                && (ctx.train || ctx.trace.is_recording())
            {
                let output = head.forward(&x);
                ctx.trace.record(name, &output);
                if ctx.train {
                    // deepest first here: the highest resolution goes first
                    ctx.auxiliary.insert(0, output);
                }
            }
        }
        x = self.head_conv.forward(&x).relu();
        let x = self.head_output.forward(&x);
        ctx.trace.record("head", &x);
        x
    }
}
