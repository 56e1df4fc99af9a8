// Swag: SWA-Gaussian over the router's weights (Maddox et al. 2019), a weight-space
// posterior. A training loop calls collect(W, b) once per snapshot (e.g. once per
// epoch after a burn-in); the router theta = [W, b] (P = E (D + 1) numbers) keeps
//   mean      theta_bar = (1/n) sum_i theta_i              (the SWA solution)
//   second    (1/n) sum_i theta_i^2                        (elementwise)
//   deviations the last r of theta_i - theta_bar_i         (a ring, r = 20 by default)
// and sample s of the router is
//   theta_s = theta_bar + scale * ( sqrt(diag) * z1_s / sqrt(2) + Dev z2_s / sqrt(2 (K - 1)) ),
// diag = max(second - theta_bar^2, 0), K = min(n, r) columns in use (K - 1 taken as 1
// when K = 1), scale 0.5 by default. z1_s [P] and z2_s [r] are normals from Philox at
// (weights, token 0, sample s): one set of S routers serves every token, so a token's
// routing does not depend on its batch. The S sampled routers are drawn once and
// cached until the statistics change.
//
// Gradients: z_s = W_s u + b_s is differentiated through theta_s into every statistic
// (the reparameterisation gradient), so that a framework may also fine-tune the SWA
// mean, and the gradient can be checked by finite differences.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "vmoer/backend/cpu/projection.hpp"
#include "vmoer/backend/cpu/normals.hpp"
#include "vmoer/grad/kernels.hpp"
#include "vmoer/params.hpp"
#include "vmoer/posterior/dirac.hpp"
#include "vmoer/posterior/init.hpp"
#include "vmoer/posterior/linear_router.hpp"
#include "vmoer/rng/stream.hpp"

namespace vmoer {

/// Size of the deviation matrix and the sampling scale of SWAG.
struct SwagOptions {
  Index rank = 20;     ///< r: snapshots kept in the deviation matrix
  double scale = 0.5;  ///< multiplies the sampled deviation from the mean
};

/// SWA-Gaussian over the weights [W, b] of a linear router.
template <class T>
class Swag : public EncoderFree<Swag<T>> {
 public:
  using scalar = T;                          ///< parameter and compute type
  static constexpr bool stochastic = true;   ///< samples differ from the mean
  static constexpr bool weight_space = true; ///< samples come from sample_logits()

  /// Slots of the buffer (statistics, not trained weights; see the file comment).
  enum slot : Index {
    router_weight = 0,     ///< SWA mean of W, [E, D]
    router_bias = 1,       ///< SWA mean of b, [1, E]
    second_weight = 2,     ///< mean of W^2, [E, D]
    second_bias = 3,       ///< mean of b^2, [1, E]
    deviation_weight = 4,  ///< [r, E D]: column i of Dev, the W part, as row i
    deviation_bias = 5,    ///< [r, E]: the b part
    snapshots = 6,         ///< [1, 1]: n, the number of snapshots collected
  };

  /// A SWAG posterior whose first snapshot is W [E, D], b [E] (empty: zero).
  Swag(MatrixView<T> weight, const Vector<T>& bias = {}, const SwagOptions& options = {})
      : options_(options), cache_(std::make_shared<Cache>()) {
    detail::check_router_shape(weight.rows(), weight.cols(), bias.size(), where);
    detail::require(options.rank >= 1, where, "rank r = ", options.rank, " must be >= 1");
    detail::require(std::isfinite(options.scale) && options.scale >= 0, where, "scale = ", options.scale,
                    " must be finite and >= 0");
    params_ = Parameters<T>(layout(weight.rows(), weight.cols(), options.rank));
    collect(weight, bias);
  }

  /// Copies the statistics; the copy draws its own samples.
  Swag(const Swag& o) : options_(o.options_), params_(o.params_), cache_(std::make_shared<Cache>()) {}
  /// See the copy constructor.
  Swag& operator=(const Swag& o) {
    options_ = o.options_;
    params_ = o.params_;
    cache_ = std::make_shared<Cache>();
    return *this;
  }
  Swag(Swag&&) noexcept = default;             ///< moves the statistics and the drawn samples
  Swag& operator=(Swag&&) noexcept = default;  ///< see the move constructor

  /// The layout of a router with E experts, input D and r deviation columns: Dirac's, then the statistics.
  static ParameterLayout layout(Index experts, Index dim, Index rank) {
    ParameterLayout l = Dirac<T>::layout(experts, dim);
    l.add("swag.second_moment.weight", experts, dim);
    l.add("swag.second_moment.bias", 1, experts);
    l.add("swag.deviations.weight", rank, experts * dim);
    l.add("swag.deviations.bias", rank, experts);
    l.add("swag.snapshots", 1, 1);
    return l;
  }

  /// Adds one snapshot of the router's weights W [E, D] and bias b [E] (empty: zero).
  void collect(MatrixView<T> weight, const Vector<T>& bias = {}) {
    detail::require(weight.rows() == this->experts() && weight.cols() == this->dim(), where, "snapshot weight is [",
                    weight.rows(), ", ", weight.cols(), "], expected [E, D] = [", this->experts(), ", ", this->dim(), "]");
    detail::require(bias.size() == 0 || bias.size() == this->experts(), where, "snapshot bias has ", bias.size(),
                    " entries, expected E = ", this->experts());
    detail::require_finite(weight, where, "snapshot weight");
    detail::require_finite(bias, where, "snapshot bias");
    const Index n = count() + 1, column = (n - 1) % options_.rank;
    const T f = T(1) / T(n);
    auto update = [&](slot mean, slot second, slot deviation, const T* theta, Index size) {
      T* m = params_.data(mean);
      T* q = params_.data(second);
      T* dev = params_.data(deviation) + column * size;
      for (Index i = 0; i < size; ++i) {
        m[i] += (theta[i] - m[i]) * f;
        q[i] += (theta[i] * theta[i] - q[i]) * f;
        dev[i] = theta[i] - m[i];
      }
    };
    const Matrix<T> w = weight;
    const Vector<T> b = bias.size() ? bias : Vector<T>::Zero(this->experts());
    update(router_weight, second_weight, deviation_weight, w.data(), this->experts() * this->dim());
    update(router_bias, second_bias, deviation_bias, b.data(), this->experts());
    params_.data(snapshots)[0] = T(n);
    cache_ = std::make_shared<Cache>();
  }

  /// n, the snapshots collected.
  Index count() const { return Index(std::lround(double(params_.data(snapshots)[0]))); }
  /// K = min(n, r), the deviation columns in use.
  Index columns() const { return std::min(count(), options_.rank); }
  /// Size and scale.
  const SwagOptions& options() const { return options_; }

  /// The buffer; changing it through this reference after sampling needs a fresh
  /// call of parameters() (which forgets the drawn samples).
  Parameters<T>& parameters() {
    cache_ = std::make_shared<Cache>();
    return params_;
  }
  /// The buffer, read-only.
  const Parameters<T>& parameters() const { return params_; }
  /// SWA mean W [E, D]: MeanOnly routes W u + b.
  const T* input_weight() const { return params_.data(router_weight); }
  /// SWA mean b [E].
  const T* input_bias() const { return params_.data(router_bias); }

  /// Sampled router s: theta_s = [W_s, b_s] with W_s in the first E D entries.
  Vector<T> sample_weights(const rng::Stream& stream, Index s) const {
    const Index p = theta_size();
    const Vector<T> z = normals(stream, s);
    const T c1 = T(options_.scale / std::sqrt(2.0)), c2 = T(options_.scale) * low_rank_factor();
    Vector<T> theta(p);
    for (Index i = 0; i < p; ++i) theta[i] = mean(i) + c1 * std::sqrt(variance(i)) * z[i];
    for (Index k = 0; k < columns(); ++k)
      for (Index i = 0; i < p; ++i) theta[i] += c2 * deviation(k, i) * z[p + k];
    return theta;
  }

  /// The backend's weight-space hook: z [m * S, E], row i * S + s = sample s of token
  /// first_token + i, for the m rows of x [m, D] (leading dimension ldx).
  void sample_logits(const T* x, Index ldx, Index m, std::uint32_t /*first_token*/, const rng::Stream& stream,
                     Index samples, T* z, cpu::projection_scratch<T>& lanes) const {
    const Index d = this->dim(), e = this->experts();
    const auto drawn = draws(stream, samples);
    Matrix<T> y(m, e);
    for (Index s = 0; s < samples; ++s) {
      const T* theta = drawn->theta.data() + s * theta_size();
      cpu::project(x, ldx, m, theta, d, e, d, theta + e * d, y.data(), e, lanes);
      for (Index i = 0; i < m; ++i) std::copy_n(y.data() + i * e, e, z + (i * samples + s) * e);
    }
  }

  /// Gradients from dz [T, S * E] (row t: dL/dz_s of token t, sample by sample) into
  /// grad (this layout) and, when dx is set, dL/dx into dx [T, D] (overwritten):
  ///   G_s = sum_t dz_ts [u_t, 1]^T,  dtheta_bar = sum_s G_s (1 - c1 z1_s theta_bar / sqrt(diag)),
  ///   dsecond = sum_s G_s c1 z1_s / (2 sqrt(diag)),  dDev_k = c2 sum_s G_s z2_sk,  dx_t = sum_s W_s^T dz_ts.
  void backward_logits(const Cpu& cpu, const T* x, Index ldx, Index tokens, std::uint32_t /*first_token*/,
                       const rng::Stream& stream, Index samples, const T* dz, Parameters<T>& grad,
                       Matrix<T>* dx) const {
    const Index d = this->dim(), e = this->experts(), p = theta_size();
    const auto drawn = draws(stream, samples);
    Matrix<T> g(samples, p);  // G_s, one row per sample
    g.setZero();
    for (Index s = 0; s < samples; ++s) {
      grad::accumulate_outer(cpu, dz + s * e, samples * e, tokens, e, d, x, ldx, g.data() + s * p, d);
      grad::accumulate_columns(dz + s * e, samples * e, tokens, e, g.data() + s * p + e * d);
    }
    const T c1 = T(options_.scale / std::sqrt(2.0)), c2 = T(options_.scale) * low_rank_factor();
    T* dmean = grad.data(router_weight);    // [W, b]: the weight and bias slots are adjacent
    T* dsecond = grad.data(second_weight);  // likewise
    T* ddev_w = grad.data(deviation_weight);
    T* ddev_b = grad.data(deviation_bias);
    for (Index s = 0; s < samples; ++s) {
      const Vector<T> z = normals(stream, s);
      for (Index i = 0; i < p; ++i) {
        const T gi = g(s, i), v = variance(i);
        dmean[i] += gi;
        if (v > T(0)) {
          const T sd = std::sqrt(v);
          dmean[i] -= gi * c1 * z[i] * mean(i) / sd;
          dsecond[i] += gi * c1 * z[i] / (T(2) * sd);
        }
      }
      for (Index k = 0; k < columns(); ++k) {
        const T f = c2 * z[p + k];
        for (Index i = 0; i < e * d; ++i) ddev_w[k * e * d + i] += f * g(s, i);
        for (Index i = 0; i < e; ++i) ddev_b[k * e + i] += f * g(s, e * d + i);
      }
    }
    if (!dx) return;
    for (Index s = 0; s < samples; ++s) {  // dz_s W_s, sample by sample: the first stored, the others added
      const T *dzs = dz + s * e, *ws = drawn->theta.data() + s * p;
      if (s == 0)
        grad::input_gradient<cpu::Write::assign>(cpu, dzs, samples * e, tokens, ws, d, e, d, dx->data(), d);
      else
        grad::input_gradient<cpu::Write::add>(cpu, dzs, samples * e, tokens, ws, d, e, d, dx->data(), d);
    }
  }

 private:
  static constexpr const char* where = "Swag";
  struct Draws {
    std::uint64_t seed = 0;
    std::uint32_t layer = 0;
    Index samples = 0;
    std::vector<T> theta;  // [S, P]
  };
  struct Cache {
    std::mutex mutex;
    std::shared_ptr<const Draws> draws;
  };

  Index theta_size() const { return this->experts() * (this->dim() + 1); }
  T stat(slot w, slot b, Index i) const {
    const Index ed = this->experts() * this->dim();
    return i < ed ? params_.data(w)[i] : params_.data(b)[i - ed];
  }
  T mean(Index i) const { return stat(router_weight, router_bias, i); }
  T variance(Index i) const {
    const T m = mean(i), v = stat(second_weight, second_bias, i) - m * m;
    return v > T(0) ? v : T(0);
  }
  T deviation(Index k, Index i) const {
    const Index ed = this->experts() * this->dim();
    return i < ed ? params_.data(deviation_weight)[k * ed + i] : params_.data(deviation_bias)[k * this->experts() + i - ed];
  }
  T low_rank_factor() const { return T(1 / std::sqrt(2.0 * double(std::max<Index>(columns() - 1, 1)))); }

  // z1 [P] then z2 [r] of sample s.
  Vector<T> normals(const rng::Stream& stream, Index s) const {
    const Index n = theta_size() + options_.rank, padded = cpu::padded<T>((n + 1) / 2) * 2;
    std::vector<T, xsimd::aligned_allocator<T>> out(std::size_t(padded), T(0));
    std::vector<std::uint32_t> wx(std::size_t(padded / 2)), wy(std::size_t(padded / 2));
    cpu::normals(stream, rng::Purpose::weights, 0, std::uint32_t(s), out.data(), padded, wx.data(), wy.data());
    return Eigen::Map<const Vector<T>>(out.data(), n);
  }

  std::shared_ptr<const Draws> draws(const rng::Stream& stream, Index samples) const {
    const std::lock_guard<std::mutex> lock(cache_->mutex);
    const auto& c = cache_->draws;
    if (c && c->seed == stream.seed && c->layer == stream.layer && c->samples == samples) return c;
    auto d = std::make_shared<Draws>();
    d->seed = stream.seed;
    d->layer = stream.layer;
    d->samples = samples;
    d->theta.resize(std::size_t(samples * theta_size()));
    for (Index s = 0; s < samples; ++s) {
      const Vector<T> theta = sample_weights(stream, s);
      std::copy_n(theta.data(), theta_size(), d->theta.data() + s * theta_size());
    }
    cache_->draws = d;
    return d;
  }

  SwagOptions options_;
  Parameters<T> params_;
  std::shared_ptr<Cache> cache_;
};

}  // namespace vmoer
