// The batch-invariant projection against plain double loops, and its invariance.
#include <doctest/doctest.h>

#include <cmath>

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
