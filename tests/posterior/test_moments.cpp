// Samples z = mu + L eps drawn by the CPU backend's own path (vectorised normals and
// the covariance policy) have the mean and covariance the head encodes: within 5
// standard errors of the analytic moments, for fixed seeds.
#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "reference/reference.hpp"
#include "vmoer/backend/cpu/normals.hpp"
#include "vmoer/backend/cpu/vector_math.hpp"
#include "vmoer/posterior/cholesky.hpp"
#include "vmoer/posterior/diagonal.hpp"
#include "vmoer/posterior/low_rank.hpp"

using namespace vmoer;

namespace {

template <class Cov>
void check_moments(ref::Cov kind, Index e, Index r) {
  std::mt19937_64 g(42);
  std::normal_distribution<double> n(0, 0.4);
  const Index head = Cov::head_size(e, r), noise = Cov::noise_size(e, r);
  std::vector<double> s(static_cast<std::size_t>(head)), mu(static_cast<std::size_t>(e));
  for (double& v : s) v = n(g);
  for (double& v : mu) v = n(g);
  // The finalised head: log-variances -> standard deviations, as the backend does.
  std::vector<float> scale(s.begin(), s.end());
  cpu::exp_half(scale.data(), e);
  const ref::mat a = ref::factor(kind, s, std::size_t(e), std::size_t(r));
  ref::mat sigma(std::size_t(e), ref::vec(std::size_t(e), 0.0));
  for (Index i = 0; i < e; ++i)
    for (Index j = 0; j < e; ++j)
      for (std::size_t k = 0; k < a[0].size(); ++k) sigma[std::size_t(i)][std::size_t(j)] += a[std::size_t(i)][k] * a[std::size_t(j)][k];

  const Index samples = 40000, padded = cpu::padded<float>((noise + 1) / 2) * 2;
  std::vector<float, xsimd::aligned_allocator<float>> eps(static_cast<std::size_t>(padded));
  std::vector<std::uint32_t> wx(static_cast<std::size_t>(padded / 2)), wy(static_cast<std::size_t>(padded / 2));
  std::vector<double> sum(std::size_t(e), 0.0);
  ref::mat cross(std::size_t(e), ref::vec(std::size_t(e), 0.0));
  const rng::Stream stream{5, 1};
  for (Index t = 0; t < samples; ++t) {
    std::vector<float> z(mu.begin(), mu.end());
    cpu::normals(stream, rng::Purpose::logit_noise, std::uint32_t(t), 0, eps.data(), padded, wx.data(), wy.data());
    Cov::add_noise(scale.data(), eps.data(), z.data(), e, r);
    for (Index i = 0; i < e; ++i) {
      sum[std::size_t(i)] += z[std::size_t(i)];
      for (Index j = 0; j < e; ++j) cross[std::size_t(i)][std::size_t(j)] += (z[std::size_t(i)] - mu[std::size_t(i)]) * (z[std::size_t(j)] - mu[std::size_t(j)]);
    }
  }
  const double N = double(samples);
  for (Index i = 0; i < e; ++i) {
    const double sii = sigma[std::size_t(i)][std::size_t(i)];
    CHECK(std::abs(sum[std::size_t(i)] / N - mu[std::size_t(i)]) < 5 * std::sqrt(sii / N));
    for (Index j = 0; j < e; ++j) {
      const double sij = sigma[std::size_t(i)][std::size_t(j)], sjj = sigma[std::size_t(j)][std::size_t(j)];
      // Var of the product of two centred jointly Gaussian variables: s_ii s_jj + s_ij^2.
      const double se = std::sqrt((sii * sjj + sij * sij) / N);
      CHECK(std::abs(cross[std::size_t(i)][std::size_t(j)] / N - sij) < 5 * se);
    }
  }
}

}  // namespace

TEST_CASE("mean-field samples have mean mu and covariance diag(sigma^2)") { check_moments<Diagonal>(ref::Cov::diagonal, 6, 0); }
TEST_CASE("full-covariance samples have mean mu and covariance L L^T") { check_moments<Cholesky>(ref::Cov::cholesky, 6, 0); }
TEST_CASE("low-rank samples have mean mu and covariance D + V V^T") { check_moments<LowRankDiagonal>(ref::Cov::low_rank, 7, 3); }
