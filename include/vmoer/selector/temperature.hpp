// Temperature: top-K after dividing the logits by a fixed temperature T > 0,
// before the score. T > 1 flattens the gate distribution, T < 1 sharpens it.
#pragma once

#include <vector>

#include "vmoer/selector/top_k.hpp"

namespace vmoer {

/// Top-K on logits scaled by 1 / temperature.
struct Temperature {
  Convention convention{};              ///< how scores become K experts and weights
  double tau = 1.0;                   ///< the temperature T > 0
  std::vector<float> selection_bias{};  ///< as in TopK
  /// Whether selection draws Gumbel noise.
  bool sampled() const { return false; }
  static constexpr bool learned_tau = false; ///< one temperature for every token
  /// The temperature dividing the logits.
  double temperature() const { return tau; }
};

/// Throws vmoer::invalid_argument unless the selector fits E experts.
inline void validate(const Temperature& s, Index experts) {
  detail::validate_selector(s.convention, s.selection_bias, s.tau, experts, "Temperature");
}

}  // namespace vmoer
