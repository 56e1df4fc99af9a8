// Backward of the selector's temperature: a constant for TopK, Temperature and SampleK;
// for LearnedTemperature (VTSR) the MLP
//   T(u) = min(softplus(Wt2 relu(Wt1 u + bt1) + bt2) + floor, ceiling),
// whose clamp has zero gradient where T reaches the ceiling (and softplus keeps T above
// the floor smoothly). The -log T regulariser is added here, per token.
#pragma once

#include <cmath>
#include <vector>

#include "vmoer/backend/cpu/projection.hpp"
#include "vmoer/grad/kernels.hpp"

namespace vmoer::grad {

/// Backward of the temperature of selector Sel for routers with E experts.
template <class Sel, class T>
class TemperatureBackward {
 public:
  /// Whether the temperature has parameters.
  static constexpr bool learned = Sel::learned_tau;

  /// One thread's buffers for a tile of tokens.
  struct Tile {
    Matrix<T> a1;      ///< [m, Ht] hidden pre-activations
    Matrix<T> h;       ///< [m, Ht] hidden activations
    Matrix<T> a2;      ///< [m, G] temperature pre-activations
    Matrix<T> dh;      ///< [m, Ht]
    std::vector<T> tau;  ///< [E] the current token's temperature per expert
    cpu::projection_scratch<T> lanes;  ///< projection accumulators
  };

  /// For `tokens` tokens.
  TemperatureBackward(const Sel& sel, Index experts, Index tokens) : sel_(sel), experts_(experts) {
    if constexpr (learned) {
      g_head_ = Matrix<T>::Zero(tokens, sel.width());
      g_trunk_.resize(tokens, sel.hidden());
      h_.resize(tokens, sel.hidden());
    }
  }

  /// Fresh buffers for one thread.
  Tile make_tile() const {
    Tile t;
    if constexpr (learned)
      t.tau.assign(std::size_t(experts_), T(1));
    else
      t.tau.assign(std::size_t(experts_), T(sel_.temperature()));
    return t;
  }

  /// The MLP's forward for m tokens x [m, D]; `kept`, when set, holds its trunk's
  /// pre-activations [m, Ht] as route() computed them.
  void forward_tile(const T* x, Index ldx, Index m, const KeptRows<T>& kept, Tile& tile) const {
    if constexpr (learned) {
      const auto& p = sel_.parameters();
      const Index dim = sel_.dim(), th = sel_.hidden(), width = sel_.width();
      tile.a1.resize(m, th);
      if (kept)
        kept.copy_to(m, th, tile.a1.data());
      else
        cpu::project(x, ldx, m, p.data(Sel::trunk_weight), dim, th, dim, p.data(Sel::trunk_bias), tile.a1.data(), th,
                     tile.lanes);
      tile.h = tile.a1.cwiseMax(T(0));
      tile.a2.resize(m, width);
      cpu::project(tile.h.data(), th, m, p.data(Sel::head_weight), th, width, th, p.data(Sel::head_bias),
                   tile.a2.data(), width, tile.lanes);
    }
  }

  /// The temperature of each expert for row i, [E].
  const T* tau(Index i, Tile& tile) const {
    if constexpr (learned) {
      const Index width = sel_.width();
      for (Index e = 0; e < experts_; ++e) tile.tau[std::size_t(e)] = sel_.temperature(tile.a2(i, width > 1 ? e : 0));
    }
    return tile.tau.data();
  }

  /// Takes dL/dT_e [E] of row i (batch row t) and `penalty` times the gradient of the
  /// token's -log T term; returns that term, -(1/G) sum_g log T_g.
  T token_adjoint(Index i, Index t, const T* dtau, Tile& tile, T penalty) {
    if constexpr (!learned) {
      return T(0);
    } else {
      const Index width = sel_.width();
      T value = T(0);
      for (Index g = 0; g < width; ++g) {
        const T a = tile.a2(i, g), tg = sel_.temperature(a);
        T dt = -penalty / (T(width) * tg);
        if (width > 1)
          dt += dtau[g];
        else
          for (Index e = 0; e < experts_; ++e) dt += dtau[e];
        value -= std::log(tg) / T(width);
        g_head_(t, g) = dt * slope(a);
      }
      return value;
    }
  }

  /// After the tile's tokens: the hidden layer's gradient through the head and the relu.
  void finish_tile(Index begin, Index m, Tile& tile) {
    if constexpr (learned) {
      const Index th = sel_.hidden(), width = sel_.width();
      tile.dh.resize(m, th);  // dh = g_head Wt2, summed over the head's outputs
      cpu::transposed_product<cpu::Write::assign>(g_head_.data() + begin * width, Index(1), width, width, m,
                                                  sel_.parameters().data(Sel::head_weight), th, th, tile.dh.data(),
                                                  th);
      for (Index i = 0; i < m; ++i)
        for (Index j = 0; j < th; ++j) {
          g_trunk_(begin + i, j) = tile.a1(i, j) > T(0) ? tile.dh(i, j) : T(0);
          h_(begin + i, j) = tile.h(i, j);
        }
    }
  }

  /// Parameter gradients into `grad` (the selector's layout) and, when dx is set, the
  /// hidden-state gradient added to dx [T, D].
  void finish(const Cpu& cpu, const T* x, Index ldx, Parameters<T>& grad, Matrix<T>* dx) const {
    if constexpr (learned) {
      const Index tokens = g_head_.rows(), dim = sel_.dim(), th = sel_.hidden(), width = sel_.width();
      accumulate_outer(cpu, g_trunk_.data(), th, tokens, th, dim, x, ldx, grad.data(Sel::trunk_weight), dim);
      accumulate_columns(g_trunk_.data(), th, tokens, th, grad.data(Sel::trunk_bias));
      accumulate_outer(cpu, g_head_.data(), width, tokens, width, th, h_.data(), th, grad.data(Sel::head_weight), th);
      accumulate_columns(g_head_.data(), width, tokens, width, grad.data(Sel::head_bias));
      if (dx)
        input_gradient<cpu::Write::add>(cpu, g_trunk_.data(), th, tokens, sel_.parameters().data(Sel::trunk_weight),
                                        dim, th, dim, dx->data(), dim);
    } else {
      (void)cpu, (void)x, (void)ldx, (void)grad, (void)dx;
    }
  }

 private:
  // dT/da of T = min(softplus(a) + floor, ceiling), as LearnedTemperature::temperature computes it.
  T slope(T a) const {
    if (!(sel_.temperature(a) < T(sel_.options().ceiling))) return T(0);
    return a > T(20) ? T(1) : T(1) / (T(1) + std::exp(-a));
  }

  const Sel& sel_;
  Index experts_;
  Matrix<T> g_head_, g_trunk_, h_;
};

}  // namespace vmoer::grad
