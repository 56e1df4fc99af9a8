// How S logit samples become one score vector before selection.
#pragma once

namespace vmoer {

/// The averaging rule of a sampler.
enum class Aggregate : int {
  /// Mean of score(z_s): the Bayesian model average of the gate (MFVR/FCVR, the default).
  probs = 0,
  /// score(mean of z_s): the MC-dropout router's rule.
  logits = 1,
};

}  // namespace vmoer
