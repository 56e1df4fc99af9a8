// The loops of the backward passes: a parallel loop with per-thread scratch, and the
// parameter-gradient reduction G^T X over all tokens.
//
// Determinism: a parameter gradient is a sum over every token of the batch. It is never
// reduced per thread. Tokens are cut into fixed chunks (outer_chunk rows), each chunk's
// contribution is one chain per element (cpu::transposed_product), and the chunk
// partials are added in chunk order; threads only split the output columns. The result
// is therefore bit-identical for any thread count and tile.
#pragma once

#include <algorithm>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "vmoer/backend/cpu.hpp"
#include "vmoer/backend/cpu/transposed_product.hpp"
#include "vmoer/types.hpp"

namespace vmoer::grad {

/// A tile's rows of route()'s kept projection (Routing::projection), from one column on:
/// row i at data + i ld. Null when nothing was kept, and the backward recomputes.
template <class T>
struct KeptRows {
  const T* data = nullptr;  ///< the tile's first row, at the starting column
  Index ld = 0;             ///< distance between rows

  /// Rows begin.. of `projection` from column `col`, or none if it is empty.
  KeptRows(const Matrix<T>& projection, Index begin, Index col) {
    if (projection.size() == 0) return;
    data = projection.data() + begin * projection.cols() + col;
    ld = projection.cols();
  }
  /// Whether anything was kept.
  explicit operator bool() const { return data != nullptr; }
  /// Copies m rows of `cols` values into out [m, cols].
  void copy_to(Index m, Index cols, T* out) const {
    for (Index i = 0; i < m; ++i) std::copy_n(data + i * ld, cols, out + i * cols);
  }
};

/// Rows of one chunk of the parameter-gradient reduction; results depend on it, not on threads.
inline constexpr Index outer_chunk = 256;
/// Output columns per work item of the reduction.
inline constexpr Index outer_columns = 64;

/// Runs body(i, scratch) for i < n on the backend's threads, each thread with its own
/// scratch made by make(); the first failure (by i) is rethrown as std::runtime_error.
template <class Make, class Body>
void parallel_for(const Cpu& cpu, Index n, Make make, Body body) {
  Index failed = -1;
  std::string message;
#if defined(_OPENMP)
  const int threads = vmoer::cpu::thread_count(cpu);
#pragma omp parallel num_threads(threads) if (n > 1)
#else
  (void)cpu;
#endif
  {
    std::optional<decltype(make())> scratch;
#if defined(_OPENMP)
#pragma omp for schedule(dynamic)
#endif
    for (Index i = 0; i < n; ++i) {
      try {
        if (!scratch) scratch.emplace(make());
        body(i, *scratch);
      } catch (const std::exception& e) {  // exceptions must not cross the parallel region
#if defined(_OPENMP)
#pragma omp critical(vmoer_grad_failure)
#endif
        if (failed < 0 || i < failed) {
          failed = i;
          message = e.what();
        }
      }
    }
  }
  if (failed >= 0) throw std::runtime_error(message);
}

namespace detail {

// out += G^T X, chunk by chunk of outer_chunk rows, threads over column blocks;
// chunk_rows(r0, m) returns the chunk's rows of X as {pointer, leading dimension}.
template <class T, class ChunkRows>
void accumulate_outer_chunks(const Cpu& cpu, const T* g, Index ldg, Index rows, Index n, Index k,
                             ChunkRows chunk_rows, T* out, Index ldout) {
  const Index blocks = (k + outer_columns - 1) / outer_columns;
  for (Index r0 = 0; r0 < rows; r0 += outer_chunk) {
    const Index m = std::min(outer_chunk, rows - r0);
    // Named, not a structured binding: Clang before 16 cannot capture one in a lambda.
    const std::pair<const T*, Index> chunk = chunk_rows(r0, m);
    const T* x = chunk.first;
    const Index ldx = chunk.second;
    parallel_for(
        cpu, blocks, [] { return 0; },
        [&](Index b, int&) {
          const Index c0 = b * outer_columns;
          cpu::transposed_product<cpu::Write::add>(g + r0 * ldg, ldg, Index(1), m, n, x + c0, ldx,
                                                   std::min(outer_columns, k - c0), out + c0, ldout);
        });
  }
}

}  // namespace detail

/// out[j, c] += sum_{r < rows} g[r, j] x[r, c] for j < n, c < k (X row-major with leading
/// dimension ldx, out with ldout; g with ldg). Deterministic for any thread count (see
/// the file comment).
template <class T>
void accumulate_outer(const Cpu& cpu, const T* g, Index ldg, Index rows, Index n, Index k, const T* x, Index ldx,
                      T* out, Index ldout) {
  detail::accumulate_outer_chunks(
      cpu, g, ldg, rows, n, k, [&](Index r0, Index) { return std::pair{x + r0 * ldx, ldx}; }, out, ldout);
}

/// The same where row r of X is not stored but written by fill_x(r, T* row) (k entries):
/// the inputs of MC dropout's masked samples.
template <class T, class FillX>
void accumulate_outer(const Cpu& cpu, const T* g, Index ldg, Index rows, Index n, Index k, FillX fill_x, T* out,
                      Index ldout) {
  Matrix<T> chunk(std::min(rows, outer_chunk), k);
  detail::accumulate_outer_chunks(
      cpu, g, ldg, rows, n, k,
      [&](Index r0, Index m) {
        parallel_for(
            cpu, (m + 15) / 16, [] { return 0; },
            [&](Index item, int&) {
              for (Index r = item * 16; r < std::min(m, item * 16 + 16); ++r) fill_x(r0 + r, chunk.data() + r * k);
            });
        return std::pair{static_cast<const T*>(chunk.data()), k};
      },
      out, ldout);
}

/// out[i, :] = sum_{j < n} g[i, j] w[j, :] (cpu::Write::assign) or out[i, :] += that
/// (Write::add) for i < rows: the input gradient G W of a projection with weight W [n, k]
/// (row-major, leading dimension ldw). Row i depends on nothing but token i (one chain
/// over j per element): deterministic for any thread count and tile.
template <cpu::Write W, class T>
void input_gradient(const Cpu& cpu, const T* g, Index ldg, Index rows, const T* w, Index ldw, Index n, Index k, T* out,
                    Index ldout) {
  parallel_for(
      cpu, (rows + 15) / 16, [] { return 0; },
      [&](Index b, int&) {
        const Index i = b * 16;
        cpu::transposed_product<W>(g + i * ldg, Index(1), ldg, n, std::min<Index>(16, rows - i), w, ldw, k,
                                   out + i * ldout, ldout);
      });
}

/// out[j] += sum_{r < rows} g[r, j], in row order.
template <class T>
void accumulate_columns(const T* g, Index ldg, Index rows, Index n, T* out) {
  for (Index r = 0; r < rows; ++r)
    for (Index j = 0; j < n; ++j) out[j] += g[r * ldg + j];
}

}  // namespace vmoer::grad
