// Compiler glue shared by every header: the host/device qualifier and the index type.
#pragma once

#include <cstdint>

#include "vmoer/version.hpp"

// -ffast-math (and -ffinite-math-only) let the compiler assume that no value is NaN or
// infinite, and reassociate sums: the checks that refuse non-finite input would vanish,
// and a token's routing would depend on its batch. Refused, rather than silently wrong.
#if defined(__FAST_MATH__) || (defined(__FINITE_MATH_ONLY__) && __FINITE_MATH_ONLY__)
#error "vmoer needs IEEE floating point: compile the files that include it without -ffast-math or -ffinite-math-only (add -fno-fast-math for them)"
#endif

#if defined(__CUDACC__) || defined(__HIPCC__)
/// Marks per-token math that both the CPU and the CUDA backend compile.
#define VMOER_HOST_DEVICE __host__ __device__
#else
#define VMOER_HOST_DEVICE
#endif

#if defined(__GNUC__) || defined(__clang__)
#define VMOER_RESTRICT __restrict__
/// Inlines a small SIMD helper whose batch arguments would otherwise pass through memory.
#define VMOER_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define VMOER_RESTRICT
#define VMOER_ALWAYS_INLINE inline
#endif

#define VMOER_PRAGMA(x) _Pragma(#x)
#if (defined(__GNUC__) || defined(__clang__)) && !defined(__CUDACC__)
/// Unrolls the next loop (n iterations at most) before GCC would turn a loop over a small
/// array of SIMD batches into memset or memcpy, which keeps the array in memory instead of
/// in registers. (nvcc's front end does not know the pragma; device code has no such loops.)
#define VMOER_UNROLL(n) VMOER_PRAGMA(GCC unroll n)
#else
#define VMOER_UNROLL(n)
#endif

namespace vmoer {

/// Sizes and indices. Signed, as Eigen::Index, so that differences never wrap.
using Index = std::int64_t;

}  // namespace vmoer
