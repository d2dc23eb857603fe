#!/usr/bin/env bash
# Benchmark: a sweep of 16 tutorial-CNN runs (64 px, EPOCHS epochs) on the
# example data, trained one after the other and then with --jobs N, on the same
# machine in the same call; prints both wall times and the ratio.
#   bench/sweep.sh [DEVICE] [JOBS] [EPOCHS]
#   defaults: cpu 2 10; on one GPU: bench/sweep.sh cuda 8 10
# RADRUN (the binary) may be set; the default is target/release/radrun.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
device="${1:-cpu}" jobs="${2:-2}" epochs="${3:-10}"
source bench/radrun.sh
out="bench/out/sweep"
rm -rf "$out" && mkdir -p "$out"
cat > "$out/sweep.toml" <<TOML
[data]
root = "$(pwd)/datasets.example/chest6"
image_size = [64, 64]
[model]
kind = "cnn"
[train]
device = "$device"
batch_size = 10
epochs = $epochs
[sweep]
"train.learning_rate" = [0.0005, 0.001, 0.002, 0.004]
"model.dense_units" = [32, 64, 128, 256]
TOML
seconds() { local start end; start=$(date +%s.%N); "$@" >/dev/null 2>&1; end=$(date +%s.%N); python3 -c "print($end - $start)"; }
one=$(seconds "$RADRUN" "$out/sweep.toml" --runs "$out/one" --quiet)
many=$(seconds "$RADRUN" "$out/sweep.toml" --runs "$out/many" --quiet --jobs "$jobs")
done_one=$(grep -c ',done,' "$out/one/sweep/summary.csv" || true)
done_many=$(grep -c ',done,' "$out/many/sweep/summary.csv" || true)
python3 - "$one" "$many" "$jobs" "$device" "$done_one" "$done_many" <<'PY'
import sys
one, many, jobs, device, d1, d2 = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
print(f"16 runs on {device}: one after the other {one:.1f} s ({d1} done), --jobs {jobs} {many:.1f} s ({d2} done)")
print(f"ratio: {one / many:.2f}x wall time")
PY
