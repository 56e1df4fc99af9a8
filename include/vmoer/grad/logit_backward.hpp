// Backward of a posterior whose samples are z_s = mu(u) + L(u) eps_s, or z = mu(u):
// Dirac, the Gaussian posteriors (MeanField, FullCovariance, LowRank) and, under
// MeanOnly, the weight-space posteriors (their mean logits W u + b).
//
// Per token it recomputes the projections of backend/cpu.hpp (the first one unless
// route() kept it) and regenerates eps_s from the same Philox coordinates (logit_noise,
// token, s), so no noise is stored between forward and backward. Per-token gradients
// of the two projections are kept,
//   g_first  = dL/d[l; a]    [T, E + H]   l = W u + b, a = W1 u + b1 (trunk pre-activation)
//   g_second = dL/d[dmu; s]  [T, E + P]   mean head and raw scale head,
// and the parameter gradients are their products with the inputs [u] and [h]
// (grad/kernels.hpp). The KL term enters g_second only: mu - l_det = dmu, so W and b
// receive no gradient from it.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "vmoer/backend/cpu/projection.hpp"
#include "vmoer/backend/cpu/normals.hpp"
#include "vmoer/backend/cpu/vector_math.hpp"
#include "vmoer/grad/kernels.hpp"
#include "vmoer/grad/token_backward.hpp"
#include "vmoer/rng/stream.hpp"

namespace vmoer::grad {

/// Whether posterior P has a closed-form KL to the Gaussian prior (the logit-space Gaussians).
template <class P>
inline constexpr bool has_kl = P::stochastic && !P::weight_space;

/// Backward of the mean path (and reparameterised noise) of posterior P; Draws says
/// whether the sampler draws the posterior's noise.
template <class P, bool Draws>
class LogitBackward {
 public:
  using T = typename P::scalar;  ///< compute type
  /// Whether the posterior has the Gaussian encoder (trunk, mean and scale heads).
  static constexpr bool encoder = P::stochastic && !P::weight_space;
  /// Whether samples carry noise eps_s.
  static constexpr bool noisy = encoder && Draws;

  /// One thread's buffers for a tile of tokens.
  struct Tile {
    Matrix<T> first;   ///< [m, E + H] logits and trunk pre-activations
    Matrix<T> second;  ///< [m, E + P] residual mean and finalised scale head
    Matrix<T> h;       ///< [m, H] trunk activations
    Matrix<T> dh;      ///< [m, H]
    std::vector<T, xsimd::aligned_allocator<T>> eps;  ///< [S, noise padded]
    std::vector<std::uint32_t> words_x;               ///< Philox words of one sample (first of each pair)
    std::vector<std::uint32_t> words_y;               ///< and the second
    cpu::projection_scratch<T> lanes;                 ///< projection accumulators
  };

  /// For `tokens` tokens with S samples each (S = 1 unless noisy).
  LogitBackward(const P& post, Index tokens, Index samples, const rng::Stream& stream, T prior_variance)
      : post_(post),
        stream_(stream),
        experts_(post.experts()),
        hidden_(encoder ? post.hidden() : 0),
        head_(encoder ? post.head_size() : 0),
        samples_(noisy ? samples : 1),
        noise_padded_(cpu::padded<T>((post.noise_size() + 1) / 2) * 2),
        prior_variance_(prior_variance),
        tokens_(tokens) {
    // The calling thread's buffers, kept between calls: fresh pages for them (2.2 MB of
    // g_second at T = 256 for the Cholesky head at E = 64) had cost the full-covariance
    // backward more than its products. One LogitBackward per thread uses them at a time.
    auto& b = cpu::thread_local_scratch<Buffers>();
    b.first.assign(std::size_t(tokens * (experts_ + hidden_)), T(0));
    g_first_ = b.first.data();
    if constexpr (encoder) {
      b.second.assign(std::size_t(tokens * (experts_ + head_)), T(0));
      b.h.resize(std::size_t(tokens * hidden_));  // written in full by finish_tile
      g_second_ = b.second.data();
      h_ = b.h.data();
    }
  }

  /// Fresh buffers for one thread.
  Tile make_tile() const {
    Tile t;
    if constexpr (noisy) {
      t.eps.assign(std::size_t(samples_ * noise_padded_), T(0));
      t.words_x.assign(std::size_t(noise_padded_ / 2), 0);
      t.words_y.assign(std::size_t(noise_padded_ / 2), 0);
    }
    return t;
  }

  /// The forward projections of m tokens x [m, D] (leading dimension ldx). `kept`, when
  /// set, holds the first projection's m rows [m, E + H] as route() computed them (the
  /// same kernel, so the same bits), and only the heads are recomputed.
  void forward_tile(const T* x, Index ldx, Index m, std::uint32_t /*first_token*/, const KeptRows<T>& kept,
                    Tile& tile) const {
    const Index dim = post_.dim(), width = experts_ + hidden_;
    tile.first.resize(m, width);
    if (kept)
      kept.copy_to(m, width, tile.first.data());
    else
      cpu::project(x, ldx, m, post_.input_weight(), dim, width, dim, post_.input_bias(), tile.first.data(), width,
                   tile.lanes);
    if constexpr (encoder) {
      tile.h = tile.first.rightCols(hidden_).cwiseMax(T(0));
      tile.second.resize(m, experts_ + head_);
      cpu::project(tile.h.data(), hidden_, m, post_.head_weight(), hidden_, experts_ + head_, hidden_,
                   post_.head_bias(), tile.second.data(), experts_ + head_, tile.lanes);
      for (Index i = 0; i < m; ++i) cpu::exp_half(tile.second.data() + i * (experts_ + head_) + experts_, experts_);
    }
  }

  /// Writes the samples z_s of row i (global token index `token`) into `tb`.
  void fill_samples(Index i, std::uint32_t token, TokenBackward<T>& tb, Tile& tile) const {
    for (Index s = 0; s < samples_; ++s) {
      T* z = tb.sample(s);
      for (Index e = 0; e < experts_; ++e) z[e] = mean(tile, i, e);
      if constexpr (noisy) {
        T* eps = tile.eps.data() + s * noise_padded_;
        cpu::normals(stream_, rng::Purpose::logit_noise, token, std::uint32_t(s), eps, noise_padded_,
                     tile.words_x.data(), tile.words_y.data());
        P::covariance::add_noise(scale(tile, i), eps, z, experts_, post_.rank());
      }
    }
  }

  /// The KL divergence of row i to the prior.
  T kl(Index i, const Tile& tile) const {
    if constexpr (encoder)
      return P::covariance::kl(tile.second.data() + i * (experts_ + head_), scale(tile, i), experts_, post_.rank(),
                               prior_variance_, T(0), static_cast<T*>(nullptr), static_cast<T*>(nullptr));
    else
      return T(0);
  }

  /// Takes dL/dz_s of row i (batch row t) from `tb` and `kl_weight` times the KL
  /// gradient into the token's projection gradients; returns the token's KL.
  T token_adjoint(Index i, Index t, const TokenBackward<T>& tb, Tile& tile, T kl_weight) {
    T* dmu = g_first_ + t * (experts_ + hidden_);
    for (Index s = 0; s < samples_; ++s)
      for (Index e = 0; e < experts_; ++e) dmu[e] += tb.dz(s)[e];
    if constexpr (!encoder) {
      return T(0);
    } else {
      T* dsecond = g_second_ + t * (experts_ + head_);
      for (Index e = 0; e < experts_; ++e) dsecond[e] = dmu[e];
      T* dscale = dsecond + experts_;
      if constexpr (noisy)
        for (Index s = 0; s < samples_; ++s)
          P::covariance::add_noise_gradient(tb.dz(s), tile.eps.data() + s * noise_padded_, dscale, experts_,
                                            post_.rank());
      const T* sc = scale(tile, i);
      const T value = P::covariance::kl(tile.second.data() + i * (experts_ + head_), sc, experts_, post_.rank(),
                                        prior_variance_, kl_weight, dsecond, dscale);
      for (Index e = 0; e < experts_; ++e) dscale[e] *= sc[e] / T(2);  // sigma = exp(s / 2)
      return value;
    }
  }

  /// After the tile's tokens: the trunk's gradient through the heads and the relu.
  void finish_tile(Index begin, Index m, Tile& tile) {
    if constexpr (encoder) {
      const Index width = experts_ + head_;
      tile.dh.resize(m, hidden_);  // dh = g_second [Wm; Ws], summed over the heads' outputs
      cpu::transposed_product<cpu::Write::assign>(g_second_ + begin * width, Index(1), width, width, m,
                                                  post_.head_weight(), hidden_, hidden_, tile.dh.data(), hidden_);
      for (Index i = 0; i < m; ++i)
        for (Index j = 0; j < hidden_; ++j) {
          g_first_[(begin + i) * (experts_ + hidden_) + experts_ + j] =
              tile.first(i, experts_ + j) > T(0) ? tile.dh(i, j) : T(0);
          h_[(begin + i) * hidden_ + j] = tile.h(i, j);
        }
    }
  }

  /// Parameter gradients into `grad` (the posterior's layout) and, when dx is set, the
  /// hidden-state gradient into dx [T, D] (overwritten).
  void finish(const Cpu& cpu, const T* x, Index ldx, Parameters<T>& grad, Matrix<T>* dx) const {
    const Index tokens = tokens_, dim = post_.dim(), width = experts_ + hidden_;
    accumulate_outer(cpu, g_first_, width, tokens, width, dim, x, ldx, grad.data(P::router_weight), dim);
    accumulate_columns(g_first_, width, tokens, width, grad.data(P::router_bias));
    if constexpr (encoder) {
      const Index out = experts_ + head_;
      accumulate_outer(cpu, g_second_, out, tokens, out, hidden_, h_, hidden_, grad.data(P::mean_weight), hidden_);
      accumulate_columns(g_second_, out, tokens, out, grad.data(P::mean_bias));
    }
    if (dx)
      input_gradient<cpu::Write::assign>(cpu, g_first_, width, tokens, post_.input_weight(), dim, width, dim,
                                         dx->data(), dim);
  }

 private:
  T mean(const Tile& tile, Index i, Index e) const {
    if constexpr (encoder)
      return tile.first(i, e) + tile.second(i, e);
    else
      return tile.first(i, e);
  }
  const T* scale(const Tile& tile, Index i) const { return tile.second.data() + i * (experts_ + head_) + experts_; }

  const P& post_;
  rng::Stream stream_;
  Index experts_, hidden_, head_, samples_, noise_padded_;
  T prior_variance_;
  Index tokens_;
  // Row-major [T, E + H], [T, E + P] and [T, H] in the thread's Buffers.
  T* g_first_ = nullptr;
  T* g_second_ = nullptr;
  T* h_ = nullptr;

  struct Buffers {
    std::vector<T> first, second, h;
  };
};

}  // namespace vmoer::grad
