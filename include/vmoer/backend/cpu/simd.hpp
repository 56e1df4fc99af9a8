// The one place the library includes xsimd. Only CPU-backend headers include this
// file: recent xsimd does not compile under nvcc, and device code never needs it.
#pragma once

#include <type_traits>

#include <xsimd/xsimd.hpp>

#include "vmoer/config.hpp"

namespace vmoer::cpu {

/// The widest SIMD batch of T for the architecture this translation unit targets.
template <class T>
using batch = xsimd::batch<T>;

// Multiply-adds, each rounded once on a target with FMA instructions (x86 FMA3, AVX-512,
// AArch64); x86-64 before v3 has none, and xsimd multiplies and then adds. xsimd 8.1 has no
// AVX-512 kernels for them: its generic ones are x * y + z, fused only where the compiler
// contracts (GCC at -O2, not at -O1 or under -ffp-contract=off). Then the sums, and the
// agreement of two paths through them (with each other and with the CUDA kernels' fmaf),
// would hang on the caller's flags.
#if XSIMD_WITH_AVX512F
#define VMOER_ZMM_FUSED(op, x, y, z)                                             \
  if constexpr (std::is_same_v<typename B::value_type, float> && B::size == 16)  \
    return B(_mm512_##op##_ps(x, y, z));                                         \
  if constexpr (std::is_same_v<typename B::value_type, double> && B::size == 8)  \
    return B(_mm512_##op##_pd(x, y, z));
#else
#define VMOER_ZMM_FUSED(op, x, y, z)
#endif

/// x * y + z.
template <class B>
  requires xsimd::is_batch<B>::value
VMOER_ALWAYS_INLINE B fmadd(const B& x, const B& y, const B& z) {
  VMOER_ZMM_FUSED(fmadd, x, y, z)
  return xsimd::fma(x, y, z);
}

/// x * y - z.
template <class B>
  requires xsimd::is_batch<B>::value
VMOER_ALWAYS_INLINE B fmsub(const B& x, const B& y, const B& z) {
  VMOER_ZMM_FUSED(fmsub, x, y, z)
  return xsimd::fms(x, y, z);
}

/// z - x * y.
template <class B>
  requires xsimd::is_batch<B>::value
VMOER_ALWAYS_INLINE B fnmadd(const B& x, const B& y, const B& z) {
  VMOER_ZMM_FUSED(fnmadd, x, y, z)
  return xsimd::fnma(x, y, z);
}

#undef VMOER_ZMM_FUSED

/// x * y + z for one value: lane 0 of the batch form, so that a scalar tail rounds as the
/// vector lanes beside it do. That is once on targets with FMA instructions, and twice on
/// x86-64 before v3, where xsimd's batch forms multiply and then add (std::fma would round
/// once there, in software, and a column would change bits between a lane and the tail).
template <class T>
  requires std::is_floating_point_v<T>
VMOER_ALWAYS_INLINE T fmadd(T x, T y, T z) {
  return fmadd(batch<T>(x), batch<T>(y), batch<T>(z)).get(0);
}

/// Keeps a loaded batch in a register. Without it GCC 12 folds the loads of one operand of
/// a register block into each multiply-add that uses it, loading every batch four times:
/// in the projection, 20 loads per 16 FMAs saturated the load ports and capped the
/// kernel at about 70% of FMA peak.
template <class B>
inline B in_register(B b) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))  // "v": any SSE/AVX register
  typename B::register_type r = b;
  asm("" : "+v"(r));
  return B(r);
#else
  return b;
#endif
}

/// Horizontal sum. xsimd 8.1 (Debian 12) names it hadd; later releases reduce_add.
template <class B>
inline auto reduce_add(const B& b) {
#if XSIMD_VERSION_MAJOR >= 9
  return xsimd::reduce_add(b);
#else
  return xsimd::hadd(b);
#endif
}

/// reduce_add of 16 float batches at once: lane j of the result is reduce_add(v[j]),
/// bit for bit. A 4 x 4 block of dot products ends in 16 horizontal sums, each a chain
/// of six dependent shuffles and adds; one transposing tree adds the same pairs in the
/// same order (halves, quarters, then adjacent pairs, as xsimd's AVX-512 hadd does) in
/// 45 operations. Only AVX-512 float has such a tree here; elsewhere false is returned and
/// the caller sums one batch at a time. Its loops are unrolled so that a caller's array
/// of accumulators can stay in registers (see cpu::detail::dot_block).
template <class B>
VMOER_ALWAYS_INLINE bool reduce_add_16(const B* v, B& sums) {
#if XSIMD_WITH_AVX512F
  if constexpr (std::is_same_v<typename B::value_type, float> && B::size == 16) {
    // Level 1 pairs (a, b) into [a_i + a_i+8 | b_i + b_i+8]; the pairing is chosen so
    // that lane j of the last level holds v[j].
    constexpr int pairs[8][2] = {{0, 4}, {8, 12}, {1, 5}, {9, 13}, {2, 6}, {10, 14}, {3, 7}, {11, 15}};
    __m512 halves[8], quarters[4], pairs_of[2];
    VMOER_UNROLL(8)
    for (int p = 0; p < 8; ++p) {
      const __m512 a = v[pairs[p][0]], b = v[pairs[p][1]];
      halves[p] = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 2, 3, 2)),
                                _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(1, 0, 1, 0)));
    }
    VMOER_UNROLL(4)
    for (int p = 0; p < 4; ++p)  // [a | b | c | d], each t_i = s_i + s_i+4 (i < 4)
      quarters[p] = _mm512_add_ps(_mm512_shuffle_f32x4(halves[2 * p], halves[2 * p + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                                  _mm512_shuffle_f32x4(halves[2 * p], halves[2 * p + 1], _MM_SHUFFLE(3, 1, 3, 1)));
    VMOER_UNROLL(2)
    for (int p = 0; p < 2; ++p)  // adjacent pairs t0 + t1, t2 + t3 within each 128-bit lane
      pairs_of[p] = _mm512_add_ps(_mm512_shuffle_ps(quarters[2 * p], quarters[2 * p + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                                  _mm512_shuffle_ps(quarters[2 * p], quarters[2 * p + 1], _MM_SHUFFLE(3, 1, 3, 1)));
    sums = B(_mm512_add_ps(_mm512_shuffle_ps(pairs_of[0], pairs_of[1], _MM_SHUFFLE(2, 0, 2, 0)),
                           _mm512_shuffle_ps(pairs_of[0], pairs_of[1], _MM_SHUFFLE(3, 1, 3, 1))));
    return true;
  }
#endif
  (void)v;
  (void)sums;
  return false;
}

/// Whether batches of T have the trees of reduce_add_16 and reduce_add_across.
template <class T>
inline constexpr bool lane_trees = XSIMD_WITH_AVX512F && std::is_same_v<T, float> && batch<T>::size == 16;

namespace detail {
// The levels of reduce_add_16's tree: halves pair lanes l and l + 8, quarters l and l + 4.
template <int L, class Leaf>
VMOER_ALWAYS_INLINE auto tree_half(Leaf& leaf) {
  return leaf(L) + leaf(L + 8);
}
template <int L, class Leaf>
VMOER_ALWAYS_INLINE auto tree_quarter(Leaf& leaf) {
  return tree_half<L>(leaf) + tree_half<L + 4>(leaf);
}
}  // namespace detail

/// The vertical counterpart of reduce_add, where lane_trees<T>: lane j of the result is
/// reduce_add of the batch (leaf(0)[j], ..., leaf(15)[j]), bit for bit, in 15 additions
/// and no shuffle. It lets a kernel whose lanes run over outputs end a dot product as one
/// whose lanes run over k does (cpu::project_transposed). The leaves are made as the tree
/// needs them, so that only five are alive at once; a leaf may be several batches added
/// elementwise (any type with +).
template <class Leaf>
VMOER_ALWAYS_INLINE auto reduce_add_across(Leaf&& leaf) {
  using detail::tree_quarter;
  return (tree_quarter<0>(leaf) + tree_quarter<1>(leaf)) + (tree_quarter<2>(leaf) + tree_quarter<3>(leaf));
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
/// 32 x 32 -> 64.
template <class Q>
VMOER_ALWAYS_INLINE Q mul_low_words(const Q& a, const Q& b) {
#if XSIMD_WITH_AVX512F
  if constexpr (Q::size == 8) return Q(_mm512_mul_epu32(a, b));
#endif
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
