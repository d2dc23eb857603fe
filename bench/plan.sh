#!/usr/bin/env bash
# Benchmark: planning a sweep of 100 x 100 = 10,000 runs (expansion, every
# run resolved and checked, duplicates merged, the dataset layout checked once), which
# should take under a second.
#   bench/plan.sh [VALUES_PER_KEY]      default 100
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh >/dev/null
source scripts/env.sh
cargo bench --locked -q -p radrun --bench plan -- "${1:-100}"
