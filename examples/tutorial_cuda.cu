// Tutorial: route a batch on the GPU with the CUDA backend (docs/cuda.md).
//   1. build the router on the host, as for the CPU;
//   2. size and allocate the workspace and the parameters once, upload the parameters;
//   3. route device tokens into device buffers: no allocation, no exception, no sync;
//   4. check the result against the CPU backend (same Philox stream, same convention).
// Exits 77 (ctest's skip code) where no GPU is present, 1 on a mismatch or a CUDA error.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include <vmoer/backend/cuda.hpp>
#include <vmoer/vmoer.hpp>

namespace {

// Every CUDA call is checked; the first failure ends the tutorial with its message.
bool ok(cudaError_t e, const char* what) {
  if (e != cudaSuccess) std::fprintf(stderr, "tutorial_cuda: %s: %s\n", what, cudaGetErrorString(e));
  return e == cudaSuccess;
}

}  // namespace

int main() {
  using namespace vmoer;
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("tutorial_cuda: no CUDA device, skipped\n");
    return 77;
  }
  const Index tokens = 256, dim = 512, experts = 64, top_k = 8;
  std::srand(5);
  const Matrix<float> weight = Matrix<float>::Random(experts, dim) / std::sqrt(float(dim));
  const Matrix<float> hidden = Matrix<float>::Random(tokens, dim);
  const Convention mixtral{.top_k = top_k, .normalize = Normalize::sum};

  // 1. The router on the host; the CPU copy is the reference of step 4.
  const Router cpu(MeanField<float>(weight, {}, {.hidden = 32, .init_sigma = 0.5}), MonteCarlo{.samples = 32},
                   TopK{mixtral}, rng::Stream{7, 0});

  // 2. Once: workspace and parameters on the device.
  void *workspace = nullptr, *params = nullptr;
  float *d_hidden = nullptr, *d_weights = nullptr;
  std::int32_t* d_ids = nullptr;
  const std::size_t ws_bytes = cuda::workspace_size(cpu, tokens), param_bytes = cuda::parameter_bytes(cpu);
  if (!ok(cudaMalloc(&workspace, ws_bytes), "workspace") || !ok(cudaMalloc(&params, param_bytes), "parameters") ||
      !ok(cudaMalloc(&d_hidden, sizeof(float) * tokens * dim), "hidden") ||
      !ok(cudaMalloc(&d_ids, sizeof(std::int32_t) * tokens * top_k), "ids") ||
      !ok(cudaMalloc(&d_weights, sizeof(float) * tokens * top_k), "weights"))
    return 1;
  const Router gpu(cpu.posterior(), cpu.sampler(), cpu.selector(), cpu.stream(), Cuda{nullptr, workspace, ws_bytes});
  if (const cuda::Result r = cuda::upload(gpu, params, param_bytes); !r) return std::fprintf(stderr, "%s\n", r.message.c_str()), 1;

  // 3. The hot path.
  if (!ok(cudaMemcpy(d_hidden, hidden.data(), sizeof(float) * tokens * dim, cudaMemcpyHostToDevice), "copy hidden"))
    return 1;
  const cuda::Result r =
      cuda::route(gpu, cuda::parameters(gpu, params), d_hidden, tokens, cuda::DeviceRouting{.ids = d_ids, .weights = d_weights});
  if (!r) return std::fprintf(stderr, "%s\n", r.message.c_str()), 1;
  std::vector<std::int32_t> ids(std::size_t(tokens * top_k));
  if (!ok(cudaMemcpy(ids.data(), d_ids, sizeof(std::int32_t) * ids.size(), cudaMemcpyDeviceToHost), "copy ids"))
    return 1;

  // 4. The same tokens on the CPU: the chosen sets agree except at near-ties of the
  //    averaged scores, where float rounding on the two devices may differ (tests/cuda
  //    checks that rule exactly; here 1% of tokens may differ).
  const Routing<float> ref = cpu.route(hidden);
  Index same = 0;
  for (Index t = 0; t < tokens; ++t) {
    std::vector<std::int32_t> a(ids.begin() + t * top_k, ids.begin() + (t + 1) * top_k),
        b(ref.ids.row(t).data(), ref.ids.row(t).data() + top_k);
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    same += a == b;
  }
  std::printf("tutorial_cuda: %lld of %lld tokens route to the same experts on the GPU and the CPU\n",
              (long long)same, (long long)tokens);
  for (void* p : {workspace, params, static_cast<void*>(d_hidden), static_cast<void*>(d_ids),
                  static_cast<void*>(d_weights)})
    cudaFree(p);
  return same >= tokens * 99 / 100 ? 0 : 1;
}
