// Vectorised loops over one token's experts. Arrays are padded to whole SIMD
// batches; `n` is the real length and padded lanes hold -inf logits, which every
// loop here keeps out of sums and maxima.
#pragma once

#include <cmath>
#include <limits>

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
    const B e = xsimd::exp(B::load_aligned(z + i) - mx);
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
