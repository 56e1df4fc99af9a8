// TopK: the deterministic selector of every real model, in any Convention.
#pragma once

#include <vector>

#include "vmoer/selector/convention.hpp"
#include "vmoer/selector/select.hpp"

namespace vmoer {

/// Deterministic top-K selection under a routing convention.
struct TopK {
  Convention convention{};              ///< how scores become K experts and weights
  std::vector<float> selection_bias{};  ///< added to the scores for selection only (empty: none), e.g. DeepSeek-V3's e_score_correction_bias
  /// Whether selection draws Gumbel noise.
  bool sampled() const { return false; }
  static constexpr bool learned_tau = false; ///< no per-token temperature
  /// The temperature dividing the logits: 1.
  double temperature() const { return 1.0; }
};

namespace detail {

/// Shared validation of the selectors' plain fields.
inline void validate_selector(const Convention& c, const std::vector<float>& bias, double tau, Index experts,
                              const char* where) {
  validate(c, experts, where);
  require(bias.empty() || Index(bias.size()) == experts, where, "selection_bias has ", bias.size(),
          " entries, expected E = ", experts);
  for (std::size_t e = 0; e < bias.size(); ++e)
    require(std::isfinite(bias[e]), where, "selection_bias[", e, "] = ", bias[e], " is not finite");
  require(std::isfinite(tau) && tau > 0, where, "temperature T = ", tau, " must be finite and > 0");
}

}  // namespace detail

/// Throws vmoer::invalid_argument unless the selector fits E experts.
inline void validate(const TopK& s, Index experts) {
  detail::validate_selector(s.convention, s.selection_bias, 1.0, experts, "TopK");
}

}  // namespace vmoer
