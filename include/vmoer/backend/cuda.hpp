// The CUDA backend: Router<Posterior, Sampler, TopK, Cuda> routes tokens held in
// device memory on a caller-given stream. Include it from a .cu file (nvcc).
//
//   vmoer::Router cpu(vmoer::MeanField<float>(W, b), vmoer::MonteCarlo{32}, vmoer::TopK{{.top_k = 8}});
//   std::size_t ws = vmoer::cuda::workspace_size(cpu, max_tokens);        // once
//   std::size_t pb = vmoer::cuda::parameter_bytes(cpu);                   // once
//   cudaMalloc(&workspace, ws); cudaMalloc(&params, pb);
//   vmoer::Router gpu(cpu.posterior(), cpu.sampler(), cpu.selector(), cpu.stream(),
//                     vmoer::Cuda{stream, workspace, ws});
//   vmoer::cuda::upload(gpu, params, pb);                                 // after each parameter update
//   auto r = vmoer::cuda::route(gpu, vmoer::cuda::parameters(gpu, params), hidden, tokens, outputs);
//   if (!r) ... r.code, r.message
//
// route() never allocates and never throws: it validates, launches a projection (two
// for a Gaussian posterior) and one fused routing kernel, checks every launch, and
// returns a status with a message. Tokens whose logits are not finite are counted in
// DeviceRouting::non_finite on the device (read it when the stream is synchronised).
//
// Supported: Dirac, MeanField, FullCovariance, LowRank posteriors of float; MonteCarlo
// and MeanOnly samplers; the TopK selector with every convention; hidden states of
// float, half or bfloat16 (CUDA's or Eigen's types), accumulated in float; E <= 512,
// K <= 32.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>

#include "vmoer/backend/cuda/projection.cuh"
#include "vmoer/backend/cuda/route_tokens.cuh"
#include "vmoer/error.hpp"
#include "vmoer/router.hpp"
#include "vmoer/sampler/mean_only.hpp"
#include "vmoer/sampler/monte_carlo.hpp"
#include "vmoer/selector/top_k.hpp"

namespace vmoer {

/// Backend policy: device memory, one CUDA stream and a caller-owned workspace of at
/// least cuda::workspace_size(router, tokens) bytes, so that routing never allocates.
struct Cuda {
  cudaStream_t stream = nullptr;    ///< the stream every launch goes to (null: the default stream)
  void* workspace = nullptr;        ///< device scratch for the projections
  std::size_t workspace_bytes = 0;  ///< its size
};

namespace cuda {

/// Outcome of a host call of the CUDA backend.
struct Result {
  status code = status::ok;  ///< ok, invalid_argument, workspace_too_small or cuda_error
  std::string message;       ///< "vmoer: cuda::<call>: ..." naming the argument or the CUDA error; empty when ok
  /// True when the call succeeded.
  explicit operator bool() const { return code == status::ok; }
};

/// Device pointers to a router's parameters, as cuda::upload lays them out.
struct DeviceParameters {
  const float* parameters = nullptr;      ///< the posterior's flat parameter buffer (its ParameterLayout)
  const float* selection_bias = nullptr;  ///< [E] the selector's selection bias, or null when it has none
};

namespace detail {

inline constexpr std::size_t alignment = 256;  // cudaMalloc's alignment; keeps every region coalesced
inline std::size_t aligned(std::size_t bytes) { return (bytes + alignment - 1) / alignment * alignment; }

/// The element type the kernels read for an input type: Eigen's half types map to CUDA's.
template <class In>
struct device_element {
  using type = In;
};
template <>
struct device_element<vmoer::half> {
  using type = __half;
};
template <>
struct device_element<vmoer::bfloat16> {
  using type = __nv_bfloat16;
};

template <class P>
struct noise_of {
  using type = NoNoise;
};
template <class Cov>
struct noise_of<Gaussian<Cov, float>> {
  using type = Cov;
};

template <class Router>
constexpr void check_composition() {
  using P = typename Router::posterior_type;
  static_assert(std::is_same_v<typename P::scalar, float>, "the CUDA backend computes in float: use a float posterior");
  static_assert(!P::weight_space, "the CUDA backend routes logit-space posteriors (Dirac and Gaussian)");
  static_assert(std::is_same_v<typename Router::sampler_type, MonteCarlo> ||
                    std::is_same_v<typename Router::sampler_type, MeanOnly>,
                "the CUDA backend samples with MonteCarlo or MeanOnly");
  static_assert(std::is_same_v<typename Router::selector_type, TopK>, "the CUDA backend selects with TopK");
}

inline Result fail(status code, std::string message) { return {code, std::move(message)}; }

inline Result launch_result(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return {};
  return fail(status::cuda_error, vmoer::detail::concat("vmoer: cuda::route: ", what, " failed: ", cudaGetErrorName(e),
                                                        " (", cudaGetErrorString(e), ")"));
}

template <class Cov, bool Draws, int Chunks>
cudaError_t launch_route(const TokenBatch& b, cudaStream_t stream) {
  const unsigned blocks = unsigned((b.tokens + route_warps - 1) / route_warps);
  const std::size_t shared =
      std::size_t(route_warps * shared_floats(b.experts, std::is_same_v<Cov, Cholesky>)) * sizeof(float);
  route_tokens<Cov, Draws, Chunks><<<blocks, route_warps * 32, shared, stream>>>(b);
  return cudaGetLastError();
}

template <class Cov, bool Draws>
cudaError_t launch_route(const TokenBatch& b, cudaStream_t stream) {
  switch ((b.experts + chunk_experts - 1) / chunk_experts) {
    case 1: return launch_route<Cov, Draws, 1>(b, stream);
    case 2: return launch_route<Cov, Draws, 2>(b, stream);
    case 3: return launch_route<Cov, Draws, 3>(b, stream);
    default: return launch_route<Cov, Draws, 4>(b, stream);
  }
}

}  // namespace detail

/// Bytes of device workspace route() needs for up to `tokens` tokens.
template <class Router>
std::size_t workspace_size(const Router& router, Index tokens) {
  const auto& p = router.posterior();
  const std::size_t t = std::size_t(tokens < 0 ? 0 : tokens);
  const std::size_t first = detail::aligned(t * std::size_t(p.experts() + p.hidden()) * sizeof(float));
  const std::size_t second = detail::aligned(t * std::size_t(p.experts() + p.head_size()) * sizeof(float));
  return first + (Router::posterior_type::stochastic ? second : 0);
}

/// Bytes of device memory cuda::upload writes: the parameters, then the selection bias.
template <class Router>
std::size_t parameter_bytes(const Router& router) {
  return detail::aligned(std::size_t(router.posterior().parameters().size()) * sizeof(float)) +
         router.selector().selection_bias.size() * sizeof(float);
}

/// The device view of parameters uploaded to `device` by cuda::upload.
template <class Router>
DeviceParameters parameters(const Router& router, const void* device) {
  const auto* base = static_cast<const unsigned char*>(device);
  const std::size_t bias_at = detail::aligned(std::size_t(router.posterior().parameters().size()) * sizeof(float));
  return {reinterpret_cast<const float*>(base),
          router.selector().selection_bias.empty() ? nullptr : reinterpret_cast<const float*>(base + bias_at)};
}

/// Copies the router's parameters and selection bias to `device` (parameter_bytes(router)
/// bytes of device memory) on the router's stream.
template <class Router>
Result upload(const Router& router, void* device, std::size_t bytes) {
  detail::check_composition<Router>();
  if (device == nullptr) return detail::fail(status::invalid_argument, "vmoer: cuda::upload: device is null");
  if (bytes < parameter_bytes(router))
    return detail::fail(status::workspace_too_small,
                        vmoer::detail::concat("vmoer: cuda::upload: ", bytes, " bytes given, parameter_bytes = ",
                                              parameter_bytes(router)));
  const cudaStream_t stream = router.backend().stream;
  const auto& params = router.posterior().parameters();
  auto* base = static_cast<unsigned char*>(device);
  cudaError_t e = cudaMemcpyAsync(base, params.data(), std::size_t(params.size()) * sizeof(float),
                                  cudaMemcpyHostToDevice, stream);
  const auto& bias = router.selector().selection_bias;
  if (e == cudaSuccess && !bias.empty())
    e = cudaMemcpyAsync(base + detail::aligned(std::size_t(params.size()) * sizeof(float)), bias.data(),
                        bias.size() * sizeof(float), cudaMemcpyHostToDevice, stream);
  if (e != cudaSuccess)
    return detail::fail(status::cuda_error, vmoer::detail::concat("vmoer: cuda::upload: cudaMemcpyAsync failed: ",
                                                                  cudaGetErrorName(e), " (", cudaGetErrorString(e), ")"));
  return {};
}

/// Routes `tokens` rows of `hidden` ([tokens, D] row-major, device memory; float, half
/// or bfloat16) into `out`, on the router's stream with its workspace. Asynchronous:
/// results are ready when the stream is.
template <class Router, class In>
Result route(const Router& router, const DeviceParameters& params, const In* hidden, Index tokens,
             const DeviceRouting& out, const RouteOptions& options = {}) {
  detail::check_composition<Router>();
  using P = typename Router::posterior_type;
  using Element = typename detail::device_element<In>::type;
  static_assert(std::is_same_v<Element, float> || std::is_same_v<Element, __half> ||
                    std::is_same_v<Element, __nv_bfloat16>,
                "hidden states are float, half or bfloat16");
  static_assert(sizeof(Element) == sizeof(In), "Eigen's and CUDA's half types share one layout");
  using vmoer::detail::concat;
  const auto invalid = [](auto&&... m) { return detail::fail(status::invalid_argument, concat("vmoer: cuda::route: ", m...)); };

  const P& post = router.posterior();
  const Convention& conv = router.selector().convention;
  const Cuda& backend = router.backend();
  const Index experts = post.experts(), dim = post.dim(), k = conv.top_k;
  if (tokens < 0 || tokens > detail::max_rows)
    return invalid("tokens = ", tokens, " must be in [0, ", detail::max_rows, "]; split larger batches");
  if (std::uint64_t(options.token_offset) + std::uint64_t(tokens) > (std::uint64_t(1) << 32))
    return invalid("token_offset + tokens = ", std::uint64_t(options.token_offset) + std::uint64_t(tokens),
                   " exceeds 2^32 token indices");
  if (experts > detail::max_experts) return invalid("E = ", experts, " exceeds the kernel's ", detail::max_experts);
  if (k > detail::max_top_k) return invalid("top_k K = ", k, " exceeds the kernel's ", detail::max_top_k);
  if (tokens == 0) return {};
  if (hidden == nullptr) return invalid("hidden is null");
  if (params.parameters == nullptr) return invalid("params.parameters is null");
  if (!router.selector().selection_bias.empty() && params.selection_bias == nullptr)
    return invalid("the selector has a selection bias but params.selection_bias is null");
  if (out.ids == nullptr || out.weights == nullptr) return invalid("out.ids and out.weights must be set");
  if (options.keep_logits && out.logits == nullptr) return invalid("keep_logits is set but out.logits is null");
  if (options.keep_probs && out.probs == nullptr) return invalid("keep_probs is set but out.probs is null");
  if (options.keep_projection)
    return invalid("keep_projection is for vmoer::backward, which runs on the CPU backend; route on Cpu to train");
  const std::size_t need = workspace_size(router, tokens);
  if (backend.workspace == nullptr || backend.workspace_bytes < need)
    return detail::fail(status::workspace_too_small,
                        concat("vmoer: cuda::route: the workspace has ", backend.workspace == nullptr ? 0 : backend.workspace_bytes,
                               " bytes, ", tokens, " tokens need workspace_size = ", need));

  const cudaStream_t stream = backend.stream;
  const float* device_params = params.parameters;
  const auto at = [&](const float* host) { return device_params + (host - post.parameters().data()); };
  auto* first = static_cast<float*>(backend.workspace);
  const Index first_width = experts + post.hidden();

  if (out.non_finite)
    if (Result r = detail::launch_result(cudaMemsetAsync(out.non_finite, 0, sizeof(unsigned int), stream),
                                         "cudaMemsetAsync of out.non_finite");
        !r)
      return r;
  const auto* x = reinterpret_cast<const Element*>(hidden);
  if (Result r = detail::launch_result(
          detail::project<false>(detail::Gemm<Element>{x, dim, tokens, at(post.input_weight()), first_width, dim,
                                                        at(post.input_bias()), first, first_width},
                                 stream),
          "the input projection");
      !r)
    return r;

  detail::TokenBatch b;
  b.base = first;
  b.ld_base = first_width;
  b.tokens = tokens;
  b.experts = experts;
  b.rank = post.rank();
  b.samples = router.sampler().samples;
  b.token_offset = options.token_offset;
  b.stream = router.stream();
  b.conv = conv;
  b.aggregate = router.sampler().aggregate;
  b.bias = params.selection_bias;
  b.keep_logits = options.keep_logits;
  b.keep_probs = options.keep_probs;
  b.out = out;
  if constexpr (P::stochastic) {  // the encoder heads on relu(trunk)
    const Index second_width = experts + post.head_size();
    auto* second = reinterpret_cast<float*>(static_cast<unsigned char*>(backend.workspace) +
                                            detail::aligned(std::size_t(tokens * first_width) * sizeof(float)));
    if (Result r = detail::launch_result(
            detail::project<true>(detail::Gemm<float>{first + experts, first_width, tokens, at(post.head_weight()),
                                                      second_width, post.hidden(), at(post.head_bias()), second,
                                                      second_width},
                                  stream),
            "the head projection");
        !r)
      return r;
    b.head = second;
    b.ld_head = second_width;
  }
  using Cov = typename detail::noise_of<P>::type;
  constexpr bool draws = Router::sampler_type::draws;
  return detail::launch_result(detail::launch_route<Cov, draws>(b, stream), "the routing kernel");
}

}  // namespace cuda
}  // namespace vmoer
