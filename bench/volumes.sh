#!/usr/bin/env bash
# Benchmark: what `radrun plan` reads of a volume dataset (every case's image and mask:
# voxels, geometry, label counts, CT samples), radrun against nibabel + numpy doing the
# same work with the same number of processes, on the same synthetic .nii.gz files.
#   bench/volumes.sh [N_CASES] [SIDE] [SLICES] [WORKERS]   defaults 16 256 100 $(nproc)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh --test >/dev/null
source scripts/env.sh
n="${1:-16}" side="${2:-256}" slices="${3:-100}" workers="${4:-$(nproc)}"
data="$(pwd)/bench/out/volumes-$n-$side-$slices"
[ -d "$data" ] || "$RADRUN_VENV/bin/python" bench/volumes_reference.py make "$data" "$n" "$side" "$slices"
cargo build --release --locked -q --bin radrun
recipe="$data/recipe.toml"
printf '[data]\ndims = 3\ntask = "segmentation"\nroot = "."\nmasks_folder = "Masks"\nnormalize = "ct"\n[model]\nkind = "unet"\n' > "$recipe"
best=""
for _ in 1 2 3; do
  start=$(date +%s%N)
  RAYON_NUM_THREADS="$workers" target/release/radrun plan "$recipe" >/dev/null
  t=$(( $(date +%s%N) - start ))
  if [ -z "$best" ] || [ "$t" -lt "$best" ]; then best=$t; fi
done
rust=$(printf '{"tool": "radrun plan", "cases": %d, "seconds": %d.%09d}' "$n" $((best / 1000000000)) $((best % 1000000000)))
python=$("$RADRUN_VENV/bin/python" bench/volumes_reference.py read "$data" "$workers" 3)
echo "$rust"
echo "$python"
"$RADRUN_VENV/bin/python" - "$rust" "$python" <<'PY'
import json, sys
r, p = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"radrun plan {r['seconds']:.2f} s, nibabel+numpy {p['seconds']:.2f} s for {r['cases']} cases: radrun {p['seconds'] / r['seconds']:.2f}x as fast")
PY
