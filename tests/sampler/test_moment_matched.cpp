// MomentMatched against an independent double implementation of its two expansions
// on the dense covariance, and its accuracy against a large Monte-Carlo average.
#include "router/compositions.hpp"

using namespace vmoer;
using test::Index;

namespace {

constexpr std::size_t D = 24, E = 10, H = 8;

ref::mat covariance(const ref::Router& r, const ref::vec& x, ref::vec& mu) {
  ref::mat a;
  r.posterior(x, mu, a);
  ref::mat s(E, ref::vec(E, 0.0));
  for (std::size_t i = 0; i < E; ++i)
    for (std::size_t j = 0; j < E; ++j)
      for (std::size_t k = 0; k < a[0].size(); ++k) s[i][j] += a[i][k] * a[j][k];
  return s;
}

// E[softmax] to second order: p_i + 1/2 sum_jk d2p_i/dz_j dz_k Sigma_jk, from the Hessian
// d2p_i/dz_j dz_k = p_i (d_ik - p_k)(d_ij - p_j) - p_i p_j (d_jk - p_k), clamped and renormalised.
ref::vec second_order(const ref::vec& mu, const ref::mat& s) {
  const ref::vec p = ref::softmax(mu);
  ref::vec q(E);
  double total = 0;
  for (std::size_t i = 0; i < E; ++i) {
    double c = 0;
    for (std::size_t j = 0; j < E; ++j)
      for (std::size_t k = 0; k < E; ++k)
        c += (p[i] * ((i == k) - p[k]) * ((i == j) - p[j]) - p[i] * p[j] * ((j == k) - p[k])) * s[j][k];
    total += q[i] = std::max(0.0, p[i] + 0.5 * c);
  }
  for (double& v : q) v /= total;
  return q;
}

ref::vec pairwise(const ref::vec& mu, const ref::mat& s) {
  ref::vec q(E);
  double total = 0;
  for (std::size_t i = 0; i < E; ++i) {
    double d = 1;
    for (std::size_t j = 0; j < E; ++j)
      if (j != i) d += std::exp(-(mu[i] - mu[j]) / std::sqrt(1 + M_PI / 8 * (s[i][i] + s[j][j] - 2 * s[i][j])));
    total += q[i] = 1 / d;
  }
  for (double& v : q) v /= total;
  return q;
}

template <class P>
void check_against_formulas(ref::Cov cov) {
  const ref::Router r = test::random_router<double>(cov, E, D, H, cov == ref::Cov::low_rank ? 2 : 0, 80);
  const ref::mat x = test::random_hidden<double>(20, D, 81);
  for (Expansion ex : {Expansion::second_order, Expansion::pairwise_probit})
    for (Score score : {Score::softmax, Score::sigmoid}) {
      CAPTURE(int(ex));
      CAPTURE(int(score));
      const Convention c{.top_k = 2, .score = score};
      const auto out = Router(test::make_posterior<P>(r), MomentMatched{.expansion = ex}, TopK{c})
                           .route(test::to_matrix<double>(x), {.keep_probs = true});
      for (std::size_t t = 0; t < x.size(); ++t) {
        ref::vec mu;
        const ref::mat s = covariance(r, x[t], mu);
        ref::vec want(E);
        if (score == Score::sigmoid)
          for (std::size_t i = 0; i < E; ++i) want[i] = 1 / (1 + std::exp(-mu[i] / std::sqrt(1 + M_PI / 8 * s[i][i])));
        else
          want = ex == Expansion::second_order ? second_order(mu, s) : pairwise(mu, s);
        for (std::size_t i = 0; i < E; ++i) REQUIRE(out.probs(Index(t), Index(i)) == doctest::Approx(want[i]).epsilon(1e-10));
        CHECK(out.signals.mutual_information(Index(t)) == 0.0);
        CHECK(out.signals.mc_variance(Index(t)) == 0.0);
      }
    }
}

}  // namespace

TEST_CASE("MomentMatched follows its formulas for every covariance") {
  check_against_formulas<MeanField<double>>(ref::Cov::diagonal);
  check_against_formulas<FullCovariance<double>>(ref::Cov::cholesky);
  check_against_formulas<LowRank<double>>(ref::Cov::low_rank);
}

TEST_CASE("MomentMatched over a point mass is the plain softmax") {
  const ref::Router r = test::random_router<double>(ref::Cov::none, E, D, 0, 0, 82);
  const Matrix<double> x = test::to_matrix<double>(test::random_hidden<double>(20, D, 83));
  const auto post = test::make_posterior<Dirac<double>>(r);
  for (Expansion ex : {Expansion::second_order, Expansion::pairwise_probit}) {
    const auto mm = Router(post, MomentMatched{.expansion = ex}, TopK{{.top_k = 3}}).route(x, {.keep_probs = true});
    const auto mean = Router(post, MeanOnly{}, TopK{{.top_k = 3}}).route(x, {.keep_probs = true});
    CHECK((mm.probs - mean.probs).cwiseAbs().maxCoeff() < 1e-14);
    CHECK((mm.ids.array() == mean.ids.array()).all());
  }
}

TEST_CASE("the second-order expansion beats the plug-in mean against a large Monte-Carlo average") {
  // Mean-field posteriors with sigma ~ 0.3: the expansion's error is O(sigma^4), the
  // plug-in mean's O(sigma^2); S = 16384 keeps the Monte-Carlo error below both.
  ref::Router r = test::random_router<double>(ref::Cov::diagonal, 16, D, H, 0, 84);
  for (double& b : r.bs) b -= 1.4;  // log-variances around -2.4: sigma ~ 0.3
  const Matrix<double> x = test::to_matrix<double>(test::random_hidden<double>(100, D, 85));
  const auto post = test::make_posterior<MeanField<double>>(r);
  const Convention c{.top_k = 2};
  const auto mc = Router(post, MonteCarlo{.samples = 16384}, TopK{c}, rng::Stream{3, 0}).route(x, {.keep_probs = true});
  const auto mm = Router(post, MomentMatched{}, TopK{c}).route(x, {.keep_probs = true});
  const auto mean = Router(post, MeanOnly{}, TopK{c}).route(x, {.keep_probs = true});
  const double err_mm = (mm.probs - mc.probs).cwiseAbs().mean(), err_mean = (mean.probs - mc.probs).cwiseAbs().mean();
  MESSAGE("mean |error| vs MC: second order ", err_mm, ", plug-in mean ", err_mean);
  CHECK(err_mm < 0.5 * err_mean);
}
