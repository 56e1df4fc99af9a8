// Stability analysis: Jaccard similarity, input perturbation, curves over gamma and
// the choice of susceptible layers.
#include <doctest/doctest.h>

#include <cmath>

#include "vmoer/analysis/stability.hpp"
#include "vmoer/vmoer.hpp"

using namespace vmoer;
using namespace vmoer::analysis;

TEST_CASE("Jaccard similarity of expert sets") {
  const std::int32_t a[] = {1, 2}, b[] = {2, 3}, c[] = {2, 1}, d[] = {4, 5};
  CHECK(jaccard(a, b, 2) == doctest::Approx(1.0 / 3));
  CHECK(jaccard(a, c, 2) == 1.0);  // order does not matter
  CHECK(jaccard(a, d, 2) == 0.0);
  IdMatrix x(2, 2), y(2, 2);
  x << 1, 2, 4, 5;
  y << 2, 3, 5, 4;
  CHECK(jaccard(x, y)(0) == doctest::Approx(1.0 / 3));
  CHECK(jaccard(x, y)(1) == 1.0);
  CHECK_THROWS_AS(jaccard(x, IdMatrix(1, 2)), vmoer::invalid_argument);
}

TEST_CASE("perturb adds noise of standard deviation gamma times the mean row norm") {
  Matrix<double> x = Matrix<double>::Constant(400, 50, 0.0);
  x.col(0).setConstant(3.0);  // every row has norm 3
  CHECK(mean_row_norm(x) == doctest::Approx(3.0));
  CHECK(perturb(x, 0.0, 1) == x);
  const Matrix<double> noise = perturb(x, 0.1, 1) - x;
  const double sd = std::sqrt(noise.squaredNorm() / double(noise.size()));
  CHECK(sd == doctest::Approx(0.3).epsilon(0.02));
  CHECK(perturb(x, 0.1, 1) == perturb(x, 0.1, 1));  // same seed, same noise
  CHECK(perturb(x, 0.1, 2) != perturb(x, 0.1, 1));
  CHECK_THROWS_AS(perturb(x, -1.0, 1), vmoer::invalid_argument);
}

TEST_CASE("stability curve: one per gamma, 1 without noise, lower with more") {
  const Index D = 16, E = 8, T = 300;
  std::srand(1);
  const Matrix<float> w = Matrix<float>::Random(E, D);
  const Matrix<float> x = Matrix<float>::Random(T, D);
  const Router r(Dirac<float>(w), MeanOnly{}, TopK{{.top_k = 2}});
  const std::vector<double> gammas{0.0, 0.01, 0.1, 1.0};
  const auto curve = stability_curve(r, x, gammas, 4);
  REQUIRE(curve.size() == 4);
  CHECK(curve[0] == 1.0);
  for (std::size_t i = 0; i < gammas.size(); ++i) CHECK(curve[i] == stability(r, x, gammas[i], 4));
  CHECK(curve[1] > curve[3]);
  CHECK(curve[3] < 0.7);
  CHECK(stability_curve(r, x).size() == default_gammas().size());
}

TEST_CASE("susceptible layers: lowest similarity first, or below a threshold") {
  const std::vector<double> j{0.9, 0.6, 0.95, 0.6, 0.7};
  CHECK(most_susceptible(j, 2) == std::vector<Index>{1, 3});
  CHECK(most_susceptible(j, 0).empty());
  CHECK(susceptible_below(j, 0.8) == std::vector<Index>{1, 3, 4});
  CHECK_THROWS_AS(most_susceptible(j, 6), vmoer::invalid_argument);
}
