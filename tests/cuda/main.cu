// The CUDA tests' main. Without a GPU the "gpu" suite cannot run: the program says so
// and exits with 77, which ctest reports as skipped. `--host-only` runs the "host"
// suite, the checks that need no device (argument validation), on any machine.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cuda_runtime.h>

#include <cstdio>
#include <cstring>

int main(int argc, char** argv) {
  bool host_only = false;
  for (int i = 1; i < argc; ++i) host_only = host_only || std::strcmp(argv[i], "--host-only") == 0;
  doctest::Context context(argc, argv);
  if (host_only) {
    context.addFilter("test-suite", "host");
  } else {
    int devices = 0;
    const cudaError_t e = cudaGetDeviceCount(&devices);
    if (e != cudaSuccess || devices == 0) {
      std::printf("SKIPPED: no CUDA device (cudaGetDeviceCount: %s, %d devices); the CUDA tests need a GPU\n",
                  e == cudaSuccess ? "ok" : cudaGetErrorString(e), devices);
      return 77;
    }
  }
  return context.run();
}
