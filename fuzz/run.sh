#!/usr/bin/env bash
# Runs radrun's fuzz targets (cargo-fuzz, libFuzzer; needs a nightly toolchain and
# `cargo install cargo-fuzz`):
#   fuzz/run.sh [SECONDS] [TARGET...]    default: 600 seconds each of dicom raster recipe nifti
# Seeds each corpus with pydicom's test files and the example data, caps memory at 2 GB
# (-rss_limit_mb=2048: an out-of-memory counts as a finding) and copies every crashing,
# hanging or oversized input to tests/fuzz-regressions/<target>/, which the regular test
# suite replays (crates/data/tests/hostile_files.rs) on the stable toolchain.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh
seconds="${1:-600}"
shift || true
targets=("${@:-dicom raster recipe nifti}")
targets=(${targets[@]})
nibabel_files="$("$RADRUN_VENV/bin/python" -c 'import nibabel, pathlib; print(pathlib.Path(nibabel.__file__).parent / "tests" / "data")')"
pydicom_files="$("$RADRUN_VENV/bin/python" -c 'import pydicom, pathlib; print(pathlib.Path(pydicom.__file__).parent / "data" / "test_files")')"
for target in "${targets[@]}"; do
  corpus="$PWD/fuzz/corpus/$target"
  mkdir -p "$corpus" "fuzz/artifacts/$target" "tests/fuzz-regressions/$target"
  case "$target" in
    # plus the files the reference script makes (Enhanced CT/MR, segmented palettes,
    # padded JPEG frames) when scripts/test.sh has made them
    dicom) find datasets.example "$pydicom_files" "$RADRUN_CACHE/reference/dicom" -type f \( -name '*.dcm' -o -path '*dicomdirtests*' \) -size -1000k -exec cp -n {} "$corpus/" \; 2>/dev/null || true ;;
    raster) find datasets.example/chest6/Test datasets.example/lungs/Test -type f \( -name '*.png' -o -name '*.jpg' \) -exec cp -n {} "$corpus/" \; ;;
    recipe) cp -n recipes/*.toml "$corpus/" ;;
    # nibabel's own NIfTI files and those the reference script writes (every datatype,
    # NIfTI-2, damaged headers) when scripts/test.sh has made them
    nifti) find "$nibabel_files" "$RADRUN_CACHE/reference/volumes" tests/fuzz-regressions/nifti -type f \( -name '*.nii' -o -name '*.nii.gz' \) -size -1000k -exec cp -n {} "$corpus/" \; 2>/dev/null || true ;;
  esac
  cargo +nightly fuzz run -O "$target" "$corpus" -- -max_total_time="$seconds" -rss_limit_mb=2048 \
    -timeout=10 -max_len=1048576 -print_final_stats=1 2>&1 | tee "fuzz/artifacts/$target.log" | grep -E "^(Done|#[0-9]+ *DONE|stat::number_of_executed_units|==[0-9]+== ERROR|SUMMARY)" || true
  for found in fuzz/artifacts/"$target"/*; do
    if [ -f "$found" ]; then
      cp "$found" "tests/fuzz-regressions/$target/"
      echo "finding kept: tests/fuzz-regressions/$target/$(basename "$found")"
    fi
  done
done
