// LearnedTemperature: VTSR, the variational temperature-scaled router. A small MLP
// on the token's hidden state predicts its temperature,
//   T(u) = min(softplus(Wt2 relu(Wt1 u + bt1) + bt2) + floor, ceiling),
// one shared temperature (width 1) or one per expert (width E). Experts are drawn
// by Gumbel-top-K from the gate distribution at T(u), or taken as the top K, and
// weighted from the untempered scores. T is a per-token uncertainty signal.
// Initialisation: Wt2 = 0 and bt2 = softplus^-1(1 - floor), so T(u) = 1 everywhere.
#pragma once

#include <cmath>
#include <cstdint>

#include "vmoer/params.hpp"
#include "vmoer/posterior/init.hpp"
#include "vmoer/selector/top_k.hpp"

namespace vmoer {

/// Shape and guards of a learned temperature.
struct TemperatureOptions {
  Index hidden = 32;        ///< width H of the MLP's hidden layer
  bool per_expert = false;  ///< one temperature per expert instead of one per token
  double floor = 0.05;      ///< eps: smallest temperature (guards against collapse)
  double ceiling = 20.0;    ///< largest temperature (guards against explosion)
  bool sample = true;       ///< Gumbel-top-K at T(u); false: deterministic top-K
  std::uint64_t seed = 0;   ///< seed of the hidden layer's initialisation
};

/// Per-token temperature predicted from the hidden state (VTSR).
template <class T>
class LearnedTemperature {
 public:
  using scalar = T;                          ///< parameter type
  static constexpr bool learned_tau = true;  ///< temperature per token

  /// Slots of the parameter buffer.
  enum slot : Index { trunk_weight = 0, trunk_bias = 1, head_weight = 2, head_bias = 3 };

  /// A learned temperature for routers with E experts and input dimension D.
  LearnedTemperature(Convention convention, Index experts, Index dim, const TemperatureOptions& options = {})
      : convention(convention), options_(options), experts_(experts) {
    detail::require(experts >= 1 && dim >= 1, where, "E = ", experts, " and D = ", dim, " must be >= 1");
    detail::require(options.hidden >= 1, where, "hidden width H = ", options.hidden, " must be >= 1");
    detail::require(std::isfinite(options.floor) && options.floor > 0 && options.floor < 1, where, "floor = ",
                    options.floor, " must be in (0, 1)");
    detail::require(std::isfinite(options.ceiling) && options.ceiling > 1, where, "ceiling = ", options.ceiling,
                    " must be finite and > 1");
    params_ = Parameters<T>(layout(dim, options.hidden, width()));
    const T bound = T(1) / std::sqrt(T(dim));
    detail::uniform_init(params_.data(trunk_weight), options.hidden * dim, bound, options.seed, 100);
    detail::uniform_init(params_.data(trunk_bias), options.hidden, bound, options.seed, 101);
    const T at_one = T(std::log(std::expm1(1.0 - options.floor)));  // softplus^-1(1 - floor)
    for (Index g = 0; g < width(); ++g) params_.data(head_bias)[g] = at_one;
  }

  /// The layout for input D, hidden H and G temperatures.
  static ParameterLayout layout(Index dim, Index hidden, Index width) {
    ParameterLayout l;
    l.add("temperature.trunk.weight", hidden, dim);
    l.add("temperature.trunk.bias", 1, hidden);
    l.add("temperature.head.weight", width, hidden);
    l.add("temperature.head.bias", 1, width);
    return l;
  }

  Convention convention;  ///< how scores become K experts and weights

  /// Whether selection draws Gumbel noise.
  bool sampled() const { return options_.sample; }
  /// Number of temperatures per token: 1 or E.
  Index width() const { return options_.per_expert ? experts_ : 1; }
  /// Width H of the hidden layer.
  Index hidden() const { return options_.hidden; }
  /// Input dimension D.
  Index dim() const { return params_.layout()[trunk_weight].cols; }
  /// The guards.
  const TemperatureOptions& options() const { return options_; }
  /// The parameter buffer.
  Parameters<T>& parameters() { return params_; }
  /// The parameter buffer, read-only.
  const Parameters<T>& parameters() const { return params_; }

  /// T = min(softplus(a) + floor, ceiling) for one pre-activation a.
  T temperature(T a) const {
    const T softplus = a > T(20) ? a : std::log1p(std::exp(a));
    const T t = softplus + T(options_.floor);
    return t < T(options_.ceiling) ? t : T(options_.ceiling);
  }

 private:
  static constexpr const char* where = "LearnedTemperature";
  TemperatureOptions options_;
  Index experts_;
  Parameters<T> params_;
};

/// Throws vmoer::invalid_argument unless the selector fits E experts.
template <class T>
void validate(const LearnedTemperature<T>& s, Index experts) {
  detail::validate_selector(s.convention, {}, 1.0, experts, "LearnedTemperature");
  detail::require(s.width() == 1 || s.width() == experts, "LearnedTemperature", "temperature width ", s.width(),
                  " must be 1 or E = ", experts);
  detail::require(!s.sampled() || s.convention.n_group == 1, "LearnedTemperature",
                  "group-limited selection is not defined for sampling");
  detail::require(!s.sampled() || s.convention.score != Score::raw, "LearnedTemperature",
                  "sampling needs a softmax or sigmoid score");
}

}  // namespace vmoer
