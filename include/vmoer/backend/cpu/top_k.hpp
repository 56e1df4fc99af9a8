// selection::select_top_k on the CPU, with a SIMD pre-pass that drops most experts
// before the K survivors are put in order.
//
// Why the result is the same, ties included: lane l's maximum over the batches is the
// key of one expert of column l (experts l, l + W, l + 2W, ...), so with K <= W columns
// the K-th largest of those maxima, b, has at least K experts at or above it. No expert
// below b can be among the top K. The others, at most one batch of them, are ranked in
// registers with the lower id first among equal keys, which is the order the full scan's
// insertion leaves; more than a batch (many equal keys) go through selection::insert_top
// in ascending id order, as in the full scan. One batch of experts (E <= 16) needs no
// pre-pass: it is ranked as it is.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>

#include "vmoer/backend/cpu/simd.hpp"
#include "vmoer/selector/select.hpp"

namespace vmoer::cpu {

#if XSIMD_WITH_AVX512F
namespace detail {

// Rotation r meets lane i of v with lane (i + r) mod 16, which comes before it exactly
// for i >= 16 - r; meet(lane i's rotated neighbour, that mask) once per r.
template <class Meet, int... R>
VMOER_ALWAYS_INLINE void meet_rotations(__m512 v, Meet&& meet, std::integer_sequence<int, R...>) {
  const __m512i bits = _mm512_castps_si512(v);
  (meet(_mm512_castsi512_ps(_mm512_alignr_epi32(bits, bits, R + 1)), __mmask16(0xFFFFu << (15 - R))), ...);
}

// How many lanes of v hold a larger value.
inline __m512i lanes_above(__m512 v) {
  const __m512i one = _mm512_set1_epi32(1);
  __m512i count = _mm512_setzero_si512();
  meet_rotations(
      v,
      [&](__m512 other, __mmask16) {
        count = _mm512_mask_add_epi32(count, _mm512_cmp_ps_mask(other, v, _CMP_GT_OQ), count, one);
      },
      std::make_integer_sequence<int, 15>{});
  return count;
}

// The place of each lane of v in descending order, the lower lane first among equal
// values: lane j is ahead of lane i when v_j > v_i, or v_j == v_i and j < i.
inline __m512i lane_ranks(__m512 v) {
  const __m512i one = _mm512_set1_epi32(1);
  __m512i rank = _mm512_setzero_si512();
  meet_rotations(
      v,
      [&](__m512 other, __mmask16 earlier) {
        const __mmask16 ahead = _mm512_mask_cmp_ps_mask(earlier, other, v, _CMP_GE_OQ) |
                                _mm512_mask_cmp_ps_mask(__mmask16(~earlier), other, v, _CMP_GT_OQ);
        rank = _mm512_mask_add_epi32(rank, ahead, rank, one);
      },
      std::make_integer_sequence<int, 15>{});
  return rank;
}

// The lanes of the batch of experts i .. i + 15 that lie in [lo, hi).
inline __mmask16 lanes_in(Index i, Index lo, Index hi) {
  const Index a = std::clamp<Index>(lo - i, 0, 16), b = std::clamp<Index>(hi - i, 0, 16);
  return __mmask16(a < b ? ((1u << (b - a)) - 1u) << a : 0u);
}

// Most batches the grouped selection masks: 64 of 16 experts.
inline constexpr Index masked_batches = 64;

// The lanes of each batch of experts whose group (of `size` experts) is kept, found once
// for both passes over the keys by one walk over the groups. (Found per batch, as the
// groups around it, they took most of a DeepSeek-V3 selection's time outside the ranking.)
inline void kept_lanes(std::uint64_t kept, Index groups, Index size, Index np, __mmask16* lanes) {
  std::fill(lanes, lanes + np / 16, __mmask16(0));
  for (Index g = 0; g < groups; ++g) {
    const std::uint32_t all_if_kept = 0u - std::uint32_t((kept >> g) & 1u);  // no branch: which are kept is random
    for (Index i = g * size / 16 * 16; i < (g + 1) * size; i += 16)
      lanes[i / 16] |= __mmask16(lanes_in(i, g * size, (g + 1) * size) & all_if_kept);
  }
}

// selection::kept_groups for at most 16 groups, in registers: each lane keeps the largest
// two keys it sees of a group (-inf outside it), the group's two largest are then the
// largest lane and the larger of the other lanes and the seconds. The groups are ranked
// like the experts, ties to the lower group. The scalar form is a chain of E dependent
// minima and maxima: the whole selection took 0.36 us a token with it, 0.23 with this
// (E = 256, n_group = 8, fresh scores).
inline std::uint64_t kept_groups(const float* scores, const float* bias, Index experts, const Convention& c) {
  const __m512 none = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  const Index size = experts / c.n_group;
  alignas(64) float group_keys[16];
  for (Index g = 0; g < 16; ++g) {
    if (g >= c.n_group) {
      group_keys[g] = -std::numeric_limits<float>::infinity();
      continue;
    }
    __m512 first = none, second = none;
    for (Index i = g * size / 16 * 16; i < (g + 1) * size; i += 16) {
      __m512 k = _mm512_load_ps(scores + i);
      if (bias) k = _mm512_add_ps(k, _mm512_load_ps(bias + i));
      k = _mm512_mask_blend_ps(lanes_in(i, g * size, (g + 1) * size), none, k);
      second = _mm512_max_ps(second, _mm512_min_ps(first, k));
      first = _mm512_max_ps(first, k);
    }
    const float top = _mm512_reduce_max_ps(first);
    if (c.group_score == GroupScore::max) {
      group_keys[g] = top;
      continue;
    }
    const std::uint32_t at_top = _mm512_cmpeq_ps_mask(first, _mm512_set1_ps(top));
    first = _mm512_mask_blend_ps(__mmask16(at_top & (0u - at_top)), first, none);  // one lane of the largest out
    group_keys[g] = top + _mm512_reduce_max_ps(_mm512_max_ps(first, second));
  }
  const __m512i rank = lane_ranks(_mm512_load_ps(group_keys));
  return _mm512_mask_cmplt_epi32_mask(__mmask16((1u << c.n_group) - 1u), rank, _mm512_set1_epi32(int(c.topk_group)));
}

}  // namespace detail
#endif

/// selection::select_top_k's ids and keys. scores and bias (null, or the selection bias)
/// are padded to np entries, whatever the padding holds. K above the batch width, double,
/// group-limited selection over more than 1024 experts, and every architecture but
/// AVX-512 (whose compress, expand and comparison masks this needs) take the scalar path.
/// Group-limited selection masks the dropped groups' keys as the batches are read.
template <class T>
inline void select_top_k(const T* scores, const float* bias, Index experts, Index np, const Convention& c,
                         std::int32_t* ids, T* keys) {
#if XSIMD_WITH_AVX512F
  using B = batch<T>;
  constexpr Index w = Index(B::size);
  if constexpr (std::is_same_v<T, float> && w == 16) {
    if (c.top_k <= w && (c.n_group == 1 || np <= w * detail::masked_batches)) {
      __mmask16 kept_lanes[detail::masked_batches];
      if (c.n_group > 1)
        detail::kept_lanes(c.n_group <= w ? detail::kept_groups(scores, bias, experts, c)
                                          : selection::kept_groups(scores, bias, experts, c),
                           c.n_group, experts / c.n_group, np, kept_lanes);
      const B group_mask(T(c.group_mask));
      auto key = [&](Index i) {  // batch i of the keys: the group mask in dropped groups, -inf past the last expert
        B k = B::load_aligned(scores + i);
        if (bias) k += B::load_aligned(bias + i);
        if (c.n_group > 1) k = B(_mm512_mask_blend_ps(kept_lanes[i / w], group_mask, k));
        if (i + w <= experts) return k;
        const __m512 none = _mm512_set1_ps(-std::numeric_limits<T>::infinity());
        return B(_mm512_mask_blend_ps(detail::lanes_in(i, 0, experts), none, k));
      };
      const __m512i top = _mm512_set1_epi32(int(c.top_k));
      const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
      // One batch of experts (Mixtral's 8, or 16): no bound to find.
      __m512 kept = key(0);
      __m512i kept_ids = lane;
      int count = int(w);
      T bound = -std::numeric_limits<T>::infinity();
      if (np > w) {
        B column_max = kept;
        for (Index i = w; i < np; i += w) column_max = xsimd::max(column_max, key(i));
        // The K-th largest maximum: the least of those with fewer than K above them.
        bound = _mm512_mask_reduce_min_ps(_mm512_cmplt_epi32_mask(detail::lanes_above(column_max), top), column_max);
        // The survivors, appended in ascending id order to one batch of keys and one of ids.
        kept = _mm512_set1_ps(-std::numeric_limits<T>::infinity());
        kept_ids = _mm512_setzero_si512();
        count = 0;
        for (Index i = 0; i < np && count <= int(w); i += w) {
          const B k = key(i);
          const __mmask16 hits = _mm512_cmp_ps_mask(k, B(bound), _CMP_GE_OQ);
          const int n = __builtin_popcount(hits);
          if (count + n <= int(w)) {  // expand fills lanes count .. count + n - 1
            const __mmask16 slots = __mmask16(((1u << n) - 1u) << count);
            kept = _mm512_mask_expand_ps(kept, slots, _mm512_maskz_compress_ps(hits, k));
            kept_ids = _mm512_mask_expand_epi32(
                kept_ids, slots, _mm512_maskz_compress_epi32(hits, _mm512_add_epi32(lane, _mm512_set1_epi32(int(i)))));
          }
          count += n;
        }
      }
      if (count <= int(w)) {  // rank r < K goes to place r; lanes past count hold -inf, ranked last
        alignas(64) T lane_keys[w];
        alignas(64) std::int32_t lane_ids[w], ranks[w];
        const __m512i rank = detail::lane_ranks(kept);
        _mm512_store_ps(lane_keys, kept);
        _mm512_store_si512(lane_ids, kept_ids);
        _mm512_store_si512(ranks, rank);
        for (std::uint32_t chosen = _mm512_cmplt_epi32_mask(rank, top); chosen; chosen &= chosen - 1) {
          const int l = __builtin_ctz(chosen);
          keys[ranks[l]] = lane_keys[l];
          ids[ranks[l]] = lane_ids[l];
        }
        return;
      }
      Index filled = 0;  // many equal keys: the insertion, over the survivors only
      for (Index i = 0; i < np; i += w) {
        const B k = key(i);
        std::uint32_t hits = _mm512_cmp_ps_mask(k, B(bound), _CMP_GE_OQ);
        if (!hits) continue;
        alignas(64) T lanes[w];
        k.store_aligned(lanes);
        for (; hits; hits &= hits - 1) {
          const int l = __builtin_ctz(hits);
          selection::insert_top(lanes[l], std::int32_t(i + l), keys, ids, filled, c.top_k);
        }
      }
      return;
    }
  }
#endif
  (void)np;
  selection::select_top_k(scores, bias, experts, c, ids, keys);
}

}  // namespace vmoer::cpu
