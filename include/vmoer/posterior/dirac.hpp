// Dirac: the pre-trained, deterministic router, l = W u + b.
#pragma once

#include "vmoer/params.hpp"
#include "vmoer/posterior/linear_router.hpp"

namespace vmoer {

/// A point mass on the logits of a linear router.
template <class T>
class Dirac : public EncoderFree<Dirac<T>> {
 public:
  using scalar = T;                         ///< parameter and compute type
  static constexpr bool stochastic = false; ///< no noise: every sample is the mean
  static constexpr bool weight_space = false; ///< uncertainty, if any, is not over the weights

  /// Slots of the parameter buffer.
  enum slot : Index { router_weight = 0, router_bias = 1 };

  /// Router weight [E, D] and optional bias [E] (empty: zero bias).
  explicit Dirac(MatrixView<T> weight, const Vector<T>& bias = {})
      : params_(layout(weight.rows(), weight.cols())) {
    detail::set_router(params_, router_weight, router_bias, weight, bias, "Dirac");
  }

  /// The layout of a router with E experts and input dimension D.
  static ParameterLayout layout(Index experts, Index dim) {
    ParameterLayout l;
    l.add("router.weight", experts, dim);
    l.add("router.bias", 1, experts);
    return l;
  }

  /// The parameter buffer.
  Parameters<T>& parameters() { return params_; }
  /// The parameter buffer, read-only.
  const Parameters<T>& parameters() const { return params_; }

  /// Weight of the projection of the input, [E, D].
  const T* input_weight() const { return params_.data(router_weight); }
  /// Bias of the projection of the input, [E].
  const T* input_bias() const { return params_.data(router_bias); }

 private:
  Parameters<T> params_;
};

}  // namespace vmoer
