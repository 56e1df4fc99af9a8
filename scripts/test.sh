#!/usr/bin/env bash
# Installs what is missing, builds everything and runs every test: optimised for this
# machine, optimised for x86-64's baseline, and with AddressSanitizer and
# UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh

jobs=$(nproc)
build=${VMOER_BUILD_DIR:-build}

# The library and its tests alone: the second and third builds leave out what the first
# already covers (CUDA, libtorch, packaging, benchmarks, examples).
tests_only=(-DVMOER_CUDA=OFF -DVMOER_BUILD_TORCH=OFF -DVMOER_TEST_PACKAGE=OFF -DVMOER_BUILD_BENCHMARKS=OFF
  -DVMOER_BUILD_EXAMPLES=OFF)

cmake -S . -B "$build/release" -DCMAKE_BUILD_TYPE=Release
cmake --build "$build/release" -j"$jobs"
ctest --test-dir "$build/release" --output-on-failure -j"$jobs"

# The library as a consumer compiles it without -march: on x86-64 the baseline SIMD (SSE2),
# whose batches have no fused multiply-add and whose exp and exp2 are xsimd's generic ones.
if [[ $(uname -m) == x86_64 ]]; then
  cmake -S . -B "$build/baseline" -DCMAKE_BUILD_TYPE=Release -DVMOER_NATIVE=OFF "${tests_only[@]}"
  cmake --build "$build/baseline" -j"$jobs"
  ctest --test-dir "$build/baseline" --output-on-failure -j"$jobs"
fi

# The sanitized build covers the library's own code: libtorch and the CUDA toolkit are not
# built with the sanitizers. It compiles with Clang, so that the library and every test
# are built by both compilers that docs/install.md names.
cmake -S . -B "$build/sanitize" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g" -DVMOER_SANITIZE=ON "${tests_only[@]}"
cmake --build "$build/sanitize" -j"$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir "$build/sanitize" --output-on-failure -j"$jobs"
echo "test.sh: all tests passed"
