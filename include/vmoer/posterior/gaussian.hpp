// Gaussian posteriors over the router logits of one token, q(l | u) = N(mu(u), Sigma(u)),
// with the papers' encoder:
//   mu(u)    = W u + b + dmu(h)          (pre-trained router plus a learned residual)
//   h        = relu(W1 u + b1)            (shared trunk, D -> H)
//   dmu(h)   = Wm h + bm                  (mean head, H -> E)
//   s(h)     = Ws h + bs                  (scale head, H -> Cov::head_size)
// The covariance policy Cov (Diagonal, Cholesky, LowRankDiagonal) says what s means.
//
// Layout: W and W1 are adjacent, as are b and b1, Wm and Ws, bm and bs, so a backend
// runs two projections per token block, [W; W1] on u and [Wm; Ws] on h.
// Initialisation: Wm = bm = Ws = 0, so the untrained mean is the deterministic router
// and every logit starts with standard deviation init_sigma; W1, b1 ~ U(+-1/sqrt(D)).
#pragma once

#include <cmath>
#include <cstdint>

#include "vmoer/config.hpp"
#include "vmoer/params.hpp"
#include "vmoer/posterior/init.hpp"
#include "vmoer/posterior/linear_router.hpp"

namespace vmoer {
namespace detail {

/// Sum of squares of n entries: tr(Sigma) of a covariance S S^T whose factor S has
/// exactly these free entries (the Cholesky factor; the diagonal and V of low rank).
/// Sixteen interleaved partial sums joined pairwise, a fixed order that a CPU runs as SIMD
/// batches: one chain of n dependent additions took 1.5 us a token at E = 64 (2080
/// entries of the Cholesky factor), a quarter of the full-covariance router's time.
template <class T>
VMOER_HOST_DEVICE inline T squared_norm(const T* x, Index n) {
  constexpr Index lanes = 16;
  T part[lanes] = {};
  Index i = 0;
  for (; i + lanes <= n; i += lanes)
    for (Index j = 0; j < lanes; ++j) part[j] += x[i + j] * x[i + j];
  for (Index j = 0; i + j < n; ++j) part[j] += x[i + j] * x[i + j];
  for (Index half = lanes / 2; half > 0; half /= 2)
    for (Index j = 0; j < half; ++j) part[j] += part[j + half];
  return part[0];
}

}  // namespace detail

/// Shape and initialisation of a Gaussian posterior's encoder.
struct EncoderOptions {
  Index hidden = 64;        ///< width H of the shared trunk
  Index rank = 0;           ///< rank r of the factor V (LowRank only)
  double init_sigma = 0.1;  ///< initial standard deviation of every logit
  std::uint64_t seed = 0;   ///< seed of the trunk's initialisation
};

/// A Gaussian over the logits whose mean and covariance an encoder predicts per token.
template <class Cov, class T>
class Gaussian {
 public:
  using scalar = T;                        ///< parameter and compute type
  using covariance = Cov;                  ///< covariance policy
  static constexpr bool stochastic = true; ///< samples differ from the mean
  static constexpr bool weight_space = false; ///< the distribution is over the logits

  /// Slots of the parameter buffer, in buffer order.
  enum slot : Index {
    router_weight = 0,
    trunk_weight = 1,
    router_bias = 2,
    trunk_bias = 3,
    mean_weight = 4,
    scale_weight = 5,
    mean_bias = 6,
    scale_bias = 7,
  };

  /// A posterior around the router W [E, D], b [E] (empty: zero bias).
  Gaussian(MatrixView<T> weight, const Vector<T>& bias, const EncoderOptions& options = {})
      : Gaussian(weight.rows(), weight.cols(), options) {
    detail::set_router(params_, router_weight, router_bias, weight, bias, where());
  }

  /// A posterior with zero router weights, to be filled by loading parameters.
  Gaussian(Index experts, Index dim, const EncoderOptions& options = {})
      : experts_(checked_experts(experts, dim)),
        hidden_(options.hidden),
        rank_(options.rank),
        params_(layout(experts, dim, checked_hidden(options), Cov::head_size(experts, checked_rank(options)))) {
    detail::require(std::isfinite(options.init_sigma) && options.init_sigma > 0, where(), "init_sigma = ",
                    options.init_sigma, " must be finite and > 0");
    const T bound = T(1) / std::sqrt(T(dim));
    detail::uniform_init(params_.data(trunk_weight), hidden_ * dim, bound, options.seed, std::uint32_t(trunk_weight));
    detail::uniform_init(params_.data(trunk_bias), hidden_, bound, options.seed, std::uint32_t(trunk_bias));
    const T log_variance = T(2 * std::log(options.init_sigma));
    for (Index e = 0; e < experts_; ++e) params_.data(scale_bias)[e] = log_variance;
  }

  /// The layout of a posterior with E experts, input D, trunk H and scale head P.
  static ParameterLayout layout(Index experts, Index dim, Index hidden, Index head) {
    ParameterLayout l;
    l.add("router.weight", experts, dim);
    l.add("encoder.trunk.weight", hidden, dim);
    l.add("router.bias", 1, experts);
    l.add("encoder.trunk.bias", 1, hidden);
    l.add("encoder.mean.weight", experts, hidden);
    l.add("encoder.scale.weight", head, hidden);
    l.add("encoder.mean.bias", 1, experts);
    l.add("encoder.scale.bias", 1, head);
    return l;
  }

  /// E.
  Index experts() const { return experts_; }
  /// D.
  Index dim() const { return params_.layout()[router_weight].cols; }
  /// H.
  Index hidden() const { return hidden_; }
  /// r (0 unless low-rank).
  Index rank() const { return rank_; }
  /// Width of the scale head.
  Index head_size() const { return Cov::head_size(experts_, rank_); }
  /// Normals per sample.
  Index noise_size() const { return Cov::noise_size(experts_, rank_); }

  /// The parameter buffer.
  Parameters<T>& parameters() { return params_; }
  /// The parameter buffer, read-only.
  const Parameters<T>& parameters() const { return params_; }

  /// [W; W1], [E + H, D].
  const T* input_weight() const { return params_.data(router_weight); }
  /// [b; b1], [E + H].
  const T* input_bias() const { return params_.data(router_bias); }
  /// [Wm; Ws], [E + P, H].
  const T* head_weight() const { return params_.data(mean_weight); }
  /// [bm; bs], [E + P].
  const T* head_bias() const { return params_.data(mean_bias); }

 private:
  static const char* where() { return Cov::name; }
  static Index checked_experts(Index experts, Index dim) {
    detail::check_router_shape(experts, dim, 0, where());
    return experts;
  }
  static Index checked_hidden(const EncoderOptions& o) {
    detail::require(o.hidden >= 1, where(), "encoder hidden width H = ", o.hidden, " must be >= 1");
    return o.hidden;
  }
  static Index checked_rank(const EncoderOptions& o) {
    detail::require(o.rank >= 0, where(), "rank r = ", o.rank, " must be >= 0");
    return o.rank;
  }

  Index experts_;
  Index hidden_;
  Index rank_;
  Parameters<T> params_;
};

}  // namespace vmoer
