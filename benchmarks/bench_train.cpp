// bench_train: a training step's router work, forward (route) and forward + backward
// (route, then vmoer::backward with dL/dweights and the KL term), per composition, at
// the core issue's shapes: D = 2048, E = 64, K = 8 (E = 256 too for low-rank), T = 256
// tokens, S = 1 training sample (MonteCarlo) or the mean (MeanOnly), float, one thread.
// Names: train/<forward|forward_backward|forward_backward_kept>/<composition>/T:../D:../E:../K:..
// forward_backward_kept routes with RouteOptions::keep_projection, so that the backward
// reads the first projection instead of recomputing it (logit-space posteriors only: the
// weight-space ones regenerate their samples either way).
// Each forward_backward case reports counters `vs_forward` (time over its forward case)
// and `vs_dirac` (time over Dirac forward + backward at the same shape), each kept case
// `vs_recompute` (time over its forward_backward case), computed from the cases already
// run, so run the whole program (the default) to get them.
#include <benchmark/benchmark.h>

#include <chrono>
#include <map>
#include <random>
#include <string>

#include <vmoer/grad/backward.hpp>
#include <vmoer/posterior/mc_dropout.hpp>
#include <vmoer/posterior/swag.hpp>
#include <vmoer/vmoer.hpp>

namespace {

using namespace vmoer;
constexpr Index kTokens = 256, kDim = 2048, kTopK = 8, kHidden = 64, kRank = 8;

std::map<std::string, double>& seconds() {  // mean seconds per iteration of finished cases
  static std::map<std::string, double> s;
  return s;
}

Matrix<float> random(Index rows, Index cols, float scale, unsigned seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> n(0, scale);
  Matrix<float> m(rows, cols);
  for (Index i = 0; i < m.size(); ++i) m.data()[i] = n(g);
  return m;
}

template <class P>
P make(Index experts) {
  const Matrix<float> w = random(experts, kDim, 1.0f / std::sqrt(float(kDim)), 1);
  const Vector<float> b = Vector<float>::Zero(experts);
  if constexpr (requires { P::trunk_weight; }) {
    return P(w, b, {.hidden = kHidden, .rank = kRank});
  } else if constexpr (requires(P p) { p.collect(w, b); }) {
    P p(w, b);
    for (unsigned i = 2; i < 8; ++i) p.collect(w + random(experts, kDim, 0.01f, i), b);
    return p;
  } else {
    return P(w, b);
  }
}

enum class Step { forward, forward_backward, forward_backward_kept };
const char* step_name(Step s) {
  switch (s) {
    case Step::forward: return "forward";
    case Step::forward_backward: return "forward_backward";
    case Step::forward_backward_kept: return "forward_backward_kept";
  }
  return "?";
}

template <class P, class Sampler, class Sel>
void run(benchmark::State& state, const std::string& composition, Index experts, Sampler sampler, Sel sel,
         Step step) {
  const bool backward_too = step != Step::forward;
  const Router router(make<P>(experts), sampler, sel, rng::Stream{7, 0}, Cpu{.threads = 1});
  const Matrix<float> x = random(kTokens, kDim, 1.0f, 3);
  const Matrix<float> dweights = random(kTokens, kTopK, 1.0f, 4);
  BackwardOptions<float> options;
  if constexpr (grad::has_kl<P>) options.regularisers.kl_weight = 0.01;
  // Reused from step to step, as a training loop would: route(x, r) and backward(..., g).
  Routing<float> r;
  Gradients<float> g;
  const Matrix<float> no_dprobs;
  const auto start = std::chrono::steady_clock::now();
  std::int64_t n = 0;
  for (auto _ : state) {
    router.route(x, r, {.keep_projection = step == Step::forward_backward_kept});
    if (backward_too) {
      backward(router, x, r, dweights, MatrixView<float>(no_dprobs), g, options);
      benchmark::DoNotOptimize(g.posterior.data());
    } else {
      benchmark::DoNotOptimize(r.weights.data());
    }
    ++n;
  }
  const double mean = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / double(n);
  const std::string shape = "/E:" + std::to_string(experts);
  const std::string prefix = step == Step::forward ? "f/" : step == Step::forward_backward ? "fb/" : "fbk/";
  seconds()[prefix + composition + shape] = mean;
  state.SetItemsProcessed(state.iterations() * kTokens);
  const auto& s = seconds();
  if (step == Step::forward_backward_kept) {
    if (auto fb = s.find("fb/" + composition + shape); fb != s.end()) state.counters["vs_recompute"] = mean / fb->second;
  } else if (backward_too) {
    if (auto f = s.find("f/" + composition + shape); f != s.end()) state.counters["vs_forward"] = mean / f->second;
    if (auto d = s.find("fb/dirac/mean_only/top_k" + shape); d != s.end()) state.counters["vs_dirac"] = mean / d->second;
  }
}

template <class P, class Sampler, class Sel>
void add(const std::string& composition, Index experts, Sampler sampler, Sel sel) {
  for (const Step step : {Step::forward, Step::forward_backward, Step::forward_backward_kept}) {
    if (step == Step::forward_backward_kept && P::weight_space) continue;
    const std::string name = std::string("train/") + step_name(step) + "/" + composition +
                             "/T:" + std::to_string(kTokens) + "/D:" + std::to_string(kDim) +
                             "/E:" + std::to_string(experts) + "/K:" + std::to_string(kTopK);
    benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& st) {
      run<P>(st, composition, experts, sampler, sel, step);
    })->Unit(benchmark::kMillisecond)->UseRealTime();
  }
}

void register_all() {
  const TopK top_k{{.top_k = kTopK, .normalize = Normalize::sum}};
  const MonteCarlo one{.samples = 1};
  for (const Index e : {Index(64)}) {
    add<Dirac<float>>("dirac/mean_only/top_k", e, MeanOnly{}, top_k);
    add<MeanField<float>>("mean_field/monte_carlo/top_k", e, one, top_k);
    add<MeanField<float>>("mean_field/mean_only/top_k", e, MeanOnly{}, top_k);
    add<FullCovariance<float>>("full_covariance/monte_carlo/top_k", e, one, top_k);
    add<LowRank<float>>("low_rank/monte_carlo/top_k", e, one, top_k);
    add<MeanField<float>>("mean_field/monte_carlo/temperature", e, one, Temperature{top_k.convention, 2.0});
    add<MeanField<float>>("mean_field/monte_carlo/sample_k", e, one, SampleK{top_k.convention, 2.0});
    add<MeanField<float>>("mean_field/monte_carlo/learned_temperature", e, one,
                          LearnedTemperature<float>(top_k.convention, e, kDim, {.sample = false}));
    add<McDropout<float>>("mc_dropout/monte_carlo/top_k", e, MonteCarlo{.samples = 4}, top_k);
    add<Swag<float>>("swag/monte_carlo/top_k", e, MonteCarlo{.samples = 4}, top_k);
  }
  add<Dirac<float>>("dirac/mean_only/top_k", 256, MeanOnly{}, top_k);
  add<LowRank<float>>("low_rank/monte_carlo/top_k", 256, one, top_k);
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
