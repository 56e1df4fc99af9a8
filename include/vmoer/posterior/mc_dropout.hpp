// McDropout: the MC-dropout router (Gal & Ghahramani 2016), a weight-space posterior.
// Sample s of token t drops each input feature with probability p and rescales the
// kept ones (inverted dropout), then applies the router:
//   z_s = W (m_s * u) / keep + b,   m_s[d] ~ Bernoulli(keep),  keep = 1 - p.
// Mask bits come from Philox at (dropout, token, sample, block): feature d takes the
// 16-bit half d % 2 (low first) of word (d % 8) / 2 of block d / 8, and is kept when
// that half is >= round(p * 65536). The drop probability is therefore p rounded to a
// multiple of 2^-16, and `keep` is that exact keep probability, so E[z_s] = W u + b
// exactly: MeanOnly routes W u + b. The sampler's aggregate decides whether samples
// are averaged as logits (the MC-dropout rule, Aggregate::logits) or as scores.
// Batch invariance holds as for the Gaussians: a token's masks depend only on its
// coordinates.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "vmoer/backend/cpu/projection.hpp"
#include "vmoer/backend/cpu/normals.hpp"
#include "vmoer/grad/kernels.hpp"
#include "vmoer/params.hpp"
#include "vmoer/posterior/dirac.hpp"
#include "vmoer/posterior/linear_router.hpp"
#include "vmoer/rng/stream.hpp"

namespace vmoer {

/// MC dropout on the router input.
template <class T>
class McDropout : public EncoderFree<McDropout<T>> {
 public:
  using scalar = T;                          ///< parameter and compute type
  static constexpr bool stochastic = true;   ///< samples differ from the mean
  static constexpr bool weight_space = true; ///< samples come from sample_logits()

  /// Slots of the parameter buffer (the layout of Dirac).
  enum slot : Index { router_weight = 0, router_bias = 1 };

  /// The router W [E, D], b [E] (empty: zero) with input dropout rate p in [0, 1).
  McDropout(MatrixView<T> weight, const Vector<T>& bias = {}, double rate = 0.1)
      : params_(layout(weight.rows(), weight.cols())) {
    detail::require(std::isfinite(rate) && rate >= 0 && std::lround(rate * 65536.0) < 65536, where, "rate p = ", rate,
                    " must be in [0, 1) (at 2^-16 resolution)");
    detail::set_router(params_, router_weight, router_bias, weight, bias, where);
    threshold_ = std::uint32_t(std::lround(rate * 65536.0));
    scale_ = T(65536.0 / double(65536 - threshold_));
  }

  /// The layout of a router with E experts and input dimension D: Dirac's.
  static ParameterLayout layout(Index experts, Index dim) { return Dirac<T>::layout(experts, dim); }

  /// The drop probability actually used, a multiple of 2^-16.
  double rate() const { return double(threshold_) / 65536.0; }

  /// The parameter buffer.
  Parameters<T>& parameters() { return params_; }
  /// The parameter buffer, read-only.
  const Parameters<T>& parameters() const { return params_; }
  /// W [E, D]: the mean logits are W u + b.
  const T* input_weight() const { return params_.data(router_weight); }
  /// b [E].
  const T* input_bias() const { return params_.data(router_bias); }

  /// Philox words of one (token, sample) mask, and their 16-bit halves in feature order.
  struct MaskWords {
    std::vector<std::uint32_t> x;     ///< first words of the Philox pairs (cpu::philox_pairs)
    std::vector<std::uint32_t> y;     ///< second words
    std::vector<std::uint16_t> bits;  ///< feature d's half, d < 8 * blocks
  };

  /// out = m * in / keep for the mask of (token, sample); in and out hold D entries.
  void dropout(const T* in, std::uint32_t token, std::uint32_t sample, const rng::Stream& stream, T* out,
               MaskWords& words) const {
    const Index d = this->dim(), blocks = (d + 7) / 8;
    words.x.resize(std::size_t(2 * blocks));
    words.y.resize(std::size_t(2 * blocks));
    words.bits.resize(std::size_t(8 * blocks));
    cpu::philox_pairs(stream, rng::Purpose::dropout, token, sample, blocks, words.x.data(), words.y.data());
    // Word j of block b is x[2b + j/2] (j even) or y[2b + j/2] (j odd); feature 8b + 2j + h
    // takes its half h. Laid out in feature order first, so that the masking vectorises.
    std::uint16_t* bits = words.bits.data();
    for (Index k = 0; k < 2 * blocks; ++k) {
      const std::uint32_t x = words.x[std::size_t(k)], y = words.y[std::size_t(k)];
      bits[4 * k] = std::uint16_t(x);
      bits[4 * k + 1] = std::uint16_t(x >> 16);
      bits[4 * k + 2] = std::uint16_t(y);
      bits[4 * k + 3] = std::uint16_t(y >> 16);
    }
    const std::uint32_t threshold = threshold_;
    const T scale = scale_;
    for (Index i = 0; i < d; ++i) out[i] = bits[i] >= threshold ? in[i] * scale : T(0);
  }

  /// The backend's weight-space hook: z [m * S, E], row i * S + s = sample s of token
  /// first_token + i, for the m rows of x [m, D] (leading dimension ldx). The masked rows
  /// of 16 tokens go through one projection, so that W is read once for all of them
  /// rather than once a token (each row's logits are the same either way).
  void sample_logits(const T* x, Index ldx, Index m, std::uint32_t first_token, const rng::Stream& stream,
                     Index samples, T* z, cpu::projection_scratch<T>& lanes) const {
    const Index d = this->dim(), e = this->experts();
    constexpr Index tokens_per_projection = 16;
    Matrix<T> masked(std::min(m, tokens_per_projection) * samples, d);
    MaskWords words;
    for (Index i0 = 0; i0 < m; i0 += tokens_per_projection) {
      const Index n = std::min(tokens_per_projection, m - i0);
      for (Index i = 0; i < n; ++i)
        for (Index s = 0; s < samples; ++s)
          dropout(x + (i0 + i) * ldx, first_token + std::uint32_t(i0 + i), std::uint32_t(s), stream,
                  masked.data() + (i * samples + s) * d, words);
      cpu::project(masked.data(), d, n * samples, input_weight(), d, e, d, input_bias(), z + i0 * samples * e, e,
                   lanes);
    }
  }

  /// Gradients from dz [T, S * E] (row t: dL/dz_s of token t, sample by sample) into
  /// grad (this layout) and, when dx is set, dL/dx into dx [T, D] (overwritten):
  ///   dW = sum_{t,s} dz_ts (m_ts * u_t / keep)^T,  db = sum dz_ts,  dx_t = sum_s m_ts * (W^T dz_ts) / keep.
  void backward_logits(const Cpu& cpu, const T* x, Index ldx, Index tokens, std::uint32_t first_token,
                       const rng::Stream& stream, Index samples, const T* dz, Parameters<T>& grad,
                       Matrix<T>* dx) const {
    const Index d = this->dim(), e = this->experts();
    grad::accumulate_outer(
        cpu, dz, e, tokens * samples, e, d,
        [&](Index r, T* row) {
          thread_local MaskWords words;
          dropout(x + (r / samples) * ldx, first_token + std::uint32_t(r / samples), std::uint32_t(r % samples),
                  stream, row, words);
        },
        grad.data(router_weight), d);
    grad::accumulate_columns(dz, e, tokens * samples, e, grad.data(router_bias));
    if (!dx) return;
    // W^T dz_ts for the S samples of 16 tokens at once (one chain over the experts per
    // entry, cpu::transposed_product), then each masked and added to its token's row.
    constexpr Index block = 16;
    struct Scratch {
      Matrix<T> y;
      Vector<T> row;
      MaskWords words;
    };
    grad::parallel_for(
        cpu, (tokens + block - 1) / block, [&] { return Scratch{Matrix<T>(block * samples, d), Vector<T>(d), {}}; },
        [&](Index b, Scratch& s) {
          const Index t0 = b * block, n = std::min(block, tokens - t0);
          cpu::transposed_product<cpu::Write::assign>(dz + t0 * samples * e, Index(1), e, e, n * samples,
                                                      input_weight(), d, d, s.y.data(), d);
          for (Index i = 0; i < n; ++i) {
            auto out = dx->row(t0 + i);
            out.setZero();
            for (Index k = 0; k < samples; ++k) {
              dropout(s.y.data() + (i * samples + k) * d, first_token + std::uint32_t(t0 + i), std::uint32_t(k), stream,
                      s.row.data(), s.words);
              out += s.row.transpose();
            }
          }
        });
  }

 private:
  static constexpr const char* where = "McDropout";
  Parameters<T> params_;
  std::uint32_t threshold_ = 0;
  T scale_ = T(1);
};

}  // namespace vmoer
