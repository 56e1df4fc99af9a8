// SWAG: the online moments and the deviation ring against a two-pass computation over
// the stored snapshots, the law of the sampled routers against its closed form, and
// route() against sampled routers applied by hand.
#include "grad/gradcheck.hpp"
#include "vmoer/posterior/swag.hpp"

using namespace vmoer;
using gradcheck::Index;
using gradcheck::Matrix;
using gradcheck::Vector;

TEST_CASE("SWAG moments and deviations match a two-pass computation") {
  const Index e = 3, d = 4, p = e * (d + 1), rank = 4, n = 11;
  std::mt19937_64 g(7);
  std::vector<Vector<double>> thetas;  // [W row-major, b]
  std::optional<Swag<double>> swag;
  for (Index i = 0; i < n; ++i) {
    const Matrix<double> w = gradcheck::normal(g, e, d, 1.0).array() + 3.0;  // an offset, as real weights have
    const Vector<double> b = gradcheck::normal(g, e, 1, 1.0);
    Vector<double> theta(p);
    theta << Eigen::Map<const Vector<double>>(w.data(), e * d), b;
    thetas.push_back(theta);
    if (swag)
      swag->collect(w, b);
    else
      swag.emplace(w, b, SwagOptions{.rank = rank});
  }
  CHECK(swag->count() == n);
  CHECK(swag->columns() == rank);
  const auto& params = swag->parameters();
  auto mean_of = [&](Index count) {
    Vector<double> m = Vector<double>::Zero(p);
    for (Index i = 0; i < count; ++i) m += thetas[std::size_t(i)];
    return Vector<double>(m / double(count));
  };
  const Vector<double> mean = mean_of(n);
  Vector<double> variance = Vector<double>::Zero(p);
  for (const auto& t : thetas) variance += (t - mean).array().square().matrix();
  variance /= double(n);
  for (Index i = 0; i < p; ++i) {
    CAPTURE(i);
    const bool w = i < e * d;
    const double m = w ? params[Swag<double>::router_weight].data()[i] : params[Swag<double>::router_bias].data()[i - e * d];
    const double q = w ? params[Swag<double>::second_weight].data()[i] : params[Swag<double>::second_bias].data()[i - e * d];
    CHECK(m == doctest::Approx(mean[i]).epsilon(1e-12));
    CHECK(q - m * m == doctest::Approx(variance[i]).epsilon(1e-9));
  }
  // Column (i mod r) holds theta_i - mean of the first i + 1 snapshots, for the last r snapshots.
  for (Index i = n - rank; i < n; ++i) {
    const Vector<double> dev = thetas[std::size_t(i)] - mean_of(i + 1);
    const Index k = i % rank;
    for (Index j = 0; j < p; ++j) {
      const double got = j < e * d ? params[Swag<double>::deviation_weight](k, j)
                                   : params[Swag<double>::deviation_bias](k, j - e * d);
      CHECK(got == doctest::Approx(dev[j]).epsilon(1e-12).scale(1.0));
    }
  }
}

TEST_CASE("SWAG samples have the mean and covariance of its Gaussian, within 5 standard errors") {
  const Index e = 2, d = 3, p = e * (d + 1);
  std::mt19937_64 g(3);
  Swag<double> swag(gradcheck::normal(g, e, d, 1.0), gradcheck::normal(g, e, 1, 1.0), {.rank = 3, .scale = 0.5});
  for (int i = 0; i < 5; ++i) swag.collect(gradcheck::normal(g, e, d, 1.0), gradcheck::normal(g, e, 1, 1.0));
  // Closed form: Sigma = scale^2 (diag(v) / 2 + Dev^T Dev / (2 (K - 1))), rows of Dev = deviations.
  const auto& params = swag.parameters();
  Vector<double> mean(p), second(p);
  mean << Eigen::Map<const Vector<double>>(params.data(Swag<double>::router_weight), e * d),
      params[Swag<double>::router_bias].transpose();
  second << Eigen::Map<const Vector<double>>(params.data(Swag<double>::second_weight), e * d),
      params[Swag<double>::second_bias].transpose();
  Matrix<double> dev(3, p);
  dev << params[Swag<double>::deviation_weight], params[Swag<double>::deviation_bias];
  const Matrix<double> sigma = 0.25 * (Matrix<double>((second - mean.cwiseProduct(mean)).asDiagonal()) / 2.0 +
                                       dev.transpose() * dev / (2.0 * 2.0));
  const Index n = 6000;
  Vector<double> sum = Vector<double>::Zero(p);
  Matrix<double> outer = Matrix<double>::Zero(p, p);
  const rng::Stream stream{11, 2};
  for (Index s = 0; s < n; ++s) {
    const Vector<double> t = swag.sample_weights(stream, s) - mean;
    sum += t;
    outer += t * t.transpose();
  }
  const Vector<double> m = sum / double(n);
  const Matrix<double> cov = outer / double(n) - m * m.transpose();
  for (Index i = 0; i < p; ++i) {
    CAPTURE(i);
    CHECK(std::abs(m[i]) < 5 * std::sqrt(sigma(i, i) / double(n)));
    for (Index j = 0; j <= i; ++j) {
      CAPTURE(j);  // SE of a sample covariance: sqrt((Sigma_ii Sigma_jj + Sigma_ij^2) / n)
      const double se = std::sqrt((sigma(i, i) * sigma(j, j) + sigma(i, j) * sigma(i, j)) / double(n));
      CHECK(std::abs(cov(i, j) - sigma(i, j)) < 5 * se);
    }
  }
}

TEST_CASE("a SWAG router averages the gates of its sampled routers") {
  const Index e = 5, d = 4, samples = 7;
  std::mt19937_64 g(9);
  Swag<double> swag(gradcheck::normal(g, e, d, 1.0), gradcheck::normal(g, e, 1, 0.5));
  for (int i = 0; i < 3; ++i) swag.collect(gradcheck::normal(g, e, d, 1.0), gradcheck::normal(g, e, 1, 0.5));
  const rng::Stream stream{5, 1};
  const Router router(swag, MonteCarlo{.samples = samples}, TopK{{.top_k = 2}}, stream);
  const Matrix<double> x = gradcheck::normal(g, 6, d, 1.0);
  const auto r = router.route(x, {.keep_probs = true});
  for (Index t = 0; t < x.rows(); ++t) {
    Vector<double> avg = Vector<double>::Zero(e);
    for (Index s = 0; s < samples; ++s) {
      const Vector<double> theta = swag.sample_weights(stream, s);
      const Eigen::Map<const Matrix<double>> w(theta.data(), e, d);
      const Vector<double> z = w * x.row(t).transpose() + theta.tail(e);
      const Vector<double> q = (z.array() - z.maxCoeff()).exp().matrix();
      avg += q / q.sum();
    }
    avg /= double(samples);
    for (Index i = 0; i < e; ++i) CHECK(r.probs(t, i) == doctest::Approx(avg[i]).epsilon(1e-12));
  }
  // MeanOnly routes the SWA mean.
  const Router mean_router(swag, MeanOnly{}, TopK{{.top_k = 2}}, stream);
  const auto rm = mean_router.route(x, {.keep_logits = true});
  const auto& params = swag.parameters();
  const Matrix<double> want = (x * params[Swag<double>::router_weight].transpose()).rowwise() +
                              params[Swag<double>::router_bias].row(0);
  CHECK((rm.logits - want).cwiseAbs().maxCoeff() < 1e-12);
}

TEST_CASE("Swag rejects bad options and snapshots") {
  const Matrix<double> w = Matrix<double>::Ones(2, 3);
  CHECK_THROWS_AS(Swag<double>(w, {}, {.rank = 0}), vmoer::invalid_argument);
  CHECK_THROWS_AS(Swag<double>(w, {}, {.scale = -1}), vmoer::invalid_argument);
  Swag<double> swag(w);
  CHECK_THROWS_AS(swag.collect(Matrix<double>::Ones(3, 3)), vmoer::invalid_argument);
  Matrix<double> bad = w;
  bad(1, 1) = NAN;
  CHECK_THROWS_AS(swag.collect(bad), vmoer::invalid_argument);
  CHECK(swag.count() == 1);
}
