// Per-token selection and combine weights, shared by the CPU and CUDA backends.
// Each function handles one token on plain pointers; backends only decide which
// thread, lane or warp runs which token.
//
// Ties: among equal keys the lower expert id wins (and among equal group scores the
// lower group), as in the fused GPU routing kernels. Selected ids come out ordered
// by descending key.
#pragma once

#include <cmath>
#include <cstdint>

#include "vmoer/config.hpp"
#include "vmoer/selector/convention.hpp"

namespace vmoer::selection {

/// Inserts (key, id) into the descending list keys/ids of `count` entries and capacity k.
/// Ids must arrive in ascending order: an equal key then ranks after the earlier id.
template <class T>
VMOER_HOST_DEVICE inline void insert_top(T key, std::int32_t id, T* keys, std::int32_t* ids, Index& count, Index k) {
  if (count == k) {
    if (!(key > keys[k - 1])) return;
    --count;
  }
  Index pos = count;
  while (pos > 0 && key > keys[pos - 1]) {
    keys[pos] = keys[pos - 1];
    ids[pos] = ids[pos - 1];
    --pos;
  }
  keys[pos] = key;
  ids[pos] = id;
  ++count;
}

/// Selection key of expert e before group masking: its score plus the selection bias.
template <class T>
VMOER_HOST_DEVICE inline T biased(const T* scores, const float* bias, Index e) {
  return bias ? scores[e] + T(bias[e]) : scores[e];
}

/// Bit g set when group g is kept by group-limited selection (all bits when n_group = 1).
template <class T>
VMOER_HOST_DEVICE inline std::uint64_t kept_groups(const T* scores, const float* bias, Index experts,
                                                   const Convention& c) {
  if (c.n_group <= 1) return ~std::uint64_t(0);
  const Index size = experts / c.n_group;
  T group_keys[max_groups];
  std::int32_t group_ids[max_groups];
  Index count = 0;
  for (Index g = 0; g < c.n_group; ++g) {
    T first = biased(scores, bias, g * size), second = first;
    if (c.group_score == GroupScore::top2_sum) {
      T s = biased(scores, bias, g * size + 1);
      if (s > first) {
        second = first;
        first = s;
      } else {
        second = s;
      }
    }
    // The two largest as minimum and maximum, which compile to min and max rather than
    // branches: where a token's largest keys fall is random, and the branches were
    // mispredicted (the CPU's selection took 0.51 us a token with them, 0.36 without, at
    // E = 256 and 8 groups).
    for (Index e = g * size + (c.group_score == GroupScore::top2_sum ? 2 : 1); e < (g + 1) * size; ++e) {
      const T s = biased(scores, bias, e);
      const T lower = s < first ? s : first;
      second = second < lower ? lower : second;
      first = first < s ? s : first;
    }
    const T group_key = c.group_score == GroupScore::top2_sum ? first + second : first;
    insert_top(group_key, std::int32_t(g), group_keys, group_ids, count, c.topk_group);
  }
  std::uint64_t kept = 0;
  for (Index i = 0; i < count; ++i) kept |= std::uint64_t(1) << group_ids[i];
  return kept;
}

/// Deterministic top-K: ids[0..K) by descending selection key, keys[0..K) those keys.
/// Keys are the scores plus the selection bias, with experts of dropped groups set
/// to the convention's group mask.
template <class T>
VMOER_HOST_DEVICE inline void select_top_k(const T* scores, const float* bias, Index experts, const Convention& c,
                                           std::int32_t* ids, T* keys) {
  const std::uint64_t kept = kept_groups(scores, bias, experts, c);
  const Index size = experts / c.n_group;
  const T mask = T(c.group_mask);
  Index count = 0;
  for (Index e = 0; e < experts; ++e) {
    const T key = (kept >> (e / size)) & 1u ? biased(scores, bias, e) : mask;
    insert_top(key, std::int32_t(e), keys, ids, count, c.top_k);
  }
}

/// PhiMoE's sparsemixer weight of the i-th chosen expert (ids by descending logit):
/// 1 / sum of exp(s_e - m) over the experts e not chosen before it whose logits s_e lie
/// within the window, (m - s_e) / max(|s_e|, m) <= 2 jitter_eps, where m is its logit.
/// Written as transformers computes it, so that a 0/0 (m = s_e = 0) stays in the window.
template <class T>
VMOER_HOST_DEVICE inline T sparsemixer_weight(const T* logits, Index experts, const std::int32_t* ids, Index i,
                                              double jitter_eps) {
  using std::exp;
  const T top = logits[ids[i]];
  const T window = T(2 * jitter_eps);
  T sum = T(0);
  for (Index e = 0; e < experts; ++e) {
    bool chosen_before = false;
    for (Index j = 0; j < i; ++j) chosen_before = chosen_before || ids[j] == e;
    const T magnitude = logits[e] < T(0) ? -logits[e] : logits[e];
    const T factor = magnitude > top ? magnitude : top;
    if (chosen_before || (top - logits[e]) / factor > window) continue;
    sum += exp(logits[e] - top);
  }
  return T(1) / sum;
}

/// Combine weights of the chosen experts from the (unbiased) scores of all E experts:
/// gather, the softmax over the selection when the order says so, renormalisation,
/// scaling.
template <class T>
VMOER_HOST_DEVICE inline void combine_weights(const T* scores, Index experts, const std::int32_t* ids,
                                              const Convention& c, T* weights) {
  using std::pow;
  const Index k = c.top_k;
  if (c.normalize == Normalize::sparsemixer) {
    for (Index i = 0; i < k; ++i) weights[i] = sparsemixer_weight(scores, experts, ids, i, c.jitter_eps) * T(c.scaling);
    return;
  }
  for (Index i = 0; i < k; ++i) weights[i] = scores[ids[i]];
  T sum = T(0);
  for (Index i = 0; i < k; ++i) sum += weights[i];
  if (c.order == Order::select_then_score && c.score == Score::softmax)
    for (Index i = 0; i < k; ++i) weights[i] /= sum;  // the softmax over the K chosen logits
  T denominator = T(1);
  switch (c.normalize) {
    case Normalize::none:
      break;
    case Normalize::sum:
      denominator = (c.order == Order::select_then_score && c.score == Score::softmax ? T(1) : sum) + T(c.norm_eps);
      break;
    case Normalize::lp: {
      T acc = T(0);
      for (Index i = 0; i < k; ++i) acc += pow(weights[i] < T(0) ? -weights[i] : weights[i], T(c.norm_p));
      denominator = pow(acc, T(1) / T(c.norm_p));
      break;
    }
    case Normalize::sum_clamped: {
      T s = T(0);
      for (Index i = 0; i < k; ++i) s += weights[i];
      denominator = s > T(c.norm_min) ? s : T(c.norm_min);
      break;
    }
    case Normalize::sparsemixer:
      break;  // handled above
  }
  for (Index i = 0; i < k; ++i) weights[i] = weights[i] / denominator * T(c.scaling);
}

}  // namespace vmoer::selection
