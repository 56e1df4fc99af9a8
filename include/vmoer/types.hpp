// Matrix types of the public API. Row-major, because a batch of tokens is a
// row-major [tokens, features] tensor in every ML framework, so their data maps
// without a copy.
#pragma once

#include <cstdint>

#include <Eigen/Core>

#include "vmoer/config.hpp"

namespace vmoer {

/// A row-major dynamic matrix.
template <class T>
using Matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// A dynamic column vector.
template <class T>
using Vector = Eigen::Matrix<T, Eigen::Dynamic, 1>;

/// Expert ids, [tokens, K].
using IdMatrix = Matrix<std::int32_t>;

/// A read-only view of row-major data with unit inner stride: Matrix, Map or block.
template <class T>
using MatrixView = Eigen::Ref<const Matrix<T>>;

/// bfloat16 and half inputs are accepted with float accumulation.
using bfloat16 = Eigen::bfloat16;
/// See bfloat16.
using half = Eigen::half;

/// The accumulation type of an input element type.
template <class In>
struct accumulate {
  /// float for reduced-precision inputs, the type itself otherwise.
  using type = In;
};
/// bfloat16 accumulates in float.
template <>
struct accumulate<bfloat16> {
  using type = float;  ///< bfloat16 accumulates in float
};
/// half accumulates in float.
template <>
struct accumulate<half> {
  using type = float;  ///< half accumulates in float
};

}  // namespace vmoer
