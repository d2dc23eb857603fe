#!/usr/bin/env bash
# Benchmark: the same network on the same files with the same batch size,
# image size and augmentation, trained by radrun and by an equivalent PyTorch script
# (bench/train_reference.py, torch DataLoader with as many workers as cores); prints
# training images/s of both (mean over the epochs after the first), wall time, ratio,
# then the median ratio over alternating pairs.
#   bench/train.sh [MODEL] [DEVICE] [EPOCHS] [SIZE] [BATCH]
#   MODEL: cnn or resnet50 (datasets.example/chest6), unet (datasets.example/lungs, no
#   augmentation); defaults: cnn cpu 3 64 10; on a GPU: bench/train.sh resnet50 cuda 3 224 32
# PRECISION (fp32, bf16) and CHANNELS_LAST (auto: on for CUDA, as radrun's default;
# on; off) set both sides' arithmetic and layout: radrun's train.precision and
# train.channels_last, PyTorch's autocast and torch.channels_last. PAIRS: default 5.
# RADRUN (the binary) and PYTHON (with torch, torchvision, pydicom) may be set; the
# defaults are target/release/radrun and the radrun venv's python.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
model="${1:-cnn}" device="${2:-cpu}" epochs="${3:-3}" size="${4:-64}" batch="${5:-10}"
workers="${WORKERS:-$(nproc)}"
source bench/radrun.sh
PYTHON="${PYTHON:-${RADRUN_VENV:-$HOME/.cache/radrun/venv-torch-2.11.0}/bin/python}"
out="bench/out/train"
mkdir -p "$out"
precision="${PRECISION:-fp32}" layout="${CHANNELS_LAST:-auto}"
case "$precision" in fp32|bf16) ;; *) echo "PRECISION is fp32 or bf16 (the reference has no loss scaler)" >&2; exit 2 ;; esac
# the same layout on both sides: auto is radrun's default, on for CUDA
if [ "$layout" = on ] || { [ "$layout" = auto ] && [[ "$device" == cuda* ]]; }; then py_layout=on; else py_layout=off; fi
data="datasets.example/chest6" data_toml=""
case "$model" in
  cnn) model_toml='kind = "cnn"' ;;
  resnet50) model_toml=$'kind = "transfer"\nbackbone = "resnet50"\nweights = "none"' ;;
  unet) model_toml='kind = "unet"' data="datasets.example/lungs"
        data_toml=$'task = "segmentation"\n[augment]\nenabled = false' ;;
  *) echo "MODEL is cnn, resnet50 or unet" >&2; exit 2 ;;
esac
cat > "$out/bench_$model.toml" <<TOML
[data]
root = "$(pwd)/$data"
image_size = [$size, $size]
$data_toml
[model]
$model_toml
[train]
device = "$device"
batch_size = $batch
precision = "$precision"
channels_last = "$layout"
$( [ "$model" = cnn ] && echo "epochs = $epochs" || printf '[[train.phases]]\nname = "all"\nepochs = %s\noptimizer = "adam"\ntrainable = "all"' "$epochs")
TOML
# Five pairs (PAIRS), the order alternating within each pair so that neither side always
# runs on a warmer or busier machine; the median ratio is the figure to report.
pairs="${PAIRS:-5}"
ratios=() rates=()
measure_radrun() {
  local start end
  start=$(date +%s.%N)
  "$RADRUN" "$out/bench_$model.toml" --force --json --runs "$out/runs" > "$out/radrun.jsonl"
  end=$(date +%s.%N)
  radrun_wall=$("$PYTHON" -c "print($end - $start)")
}
measure_pytorch() {
  python_json=$("$PYTHON" bench/train_reference.py "$data" "$model" "$device" "$epochs" "$size" "$batch" "$workers" \
    "$precision" "$py_layout")
}
for pair in $(seq 1 "$pairs"); do
  if [ $((pair % 2)) = 1 ]; then measure_radrun; measure_pytorch; else measure_pytorch; measure_radrun; fi
  echo "pair $pair/$pairs ($([ $((pair % 2)) = 1 ] && echo "radrun first" || echo "pytorch first"))"
  ratio=$("$PYTHON" - "$out/radrun.jsonl" "$python_json" "$radrun_wall" <<'PY'
import json, sys
events = [json.loads(l) for l in open(sys.argv[1])]
rates = [e["images_per_second"] for e in events if e["event"] == "epoch"]
radrun = sum(rates[1:]) / len(rates[1:]) if len(rates) > 1 else rates[0]
wall = float(sys.argv[3])
py = json.loads(sys.argv[2])
print(f"  radrun : {radrun:8.1f} train images/s (epochs {', '.join(f'{r:.0f}' for r in rates)}), wall {wall:.1f} s", file=sys.stderr)
print(f"  pytorch: {py['images_per_second']:8.1f} train images/s (epochs {', '.join(f'{r:.0f}' for r in py['images_per_second_per_epoch'])}), wall {py['wall_seconds']:.1f} s", file=sys.stderr)
print(f"  ratio radrun/pytorch: {radrun / py['images_per_second']:.2f}x images/s, {py['wall_seconds'] / wall:.2f}x wall time", file=sys.stderr)
print(radrun / py["images_per_second"], radrun)
PY
)
  ratios+=("${ratio% *}")
  rates+=("${ratio#* }")
done
radrun_median=$(printf '%s\n' "${rates[@]}" | sort -g | awk '{r[NR]=$1} END {print (NR % 2) ? r[(NR+1)/2] : (r[NR/2] + r[NR/2+1]) / 2}')
printf '%s\n' "${ratios[@]}" | sort -g | awk -v d="$device" -v rate="$radrun_median" -v what="$model $precision" '{r[NR]=$1} END {
  m = (NR % 2) ? r[(NR+1)/2] : (r[NR/2] + r[NR/2+1]) / 2
  printf "median ratio radrun/pytorch over %d pairs on %s (%s): %.2fx images/s (min %.2fx, max %.2fx); radrun median %.1f images/s\n", NR, d, what, m, r[1], r[NR], rate
}'
