// Standard normals from Philox words by the Box-Muller transform.
//
// Why Box-Muller: it turns each pair of 32-bit words into exactly two normals with no
// rejection loop, so the k-th normal of a token is a fixed function of one Philox
// block on every backend (warps never diverge, SIMD lanes never wait).
//
// Uniforms follow cuRAND: u = x 2^-32 + 2^-33 in (0, 1], never 0, so log(u) is finite;
// the largest |normal| is sqrt(2 * 33 ln 2) ~ 6.77. Angles are v = y 2pi 2^-32 + pi 2^-32.
// A block (w0, w1, w2, w3) gives, in order,
//   r0 sin v1, r0 cos v1, r2 sin v3, r2 cos v3      with r = sqrt(-2 log u),
// which is cuRAND's curand_normal4 order.
#pragma once

#include <cmath>
#include <cstdint>

#include "vmoer/rng/stream.hpp"

namespace vmoer::rng {

/// Uniform in (0, 1] from a 32-bit word, computed in T (cuRAND's mapping).
template <class T>
VMOER_HOST_DEVICE inline T uniform(std::uint32_t x) {
  constexpr T two_pow_m32 = T(2.3283064365386962890625e-10);
  return T(x) * two_pow_m32 + two_pow_m32 / T(2);
}

/// Angle in (0, 2pi] from a 32-bit word.
template <class T>
VMOER_HOST_DEVICE inline T angle(std::uint32_t y) {
  constexpr T two_pi_two_pow_m32 = T(6.283185307179586476925286766559 * 2.3283064365386962890625e-10);
  return T(y) * two_pi_two_pow_m32 + two_pi_two_pow_m32 / T(2);
}

/// The two normals of the word pair (x, y): (r sin v, r cos v).
template <class T>
VMOER_HOST_DEVICE inline void box_muller(std::uint32_t x, std::uint32_t y, T& n0, T& n1) {
  using std::cos;
  using std::log;
  using std::sin;
  using std::sqrt;
  const T r = sqrt(T(-2) * log(uniform<T>(x)));
  const T v = angle<T>(y);
  n0 = r * sin(v);
  n1 = r * cos(v);
}

/// The four normals of one Philox block.
template <class T>
VMOER_HOST_DEVICE inline void normals4(const u32x4& w, T* out) {
  box_muller(w[0], w[1], out[0], out[1]);
  box_muller(w[2], w[3], out[2], out[3]);
}

/// n normals for (purpose, token, sample): normal i comes from block i / 4.
/// The scalar reference; the CPU backend vectorises the same mapping.
template <class T>
VMOER_HOST_DEVICE inline void normals(const Stream& s, Purpose p, std::uint32_t token, std::uint32_t sample,
                                      T* out, Index n) {
  T tmp[4];
  for (Index i = 0; i < n; i += 4) {
    normals4(s.block(p, token, sample, std::uint32_t(i / 4)), tmp);
    for (Index j = 0; j < 4 && i + j < n; ++j) out[i + j] = tmp[j];
  }
}

}  // namespace vmoer::rng
