// Backward of a weight-space posterior (McDropout, Swag) under a drawing sampler. The
// samples are recomputed through the same hook as the forward, sample_logits(); the
// per-token gradients dL/dz_s are kept, [T, S * E], and the posterior turns them into
// parameter and hidden-state gradients with its backward_logits().
#pragma once

#include <cstdint>

#include "vmoer/grad/kernels.hpp"
#include "vmoer/grad/token_backward.hpp"
#include "vmoer/rng/stream.hpp"

namespace vmoer::grad {

/// Backward of the weight samples of posterior P.
template <class P>
class WeightSampleBackward {
 public:
  using T = typename P::scalar;  ///< compute type

  /// One thread's buffers for a tile of tokens.
  struct Tile {
    Matrix<T> samples;                 ///< [m * S, E]
    cpu::projection_scratch<T> lanes;  ///< projection accumulators
  };

  /// For `tokens` tokens, S samples, first token `first_token`.
  WeightSampleBackward(const P& post, Index tokens, Index samples, const rng::Stream& stream,
                       std::uint32_t first_token)
      : post_(post),
        stream_(stream),
        experts_(post.experts()),
        samples_(samples),
        first_token_(first_token),
        dz_(tokens, samples * post.experts()) {}

  /// Fresh buffers for one thread.
  Tile make_tile() const { return {}; }

  /// The logit samples of m tokens x [m, D], the first of global index first_token. A
  /// kept projection (the mean logits) is not read: every sample has its own weights.
  void forward_tile(const T* x, Index ldx, Index m, std::uint32_t first_token, const KeptRows<T>& /*kept*/,
                    Tile& tile) const {
    tile.samples.resize(m * samples_, experts_);
    post_.sample_logits(x, ldx, m, first_token, stream_, samples_, tile.samples.data(), tile.lanes);
  }

  /// Writes the samples of row i into `tb`.
  void fill_samples(Index i, std::uint32_t /*token*/, TokenBackward<T>& tb, Tile& tile) const {
    for (Index s = 0; s < samples_; ++s)
      std::copy_n(tile.samples.data() + (i * samples_ + s) * experts_, experts_, tb.sample(s));
  }

  /// No closed-form KL.
  T kl(Index, const Tile&) const { return T(0); }

  /// Keeps dL/dz_s of batch row t.
  T token_adjoint(Index /*i*/, Index t, const TokenBackward<T>& tb, Tile&, T /*kl_weight*/) {
    for (Index s = 0; s < samples_; ++s) std::copy_n(tb.dz(s), experts_, dz_.data() + (t * samples_ + s) * experts_);
    return T(0);
  }

  /// Nothing per tile.
  void finish_tile(Index, Index, Tile&) {}

  /// Parameter gradients into `grad` and, when dx is set, dL/dhidden into dx (overwritten).
  void finish(const Cpu& cpu, const T* x, Index ldx, Parameters<T>& grad, Matrix<T>* dx) const {
    post_.backward_logits(cpu, x, ldx, dz_.rows(), first_token_, stream_, samples_, dz_.data(), grad, dx);
  }

 private:
  const P& post_;
  rng::Stream stream_;
  Index experts_, samples_;
  std::uint32_t first_token_;
  Matrix<T> dz_;
};

}  // namespace vmoer::grad
