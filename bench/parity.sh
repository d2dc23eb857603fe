#!/usr/bin/env bash
# Learning parity: the tutorial's CNN trained by radrun and by the tutorial's
# own Keras pipeline (bench/parity_keras.py: ImageDataGenerator with the tutorial's
# arguments, flow_from_directory, build_cnn in Keras 3, Adam) on the same class folders,
# once per seed; prints per-seed and mean ± SD test accuracy and last-epoch training loss.
#   bench/parity.sh [ROOT] [SEEDS]
#   defaults: datasets.example/chest6 "1 2 3 4 5"
# ROOT holds Train/<class>/ and Test/<class>/. Both read the same files: the 8-bit gray
# PNG and JPEG images of ROOT, linked into bench/out/parity/data (Keras cannot read
# DICOM). radrun runs with the tutorial's settings made exact: resize "nearest" (as
# flow_from_directory), the last epoch's weights evaluated (the tutorial kept no best
# epoch), no patient grouping (the tutorial had none).
# Environment: SIZE (HxW, default 64x64), EPOCHS (15), BATCH (10), AUGMENT (on|off, on).
set -euo pipefail
root="$(realpath "${1:-$(dirname "${BASH_SOURCE[0]}")/../datasets.example/chest6}")"
[ -n "${RADRUN:-}" ] && RADRUN="$(realpath "$RADRUN")"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seeds="${2:-1 2 3 4 5}"
size="${SIZE:-64x64}" epochs="${EPOCHS:-15}" batch="${BATCH:-10}" augment="${AUGMENT:-on}"
height="${size%x*}" width="${size#*x}"
scripts/setup.sh --test >/dev/null
source scripts/env.sh
if [ -z "${RADRUN:-}" ]; then
  cargo build --release --locked -q -p radrun
  RADRUN=target/release/radrun
fi
python="$RADRUN_VENV/bin/python"
out=bench/out/parity
rm -rf "$out"
mkdir -p "$out"
"$python" bench/parity_keras.py mirror "$root" "$out/data"

cat > "$out/parity.toml" <<TOML
[data]
root = "data"
image_size = [$height, $width]
resize = "nearest"
group_by = "none"
allow_leakage = true
[augment]
enabled = $([ "$augment" = on ] && echo true || echo false)
[model]
kind = "cnn"
[train]
epochs = $epochs
batch_size = $batch
keep = "last"
[sweep]
seeds = [$(echo $seeds | tr ' ' ',')]
TOML
"$RADRUN" "$out/parity.toml" --runs "$out/runs" --quiet >/dev/null

for seed in $seeds; do
  "$python" bench/parity_keras.py train "$out/data" "$seed" "$height" "$width" "$epochs" "$batch" "$augment" \
    2>>"$out/keras.log" | tail -1 || { echo "parity: Keras failed, see $out/keras.log" >&2; exit 1; }
done > "$out/keras.jsonl"

"$python" - "$out/runs/parity" "$out/keras.jsonl" <<'PY'
import csv, json, statistics, sys, tomllib
from pathlib import Path

radrun = {}
for run in sorted(p for p in Path(sys.argv[1]).iterdir() if (p / "evaluation.json").exists()):
    seed = tomllib.loads((run / "recipe.toml").read_text())["train"]["seed"]
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    radrun[seed] = (json.loads((run / "evaluation.json").read_text())["accuracy"], float(rows[-1]["train_loss"]))
keras = {}
for line in open(sys.argv[2]):
    r = json.loads(line)
    keras[r["seed"]] = (r["test_accuracy"], r["train_loss"][-1])

print(f"{'seed':>6} {'radrun acc':>11} {'Keras acc':>10} {'radrun loss':>12} {'Keras loss':>11}")
for seed in sorted(keras):
    (ra, rl), (ka, kl) = radrun[seed], keras[seed]
    print(f"{seed:>6} {ra:>11.3f} {ka:>10.3f} {rl:>12.3f} {kl:>11.3f}")

def summary(values):
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)

(ra, rsd), (ka, ksd) = summary([v[0] for v in radrun.values()]), summary([v[0] for v in keras.values()])
(rl, rlsd), (kl, klsd) = summary([v[1] for v in radrun.values()]), summary([v[1] for v in keras.values()])
print(f"{'mean':>6} {ra:>6.3f}±{rsd:.3f} {ka:>5.3f}±{ksd:.3f} {rl:>7.3f}±{rlsd:.3f} {kl:>6.3f}±{klsd:.3f}")
verdict = "within" if abs(ra - ka) <= ksd else "NOT within"
print(f"radrun's mean test accuracy is {verdict} one SD of Keras' ({abs(ra - ka):.3f} apart, SD {ksd:.3f})")
PY
