#!/usr/bin/env bash
# The main job: the papers' pipeline end to end on Fashion-MNIST (docs/results.md).
# Trains a small MoE classifier in libtorch, finds its susceptible routing layers, gives
# them each Bayesian router, and prints calibration, stability, OoD and cost tables
# (3 seeds, about 14 minutes on 2 cores). Arguments go to vmoer-fmnist, e.g. --quick.
# Results land in build/fmnist/ (CSV, tables, PNG plots).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
build=${VMOER_BUILD_DIR:-build}/main
out=${VMOER_BUILD_DIR:-build}/fmnist
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DVMOER_BUILD_TESTS=OFF -DVMOER_BUILD_BENCHMARKS=OFF \
  -DVMOER_BUILD_EXAMPLES=ON -DVMOER_BUILD_TORCH=ON -DVMOER_CUDA=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" --target vmoer-fmnist
"$build/experiments/fmnist/vmoer-fmnist" --threads 1 --out "$out" "$@"
/usr/bin/python3 experiments/fmnist/plot.py "$out" "$out"
echo "run.sh: tables and plots in $out"
