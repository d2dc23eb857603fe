# Sourced by the other scripts (and by developers: `source scripts/env.sh`).
# Points cargo at the libtorch of the project's Python virtual environment, which lives
# outside the clone so that a fresh clone never re-downloads it.
#
#   RADRUN_CACHE  radrun's cache folder (default ~/.cache/radrun): the torch venv,
#                 test reference files, ImageNet weights.
#   RADRUN_VENV   the venv itself (default $RADRUN_CACHE/venv-torch-2.11.0).
#   RADRUN_MLFLOW_VENV  the tests' MLflow server and client (scripts/setup.sh --mlflow).
#   LIBTORCH      a libtorch of your own (tch then ignores the venv).
export RADRUN_TORCH_VERSION=2.11.0
export RADRUN_CACHE="${RADRUN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/radrun}"
export RADRUN_VENV="${RADRUN_VENV:-$RADRUN_CACHE/venv-torch-$RADRUN_TORCH_VERSION}"
export RADRUN_MLFLOW_VENV="${RADRUN_MLFLOW_VENV:-$RADRUN_CACHE/venv-mlflow-3.18.0}"
export RADRUN_ORIGINAL_PATH="${RADRUN_ORIGINAL_PATH:-$PATH}"
if [ -z "${LIBTORCH:-}" ]; then
  export LIBTORCH_USE_PYTORCH=1
  # torch-sys runs `python` when VIRTUAL_ENV is set: make that the venv's.
  export VIRTUAL_ENV="$RADRUN_VENV"
  case ":$PATH:" in *":$RADRUN_VENV/bin:"*) ;; *) export PATH="$RADRUN_VENV/bin:$PATH" ;; esac
fi
