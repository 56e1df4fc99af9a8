// Floating-point operations per token of a router and of the MoE layer around it,
// counted from the shapes alone.
//
// Counting rules (per token):
//   * a multiply-add is 2 FLOPs, so a [m, n] matrix times a vector is 2 m n; biases,
//     ReLU, comparisons (top-K) and integer work (Philox) are not counted;
//   * an exponential, logarithm, square root or trigonometric function is 1 FLOP;
//   * a normal draw is 4 FLOPs: Box-Muller spends log, sqrt, sin, cos and four multiplies
//     on a pair.
// Router parts:
//   projection   2 D E                                    the linear router W u
//   encoder      2 D H + 2 H (E + P) + E                  trunk, mean and scale heads, exp of
//                                                         the E log-variances (Gaussian posteriors)
//   temperature  2 D H_t + 2 H_t G + 2 G                  VTSR's MLP and softplus (G = 1 or E)
//   sampling     S (4 N + 2 P [+ 2 D E + D] [+ E] + 10 E)  per sample: noise, L eps (every scale-
//                                                         head entry is one multiply-add), the
//                                                         re-projection of a weight-space sample
//                                                         [and MC dropout's input mask], [division by
//                                                         the temperature], softmax with its entropy
//                                                         (7 E) and the first two moments (3 E)
//   selection    3 E + [4 E] + [3 E] + 3 K                entropy of the mean, [MC variance when
//                                                         S > 1], [Gumbel keys], combine weights
// Drawing SWAG's weights happens once per batch, not per token, and is left out.
// MoE layer: the router, K experts (2 m d_model d_ff each, m = 3 matrices for SwiGLU,
// 2 for a plain MLP; the activation is not counted) and the weighted sum of their
// outputs (2 K d_model).
#pragma once

#include "vmoer/error.hpp"
#include "vmoer/types.hpp"

namespace vmoer::analysis {

/// What the FLOP count of a router depends on.
struct RouterShape {
  Index dim = 0;                 ///< D, router input width
  Index experts = 0;             ///< E
  Index top_k = 1;               ///< K
  Index hidden = 0;              ///< H, encoder trunk (0: no encoder)
  Index head = 0;                ///< P, scale-head width
  Index noise = 0;               ///< N, normals per sample
  Index samples = 1;             ///< S, logit samples per token
  bool tempered = false;         ///< logits are divided by a temperature
  bool gumbel = false;           ///< selection draws Gumbel noise
  Index temperature_hidden = 0;  ///< H_t of a learned temperature (0: none)
  Index temperature_width = 0;   ///< G, temperatures per token
  bool weight_samples = false;   ///< every sample re-projects the input (MC dropout, SWAG)
  bool input_dropout = false;    ///< every sample masks the input (MC dropout)
};

/// FLOPs per token of a router, by part.
struct RouterFlops {
  double projection = 0;   ///< the linear router
  double encoder = 0;      ///< the posterior's encoder
  double temperature = 0;  ///< the learned temperature
  double sampling = 0;     ///< everything done once per sample
  double selection = 0;    ///< signals, selection and combine weights
  /// The sum of the parts.
  double total() const { return projection + encoder + temperature + sampling + selection; }
};

/// FLOPs per token of a router of the given shape (rules at the top of this file).
inline RouterFlops router_flops(const RouterShape& s) {
  detail::require(s.dim >= 1 && s.experts >= 1 && s.top_k >= 1 && s.samples >= 1, "router_flops",
                  "D, E, K and S must be >= 1, got D = ", s.dim, ", E = ", s.experts, ", K = ", s.top_k,
                  ", S = ", s.samples);
  const double d = double(s.dim), e = double(s.experts), h = double(s.hidden), p = double(s.head),
               ht = double(s.temperature_hidden), g = double(s.temperature_width);
  RouterFlops f;
  f.projection = 2 * d * e;
  if (s.hidden > 0) f.encoder = 2 * d * h + 2 * h * (e + p) + e;
  if (s.temperature_hidden > 0) f.temperature = 2 * d * ht + 2 * ht * g + 2 * g;
  double per_sample = 4 * double(s.noise) + 2 * p + 10 * e;
  if (s.weight_samples) per_sample += 2 * d * e;
  if (s.input_dropout) per_sample += d;
  if (s.tempered) per_sample += e;
  f.sampling = double(s.samples) * per_sample;
  f.selection = 3 * e + (s.samples > 1 ? 4 * e : 0) + (s.gumbel ? 3 * e : 0) + 3 * double(s.top_k);
  return f;
}

/// The shape of a vmoer Router, read from its policies.
template <class Router>
RouterShape shape_of(const Router& router) {
  using P = typename Router::posterior_type;
  using Sel = typename Router::selector_type;
  const auto& post = router.posterior();
  const auto& sel = router.selector();
  RouterShape s;
  s.dim = post.dim();
  s.experts = post.experts();
  s.top_k = sel.convention.top_k;
  s.hidden = P::weight_space ? 0 : post.hidden();
  s.head = post.head_size();
  s.samples = P::stochastic && Router::sampler_type::draws ? router.sampler().samples : 1;
  s.noise = P::stochastic && !P::weight_space && Router::sampler_type::draws ? post.noise_size() : 0;
  s.gumbel = sel.sampled();
  s.weight_samples = P::weight_space && s.samples > 1;
  if constexpr (Sel::learned_tau) {
    s.tempered = true;
    s.temperature_hidden = sel.hidden();
    s.temperature_width = sel.width();
  } else {
    s.tempered = sel.temperature() != 1.0;
  }
  return s;
}

/// Feed-forward block of one expert.
enum class Ffn : int {
  mlp = 2,     ///< W2 act(W1 x): two matrices
  swiglu = 3,  ///< W2 (silu(W1 x) * W3 x): three matrices
};

/// FLOPs per token of one MoE layer, by part.
struct MoeLayerFlops {
  RouterFlops router;  ///< the router
  double experts = 0;  ///< the K chosen experts' feed-forward blocks
  double combine = 0;  ///< the weighted sum of the K outputs
  /// The whole layer.
  double total() const { return router.total() + experts + combine; }
  /// The router's fraction of the layer.
  double router_share() const { return router.total() / total(); }
};

/// FLOPs per token of an MoE layer with this router and K experts of width d_ff.
inline MoeLayerFlops moe_layer_flops(const RouterShape& router, Index d_model, Index d_ff, Ffn ffn = Ffn::swiglu) {
  detail::require(d_model >= 1 && d_ff >= 1, "moe_layer_flops", "d_model = ", d_model, " and d_ff = ", d_ff,
                  " must be >= 1");
  MoeLayerFlops f;
  f.router = router_flops(router);
  f.experts = 2.0 * double(int(ffn)) * double(d_model) * double(d_ff) * double(router.top_k);
  f.combine = 2.0 * double(router.top_k) * double(d_model);
  return f;
}

}  // namespace vmoer::analysis
