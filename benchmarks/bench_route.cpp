// bench_route: route() throughput of every router composition, beside what a user
// would write by hand with Eigen, and a breakdown of where a token's time goes.
//
// Names (parsed by scripts/bench_table.py):
//   route/<composition>/T:<tokens>/D:<dim>/E:<experts>/K:<top_k>[/S:<samples>][/threads:<n>]
//   baseline/<eigen_gemm|naive_eigen_topk|naive_eigen_mean_field|naive_eigen_mean_field_std>/...
//   part/<stage>/...                    one stage of the CPU pipeline, run alone
// Google Benchmark appends "/real_time": every case is timed by wall clock (needed for
// the 2-thread cases; the same as CPU time for the single-threaded ones on an idle box).
//
// Grid: a representative subset by default (a few minutes); the full grid of issue 2
// (thousands of cases) with VMOER_BENCH_GRID=full or --vmoer_grid=full.
//
// Fixed inputs: hidden states and router weights come from Eigen's Random after
// std::srand with a seed derived from the shape, so every run sees the same numbers.
#include <benchmark/benchmark.h>

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include <vmoer/vmoer.hpp>

namespace {

using namespace vmoer;
using Mat = Matrix<float>;
using RowVec = Eigen::Array<float, 1, Eigen::Dynamic>;

constexpr Index kHidden = 64;  // encoder trunk width H of the Gaussian posteriors, unless a shape says otherwise
constexpr Index kRank = 8;     // rank r of LowRank
constexpr double kTau = 2.0;   // temperature of Temperature and SampleK
constexpr Index kNaiveSamples = 32;
const rng::Stream kStream{1234, 0};

// ---------------------------------------------------------------------------------
// Shapes and fixed inputs.

struct Shape {
  Index T = 1, D = 2048, E = 64, K = 8, S = 0;  // S = 0: not a sampled composition
  int threads = 1;
  Index H = kHidden;  // encoder trunk width of a Gaussian posterior
};

std::string shape_suffix(const Shape& s) {
  std::string n = "/T:" + std::to_string(s.T) + "/D:" + std::to_string(s.D) + "/E:" + std::to_string(s.E) +
                  "/K:" + std::to_string(s.K);
  if (s.S > 0) n += "/S:" + std::to_string(s.S);
  if (s.threads != 1) n += "/threads:" + std::to_string(s.threads);
  if (s.H != kHidden) n += "/H:" + std::to_string(s.H);
  return n;
}

// Uniform(-1, 1) hidden states [T, D].
const Mat& hidden_input(Index T, Index D) {
  static std::map<std::pair<Index, Index>, Mat> cache;
  auto it = cache.find({T, D});
  if (it == cache.end()) {
    std::srand(unsigned(1000003 * T + D));
    it = cache.emplace(std::pair{T, D}, Mat(Mat::Random(T, D))).first;
  }
  return it->second;
}

// Router weight [E, D], Uniform(-1, 1) / sqrt(D): logits of order 1/sqrt(3).
const Mat& router_weight(Index E, Index D) {
  static std::map<std::pair<Index, Index>, Mat> cache;
  auto it = cache.find({E, D});
  if (it == cache.end()) {
    std::srand(unsigned(7919 * E + D + 17));
    it = cache.emplace(std::pair{E, D}, Mat(Mat::Random(E, D) / std::sqrt(float(D)))).first;
  }
  return it->second;
}

Convention convention(Index K) {
  Convention c;
  c.top_k = K;
  c.normalize = Normalize::sum;
  return c;
}

// A Gaussian posterior around W whose mean and scale heads are small random values
// (the untrained heads are zero); the cost does not depend on the values.
template <class Post>
Post gaussian(const Shape& s, Index rank) {
  Post post(router_weight(s.E, s.D), Vector<float>(), EncoderOptions{.hidden = s.H, .rank = rank});
  std::srand(unsigned(31 * s.E + s.D + rank));
  auto& p = post.parameters();
  p[Post::mean_weight] = Mat::Random(p[Post::mean_weight].rows(), s.H) * 0.05f;
  p[Post::scale_weight] = Mat::Random(p[Post::scale_weight].rows(), s.H) * 0.05f;
  return post;
}

void finish(benchmark::State& st, const Shape& s) {
  st.SetItemsProcessed(st.iterations() * s.T);  // items_per_second = tokens/s
  st.counters["T"] = double(s.T);
  st.counters["D"] = double(s.D);
  st.counters["E"] = double(s.E);
  st.counters["K"] = double(s.K);
  st.counters["S"] = double(s.S);
  st.counters["H"] = double(s.H);
  st.counters["threads"] = double(s.threads);
  st.counters["s_per_token"] =
      benchmark::Counter(double(s.T), benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

// ---------------------------------------------------------------------------------
// The library's compositions.

enum class Comp {
  dirac_topk,
  dirac_temperature,
  dirac_sample_k,
  mean_field_mc_topk,
  full_covariance_mc_topk,
  low_rank_mc_topk,
  mean_field_mean_topk,
};

constexpr Comp kAllComps[] = {Comp::dirac_topk,         Comp::dirac_temperature,       Comp::dirac_sample_k,
                              Comp::mean_field_mc_topk, Comp::full_covariance_mc_topk, Comp::low_rank_mc_topk,
                              Comp::mean_field_mean_topk};

const char* comp_name(Comp c) {
  switch (c) {
    case Comp::dirac_topk: return "dirac_topk";
    case Comp::dirac_temperature: return "dirac_temperature";
    case Comp::dirac_sample_k: return "dirac_sample_k";
    case Comp::mean_field_mc_topk: return "mean_field_mc_topk";
    case Comp::full_covariance_mc_topk: return "full_covariance_mc_topk";
    case Comp::low_rank_mc_topk: return "low_rank_mc_topk";
    case Comp::mean_field_mean_topk: return "mean_field_mean_topk";
  }
  return "?";
}

bool monte_carlo(Comp c) {
  return c == Comp::mean_field_mc_topk || c == Comp::full_covariance_mc_topk || c == Comp::low_rank_mc_topk;
}

template <class Post, class Sampler, class Selector>
void time_router(benchmark::State& st, Post post, Sampler sampler, Selector selector, const Shape& s) {
  const Router router(std::move(post), sampler, std::move(selector), kStream, Cpu{.threads = s.threads});
  const Mat& x = hidden_input(s.T, s.D);
  Routing<float> out;  // reused, like the baselines' outputs
  for (auto _ : st) {
    router.route(x, out);
    benchmark::DoNotOptimize(out);
    benchmark::ClobberMemory();
  }
  finish(st, s);
}

void bench_route(benchmark::State& st, Comp c, Shape s) {
  const Mat& w = router_weight(s.E, s.D);
  hidden_input(s.T, s.D);
  const MonteCarlo mc{.samples = s.S};
  switch (c) {
    case Comp::dirac_topk:
      return time_router(st, Dirac<float>(w), MeanOnly{}, TopK{convention(s.K)}, s);
    case Comp::dirac_temperature:
      return time_router(st, Dirac<float>(w), MeanOnly{}, Temperature{convention(s.K), kTau}, s);
    case Comp::dirac_sample_k:
      return time_router(st, Dirac<float>(w), MeanOnly{}, SampleK{convention(s.K), kTau}, s);
    case Comp::mean_field_mc_topk:
      return time_router(st, gaussian<MeanField<float>>(s, 0), mc, TopK{convention(s.K)}, s);
    case Comp::full_covariance_mc_topk:
      return time_router(st, gaussian<FullCovariance<float>>(s, 0), mc, TopK{convention(s.K)}, s);
    case Comp::low_rank_mc_topk:
      return time_router(st, gaussian<LowRank<float>>(s, kRank), mc, TopK{convention(s.K)}, s);
    case Comp::mean_field_mean_topk:
      return time_router(st, gaussian<MeanField<float>>(s, 0), MeanOnly{}, TopK{convention(s.K)}, s);
  }
}

// ---------------------------------------------------------------------------------
// Baselines: what a user would write by hand with Eigen.

// (a) The projection alone, Eigen's GEMM (Eigen's own threads: setNbThreads).
void bench_eigen_gemm(benchmark::State& st, Shape s) {
  Eigen::setNbThreads(s.threads);
  const Mat& x = hidden_input(s.T, s.D);
  const Mat& w = router_weight(s.E, s.D);
  Mat y(s.T, s.E);
  for (auto _ : st) {
    y.noalias() = x * w.transpose();
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  Eigen::setNbThreads(1);
  finish(st, s);
}

struct NaiveRouting {
  IdMatrix ids;
  Mat weights;
};

// Top-K of each row of the probabilities P by std::partial_sort (ties: lower id),
// weights renormalised to sum 1.
void naive_select(const Mat& p, Index K, NaiveRouting& out) {
  const Index T = p.rows(), E = p.cols();
  out.ids.resize(T, K);
  out.weights.resize(T, K);
  std::vector<std::int32_t> idx(static_cast<std::size_t>(E));
  for (Index t = 0; t < T; ++t) {
    const float* row = p.data() + t * E;
    std::iota(idx.begin(), idx.end(), 0);
    std::partial_sort(idx.begin(), idx.begin() + K, idx.end(),
                      [row](std::int32_t a, std::int32_t b) { return row[a] > row[b] || (row[a] == row[b] && a < b); });
    float sum = 0;
    for (Index i = 0; i < K; ++i) sum += row[idx[std::size_t(i)]];
    for (Index i = 0; i < K; ++i) {
      out.ids(t, i) = idx[std::size_t(i)];
      out.weights(t, i) = row[idx[std::size_t(i)]] / sum;
    }
  }
}

// (b) Dirac + TopK by hand: GEMM, row-wise softmax with Eigen array ops, top-K.
NaiveRouting naive_topk(const Mat& x, const Mat& w, const Vector<float>& b, Index K) {
  Mat p = x * w.transpose();
  p.rowwise() += b.transpose();
  const Vector<float> mx = p.rowwise().maxCoeff();
  p = (p.colwise() - mx).array().exp();
  const Vector<float> sum = p.rowwise().sum();
  p.array().colwise() /= sum.array();
  NaiveRouting out;
  naive_select(p, K, out);
  return out;
}

// (b') Mean-field + MonteCarlo(S) + TopK by hand, reading the posterior's parameters:
// GEMMs for the mean and the encoder, then per token and sample z = mu + sigma * eps,
// softmax, average, top-K. Noise: the library's scalar rng::normals (same stream as
// the library, so the same eps), or std::normal_distribution over std::mt19937.
template <bool StdNormal>
NaiveRouting naive_mean_field(const Mat& x, const MeanField<float>& post, Index S, Index K) {
  const Index T = x.rows(), D = post.dim(), E = post.experts(), H = post.hidden();
  using CMap = Eigen::Map<const Mat>;
  using CVec = Eigen::Map<const Eigen::Matrix<float, 1, Eigen::Dynamic>>;
  const CMap w(post.input_weight(), E, D), w1(post.input_weight() + E * D, H, D);
  const CVec b(post.input_bias(), E), b1(post.input_bias() + E, H);
  const CMap wm(post.head_weight(), E, H), ws(post.head_weight() + E * H, E, H);
  const CVec bm(post.head_bias(), E), bs(post.head_bias() + E, E);

  Mat mu = x * w.transpose();
  mu.rowwise() += b;
  Mat h = x * w1.transpose();
  h.rowwise() += b1;
  h = h.cwiseMax(0.0f);
  mu.noalias() += h * wm.transpose();
  mu.rowwise() += bm;
  Mat sigma = h * ws.transpose();
  sigma.rowwise() += bs;
  sigma = (sigma.array() * 0.5f).exp();

  Mat p(T, E);
  RowVec eps(E), z(E), acc(E);
  std::mt19937 gen(1234);
  std::normal_distribution<float> normal;
  for (Index t = 0; t < T; ++t) {
    acc.setZero();
    for (Index s = 0; s < S; ++s) {
      if constexpr (StdNormal) {
        for (Index e = 0; e < E; ++e) eps[e] = normal(gen);
      } else {
        rng::normals(kStream, rng::Purpose::logit_noise, std::uint32_t(t), std::uint32_t(s), eps.data(), E);
      }
      z = mu.row(t).array() + sigma.row(t).array() * eps;
      z = (z - z.maxCoeff()).exp();
      acc += z / z.sum();
    }
    p.row(t) = acc / float(S);
  }
  NaiveRouting out;
  naive_select(p, K, out);
  return out;
}

void bench_naive_topk(benchmark::State& st, Shape s) {
  const Mat& x = hidden_input(s.T, s.D);
  const Mat& w = router_weight(s.E, s.D);
  const Vector<float> b = Vector<float>::Zero(s.E);  // Dirac's default bias
  for (auto _ : st) {
    NaiveRouting out = naive_topk(x, w, b, s.K);
    benchmark::DoNotOptimize(out);
    benchmark::ClobberMemory();
  }
  finish(st, s);
}

template <bool StdNormal>
void bench_naive_mean_field(benchmark::State& st, Shape s) {
  const Mat& x = hidden_input(s.T, s.D);
  const MeanField<float> post = gaussian<MeanField<float>>(s, 0);
  for (auto _ : st) {
    NaiveRouting out = naive_mean_field<StdNormal>(x, post, s.S, s.K);
    benchmark::DoNotOptimize(out);
    benchmark::ClobberMemory();
  }
  finish(st, s);
}

// ---------------------------------------------------------------------------------
// Parts: the stages of the CPU backend run alone over T tokens, to see where time goes.

enum class Part {
  project_router,   // [W] u per 16-token tile: Dirac's projection
  project_trunk,    // [W; W1] u per tile: the Gaussian posteriors' first projection (E + H rows)
  project_head,     // [Wm; Ws] h per tile (H -> E + E for mean-field)
  project_head_full_covariance,  // the same for FullCovariance: H -> E + E (E + 1) / 2
  normals_simd,     // cpu::normals: S x E normals per token (vectorised Philox + Box-Muller)
  normals_scalar,   // rng::normals, the scalar reference, same count
  softmax,          // cpu::softmax_entropy, S per token
  topk,             // cpu::select_top_k + combine_weights, once per token
  topk_grouped,     // the same with DeepSeek-V3's groups: 8 groups scored by their top 2, 4 kept
  pipeline_dirac,   // TokenPipeline<Dirac, MeanOnly, TopK>::run: everything after the projection
  pipeline_mean_field,  // TokenPipeline<MeanField, MonteCarlo(S), TopK>::run
};

const char* part_name(Part p) {
  switch (p) {
    case Part::project_router: return "project_router";
    case Part::project_trunk: return "project_trunk";
    case Part::project_head: return "project_head";
    case Part::project_head_full_covariance: return "project_head_full_covariance";
    case Part::normals_simd: return "normals_simd";
    case Part::normals_scalar: return "normals_scalar";
    case Part::softmax: return "softmax";
    case Part::topk: return "topk";
    case Part::topk_grouped: return "topk_grouped";
    case Part::pipeline_dirac: return "pipeline_dirac";
    case Part::pipeline_mean_field: return "pipeline_mean_field";
  }
  return "?";
}

constexpr Part kAllParts[] = {Part::project_router, Part::project_trunk,  Part::project_head,
                              Part::project_head_full_covariance,         Part::normals_simd,
                              Part::normals_scalar, Part::softmax,        Part::topk,           Part::topk_grouped,
                              Part::pipeline_dirac, Part::pipeline_mean_field};

// Mean logits and finalised scales of T tokens, for the pipeline stages.
struct TokenState {
  Mat mu, scale;
  TokenState(Index T, Index E) {
    std::srand(unsigned(T + 3 * E));
    mu = Mat::Random(T, E);
    scale = (Mat::Random(T, E).array() * 0.1f + 0.3f).matrix();
  }
};

void bench_part(benchmark::State& st, Part part, Shape s) {
  using cpu::padded;
  const Index E = s.E, H = kHidden, S = std::max<Index>(s.S, 1);
  const Mat& x = hidden_input(s.T, s.D);
  const MeanField<float> post = gaussian<MeanField<float>>(s, 0);
  const bool full = part == Part::project_head_full_covariance;
  const FullCovariance<float> full_post = gaussian<FullCovariance<float>>(full ? s : Shape{1, 16, 1, 1}, 0);
  const Index head_rows = full ? E + full_post.head_size() : 2 * E;
  // The projections run a tile at a time, cut as route() cuts them.
  const Index tile =
      cpu::tile_for(Cpu{.threads = 1}, s.T, full ? cpu::posterior_tile_bytes(full_post) : cpu::posterior_tile_bytes(post));
  std::vector<float, xsimd::aligned_allocator<float>> head_copy;
  const float* head_weight = full ? full_post.head_weight() : post.head_weight();
  const float* head_bias = full ? full_post.head_bias() : post.head_bias();
  cpu::projection_scratch<float> lanes;
  Mat first(tile, E + H), second(tile, head_rows), h = Mat::Random(tile, H).cwiseMax(0.0f);
  const Index np = padded<float>(E), noise_padded = padded<float>((E + 1) / 2) * 2;
  using Buffer = std::vector<float, xsimd::aligned_allocator<float>>;
  Buffer eps(static_cast<std::size_t>(noise_padded)), z(static_cast<std::size_t>(np)), p(static_cast<std::size_t>(np));
  std::vector<std::uint32_t> wx(static_cast<std::size_t>(noise_padded / 2)), wy(static_cast<std::size_t>(noise_padded / 2));
  for (Index e = 0; e < np; ++e) z[std::size_t(e)] = e < E ? float(e % 7) * 0.1f : -INFINITY;
  const TokenState tokens(s.T, E);
  constexpr Index kFreshBatches = 64;
  const bool grouped = part == Part::topk_grouped;
  const TokenState fresh(part == Part::topk || grouped ? kFreshBatches * s.T : 0, E);
  Index round = 0;
  IdMatrix ids(s.T, s.K);
  Mat weights(s.T, s.K), keys(1, s.K);
  Signals<float> signals;
  signals.resize(s.T);
  Convention conv = convention(s.K);
  if (grouped) {
    conv.n_group = 8;
    conv.topk_group = 4;
    conv.group_score = GroupScore::top2_sum;
  }

  auto output = [&](Index t) {
    return cpu::TokenOutput<float>{ids.data() + t * s.K,       weights.data() + t * s.K,
                                   signals.logit_variance.data() + t, signals.mc_variance.data() + t,
                                   signals.entropy.data() + t, signals.mutual_information.data() + t,
                                   signals.temperature.data() + t,  nullptr,
                                   nullptr};
  };
  cpu::TokenPipeline<Dirac<float>, MeanOnly, TopK> dirac_pipeline(Dirac<float>(router_weight(E, s.D)), MeanOnly{},
                                                                  TopK{conv}, kStream);
  cpu::TokenPipeline<MeanField<float>, MonteCarlo, TopK> mf_pipeline(post, MonteCarlo{.samples = S}, TopK{conv},
                                                                     kStream);

  for (auto _ : st) {
    switch (part) {
      case Part::project_router:
      case Part::project_trunk: {
        const Index n = part == Part::project_router ? E : E + H;
        for (Index b = 0; b < s.T; b += tile) {
          const Index m = std::min(tile, s.T - b);
          cpu::project(x.data() + b * s.D, s.D, m, post.input_weight(), s.D, n, s.D, post.input_bias(), first.data(),
                       E + H, lanes);
        }
        benchmark::DoNotOptimize(first.data());
        break;
      }
      case Part::project_head:
      case Part::project_head_full_covariance:
        // As route() runs the head on one thread: from a transposed copy, made once a call,
        // when the call has cpu::head_copy_tokens.
        [&](auto f) {
          using T = decltype(f);
          Index ldwt = 0;
          const T* wt = nullptr;
          if constexpr (cpu::lane_trees<T>)
            if (s.T >= cpu::head_copy_tokens) wt = cpu::transpose_padded(head_weight, head_rows, H, head_copy, ldwt);
          for (Index b = 0; b < s.T; b += tile) {
            const Index m = std::min(tile, s.T - b);
            if constexpr (cpu::lane_trees<T>)
              if (wt) {
                cpu::project_transposed(h.data(), H, m, wt, ldwt, head_rows, H, head_bias, second.data(), head_rows);
                continue;
              }
            cpu::project(h.data(), H, m, head_weight, H, head_rows, H, head_bias, second.data(), head_rows, lanes);
          }
        }(0.0f);
        benchmark::DoNotOptimize(second.data());
        break;
      case Part::normals_simd:
        for (Index t = 0; t < s.T; ++t)
          for (Index k = 0; k < S; ++k) {
            cpu::normals(kStream, rng::Purpose::logit_noise, std::uint32_t(t), std::uint32_t(k), eps.data(),
                         noise_padded, wx.data(), wy.data());
            benchmark::DoNotOptimize(eps.data());
          }
        break;
      case Part::normals_scalar:
        for (Index t = 0; t < s.T; ++t)
          for (Index k = 0; k < S; ++k) {
            rng::normals(kStream, rng::Purpose::logit_noise, std::uint32_t(t), std::uint32_t(k), eps.data(), E);
            benchmark::DoNotOptimize(eps.data());
          }
        break;
      case Part::softmax:
        for (Index t = 0; t < s.T; ++t)
          for (Index k = 0; k < S; ++k) {
            benchmark::DoNotOptimize(cpu::softmax_entropy(z.data(), p.data(), E, np));
            benchmark::ClobberMemory();
          }
        break;
      case Part::topk:
      case Part::topk_grouped: {
        // A different batch of scores each time: on one batch repeated, the branch
        // predictor learns where a branchy selection goes (the insertion sort this
        // replaced ran 5x faster there than on fresh scores).
        const float* mu = fresh.mu.data() + (round++ % kFreshBatches) * s.T * E;
        for (Index t = 0; t < s.T; ++t) {
          std::copy(mu + t * E, mu + (t + 1) * E, z.begin());  // padded, as in the pipeline
          cpu::select_top_k(z.data(), nullptr, E, np, conv, ids.data() + t * s.K, keys.data());
          selection::combine_weights(mu + t * E, E, ids.data() + t * s.K, conv, weights.data() + t * s.K);
        }
        benchmark::DoNotOptimize(weights.data());
        break;
      }
      case Part::pipeline_dirac:
        for (Index t = 0; t < s.T; ++t)
          dirac_pipeline.run({.token = std::uint32_t(t), .mu = tokens.mu.data() + t * E}, output(t));
        benchmark::DoNotOptimize(weights.data());
        break;
      case Part::pipeline_mean_field:
        for (Index t = 0; t < s.T; ++t)
          mf_pipeline.run({.token = std::uint32_t(t), .mu = tokens.mu.data() + t * E, .scale = tokens.scale.data() + t * E},
                          output(t));
        benchmark::DoNotOptimize(weights.data());
        break;
    }
    benchmark::ClobberMemory();
  }
  finish(st, s);
  if (part == Part::normals_simd || part == Part::normals_scalar)
    st.counters["s_per_normal"] = benchmark::Counter(double(s.T * S * E), benchmark::Counter::kIsIterationInvariantRate |
                                                                              benchmark::Counter::kInvert);
}

// ---------------------------------------------------------------------------------
// Registration.

std::set<std::string> registered;

void add(const std::string& name, auto fn) {
  if (!registered.insert(name).second) return;
  benchmark::RegisterBenchmark(name.c_str(), fn)->UseRealTime()->Unit(benchmark::kMicrosecond);
}

void add_route(Comp c, Shape s) {
  if (s.K > s.E) return;
  if (!monte_carlo(c)) s.S = 0;
  add(std::string("route/") + comp_name(c) + shape_suffix(s), [c, s](benchmark::State& st) { bench_route(st, c, s); });
}

void add_gemm(Shape s) {
  s.S = 0;
  add("baseline/eigen_gemm" + shape_suffix(s), [s](benchmark::State& st) { bench_eigen_gemm(st, s); });
}

void add_naive_topk(Shape s) {
  if (s.K > s.E) return;
  s.S = 0;
  add("baseline/naive_eigen_topk" + shape_suffix(s), [s](benchmark::State& st) { bench_naive_topk(st, s); });
}

void add_naive_mean_field(Shape s, bool std_normal = false) {
  if (s.K > s.E) return;
  s.S = kNaiveSamples;
  if (std_normal)
    add("baseline/naive_eigen_mean_field_std" + shape_suffix(s),
        [s](benchmark::State& st) { bench_naive_mean_field<true>(st, s); });
  else
    add("baseline/naive_eigen_mean_field" + shape_suffix(s),
        [s](benchmark::State& st) { bench_naive_mean_field<false>(st, s); });
}

void add_part(Part p, Shape s) {
  const bool sampled = p == Part::normals_simd || p == Part::normals_scalar || p == Part::softmax ||
                       p == Part::pipeline_mean_field;
  s.S = sampled ? 32 : 0;
  add(std::string("part/") + part_name(p) + shape_suffix(s), [p, s](benchmark::State& st) { bench_part(st, p, s); });
}

// Every composition at one shape, S over `samples` for the Monte-Carlo ones.
void add_all_comps(Shape s, std::initializer_list<Index> samples) {
  for (Comp c : kAllComps) {
    if (monte_carlo(c)) {
      for (Index S : samples) add_route(c, Shape{s.T, s.D, s.E, s.K, S, s.threads});
    } else {
      add_route(c, s);
    }
  }
}

// The representative subset (see docs/performance.md).
void register_default() {
  const Index D = 2048, E = 64, K = 8;
  // 1. Headline shape, every composition, T over {1, 16, 256, 4096}, S over {1, 8, 32}.
  for (Index T : {1, 16, 256, 4096}) {
    add_all_comps(Shape{T, D, E, K}, {1, 8, 32});
    add_gemm(Shape{T, D, E, K});
    add_naive_topk(Shape{T, D, E, K});
    add_naive_mean_field(Shape{T, D, E, K});
    add_naive_mean_field(Shape{T, D, E, K}, true);
  }
  // Mean-field S = 32 with a narrower encoder trunk: the trunk's D x H projection is
  // most of what mean-field adds to Dirac, so H sets the price of the posterior.
  for (Index T : {1, 16, 256, 4096})
    for (Index h : {16, 32}) add_route(Comp::mean_field_mc_topk, Shape{T, D, E, K, 32, 1, h});
  // 2. Experts: E = 8 (K = 2), 40, 128, 256 (K = 8) at T = 256.
  for (Index e : {8, 40, 128, 256}) {
    const Shape s{256, D, e, e == 8 ? 2 : K};
    add_route(Comp::dirac_topk, s);
    add_route(Comp::mean_field_mc_topk, Shape{s.T, D, e, s.K, 32});
    add_route(Comp::low_rank_mc_topk, Shape{s.T, D, e, s.K, 32});
    if (e <= 128) add_route(Comp::full_covariance_mc_topk, Shape{s.T, D, e, s.K, 32});
    add_gemm(s);
    add_naive_topk(s);
    add_naive_mean_field(s);
  }
  // E = 256: low rank over T (and Dirac for the ratio); full covariance at T = 16 for its O(E^2) cost.
  for (Index T : {1, 16, 4096}) {
    add_route(Comp::dirac_topk, Shape{T, D, 256, K});
    add_route(Comp::low_rank_mc_topk, Shape{T, D, 256, K, 32});
    add_gemm(Shape{T, D, 256, K});
  }
  add_route(Comp::low_rank_mc_topk, Shape{256, D, 256, K, 8});
  add_route(Comp::full_covariance_mc_topk, Shape{16, D, 256, K, 32});
  add_route(Comp::dirac_topk, Shape{16, D, 256, K});
  // 3. Input width D = 1536, 4096 at T = 256 (and T = 4096 for the GEMM-bound goal).
  for (Index d : {1536, 4096}) {
    for (Index T : {256, 4096}) {
      add_route(Comp::dirac_topk, Shape{T, d, E, K});
      add_gemm(Shape{T, d, E, K});
    }
    add_route(Comp::mean_field_mc_topk, Shape{256, d, E, K, 32});
    add_naive_topk(Shape{256, d, E, K});
  }
  // 4. K = 1, 2 at T = 256.
  for (Index k : {1, 2}) {
    add_route(Comp::dirac_topk, Shape{256, D, E, k});
    add_route(Comp::mean_field_mc_topk, Shape{256, D, E, k, 32});
    add_naive_topk(Shape{256, D, E, k});
  }
  // 5. Two threads (Cpu{.threads = 2}; Eigen::setNbThreads(2) for the GEMM), T = 16 a batched decode step.
  for (Index T : {16, 256, 4096}) {
    add_route(Comp::dirac_topk, Shape{T, D, E, K, 0, 2});
    add_route(Comp::mean_field_mc_topk, Shape{T, D, E, K, 32, 2});
    add_gemm(Shape{T, D, E, K, 0, 2});
  }
  // 6. Stages of the pipeline at T = 256.
  for (Part p : kAllParts) add_part(p, Shape{256, D, E, K});
  add_part(Part::pipeline_mean_field, Shape{256, D, 256, K});
  add_part(Part::pipeline_dirac, Shape{256, D, 256, K});
  add_part(Part::topk_grouped, Shape{256, D, 256, K});  // DeepSeek-V3's E
}

// The full grid of issue 2: thousands of cases, hours.
void register_full() {
  for (Index T : {1, 16, 256, 4096})
    for (Index D : {1536, 2048, 4096})
      for (Index E : {8, 40, 64, 128, 256})
        for (Index K : {1, 2, 8}) {
          if (K > E) continue;
          add_all_comps(Shape{T, D, E, K}, {1, 8, 32});
          add_gemm(Shape{T, D, E, K});
          add_naive_topk(Shape{T, D, E, K});
          add_naive_mean_field(Shape{T, D, E, K});
        }
  register_default();  // the 2-thread cases, the parts and the std-normal baseline
}

// Ids of the library's and the naive routers on the same input must agree (up to
// rare near-ties), or the comparison would not be of the same math.
void check_baselines() {
  const Shape s{64, 2048, 64, 8, 32};
  const Mat& x = hidden_input(s.T, s.D);
  const Mat& w = router_weight(s.E, s.D);
  auto agree = [&](const IdMatrix& a, const IdMatrix& b) {
    Index same = 0;
    for (Index t = 0; t < a.rows(); ++t) same += (a.row(t) == b.row(t)) ? 1 : 0;
    return double(same) / double(a.rows());
  };
  const Router dirac(Dirac<float>(w), MeanOnly{}, TopK{convention(s.K)}, kStream, Cpu{.threads = 1});
  const double a1 = agree(dirac.route(x).ids, naive_topk(x, w, Vector<float>::Zero(s.E), s.K).ids);
  const Router mf(gaussian<MeanField<float>>(s, 0), MonteCarlo{.samples = s.S}, TopK{convention(s.K)}, kStream,
                  Cpu{.threads = 1});
  const double a2 = agree(mf.route(x).ids, naive_mean_field<false>(x, mf.posterior(), s.S, s.K).ids);
  std::fprintf(stderr, "check: tokens with identical top-%ld ids, library vs naive Eigen: dirac %.3f, mean-field S=%ld %.3f\n",
               long(s.K), a1, long(s.S), a2);
  if (a1 < 0.95 || a2 < 0.95) std::fprintf(stderr, "check: WARNING: the baselines do not compute the same routing\n");
}

}  // namespace

int main(int argc, char** argv) {
  bool full = false;
  if (const char* g = std::getenv("VMOER_BENCH_GRID")) full = std::strcmp(g, "full") == 0;
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--vmoer_grid=full") == 0)
      full = true;
    else if (std::strcmp(argv[i], "--vmoer_grid=default") == 0)
      full = false;
    else
      argv[kept++] = argv[i];
  }
  argc = kept;
  Eigen::setNbThreads(1);  // Eigen's GEMM would otherwise use every OpenMP thread

  full ? register_full() : register_default();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("vmoer_grid", full ? "full" : "default");
  benchmark::AddCustomContext("encoder_hidden_H", std::to_string(kHidden));
  benchmark::AddCustomContext("low_rank_r", std::to_string(kRank));
  benchmark::AddCustomContext("temperature_tau", "2.0");
  benchmark::AddCustomContext("eigen_simd", Eigen::SimdInstructionSetsInUse());
  check_baselines();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
