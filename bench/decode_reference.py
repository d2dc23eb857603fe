#!/usr/bin/env python3
"""The same work as radrun's dataset loading, in pydicom + numpy + Pillow: decode every
image of DIR, apply rescale and the file's window (DICOM) or /255 (PNG), resize to SIZE x
SIZE with Pillow's antialiased bilinear filter, keep the float32 arrays in memory.
WORKERS processes (multiprocessing), like radrun's rayon threads. Prints JSON.

    decode_reference.py DIR SIZE WORKERS REPEATS"""

import json
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.pixels import apply_modality_lut

SIZE = 0


def load(path):
    if path.suffix == ".dcm":
        ds = pydicom.dcmread(path)
        values = apply_modality_lut(ds.pixel_array, ds).astype(np.float32)
        center, width = float(ds.WindowCenter), float(ds.WindowWidth)
        img = np.clip((values - (center - width / 2)) / width, 0, 1)
        if ds.PhotometricInterpretation == "MONOCHROME1":
            img = 1 - img
    else:
        img = np.asarray(Image.open(path).convert("L"), dtype=np.float32) / 255
    return np.asarray(Image.fromarray(img, mode="F").resize((SIZE, SIZE), Image.BILINEAR))


def init(size):
    global SIZE
    SIZE = size


def main():
    root, size, workers, repeats = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    files = sorted(p for p in root.rglob("*") if p.suffix in (".dcm", ".png"))
    best = float("inf")
    with Pool(workers, initializer=init, initargs=(size,)) as pool:
        for _ in range(repeats):
            start = time.perf_counter()
            images = pool.map(load, files, chunksize=8)
            best = min(best, time.perf_counter() - start)
            assert len(images) == len(files)
    print(json.dumps({"tool": "pydicom+numpy+Pillow", "images": len(files), "seconds": best, "images_per_second": len(files) / best}))


if __name__ == "__main__":
    main()
