// Vectorised loops over one token's experts. Arrays are padded to whole SIMD
// batches; `n` is the real length and padded lanes hold -inf logits, which every
// loop here keeps out of sums and maxima.
#pragma once

#include <cmath>
#include <limits>
#include <type_traits>

#include "vmoer/backend/cpu/simd.hpp"
#include "vmoer/config.hpp"

namespace vmoer::cpu {

/// True in the lanes of batch `start` that lie below n.
template <class T>
inline xsimd::batch_bool<T> lanes_below(Index start, Index n) {
  using B = batch<T>;
  using I = xsimd::as_integer_t<T>;
  alignas(64) I lane[B::size];
  for (std::size_t i = 0; i < B::size; ++i) lane[i] = I(i);
  return xsimd::batch_cast<T>(xsimd::batch<I>::load_aligned(lane)) < B(T(n - start));
}

/// exp(d) for d <= 0, a logit minus its maximum; -inf gives 0 and NaN stays NaN.
/// xsimd's exp screens both overflow and underflow and builds 2^n from integer
/// bits; on AVX-512 one vscalefps does that, flushing what underflows, and since d <= 0
/// nothing overflows. About a third fewer operations, for the softmax of every sample.
template <class T>
VMOER_ALWAYS_INLINE batch<T> exp_nonpositive(const batch<T>& d) {
#if XSIMD_WITH_AVX512F
  if constexpr (std::is_same_v<T, float> && batch<T>::size == 16) {
    // e^d = 2^n e^f with d = n log 2 + f, |f| <= log(2) / 2, and e^f by Cephes expf's
    // polynomial (relative error below 1e-7). Below -104 (-inf included) e^d rounds to 0
    // in float; maxps returns its second operand, d, when d is NaN.
    const __m512 x = _mm512_max_ps(_mm512_set1_ps(-104.0f), d);
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 f = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);  // log 2 = 0.693359375 - 2.12194440e-4
    f = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), f);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    for (float c : {1.3981999507e-3f, 8.3334519073e-3f, 4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f})
      p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(c));
    // e^f = 1 + f + f^2 P(f), as 1 + f (1 + f P(f)): two FMAs instead of three operations.
    p = _mm512_fmadd_ps(_mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f)), f, _mm512_set1_ps(1.0f));
    return batch<T>(_mm512_scalef_ps(p, n));
  }
#endif
  return xsimd::exp(d);
}

/// p = softmax(z) over n entries (np padded); returns the entropy H(p).
template <class T>
inline T softmax_entropy(const T* VMOER_RESTRICT z, T* VMOER_RESTRICT p, Index n, Index np) {
  using B = batch<T>;
  constexpr Index w = Index(B::size);
  B m(-std::numeric_limits<T>::infinity());
  for (Index i = 0; i < np; i += w) m = xsimd::max(m, B::load_aligned(z + i));
  const B mx(reduce_max(m));
  B sum(T(0));
  for (Index i = 0; i < np; i += w) {
    const B e = exp_nonpositive(B::load_aligned(z + i) - mx);
    e.store_aligned(p + i);
    sum += e;
  }
  const T total = reduce_add(sum);
  const B inv(T(1) / total);
  B weighted(T(0));  // sum p (z - max), over real lanes only
  for (Index i = 0; i < np; i += w) {
    const B pi = B::load_aligned(p + i) * inv;
    pi.store_aligned(p + i);
    const B term = pi * (B::load_aligned(z + i) - mx);
    weighted += i + w <= n ? term : xsimd::select(lanes_below<T>(i, n), term, B(T(0)));
  }
  return std::log(total) - reduce_add(weighted);
}

/// q = 1 / (1 + exp(-z)); padded lanes (z = -inf) give 0.
template <class T>
inline void sigmoid(const T* VMOER_RESTRICT z, T* VMOER_RESTRICT q, Index np) {
  using B = batch<T>;
  for (Index i = 0; i < np; i += Index(B::size))
    (B(T(1)) / (B(T(1)) + xsimd::exp(-B::load_aligned(z + i)))).store_aligned(q + i);
}

/// -sum p log p over n entries, with 0 log 0 = 0.
template <class T>
inline T entropy(const T* p, Index n, Index np) {
  using B = batch<T>;
  constexpr Index w = Index(B::size);
  B acc(T(0));
  for (Index i = 0; i < np; i += w) {
    const B pi = B::load_aligned(p + i);
    auto valid = pi > B(T(0));
    if (i + w > n) valid = valid && lanes_below<T>(i, n);
    acc += xsimd::select(valid, pi * xsimd::log(pi), B(T(0)));
  }
  return -reduce_add(acc);
}

/// x = exp(x / 2) for n entries (unaligned, any n): log-variances to standard deviations.
template <class T>
inline void exp_half(T* x, Index n) {
  using B = batch<T>;
  constexpr Index w = Index(B::size);
  Index i = 0;
  for (; i + w <= n; i += w) xsimd::exp(B::load_unaligned(x + i) * B(T(0.5))).store_unaligned(x + i);
  for (; i < n; ++i) x[i] = std::exp(x[i] * T(0.5));
}

}  // namespace vmoer::cpu
