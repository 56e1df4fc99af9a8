// Routing stability: how much the chosen expert sets move when the router input is
// perturbed. Noise is Gaussian with standard deviation gamma times the mean L2 norm
// of the input rows, drawn from the library's Philox stream (purpose input_noise), so
// a given (seed, gamma) perturbs every batch identically.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "vmoer/error.hpp"
#include "vmoer/rng/normal.hpp"
#include "vmoer/types.hpp"

namespace vmoer::analysis {

/// The noise levels of the papers' stability analysis.
inline const std::vector<double>& default_gammas() {
  static const std::vector<double> g{0.001, 0.002, 0.005, 0.01, 0.02, 0.05};
  return g;
}

/// Mean L2 norm of the rows of x.
template <class Derived>
double mean_row_norm(const Eigen::MatrixBase<Derived>& x) {
  detail::require(x.rows() > 0, "mean_row_norm", "no rows");
  double total = 0;
  for (Index i = 0; i < x.rows(); ++i) total += x.row(i).template cast<double>().norm();
  return total / double(x.rows());
}

/// x + N(0, (gamma * mean_row_norm(x))^2), noise of row i from (seed, input_noise, token = i).
template <class T>
Matrix<T> perturb(const Matrix<T>& x, double gamma, std::uint64_t seed) {
  detail::require(std::isfinite(gamma) && gamma >= 0, "perturb", "gamma = ", gamma, " must be finite and >= 0");
  const double sd = gamma * mean_row_norm(x);
  Matrix<T> out = x;
  std::vector<double> eps(std::size_t(x.cols()));
  const rng::Stream stream{seed, 0};
  for (Index i = 0; i < x.rows(); ++i) {
    rng::normals(stream, rng::Purpose::input_noise, std::uint32_t(i), 0, eps.data(), x.cols());
    for (Index j = 0; j < x.cols(); ++j) out(i, j) = T(double(x(i, j)) + sd * eps[std::size_t(j)]);
  }
  return out;
}

/// Jaccard similarity |A n B| / |A u B| of two rows of expert ids (each without repeats).
inline double jaccard(const std::int32_t* a, const std::int32_t* b, Index k) {
  Index common = 0;
  for (Index i = 0; i < k; ++i) common += std::count(b, b + k, a[i]) > 0;
  return double(common) / double(2 * k - common);
}

/// Per-token Jaccard similarity of two routings of the same tokens.
inline Vector<double> jaccard(const IdMatrix& a, const IdMatrix& b) {
  detail::require(a.rows() == b.rows() && a.cols() == b.cols(), "jaccard", "id matrices of shapes [", a.rows(), ", ",
                  a.cols(), "] and [", b.rows(), ", ", b.cols(), "] differ");
  Vector<double> j(a.rows());
  for (Index t = 0; t < a.rows(); ++t) j(t) = jaccard(a.data() + t * a.cols(), b.data() + t * b.cols(), a.cols());
  return j;
}

/// Mean Jaccard similarity between the routing of x and of x perturbed at level gamma.
template <class Router, class T>
double stability(const Router& router, const Matrix<T>& x, double gamma, std::uint64_t seed) {
  const auto clean = router.route(x);
  const auto noisy = router.route(perturb(x, gamma, seed));
  return jaccard(clean.ids, noisy.ids).mean();
}

/// Mean Jaccard similarity at each noise level of `gammas`, against one clean routing.
template <class Router, class T>
std::vector<double> stability_curve(const Router& router, const Matrix<T>& x,
                                    const std::vector<double>& gammas = default_gammas(), std::uint64_t seed = 0) {
  const auto clean = router.route(x);
  std::vector<double> curve;
  curve.reserve(gammas.size());
  for (double gamma : gammas) curve.push_back(jaccard(clean.ids, router.route(perturb(x, gamma, seed)).ids).mean());
  return curve;
}

/// Indices of the `count` layers with the lowest mean Jaccard similarity (the
/// "susceptible" layers), most susceptible first; ties to the lower layer.
inline std::vector<Index> most_susceptible(const std::vector<double>& mean_jaccard, Index count) {
  detail::require(count >= 0 && count <= Index(mean_jaccard.size()), "most_susceptible", "count = ", count,
                  " must be in [0, ", mean_jaccard.size(), "]");
  std::vector<Index> order(mean_jaccard.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = Index(i);
  std::stable_sort(order.begin(), order.end(),
                   [&](Index a, Index b) { return mean_jaccard[std::size_t(a)] < mean_jaccard[std::size_t(b)]; });
  order.resize(std::size_t(count));
  return order;
}

/// Layers whose mean Jaccard similarity is below `threshold`, in layer order.
inline std::vector<Index> susceptible_below(const std::vector<double>& mean_jaccard, double threshold) {
  std::vector<Index> out;
  for (std::size_t i = 0; i < mean_jaccard.size(); ++i)
    if (mean_jaccard[i] < threshold) out.push_back(Index(i));
  return out;
}

}  // namespace vmoer::analysis
