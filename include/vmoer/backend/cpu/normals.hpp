// Philox words and Box-Muller normals, a SIMD batch at a time: the vectorised form of
// rng/philox.hpp and rng/normal.hpp, giving the same words and (to float rounding) the
// same normals as those scalar references.
#pragma once

#include <array>
#include <cstdint>
#include <tuple>
#include <type_traits>

#include "vmoer/backend/cpu/simd.hpp"
#include "vmoer/rng/normal.hpp"

namespace vmoer::cpu {

/// The four words of a batch of Philox blocks, one block per lane.
using PhiloxLanes = std::array<xsimd::batch<std::uint32_t>, 4>;

namespace detail {

using Lanes = xsimd::batch<std::uint32_t>;

// Inside the rounds a batch of blocks is two halves with one block per 64-bit lane, each
// word in the low 32 bits. A 32 x 32 -> 64-bit multiply then leaves lo in place and hi
// one shift away, where 32-bit lanes need both halves of every product shuffled back
// into place. The high 32 bits carry junk that nothing reads: the multiplies read low
// halves only, xor keeps the halves apart, and pack_low drops them.
using Wide = xsimd::batch<std::uint64_t>;

// hi and lo of a * m: a batch of words...
VMOER_ALWAYS_INLINE void mul_hi_lo(const Wide& a, std::uint32_t m, Wide& hi, Wide& lo) {
  lo = mul_low_words(a, Wide(m));
#if XSIMD_WITH_AVX512F
  if constexpr (Wide::size == 8) {  // swapping the halves leaves junk above too; vpshufd issues
    // twice as often as a 64-bit shift on the Zen 5 this was measured on
    hi = Wide(_mm512_shuffle_epi32(lo, _MM_PERM_CDAB));
    return;
  }
#endif
  hi = lo >> 32;
}
// ... or a word that every lane shares, which stays a scalar.
VMOER_ALWAYS_INLINE void mul_hi_lo(std::uint32_t a, std::uint32_t m, std::uint32_t& hi, std::uint32_t& lo) {
  const std::uint64_t p = std::uint64_t(a) * m;
  hi = std::uint32_t(p >> 32);
  lo = std::uint32_t(p);
}

// a ^ b ^ c in one instruction that overwrites a. Left to itself GCC 12 overwrote a copy
// of the round key, which every half shares: one register move per exclusive or.
VMOER_ALWAYS_INLINE Wide xor3(const Wide& a, const Wide& b, const Wide& c) {
#if XSIMD_WITH_AVX512F
  if constexpr (Wide::size == 8) return Wide(_mm512_ternarylogic_epi64(a, b, c, 0x96));
#endif
  return a ^ b ^ c;
}

// a ^ b ^ k, a batch as soon as a or b is one; scalars are combined before broadcasting.
template <class A, class B>
VMOER_ALWAYS_INLINE auto xor_key(const A& a, const B& b, std::uint32_t k) {
  constexpr bool a_shared = std::is_same_v<A, std::uint32_t>, b_shared = std::is_same_v<B, std::uint32_t>;
  if constexpr (a_shared && b_shared)
    return std::uint32_t(a ^ b ^ k);
  else if constexpr (a_shared)
    return b ^ Wide(a ^ k);
  else if constexpr (b_shared)
    return a ^ Wide(b ^ k);
  else
    return xor3(a, b, Wide(k));
}

// One Philox round (rng::detail::philox_round) on words that are each a batch or, while
// every lane holds the same value, a scalar; a word becomes a batch when it mixes with one.
template <class W0, class W1, class W2, class W3>
VMOER_ALWAYS_INLINE auto philox_round(const std::tuple<W0, W1, W2, W3>& c, std::uint32_t k0, std::uint32_t k1) {
  W0 hi0, lo0;
  W2 hi1, lo1;
  mul_hi_lo(std::get<0>(c), rng::detail::philox_m0, hi0, lo0);
  mul_hi_lo(std::get<2>(c), rng::detail::philox_m1, hi1, lo1);
  return std::tuple{xor_key(hi1, std::get<1>(c), k0), lo1, xor_key(hi0, std::get<3>(c), k1), lo0};
}

// The 32-bit lanes whose first half holds the low words of a's 64-bit lanes and whose
// second half those of b's.
VMOER_ALWAYS_INLINE Lanes pack_low(const Wide& a, const Wide& b) {
#if XSIMD_WITH_AVX512F
  if constexpr (Lanes::size == 16) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    return Lanes(_mm512_permutex2var_epi32(a, even, b));
  }
#endif
  alignas(64) std::uint64_t halves[2][Wide::size];
  a.store_aligned(halves[0]);
  b.store_aligned(halves[1]);
  alignas(64) std::uint32_t words[Lanes::size];
  for (std::size_t l = 0; l < Lanes::size; ++l) words[l] = std::uint32_t(halves[l / Wide::size][l % Wide::size]);
  return Lanes::load_aligned(words);
}
VMOER_ALWAYS_INLINE Lanes pack_low(std::uint32_t a, std::uint32_t b) { return pack_low(Wide(a), Wide(b)); }

// Rounds Round..9 of M half batches, round by round so that one half's multiplies run
// while another's wait (a single one is bound by the latency of its ten dependent
// rounds); the words' types may change up to the third round. Halves 2i and 2i + 1 make
// out[i].
template <int Round, class State, std::size_t M>
VMOER_ALWAYS_INLINE void philox_rounds(const std::array<State, M>& c, rng::u32x2 key, PhiloxLanes* out) {
  if constexpr (Round == 10) {
    for (std::size_t i = 0; i < M / 2; ++i)
      out[i] = PhiloxLanes{pack_low(std::get<0>(c[2 * i]), std::get<0>(c[2 * i + 1])),
                           pack_low(std::get<1>(c[2 * i]), std::get<1>(c[2 * i + 1])),
                           pack_low(std::get<2>(c[2 * i]), std::get<2>(c[2 * i + 1])),
                           pack_low(std::get<3>(c[2 * i]), std::get<3>(c[2 * i + 1]))};
  } else {
    const std::uint32_t k0 = key[0] + std::uint32_t(Round) * rng::detail::philox_w0,
                        k1 = key[1] + std::uint32_t(Round) * rng::detail::philox_w1;
    std::array<decltype(philox_round(c[0], k0, k1)), M> next;
    for (std::size_t i = 0; i < M; ++i) next[i] = philox_round(c[i], k0, k1);
    philox_rounds<Round + 1>(next, key, out);
  }
}

// Half h of a batch of words: lanes h W/2 ... of x, one per 64-bit lane.
VMOER_ALWAYS_INLINE Wide half_of(const Lanes& x, std::size_t h) {
  alignas(64) std::uint32_t words[Lanes::size];
  x.store_aligned(words);
  alignas(64) std::uint64_t wide[Wide::size];
  for (std::size_t l = 0; l < Wide::size; ++l) wide[l] = words[h * Wide::size + l];
  return Wide::load_aligned(wide);
}

}  // namespace detail

/// Philox4x32-10 of N batches of counters at once: lane l of c[i] holds one counter on
/// entry and its output block on return (rng::philox4x32, lane by lane).
template <int N>
VMOER_ALWAYS_INLINE void philox4x32_lanes(PhiloxLanes* c, rng::u32x2 key) {
  using detail::Wide;
  std::array<std::tuple<Wide, Wide, Wide, Wide>, 2 * N> state;
  for (int i = 0; i < N; ++i)
    for (std::size_t h = 0; h < 2; ++h)
      state[2 * std::size_t(i) + h] = std::tuple{detail::half_of(c[i][0], h), detail::half_of(c[i][1], h),
                                                 detail::half_of(c[i][2], h), detail::half_of(c[i][3], h)};
  detail::philox_rounds<0>(state, key, c);
}

/// The counter word that a batch of Philox calls steps through, lane by lane.
enum class Across : int {
  blocks = 0,   ///< lane l: block + l (one sample's consecutive blocks)
  samples = 1,  ///< lane l: sample + l (one block of consecutive samples)
};

/// The Philox blocks of (purpose, token, sample, block) for N batches, into out[0..N):
/// lane l of batch i steps l along `across`, and batch i starts i batches further along
/// it for Across::blocks (block + i W + l) or i blocks further for Across::samples
/// (sample + l, block + i).
/// Only the stepped word differs between lanes, so it alone enters as a batch: the
/// first rounds multiply the others once, as scalars (bit-identical, with about a
/// sixth fewer vector operations for Across::samples and a tenth for Across::blocks).
template <int N, Across across>
VMOER_ALWAYS_INLINE void philox_batches(const rng::Stream& s, rng::Purpose p, std::uint32_t token,
                                        std::uint32_t sample, std::uint32_t block, PhiloxLanes* out) {
  using detail::Wide;
  alignas(64) std::uint64_t lane[2][Wide::size];
  for (std::size_t l = 0; l < 2 * Wide::size; ++l) lane[l / Wide::size][l % Wide::size] = l;
  const Wide steps[2] = {Wide::load_aligned(lane[0]), Wide::load_aligned(lane[1])};
  // Word `across` of the counter as a batch stepping lane by lane (half h of the lanes),
  // the others as scalars. A step that carries past 32 bits only touches the junk half.
  auto counter = [&](const rng::u32x4& c, std::size_t h) {
    auto word = [&](auto j) {
      if constexpr (decltype(j)::value == int(across))
        return Wide(c[j]) + steps[h];
      else
        return c[j];
    };
    return std::tuple{word(std::integral_constant<int, 0>{}), word(std::integral_constant<int, 1>{}),
                      word(std::integral_constant<int, 2>{}), word(std::integral_constant<int, 3>{})};
  };
  constexpr std::uint32_t step = across == Across::blocks ? std::uint32_t(detail::Lanes::size) : 1u;
  std::array<decltype(counter(rng::u32x4{}, 0)), 2 * N> state;
  for (int i = 0; i < N; ++i)
    for (std::size_t h = 0; h < 2; ++h)
      state[2 * std::size_t(i) + h] = counter(s.counter(p, token, sample, block + std::uint32_t(i) * step), h);
  detail::philox_rounds<0>(state, s.key(), out);
}

namespace detail {

// philox_pairs' words for blocks b0 .. b0 + n - 1, from N batches (n <= N W).
template <int N>
inline void philox_pairs_of(const rng::Stream& s, rng::Purpose p, std::uint32_t token, std::uint32_t sample,
                            Index b0, Index n, std::uint32_t* VMOER_RESTRICT x, std::uint32_t* VMOER_RESTRICT y) {
  constexpr Index w = Index(xsimd::batch<std::uint32_t>::size);
  PhiloxLanes words[N];
  philox_batches<N, Across::blocks>(s, p, token, sample, std::uint32_t(b0), words);
  alignas(64) std::uint32_t out[N][4][w];
  for (int i = 0; i < N; ++i)
    for (int j = 0; j < 4; ++j) words[i][j].store_aligned(out[i][j]);
  for (Index l = 0; l < n; ++l) {
    const Index b = b0 + l;
    const auto& word = out[l / w];
    x[2 * b] = word[0][l % w];
    y[2 * b] = word[1][l % w];
    x[2 * b + 1] = word[2][l % w];
    y[2 * b + 1] = word[3][l % w];
  }
}

}  // namespace detail

/// Philox words of `blocks` consecutive blocks, split into first (x) and second (y)
/// words of each Box-Muller pair: x[2b + j] = w[2j], y[2b + j] = w[2j + 1].
inline void philox_pairs(const rng::Stream& s, rng::Purpose p, std::uint32_t token, std::uint32_t sample,
                         Index blocks, std::uint32_t* VMOER_RESTRICT x, std::uint32_t* VMOER_RESTRICT y) {
  constexpr Index w = Index(xsimd::batch<std::uint32_t>::size);
  for (Index b0 = 0; b0 < blocks; b0 += 2 * w) {
    const Index n = blocks - b0 < 2 * w ? blocks - b0 : 2 * w;
    if (n > w)
      detail::philox_pairs_of<2>(s, p, token, sample, b0, n, x, y);
    else  // a second batch would be wasted
      detail::philox_pairs_of<1>(s, p, token, sample, b0, n, x, y);
  }
}

namespace detail {

// -2 log(u), Box-Muller's squared radius, for the uniform u = (x + 1/2) 2^-32 of a word
// x (rng::uniform). u is never 0, denormal or above 1, so nothing is screened, and there
// is no division (xsimd's log has all of these).
// v = x + 1/2 in float is u 2^32, rounded as u is; v = 2^k m with m in [sqrt(1/2),
// sqrt(2)) and log m = f - f^2/2 + f^3 P(f), f = m - 1 (Cephes logf, relative error below
// 1e-7). The 2^-32 and the -2 go into the constants, exactly: three multiplies fewer for
// the FMA units, which bound the Box-Muller loop.
VMOER_ALWAYS_INLINE batch<float> minus_two_log_uniform(const xsimd::batch<std::uint32_t>& x) {
  using B = batch<float>;
  using I = xsimd::batch<std::int32_t>;
  const B v = xsimd::batch_cast<float>(x) + B(0.5f);
  I bits = xsimd::bitwise_cast<I>(v) + I(0x3f800000 - 0x3f3504f3);
  const B k = xsimd::batch_cast<float>((bits >> 23) - I(0x7f + 32));  // u's exponent: v's less 32
  bits = (bits & I(0x007fffff)) + I(0x3f3504f3);
  const B f = xsimd::bitwise_cast<B>(bits) - B(1.0f);
  const B f2 = f * f, f4 = f2 * f2;
  // -2 P in Estrin's form, four independent pairs and then three levels, rather than
  // Horner's chain of eight dependent FMAs: the loop waits on that latency (Box-Muller
  // 111 -> 91 us for 256 tokens x 32 samples x 64 experts).
  constexpr float m2 = -2.0f;
  const B q0 = cpu::fmadd(B(m2 * -2.4999993993e-1f), f, B(m2 * 3.3333331174e-1f));
  const B q1 = cpu::fmadd(B(m2 * -1.6668057665e-1f), f, B(m2 * 2.0000714765e-1f));
  const B q2 = cpu::fmadd(B(m2 * -1.2420140846e-1f), f, B(m2 * 1.4249322787e-1f));
  const B q3 = cpu::fmadd(B(m2 * -1.1514610310e-1f), f, B(m2 * 1.1676998740e-1f));
  const B r0 = cpu::fmadd(q1, f2, q0), r1 = cpu::fmadd(q3, f2, q2);
  const B poly = cpu::fmadd(cpu::fmadd(B(m2 * 7.0376836292e-2f), f4, r1), f4, r0);
  // log 2 = 0.693359375 - 2.12194440e-4, and -2 (f^3 P - f^2/2 + f) = f^3 (-2 P) + f^2 - 2 f.
  const B y = cpu::fmadd(k, B(m2 * -2.12194440e-4f), poly * f * f2) + f2;
  return cpu::fmadd(k, B(m2 * 0.693359375f), y - (f + f));
}

// sin and cos of the angle v = 2 pi (y + 1/2) 2^-32 of a word y (rng::angle). The
// reduction to the nearest quarter turn is exact in integers: y = q 2^30 + d with
// |d| <= 2^29, so v = (q + (d + 1/2) 2^-30) pi/2 and only |r| <= pi/4 meets the
// polynomials (Cephes sinf/cosf). More accurate than reducing a rounded float angle.
// Bit tricks instead of computing q: t = y + 2^29 holds q in its top two bits, and
// y << 2 read as signed is 4d.
VMOER_ALWAYS_INLINE void sincos_turn(const xsimd::batch<std::uint32_t>& y, batch<float>& sin_v, batch<float>& cos_v) {
  using B = batch<float>;
  using U = xsimd::batch<std::uint32_t>;
  using I = xsimd::batch<std::int32_t>;
  const U t = y + U(1u << 29);  // wraps to quarter 0 past the last quarter, as the angle does
  constexpr double step = 1.5707963267948966 / 1073741824.0;  // (pi/2) 2^-30
  const B r = cpu::fmadd(xsimd::batch_cast<float>(xsimd::bitwise_cast<I>(y << 2)), B(float(step / 4)),
                         B(float(step / 2)));
  const B r2 = r * r;
  B ps(-1.9515295891e-4f), pc(2.443315711809948e-5f);
  ps = cpu::fmadd(cpu::fmadd(ps, r2, B(8.3321608736e-3f)), r2, B(-1.6666654611e-1f));
  pc = cpu::fmadd(cpu::fmadd(pc, r2, B(-1.388731625493765e-3f)), r2, B(4.166664568298827e-2f));
  const B s = cpu::fmadd(ps * r2, r, r);
  const B c = cpu::fmadd(cpu::fmadd(pc, r2, B(-0.5f)), r2, B(1.0f));  // 1 - r^2/2 + r^4 pc, in one op fewer
  // Quarter q: (sin, cos) = (s, c), (c, -s), (-s, -c), (-c, s). The sign of sin is q's
  // high bit (bit 31 of t), that of cos the high bit xor the low one (bits 31 and 30).
  const U sign(0x80000000u);
  const auto odd = xsimd::bool_cast(xsimd::bitwise_cast<I>(t & U(1u << 30)) != I(0));
  sin_v = xsimd::bitwise_cast<B>(xsimd::bitwise_cast<U>(xsimd::select(odd, c, s)) ^ (t & sign));
  cos_v = xsimd::bitwise_cast<B>(xsimd::bitwise_cast<U>(xsimd::select(odd, s, c)) ^ ((t ^ (t << 1)) & sign));
}

}  // namespace detail

/// Box-Muller on one batch of word pairs (rng::box_muller's mapping): u from x[j], the
/// angle from y[j], giving (r sin v, r cos v) lane by lane (j < batch<T>::size).
template <class T>
VMOER_ALWAYS_INLINE void box_muller(const std::uint32_t* x, const std::uint32_t* y, batch<T>& sin_part,
                                    batch<T>& cos_part) {
  using B = batch<T>;
  using U = xsimd::batch<std::uint32_t>;
  if constexpr (std::is_same_v<T, float>) {
    const B r = xsimd::sqrt(detail::minus_two_log_uniform(U::load_unaligned(x)));
    B s, c;
    detail::sincos_turn(U::load_unaligned(y), s, c);
    sin_part = r * s;
    cos_part = r * c;
  } else {  // double: fewer lanes than 32-bit words, and xsimd's double log and sincos
    alignas(64) T uf[B::size], vf[B::size];
    for (std::size_t j = 0; j < B::size; ++j) {
      uf[j] = rng::uniform<T>(x[j]);
      vf[j] = rng::angle<T>(y[j]);
    }
    const B r = xsimd::sqrt(B(T(-2)) * xsimd::log(B::load_aligned(uf)));
    const auto sc = xsimd::sincos(B::load_aligned(vf));
    sin_part = r * sc.first;
    cos_part = r * sc.second;
  }
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

}  // namespace vmoer::cpu
