// The CPU backend: tokens are cut into tiles; each tile runs the posterior's
// projections with the batch-invariant kernel, then every token goes through the
// TokenPipeline. Tiles are spread over OpenMP threads when OpenMP is enabled.
// Results are identical for any thread count and tile size, because nothing a
// token computes depends on the other tokens.
#pragma once

#include <algorithm>
#include <cmath>
#include <exception>
#include <string>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "vmoer/backend/cpu/projection.hpp"
#include "vmoer/backend/cpu/token_pipeline.hpp"
#include "vmoer/error.hpp"
#include "vmoer/routing.hpp"

namespace vmoer {

/// Backend policy: Eigen matrices in host memory, SIMD loops, OpenMP threads.
struct Cpu {
  int threads = 0;  ///< worker threads; 0 takes OpenMP's default (1 without OpenMP)
  Index tile = 0;   ///< tokens per work item, or 0 to choose per call (cpu::tile_for); results do not depend on it

  /// Routes the rows of `hidden` through the router's policies into `out` (resized;
  /// buffers of the right size are reused). Each thread that routes keeps its scratch
  /// (one tile's projections and one token's pipeline) between calls, so a decode loop
  /// allocates nothing once warm; it is freed when the thread ends.
  template <class Router, class In>
  void route(const Router& router, const MatrixView<In>& hidden, const RouteOptions& options,
             Routing<typename Router::scalar>& out) const;
};

namespace cpu {

/// The threads a call of `cpu` runs on: Cpu::threads, or OpenMP's default (1 without OpenMP).
inline int thread_count(const Cpu& cpu) {
#if defined(_OPENMP)
  return cpu.threads > 0 ? cpu.threads : omp_get_max_threads();
#else
  (void)cpu;
  return 1;
#endif
}

/// What a tile of tokens writes, in bytes a token: the posterior's first projection and
/// encoder heads, and `samples` rows of logits from a weight-space posterior.
template <class Posterior>
Index posterior_tile_bytes(const Posterior& post, Index samples = 0) {
  const Index entries = 2 * post.experts() + post.hidden() + post.head_size() + samples * post.experts();
  return entries * Index(sizeof(typename Posterior::scalar));
}

/// What a tile of the router's tokens writes, in bytes a token (posterior_tile_bytes).
template <class Router>
Index tile_bytes(const Router& router) {
  Index samples = 0;
  if constexpr (Router::posterior_type::weight_space && Router::sampler_type::draws) samples = router.sampler().samples;
  return posterior_tile_bytes(router.posterior(), samples);
}

/// Tokens a thread routes in one call from which a Gaussian posterior's encoder head runs
/// from the thread's own transposed copy (cpu::project_transposed: 1.5x faster at H = 64,
/// 3x at H = 16). Copying the Cholesky head at E = 64 costs what about 40 tokens save;
/// reading another core's fresh copy cost more than copying.
inline constexpr Index head_copy_tokens = 64;

/// Tokens per tile: Cpu::tile when set. Otherwise 64: the projection's W comes through the
/// caches once per tile, and on the Zen 5 64 ran 9-13% faster than 16 at T = 256 and 4096
/// (every router at E = 64, D = 2048 and 4096; Dirac, mean-field and low rank at E = 256).
/// Fewer where a tile would write more than 512 KiB (`bytes` a token, tile_bytes), as the
/// full-covariance heads do at E >= 128, which ran 10-25% slower with large tiles, but not
/// fewer than 16 for that. And fewer where a thread would get no tile, down to 8: a batched
/// decode step of 16 tokens on two threads ran 1.3x (Dirac) to 1.9x (full covariance, E =
/// 256) faster as two tiles of 8 than as one of 16, while tiles of 4 made Dirac at T = 8 15%
/// slower (each tile streams all of W). A negative Cpu::tile is an error, for every caller
/// (route, backward, kl_divergence).
inline Index tile_for(const Cpu& cpu, Index tokens, Index bytes) {
  vmoer::detail::require(cpu.tile >= 0, "Cpu", "tile = ", cpu.tile, " must be >= 0 (0: chosen per call)");
  if (cpu.tile > 0) return cpu.tile;
  constexpr Index most = 64, least = 16, least_shared = 8, budget = Index(512) << 10;
  const Index threads = thread_count(cpu);
  const Index fits = std::max(least, std::min(most, budget / std::max<Index>(bytes, 1)));
  return std::min(fits, std::max(least_shared, (tokens + threads - 1) / threads));
}

/// One thread's buffers for a tile of tokens.
template <class T>
struct TileScratch {
  std::vector<T, xsimd::aligned_allocator<T>> input;  ///< hidden rows moved (cpu::rows_clear_of), converted to T
  Matrix<T> first;     ///< [tile, E + H]: logits and trunk pre-activations
  Matrix<T> second;    ///< [tile, E + P]: mean residual and scale head
  Matrix<T> mu;        ///< [tile, E]
  Matrix<T> tau;       ///< [tile, H_t] then [tile, 1 or E]: learned temperatures
  Matrix<T> tau_out;   ///< [tile, 1 or E]
  Matrix<T> samples;   ///< [tile * S, E]: logit samples of a weight-space posterior
  projection_scratch<T> lanes;
};

/// One thread's scratch and pipeline of type P, kept between route() calls so that a
/// decode loop (a token per call) allocates nothing after its first step. route() does
/// not re-enter itself on a thread, so one of each per thread suffices.
template <class P>
P& thread_local_scratch() {
  thread_local P scratch;
  return scratch;
}

/// Which token failed first, and why.
struct FirstError {
  Index token = -1;
  std::string message;
  void record(Index t, std::string m) {
#if defined(_OPENMP)
#pragma omp critical(vmoer_first_error)
#endif
    if (token < 0 || t < token) {
      token = t;
      message = std::move(m);
    }
  }
};

/// The weights as the tiles read them: the first projection's (the posterior's, or a
/// copy with spread rows, cpu::spread_rows) and, when prepared, the encoder head's
/// transposed for cpu::project_transposed. `place_hidden`: each tile's hidden states
/// are moved clear of W's rows in L1 (cpu::rows_clear_of), as they must be converted
/// anyway or would collide with W's.
template <class T>
struct TileWeights {
  const T* input;
  Index ld_input;
  const T* head_t = nullptr;
  Index ld_head_t = 0;
  bool place_hidden = false;
};

/// The copies behind TileWeights, kept by the calling thread between route() calls.
template <class T>
struct WeightCopies {
  std::vector<T, xsimd::aligned_allocator<T>> input, head_t;
};

template <class Router, class In>
void route_tile(const Router& router, const MatrixView<In>& hidden, Index begin, Index end,
                const TileWeights<typename Router::scalar>& weights, const RouteOptions& options,
                TileScratch<typename Router::scalar>& scratch,
                TokenPipeline<typename Router::posterior_type, typename Router::sampler_type,
                              typename Router::selector_type>& pipeline,
                Routing<typename Router::scalar>& out, FirstError& error) {
  using T = typename Router::scalar;
  using P = typename Router::posterior_type;
  const P& post = router.posterior();
  const Index m = end - begin, dim = post.dim(), experts = post.experts(), hidden_width = post.hidden(),
              head = post.head_size();

  const T* x = nullptr;
  Index ldx = 0;
  if (weights.place_hidden) {
    T* moved = rows_clear_of(weights.input, m, dim, scratch.input, ldx);
    Eigen::Map<Matrix<T>, 0, Eigen::OuterStride<>>(moved, m, dim, Eigen::OuterStride<>(ldx)) =
        hidden.middleRows(begin, m).template cast<T>();
    x = moved;
  } else if constexpr (std::is_same_v<In, T>) {  // Cpu::route places every converted tile
    x = hidden.data() + begin * hidden.outerStride();
    ldx = hidden.outerStride();
  }

  scratch.first.resize(m, experts + hidden_width);
  project(x, ldx, m, weights.input, weights.ld_input, experts + hidden_width, dim, post.input_bias(),
          scratch.first.data(), experts + hidden_width, scratch.lanes);
  if (options.keep_projection)  // before the relu
    out.projection.block(begin, 0, m, experts + hidden_width) = scratch.first;
  const T* mu = scratch.first.data();
  Index ldmu = experts + hidden_width;
  const T* scale = nullptr;
  Index ldscale = 0;
  if constexpr (P::stochastic && !P::weight_space) {  // the Gaussian encoder's heads
    auto h = scratch.first.rightCols(hidden_width);
    h = h.cwiseMax(T(0));
    scratch.second.resize(m, experts + head);
    bool transposed = false;
    if constexpr (lane_trees<T>)  // the only types route() transposes the head for
      if ((transposed = weights.head_t != nullptr))
        project_transposed(h.data(), experts + hidden_width, m, weights.head_t, weights.ld_head_t, experts + head,
                           hidden_width, post.head_bias(), scratch.second.data(), experts + head);
    if (!transposed)
      project(h.data(), experts + hidden_width, m, post.head_weight(), hidden_width, experts + head, hidden_width,
              post.head_bias(), scratch.second.data(), experts + head, scratch.lanes);
    scratch.mu = scratch.first.leftCols(experts) + scratch.second.leftCols(experts);
    mu = scratch.mu.data();
    ldmu = experts;
    for (Index i = 0; i < m; ++i) cpu::exp_half(scratch.second.data() + i * (experts + head) + experts, experts);
    scale = scratch.second.data() + experts;
    ldscale = experts + head;
  }

  using Sel = typename Router::selector_type;
  if constexpr (Sel::learned_tau) {  // T(u) = min(softplus(MLP(u)) + floor, ceiling)
    const Sel& sel = router.selector();
    const Index th = sel.hidden(), width = sel.width();
    const auto& tp = sel.parameters();
    scratch.tau.resize(m, th);
    project(x, ldx, m, tp.data(Sel::trunk_weight), dim, th, dim, tp.data(Sel::trunk_bias), scratch.tau.data(), th,
            scratch.lanes);
    if (options.keep_projection) out.projection.block(begin, router.temperature_column(), m, th) = scratch.tau;
    scratch.tau = scratch.tau.cwiseMax(T(0));
    scratch.tau_out.resize(m, width);
    project(scratch.tau.data(), th, m, tp.data(Sel::head_weight), th, width, th, tp.data(Sel::head_bias),
            scratch.tau_out.data(), width, scratch.lanes);
    scratch.tau_out = scratch.tau_out.unaryExpr([&](T a) { return sel.temperature(a); });
  }
  if constexpr (P::weight_space && Router::sampler_type::draws) {
    scratch.samples.resize(m * router.sampler().samples, experts);
    post.sample_logits(x, ldx, m, options.token_offset + std::uint32_t(begin), router.stream(),
                       router.sampler().samples, scratch.samples.data(), scratch.lanes);
  }

  for (Index i = 0; i < m; ++i) {
    const Index t = begin + i;
    const T* mu_i = mu + i * ldmu;
    const T* scale_i = scale ? scale + i * ldscale : nullptr;
    bool finite = true;
    for (Index e = 0; e < experts; ++e) finite = finite && std::isfinite(mu_i[e]);
    if (!finite) {
      for (Index d = 0; d < dim; ++d)
        if (!std::isfinite(double(hidden(t, d)))) {
          error.record(t, vmoer::detail::concat("vmoer: route: hidden[", t, ", ", d, "] = ", double(hidden(t, d)),
                                         " is not finite"));
          break;
        }
      error.record(t, vmoer::detail::concat("vmoer: route: the logits of token ", t,
                                     " are not finite (the hidden state or the router weights overflow)"));
      continue;
    }
    T logit_variance = T(0);
    if constexpr (P::stochastic && !P::weight_space) {
      // tr(Sigma) screens the scale too, as the CUDA kernel's does: a sum of squares is
      // finite exactly when every entry is and none overflows. One pass, not two.
      logit_variance = P::covariance::trace(scale_i, experts, post.rank());
      if (!std::isfinite(logit_variance)) {
        Index j = 0;
        while (j < head && std::isfinite(scale_i[j])) ++j;
        error.record(t, j < head ? vmoer::detail::concat("vmoer: route: the posterior scale of token ", t,
                                                         " is not finite (entry ", j, " = ", double(scale_i[j]), ")")
                                 : vmoer::detail::concat("vmoer: route: tr(Sigma) of token ", t,
                                                         " overflows (the posterior scale is too large)"));
        continue;
      }
    }
    const Index k = out.ids.cols();
    cpu::TokenOutput<T> o{out.ids.data() + t * k,
                          out.weights.data() + t * k,
                          out.signals.logit_variance.data() + t,
                          out.signals.mc_variance.data() + t,
                          out.signals.entropy.data() + t,
                          out.signals.mutual_information.data() + t,
                          out.signals.temperature.data() + t,
                          options.keep_logits ? out.logits.data() + t * experts : nullptr,
                          options.keep_probs ? out.probs.data() + t * experts : nullptr};
    cpu::TokenInput<T> in{options.token_offset + std::uint32_t(t), mu_i, scale_i, logit_variance};
    if constexpr (Sel::learned_tau) {
      in.tau = scratch.tau_out.data() + i * scratch.tau_out.cols();
      in.tau_width = scratch.tau_out.cols();
    }
    if constexpr (P::weight_space) {  // MeanOnly routes the mean logits, W u + b with the mean weights
      in.samples = Router::sampler_type::draws ? scratch.samples.data() + i * router.sampler().samples * experts : mu_i;
      in.sample_stride = experts;
    }
    pipeline.run(in, o);
  }
}

}  // namespace cpu

template <class Router, class In>
void Cpu::route(const Router& router, const MatrixView<In>& hidden, const RouteOptions& options,
                Routing<typename Router::scalar>& out) const {
  using T = typename Router::scalar;
  const Index tokens = hidden.rows(), experts = router.posterior().experts(),
              k = router.selector().convention.top_k;
  const Index tile_size = cpu::tile_for(*this, tokens, cpu::tile_bytes(router));  // checks the tile first
  detail::require(threads >= 0, "Cpu", "threads = ", threads, " must be >= 0");

  out.ids.resize(tokens, k);
  out.weights.resize(tokens, k);
  out.signals.resize(tokens);
  out.logits.resize(options.keep_logits ? tokens : 0, options.keep_logits ? experts : 0);
  out.probs.resize(options.keep_probs ? tokens : 0, options.keep_probs ? experts : 0);

  // Rows of W and of the hidden states that share their L1 sets (cpu::rows_collide) slow
  // the first projection by 5-12%: a call with at least as many tokens as W has rows
  // spreads W's rows once, a shorter one moves each tile's hidden states instead (a decode
  // step copies 8 KiB rather than W). A converted tile (In != T) is moved anyway.
  // Every copy gives the same logits, bit for bit, as the weights and hidden states
  // themselves.
  const auto& post = router.posterior();
  const Index dim = post.dim(), rows = post.experts() + post.hidden();
  out.projection.resize(options.keep_projection ? tokens : 0, options.keep_projection ? router.projection_width() : 0);
  cpu::TileWeights<T> weights{post.input_weight(), dim};
  auto& copies = cpu::thread_local_scratch<cpu::WeightCopies<T>>();  // this thread's
  weights.place_hidden = !std::is_same_v<In, T>;
  if (std::is_same_v<In, T> && cpu::rows_collide(hidden.data(), hidden.outerStride(), weights.input, dim)) {
    if (tokens >= rows)
      weights.input = cpu::spread_rows(weights.input, rows, dim, copies.input, weights.ld_input);
    else
      weights.place_hidden = true;
  }
  const Index tiles = (tokens + tile_size - 1) / tile_size;
  const int nthreads = int(std::min<Index>(tiles, cpu::thread_count(*this)));
  using P = typename Router::posterior_type;
  constexpr bool encoder_head = P::stochastic && !P::weight_space;
  const bool transpose_head = cpu::lane_trees<T> && tokens >= cpu::head_copy_tokens * nthreads;

  cpu::FirstError error;
  using Pipeline = cpu::TokenPipeline<typename Router::posterior_type, typename Router::sampler_type,
                                      typename Router::selector_type>;
  // One thread's walk over its tiles; `for_tiles` hands it the tile indices.
  auto walk = [&](auto&& for_tiles) {
    auto& scratch = cpu::thread_local_scratch<cpu::TileScratch<T>>();
    auto& pipeline = cpu::thread_local_scratch<Pipeline>();
    cpu::TileWeights<T> own = weights;
    bool configured = false;
    for_tiles([&](Index b) {
      const Index begin = b * tile_size, end = std::min(tokens, begin + tile_size);
      try {
        if (!configured) {
          pipeline.configure(router.posterior(), router.sampler(), router.selector(), router.stream());
          if constexpr (encoder_head)
            if (transpose_head)
              own.head_t = cpu::transpose_padded(post.head_weight(), post.experts() + post.head_size(),
                                                 post.hidden(),
                                                 cpu::thread_local_scratch<cpu::WeightCopies<T>>().head_t,
                                                 own.ld_head_t);
          configured = true;
        }
        cpu::route_tile(router, hidden, begin, end, own, options, scratch, pipeline, out, error);
      } catch (const std::exception& e) {  // exceptions must not cross the parallel region
        error.record(begin, e.what());
      }
    });
  };
  auto serial = [&](auto&& body) {
    for (Index b = 0; b < tiles; ++b) body(b);
  };
#if defined(_OPENMP)
  // A single tile (a decode step) skips the parallel region: its fork and join cost
  // a sizeable share of one token's routing.
  if (nthreads > 1) {
#pragma omp parallel num_threads(nthreads)
    walk([&](auto&& body) {
#pragma omp for schedule(dynamic)
      for (Index b = 0; b < tiles; ++b) body(b);
    });
  } else {
    walk(serial);
  }
#else
  walk(serial);
#endif
  if (error.token >= 0) throw invalid_argument(error.message);
}

}  // namespace vmoer
