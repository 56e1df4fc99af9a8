// Time of one cuda::route() call (projections and the fused routing kernel) on the
// shapes of issue 5, measured with CUDA events; one JSON object per line on stdout.
//
//   bench_cuda [--dtype=bf16|f16|f32] [--quick] [--bandwidth_gbs=3350]
//
// Each case: 3 warm-up calls, then 7 repetitions of a timed loop sized to >= 2 ms;
// the median per-call time is reported with the roofline, the bytes of hidden states
// and router weights over the given HBM bandwidth (H100 SXM: 3350 GB/s).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "vmoer/backend/cuda.hpp"
#include "vmoer/vmoer.hpp"

using namespace vmoer;

namespace {

void check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  std::fprintf(stderr, "bench_cuda: %s: %s\n", what, cudaGetErrorString(e));
  std::exit(1);
}

struct Shape {
  Index dim, experts, top_k;
};

struct Settings {
  std::string dtype = "bf16";
  bool quick = false;
  double bandwidth_gbs = 3350;
};

/// Times routing `tokens` random tokens with `cpu`'s policies; prints one JSON line.
template <class In, class Router>
void time_case(const char* name, const Router& cpu, Index tokens, Index samples, const Settings& settings) {
  const Index dim = cpu.posterior().dim(), experts = cpu.posterior().experts(), k = cpu.selector().convention.top_k;
  const std::size_t ws_bytes = cuda::workspace_size(cpu, tokens), param_bytes = cuda::parameter_bytes(cpu);
  void *ws = nullptr, *params = nullptr, *hidden = nullptr, *ids = nullptr, *weights = nullptr, *signals = nullptr;
  check(cudaMalloc(&ws, std::max<std::size_t>(ws_bytes, 1)), "cudaMalloc workspace");
  check(cudaMalloc(&params, param_bytes), "cudaMalloc parameters");
  check(cudaMalloc(&hidden, std::size_t(tokens * dim) * sizeof(In)), "cudaMalloc hidden");
  check(cudaMalloc(&ids, std::size_t(tokens * k) * 4), "cudaMalloc ids");
  check(cudaMalloc(&weights, std::size_t(tokens * k) * 4), "cudaMalloc weights");
  check(cudaMalloc(&signals, std::size_t(tokens * 4) * 4), "cudaMalloc signals");
  {
    std::vector<In> x(static_cast<std::size_t>(tokens * dim));
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = In(float(int((i * 2654435761u) % 2001) - 1000) * 1e-3f);
    check(cudaMemcpy(hidden, x.data(), x.size() * sizeof(In), cudaMemcpyHostToDevice), "cudaMemcpy hidden");
  }
  cudaStream_t stream = nullptr;
  check(cudaStreamCreate(&stream), "cudaStreamCreate");
  vmoer::Router gpu(cpu.posterior(), cpu.sampler(), cpu.selector(), cpu.stream(), Cuda{stream, ws, ws_bytes});
  if (const cuda::Result r = cuda::upload(gpu, params, param_bytes); !r) {
    std::fprintf(stderr, "%s\n", r.message.c_str());
    std::exit(1);
  }
  auto* s = static_cast<float*>(signals);
  const cuda::DeviceRouting out{static_cast<std::int32_t*>(ids), static_cast<float*>(weights), s, s + tokens,
                                s + 2 * tokens, s + 3 * tokens};
  const cuda::DeviceParameters device_params = cuda::parameters(gpu, params);
  const auto call = [&] {
    if (const cuda::Result r = cuda::route(gpu, device_params, static_cast<const In*>(hidden), tokens, out); !r) {
      std::fprintf(stderr, "%s\n", r.message.c_str());
      std::exit(1);
    }
  };
  cudaEvent_t start, stop;
  check(cudaEventCreate(&start), "cudaEventCreate");
  check(cudaEventCreate(&stop), "cudaEventCreate");
  const auto timed = [&](int iterations) {
    check(cudaEventRecord(start, stream), "cudaEventRecord");
    for (int i = 0; i < iterations; ++i) call();
    check(cudaEventRecord(stop, stream), "cudaEventRecord");
    check(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float ms = 0;
    check(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
    return double(ms) * 1e3 / iterations;  // microseconds per call
  };
  timed(3);
  const int iterations = std::clamp(int(2000.0 / std::max(timed(1), 1.0)), 1, 10000);
  std::vector<double> us;
  for (int rep = 0; rep < 7; ++rep) us.push_back(timed(iterations));
  std::sort(us.begin(), us.end());
  const double bytes = double(tokens * dim) * sizeof(In) + double(experts * dim) * 4;
  std::printf(
      "{\"router\": \"%s\", \"dtype\": \"%s\", \"tokens\": %ld, \"D\": %ld, \"E\": %ld, \"K\": %ld, \"S\": %ld, "
      "\"us\": %.3f, \"us_min\": %.3f, \"roofline_us\": %.3f}\n",
      name, settings.dtype.c_str(), long(tokens), long(dim), long(experts), long(k), long(samples), us[3], us[0],
      bytes / (settings.bandwidth_gbs * 1e3));
  std::fflush(stdout);
  check(cudaGetLastError(), "routing");
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaStreamDestroy(stream);
  for (void* p : {ws, params, hidden, ids, weights, signals}) cudaFree(p);
}

Matrix<float> random_weight(Index rows, Index cols) {
  return Matrix<float>::Random(rows, cols) * (1.f / std::sqrt(float(cols)));
}

template <class In>
void run(const Settings& settings) {
  const std::vector<Shape> shapes = {{1536, 40, 8}, {2048, 64, 8}, {2048, 128, 8}, {7168, 256, 8}};
  const std::vector<Index> all_tokens = settings.quick ? std::vector<Index>{1, 1024}
                                                       : std::vector<Index>{1, 8, 64, 1024, 16384};
  const EncoderOptions encoder{.hidden = 64};
  for (const Shape& shape : shapes) {
    const Matrix<float> w = random_weight(shape.experts, shape.dim);
    const Vector<float> b = Vector<float>::Zero(shape.experts);
    const TopK top{{.top_k = shape.top_k, .normalize = Normalize::sum}};
    for (const Index tokens : all_tokens) {
      time_case<In>("dirac", vmoer::Router(Dirac<float>(w, b), MeanOnly{}, top), tokens, 1, settings);
      for (const Index s : {Index(1), Index(8), Index(32)})
        time_case<In>("mean_field", vmoer::Router(MeanField<float>(w, b, encoder), MonteCarlo{s}, top), tokens, s,
                      settings);
      if (shape.experts == 64)
        time_case<In>("full_covariance", vmoer::Router(FullCovariance<float>(w, b, encoder), MonteCarlo{32}, top),
                      tokens, 32, settings);
      if (shape.experts == 256) {
        EncoderOptions low_rank = encoder;
        low_rank.rank = 8;
        time_case<In>("low_rank_r8", vmoer::Router(LowRank<float>(w, b, low_rank), MonteCarlo{32}, top), tokens, 32,
                      settings);
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  Settings settings;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--dtype=", 0) == 0)
      settings.dtype = arg.substr(8);
    else if (arg == "--quick")
      settings.quick = true;
    else if (arg.rfind("--bandwidth_gbs=", 0) == 0)
      settings.bandwidth_gbs = std::stod(arg.substr(16));
    else {
      std::fprintf(stderr, "usage: bench_cuda [--dtype=bf16|f16|f32] [--quick] [--bandwidth_gbs=3350]\n");
      return 2;
    }
  }
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::fprintf(stderr, "bench_cuda: no CUDA device\n");
    return 77;
  }
  if (settings.dtype == "bf16")
    run<__nv_bfloat16>(settings);
  else if (settings.dtype == "f16")
    run<__half>(settings);
  else if (settings.dtype == "f32")
    run<float>(settings);
  else {
    std::fprintf(stderr, "bench_cuda: unknown --dtype=%s\n", settings.dtype.c_str());
    return 2;
  }
  return 0;
}
