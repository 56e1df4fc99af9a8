// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11):
// a counter-based generator. Output = bijection(counter, key), so any draw can be
// computed directly from its logical coordinates, on any thread or device, in any order.
#pragma once

#include <cstdint>

#include "vmoer/config.hpp"

namespace vmoer::rng {

/// Four 32-bit words: a Philox counter or output block.
struct u32x4 {
  std::uint32_t v[4];  ///< the words, v[0] first
  /// Word i.
  VMOER_HOST_DEVICE constexpr std::uint32_t operator[](int i) const { return v[i]; }
  /// Word i, writable.
  VMOER_HOST_DEVICE constexpr std::uint32_t& operator[](int i) { return v[i]; }
  /// All four words equal.
  VMOER_HOST_DEVICE friend constexpr bool operator==(const u32x4& a, const u32x4& b) {
    return a.v[0] == b.v[0] && a.v[1] == b.v[1] && a.v[2] == b.v[2] && a.v[3] == b.v[3];
  }
};

/// Two 32-bit words: a Philox key.
struct u32x2 {
  std::uint32_t v[2];  ///< the words, v[0] first
  /// Word i.
  VMOER_HOST_DEVICE constexpr std::uint32_t operator[](int i) const { return v[i]; }
};

namespace detail {

inline constexpr std::uint32_t philox_m0 = 0xD2511F53u;
inline constexpr std::uint32_t philox_m1 = 0xCD9E8D57u;
inline constexpr std::uint32_t philox_w0 = 0x9E3779B9u;  // golden ratio
inline constexpr std::uint32_t philox_w1 = 0xBB67AE85u;  // sqrt(3) - 1

VMOER_HOST_DEVICE constexpr u32x4 philox_round(u32x4 c, std::uint32_t k0, std::uint32_t k1) {
  const std::uint64_t p0 = std::uint64_t(philox_m0) * c[0];
  const std::uint64_t p1 = std::uint64_t(philox_m1) * c[2];
  return {{std::uint32_t(p1 >> 32) ^ c[1] ^ k0, std::uint32_t(p1), std::uint32_t(p0 >> 32) ^ c[3] ^ k1,
           std::uint32_t(p0)}};
}

}  // namespace detail

/// Philox4x32 with R rounds (R = 10 is the standard, crush-resistant choice).
template <int Rounds = 10>
VMOER_HOST_DEVICE constexpr u32x4 philox4x32(u32x4 counter, u32x2 key) {
  std::uint32_t k0 = key[0], k1 = key[1];
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int r = 0; r < Rounds; ++r) {
    counter = detail::philox_round(counter, k0, k1);
    k0 += detail::philox_w0;
    k1 += detail::philox_w1;
  }
  return counter;
}

}  // namespace vmoer::rng
