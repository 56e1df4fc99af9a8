// MonteCarlo: S reparameterised samples z_s = mu + L eps_s per token. eps_s comes
// from Philox at (seed, layer, logit_noise, token, s): a token's samples depend on
// nothing but its own coordinates (see rng/stream.hpp).
#pragma once

#include "vmoer/config.hpp"
#include "vmoer/error.hpp"
#include "vmoer/sampler/aggregate.hpp"

namespace vmoer {

/// Monte-Carlo averaging over S posterior samples.
struct MonteCarlo {
  Index samples = 35;                    ///< S; 35 is the papers' test-time value
  Aggregate aggregate = Aggregate::probs; ///< average scores (default) or logits
  static constexpr bool draws = true;     ///< samples carry posterior noise
};

/// Throws vmoer::invalid_argument unless S >= 1.
inline void validate(const MonteCarlo& s) {
  detail::require(s.samples >= 1, "MonteCarlo", "samples S = ", s.samples, " must be >= 1");
  detail::require(s.samples <= Index(0xFFFFFFFFu), "MonteCarlo", "samples S = ", s.samples, " exceeds 2^32 - 1");
}

}  // namespace vmoer
