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

/// xsimd's exp and exp2, for exp_defined.
inline constexpr auto simd_exp = [](const auto& x) { return xsimd::exp(x); };
inline constexpr auto simd_exp2 = [](const auto& x) { return xsimd::exp2(x); };

/// exp(t) for `exp` xsimd's exp or exp2 (simd_exp, simd_exp2), defined for every t.
/// Their generic forms convert the rounded argument to an integer, which is undefined
/// behaviour for an infinity (padded lanes hold -inf) or a NaN. So infinities are moved
/// to +-4 max_exponent, where the result has long since flushed to 0 or overflowed to
/// inf, and a NaN is passed on around the call. Finite arguments below the bound give
/// exp's bits.
template <class T, class Exp>
VMOER_ALWAYS_INLINE batch<T> exp_defined(const batch<T>& t, Exp exp) {
  const batch<T> bound(T(4 * std::numeric_limits<T>::max_exponent));
  const auto nan = xsimd::isnan(t);  // not t != t: xsimd compares ordered, false for NaN
  const batch<T> finite = xsimd::select(t < -bound, -bound, xsimd::select(t > bound, bound, t));
  return xsimd::select(nan, t, exp(xsimd::select(nan, batch<T>(T(0)), finite)));
}

/// 2^t, for the exponentials of a softmax in base 2: t = (z - max) log2(e) is one fused
/// multiply-subtract, and 2^t needs no reduction by log 2 (two FMAs fewer than exp).
/// -inf gives 0 and NaN stays NaN; nothing screens overflow, so t must stay below 128.
template <class T>
VMOER_ALWAYS_INLINE batch<T> pow2(const batch<T>& t) {
#if XSIMD_WITH_AVX512F
  if constexpr (std::is_same_v<T, float> && batch<T>::size == 16) {
    // 2^t = 2^floor(t) 2^f, f = t - floor(t) in [0, 1): vreduceps gives f (0 for -inf),
    // a degree-6 minimax polynomial 2^f (relative error 1.9e-9), and vscalefps multiplies
    // by 2^floor(t), flushing what underflows.
    const __m512 f = _mm512_reduce_ps(t, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    // 1 + f q(f) with q in Estrin's form (pairs of terms, in f^2): a softmax loop waits on
    // the latency of Horner's six dependent FMAs. Adding the 1 last, as Horner's form
    // does, keeps the float error near Horner's: at worst 1.54 ulp of the result against
    // 1.35 (1.68 with the whole polynomial in Estrin's form).
    const __m512 f2 = _mm512_mul_ps(f, f);
    const __m512 q0 = _mm512_fmadd_ps(f, _mm512_set1_ps(2.4022983627e-01f), _mm512_set1_ps(6.9314698384e-01f));
    const __m512 q1 = _mm512_fmadd_ps(f, _mm512_set1_ps(9.6788409962e-03f), _mm512_set1_ps(5.5483341984e-02f));
    const __m512 q2 = _mm512_fmadd_ps(f, _mm512_set1_ps(2.1702255457e-04f), _mm512_set1_ps(1.2439687828e-03f));
    const __m512 q = _mm512_fmadd_ps(_mm512_fmadd_ps(q2, f2, q1), f2, q0);
    const __m512 p = _mm512_fmadd_ps(q, f, _mm512_set1_ps(1.0f));
    return batch<T>(_mm512_scalef_ps(p, t));
  }
#endif
  return exp_defined(t, simd_exp2);
}

/// log2(e), to scale logits for pow2, and log(2), to scale back.
template <class T>
inline constexpr T log2_e = T(1.44269504088896340736);
template <class T>
inline constexpr T ln_2 = T(0.693147180559945309417);

/// p = softmax(z) over n entries (np padded); returns the entropy H(p).
template <class T>
inline T softmax_entropy(const T* VMOER_RESTRICT z, T* VMOER_RESTRICT p, Index n, Index np) {
  using B = batch<T>;
  constexpr Index w = Index(B::size);
  B m(-std::numeric_limits<T>::infinity());
  for (Index i = 0; i < np; i += w) m = xsimd::max(m, B::load_aligned(z + i));
  const B scale(log2_e<T>), shift(reduce_max(m) * log2_e<T>);  // t = (z - max) log2(e)
  B sum(T(0));
  for (Index i = 0; i < np; i += w) {
    const B e = pow2(cpu::fmsub(B::load_aligned(z + i), scale, shift));
    e.store_aligned(p + i);
    sum += e;
  }
  const T total = reduce_add(sum);
  const B inv(T(1) / total);
  B weighted(T(0));  // sum p t, over real lanes only
  for (Index i = 0; i < np; i += w) {
    const B pi = B::load_aligned(p + i) * inv;
    pi.store_aligned(p + i);
    const B term = pi * cpu::fmsub(B::load_aligned(z + i), scale, shift);
    weighted += i + w <= n ? term : xsimd::select(lanes_below<T>(i, n), term, B(T(0)));
  }
  return std::log(total) - ln_2<T> * reduce_add(weighted);
}

/// q = 1 / (1 + exp(-z)); padded lanes (z = -inf) give 0.
template <class T>
inline void sigmoid(const T* VMOER_RESTRICT z, T* VMOER_RESTRICT q, Index np) {
  using B = batch<T>;
  for (Index i = 0; i < np; i += Index(B::size))
    (B(T(1)) / (B(T(1)) + exp_defined(-B::load_aligned(z + i), simd_exp))).store_aligned(q + i);
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
  for (; i + w <= n; i += w) exp_defined(B::load_unaligned(x + i) * B(T(0.5)), simd_exp).store_unaligned(x + i);
  for (; i < n; ++i) x[i] = std::exp(x[i] * T(0.5));
}

}  // namespace vmoer::cpu
