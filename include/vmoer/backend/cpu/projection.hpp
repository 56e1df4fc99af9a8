// Y = X W^T + b for row-major X [m, k] and W [n, k] (the PyTorch Linear layout).
//
// Batch invariance: every output element is reduced in one fixed order, whatever m,
// n, the element's position or the thread: lane-wise fused multiply-adds over k in
// steps of one SIMD batch, one horizontal sum, then the k % width tail in order, then
// the bias. A token's logits therefore never depend on the batch it arrived in, which
// a BLAS GEMM does not promise (its kernels and blocking change with the shape).
//
// Speed: a 4 x 4 register block of dot products, with k cut into slabs that keep
// the X and W rows in L1. Between slabs the lane accumulators are parked in a
// scratch buffer; a store and reload is exact, so slabbing leaves the order intact.
// The last slab finishes each element in registers (sum, tail, bias, store), so a
// second pass over parked lanes never runs.
#pragma once

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "vmoer/backend/cpu/simd.hpp"
#include "vmoer/config.hpp"

namespace vmoer::cpu {

/// Lane accumulators of one projection call, reused across calls by one thread.
template <class T>
using projection_scratch = std::vector<batch<T>, xsimd::aligned_allocator<batch<T>>>;

namespace detail {

inline constexpr int block_rows = 4;
inline constexpr int block_cols = 4;
inline constexpr Index slab = 1024;  // k per slab: 4 + 4 rows of 4 KiB fit a 32 KiB L1

/// What the last slab of a block does once its lane sums are complete: the
/// horizontal sum, the k % width tail in order, the bias, straight from registers.
template <class T>
struct BlockOutput {
  Index k;        ///< full reduction length (the tail runs from the last slab's end to k)
  const T* bias;  ///< bias of the block's first column, or null
  T* y;           ///< Y of the block's first element
  Index ldy;      ///< row stride of Y
};

// The accumulators a[] must live in registers. GCC keeps a small array in memory when a
// loop indexes it or when it turns a loop into memset or memcpy, so every loop over a[]
// is unrolled, here and in reduce_add_16 (worth 10% on the router's projection and 40%
// on the encoder heads, whose short k made the round trip through memory weigh most).
template <class T, int MR, int NR>
inline void dot_block(const T* VMOER_RESTRICT x, Index ldx, const T* VMOER_RESTRICT w, Index ldw, Index k0,
                      Index k1, batch<T>* VMOER_RESTRICT acc, const BlockOutput<T>* out) {
  using B = batch<T>;
  B a[MR * NR];  // a[i * NR + j]: row i of X against row j of W
  VMOER_UNROLL(16)
  for (int c = 0; c < MR * NR; ++c) a[c] = k0 == 0 ? B(T(0)) : acc[c];
  for (Index p = k0; p < k1; p += Index(B::size)) {
    B xs[MR];
    for (int i = 0; i < MR; ++i) xs[i] = in_register(B::load_unaligned(x + i * ldx + p));
    for (int j = 0; j < NR; ++j) {
      const B wj = in_register(B::load_unaligned(w + j * ldw + p));
      for (int i = 0; i < MR; ++i) a[i * NR + j] = cpu::fmadd(xs[i], wj, a[i * NR + j]);
    }
  }
  if (!out) {  // more slabs follow: park the lanes (a store and reload is exact)
    VMOER_UNROLL(16)
    for (int c = 0; c < MR * NR; ++c) acc[c] = a[c];
    return;
  }
  // The horizontal sums: for 16 of them, the same sums bit for bit in one tree where there is one.
  alignas(64) T sums[MR * NR];
  B all;
  if (MR * NR == 16 && reduce_add_16(a, all)) {
    all.store_aligned(sums);
  } else {
    VMOER_UNROLL(16)
    for (int c = 0; c < MR * NR; ++c) sums[c] = reduce_add(a[c]);
  }
  for (int i = 0; i < MR; ++i) {
    T* y = out->y + i * out->ldy;
    const T* s = sums + i * NR;
    if (k1 == out->k) {  // no tail (k whole batches, as in every encoder head): the bias in
                         // rows of additions that the compiler vectorises
      if (out->bias)
        for (int j = 0; j < NR; ++j) y[j] = s[j] + out->bias[j];
      else
        for (int j = 0; j < NR; ++j) y[j] = s[j];
      continue;
    }
    for (int j = 0; j < NR; ++j) {
      T sum = s[j];
      for (Index p = k1; p < out->k; ++p) sum = cpu::fmadd(x[i * ldx + p], w[j * ldw + p], sum);
      y[j] = out->bias ? sum + out->bias[j] : sum;
    }
  }
}

// Edge blocks (m % 4, n % 4) use the same template with fewer rows or columns,
// hence the same per-element order.
template <class T, int MR, int... NRs>
inline void dot_block_rows(int nr, const T* x, Index ldx, const T* w, Index ldw, Index k0, Index k1, batch<T>* acc,
                           const BlockOutput<T>* out, std::integer_sequence<int, NRs...>) {
  ((nr == NRs + 1 ? dot_block<T, MR, NRs + 1>(x, ldx, w, ldw, k0, k1, acc, out) : void()), ...);
}

template <class T, int... MRs>
inline void dot_block_any(int mr, int nr, const T* x, Index ldx, const T* w, Index ldw, Index k0, Index k1,
                          batch<T>* acc, const BlockOutput<T>* out, std::integer_sequence<int, MRs...>) {
  ((mr == MRs + 1 ? dot_block_rows<T, MRs + 1>(nr, x, ldx, w, ldw, k0, k1, acc, out,
                                               std::make_integer_sequence<int, block_cols>{})
                  : void()),
   ...);
}

// A single row (a decode step) has no second row to reuse a W load against, so it
// takes eight columns at once instead: eight independent accumulator chains hide the
// FMA latency that four could not. The per-element order is the same as above.
inline constexpr int row_cols = 8;

template <class T>
inline void project_row(const T* x, const T* w, Index ldw, Index n, Index k, Index kv, const T* bias, T* y) {
  for (Index j = 0; j < n; j += row_cols) {
    const int nr = int(std::min<Index>(row_cols, n - j));
    const BlockOutput<T> out{k, bias ? bias + j : nullptr, y + j, 0};
    // One pass over all of k that finishes in registers: no lanes to park.
    dot_block_rows<T, 1>(nr, x, 0, w + j * ldw, ldw, 0, kv, static_cast<batch<T>*>(nullptr), &out,
                         std::make_integer_sequence<int, row_cols>{});
  }
}

}  // namespace detail

/// Y[i, j] = sum_p X[i, p] W[j, p] (+ bias[j]) for i < m, j < n; bias may be null.
/// Row i of Y depends only on row i of X, on W and on the bias (see the file comment).
template <class T>
inline void project(const T* x, Index ldx, Index m, const T* w, Index ldw, Index n, Index k, const T* bias, T* y,
                    Index ldy, projection_scratch<T>& scratch) {
  using detail::block_cols;
  using detail::block_rows;
  constexpr Index width = Index(batch<T>::size);
  const Index kv = k / width * width;
  if (m == 1) return detail::project_row(x, w, ldw, n, k, kv, bias, y);
  const Index row_blocks = (m + block_rows - 1) / block_rows;
  const Index col_blocks = (n + block_cols - 1) / block_cols;
  const Index cells = block_rows * block_cols;
  const Index slabs = std::max<Index>(1, (kv + detail::slab - 1) / detail::slab);  // one, empty, when k < width
  if (slabs > 1) scratch.resize(std::size_t(row_blocks * col_blocks * cells));

  for (Index s = 0; s < slabs; ++s) {
    const Index k0 = s * detail::slab, k1 = std::min(kv, k0 + detail::slab);
    for (Index jb = 0; jb < col_blocks; ++jb) {
      const Index j = jb * block_cols;
      const int nr = int(std::min<Index>(block_cols, n - j));
      for (Index ib = 0; ib < row_blocks; ++ib) {
        const Index i = ib * block_rows;
        const int mr = int(std::min<Index>(block_rows, m - i));
        batch<T>* acc = slabs > 1 ? scratch.data() + (ib * col_blocks + jb) * cells : nullptr;
        const detail::BlockOutput<T> out{k, bias ? bias + j : nullptr, y + i * ldy + j, ldy};
        const detail::BlockOutput<T>* last = s + 1 == slabs ? &out : nullptr;
        if (mr == block_rows && nr == block_cols)
          detail::dot_block<T, block_rows, block_cols>(x + i * ldx, ldx, w + j * ldw, ldw, k0, k1, acc, last);
        else
          detail::dot_block_any<T>(mr, nr, x + i * ldx, ldx, w + j * ldw, ldw, k0, k1, acc, last,
                                   std::make_integer_sequence<int, block_rows>{});
      }
    }
  }
}

namespace detail {

// MR batches added elementwise: a leaf of reduce_add_across for MR rows of Y at once.
template <class B, int MR>
struct RowBatches {
  B row[MR];
  friend VMOER_ALWAYS_INLINE RowBatches operator+(const RowBatches& a, const RowBatches& b) {
    RowBatches s;
    VMOER_UNROLL(8)
    for (int i = 0; i < MR; ++i) s.row[i] = a.row[i] + b.row[i];
    return s;
  }
};

// Lane l of project()'s accumulators for MR rows of X, one batch of outputs: the sums of
// x_i[p] W^T[p] over p = l, l + w, ... < kv, in that order, from +0. The leaves of
// reduce_add_across; a functor, as GCC may leave a lambda out of line and return its
// batches through memory.
template <class T, int MR>
struct LaneDots {
  const T* x;
  Index ldx;
  const T* wt;
  Index ldwt, kv;
  VMOER_ALWAYS_INLINE RowBatches<batch<T>, MR> operator()(int l) const {
    using B = batch<T>;
    RowBatches<B, MR> a;
    VMOER_UNROLL(8)
    for (int i = 0; i < MR; ++i) a.row[i] = B(T(0));
    for (Index p = l; p < kv; p += Index(B::size)) {
      const B wp = B::load_aligned(wt + p * ldwt);
      VMOER_UNROLL(8)
      for (int i = 0; i < MR; ++i) a.row[i] = cpu::fmadd(B(x[i * ldx + p]), wp, a.row[i]);
    }
    return a;
  }
};

// MR rows of Y in one batch of outputs, the first `cols` lanes stored: the lane sums'
// tree, the k % w tail in order, then the bias (null: none), as project() ends them.
template <class T, int MR>
inline void transposed_rows(const T* x, Index ldx, const T* wt, Index ldwt, Index k, Index kv, const T* bias, T* y,
                            Index ldy, Index cols) {
  using B = batch<T>;
  const auto sums = reduce_add_across(LaneDots<T, MR>{x, ldx, wt, ldwt, kv});
  alignas(64) T lanes[B::size];
  for (int i = 0; i < MR; ++i) {
    B sum = sums.row[i];
    for (Index p = kv; p < k; ++p) sum = cpu::fmadd(B(x[i * ldx + p]), B::load_aligned(wt + p * ldwt), sum);
    if (bias) sum += B::load_aligned(bias);
    if (cols == Index(B::size)) {
      sum.store_unaligned(y + i * ldy);
    } else {
      sum.store_aligned(lanes);
      std::copy(lanes, lanes + cols, y + i * ldy);
    }
  }
}

template <class T, int... MRs>
inline void transposed_rows_any(int mr, const T* x, Index ldx, const T* wt, Index ldwt, Index k, Index kv,
                                const T* bias, T* y, Index ldy, Index cols, std::integer_sequence<int, MRs...>) {
  ((mr == MRs + 1 ? transposed_rows<T, MRs + 1>(x, ldx, wt, ldwt, k, kv, bias, y, ldy, cols) : void()), ...);
}

}  // namespace detail

/// project() from W^T [k, n] instead of W (row stride ldwt, a whole number of batches;
/// entries past n are read and ignored): the same Y, bit for bit, where lane_trees<T>.
/// Each lane holds one output, and lane l of project()'s accumulators becomes a batch of
/// its own, so the horizontal sums turn into reduce_add_across's vertical additions. For
/// short k (the encoder heads, k = H) those sums cost project() as much as the products.
/// Five rows of X share each load of W^T: their five partial trees, W^T's batch and a
/// broadcast of x fill the 32 registers.
template <class T>
  requires lane_trees<T>
inline void project_transposed(const T* x, Index ldx, Index m, const T* wt, Index ldwt, Index n, Index k,
                               const T* bias, T* y, Index ldy) {
  constexpr Index w = Index(batch<T>::size);
  constexpr int rows = 5;
  const Index kv = k / w * w;
  alignas(64) T lanes[w];
  for (Index j = 0; j < n; j += w) {
    const Index cols = std::min(w, n - j);
    if (bias) {  // padded with zeros, as W^T's columns are
      std::fill(lanes, lanes + w, T(0));
      std::copy(bias + j, bias + j + cols, lanes);
    }
    const T* b = bias ? lanes : nullptr;
    Index i = 0;
    for (; i + rows <= m; i += rows)
      detail::transposed_rows<T, rows>(x + i * ldx, ldx, wt + j, ldwt, k, kv, b, y + i * ldy + j, ldy, cols);
    if (i < m)
      detail::transposed_rows_any<T>(int(m - i), x + i * ldx, ldx, wt + j, ldwt, k, kv, b, y + i * ldy + j, ldy,
                                     cols, std::make_integer_sequence<int, rows - 1>{});
  }
}

/// Room in `copy` for m rows of k entries that collide with none of W's in L1 (see
/// rows_collide): rows one cache line longer than k, the first half a page past W's first
/// row. Moving a few hidden states there is cheaper than spreading W when a call has
/// fewer tokens than W has rows. Returns the first row, row stride in ldx.
template <class T>
inline T* rows_clear_of(const T* w, Index m, Index k, std::vector<T, xsimd::aligned_allocator<T>>& copy, Index& ldx) {
  constexpr Index page = 4096, line = 64;
  ldx = k + line / Index(sizeof(T));
  copy.resize(std::size_t(m * ldx + page / Index(sizeof(T))));
  const auto offset = [](const void* p) { return Index(reinterpret_cast<std::uintptr_t>(p) % page); };
  const Index shift = (offset(w) + page / 2 - offset(copy.data()) + page) % page;  // bytes, whole elements of T
  return copy.data() + shift / Index(sizeof(T));
}

/// W [n, k] transposed into `copy` for project_transposed, rows padded to whole batches
/// (with zeros); returns the copy, row stride in ldwt. A batch of W's rows at a time, so
/// that the rows read stay in L1 while every row written gets one batch.
template <class T>
inline const T* transpose_padded(const T* w, Index n, Index k, std::vector<T, xsimd::aligned_allocator<T>>& copy,
                                 Index& ldwt) {
  constexpr Index width = Index(batch<T>::size);
  ldwt = padded<T>(n);
  copy.resize(std::size_t(k * ldwt));
  for (Index j0 = 0; j0 < ldwt; j0 += width) {
    const Index rows = std::min(width, n - j0);
    for (Index p = 0; p < k; ++p) {
      T* to = copy.data() + p * ldwt + j0;
      for (Index j = 0; j < rows; ++j) to[j] = w[(j0 + j) * k + p];
      std::fill(to + rows, to + width, T(0));
    }
  }
  return copy.data();
}

/// Whether rows of X (stride ldx) and of W (stride ldw) collide in the L1 cache. Rows
/// whose stride is a whole number of 4 KiB pages all start at the same offset in their
/// page, so a block's four rows of X share one L1 set, and so do its four rows of W; when
/// X and W start at nearly the same offset too, the 4 + 4 rows fill all eight ways of one
/// set and evict each other: about 12% slower at D = 2048, depending only on where the
/// caller's buffers happen to lie.
template <class T>
inline bool rows_collide(const void* x, Index ldx, const T* w, Index ldw) {
  constexpr Index page = 4096, near = 256;  // bytes; 256 or more apart ran as fast as half a page
  const auto pages = [](Index ld) { return Index(ld * Index(sizeof(T))) % page == 0; };
  const Index d = Index((reinterpret_cast<std::uintptr_t>(x) - reinterpret_cast<std::uintptr_t>(w)) % page);
  return pages(ldx) && pages(ldw) && std::min(d, page - d) < near;
}

/// W [n, k] copied into `copy` with rows one cache line longer, so that a block's rows of
/// W fall in four different L1 sets (see rows_collide); returns the copy, stride in ldw.
/// The products are the same, bit for bit: only the addresses move.
template <class T>
inline const T* spread_rows(const T* w, Index n, Index k, std::vector<T, xsimd::aligned_allocator<T>>& copy,
                            Index& ldw) {
  ldw = k + Index(64 / sizeof(T));
  copy.resize(std::size_t(n * ldw));
  for (Index j = 0; j < n; ++j) std::copy(w + j * k, w + (j + 1) * k, copy.data() + j * ldw);
  return copy.data();
}

}  // namespace vmoer::cpu
