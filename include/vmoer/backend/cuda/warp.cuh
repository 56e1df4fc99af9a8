// Warp-wide reductions and element loads shared by the CUDA kernels.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace vmoer::cuda::detail {

/// All 32 lanes take part in every warp collective below.
inline constexpr unsigned full_mask = 0xFFFFFFFFu;

/// Sum over the warp; every lane gets the result.
__device__ inline float warp_sum(float x) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) x += __shfl_xor_sync(full_mask, x, offset);
  return x;
}

/// Maximum over the warp; every lane gets the result.
__device__ inline float warp_max(float x) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) x = fmaxf(x, __shfl_xor_sync(full_mask, x, offset));
  return x;
}

/// Input elements widen to float: the accumulation type of every input type.
__device__ inline float to_float(float x) { return x; }
/// See above.
__device__ inline float to_float(__half x) { return __half2float(x); }
/// See above.
__device__ inline float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

}  // namespace vmoer::cuda::detail
