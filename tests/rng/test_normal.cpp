// Box-Muller normals: the documented mapping, and the moments of the stream.
#include <doctest/doctest.h>

#include <cmath>
#include <iterator>
#include <vector>

#include "vmoer/backend/cpu/normals.hpp"
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

TEST_CASE_TEMPLATE("the vectorised Box-Muller is accurate at the ends of u and at every quarter turn of the angle", T,
                   float, double) {
  // The CPU reduces the angle to the nearest quarter turn in integers: words at and
  // beside each boundary exercise every branch of that reduction, and the extremes of
  // x the log's range.
  using B = cpu::batch<T>;
  const std::uint32_t q = 1u << 30, h = 1u << 29;
  std::vector<std::uint32_t> ys, xs;
  for (std::uint32_t k = 0; k < 4; ++k)
    for (std::uint32_t base : {k * q, k * q + h})
      for (std::uint32_t off : {0u, 1u, 0xFFFFFFFFu, 12345u})
        ys.push_back(base + off);  // unsigned wrap: 0 - 1 is the last word
  const std::uint32_t x_words[] = {0u, 1u, 0x7FFFFFFFu, 0x80000000u, 0xFFFFFF00u, 0xFFFFFFFEu, 0xFFFFFFFFu, 0x12345678u};
  for (std::size_t i = 0; i < ys.size(); ++i) xs.push_back(x_words[i % std::size(x_words)]);
  while (ys.size() % B::size) {
    ys.push_back(ys.back() + 7u);
    xs.push_back(xs.back() + 3u);
  }
  // In float, u itself rounds (1 - 2^-33 becomes 1), which the tolerance must allow:
  // |r_float - r| <= sqrt(2 |log u_float - log u|) for the rounding of u near 1.
  const double tol = std::is_same_v<T, float> ? 2e-6 : 1e-13;
  for (std::size_t i = 0; i < ys.size(); i += B::size) {
    B s, c;
    cpu::box_muller<T>(xs.data() + i, ys.data() + i, s, c);
    for (std::size_t j = 0; j < B::size; ++j) {
      const double u = (double(xs[i + j]) + 0.5) / 4294967296.0, v = 2.0 * M_PI * (double(ys[i + j]) + 0.5) / 4294967296.0;
      const double uf = double(T(xs[i + j]) * T(2.3283064365386962890625e-10) + T(1.16415321826934814453125e-10));
      const double r = std::sqrt(-2.0 * std::log(u)), r_rounded = std::sqrt(-2.0 * std::log(uf));
      const double slack = std::abs(r - r_rounded);  // what the uniform's own rounding costs
      INFO("x = " << xs[i + j] << ", y = " << ys[i + j]);
      CHECK(std::abs(double(s.get(j)) - r * std::sin(v)) <= tol * (1 + r) + slack);
      CHECK(std::abs(double(c.get(j)) - r * std::cos(v)) <= tol * (1 + r) + slack);
    }
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
