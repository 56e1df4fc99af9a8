// An independent double-precision transcription of each family's router in
// transformers 5.x (modeling_<family>.py), written from the source's tensor ops with
// plain loops: softmax, torch.topk (ties to the lower index), masks and gathers in the
// order the source applies them. It shares no routing code with the library; it reads
// only the plain Family and Settings values.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "vmoer/models/families.hpp"

namespace hf {

using vec = std::vector<double>;
using vmoer::models::Family;

/// The experts one token is routed to, in the order the source returns them, and their weights.
struct Routed {
  std::vector<int> ids;
  vec weights;
};

inline vec softmax(const vec& x) {
  double m = -std::numeric_limits<double>::infinity();
  for (double v : x) m = std::max(m, v);
  vec p(x.size());
  double s = 0;
  for (std::size_t i = 0; i < x.size(); ++i) s += p[i] = std::exp(x[i] - m);
  for (double& v : p) v /= s;
  return p;
}

inline vec sigmoid(vec x) {
  for (double& v : x) v = 1 / (1 + std::exp(-v));
  return x;
}

/// torch.topk(x, k) indices: descending, equal values to the lower index.
inline std::vector<int> topk(const vec& x, std::size_t k) {
  std::vector<int> idx(x.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return x[std::size_t(a)] > x[std::size_t(b)]; });
  idx.resize(k);
  return idx;
}

inline vec gather(const vec& x, const std::vector<int>& idx) {
  vec out;
  for (int i : idx) out.push_back(x[std::size_t(i)]);
  return out;
}

inline double sum(const vec& x) { return std::accumulate(x.begin(), x.end(), 0.0); }

/// Tensor.max(dim): the first index of the maximum.
inline int argmax(const vec& x) { return int(std::max_element(x.begin(), x.end()) - x.begin()); }

/// PhiMoE sparsemixer, eval mode, as the source writes it.
inline Routed sparsemixer(const vec& scores, double jitter_eps) {
  const double inf = std::numeric_limits<double>::infinity();
  const auto masked_pick = [&](const vec& masked_scores) {
    const int ind = argmax(masked_scores);
    const double thr = masked_scores[std::size_t(ind)];
    vec gates = masked_scores;
    for (std::size_t j = 0; j < scores.size(); ++j) {
      const double factor = std::max(std::abs(scores[j]), thr);  // scores.abs().clamp(min=thr)
      if ((thr - scores[j]) / factor > 2 * jitter_eps) gates[j] = -inf;
    }
    return std::pair(ind, softmax(gates)[std::size_t(ind)]);
  };
  const auto [sel1, w1] = masked_pick(scores);
  vec masked = scores;
  masked[std::size_t(sel1)] = -inf;
  const auto [sel2, w2] = masked_pick(masked);
  return {{sel1, sel2}, {w1, w2}};
}

/// One token's routing by `family` from its logits (router bias already added) and the
/// selection-only correction bias (empty when the family has none).
inline Routed route(Family family, const vmoer::models::Settings& s, const vec& logits, const vec& correction) {
  const std::size_t k = std::size_t(s.top_k), e = logits.size();
  Routed r;
  switch (family) {
    case Family::mixtral:
    case Family::hunyuan_v1_moe:
    case Family::qwen2_moe:
    case Family::qwen3_moe:
    case Family::olmoe:
    case Family::jamba: {
      const vec p = softmax(logits);
      r.ids = topk(p, k);
      r.weights = gather(p, r.ids);
      const bool renormalise = family == Family::mixtral || family == Family::hunyuan_v1_moe ||
                               (family != Family::jamba && s.norm_topk_prob);
      if (renormalise) {
        const double d = sum(r.weights);
        for (double& w : r.weights) w /= d;
      }
      break;
    }
    case Family::granitemoe:
    case Family::granitemoeshared:
    case Family::granitemoehybrid:
    case Family::jetmoe:
    case Family::gpt_oss:
      r.ids = topk(logits, k);
      r.weights = softmax(gather(logits, r.ids));
      break;
    case Family::llama4:
      r.ids = topk(logits, k);
      r.weights = sigmoid(gather(logits, r.ids));
      break;
    case Family::dbrx: {
      const vec p = softmax(logits);
      r.ids = topk(p, k);
      r.weights = gather(p, r.ids);
      if (s.norm_p) {
        double acc = 0;
        for (double w : r.weights) acc += std::pow(std::abs(w), *s.norm_p);
        const double norm = std::pow(acc, 1 / *s.norm_p);
        for (double& w : r.weights) w /= norm;
      }
      break;
    }
    case Family::deepseek_v2: {
      vec p = softmax(logits);
      if (s.n_group > 1) {  // group_limited_greedy
        const std::size_t g = std::size_t(s.n_group), size = e / g;
        vec group(g, -std::numeric_limits<double>::infinity());
        for (std::size_t j = 0; j < e; ++j) group[j / size] = std::max(group[j / size], p[j]);
        const std::vector<int> kept = topk(group, std::size_t(s.topk_group));
        for (std::size_t j = 0; j < e; ++j)
          if (std::find(kept.begin(), kept.end(), int(j / size)) == kept.end()) p[j] = 0.0;
      }
      r.ids = topk(p, k);
      r.weights = gather(p, r.ids);  // the masked scores
      for (double& w : r.weights) w *= s.scaling;
      break;
    }
    case Family::deepseek_v3:
    case Family::glm4_moe: {
      const vec scores = sigmoid(logits);
      vec choice(e);
      for (std::size_t j = 0; j < e; ++j) choice[j] = scores[j] + correction[j];
      const std::size_t g = std::size_t(s.n_group), size = e / g;
      vec group(g);
      for (std::size_t j = 0; j < g; ++j) {
        const vec members(choice.begin() + long(j * size), choice.begin() + long((j + 1) * size));
        group[j] = sum(gather(members, topk(members, 2)));
      }
      const std::vector<int> kept = topk(group, std::size_t(s.topk_group));
      for (std::size_t j = 0; j < e; ++j)
        if (std::find(kept.begin(), kept.end(), int(j / size)) == kept.end())
          choice[j] = -std::numeric_limits<double>::infinity();
      r.ids = topk(choice, k);
      r.weights = gather(scores, r.ids);
      if (s.norm_topk_prob) {
        const double d = sum(r.weights) + 1e-20;
        for (double& w : r.weights) w /= d;
      }
      for (double& w : r.weights) w *= s.scaling;
      break;
    }
    case Family::minimax_m2: {
      const vec scores = sigmoid(logits);
      vec choice(e);
      for (std::size_t j = 0; j < e; ++j) choice[j] = scores[j] + correction[j];
      r.ids = topk(choice, k);
      r.weights = gather(scores, r.ids);
      const double d = sum(r.weights);
      for (double& w : r.weights) w /= d;
      break;
    }
    case Family::ernie4_5_moe: {
      const vec p = softmax(logits);
      vec choice(e);
      for (std::size_t j = 0; j < e; ++j) choice[j] = p[j] + correction[j];
      r.ids = topk(choice, k);
      r.weights = gather(p, r.ids);
      const double d = std::max(sum(r.weights), s.norm_min);
      for (double& w : r.weights) w /= d;
      break;
    }
    case Family::phimoe:
      return sparsemixer(logits, s.jitter_eps);
  }
  return r;
}

}  // namespace hf
