#!/usr/bin/env bash
# The CUDA backend's checks on a machine with a GPU, in one call from the repository
# root (the device tool's working directory): build the CUDA targets, run the CUDA
# tests, compute-sanitizer memcheck and racecheck on them, then the benchmark.
#   bash scripts/gpu_check.sh            everything (benchmark: the issue's full grid, bf16)
#   bash scripts/gpu_check.sh --quick    tests and sanitizers, a short benchmark
# Results land in $OUT (the device tool's folder) or the build directory:
# ctest.log, memcheck.log, racecheck.log, bench_cuda.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
[[ "${1:-}" == "--quick" ]] && quick=1
export PATH="/usr/local/cuda/bin:$PATH"
build=${VMOER_BUILD_DIR:-build/gpu}
out=${OUT:-$build}
mkdir -p "$out"

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/device.txt"
nvcc --version | tail -1 | tee -a "$out/device.txt"
if ! cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DVMOER_CUDA=ON -DVMOER_TEST_PACKAGE=OFF \
    -DVMOER_BUILD_EXAMPLES=OFF -DVMOER_BUILD_TOOLS=OFF -DVMOER_BUILD_TORCH=OFF > "$out/configure.log" 2>&1; then
  echo "gpu_check: configure failed (missing packages? scripts/install-deps.sh installs them):"
  tail -20 "$out/configure.log"
  exit 1
fi
cmake --build "$build" --target test_cuda bench_cuda -j"$(nproc)"

ctest --test-dir "$build" -L cuda --output-on-failure 2>&1 | tee "$out/ctest.log"
# A skipped cuda.route means the GPU was not visible: that is a failure here.
if grep -q "Skipped" "$out/ctest.log"; then echo "gpu_check: the CUDA tests were skipped"; exit 1; fi

test_cuda="$build/tests/cuda/test_cuda"
compute-sanitizer --tool memcheck --leak-check full --error-exitcode 1 "$test_cuda" 2>&1 | tail -40 | tee "$out/memcheck.log"
compute-sanitizer --tool racecheck --racecheck-report all --error-exitcode 1 "$test_cuda" 2>&1 | tail -40 |
  tee "$out/racecheck.log"

if (( quick )); then
  "$build/benchmarks/bench_cuda" --dtype=bf16 --quick | tee "$out/bench_cuda.jsonl"
else
  "$build/benchmarks/bench_cuda" --dtype=bf16 | tee "$out/bench_cuda.jsonl"
fi
echo "gpu_check: all passed"
