// Dirac: the pre-trained, deterministic router, l = W u + b.
#pragma once

#include "vmoer/params.hpp"
#include "vmoer/posterior/init.hpp"

namespace vmoer {

/// A point mass on the logits of a linear router.
template <class T>
class Dirac {
 public:
  using scalar = T;                         ///< parameter and compute type
  static constexpr bool stochastic = false; ///< no noise: every sample is the mean
  static constexpr bool weight_space = false; ///< uncertainty, if any, is not over the weights

  /// Slots of the parameter buffer.
  enum slot : Index { router_weight = 0, router_bias = 1 };

  /// Router weight [E, D] and optional bias [E] (empty: zero bias).
  explicit Dirac(MatrixView<T> weight, const Vector<T>& bias = {})
      : params_(layout(weight.rows(), weight.cols())) {
    detail::require(weight.rows() >= 1 && weight.cols() >= 1, "Dirac", "router weight must be [E, D] with E, D >= 1, got [",
                    weight.rows(), ", ", weight.cols(), "]");
    detail::require(bias.size() == 0 || bias.size() == weight.rows(), "Dirac", "router bias has ", bias.size(),
                    " entries, expected E = ", weight.rows());
    detail::require_finite(weight, "Dirac", "router weight");
    detail::require_finite(bias, "Dirac", "router bias");
    params_[router_weight] = weight;
    if (bias.size()) params_[router_bias] = bias.transpose();
  }

  /// The layout of a router with E experts and input dimension D.
  static ParameterLayout layout(Index experts, Index dim) {
    ParameterLayout l;
    l.add("router.weight", experts, dim);
    l.add("router.bias", 1, experts);
    return l;
  }

  /// E.
  Index experts() const { return params_.layout()[router_weight].rows; }
  /// D.
  Index dim() const { return params_.layout()[router_weight].cols; }
  /// Width of the encoder trunk: none.
  Index hidden() const { return 0; }
  /// Width of the scale head: none.
  Index head_size() const { return 0; }
  /// Normals per sample: none.
  Index noise_size() const { return 0; }
  /// Rank of a low-rank factor: none.
  Index rank() const { return 0; }

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
