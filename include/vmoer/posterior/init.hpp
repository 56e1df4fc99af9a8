// Deterministic parameter initialisation from the library's Philox stream.
#pragma once

#include <cmath>
#include <cstdint>

#include "vmoer/rng/normal.hpp"
#include "vmoer/types.hpp"

namespace vmoer::detail {

/// Fills n values with U(-bound, bound), PyTorch Linear's default scale, drawn from
/// (seed, purpose init, token = tensor, block = i / 4).
template <class T>
void uniform_init(T* out, Index n, T bound, std::uint64_t seed, std::uint32_t tensor) {
  const rng::Stream stream{seed, 0};
  for (Index i = 0; i < n; i += 4) {
    const rng::u32x4 w = stream.block(rng::Purpose::init, tensor, 0, std::uint32_t(i / 4));
    for (Index j = 0; j < 4 && i + j < n; ++j) out[i + j] = bound * (T(2) * rng::uniform<T>(w[int(j)]) - T(1));
  }
}

/// Throws unless every entry of the matrix is finite, naming the first bad one.
template <class Derived>
void require_finite(const Eigen::MatrixBase<Derived>& m, const char* where, const char* what) {
  for (Index i = 0; i < m.rows(); ++i)
    for (Index j = 0; j < m.cols(); ++j)
      require(std::isfinite(double(m(i, j))), where, what, "[", i, ", ", j, "] = ", double(m(i, j)),
              " is not finite");
}

}  // namespace vmoer::detail
