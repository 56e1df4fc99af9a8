// Per-token uncertainty signals, computed from the gate distributions
// p_s = softmax(z_s / T) of the S samples and their mean p = (1/S) sum_s p_s:
//   logit_variance      tr(Sigma) of the posterior (0 for Dirac)
//   mc_variance         sum_e of the unbiased sample variance of p_s(e),
//                       (sum_s |p_s|^2 - S |p|^2) / (S - 1) clamped at 0 (0 when S = 1)
//   entropy             H(p) = -sum_e p(e) log p(e)
//   mutual_information  H(p) - (1/S) sum_s H(p_s), the epistemic part of H(p), clamped at 0
//   temperature         the temperature T of the token (1 without one)
#pragma once

#include "vmoer/config.hpp"
#include "vmoer/types.hpp"

namespace vmoer {

/// The signals of a batch, one entry per token.
template <class T>
struct Signals {
  Vector<T> logit_variance;      ///< tr(Sigma)
  Vector<T> mc_variance;         ///< total MC variance of the gate probabilities
  Vector<T> entropy;             ///< entropy of the averaged gate distribution
  Vector<T> mutual_information;  ///< entropy minus mean per-sample entropy
  Vector<T> temperature;         ///< the token's temperature

  /// Allocates n tokens.
  void resize(Index n) {
    logit_variance.resize(n);
    mc_variance.resize(n);
    entropy.resize(n);
    mutual_information.resize(n);
    temperature.resize(n);
  }
};

}  // namespace vmoer
