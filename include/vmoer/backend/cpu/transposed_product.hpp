// C = Aᵀ B or C += Aᵀ B, summed over the rows of A and B: the backward passes' products,
// dW = Gᵀ X (over tokens) and dX = G W (over experts, with A = Gᵀ read through strides).
//
// Each element of C is one chain of fused multiply-adds over the rows, in order, from +0,
// then stored in C or added to it. (A chain from +0 never ends at -0, so storing it gives
// the bits of adding it to a zeroed C, without the pass that zeroes it.) Its bits depend
// on nothing else: not on the block, the thread or
// which other rows and columns a call covers. (A vector lane and the scalar column tail
// run the same chain.) B is read as it lies, row by row, so nothing is transposed: the
// batch-invariant `project` needs both operands' reduction index contiguous, which for
// these products meant transposing the hidden states of every call.
#pragma once

#include <algorithm>
#include <utility>

#include "vmoer/backend/cpu/simd.hpp"
#include "vmoer/config.hpp"

namespace vmoer::cpu {

/// Whether a product overwrites its output or is added to it.
enum class Write { assign, add };

namespace detail {

// Rows of A and batches of B's columns per register block: 4 x 4 accumulators take
// four loads of B and four broadcasts of A per 16 FMAs, as the projection's block does.
inline constexpr int product_rows = 4;
inline constexpr int product_batches = 4;

// C[i, j] (+)= sum_r A(r, i) B[r, j] for MA rows of C and NB whole batches of columns.
template <Write W, class T, int MA, int NB>
inline void transposed_product_block(const T* a, Index a_row, Index a_col, Index rows, const T* b, Index ldb, T* c,
                                     Index ldc) {
  using B = batch<T>;
  constexpr Index w = Index(B::size);
  B acc[MA * NB];
  VMOER_UNROLL(16)
  for (int q = 0; q < MA * NB; ++q) acc[q] = B(T(0));
  for (Index r = 0; r < rows; ++r) {
    B bs[NB];
    VMOER_UNROLL(8)
    for (int j = 0; j < NB; ++j) bs[j] = in_register(B::load_unaligned(b + r * ldb + j * w));
    VMOER_UNROLL(8)
    for (int i = 0; i < MA; ++i) {
      const B ai(a[r * a_row + i * a_col]);
      VMOER_UNROLL(8)
      for (int j = 0; j < NB; ++j) acc[i * NB + j] = cpu::fmadd(ai, bs[j], acc[i * NB + j]);
    }
  }
  VMOER_UNROLL(8)
  for (int i = 0; i < MA; ++i) {
    VMOER_UNROLL(8)
    for (int j = 0; j < NB; ++j) {
      T* ci = c + i * ldc + j * w;
      if constexpr (W == Write::add)
        (B::load_unaligned(ci) + acc[i * NB + j]).store_unaligned(ci);
      else
        acc[i * NB + j].store_unaligned(ci);
    }
  }
}

// The same block for fewer rows (ma < MA) or batches (nb < NB) at the edges.
template <Write W, class T, int MA, int... NBs>
inline void transposed_product_batches(int nb, const T* a, Index a_row, Index a_col, Index rows, const T* b, Index ldb,
                                       T* c, Index ldc, std::integer_sequence<int, NBs...>) {
  ((nb == NBs + 1 ? transposed_product_block<W, T, MA, NBs + 1>(a, a_row, a_col, rows, b, ldb, c, ldc) : void()), ...);
}

template <Write W, class T, int... MAs>
inline void transposed_product_any(int ma, int nb, const T* a, Index a_row, Index a_col, Index rows, const T* b,
                                   Index ldb, T* c, Index ldc, std::integer_sequence<int, MAs...>) {
  ((ma == MAs + 1 ? transposed_product_batches<W, T, MAs + 1>(nb, a, a_row, a_col, rows, b, ldb, c, ldc,
                                                              std::make_integer_sequence<int, product_batches>{})
                  : void()),
   ...);
}

}  // namespace detail

/// C[i, j] = sum_{r < rows} A(r, i) B[r, j] (Write::assign) or C[i, j] += that (Write::add)
/// for i < m, j < n, where A(r, i) = a[r a_row + i a_col] (A row-major: a_row = its leading
/// dimension, a_col = 1; Aᵀ row-major: the other way round), B is row-major [rows, n] with leading dimension ldb
/// and C row-major with leading dimension ldc. Each element's bits are those of one chain
/// over r from +0 (see the file comment).
template <Write W, class T>
inline void transposed_product(const T* a, Index a_row, Index a_col, Index rows, Index m, const T* b, Index ldb,
                               Index n, T* c, Index ldc) {
  constexpr Index w = Index(batch<T>::size), mb = detail::product_rows, nbw = detail::product_batches * w;
  const Index vector_cols = n / w * w;
  for (Index j = 0; j < vector_cols; j += nbw) {
    const int nb = int(std::min(nbw, vector_cols - j) / w);
    for (Index i = 0; i < m; i += mb) {
      const int ma = int(std::min(mb, m - i));
      const T* ai = a + i * a_col;
      if (ma == mb && nb == detail::product_batches)
        detail::transposed_product_block<W, T, detail::product_rows, detail::product_batches>(
            ai, a_row, a_col, rows, b + j, ldb, c + i * ldc + j, ldc);
      else
        detail::transposed_product_any<W, T>(ma, nb, ai, a_row, a_col, rows, b + j, ldb, c + i * ldc + j, ldc,
                                             std::make_integer_sequence<int, detail::product_rows>{});
    }
  }
  for (Index j = vector_cols; j < n; ++j)  // the column tail: each lane's chain, one element at a time
    for (Index i = 0; i < m; ++i) {
      T sum = T(0);
      for (Index r = 0; r < rows; ++r) sum = cpu::fmadd(a[r * a_row + i * a_col], b[r * ldb + j], sum);
      c[i * ldc + j] = W == Write::add ? c[i * ldc + j] + sum : sum;
    }
}

}  // namespace vmoer::cpu
