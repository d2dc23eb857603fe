#!/usr/bin/env bash
# Every test: set up libtorch and the reference packages (once), compute the reference
# values the tests compare against (scikit-learn, pydicom, SciPy, torchvision, timm;
# cached), then run the whole suite. Extra arguments go to `cargo test`, e.g.
#   scripts/test.sh -p radrun-data
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh --test
source scripts/env.sh
export RADRUN_REFERENCE="$RADRUN_CACHE/reference"
stamp="$RADRUN_REFERENCE/.stamp-$(cat tests/reference/*.py scripts/requirements-test.txt | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  rm -rf "$RADRUN_REFERENCE"
  mkdir -p "$RADRUN_REFERENCE"
  "$RADRUN_VENV/bin/python" tests/reference/make_references.py "$RADRUN_REFERENCE"
  touch "$stamp"
fi
cargo test --release --locked --workspace "$@"
