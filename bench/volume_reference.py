#!/usr/bin/env python3
"""Benchmark partner of bench/volume.sh: the MONAI side.

    volume_reference.py train SPEC   trains the 3D U-Net of SPEC on patches as a MONAI
                                     user would (CacheDataset, RandCropByPosNegLabeld,
                                     DataLoader workers, DiceCELoss, Adam); prints JSON:
                                     training patches/s per epoch and peak RSS
    volume_reference.py infer SPEC   segments SPEC's test scans by MONAI's
                                     sliding_window_inference (Gaussian blending, the
                                     same overlap), the prediction put back on each scan
                                     (Invertd) and saved as .nii.gz; prints JSON: seconds

SPEC (JSON, written by bench/volume.sh from radrun's own plan of the same recipe) holds
the training and test files of radrun's split, the working spacing, the CT statistics
radrun fitted, the patch, batch, batches per epoch, epochs, learning rate, worker
processes, whether to augment, and the U-Net's levels (kernel and pool per axis).

The network is the plain-PyTorch twin of radrun's `unet3d` (tests/reference/
segmentation3d.py, checked equal to radrun's to 1e-4); MONAI's arrays are [C, x, y, z]
after Orientationd("RAS"), so every kernel, pool and patch is given in x, y, z order and
the network sees the same voxels radrun's does, transposed. The augmentation, when on,
is MONAI's nearest equivalent of radrun's (nnU-Net's) set with the same probabilities
and ranges: rotation, zoom, Gaussian noise and blur, brightness, gamma, flips per axis.
"""

import gc
import json
import math
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "reference"))
from segmentation3d import Unet3d  # noqa: E402


def xyz(zyx):
    return tuple(reversed(zyx))


def network(spec):
    levels = [(xyz(kernel), xyz(pool)) for kernel, pool in spec["levels"]]
    net = Unet3d(1, spec["labels"], spec["features"], levels, xyz(spec["bottleneck"]), "instance", 0.0, "transposed")
    return net


def deterministic(spec, keys=("image", "label")):
    """Reading and preprocessing as radrun's: RAS, the working spacing (linear for the
    image, nearest for the mask), the CT rule with radrun's fitted statistics."""
    from monai import transforms as T

    keys, modes = list(keys), ("bilinear", "nearest")[: len(keys)]
    clip_low, clip_high = spec["clip"]
    return [
        T.LoadImaged(keys=keys, image_only=False),
        T.EnsureChannelFirstd(keys=keys),
        T.Orientationd(keys=keys, axcodes="RAS"),
        T.Spacingd(keys=keys, pixdim=xyz(spec["spacing"]), mode=modes),
        T.ScaleIntensityRanged(keys=["image"], a_min=clip_low, a_max=clip_high, b_min=clip_low, b_max=clip_high,
                               clip=True),
        T.NormalizeIntensityd(keys=["image"], subtrahend=spec["mean"], divisor=spec["sd"]),
    ]


def augmentation(spec):
    """radrun's nnU-Net set, as MONAI names it (probabilities and ranges the same)."""
    from monai import transforms as T

    keys, angle = ["image", "label"], math.radians(30)
    return [
        T.RandRotated(keys=keys, range_x=angle, range_y=angle, range_z=angle, prob=0.2, mode=("bilinear", "nearest"),
                      padding_mode="zeros"),
        T.RandZoomd(keys=keys, min_zoom=0.7, max_zoom=1.4, prob=0.2, mode=("trilinear", "nearest"), keep_size=True),
        T.RandGaussianNoised(keys=["image"], prob=0.1, std=0.1),
        T.RandGaussianSmoothd(keys=["image"], prob=0.2, sigma_x=(0.5, 1.0), sigma_y=(0.5, 1.0), sigma_z=(0.5, 1.0)),
        T.RandScaleIntensityd(keys=["image"], factors=0.25, prob=0.15),
        T.RandAdjustContrastd(keys=["image"], prob=0.3, gamma=(0.7, 1.5)),
        T.RandFlipd(keys=keys, prob=0.5, spatial_axis=0),
        T.RandFlipd(keys=keys, prob=0.5, spatial_axis=1),
        T.RandFlipd(keys=keys, prob=0.5, spatial_axis=2),
    ]


def train(spec):
    from monai.data import CacheDataset, DataLoader
    from monai.losses import DiceCELoss
    from monai import transforms as T

    torch.manual_seed(1)
    torch.set_num_threads(spec["threads"])
    files = [{"image": i, "label": m} for i, m in spec["train"]]
    # nnU-Net's share: one patch in three centred on a label (pos 1 : neg 2)
    random = [T.RandCropByPosNegLabeld(keys=["image", "label"], label_key="label", spatial_size=xyz(spec["patch"]),
                                       pos=1, neg=2, num_samples=1)]
    if spec["augment"]:
        random += augmentation(spec)
    # a case smaller than the patch is padded (image 0, background 0), as radrun pads it
    pad = T.SpatialPadd(keys=["image", "label"], spatial_size=xyz(spec["patch"]))
    cached = deterministic(spec) + [pad, T.EnsureTyped(keys=["image", "label"], track_meta=False)]
    data = CacheDataset(files, T.Compose(cached + random), cache_rate=1.0, num_workers=spec["threads"], progress=False)
    batch = spec["batch"]
    sampler = torch.utils.data.RandomSampler(data, replacement=True, num_samples=spec["iterations"] * batch)
    loader = DataLoader(data, batch_size=batch, sampler=sampler, num_workers=spec["workers"],
                        persistent_workers=spec["workers"] > 0)
    net = network(spec)
    optimizer = torch.optim.Adam(net.parameters(), lr=spec["learning_rate"])
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    rates = []
    for _ in range(spec["epochs"]):
        net.train()
        start, patches = time.perf_counter(), 0
        for item in loader:
            x, y = item["image"], item["label"]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(net(x), y)
            loss.backward()
            optimizer.step()
            patches += x.shape[0]
        rates.append(patches / (time.perf_counter() - start))
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # the persistent workers exit with their loader: only then does RUSAGE_CHILDREN see them
    del loader
    gc.collect()
    print(json.dumps({"patches_per_second_per_epoch": rates, "peak_rss_kib": own,
                      "largest_worker_rss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))


def infer(spec):
    from monai import transforms as T
    from monai.inferers import sliding_window_inference

    torch.set_num_threads(spec["threads"])
    net = network(spec).eval()
    pre = T.Compose(deterministic(spec, keys=("image",)))
    out = Path(spec["out"])
    save = T.SaveImage(output_dir=str(out), output_postfix="mask", separate_folder=False, print_log=False,
                       resample=False)
    start = time.perf_counter()
    for image in spec["test"]:
        item = pre({"image": image})
        with torch.no_grad():
            logits = sliding_window_inference(item["image"][None], xyz(spec["patch"]), spec["batch"], net,
                                              overlap=spec["overlap"], mode="gaussian", sigma_scale=0.125)
        item["pred"] = logits[0].argmax(0, keepdim=True).float()
        item["pred"].applied_operations = item["image"].applied_operations
        back = T.Invertd(keys="pred", transform=pre, orig_keys="image", nearest_interp=True)(item)
        save(back["pred"], meta_data=back["pred"].meta)
    print(json.dumps({"seconds": time.perf_counter() - start, "scans": len(spec["test"])}))


if __name__ == "__main__":
    what, spec = sys.argv[1], json.loads(Path(sys.argv[2]).read_text())
    {"train": train, "infer": infer}[what](spec)
