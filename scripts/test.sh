#!/usr/bin/env bash
# Every test: set up libtorch and the reference packages (once), compute the reference
# values the tests compare against (scikit-learn, pydicom, SciPy, torchvision, timm;
# cached), start a one-node Slurm for the cluster tests (scripts/slurm.sh; installed
# once, stopped at the end), install chromium for the report tests (once), then run
# the whole suite, after `cargo fmt --check` and a build with clippy's lints as errors.
# Extra arguments go to `cargo test`, e.g.
#   scripts/test.sh -p radrun-data
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# each phase says how long it took (CI has 30 minutes for all of it)
phase_start=$SECONDS
phase() {
  echo "test.sh: $1 took $((SECONDS - phase_start)) s" >&2
  phase_start=$SECONDS
}
scripts/setup.sh --test
phase "setup (venv, reference packages)"
# the MLflow venv (the [track] mlflow tests' server and client) installs while the
# references are computed and radrun builds: it waits on the network, not on the cores
mlflow_log="$(mktemp "${TMPDIR:-/tmp}/radrun-mlflow-setup.XXXXXX")"
scripts/setup.sh --mlflow >"$mlflow_log" 2>&1 &
mlflow_setup=$!
source scripts/env.sh
# CI is any value of CI but empty, 0 or false (CI systems set true, 1 or their name);
# there nothing may be skipped. The Rust tests read it the same way
# (radrun_data::testing::in_ci).
in_ci() { case "${CI:-}" in "" | 0 | false | FALSE | False) return 1 ;; *) return 0 ;; esac; }
export RADRUN_REFERENCE="$RADRUN_CACHE/reference"
stamp="$RADRUN_REFERENCE/.stamp-$(cat tests/reference/*.py scripts/requirements-test.txt | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  rm -rf "$RADRUN_REFERENCE"
  mkdir -p "$RADRUN_REFERENCE"
  "$RADRUN_VENV/bin/python" tests/reference/make_references.py "$RADRUN_REFERENCE"
  touch "$stamp"
fi
phase "reference values"
# the cluster tests submit to a real Slurm; without one (not root, no Slurm) they are
# skipped, except in CI, where they must run
slurm_dir="$(mktemp -d "${TMPDIR:-/tmp}/radrun-slurm.XXXXXX")"
trap 'scripts/slurm.sh stop "$slurm_dir" >/dev/null 2>&1 || true; rm -rf "$slurm_dir"' EXIT
if scripts/slurm.sh start "$slurm_dir"; then
  export SLURM_CONF="$slurm_dir/slurm.conf"
elif in_ci; then
  exit 1
else
  echo "test.sh: no local Slurm; the cluster tests will be skipped" >&2
fi
# the report tests load report.html in a real browser: Debian's chromium, installed once
if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test.sh: installing Debian's chromium for the report tests"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 \
      || { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; }
  elif in_ci; then
    echo "test.sh: chromium is missing; as root on Debian: apt-get install chromium" >&2
    exit 1
  else
    echo "test.sh: no chromium; the report tests will be skipped" >&2
  fi
fi
# the shell tests read the completion scripts with Debian's zsh and fish, the pages
# with man
missing=$(for tool in zsh fish man; do command -v "$tool" >/dev/null || echo "$tool"; done | tr '\n' ' ')
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test.sh: installing Debian's zsh, fish and man-db for the shell tests"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends zsh fish man-db >/dev/null 2>&1 \
      || { apt-get update -qq && apt-get install -y -qq --no-install-recommends zsh fish man-db >/dev/null; }
  elif in_ci; then
    echo "test.sh: $missing missing; as root on Debian: apt-get install zsh fish man-db" >&2
    exit 1
  else
    echo "test.sh: no $missing; those shell checks will be skipped" >&2
  fi
fi
phase "Slurm, chromium and shells"
# the gates: formatting, then clippy's lints (every warning an error) on every target of
# the workspace (tests and benchmarks too). The lints ride on the test build itself, as
# `cargo clippy` runs them: clippy-driver compiles the workspace's own crates
# (RUSTC_WORKSPACE_WRAPPER, CLIPPY_ARGS). A separate `cargo clippy` checked the whole
# dependency graph a second time, 500 s of a fresh machine's 30 minutes on two cores.
cargo fmt --all --check
phase "fmt"
clippy_driver="$(command -v clippy-driver || true)"
if [ -z "$clippy_driver" ]; then
  echo "test.sh: clippy-driver is missing; install it with: rustup component add clippy" >&2
  exit 1
fi
export RUSTC_WORKSPACE_WRAPPER="$clippy_driver"
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
cargo test --release --locked --workspace --all-targets --no-run
phase "build, with clippy's lints"
if ! wait "$mlflow_setup"; then
  cat "$mlflow_log" >&2
  if in_ci; then
    echo "test.sh: the MLflow venv could not be made (scripts/setup.sh --mlflow)" >&2
    exit 1
  fi
  echo "test.sh: no MLflow venv; the MLflow tests will be skipped" >&2
fi
rm -f "$mlflow_log"
phase "MLflow venv (made while building)"
cargo test --release --locked --workspace "$@"
phase "tests"
# CI: the numeric comparisons again with one libtorch thread (the run above uses every
# core), so that a bound that holds for one thread count only is caught: libtorch sums
# in another order with another number of threads. The test binaries just built run
# again as they are, each from its package's folder as cargo runs it: `cargo test -p`
# would resolve the shared dependencies' features over fewer packages and build most of
# the dependency graph a second time (minutes on two cores).
if in_ci; then
  binaries="$(cargo test --release --locked --workspace --no-run --message-format=json 2>/dev/null \
    | "$RADRUN_VENV/bin/python" -c '
import json, os, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") != "compiler-artifact" or not m["profile"]["test"] or not m.get("executable"):
        continue
    folder, target = os.path.dirname(m["manifest_path"]), m["target"]["name"]
    if folder.endswith(("crates/models", "crates/train")):
        print(folder, m["executable"], sep="\t")
    elif target == "cli":
        print(folder, m["executable"], "export:: predict:: precision", sep="\t")
')"
  if [ "$(grep -c . <<<"$binaries")" -lt 5 ] || ! grep -q "precision" <<<"$binaries"; then
    echo "test.sh: the one-thread pass did not find its test binaries:" >&2
    echo "$binaries" >&2
    exit 1
  fi
  while IFS=$'\t' read -r folder binary filters; do
    # shellcheck disable=SC2086 # the filters are words
    (cd "$folder" && OMP_NUM_THREADS=1 "$binary" $filters)
  done <<<"$binaries"
  phase "one-thread pass"
fi
