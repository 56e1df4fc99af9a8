// The torch autograd Function against torch autograd of an independent pure-torch router
// (double precision) that uses the same Philox noise: forward outputs and the gradients
// of hidden, of every posterior parameter and of the KL term must agree. The custom
// operator (vmoer_torch_ops), called through the dispatcher, must agree with the bound router.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
#include <dlfcn.h>

#include <ATen/core/dispatch/Dispatcher.h>

#include "vmoer_torch.hpp"  // after doctest: glog (via torch) redefines CHECK, so the tests spell DOCTEST_CHECK

namespace {

using vmoer::Index;
constexpr Index tokens = 37, dim = 12, experts = 6, width = 5, top_k = 2;
constexpr std::uint64_t seed = 1234;
constexpr std::uint32_t layer = 3, offset = 1000;

torch::Tensor random(std::vector<std::int64_t> shape, double scale) {
  return torch::randn(shape, torch::kFloat64) * scale;
}

/// Max |a - b| relative to max |b| (and at least 1e-3 absolute scale).
double relative_error(const torch::Tensor& a, const torch::Tensor& b) {
  const double scale = std::max(b.abs().max().item<double>(), 1e-3);
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>() / scale;
}

double value(const torch::Tensor& scalar) { return scalar.item<double>(); }

/// Slot `name` of a flat parameter tensor as [rows, cols].
torch::Tensor slot(const torch::Tensor& flat, const vmoer::ParameterLayout& layout, const std::string& name) {
  const auto& s = layout.at(name);
  return flat.narrow(0, s.offset, s.size()).view({s.rows, s.cols});
}

/// The eps the router draws for (token, sample): the library's scalar Box-Muller on Philox.
torch::Tensor noise(Index samples) {
  auto eps = torch::empty({tokens, samples, experts}, torch::kFloat64);
  const vmoer::rng::Stream stream{seed, layer};
  for (Index t = 0; t < tokens; ++t)
    for (Index s = 0; s < samples; ++s)
      vmoer::rng::normals(stream, vmoer::rng::Purpose::logit_noise, std::uint32_t(offset + t), std::uint32_t(s),
                          eps[t][s].data_ptr<double>(), experts);
  return eps;
}

/// Pure-torch mean-field router: returns {probs [T, E], mean KL}; Dirac when `flat`
/// holds only the router's weight and bias.
std::pair<torch::Tensor, torch::Tensor> reference_probs(const torch::Tensor& u, const torch::Tensor& flat,
                                                        const vmoer::ParameterLayout& layout, Index samples,
                                                        double prior_sigma) {
  const auto w = slot(flat, layout, "router.weight"), b = slot(flat, layout, "router.bias");
  auto mu = u.matmul(w.t()) + b;
  if (!layout.find("encoder.trunk.weight")) return {torch::softmax(mu, -1), torch::zeros({}, torch::kFloat64)};
  const auto h = torch::relu(u.matmul(slot(flat, layout, "encoder.trunk.weight").t()) +
                             slot(flat, layout, "encoder.trunk.bias"));
  const auto m = h.matmul(slot(flat, layout, "encoder.mean.weight").t()) + slot(flat, layout, "encoder.mean.bias");
  const auto log_var =
      h.matmul(slot(flat, layout, "encoder.scale.weight").t()) + slot(flat, layout, "encoder.scale.bias");
  const auto z = (mu + m).unsqueeze(1) + torch::exp(log_var / 2).unsqueeze(1) * noise(samples);
  const double v = prior_sigma * prior_sigma;
  const auto kl = 0.5 * ((torch::exp(log_var) + m * m) / v - 1 + std::log(v) - log_var).sum(-1).mean();
  return {torch::softmax(z, -1).mean(1), kl};
}

/// Routes random inputs both ways with a random upstream gradient and compares.
template <class Router>
void check_against_reference(vmoer_torch::BoundRouter<Router>& bound, Index samples, double beta) {
  torch::manual_seed(7);
  const auto& layout = bound.router().posterior().parameters().layout();
  const auto u64 = random({tokens, dim}, 1.0).requires_grad_(true);
  const auto upstream_w = random({tokens, top_k}, 1.0), upstream_p = random({tokens, experts}, 1.0);

  // vmoer through the autograd Function (float).
  const auto u32 = u64.detach().to(torch::kFloat32).requires_grad_(true);
  const auto params = bound.parameters()[0];
  if (params.grad().defined()) params.grad().zero_();
  const auto r = bound.route(u32, {.token_offset = offset, .kl = beta > 0, .prior_sigma = 0.7});
  const auto loss = (r.weights * upstream_w.to(torch::kFloat32)).sum() +
                    (r.probs * upstream_p.to(torch::kFloat32)).sum() + beta * r.kl;
  loss.backward();

  // The reference (double), with vmoer's selection.
  const auto flat = params.detach().to(torch::kFloat64).clone().requires_grad_(true);
  const auto [probs, kl] = reference_probs(u64, flat, layout, samples, 0.7);
  auto chosen = probs.gather(1, r.ids);
  const auto weights = chosen / chosen.sum(1, true);
  const auto ref_loss = (weights * upstream_w).sum() + (probs * upstream_p).sum() + beta * kl;
  ref_loss.backward();

  DOCTEST_CHECK(relative_error(r.probs, probs.detach()) < 1e-5);
  DOCTEST_CHECK(relative_error(r.weights, weights.detach()) < 1e-5);
  if (beta > 0) DOCTEST_CHECK(std::abs(value(r.kl) - value(kl)) < 1e-5 * std::max(1.0, value(kl)));
  // The top-K of the reference's probabilities must be vmoer's choice.
  DOCTEST_CHECK(torch::equal(std::get<1>(probs.detach().topk(top_k, 1)), r.ids));
  DOCTEST_CHECK(relative_error(u32.grad(), u64.grad()) < 1e-4);
  for (const auto& s : layout.slots()) {
    DOCTEST_INFO("parameter ", s.name);
    DOCTEST_CHECK(relative_error(slot(params.grad(), layout, s.name), slot(flat.grad(), layout, s.name)) < 1e-4);
  }
}

vmoer::Matrix<float> random_router() {
  torch::manual_seed(3);
  const auto w = torch::randn({experts, dim}, torch::kFloat32).contiguous();
  return Eigen::Map<const vmoer::Matrix<float>>(w.data_ptr<float>(), experts, dim);
}

vmoer::Vector<float> random_bias() { return vmoer::Vector<float>::LinSpaced(experts, -0.3f, 0.2f); }

const vmoer::TopK selector{{.top_k = top_k, .normalize = vmoer::Normalize::sum}};

}  // namespace

TEST_CASE("Dirac router: weights, probs and gradients match torch autograd") {
  auto bound = vmoer_torch::bind(vmoer::Router(vmoer::Dirac<float>(random_router(), random_bias()), vmoer::MeanOnly{},
                                               selector, vmoer::rng::Stream{seed, layer}));
  check_against_reference(*bound, 1, 0.0);
}

TEST_CASE("mean-field router with fixed Philox noise: gradients and KL match torch autograd") {
  for (const Index samples : {Index(1), Index(4)}) {
    DOCTEST_INFO("S = ", samples);
    vmoer::MeanField<float> posterior(random_router(), random_bias(), {.hidden = width, .init_sigma = 0.5, .seed = 9});
    // Non-zero mean and scale heads, so that every path of the encoder carries gradient.
    auto& p = posterior.parameters();
    for (const char* name : {"encoder.mean.weight", "encoder.scale.weight"})
      p[name] = vmoer::Matrix<float>::Random(p[name].rows(), p[name].cols()) * 0.3f;
    auto bound = vmoer_torch::bind(
        vmoer::Router(std::move(posterior), vmoer::MonteCarlo{samples}, selector, vmoer::rng::Stream{seed, layer}));
    check_against_reference(*bound, samples, 0.25);
  }
}

TEST_CASE("parameters share the router's buffer, and a router with S > 1 reports MC variance") {
  auto bound = vmoer_torch::bind(vmoer::Router(vmoer::MeanField<float>(random_router(), random_bias()),
                                               vmoer::MonteCarlo{8}, selector, vmoer::rng::Stream{seed, layer}));
  auto params = bound->parameters()[0];
  DOCTEST_CHECK(params.data_ptr() == bound->router().posterior().parameters().data());
  const auto r = bound->route(torch::randn({tokens, dim}));
  DOCTEST_CHECK(r.signals.select(1, vmoer_torch::mc_variance).min().item<double>() > 0);
  {
    torch::NoGradGuard no_grad;
    params.zero_();
  }
  DOCTEST_CHECK(bound->router().posterior().parameters()["router.weight"].isZero());
}

TEST_CASE("bad input is a named error") {
  auto bound = vmoer_torch::bind(
      vmoer::Router(vmoer::Dirac<float>(random_router()), vmoer::MeanOnly{}, selector, vmoer::rng::Stream{seed, 0}));
  CHECK_THROWS_AS(bound->route(torch::randn({4, dim + 1})), vmoer::invalid_argument);
  CHECK_THROWS_AS(bound->route(torch::randn({4, dim}, torch::kFloat64)), vmoer::invalid_argument);
  CHECK_THROWS_AS(bound->route(torch::randn({4, dim}), {.kl = true}), vmoer::invalid_argument);
}

TEST_CASE("the custom operator through the C++ dispatcher routes and differentiates as the bound router") {
  // Loading the library runs its TORCH_LIBRARY registration, as for any torch extension.
  REQUIRE(dlopen(VMOER_TORCH_OPS_LIBRARY, RTLD_NOW) != nullptr);
  const auto op = c10::Dispatcher::singleton()
                      .findSchemaOrThrow("vmoer::route_mean_field", "")
                      .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>(
                          const at::Tensor&, const at::Tensor&, std::int64_t, std::int64_t, std::int64_t,
                          std::int64_t, double, std::string, bool, bool, std::int64_t, std::int64_t, std::int64_t,
                          bool, double, bool, const vmoer_torch::optional<at::Tensor>&, std::int64_t, bool, double, double)>();
  vmoer::MeanField<float> posterior(random_router(), random_bias(), {.hidden = width, .init_sigma = 0.5, .seed = 9});
  auto& p = posterior.parameters();
  p["encoder.mean.weight"] = vmoer::Matrix<float>::Random(experts, width) * 0.3f;
  constexpr Index samples = 3;
  auto bound =
      vmoer_torch::bind(vmoer::Router(std::move(posterior), vmoer::MonteCarlo{samples}, selector, vmoer::rng::Stream{seed, layer}));
  torch::manual_seed(11);
  const auto u = torch::randn({tokens, dim}).requires_grad_(true), v = u.detach().clone().requires_grad_(true);
  const auto upstream = torch::randn({tokens, top_k});
  const auto params = bound->parameters()[0].detach().clone().requires_grad_(true);

  // The trailing arguments are the schema's defaults: top-K at the fixed temperature.
  const auto [ids, weights, probs, signals, kl, temperature_term] =
      op.call(v, params, experts, width, samples, top_k, 1.0, "softmax", true, false, std::int64_t(seed), layer, offset,
              true, 0.7, false, vmoer_torch::optional<at::Tensor>(), 32, false, 0.05, 20.0);
  ((weights * upstream).sum() + 0.5 * kl).backward();
  const auto r = bound->route(u, {.token_offset = offset, .kl = true, .prior_sigma = 0.7});
  ((r.weights * upstream).sum() + 0.5 * r.kl).backward();

  DOCTEST_CHECK(torch::equal(ids, r.ids));
  DOCTEST_CHECK(relative_error(weights, r.weights) < 1e-6);
  DOCTEST_CHECK(relative_error(probs, r.probs) < 1e-6);
  DOCTEST_CHECK(relative_error(signals, r.signals) < 1e-6);
  DOCTEST_CHECK(std::abs(value(kl) - value(r.kl)) < 1e-6);
  DOCTEST_CHECK(value(temperature_term) == 0.0);
  DOCTEST_CHECK(relative_error(v.grad(), u.grad()) < 1e-6);
  DOCTEST_CHECK(relative_error(params.grad(), bound->parameters()[0].grad()) < 1e-6);
}
