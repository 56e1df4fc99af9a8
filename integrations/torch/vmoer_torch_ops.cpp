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
// Selection, the same arguments on every route op: top-K at a fixed `temperature`
// (vmoer::Temperature), Gumbel-top-K at it (sample_k: vmoer::SampleK), or VTSR's learned
// per-token temperature (temperature_params, a second flat tensor: vmoer::LearnedTemperature,
// sampling when sample_k). One Rebuilt<Posterior, Sampler, Selector> serves every pair.
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
#include <type_traits>

#include <torch/library.h>

#include "vmoer_torch.hpp"

namespace {

using vmoer::Index;
using vmoer::detail::require;
using Outputs =
    std::tuple<torch::Tensor, torch::Tensor, torch::Tensor, torch::Tensor, torch::Tensor, torch::Tensor>;

/// The scalars of one op call that, with the parameters, define a router.
struct Config {
  Index experts = 0;  ///< E
  Index dim = 0;      ///< D, from hidden
  Index hidden = 0;   ///< encoder width H (Gaussians)
  Index rank = 0;     ///< r (LowRank), or SWAG's deviation columns
  double rate = 0;    ///< dropout rate (McDropout)
  double scale = 0;   ///< sampling scale (Swag)
  Index samples = 1;  ///< S (MonteCarlo)
  vmoer::Aggregate aggregate = vmoer::Aggregate::probs;  ///< how samples are averaged
  vmoer::Convention convention{};                        ///< top-K convention
  double tau = 1;                      ///< fixed temperature of the selector
  bool sample_k = false;               ///< Gumbel-top-K selection instead of top-K
  vmoer::TemperatureOptions learned{};  ///< shape and guards of a learned temperature (VTSR)
  std::uint64_t seed = 0;              ///< Philox seed
  std::uint32_t layer = 0;             ///< Philox layer
};

/// Whether P is a Gaussian over the logits (it has an encoder).
template <class P>
constexpr bool gaussian = requires { P::trunk_weight; };

/// Whether P is SWAG (its buffer holds snapshot statistics).
template <class P>
constexpr bool swag = std::is_same_v<P, vmoer::Swag<typename P::scalar>>;

/// RouteFunction's Source for the ops: the router rebuilt from the parameter tensors.
template <class Posterior, class Sampler, class Selector>
struct Rebuilt {
  using router_type = vmoer::Router<Posterior, Sampler, Selector>;  ///< the router type
  using T = typename Posterior::scalar;  ///< compute type
  Config config;                          ///< everything but the parameters

  /// Entries the flat parameter tensor must have.
  static Index size(const Config& c) {
    if constexpr (gaussian<Posterior>)
      return Posterior::layout(c.experts, c.dim, c.hidden, Posterior::covariance::head_size(c.experts, c.rank)).size();
    else if constexpr (swag<Posterior>)
      return Posterior::layout(c.experts, c.dim, c.rank).size();
    else
      return vmoer::Dirac<T>::layout(c.experts, c.dim).size();
  }

  /// Entries the flat temperature tensor must have (0: the selector has no parameters).
  static Index selector_size(const Config& c) {
    if constexpr (Selector::learned_tau)
      return Selector::layout(c.dim, c.learned.hidden, c.learned.per_expert ? c.experts : 1).size();
    else
      return 0;
  }

  /// The router whose parameters are `params` and `selector_params` (checked by the op before the forward).
  router_type router(const torch::Tensor& params, const vmoer_torch::optional<torch::Tensor>& selector_params) const {
    const torch::Tensor p = params.contiguous();
    return router_type(posterior(p.data_ptr<T>()), sampler(), selector(selector_params),
                       vmoer::rng::Stream{config.seed, config.layer});
  }

 private:
  static void fill(vmoer::Parameters<T>& buffer, const T* data) {
    buffer.flat() = Eigen::Map<const vmoer::Vector<T>>(data, buffer.size());
  }
  Posterior posterior(const T* data) const {
    const Index e = config.experts, d = config.dim;
    if constexpr (gaussian<Posterior>) {
      Posterior p(e, d, {.hidden = config.hidden, .rank = config.rank});
      fill(p.parameters(), data);
      return p;
    } else if constexpr (swag<Posterior>) {
      // The constructor takes a first snapshot; the tensor then replaces every statistic.
      const vmoer::Matrix<T> zero = vmoer::Matrix<T>::Zero(e, d);
      Posterior p(zero, vmoer::Vector<T>(), {.rank = config.rank, .scale = config.scale});
      fill(p.parameters(), data);
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
  Selector selector(const vmoer_torch::optional<torch::Tensor>& params) const {
    if constexpr (Selector::learned_tau) {
      Selector s(config.convention, config.experts, config.dim, config.learned);
      const torch::Tensor p = params->contiguous();
      fill(s.parameters(), p.data_ptr<T>());
      return s;
    } else {
      return Selector{config.convention, config.tau};
    }
  }
};

/// The selection arguments every route op ends with: top-K at the fixed temperature,
/// Gumbel-top-K at it (sample_k: SampleK), or a learned temperature (temperature_params:
/// VTSR's LearnedTemperature, sampling when sample_k).
struct Selection {
  bool sample_k = false;                           ///< Gumbel-top-K instead of top-K
  vmoer_torch::optional<torch::Tensor> temperature_params;  ///< the flat buffer of a learned temperature, or none
  Index temperature_hidden = 32;                   ///< its MLP's hidden width
  bool per_expert = false;                         ///< E temperatures per token instead of 1
  double floor = 0.05;                             ///< its smallest temperature
  double ceiling = 20.0;                           ///< its largest temperature
};

void require_finite(const torch::Tensor& t, const char* op, const char* name) {
  require(torch::isfinite(t).all().item<bool>(), op, name, " has non-finite entries");
}

/// Throws unless `t` is a finite 1-d CPU tensor of dtype.
void require_flat(const torch::Tensor& t, const char* op, const char* name, torch::ScalarType dtype) {
  require(t.device().is_cpu(), op, name, " must be a CPU tensor");
  require(t.scalar_type() == dtype, op, name, " must have hidden's dtype ", std::string(c10::toString(dtype)), ", got ",
          std::string(c10::toString(t.scalar_type())));
  require(t.dim() == 1, op, name, " must be a flat 1-d parameter buffer, got ", t.dim(), " dimensions");
  require_finite(t, op, name);
}

/// Checks the selection arguments and writes them into the config.
void apply_selection(const char* op, const Selection& s, torch::ScalarType dtype, Config& c) {
  c.sample_k = s.sample_k;
  if (!s.temperature_params) return;
  require_flat(*s.temperature_params, op, "temperature_params", dtype);
  require(c.tau == 1, op, "temperature = ", c.tau,
          " must be 1 (its default) with temperature_params: the learned temperature replaces it");
  require(s.temperature_hidden >= 1, op, "temperature_hidden = ", s.temperature_hidden, " must be >= 1");
  require(std::isfinite(s.floor) && s.floor > 0 && s.floor < 1, op, "temperature_floor = ", s.floor,
          " must be in (0, 1)");
  require(std::isfinite(s.ceiling) && s.ceiling > 1, op, "temperature_ceiling = ", s.ceiling,
          " must be finite and > 1");
  c.learned = {.hidden = s.temperature_hidden, .per_expert = s.per_expert, .floor = s.floor, .ceiling = s.ceiling,
               .sample = s.sample_k};
}

/// Checks the tensors and shape arguments, then routes with autograd.
template <template <class> class Family, class Sampler>
Outputs route(const char* op, const torch::Tensor& hidden, const torch::Tensor& params, const Selection& selection,
              Config config, vmoer_torch::CallOptions options) {
  require(hidden.dim() == 2, op, "hidden must be [tokens, D], got ", hidden.dim(), " dimensions");
  require(hidden.device().is_cpu(), op, "hidden must be a CPU tensor");
  const auto dtype = hidden.scalar_type();
  require(dtype == torch::kFloat32 || dtype == torch::kFloat64, op, "hidden must be float32 or float64, got ",
          std::string(c10::toString(dtype)));
  require_flat(params, op, "params", dtype);
  require(config.experts >= 1, op, "experts = ", config.experts, " must be >= 1");
  require(hidden.size(1) >= 1, op, "hidden has no columns");
  if constexpr (gaussian<Family<float>>) {
    require(config.hidden >= 1, op, "encoder_width = ", config.hidden, " must be >= 1");
    require(config.rank >= 0, op, "rank = ", config.rank, " must be >= 0");
  }
  if constexpr (swag<Family<float>>) {
    require(config.rank >= 1, op, "rank = ", config.rank, " must be >= 1");
    require(std::isfinite(config.scale) && config.scale >= 0, op, "scale = ", config.scale, " must be finite and >= 0");
  }
  require_finite(hidden, op, "hidden");
  apply_selection(op, selection, dtype, config);
  config.dim = hidden.size(1);

  auto run = [&]<class T>(T) -> Outputs {
    auto with = [&]<class Selector>(std::type_identity<Selector>) -> Outputs {
      using Source = Rebuilt<Family<T>, Sampler, Selector>;
      const Index expected = Source::size(config);
      require(params.numel() == expected, op, "params has ", params.numel(), " entries, expected ", expected,
              " for experts = ", config.experts, ", D = ", config.dim,
              gaussian<Family<T>> ? vmoer::detail::concat(", encoder_width = ", config.hidden, ", rank = ", config.rank)
              : swag<Family<T>>   ? vmoer::detail::concat(", rank = ", config.rank)
                                  : std::string());
      if constexpr (swag<Family<T>>) {
        const double n = params[expected - 1].item<double>();
        require(n >= 1 && n <= 1e9 && n == std::round(n), op, "params' last entry (swag.snapshots) = ", n,
                " must be a whole number of snapshots >= 1");
      }
      if constexpr (Selector::learned_tau) {
        const Index n = Source::selector_size(config);
        require(selection.temperature_params->numel() == n, op, "temperature_params has ",
                selection.temperature_params->numel(), " entries, expected ", n, " for D = ", config.dim,
                ", temperature_hidden = ", config.learned.hidden, " and ", config.learned.per_expert ? config.experts : 1,
                " temperature(s) per token");
      }
      auto out = vmoer_torch::RouteFunction<Source>::apply(Source{config}, options, hidden, params,
                                                             selection.temperature_params);
      return {out[0], out[1], out[2], out[3], out[4], out[5]};
    };
    if (selection.temperature_params) return with(std::type_identity<vmoer::LearnedTemperature<T>>{});
    if (config.sample_k) return with(std::type_identity<vmoer::SampleK>{});
    return with(std::type_identity<vmoer::Temperature>{});
  };
  return dtype == torch::kFloat32 ? run(float()) : run(double());
}

/// The routing convention from the selector arguments.
Config selector(const char* op, std::int64_t experts, std::int64_t top_k, double temperature, const std::string& score,
                bool normalize) {
  require(score == "softmax" || score == "sigmoid", op, "score must be \"softmax\" or \"sigmoid\", got \"", score, "\"");
  require(top_k >= 1 && top_k <= experts, op, "top_k = ", top_k, " must be in [1, experts = ", experts, "]");
  require(std::isfinite(temperature) && temperature > 0, op, "temperature = ", temperature, " must be finite and > 0");
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

/// Adds the Philox coordinates of a router's noise.
void coordinates(const char* op, Config& c, std::int64_t seed, std::int64_t layer, std::int64_t token_offset,
                 vmoer_torch::CallOptions& options) {
  check_coordinates(op, layer, token_offset);
  c.seed = std::uint64_t(seed);
  c.layer = std::uint32_t(layer);
  options.token_offset = std::uint32_t(token_offset);
}

/// Adds the sampling arguments of a stochastic router.
void sampling(const char* op, Config& c, std::int64_t samples, bool average_logits, std::int64_t seed,
              std::int64_t layer, std::int64_t token_offset, vmoer_torch::CallOptions& options) {
  coordinates(op, c, seed, layer, token_offset, options);
  c.samples = samples;
  c.aggregate = average_logits ? vmoer::Aggregate::logits : vmoer::Aggregate::probs;
}

Outputs route_dirac(const torch::Tensor& hidden, const torch::Tensor& params, std::int64_t experts, std::int64_t top_k,
                    double temperature, std::string score, bool normalize, std::int64_t seed, std::int64_t layer,
                    std::int64_t token_offset, bool sample_k, const vmoer_torch::optional<torch::Tensor>& temperature_params,
                    std::int64_t temperature_hidden, bool per_expert_temperature, double temperature_floor,
                    double temperature_ceiling) {
  const char* op = "vmoer::route_dirac";
  Config c = selector(op, experts, top_k, temperature, score, normalize);
  vmoer_torch::CallOptions options;
  coordinates(op, c, seed, layer, token_offset, options);
  return route<vmoer::Dirac, vmoer::MeanOnly>(op, hidden, params,
                                              {sample_k, temperature_params, temperature_hidden,
                                               per_expert_temperature, temperature_floor, temperature_ceiling},
                                              c, options);
}

/// MC dropout (rate) and SWAG (rank, scale): weight-space posteriors sampled S times.
template <template <class> class Family>
Outputs route_weight_space(const char* op, const torch::Tensor& hidden, const torch::Tensor& params,
                           std::int64_t experts, double rate, std::int64_t rank, double scale, std::int64_t samples,
                           std::int64_t top_k, double temperature, const std::string& score, bool normalize,
                           bool average_logits, std::int64_t seed, std::int64_t layer, std::int64_t token_offset,
                           const Selection& selection) {
  Config c = selector(op, experts, top_k, temperature, score, normalize);
  vmoer_torch::CallOptions options;
  sampling(op, c, samples, average_logits, seed, layer, token_offset, options);
  c.rate = rate;
  c.rank = rank;
  c.scale = scale;
  return route<Family, vmoer::MonteCarlo>(op, hidden, params, selection, c, options);
}

Outputs route_mc_dropout(const torch::Tensor& hidden, const torch::Tensor& params, std::int64_t experts, double rate,
                         std::int64_t samples, std::int64_t top_k, double temperature, std::string score,
                         bool normalize, bool average_logits, std::int64_t seed, std::int64_t layer,
                         std::int64_t token_offset, bool sample_k, const vmoer_torch::optional<torch::Tensor>& temperature_params,
                         std::int64_t temperature_hidden, bool per_expert_temperature, double temperature_floor,
                         double temperature_ceiling) {
  return route_weight_space<vmoer::McDropout>(
      "vmoer::route_mc_dropout", hidden, params, experts, rate, 0, 0, samples, top_k, temperature, score, normalize,
      average_logits, seed, layer, token_offset,
      {sample_k, temperature_params, temperature_hidden, per_expert_temperature, temperature_floor, temperature_ceiling});
}

Outputs route_swag(const torch::Tensor& hidden, const torch::Tensor& params, std::int64_t experts, std::int64_t rank,
                   double scale, std::int64_t samples, std::int64_t top_k, double temperature, std::string score,
                   bool normalize, bool average_logits, std::int64_t seed, std::int64_t layer,
                   std::int64_t token_offset, bool sample_k, const vmoer_torch::optional<torch::Tensor>& temperature_params,
                   std::int64_t temperature_hidden, bool per_expert_temperature, double temperature_floor,
                   double temperature_ceiling) {
  return route_weight_space<vmoer::Swag>(
      "vmoer::route_swag", hidden, params, experts, 0, rank, scale, samples, top_k, temperature, score, normalize,
      average_logits, seed, layer, token_offset,
      {sample_k, temperature_params, temperature_hidden, per_expert_temperature, temperature_floor, temperature_ceiling});
}

/// One op per Gaussian covariance; LowRank adds the rank argument.
template <template <class> class Family>
Outputs route_gaussian(const char* op, const torch::Tensor& hidden, const torch::Tensor& params, std::int64_t experts,
                       std::int64_t encoder_width, std::int64_t rank, std::int64_t samples, std::int64_t top_k,
                       double temperature, const std::string& score, bool normalize, bool average_logits,
                       std::int64_t seed, std::int64_t layer, std::int64_t token_offset, bool kl, double prior_sigma,
                       const Selection& selection) {
  Config c = selector(op, experts, top_k, temperature, score, normalize);
  vmoer_torch::CallOptions options{.kl = kl, .prior_sigma = prior_sigma};
  sampling(op, c, samples, average_logits, seed, layer, token_offset, options);
  require(std::isfinite(prior_sigma) && prior_sigma > 0, op, "prior_sigma = ", prior_sigma, " must be finite and > 0");
  c.hidden = encoder_width;
  c.rank = rank;
  return route<Family, vmoer::MonteCarlo>(op, hidden, params, selection, c, options);
}

template <template <class> class Family>
Outputs route_full_rank(const torch::Tensor& hidden, const torch::Tensor& params, std::int64_t experts,
                        std::int64_t encoder_width, std::int64_t samples, std::int64_t top_k, double temperature,
                        std::string score, bool normalize, bool average_logits, std::int64_t seed, std::int64_t layer,
                        std::int64_t token_offset, bool kl, double prior_sigma, bool sample_k,
                        const vmoer_torch::optional<torch::Tensor>& temperature_params, std::int64_t temperature_hidden,
                        bool per_expert_temperature, double temperature_floor, double temperature_ceiling) {
  const char* op = std::is_same_v<Family<float>, vmoer::MeanField<float>> ? "vmoer::route_mean_field"
                                                                          : "vmoer::route_full_covariance";
  return route_gaussian<Family>(
      op, hidden, params, experts, encoder_width, 0, samples, top_k, temperature, score, normalize, average_logits,
      seed, layer, token_offset, kl, prior_sigma,
      {sample_k, temperature_params, temperature_hidden, per_expert_temperature, temperature_floor, temperature_ceiling});
}

Outputs route_low_rank(const torch::Tensor& hidden, const torch::Tensor& params, std::int64_t experts,
                       std::int64_t encoder_width, std::int64_t rank, std::int64_t samples, std::int64_t top_k,
                       double temperature, std::string score, bool normalize, bool average_logits, std::int64_t seed,
                       std::int64_t layer, std::int64_t token_offset, bool kl, double prior_sigma, bool sample_k,
                       const vmoer_torch::optional<torch::Tensor>& temperature_params, std::int64_t temperature_hidden,
                       bool per_expert_temperature, double temperature_floor, double temperature_ceiling) {
  return route_gaussian<vmoer::LowRank>(
      "vmoer::route_low_rank", hidden, params, experts, encoder_width, rank, samples, top_k, temperature, score,
      normalize, average_logits, seed, layer, token_offset, kl, prior_sigma,
      {sample_k, temperature_params, temperature_hidden, per_expert_temperature, temperature_floor, temperature_ceiling});
}

/// A flat parameter buffer for `family` around a trained linear router W [E, D], b [E],
/// initialised as the library does (a Gaussian starts as the deterministic router, SWAG
/// with (W, b) as its first snapshot and `rank` deviation columns).
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
  if (family == "swag") {
    require(rank >= 1, op, "rank = ", rank, " (SWAG's deviation columns) must be >= 1");
    return flat(vmoer::Swag<double>(W, B, {.rank = rank}));
  }
  throw vmoer::invalid_argument(vmoer::detail::concat("vmoer: ", op,
                                                      ": family must be dirac, mc_dropout, mean_field, "
                                                      "full_covariance, low_rank or swag, got \"",
                                                      family, "\""));
}

/// The flat buffer of a learned temperature (VTSR) for E experts and input D, as
/// vmoer::LearnedTemperature initialises it: T(u) = 1 for every token (float64).
torch::Tensor init_temperature_params(std::int64_t experts, std::int64_t dim, std::int64_t hidden, bool per_expert,
                                      double floor, std::int64_t seed) {
  const vmoer::LearnedTemperature<double> t(
      {}, experts, dim, {.hidden = hidden, .per_expert = per_expert, .floor = floor, .seed = std::uint64_t(seed)});
  return vmoer_torch::detail::copy(t.parameters().flat(), torch::kFloat64).view({-1});
}

/// Standard normals [tokens, samples, size] of `purpose` drawn for tokens token_offset..
torch::Tensor normals(const char* op, vmoer::rng::Purpose purpose, std::int64_t seed, std::int64_t layer,
                      std::int64_t token_offset, std::int64_t tokens, std::int64_t samples, std::int64_t size) {
  require(tokens >= 0 && samples >= 1 && size >= 1, op, "tokens, samples, size = ", tokens, ", ", samples, ", ", size,
          " must be >= 0, >= 1, >= 1");
  check_coordinates(op, layer, token_offset + tokens - 1);
  auto eps = torch::empty({tokens, samples, size}, torch::kFloat64);
  const vmoer::rng::Stream stream{std::uint64_t(seed), std::uint32_t(layer)};
  for (Index t = 0; t < tokens; ++t)
    for (Index s = 0; s < samples; ++s)
      vmoer::rng::normals(stream, purpose, std::uint32_t(token_offset + t), std::uint32_t(s),
                          eps[t][s].data_ptr<double>(), size);
  return eps;
}

/// The standard normals eps [tokens, samples, size] that a Gaussian router of (seed,
/// layer) draws for tokens token_offset.. (float64), to reproduce a routing outside vmoer.
torch::Tensor logit_noise(std::int64_t seed, std::int64_t layer, std::int64_t token_offset, std::int64_t tokens,
                          std::int64_t samples, std::int64_t size) {
  return normals("vmoer::logit_noise", vmoer::rng::Purpose::logit_noise, seed, layer, token_offset, tokens, samples,
                 size);
}

/// The standard normals [samples, size] of a SWAG router of (seed, layer): sample s
/// draws z1 (the first E (D + 1)) then z2 (the next r), shared by every token (float64).
torch::Tensor weight_noise(std::int64_t seed, std::int64_t layer, std::int64_t samples, std::int64_t size) {
  return normals("vmoer::weight_noise", vmoer::rng::Purpose::weights, seed, layer, 0, 1, samples, size)[0];
}

/// The standard Gumbel noise [tokens, experts] that sampled selection (sample_k) of
/// (seed, layer) adds to log p for tokens token_offset.. (float64).
torch::Tensor gumbel_noise(std::int64_t seed, std::int64_t layer, std::int64_t token_offset, std::int64_t tokens,
                           std::int64_t experts) {
  const char* op = "vmoer::gumbel_noise";
  require(tokens >= 0 && experts >= 1, op, "tokens, experts = ", tokens, ", ", experts, " must be >= 0, >= 1");
  check_coordinates(op, layer, token_offset + tokens - 1);
  auto g = torch::empty({tokens, experts}, torch::kFloat64);
  auto a = g.accessor<double, 2>();
  const vmoer::rng::Stream stream{std::uint64_t(seed), std::uint32_t(layer)};
  for (Index t = 0; t < tokens; ++t)
    vmoer::selection::for_each_gumbel<double>(stream, std::uint32_t(token_offset + t), experts,
                                              [&](Index e, double g) { a[t][e] = g; });
  return g;
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
#define VMOER_SELECTION                                                                                       \
  "bool sample_k=False, Tensor? temperature_params=None, int temperature_hidden=32, "                          \
  "bool per_expert_temperature=False, float temperature_floor=0.05, float temperature_ceiling=20.0"
#define VMOER_OUTPUTS \
  "(Tensor ids, Tensor weights, Tensor probs, Tensor signals, Tensor kl, Tensor temperature_term)"

TORCH_LIBRARY(vmoer, m) {
  m.def("route_dirac(Tensor hidden, Tensor params, int experts, " VMOER_SELECTOR
        ", int seed=0, int layer=0, int token_offset=0, " VMOER_SELECTION ") -> " VMOER_OUTPUTS,
        &route_dirac);
  m.def("route_mc_dropout(Tensor hidden, Tensor params, int experts, float rate, int samples, " VMOER_SELECTOR
        ", " VMOER_SAMPLING ", " VMOER_SELECTION ") -> " VMOER_OUTPUTS,
        &route_mc_dropout);
  m.def("route_swag(Tensor hidden, Tensor params, int experts, int rank, float scale, int samples, " VMOER_SELECTOR
        ", " VMOER_SAMPLING ", " VMOER_SELECTION ") -> " VMOER_OUTPUTS,
        &route_swag);
  m.def("route_mean_field(Tensor hidden, Tensor params, int experts, int encoder_width, int samples, " VMOER_SELECTOR
        ", " VMOER_SAMPLING ", " VMOER_KL ", " VMOER_SELECTION ") -> " VMOER_OUTPUTS,
        &route_full_rank<vmoer::MeanField>);
  m.def("route_full_covariance(Tensor hidden, Tensor params, int experts, int encoder_width, int samples, "
        VMOER_SELECTOR ", " VMOER_SAMPLING ", " VMOER_KL ", " VMOER_SELECTION ") -> " VMOER_OUTPUTS,
        &route_full_rank<vmoer::FullCovariance>);
  m.def("route_low_rank(Tensor hidden, Tensor params, int experts, int encoder_width, int rank, int samples, "
        VMOER_SELECTOR ", " VMOER_SAMPLING ", " VMOER_KL ", " VMOER_SELECTION ") -> " VMOER_OUTPUTS,
        &route_low_rank);
  m.def("init_params(str family, Tensor weight, Tensor bias, int encoder_width=16, int rank=0, float init_sigma=0.1, "
        "int seed=0) -> Tensor",
        &init_params);
  m.def("init_temperature_params(int experts, int dim, int hidden=32, bool per_expert=False, float floor=0.05, "
        "int seed=0) -> Tensor",
        &init_temperature_params);
  m.def("logit_noise(int seed, int layer, int token_offset, int tokens, int samples, int size) -> Tensor",
        &logit_noise);
  m.def("weight_noise(int seed, int layer, int samples, int size) -> Tensor", &weight_noise);
  m.def("gumbel_noise(int seed, int layer, int token_offset, int tokens, int experts) -> Tensor", &gumbel_noise);
  m.def("dropout_masks(int seed, int layer, int token_offset, int tokens, int samples, int dim, float rate) -> Tensor",
        &dropout_masks);
}
