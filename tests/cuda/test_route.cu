// The CUDA backend against the CPU backend on the same routers and inputs, at every
// supported composition, and against the routing recorded from transformers.
//
// Tolerances: both backends compute in float from identical parameters and inputs
// (half and bfloat16 widen exactly); they differ only in reduction order (projection,
// softmax sums) and in the last bits of expf/logf/sinf. Logits are O(1) sums of D <= 256
// products, so they agree to ~1e-6; weights and signals to 1e-5 relative. Ids are
// compared where the CPU's selection keys are separated by more than that error
// (ties are broken by expert id on both, but a near-tie can flip under rounding).
// Outputs are poisoned before each run, so an unwritten element fails the comparison.
#include <doctest/doctest.h>

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <vector>

#include "router/compositions.hpp"
#include "vmoer/backend/cuda.hpp"
#include "vmoer/io/safetensors.hpp"
#include "vmoer/models/load.hpp"
#include "vmoer/vmoer.hpp"

using namespace vmoer;

namespace {

/// Device memory for one test, freed at scope exit.
struct DeviceBuffer {
  void* data = nullptr;
  explicit DeviceBuffer(std::size_t bytes) { REQUIRE(cudaMalloc(&data, std::max<std::size_t>(bytes, 1)) == cudaSuccess); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { cudaFree(data); }
  template <class T>
  T* as() const {
    return static_cast<T*>(data);
  }
};

template <class T>
std::vector<T> download(const void* device, Index n) {
  std::vector<T> host(static_cast<std::size_t>(n));
  REQUIRE(cudaMemcpy(host.data(), device, std::size_t(n) * sizeof(T), cudaMemcpyDeviceToHost) == cudaSuccess);
  return host;
}

/// The CUDA routing of `hidden` by the policies of the CPU router `cpu`, with all
/// optional outputs, read back into a Routing; `non_finite` gets the device's count.
template <class Router, class In>
Routing<float> route_on_gpu(const Router& cpu, const Matrix<In>& hidden, RouteOptions options,
                            unsigned* non_finite = nullptr) {
  const Index tokens = hidden.rows(), experts = cpu.posterior().experts(), k = cpu.selector().convention.top_k;
  const std::size_t ws_bytes = cuda::workspace_size(cpu, tokens), param_bytes = cuda::parameter_bytes(cpu);
  DeviceBuffer workspace(ws_bytes), params(param_bytes), x(std::size_t(hidden.size()) * sizeof(In)),
      ids(std::size_t(tokens * k) * 4), weights(std::size_t(tokens * k) * 4), signals(std::size_t(5 * tokens) * 4),
      logits(std::size_t(tokens * experts) * 4), probs(std::size_t(tokens * experts) * 4), count(4);
  // Poison: NaN floats and out-of-range ids, so that nothing unwritten passes.
  REQUIRE(cudaMemset(weights.data, 0xFF, std::size_t(tokens * k) * 4) == cudaSuccess);
  REQUIRE(cudaMemset(signals.data, 0xFF, std::size_t(5 * tokens) * 4) == cudaSuccess);
  REQUIRE(cudaMemset(logits.data, 0xFF, std::size_t(tokens * experts) * 4) == cudaSuccess);
  REQUIRE(cudaMemset(probs.data, 0xFF, std::size_t(tokens * experts) * 4) == cudaSuccess);
  REQUIRE(cudaMemset(ids.data, 0x7F, std::size_t(tokens * k) * 4) == cudaSuccess);
  REQUIRE(cudaMemset(count.data, 0xFF, 4) == cudaSuccess);
  REQUIRE(cudaMemcpy(x.data, hidden.data(), std::size_t(hidden.size()) * sizeof(In), cudaMemcpyHostToDevice) ==
          cudaSuccess);

  vmoer::Router gpu(cpu.posterior(), cpu.sampler(), cpu.selector(), cpu.stream(), Cuda{nullptr, workspace.data, ws_bytes});
  const cuda::Result up = cuda::upload(gpu, params.data, param_bytes);
  REQUIRE_MESSAGE(bool(up), up.message);
  float* s = signals.as<float>();
  const cuda::DeviceRouting out{ids.as<std::int32_t>(), weights.as<float>(), s, s + tokens, s + 2 * tokens,
                                s + 3 * tokens, s + 4 * tokens, logits.as<float>(), probs.as<float>(),
                                count.as<unsigned>()};
  const cuda::Result r = cuda::route(gpu, cuda::parameters(gpu, params.data), x.as<In>(), tokens, out, options);
  REQUIRE_MESSAGE(bool(r), r.message);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);

  Routing<float> got;
  got.ids = Eigen::Map<const IdMatrix>(download<std::int32_t>(ids.data, tokens * k).data(), tokens, k);
  got.weights = Eigen::Map<const Matrix<float>>(download<float>(weights.data, tokens * k).data(), tokens, k);
  const std::vector<float> sig = download<float>(signals.data, 5 * tokens);
  got.signals.resize(tokens);
  for (Index t = 0; t < tokens; ++t) {
    got.signals.logit_variance(t) = sig[std::size_t(t)];
    got.signals.mc_variance(t) = sig[std::size_t(tokens + t)];
    got.signals.entropy(t) = sig[std::size_t(2 * tokens + t)];
    got.signals.mutual_information(t) = sig[std::size_t(3 * tokens + t)];
    got.signals.temperature(t) = sig[std::size_t(4 * tokens + t)];
  }
  if (options.keep_logits)
    got.logits = Eigen::Map<const Matrix<float>>(download<float>(logits.data, tokens * experts).data(), tokens, experts);
  if (options.keep_probs)
    got.probs = Eigen::Map<const Matrix<float>>(download<float>(probs.data, tokens * experts).data(), tokens, experts);
  if (non_finite) *non_finite = download<unsigned>(count.data, 1)[0];
  return got;
}

bool close(double a, double b, double rel, double abs) { return std::abs(a - b) <= rel * std::abs(b) + abs; }

/// Whether the token's selection cannot flip under the backends' rounding: the keys
/// (scores plus bias) from the lowest chosen one up, which decide the chosen set and its
/// order, are pairwise further apart than that rounding.
bool clear_of_ties(const Routing<float>& cpu, Index t, const std::vector<float>& bias) {
  const auto key = [&](Index e) { return double(cpu.probs(t, e)) + (bias.empty() ? 0.0 : bias[std::size_t(e)]); };
  const double threshold = 1e-5 * std::abs(key(cpu.ids(t, cpu.ids.cols() - 1))) + 1e-8;
  const double lowest = key(cpu.ids(t, cpu.ids.cols() - 1)) - threshold;
  std::vector<double> keys;
  for (Index e = 0; e < cpu.probs.cols(); ++e)
    if (key(e) >= lowest) keys.push_back(key(e));
  std::sort(keys.begin(), keys.end());
  for (std::size_t i = 1; i < keys.size(); ++i)
    if (keys[i] - keys[i - 1] <= threshold) return false;
  return true;
}

/// Compares the GPU routing with the CPU's token by token; returns the tokens whose ids were compared.
Index compare(const Routing<float>& gpu, const Routing<float>& cpu, const std::vector<float>& bias) {
  Index compared = 0;
  const Index tokens = cpu.ids.rows(), k = cpu.ids.cols();
  for (Index t = 0; t < tokens; ++t) {
    CAPTURE(t);
    for (Index i = 0; i < k; ++i) {  // written and in range, whatever the ties
      REQUIRE(gpu.ids(t, i) >= 0);
      REQUIRE(gpu.ids(t, i) < cpu.probs.cols());
      REQUIRE(std::isfinite(gpu.weights(t, i)));
    }
    if (clear_of_ties(cpu, t, bias)) {
      ++compared;
      for (Index i = 0; i < k; ++i) {
        CAPTURE(i);
        REQUIRE(gpu.ids(t, i) == cpu.ids(t, i));
        CHECK(close(gpu.weights(t, i), cpu.weights(t, i), 1e-5, 1e-7));
      }
    }
    const auto& g = gpu.signals;
    const auto& c = cpu.signals;
    CHECK(close(g.logit_variance(t), c.logit_variance(t), 1e-5, 1e-7));
    CHECK(close(g.entropy(t), c.entropy(t), 1e-5, 1e-7));
    // Differences of nearly equal sums: the error scales with the entropy and sum p^2.
    CHECK(close(g.mutual_information(t), c.mutual_information(t), 0, 1e-5 * (1 + c.entropy(t))));
    CHECK(close(g.mc_variance(t), c.mc_variance(t), 1e-4, 1e-7));
    CHECK(g.temperature(t) == c.temperature(t));
    for (Index e = 0; e < cpu.probs.cols(); ++e) {
      CHECK(close(gpu.logits(t, e), cpu.logits(t, e), 1e-5, 1e-6));
      CHECK(close(gpu.probs(t, e), cpu.probs(t, e), 1e-5, 1e-8));
    }
  }
  return compared;
}

/// Routes the same random batch on both backends and compares them.
template <class P, class Sampler, class In = float>
void check_composition(ref::Cov cov, Index experts, Index rank, Sampler sampler, TopK selector, Index tokens,
                       std::uint64_t seed) {
  constexpr Index dim = 256, hidden_width = 32;
  CAPTURE(experts);
  CAPTURE(tokens);
  CAPTURE(selector.convention.top_k);
  const ref::Router r = test::random_router<float>(cov, std::size_t(experts), dim, hidden_width, std::size_t(rank), seed);
  const vmoer::Router cpu(test::make_posterior<P>(r), sampler, selector, rng::Stream{seed, 3});
  const Matrix<In> hidden = test::to_matrix<In>(test::random_hidden<In>(std::size_t(tokens), dim, seed + 1));
  const RouteOptions options{.token_offset = 1000, .keep_logits = true, .keep_probs = true};
  const Routing<float> want = cpu.route(hidden, options);
  const Routing<float> got = route_on_gpu(cpu, hidden, options);
  const Index compared = compare(got, want, selector.selection_bias);
  CHECK(compared >= tokens * 3 / 4);  // near-ties are rare with these scales
}

TopK top_k(Index k) { return TopK{{.top_k = k, .normalize = Normalize::sum}}; }

/// DeepSeek-V3's convention at E = 64: sigmoid, correction bias, 8 groups, top-2-sum.
TopK grouped(Index experts, std::uint64_t seed) {
  TopK s{models::convention(models::Family::deepseek_v3, models::default_settings(models::Family::deepseek_v3)), {}};
  s.convention.top_k = 8;
  s.convention.n_group = 8;
  s.convention.topk_group = 4;
  std::mt19937_64 g(seed);
  std::normal_distribution<float> n(0.f, 0.05f);
  for (Index e = 0; e < experts; ++e) s.selection_bias.push_back(n(g));
  return s;
}

}  // namespace

/// Philox words and normals of (token = block, sample = thread) for the device side of
/// the RNG test: 8 words and 8 normals per thread.
__global__ void draw_on_device(rng::Stream stream, std::uint32_t* words, float* normals) {
  const std::uint32_t token = blockIdx.x, sample = threadIdx.x, at = 8 * (blockIdx.x * blockDim.x + threadIdx.x);
  for (std::uint32_t block = 0; block < 2; ++block) {
    const rng::u32x4 w = stream.block(rng::Purpose::logit_noise, token, sample, block);
    for (int i = 0; i < 4; ++i) words[at + 4 * block + std::uint32_t(i)] = w[i];
  }
  rng::normals(stream, rng::Purpose::logit_noise, token, sample, normals + at, 8);
}

TEST_SUITE("gpu") {
  TEST_CASE("the device draws the CPU's Philox words exactly and its normals to float rounding") {
    const rng::Stream stream{0x123456789ABCDEFull, 17};
    constexpr int tokens = 64, samples = 32, n = tokens * samples * 8;
    DeviceBuffer words(n * 4), normals(n * 4);
    draw_on_device<<<tokens, samples>>>(stream, words.as<std::uint32_t>(), normals.as<float>());
    REQUIRE(cudaGetLastError() == cudaSuccess);
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    const std::vector<std::uint32_t> w = download<std::uint32_t>(words.data, n);
    const std::vector<float> z = download<float>(normals.data, n);
    for (std::uint32_t t = 0; t < tokens; ++t)
      for (std::uint32_t s = 0; s < samples; ++s) {
        const std::size_t at = 8 * (t * samples + s);
        float want[8];
        rng::normals(stream, rng::Purpose::logit_noise, t, s, want, 8);
        for (std::uint32_t i = 0; i < 8; ++i) {
          CAPTURE(at + i);
          REQUIRE(w[at + i] == stream.block(rng::Purpose::logit_noise, t, s, i / 4)[int(i % 4)]);
          CHECK(close(z[at + i], want[i], 1e-5, 1e-6));
        }
      }
  }

  TEST_CASE("Dirac routing on the GPU matches the CPU at every E, K and batch size") {
    for (const auto& [e, k] : {std::pair<Index, Index>{40, 8}, {64, 8}, {200, 6}, {512, 32}, {7, 1}})
      for (const Index t : {Index(1), Index(13), Index(100)})
        check_composition<Dirac<float>>(ref::Cov::none, e, 0, MeanOnly{}, top_k(k), t, std::uint64_t(e * 7 + t));
  }

  TEST_CASE("mean-field Monte-Carlo routing draws the CPU's Philox samples") {
    for (const auto& [e, k] : {std::pair<Index, Index>{40, 8}, {128, 8}, {300, 16}, {512, 8}})
      for (const Index s : {Index(1), Index(8), Index(32), Index(64)})
        check_composition<MeanField<float>>(ref::Cov::diagonal, e, 0, MonteCarlo{s}, top_k(k), 37, std::uint64_t(e + s));
    check_composition<MeanField<float>>(ref::Cov::diagonal, 64, 0, MeanOnly{}, top_k(8), 37, 5);
    check_composition<MeanField<float>>(ref::Cov::diagonal, 64, 0, MonteCarlo{16, Aggregate::logits}, top_k(8), 37, 6);
  }

  TEST_CASE("low-rank and full-covariance routing match the CPU") {
    check_composition<LowRank<float>>(ref::Cov::low_rank, 256, 8, MonteCarlo{32}, top_k(8), 21, 11);
    check_composition<LowRank<float>>(ref::Cov::low_rank, 50, 3, MonteCarlo{8}, top_k(4), 21, 12);  // E % 4 != 0
    check_composition<LowRank<float>>(ref::Cov::low_rank, 64, 4, MeanOnly{}, top_k(8), 21, 13);
    check_composition<FullCovariance<float>>(ref::Cov::cholesky, 64, 0, MonteCarlo{32}, top_k(8), 21, 14);
    check_composition<FullCovariance<float>>(ref::Cov::cholesky, 130, 0, MonteCarlo{4}, top_k(8), 9, 15);
    check_composition<FullCovariance<float>>(ref::Cov::cholesky, 40, 0, MeanOnly{}, top_k(8), 9, 16);
  }

  TEST_CASE("every score, order and normalisation of the conventions") {
    using models::Family;
    for (const Family f : {Family::mixtral, Family::qwen3_moe, Family::gpt_oss, Family::llama4, Family::dbrx,
                           Family::phimoe, Family::ernie4_5_moe, Family::deepseek_v2}) {
      const std::string family(models::name(f));
      CAPTURE(family);
      TopK s{models::convention(f, models::default_settings(f)), {}};
      s.convention.top_k = std::min<Index>(s.convention.top_k, 8);
      if (s.convention.n_group > 1) s.convention.n_group = s.convention.topk_group = 1;
      for (const Index t : {Index(3), Index(40)}) {
        check_composition<Dirac<float>>(ref::Cov::none, 64, 0, MeanOnly{}, s, t, 100 + t);
        check_composition<MeanField<float>>(ref::Cov::diagonal, 64, 0, MonteCarlo{8}, s, t, 200 + t);
      }
    }
    check_composition<Dirac<float>>(ref::Cov::none, 64, 0, MeanOnly{}, grouped(64, 1), 40, 301);
    check_composition<MeanField<float>>(ref::Cov::diagonal, 256, 0, MonteCarlo{16}, grouped(256, 2), 40, 302);
  }

  TEST_CASE("half and bfloat16 hidden states are widened exactly, as on the CPU") {
    check_composition<Dirac<float>, MeanOnly, vmoer::bfloat16>(ref::Cov::none, 128, 0, {}, top_k(8), 50, 401);
    check_composition<Dirac<float>, MeanOnly, vmoer::half>(ref::Cov::none, 128, 0, {}, top_k(8), 5, 402);
    check_composition<MeanField<float>, MonteCarlo, vmoer::bfloat16>(ref::Cov::diagonal, 64, 0, MonteCarlo{32},
                                                                      top_k(8), 50, 403);
    check_composition<MeanField<float>, MonteCarlo, vmoer::half>(ref::Cov::diagonal, 64, 0, MonteCarlo{32},
                                                                  top_k(8), 8, 404);
  }

  TEST_CASE("the GPU reproduces the routing recorded from transformers") {
    int files = 0;
    for (const auto& entry : std::filesystem::directory_iterator(VMOER_TEST_DATA "/hf_routing")) {
      if (entry.path().extension() != ".safetensors") continue;
      ++files;
      const io::safetensors_reader file(entry.path());
      const auto& meta = file.metadata();
      CAPTURE(meta.at("family"));
      const models::Family family = models::family_from_name(meta.at("family"));
      models::Settings settings = models::default_settings(family);
      settings.top_k = std::stol(meta.at("K"));
      if (meta.contains("renormalize")) settings.norm_topk_prob = meta.at("renormalize") == "True";
      if (meta.contains("n_group")) settings.n_group = std::stol(meta.at("n_group"));
      if (meta.contains("topk_group")) settings.topk_group = std::stol(meta.at("topk_group"));
      if (meta.contains("scale")) settings.scaling = std::stod(meta.at("scale"));
      models::LayerRouter<float> layer;
      layer.convention = models::convention(family, settings);
      layer.weight = file.get("weight").to_matrix<float>();
      if (const auto b = file.find("bias")) layer.bias = b->to_vector<float>();
      if (const auto b = file.find("correction_bias")) layer.correction_bias = b->copy_to<float>();
      const Matrix<float> hidden = file.get("hidden").to_matrix<float>();
      const IdMatrix ids = file.get("ids").to_matrix<std::int32_t>();
      const Matrix<float> weights = file.get("weights").to_matrix<float>();

      const Routing<float> got = route_on_gpu(layer.dirac(), hidden, {.keep_logits = true, .keep_probs = true});
      for (Index t = 0; t < hidden.rows(); ++t) {
        CAPTURE(t);
        std::vector<std::pair<int, float>> pairs;
        for (Index i = 0; i < ids.cols(); ++i) pairs.emplace_back(got.ids(t, i), got.weights(t, i));
        std::sort(pairs.begin(), pairs.end());
        for (Index i = 0; i < ids.cols(); ++i) {
          CAPTURE(i);
          REQUIRE(pairs[std::size_t(i)].first == ids(t, i));  // the recording's rows are sorted by id
          CHECK(close(pairs[std::size_t(i)].second, weights(t, i), 1e-5, 0));
        }
      }
    }
    CHECK(files == 6);
  }

  TEST_CASE("a token with non-finite input is counted and marked, the others are routed") {
    const ref::Router r = test::random_router<float>(ref::Cov::diagonal, 64, 64, 16, 0, 7);
    const vmoer::Router cpu(test::make_posterior<MeanField<float>>(r), MonteCarlo{4}, top_k(8), rng::Stream{7, 0});
    Matrix<float> hidden = test::to_matrix<float>(test::random_hidden<float>(9, 64, 8));
    hidden(4, 10) = std::numeric_limits<float>::quiet_NaN();
    unsigned non_finite = 0;
    const Routing<float> got = route_on_gpu(cpu, hidden, {.keep_logits = true, .keep_probs = true}, &non_finite);
    CHECK(non_finite == 1);
    for (Index t = 0; t < hidden.rows(); ++t)
      for (Index i = 0; i < 8; ++i) {
        CAPTURE(t);
        CHECK((got.ids(t, i) == -1) == (t == 4));
        CHECK(std::isnan(got.weights(t, i)) == (t == 4));
      }
  }
}

TEST_SUITE("host") {
  TEST_CASE("route() rejects bad arguments with a status and a message, before touching the device") {
    const ref::Router r = test::random_router<float>(ref::Cov::none, 600, 16, 0, 0, 1);
    auto* fake = reinterpret_cast<float*>(std::uintptr_t(256));  // never dereferenced: validation comes first
    const cuda::DeviceRouting out{reinterpret_cast<std::int32_t*>(fake), fake};
    char workspace_tag = 0;

    const vmoer::Router too_many(test::make_posterior<Dirac<float>>(r), MeanOnly{}, top_k(8), rng::Stream{},
                                 Cuda{nullptr, &workspace_tag, std::size_t(1) << 30});
    cuda::Result res = cuda::route(too_many, {fake}, fake, 4, out);
    CHECK(res.code == status::invalid_argument);
    CHECK(res.message.find("E = 600") != std::string::npos);

    const ref::Router small = test::random_router<float>(ref::Cov::none, 64, 16, 0, 0, 2);
    const vmoer::Router wide_k(test::make_posterior<Dirac<float>>(small), MeanOnly{}, top_k(33), rng::Stream{},
                               Cuda{nullptr, &workspace_tag, std::size_t(1) << 30});
    res = cuda::route(wide_k, {fake}, fake, 4, out);
    CHECK(res.code == status::invalid_argument);
    CHECK(res.message.find("K = 33") != std::string::npos);

    const vmoer::Router ok(test::make_posterior<Dirac<float>>(small), MeanOnly{}, top_k(8), rng::Stream{},
                           Cuda{nullptr, &workspace_tag, cuda::workspace_size(wide_k, 4) - 1});
    res = cuda::route(ok, {fake}, fake, 4, out);
    CHECK(res.code == status::workspace_too_small);
    CHECK(res.message.find("workspace_size") != std::string::npos);

    res = cuda::route(ok, {fake}, fake, 4, cuda::DeviceRouting{});
    CHECK(res.code == status::invalid_argument);
    CHECK(res.message.find("out.ids") != std::string::npos);

    res = cuda::route(ok, {fake}, fake, 4, out, {.keep_logits = true});
    CHECK(res.code == status::invalid_argument);
    CHECK(res.message.find("out.logits") != std::string::npos);

    res = cuda::route(ok, {fake}, fake, 4, out, {.keep_projection = true});
    CHECK(res.code == status::invalid_argument);
    CHECK(res.message.find("keep_projection") != std::string::npos);

    res = cuda::route(ok, {nullptr}, fake, 4, out);
    CHECK(res.code == status::invalid_argument);
    CHECK(res.message.find("params.parameters") != std::string::npos);

    res = cuda::route(ok, {fake}, fake, 4, out, {.token_offset = 0xFFFFFFFFu});
    CHECK(res.code == status::invalid_argument);
    CHECK(res.message.find("2^32") != std::string::npos);

    TopK biased = top_k(8);
    biased.selection_bias.assign(64, 0.f);
    const vmoer::Router with_bias(test::make_posterior<Dirac<float>>(small), MeanOnly{}, biased, rng::Stream{},
                                  Cuda{nullptr, &workspace_tag, std::size_t(1) << 30});
    res = cuda::route(with_bias, {fake}, fake, 4, out);
    CHECK(res.code == status::invalid_argument);
    CHECK(res.message.find("selection_bias") != std::string::npos);

    CHECK(bool(cuda::route(ok, {fake}, fake, 0, out)));  // nothing to do, nothing launched
  }

  TEST_CASE("the workspace holds the projections of T tokens") {
    const ref::Router r = test::random_router<float>(ref::Cov::low_rank, 64, 16, 8, 4, 1);
    const vmoer::Router lr(test::make_posterior<LowRank<float>>(r), MonteCarlo{8}, top_k(8));
    // [T, E + H] and [T, E + E (1 + r)] floats, each region on a 256-byte boundary.
    const auto aligned = [](std::size_t b) { return (b + 255) / 256 * 256; };
    CHECK(cuda::workspace_size(lr, 10) == aligned(10 * (64 + 8) * 4) + aligned(10 * (64 + 64 * 5) * 4));
    const vmoer::Router dirac(test::make_posterior<Dirac<float>>(r), MeanOnly{}, top_k(8));
    CHECK(cuda::workspace_size(dirac, 10) == aligned(10 * 64 * 4));
  }
}
