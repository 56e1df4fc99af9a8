// Helpers of the gradient tests: random routers in double, the scalar loss whose
// gradient vmoer::backward returns (recomputed from route() and independent double
// loops), and central finite differences of it.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "vmoer/grad/backward.hpp"
#include "vmoer/vmoer.hpp"

namespace gradcheck {

using vmoer::Index;
using vmoer::Matrix;
using vmoer::Vector;

/// N(0, sd) matrix from a seeded engine.
inline Matrix<double> normal(std::mt19937_64& g, Index rows, Index cols, double sd) {
  std::normal_distribution<double> n(0, sd);
  Matrix<double> m(rows, cols);
  for (Index i = 0; i < m.size(); ++i) m.data()[i] = n(g);
  return m;
}

/// Fills every parameter of a Gaussian posterior with O(1) logits and O(0.3-1) scales.
template <class P>
void randomise(P& post, std::mt19937_64& g) {
  auto& p = post.parameters();
  const Index e = post.experts(), h = post.hidden(), d = post.dim(), head = post.head_size();
  p[P::trunk_weight] = normal(g, h, d, 1.0 / std::sqrt(double(d)));
  p[P::trunk_bias] = normal(g, 1, h, 0.3);
  p[P::mean_weight] = normal(g, e, h, 0.5 / std::sqrt(double(h)));
  p[P::mean_bias] = normal(g, 1, e, 0.3);
  p[P::scale_weight] = normal(g, head, h, 0.3 / std::sqrt(double(h)));
  p[P::scale_bias] = normal(g, 1, head, 0.3);
  for (Index i = 0; i < e; ++i) p[P::scale_bias](0, i) -= 1.0;  // log-variances around -1
}

/// A posterior of type P with E experts on D inputs, random parameters from `seed`.
template <class P>
P make_posterior(Index e, Index d, std::uint64_t seed, Index hidden = 4, Index rank = 2) {
  std::mt19937_64 g(seed);
  const Matrix<double> w = normal(g, e, d, 1.0 / std::sqrt(double(d)));
  const Vector<double> b = normal(g, e, 1, 0.3);
  if constexpr (requires { P::trunk_weight; }) {
    P post(w, b, {.hidden = hidden, .rank = rank});
    randomise(post, g);
    return post;
  } else if constexpr (requires(P p) { p.collect(w, b); }) {
    P post(w, b, {.rank = 3});  // SWAG: five snapshots, so that the ring of three wraps
    for (int i = 0; i < 4; ++i) post.collect(w + normal(g, e, d, 1.0), b + normal(g, e, 1, 1.0));
    return post;
  } else if constexpr (requires(P p) { p.rate(); }) {
    return P(w, b, 0.4);  // MC dropout: a high rate, so that the masks matter at D = 5
  } else {
    return P(w, b);
  }
}

/// Randomises a learned temperature so that T(u) varies around 1 between tokens.
template <class S>
void randomise_temperature(S& sel, std::mt19937_64& g) {
  auto& p = sel.parameters();
  const Index h = sel.hidden(), d = sel.dim(), w = sel.width();
  p[S::trunk_weight] = normal(g, h, d, 1.0 / std::sqrt(double(d)));
  p[S::trunk_bias] = normal(g, 1, h, 0.3);
  p[S::head_weight] = normal(g, w, h, 0.5 / std::sqrt(double(h)));
  p[S::head_bias] = normal(g, 1, w, 0.3).array() + 0.5;
}

/// T(u) of every token and expert [T, G], by plain loops (independent of the backend).
template <class S>
Matrix<double> temperatures(const S& sel, const Matrix<double>& x) {
  const auto& p = sel.parameters();
  const Index h = sel.hidden(), w = sel.width();
  Matrix<double> out(x.rows(), w);
  for (Index t = 0; t < x.rows(); ++t) {
    Vector<double> a = p[S::trunk_weight] * x.row(t).transpose() + p[S::trunk_bias].transpose();
    a = a.cwiseMax(0.0);
    for (Index g = 0; g < w; ++g) {
      double pre = p[S::head_bias](0, g);
      for (Index j = 0; j < h; ++j) pre += p[S::head_weight](g, j) * a[j];
      out(t, g) = std::min(std::log1p(std::exp(pre)) + sel.options().floor, sel.options().ceiling);
    }
  }
  return out;
}

/// log P(ids in this order) under Plackett-Luce sampling from q / sum(q), by plain loops.
inline double plackett_luce(const double* q, Index n, const std::int32_t* ids, Index k) {
  double total = 0, lp = 0;
  for (Index e = 0; e < n; ++e) total += q[e];
  for (Index i = 0; i < k; ++i) {
    lp += std::log(q[ids[i]] / total);
    total -= q[ids[i]];
  }
  return lp;
}

/// The upstream gradients and regularisers of one check.
struct Upstream {
  Matrix<double> dweights;             ///< [T, K]
  Matrix<double> dprobs;               ///< [T, E] or empty
  std::vector<double> advantage;       ///< [T] or empty
  std::vector<std::uint8_t> valid;     ///< [T] or empty
  vmoer::Regularisers regularisers{};  ///< KL and -log T weights
};

/// beta * reduce KL + gamma * reduce(-mean_g log T_g) over the valid tokens.
template <class Router>
double regularisers(const Router& router, const Matrix<double>& x, const Upstream& up) {
  double l = 0;
  const Index tokens = x.rows();
  std::vector<double> w(std::size_t(tokens), 1.0);
  double count = double(tokens);
  if (!up.valid.empty()) {
    count = 0;
    for (Index t = 0; t < tokens; ++t) count += w[std::size_t(t)] = up.valid[std::size_t(t)] ? 1.0 : 0.0;
  }
  if (up.regularisers.reduction == vmoer::Reduction::mean)
    for (double& v : w) v /= count;
  const auto& reg = up.regularisers;
  if constexpr (vmoer::grad::has_kl<typename Router::posterior_type>) {
    if (reg.kl_weight > 0) {
      const Vector<double> kl = vmoer::kl_divergence(router, x, reg.prior_sigma);
      for (Index t = 0; t < tokens; ++t) l += reg.kl_weight * w[std::size_t(t)] * kl[t];
    }
  }
  if constexpr (Router::selector_type::learned_tau) {
    const Matrix<double> tau = temperatures(router.selector(), x);
    for (Index t = 0; t < tokens; ++t)
      l -= reg.temperature_penalty * w[std::size_t(t)] * tau.row(t).array().log().mean();
  }
  return l;
}

/// L = sum dweights * weights + sum dprobs * probs + sum_t A_t log P(ids_t)
///     + beta * reduce KL + gamma * reduce(-mean_g log T_g), with the ids of the first
/// forward held fixed (`ids`; set on the first call).
template <class Router>
double loss(const Router& router, const Matrix<double>& x, const Upstream& up, vmoer::IdMatrix& ids) {
  const auto r = router.route(x, {.keep_probs = true});
  if (ids.size() == 0) ids = r.ids;
  if (!(r.ids.array() == ids.array()).all()) FAIL("a finite-difference step changed the selection");
  double l = (up.dweights.array() * r.weights.array()).sum();
  if (up.dprobs.size()) l += (up.dprobs.array() * r.probs.array()).sum();
  for (std::size_t t = 0; t < up.advantage.size(); ++t)
    l += up.advantage[t] * plackett_luce(r.probs.data() + Index(t) * r.probs.cols(), r.probs.cols(),
                                         r.ids.data() + Index(t) * r.ids.cols(), r.ids.cols());
  return l + regularisers(router, x, up);
}

/// Largest |a - b| over the largest |a|: the relative error of a gradient tensor.
inline double relative_error(const Eigen::Ref<const Matrix<double>>& analytic,
                             const Eigen::Ref<const Matrix<double>>& numeric) {
  const double scale = std::max(analytic.cwiseAbs().maxCoeff(), numeric.cwiseAbs().maxCoeff());
  const double diff = (analytic - numeric).cwiseAbs().maxCoeff();
  return scale > 1e-12 ? diff / scale : diff;
}

/// Central differences of `f` over every entry of `values`, step h.
template <class F>
Matrix<double> differences(Matrix<double> values, F f, double h = 1e-5) {
  Matrix<double> out(values.rows(), values.cols());
  for (Index i = 0; i < values.size(); ++i) {
    const double v = values.data()[i];
    values.data()[i] = v + h;
    const double plus = f(values);
    values.data()[i] = v - h;
    const double minus = f(values);
    values.data()[i] = v;
    out.data()[i] = (plus - minus) / (2 * h);
  }
  return out;
}

/// Checks vmoer::backward against finite differences for every parameter tensor of the
/// posterior and the selector, and for the hidden states.
template <class P, class Sampler, class Sel>
void check(const P& post, const Sampler& sampler, const Sel& sel, const Matrix<double>& x, const Upstream& up,
           double tolerance = 1e-6) {
  const vmoer::rng::Stream stream{1234, 3};
  const vmoer::Router router(post, sampler, sel, stream);
  const auto routing = router.route(x, {.keep_probs = true});
  vmoer::BackwardOptions<double> options{.regularisers = up.regularisers};
  options.advantage = up.advantage;
  options.valid = up.valid;
  const Matrix<double> none;
  const auto g = vmoer::backward(router, x, routing, up.dweights, up.dprobs.size() ? up.dprobs : none, options);
  vmoer::IdMatrix ids = routing.ids;
  CHECK(g.regularisers == doctest::Approx(regularisers(router, x, up)).epsilon(1e-12));

  const auto& layout = post.parameters().layout();
  for (Index s = 0; s < Index(layout.slots().size()); ++s) {
    const Matrix<double> fd = differences(post.parameters()[s], [&](const Matrix<double>& v) {
      P p = post;
      p.parameters()[s] = v;
      return loss(vmoer::Router(p, sampler, sel, stream), x, up, ids);
    });
    INFO("posterior tensor ", layout[s].name);
    CHECK(relative_error(g.posterior[s], fd) < tolerance);
  }
  if constexpr (Sel::learned_tau) {
    const auto& sl = sel.parameters().layout();
    for (Index s = 0; s < Index(sl.slots().size()); ++s) {
      const Matrix<double> fd = differences(sel.parameters()[s], [&](const Matrix<double>& v) {
        Sel q = sel;
        q.parameters()[s] = v;
        return loss(vmoer::Router(post, sampler, q, stream), x, up, ids);
      });
      INFO("selector tensor ", sl[s].name);
      CHECK(relative_error(g.selector[s], fd) < tolerance);
    }
  }
  const Matrix<double> fd = differences(x, [&](const Matrix<double>& v) { return loss(router, v, up, ids); });
  INFO("hidden");
  CHECK(relative_error(g.hidden, fd) < tolerance);
}

}  // namespace gradcheck
