// Full covariance through a Cholesky factor: FCVR / VGLR.
//   scale head [E(E+1)/2]: E log-variances of the diagonal, L_jj = exp(s_j / 2),
//   then the strictly lower entries column by column (column j: rows j+1..E-1).
//   z = mu + L eps, Sigma = L L^T.
// Column order makes z += eps_j L[:, j] a contiguous axpy, which vectorises.
// With the sampling go its adjoint and the KL divergence to N(0, v I) on the residual
// mean m, with its gradient:
//   KL = 1/2 [ (|L|_F^2 + |m|^2) / v - E + E log v - 2 sum_j log L_jj ].
#pragma once

#include "vmoer/posterior/gaussian.hpp"

namespace vmoer {

/// Covariance policy Sigma = L L^T with L lower triangular.
struct Cholesky {
  /// Name used in parameter files and messages.
  static constexpr const char* name = "full_covariance";
  /// Each logit's noise mixes several normals (see Diagonal::elementwise).
  static constexpr bool elementwise = false;
  /// Scale-head width: the E(E+1)/2 entries of L.
  VMOER_HOST_DEVICE static constexpr Index head_size(Index experts, Index /*rank*/) {
    return experts * (experts + 1) / 2;
  }
  /// Normals per sample.
  VMOER_HOST_DEVICE static constexpr Index noise_size(Index experts, Index /*rank*/) { return experts; }
  /// Offset in the head of column j's strictly lower entries (rows j+1..E-1).
  VMOER_HOST_DEVICE static constexpr Index column(Index experts, Index j) {
    return experts + j * (2 * experts - j - 1) / 2;
  }
  /// z += L eps.
  template <class T, class Z>
  VMOER_HOST_DEVICE static void add_noise(const T* scale, const Z* eps, Z* z, Index experts, Index /*rank*/) {
    for (Index j = 0; j < experts; ++j) {
      const Z ej = eps[j];
      z[j] += scale[j] * ej;
      const T* col = scale + column(experts, j) - (j + 1);  // col[i] = L[i][j] for i > j
      for (Index i = j + 1; i < experts; ++i) z[i] += col[i] * ej;
    }
  }
  /// tr(Sigma) = ||L||_F^2.
  template <class T>
  VMOER_HOST_DEVICE static T trace(const T* scale, Index experts, Index rank) {
    return detail::squared_norm(scale, head_size(experts, rank));
  }
  /// Adjoint of add_noise: dL += dz eps^T on the lower triangle, for one sample.
  template <class T>
  VMOER_HOST_DEVICE static void add_noise_gradient(const T* dz, const T* eps, T* dscale, Index experts,
                                                   Index /*rank*/) {
    for (Index j = 0; j < experts; ++j) {
      const T ej = eps[j];
      dscale[j] += dz[j] * ej;
      T* col = dscale + column(experts, j) - (j + 1);
      for (Index i = j + 1; i < experts; ++i) col[i] += dz[i] * ej;
    }
  }
  /// KL(N(m, L L^T) || N(0, v I)) for the residual mean m and the finalised head; adds
  /// `weight` times its gradient to dm and dscale (w.r.t. the finalised head) when they are set.
  template <class T>
  static T kl(const T* m, const T* scale, Index experts, Index rank, T v, T weight, T* dm, T* dscale) {
    using std::log;
    T sum = T(0);
    for (Index e = 0; e < experts; ++e) {
      sum += m[e] * m[e] / v - T(1) + log(v) - T(2) * log(scale[e]);
      if (dm) dm[e] += weight * m[e] / v;
      if (dscale) dscale[e] -= weight / scale[e];
    }
    for (Index i = 0; i < head_size(experts, rank); ++i) {
      sum += scale[i] * scale[i] / v;
      if (dscale) dscale[i] += weight * scale[i] / v;
    }
    return sum / T(2);
  }
};

/// FCVR: Gaussian logits with a full covariance predicted per token.
template <class T>
using FullCovariance = Gaussian<Cholesky, T>;

}  // namespace vmoer
