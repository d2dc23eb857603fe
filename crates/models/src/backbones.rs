//! ImageNet backbones for transfer learning, built with the parameter names and layouts of
//! torchvision (ResNet18/50, VGG16/19, Inception v3, MobileNetV2) and timm
//! (`legacy_xception`), so their published state dicts load without renaming. Each stops
//! before its classifier and returns feature maps.

use tch::{Tensor, nn};

use crate::layers::{Conv, ConvOptions, WeightInit, conv_rect};
use crate::network::Ctx;
use radrun_settings::Backbone;

/// Builds `backbone`'s layers under `root` with torchvision/timm names.
pub fn build(backbone: Backbone, root: &nn::Path) -> Box<dyn Features> {
    match backbone {
        Backbone::Resnet18 => Box::new(ResNet::new(root, Block::Basic, [2, 2, 2, 2])),
        Backbone::Resnet50 => Box::new(ResNet::new(root, Block::Bottleneck, [3, 4, 6, 3])),
        Backbone::Vgg16 => Box::new(Vgg::new(root, &[2, 2, 3, 3, 3])),
        Backbone::Vgg19 => Box::new(Vgg::new(root, &[2, 2, 4, 4, 4])),
        Backbone::InceptionV3 => Box::new(Inception::new(root)),
        Backbone::Xception => Box::new(Xception::new(root)),
        Backbone::MobilenetV2 => Box::new(MobileNetV2::new(root)),
    }
}

/// A backbone's forward pass up to its last feature maps.
pub trait Features: Send + std::fmt::Debug {
    fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Tensor;
}

/// `root` followed by the dotted `name` (tch paths take one segment at a time).
fn at<'a>(root: &nn::Path<'a>, name: &str) -> nn::Path<'a> {
    let mut segments = name.split('.');
    let first = root.sub(segments.next().expect("a layer name"));
    segments.fold(first, |path, segment| path.sub(segment))
}

/// Batch normalisation that knows its name, so a frozen one stays in inference mode.
#[derive(Debug)]
struct Bn {
    name: String,
    bn: nn::BatchNorm,
}

impl Bn {
    fn new(root: &nn::Path, name: &str, channels: i64, eps: f64) -> Self {
        let config = nn::BatchNormConfig { eps, ws_init: nn::Init::Const(1.0), ..Default::default() };
        Self { name: name.to_string(), bn: nn::batch_norm2d(at(root, name), channels, config) }
    }

    fn forward(&self, x: &Tensor, ctx: &Ctx) -> Tensor {
        x.apply_t(&self.bn, ctx.batch_norm_trains(&self.name))
    }
}

/// A bias-free convolution followed by batch norm, the unit all these backbones share.
#[derive(Debug)]
struct ConvBn {
    conv: Conv,
    bn: Bn,
}

/// Geometry of a [`ConvBn`].
#[derive(Debug, Clone, Copy)]
struct Geometry {
    kernel: [i64; 2],
    stride: i64,
    padding: [i64; 2],
    groups: i64,
}

impl Geometry {
    /// A square kernel with "same"-style padding (k / 2).
    fn square(kernel: i64, stride: i64) -> Self {
        Self { kernel: [kernel, kernel], stride, padding: [kernel / 2, kernel / 2], groups: 1 }
    }

    fn unpadded(kernel: i64, stride: i64) -> Self {
        Self { padding: [0, 0], ..Self::square(kernel, stride) }
    }

    /// A 1 x n or n x 1 kernel padded to keep the size.
    fn rect(rows: i64, cols: i64) -> Self {
        Self { kernel: [rows, cols], stride: 1, padding: [rows / 2, cols / 2], groups: 1 }
    }
}

fn plain_conv(root: &nn::Path, name: &str, inputs: i64, outputs: i64, g: Geometry) -> Conv {
    let options =
        ConvOptions { stride: g.stride, padding: g.padding, groups: g.groups, bias: false, init: WeightInit::Torch };
    conv_rect(at(root, name), inputs, outputs, g.kernel, options)
}

impl ConvBn {
    #[allow(clippy::too_many_arguments)]
    fn new(root: &nn::Path, conv: &str, bn: &str, inputs: i64, outputs: i64, g: Geometry, eps: f64) -> Self {
        Self { conv: plain_conv(root, conv, inputs, outputs, g), bn: Bn::new(root, bn, outputs, eps) }
    }

    fn forward(&self, x: &Tensor, ctx: &Ctx) -> Tensor {
        self.bn.forward(&self.conv.forward(x), ctx)
    }
}

// ---------------------------------------------------------------- ResNet (torchvision)

#[derive(Debug, Clone, Copy, PartialEq)]
enum Block {
    Basic,
    Bottleneck,
}

#[derive(Debug)]
struct ResidualBlock {
    units: Vec<ConvBn>,
    downsample: Option<ConvBn>,
}

#[derive(Debug)]
struct ResNet {
    stem: ConvBn,
    layers: Vec<(String, Vec<ResidualBlock>)>,
}

impl ResNet {
    fn new(root: &nn::Path, block: Block, counts: [usize; 4]) -> Self {
        let expansion = if block == Block::Bottleneck { 4 } else { 1 };
        let stem = ConvBn::new(root, "conv1", "bn1", 3, 64, Geometry::square(7, 2), 1e-5);
        let mut inputs = 64;
        let mut layers = Vec::new();
        for (i, &count) in counts.iter().enumerate() {
            let planes = 64i64 << i;
            let layer = format!("layer{}", i + 1);
            let mut blocks = Vec::new();
            for b in 0..count {
                let stride = if b == 0 && i > 0 { 2 } else { 1 };
                let p = format!("{layer}.{b}");
                let unit = |n: usize, inp: i64, out: i64, g: Geometry| {
                    ConvBn::new(root, &format!("{p}.conv{n}"), &format!("{p}.bn{n}"), inp, out, g, 1e-5)
                };
                let units = match block {
                    Block::Basic => {
                        vec![
                            unit(1, inputs, planes, Geometry::square(3, stride)),
                            unit(2, planes, planes, Geometry::square(3, 1)),
                        ]
                    }
                    Block::Bottleneck => vec![
                        unit(1, inputs, planes, Geometry::square(1, 1)),
                        unit(2, planes, planes, Geometry::square(3, stride)),
                        unit(3, planes, planes * expansion, Geometry::square(1, 1)),
                    ],
                };
                let downsample = (stride != 1 || inputs != planes * expansion).then(|| {
                    let (c, n) = (format!("{p}.downsample.0"), format!("{p}.downsample.1"));
                    ConvBn::new(root, &c, &n, inputs, planes * expansion, Geometry::unpadded(1, stride), 1e-5)
                });
                blocks.push(ResidualBlock { units, downsample });
                inputs = planes * expansion;
            }
            layers.push((layer, blocks));
        }
        Self { stem, layers }
    }
}

impl Features for ResNet {
    fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Tensor {
        let mut x = self.stem.forward(x, ctx).relu().max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        ctx.trace.record("conv1", &x);
        for (name, blocks) in &self.layers {
            for block in blocks {
                let identity = match &block.downsample {
                    Some(d) => d.forward(&x, ctx),
                    None => x.shallow_clone(),
                };
                let last = block.units.len() - 1;
                let mut y = x.shallow_clone();
                for (i, unit) in block.units.iter().enumerate() {
                    y = unit.forward(&y, ctx);
                    if i < last {
                        y = y.relu();
                    }
                }
                x = (y + identity).relu();
            }
            ctx.trace.record(name, &x);
        }
        x
    }
}

// ------------------------------------------------------------------- VGG (torchvision)

#[derive(Debug)]
struct Vgg {
    /// Per block, its convolutions and their names.
    blocks: Vec<Vec<Conv>>,
}

impl Vgg {
    fn new(root: &nn::Path, convs_per_block: &[usize]) -> Self {
        let (mut index, mut inputs) = (0, 3);
        let mut blocks = Vec::new();
        for (b, &n) in convs_per_block.iter().enumerate() {
            let maps = (64i64 << b).min(512);
            let mut convs = Vec::new();
            for _ in 0..n {
                let options = ConvOptions { padding: [1, 1], init: WeightInit::Torch, ..Default::default() };
                convs.push(conv_rect(at(root, &format!("features.{index}")), inputs, maps, [3, 3], options));
                inputs = maps;
                index += 2; // a ReLU follows each convolution
            }
            index += 1; // the block's max pool
            blocks.push(convs);
        }
        Self { blocks }
    }
}

impl Features for Vgg {
    fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Tensor {
        let mut x = x.shallow_clone();
        for (b, convs) in self.blocks.iter().enumerate() {
            for conv in convs {
                x = conv.forward(&x).relu();
            }
            x = x.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false);
            ctx.trace.record(&format!("block{}", b + 1), &x);
        }
        x
    }
}

// ----------------------------------------------------------- Inception v3 (torchvision)

/// torchvision's `BasicConv2d`: convolution, batch norm (eps 0.001), ReLU.
#[derive(Debug)]
struct Basic(ConvBn);

impl Basic {
    fn new(root: &nn::Path, name: &str, inputs: i64, outputs: i64, g: Geometry) -> Self {
        Basic(ConvBn::new(root, &format!("{name}.conv"), &format!("{name}.bn"), inputs, outputs, g, 1e-3))
    }

    fn forward(&self, x: &Tensor, ctx: &Ctx) -> Tensor {
        self.0.forward(x, ctx).relu()
    }
}

fn chain(x: &Tensor, units: &[Basic], ctx: &Ctx) -> Tensor {
    units.iter().fold(x.shallow_clone(), |y, u| u.forward(&y, ctx))
}

/// How a mixed block's pooling branch pools.
#[derive(Debug, Clone, Copy, PartialEq)]
enum PoolBranch {
    /// 3x3 average pooling (stride 1, padding 1) then a 1x1 convolution.
    AverageThenConv,
    /// 3x3 max pooling with stride 2, passed through.
    MaxStride2,
}

/// An Inception "Mixed" block: parallel branches concatenated. A branch is a chain of
/// convolutions; InceptionE's last two convolutions of a branch run side by side.
#[derive(Debug)]
struct Mixed {
    name: String,
    branches: Vec<Vec<Basic>>,
    /// Branches whose last two units run in parallel on the previous unit's output.
    split_tail: Vec<bool>,
    pool: PoolBranch,
    pool_conv: Option<Basic>,
}

impl Features for Mixed {
    fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Tensor {
        let mut outputs = Vec::new();
        for (branch, &split) in self.branches.iter().zip(&self.split_tail) {
            if split {
                let n = branch.len();
                let y = chain(x, &branch[..n - 2], ctx);
                outputs.push(Tensor::cat(&[branch[n - 2].forward(&y, ctx), branch[n - 1].forward(&y, ctx)], 1));
            } else {
                outputs.push(chain(x, branch, ctx));
            }
        }
        outputs.push(match self.pool {
            PoolBranch::AverageThenConv => {
                let pooled = x.avg_pool2d([3, 3], [1, 1], [1, 1], false, true, None::<i64>);
                self.pool_conv.as_ref().expect("average pool branch has a convolution").forward(&pooled, ctx)
            }
            PoolBranch::MaxStride2 => x.max_pool2d([3, 3], [2, 2], [0, 0], [1, 1], false),
        });
        let y = Tensor::cat(&outputs, 1);
        ctx.trace.record(&self.name, &y);
        y
    }
}

/// Branch description: (suffix, output channels, geometry) per unit.
type BranchSpec<'a> = &'a [(&'a str, i64, Geometry)];

fn mixed(
    root: &nn::Path,
    name: &str,
    inputs: i64,
    branches: &[(BranchSpec, bool)],
    pool: PoolBranch,
    pool_features: i64,
) -> Mixed {
    let mut built = Vec::new();
    let mut split_tail = Vec::new();
    for (spec, split) in branches {
        let mut units = Vec::new();
        let mut c = inputs;
        let n = spec.len();
        for (i, (suffix, out, g)) in spec.iter().enumerate() {
            // the two parallel tail units both read the unit before them
            let unit_in = if *split && i == n - 1 { spec[n - 3].1 } else { c };
            units.push(Basic::new(root, &format!("{name}.{suffix}"), unit_in, *out, *g));
            c = *out;
        }
        built.push(units);
        split_tail.push(*split);
    }
    let pool_conv = (pool == PoolBranch::AverageThenConv)
        .then(|| Basic::new(root, &format!("{name}.branch_pool"), inputs, pool_features, Geometry::square(1, 1)));
    Mixed { name: name.to_string(), branches: built, split_tail, pool, pool_conv }
}

#[derive(Debug)]
struct Inception {
    stem: Vec<(Basic, bool)>,
    blocks: Vec<Mixed>,
}

impl Inception {
    fn new(root: &nn::Path) -> Self {
        let g1 = Geometry::square(1, 1);
        let g3 = Geometry::square(3, 1);
        let g3v = Geometry::unpadded(3, 1);
        let g3s2 = Geometry::unpadded(3, 2);
        // (unit, followed by a 3x3/2 max pool)
        let stem = vec![
            (Basic::new(root, "Conv2d_1a_3x3", 3, 32, g3s2), false),
            (Basic::new(root, "Conv2d_2a_3x3", 32, 32, g3v), false),
            (Basic::new(root, "Conv2d_2b_3x3", 32, 64, g3), true),
            (Basic::new(root, "Conv2d_3b_1x1", 64, 80, g1), false),
            (Basic::new(root, "Conv2d_4a_3x3", 80, 192, g3v), true),
        ];
        let avg = PoolBranch::AverageThenConv;
        let a = |name: &str, inputs: i64, pool: i64| {
            let b1: BranchSpec = &[("branch1x1", 64, g1)];
            let b5: BranchSpec = &[("branch5x5_1", 48, g1), ("branch5x5_2", 64, Geometry::square(5, 1))];
            let b3: BranchSpec = &[("branch3x3dbl_1", 64, g1), ("branch3x3dbl_2", 96, g3), ("branch3x3dbl_3", 96, g3)];
            mixed(root, name, inputs, &[(b1, false), (b5, false), (b3, false)], avg, pool)
        };
        let c = |name: &str, c7: i64| {
            let (r, col) = (Geometry::rect(7, 1), Geometry::rect(1, 7));
            let b1: BranchSpec = &[("branch1x1", 192, g1)];
            let b7: BranchSpec = &[("branch7x7_1", c7, g1), ("branch7x7_2", c7, col), ("branch7x7_3", 192, r)];
            let b7d: BranchSpec = &[
                ("branch7x7dbl_1", c7, g1),
                ("branch7x7dbl_2", c7, r),
                ("branch7x7dbl_3", c7, col),
                ("branch7x7dbl_4", c7, r),
                ("branch7x7dbl_5", 192, col),
            ];
            mixed(root, name, 768, &[(b1, false), (b7, false), (b7d, false)], avg, 192)
        };
        let e = |name: &str, inputs: i64| {
            let (r, col) = (Geometry::rect(3, 1), Geometry::rect(1, 3));
            let b1: BranchSpec = &[("branch1x1", 320, g1)];
            let b3: BranchSpec = &[("branch3x3_1", 384, g1), ("branch3x3_2a", 384, col), ("branch3x3_2b", 384, r)];
            let b3d: BranchSpec = &[
                ("branch3x3dbl_1", 448, g1),
                ("branch3x3dbl_2", 384, g3),
                ("branch3x3dbl_3a", 384, col),
                ("branch3x3dbl_3b", 384, r),
            ];
            mixed(root, name, inputs, &[(b1, false), (b3, true), (b3d, true)], avg, 192)
        };
        let max = PoolBranch::MaxStride2;
        let b6a: BranchSpec = &[("branch3x3", 384, g3s2)];
        let b6a_d: BranchSpec = &[("branch3x3dbl_1", 64, g1), ("branch3x3dbl_2", 96, g3), ("branch3x3dbl_3", 96, g3s2)];
        let b7a: BranchSpec = &[("branch3x3_1", 192, g1), ("branch3x3_2", 320, g3s2)];
        let b7a_7: BranchSpec = &[
            ("branch7x7x3_1", 192, g1),
            ("branch7x7x3_2", 192, Geometry::rect(1, 7)),
            ("branch7x7x3_3", 192, Geometry::rect(7, 1)),
            ("branch7x7x3_4", 192, g3s2),
        ];
        let blocks = vec![
            a("Mixed_5b", 192, 32),
            a("Mixed_5c", 256, 64),
            a("Mixed_5d", 288, 64),
            mixed(root, "Mixed_6a", 288, &[(b6a, false), (b6a_d, false)], max, 0),
            c("Mixed_6b", 128),
            c("Mixed_6c", 160),
            c("Mixed_6d", 160),
            c("Mixed_6e", 192),
            mixed(root, "Mixed_7a", 768, &[(b7a, false), (b7a_7, false)], max, 0),
            e("Mixed_7b", 1280),
            e("Mixed_7c", 2048),
        ];
        Self { stem, blocks }
    }
}

impl Features for Inception {
    fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Tensor {
        let mut x = x.shallow_clone();
        for (unit, pool) in &self.stem {
            x = unit.forward(&x, ctx);
            if *pool {
                x = x.max_pool2d([3, 3], [2, 2], [0, 0], [1, 1], false);
            }
        }
        ctx.trace.record("stem", &x);
        for block in &self.blocks {
            x = block.forward(&x, ctx);
        }
        x
    }
}

// ------------------------------------------------------------ Xception (timm legacy)

/// timm's `SeparableConv2d`: depthwise 3x3 (`conv1`) then pointwise 1x1 (`pointwise`).
#[derive(Debug)]
struct Separable {
    depthwise: Conv,
    pointwise: Conv,
}

impl Separable {
    fn new(root: &nn::Path, name: &str, inputs: i64, outputs: i64) -> Self {
        let dw = Geometry { groups: inputs, ..Geometry::square(3, 1) };
        Self {
            depthwise: plain_conv(root, &format!("{name}.conv1"), inputs, inputs, dw),
            pointwise: plain_conv(root, &format!("{name}.pointwise"), inputs, outputs, Geometry::square(1, 1)),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        self.pointwise.forward(&self.depthwise.forward(x))
    }
}

/// One unit of a block's `rep`: optional ReLU, separable convolution, batch norm.
#[derive(Debug)]
struct RepUnit {
    relu_first: bool,
    conv: Separable,
    bn: Bn,
}

#[derive(Debug)]
struct XBlock {
    name: String,
    rep: Vec<RepUnit>,
    pool: bool,
    skip: Option<ConvBn>,
}

/// timm's `Block(in, out, reps, strides, start_with_relu, grow_first)` arguments.
#[derive(Debug, Clone, Copy)]
struct XBlockSpec {
    inputs: i64,
    outputs: i64,
    reps: usize,
    stride: i64,
    start_with_relu: bool,
    grow_first: bool,
}

impl XBlock {
    fn new(root: &nn::Path, name: &str, spec: XBlockSpec) -> Self {
        let XBlockSpec { inputs, outputs, reps, stride, start_with_relu, grow_first } = spec;
        // timm numbers `rep` as [ReLU, SeparableConv2d, BatchNorm2d] x reps, dropping the
        // first ReLU when the block does not start with one.
        let offset = usize::from(!start_with_relu);
        let mut rep = Vec::new();
        for i in 0..reps {
            let (inc, outc) = if grow_first {
                (if i == 0 { inputs } else { outputs }, outputs)
            } else {
                (inputs, if i < reps - 1 { inputs } else { outputs })
            };
            let base = 3 * i + 1 - offset;
            rep.push(RepUnit {
                relu_first: i > 0 || start_with_relu,
                conv: Separable::new(root, &format!("{name}.rep.{base}"), inc, outc),
                bn: Bn::new(root, &format!("{name}.rep.{}", base + 1), outc, 1e-5),
            });
        }
        let skip = (outputs != inputs || stride != 1).then(|| {
            let (c, b) = (format!("{name}.skip"), format!("{name}.skipbn"));
            ConvBn::new(root, &c, &b, inputs, outputs, Geometry::unpadded(1, stride), 1e-5)
        });
        Self { name: name.to_string(), rep, pool: stride != 1, skip }
    }

    fn forward(&self, input: &Tensor, ctx: &mut Ctx) -> Tensor {
        let mut x = input.shallow_clone();
        for unit in &self.rep {
            if unit.relu_first {
                x = x.relu();
            }
            x = unit.bn.forward(&unit.conv.forward(&x), ctx);
        }
        if self.pool {
            x = x.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        }
        let skip = match &self.skip {
            Some(s) => s.forward(input, ctx),
            None => input.shallow_clone(),
        };
        let y = x + skip;
        ctx.trace.record(&self.name, &y);
        y
    }
}

#[derive(Debug)]
struct Xception {
    stem: [ConvBn; 2],
    blocks: Vec<XBlock>,
    exit: [(Separable, Bn); 2],
}

impl Xception {
    fn new(root: &nn::Path) -> Self {
        let spec = |inputs, outputs, reps, stride, start_with_relu, grow_first| XBlockSpec {
            inputs,
            outputs,
            reps,
            stride,
            start_with_relu,
            grow_first,
        };
        let stem = [
            ConvBn::new(root, "conv1", "bn1", 3, 32, Geometry::unpadded(3, 2), 1e-5),
            ConvBn::new(root, "conv2", "bn2", 32, 64, Geometry::unpadded(3, 1), 1e-5),
        ];
        let mut blocks = vec![
            XBlock::new(root, "block1", spec(64, 128, 2, 2, false, true)),
            XBlock::new(root, "block2", spec(128, 256, 2, 2, true, true)),
            XBlock::new(root, "block3", spec(256, 728, 2, 2, true, true)),
        ];
        for b in 4..=11 {
            blocks.push(XBlock::new(root, &format!("block{b}"), spec(728, 728, 3, 1, true, true)));
        }
        blocks.push(XBlock::new(root, "block12", spec(728, 1024, 2, 2, true, false)));
        let exit = [
            (Separable::new(root, "conv3", 1024, 1536), Bn::new(root, "bn3", 1536, 1e-5)),
            (Separable::new(root, "conv4", 1536, 2048), Bn::new(root, "bn4", 2048, 1e-5)),
        ];
        Self { stem, blocks, exit }
    }
}

impl Features for Xception {
    fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Tensor {
        let mut x = x.shallow_clone();
        for unit in &self.stem {
            x = unit.forward(&x, ctx).relu();
        }
        ctx.trace.record("stem", &x);
        for block in &self.blocks {
            x = block.forward(&x, ctx);
        }
        for (conv, bn) in &self.exit {
            x = bn.forward(&conv.forward(&x), ctx).relu();
        }
        ctx.trace.record("exit", &x);
        x
    }
}

// ------------------------------------------------------------ MobileNetV2 (torchvision)

#[derive(Debug)]
struct InvertedResidual {
    /// Expansion (1x1) and depthwise (3x3) units, each with ReLU6.
    expand: Vec<ConvBn>,
    project: ConvBn,
    residual: bool,
}

#[derive(Debug)]
struct MobileNetV2 {
    first: ConvBn,
    blocks: Vec<InvertedResidual>,
    last: ConvBn,
}

fn relu6(x: &Tensor) -> Tensor {
    x.clamp(0.0, 6.0)
}

impl MobileNetV2 {
    fn new(root: &nn::Path) -> Self {
        // torchvision's inverted_residual_setting: expansion t, channels c, repeats n, stride s
        const SETTING: [(i64, i64, usize, i64); 7] =
            [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)];
        let first = ConvBn::new(root, "features.0.0", "features.0.1", 3, 32, Geometry::square(3, 2), 1e-5);
        let (mut inputs, mut index) = (32, 1);
        let mut blocks = Vec::new();
        for (t, c, n, s) in SETTING {
            for i in 0..n {
                let stride = if i == 0 { s } else { 1 };
                let hidden = inputs * t;
                let p = format!("features.{index}.conv");
                let mut expand = Vec::new();
                let mut j = 0;
                if t != 1 {
                    let (cn, bn) = (format!("{p}.{j}.0"), format!("{p}.{j}.1"));
                    expand.push(ConvBn::new(root, &cn, &bn, inputs, hidden, Geometry::square(1, 1), 1e-5));
                    j += 1;
                }
                let dw = Geometry { groups: hidden, ..Geometry::square(3, stride) };
                expand.push(ConvBn::new(root, &format!("{p}.{j}.0"), &format!("{p}.{j}.1"), hidden, hidden, dw, 1e-5));
                let (cn, bn) = (format!("{p}.{}", j + 1), format!("{p}.{}", j + 2));
                let project = ConvBn::new(root, &cn, &bn, hidden, c, Geometry::square(1, 1), 1e-5);
                blocks.push(InvertedResidual { expand, project, residual: stride == 1 && inputs == c });
                inputs = c;
                index += 1;
            }
        }
        let (cn, bn) = (format!("features.{index}.0"), format!("features.{index}.1"));
        let last = ConvBn::new(root, &cn, &bn, inputs, 1280, Geometry::square(1, 1), 1e-5);
        Self { first, blocks, last }
    }
}

impl Features for MobileNetV2 {
    fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Tensor {
        let mut x = relu6(&self.first.forward(x, ctx));
        ctx.trace.record("features.0", &x);
        for (i, block) in self.blocks.iter().enumerate() {
            let mut y = x.shallow_clone();
            for unit in &block.expand {
                y = relu6(&unit.forward(&y, ctx));
            }
            y = block.project.forward(&y, ctx);
            x = if block.residual { x + y } else { y };
            ctx.trace.record(&format!("features.{}", i + 1), &x);
        }
        let x = relu6(&self.last.forward(&x, ctx));
        ctx.trace.record(&format!("features.{}", self.blocks.len() + 1), &x);
        x
    }
}
