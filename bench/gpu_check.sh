#!/usr/bin/env bash
# Device check (GPU machine): radrun built elsewhere, that machine's torch 2.11.0+cu130.
# doctor, the example recipe on CUDA, the training benchmarks against PyTorch (bench/gpu.sh)
# and the packed sweep (bench/sweep.sh).
set -uo pipefail
torchlib=$(python3 -c "import torch, os; print(os.path.dirname(torch.__file__) + '/lib')")
export LD_LIBRARY_PATH="$torchlib"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
R="${R:-.gpu/radrun}"
OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
$R doctor 2>&1 | tee "$OUT/doctor.txt"; echo "doctor exit $?"
$R doctor --json > "$OUT/doctor.json"
( time $R recipes/chest_6class.toml --runs /tmp/runs --quiet ) 2>&1 | tee "$OUT/example.txt"
cp /tmp/runs/chest_6class/summary.csv "$OUT/example_summary.csv" 2>/dev/null
export RADRUN="$R" PYTHON=python3 WORKERS=16
bench/gpu.sh 3 2>&1 | tee "$OUT/bench_gpu.txt"
bench/sweep.sh cuda 8 10 2>&1 | tail -2 | tee "$OUT/bench_sweep.txt"
