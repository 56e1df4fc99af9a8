// Box-Muller normals: the documented mapping, and the moments of the stream.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "vmoer/backend/cpu/vector_math.hpp"
#include "vmoer/rng/normal.hpp"

using namespace vmoer;

TEST_CASE("normals follow the documented Box-Muller mapping, in double") {
  const rng::Stream s{99, 2};
  std::vector<double> n(10);
  rng::normals(s, rng::Purpose::logit_noise, 4, 1, n.data(), 10);
  for (int b = 0; b < 3; ++b) {
    const rng::u32x4 w = s.block(rng::Purpose::logit_noise, 4, 1, std::uint32_t(b));
    for (int pair = 0; pair < 2 && 4 * b + 2 * pair < 10; ++pair) {
      // Independent spelling of the mapping: u = (x + 1/2) 2^-32, v = 2 pi (y + 1/2) 2^-32.
      const double u = (double(w[2 * pair]) + 0.5) / 4294967296.0;
      const double v = 2.0 * M_PI * (double(w[2 * pair + 1]) + 0.5) / 4294967296.0;
      const double r = std::sqrt(-2.0 * std::log(u));
      CHECK(n[std::size_t(4 * b + 2 * pair)] == doctest::Approx(r * std::sin(v)).epsilon(1e-13));
      CHECK(n[std::size_t(4 * b + 2 * pair + 1)] == doctest::Approx(r * std::cos(v)).epsilon(1e-13));
    }
  }
}

TEST_CASE("the vectorised CPU normals equal the scalar ones up to float rounding") {
  const rng::Stream s{2024, 1};
  for (Index n : {32, 64, 256, 1024}) {
    std::vector<float, xsimd::aligned_allocator<float>> fast(static_cast<std::size_t>(n));
    std::vector<std::uint32_t> x(std::size_t(n / 2)), y(std::size_t(n / 2));
    std::vector<double> ref(static_cast<std::size_t>(n));
    cpu::normals<float>(s, rng::Purpose::logit_noise, 17, 3, fast.data(), n, x.data(), y.data());
    rng::normals<double>(s, rng::Purpose::logit_noise, 17, 3, ref.data(), n);
    for (Index i = 0; i < n; ++i) REQUIRE(double(fast[std::size_t(i)]) == doctest::Approx(ref[std::size_t(i)]).epsilon(2e-6).scale(1.0));
  }
}

TEST_CASE("normals have mean 0, variance 1, no lag-1 correlation and no sin/cos correlation, within 5 standard errors") {
  const rng::Stream s{7, 0};
  const Index tokens = 2000, per = 256;  // N = 512000 normals
  double sum = 0, sum2 = 0, sum4 = 0, lag = 0, pair = 0;
  std::vector<double> n(per);
  double prev = 0;
  for (Index t = 0; t < tokens; ++t) {
    rng::normals(s, rng::Purpose::logit_noise, std::uint32_t(t), 0, n.data(), per);
    for (Index i = 0; i < per; ++i) {
      sum += n[std::size_t(i)];
      sum2 += n[std::size_t(i)] * n[std::size_t(i)];
      sum4 += std::pow(n[std::size_t(i)], 4);
      lag += prev * n[std::size_t(i)];
      prev = n[std::size_t(i)];
      if (i % 2 == 1) pair += n[std::size_t(i - 1)] * n[std::size_t(i)];
    }
  }
  const double N = double(tokens * per);
  const double se_mean = 1.0 / std::sqrt(N);              // sd 1
  const double se_var = std::sqrt(2.0 / N);               // Var(z^2) = 2
  const double se_prod = 1.0 / std::sqrt(N);              // Var(z1 z2) = 1
  CHECK(std::abs(sum / N) < 5 * se_mean);
  CHECK(std::abs(sum2 / N - 1.0) < 5 * se_var);
  CHECK(std::abs(sum4 / N - 3.0) < 5 * std::sqrt(96.0 / N));  // Var(z^4) = 105 - 9 = 96
  CHECK(std::abs(lag / N) < 5 * se_prod);
  CHECK(std::abs(pair / (N / 2)) < 5 * std::sqrt(2.0 / N));
}
