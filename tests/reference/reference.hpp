// An independent double-precision reference of the routing math, written from the
// documented definitions with plain loops and std::sort, sharing no code with the
// library except the Philox block function (itself checked against Random123).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include "vmoer/rng/philox.hpp"
#include "vmoer/selector/convention.hpp"

namespace ref {

using vec = std::vector<double>;
using mat = std::vector<vec>;  // row-major, [rows][cols]

/// y = W x + b.
inline vec linear(const mat& w, const vec& b, const vec& x) {
  vec y(w.size());
  for (std::size_t i = 0; i < w.size(); ++i) {
    double s = b.empty() ? 0.0 : b[i];
    for (std::size_t j = 0; j < x.size(); ++j) s += w[i][j] * x[j];
    y[i] = s;
  }
  return y;
}

/// Philox block for (seed, layer, purpose, token, sample, block), as documented in rng/stream.hpp.
inline vmoer::rng::u32x4 block(std::uint64_t seed, std::uint32_t layer, std::uint32_t purpose, std::uint32_t token,
                               std::uint32_t sample, std::uint32_t b) {
  return vmoer::rng::philox4x32<10>({{b, sample, token, (layer << 8) | purpose}},
                                    {{std::uint32_t(seed), std::uint32_t(seed >> 32)}});
}

/// n standard normals by the documented Box-Muller mapping, in double.
inline vec normals(std::uint64_t seed, std::uint32_t layer, std::uint32_t token, std::uint32_t sample, std::size_t n) {
  vec out;
  for (std::uint32_t b = 0; out.size() < n; ++b) {
    const auto w = block(seed, layer, 0, token, sample, b);
    for (int pair = 0; pair < 2; ++pair) {
      const double u = (double(w[2 * pair]) + 0.5) / 4294967296.0;
      const double v = 2 * M_PI * (double(w[2 * pair + 1]) + 0.5) / 4294967296.0;
      const double r = std::sqrt(-2 * std::log(u));
      out.push_back(r * std::sin(v));
      out.push_back(r * std::cos(v));
    }
  }
  out.resize(n);
  return out;
}

enum class Cov { none, diagonal, cholesky, low_rank };

/// The dense factor A [E, N] with z = mu + A eps, from a scale head s, per the
/// documented head layouts (posterior/diagonal.hpp, cholesky.hpp, low_rank.hpp).
inline mat factor(Cov cov, const vec& s, std::size_t e, std::size_t r) {
  const std::size_t n = cov == Cov::low_rank ? e + r : e;
  mat a(e, vec(n, 0.0));
  if (cov == Cov::none) return a;
  for (std::size_t i = 0; i < e; ++i) a[i][i] = std::exp(0.5 * s[i]);
  if (cov == Cov::cholesky) {
    std::size_t pos = e;
    for (std::size_t j = 0; j < e; ++j)
      for (std::size_t i = j + 1; i < e; ++i) a[i][j] = s[pos++];
  }
  if (cov == Cov::low_rank)
    for (std::size_t k = 0; k < r; ++k)
      for (std::size_t i = 0; i < e; ++i) a[i][e + k] = s[e + k * e + i];
  return a;
}

inline vec softmax(const vec& z) {
  const double m = *std::max_element(z.begin(), z.end());
  vec p(z.size());
  double total = 0;
  for (std::size_t i = 0; i < z.size(); ++i) total += p[i] = std::exp(z[i] - m);
  for (double& x : p) x /= total;
  return p;
}

inline double entropy(const vec& p) {
  double h = 0;
  for (double x : p)
    if (x > 0) h -= x * std::log(x);
  return h;
}

inline vec score(vmoer::Score s, const vec& z) {
  if (s == vmoer::Score::softmax) return softmax(z);
  vec q(z.size());
  for (std::size_t i = 0; i < z.size(); ++i) q[i] = s == vmoer::Score::sigmoid ? 1 / (1 + std::exp(-z[i])) : z[i];
  return q;
}

/// Indices of the k largest keys, ties to the lower index, by sorting.
inline std::vector<int> top(const vec& keys, std::size_t k) {
  std::vector<int> idx(keys.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return keys[std::size_t(a)] > keys[std::size_t(b)]; });
  idx.resize(k);
  return idx;
}

/// Selection keys after bias and group limiting.
inline vec selection_keys(const vec& scores, const std::vector<float>& bias, const vmoer::Convention& c) {
  const std::size_t e = scores.size();
  vec keys(e);
  for (std::size_t i = 0; i < e; ++i) keys[i] = scores[i] + (bias.empty() ? 0.0 : double(bias[i]));
  if (c.n_group > 1) {
    const std::size_t g = std::size_t(c.n_group), size = e / g;
    vec group(g);
    for (std::size_t j = 0; j < g; ++j) {
      vec members(keys.begin() + long(j * size), keys.begin() + long((j + 1) * size));
      std::sort(members.rbegin(), members.rend());
      group[j] = c.group_score == vmoer::GroupScore::max ? members[0] : members[0] + members[1];
    }
    const auto kept = top(group, std::size_t(c.topk_group));
    for (std::size_t i = 0; i < e; ++i)
      if (std::find(kept.begin(), kept.end(), int(i / size)) == kept.end()) keys[i] = c.group_mask;
  }
  return keys;
}

/// Combine weights of `ids` from the unbiased scores under the convention.
inline vec weights(const vec& scores, const std::vector<int>& ids, const vmoer::Convention& c) {
  vec w;
  for (int i : ids) w.push_back(scores[std::size_t(i)]);
  const double sum = std::accumulate(w.begin(), w.end(), 0.0);
  if (c.order == vmoer::Order::select_then_score && c.score == vmoer::Score::softmax)
    for (double& x : w) x /= sum;  // softmax over the chosen logits
  const double s = std::accumulate(w.begin(), w.end(), 0.0);
  double d = 1;
  if (c.normalize == vmoer::Normalize::sum) d = s + c.norm_eps;
  if (c.normalize == vmoer::Normalize::lp) {
    double acc = 0;
    for (double x : w) acc += std::pow(std::abs(x), c.norm_p);
    d = std::pow(acc, 1 / c.norm_p);
  }
  if (c.normalize == vmoer::Normalize::sum_clamped) d = std::max(s, c.norm_min);
  for (double& x : w) x = x / d * c.scaling;
  return w;
}

/// Gumbel noise of expert e for a token, as documented in selector/sample_k.hpp.
inline double gumbel(std::uint64_t seed, std::uint32_t layer, std::uint32_t token, std::size_t e) {
  const auto w = block(seed, layer, 1, token, 0, std::uint32_t(e / 4));
  const double u = (double(w[int(e % 4)] >> 8) + 0.5) / 16777216.0;
  return -std::log(-std::log(u));
}

/// Everything one token's routing produces.
struct Result {
  std::vector<int> ids;
  vec weights, probs, keys;
  double entropy = 0, mutual_information = 0, mc_variance = 0, logit_variance = 0, temperature = 1;
  double margin = 0;  ///< gap between the K-th and (K+1)-th selection keys
};

/// A router described by plain data.
struct Router {
  mat w;        ///< [E, D]
  vec b;        ///< [E] (may be empty)
  Cov cov = Cov::none;
  std::size_t rank = 0;
  mat w1, wm, ws;  ///< encoder: trunk [H, D], mean head [E, H], scale head [P, H]
  vec b1, bm, bs;
  std::size_t samples = 1;
  bool mean_only = true;
  bool average_logits = false;
  vmoer::Convention conv;
  std::vector<float> bias;
  double tau = 1;
  bool sampled = false;
  std::uint64_t seed = 0;
  std::uint32_t layer = 0;
  // A learned temperature T(u) = min(softplus(Wt2 relu(Wt1 u + bt1) + bt2) + floor, ceiling).
  mat wt1, wt2;
  vec bt1, bt2;
  double floor = 0, ceiling = 0;

  /// The token's temperature of each expert.
  vec temperatures(const vec& x, std::size_t e) const {
    if (wt1.empty()) return vec(e, tau);
    vec h = linear(wt1, bt1, x);
    for (double& v : h) v = std::max(v, 0.0);
    const vec a = linear(wt2, bt2, h);
    vec t(e);
    for (std::size_t i = 0; i < e; ++i) t[i] = std::min(std::log1p(std::exp(a[a.size() == 1 ? 0 : i])) + floor, ceiling);
    return t;
  }

  /// Posterior mean and factor of one token.
  void posterior(const vec& x, vec& mu, mat& a) const {
    mu = linear(w, b, x);
    const std::size_t e = mu.size();
    a = factor(Cov::none, {}, e, 0);
    if (cov == Cov::none) return;
    vec h = linear(w1, b1, x);
    for (double& v : h) v = std::max(v, 0.0);
    const vec dmu = linear(wm, bm, h);
    for (std::size_t i = 0; i < e; ++i) mu[i] += dmu[i];
    a = factor(cov, linear(ws, bs, h), e, rank);
  }

  Result route(const vec& x, std::uint32_t token) const {
    vec mu;
    mat a;
    posterior(x, mu, a);
    const std::size_t e = mu.size(), n = a[0].size();
    const vec taus = temperatures(x, e);
    const std::size_t s_eff = cov == Cov::none || mean_only ? 1 : samples;
    vec acc_p(e, 0), acc_q(e, 0), acc_q1(e, 0), acc_z(e, 0);
    std::vector<vec> gates;  // every p_s, for the two-pass variance
    double h_sum = 0;
    for (std::size_t s = 0; s < s_eff; ++s) {
      vec z = mu;
      if (cov != Cov::none && !mean_only) {
        const vec eps = normals(seed, layer, token, std::uint32_t(s), n);
        for (std::size_t i = 0; i < e; ++i)
          for (std::size_t j = 0; j < n; ++j) z[i] += a[i][j] * eps[j];
      }
      vec zt = z;
      for (std::size_t i = 0; i < e; ++i) zt[i] /= taus[i];
      const vec p = softmax(zt);
      gates.push_back(p);
      h_sum += entropy(p);
      const vec q = score(conv.score, zt), q1 = score(conv.score, z);
      for (std::size_t i = 0; i < e; ++i) {
        acc_p[i] += p[i];
        acc_q[i] += q[i];
        acc_q1[i] += q1[i];
        acc_z[i] += z[i];
      }
    }
    const double S = double(s_eff);
    Result r;
    vec pbar(e), scores(e), untempered(e);
    for (std::size_t i = 0; i < e; ++i) {
      pbar[i] = acc_p[i] / S;
      scores[i] = acc_q[i] / S;
      untempered[i] = acc_q1[i] / S;
    }
    if (average_logits) {
      vec zbar(e), zt(e);
      for (std::size_t i = 0; i < e; ++i) zt[i] = (zbar[i] = acc_z[i] / S) / taus[i];
      scores = score(conv.score, zt);
      untempered = score(conv.score, zbar);
    }
    if (!sampled) untempered = scores;
    r.probs = scores;
    r.entropy = entropy(pbar);
    r.mutual_information = std::max(0.0, r.entropy - h_sum / S);
    for (std::size_t i = 0; s_eff > 1 && i < e; ++i) {  // sum_e of the unbiased variance of p_s(e)
      double spread = 0;
      for (const vec& p : gates) spread += (p[i] - pbar[i]) * (p[i] - pbar[i]);
      r.mc_variance += spread / (S - 1);
    }
    for (const vec& row : a)
      for (double v : row) r.logit_variance += v * v;
    r.temperature = std::accumulate(taus.begin(), taus.end(), 0.0) / double(e);
    vec keys(e);
    if (sampled) {
      for (std::size_t i = 0; i < e; ++i)
        keys[i] = scores[i] > 0 ? std::log(scores[i]) + gumbel(seed, layer, token, i) : -INFINITY;
    } else {
      keys = selection_keys(scores, bias, conv);
    }
    const std::size_t k = std::size_t(conv.top_k);
    r.ids = top(keys, k);
    const auto order = top(keys, std::min(e, k + 1));
    r.margin = order.size() > k ? keys[std::size_t(order[k - 1])] - keys[std::size_t(order[k])] : INFINITY;
    r.weights = weights(untempered, r.ids, conv);
    r.keys = keys;
    return r;
  }
};

}  // namespace ref
