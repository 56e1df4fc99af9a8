// vmoer routers inside libtorch models.
//
//   auto router = vmoer_torch::bind(vmoer::Router(vmoer::MeanField<float>(W, b), vmoer::MonteCarlo{1},
//                                                  vmoer::TopK{{.top_k = 2}}, vmoer::rng::Stream{seed, layer}));
//   optimizer.add_param_group(router->parameters());     // tensors sharing the router's buffers
//   auto r = router->route(hidden, {.token_offset = step * hidden.size(0)});
//   loss = task_loss(r.weights, r.ids, ...) + beta * r.kl;  loss.backward();
//
// Forward and backward are the library's (Router::route, vmoer::backward); torch only
// sees an autograd Function with inputs (hidden, posterior parameters, selector
// parameters) and outputs (ids, weights, probs, signals, kl, temperature term).
// The selection is held fixed in the backward, as in the library. The KL and the
// temperature penalty are outputs like any other: the gradient torch hands back for
// them is the weight vmoer::backward gives its regularisers, so `beta * r.kl` in the
// loss is the ELBO's KL term with its exact gradient.
//
// The same Function serves the custom operators of vmoer_torch_ops.cpp (torch.ops.vmoer),
// which rebuild the router from a flat parameter tensor on every call: RouteFunction is
// templated on where it finds the router (its Source), not on the router itself.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <torch/torch.h>
#include <torch/version.h>

#include "vmoer/analysis/flops.hpp"
#include "vmoer/grad/backward.hpp"
#include "vmoer/vmoer.hpp"

namespace vmoer_torch {

/// What torch binds an optional operator argument (`Tensor?`) to: c10::optional before
/// torch 2.3, std::optional from then on (c10::optional became an alias of it during
/// 2.2 and is being removed).
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
template <class T>
using optional = std::optional<T>;
#else
template <class T>
using optional = c10::optional<T>;
#endif

/// Columns of TorchRouting::signals.
enum SignalColumn : std::int64_t {
  logit_variance = 0,
  mc_variance = 1,
  gate_entropy = 2,
  mutual_information = 3,
  temperature = 4,
  signal_count = 5,
};

/// The routing of a batch as tensors.
struct TorchRouting {
  torch::Tensor ids;      ///< [T, K] int64 chosen experts (no gradient)
  torch::Tensor weights;  ///< [T, K] combine weights, differentiable
  torch::Tensor probs;    ///< [T, E] averaged scores before selection, differentiable
  torch::Tensor signals;  ///< [T, signal_count] uncertainty signals (no gradient)
  torch::Tensor kl;       ///< scalar: mean over tokens of KL(q(l|u) || N(l_det(u), s^2 I)); 0 unless CallOptions::kl
  torch::Tensor temperature_term;  ///< scalar: mean over tokens of -(1/G) sum_g log T_g(u) (learned temperature), else 0
};

/// Options of one routing call.
struct CallOptions {
  std::uint32_t token_offset = 0;  ///< global index of the first token: give every batch new noise
  bool kl = false;                 ///< compute TorchRouting::kl (a Gaussian logit posterior only)
  double prior_sigma = 1.0;        ///< s of the KL's prior
};

namespace detail {

template <class T>
using Map = Eigen::Map<const vmoer::Matrix<T>>;

/// A [rows, cols] row-major view of a contiguous CPU tensor of T.
template <class T>
Map<T> view(const torch::Tensor& t, std::int64_t rows, std::int64_t cols) {
  return Map<T>(t.data_ptr<T>(), rows, cols);
}

/// A tensor of T sharing `data` (n elements), which the caller keeps alive.
template <class T>
torch::Tensor share(T* data, std::int64_t n) {
  return torch::from_blob(data, {n}, torch::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value));
}

/// A [rows, cols] tensor holding a copy of an Eigen matrix.
template <class Derived>
torch::Tensor copy(const Eigen::MatrixBase<Derived>& m, torch::Dtype dtype) {
  using S = typename Derived::Scalar;
  const vmoer::Matrix<S> dense = m;
  return torch::from_blob(const_cast<S*>(dense.data()), {dense.rows(), dense.cols()},
                          torch::TensorOptions().dtype(c10::CppTypeToScalarType<S>::value))
      .to(dtype)
      .clone();
}

template <class Router>
constexpr bool has_kl = vmoer::grad::has_kl<typename Router::posterior_type>;

template <class Router>
constexpr bool learned_tau = Router::selector_type::learned_tau;

/// Mean over the rows of u of the library's temperature term -(1/G) sum_g log T_g(u),
/// for a learned temperature of any width G (the value vmoer::backward differentiates),
/// from the trunk that route() kept in `projection`.
template <class Router, class T>
double temperature_term(const Router& router, const Map<T>& u, const vmoer::Matrix<T>& projection) {
  const vmoer::Index experts = router.posterior().experts();
  vmoer::grad::TemperatureBackward<typename Router::selector_type, T> mlp(router.selector(), experts, u.rows());
  auto tile = mlp.make_tile();
  mlp.forward_tile(u.data(), u.cols(), u.rows(),
                   vmoer::grad::KeptRows<T>(projection, 0, router.temperature_column()), tile);
  const std::vector<T> no_gradient(static_cast<std::size_t>(experts), T(0));
  double sum = 0;
  for (vmoer::Index t = 0; t < u.rows(); ++t) sum += double(mlp.token_adjoint(t, t, no_gradient.data(), tile, T(0)));
  return sum / double(u.rows());
}

}  // namespace detail

/// Where RouteFunction finds its router. A Source is trivially copyable, because it
/// travels from the forward to the backward as bytes in the autograd context, and has
///   using router_type = vmoer::Router<...>;
///   router(posterior_params, selector_params) -> router_type& or router_type
/// which checks the parameter tensors and returns the router whose parameters they are.
/// BoundRouter's source points at the router it owns; the custom operators
/// (vmoer_torch_ops.cpp) rebuild a router from the tensors on every call.
template <class Router>
struct Bound {
  using router_type = Router;  ///< the router type
  Router* owner;               ///< the BoundRouter's router (it must outlive the backward)

  /// The router, after checking that the tensors share its buffers.
  Router& router(const torch::Tensor& posterior_params, const optional<torch::Tensor>& selector_params) const {
    vmoer::detail::require(posterior_params.data_ptr() == owner->posterior().parameters().data(),
                           "vmoer_torch::route", "posterior_params does not share the router's parameter buffer");
    if constexpr (detail::learned_tau<Router>)
      vmoer::detail::require(selector_params && selector_params->data_ptr() == owner->selector().parameters().data(),
                             "vmoer_torch::route", "selector_params does not share the selector's parameter buffer");
    return *owner;
  }
};

/// The autograd Function of one router Source (see Bound). Inputs: source, options,
/// hidden [T, D], the posterior's parameter tensor and the selector's (none when it has
/// no parameters). Both parameter tensors are saved for the backward, which asks the
/// source for the router again: torch's version counters then catch a parameter
/// changed in place between forward and backward.
template <class Source>
struct RouteFunction : torch::autograd::Function<RouteFunction<Source>> {
  using Router = typename Source::router_type;  ///< the router type
  using T = typename Router::scalar;            ///< compute type
  static_assert(std::is_trivially_copyable_v<Source> && std::is_default_constructible_v<Source>,
                "a Source travels to the backward as bytes");

  /// Routes `hidden` and returns {ids, weights, probs, signals, kl, temperature_term}.
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, Source source,
                                                CallOptions options, torch::Tensor hidden,
                                                torch::Tensor posterior_params,
                                                optional<torch::Tensor> selector_params) {
    const auto dtype = c10::CppTypeToScalarType<T>::value;
    vmoer::detail::require(hidden.dim() == 2 && hidden.device().is_cpu() && hidden.scalar_type() == dtype,
                           "vmoer_torch::route", "hidden must be a 2-d CPU tensor of the router's scalar type, got ",
                           hidden.dim(), "-d ", std::string(c10::toString(hidden.scalar_type())));
    vmoer::detail::require(!options.kl || detail::has_kl<Router>, "vmoer_torch::route",
                           "CallOptions::kl needs a Gaussian logit posterior (MeanField, FullCovariance, LowRank)");
    decltype(auto) router = source.router(posterior_params, selector_params);
    const torch::Tensor x = hidden.contiguous();
    const auto u = detail::view<T>(x, x.size(0), x.size(1));
    // The products of the hidden states are kept for the backward, which then skips them.
    const vmoer::Routing<T> r =
        router.route(u, {.token_offset = options.token_offset, .keep_probs = true, .keep_projection = true});

    const torch::Tensor ids = detail::copy(r.ids, torch::kInt64);
    const torch::Tensor weights = detail::copy(r.weights, dtype);
    const torch::Tensor probs = detail::copy(r.probs, dtype);
    const torch::Tensor projection = detail::copy(r.projection, dtype);
    const vmoer::Signals<T>& s = r.signals;
    vmoer::Matrix<T> sig(r.ids.rows(), vmoer::Index(signal_count));
    sig << s.logit_variance, s.mc_variance, s.entropy, s.mutual_information, s.temperature;
    const torch::Tensor signals = detail::copy(sig, dtype);

    double kl = 0, temperature_term = 0;
    if constexpr (detail::has_kl<Router>)
      if (options.kl && u.rows() > 0) kl = double(vmoer::kl_divergence(router, u, r, options.prior_sigma).mean());
    if constexpr (detail::learned_tau<Router>)
      if (u.rows() > 0) temperature_term = detail::temperature_term(router, u, r.projection);

    ctx->saved_data["source"] = std::string(reinterpret_cast<const char*>(&source), sizeof(Source));
    ctx->saved_data["token_offset"] = std::int64_t(options.token_offset);
    ctx->saved_data["prior_sigma"] = options.prior_sigma;
    ctx->saved_data["kl"] = options.kl;
    ctx->save_for_backward({x, ids, posterior_params, selector_params.value_or(torch::Tensor()), projection});
    ctx->mark_non_differentiable({ids, signals});
    ctx->set_materialize_grads(false);
    return {ids, weights, probs, signals, torch::tensor(kl, dtype), torch::tensor(temperature_term, dtype)};
  }

  /// dL/d(hidden, posterior parameters, selector parameters) from vmoer::backward.
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    Source source;
    const std::string bytes = ctx->saved_data["source"].toStringRef();
    std::memcpy(static_cast<void*>(&source), bytes.data(), sizeof(Source));
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor& x = saved[0];
    decltype(auto) router = source.router(
        saved[2], saved[3].defined() ? optional<torch::Tensor>(saved[3]) : optional<torch::Tensor>());
    const auto tokens = x.size(0), k = saved[1].size(1), experts = router.posterior().experts();
    const auto dtype = c10::CppTypeToScalarType<T>::value;
    auto dense = [&](const torch::Tensor& g, std::int64_t cols) {
      return g.defined() ? g.to(dtype).contiguous() : torch::zeros({tokens, cols}, dtype);
    };
    const torch::Tensor dweights = dense(grads[1], k);
    const torch::Tensor dprobs = grads[2].defined() ? grads[2].to(dtype).contiguous() : torch::Tensor();
    const double dkl = grads[4].defined() && ctx->saved_data["kl"].toBool() ? grads[4].item<double>() : 0.0;
    const double dtemp = grads[5].defined() ? grads[5].item<double>() : 0.0;

    vmoer::Routing<T> r;
    r.ids = detail::view<std::int64_t>(saved[1], tokens, k).template cast<std::int32_t>();
    r.projection = detail::view<T>(saved[4], tokens, saved[4].size(1));
    vmoer::BackwardOptions<T> o;
    o.token_offset = std::uint32_t(ctx->saved_data["token_offset"].toInt());
    o.hidden_gradient = ctx->needs_input_grad(0);  // indexed over the tensor inputs: hidden first
    o.regularisers.kl_weight = dkl;
    o.regularisers.prior_sigma = ctx->saved_data["prior_sigma"].toDouble();
    if constexpr (detail::learned_tau<Router>) o.regularisers.temperature_penalty = dtemp;
    const vmoer::Matrix<T> none;
    const vmoer::Gradients<T> g =
        vmoer::backward(router, detail::view<T>(x, tokens, x.size(1)), r, detail::view<T>(dweights, tokens, k),
                        dprobs.defined() ? vmoer::MatrixView<T>(detail::view<T>(dprobs, tokens, experts))
                                         : vmoer::MatrixView<T>(none),
                        o);

    torch::Tensor dx, dp, ds;
    if (o.hidden_gradient) dx = detail::copy(g.hidden, dtype);
    dp = detail::copy(g.posterior.flat(), dtype).view({-1});
    if constexpr (detail::learned_tau<Router>) ds = detail::copy(g.selector.flat(), dtype).view({-1});
    return {torch::Tensor(), torch::Tensor(), dx, dp, ds};
  }
};

/// A router as a torch module: what a model needs without knowing the Router type.
class RouterModule {
 public:
  virtual ~RouterModule() = default;
  /// Routes hidden [T, D] with autograd.
  virtual TorchRouting route(const torch::Tensor& hidden, const CallOptions& options = {}) = 0;
  /// The trainable tensors (posterior, then selector if it has parameters), sharing the router's buffers.
  virtual std::vector<torch::Tensor> parameters() = 0;
  /// The router's shape, for FLOP counts.
  virtual vmoer::analysis::RouterShape shape() const = 0;
  /// Samples per token S.
  virtual vmoer::Index samples() const = 0;
  /// Whether the posterior has a closed-form KL (CallOptions::kl).
  virtual bool has_kl() const = 0;
  /// Copies the parameters of a router of the same layouts (e.g. trained with S = 1, evaluated with S = 35).
  void load(RouterModule& other) {
    torch::NoGradGuard no_grad;
    auto mine = parameters(), theirs = other.parameters();
    vmoer::detail::require(mine.size() == theirs.size(), "RouterModule::load", "parameter tensor counts differ: ",
                           mine.size(), " and ", theirs.size());
    for (std::size_t i = 0; i < mine.size(); ++i) {
      vmoer::detail::require(mine[i].numel() == theirs[i].numel(), "RouterModule::load", "parameter tensor ", i,
                             " has ", mine[i].numel(), " elements, the source ", theirs[i].numel());
      mine[i].copy_(theirs[i]);
    }
  }
};

/// A Router bound to torch tensors that share its parameter buffers (neither copyable
/// nor movable, so the tensors stay valid).
template <class Router>
class BoundRouter final : public RouterModule {
 public:
  /// Takes the router.
  explicit BoundRouter(Router router) : router_(std::move(router)) {
    auto& p = router_.posterior().parameters();
    posterior_ = detail::share(p.data(), p.size()).set_requires_grad(true);
    if constexpr (detail::learned_tau<Router>) {
      // Router exposes its selector read-only; this object owns the router, so writing is sound.
      auto& s = const_cast<vmoer::Parameters<typename Router::scalar>&>(router_.selector().parameters());
      selector_ = detail::share(s.data(), s.size()).set_requires_grad(true);
    }
  }
  BoundRouter(const BoundRouter&) = delete;
  BoundRouter& operator=(const BoundRouter&) = delete;

  TorchRouting route(const torch::Tensor& hidden, const CallOptions& options = {}) override {
    // An optional, not an undefined tensor: autograd records every tensor argument as an input.
    const optional<torch::Tensor> selector = selector_.defined() ? optional<torch::Tensor>(selector_) : optional<torch::Tensor>();
    auto out = RouteFunction<Bound<Router>>::apply(Bound<Router>{&router_}, options, hidden, posterior_, selector);
    return {out[0], out[1], out[2], out[3], out[4], out[5]};
  }
  std::vector<torch::Tensor> parameters() override {
    if (selector_.defined()) return {posterior_, selector_};
    return {posterior_};
  }
  vmoer::analysis::RouterShape shape() const override { return vmoer::analysis::shape_of(router_); }
  vmoer::Index samples() const override { return shape().samples; }
  bool has_kl() const override { return detail::has_kl<Router>; }
  /// The wrapped router.
  Router& router() { return router_; }

 private:
  Router router_;
  torch::Tensor posterior_, selector_;
};

/// Binds a router to torch (see BoundRouter).
template <class Router>
std::unique_ptr<BoundRouter<Router>> bind(Router router) {
  return std::make_unique<BoundRouter<Router>>(std::move(router));
}

}  // namespace vmoer_torch
