#!/usr/bin/env python3
"""Reference values the Rust tests compare radrun against, computed by independent
implementations (scikit-learn, SciPy, statsmodels, pydicom + numpy, torchvision, timm).

    python tests/reference/make_references.py OUT_DIR

Writes OUT_DIR/classification_metrics.json, statistics.json, calibration.json, subgroups.json, segmentation_metrics.json, dicom/ (pixel
values of every file of pydicom's own test corpus, or why pydicom cannot decode it), backbones/ (random
weights, an input and the outputs of each torchvision/timm backbone) and keras/ (Keras itself: see
keras_fidelity.py). scripts/test.sh
runs this once per change of this file or of the pinned packages.
"""

import json
import sys
from pathlib import Path

import numpy as np


def classification(out: Path):
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        confusion_matrix,
        precision_recall_fscore_support,
        roc_auc_score,
    )

    rng = np.random.default_rng(7)
    cases = []
    for n, k in [(300, 4), (57, 2), (120, 6)]:
        y = rng.integers(0, k, n)
        raw = rng.dirichlet(np.ones(k), n)
        # bias toward the truth so the classifier is decent, then round to make ties
        raw[np.arange(n), y] += rng.uniform(0, 0.8, n)
        p = np.round(raw / raw.sum(1, keepdims=True), 2).astype(np.float32)
        pred = p.argmax(1)
        prec, rec, f1, support = precision_recall_fscore_support(y, pred, labels=range(k), zero_division=0)
        cm = confusion_matrix(y, pred, labels=range(k))
        spec = []
        for c in range(k):
            tn = cm.sum() - cm[c].sum() - cm[:, c].sum() + cm[c, c]
            fp = cm[:, c].sum() - cm[c, c]
            spec.append(tn / (tn + fp) if tn + fp else 0.0)
        auc = [roc_auc_score(y == c, p[:, c].astype(np.float64)) for c in range(k)]
        wprec, wrec, wf1, _ = precision_recall_fscore_support(y, pred, average="weighted", zero_division=0)
        cases.append(
            dict(
                truth=y.tolist(),
                probabilities=p.astype(np.float64).tolist(),
                accuracy=accuracy_score(y, pred),
                balanced_accuracy=balanced_accuracy_score(y, pred),
                precision=prec.tolist(),
                recall=rec.tolist(),
                f1=f1.tolist(),
                support=support.tolist(),
                specificity=[float(s) for s in spec],
                roc_auc=auc,
                confusion=cm.tolist(),
                macro_precision=float(prec.mean()),
                macro_recall=float(rec.mean()),
                macro_f1=float(f1.mean()),
                macro_roc_auc=float(np.mean(auc)),
                weighted_precision=wprec,
                weighted_recall=wrec,
                weighted_f1=wf1,
                weighted_roc_auc=float(np.average(auc, weights=support)),
            )
        )
    (out / "classification_metrics.json").write_text(json.dumps(cases))

    from sklearn.metrics import hamming_loss

    multilabel = []
    for n, k in [(200, 4), (45, 3)]:
        y = rng.random((n, k)) < 0.35
        p = np.clip(y * 0.35 + rng.uniform(0, 0.65, (n, k)), 0, 1).round(2).astype(np.float32)
        pred = p >= 0.5
        prec, rec, f1, support = precision_recall_fscore_support(y, pred, zero_division=0)
        multilabel.append(
            dict(
                truth=y.tolist(),
                probabilities=p.astype(np.float64).tolist(),
                subset_accuracy=accuracy_score(y, pred),
                label_accuracy=1 - hamming_loss(y, pred),
                precision=prec.tolist(),
                recall=rec.tolist(),
                f1=f1.tolist(),
                support=support.tolist(),
                roc_auc=[roc_auc_score(y[:, c], p[:, c].astype(np.float64)) for c in range(k)],
                macro_f1=float(f1.mean()),
            )
        )
    (out / "multilabel_metrics.json").write_text(json.dumps(multilabel))


def segmentation(out: Path):
    from scipy.ndimage import binary_erosion, distance_transform_edt

    def edges(m):
        return m ^ binary_erosion(m)

    def hd95(t, p, spacing):
        et, ep = edges(t), edges(p)
        d_pt = distance_transform_edt(~et, sampling=spacing)[ep]
        d_tp = distance_transform_edt(~ep, sampling=spacing)[et]
        return float(max(np.percentile(d_pt, 95), np.percentile(d_tp, 95)))

    rng = np.random.default_rng(11)
    cases = []
    h, w = 40, 48
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(12):
        def blob():
            cy, cx, ry, rx = rng.uniform(8, 32), rng.uniform(8, 40), rng.uniform(3, 12), rng.uniform(3, 12)
            m = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
            return m | (rng.uniform(size=(h, w)) < 0.01)  # a few specks make distances uneven

        t, p = blob(), blob() if i % 3 else blob() & blob()
        spacing = (0.7, 1.3)
        inter = (t & p).sum()
        cases.append(
            dict(
                height=h,
                width=w,
                truth=t.astype(int).ravel().tolist(),
                predicted=p.astype(int).ravel().tolist(),
                spacing=spacing,
                dice=float(2 * inter / (t.sum() + p.sum())),
                iou=float(inter / (t | p).sum()),
                sensitivity=float(inter / t.sum()),
                precision=float(inter / p.sum()),
                hd95_pixels=hd95(t, p, (1.0, 1.0)),
                hd95_mm=hd95(t, p, spacing),
            )
        )
    (out / "segmentation_metrics.json").write_text(json.dumps(cases))


def dicom_expected(ds, frame: int):
    """radrun's default DICOM pipeline (window = "auto") written with pydicom's own
    functions: the frame's stored values; for gray images the modality LUT (Modality LUT
    Sequence, else RescaleSlope/Intercept), then the VOI LUT Sequence (scaled by its
    output range) or the file's first WindowCenter/Width (radrun's formula: clip to
    [c - w/2, c + w/2], scale to [0, 1]) or else the frame's min..max; MONOCHROME1
    inverted. Colour images: palette applied, YBR converted to RGB (pydicom does both),
    then BT.601 luma scaled by the largest stored value."""
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

    arr = ds.pixel_array
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames > 1:
        arr = arr[frame]
    ds, _ = frame_view(ds, frame)
    photometric = str(ds.PhotometricInterpretation)
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(arr, ds).astype(np.float64)
        bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
        return luma(rgb) / (2.0**bits - 1), "palette"
    if arr.ndim == 3:
        bits = int(ds.BitsStored)
        return luma(arr.astype(np.float64)) / (2.0**bits - 1), "colour"
    values = apply_modality_lut(arr, ds).astype(np.float64)
    if "VOILUTSequence" in ds:
        item = ds.VOILUTSequence[0]
        bits = int(item.LUTDescriptor[2])
        scaled = apply_voi_lut(values, ds, prefer_lut=True).astype(np.float64) / (2.0**bits - 1)
        how = "voi lut"
    else:
        try:
            center = float(np.ravel([ds.WindowCenter])[0])
            width = float(np.ravel([ds.WindowWidth])[0])
            assert width > 0
            how = "file window"
        except (AttributeError, TypeError, ValueError, AssertionError):
            lo, hi = values.min(), values.max()
            center, width = ((lo + hi) / 2, hi - lo) if hi > lo else (max(lo, 0.0), 1.0)
            how = "value range"
        scaled = np.clip((values - (center - width / 2)) / width, 0, 1)
    if photometric == "MONOCHROME1":
        scaled = 1 - scaled
    return scaled, how


# The attributes radrun reads that an Enhanced image may keep in its functional groups.
FRAME_ATTRIBUTES = {
    "RescaleSlope",
    "RescaleIntercept",
    "ModalityLUTSequence",
    "VOILUTSequence",
    "WindowCenter",
    "WindowWidth",
    "PixelSpacing",
    "ImagerPixelSpacing",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "SliceThickness",
}


def frame_view(ds, frame: int):
    """The data set as one frame of an Enhanced multi-frame image sees it (PS3.3
    C.7.6.16): each attribute from the frame's Per-Frame Functional Groups item, else from
    the Shared Functional Groups item, else from the top level. pydicom's LUT functions
    read the top level only, so they are given this view. Returns the view and whether
    an attribute radrun reads came from a functional group."""
    import copy

    groups = []
    if len(ds.get("SharedFunctionalGroupsSequence", [])):
        groups.append(ds.SharedFunctionalGroupsSequence[0])
    if frame < len(ds.get("PerFrameFunctionalGroupsSequence", [])):
        groups.append(ds.PerFrameFunctionalGroupsSequence[frame])
    if not groups:
        return ds, False
    view = copy.deepcopy(ds)
    from_groups = False
    for group in groups:  # shared first: the frame's own values then replace them
        for macro in group:
            if macro.VR == "SQ" and len(macro.value):
                for element in macro.value[0]:
                    view[element.tag] = element
                    from_groups |= element.keyword in FRAME_ATTRIBUTES
    return view, from_groups


def luma(rgb):
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


# Lossy JPEG: two decoders may round differently, since the IDCT is not bit-exact across
# implementations (pydicom uses libjpeg through pylibjpeg, radrun jpeg-decoder). Measured
# on the corpus: at most 0.0063 (1.6 of 255 levels, after colour conversion); the bound
# is 0.01. JPEG 2000, lossy or not, is decoded by OpenJPEG on both sides: exact.
LOSSY_TOLERANCE = {
    "1.2.840.10008.1.2.4.50": 0.01,  # JPEG Baseline
    "1.2.840.10008.1.2.4.51": 0.01,  # JPEG Extended
}


def dicom_corpus_extras(folder: Path):
    """Files pydicom does not ship, made from its files: each exercises one class of fault
    found on public corpora."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.dataelem import DataElement
    from pydicom.sequence import Sequence
    from pydicom.dataset import Dataset

    def load(name):
        return pydicom.dcmread(get_testdata_file(name, download=False))

    made = []
    # RescaleSlope/Intercept stored with VR UN (as some anonymisers write them).
    ds = load("CT_small.dcm")
    for tag in (0x00281052, 0x00281053):
        text = str(ds[tag].value).encode()
        text += b" " * (len(text) % 2)
        ds[tag] = DataElement(tag, "UN", text)
    path = folder / "CT_small_rescale_as_UN.dcm"
    ds.save_as(path, enforce_file_format=True)
    made.append(path)
    # MONOCHROME1 (pydicom ships no full-size one): bone must come out bright.
    ds = load("MR_small.dcm")
    ds.PhotometricInterpretation = "MONOCHROME1"
    path = folder / "MR_small_monochrome1.dcm"
    ds.save_as(path, enforce_file_format=True)
    made.append(path)
    # Modality LUT Sequence instead of rescale: a square-root curve, 16-bit entries.
    ds = load("MR_small.dcm")
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.ModalityLUTType = "US"
    item.add_new("LUTData", "OW", np.round(np.sqrt(np.arange(4096)) * 1000).astype("<u2").tobytes())
    ds.ModalityLUTSequence = Sequence([item])
    del ds.WindowCenter, ds.WindowWidth
    path = folder / "MR_small_modality_lut.dcm"
    ds.save_as(path, enforce_file_format=True)
    made.append(path)
    # VOI LUT Sequence (applied when the window comes from the file): 12-bit entries
    # over CT numbers -1024..1023.
    ds = load("CT_small.dcm")
    item = Dataset()
    item.LUTDescriptor = [2048, 0, 12]
    item.add_new("LUTData", "OW", (4095 * (np.arange(2048) / 2047) ** 0.5).astype("<u2").tobytes())
    ds.VOILUTSequence = Sequence([item])
    # first mapped value -1024: LUTDescriptor's second value is SS for signed data
    ds.VOILUTSequence[0]["LUTDescriptor"].VR = "SS"
    ds.VOILUTSequence[0].LUTDescriptor = [2048, -1024, 12]
    path = folder / "CT_small_voi_lut.dcm"
    ds.save_as(path, enforce_file_format=True)
    made.append(path)
    # Uncompressed YBR_FULL: the RGB example converted with pydicom's own formula.
    from pydicom.pixels import convert_color_space

    ds = load("examples_rgb_color.dcm")
    ybr = convert_color_space(ds.pixel_array, "RGB", "YBR_FULL")
    ds.PixelData = ybr.tobytes()
    ds.PhotometricInterpretation = "YBR_FULL"
    path = folder / "examples_ybr_full_uncompressed.dcm"
    ds.save_as(path, enforce_file_format=True)
    made.append(path)
    made += enhanced_extras(folder, load)
    # A JPEG frame followed by stray bytes inside its fragment (older equipment pads
    # multi-frame fragments so): libjpeg and pydicom decode the frame, ignoring them.
    from pydicom.encaps import encapsulate, generate_frames

    ds = load("SC_rgb_jpeg_dcmtk.dcm")
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    assert frame.rstrip(b"\0").endswith(b"\xff\xd9")
    ds.PixelData = encapsulate([frame.rstrip(b"\0") + b"\x12\x34\x56\x78\x9a\x00"])
    path = folder / "SC_rgb_jpeg_bytes_after_end.dcm"
    ds.save_as(path, enforce_file_format=True)
    made.append(path)
    # Broken files that must be refused with the fault named (crates/data/tests/hostile_files.rs).
    ds = load("MR_small.dcm")
    ds.Rows = 0
    path = folder / "MR_small_rows_0.dcm"
    ds.save_as(path, enforce_file_format=True)
    made.append(path)
    ds = load("CT_small.dcm")
    path = folder / "CT_small_slope_not_a_number.dcm"
    ds.save_as(path, enforce_file_format=True)
    data = path.read_bytes()
    slope = b"\x28\x00\x53\x10DS\x02\x001 "  # CT_small's RescaleSlope, "1 "
    assert data.count(slope) == 1
    path.write_bytes(data.replace(slope, slope[:-2] + b"x "))
    made.append(path)
    # Megabytes of zeros after the Pixel Data element, as some MR series carry.
    data = load("MR_small.dcm")
    path = folder / "MR_small_trailing_zeros.dcm"
    data.save_as(path, enforce_file_format=True)
    with open(path, "ab") as f:
        f.write(bytes(2 * 1024 * 1024))
    made.append(path)
    # Ultrasound PALETTE COLOR with Segmented Palette Color Lookup Table Data (PS3.3
    # C.7.9.2) in place of the plain tables: each channel's 256 entries rebuilt from a
    # discrete segment, linear segments (values between entries rounded as pydicom rounds),
    # an indirect segment copying two earlier segments (from a different one per channel)
    # and a last discrete segment; a trailing null word after blue. In a little- and a
    # big-endian file: the segments' words are in the file's byte order.
    from pydicom.uid import ExplicitVRBigEndian

    def segmented(table, copy_from):
        table = [int(v) for v in table]
        ends = [23, 37, 50, 64, 85, 99, 127]  # lines of 8 to 28 entries: values between entries rounded
        segments = [[0, 16, *table[:16]]] + [[1, end - start, table[end]] for start, end in zip([15, *ends], ends)]
        offset = sum(len(s) for s in segments[:copy_from])  # in words from the data's start
        copied = sum(s[1] for s in segments[copy_from : copy_from + 2])
        line = 176 - 128 - copied  # from the copies' last value to entry 175
        segments += [[2, 2, offset & 0xFFFF, offset >> 16], [1, line, table[175]], [0, 80, *table[176:]]]
        return [word for segment in segments for word in segment]

    for name, order in (("palette_segmented.dcm", "<u2"), ("palette_segmented_big_endian.dcm", ">u2")):
        ds = load("examples_palette.dcm")
        for colour, copy_from in (("Red", 0), ("Green", 3), ("Blue", 5)):
            plain = f"{colour}PaletteColorLookupTableData"
            words = segmented(np.frombuffer(ds[plain].value, "<u2"), copy_from) + [0] * (colour == "Blue")
            delattr(ds, plain)
            ds.add_new(f"Segmented{colour}PaletteColorLookupTableData", "OW", np.array(words, order).tobytes())
        if order == ">u2":
            list(ds.iterall())  # every value decoded from the little-endian file, to be written anew
            ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
            ds["PixelData"].VR = "OB"  # 8-bit samples: the same bytes in either order
        path = folder / name
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        made.append(path)
    return made


def enhanced_extras(folder: Path, load):
    """Enhanced CT and MR images made from pydicom's CT and MR files: three frames each,
    whose rescale, window, spacing and positions live in the functional groups (PS3.3
    C.7.6.16), with wrong values left at the top level that the frames' own must beat."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    def group(macros):
        item = Dataset()
        for sequence, attributes in macros.items():
            inner = Dataset()
            for keyword, value in attributes.items():
                setattr(inner, keyword, value)
            setattr(item, sequence, Sequence([inner]))
        return item

    def enhanced(name, source, sop_class, shared, per_frame, top):
        ds = load(source)
        arr = ds.pixel_array
        ds.PixelData = np.stack([np.roll(arr, 7 * i, axis=1) for i in range(len(per_frame))]).tobytes()
        ds.NumberOfFrames = len(per_frame)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop_class
        for keyword in sorted(FRAME_ATTRIBUTES) + ["RescaleType"]:
            if keyword in ds:
                delattr(ds, keyword)
        for keyword, value in top.items():
            setattr(ds, keyword, value)
        ds.SharedFunctionalGroupsSequence = Sequence([group(shared)])
        ds.PerFrameFunctionalGroupsSequence = Sequence([group(macros) for macros in per_frame])
        path = folder / name
        ds.save_as(path, enforce_file_format=True)
        return path

    def position(z):
        return {"PlanePositionSequence": {"ImagePositionPatient": [-50.0, -40.5, z]}}

    # Enhanced CT: rescale per frame (intercepts and slopes differ), window shared,
    # positions per frame out of order; a legacy intercept of 0 at the top level.
    ct = enhanced(
        "enhanced_ct_per_frame_rescale.dcm",
        "CT_small.dcm",
        "1.2.840.10008.5.1.4.1.1.2.1",
        {
            "FrameVOILUTSequence": {"WindowCenter": 40, "WindowWidth": 400},
            "PixelMeasuresSequence": {"PixelSpacing": [0.7, 0.6], "SliceThickness": 2.5},
            "PlaneOrientationSequence": {"ImageOrientationPatient": [1, 0, 0, 0, 1, 0]},
        },
        [
            {"PixelValueTransformationSequence": {"RescaleIntercept": i, "RescaleSlope": m, "RescaleType": "HU"}}
            | position(z)
            for i, m, z in ((-1024, 1, 20.0), (-1000, 0.5, 10.0), (-1024, 2, 15.0))
        ],
        {"RescaleIntercept": 0, "RescaleSlope": 1},
    )
    # Enhanced MR: rescale shared, a window per frame, positions per frame out of order;
    # a wrong window at the top level.
    mr = enhanced(
        "enhanced_mr_per_frame_window.dcm",
        "MR_small.dcm",
        "1.2.840.10008.5.1.4.1.1.4.1",
        {
            "PixelValueTransformationSequence": {"RescaleIntercept": 10, "RescaleSlope": 1.5, "RescaleType": "US"},
            "PixelMeasuresSequence": {"PixelSpacing": [0.9, 0.9], "SliceThickness": 5},
        },
        [
            {"FrameVOILUTSequence": {"WindowCenter": c, "WindowWidth": w}} | position(z)
            for c, w, z in ((900, 2400, -5.0), (600, 1600, -15.0), (1200, 800, -10.0))
        ],
        {"WindowCenter": 5, "WindowWidth": 10},
    )
    return [ct, mr]


def dicom(out: Path):
    """Every file of pydicom's test corpus (plus the extras above), with what pydicom says
    of it: the expected pixels of radrun's default pipeline (dicom_expected), or why pydicom
    cannot give them. The Rust corpus test enumerates the same folder."""
    import warnings

    import pydicom

    warnings.simplefilter("ignore")
    corpus = Path(pydicom.__file__).parent / "data" / "test_files"
    folder = out / "dicom"
    folder.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in corpus.rglob("*") if p.is_file()) + dicom_corpus_extras(folder)
    index = []
    for number, path in enumerate(files):
        entry = dict(file=str(path))
        try:
            ds = pydicom.dcmread(path, force=True)
            if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
                index.append(dict(entry, pydicom="no pixel data"))
                continue
            frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
            tolerance = LOSSY_TOLERANCE.get(str(ds.file_meta.TransferSyntaxUID), 1e-4)
            # every frame of the Enhanced extras: each has its own values
            tested = range(frames) if path.name.startswith("enhanced_") else sorted({0, frames - 1})
            for frame in tested:
                values, how = dicom_expected(ds, frame)
                view, from_groups = frame_view(ds, frame)
                geometry = {
                    k: [float(v) for v in view[k]] for k in ("ImagePositionPatient", "PixelSpacing") if k in view
                }
                offsets = [float(v) for v in getattr(ds, "GridFrameOffsetVector", None) or []]
                if len(offsets) == frames and "ImagePositionPatient" in geometry:
                    # RT Dose (PS3.3 C.8.8.3.2): the frame's z in the older form (the first
                    # offset the position's z, the plane transverse), else its distance
                    # along the normal from ImagePositionPatient
                    o = np.array([float(v) for v in ds.ImageOrientationPatient])
                    normal = np.cross(o[:3], o[3:])
                    normal = normal / np.linalg.norm(normal)
                    start = np.array(geometry["ImagePositionPatient"])
                    moved = start + offsets[frame] * normal
                    if offsets[0] != 0 and abs(normal[2] - 1) < 1e-6 and abs(offsets[0] - start[2]) < 1e-3:
                        moved = np.array([start[0], start[1], offsets[frame]])
                    geometry["ImagePositionPatient"] = [float(v) for v in moved]
                name = f"{number:03}-{frame}.f32"
                values.astype("<f4").tofile(folder / name)
                index.append(
                    dict(
                        entry,
                        pydicom="decoded",
                        frame=frame,
                        expected=name,
                        rows=int(values.shape[0]),
                        columns=int(values.shape[1]),
                        photometric=str(ds.PhotometricInterpretation),
                        intensities=how,
                        tolerance=tolerance,
                        functional_groups=from_groups,
                        **geometry,
                    )
                )
        except Exception as e:  # pydicom cannot: radrun must refuse it too, saying why
            index.append(dict(entry, pydicom=f"error: {type(e).__name__}: {e}"[:300]))
    (out / "dicom.json").write_text(json.dumps(index, indent=1))


def statistics(out: Path):
    """Intervals and tests: statsmodels' Wilson interval, scikit-learn's ROC thresholds,
    SciPy's percentile bootstrap, and DeLong's AUC variance and paired test written
    from the paper's formulas (the O(m n) pairwise form, independent of radrun's
    midrank algorithm)."""
    from scipy import stats
    from sklearn.metrics import roc_curve
    from statsmodels.stats.proportion import proportion_confint

    rng = np.random.default_rng(11)
    wilson = []
    for k, n, conf in [(8, 10, 0.95), (0, 25, 0.95), (25, 25, 0.9), (137, 240, 0.99), (1, 3, 0.8)]:
        lo, hi = proportion_confint(k, n, alpha=1 - conf, method="wilson")
        wilson.append(dict(successes=k, n=n, confidence=conf, lower=float(lo), upper=float(hi)))

    def components(scores, positive):
        x, y = scores[positive], scores[~positive]
        psi = (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])
        return psi.mean(1), psi.mean(0)

    delong = []
    for n, ties in [(60, False), (200, True), (31, True)]:
        positive = rng.random(n) < 0.4
        positive[:2], positive[2:4] = True, False
        a = rng.normal(positive * 1.0, 1.0)
        b = a + rng.normal(0, 0.8, n)
        if ties:
            a, b = np.round(a, 1), np.round(b, 1)
        (a10, a01), (b10, b01) = components(a, positive), components(b, positive)
        m, k = len(a10), len(a01)
        cov10, cov01 = np.cov(np.vstack([a10, b10])), np.cov(np.vstack([a01, b01]))
        var = cov10 / m + cov01 / k
        diff_var = var[0, 0] + var[1, 1] - 2 * var[0, 1]
        z = (a10.mean() - b10.mean()) / np.sqrt(diff_var)
        fpr, tpr, thresholds = roc_curve(positive, a, drop_intermediate=False)
        delong.append(
            dict(
                positive=positive.tolist(),
                scores_a=a.tolist(),
                scores_b=b.tolist(),
                auc_a=float(a10.mean()),
                variance_a=float(var[0, 0]),
                auc_b=float(b10.mean()),
                z=float(z),
                p_value=float(2 * stats.norm.sf(abs(z))),
                youden_a=float(thresholds[np.argmax(tpr - fpr)]),
            )
        )

    correct = (rng.random(150) < 0.83).astype(float)
    boot = stats.bootstrap(
        (correct,), np.mean, method="percentile", n_resamples=20000, confidence_level=0.95, random_state=3
    )
    bootstrap = dict(
        values=correct.tolist(),
        lower=float(boot.confidence_interval.low),
        upper=float(boot.confidence_interval.high),
        standard_error=float(boot.standard_error),
    )
    (out / "statistics.json").write_text(json.dumps(dict(wilson=wilson, delong=delong, bootstrap=bootstrap)))


def calibration(out: Path):
    """Calibration and decision curves: scikit-learn's `brier_score_loss` and
    `calibration_curve` (uniform and quantile bins; the ECE from its bins and their
    counts), statsmodels' binomial GLM for the calibration slope (on the logit), the root
    of the intercept's score equation (the logit as offset) by SciPy's brentq, and the
    net benefit of
    dcurves 1.1.7 (`dca.py`: positive at risk >= threshold, TP/n - FP/n x t/(1 - t))
    written out with NumPy."""
    import statsmodels.api as sm
    from scipy.optimize import brentq
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import brier_score_loss

    clip = 1e-7

    def logit(p):
        p = np.clip(p, clip, 1 - clip)
        return np.log(p / (1 - p))

    def ece(y, p, strategy):
        prob_true, prob_pred = calibration_curve(y, p, n_bins=15, strategy=strategy)
        if strategy == "quantile":
            bins = np.percentile(p, np.linspace(0, 1, 16) * 100)
        else:
            bins = np.linspace(0.0, 1.0, 16)
        counts = np.bincount(np.searchsorted(bins[1:-1], p), minlength=15)
        counts = counts[counts > 0]
        return float(np.sum(counts * np.abs(prob_true - prob_pred)) / counts.sum()), prob_true, prob_pred, counts

    def binary(y, p):
        x = logit(p)
        binomial = sm.families.Binomial()
        slope = sm.GLM(y, sm.add_constant(x), family=binomial).fit(tol=1e-14, maxiter=500).params[1]
        # the intercept's score equation, sum(y - sigmoid(a + x)) = 0, decreases in a: its
        # root by SciPy's brentq (statsmodels' GLM with the offset diverges on the
        # overconfident case below: IRLS takes no smaller steps)
        intercept = brentq(lambda a: np.sum(y - 1 / (1 + np.exp(-(a + x)))), -60, 60, xtol=1e-14, rtol=1e-15)
        width, true_w, pred_w, counts_w = ece(y, p, "uniform")
        mass, true_m, pred_m, counts_m = ece(y, p, "quantile")
        thresholds = np.round(np.arange(1, 100) / 100, 12)
        n = len(y)
        net = [float(np.sum((p >= t) & (y == 1)) / n - np.sum((p >= t) & (y == 0)) / n * t / (1 - t))
               for t in thresholds]
        prevalence = y.mean()
        return dict(
            truth=y.astype(int).tolist(),
            probabilities=p.tolist(),
            brier=float(brier_score_loss(y, p)),
            ece=width,
            ece_equal_mass=mass,
            observed=true_w.tolist(),
            mean_predicted=pred_w.tolist(),
            bin_images=counts_w.tolist(),
            observed_equal_mass=true_m.tolist(),
            mean_predicted_equal_mass=pred_m.tolist(),
            bin_images_equal_mass=counts_m.tolist(),
            calibration_slope=float(slope),
            calibration_intercept=float(intercept),
            thresholds=thresholds.tolist(),
            net_benefit=net,
            treat_all=[float(prevalence - (1 - prevalence) * t / (1 - t)) for t in thresholds],
        )

    rng = np.random.default_rng(17)
    binaries = []
    for n, sharpen, shift, decimals in [(200, 1.7, 0.3, 3), (80, 0.6, -0.5, 2), (333, 1.0, 0.0, 6)]:
        q = rng.uniform(0.02, 0.98, n)
        y = (rng.random(n) < q).astype(float)
        # over- or under-confident, shifted, and rounded so that probabilities fall on
        # the bin edges (0.2 = 3/15) and tie
        p = np.round(1 / (1 + np.exp(-(sharpen * logit(q) + shift))), decimals)
        p[:3] = [0.2, 0.4, 1.0]
        binaries.append(binary(y, p))
    # an overconfident network: logits of 8 to 14 in size, 5 % of them wrong, 20 % positive
    # (Newton's first full step is of the order of 10^5 here)
    y = (rng.random(200) < 0.2).astype(float)
    sign = np.where(y == 1, 1.0, -1.0) * np.where(rng.random(200) < 0.05, -1.0, 1.0)
    binaries.append(binary(y, 1 / (1 + np.exp(-sign * rng.uniform(8, 14, 200)))))

    # several classes: scikit-learn's multi-class Brier and the top label's ECE
    classes = []
    for n, k in [(150, 4), (90, 3)]:
        y = rng.integers(0, k, n)
        raw = rng.dirichlet(np.ones(k), n)
        raw[np.arange(n), y] += rng.uniform(0, 1.0, n)
        # sixty-fourths: exact in the float32 radrun's predictions hold, with ties
        p = np.array([rng.multinomial(64, row / row.sum()) for row in raw]) / 64
        confidence, correct = p.max(1), (p.argmax(1) == y).astype(float)
        classes.append(
            dict(
                truth=y.tolist(),
                probabilities=p.tolist(),
                brier=float(brier_score_loss(y, p, labels=list(range(k)))),
                top_label_ece=ece(correct, confidence, "uniform")[0],
            )
        )
    # temperature scaling: T fitted on validation probabilities by SciPy's bounded scalar
    # minimiser of the negative log-likelihood of softmax(log p / T), then the test
    # probabilities scaled; softmax outputs held in float32, as radrun holds them
    from scipy.optimize import minimize_scalar

    def softmax(z):
        z = z - z.max(1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(1, keepdims=True)

    temperature = []
    for n, k, sharpness in [(300, 4, 3.0), (200, 2, 0.5)]:
        def draw(n):
            y = rng.integers(0, k, n)
            z = rng.normal(0, 1, (n, k))
            z[np.arange(n), y] += 1.0
            return y, softmax(sharpness * z).astype(np.float32)

        (val_y, val_p), (test_y, test_p) = draw(n), draw(n)
        val_logits = np.maximum(np.log(val_p.astype(np.float64)), np.log(1e-30))

        def nll(t):
            z = val_logits / t
            z = z - z.max(1, keepdims=True)
            return -(z[np.arange(n), val_y] - np.log(np.exp(z).sum(1))).sum()

        t = minimize_scalar(nll, bounds=(1e-3, 1e3), method="bounded", options=dict(xatol=1e-12)).x
        scaled = softmax(np.maximum(np.log(test_p.astype(np.float64)), np.log(1e-30)) / t)
        temperature.append(
            dict(
                validation_truth=val_y.tolist(),
                validation_probabilities=val_p.astype(np.float64).tolist(),
                truth=test_y.tolist(),
                probabilities=test_p.astype(np.float64).tolist(),
                temperature=float(t),
                brier_calibrated=float(brier_score_loss(test_y, scaled if k > 2 else scaled[:, 1], labels=list(range(k)))),
            )
        )
    (out / "calibration.json").write_text(json.dumps(dict(binary=binaries, classes=classes, temperature=temperature)))


def subgroups(out: Path):
    """Subgroup scores: each level's accuracy, balanced accuracy, macro F1 and ROC AUC by
    scikit-learn, and SciPy's two-sample percentile bootstrap (`paired=False`: each side
    resampled on its own) of the level minus the rest, with the two-sided bootstrap
    p-value min(1, 2 (1 + k) / (n + 1)) from its bootstrap distribution (k the resampled
    differences on the smaller side of zero); one image per patient."""
    from scipy import stats
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score

    rng = np.random.default_rng(29)
    n = 160
    level = np.where(rng.random(n) < 0.4, "site A", "site B")
    truth = (rng.random(n) < 0.45).astype(int)
    # site B's scores separate the classes less
    spread = np.where(level == "site A", 1.6, 0.7)
    logit = rng.normal(truth * spread - spread / 2, 1.0)
    p1 = (1 / (1 + np.exp(-logit))).astype(np.float32)
    p0 = np.float32(1) - p1
    predicted = (p1 > 0.5).astype(int)

    def auc(index):
        # Mann-Whitney, as roc_auc_score, fast enough for 20,000 resamples
        y, s = truth[index], p1[index].astype(np.float64)
        pos, neg = s[y == 1], s[y == 0]
        if len(pos) == 0 or len(neg) == 0:
            return np.nan
        ranks = stats.rankdata(np.concatenate([pos, neg]))
        return (ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))

    def accuracy(index):
        return float(np.mean(predicted[index] == truth[index]))

    levels = []
    for name in ["site A", "site B"]:
        inside, rest = np.flatnonzero(level == name), np.flatnonzero(level != name)
        entry = dict(
            level=name,
            images=int(len(inside)),
            accuracy=float(accuracy_score(truth[inside], predicted[inside])),
            balanced_accuracy=float(balanced_accuracy_score(truth[inside], predicted[inside])),
            macro_f1=float(f1_score(truth[inside], predicted[inside], average="macro", labels=[0, 1])),
            # radrun's macro AUC: each class against the other, on its own probability
            # (1 - p in single precision for the first class)
            macro_roc_auc=float(
                (roc_auc_score(truth[inside], p1[inside]) + roc_auc_score(1 - truth[inside], p0[inside])) / 2
            ),
        )
        level_boot = stats.bootstrap(
            (inside,), accuracy, vectorized=False, n_resamples=20000, method="percentile", random_state=31
        )
        entry["accuracy_interval"] = [float(level_boot.confidence_interval.low), float(level_boot.confidence_interval.high)]
        entry["accuracy_se"] = float(level_boot.standard_error)
        for metric, f in [("accuracy", accuracy), ("macro_roc_auc", auc)]:
            boot = stats.bootstrap(
                (inside, rest),
                lambda a, b: f(a) - f(b),
                vectorized=False,
                paired=False,
                n_resamples=20000,
                method="percentile",
                random_state=37,
            )
            d = boot.bootstrap_distribution
            d = d[np.isfinite(d)]
            k = min(np.sum(d <= 0), np.sum(d >= 0))
            entry[f"{metric}_difference"] = dict(
                value=float(f(inside) - f(rest)),
                lower=float(boot.confidence_interval.low),
                upper=float(boot.confidence_interval.high),
                standard_error=float(boot.standard_error),
                p_value=float(min(1.0, 2 * (1 + k) / (len(d) + 1))),
            )
        levels.append(entry)
    (out / "subgroups.json").write_text(
        json.dumps(dict(truth=truth.tolist(), p1=p1.astype(float).tolist(), level=level.tolist(), levels=levels))
    )


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    classification(out)
    statistics(out)
    calibration(out)
    subgroups(out)
    segmentation(out)
    dicom(out)
    import runpy

    for script, folder in [("backbones.py", "backbones"), ("keras_fidelity.py", "keras"), ("volumes.py", "volumes"),
                           ("segmentation3d.py", "segmentation3d")]:
        runpy.run_path(str(Path(__file__).with_name(script)), run_name=script)["write"](out / folder)


if __name__ == "__main__":
    main()
