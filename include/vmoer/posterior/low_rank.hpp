// Low-rank plus diagonal covariance, Sigma = diag(d^2) + V V^T with V [E, r].
// The full Cholesky head costs O(E^2) per token, too much at E = 256; rank r keeps
// correlations between experts at O(E r).
//   scale head [E + E r]: E log-variances (d = exp(s / 2)), then V column by column.
//   z = mu + d * eps[0:E] + V eps[E:E+r].
// With the sampling go its adjoint and the KL divergence to N(0, v I) on the residual
// mean m, with log det Sigma by the matrix determinant lemma,
//   log det(D + V V^T) = sum log d^2 + log det M,   M = I_r + V^T D^-1 V   (D = diag(d^2)),
//   KL = 1/2 [ (sum d^2 + |V|_F^2 + |m|^2) / v - E + E log v - log det Sigma ],
// and its gradient from Sigma^-1 V = D^-1 V M^-1 (Woodbury): O(E r^2) per token.
#pragma once

#include <Eigen/Cholesky>

#include "vmoer/posterior/gaussian.hpp"

namespace vmoer {

/// Covariance policy Sigma = D + V V^T.
struct LowRankDiagonal {
  /// Name used in parameter files and messages.
  static constexpr const char* name = "low_rank";
  /// Each logit's noise mixes several normals (see Diagonal::elementwise).
  static constexpr bool elementwise = false;
  /// Scale-head width: E log-variances and the E r entries of V.
  VMOER_HOST_DEVICE static constexpr Index head_size(Index experts, Index rank) { return experts * (1 + rank); }
  /// Normals per sample: E for the diagonal part, r for the factor.
  VMOER_HOST_DEVICE static constexpr Index noise_size(Index experts, Index rank) { return experts + rank; }
  /// z += d * eps_d + V eps_v.
  template <class T, class Z>
  VMOER_HOST_DEVICE static void add_noise(const T* scale, const Z* eps, Z* z, Index experts, Index rank) {
    for (Index e = 0; e < experts; ++e) z[e] += scale[e] * eps[e];
    for (Index k = 0; k < rank; ++k) {
      const Z ek = eps[experts + k];
      const T* col = scale + experts * (1 + k);
      for (Index e = 0; e < experts; ++e) z[e] += col[e] * ek;
    }
  }
  /// tr(Sigma) = sum d^2 + ||V||_F^2.
  template <class T>
  VMOER_HOST_DEVICE static T trace(const T* scale, Index experts, Index rank) {
    return detail::squared_norm(scale, head_size(experts, rank));
  }
  /// Adjoint of add_noise: dd += dz * eps_d, dV += dz eps_v^T, for one sample.
  template <class T>
  VMOER_HOST_DEVICE static void add_noise_gradient(const T* dz, const T* eps, T* dscale, Index experts,
                                                   Index rank) {
    for (Index e = 0; e < experts; ++e) dscale[e] += dz[e] * eps[e];
    for (Index k = 0; k < rank; ++k) {
      const T ek = eps[experts + k];
      T* col = dscale + experts * (1 + k);
      for (Index e = 0; e < experts; ++e) col[e] += dz[e] * ek;
    }
  }
  /// KL(N(m, D + V V^T) || N(0, v I)) for the residual mean m and the finalised head; adds
  /// `weight` times its gradient to dm and dscale (w.r.t. the finalised head) when they are set.
  template <class T>
  static T kl(const T* m, const T* scale, Index experts, Index rank, T v, T weight, T* dm, T* dscale) {
    using std::log;
    using Dense = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;  // column-major, as V is stored
    const Eigen::Map<const Vector<T>> d(scale, experts);
    const Eigen::Map<const Dense> V(scale + experts, experts, rank);
    const Vector<T> inv_d2 = d.array().square().inverse().matrix();
    const Dense M = Dense::Identity(rank, rank) + V.transpose() * inv_d2.asDiagonal() * V;
    const Eigen::LLT<Dense> llt(M);
    T log_det_m = T(0);
    for (Index k = 0; k < rank; ++k) log_det_m += T(2) * log(llt.matrixL()(k, k));
    T sum = (d.squaredNorm() + V.squaredNorm()) / v - log_det_m;
    for (Index e = 0; e < experts; ++e) {
      sum += m[e] * m[e] / v - T(1) + log(v) - T(2) * log(d[e]);
      if (dm) dm[e] += weight * m[e] / v;
    }
    if (dscale) {
      const Dense B = llt.solve(V.transpose()).transpose();  // V M^-1, [E, r]
      for (Index e = 0; e < experts; ++e) {
        const T quad = rank > 0 ? T(B.row(e).dot(V.row(e))) : T(0);  // (V M^-1 V^T)_ee
        dscale[e] += weight * (d[e] / v - T(1) / d[e] + quad * inv_d2[e] / d[e]);
      }
      Eigen::Map<Dense> dV(dscale + experts, experts, rank);
      dV += weight * (V / v - inv_d2.asDiagonal() * B);
    }
    return sum / T(2);
  }
};

/// Low-rank-plus-diagonal Gaussian logits predicted per token.
template <class T>
using LowRank = Gaussian<LowRankDiagonal, T>;

}  // namespace vmoer
