// The closed-form KL(q(l | u) || N(l_det(u), s^2 I)) of the Gaussian posteriors against
// (1) the Gaussian KL evaluated on the dense covariance, built here by plain loops from
// the parameters, and (2) a Monte-Carlo estimate E_q[log q(l) - log p(l)], within five
// standard errors.
#include <Eigen/Cholesky>

#include "grad/gradcheck.hpp"

using namespace vmoer;
using gradcheck::Index;
using gradcheck::Matrix;
using gradcheck::Vector;
using Dense = Eigen::MatrixXd;

namespace {

/// Residual mean m = mu - l_det and dense covariance of one token, from the parameters.
template <class P>
std::pair<Vector<double>, Dense> moments(const P& post, const Vector<double>& u) {
  const auto& p = post.parameters();
  const Index e = post.experts(), r = post.rank();
  const Vector<double> h = (p[P::trunk_weight] * u + p[P::trunk_bias].transpose()).cwiseMax(0.0);
  const Vector<double> m = p[P::mean_weight] * h + p[P::mean_bias].transpose();
  const Vector<double> s = p[P::scale_weight] * h + p[P::scale_bias].transpose();
  Dense sigma = Dense::Zero(e, e);
  using Cov = typename P::covariance;
  if constexpr (std::is_same_v<Cov, Diagonal>) {
    for (Index i = 0; i < e; ++i) sigma(i, i) = std::exp(s[i]);
  } else if constexpr (std::is_same_v<Cov, Cholesky>) {
    Dense l = Dense::Zero(e, e);
    Index next = e;
    for (Index j = 0; j < e; ++j) {
      l(j, j) = std::exp(s[j] / 2);
      for (Index i = j + 1; i < e; ++i) l(i, j) = s[next++];
    }
    sigma = l * l.transpose();
  } else {
    Dense v(e, r);
    for (Index k = 0; k < r; ++k)
      for (Index i = 0; i < e; ++i) v(i, k) = s[e * (1 + k) + i];
    sigma = v * v.transpose();
    for (Index i = 0; i < e; ++i) sigma(i, i) += std::exp(s[i]);
  }
  return {m, sigma};
}

template <class P>
void check_kl(std::uint64_t seed) {
  const Index e = 7, d = 6, tokens = 4;
  const P post = gradcheck::make_posterior<P>(e, d, seed, 5, 3);
  const Router router(post, MonteCarlo{}, TopK{{.top_k = 2}});
  std::mt19937_64 g(seed);
  const Matrix<double> x = gradcheck::normal(g, tokens, d, 1.0);
  const double prior_sigma = 0.7, v = prior_sigma * prior_sigma;
  const Vector<double> kl = kl_divergence(router, x, prior_sigma);
  // From route()'s kept projection: the same bits (the same kernel computed it).
  const Vector<double> from_routing = kl_divergence(router, x, router.route(x, {.keep_projection = true}), prior_sigma);
  CHECK((from_routing.array() == kl.array()).all());
  CHECK((kl_divergence(router, x, router.route(x), prior_sigma).array() == kl.array()).all());  // nothing kept
  for (Index t = 0; t < tokens; ++t) {
    CAPTURE(t);
    const auto [m, sigma] = moments(post, x.row(t).transpose());
    const Eigen::LLT<Dense> llt(sigma);
    const double log_det = 2 * llt.matrixL().toDenseMatrix().diagonal().array().log().sum();
    const double dense = 0.5 * (sigma.trace() / v + m.squaredNorm() / v - double(e) + double(e) * std::log(v) - log_det);
    CHECK(kl[t] == doctest::Approx(dense).epsilon(1e-10));

    // Monte Carlo: l - l_det = m + C n with C C^T = Sigma; log q - log p at each draw.
    const Dense c = llt.matrixL();
    std::normal_distribution<double> normal;
    const int n = 20000;
    double sum = 0, sum2 = 0;
    for (int i = 0; i < n; ++i) {
      Vector<double> noise(e);
      for (Index j = 0; j < e; ++j) noise[j] = normal(g);
      const Vector<double> y = m + c * noise;  // residual draw
      const double log_q = -0.5 * noise.squaredNorm() - 0.5 * log_det;
      const double log_p = -0.5 * y.squaredNorm() / v - 0.5 * double(e) * std::log(v);
      const double f = log_q - log_p;
      sum += f;
      sum2 += f * f;
    }
    const double mean = sum / n, se = std::sqrt((sum2 / n - mean * mean) / (n - 1));
    CHECK(std::abs(mean - kl[t]) < 5 * se);
  }
}

}  // namespace

TEST_CASE_TEMPLATE("KL to the prior N(l_det, s^2 I): closed form = dense formula = Monte Carlo", P, MeanField<double>,
                   FullCovariance<double>, LowRank<double>) {
  for (const std::uint64_t seed : {3u, 8u}) {
    CAPTURE(seed);
    check_kl<P>(seed);
  }
}

TEST_CASE("kl_divergence rejects a bad prior, a wrong input width, a wrong kept projection and a negative tile") {
  const auto post = gradcheck::make_posterior<MeanField<double>>(4, 3, 1);
  const Router router(post, MonteCarlo{}, TopK{{.top_k = 2}});
  CHECK_THROWS_AS(kl_divergence(router, Matrix<double>::Zero(2, 3), 0.0), vmoer::invalid_argument);
  CHECK_THROWS_AS(kl_divergence(router, Matrix<double>::Zero(2, 4)), vmoer::invalid_argument);
  auto kept = router.route(Matrix<double>::Zero(2, 3), {.keep_projection = true});
  auto nan = kept;
  nan.projection(1, 2) = NAN;
  CHECK_THROWS_WITH_AS(kl_divergence(router, Matrix<double>::Zero(2, 3), nan),
                       doctest::Contains("routing.projection has a non-finite entry at flat index 10"),
                       vmoer::invalid_argument);
  kept.projection.conservativeResize(2, 5);
  CHECK_THROWS_WITH_AS(kl_divergence(router, Matrix<double>::Zero(2, 3), kept),
                       doctest::Contains("routing.projection is [2, 5], expected empty or [T, projection_width()] = [2, 8]"),
                       vmoer::invalid_argument);
  const Router bad_tile(post, MonteCarlo{}, TopK{{.top_k = 2}}, rng::Stream{}, Cpu{.tile = -1});
  CHECK_THROWS_WITH_AS(kl_divergence(bad_tile, Matrix<double>::Zero(2, 3)), doctest::Contains("tile = -1 must be >= 0"),
                       vmoer::invalid_argument);
}
