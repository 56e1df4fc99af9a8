#!/usr/bin/env bash
# Installs, from Debian 12's archive, whatever the build, tests, benchmarks and
# examples need and the machine lacks. Runs as root (or through sudo).
#   scripts/install-deps.sh            everything the test suite needs
#   scripts/install-deps.sh --minimal  just what the demo needs
set -euo pipefail

minimal=(g++ cmake make libeigen3-dev libxsimd-dev)
full=("${minimal[@]}"
  pkg-config              # consumer test of vmoer.pc
  clang libomp-dev        # the sanitized test build compiles with Clang (and its OpenMP)
  doctest-dev             # unit tests
  libbenchmark-dev        # benchmarks
  librandom123-dev        # test oracle for the Philox stream
  python3-torch           # autograd cross-check of the gradients
  python3-numpy
  doxygen                 # API reference; ctest fails on undocumented public symbols
  libtorch-dev            # libtorch integration and the Fashion-MNIST experiment
  libopenblas0-openmp     # torch's BLAS: the reference libblas3 makes the experiment 5-6x slower
  dataset-fashion-mnist   # the experiment's training and test data
  python3-matplotlib      # the experiment's plots (experiments/fmnist/plot.py)
)

want=("${full[@]}")
[[ "${1:-}" == "--minimal" ]] && want=("${minimal[@]}")

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

sudo=""
[[ $(id -u) -ne 0 ]] && sudo="sudo"
echo "install-deps: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
