// MomentMatched: a deterministic approximation of the Bayesian model average
// E[score(z)] for z ~ N(mu, Sigma), with no samples. For the softmax, two expansions:
//   second_order (default): the second-order expansion in the moments of z around mu,
//       E[p] ~ p (1 + (d - 2 Sigma p + 2 p'Sigma p - p'd) / 2),  p = softmax(mu), d = diag(Sigma),
//       clamped at 0 and renormalised; exact to O(Sigma^2), best for sigma <~ 1;
//   pairwise_probit: E[p_i] ~ 1 / (1 + sum_{j != i} exp(-(mu_i - mu_j) / sqrt(1 + pi/8 Var(z_i - z_j)))),
//       renormalised (after Daunizeau 2017), Var(z_i - z_j) = Sigma_ii + Sigma_jj - 2 Sigma_ij;
//       better when variances are large and experts few.
// sigmoid: E[sigma(z_i)] ~ sigma(mu_i / sqrt(1 + pi/8 Sigma_ii)) (MacKay's probit approximation);
// raw:     E[z] = mu.
// Both use the full covariance, so correlated posteriors are handled. Their errors
// against S = 4096 Monte-Carlo samples are measured in docs/moment_matching.md.
// Cost: O(E^2 N) per token to form Sigma from the factor (N normals per sample).
#pragma once

#include <cmath>

#include "vmoer/config.hpp"
#include "vmoer/sampler/aggregate.hpp"

namespace vmoer {

/// The expansion of E[softmax(z)].
enum class Expansion : int {
  second_order = 0,     ///< Taylor expansion to second order in the moments (default)
  pairwise_probit = 1,  ///< pairwise probit approximation
};

/// Deterministic moment matching of the averaged gate; MI and MC variance are 0.
struct MomentMatched {
  Expansion expansion = Expansion::second_order;  ///< approximation of the softmax average
  Index samples = 1;                      ///< one deterministic evaluation
  Aggregate aggregate = Aggregate::probs; ///< probs: the approximation above; logits: score(mu)
  static constexpr bool draws = false;    ///< no posterior noise is drawn
};

/// Nothing to check.
inline void validate(const MomentMatched&) {}

namespace moments {

inline constexpr double pi_over_8 = 0.39269908169872415;

/// Second-order expansion of E[softmax(z)], z ~ N(mu, Sigma) (Sigma [E, E] row-major),
/// written to p; `work` holds E scratch values.
template <class T>
VMOER_HOST_DEVICE void softmax_mean_second_order(const T* mu, const T* sigma, Index experts, T* p, T* work) {
  using std::exp;
  T m = mu[0];
  for (Index i = 1; i < experts; ++i) m = mu[i] > m ? mu[i] : m;
  T total = T(0);
  for (Index i = 0; i < experts; ++i) total += p[i] = exp(mu[i] - m);
  for (Index i = 0; i < experts; ++i) p[i] /= total;
  T quad = T(0), diag = T(0);  // p' Sigma p and p' d
  for (Index i = 0; i < experts; ++i) {
    T sp = T(0);
    for (Index j = 0; j < experts; ++j) sp += sigma[i * experts + j] * p[j];
    work[i] = sp;
    quad += p[i] * sp;
    diag += p[i] * sigma[i * experts + i];
  }
  // The correction (d - 2 Sigma p + 2 p'Sigma p - p'd) / 2 sums to 0 over experts;
  // clamping at 0 keeps a distribution when the variance is too large for it.
  T corrected = T(0);
  for (Index i = 0; i < experts; ++i) {
    const T c = T(1) + T(0.5) * (sigma[i * experts + i] - T(2) * work[i] + T(2) * quad - diag);
    corrected += p[i] = c > T(0) ? p[i] * c : T(0);
  }
  for (Index i = 0; i < experts; ++i) p[i] /= corrected;
}

/// Pairwise probit approximation of E[softmax(z)], z ~ N(mu, Sigma), written to p.
template <class T>
VMOER_HOST_DEVICE void softmax_mean_pairwise(const T* mu, const T* sigma, Index experts, T* p) {
  using std::exp;
  using std::sqrt;
  T total = T(0);
  for (Index i = 0; i < experts; ++i) {
    T denominator = T(1);
    for (Index j = 0; j < experts; ++j) {
      if (j == i) continue;
      const T v = sigma[i * experts + i] + sigma[j * experts + j] - T(2) * sigma[i * experts + j];
      denominator += exp(-(mu[i] - mu[j]) / sqrt(T(1) + T(pi_over_8) * (v > T(0) ? v : T(0))));
    }
    p[i] = T(1) / denominator;
    total += p[i];
  }
  for (Index i = 0; i < experts; ++i) p[i] /= total;
}

/// E[sigmoid(z_i)] of z ~ N(mu, Sigma), written to q.
template <class T>
VMOER_HOST_DEVICE void sigmoid_mean(const T* mu, const T* sigma, Index experts, T* q) {
  using std::exp;
  using std::sqrt;
  for (Index i = 0; i < experts; ++i)
    q[i] = T(1) / (T(1) + exp(-mu[i] / sqrt(T(1) + T(pi_over_8) * sigma[i * experts + i])));
}

}  // namespace moments
}  // namespace vmoer
