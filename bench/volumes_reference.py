#!/usr/bin/env python3
"""Benchmark partner of bench/volumes.sh.

    volumes_reference.py make DIR N SIDE SLICES   N synthetic CT cases (int16 images,
                                                  uint8 masks, .nii.gz) in DIR/{Train,Test}
    volumes_reference.py read DIR WORKERS REPEATS what `radrun plan` reads of each case,
                                                  done with nibabel + numpy in WORKERS
                                                  processes; prints JSON

Per case, the reading does what radrun's volume plan does: load the image and its mask,
the values as float (get_fdata), the canonical (RAS) shape and spacing, a check that the
mask shares the image's grid, the voxels of each label, and up to 10,000 foreground
intensities at an even stride (for the CT statistics).
"""

import json
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import nibabel as nib
import numpy as np


def make(out: Path, n: int, side: int, slices: int):
    rng = np.random.default_rng(7)
    for i in range(n):
        split = "Train" if i < n * 3 // 4 else "Test"
        for folder in ("Images", "Masks"):
            (out / split / folder).mkdir(parents=True, exist_ok=True)
        x, y, z = np.meshgrid(*(np.linspace(-1, 1, s) for s in (side, side, slices)), indexing="ij")
        body = x**2 + (y / 0.8) ** 2 < 0.8
        organ = ((x + 0.2) / 0.3) ** 2 + (y / 0.25) ** 2 + (z / 0.6) ** 2 < 1
        hu = np.where(body, 40.0, -1000.0) + np.where(organ, 20.0, 0.0) + rng.normal(0, 5, body.shape)
        affine = np.diag([0.8, 0.8, 2.5, 1.0])
        nib.Nifti1Image(np.round(hu).astype(np.int16), affine).to_filename(out / split / "Images" / f"case_{i:03}.nii.gz")
        nib.Nifti1Image(organ.astype(np.uint8), affine).to_filename(out / split / "Masks" / f"case_{i:03}.nii.gz")


def read_case(paths):
    image_path, mask_path = paths
    image, mask = nib.load(image_path), nib.load(mask_path)
    values = image.get_fdata(dtype=np.float32)
    labels = mask.get_fdata(dtype=np.float32)
    if image.shape != mask.shape or not np.allclose(image.affine, mask.affine, atol=1e-4):
        raise ValueError(f"{mask_path}: not on its image's grid")
    canonical = nib.as_closest_canonical(image)
    shape, spacing = canonical.shape, canonical.header.get_zooms()[:3]
    counts = np.bincount(labels.astype(np.int64).ravel())
    inside = np.flatnonzero(labels.ravel(order="F") > 0)
    stride = max(1, -(-len(inside) // 10_000))
    samples = values.ravel(order="F")[inside[::stride]]
    return shape, spacing, counts.tolist(), float(samples.mean())


def read(data: Path, workers: int, repeats: int):
    pairs = [(str(p), str(p.parent.parent / "Masks" / p.name)) for p in sorted(data.glob("*/Images/*.nii.gz"))]
    times = []
    with Pool(workers) as pool:
        for _ in range(repeats):
            start = time.perf_counter()
            pool.map(read_case, pairs, chunksize=1)
            times.append(time.perf_counter() - start)
    best = min(times)
    print(json.dumps(dict(tool="nibabel+numpy", cases=len(pairs), seconds=best, cases_per_second=len(pairs) / best)))


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    else:
        read(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
