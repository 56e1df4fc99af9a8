// Training end to end: the law that sampled selection's score-function term assumes,
// VTSR's temperature under gradient descent, a mean-field router fitted to a target
// distribution with Adam written here, and parameter/gradient files.
#include <filesystem>

#include "grad/gradcheck.hpp"
#include "vmoer/grad/selection.hpp"
#include "vmoer/train/elbo.hpp"
#include "vmoer/train/save.hpp"

using namespace vmoer;
using gradcheck::Index;
using gradcheck::Matrix;
using gradcheck::Vector;

namespace {

/// Adam over one flat buffer (Kingma & Ba 2015, default betas).
struct Adam {
  explicit Adam(double rate) : lr(rate) {}
  double lr;
  Vector<double> m, v;
  int step = 0;
  void update(Eigen::Map<Vector<double>> x, const Eigen::Map<const Vector<double>>& g) {
    if (m.size() == 0) m = v = Vector<double>::Zero(x.size());
    ++step;
    m = 0.9 * m + 0.1 * g;
    v = 0.999 * v + 0.001 * g.cwiseProduct(g);
    const double c1 = 1 - std::pow(0.9, step), c2 = 1 - std::pow(0.999, step);
    x.array() -= lr * (m.array() / c1) / ((v.array() / c2).sqrt() + 1e-8);
  }
};

}  // namespace

TEST_CASE("Gumbel-top-K draws ordered selections with the Plackett-Luce probabilities") {
  const Index e = 4, k = 2, n = 40000;
  const double q[e] = {0.5, 0.25, 0.15, 0.10};
  const rng::Stream stream{77, 0};
  Matrix<double> counts = Matrix<double>::Zero(e, e);
  for (Index t = 0; t < n; ++t) {
    std::int32_t ids[k];
    double keys[k];
    selection::sample_top_k(q, e, k, stream, std::uint32_t(t), ids, keys);
    counts(ids[0], ids[1]) += 1;
  }
  double work[k];
  for (std::int32_t a = 0; a < e; ++a)
    for (std::int32_t b = 0; b < e; ++b) {
      if (a == b) continue;
      const std::int32_t ids[k] = {a, b};
      const double lp = grad::plackett_luce_log_prob(q, e, ids, k, 0.0, static_cast<double*>(nullptr), work);
      CHECK(lp == doctest::Approx(gradcheck::plackett_luce(q, e, ids, k)).epsilon(1e-14));
      const double p = std::exp(lp), se = std::sqrt(p * (1 - p) / double(n));
      CAPTURE(a);
      CAPTURE(b);
      CHECK(std::abs(counts(a, b) / double(n) - p) < 5 * se);
    }
}

namespace {

/// Trains VTSR's temperature by the score-function term on cost(ids) = sum of the chosen
/// experts' costs, with fixed router logits; returns the mean temperature after each step.
std::vector<double> train_temperature(const Vector<double>& cost, double penalty, int steps) {
  const Index e = 4, d = 3, tokens = 64;
  std::mt19937_64 g(21);
  Matrix<double> w(e, d);
  w << 2, 0, 0, 1, 0, 0, 0, 0, 0, -1, 0, 0;  // logits 2u0, u0, 0, -u0: expert 0 leads for u0 > 0
  const Dirac<double> post(w, Vector<double>::Zero(e));
  LearnedTemperature<double> sel({.top_k = 2, .normalize = Normalize::sum}, e, d, {.hidden = 8, .sample = true});
  Matrix<double> x = gradcheck::normal(g, tokens, d, 0.3);
  x.col(0).array() = x.col(0).array().abs() + 1.0;
  Adam adam{0.05};
  std::vector<double> mean_tau;
  for (int step = 0; step < steps; ++step) {
    const Router router(post, MonteCarlo{.samples = 1}, sel, rng::Stream{3, 0});
    const std::uint32_t offset = std::uint32_t(step * tokens);  // fresh Gumbel noise every step
    const auto r = router.route(x, {.token_offset = offset});
    std::vector<double> advantage(static_cast<std::size_t>(tokens));
    double baseline = 0;
    for (Index t = 0; t < tokens; ++t) baseline += (advantage[std::size_t(t)] = cost[r.ids(t, 0)] + cost[r.ids(t, 1)]);
    baseline /= double(tokens);
    for (double& a : advantage) a = (a - baseline) / double(tokens);
    BackwardOptions<double> options{.token_offset = offset, .hidden_gradient = false};
    options.advantage = advantage;
    options.regularisers.temperature_penalty = penalty;
    const Matrix<double> dweights = Matrix<double>::Zero(tokens, 2);
    const auto grads = backward(router, x, r, dweights, options);
    adam.update(sel.parameters().flat(), Eigen::Map<const Vector<double>>(grads.selector.data(), grads.selector.size()));
    mean_tau.push_back(r.signals.temperature.mean());
  }
  return mean_tau;
}

}  // namespace

TEST_CASE("VTSR: the temperature moves under gradient descent and stays within its guards") {
  const TemperatureOptions guards;
  auto finite_and_guarded = [&](const std::vector<double>& tau) {
    for (const double t : tau) {
      REQUIRE(std::isfinite(t));
      REQUIRE(t >= guards.floor);
      REQUIRE(t <= guards.ceiling);
    }
  };
  SUBCASE("a cost that rewards the leading experts sharpens the gate: T falls") {
    const auto tau = train_temperature((Vector<double>(4) << 0, 0.2, 1, 1).finished(), 0.0, 150);
    finite_and_guarded(tau);
    CHECK(tau.front() == doctest::Approx(1.0));
    CHECK(tau.back() < 0.6);
  }
  SUBCASE("a cost that rewards the trailing experts flattens the gate: T rises") {
    const auto tau = train_temperature((Vector<double>(4) << 1, 1, 0, 0).finished(), 0.0, 150);
    finite_and_guarded(tau);
    CHECK(tau.back() > 2.0);
  }
  SUBCASE("the -log T regulariser alone raises T, up to the ceiling and no further") {
    const auto tau = train_temperature(Vector<double>::Zero(4), 1.0, 300);
    finite_and_guarded(tau);
    CHECK(tau.back() > 10.0);
  }
}

TEST_CASE("Adam fits a mean-field router to a target distribution over experts") {
  const Index e = 6, d = 8, tokens = 96, steps = 300;
  std::mt19937_64 g(31);
  const Matrix<double> teacher = gradcheck::normal(g, e, d, 2.0 / std::sqrt(double(d)));
  const Matrix<double> x = gradcheck::normal(g, tokens, d, 1.0);
  Matrix<double> target = x * teacher.transpose();
  for (Index t = 0; t < tokens; ++t) {
    target.row(t).array() = (target.row(t).array() - target.row(t).maxCoeff()).exp();
    target.row(t) /= target.row(t).sum();
  }
  const double entropy = -(target.array() * target.array().log()).sum() / double(tokens);
  MeanField<double> post(Matrix<double>::Zero(e, d), Vector<double>::Zero(e), {.hidden = 16, .seed = 4});
  const TopK sel{{.top_k = 2}};
  // Excess cross-entropy E_t[CE(target_t, probs_t)] - H(target), with S_test samples.
  auto excess = [&](const MeanField<double>& p) {
    const auto r = Router(p, train::test_sampler(), sel, rng::Stream{1, 0}).route(x, {.token_offset = 1u << 30, .keep_probs = true});
    return -(target.array() * r.probs.array().log()).sum() / double(tokens) - entropy;
  };
  const double before = excess(post);
  Adam adam{0.03};
  for (Index step = 0; step < steps; ++step) {
    const Router router(post, MonteCarlo{.samples = 4}, sel, rng::Stream{1, 0});
    const std::uint32_t offset = std::uint32_t(step * tokens);
    const auto r = router.route(x, {.token_offset = offset, .keep_probs = true});
    const Matrix<double> dprobs = -(target.array() / r.probs.array()) / double(tokens);
    BackwardOptions<double> options{.token_offset = offset, .hidden_gradient = false};
    options.regularisers.kl_weight = 1e-3;
    const auto grads = backward(router, x, r, Matrix<double>::Zero(tokens, 2), dprobs, options);
    const double task = -(target.array() * r.probs.array().log()).sum() / double(tokens);
    REQUIRE(std::isfinite(train::negative_elbo(task, grads)));
    adam.update(post.parameters().flat(), Eigen::Map<const Vector<double>>(grads.posterior.data(), grads.posterior.size()));
  }
  const double after = excess(post);
  MESSAGE("excess cross-entropy ", before, " -> ", after);
  CHECK(after < before / 100);  // the stated factor
}

TEST_CASE("parameters and gradients round-trip through safetensors with layer and head in their names") {
  const auto dir = std::filesystem::temp_directory_path() / "vmoer_test_training_save";
  std::filesystem::create_directories(dir);
  const auto file = dir / "router.safetensors";
  const auto post = gradcheck::make_posterior<LowRank<double>>(5, 4, 2);
  LearnedTemperature<double> sel({.top_k = 2}, 5, 4, {.hidden = 3, .per_expert = true});
  std::mt19937_64 g(2);
  gradcheck::randomise_temperature(sel, g);
  const Router router(post, MonteCarlo{.samples = 2}, sel);
  const Matrix<double> x = gradcheck::normal(g, 3, 4, 1.0);
  const auto r = router.route(x);
  const auto grads = backward(router, x, r, gradcheck::normal(g, 3, 2, 1.0));

  io::safetensors_writer writer;
  train::add(writer, train::prefix(2, "posterior"), post.parameters());
  train::add(writer, train::prefix(2, "selector"), sel.parameters());
  train::add(writer, train::prefix(2, "posterior"), grads.posterior, ".grad");
  writer.save(file);
  const io::safetensors_reader reader(file);
  CHECK(reader.contains("layers.2.posterior.encoder.scale.weight"));
  CHECK(reader.contains("layers.2.selector.temperature.head.weight"));
  CHECK(reader.contains("layers.2.posterior.router.weight.grad"));

  auto loaded = gradcheck::make_posterior<LowRank<double>>(5, 4, 99);
  train::read(reader, train::prefix(2, "posterior"), loaded.parameters());
  CHECK(loaded.parameters().flat() == post.parameters().flat());
  Parameters<double> g2(grads.posterior.layout());
  train::read(reader, train::prefix(2, "posterior"), g2, ".grad");
  CHECK(g2.flat() == grads.posterior.flat());

  // A missing tensor or a wrong shape fails by name and leaves the buffer untouched.
  const Vector<double> kept = loaded.parameters().flat();
  CHECK_THROWS_AS(train::read(reader, train::prefix(3, "posterior"), loaded.parameters()), io_error);
  auto other = gradcheck::make_posterior<LowRank<double>>(6, 4, 1);
  CHECK_THROWS_WITH_AS(train::read(reader, train::prefix(2, "posterior"), other.parameters()),
                       doctest::Contains("router.weight"), io_error);
  CHECK(loaded.parameters().flat() == kept);
  std::filesystem::remove_all(dir);
}

TEST_CASE("VTSR: the score-function gradient of T is unbiased for the expected cost of sampled selection") {
  // One input u for every token, so every token shares the temperature T = softplus(bt2) + floor;
  // tokens differ only in their Gumbel noise. The exact expected cost over the Plackett-Luce
  // law of the ordered pair, J(bt2), is differentiated by central differences here.
  const Index e = 4, d = 2, tokens = 200, batches = 40;
  Matrix<double> w(e, d);
  w << 1.5, 0, 0.5, 0, 0, 0, -1, 0;
  const Dirac<double> post(w, Vector<double>::Zero(e));
  const Vector<double> cost = (Vector<double>(4) << 0.0, 0.3, 1.0, 0.6).finished();
  LearnedTemperature<double> sel({.top_k = 2, .normalize = Normalize::sum}, e, d, {.hidden = 2, .sample = true});
  const Matrix<double> x = Matrix<double>::Ones(tokens, d);
  const Vector<double> logits = w * x.row(0).transpose();
  auto expected_cost = [&](double bias) {
    const double tau = std::log1p(std::exp(bias)) + sel.options().floor;
    Vector<double> q = (logits / tau).array().exp().matrix();
    q /= q.sum();
    double j = 0;
    for (std::int32_t a = 0; a < e; ++a)
      for (std::int32_t b = 0; b < e; ++b)
        if (a != b) {
          const std::int32_t ids[2] = {a, b};
          j += std::exp(gradcheck::plackett_luce(q.data(), e, ids, 2)) * (cost[a] + cost[b]);
        }
    return j;
  };
  const double bias = sel.parameters()[LearnedTemperature<double>::head_bias](0, 0);
  const double exact = (expected_cost(bias + 1e-5) - expected_cost(bias - 1e-5)) / 2e-5;
  const double baseline = expected_cost(bias);
  const Router router(post, MonteCarlo{.samples = 1}, sel, rng::Stream{12, 0});
  double sum = 0, sum2 = 0;
  for (Index b = 0; b < batches; ++b) {
    const std::uint32_t offset = std::uint32_t(b * tokens);
    const auto r = router.route(x, {.token_offset = offset});
    std::vector<double> advantage(static_cast<std::size_t>(tokens));
    for (Index t = 0; t < tokens; ++t)
      advantage[std::size_t(t)] = (cost[r.ids(t, 0)] + cost[r.ids(t, 1)] - baseline) / double(tokens);
    BackwardOptions<double> options{.token_offset = offset, .hidden_gradient = false};
    options.advantage = advantage;
    const auto g = backward(router, x, r, Matrix<double>::Zero(tokens, 2), options);
    const double estimate = g.selector[LearnedTemperature<double>::head_bias](0, 0);  // batch mean
    sum += estimate;
    sum2 += estimate * estimate;
  }
  const double mean = sum / double(batches);
  const double se = std::sqrt((sum2 / double(batches) - mean * mean) / double(batches - 1));
  MESSAGE("dJ/dbt2: exact ", exact, ", estimate ", mean, " +- ", se);
  CHECK(std::abs(exact) > 5 * se);  // the test has power: the gradient is clearly nonzero
  CHECK(std::abs(mean - exact) < 5 * se);
}
