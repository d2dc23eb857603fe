#!/usr/bin/env bash
# Benchmark: volume training and inference, radrun against a MONAI script doing the same
# work (bench/volume_reference.py), side by side, alternating which goes first.
#
# Training: the same 3D U-Net (radrun's unet3d and its plain-PyTorch twin), patch, batch,
# optimizer (Adam), loss (Dice + cross-entropy), batches per epoch and data (the example's
# CT set, datasets.example/organs3d/nifti, radrun's training cases of its split, resampled
# to the same spacing and normalised with the same CT statistics); MONAI with
# CacheDataset, RandCropByPosNegLabeld (one patch in three on a label) and DataLoader
# workers, torch.compile off. Figures: training patches/s (mean of the epochs after the
# first) and peak RSS (radrun's process; MONAI's main process, its largest worker given
# apart), median ratio over the pairs.
# Inference: `radrun predict` on the 6 test scans against MONAI reading, resampling and
# normalising each, sliding_window_inference (same patch, overlap 0.5, Gaussian, no
# mirroring), argmax, Invertd back onto the scan and SaveImage: seconds for the 6, the
# processes' start and the network's loading left out on both sides.
#   bench/volume.sh [EPOCHS] [ITERATIONS] [PATCH] [BATCH]   defaults 4 16 48,64,64 2
# AUGMENT=on|off (default off: both sides cut plain patches; on: radrun's nnU-Net set
# and MONAI's equivalent), PAIRS (default 3), WORKERS (MONAI DataLoader workers, default
# nproc), DEVICE (cpu; cuda on a GPU machine: PRECISION is fp32 on both sides).
# (bench/volumes.sh is another benchmark: reading a volume dataset.)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
epochs="${1:-4}" iterations="${2:-16}" patch="${3:-48,64,64}" batch="${4:-2}"
augment="${AUGMENT:-off}" pairs="${PAIRS:-3}" workers="${WORKERS:-$(nproc)}" device="${DEVICE:-cpu}"
source bench/radrun.sh
PYTHON="${PYTHON:-${RADRUN_VENV:-$HOME/.cache/radrun/venv-torch-2.11.0}/bin/python}"
out="$(pwd)/bench/out/volume"
rm -rf "$out" && mkdir -p "$out"
data="$(pwd)/datasets.example/organs3d/nifti"
cat > "$out/bench_volume.toml" <<TOML
[data]
dims = 3
task = "segmentation"
root = "$data"
masks_folder = "Masks"
normalize = "ct"
spacing = [3.0, 1.5, 1.5]
patch_size = [${patch}]
[augment]
enabled = $([ "$augment" = on ] && echo true || echo false)
[model]
kind = "unet3d"
initial_features = 8
depth = 3
[train]
device = "$device"
epochs = $epochs
batch_size = $batch
iterations_per_epoch = $iterations
learning_rate = 0.003
[eval]
mirror = false
bootstrap = 0
TOML
"$RADRUN" plan "$out/bench_volume.toml" > "$out/plan.txt"
# one radrun run first (one epoch): its split says which cases train, its plan the levels
# and statistics, and its weights are what both sides' inference runs (the weights do
# not change the time)
"$RADRUN" run "$out/bench_volume.toml" --quiet --runs "$out/runs" --set train.epochs=1 > /dev/null
run=$(ls -d "$out"/runs/bench_volume/*/)
"$PYTHON" - "$out" "$run" "$data" "$epochs" "$iterations" "$patch" "$batch" "$augment" "$workers" <<'PY'
import csv, json, os, re, sys
from pathlib import Path
out, run, data, epochs, iterations, patch, batch, augment, workers = sys.argv[1:]
plan = Path(out, "plan.txt").read_text()
clip = re.search(r"clip \[([-\d.]+), ([-\d.]+)\], mean ([-\d.]+), SD ([-\d.]+)", plan)
levels, bottleneck = [], None
for kind, kernel, pool in re.findall(r"(encoder\d|bottleneck)\s+\S+\s+\S+\s+(\d+x\d+x\d+)\s+(\S+)", plan):
    k = [int(v) for v in kernel.split("x")]
    if kind == "bottleneck":
        bottleneck = k
    else:
        levels.append((k, [int(v) for v in pool.split("x")]))
rows = list(csv.DictReader(open(Path(run, "split.csv"))))
cases = sorted({r["case"] for r in rows if r["split"] == "train"})
tests = sorted({r["case"] for r in rows if r["split"] == "test"})
spec = {
    "train": [[f"{data}/Train/Images/{c}.nii.gz", f"{data}/Train/Masks/{c}.nii.gz"] for c in cases],
    "test": [f"{data}/Test/Images/{c}.nii.gz" for c in tests],
    "spacing": [3.0, 1.5, 1.5], "clip": [float(clip[1]), float(clip[2])], "mean": float(clip[3]),
    "sd": float(clip[4]), "patch": [int(v) for v in patch.split(",")], "batch": int(batch),
    "iterations": int(iterations), "epochs": int(epochs), "learning_rate": 0.003, "labels": 3, "features": 8,
    "levels": levels, "bottleneck": bottleneck, "augment": augment == "on", "workers": int(workers),
    "threads": os.cpu_count(), "overlap": 0.5, "out": f"{out}/monai_masks",
}
Path(out, "spec.json").write_text(json.dumps(spec, indent=1))
print(f"{len(cases)} training cases, {len(tests)} test scans, patch {patch} [z,y,x], batch {batch}, "
      f"{iterations} batches an epoch, {epochs} epochs, augmentation {augment}; levels {levels}", file=sys.stderr)
PY
# the peak RSS of a command (KiB), its output to a file
peak() { "$PYTHON" -c 'import resource, subprocess, sys
subprocess.run(sys.argv[2:], stdout=open(sys.argv[1], "w"), check=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)' "$@"; }
train_radrun() { radrun_rss=$(peak "$out/radrun.jsonl" "$RADRUN" run "$out/bench_volume.toml" --force --json --runs "$out/runs"); }
train_monai() { monai_json=$("$PYTHON" bench/volume_reference.py train "$out/spec.json"); }
# radrun's seconds for the test scans: `radrun predict` on them twice over less on them
# once, so that neither the process's start nor loading the network counts (MONAI's
# figure is its loop over the scans, after its imports and network)
predict_seconds() {
  local start end
  start=$(date +%s.%N)
  "$RADRUN" predict "$run" "$@" --out "$out/radrun_predict.csv" > /dev/null 2>&1
  end=$(date +%s.%N)
  "$PYTHON" -c "print($end - $start)"
}
infer_radrun() {
  local scans once twice
  scans=$("$PYTHON" -c 'import json, sys; print(" ".join(json.load(open(sys.argv[1]))["test"]))' "$out/spec.json")
  # shellcheck disable=SC2086
  once=$(predict_seconds $scans)
  # shellcheck disable=SC2086
  twice=$(predict_seconds $scans $scans)
  radrun_infer=$("$PYTHON" -c "print($twice - $once)")
}
infer_monai() { monai_infer=$("$PYTHON" bench/volume_reference.py infer "$out/spec.json"); }
results=()
for pair in $(seq 1 "$pairs"); do
  if [ $((pair % 2)) = 1 ]; then train_radrun; train_monai; infer_radrun; infer_monai
  else train_monai; train_radrun; infer_monai; infer_radrun; fi
  echo "pair $pair/$pairs ($([ $((pair % 2)) = 1 ] && echo "radrun first" || echo "MONAI first"))"
  results+=("$("$PYTHON" - "$out/radrun.jsonl" "$radrun_rss" "$monai_json" "$radrun_infer" "$monai_infer" <<'PY'
import json, sys
events = [json.loads(l) for l in open(sys.argv[1])]
rates = [e["images_per_second"] for e in events if e["event"] == "epoch"]
radrun = sum(rates[1:]) / len(rates[1:]) if len(rates) > 1 else rates[0]
rss = int(sys.argv[2]) / 1024
monai = json.loads(sys.argv[3])
m_rates = monai["patches_per_second_per_epoch"]
m = sum(m_rates[1:]) / len(m_rates[1:]) if len(m_rates) > 1 else m_rates[0]
m_rss, m_worker = monai["peak_rss_kib"] / 1024, monai["largest_worker_rss_kib"] / 1024
r_inf, m_inf = float(sys.argv[4]), json.loads(sys.argv[5])["seconds"]
print(f"  train : radrun {radrun:6.2f} patches/s (epochs {', '.join(f'{r:.2f}' for r in rates)}), MONAI {m:6.2f} "
      f"(epochs {', '.join(f'{r:.2f}' for r in m_rates)}): {radrun / m:.2f}x", file=sys.stderr)
print(f"  RSS   : radrun {rss:7.0f} MiB, MONAI {m_rss:7.0f} MiB (its largest worker {m_worker:.0f} MiB more): "
      f"{rss / m_rss:.2f}x", file=sys.stderr)
print(f"  infer : radrun predict {r_inf:6.2f} s, MONAI {m_inf:6.2f} s for the test scans: {m_inf / r_inf:.2f}x as fast",
      file=sys.stderr)
print(radrun / m, rss / m_rss, m_inf / r_inf)
PY
)")
done
"$PYTHON" - "$device" "$augment" "${results[@]}" <<'PY'
import statistics, sys
device, augment, rows = sys.argv[1], sys.argv[2], [list(map(float, r.split())) for r in sys.argv[3:]]
med = [statistics.median(c) for c in zip(*rows)]
print(f"median over {len(rows)} pairs on {device} (augmentation {augment}): training {med[0]:.2f}x MONAI's "
      f"patches/s, peak RSS {med[1]:.2f}x MONAI's, inference {med[2]:.2f}x as fast as MONAI")
PY
