// The one place the library includes xsimd. Only CPU-backend headers include this
// file: recent xsimd does not compile under nvcc, and device code never needs it.
#pragma once

#include <xsimd/xsimd.hpp>

#include "vmoer/config.hpp"

namespace vmoer::cpu {

/// The widest SIMD batch of T for the architecture this translation unit targets.
template <class T>
using batch = xsimd::batch<T>;

/// Horizontal sum. xsimd 8.1 (Debian 12) names it hadd; later releases reduce_add.
template <class B>
inline auto reduce_add(const B& b) {
#if XSIMD_VERSION_MAJOR >= 9
  return xsimd::reduce_add(b);
#else
  return xsimd::hadd(b);
#endif
}

/// Horizontal maximum, with the same spelling shim.
template <class B>
inline auto reduce_max(const B& b) {
#if XSIMD_VERSION_MAJOR >= 9
  return xsimd::reduce_max(b);
#else
  alignas(64) typename B::value_type lanes[B::size];
  b.store_aligned(lanes);
  auto m = lanes[0];
  for (std::size_t i = 1; i < B::size; ++i) m = lanes[i] > m ? lanes[i] : m;
  return m;
#endif
}

/// 64-bit products of the low 32-bit words of each 64-bit lane (pmuludq). xsimd's
/// 64-bit multiply is a full 64 x 64 one, several times slower, and Philox needs only
/// 32 x 32 -> 64. (AVX-512 builds take cpu::detail::mul_hi_lo's own path instead.)
template <class Q>
VMOER_ALWAYS_INLINE Q mul_low_words(const Q& a, const Q& b) {
#if XSIMD_WITH_AVX2
  if constexpr (Q::size == 4) return Q(_mm256_mul_epu32(a, b));
#endif
#if XSIMD_WITH_SSE2
  if constexpr (Q::size == 2) return Q(_mm_mul_epu32(a, b));
#endif
  const Q low(0xFFFFFFFFu);
  return (a & low) * (b & low);
}

/// n rounded up to a whole number of batches of T.
template <class T>
constexpr long padded(long n) {
  constexpr long w = long(batch<T>::size);
  return (n + w - 1) / w * w;
}

}  // namespace vmoer::cpu
