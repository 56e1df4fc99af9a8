// Vectorised loops over one token's experts. Arrays are padded to whole SIMD
// batches; `n` is the real length and padded lanes hold -inf logits, which every
// loop here keeps out of sums and maxima.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "vmoer/backend/cpu/simd.hpp"
#include "vmoer/rng/normal.hpp"

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

/// Philox words of `blocks` consecutive blocks, split into first (x) and second (y)
/// words of each Box-Muller pair: x[2b + j] = w[2j], y[2b + j] = w[2j + 1].
inline void philox_pairs(const rng::Stream& s, rng::Purpose p, std::uint32_t token, std::uint32_t sample,
                         Index blocks, std::uint32_t* VMOER_RESTRICT x, std::uint32_t* VMOER_RESTRICT y) {
  const rng::u32x2 key = s.key();
  for (Index b = 0; b < blocks; ++b) {  // the compiler vectorises this across blocks
    const rng::u32x4 w = rng::philox4x32<10>(s.counter(p, token, sample, std::uint32_t(b)), key);
    x[2 * b] = w[0];
    y[2 * b] = w[1];
    x[2 * b + 1] = w[2];
    y[2 * b + 1] = w[3];
  }
}

/// Box-Muller on one batch of word pairs (rng::box_muller's mapping): u from x[j], the
/// angle from y[j], giving (r sin v, r cos v) lane by lane.
template <class T>
VMOER_ALWAYS_INLINE void box_muller(const std::uint32_t* x, const std::uint32_t* y, batch<T>& sin_part, batch<T>& cos_part) {
  using B = batch<T>;
  using U = xsimd::batch<std::uint32_t>;
  const B u_scale(T(2.3283064365386962890625e-10)), u_shift(T(2.3283064365386962890625e-10) / T(2));
  const B v_scale(T(6.283185307179586476925286766559 * 2.3283064365386962890625e-10)), v_shift(v_scale / B(T(2)));
  B u, v;
  if constexpr (B::size == U::size) {
    u = xsimd::batch_cast<T>(U::load_unaligned(x));
    v = xsimd::batch_cast<T>(U::load_unaligned(y));
  } else {  // double: fewer lanes than 32-bit words
    alignas(64) T uf[B::size], vf[B::size];
    for (std::size_t j = 0; j < B::size; ++j) {
      uf[j] = T(x[j]);
      vf[j] = T(y[j]);
    }
    u = B::load_aligned(uf);
    v = B::load_aligned(vf);
  }
  u = xsimd::fma(u, u_scale, u_shift);
  v = xsimd::fma(v, v_scale, v_shift);
  const B r = xsimd::sqrt(B(T(-2)) * xsimd::log(u));
  const auto sc = xsimd::sincos(v);
  sin_part = r * sc.first;
  cos_part = r * sc.second;
}

/// n normals in the order of rng::normals (n a multiple of 2 * batch size); the
/// word buffers x, y hold at least n / 2 entries each.
template <class T>
inline void normals(const rng::Stream& s, rng::Purpose p, std::uint32_t token, std::uint32_t sample, T* out,
                    Index n, std::uint32_t* x, std::uint32_t* y) {
  using B = batch<T>;
  philox_pairs(s, p, token, sample, (n + 3) / 4, x, y);
  alignas(64) T sin_part[B::size], cos_part[B::size];
  for (Index i = 0; i < n / 2; i += Index(B::size)) {
    B sn, cs;
    box_muller<T>(x + i, y + i, sn, cs);
    sn.store_aligned(sin_part);
    cs.store_aligned(cos_part);
    for (std::size_t j = 0; j < B::size; ++j) {
      out[2 * (i + Index(j))] = sin_part[j];
      out[2 * (i + Index(j)) + 1] = cos_part[j];
    }
  }
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
