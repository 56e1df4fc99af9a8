// vmoer::backward: the gradients of a route() call.
//
//   auto r = router.route(hidden, {.token_offset = offset, .keep_probs = true, .keep_projection = true});
//   ... framework computes dL/d r.weights [T, K] (and dL/d r.probs [T, E]) ...
//   auto g = vmoer::backward(router, hidden, r, dweights, dprobs,
//                            {.token_offset = offset, .regularisers = {.kl_weight = beta}});
//   // g.posterior, g.selector: same layouts as the parameters; g.hidden: dL/dhidden [T, D];
//   // g.regularisers: the value of beta * KL (+ gamma * -log T), already in the gradients
//   vmoer::backward(router, hidden, r, dweights, dprobs, g, options);  // into g, reusing its buffers
//
// Contract: `hidden` and `token_offset` must be those of the route() call (the noise is
// regenerated from them); `routing.ids` is read, and those selections are held fixed,
// and so is `routing.projection` when route() kept it (RouteOptions::keep_projection).
// dprobs may be omitted (the 4-argument overload). Sampled selection (SampleK,
// LearnedTemperature with sample) takes a per-token `advantage` for the score-function
// term that reaches the temperature; see docs/training.md for the estimator. Samplers:
// MonteCarlo and MeanOnly (MomentMatched is rejected at compile time). Bad arguments
// throw vmoer::invalid_argument naming the argument.
//
// Stateless: nothing is kept from the forward but the chosen ids and, if asked for, the
// products of the hidden states [T, projection_width()] (the calling thread keeps only the
// buffers of the per-token gradients between calls, as route() keeps its scratch).
// Keeping them spares the backward its D-wide products, about a fifth of a training step
// (docs/training.md). The backward recomputes each tile's other projections and each
// token's samples (eps regenerated from the same Philox coordinates, dropout masks and
// SWAG draws likewise), differentiates the token's sampler and selector with the
// selection held fixed (grad/token_backward.hpp), keeps per-token gradients of the
// projections, and reduces them into parameter gradients over the whole batch in a fixed
// order (grad/kernels.hpp): bit-identical results for any thread count and tile size.
// Phase 1 runs over token tiles in parallel, like the forward; phase 2 over output
// columns.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "vmoer/grad/gradients.hpp"
#include "vmoer/grad/logit_backward.hpp"
#include "vmoer/grad/temperature_backward.hpp"
#include "vmoer/grad/token_backward.hpp"
#include "vmoer/grad/weight_space_backward.hpp"
#include "vmoer/router.hpp"
#include "vmoer/sampler/mean_only.hpp"
#include "vmoer/sampler/monte_carlo.hpp"

namespace vmoer {
namespace grad::detail {

template <class Router>
using posterior_backward =
    std::conditional_t<Router::posterior_type::weight_space && Router::sampler_type::draws,
                       WeightSampleBackward<typename Router::posterior_type>,
                       LogitBackward<typename Router::posterior_type, Router::sampler_type::draws>>;

/// Number of samples each token's sampler averages.
template <class Router>
Index samples_of(const Router& router) {
  return Router::posterior_type::stochastic && Router::sampler_type::draws ? router.sampler().samples : 1;
}

/// Hidden rows as T: the input itself when it is T, a converted copy otherwise.
template <class T, class In>
struct Rows {
  explicit Rows(const MatrixView<In>& hidden) {
    if constexpr (std::is_same_v<In, T>) {
      data = hidden.data();
      ld = hidden.outerStride();
    } else {
      copy = hidden.template cast<T>();
      data = copy.data();
      ld = copy.cols();
    }
  }
  Matrix<T> copy;
  const T* data = nullptr;
  Index ld = 0;
};

/// Index of the first non-finite entry of m (row-major), or -1.
template <class M>
Index first_non_finite(const M& m) {
  // x - x is 0 exactly when x is finite, so the sum is 0 or NaN: one vectorised pass
  // (13x faster than testing each entry, 45x faster than allFinite() for 256 x 2048
  // floats); the search runs only to name the entry.
  if (std::isfinite(double((m.array() - m.array()).sum()))) return -1;
  for (Index i = 0; i < m.rows(); ++i)
    for (Index j = 0; j < m.cols(); ++j)
      if (!std::isfinite(double(m(i, j)))) return i * m.cols() + j;
  return -1;
}

/// A kept projection is empty or [T, Router::projection_width()], and finite.
template <class Router>
void require_projection(const Router& router, const Matrix<typename Router::scalar>& projection, Index tokens,
                        const char* where) {
  using vmoer::detail::require;
  const Index width = router.projection_width();
  require(projection.size() == 0 || (projection.rows() == tokens && projection.cols() == width), where,
          "routing.projection is [", projection.rows(), ", ", projection.cols(),
          "], expected empty or [T, projection_width()] = [", tokens, ", ", width, "]");
  const Index bad = first_non_finite(projection);
  require(bad < 0, where, "routing.projection has a non-finite entry at flat index ", bad);
}

template <class Router, class In>
void validate(const Router& router, const MatrixView<In>& hidden, const Routing<typename Router::scalar>& routing,
              const MatrixView<typename Router::scalar>& dweights, const MatrixView<typename Router::scalar>& dprobs,
              const BackwardOptions<typename Router::scalar>& o) {
  using vmoer::detail::require;
  using P = typename Router::posterior_type;
  const char* where = "backward";
  const Index tokens = hidden.rows(), experts = router.posterior().experts(),
              k = router.selector().convention.top_k;
  require(hidden.cols() == router.posterior().dim(), where, "hidden has ", hidden.cols(),
          " columns, expected the router's input dimension D = ", router.posterior().dim());
  require(std::uint64_t(o.token_offset) + std::uint64_t(tokens) <= (std::uint64_t(1) << 32), where,
          "token_offset + T exceeds 2^32 token indices");
  require(routing.ids.rows() == tokens && routing.ids.cols() == k, where, "routing.ids is [", routing.ids.rows(), ", ",
          routing.ids.cols(), "], expected [T, K] = [", tokens, ", ", k, "]");
  for (Index t = 0; t < tokens; ++t)
    for (Index j = 0; j < k; ++j)
      require(routing.ids(t, j) >= 0 && routing.ids(t, j) < experts, where, "routing.ids[", t, ", ", j, "] = ",
              routing.ids(t, j), " is not an expert of E = ", experts);
  require(dweights.rows() == tokens && dweights.cols() == k, where, "dweights is [", dweights.rows(), ", ",
          dweights.cols(), "], expected [T, K] = [", tokens, ", ", k, "]");
  require(dprobs.size() == 0 || (dprobs.rows() == tokens && dprobs.cols() == experts), where, "dprobs is [",
          dprobs.rows(), ", ", dprobs.cols(), "], expected empty or [T, E] = [", tokens, ", ", experts, "]");
  require_projection(router, routing.projection, tokens, where);
  for (const auto& [m, name] : {std::pair{first_non_finite(dweights), "dweights"},
                                std::pair{first_non_finite(dprobs), "dprobs"},
                                std::pair{first_non_finite(hidden), "hidden"}})
    require(m < 0, where, name, " has a non-finite entry at flat index ", m);
  for (std::size_t t = 0; t < o.advantage.size(); ++t)
    require(std::isfinite(o.advantage[t]), where, "advantage[", t, "] = ", o.advantage[t], " is not finite");
  require(o.advantage.empty() || Index(o.advantage.size()) == tokens, where, "advantage has ", o.advantage.size(),
          " entries, expected T = ", tokens);
  require(o.advantage.empty() || router.selector().sampled(), where,
          "an advantage (score-function term) needs a sampled selection (SampleK, LearnedTemperature with sample)");
  require(o.valid.empty() || Index(o.valid.size()) == tokens, where, "valid has ", o.valid.size(),
          " entries, expected T = ", tokens);
  const Regularisers& r = o.regularisers;
  require(std::isfinite(r.kl_weight) && r.kl_weight >= 0, where, "kl_weight = ", r.kl_weight,
          " must be finite and >= 0");
  require(r.kl_weight == 0 || grad::has_kl<P>, where,
          "kl_weight > 0 needs a Gaussian logit posterior (MeanField, FullCovariance, LowRank)");
  require(std::isfinite(r.prior_sigma) && r.prior_sigma > 0, where, "prior_sigma = ", r.prior_sigma,
          " must be finite and > 0");
  require(std::isfinite(r.temperature_penalty) && r.temperature_penalty >= 0, where, "temperature_penalty = ",
          r.temperature_penalty, " must be finite and >= 0");
  require(r.temperature_penalty == 0 || Router::selector_type::learned_tau, where,
          "temperature_penalty > 0 needs a LearnedTemperature selector");
}

template <class Router, class In>
void backward(const Router& router, const MatrixView<In>& hidden, const Routing<typename Router::scalar>& routing,
              const MatrixView<typename Router::scalar>& dweights, const MatrixView<typename Router::scalar>& dprobs,
              const BackwardOptions<typename Router::scalar>& o, Gradients<typename Router::scalar>& g) {
  using T = typename Router::scalar;
  using P = typename Router::posterior_type;
  using Sel = typename Router::selector_type;
  using Sampler = typename Router::sampler_type;
  static_assert(std::is_same_v<typename Router::backend_type, Cpu>, "vmoer::backward runs on the CPU backend");
  static_assert(std::is_same_v<Sampler, MonteCarlo> || std::is_same_v<Sampler, MeanOnly>,
                "vmoer::backward supports the MonteCarlo and MeanOnly samplers");
  validate(router, hidden, routing, dweights, dprobs, o);

  const P& post = router.posterior();
  const Sel& sel = router.selector();
  const Cpu& cpu = router.backend();
  const Index tokens = hidden.rows(), experts = post.experts(), samples = samples_of(router),
              tile = vmoer::cpu::tile_for(cpu, tokens, vmoer::cpu::tile_bytes(router));
  const Rows<T, In> x(hidden);

  g.posterior.reset(post.parameters().layout());
  if constexpr (Sel::learned_tau)
    g.selector.reset(sel.parameters().layout());
  else
    g.selector = {};
  g.hidden.resize(o.hidden_gradient ? tokens : 0, o.hidden_gradient ? post.dim() : 0);  // finish() writes every entry
  g.regularisers = T(0);

  using PB = posterior_backward<Router>;
  using TB = grad::TemperatureBackward<Sel, T>;
  PB pb = [&] {
    if constexpr (P::weight_space && Sampler::draws)
      return PB(post, tokens, samples, router.stream(), o.token_offset);
    else
      return PB(post, tokens, samples, router.stream(), T(o.regularisers.prior_sigma * o.regularisers.prior_sigma));
  }();
  TB tb(sel, experts, tokens);
  const std::vector<T> weight = vmoer::detail::token_weights<T>(o.valid, tokens, o.regularisers.reduction);
  const T beta = T(o.regularisers.kl_weight), gamma = T(o.regularisers.temperature_penalty);
  std::vector<T> terms(std::size_t(tokens), T(0));

  struct Thread {
    typename PB::Tile posterior;
    typename TB::Tile temperature;
    grad::TokenBackward<T> token;
  };
  grad::parallel_for(
      cpu, (tokens + tile - 1) / tile,
      [&] {
        return Thread{pb.make_tile(), tb.make_tile(),
                      grad::TokenBackward<T>(sel.convention, experts, samples, router.sampler().aggregate,
                                             sel.sampled())};
      },
      [&](Index b, Thread& th) {
        const Index begin = b * tile, m = std::min(tile, tokens - begin);
        const T* xb = x.data + begin * x.ld;
        pb.forward_tile(xb, x.ld, m, o.token_offset + std::uint32_t(begin), KeptRows<T>(routing.projection, begin, 0),
                        th.posterior);
        tb.forward_tile(xb, x.ld, m, KeptRows<T>(routing.projection, begin, router.temperature_column()), th.temperature);
        for (Index i = 0; i < m; ++i) {
          const Index t = begin + i;
          pb.fill_samples(i, o.token_offset + std::uint32_t(t), th.token, th.posterior);
          const grad::TokenCotangent<T> up{routing.ids.data() + t * routing.ids.cols(),
                                           dweights.data() + t * dweights.outerStride(),
                                           dprobs.size() ? dprobs.data() + t * dprobs.outerStride() : nullptr,
                                           o.advantage.empty() ? nullptr : o.advantage.data() + t};
          th.token.run(tb.tau(i, th.temperature), up);
          const T w = weight[std::size_t(t)];
          terms[std::size_t(t)] = beta * w * pb.token_adjoint(i, t, th.token, th.posterior, beta * w) +
                                  gamma * w * tb.token_adjoint(i, t, th.token.dtau(), th.temperature, gamma * w);
        }
        pb.finish_tile(begin, m, th.posterior);
        tb.finish_tile(begin, m, th.temperature);
      });
  for (const T v : terms) g.regularisers += v;

  Matrix<T>* dx = o.hidden_gradient ? &g.hidden : nullptr;
  pb.finish(cpu, x.data, x.ld, g.posterior, dx);
  tb.finish(cpu, x.data, x.ld, g.selector, dx);
}

// The public overloads' common body: `out` is left empty on an exception.
template <class Router, class In>
void backward_into(const Router& router, const MatrixView<In>& hidden, const Routing<typename Router::scalar>& routing,
                   const MatrixView<typename Router::scalar>& dweights,
                   const MatrixView<typename Router::scalar>& dprobs,
                   const BackwardOptions<typename Router::scalar>& options, Gradients<typename Router::scalar>& out) {
  try {
    backward(router, hidden, routing, dweights, dprobs, options, out);
  } catch (...) {
    out = Gradients<typename Router::scalar>{};
    throw;
  }
}

}  // namespace grad::detail

/// Gradients of a route() call from dL/dweights [T, K]: for every parameter of the
/// posterior and the selector, and for `hidden` [T, D] (the same rows route() took).
/// `routing` is what route() returned for them (its ids are read, and its projection
/// when route() kept it).
template <class Router, class Derived>
Gradients<typename Router::scalar> backward(const Router& router, const Eigen::MatrixBase<Derived>& hidden,
                                            const Routing<typename Router::scalar>& routing,
                                            const MatrixView<typename Router::scalar>& dweights,
                                            const BackwardOptions<typename Router::scalar>& options = {}) {
  using T = typename Router::scalar;
  const Matrix<T> none;
  Gradients<T> out;
  grad::detail::backward_into(router, MatrixView<typename Derived::Scalar>(hidden.derived()), routing, dweights,
                              MatrixView<T>(none), options, out);
  return out;
}

/// As above, with dL/dprobs [T, E] too (the averaged scores, Routing::probs).
template <class Router, class Derived>
Gradients<typename Router::scalar> backward(const Router& router, const Eigen::MatrixBase<Derived>& hidden,
                                            const Routing<typename Router::scalar>& routing,
                                            const MatrixView<typename Router::scalar>& dweights,
                                            const MatrixView<typename Router::scalar>& dprobs,
                                            const BackwardOptions<typename Router::scalar>& options = {}) {
  Gradients<typename Router::scalar> out;
  grad::detail::backward_into(router, MatrixView<typename Derived::Scalar>(hidden.derived()), routing, dweights,
                              dprobs, options, out);
  return out;
}

/// The same gradients written into `out`, whose buffers are reused: a training loop that
/// passes the same Gradients step after step allocates none of them again once warm
/// (their fresh pages had cost the full-covariance backward about a fifth of its time).
/// dprobs may be empty. On an exception `out` is left empty, never half-written.
template <class Router, class Derived>
void backward(const Router& router, const Eigen::MatrixBase<Derived>& hidden,
              const Routing<typename Router::scalar>& routing, const MatrixView<typename Router::scalar>& dweights,
              const MatrixView<typename Router::scalar>& dprobs, Gradients<typename Router::scalar>& out,
              const BackwardOptions<typename Router::scalar>& options = {}) {
  grad::detail::backward_into(router, MatrixView<typename Derived::Scalar>(hidden.derived()), routing, dweights,
                              dprobs, options, out);
}

namespace grad::detail {

// kl_divergence's body; `projection`, when not empty, is what route() kept (Routing::projection).
template <class Router, class In>
Vector<typename Router::scalar> kl_divergence(const Router& router, const MatrixView<In>& hidden,
                                              const Matrix<typename Router::scalar>& projection, double prior_sigma) {
  using T = typename Router::scalar;
  using P = typename Router::posterior_type;
  using vmoer::detail::require;
  static_assert(grad::has_kl<P>, "kl_divergence needs a Gaussian logit posterior");
  const Index tokens = hidden.rows();
  require(hidden.cols() == router.posterior().dim(), "kl_divergence", "hidden has ", hidden.cols(),
          " columns, expected D = ", router.posterior().dim());
  require(std::isfinite(prior_sigma) && prior_sigma > 0, "kl_divergence", "prior_sigma = ", prior_sigma,
          " must be finite and > 0");
  require_projection(router, projection, tokens, "kl_divergence");
  const Rows<T, In> x(hidden);
  const Index tile = cpu::tile_for(router.backend(), tokens, cpu::tile_bytes(router));
  const LogitBackward<P, false> pb(router.posterior(), 0, 1, router.stream(), T(prior_sigma * prior_sigma));
  Vector<T> out(tokens);
  parallel_for(
      router.backend(), (tokens + tile - 1) / tile, [&] { return pb.make_tile(); },
      [&](Index b, auto& th) {
        const Index begin = b * tile, m = std::min(tile, tokens - begin);
        pb.forward_tile(x.data + begin * x.ld, x.ld, m, 0, KeptRows<T>(projection, begin, 0), th);
        for (Index i = 0; i < m; ++i) out[begin + i] = pb.kl(i, th);
      });
  return out;
}

}  // namespace grad::detail

/// KL(q(l | u_t) || N(l_det(u_t), prior_sigma^2 I)) of every token (rows of hidden [T, D])
/// for a Gaussian logit posterior, in closed form.
template <class Router, class Derived>
Vector<typename Router::scalar> kl_divergence(const Router& router, const Eigen::MatrixBase<Derived>& hidden,
                                              double prior_sigma = 1.0) {
  return grad::detail::kl_divergence(router, MatrixView<typename Derived::Scalar>(hidden.derived()),
                                     Matrix<typename Router::scalar>(), prior_sigma);
}

/// The same from route()'s result for these rows: with RouteOptions::keep_projection it
/// reads routing.projection rather than recomputing the D-wide product, so that a loss
/// with the KL term costs one such product per step, not two.
template <class Router, class Derived>
Vector<typename Router::scalar> kl_divergence(const Router& router, const Eigen::MatrixBase<Derived>& hidden,
                                              const Routing<typename Router::scalar>& routing,
                                              double prior_sigma = 1.0) {
  return grad::detail::kl_divergence(router, MatrixView<typename Derived::Scalar>(hidden.derived()),
                                     routing.projection, prior_sigma);
}

}  // namespace vmoer
