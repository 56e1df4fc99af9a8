// The linear router l = W u + b at the core of every posterior: the checks of its
// weight and bias, their copy into the parameter buffer, and the shape of a posterior
// that adds no encoder, written once.
#pragma once

#include "vmoer/error.hpp"
#include "vmoer/params.hpp"
#include "vmoer/posterior/init.hpp"
#include "vmoer/types.hpp"

namespace vmoer {
namespace detail {

/// Throws unless W is [E, D] with E, D >= 1 and b has 0 (zero bias) or E entries.
inline void check_router_shape(Index experts, Index dim, Index bias_size, const char* where) {
  require(experts >= 1 && dim >= 1, where, "router weight must be [E, D] with E, D >= 1, got [", experts, ", ", dim,
          "]");
  require(bias_size == 0 || bias_size == experts, where, "router bias has ", bias_size, " entries, expected E = ",
          experts);
}

/// Checks W [E, D] and b [E] (empty: zero), both finite, and copies them into the
/// zero-initialised buffer's slots `weight_slot` [E, D] and `bias_slot` [1, E].
template <class T>
void set_router(Parameters<T>& p, Index weight_slot, Index bias_slot, const MatrixView<T>& weight,
                const Vector<T>& bias, const char* where) {
  check_router_shape(weight.rows(), weight.cols(), bias.size(), where);
  require_finite(weight, where, "router weight");
  require_finite(bias, where, "router bias");
  p[weight_slot] = weight;
  if (bias.size()) p[bias_slot] = bias.transpose();
}

}  // namespace detail

/// The shape of a posterior with no encoder (Dirac and the weight-space posteriors),
/// whose buffer starts with the router weight [E, D].
template <class Derived>
struct EncoderFree {
  /// E.
  Index experts() const { return router_slot().rows; }
  /// D.
  Index dim() const { return router_slot().cols; }
  /// Width of an encoder trunk: none.
  Index hidden() const { return 0; }
  /// Width of a scale head: none.
  Index head_size() const { return 0; }
  /// Normals per sample drawn by the pipeline: none.
  Index noise_size() const { return 0; }
  /// Rank of a low-rank factor over the logits: none.
  Index rank() const { return 0; }

 private:
  const TensorSlot& router_slot() const { return static_cast<const Derived&>(*this).parameters().layout()[0]; }
};

}  // namespace vmoer
