// vmoer's routers as torch custom operators (namespace torch.ops.vmoer), for Python,
// TorchScript and C++ through the dispatcher. Build: the shared library vmoer_torch_ops;
// Python: torch.ops.load_library(path), then torch.ops.vmoer.route_mean_field(...).
//
// Every op is stateless. It takes the router's parameters as one flat tensor in the
// library's layout (ParameterLayout: e.g. router.weight, encoder.trunk.weight,
// router.bias, ...; init_params builds one from a trained linear router), rebuilds the
// vmoer::Router from it on each call, and routes through vmoer_torch::RouteFunction, the
// autograd Function that BoundRouter also uses. The backward rebuilds the router from the
// saved tensors, so nothing but tensors and scalars lives between forward and backward.
//
// Autograd: each op is registered with m.def(schema, kernel), a CompositeImplicitAutograd
// kernel that applies the autograd Function. The library's backward needs the forward's
// selection (the ids) and nothing else torch provides, so an Autograd-key kernel plus a
// CPU kernel would split one Function into two registrations for no gain: the routers
// run on the CPU only.
#include <cmath>
#include <cstdint>
#include <string>
#include <tuple>

#include <torch/library.h>

#include "vmoer_torch.hpp"

namespace {

using vmoer::Index;
using vmoer::detail::require;
using Outputs = std::tuple<torch::Tensor, torch::Tensor, torch::Tensor, torch::Tensor, torch::Tensor>;

/// The scalars of one op call that, with the parameters, define a router.
struct Config {
  Index experts = 0;  ///< E
  Index dim = 0;      ///< D, from hidden
  Index hidden = 0;   ///< encoder width H (Gaussians)
  Index rank = 0;     ///< r (LowRank)
  double rate = 0;    ///< dropout rate (McDropout)
  Index samples = 1;  ///< S (MonteCarlo)
  vmoer::Aggregate aggregate = vmoer::Aggregate::probs;  ///< how samples are averaged
  vmoer::Convention convention{};                        ///< top-K convention
  double tau = 1;           ///< temperature of the selector
  std::uint64_t seed = 0;   ///< Philox seed
  std::uint32_t layer = 0;  ///< Philox layer
};

/// Whether P is a Gaussian over the logits (it has an encoder).
template <class P>
constexpr bool gaussian = requires { P::trunk_weight; };

/// RouteFunction's Source for the ops: the router rebuilt from the parameter tensor.
template <class Posterior, class Sampler>
struct Rebuilt {
  using router_type = vmoer::Router<Posterior, Sampler, vmoer::Temperature>;  ///< the router type
  using T = typename Posterior::scalar;  ///< compute type
  Config config;                          ///< everything but the parameters

  /// Entries the flat parameter tensor must have.
  static Index size(const Config& c) {
    if constexpr (gaussian<Posterior>)
      return Posterior::layout(c.experts, c.dim, c.hidden, Posterior::covariance::head_size(c.experts, c.rank)).size();
    else
      return vmoer::Dirac<T>::layout(c.experts, c.dim).size();
  }

  /// The router whose parameters are `params` (checked by the op before the forward).
  router_type router(const torch::Tensor& params, const c10::optional<torch::Tensor>&) const {
    const torch::Tensor p = params.contiguous();
    return router_type(posterior(p.data_ptr<T>()), sampler(), vmoer::Temperature{config.convention, config.tau},
                       vmoer::rng::Stream{config.seed, config.layer});
  }

 private:
  Posterior posterior(const T* data) const {
    const Index e = config.experts, d = config.dim;
    if constexpr (gaussian<Posterior>) {
      Posterior p(e, d, {.hidden = config.hidden, .rank = config.rank});
      p.parameters().flat() = Eigen::Map<const vmoer::Vector<T>>(data, p.parameters().size());
      return p;
    } else {
      const Eigen::Map<const vmoer::Matrix<T>> w(data, e, d);
      const vmoer::Vector<T> b = Eigen::Map<const vmoer::Vector<T>>(data + e * d, e);
      if constexpr (Posterior::weight_space)
        return Posterior(w, b, config.rate);
      else
        return Posterior(w, b);
    }
  }
  Sampler sampler() const {
    if constexpr (std::is_same_v<Sampler, vmoer::MonteCarlo>)
      return {.samples = config.samples, .aggregate = config.aggregate};
    else
      return {};
  }
};

void require_finite(const torch::Tensor& t, const char* op, const char* name) {
  require(torch::isfinite(t).all().item<bool>(), op, name, " has non-finite entries");
}

/// Checks the tensors and shape arguments, then routes with autograd.
template <template <class> class Family, class Sampler>
Outputs route(const char* op, const torch::Tensor& hidden, const torch::Tensor& params, Config config,
              vmoer_torch::CallOptions options) {
  require(hidden.dim() == 2, op, "hidden must be [tokens, D], got ", hidden.dim(), " dimensions");
  require(hidden.device().is_cpu() && params.device().is_cpu(), op, "hidden and params must be CPU tensors");
  const auto dtype = hidden.scalar_type();
  require(dtype == torch::kFloat32 || dtype == torch::kFloat64, op, "hidden must be float32 or float64, got ",
          std::string(c10::toString(dtype)));
  require(params.scalar_type() == dtype, op, "params must have hidden's dtype ", std::string(c10::toString(dtype)),
          ", got ", std::string(c10::toString(params.scalar_type())));
  require(params.dim() == 1, op, "params must be the flat 1-d parameter buffer, got ", params.dim(), " dimensions");
  require(config.experts >= 1, op, "experts = ", config.experts, " must be >= 1");
  require(hidden.size(1) >= 1, op, "hidden has no columns");
  if constexpr (gaussian<Family<float>>) {
    require(config.hidden >= 1, op, "encoder_width = ", config.hidden, " must be >= 1");
    require(config.rank >= 0, op, "rank = ", config.rank, " must be >= 0");
  }
  require_finite(hidden, op, "hidden");
  require_finite(params, op, "params");
  config.dim = hidden.size(1);

  auto run = [&]<class T>(T) -> Outputs {
    using Source = Rebuilt<Family<T>, Sampler>;
    const Index expected = Source::size(config);
    require(params.numel() == expected, op, "params has ", params.numel(), " entries, expected ", expected,
            " for experts = ", config.experts, ", D = ", config.dim,
            gaussian<Family<T>> ? vmoer::detail::concat(", encoder_width = ", config.hidden, ", rank = ", config.rank)
                                : std::string());
    const c10::optional<torch::Tensor> no_selector;
    auto out = vmoer_torch::RouteFunction<Source>::apply(Source{config}, options, hidden, params, no_selector);
    return {out[0], out[1], out[2], out[3], out[4]};
  };
  return dtype == torch::kFloat32 ? run(float()) : run(double());
}

/// The routing convention from the selector arguments.
Config selector(const char* op, std::int64_t experts, std::int64_t top_k, double temperature, const std::string& score,
                bool normalize) {
  require(score == "softmax" || score == "sigmoid", op, "score must be \"softmax\" or \"sigmoid\", got \"", score, "\"");
  require(top_k >= 1 && top_k <= experts, op, "top_k = ", top_k, " must be in [1, experts = ", experts, "]");
  Config c;
  c.experts = experts;
  c.convention = {.top_k = top_k,
                  .score = score == "softmax" ? vmoer::Score::softmax : vmoer::Score::sigmoid,
                  .normalize = normalize ? vmoer::Normalize::sum : vmoer::Normalize::none};
  c.tau = temperature;
  return c;
}

/// Throws unless (layer, token_offset) are valid Philox coordinates.
void check_coordinates(const char* op, std::int64_t layer, std::int64_t token_offset) {
  require(layer >= 0 && layer <= vmoer::rng::max_layer, op, "layer = ", layer, " must be in [0, ",
          vmoer::rng::max_layer, "]");
  require(token_offset >= 0 && token_offset <= std::int64_t(UINT32_MAX), op, "token_offset = ", token_offset,
          " must be in [0, 2^32)");
}

/// Adds the sampling arguments of a stochastic router.
void sampling(const char* op, Config& c, std::int64_t samples, bool average_logits, std::int64_t seed,
              std::int64_t layer, std::int64_t token_offset, vmoer_torch::CallOptions& options) {
  check_coordinates(op, layer, token_offset);
  c.samples = samples;
  c.aggregate = average_logits ? vmoer::Aggregate::logits : vmoer::Aggregate::probs;
  c.seed = std::uint64_t(seed);
  c.layer = std::uint32_t(layer);
  options.token_offset = std::uint32_t(token_offset);
}

Outputs route_dirac(const torch::Tensor& hidden, const torch::Tensor& params, std::int64_t experts, std::int64_t top_k,
                    double temperature, std::string score, bool normalize) {
  const char* op = "vmoer::route_dirac";
  return route<vmoer::Dirac, vmoer::MeanOnly>(op, hidden, params,
                                              selector(op, experts, top_k, temperature, score, normalize), {});
}

Outputs route_mc_dropout(const torch::Tensor& hidden, const torch::Tensor& params, std::int64_t experts, double rate,
                         std::int64_t samples, std::int64_t top_k, double temperature, std::string score,
                         bool normalize, bool average_logits, std::int64_t seed, std::int64_t layer,
                         std::int64_t token_offset) {
  const char* op = "vmoer::route_mc_dropout";
  Config c = selector(op, experts, top_k, temperature, score, normalize);
  vmoer_torch::CallOptions options;
  sampling(op, c, samples, average_logits, seed, layer, token_offset, options);
  c.rate = rate;
  return route<vmoer::McDropout, vmoer::MonteCarlo>(op, hidden, params, c, options);
}

/// One op per Gaussian covariance; LowRank adds the rank argument.
template <template <class> class Family>
Outputs route_gaussian(const char* op, const torch::Tensor& hidden, const torch::Tensor& params, std::int64_t experts,
                       std::int64_t encoder_width, std::int64_t rank, std::int64_t samples, std::int64_t top_k,
                       double temperature, const std::string& score, bool normalize, bool average_logits,
                       std::int64_t seed, std::int64_t layer, std::int64_t token_offset, bool kl, double prior_sigma) {
  Config c = selector(op, experts, top_k, temperature, score, normalize);
  vmoer_torch::CallOptions options{.kl = kl, .prior_sigma = prior_sigma};
  sampling(op, c, samples, average_logits, seed, layer, token_offset, options);
  require(std::isfinite(prior_sigma) && prior_sigma > 0, op, "prior_sigma = ", prior_sigma, " must be finite and > 0");
  c.hidden = encoder_width;
  c.rank = rank;
  return route<Family, vmoer::MonteCarlo>(op, hidden, params, c, options);
}

template <template <class> class Family>
Outputs route_full_rank(const torch::Tensor& hidden, const torch::Tensor& params, std::int64_t experts,
                        std::int64_t encoder_width, std::int64_t samples, std::int64_t top_k, double temperature,
                        std::string score, bool normalize, bool average_logits, std::int64_t seed, std::int64_t layer,
                        std::int64_t token_offset, bool kl, double prior_sigma) {
  const char* op = std::is_same_v<Family<float>, vmoer::MeanField<float>> ? "vmoer::route_mean_field"
                                                                          : "vmoer::route_full_covariance";
  return route_gaussian<Family>(op, hidden, params, experts, encoder_width, 0, samples, top_k, temperature, score,
                                normalize, average_logits, seed, layer, token_offset, kl, prior_sigma);
}

Outputs route_low_rank(const torch::Tensor& hidden, const torch::Tensor& params, std::int64_t experts,
                       std::int64_t encoder_width, std::int64_t rank, std::int64_t samples, std::int64_t top_k,
                       double temperature, std::string score, bool normalize, bool average_logits, std::int64_t seed,
                       std::int64_t layer, std::int64_t token_offset, bool kl, double prior_sigma) {
  return route_gaussian<vmoer::LowRank>("vmoer::route_low_rank", hidden, params, experts, encoder_width, rank, samples,
                                        top_k, temperature, score, normalize, average_logits, seed, layer,
                                        token_offset, kl, prior_sigma);
}

/// A flat parameter buffer for `family` around a trained linear router W [E, D], b [E],
/// initialised as the library does (a Gaussian starts as the deterministic router).
torch::Tensor init_params(std::string family, const torch::Tensor& weight, const torch::Tensor& bias,
                          std::int64_t encoder_width, std::int64_t rank, double init_sigma, std::int64_t seed) {
  const char* op = "vmoer::init_params";
  require(weight.dim() == 2 && bias.dim() == 1, op, "weight must be [E, D] and bias [E], got ", weight.dim(), "-d and ",
          bias.dim(), "-d");
  const torch::Tensor w = weight.detach().to(torch::kFloat64).contiguous(), b = bias.detach().to(torch::kFloat64).contiguous();
  const vmoer::Matrix<double> W = Eigen::Map<const vmoer::Matrix<double>>(w.data_ptr<double>(), w.size(0), w.size(1));
  const vmoer::Vector<double> B = Eigen::Map<const vmoer::Vector<double>>(b.data_ptr<double>(), b.size(0));
  const vmoer::EncoderOptions o{.hidden = encoder_width, .rank = rank, .init_sigma = init_sigma,
                                .seed = std::uint64_t(seed)};
  auto flat = [&](const auto& posterior) {
    const auto& p = posterior.parameters();
    return vmoer_torch::detail::copy(p.flat(), weight.scalar_type()).view({-1});
  };
  if (family == "dirac" || family == "mc_dropout") return flat(vmoer::Dirac<double>(W, B));
  if (family == "mean_field") return flat(vmoer::MeanField<double>(W, B, o));
  if (family == "full_covariance") return flat(vmoer::FullCovariance<double>(W, B, o));
  if (family == "low_rank") return flat(vmoer::LowRank<double>(W, B, o));
  throw vmoer::invalid_argument(vmoer::detail::concat(
      "vmoer: ", op, ": family must be dirac, mc_dropout, mean_field, full_covariance or low_rank, got \"", family, "\""));
}

/// The standard normals eps [tokens, samples, size] that a Gaussian router of (seed,
/// layer) draws for tokens token_offset.. (float64), to reproduce a routing outside vmoer.
torch::Tensor logit_noise(std::int64_t seed, std::int64_t layer, std::int64_t token_offset, std::int64_t tokens,
                          std::int64_t samples, std::int64_t size) {
  require(tokens >= 0 && samples >= 1 && size >= 1, "vmoer::logit_noise", "tokens, samples, size = ", tokens, ", ",
          samples, ", ", size, " must be >= 0, >= 1, >= 1");
  check_coordinates("vmoer::logit_noise", layer, token_offset + tokens - 1);
  auto eps = torch::empty({tokens, samples, size}, torch::kFloat64);
  const vmoer::rng::Stream stream{std::uint64_t(seed), std::uint32_t(layer)};
  for (Index t = 0; t < tokens; ++t)
    for (Index s = 0; s < samples; ++s)
      vmoer::rng::normals(stream, vmoer::rng::Purpose::logit_noise, std::uint32_t(token_offset + t), std::uint32_t(s),
                          eps[t][s].data_ptr<double>(), size);
  return eps;
}

/// The scaled dropout masks m / keep [tokens, samples, dim] that an McDropout router of
/// (seed, layer) at `rate` applies to tokens token_offset.. (float64).
torch::Tensor dropout_masks(std::int64_t seed, std::int64_t layer, std::int64_t token_offset, std::int64_t tokens,
                            std::int64_t samples, std::int64_t dim, double rate) {
  require(tokens >= 0 && samples >= 1 && dim >= 1, "vmoer::dropout_masks", "tokens, samples, dim = ", tokens, ", ",
          samples, ", ", dim, " must be >= 0, >= 1, >= 1");
  check_coordinates("vmoer::dropout_masks", layer, token_offset + tokens - 1);
  const vmoer::McDropout<double> dropout(vmoer::Matrix<double>::Zero(1, dim), {}, rate);
  const vmoer::rng::Stream stream{std::uint64_t(seed), std::uint32_t(layer)};
  const vmoer::Vector<double> ones = vmoer::Vector<double>::Ones(dim);
  auto masks = torch::empty({tokens, samples, dim}, torch::kFloat64);
  vmoer::McDropout<double>::MaskWords words;
  for (Index t = 0; t < tokens; ++t)
    for (Index s = 0; s < samples; ++s)
      dropout.dropout(ones.data(), std::uint32_t(token_offset + t), std::uint32_t(s), stream,
                      masks[t][s].data_ptr<double>(), words);
  return masks;
}

}  // namespace

#define VMOER_SELECTOR "int top_k, float temperature=1.0, str score=\"softmax\", bool normalize=True"
#define VMOER_SAMPLING "bool average_logits=False, int seed=0, int layer=0, int token_offset=0"
#define VMOER_KL "bool kl=True, float prior_sigma=1.0"
#define VMOER_OUTPUTS "(Tensor ids, Tensor weights, Tensor probs, Tensor signals, Tensor kl)"

TORCH_LIBRARY(vmoer, m) {
  m.def("route_dirac(Tensor hidden, Tensor params, int experts, " VMOER_SELECTOR ") -> " VMOER_OUTPUTS, &route_dirac);
  m.def("route_mc_dropout(Tensor hidden, Tensor params, int experts, float rate, int samples, " VMOER_SELECTOR
        ", " VMOER_SAMPLING ") -> " VMOER_OUTPUTS,
        &route_mc_dropout);
  m.def("route_mean_field(Tensor hidden, Tensor params, int experts, int encoder_width, int samples, " VMOER_SELECTOR
        ", " VMOER_SAMPLING ", " VMOER_KL ") -> " VMOER_OUTPUTS,
        &route_full_rank<vmoer::MeanField>);
  m.def("route_full_covariance(Tensor hidden, Tensor params, int experts, int encoder_width, int samples, "
        VMOER_SELECTOR ", " VMOER_SAMPLING ", " VMOER_KL ") -> " VMOER_OUTPUTS,
        &route_full_rank<vmoer::FullCovariance>);
  m.def("route_low_rank(Tensor hidden, Tensor params, int experts, int encoder_width, int rank, int samples, "
        VMOER_SELECTOR ", " VMOER_SAMPLING ", " VMOER_KL ") -> " VMOER_OUTPUTS,
        &route_low_rank);
  m.def("init_params(str family, Tensor weight, Tensor bias, int encoder_width=16, int rank=0, float init_sigma=0.1, "
        "int seed=0) -> Tensor",
        &init_params);
  m.def("logit_noise(int seed, int layer, int token_offset, int tokens, int samples, int size) -> Tensor",
        &logit_noise);
  m.def("dropout_masks(int seed, int layer, int token_offset, int tokens, int samples, int dim, float rate) -> Tensor",
        &dropout_masks);
}
