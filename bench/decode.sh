#!/usr/bin/env bash
# Benchmark: decode + window + resize of 512x512 DICOM and PNG files, radrun
# against pydicom + numpy + Pillow doing the same work with the same number of cores.
#   bench/decode.sh [N_FILES] [SIZE] [WORKERS]      defaults 400 224 $(nproc)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh --test >/dev/null
source scripts/env.sh
n="${1:-400}" size="${2:-224}" workers="${3:-$(nproc)}"
data="$(pwd)/bench/out/decode-$n"
[ -d "$data" ] || "$RADRUN_VENV/bin/python" bench/make_bench_data.py "$data" "$n"
rust=$(RAYON_NUM_THREADS="$workers" cargo bench --locked -q -p radrun-data --bench decode -- "$data" "$size" 3)
python=$("$RADRUN_VENV/bin/python" bench/decode_reference.py "$data" "$size" "$workers" 3)
echo "$rust"
echo "$python"
"$RADRUN_VENV/bin/python" - "$rust" "$python" <<'PY'
import json, sys
r, p = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"radrun {r['images_per_second']:.0f} images/s, pydicom+numpy+Pillow {p['images_per_second']:.0f} images/s: ratio {r['images_per_second'] / p['images_per_second']:.2f}x")
PY
