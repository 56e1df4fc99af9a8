// selection::select_top_k on the CPU, with a SIMD pre-pass that drops most experts
// before the insertion into the top-K list. The insertion branches on every expert,
// unpredictably while the list fills; after the pre-pass about K candidates remain.
//
// Why the result is the same, ties included: lane l's maximum over the batches is the
// key of one expert of column l (experts l, l + W, l + 2W, ...), so with K <= W columns
// the K-th largest of those maxima, b, has at least K experts at or above it. No expert
// below b can be among the top K; the others go through selection::insert_top in
// ascending id order, as in the full scan.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <limits>
#include <type_traits>

#include "vmoer/backend/cpu/simd.hpp"
#include "vmoer/backend/cpu/vector_math.hpp"
#include "vmoer/selector/select.hpp"

namespace vmoer::cpu {

/// selection::select_top_k's ids and keys. scores and bias (null, or the selection bias)
/// are padded to np entries, whatever the padding holds. Group-limited selection, fewer
/// than two batches of experts and K above the batch width take the scalar path, as does
/// every architecture but AVX-512 (the one with a bit mask of a comparison here).
template <class T>
inline void select_top_k(const T* scores, const float* bias, Index experts, Index np, const Convention& c,
                         std::int32_t* ids, T* keys) {
#if XSIMD_WITH_AVX512F
  using B = batch<T>;
  constexpr Index w = Index(B::size);
  if constexpr (std::is_same_v<T, float> && w == 16) {
    if (c.n_group <= 1 && experts >= 2 * w && c.top_k <= w) {
      auto key = [&](Index i) {  // batch i of the keys, -inf past the last expert
        B k = B::load_aligned(scores + i);
        if (bias) k += B::load_aligned(bias + i);
        if (i + w <= experts) return k;
        return xsimd::select(lanes_below<T>(i, experts), k, B(-std::numeric_limits<T>::infinity()));
      };
      B column_max = key(0);
      for (Index i = w; i < np; i += w) column_max = xsimd::max(column_max, key(i));
      alignas(64) T maxima[w];
      column_max.store_aligned(maxima);
      std::nth_element(maxima, maxima + (c.top_k - 1), maxima + w, std::greater<T>());
      const B bound(maxima[c.top_k - 1]);
      Index count = 0;
      for (Index i = 0; i < np; i += w) {
        const B k = key(i);
        std::uint32_t hits = _mm512_cmp_ps_mask(k, bound, _CMP_GE_OQ);
        if (!hits) continue;
        alignas(64) T lanes[w];
        k.store_aligned(lanes);
        for (; hits; hits &= hits - 1) {
          const int l = __builtin_ctz(hits);
          selection::insert_top(lanes[l], std::int32_t(i + l), keys, ids, count, c.top_k);
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
