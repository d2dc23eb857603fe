#!/usr/bin/env bash
# Creates (once) the Python virtual environment that provides libtorch: PyPI's
# torch==2.11.0 wheel, a CUDA 13 build that also runs on CPU. Idempotent: a venv that is
# complete (marker file written after a successful install) is left alone.
#   scripts/setup.sh          torch only (what radrun needs to build and run)
#   scripts/setup.sh --test   also the packages the tests use as references
#   scripts/setup.sh --mlflow only the tests' MLflow server and client, in a venv of their
#                             own ($RADRUN_MLFLOW_VENV; scripts/test.sh makes it while it builds)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# The Python that creates the venv, chosen before env.sh points PATH and VIRTUAL_ENV at
# the venv itself (pyenv's shims follow VIRTUAL_ENV, and it does not exist yet).
python="${PYTHON:-python3}"
source "$here/env.sh"
base_python() { env -u VIRTUAL_ENV PATH="${RADRUN_ORIGINAL_PATH:-$PATH}" "$python" "$@"; }
if [ "${1:-}" = "--mlflow" ]; then
  req="$here/requirements-mlflow.txt"
  stamp="$RADRUN_MLFLOW_VENV/.radrun-mlflow-$(sha256sum "$req" | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    echo "setup: installing MLflow into $RADRUN_MLFLOW_VENV"
    base_python -m venv "$RADRUN_MLFLOW_VENV"
    "$RADRUN_MLFLOW_VENV/bin/python" -m pip install --quiet --progress-bar off -r "$req"
    touch "$stamp"
  fi
  exit 0
fi
# CMake builds CharLS, the JPEG-LS decoder dicom-pixeldata links (Debian: cmake).
if ! command -v cmake >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing cmake (needed to build the JPEG-LS decoder)"
    (apt-get install -y -qq cmake >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq cmake; }) >/dev/null
  else
    echo "setup: cmake is missing; install it (Debian/Ubuntu: sudo apt-get install cmake) and rerun" >&2
    exit 1
  fi
fi
if [ -n "${LIBTORCH:-}" ]; then
  echo "setup: using your LIBTORCH=$LIBTORCH (no venv needed for building radrun)"
elif [ ! -f "$RADRUN_VENV/.radrun-torch-ok" ]; then
  echo "setup: creating $RADRUN_VENV with torch==$RADRUN_TORCH_VERSION (several GB, once)"
  mkdir -p "$RADRUN_CACHE"
  base_python -m venv "$RADRUN_VENV" || {
    echo "setup: '$python -m venv' failed; install Python 3 with venv (Debian: apt-get install python3-venv)" >&2
    exit 1
  }
  "$RADRUN_VENV/bin/python" -m pip install --quiet --upgrade pip
  "$RADRUN_VENV/bin/python" -m pip install --progress-bar off "torch==$RADRUN_TORCH_VERSION"
  touch "$RADRUN_VENV/.radrun-torch-ok"
fi

if [ "${1:-}" = "--test" ]; then
  req="$here/requirements-test.txt"
  stamp="$RADRUN_VENV/.radrun-test-$(sha256sum "$req" | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    if [ ! -x "$RADRUN_VENV/bin/python" ]; then
      base_python -m venv "$RADRUN_VENV"
    fi
    echo "setup: installing test reference packages into $RADRUN_VENV"
    "$RADRUN_VENV/bin/python" -m pip install --progress-bar off -r "$req"
    touch "$stamp"
  fi
fi
