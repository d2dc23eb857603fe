"""References for radrun's 3D segmentation: networks, sliding-window inference and
surface metrics in millimetres.

- networks.json + <name>.safetensors: the 3D U-Net and 3D CNN written here in plain
  PyTorch layer by layer from radrun's description (tutorial's `U_Net` / `build_cnn` in
  3D, levels by nnU-Net's anisotropy rule written out by hand per case), with random
  weights under radrun's variable names, an input and the eval-mode output; and MONAI's
  BasicUNet parameter counts per block for the configuration radrun's U-Net shares.
- sliding_window.json + sliding_window-<n>.safetensors: MONAI's
  `sliding_window_inference` on a fixed network and volume (Gaussian and constant
  blending, overlaps, a volume thinner than the patch, test-time mirroring as a
  predictor that averages the flipped predictions).
- surface_metrics.json: MONAI's HD95, average symmetric surface distance and normalised
  surface distance on random anisotropic shapes, with Dice and IoU.
"""

import itertools
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file


def same(cin, cout, kernel):
    return nn.Conv3d(cin, cout, kernel, padding=[k // 2 for k in kernel])


class Norm(nn.Module):
    def __init__(self, kind, maps):
        super().__init__()
        if kind == "instance":
            self.layer = nn.InstanceNorm3d(maps, affine=True, eps=1e-5)
        elif kind == "batch":
            # Keras' epsilon, as radrun's batch norm
            self.layer = nn.BatchNorm3d(maps, eps=1e-3)

    def forward(self, x):
        return self.layer(x)


class DoubleConv(nn.Module):
    def __init__(self, cin, maps, kernel, norm):
        super().__init__()
        self.conv1 = same(cin, maps, kernel)
        self.conv2 = same(maps, maps, kernel)
        if norm != "none":
            self.norm1, self.norm2 = Norm(norm, maps), Norm(norm, maps)
        self.norm = norm

    def forward(self, x):
        x = self.conv1(x)
        if self.norm != "none":
            x = self.norm1(x)
        x = self.conv2(F.relu(x))
        if self.norm != "none":
            x = self.norm2(x)
        return F.relu(x)


class Up(nn.Module):
    def __init__(self, mode, pool, below, maps):
        super().__init__()
        self.mode, self.pool = mode, pool
        if mode == "transposed":
            self.up = nn.ConvTranspose3d(below, maps, pool, stride=pool)
        else:
            self.up = nn.Conv3d(below, maps, pool)

    def forward(self, x):
        if self.mode == "transposed":
            return F.relu(self.up(x))
        x = F.interpolate(x, scale_factor=tuple(float(p) for p in self.pool), mode="nearest")
        # Keras "same" for a kernel of 2: one voxel after
        pad = []
        for p in reversed(self.pool):
            pad += [0, p - 1]
        return F.relu(self.up(F.pad(x, pad)))


class Decoder(nn.Module):
    def __init__(self, mode, pool, below, maps, kernel, norm):
        super().__init__()
        self.up_block = Up(mode, pool, below, maps)
        self.convs = DoubleConv(2 * maps, maps, kernel, norm)


class Unet3d(nn.Module):
    """levels: [(kernel, pool)] per encoder level; bottleneck: its kernel."""

    def __init__(self, channels, outputs, features, levels, bottleneck, norm, dropout, mode):
        super().__init__()
        self.levels, self.dropout = levels, dropout
        inputs = channels
        for i, (kernel, _) in enumerate(levels, 1):
            setattr(self, f"encoder{i}", DoubleConv(inputs, features << (i - 1), kernel, norm))
            inputs = features << (i - 1)
        depth = len(levels)
        self.bottleneck = DoubleConv(inputs, features << depth, bottleneck, norm)
        below = features << depth
        for i in range(depth, 0, -1):
            kernel, pool = levels[i - 1]
            maps = features << (i - 1)
            setattr(self, f"decoder{i}", Decoder(mode, pool, below, maps, kernel, norm))
            below = maps
        label_maps, head_maps = (1, 2) if outputs <= 2 else (outputs, outputs)
        self.head = nn.Module()
        self.head.conv = same(features, head_maps, levels[0][0])
        self.head.output = nn.Conv3d(head_maps, label_maps, 1)

    def forward(self, x):
        skips = []
        depth = len(self.levels)
        for i, (_, pool) in enumerate(self.levels, 1):
            x = getattr(self, f"encoder{i}")(x)
            if i == depth:
                x = F.dropout(x, self.dropout, self.training)
            skips.append(x)
            x = F.max_pool3d(x, pool, pool)
        x = F.dropout(self.bottleneck(x), self.dropout, self.training)
        for i in range(depth, 0, -1):
            d = getattr(self, f"decoder{i}")
            x = d.convs(torch.cat([skips[i - 1], d.up_block(x)], 1))
        return self.head.output(F.relu(self.head.conv(x)))


class Cnn3d(nn.Module):
    """`build_cnn` in 3D: per block two valid k^3 convolutions with the activation, batch
    norm, 2x2x2 max pooling, dropout; dense, dropout, output."""

    def __init__(self, channels, side, classes, blocks, maps, k, act, batch_norm, units):
        super().__init__()
        self.act, self.blocks, self.batch_norm = act, blocks, batch_norm
        inputs = channels
        for b in range(1, blocks + 1):
            block = nn.Module()
            block.conv1 = nn.Conv3d(inputs, maps << (b - 1), k)
            block.conv2 = nn.Conv3d(maps << (b - 1), maps << (b - 1), k)
            if batch_norm:
                block.batch_norm = nn.BatchNorm3d(maps << (b - 1), eps=1e-3)
            setattr(self, f"block{b}", block)
            inputs = maps << (b - 1)
            side = [(s - 2 * (k - 1)) // 2 for s in side]
        self.dense = nn.Linear(inputs * int(np.prod(side)), units)
        self.output = nn.Linear(units, classes)

    def forward(self, x):
        for b in range(1, self.blocks + 1):
            block = getattr(self, f"block{b}")
            x = self.act(block.conv2(self.act(block.conv1(x))))
            if self.batch_norm:
                x = block.batch_norm(x)
            x = F.max_pool3d(x, 2, 2)
        return self.output(self.act(self.dense(x.flatten(1))))


def randomise(net, generator):
    """Every parameter and running statistic drawn at random (biases and norms included,
    so that each is checked), at a scale that keeps activations of order one."""
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var") or name.endswith(".weight") and t.dim() == 1:
                t.copy_(torch.rand(t.shape, generator=generator) + 0.5)
            elif t.dim() > 1:
                t.copy_(torch.randn(t.shape, generator=generator) * (2.0 / t[0].numel()) ** 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=generator) * 0.1)


def state(net):
    """The state under radrun's variable names."""
    tensors = [t for n, t in net.state_dict().items() if not n.endswith("num_batches_tracked")]
    return {name: t.contiguous() for name, t in zip(_radrun_names(net), tensors)}


UNETS = {
    # spacing [3, 1, 1], patch [16, 32, 32], depth 3: nnU-Net's rule by hand: level 1
    # kernel (1,3,3), pooled in plane; then z is at 3 mm vs 2 mm: kernel 3, pooled too
    "unet3d-anisotropic": dict(
        settings=dict(initial_features=4, depth=3, norm="instance", dropout=0.0, upsampling="transposed"),
        spacing=[3.0, 1.0, 1.0],
        input=[2, 16, 32, 32],
        outputs=3,
        levels=[((1, 3, 3), (1, 2, 2)), ((3, 3, 3), (2, 2, 2)), ((3, 3, 3), (2, 2, 2))],
        bottleneck=(3, 3, 3),
    ),
    # isotropic, batch norm (running statistics used in eval mode), the tutorial's
    # upsampling and a binary mask (one sigmoid map)
    "unet3d-batch-upsample": dict(
        settings=dict(initial_features=4, depth=2, norm="batch", dropout=0.3, upsampling="upsample"),
        spacing=[1.0, 1.0, 1.0],
        input=[1, 16, 16, 16],
        outputs=2,
        levels=[((3, 3, 3), (2, 2, 2)), ((3, 3, 3), (2, 2, 2))],
        bottleneck=(3, 3, 3),
    ),
    # 5 mm slices at 0.8 mm in plane, no normalisation: z (6 voxels) is never pooled and
    # its kernel stays 1 until the bottleneck, where the plane has coarsened to 3.2 mm
    "unet3d-thick-slices": dict(
        settings=dict(initial_features=3, depth=2, norm="none", dropout=0.0, upsampling="transposed"),
        spacing=[5.0, 0.8, 0.8],
        input=[1, 6, 16, 16],
        outputs=4,
        levels=[((1, 3, 3), (1, 2, 2)), ((1, 3, 3), (1, 2, 2))],
        bottleneck=(3, 3, 3),
    ),
}


def networks(out: Path):
    g = torch.Generator().manual_seed(5)
    cases = {}
    for name, c in UNETS.items():
        s = c["settings"]
        net = Unet3d(c["input"][0], c["outputs"], s["initial_features"], c["levels"], c["bottleneck"], s["norm"],
                     s["dropout"], s["upsampling"]).eval()
        randomise(net, g)
        x = torch.randn([2] + c["input"], generator=g)
        with torch.no_grad():
            y = net(x)
        save_file(state(net), str(out / f"{name}.safetensors"))
        save_file({"input": x, "output": y.contiguous()}, str(out / f"{name}-io.safetensors"))
        params = sum(p.numel() for p in net.parameters())
        cases[name] = dict(kind="unet3d", settings=s, spacing=c["spacing"], input=c["input"], outputs=c["outputs"],
                           parameters=params, levels=[[list(k), list(p)] for k, p in c["levels"]])
    act = F.elu
    cnn = dict(blocks=2, feature_maps=3, kernel_size=3, activation="elu", dropout=0.4, batch_norm=True, dense_units=8)
    net = Cnn3d(1, [20, 22, 18], 3, 2, 3, 3, act, True, 8).eval()
    randomise(net, g)
    x = torch.randn([3, 1, 20, 22, 18], generator=g)
    with torch.no_grad():
        y = net(x)
    save_file(state(net), str(out / "cnn3d.safetensors"))
    save_file({"input": x, "output": y.contiguous()}, str(out / "cnn3d-io.safetensors"))
    cases["cnn3d"] = dict(kind="cnn3d", settings=cnn, input=[1, 20, 22, 18], outputs=3,
                          parameters=sum(p.numel() for p in net.parameters()))
    return cases


def monai_blocks():
    """MONAI's BasicUNet with features (f, 2f, 4f, 8f, 16f, f), instance norm and
    transposed convolutions: its encoder, bottleneck and all decoder levels but the
    last are radrun's unet3d of depth 4 (ReLU for LeakyReLU changes no count)."""
    from monai.networks.nets import BasicUNet

    f = 8
    net = BasicUNet(spatial_dims=3, in_channels=2, out_channels=3, features=(f, 2 * f, 4 * f, 8 * f, 16 * f, f),
                    norm=("instance", {"affine": True}), upsample="deconv")
    count = lambda m: sum(p.numel() for p in m.parameters())
    names = {"conv_0": "encoder1", "down_1": "encoder2", "down_2": "encoder3", "down_3": "encoder4",
             "down_4": "bottleneck", "upcat_4": "decoder4", "upcat_3": "decoder3", "upcat_2": "decoder2"}
    return dict(features=f, channels=2, outputs=3, blocks={radrun: count(getattr(net, m)) for m, radrun in names.items()})


def sliding_window(out: Path, nets):
    from monai.inferers import sliding_window_inference
    from safetensors.torch import load_file

    c = UNETS["unet3d-anisotropic"]
    s = c["settings"]
    net = Unet3d(c["input"][0], c["outputs"], s["initial_features"], c["levels"], c["bottleneck"], s["norm"],
                 s["dropout"], s["upsampling"]).eval()
    weights = load_file(str(out / "unet3d-anisotropic.safetensors"))
    net.load_state_dict(_torch_names(net, weights))
    g = torch.Generator().manual_seed(9)

    def mirrored(model, axes):
        def predict(x):
            total = model(x)
            subsets = [a for n in range(1, len(axes) + 1) for a in itertools.combinations(axes, n)]
            for dims in subsets:
                total = total + model(x.flip(dims)).flip(dims)
            return total / (len(subsets) + 1)
        return predict

    # a single 3x3x3 convolution (zero-padded at each window's border, so the blending
    # matters), checkable to float32 rounding; then the U-Net itself, mirrored
    conv = dict(weight=torch.randn([3, 2, 3, 3, 3], generator=g) * 0.3, bias=torch.randn([3], generator=g))
    save_file(conv, str(out / "sliding_window-conv.safetensors"))
    convolve = lambda x: F.conv3d(x, conv["weight"], conv["bias"], padding=1)
    cases = []
    for n, (network, shape, overlap, mode, mirror) in enumerate([
        ("conv", [2, 20, 45, 40], 0.5, "gaussian", []),
        ("conv", [2, 20, 45, 40], 0.25, "constant", []),
        ("conv", [2, 12, 40, 33], 0.5, "gaussian", []),   # thinner than the patch along z: padded
        ("conv", [2, 16, 37, 36], 0.5, "gaussian", [2, 4]),
        ("unet3d-anisotropic", [2, 20, 45, 40], 0.5, "gaussian", [2, 3, 4]),
    ]):
        x = torch.randn([1] + shape, generator=g)
        model = net if network != "conv" else convolve
        predictor = mirrored(model, mirror) if mirror else model
        with torch.no_grad():
            y = sliding_window_inference(x, c["input"][1:], 2, predictor, overlap=overlap, mode=mode, sigma_scale=0.125)
        save_file({"input": x[0].contiguous(), "output": y[0].contiguous()}, str(out / f"sliding_window-{n}.safetensors"))
        cases.append(dict(network=network, patch=c["input"][1:], overlap=overlap, blend=mode,
                          mirror_axes=[a - 2 for a in mirror]))
    return cases


def _torch_names(net, weights):
    """radrun's names back to this module's."""
    return {name: weights[mine] for name, mine in zip(net.state_dict().keys(), _radrun_names(net))
            if not name.endswith("num_batches_tracked")}


def _radrun_names(net):
    return [n.replace(".layer.", ".").replace(".up_block.up.", ".up.").replace(".convs.", ".", 1)
            for n in net.state_dict().keys() if not n.endswith("num_batches_tracked")]


def surface_metrics():
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance, compute_surface_dice

    rng = np.random.default_rng(13)
    shape = (18, 30, 26)
    zz, yy, xx = np.mgrid[0:shape[0], 0:shape[1], 0:shape[2]]

    def blob():
        c = [rng.uniform(5, s - 5) for s in shape]
        r = [rng.uniform(2, 6), rng.uniform(3, 10), rng.uniform(3, 9)]
        m = ((zz - c[0]) / r[0]) ** 2 + ((yy - c[1]) / r[1]) ** 2 + ((xx - c[2]) / r[2]) ** 2 < 1
        return m | (rng.uniform(size=shape) < 0.002)  # specks make distances uneven

    cases = []
    for i in range(10):
        spacing = [float(rng.uniform(1.5, 5.0)), float(rng.uniform(0.5, 1.2)), float(rng.uniform(0.5, 1.2))]
        t = blob()
        p = blob() if i % 3 else t & blob() | blob()
        if i == 9:  # touches the volume's border: outside counts as background
            p[0:3, 0:4, :] = True
        tau = float(rng.uniform(1.0, 3.0))
        yt, yp = torch.from_numpy(t[None, None]), torch.from_numpy(p[None, None])
        hd95 = compute_hausdorff_distance(yp, yt, include_background=True, percentile=95, spacing=spacing)
        assd = compute_average_surface_distance(yp, yt, include_background=True, symmetric=True, spacing=spacing)
        nsd = compute_surface_dice(yp, yt, [tau], include_background=True, spacing=spacing)
        inter = (t & p).sum()
        cases.append(dict(
            shape=list(shape), spacing=spacing, tolerance=tau,
            reference=np.flatnonzero(t.ravel()).tolist(), predicted=np.flatnonzero(p.ravel()).tolist(),
            dice=float(2 * inter / (t.sum() + p.sum())), iou=float(inter / (t | p).sum()),
            hd95=float(hd95.item()), assd=float(assd.item()), nsd=float(nsd.item()),
        ))
    return cases


def write(out: Path):
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    nets = networks(out)
    (out / "networks.json").write_text(json.dumps(dict(networks=nets, monai_basic_unet=monai_blocks()), indent=1))
    (out / "sliding_window.json").write_text(json.dumps(sliding_window(out, nets), indent=1))
    (out / "surface_metrics.json").write_text(json.dumps(surface_metrics()))


if __name__ == "__main__":
    import sys

    write(Path(sys.argv[1]))
