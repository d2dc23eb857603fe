#!/usr/bin/env python3
"""The PyTorch script a researcher would write for the same training as radrun's
bench recipe: the same files, decoded in a torch DataLoader with WORKERS workers (PNG/JPEG
with Pillow, DICOM with pydicom: rescale, window from the file or min-max, MONOCHROME1
inverted), resized with antialiased bilinear, the same augmentation (torchvision's
RandomAffine: rotation 15 deg, shift 20 %, zoom 30 %), 11 % held out for validation,
the same network, Adam (Keras epsilon), batch size and epochs. Prints JSON.

    train_reference.py ROOT MODEL DEVICE EPOCHS SIZE BATCH WORKERS [PRECISION] [CHANNELS_LAST]
MODEL: cnn (the tutorial's build_cnn), resnet50 (torchvision, radrun's head) or unet (the
tutorial's U_Net as radrun builds it; ROOT/Train/Images and ROOT/Train/Segmentation,
binary masks, binary cross-entropy, no augmentation). PRECISION: fp32 (default) or bf16
(torch.autocast); CHANNELS_LAST: on or off (default): model and batches in
torch.channels_last."""

import json
import sys
import time
from pathlib import Path

import numpy as np
import pydicom
import torch
import torch.nn as nn
import torchvision
from PIL import Image
from pydicom.pixels import apply_modality_lut
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2


def read(path):
    if path.suffix == ".dcm":
        ds = pydicom.dcmread(path)
        v = apply_modality_lut(ds.pixel_array, ds).astype(np.float32)
        if "WindowCenter" in ds:
            c, w = float(np.ravel([ds.WindowCenter])[0]), float(np.ravel([ds.WindowWidth])[0])
        else:
            c, w = (v.max() + v.min()) / 2, max(float(v.max() - v.min()), 1e-6)
        img = np.clip((v - (c - w / 2)) / w, 0, 1)
        return 1 - img if ds.PhotometricInterpretation == "MONOCHROME1" else img
    im = Image.open(path)
    scale = 65535.0 if im.mode.startswith("I") else 255.0
    return np.asarray(im.convert("F") if im.mode != "L" else im, dtype=np.float32) / scale


class Files(Dataset):
    def __init__(self, items, size, augment):
        self.items, self.size = items, size
        self.augment = v2.RandomAffine(degrees=15, translate=(0.2, 0.2), scale=(0.7, 1.3)) if augment else None

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        path, label = self.items[i]
        img = Image.fromarray(read(path), mode="F").resize((self.size, self.size), Image.BILINEAR)
        x = torch.from_numpy(np.asarray(img, dtype=np.float32).copy())[None]
        if self.augment:
            x = self.augment(x)
        return x, label


class Masks(Dataset):
    """Images and their binary masks (any nonzero value is foreground)."""

    def __init__(self, items, size):
        self.items, self.size = items, size

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        image, mask = self.items[i]
        img = Image.fromarray(read(image), mode="F").resize((self.size, self.size), Image.BILINEAR)
        m = Image.open(mask).convert("L").resize((self.size, self.size), Image.NEAREST)
        x = torch.from_numpy(np.asarray(img, dtype=np.float32).copy())[None]
        return x, torch.from_numpy((np.asarray(m) > 0).astype(np.float32))[None]


class Unet(nn.Module):
    """radrun's U-Net (crates/models/src/unet.rs) with its defaults: 64 maps, depth 4,
    dropout 0.5, nearest upsampling then a 2x2 convolution padded after; the same
    31,031,685 parameters. PyTorch's default initialisation (radrun's is He-normal):
    the same work per step, which is what this script measures."""

    def __init__(self, f=64, depth=4):
        super().__init__()
        def double(i, o):
            return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.ReLU(), nn.Conv2d(o, o, 3, padding=1), nn.ReLU())
        self.encoders = nn.ModuleList(double(1 if l == 0 else f << (l - 1), f << l) for l in range(depth))
        self.bottleneck = double(f << (depth - 1), f << depth)
        self.ups = nn.ModuleList(nn.Conv2d(f << (l + 1), f << l, 2) for l in reversed(range(depth)))
        self.decoders = nn.ModuleList(double(2 * (f << l), f << l) for l in reversed(range(depth)))
        self.head = nn.Sequential(nn.Conv2d(f, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(2, 1, 1))
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        skips = []
        for level, encoder in enumerate(self.encoders):
            x = encoder(x)
            if level == len(self.encoders) - 1:
                x = self.drop(x)
            skips.append(x)
            x = nn.functional.max_pool2d(x, 2)
        x = self.drop(self.bottleneck(x))
        for up, decoder, skip in zip(self.ups, self.decoders, reversed(skips)):
            u = nn.functional.pad(nn.functional.interpolate(x, scale_factor=2, mode="nearest"), (0, 1, 0, 1))
            x = decoder(torch.cat([skip, torch.relu(up(u))], 1))
        return self.head(x)


def cnn(classes, size):
    def glorot(m):
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    s = ((size - 4) // 2 - 4) // 2
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.Conv2d(64, 64, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.5),
        nn.Flatten(), nn.Linear(64 * s * s, 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, classes))
    model.apply(glorot)
    return model


class Resnet50(nn.Module):
    def __init__(self, classes):
        super().__init__()
        self.backbone = torchvision.models.resnet50(weights=None)
        self.backbone.fc = nn.Sequential(nn.Linear(2048, 256), nn.ReLU(), nn.Dropout(0.5), nn.Linear(256, classes))
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, x):
        return self.backbone((x.expand(-1, 3, -1, -1) - self.mean) / self.std)


def main():
    root, model_name, device = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    epochs, size, batch, workers = map(int, sys.argv[4:8])
    precision = sys.argv[8] if len(sys.argv) > 8 else "fp32"
    layout = torch.channels_last if len(sys.argv) > 9 and sys.argv[9] == "on" else torch.contiguous_format
    start = time.perf_counter()
    torch.manual_seed(42)
    if model_name == "unet":
        images = sorted((root / "Train" / "Images").iterdir())
        items = [(f, root / "Train" / "Segmentation" / (f.stem + ".png")) for f in images]
    else:
        classes = sorted(p.name for p in (root / "Train").iterdir() if p.is_dir())
        items = [(f, c) for c, name in enumerate(classes) for f in sorted((root / "Train" / name).iterdir()) if f.suffix in (".png", ".jpg", ".dcm")]
    rng = np.random.default_rng(42)
    held = set(rng.choice(len(items), int(round(0.11 * len(items))), replace=False).tolist())
    train = [it for i, it in enumerate(items) if i not in held]
    val = [it for i, it in enumerate(items) if i in held]
    make = (lambda part, augment: Masks(part, size)) if model_name == "unet" else (lambda part, augment: Files(part, size, augment))
    loader = DataLoader(make(train, True), batch_size=batch, shuffle=True, num_workers=workers, persistent_workers=workers > 0)
    val_loader = DataLoader(make(val, False), batch_size=batch, num_workers=workers, persistent_workers=workers > 0)
    if model_name == "unet":
        model, criterion = Unet(), nn.functional.binary_cross_entropy_with_logits
    else:
        model = cnn(len(classes), size) if model_name == "cnn" else Resnet50(len(classes))
        criterion = nn.functional.cross_entropy
    model = model.to(device, memory_format=layout)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    autocast = lambda: torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=precision == "bf16")
    rates = []
    for _ in range(epochs):
        model.train()
        t0, seen = time.perf_counter(), 0
        for x, y in loader:
            x, y = x.to(device, non_blocking=True).to(memory_format=layout), y.to(device, non_blocking=True)
            with autocast():
                loss = criterion(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += len(y)
        loss.item()
        rates.append(seen / (time.perf_counter() - t0))
        model.eval()
        with torch.no_grad():
            for x, y in val_loader:
                with autocast():
                    model(x.to(device).to(memory_format=layout)).argmax(1).cpu()
    print(json.dumps({
        "tool": "pytorch", "images_per_second_per_epoch": rates,
        "images_per_second": float(np.mean(rates[1:] if len(rates) > 1 else rates)),
        "wall_seconds": time.perf_counter() - start,
    }))


if __name__ == "__main__":
    main()
