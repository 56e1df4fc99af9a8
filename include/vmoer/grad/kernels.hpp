// The loops of the backward passes: a parallel loop with per-thread scratch, and the
// parameter-gradient reduction G^T X over all tokens.
//
// Determinism: a parameter gradient is a sum over every token of the batch. It is never
// reduced per thread. Tokens are cut into fixed chunks (outer_chunk rows), each chunk's
// contribution is reduced by the batch-invariant `project` kernel (one fixed order per
// element), and the chunk partials are added in chunk order; threads only split the
// output columns. The result is therefore bit-identical for any thread count and tile.
#pragma once

#include <algorithm>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "vmoer/backend/cpu.hpp"
#include "vmoer/backend/cpu/projection.hpp"
#include "vmoer/types.hpp"

namespace vmoer::grad {

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

/// The transpose of a row-major [rows, cols] block with leading dimension ld.
template <class T>
Matrix<T> transposed(const T* a, Index ld, Index rows, Index cols) {
  Matrix<T> t(cols, rows);
  for (Index i = 0; i < rows; ++i)
    for (Index j = 0; j < cols; ++j) t(j, i) = a[i * ld + j];
  return t;
}

/// out[j, c] += sum_{r < rows} g[r, j] x_r[c] for j < n, c < k (out row-major, leading
/// dimension ldout), where row r of X is written by fill_x(r, T* row) (k entries) and g
/// has leading dimension ldg. Deterministic for any thread count (see the file comment).
template <class T, class FillX>
void accumulate_outer(const Cpu& cpu, const T* g, Index ldg, Index rows, Index n, Index k, FillX fill_x, T* out,
                      Index ldout) {
  if (rows == 0 || n == 0 || k == 0) return;
  const Index chunk = std::min(rows, outer_chunk);
  Matrix<T> gt(n, chunk), xt(k, chunk);
  const Index blocks = (k + outer_columns - 1) / outer_columns;
  for (Index r0 = 0; r0 < rows; r0 += chunk) {
    const Index m = std::min(chunk, rows - r0);
    for (Index r = 0; r < m; ++r)
      for (Index j = 0; j < n; ++j) gt(j, r) = g[(r0 + r) * ldg + j];
    parallel_for(
        cpu, (m + 15) / 16, [&] { return Vector<T>(k); },
        [&](Index item, Vector<T>& row) {
          for (Index r = item * 16; r < std::min(m, item * 16 + 16); ++r) {
            fill_x(r0 + r, row.data());
            for (Index c = 0; c < k; ++c) xt(c, r) = row[c];
          }
        });
    struct Scratch {
      Matrix<T> y;
      cpu::projection_scratch<T> lanes;
    };
    parallel_for(
        cpu, blocks, [&] { return Scratch{Matrix<T>(n, outer_columns), {}}; },
        [&](Index b, Scratch& s) {
          const Index c0 = b * outer_columns, w = std::min(outer_columns, k - c0);
          cpu::project(gt.data(), chunk, n, xt.data() + c0 * chunk, chunk, w, m, static_cast<const T*>(nullptr),
                       s.y.data(), outer_columns, s.lanes);
          for (Index j = 0; j < n; ++j)
            for (Index c = 0; c < w; ++c) out[j * ldout + c0 + c] += s.y(j, c);
        });
  }
}

/// out[i, :] += sum_{j < n} g[i, j] w[j, :] for i < rows: the input gradient G W of a
/// projection with weight W [n, k] (row-major, leading dimension ldw). Each row is a sum
/// of rows of W in j order, so it depends on nothing but the token: deterministic for
/// any thread count and tile. Row-wise axpys suit the small n (E, H) of a router.
template <class T>
void add_input_gradient(const Cpu& cpu, const T* g, Index ldg, Index rows, const T* w, Index ldw, Index n, Index k,
                        T* out, Index ldout) {
  parallel_for(
      cpu, (rows + 15) / 16, [] { return 0; },
      [&](Index b, int&) {
        for (Index i = b * 16; i < std::min(rows, b * 16 + 16); ++i) {
          Eigen::Map<Vector<T>> row(out + i * ldout, k);
          for (Index j = 0; j < n; ++j)
            if (const T gij = g[i * ldg + j]; gij != T(0)) row += gij * Eigen::Map<const Vector<T>>(w + j * ldw, k);
        }
      });
}

/// out[j] += sum_{r < rows} g[r, j], in row order.
template <class T>
void accumulate_columns(const T* g, Index ldg, Index rows, Index n, T* out) {
  for (Index r = 0; r < rows; ++r)
    for (Index j = 0; j < n; ++j) out[j] += g[r * ldg + j];
}

}  // namespace vmoer::grad
