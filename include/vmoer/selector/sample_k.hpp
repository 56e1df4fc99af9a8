// SampleK: temperature sampling in selection space. K experts are drawn without
// replacement from the (sample-averaged) gate distribution at temperature T, by
// Gumbel-top-K: the K largest of log p_T(e) + G_e with G_e standard Gumbel.
// The combine weights then come from the untempered scores of the chosen experts
// under the convention, as in the thesis's temperature sampling.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "vmoer/rng/stream.hpp"
#include "vmoer/selector/top_k.hpp"

namespace vmoer {

/// Gumbel-top-K selection from softmax(l / T).
struct SampleK {
  Convention convention{};  ///< weights and K; groups and selection bias are not used when sampling
  double tau = 1.0;       ///< the sampling temperature T > 0
  /// Whether selection draws Gumbel noise.
  bool sampled() const { return true; }
  static constexpr bool learned_tau = false; ///< one temperature for every token
  /// The temperature dividing the logits for sampling.
  double temperature() const { return tau; }
};

/// Throws vmoer::invalid_argument unless the selector fits E experts.
inline void validate(const SampleK& s, Index experts) {
  detail::validate_selector(s.convention, {}, s.tau, experts, "SampleK");
  detail::require(s.convention.n_group == 1, "SampleK", "group-limited selection (n_group = ", s.convention.n_group,
                  ") is not defined for sampling");
  detail::require(s.convention.score != Score::raw, "SampleK",
                  "SampleK needs a softmax or sigmoid score: raw logits are not a distribution to sample from");
}

namespace selection {

/// Standard Gumbel from a 32-bit word. 24-bit uniforms in (0, 1) keep both logs finite.
template <class T>
VMOER_HOST_DEVICE inline T gumbel(std::uint32_t x) {
  using std::log;
  const T u = (T(x >> 8) + T(0.5)) * T(5.9604644775390625e-08);  // 2^-24
  return -log(-log(u));
}

/// Calls f(e, g_e) for e = 0 .. experts - 1 with the standard Gumbel noise g_e of
/// expert e: word e % 4 of Philox block e / 4 of (gumbel, token, sample 0), so one
/// block serves four experts. The one definition of sampled selection's noise.
template <class T, class F>
VMOER_HOST_DEVICE inline void for_each_gumbel(const rng::Stream& stream, std::uint32_t token, Index experts, F&& f) {
  rng::u32x4 words{};
  for (Index e = 0; e < experts; ++e) {
    if (e % 4 == 0) words = stream.block(rng::Purpose::gumbel, token, 0, std::uint32_t(e / 4));
    f(e, gumbel<T>(words[int(e % 4)]));
  }
}

/// Gumbel-top-K over log(probs): ids[0..K) by descending perturbed key (noise from
/// for_each_gumbel).
template <class T>
VMOER_HOST_DEVICE inline void sample_top_k(const T* probs, Index experts, Index k, const rng::Stream& stream,
                                           std::uint32_t token, std::int32_t* ids, T* keys) {
  using std::log;
  Index count = 0;
  for_each_gumbel<T>(stream, token, experts, [&](Index e, T g) {
    const T p = probs[e];
    insert_top(p > T(0) ? log(p) + g : -INFINITY, std::int32_t(e), keys, ids, count, k);
  });
}

}  // namespace selection
}  // namespace vmoer
