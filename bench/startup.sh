#!/usr/bin/env bash
# Benchmark: how fast each command starts. The light commands (everything but training,
# predict, export, reproduce, weights and doctor) must not load libtorch: under 0.1 s and
# a few MB; the others load it (radrun hands them to radrun-torch, see ARCHITECTURE.md).
# Prints, per command, the median wall time and peak resident memory of 10 runs, and
# the libraries of each binary that come from libtorch.
#   bench/startup.sh [RUNS]      default 10
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh >/dev/null
source scripts/env.sh
cargo build --release --locked -q -p radrun
runs="${1:-10}"
bin=target/release
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
# a finished-looking run folder for status and report to read: a plan-only recipe
cp recipes/chest_6class.toml "$scratch/recipe.toml"
sed -i "s|^root = .*|root = \"$PWD/datasets.example/chest6\"|" "$scratch/recipe.toml"
dicom="$(find datasets.example -name '*.dcm' -print -quit)"
measure() { # NAME COMMAND...: median wall seconds and peak RSS (MB) of $runs runs
  local name="$1"
  shift
  local times=() rss=()
  for _ in $(seq "$runs"); do
    # wall time from the clock in ns (GNU time rounds to 10 ms), peak RSS from GNU time
    local start end
    start="$(date +%s%N)"
    /usr/bin/time -f '%M' -o "$scratch/time" "$@" >/dev/null 2>&1 || true
    end="$(date +%s%N)"
    times+=("$(awk -v d="$((end - start))" 'BEGIN {printf "%.3f", d / 1e9}')")
    rss+=("$(tail -1 "$scratch/time")")
  done
  local t m
  t="$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')"
  m="$(printf '%s\n' "${rss[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.1f", a[int((NR+1)/2)]/1024}')"
  printf '%-28s %8s s %8s MB\n' "$name" "$t" "$m"
}
command -v /usr/bin/time >/dev/null || { echo "bench/startup.sh needs GNU time (apt-get install time)" >&2; exit 1; }
echo "median of $runs runs: wall time, peak resident memory"
measure "radrun --version" "$bin/radrun" --version
measure "radrun --help" "$bin/radrun" --help
measure "radrun status" "$bin/radrun" status "$scratch/recipe.toml" --runs "$scratch/runs"
# the recipe read, swept and checked up to its data folder, which is missing: no decode
measure "radrun plan (no decode)" "$bin/radrun" plan "$scratch/recipe.toml" --set data.root=/nonexistent
measure "radrun dicom inspect" "$bin/radrun" dicom inspect "$dicom"
measure "radrun doctor (libtorch)" "$bin/radrun" doctor
echo
for b in radrun radrun-torch; do
  echo "$b loads: $(readelf -d "$bin/$b" | grep -o 'lib\(torch\|c10\)[a-z_]*\.so' | sort -u | tr '\n' ' ')"
done
