// What a backward pass takes besides the upstream gradients, and what it returns.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "vmoer/error.hpp"
#include "vmoer/params.hpp"
#include "vmoer/types.hpp"

namespace vmoer {

/// How per-token terms are reduced over a batch.
enum class Reduction : int {
  mean = 0,  ///< mean over the valid tokens (0 when none is valid)
  sum = 1,   ///< sum over the valid tokens
};

/// The terms of the training loss that the router computes itself, beside the task
/// loss whose gradients the framework hands in:
///   kl_weight * reduce_t KL(q(l | u_t) || N(l_det(u_t), prior_sigma^2 I))
///   + temperature_penalty * reduce_t (-(1/G) sum_g log T_g(u_t)).
struct Regularisers {
  double kl_weight = 0.0;            ///< beta; needs a posterior with a closed-form KL (the Gaussians)
  double prior_sigma = 1.0;          ///< s, the prior's standard deviation around the deterministic logits
  double temperature_penalty = 0.0;  ///< gamma of the -log T regulariser; needs a LearnedTemperature
  Reduction reduction = Reduction::mean;  ///< over the valid tokens
};

/// Options of one backward call.
template <class T>
struct BackwardOptions {
  std::uint32_t token_offset = 0;       ///< the RouteOptions::token_offset of the forward call
  bool hidden_gradient = true;          ///< fill Gradients::hidden
  std::span<const T> advantage{};       ///< [T] per-token loss minus a baseline: the score-function term of sampled selection (empty: none)
  std::span<const std::uint8_t> valid{};  ///< [T] padding mask for the regularisers, nonzero = valid (empty: all valid)
  Regularisers regularisers{};          ///< KL and temperature terms added to the loss
};

/// Gradients of one backward call, in buffers with the layouts of the parameters.
template <class T>
struct Gradients {
  Parameters<T> posterior;  ///< same layout as router.posterior().parameters()
  Parameters<T> selector;   ///< same layout as the selector's parameters (empty for TopK, Temperature, SampleK)
  Matrix<T> hidden;         ///< [T, D] dL/dhidden, when BackwardOptions::hidden_gradient
  T regularisers = T(0);    ///< value of the Regularisers terms, whose gradients are included above
};

namespace detail {

/// Weight of token t in a reduction: valid_t / (number valid) for the mean, valid_t for the sum.
template <class T>
std::vector<T> token_weights(std::span<const std::uint8_t> valid, Index tokens, Reduction reduction) {
  std::vector<T> w(std::size_t(tokens), T(1));
  Index count = tokens;
  if (!valid.empty()) {
    count = 0;
    for (Index t = 0; t < tokens; ++t) count += (w[std::size_t(t)] = valid[std::size_t(t)] ? T(1) : T(0)) > T(0);
  }
  if (reduction == Reduction::mean)
    for (T& x : w) x = count > 0 ? x / T(count) : T(0);
  return w;
}

}  // namespace detail
}  // namespace vmoer
