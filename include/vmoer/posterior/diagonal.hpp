// Diagonal covariance: the mean-field variational router (MFVR).
//   scale head [E]: log-variances s;  sigma = exp(s / 2);  z = mu + sigma * eps.
// With the sampling go its adjoint (for the reparameterised gradient) and the KL
// divergence to the prior N(0, v I) on the residual mean, with its gradient:
//   KL = 1/2 [ (sum sigma^2 + |m|^2) / v - E + E log v - sum log sigma^2 ].
#pragma once

#include "vmoer/posterior/gaussian.hpp"

namespace vmoer {

/// Covariance policy Sigma = diag(sigma^2).
struct Diagonal {
  /// Name used in parameter files and messages.
  static constexpr const char* name = "mean_field";
  /// Logit e's noise is sigma_e eps_e alone: a sampler may form z_e = mu_e + sigma_e eps_e
  /// as each normal comes, without the vector of normals.
  static constexpr bool elementwise = true;
  /// Scale-head width: E log-variances.
  VMOER_HOST_DEVICE static constexpr Index head_size(Index experts, Index /*rank*/) { return experts; }
  /// Normals per sample.
  VMOER_HOST_DEVICE static constexpr Index noise_size(Index experts, Index /*rank*/) { return experts; }
  /// z += sigma * eps. `scale` holds the finalised head (first E entries already exp(s / 2)).
  /// Z is T, or a SIMD batch of T that holds one sample per lane (every covariance alike).
  template <class T, class Z>
  VMOER_HOST_DEVICE static void add_noise(const T* scale, const Z* eps, Z* z, Index experts, Index /*rank*/) {
    for (Index e = 0; e < experts; ++e) z[e] += scale[e] * eps[e];
  }
  /// tr(Sigma) = sum sigma^2.
  template <class T>
  VMOER_HOST_DEVICE static T trace(const T* scale, Index experts, Index /*rank*/) {
    return detail::squared_norm(scale, experts);
  }
  /// Adjoint of add_noise: dscale += (dz/dscale)^T dz for one sample (finalised head).
  template <class T>
  VMOER_HOST_DEVICE static void add_noise_gradient(const T* dz, const T* eps, T* dscale, Index experts,
                                                   Index /*rank*/) {
    for (Index e = 0; e < experts; ++e) dscale[e] += dz[e] * eps[e];
  }
  /// KL(N(m, Sigma) || N(0, v I)) for the residual mean m and the finalised head; adds
  /// `weight` times its gradient to dm and dscale (w.r.t. the finalised head) when they are set.
  template <class T>
  static T kl(const T* m, const T* scale, Index experts, Index /*rank*/, T v, T weight, T* dm, T* dscale) {
    using std::log;
    T sum = T(0);
    for (Index e = 0; e < experts; ++e) {
      const T s = scale[e];
      sum += (s * s + m[e] * m[e]) / v - T(1) + log(v) - T(2) * log(s);
      if (dm) dm[e] += weight * m[e] / v;
      if (dscale) dscale[e] += weight * (s / v - T(1) / s);
    }
    return sum / T(2);
  }
};

/// MFVR: Gaussian logits with a diagonal covariance predicted per token.
template <class T>
using MeanField = Gaussian<Diagonal, T>;

}  // namespace vmoer
