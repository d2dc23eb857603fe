#!/usr/bin/env bash
# Benchmark, for a GPU: radrun against the equivalent PyTorch eager script
# (bench/train_reference.py) on the same GPU, files and settings, median of PAIRS
# alternating pairs per line (default 3):
#   cnn       64 px, batch 10   fp32, NCHW on both sides (the loop itself)
#   resnet50 224 px, batch 32   fp32, NCHW; then bf16 + channels-last on both sides
#   unet     256 px, batch 8    fp32, NCHW; then bf16 + channels-last on both sides
# then radrun's own bf16 / fp32 speed-up on ResNet50. Targets: fp32 >= 1.0x, bf16 >=
# 1.0x PyTorch AMP, radrun bf16 >= 1.8x radrun fp32 on ResNet50.
#   bench/gpu.sh [EPOCHS]        default 3 (the first epoch is not counted)
# RADRUN and PYTHON may be set (bench/gpu_check.sh sets them on a device machine).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
epochs="${1:-3}"
export PAIRS="${PAIRS:-3}"
out="bench/out/gpu"
mkdir -p "$out"
: > "$out/lines.txt"
line() {  # model size batch precision layout
  PRECISION="$4" CHANNELS_LAST="$5" bench/train.sh "$1" cuda "$epochs" "$2" "$3" 2>&1 | tail -1 | tee -a "$out/lines.txt"
}
line cnn 64 10 fp32 off
line resnet50 224 32 fp32 off
line resnet50 224 32 bf16 on
line unet 256 8 fp32 off
line unet 256 8 bf16 on
python3 - "$out/lines.txt" <<'PY'
import re, sys
rates = {}
for text in open(sys.argv[1]):
    m = re.search(r"\((\w+) (\w+)\).*radrun median ([0-9.]+) images/s", text)
    if m:
        rates[(m.group(1), m.group(2))] = float(m.group(3))
if ("resnet50", "fp32") in rates and ("resnet50", "bf16") in rates:
    print(f"radrun ResNet50 bf16+channels-last / fp32: {rates[('resnet50', 'bf16')] / rates[('resnet50', 'fp32')]:.2f}x images/s")
PY
