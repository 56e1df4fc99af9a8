// MeanOnly: no sampling; the posterior mean is routed as a single sample.
#pragma once

#include "vmoer/config.hpp"
#include "vmoer/sampler/aggregate.hpp"

namespace vmoer {

/// Routes the posterior mean. Uncertainty signals reduce to tr(Sigma) and the gate entropy.
struct MeanOnly {
  Index samples = 1;                      ///< always one
  Aggregate aggregate = Aggregate::probs; ///< irrelevant with one sample
  static constexpr bool draws = false;    ///< the one sample is the mean
};

/// Nothing to check.
inline void validate(const MeanOnly&) {}

}  // namespace vmoer
