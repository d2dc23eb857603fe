#!/usr/bin/env python3
"""Benchmark images: N 512 x 512 files in a classification layout (Train/{a,b}, Test/{a,b}),
half CT-like DICOM (16-bit signed, rescale intercept -1024, window tags; uncompressed and
RLE), half 8-bit PNG. Deterministic.   make_bench_data.py OUT_DIR N"""

import sys
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, RLELossless, generate_uid


def main():
    out, n = Path(sys.argv[1]), int(sys.argv[2])
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:512, 0:512] / 511 * 2 - 1
    for i in range(n):
        split = "Test" if i % 5 == 4 else "Train"
        folder = out / split / ("a" if (i // 5) % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        body = ((xx / 0.8) ** 2 + (yy / 0.6) ** 2 < 1).astype(float)
        hu = -1000 + body * (1040 + rng.normal(0, 30, (512, 512)))
        if i % 2 == 0:
            ds = Dataset()
            ds.file_meta = FileMetaDataset()
            ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
            ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["bench", str(i)])
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, ds.file_meta.MediaStorageSOPInstanceUID
            ds.Modality, ds.PatientID = "CT", f"BENCH{i}"
            ds.Rows = ds.Columns = 512
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
            ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
            ds.WindowCenter, ds.WindowWidth = 40, 400
            ds.PixelData = np.round(hu + 1024).astype(np.int16).tobytes()
            if i % 4 == 2:
                ds.compress(RLELossless, generate_instance_uid=False)
            ds.save_as(folder / f"img{i:05d}.dcm", enforce_file_format=True)
        else:
            Image.fromarray(np.clip((hu + 160) / 400 * 255, 0, 255).astype(np.uint8)).save(folder / f"img{i:05d}.png")


if __name__ == "__main__":
    main()
