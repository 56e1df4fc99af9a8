// Adjoints of the per-token selection math of selector/select.hpp and sample_k.hpp,
// on plain pointers like the forward, so that any backend can run them per token.
// The chosen ids are constants: the weights are differentiated with the selection
// held fixed, as in the papers (and as any top-K router is trained).
#pragma once

#include <cmath>
#include <cstdint>

#include "vmoer/config.hpp"
#include "vmoer/selector/convention.hpp"
#include "vmoer/selector/select.hpp"

namespace vmoer::grad {

/// dz += factor * J^T dq, where q = score(z) is given (the Jacobian of softmax,
/// sigmoid or identity at z, expressed through q).
template <class T>
VMOER_HOST_DEVICE inline void score_backward(Score score, const T* q, const T* dq, Index n, T factor, T* dz) {
  switch (score) {
    case Score::softmax: {
      T dot = T(0);
      for (Index e = 0; e < n; ++e) dot += dq[e] * q[e];
      for (Index e = 0; e < n; ++e) dz[e] += factor * q[e] * (dq[e] - dot);
      break;
    }
    case Score::sigmoid:
      for (Index e = 0; e < n; ++e) dz[e] += factor * dq[e] * q[e] * (T(1) - q[e]);
      break;
    case Score::raw:
      for (Index e = 0; e < n; ++e) dz[e] += factor * dq[e];
      break;
  }
}

/// Adjoint of PhiMoE's sparsemixer weights w_i = scaling / Z_i,
/// Z_i = sum over the window W_i of exp(s_e - m_i), m_i = s_{ids[i]} (selection::sparsemixer_weight):
/// dZ_i/ds_e = exp(s_e - m_i) for e != ids[i] in W_i, and dZ_i/dm_i = 1 - Z_i.
template <class T>
VMOER_HOST_DEVICE inline void sparsemixer_backward(const T* scores, Index experts, const std::int32_t* ids,
                                                   const Convention& c, const T* dweights, T* dscores) {
  using std::exp;
  const T window = T(2 * c.jitter_eps);
  for (Index i = 0; i < c.top_k; ++i) {
    const T top = scores[ids[i]];
    const T z = T(1) / selection::sparsemixer_weight(scores, experts, ids, i, c.jitter_eps);
    const T dz = -dweights[i] * T(c.scaling) / (z * z);  // dL/dZ_i
    for (Index e = 0; e < experts; ++e) {
      bool chosen_before = false;
      for (Index j = 0; j < i; ++j) chosen_before = chosen_before || ids[j] == e;
      const T magnitude = scores[e] < T(0) ? -scores[e] : scores[e];
      const T factor = magnitude > top ? magnitude : top;
      if (chosen_before || e == ids[i] || (top - scores[e]) / factor > window) continue;
      dscores[e] += dz * exp(scores[e] - top);
    }
    dscores[ids[i]] += dz * (T(1) - z);
  }
}

/// Adjoint of selection::combine_weights: dscores[e] += sum_j dweights[j] dw_j / dscores[e]
/// over the E experts. `work` holds 2K entries. Where sum_clamped clamps, the denominator
/// is a constant; sparsemixer's windows, like the selection, are held fixed.
template <class T>
VMOER_HOST_DEVICE inline void combine_weights_backward(const T* scores, Index experts, const std::int32_t* ids,
                                                       const Convention& c, const T* dweights, T* dscores, T* work) {
  if (c.normalize == Normalize::sparsemixer) {
    sparsemixer_backward(scores, experts, ids, c, dweights, dscores);
    return;
  }
  using std::pow;
  const Index k = c.top_k;
  T* u = work;       // the weights before the denominator
  T* du = work + k;  // and their adjoints
  T sum = T(0);
  for (Index i = 0; i < k; ++i) sum += u[i] = scores[ids[i]];
  const bool softmax_of_chosen = c.order == Order::select_then_score && c.score == Score::softmax;
  if (softmax_of_chosen)
    for (Index i = 0; i < k; ++i) u[i] /= sum;
  T usum = T(0), lp = T(0);
  for (Index i = 0; i < k; ++i) {
    usum += u[i];
    if (c.normalize == Normalize::lp) lp += pow(u[i] < T(0) ? -u[i] : u[i], T(c.norm_p));
  }
  // denominator and its derivative d(den)/du_i = slope * g(u_i)
  T den = T(1);
  bool constant = true;
  switch (c.normalize) {
    case Normalize::none:
      break;
    case Normalize::sum:
      den = (softmax_of_chosen ? T(1) : usum) + T(c.norm_eps);
      constant = softmax_of_chosen;
      break;
    case Normalize::lp:
      den = pow(lp, T(1) / T(c.norm_p));
      constant = false;
      break;
    case Normalize::sum_clamped:
      den = usum > T(c.norm_min) ? usum : T(c.norm_min);
      constant = !(usum > T(c.norm_min));
      break;
    case Normalize::sparsemixer:  // handled above
      break;
  }
  const T scaling = T(c.scaling);
  T dot = T(0);  // sum_j dw_j u_j
  for (Index i = 0; i < k; ++i) dot += dweights[i] * u[i];
  for (Index i = 0; i < k; ++i) {
    T dden = T(0);
    if (!constant) {
      if (c.normalize == Normalize::lp) {
        const T a = u[i] < T(0) ? -u[i] : u[i];
        dden = pow(den, T(1) - T(c.norm_p)) * pow(a, T(c.norm_p) - T(1)) * (u[i] < T(0) ? T(-1) : T(1));
      } else {
        dden = T(1);
      }
    }
    du[i] = scaling * (dweights[i] / den - dot / (den * den) * dden);
  }
  if (softmax_of_chosen) {  // u = v / sum(v)
    T inner = T(0);
    for (Index i = 0; i < k; ++i) inner += du[i] * u[i];
    for (Index i = 0; i < k; ++i) du[i] = (du[i] - inner) / sum;
  }
  for (Index i = 0; i < k; ++i) dscores[ids[i]] += du[i];
}

/// log P(ids[0], ..., ids[k-1] in this order) under Plackett-Luce sampling without
/// replacement from q / sum(q), which is exactly the law of Gumbel-top-K over log q
/// (selection::sample_top_k). Adds `weight` times its gradient w.r.t. q to dq when dq
/// is set. `work` holds k entries.
template <class T>
VMOER_HOST_DEVICE inline T plackett_luce_log_prob(const T* q, Index n, const std::int32_t* ids, Index k, T weight,
                                                 T* dq, T* work) {
  using std::log;
  // R_i = mass not yet chosen before draw i, summed from the unchosen experts upwards
  // (never as sum(q) minus the chosen mass, which cancels when the chosen dominate).
  T rest = T(0);
  for (Index e = 0; e < n; ++e) {
    bool chosen = false;
    for (Index i = 0; i < k; ++i) chosen = chosen || ids[i] == e;
    if (!chosen) rest += q[e];
  }
  T* remaining = work;
  for (Index i = k - 1; i >= 0; --i) remaining[i] = rest += q[ids[i]];
  T log_prob = T(0);
  for (Index i = 0; i < k; ++i) log_prob += log(q[ids[i]]) - log(remaining[i]);
  if (dq) {
    // d/dq_e = [e = ids[j]] / q_e - sum_{i <= j} 1 / R_i   (j = K - 1 for unchosen e)
    T cumulative = T(0);
    for (Index i = 0; i < k; ++i) {
      cumulative += T(1) / remaining[i];
      dq[ids[i]] += weight * T(1) / q[ids[i]];
      work[i] = cumulative;  // C_{i+1}, reusing the slot of R_i
    }
    for (Index e = 0; e < n; ++e) dq[e] -= weight * work[k - 1];
    for (Index i = 0; i < k; ++i) dq[ids[i]] += weight * (work[k - 1] - work[i]);
  }
  return log_prob;
}

}  // namespace vmoer::grad
