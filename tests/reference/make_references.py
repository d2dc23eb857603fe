#!/usr/bin/env python3
"""Reference values the Rust tests compare radrun against, computed by independent
implementations (scikit-learn, SciPy, statsmodels, pydicom + numpy, torchvision, timm).

    python tests/reference/make_references.py OUT_DIR

Writes OUT_DIR/classification_metrics.json, statistics.json, segmentation_metrics.json, dicom/ (pixel
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
    return made


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
            for frame in sorted({0, frames - 1}):
                values, how = dicom_expected(ds, frame)
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


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    classification(out)
    statistics(out)
    segmentation(out)
    dicom(out)
    import runpy

    for script, folder in [("backbones.py", "backbones"), ("keras_fidelity.py", "keras")]:
        runpy.run_path(str(Path(__file__).with_name(script)), run_name=script)["write"](out / folder)


if __name__ == "__main__":
    main()
