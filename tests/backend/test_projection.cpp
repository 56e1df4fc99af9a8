// The batch-invariant projection against plain double loops, and its invariance.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "vmoer/backend/cpu/projection.hpp"
#include "vmoer/types.hpp"

using namespace vmoer;

namespace {

template <class T>
Matrix<T> project_all(const Matrix<T>& x, const Matrix<T>& w, const Vector<T>& b, cpu::projection_scratch<T>& sc) {
  Matrix<T> y(x.rows(), w.rows());
  cpu::project(x.data(), x.cols(), x.rows(), w.data(), w.cols(), w.rows(), w.cols(), b.size() ? b.data() : nullptr,
               y.data(), y.cols(), sc);
  return y;
}

}  // namespace

TEST_CASE_TEMPLATE("projection equals X W^T + b computed in double, for any shape", T, float, double) {
  cpu::projection_scratch<T> sc;
  for (Index k : {1, 5, 16, 33, 1024, 1031, 2100})
    for (Index n : {1, 3, 4, 7, 9})
      for (Index m : {1, 2, 5, 13}) {
        const Matrix<T> x = Matrix<T>::Random(m, k), w = Matrix<T>::Random(n, k);
        const Vector<T> b = Vector<T>::Random(n);
        const Matrix<T> y = project_all(x, w, b, sc);
        for (Index i = 0; i < m; ++i)
          for (Index j = 0; j < n; ++j) {
            long double ref = b(j);
            for (Index p = 0; p < k; ++p) ref += (long double)x(i, p) * w(j, p);
            // Error bound of a length-k float sum of terms bounded by 1: k eps.
            const double tol = double(k + 1) * std::numeric_limits<T>::epsilon();
            REQUIRE(std::abs(double(y(i, j)) - double(ref)) <= tol);
          }
      }
}

TEST_CASE_TEMPLATE("a row's projection is bit-identical whatever batch it is computed in", T, float, double) {
  cpu::projection_scratch<T> sc;
  const Index k = 1100, n = 11, m = 23;
  const Matrix<T> x = Matrix<T>::Random(m, k), w = Matrix<T>::Random(n, k);
  const Vector<T> b = Vector<T>::Random(n);
  const Matrix<T> all = project_all(x, w, b, sc);
  for (Index start : {0, 1, 4, 9})
    for (Index len : {1, 2, 3, 5, 8, 14}) {
      if (start + len > m) continue;
      const Matrix<T> part = project_all(Matrix<T>(x.middleRows(start, len)), w, b, sc);
      REQUIRE((part.array() == all.middleRows(start, len).array()).all());
    }
}

TEST_CASE("rows_collide flags rows sharing their page offset, and spread rows project identically") {
  // k = 1024 floats: every row of X and of W starts at the same offset in its 4 KiB page.
  const Index m = 8, n = 12, k = 1024;
  std::vector<float, xsimd::aligned_allocator<float>> wbuf(std::size_t(n * k)), xbuf(std::size_t(2 * m * k));
  for (std::size_t i = 0; i < wbuf.size(); ++i) wbuf[i] = float(int(i * 7 % 13) - 6) / 8;
  for (std::size_t i = 0; i < xbuf.size(); ++i) xbuf[i] = float(int(i * 5 % 11) - 5) / 8;
  const float* w = wbuf.data();
  auto page_offset = [](const float* a, const float* b) {
    return (reinterpret_cast<std::uintptr_t>(a) - reinterpret_cast<std::uintptr_t>(b)) % 4096;
  };
  const float* x = xbuf.data();
  while (page_offset(x, w) != 0) ++x;  // X at W's page offset
  CHECK(cpu::rows_collide(x, k, w, k));
  CHECK(cpu::rows_collide(x + 32, k, w, k));    // 128 bytes apart
  CHECK(!cpu::rows_collide(x + 512, k, w, k));  // half a page apart
  CHECK(!cpu::rows_collide(x, k + 16, w, k));   // rows that do not start on a page each
  CHECK(!cpu::rows_collide(x, k, w, k + 16));

  std::vector<float, xsimd::aligned_allocator<float>> copy;
  Index ldw = 0;
  const float* spread = cpu::spread_rows(w, n, k, copy, ldw);
  CHECK(ldw == k + 16);
  CHECK(!cpu::rows_collide(x, k, spread, ldw));
  cpu::projection_scratch<float> sc;
  std::vector<float> y(std::size_t(m * n)), y_spread(std::size_t(m * n)), bias(std::size_t(n), 0.25f);
  for (Index rows : {Index(1), m}) {
    cpu::project(x, k, rows, w, k, n, k, bias.data(), y.data(), n, sc);
    cpu::project(x, k, rows, spread, ldw, n, k, bias.data(), y_spread.data(), n, sc);
    CHECK(y == y_spread);  // the same products in the same order: only the addresses moved
  }
}

TEST_CASE("rows_clear_of leaves room for rows that start half a page from W's") {
  std::vector<float, xsimd::aligned_allocator<float>> wbuf(4096), copy;
  for (Index lead : {0, 1, 16, 300, 1023}) {  // W's first row at several page offsets
    const float* w = wbuf.data() + lead;
    for (Index m : {1, 4, 16}) {
      Index ldx = 0;
      const float* x = cpu::rows_clear_of(w, m, 1024, copy, ldx);
      CHECK(ldx == 1024 + 16);
      const auto offset = [](const float* p) { return reinterpret_cast<std::uintptr_t>(p) % 4096; };
      CHECK((offset(x) + 4096 - offset(w)) % 4096 == 2048);
      CHECK(x >= copy.data());
      CHECK(x + m * ldx <= copy.data() + copy.size());
    }
  }
}

// A template, so that the branch a build without AVX-512 discards is not compiled.
template <class T>
void check_project_transposed() {
  if constexpr (!cpu::lane_trees<T>) {
    MESSAGE("skipped: project_transposed needs AVX-512 float batches (cpu::lane_trees)");
  } else {
    cpu::projection_scratch<T> sc;
    std::vector<T, xsimd::aligned_allocator<T>> copy;
    std::srand(11);
    // Magnitudes over 2^-12 .. 2^12, so that adding the lanes in another order rounds differently.
    auto spread = [](Index rows, Index cols) {
      Matrix<T> a = Matrix<T>::Random(rows, cols);
      for (Index i = 0; i < a.size(); ++i) a.data()[i] = std::ldexp(a.data()[i], std::rand() % 25 - 12);
      return a;
    };
    // m covers every count of rows left after the blocks of five; k a tail and two slabs.
    for (Index k : {1, 5, 16, 32, 37, 64, 1100})
      for (Index n : {1, 7, 16, 17, 128, 135})
        for (Index m : {1, 2, 3, 4, 5, 9, 13}) {
          const Matrix<T> x = spread(m, k), w = spread(n, k);
          const Vector<T> b = Vector<T>::Random(n);
          Index ldwt = 0;
          const T* wt = cpu::transpose_padded(w.data(), n, k, copy, ldwt);
          REQUIRE(ldwt % Index(cpu::batch<T>::size) == 0);
          for (Index p = 0; p < k; ++p)
            for (Index j = 0; j < ldwt; ++j) REQUIRE(wt[p * ldwt + j] == (j < n ? w(j, p) : T(0)));
          for (const T* bias : {b.data(), static_cast<const T*>(nullptr)}) {
            Matrix<T> want(m, n), got = Matrix<T>::Constant(m, n, T(-7));
            cpu::project(x.data(), k, m, w.data(), k, n, k, bias, want.data(), n, sc);
            cpu::project_transposed(x.data(), k, m, wt, ldwt, n, k, bias, got.data(), n);
            REQUIRE((got.array() == want.array()).all());
          }
        }
  }
}

TEST_CASE("project_transposed gives project()'s Y bit for bit, from W transposed") {
  check_project_transposed<float>();
}
