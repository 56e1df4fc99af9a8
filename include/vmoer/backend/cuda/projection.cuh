// Y = X W^T + b on the GPU for row-major X [m, k] (float, half or bfloat16, widened to
// float on load) and float W [n, k], accumulated in float. Two kernels:
//   rows   m <= rows_max: a warp per output column streams its row of W once and keeps
//          the m dot products in registers; decode batches are bound by reading W, and
//          this reads it once at full width.
//   tiled  larger m: 64 x 64 output tiles through shared memory, 4 x 4 per thread.
// Optionally relu is applied to X on load, which fuses the encoder trunk's activation
// into the head projection.
//
// Not batch invariant: the reduction order depends on the kernel, so a token's logits
// may differ in the last bits with the batch size (the CPU projection is invariant).
#pragma once

#include <cstdint>

#include "vmoer/backend/cuda/warp.cuh"
#include "vmoer/config.hpp"

namespace vmoer::cuda::detail {

/// One projection: Y[i, j] = sum_p X[i, p] W[j, p] + bias[j] (bias may be null).
template <class In>
struct Gemm {
  const In* x = nullptr;       ///< [m, k], row stride ldx
  Index ldx = 0;               ///< row stride of x
  Index m = 0;                 ///< rows of x and y
  const float* w = nullptr;    ///< [n, k], contiguous
  Index n = 0;                 ///< rows of w, columns of y
  Index k = 0;                 ///< the reduced dimension
  const float* bias = nullptr; ///< [n] or null
  float* y = nullptr;          ///< [m, n], row stride ldy
  Index ldy = 0;               ///< row stride of y
};

/// rows kernel: batches up to this many tokens; above it the tiled kernel wins.
inline constexpr Index rows_max = 16;
inline constexpr int rows_warps = 8;  // warps (output columns) per block
inline constexpr int tile = 64;       // tiled kernel: output tile edge
inline constexpr int tile_k = 16;     // tiled kernel: depth of a shared-memory stage
inline constexpr int tile_threads = 256;
/// Most rows one projection takes: the tiled kernel's grid has at most 65535 rows of tiles.
inline constexpr Index max_rows = Index(65535) * tile;

template <bool Relu, class In>
__device__ inline float load_input(const In* p) {
  const float v = to_float(*p);
  if constexpr (Relu) return v < 0.f ? 0.f : v;  // keeps NaN, as the CPU's cwiseMax does not hide it either
  return v;
}

template <bool Relu, class In>
__global__ void __launch_bounds__(rows_warps * 32) project_rows(Gemm<In> g) {
  const int lane = int(threadIdx.x) % 32;
  const Index j = Index(blockIdx.x) * rows_warps + Index(threadIdx.x) / 32;
  if (j >= g.n) return;  // whole warps leave together
  const float* w = g.w + j * g.k;
  float acc[rows_max];
#pragma unroll
  for (int i = 0; i < int(rows_max); ++i) acc[i] = 0.f;
  for (Index p = lane; p < g.k; p += 32) {
    const float wp = __ldg(w + p);
#pragma unroll
    for (int i = 0; i < int(rows_max); ++i)
      if (i < g.m) acc[i] = fmaf(load_input<Relu>(g.x + i * g.ldx + p), wp, acc[i]);
  }
  const float b = g.bias ? g.bias[j] : 0.f;
#pragma unroll
  for (int i = 0; i < int(rows_max); ++i) {
    if (i >= g.m) break;  // uniform across the warp
    const float s = warp_sum(acc[i]);
    if (lane == 0) g.y[i * g.ldy + j] = s + b;
  }
}

template <bool Relu, class In>
__global__ void __launch_bounds__(tile_threads) project_tiled(Gemm<In> g) {
  __shared__ float xs[tile_k][tile + 4];  // [p][row of x]; +4 staggers the banks
  __shared__ float ws[tile_k][tile + 4];  // [p][row of w]
  const int tid = int(threadIdx.x), tx = tid % 16, ty = tid / 16;
  const Index i0 = Index(blockIdx.y) * tile, j0 = Index(blockIdx.x) * tile;
  float acc[4][4] = {};
  for (Index p0 = 0; p0 < g.k; p0 += tile_k) {
    for (int s = tid; s < tile * tile_k; s += tile_threads) {
      const int r = s / tile_k, c = s % tile_k;
      const Index p = p0 + c;
      const bool in_k = p < g.k;
      xs[c][r] = in_k && i0 + r < g.m ? load_input<Relu>(g.x + (i0 + r) * g.ldx + p) : 0.f;
      ws[c][r] = in_k && j0 + r < g.n ? __ldg(g.w + (j0 + r) * g.k + p) : 0.f;
    }
    __syncthreads();
#pragma unroll
    for (int c = 0; c < tile_k; ++c) {
      float a[4], b[4];
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        a[q] = xs[c][ty * 4 + q];
        b[q] = ws[c][tx * 4 + q];
      }
#pragma unroll
      for (int u = 0; u < 4; ++u)
#pragma unroll
        for (int v = 0; v < 4; ++v) acc[u][v] = fmaf(a[u], b[v], acc[u][v]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int u = 0; u < 4; ++u) {
    const Index i = i0 + ty * 4 + u;
    if (i >= g.m) break;
#pragma unroll
    for (int v = 0; v < 4; ++v) {
      const Index j = j0 + tx * 4 + v;
      if (j < g.n) g.y[i * g.ldy + j] = acc[u][v] + (g.bias ? g.bias[j] : 0.f);
    }
  }
}

/// Launches the projection on `stream`; returns the launch error (cudaSuccess when none).
template <bool Relu, class In>
cudaError_t project(const Gemm<In>& g, cudaStream_t stream) {
  if (g.m == 0 || g.n == 0) return cudaSuccess;
  if (g.m <= rows_max) {
    const unsigned blocks = unsigned((g.n + rows_warps - 1) / rows_warps);
    project_rows<Relu><<<blocks, rows_warps * 32, 0, stream>>>(g);
  } else {
    const dim3 grid(unsigned((g.n + tile - 1) / tile), unsigned((g.m + tile - 1) / tile));
    project_tiled<Relu><<<grid, tile_threads, 0, stream>>>(g);
  }
  return cudaGetLastError();
}

}  // namespace vmoer::cuda::detail
