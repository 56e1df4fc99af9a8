// C = Aᵀ B and C += Aᵀ B (the backward passes' products) against plain loops in long double,
// and the per-element independence that makes the gradients thread- and tile-invariant.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "vmoer/backend/cpu/transposed_product.hpp"
#include "vmoer/types.hpp"

using namespace vmoer;

TEST_CASE_TEMPLATE("transposed_product adds A^T B, or stores it, as computed in long double, for any shape", T, float,
                   double) {
  for (Index rows : {1, 3, 17, 256})
    for (Index m : {1, 3, 4, 5, 9})
      for (Index n : {1, 7, 16, 17, 64, 65, 130}) {
        const Matrix<T> a = Matrix<T>::Random(rows, m), b = Matrix<T>::Random(rows, n), c0 = Matrix<T>::Random(m, n);
        Matrix<T> c = c0;
        cpu::transposed_product<cpu::Write::add>(a.data(), m, Index(1), rows, m, b.data(), n, n, c.data(), n);
        // The same product with A stored transposed, read through the strides.
        const Matrix<T> at = a.transpose();
        Matrix<T> c_t = c0;
        cpu::transposed_product<cpu::Write::add>(at.data(), Index(1), rows, rows, m, b.data(), n, n, c_t.data(), n);
        REQUIRE((c_t.array() == c.array()).all());
        // Stored over NaNs, which must not be read.
        Matrix<T> stored = Matrix<T>::Constant(m, n, std::numeric_limits<T>::quiet_NaN());
        cpu::transposed_product<cpu::Write::assign>(a.data(), m, Index(1), rows, m, b.data(), n, n, stored.data(), n);
        for (Index i = 0; i < m; ++i)
          for (Index j = 0; j < n; ++j) {
            long double ref = 0;
            for (Index r = 0; r < rows; ++r) ref += (long double)a(r, i) * b(r, j);
            // A chain of rows + 1 roundings of terms bounded by 1 (and |c0| <= 1).
            const double tol = double(rows + 2) * std::numeric_limits<T>::epsilon();
            REQUIRE(std::abs(double(c(i, j)) - double(ref + c0(i, j))) <= tol);
            REQUIRE(std::abs(double(stored(i, j)) - double(ref)) <= tol);
          }
      }
}

TEST_CASE_TEMPLATE("each element of transposed_product depends on its own row and column only", T, float, double) {
  // Threads split the rows or the columns of C between calls, and a column may fall in the
  // scalar tail of one call and a vector lane of another: the bits must not change.
  const Index rows = 37, m = 11, n = 75;
  // Magnitudes over 2^-12 .. 2^12, so that another order of the sum would round differently.
  Matrix<T> a = Matrix<T>::Random(rows, m), b = Matrix<T>::Random(rows, n);
  std::srand(3);
  for (Index i = 0; i < a.size(); ++i) a.data()[i] = std::ldexp(a.data()[i], std::rand() % 25 - 12);
  for (Index i = 0; i < b.size(); ++i) b.data()[i] = std::ldexp(b.data()[i], std::rand() % 25 - 12);
  Matrix<T> whole = Matrix<T>::Zero(m, n);
  cpu::transposed_product<cpu::Write::add>(a.data(), m, Index(1), rows, m, b.data(), n, n, whole.data(), n);
  // Stored, the bits of the sum added to zeros: the backward stores where it used to zero and add.
  Matrix<T> stored(m, n);
  cpu::transposed_product<cpu::Write::assign>(a.data(), m, Index(1), rows, m, b.data(), n, n, stored.data(), n);
  REQUIRE((stored.array() == whole.array()).all());
  for (Index i0 : {0, 1, 5})
    for (Index j0 : {0, 1, 3, 16, 60, 74})
      for (Index width : {1, 2, 15}) {
        if (j0 + width > n) continue;
        CAPTURE(i0);
        CAPTURE(j0);
        CAPTURE(width);
        Matrix<T> part = Matrix<T>::Zero(m - i0, width);
        cpu::transposed_product<cpu::Write::add>(a.data() + i0, m, Index(1), rows, m - i0, b.data() + j0, n, width,
                                                 part.data(), width);
        REQUIRE((part.array() == whole.block(i0, j0, m - i0, width).array()).all());
      }
}
