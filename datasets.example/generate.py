#!/usr/bin/env python3
"""Deterministic generator of radrun's bundled example data: synthetic chest radiographs.

NOT PATIENT DATA. Every image is a phantom drawn from geometric shapes: lungs, heart,
spine, ribs, clavicles, plus one of five findings, with variation between synthetic
"patients" (size, position, rotation, exposure, noise) and several images per patient.

    chest6/{Train,Test}/<class>/<patient>_<n>.<ext>   six-class classification
    lungs/{Train,Test}/{Images,Segmentation}/          lung-field segmentation (exact masks)

Files mix 8-bit PNG, 16-bit PNG, JPEG and DICOM (MONOCHROME1 and 2, with and without
window tags, uncompressed, RLE, deflate and JPEG baseline). The same command always
writes the same bytes (pinned numpy/pydicom/Pillow, scripts/requirements-test.txt):

    ~/.cache/radrun/venv-torch-2.11.0/bin/python datasets.example/generate.py [OUT_DIR]

`generate.py --lesions OUT H W` writes instead where each test image's finding is.
"""

import argparse
import csv
import io
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    RLELossless,
    generate_uid,
)
from PIL import Image
from scipy.ndimage import gaussian_filter

SEED = 20260511
# the patients' ID prefix; another --seed makes other patients (e.g. SYN7-TR0000)
PREFIX = "SYN"
CLASSES = ["cardiomegaly", "consolidation", "nodule", "normal", "pleural_effusion", "pneumothorax"]
# patients per class and split; each patient has 2 or 3 images
PATIENTS = {"Train": 56, "Test": 16}
SEG_PATIENTS = {"Train": 120, "Test": 20}
SIZE = 64  # image side; JPEG-compressed DICOM files are 80 px
DICOM_SIZE = 80
CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
# CT series: patients per class and split, slices per series, slice side and spacing
CT_PATIENTS = {"Train": 8, "Test": 4}
CT_SLICES, CT_SIZE, CT_SPACING = 10, 32, 2.5
# 3D organs: cases per split, in-plane side
ORGAN_CASES = {"Train": 18, "Test": 6}
ORGAN_SIDE = 64


def grid(h, w):
    """Normalised coordinates x (left-right) and y (top-bottom) in [-1, 1]."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    return x / (w - 1) * 2 - 1, y / (h - 1) * 2 - 1


def soft(signed, edge=0.02):
    """1 inside (signed < 0), 0 outside, with a soft edge."""
    return 1.0 / (1.0 + np.exp(np.clip(signed / edge, -50, 50)))


def ellipse(x, y, cx, cy, rx, ry):
    """Signed-ish distance: < 0 inside the ellipse."""
    return np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2) - 1.0


class Patient:
    """Anatomy and finding of one synthetic patient, drawn once, rendered per image."""

    def __init__(self, rng, finding):
        self.finding = finding
        self.scale = rng.uniform(0.9, 1.06)
        self.shift = rng.uniform(-0.05, 0.05, size=2)
        self.rotation = np.deg2rad(rng.uniform(-4, 4))
        self.lungs = []
        for side in (-1, 1):
            self.lungs.append(
                dict(
                    cx=side * rng.uniform(0.34, 0.40),
                    cy=rng.uniform(-0.08, -0.02),
                    rx=rng.uniform(0.23, 0.28),
                    ry=rng.uniform(0.50, 0.58),
                )
            )
        ctr = rng.uniform(0.64, 0.74) if finding == "cardiomegaly" else rng.uniform(0.36, 0.44)
        self.heart = dict(cx=rng.uniform(0.05, 0.11), cy=rng.uniform(0.26, 0.32), rx=ctr * 1.36 / 2, ry=rng.uniform(0.24, 0.3))
        self.texture_seed = int(rng.integers(1 << 31))
        side = int(rng.integers(2))
        lung = self.lungs[side]
        self.side = side
        if finding == "nodule":
            ang, rad = rng.uniform(0, 2 * np.pi), rng.uniform(0.0, 0.55)
            self.spot = (lung["cx"] + rad * lung["rx"] * np.cos(ang), lung["cy"] + rad * lung["ry"] * np.sin(ang), rng.uniform(0.12, 0.16))
        elif finding == "consolidation":
            cx, cy = lung["cx"] + rng.uniform(-0.3, 0.3) * lung["rx"], lung["cy"] + rng.uniform(-0.1, 0.5) * lung["ry"]
            self.blobs = [(cx + rng.normal(0, 0.07), cy + rng.normal(0, 0.1), rng.uniform(0.14, 0.21)) for _ in range(4)]
        elif finding == "pleural_effusion":
            self.both = rng.uniform() < 0.3
            self.level = rng.uniform(0.4, 0.6)
        elif finding == "pneumothorax":
            self.collapse = rng.uniform(0.4, 0.55)

    def coordinates(self, h, w):
        """The patient's own coordinates of each pixel of an h x w image."""
        x, y = grid(h, w)
        c, s = np.cos(self.rotation), np.sin(self.rotation)
        return (c * x - s * y) / self.scale - self.shift[0], (s * x + c * y) / self.scale - self.shift[1]

    def lesion(self, h, w):
        """Where the finding is on an h x w image (empty for "normal"): the nodule, the
        consolidated patch, the fluid, the air of the pneumothorax, the enlarged heart."""
        x, y = self.coordinates(h, w)
        lung = self.lungs[self.side]
        inside = ellipse(x, y, lung["cx"], lung["cy"], lung["rx"], lung["ry"]) < 0
        if self.finding == "nodule":
            cx, cy, r = self.spot
            return ellipse(x, y, cx, cy, r, r) < 0
        if self.finding == "consolidation":
            blob = np.zeros((h, w))
            for cx, cy, r in self.blobs:
                blob = np.maximum(blob, np.exp(-(((x - cx) ** 2 + (y - cy) ** 2) / (r**2))))
            return (blob > 0.45) & inside
        if self.finding == "pleural_effusion":
            region = np.zeros((h, w), dtype=bool)
            for i, l in enumerate(self.lungs):
                if i == self.side or self.both:
                    surface = l["cy"] + l["ry"] * (1 - 2 * self.level) - 0.18 * (np.abs(x - l["cx"]) / l["rx"]) ** 2
                    region |= (y > surface) & (ellipse(x, y, l["cx"], l["cy"], l["rx"], l["ry"]) < 0)
            return region
        if self.finding == "pneumothorax":
            k = self.collapse
            inner = ellipse(x, y, lung["cx"] * (1 - 0.25 * (1 - k)), lung["cy"] + 0.2 * (1 - k), lung["rx"] * k, lung["ry"] * k)
            return inside & (inner > 0)
        if self.finding == "cardiomegaly":
            hrt = self.heart
            return ellipse(x, y, hrt["cx"], hrt["cy"], hrt["rx"], hrt["ry"]) < 0
        return np.zeros((h, w), dtype=bool)

    def render(self, rng, h, w):
        """Intensity image in [0, 1] (bright = dense) and the lung-field mask."""
        x, y = self.coordinates(h, w)
        img = np.full((h, w), 0.04)
        body = soft(ellipse(x, y, 0, 0.04, 0.8, 0.9), 0.03)
        img += 0.42 * body
        tex_rng = np.random.default_rng(self.texture_seed)
        texture = gaussian_filter(tex_rng.normal(0, 1, (h, w)), 1.2)
        texture /= texture.std() + 1e-9
        lung_mask = np.zeros((h, w), dtype=bool)
        lung_field = np.zeros((h, w))
        for i, l in enumerate(self.lungs):
            # dome-shaped base: flatten the lower part of the ellipse slightly
            d = ellipse(x, y, l["cx"], l["cy"], l["rx"], l["ry"])
            field = soft(d, 0.025)
            lung_mask |= d < 0
            if self.finding == "pneumothorax" and i == self.side:
                # collapsed lung toward the hilum, air without markings around it
                k = self.collapse
                inner = ellipse(x, y, l["cx"] * (1 - 0.25 * (1 - k)), l["cy"] + 0.2 * (1 - k), l["rx"] * k, l["ry"] * k)
                collapsed = soft(inner, 0.02)
                air = field * (1 - collapsed)
                img -= 0.5 * air
                img -= 0.26 * collapsed * field
                img += 0.05 * collapsed
                img += 0.10 * np.exp(-(inner / 0.03) ** 2) * field  # visceral pleural line
                lung_field += collapsed * field
            else:
                img -= 0.28 * field
                lung_field += field
        img += 0.025 * texture * lung_field
        # ribs: arcs across each lung
        for k in range(8):
            yk = -0.6 + k * 0.15
            for l in self.lungs:
                arc = np.abs(y - (yk + 0.18 * ((x - l["cx"]) / l["rx"]) ** 2)) - 0.022
                img += 0.04 * soft(arc, 0.012) * soft(ellipse(x, y, l["cx"], l["cy"], l["rx"] * 1.1, l["ry"] * 1.05), 0.05)
        # clavicles, spine, mediastinum and heart
        for side in (-1, 1):
            t = np.clip((x * side - 0.08) / 0.5, 0, 1)
            line = np.abs(y - (-0.63 - 0.1 * t)) - 0.03
            img += 0.12 * soft(line, 0.012) * ((x * side > 0.08) & (x * side < 0.6))
        img += 0.10 * soft(np.abs(x) - 0.07, 0.02) * body
        img += 0.12 * soft(np.abs(x - 0.03) - 0.1, 0.03) * soft(y - 0.55, 0.05) * (y > -0.55)
        hrt = self.heart
        img += 0.22 * soft(ellipse(x, y, hrt["cx"], hrt["cy"], hrt["rx"], hrt["ry"]), 0.02)
        # findings
        if self.finding == "nodule":
            cx, cy, r = self.spot
            img += 0.45 * soft(ellipse(x, y, cx, cy, r, r), 0.015)
        elif self.finding == "consolidation":
            blob = np.zeros((h, w))
            for cx, cy, r in self.blobs:
                blob = np.maximum(blob, np.exp(-(((x - cx) ** 2 + (y - cy) ** 2) / (r**2))))
            patch = soft(0.45 - blob, 0.06) * lung_field
            img += 0.4 * patch * (1 + 0.2 * texture)
        elif self.finding == "pleural_effusion":
            for i, l in enumerate(self.lungs):
                if i != self.side and not self.both:
                    continue
                lateral = np.abs(x - l["cx"]) / l["rx"]
                surface = l["cy"] + l["ry"] * (1 - 2 * self.level) - 0.18 * lateral**2
                fluid = soft(surface - y, 0.03) * soft(ellipse(x, y, l["cx"], l["cy"], l["rx"], l["ry"]), 0.025)
                img += 0.5 * fluid
        # exposure and noise, per image
        gain, gamma, offset = rng.uniform(0.9, 1.1), rng.uniform(0.9, 1.12), rng.uniform(-0.03, 0.03)
        img = np.clip(img, 0, 1) ** gamma * gain + offset
        img = gaussian_filter(img, 0.6) + rng.normal(0, rng.uniform(0.008, 0.02), (h, w))
        return np.clip(img, 0, 1), lung_mask


def uid(*parts):
    return generate_uid(entropy_srcs=[str(SEED), *map(str, parts)])


def synthetic_dataset(sop_class, modality, patient_id, sop_uid, study_uid, series_uid):
    """The identity and meta of a synthetic phantom's DICOM file (explicit VR LE)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.Modality = modality
    ds.PatientID = patient_id
    ds.PatientName = "Synthetic^" + patient_id
    ds.StudyDescription = "SYNTHETIC PHANTOM - NOT A PATIENT"
    return ds


def dicom_dataset(img, patient_id, key, mono1, window, slope_intercept):
    """A CR dataset with 12-bit stored values; returns the dataset before compression."""
    slope, intercept = slope_intercept
    stored = np.round((1 - img if mono1 else img) * 4095).astype(np.uint16)
    ids = uid("sop", key), uid("study", patient_id), uid("series", key)
    ds = synthetic_dataset(CR_IMAGE_STORAGE, "CR", patient_id, *ids)
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.StudyDate = "20260101"
    ds.Rows, ds.Columns = img.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if mono1 else "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = slope, intercept, "US"
    ds.ImagerPixelSpacing = [3.6, 3.6]
    if window:
        ds.WindowCenter = intercept + 2047.5 * slope
        ds.WindowWidth = 4095 * slope
    ds.PixelData = stored.tobytes()
    return ds


def write_dicom(path, img, patient_id, key, kind, rng):
    mono1 = kind != "jpeg" and rng.uniform() < 0.4
    window = rng.uniform() < 0.7
    slope_intercept = (1.0, 0.0) if rng.uniform() < 0.6 else (0.5, -100.0)
    if kind == "jpeg":
        ds = dicom_dataset(img, patient_id, key, False, window, (1.0, 0.0))
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        if window:
            ds.WindowCenter, ds.WindowWidth = 127.5, 255
        buf = io.BytesIO()
        Image.fromarray(np.round(img * 255).astype(np.uint8), mode="L").save(buf, "JPEG", quality=92)
        ds.PixelData = encapsulate([buf.getvalue()])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        ds.LossyImageCompression = "01"
    else:
        ds = dicom_dataset(img, patient_id, key, mono1, window, slope_intercept)
        if kind == "rle":
            ds.compress(RLELossless, generate_instance_uid=False)
        elif kind == "deflate":
            ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)


def write_raster(path, img, kind):
    if kind == "png16":
        Image.fromarray(np.round(img * 65535).astype(np.uint16)).save(path, optimize=True)
    elif kind == "jpg":
        Image.fromarray(np.round(img * 255).astype(np.uint8), mode="L").save(path, "JPEG", quality=90)
    else:
        Image.fromarray(np.round(img * 255).astype(np.uint8), mode="L").save(path, optimize=True)


# file kinds, chosen per image independently of the class (no format shortcut to learn)
KINDS = ["png"] * 8 + ["jpg"] * 8 + ["png16", "dcm-plain", "dcm-rle", "dcm-deflate"] + ["dcm-jpeg"] * 4


def write_image(folder, stem, patient, rng, patient_id, key, kind):
    if kind.startswith("dcm"):
        side = DICOM_SIZE if kind == "dcm-jpeg" else SIZE
        img, mask = patient.render(rng, side, side)
        path = folder / f"{stem}.dcm"
        write_dicom(path, img, patient_id, key, kind[4:], rng)
    else:
        img, mask = patient.render(rng, SIZE, SIZE)
        path = folder / f"{stem}.{'jpg' if kind == 'jpg' else 'png'}"
        write_raster(path, img, kind)
    return path, mask


def classification(out):
    rows = []
    for split_index, (split, n_patients) in enumerate(PATIENTS.items()):
        for class_index, finding in enumerate(CLASSES):
            folder = out / "chest6" / split / finding
            folder.mkdir(parents=True, exist_ok=True)
            for p in range(n_patients):
                rng = np.random.default_rng([SEED, split_index, class_index, p])
                patient = Patient(rng, finding)
                patient_id = f"{PREFIX}-{split[:2].upper()}{class_index}{p:03d}"
                for n in range(int(rng.integers(2, 4))):
                    kind = KINDS[int(rng.integers(len(KINDS)))]
                    key = f"{split}/{finding}/{p}/{n}"
                    path, _ = write_image(folder, f"{patient_id}_{n + 1}", patient, rng, patient_id, key, kind)
                    rows.append([path.relative_to(out / "chest6").as_posix(), patient_id, finding, kind])
    (out / "chest6" / "Train" / "normal" / "scanner_notes.txt").write_text(
        "A non-image file: radrun ignores it and counts it in the data summary.\n"
    )
    with open(out / "chest6" / "patients.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "patient_id", "class", "format"])
        writer.writerows(rows)


def segmentation(out):
    for split_index, (split, n_patients) in enumerate(SEG_PATIENTS.items()):
        images, masks = out / "lungs" / split / "Images", out / "lungs" / split / "Segmentation"
        images.mkdir(parents=True, exist_ok=True)
        masks.mkdir(parents=True, exist_ok=True)
        for p in range(n_patients):
            rng = np.random.default_rng([SEED, 100 + split_index, p])
            finding = ["normal", "normal", "nodule", "cardiomegaly", "pleural_effusion"][p % 5]
            patient = Patient(rng, finding)
            patient_id = f"{PREFIX}-L{split[:2].upper()}{p:03d}"
            kind = "dcm-plain" if p % 4 == 3 else "png"
            path, mask = write_image(images, patient_id, patient, rng, patient_id, f"lungs/{split}/{p}", kind)
            Image.fromarray((mask * 255).astype(np.uint8), mode="L").save(masks / f"{patient_id}.png", optimize=True)


def ct_slice(rng, z, nodule):
    """Hounsfield units of one axial slice of a phantom chest at height z (mm): air,
    body, lungs, spine, and a spherical nodule when there is one."""
    y, x = grid(CT_SIZE, CT_SIZE)
    hu = np.full((CT_SIZE, CT_SIZE), -1000.0)
    hu[ellipse(x, y, 0.5, 0.5, 0.44, 0.34) < 0] = 40.0
    for cx in (0.3, 0.7):
        hu[ellipse(x, y, cx, 0.46, 0.15, 0.22) < 0] = -850.0
    hu[ellipse(x, y, 0.5, 0.76, 0.06, 0.06) < 0] = 700.0
    if nodule is not None:
        cx, cy, cz, radius = nodule  # an ellipsoid 16 mm tall: in 7 of the 10 slices
        r2 = radius**2 * (1 - ((z - cz) / 8.0) ** 2)
        if r2 > 0:
            hu[(x - cx) ** 2 + (y - cy) ** 2 < r2] = 30.0
    return gaussian_filter(hu, 0.7) + rng.normal(0, 12, hu.shape)


def write_ct_slice(path, hu, patient_id, key, index, z):
    ids = uid("ct-sop", key, index), uid("ct-study", patient_id), uid("ct-series", key)
    ds = synthetic_dataset(CT_IMAGE_STORAGE, "CT", patient_id, *ids)
    ds.InstanceNumber = index + 1
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [-16, -16, z]
    ds.SliceThickness = CT_SPACING
    ds.PixelSpacing = [1, 1]
    ds.Rows, ds.Columns = hu.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 1, -1024, "HU"
    ds.PixelData = np.clip(np.round(hu + 1024), 0, 4095).astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def ct_series(out):
    """ctslices/{Train,Test}/{normal,nodule}/<patient>/NN.dcm: one axial CT series per
    patient. File names run against the slice positions (NN = 10 is the lowest slice)
    and instance numbers are shuffled, so only ImagePositionPatient orders them right."""
    for split_index, (split, n_patients) in enumerate(CT_PATIENTS.items()):
        for class_index, finding in enumerate(["normal", "nodule"]):
            for p in range(n_patients):
                rng = np.random.default_rng([SEED, 200 + split_index, class_index, p])
                patient_id = f"{PREFIX}-CT{split[:2].upper()}{class_index}{p:02d}"
                folder = out / "ctslices" / split / finding / patient_id
                folder.mkdir(parents=True, exist_ok=True)
                zs = [i * CT_SPACING for i in range(CT_SLICES)]
                nodule = None
                if finding == "nodule":
                    side = rng.choice([0.3, 0.7])
                    nodule = (side + rng.uniform(-0.04, 0.04), rng.uniform(0.4, 0.52), zs[CT_SLICES // 2], rng.uniform(0.12, 0.15))
                instances = rng.permutation(CT_SLICES)
                for i, z in enumerate(zs):
                    hu = ct_slice(rng, z, nodule)
                    path = folder / f"{CT_SLICES - i:02d}.dcm"
                    write_ct_slice(path, hu, patient_id, f"{split}/{finding}/{p}", int(instances[i]), z)


def organ_volume(rng, shape, spacing, lesion):
    """Hounsfield units (int16) and labels (uint8: 0 background, 1 organ, 2 lesion) of
    one phantom abdomen on a RAS grid of `shape` voxels at `spacing` mm, centred on the
    origin: air, body, spine, an ellipsoid organ and, when `lesion`, a sphere inside it."""
    axes = [(np.arange(n) - (n - 1) / 2) * s for n, s in zip(shape, spacing)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    hu = np.full(shape, -1000.0)
    body = (x / rng.uniform(40, 46)) ** 2 + (y / rng.uniform(30, 36)) ** 2 < 1
    hu[body] = 40.0
    hu[(x / 8) ** 2 + ((y + 22) / 8) ** 2 < 1] = 400.0
    cx, cy, cz = rng.uniform(-12, -4), rng.uniform(-2, 6), rng.uniform(-12, 12)
    rx, ry, rz = rng.uniform(16, 22), rng.uniform(12, 16), rng.uniform(30, 44)
    organ = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 + ((z - cz) / rz) ** 2 < 1
    labels = organ.astype(np.uint8)
    hu[organ] = 60.0
    if lesion:
        r = rng.uniform(5, 8)
        lx, ly, lz = cx + rng.uniform(-5, 5), cy + rng.uniform(-4, 4), cz + rng.uniform(-12, 12)
        spot = (x - lx) ** 2 + (y - ly) ** 2 + (z - lz) ** 2 < r**2
        labels[spot & organ] = 2
        hu[spot & organ] = 110.0
    hu = gaussian_filter(hu, 0.6)
    hu[body] += rng.normal(0, 3, int(body.sum()))
    return np.round(hu).astype(np.int16), labels


def organ_case(i):
    """Case i: its split, shape, spacing, lesion and storage (how its NIfTI file is
    written: 0 RAS with sform and qform, 1 qform only, 2 stored LPS, 3 sform only)."""
    rng = np.random.default_rng([SEED, 300, i])
    split = "Train" if i < ORGAN_CASES["Train"] else "Test"
    shape = (ORGAN_SIDE, ORGAN_SIDE, int(rng.integers(44, 53)))
    spacing = (float(rng.choice([1.4, 1.5, 1.6, 1.7])),) * 2 + (float(rng.choice([2.5, 3.0, 3.5, 4.0])),)
    return rng, split, shape, spacing, i % 3 != 2, i % 4


def write_organ_nifti(path, array, affine, storage, dtype):
    img = nib.Nifti1Image(array.astype(dtype), affine)
    img.set_qform(affine, code=0 if storage == 3 else 1)
    img.set_sform(affine, code=0 if storage == 1 else (2 if storage == 2 else 1))
    img.to_filename(path)


def write_organ_series(folder, hu, affine, patient_id, key):
    """One axial DICOM slice per k of an LPS-stored array (deflated, HU with intercept
    -1024): the grid radrun and SimpleITK read back is the array's affine."""
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(hu.shape[2]):
        ids = uid("organ-sop", key, k), uid("organ-study", patient_id), uid("organ-series", key)
        ds = synthetic_dataset(CT_IMAGE_STORAGE, "CT", patient_id, *ids)
        ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
        ras = affine @ np.array([0, 0, k, 1.0])
        ds.InstanceNumber = k + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [round(-ras[0], 4), round(-ras[1], 4), round(ras[2], 4)]
        ds.PixelSpacing = [round(-affine[1][1], 4), round(-affine[0][0], 4)]
        ds.SliceThickness = round(affine[2][2], 4)
        ds.Rows, ds.Columns = hu.shape[1], hu.shape[0]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 1, -1024, "HU"
        ds.PixelData = np.clip(hu[:, :, k].T.astype(np.int32) + 1024, 0, 4095).astype(np.uint16).tobytes()
        ds.save_as(folder / f"{k + 1:03d}.dcm", enforce_file_format=True)


def organs(out):
    """organs3d/: the same 24 phantom abdomen CT volumes with organ and lesion masks, as
    NIfTI files in split folders (nifti/), in the Decathlon / nnU-Net v2 layout
    (decathlon/, links to the same files), and, for the cases stored LPS, as DICOM
    series with the NIfTI masks (series/)."""
    base = out / "organs3d"
    for i in range(sum(ORGAN_CASES.values())):
        rng, split, shape, spacing, lesion, storage = organ_case(i)
        hu, labels = organ_volume(rng, shape, spacing, lesion)
        origin = [-(n - 1) / 2 * s for n, s in zip(shape, spacing)]
        affine = np.diag([*spacing, 1.0])
        affine[:3, 3] = origin
        if storage == 2:  # the same anatomy stored with its first two axes reversed (LPS)
            hu, labels = hu[::-1, ::-1, :], labels[::-1, ::-1, :]
            flip = np.diag([-1.0, -1.0, 1.0, 1.0])
            flip[:2, 3] = [shape[0] - 1, shape[1] - 1]
            affine = affine @ flip
        name = f"organ_{i:03d}"
        nifti = base / "nifti" / split
        for folder, array, dtype in (("Images", hu, np.int16), ("Masks", labels, np.uint8)):
            (nifti / folder).mkdir(parents=True, exist_ok=True)
            write_organ_nifti(nifti / folder / f"{name}.nii.gz", array, affine, storage, dtype)
        tr = "Tr" if split == "Train" else "Ts"
        for folder, linked in ((f"images{tr}", f"Images/{name}.nii.gz"), (f"labels{tr}", f"Masks/{name}.nii.gz")):
            link = base / "decathlon" / folder / (f"{name}_0000.nii.gz" if folder.startswith("images") else f"{name}.nii.gz")
            link.parent.mkdir(parents=True, exist_ok=True)
            link.unlink(missing_ok=True)
            link.symlink_to(Path("../../nifti") / split / linked)
        if storage == 2:
            series = base / "series" / split
            write_organ_series(series / "Images" / name, hu, affine, f"{PREFIX}-ORGAN{i:03d}", name)
            mask = series / "Masks" / f"{name}.nii.gz"
            mask.parent.mkdir(parents=True, exist_ok=True)
            mask.unlink(missing_ok=True)
            mask.symlink_to(Path("../../../nifti") / split / "Masks" / f"{name}.nii.gz")
    dataset = {
        "name": "organs3d (synthetic phantoms, NOT patient data)",
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, "organ": 1, "lesion": 2},
        "numTraining": ORGAN_CASES["Train"],
        "file_ending": ".nii.gz",
    }
    (base / "decathlon" / "dataset.json").write_text(json.dumps(dataset, indent=2) + "\n")


def lesion_masks(out, h, w):
    """OUT/<class>/<patient>_<n>.png: where the finding of each chest6 test image is,
    drawn at h x w (0/255), for the tests of where Grad-CAM looks. The same draws as
    classification(), without writing the images."""
    split_index, split = 1, "Test"
    for class_index, finding in enumerate(CLASSES):
        folder = out / finding
        folder.mkdir(parents=True, exist_ok=True)
        for p in range(PATIENTS[split]):
            rng = np.random.default_rng([SEED, split_index, class_index, p])
            patient = Patient(rng, finding)
            patient_id = f"{PREFIX}-{split[:2].upper()}{class_index}{p:03d}"
            mask = (patient.lesion(h, w) * 255).astype(np.uint8)
            for n in range(int(rng.integers(2, 4))):
                Image.fromarray(mask).save(folder / f"{patient_id}_{n + 1}.png")


DATASETS = {"chest6": classification, "lungs": segmentation, "ctslices": ct_series, "organs3d": organs}


def main():
    global SEED, PREFIX
    if sys.argv[1:2] == ["--lesions"]:
        _, _, out, h, w = sys.argv
        lesion_masks(Path(out), int(h), int(w))
        return
    parser = argparse.ArgumentParser(description="Writes radrun's synthetic example datasets.")
    parser.add_argument("out", nargs="?", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument(
        "--seed",
        type=int,
        default=SEED,
        help="another seed draws other synthetic patients (their IDs start SYN<seed>-): an external set "
        "for `radrun evaluate`",
    )
    parser.add_argument("--only", choices=sorted(DATASETS), action="append", help="write only this dataset")
    args = parser.parse_args()
    if args.seed != SEED:
        SEED, PREFIX = args.seed, f"SYN{args.seed}"
    for name in args.only or DATASETS:
        DATASETS[name](args.out)


if __name__ == "__main__":
    main()
