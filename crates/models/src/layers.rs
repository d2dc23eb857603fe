//! Building blocks shared by the networks: Keras-style weight initialisation, convolution
//! and dense layers built with it, activations, and a trace that records each named
//! stage's output shape for the model summary.

use tch::{Device, Kind, Tensor, nn};

use radrun_settings::Activation;

/// How a layer's weights are drawn (biases start at zero).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WeightInit {
    /// Keras' default `glorot_uniform`.
    GlorotUniform,
    /// Keras' `lecun_normal` (truncated normal, used with SELU).
    LecunNormal,
    /// Keras' `he_normal` (truncated normal, the tutorial's U-Net).
    HeNormal,
    /// PyTorch's default (Kaiming uniform with a = sqrt(5)); for torchvision layouts whose
    /// weights are normally loaded from a file anyway.
    Torch,
}

/// (fan in, fan out) of a weight of shape [out, in, k...] or [out, in].
fn fans(dims: &[i64]) -> (f64, f64) {
    let receptive: i64 = dims[2..].iter().product();
    ((dims[1] * receptive) as f64, (dims[0] * receptive) as f64)
}

/// Keras' truncated normal (cut at two standard deviations, rescaled so the kept part
/// has the requested standard deviation).
fn truncated_normal(dims: &[i64], stdev: f64, device: Device) -> Tensor {
    let mut t = Tensor::randn(dims, (Kind::Float, device));
    for _ in 0..100 {
        let outside = t.abs().gt(2.0);
        if !bool::try_from(outside.any()).unwrap_or(false) {
            break;
        }
        t = t.where_self(&outside.logical_not(), &Tensor::randn(dims, (Kind::Float, device)));
    }
    t * (stdev / 0.879_625_661_034_239_8)
}

/// Creates the variable `name` of shape `dims` under `path` drawn with `init`.
pub fn weight(path: &nn::Path, name: &str, dims: &[i64], init: WeightInit) -> Tensor {
    let (fan_in, fan_out) = fans(dims);
    match init {
        WeightInit::GlorotUniform => {
            let limit = (6.0 / (fan_in + fan_out)).sqrt();
            path.var(name, dims, nn::Init::Uniform { lo: -limit, up: limit })
        }
        WeightInit::Torch => path.var(name, dims, nn::init::DEFAULT_KAIMING_UNIFORM),
        WeightInit::LecunNormal | WeightInit::HeNormal => {
            let scale = if init == WeightInit::HeNormal { 2.0 } else { 1.0 };
            let mut w = path.var(name, dims, nn::Init::Const(0.0));
            let values = truncated_normal(dims, (scale / fan_in).sqrt(), path.device());
            tch::no_grad(|| w.copy_(&values));
            w
        }
    }
}

/// A 2-D or 3-D convolution (by the rank of its weight).
#[derive(Debug)]
pub struct Conv {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub stride: i64,
    /// Zero padding on each side, per axis ((rows, columns) or (z, y, x)).
    pub padding: Vec<i64>,
    pub groups: i64,
}

/// Options of [`conv`] beyond channels and kernel size.
#[derive(Debug, Clone, Copy)]
pub struct ConvOptions {
    pub stride: i64,
    pub padding: [i64; 2],
    pub groups: i64,
    pub bias: bool,
    pub init: WeightInit,
}

impl Default for ConvOptions {
    fn default() -> Self {
        Self { stride: 1, padding: [0, 0], groups: 1, bias: true, init: WeightInit::GlorotUniform }
    }
}

impl ConvOptions {
    /// The same padding on all sides.
    pub fn padded(self, padding: i64) -> Self {
        Self { padding: [padding, padding], ..self }
    }
}

/// A square-kernel convolution whose variables are `<path>.weight` and `<path>.bias`.
pub fn conv(path: nn::Path, in_channels: i64, out_channels: i64, kernel: i64, o: ConvOptions) -> Conv {
    conv_rect(path, in_channels, out_channels, [kernel, kernel], o)
}

/// A convolution with a `[rows, columns]` kernel.
pub fn conv_rect(path: nn::Path, in_channels: i64, out_channels: i64, kernel: [i64; 2], o: ConvOptions) -> Conv {
    conv_nd(path, in_channels, out_channels, &kernel, &o.padding, o)
}

/// A convolution with a kernel of any rank (`[rows, columns]` or `[z, y, x]`) and
/// `padding` per axis; `o.padding` is not used.
pub fn conv_nd(
    path: nn::Path,
    in_channels: i64,
    out_channels: i64,
    kernel: &[i64],
    padding: &[i64],
    o: ConvOptions,
) -> Conv {
    let per_group = in_channels / o.groups;
    let dims: Vec<i64> = [out_channels, per_group].iter().chain(kernel).copied().collect();
    let weight = weight(&path, "weight", &dims, o.init);
    let bias = o.bias.then(|| {
        if o.init == WeightInit::Torch {
            let bound = 1.0 / ((per_group * kernel.iter().product::<i64>()) as f64).sqrt();
            path.var("bias", &[out_channels], nn::Init::Uniform { lo: -bound, up: bound })
        } else {
            path.zeros("bias", &[out_channels])
        }
    });
    Conv { weight, bias, stride: o.stride, padding: padding.to_vec(), groups: o.groups }
}

impl Conv {
    pub fn forward(&self, x: &Tensor) -> Tensor {
        if self.weight.dim() == 5 {
            x.conv3d(&self.weight, self.bias.as_ref(), [self.stride], self.padding.as_slice(), [1], self.groups)
        } else {
            x.conv2d(&self.weight, self.bias.as_ref(), [self.stride], self.padding.as_slice(), [1], self.groups)
        }
    }
}

/// A dense layer `<path>.weight` [out, in] and `<path>.bias`.
pub fn dense(path: nn::Path, inputs: i64, outputs: i64, init: WeightInit) -> nn::Linear {
    let ws = weight(&path, "weight", &[outputs, inputs], init);
    let bs = if init == WeightInit::Torch {
        let bound = 1.0 / (inputs as f64).sqrt();
        path.var("bias", &[outputs], nn::Init::Uniform { lo: -bound, up: bound })
    } else {
        path.zeros("bias", &[outputs])
    };
    nn::Linear { ws, bs: Some(bs) }
}

/// Batch normalisation with Keras' defaults (momentum 0.99, epsilon 1e-3).
pub fn keras_batch_norm(path: nn::Path, channels: i64) -> nn::BatchNorm {
    nn::batch_norm2d(path, channels, keras_batch_norm_config())
}

fn keras_batch_norm_config() -> nn::BatchNormConfig {
    nn::BatchNormConfig { momentum: 0.01, eps: 1e-3, ..Default::default() }
}

/// Normalisation after a convolution, by name in [`Ctx::batch_norm_trains`]: batch
/// normalisation with Keras' defaults, or instance normalisation with a learnt scale and
/// shift (`<path>.weight`, `<path>.bias`; PyTorch's `InstanceNorm3d(affine=True)`, epsilon
/// 1e-5).
#[derive(Debug)]
pub enum NormLayer {
    Batch { name: String, layer: nn::BatchNorm },
    Instance { weight: Tensor, bias: Tensor },
}

impl NormLayer {
    /// Batch normalisation of `channels` maps of 2-D (`dims` 2) or 3-D feature maps.
    pub fn batch(path: nn::Path, name: String, channels: i64, dims: usize) -> Self {
        let layer = if dims == 3 {
            nn::batch_norm3d(path, channels, keras_batch_norm_config())
        } else {
            nn::batch_norm2d(path, channels, keras_batch_norm_config())
        };
        NormLayer::Batch { name, layer }
    }

    pub fn instance(path: &nn::Path, channels: i64) -> Self {
        NormLayer::Instance { weight: path.ones("weight", &[channels]), bias: path.zeros("bias", &[channels]) }
    }

    pub fn forward(&self, x: &Tensor, ctx: &crate::network::Ctx) -> Tensor {
        match self {
            NormLayer::Batch { name, layer } => x.apply_t(layer, ctx.batch_norm_trains(name)),
            NormLayer::Instance { weight, bias } => {
                x.instance_norm(Some(weight), Some(bias), None::<&Tensor>, None::<&Tensor>, true, 0.1, 1e-5, false)
            }
        }
    }
}

/// Max pooling of 2-D or 3-D feature maps by `pool` per axis (kernel = stride, no
/// padding, floor).
pub fn max_pool(x: &Tensor, pool: &[i64]) -> Tensor {
    let zeros = vec![0; pool.len()];
    let ones = vec![1; pool.len()];
    if pool.len() == 3 {
        x.max_pool3d(pool, pool, zeros.as_slice(), ones.as_slice(), false)
    } else {
        x.max_pool2d(pool, pool, zeros.as_slice(), ones.as_slice(), false)
    }
}

/// `activation` applied to `x`.
pub fn activate(activation: Activation, x: &Tensor) -> Tensor {
    match activation {
        Activation::Sigmoid => x.sigmoid(),
        Activation::Relu => x.relu(),
        Activation::Elu => x.elu(),
        Activation::LeakyRelu => x.maximum(&(x * 0.2)),
        Activation::Selu => x.selu(),
        Activation::Gelu => x.gelu("none"),
    }
}

/// The initialisation the tutorial paired with `activation`.
pub fn weight_init(activation: Activation) -> WeightInit {
    if activation == Activation::Selu { WeightInit::LecunNormal } else { WeightInit::GlorotUniform }
}

/// Dropout after `activation`, or alpha dropout after SELU (keeps SELU's
/// self-normalisation).
pub fn dropout(activation: Activation, x: &Tensor, rate: f64, train: bool) -> Tensor {
    if rate <= 0.0 {
        x.shallow_clone()
    } else if activation == Activation::Selu {
        x.alpha_dropout(rate, train)
    } else {
        x.dropout(rate, train)
    }
}

/// Records the output shape of each named stage of a forward pass (for the model
/// summary), or keeps the output of one named stage (for Grad-CAM); a no-op during
/// training.
#[derive(Debug, Default)]
pub struct Trace {
    enabled: bool,
    pub rows: Vec<(String, Vec<i64>)>,
    /// The stage whose output to keep, and that output once the pass reached it.
    tap: Option<(String, Option<Tensor>)>,
}

impl Trace {
    /// A trace that records.
    pub fn recording() -> Self {
        Self { enabled: true, ..Self::default() }
    }

    /// Whether it records the model summary's rows.
    pub fn is_recording(&self) -> bool {
        self.enabled
    }

    /// A trace that records nothing.
    pub fn off() -> Self {
        Self::default()
    }

    /// A trace that keeps the output of stage `name`.
    pub fn tapping(name: &str) -> Self {
        Self { tap: Some((name.to_string(), None)), ..Self::default() }
    }

    /// The output kept by a [`Trace::tapping`] trace, if the pass reached its stage.
    pub fn tapped(self) -> Option<Tensor> {
        self.tap.and_then(|(_, t)| t)
    }

    pub fn record(&mut self, name: &str, output: &Tensor) {
        if self.enabled {
            self.rows.push((name.to_string(), output.size()));
        }
        if let Some((tap, kept)) = &mut self.tap
            && tap == name
        {
            *kept = Some(output.shallow_clone());
        }
    }
}
