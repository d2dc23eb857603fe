#!/usr/bin/env bash
# The main job: set up libtorch (once), build radrun, and train the example recipe on
# the bundled synthetic chest radiographs. Extra arguments go to radrun, e.g.
#   scripts/example.sh --force
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
source scripts/env.sh
cargo build --release --locked -p radrun
target/release/radrun doctor
target/release/radrun recipes/chest_6class.toml "$@"
echo
echo "Results: runs/chest_6class/ (summary.csv, and per run: metrics.csv, evaluation.json,"
echo "per_class.csv, confusion_matrix.csv, predictions.csv, best/last.safetensors)."
