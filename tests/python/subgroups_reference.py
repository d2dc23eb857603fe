"""Recomputes a two-class evaluation's subgroups.csv from its predictions.csv, reading
each test file's subgroup attributes independently of radrun: PhotometricInterpretation
and PatientAge (in the bins [0, 40) and [40, 200)) with pydicom (a file that is not
DICOM: "not recorded"), and the `format` column of a CSV table. The levels of fewer than MIN patients are pooled as radrun pools them; every
reported level must have radrun's patients, images and metrics (scikit-learn's) and
their difference from the rest, and no small level's name may be written.

    python subgroups_reference.py FOLDER TABLE MIN

FOLDER holds predictions.csv, operating_point.json and subgroups.csv; TABLE is the CSV
(`file` relative to its folder, `format`). Exits 1 naming the first mismatch.
"""

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pydicom
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score

folder, table, minimum = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
predictions = list(csv.DictReader(open(folder / "predictions.csv")))
point = json.loads((folder / "operating_point.json").read_text())
positive, threshold = point["positive_class"], point["threshold"]
classes = sorted(k[2:] for k in predictions[0] if k.startswith("p_"))
formats = {(table.parent / r["file"].strip()).resolve(): r["format"].strip() for r in csv.DictReader(open(table))}

truth, probabilities, patients = [], [], []
attributes = {"PhotometricInterpretation": [], "format": [], "PatientAge": []}


BINS = ["[0, 40)", "[40, 200)"]


def age_bin(age):
    """The recipe's PatientAge bins, [0, 40) and [40, 200), of a DICOM Age String
    (nnnY, nnnM, nnnW, nnnD; a plain number is years)."""
    if not age:
        return "not recorded"
    per_year = {"Y": 1, "M": 12, "W": 365.25 / 7, "D": 365.25}
    unit = age[-1].upper() if age[-1].isalpha() else "Y"
    digits = age[:-1] if age[-1].isalpha() else age
    try:
        years = float(digits) / per_year[unit]
    except (KeyError, ValueError):
        return "not a number"
    return BINS[0] if 0 <= years < 40 else BINS[1] if 40 <= years < 200 else "outside [0, 200)"


for row in predictions:
    path = Path(row["file"])
    truth.append(classes.index(row["true_class"]))
    probabilities.append([np.float32(row[f"p_{c}"]) for c in classes])
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        patient = str(ds.PatientID) or str(path)
        photometric = str(ds.get("PhotometricInterpretation", "")).strip() or "not recorded"
        age = age_bin(str(ds.get("PatientAge", "")).strip())
    except pydicom.errors.InvalidDicomError:
        patient, photometric, age = str(path), "not recorded", "not recorded"
    patients.append(patient)
    attributes["PatientAge"].append(age)
    attributes["PhotometricInterpretation"].append(photometric)
    attributes["format"].append(formats.get(path.resolve()) or "not recorded")
truth, probabilities, patients = np.array(truth), np.array(probabilities, dtype=np.float32), np.array(patients)
k = classes.index(positive)


def metrics(index):
    """radrun's headline: argmax decisions; the macro AUC over the classes with
    positives and negatives; sensitivity and specificity at the run's threshold."""
    t, p = truth[index], probabilities[index]
    predicted = p.argmax(axis=1)
    aucs = [roc_auc_score(t == c, p[:, c]) for c in range(len(classes)) if 0 < np.sum(t == c) < len(t)]
    called = p[:, k].astype(np.float64) >= threshold
    out = dict(
        accuracy=accuracy_score(t, predicted),
        balanced_accuracy=balanced_accuracy_score(t, predicted),
        macro_f1=f1_score(t, predicted, average="macro", labels=list(range(len(classes))), zero_division=0),
        macro_roc_auc=np.mean(aucs) if aucs else None,
        threshold_sensitivity=np.mean(called[t == k]) if np.any(t == k) else None,
        threshold_specificity=np.mean(~called[t != k]) if np.any(t != k) else None,
    )
    return {m: v for m, v in out.items() if v is not None}


def reportable(levels):
    """radrun's reportable levels: those of at least MIN patients by name, the others
    pooled into one unnamed level, joined by the smallest named ones (the first on
    ties, in radrun's order: values by name, "not recorded" last) until it has MIN."""
    # radrun's order: the bins in order, the other values by name, "not recorded" last
    values = set(levels)
    order = [b for b in BINS if b in values] + sorted(values - set(BINS) - {"not recorded"})
    order += ["not recorded"] if "not recorded" in values else []
    large, small, small_levels = [], np.zeros(len(levels), bool), 0
    for level in order:
        inside = levels == level
        if len(set(patients[inside])) < minimum:
            small |= inside
            small_levels += 1
        else:
            large.append((level, inside))
    if small_levels == 0:
        return large
    merged = []
    while len(set(patients[small])) < minimum and large:
        smallest = min(range(len(large)), key=lambda j: len(set(patients[large[j][1]])))
        level, inside = large.pop(smallest)
        small |= inside
        merged.append(level)
    label = f"other: {small_levels} level(s) of fewer than {minimum} patients each"
    if merged:
        label += ", pooled with " + ", ".join(merged)
    return large + [(label, small)]


written = {}
for row in csv.DictReader(open(folder / "subgroups.csv")):
    written.setdefault((row["subgroup"], row["level"]), []).append(row)
checked = 0
for name, levels in attributes.items():
    levels = np.array(levels)
    for level, mask in reportable(levels):
        rows = written.pop((name, level), None)
        if rows is None:
            sys.exit(f"{name} = {level}: no row in subgroups.csv")
        inside, rest = np.flatnonzero(mask), np.flatnonzero(~mask)
        n_patients, n_rest = len(set(patients[inside])), len(set(patients[rest]))
        if n_patients < minimum:
            if any(r["patients"] or r["images"] or r["value"] for r in rows):
                sys.exit(f"{name} = {level}: {n_patients} patients, yet numbers are written: {rows}")
            continue
        if (int(rows[0]["patients"]), int(rows[0]["images"])) != (n_patients, len(inside)):
            sys.exit(f"{name} = {level}: {rows[0]['patients']} patients, {rows[0]['images']} images written; "
                     f"{n_patients} and {len(inside)} here")
        want, others = metrics(inside), metrics(rest) if len(rest) else {}
        for row in rows:
            m = row["metric"]
            if abs(float(row["value"]) - want.pop(m)) > 1e-9:
                sys.exit(f"{name} = {level}: {m} {row['value']} vs scikit-learn {metrics(inside)[m]}")
            if n_rest >= minimum and m in others:
                if abs(float(row["difference"]) - (float(row["value"]) - others[m])) > 1e-9:
                    sys.exit(f"{name} = {level}: {m} difference {row['difference']} vs {float(row['value']) - others[m]}")
            elif row["difference"]:
                sys.exit(f"{name} = {level}: compared with a rest of {n_rest} patients")
            checked += 1
        if want:
            sys.exit(f"{name} = {level}: not written: {sorted(want)}")
if written:
    sys.exit(f"levels radrun found and this script did not: {sorted(written)}")
if checked == 0:
    sys.exit("no level was large enough to check a number")
print(f"{checked} subgroup metrics checked")
