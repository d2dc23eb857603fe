# Sourced by the benchmarks: sets RADRUN to target/release/radrun, set up and built
# first, unless RADRUN already names a binary (a device machine carries one).
if [ -z "${RADRUN:-}" ]; then
  scripts/setup.sh --test >/dev/null
  source scripts/env.sh
  cargo build --release --locked -q -p radrun
  RADRUN=target/release/radrun
fi
