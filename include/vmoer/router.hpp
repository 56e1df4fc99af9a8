// Router<Posterior, Sampler, Selector, Backend>: the composition of the four policies.
//   Posterior  Dirac, MeanField, FullCovariance, LowRank   what the logits are
//   Sampler    MonteCarlo, MeanOnly                         how the posterior is integrated
//   Selector   TopK, Temperature, SampleK                   how experts and weights are chosen
//   Backend    Cpu (CUDA: backend/cuda)                     where it runs
// route() validates once, here, and hands valid input to the backend.
#pragma once

#include <cstdint>
#include <utility>

#include "vmoer/error.hpp"
#include "vmoer/rng/stream.hpp"
#include "vmoer/routing.hpp"
#include "vmoer/types.hpp"

namespace vmoer {

struct Cpu;  // backend/cpu.hpp; declared here so that this header stays free of xsimd

/// A Bayesian (or deterministic) MoE router.
template <class Posterior, class Sampler, class Selector, class Backend = Cpu>
class Router {
 public:
  using scalar = typename Posterior::scalar;  ///< compute type
  using posterior_type = Posterior;           ///< posterior policy
  using sampler_type = Sampler;               ///< sampler policy
  using selector_type = Selector;             ///< selector policy
  using backend_type = Backend;               ///< backend policy

  /// Composes the policies. `stream` holds the seed and the layer index of this router.
  Router(Posterior posterior, Sampler sampler, Selector selector, rng::Stream stream = {}, Backend backend = {})
      : posterior_(std::move(posterior)),
        sampler_(std::move(sampler)),
        selector_(std::move(selector)),
        stream_(stream),
        backend_(std::move(backend)) {
    validate(sampler_);
    validate(selector_, posterior_.experts());
    if constexpr (Selector::learned_tau)
      detail::require(selector_.dim() == posterior_.dim(), "Router", "the learned temperature takes inputs of D = ",
                      selector_.dim(), ", the posterior D = ", posterior_.dim());
    detail::require(stream_.layer <= rng::max_layer, "Router", "layer = ", stream_.layer, " exceeds ",
                    rng::max_layer);
  }

  /// Routes T tokens, the rows of `hidden` [T, D] (float, double, bfloat16 or half).
  template <class Derived>
  Routing<scalar> route(const Eigen::MatrixBase<Derived>& hidden, const RouteOptions& options = {}) const {
    Routing<scalar> out;
    route(hidden, out, options);
    return out;
  }

  /// The same routing written into `out`, whose buffers are reused: a decode loop that
  /// passes the same Routing allocates nothing for its outputs after the first step.
  /// On an exception `out` is left empty, never half-written.
  template <class Derived>
  void route(const Eigen::MatrixBase<Derived>& hidden, Routing<scalar>& out, const RouteOptions& options = {}) const {
    using In = typename Derived::Scalar;
    const MatrixView<In> view(hidden.derived());
    try {
      detail::require(view.cols() == posterior_.dim(), "route", "hidden has ", view.cols(),
                      " columns, expected the router's input dimension D = ", posterior_.dim());
      detail::require(std::uint64_t(options.token_offset) + std::uint64_t(view.rows()) <= (std::uint64_t(1) << 32),
                      "route", "token_offset + T = ", std::uint64_t(options.token_offset) + std::uint64_t(view.rows()),
                      " exceeds 2^32 token indices");
      backend_.route(*this, view, options, out);
    } catch (...) {
      out = Routing<scalar>{};
      throw;
    }
  }

  /// The posterior (its parameters may be updated in place).
  Posterior& posterior() { return posterior_; }
  /// The posterior, read-only.
  const Posterior& posterior() const { return posterior_; }
  /// The sampler.
  const Sampler& sampler() const { return sampler_; }
  /// The selector.
  const Selector& selector() const { return selector_; }
  /// Seed and layer.
  const rng::Stream& stream() const { return stream_; }
  /// The backend.
  const Backend& backend() const { return backend_; }
  /// Columns of Routing::projection: E + H, and the learned temperature's hidden width.
  Index projection_width() const {
    Index width = temperature_column();
    if constexpr (Selector::learned_tau) width += selector_.hidden();
    return width;
  }
  /// First column of the learned temperature's trunk in Routing::projection: E + H.
  Index temperature_column() const { return posterior_.experts() + posterior_.hidden(); }

 private:
  Posterior posterior_;
  Sampler sampler_;
  Selector selector_;
  rng::Stream stream_;
  Backend backend_;
};

/// Router(posterior, sampler, selector[, stream]) runs on the CPU.
template <class Posterior, class Sampler, class Selector>
Router(Posterior, Sampler, Selector) -> Router<Posterior, Sampler, Selector, Cpu>;
/// See above.
template <class Posterior, class Sampler, class Selector>
Router(Posterior, Sampler, Selector, rng::Stream) -> Router<Posterior, Sampler, Selector, Cpu>;

}  // namespace vmoer
