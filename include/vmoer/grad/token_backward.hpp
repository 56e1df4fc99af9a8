// The backward pass of one token through sampler and selector: from the S logit
// samples z_s (written by the posterior's backward), the token's temperatures and the
// chosen ids, back to dL/dz_s and dL/dT. It recomputes the forward of
// backend/cpu/token_pipeline.hpp (tempering, scores, their average, the weights) in
// plain loops and differentiates it:
//   aggregate probs:   scores = (1/S) sum_s score(z_s / T),  untempered = (1/S) sum_s score(z_s)
//   aggregate logits:  scores = score(zbar / T),             untempered = score(zbar),  zbar = mean z_s
//   weights = combine_weights(sampled ? untempered : scores, ids)
// The upstream gradients are dL/dweights, optionally dL/dscores (Routing::probs), and,
// for sampled selection, an advantage A (a per-token loss minus a baseline) for the
// score-function term A * d log P(ids | scores) of the Plackett-Luce law that
// Gumbel-top-K samples from (see docs/training.md).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "vmoer/grad/selection.hpp"
#include "vmoer/sampler/aggregate.hpp"

namespace vmoer::grad {

/// Upstream gradients of one token.
template <class T>
struct TokenCotangent {
  const std::int32_t* ids = nullptr;  ///< [K] chosen experts
  const T* weights = nullptr;         ///< [K] dL/dweights
  const T* probs = nullptr;           ///< [E] dL/dscores, or null
  const T* advantage = nullptr;       ///< the token's advantage (sampled selection), or null
};

/// One thread's backward of sampler and selector for tokens of one router.
template <class T>
class TokenBackward {
 public:
  /// For E experts, S samples (1 when the posterior is not sampled), the router's rule.
  TokenBackward(const Convention& convention, Index experts, Index samples, Aggregate aggregate, bool sampled)
      : conv_(convention), experts_(experts), samples_(samples), aggregate_(aggregate), sampled_(sampled) {
    const auto n = std::size_t(samples * experts);
    for (auto* v : {&z_, &zt_, &q_, &q1_, &dz_}) v->assign(n, T(0));
    for (auto* v : {&scores_, &untempered_, &zbar_, &ztbar_, &dscores_, &dweight_scores_, &dzbar_, &dtau_})
      v->assign(std::size_t(experts), T(0));
    work_.assign(std::size_t(2 * convention.top_k), T(0));
  }

  /// Where the posterior writes sample s, [E].
  T* sample(Index s) { return z_.data() + s * experts_; }
  /// Number of samples S.
  Index samples() const { return samples_; }
  /// dL/dz_s after run(), [E].
  const T* dz(Index s) const { return dz_.data() + s * experts_; }
  /// dL/dT_e after run(), one entry per expert, [E].
  const T* dtau() const { return dtau_.data(); }

  /// Recomputes the token's forward from the samples and `tau` [E] (the temperature of
  /// each expert), then propagates `up` back to the samples and the temperatures.
  void run(const T* tau, const TokenCotangent<T>& up) {
    forward(tau);
    std::fill(dscores_.begin(), dscores_.end(), T(0));
    std::fill(dweight_scores_.begin(), dweight_scores_.end(), T(0));
    std::fill(dz_.begin(), dz_.end(), T(0));
    std::fill(dtau_.begin(), dtau_.end(), T(0));
    const Index n = experts_;
    // Sampled selection weights the chosen experts by the untempered scores; otherwise
    // weights and selection share the tempered scores.
    T* dweight_scores = sampled_ ? dweight_scores_.data() : dscores_.data();
    combine_weights_backward(weight_scores(), n, up.ids, conv_, up.weights, dweight_scores, work_.data());
    if (up.probs)
      for (Index e = 0; e < n; ++e) dscores_[e] += up.probs[e];
    if (up.advantage)
      plackett_luce_log_prob(scores_.data(), n, up.ids, conv_.top_k, *up.advantage, dscores_.data(), work_.data());

    if (aggregate_ == Aggregate::probs) {
      const T inv_s = T(1) / T(samples_);
      for (Index s = 0; s < samples_; ++s) {
        T* dz = dz_.data() + s * n;  // first dL/d(z_s / T), then dL/dz_s
        score_backward(conv_.score, q_.data() + s * n, dscores_.data(), n, inv_s, dz);
        const T* zt = zt_.data() + s * n;
        for (Index e = 0; e < n; ++e) {
          dtau_[e] -= dz[e] * zt[e] / tau[e];
          dz[e] /= tau[e];
        }
        if (sampled_) score_backward(conv_.score, q1_.data() + s * n, dweight_scores, n, inv_s, dz);
      }
    } else {
      std::fill(dzbar_.begin(), dzbar_.end(), T(0));
      score_backward(conv_.score, scores_.data(), dscores_.data(), n, T(1), dzbar_.data());
      for (Index e = 0; e < n; ++e) {
        dtau_[e] -= dzbar_[e] * ztbar_[e] / tau[e];
        dzbar_[e] /= tau[e];
      }
      if (sampled_) score_backward(conv_.score, untempered_.data(), dweight_scores, n, T(1), dzbar_.data());
      for (Index s = 0; s < samples_; ++s)
        for (Index e = 0; e < n; ++e) dz_[std::size_t(s * n + e)] = dzbar_[e] / T(samples_);
    }
  }

 private:
  const T* weight_scores() const { return sampled_ ? untempered_.data() : scores_.data(); }

  void score(const T* z, T* q) const {
    const Index n = experts_;
    switch (conv_.score) {
      case Score::softmax: {
        T m = z[0];
        for (Index e = 1; e < n; ++e) m = std::max(m, z[e]);
        T total = T(0);
        for (Index e = 0; e < n; ++e) total += q[e] = std::exp(z[e] - m);
        for (Index e = 0; e < n; ++e) q[e] /= total;
        break;
      }
      case Score::sigmoid:
        for (Index e = 0; e < n; ++e) q[e] = T(1) / (T(1) + std::exp(-z[e]));
        break;
      case Score::raw:
        std::copy(z, z + n, q);
        break;
    }
  }

  void forward(const T* tau) {
    const Index n = experts_;
    for (Index s = 0; s < samples_; ++s)
      for (Index e = 0; e < n; ++e) zt_[std::size_t(s * n + e)] = z_[std::size_t(s * n + e)] / tau[e];
    std::fill(scores_.begin(), scores_.end(), T(0));
    std::fill(untempered_.begin(), untempered_.end(), T(0));
    if (aggregate_ == Aggregate::probs) {
      for (Index s = 0; s < samples_; ++s) {
        score(zt_.data() + s * n, q_.data() + s * n);
        for (Index e = 0; e < n; ++e) scores_[e] += q_[std::size_t(s * n + e)];
        if (sampled_) {
          score(z_.data() + s * n, q1_.data() + s * n);
          for (Index e = 0; e < n; ++e) untempered_[e] += q1_[std::size_t(s * n + e)];
        }
      }
      for (Index e = 0; e < n; ++e) {
        scores_[e] /= T(samples_);
        untempered_[e] /= T(samples_);
      }
    } else {
      std::fill(zbar_.begin(), zbar_.end(), T(0));
      for (Index s = 0; s < samples_; ++s)
        for (Index e = 0; e < n; ++e) zbar_[e] += z_[std::size_t(s * n + e)];
      for (Index e = 0; e < n; ++e) {
        zbar_[e] /= T(samples_);
        ztbar_[e] = zbar_[e] / tau[e];
      }
      score(ztbar_.data(), scores_.data());
      if (sampled_) score(zbar_.data(), untempered_.data());
    }
  }

  Convention conv_;
  Index experts_, samples_;
  Aggregate aggregate_;
  bool sampled_;
  std::vector<T> z_, zt_, q_, q1_, dz_;  // [S, E]
  std::vector<T> scores_, untempered_, zbar_, ztbar_, dscores_, dweight_scores_, dzbar_, dtau_, work_;
};

}  // namespace vmoer::grad
