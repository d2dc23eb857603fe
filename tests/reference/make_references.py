#!/usr/bin/env python3
"""Reference values the Rust tests compare radrun against, computed by independent
implementations (scikit-learn, SciPy, statsmodels, pydicom + numpy, torchvision, timm).

    python tests/reference/make_references.py OUT_DIR

Writes OUT_DIR/classification_metrics.json, statistics.json, segmentation_metrics.json, dicom/ (pixel
values of pydicom's own test files after rescale and window) and backbones/ (random
weights, an input and the outputs of each torchvision/timm backbone). scripts/test.sh
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


def dicom(out: Path):
    """Pixel values of pydicom's test files: stored x slope + intercept, then the window
    (the file's first WindowCenter/Width, else center 40 width 400: radrun's
    window = "file"), scaled to [0, 1], MONOCHROME1 inverted."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.pixels import apply_modality_lut

    # files shipped in pydicom's wheel (nothing is downloaded); tolerance in [0, 1] units
    names = [
        ("CT_small.dcm", 0.0),  # CT, rescale slope/intercept
        ("MR_small.dcm", 0.0),
        ("MR_small_implicit.dcm", 0.0),  # Implicit VR Little Endian
        ("MR_small_bigendian.dcm", 0.0),  # Explicit VR Big Endian
        ("MR_small_RLE.dcm", 0.0),  # RLE Lossless
        ("image_dfl.dcm", 0.0),  # Deflated Explicit VR Little Endian
        ("MR_small_jp2klossless.dcm", 0.0),  # JPEG 2000 lossless
        ("JPEG2000.dcm", 1e-3),  # JPEG 2000 (lossy): two decoders may round differently
        ("JPGExtended.dcm", 0.02),  # JPEG Extended 12-bit, lossy: decoders differ by a few levels
        ("MR_small_jpeg_ls_lossless.dcm", 0.0),  # JPEG-LS (when pydicom has a decoder)
        ("rtdose.dcm", 0.0),  # multi-frame: radrun takes the first frame
    ]
    folder = out / "dicom"
    folder.mkdir(parents=True, exist_ok=True)
    index = []
    for name, tolerance in names:
        try:
            path = get_testdata_file(name, download=False)
            ds = pydicom.dcmread(path)
            arr = ds.pixel_array
        except Exception as e:  # a decoder this pydicom lacks: say so, skip
            print(f"reference: skipping {name}: {e}", file=sys.stderr)
            continue
        if getattr(ds, "SamplesPerPixel", 1) != 1:
            continue
        if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
            arr = arr[0]
        values = apply_modality_lut(arr, ds).astype(np.float64)
        try:
            center = float(np.ravel([ds.WindowCenter])[0])
            width = float(np.ravel([ds.WindowWidth])[0])
        except (AttributeError, TypeError, ValueError):
            center, width = 40.0, 400.0
        lower = center - width / 2
        scaled = np.clip((values - lower) / width, 0, 1)
        if ds.PhotometricInterpretation == "MONOCHROME1":
            scaled = 1 - scaled
        stem = Path(name).stem
        scaled.astype("<f4").tofile(folder / f"{stem}.f32")
        index.append(
            dict(
                file=str(path),
                expected=f"{stem}.f32",
                rows=int(scaled.shape[0]),
                columns=int(scaled.shape[1]),
                transfer_syntax=str(ds.file_meta.TransferSyntaxUID.name),
                photometric=str(ds.PhotometricInterpretation),
                window=[center, width],
                tolerance=tolerance,
            )
        )
    # MONOCHROME1: pydicom ships none, so MR_small relabelled; bone must come out bright,
    # i.e. the windowed values inverted.
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm", download=False))
    ds.PhotometricInterpretation = "MONOCHROME1"
    mono1 = folder / "MR_small_monochrome1.dcm"
    ds.save_as(mono1)
    previous = next(i for i in index if i["expected"] == "MR_small.f32")
    inverted = 1 - np.fromfile(folder / "MR_small.f32", dtype="<f4")
    inverted.astype("<f4").tofile(folder / "MR_small_monochrome1.f32")
    index.append(dict(previous, file=str(mono1), expected="MR_small_monochrome1.f32", photometric="MONOCHROME1"))
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
    backbones_script = Path(__file__).with_name("backbones.py")
    if backbones_script.exists():
        import runpy

        runpy.run_path(str(backbones_script), run_name="__main__")["write"](out / "backbones")


if __name__ == "__main__":
    main()
