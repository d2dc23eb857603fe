#!/usr/bin/env bash
# Benchmark: a dataset larger than it is comfortable to hold, with the image
# cache in memory and on disk. Generates N 16-bit PNG files of SIZE x SIZE (two classes,
# noise over a disc: they compress little), then trains the same small CNN for EPOCHS
# epochs three times in this call:
#   memory       data.cache = "memory": every image decoded into this process (u16)
#   disk, new    data.cache = "disk": decoded once into runs/.image-cache, read per batch
#   disk, again  the same, the cache file now there (a later run, or a sweep's next run)
# and prints each one's peak resident memory (GNU time), the time to load the images and
# the first and second epochs' times (metrics.csv).
#   bench/memory.sh [N] [SIZE] [EPOCHS]      defaults: 20000 256 2
# RADRUN (the binary) may be set; the default is target/release/radrun.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
n="${1:-20000}" size="${2:-256}" epochs="${3:-2}"
source bench/radrun.sh
out="bench/out/memory"
data="$out/data-$n-$size"
if [ ! -f "$data/.complete" ]; then
  rm -rf "$data"
  "${RADRUN_VENV:-$HOME/.cache/radrun/venv-torch-2.11.0}/bin/python" - "$data" "$n" "$size" <<'PY'
import sys
from pathlib import Path
import numpy as np
from PIL import Image
out, n, size = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
yy, xx = np.mgrid[0:size, 0:size] / (size - 1) * 2 - 1
for i in range(n):
    split = "Test" if i % 10 >= 8 else "Train"
    label = i % 2
    folder = out / split / ("disc" if label else "none")
    folder.mkdir(parents=True, exist_ok=True)
    disc = ((xx - 0.2) ** 2 + yy ** 2 < 0.3).astype(float) * label
    image = np.clip(20000 + disc * 20000 + rng.normal(0, 3000, (size, size)), 0, 65535).astype(np.uint16)
    Image.fromarray(image).save(folder / f"{i:05d}.png")
(out / ".complete").touch()
PY
fi
cat > "$out/memory.toml" <<TOML
[data]
root = "$(pwd)/$data"
image_size = [$size, $size]
[augment]
enabled = false
[model]
kind = "cnn"
feature_maps = 8
dense_units = 16
[train]
batch_size = 32
epochs = $epochs
TOML
rm -rf "$out/runs"
measure() {  # label, cache, extra arguments
  local label="$1" cache="$2"; shift 2
  /usr/bin/time -f "%M" -o "$out/rss" "$RADRUN" "$out/memory.toml" --runs "$out/runs" --set "data.cache=$cache" "$@" \
    > /dev/null 2> "$out/stderr" || { cat "$out/stderr"; exit 1; }
  local metrics; metrics=$(ls "$out"/runs/memory/*/metrics.csv)
  python3 - "$label" "$(tail -1 "$out/rss")" "$out/stderr" "$metrics" <<'PY'
import csv, re, sys
label, rss_kib, stderr, metrics = sys.argv[1], int(sys.argv[2]), open(sys.argv[3]).read(), sys.argv[4]
load = re.search(r"\((decoded into memory|decoded into image cache \S+|read from image cache \S+) in ([0-9.]+) s\)", stderr)
epochs = [float(r["seconds"]) for r in csv.DictReader(open(metrics))]
print(f"{label:<12} peak RSS {rss_kib / 1024**2:5.2f} GB   load {float(load.group(2)):6.1f} s   "
      + "   ".join(f"epoch {i + 1} {s:6.1f} s" for i, s in enumerate(epochs[:2])))
PY
}
echo "$n 16-bit PNG images of $size x $size, $epochs epochs, $(nproc) cores"
measure "memory" memory
measure "disk, new" disk --force
measure "disk, again" disk --force
