// Helpers shared by the router tests: random routers described as reference data,
// converted into library posteriors, and the comparison of a library Routing with
// the reference token by token.
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <string>

#include "reference/reference.hpp"
#include "vmoer/vmoer.hpp"

namespace test {

using vmoer::Index;

/// Gaussian(0, sd) matrix of the given shape from a seeded engine.
inline ref::mat random_mat(std::mt19937_64& g, std::size_t rows, std::size_t cols, double sd) {
  std::normal_distribution<double> n(0, sd);
  ref::mat m(rows, ref::vec(cols));
  for (auto& r : m)
    for (double& x : r) x = n(g);
  return m;
}
inline ref::vec random_vec(std::mt19937_64& g, std::size_t n, double sd) { return random_mat(g, 1, n, sd)[0]; }

/// Scale-head width of a covariance policy.
inline std::size_t head_size(ref::Cov c, std::size_t e, std::size_t r) {
  switch (c) {
    case ref::Cov::none: return 0;
    case ref::Cov::diagonal: return e;
    case ref::Cov::cholesky: return e * (e + 1) / 2;
    case ref::Cov::low_rank: return e * (1 + r);
  }
  return 0;
}

/// A random router whose logits are O(1) and whose posterior scales are O(0.1-1).
/// Weights are rounded to T so library and reference see the same numbers.
template <class T>
ref::Router random_router(ref::Cov cov, std::size_t e, std::size_t d, std::size_t h, std::size_t rank,
                          std::uint64_t seed) {
  std::mt19937_64 g(seed);
  auto round = [](ref::mat m) {
    for (auto& r : m)
      for (double& x : r) x = double(T(x));
    return m;
  };
  ref::Router r;
  r.w = round(random_mat(g, e, d, 1.0 / std::sqrt(double(d))));
  r.b = round({random_vec(g, e, 0.3)})[0];
  r.cov = cov;
  r.rank = rank;
  if (cov != ref::Cov::none) {
    const std::size_t p = head_size(cov, e, rank);
    r.w1 = round(random_mat(g, h, d, 1.0 / std::sqrt(double(d))));
    r.b1 = round({random_vec(g, h, 0.1)})[0];
    r.wm = round(random_mat(g, e, h, 0.3 / std::sqrt(double(h))));
    r.bm = round({random_vec(g, e, 0.1)})[0];
    r.ws = round(random_mat(g, p, h, 0.3 / std::sqrt(double(h))));
    r.bs = round({random_vec(g, p, 0.2)})[0];
    for (std::size_t i = 0; i < e; ++i) r.bs[i] -= 1.0;  // log-variances around -1
  }
  return r;
}

template <class T>
vmoer::Matrix<T> to_matrix(const ref::mat& m) {
  vmoer::Matrix<T> out(Index(m.size()), Index(m[0].size()));
  for (std::size_t i = 0; i < m.size(); ++i)
    for (std::size_t j = 0; j < m[0].size(); ++j) out(Index(i), Index(j)) = T(m[i][j]);
  return out;
}
template <class T>
vmoer::Vector<T> to_vector(const ref::vec& v) {
  vmoer::Vector<T> out(Index(v.size()));
  for (std::size_t i = 0; i < v.size(); ++i) out(Index(i)) = T(v[i]);
  return out;
}

/// The library posterior P holding the reference router's parameters.
template <class P>
P make_posterior(const ref::Router& r) {
  using T = typename P::scalar;
  if constexpr (!P::stochastic) {
    return P(to_matrix<T>(r.w), to_vector<T>(r.b));
  } else {
    P post(to_matrix<T>(r.w), to_vector<T>(r.b), {.hidden = Index(r.w1.size()), .rank = Index(r.rank)});
    auto& params = post.parameters();
    params["encoder.trunk.weight"] = to_matrix<T>(r.w1);
    params["encoder.trunk.bias"] = to_vector<T>(r.b1).transpose();
    params["encoder.mean.weight"] = to_matrix<T>(r.wm);
    params["encoder.mean.bias"] = to_vector<T>(r.bm).transpose();
    params["encoder.scale.weight"] = to_matrix<T>(r.ws);
    params["encoder.scale.bias"] = to_vector<T>(r.bs).transpose();
    return post;
  }
}

/// Hidden states as reference rows, rounded to In.
template <class In>
ref::mat random_hidden(std::size_t t, std::size_t d, std::uint64_t seed) {
  std::mt19937_64 g(seed);
  ref::mat x = random_mat(g, t, d, 1.0);
  for (auto& r : x)
    for (double& v : r) v = double(In(float(v)));
  return x;
}

/// Tolerances of one comparison.
struct Tolerance {
  double rel;     ///< relative error of weights, probabilities and signals
  double margin;  ///< ids are compared only where the reference's K-th key leads the next by more
};

template <class T>
Tolerance tolerance() {
  return std::is_same_v<T, double> ? Tolerance{1e-9, 1e-9} : Tolerance{2e-4, 1e-4};
}

inline bool close(double a, double b, double rel) { return std::abs(a - b) <= rel * std::max(1.0, std::abs(b)); }

/// Checks every token of `out` against the reference; returns how many tokens had ids compared.
template <class T>
int compare(const vmoer::Routing<T>& out, const ref::Router& r, const ref::mat& x, std::uint32_t offset,
            Tolerance tol) {
  int compared = 0;
  for (std::size_t t = 0; t < x.size(); ++t) {
    const ref::Result want = r.route(x[t], offset + std::uint32_t(t));
    INFO("token ", t);
    if (want.margin > tol.margin) {
      ++compared;
      for (std::size_t k = 0; k < want.ids.size(); ++k) {
        REQUIRE(out.ids(Index(t), Index(k)) == want.ids[k]);
        REQUIRE(close(double(out.weights(Index(t), Index(k))), want.weights[k], tol.rel));
      }
    }
    CHECK(close(double(out.signals.entropy(Index(t))), want.entropy, tol.rel));
    CHECK(std::abs(double(out.signals.mutual_information(Index(t))) - want.mutual_information) <= tol.rel);
    CHECK(std::abs(double(out.signals.mc_variance(Index(t))) - want.mc_variance) <= tol.rel);
    CHECK(close(double(out.signals.logit_variance(Index(t))), want.logit_variance, tol.rel));
    CHECK(close(double(out.signals.temperature(Index(t))), want.temperature, tol.rel));
    if (out.probs.size())
      for (std::size_t e = 0; e < want.probs.size(); ++e)
        CHECK(close(double(out.probs(Index(t), Index(e))), want.probs[e], tol.rel));
  }
  return compared;
}

}  // namespace test
