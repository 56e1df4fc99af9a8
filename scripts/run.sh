#!/usr/bin/env bash
# Builds and runs the main example on its built-in synthetic router.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh --minimal
build=${VMOER_BUILD_DIR:-build}/demo
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DVMOER_BUILD_TESTS=OFF -DVMOER_BUILD_BENCHMARKS=OFF \
  -DVMOER_BUILD_EXAMPLES=ON >/dev/null
cmake --build "$build" -j"$(nproc)" --target vmoer-demo
"$build/examples/vmoer-demo" "$@"
