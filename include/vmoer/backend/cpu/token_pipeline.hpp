// One token through sampler and selector on the CPU: S samples z_s (mu + L eps_s for
// a Gaussian posterior, or logit samples a weight-space posterior computed), their
// gate distributions and scores at the token's temperature, the aggregate, the
// uncertainty signals, then selection and combine weights. The per-token math
// (covariance policies, selection, weights) is the shared host/device code; this file
// only vectorises the loops.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <iterator>
#include <limits>
#include <vector>

#include "vmoer/backend/cpu/normals.hpp"
#include "vmoer/backend/cpu/top_k.hpp"
#include "vmoer/backend/cpu/vector_math.hpp"
#include "vmoer/routing.hpp"
#include "vmoer/sampler/moment_matched.hpp"
#include "vmoer/selector/sample_k.hpp"
#include "vmoer/selector/select.hpp"

namespace vmoer::cpu {

/// What one token brings to the pipeline.
template <class T>
struct TokenInput {
  std::uint32_t token = 0;      ///< global token index (its RNG coordinate)
  const T* mu = nullptr;        ///< [E] posterior mean logits
  const T* scale = nullptr;     ///< finalised scale head of a Gaussian posterior, or null
  T logit_variance = T(0);      ///< its tr(Sigma) (covariance::trace of the scale)
  const T* tau = nullptr;       ///< [1 or E] learned temperatures, or null for the selector's fixed one
  Index tau_width = 0;          ///< 1 or E when tau is set
  const T* samples = nullptr;   ///< [S] rows of E logit samples from a weight-space posterior, or null
  Index sample_stride = 0;      ///< distance between those rows
};

/// Where one token's results go.
template <class T>
struct TokenOutput {
  std::int32_t* ids;      ///< [K]
  T* weights;             ///< [K]
  T* logit_variance;      ///< scalar signals
  T* mc_variance;         ///< ...
  T* entropy;             ///< ...
  T* mutual_information;  ///< ...
  T* temperature;         ///< ...
  T* logits;              ///< [E] mean logits, or null
  T* probs;               ///< [E] averaged scores, or null
};

// nvcc also compiles every instantiation of a covariance's add_noise (a __host__
// __device__ template) for the device, where a SIMD batch cannot live. A .cu file that
// includes this backend (the CPU-versus-CUDA tests) keeps the per-sample loop instead
// of TokenPipeline::draw_across_samples.
#if defined(__CUDACC__)
inline constexpr bool draws_across_samples = false;
#else
inline constexpr bool draws_across_samples = true;
#endif

/// The sampler, selector and sizes of one route() call, and one thread's scratch.
template <class Posterior, class Sampler, class Selector>
class TokenPipeline {
 public:
  using T = typename Posterior::scalar;  ///< compute type
  /// Whether samples carry Gaussian noise drawn here.
  static constexpr bool gaussian_noise = Posterior::stochastic && Sampler::draws && !Posterior::weight_space;
  /// Whether the average is the deterministic moment-matching approximation.
  static constexpr bool moment_matched = std::is_same_v<Sampler, MomentMatched>;
  static_assert(!(moment_matched && Posterior::weight_space), "MomentMatched needs a logit-space posterior");

  /// An empty pipeline; configure() sets it up.
  TokenPipeline() = default;
  /// Set-up for the router's policies.
  TokenPipeline(const Posterior& posterior, const Sampler& sampler, const Selector& selector,
                const rng::Stream& stream) {
    configure(posterior, sampler, selector, stream);
  }

  /// (Re)sets the pipeline for the router's policies. The buffers keep their capacity,
  /// so a pipeline kept between calls (a decode loop's) allocates nothing once warm.
  void configure(const Posterior& posterior, const Sampler& sampler, const Selector& selector,
                 const rng::Stream& stream) {
    conv_ = selector.convention;
    stream_ = stream;
    experts_ = posterior.experts();
    padded_ = padded<T>(experts_);
    noise_padded_ = padded<T>((posterior.noise_size() + 1) / 2) * 2;
    rank_ = posterior.rank();
    samples_ = Posterior::stochastic && Sampler::draws ? sampler.samples : 1;
    aggregate_ = sampler.aggregate;
    sampled_ = selector.sampled();
    bias_.clear();
    if constexpr (requires { selector.selection_bias; })
      if (!selector.selection_bias.empty()) {  // padded, for select_top_k's batches
        bias_.assign(std::size_t(padded_), 0.0f);
        std::copy(selector.selection_bias.begin(), selector.selection_bias.end(), bias_.begin());
      }
    fixed_tau_ = T(1);
    if constexpr (!Selector::learned_tau) fixed_tau_ = T(selector.temperature());
    // One arena for every per-token array: a dozen separate buffers cost a decode step
    // more than its routing.
    Lanes* arrays[] = {&mu_, &z_, &zt_, &p_, &q_, &acc_p_, &center_, &gate_, &acc_q_, &acc_q1_, &acc_z_, &acc_z2_, &inv_tau_};
    arena_.assign(std::size(arrays) * std::size_t(padded_) + std::size_t(noise_padded_ + conv_.top_k), T(0));
    T* next = arena_.data();  // every piece is a whole number of SIMD batches, so each stays aligned
    for (Lanes* v : arrays) next = v->take(next, padded_);
    std::fill(inv_tau_.begin(), inv_tau_.end(), T(1) / fixed_tau_);  // tokens with no learned tau keep it
    keys_.take(eps_.take(next, noise_padded_), conv_.top_k);
    words_.assign(std::size_t(noise_padded_), 0);
    if constexpr (gaussian_noise && draws_across_samples) {
      // Fewer samples than lanes would leave most lanes idle (and cost more than the loop).
      across_samples_ = aggregate_ == Aggregate::probs && conv_.score == Score::softmax && !sampled_ &&
                        samples_ >= Index(batch<T>::size);
      if (across_samples_) {
        noise_ = posterior.noise_size();
        const Index noise_blocks = (noise_ + 3) / 4;
        sample_lanes_.resize(std::size_t(4 * noise_blocks + 2 * experts_));
        // Philox runs two batches of blocks at a time: room for an even count.
        sample_words_.resize(std::size_t(4 * (noise_blocks + noise_blocks % 2)) * xsimd::batch<std::uint32_t>::size);
      }
    }
    if constexpr (moment_matched) {
      factor_.assign(std::size_t(experts_ * posterior.noise_size()), T(0));
      sigma_.assign(std::size_t(experts_ * experts_), T(0));
      ones_.assign(std::size_t(padded_), T(1));
      expansion_ = sampler.expansion;
      noise_ = posterior.noise_size();
    }
  }

  // The arrays point into this object's arena: a copy would share and then dangle.
  TokenPipeline(const TokenPipeline&) = delete;
  TokenPipeline& operator=(const TokenPipeline&) = delete;

  /// Routes one token.
  void run(const TokenInput<T>& in, const TokenOutput<T>& out) {
    const T neg_inf = -std::numeric_limits<T>::infinity();
    for (Index e = 0; e < padded_; ++e) mu_[e] = e < experts_ ? in.mu[e] : neg_inf;
    for (auto* v : {&acc_p_, &acc_q_, &acc_q1_, &acc_z_, &acc_z2_}) std::fill(v->begin(), v->end(), T(0));
    squares_ = T(0);
    const T tau_mean = set_temperature(in);
    if (samples_ > 1) {  // center_ = softmax(mu / T), near the mean gate distribution
      for (Index i = 0; i < padded_; ++i) zt_[i] = mu_[i] * inv_tau_[i];
      softmax_entropy(zt_.data(), center_.data(), experts_, padded_);
    }
    const bool tempered = tau_mean != T(1) || in.tau_width > 1;
    const bool separate_scores = conv_.score != Score::softmax;
    const bool untempered = sampled_ && tempered;
    T entropy_sum = T(0);
    if constexpr (moment_matched)
      entropy_sum = match_moments(in, separate_scores, untempered);
    else
      entropy_sum = average_samples(in, tempered, separate_scores, untempered);
    finish(in, out, entropy_sum, tau_mean);
  }

 private:
  using buffer = std::vector<T, xsimd::aligned_allocator<T>>;
  // A padded array inside arena_.
  struct Lanes {
    T* ptr = nullptr;
    Index size = 0;
    T* take(T* at, Index n) {  // returns the next free slot
      ptr = at;
      size = n;
      return at + n;
    }
    T* data() const { return ptr; }
    T* begin() const { return ptr; }
    T* end() const { return ptr + size; }
    T& operator[](Index i) const { return ptr[i]; }
  };

  // Draws the S samples and leaves acc_p_ = mean gate distribution, squares_ =
  // sum_s |p_s - c|^2 (c = center_), scores_ and weight_scores_ = the (tempered,
  // untempered) averaged scores; returns sum_s H(p_s).
  T average_samples(const TokenInput<T>& in, bool tempered, bool separate_scores, bool untempered) {
    using B = batch<T>;
    constexpr Index w = Index(B::size);
    const T neg_inf = -std::numeric_limits<T>::infinity();
    T entropy_sum = T(0);

    if constexpr (gaussian_noise && draws_across_samples)
      if (across_samples_) entropy_sum = draw_across_samples(in, tempered);
    for (Index s = 0; s < samples_ && !across_samples_; ++s) {
      T* z = z_.data();
      if constexpr (gaussian_noise) {
        copy(mu_.data(), z);
        normals(stream_, rng::Purpose::logit_noise, in.token, std::uint32_t(s), eps_.data(), noise_padded_,
                words_.data(), words_.data() + noise_padded_ / 2);
        Posterior::covariance::add_noise(in.scale, eps_.data(), z, experts_, rank_);
      } else if constexpr (Posterior::weight_space) {
        for (Index e = 0; e < padded_; ++e) z[e] = e < experts_ ? in.samples[s * in.sample_stride + e] : neg_inf;
        for (Index e = 0; e < experts_; ++e) acc_z2_[e] += z[e] * z[e];
      } else {
        z = mu_.data();
      }
      if (aggregate_ == Aggregate::logits || Posterior::weight_space) add(z, acc_z_.data());
      const T* zt = z;
      if (tempered) {
        for (Index i = 0; i < padded_; i += w)
          (B::load_aligned(z + i) * B::load_aligned(inv_tau_.data() + i)).store_aligned(zt_.data() + i);
        zt = zt_.data();
      }
      entropy_sum += softmax_entropy(zt, p_.data(), experts_, padded_);
      B square(T(0));
      for (Index i = 0; i < padded_; i += w) {
        const B pi = B::load_aligned(p_.data() + i);
        (B::load_aligned(acc_p_.data() + i) + pi).store_aligned(acc_p_.data() + i);
        const B d = pi - B::load_aligned(center_.data() + i);
        square = cpu::fmadd(d, d, square);
      }
      squares_ += reduce_add(square);
      if (aggregate_ == Aggregate::probs) {
        if (separate_scores) {
          score(zt, q_.data());
          add(q_.data(), acc_q_.data());
        }
        if (untempered) {
          score(z, q_.data());
          add(q_.data(), acc_q1_.data());
        }
      }
    }

    // Aggregate: scores (tempered) and, for sampled selection, untempered scores.
    const T inv_s = T(1) / T(samples_);
    scale_by(acc_p_.data(), inv_s);  // acc_p_ is now the mean gate distribution
    scores_ = weight_scores_ = acc_p_.data();
    if (aggregate_ == Aggregate::logits) {
      scale_by(acc_z_.data(), inv_s);  // mean logits
      for (Index i = 0; i < padded_; i += w)
        (B::load_aligned(acc_z_.data() + i) * B::load_aligned(inv_tau_.data() + i)).store_aligned(zt_.data() + i);
      score(zt_.data(), acc_q_.data());
      scores_ = weight_scores_ = acc_q_.data();
      if (untempered) {
        score(acc_z_.data(), acc_q1_.data());
        weight_scores_ = acc_q1_.data();
      }
    } else {
      if (separate_scores) {
        scale_by(acc_q_.data(), inv_s);
        scores_ = acc_q_.data();
      }
      weight_scores_ = scores_;
      if (untempered) {
        scale_by(acc_q1_.data(), inv_s);
        weight_scores_ = acc_q1_.data();
      }
    }

    return entropy_sum;
  }

  // The S Gaussian samples with lane l of every batch holding sample s0 + l (used when
  // the gate probabilities are averaged and nothing else is, MFVR's and FCVR's default,
  // and S fills at least one batch).
  // The softmax's maximum, sum and logarithm over the experts then run lane-wise, with
  // no horizontal reduction per sample, which at E = 64 costs about as much as the
  // arithmetic. The normals are the same as cpu::normals' (same Philox words, same
  // Box-Muller); only the order of the sums over samples and experts differs.
  // Leaves the sum over samples of p in acc_p_ and adds sum_s |p_s - c|^2 to squares_;
  // returns sum_s H(p_s).
  T draw_across_samples(const TokenInput<T>& in, bool tempered) {
    using B = batch<T>;
    constexpr Index w = Index(B::size), words_per_batch = Index(xsimd::batch<std::uint32_t>::size);
    const Index noise_blocks = (noise_ + 3) / 4;
    B* eps = sample_lanes_.data();
    B* z = eps + 4 * noise_blocks;
    B* acc = z + experts_;
    for (Index e = 0; e < experts_; ++e) acc[e] = B(T(0));
    B entropy_acc(T(0)), squares(T(0));
    alignas(64) T lane_index[w];
    for (Index l = 0; l < w; ++l) lane_index[l] = T(l);
    std::uint32_t* const words = sample_words_.data();  // block b, word j: words + (4 b + j) * words_per_batch
    for (Index s0 = 0; s0 < samples_; s0 += w) {
      // Every Philox block first, two batches at a time, then every Box-Muller pair:
      // the iterations of each loop are independent, so they overlap in the core.
      for (Index b = 0; b < noise_blocks; b += 2) {  // lane l: sample s0 + l
        PhiloxLanes batches[2];
        philox_batches<2, Across::samples>(stream_, rng::Purpose::logit_noise, in.token, std::uint32_t(s0),
                                            std::uint32_t(b), batches);
        for (Index i = 0; i < 2; ++i)
          for (Index j = 0; j < 4; ++j) batches[i][j].store_aligned(words + (4 * (b + i) + j) * words_per_batch);
      }
      // z = mu + L eps, tempered, and its maximum over experts (in `chains` parts).
      B m[chains], sum[chains], weighted[chains], square[chains];
      for (int j = 0; j < chains; ++j) {
        m[j] = B(-std::numeric_limits<T>::infinity());
        sum[j] = weighted[j] = square[j] = B(T(0));
      }
      // Where the covariance is elementwise, each z_e is formed as its normal comes, so
      // neither the normals nor a copy of mu go through memory (306-315 against 330 us
      // for the mean-field pipeline at E = 64, S = 32); otherwise the normals are kept
      // for add_noise.
      static_assert(chains == 4, "one chain of the maximum per normal of a Philox block");
      for (Index b = 0; b < noise_blocks; ++b) {
        const std::uint32_t* block = words + 4 * b * words_per_batch;
        B n[4];
        box_muller<T>(block, block + words_per_batch, n[0], n[1]);
        box_muller<T>(block + 2 * words_per_batch, block + 3 * words_per_batch, n[2], n[3]);
        if constexpr (Posterior::covariance::elementwise) {
          for (Index j = 0, e = 4 * b; j < 4 && e < experts_; ++j, ++e) {
            z[e] = cpu::fmadd(B(in.scale[e]), n[j], B(mu_[e]));
            if (tempered) z[e] *= B(inv_tau_[e]);
            m[j] = xsimd::max(m[j], z[e]);
          }
        } else {
          for (Index j = 0; j < 4; ++j) eps[4 * b + j] = n[j];
        }
      }
      if constexpr (!Posterior::covariance::elementwise) {
        for (Index e = 0; e < experts_; ++e) z[e] = B(mu_[e]);
        Posterior::covariance::add_noise(in.scale, eps, z, experts_, rank_);
        if (tempered)
          for (Index e = 0; e < experts_; ++e) z[e] *= B(inv_tau_[e]);
        over_chains(experts_, [&](Index e, int j) { m[j] = xsimd::max(m[j], z[e]); });
      }
      // p = softmax(z) = 2^t / sum with t = (z - max) log2(e), H(p) = log(sum) - log(2)
      // sum_e p_e t_e, and |p - c|^2, per lane.
      const B scale(log2_e<T>), shift = combine(m, [](const B& x, const B& y) { return xsimd::max(x, y); }) * scale;
      over_chains(experts_, [&](Index e, int j) {
        const B t = cpu::fmsub(z[e], scale, shift);
        z[e] = pow2(t);
        sum[j] += z[e];
        weighted[j] = cpu::fmadd(z[e], t, weighted[j]);
      });
      const B total = combine(sum, std::plus<>{});
      const auto live = B::load_aligned(lane_index) < B(T(samples_ - s0));  // lanes past S add nothing
      const B inv = xsimd::select(live, B(T(1)) / total, B(T(0)));
      entropy_acc += xsimd::select(live, xsimd::log(total), B(T(0))) -
                     B(ln_2<T>) * combine(weighted, std::plus<>{}) * inv;
      over_chains(experts_, [&](Index e, int j) {  // p = z inv, fused into the sum and the difference
        const B d = cpu::fmsub(z[e], inv, B(center_[e]));
        acc[e] = cpu::fmadd(z[e], inv, acc[e]);
        square[j] = cpu::fmadd(d, d, square[j]);
      });
      squares += xsimd::select(live, combine(square, std::plus<>{}), B(T(0)));
    }
    Index e = 0;
    for (B sums; e + 16 <= experts_ && reduce_add_16(acc + e, sums); e += 16) sums.store_aligned(acc_p_.data() + e);
    for (; e < experts_; ++e) acc_p_[e] = reduce_add(acc[e]);
    squares_ += reduce_add(squares);
    return reduce_add(entropy_acc);
  }

  // Independent accumulators of draw_across_samples' sums over experts: with one, each
  // loop is a chain of E dependent additions, whose latency costs more than the
  // arithmetic. over_chains runs body(e, e % chains) for e < n.
  static constexpr int chains = 4;
  template <class Body>
  VMOER_ALWAYS_INLINE static void over_chains(Index n, Body&& body) {
    Index e = 0;
    for (; e + chains <= n; e += chains) {
      VMOER_UNROLL(4)
      for (int j = 0; j < chains; ++j) body(e + j, j);
    }
    for (int j = 0; e < n; ++e, ++j) body(e, j);
  }
  // The chains' results joined pairwise: op(op(c0, c1), op(c2, c3)).
  template <class B, class Op>
  VMOER_ALWAYS_INLINE static B combine(const B (&c)[chains], Op op) {
    static_assert(chains == 4);
    return op(op(c[0], c[1]), op(c[2], c[3]));
  }

  // The deterministic counterpart of average_samples (see sampler/moment_matched.hpp):
  // Sigma = A A^T from the factor A, whose columns are L e_j; returns H(p) so that the
  // mutual information is 0.
  T match_moments(const TokenInput<T>& in, bool separate_scores, bool untempered) {
    if constexpr (Posterior::stochastic && !Posterior::weight_space) {
      std::fill(factor_.begin(), factor_.end(), T(0));
      for (Index j = 0; j < noise_; ++j) {
        std::fill(eps_.begin(), eps_.end(), T(0));
        std::fill(z_.begin(), z_.end(), T(0));
        eps_[j] = T(1);
        Posterior::covariance::add_noise(in.scale, eps_.data(), z_.data(), experts_, rank_);
        for (Index e = 0; e < experts_; ++e) factor_[e * noise_ + j] = z_[e];
      }
      for (Index a = 0; a < experts_; ++a)
        for (Index b = 0; b < experts_; ++b) {
          T g = T(0);
          for (Index j = 0; j < noise_; ++j) g += factor_[a * noise_ + j] * factor_[b * noise_ + j];
          sigma_[a * experts_ + b] = g;
        }
    }
    // One evaluation at temperature 1/inv for the scores, one for the gate distribution.
    auto evaluate = [&](const T* inv, T* gate, T* scores) {
      for (Index e = 0; e < experts_; ++e) zt_[e] = in.mu[e] * inv[e];
      if constexpr (Posterior::stochastic && !Posterior::weight_space) {
        tempered_sigma_.resize(sigma_.size());
        for (Index a = 0; a < experts_; ++a)
          for (Index b = 0; b < experts_; ++b)
            tempered_sigma_[std::size_t(a * experts_ + b)] = sigma_[std::size_t(a * experts_ + b)] * inv[a] * inv[b];
      } else {
        tempered_sigma_.assign(std::size_t(experts_ * experts_), T(0));
      }
      if (expansion_ == Expansion::second_order)
        moments::softmax_mean_second_order(zt_.data(), tempered_sigma_.data(), experts_, gate, q_.data());
      else
        moments::softmax_mean_pairwise(zt_.data(), tempered_sigma_.data(), experts_, gate);
      switch (conv_.score) {
        case Score::softmax:
          if (scores != gate) std::copy(gate, gate + experts_, scores);
          break;
        case Score::sigmoid:
          moments::sigmoid_mean(zt_.data(), tempered_sigma_.data(), experts_, scores);
          break;
        case Score::raw:
          std::copy(zt_.data(), zt_.data() + experts_, scores);
          break;
      }
    };
    std::fill(acc_p_.begin(), acc_p_.end(), T(0));
    evaluate(inv_tau_.data(), acc_p_.data(), separate_scores ? acc_q_.data() : acc_p_.data());
    scores_ = weight_scores_ = separate_scores ? acc_q_.data() : acc_p_.data();
    if (untempered) {
      evaluate(ones_.data(), gate_.data(), acc_q1_.data());  // the untempered gate is not used
      weight_scores_ = acc_q1_.data();
    }
    if (aggregate_ == Aggregate::logits) {  // score(mean logits): drop the covariance
      for (Index e = 0; e < experts_; ++e) zt_[e] = in.mu[e] * inv_tau_[e];
      score(zt_.data(), acc_q_.data());
      scores_ = weight_scores_ = acc_q_.data();
      if (untempered) {
        score(in.mu, acc_q1_.data());
        weight_scores_ = acc_q1_.data();
      }
    }
    return entropy(acc_p_.data(), experts_, padded_);
  }

  // Signals, selection and weights from acc_p_, scores_ and weight_scores_.
  void finish(const TokenInput<T>& in, const TokenOutput<T>& out, T entropy_sum, T tau_mean) {
    const T inv_s = T(1) / T(samples_);
    // Signals.
    // With one sample (or the moment-matched mean) H(p) is entropy_sum already.
    const T h = samples_ == 1 ? entropy_sum : entropy(acc_p_.data(), experts_, padded_);
    *out.entropy = h;
    const T mi = h - entropy_sum * inv_s;
    // One sample has no epistemic part: 0 exactly, not the rounding of H(p) - H(p).
    *out.mutual_information = samples_ > 1 && mi > T(0) ? mi : T(0);
    // sum_e Var_s p_s(e) = (sum_s |p_s - c|^2 - S |p - c|^2) / (S - 1) for any c; with c
    // near p the two terms are of the size of the spread, so little cancels.
    T mc = T(0);
    if (samples_ > 1) {  // |p - c|^2 a batch at a time (padded lanes: 0 - 0), not a chain of E additions
      using B = batch<T>;
      B offset(T(0));
      for (Index i = 0; i < padded_; i += Index(B::size)) {
        const B d = B::load_aligned(acc_p_.data() + i) - B::load_aligned(center_.data() + i);
        offset = cpu::fmadd(d, d, offset);
      }
      mc = (squares_ - T(samples_) * reduce_add(offset)) / T(samples_ - 1);
    }
    *out.mc_variance = mc > T(0) ? mc : T(0);
    if constexpr (Posterior::weight_space) {  // no closed form: the sample estimate of tr Cov(z)
      const T mean_scale = aggregate_ == Aggregate::logits ? T(1) : inv_s;  // acc_z_ already averaged for logits
      *out.logit_variance = samples_ > 1 ? sample_variance(acc_z_.data(), acc_z2_.data(), mean_scale) : T(0);
    } else if constexpr (Posterior::stochastic) {
      *out.logit_variance = in.logit_variance;
    } else {
      *out.logit_variance = T(0);
    }
    *out.temperature = tau_mean;

    // Selection and weights.
    if (sampled_)
      selection::sample_top_k(scores_, experts_, conv_.top_k, stream_, in.token, out.ids, keys_.data());
    else
      select_top_k(scores_, bias_.empty() ? nullptr : bias_.data(), experts_, padded_, conv_, out.ids, keys_.data());
    selection::combine_weights(weight_scores_, experts_, out.ids, conv_, out.weights);

    if (out.logits)
      for (Index e = 0; e < experts_; ++e) out.logits[e] = in.mu[e];
    if (out.probs)
      for (Index e = 0; e < experts_; ++e) out.probs[e] = scores_[e];
  }

  // Fills inv_tau_ (padded lanes 1) with a learned temperature and returns the token's
  // mean temperature. A fixed one was filled in by configure().
  T set_temperature(const TokenInput<T>& in) {
    if (!in.tau) return fixed_tau_;
    T sum = T(0);
    for (Index e = 0; e < padded_; ++e) {
      const T t = e < experts_ ? in.tau[in.tau_width > 1 ? e : 0] : T(1);
      inv_tau_[e] = T(1) / t;
      if (e < experts_) sum += t;
    }
    return sum / T(experts_);
  }
  // sum_e of the unbiased variance over samples, from running sums (mean = sum * mean_scale).
  T sample_variance(const T* mean_or_sum, const T* squares, T mean_scale) const {
    T var = T(0);
    for (Index e = 0; e < experts_; ++e) {
      const T m = mean_or_sum[e] * mean_scale;
      const T v = (squares[e] - T(samples_) * m * m) / T(samples_ - 1);
      var += v > T(0) ? v : T(0);
    }
    return var;
  }
  void copy(const T* from, T* to) const {
    for (Index i = 0; i < padded_; ++i) to[i] = from[i];
  }
  void add(const T* x, T* acc) const {
    for (Index i = 0; i < padded_; ++i) acc[i] += x[i];
  }
  void scale_by(T* x, T f) const {
    for (Index i = 0; i < padded_; ++i) x[i] *= f;
  }
  // The convention's score of one logit vector (softmax, sigmoid or the logits).
  void score(const T* z, T* q) {
    switch (conv_.score) {
      case Score::softmax:
        softmax_entropy(z, q, experts_, padded_);
        break;
      case Score::sigmoid:
        sigmoid(z, q, padded_);
        break;
      case Score::raw:
        for (Index i = 0; i < padded_; ++i) q[i] = i < experts_ ? z[i] : T(0);
        break;
    }
  }

  Convention conv_;
  rng::Stream stream_;
  Index experts_ = 0, padded_ = 0, noise_padded_ = 0, rank_ = 0, samples_ = 1;
  Aggregate aggregate_ = Aggregate::probs;
  bool sampled_ = false;
  bool across_samples_ = false;  // draw_across_samples serves this router
  T fixed_tau_ = T(1);
  std::vector<float, xsimd::aligned_allocator<float>> bias_;  // padded to padded_ when set
  buffer arena_;
  Lanes mu_, z_, zt_, p_, q_, acc_p_, center_, gate_, acc_q_, acc_q1_, acc_z_, acc_z2_, inv_tau_, eps_, keys_;
  T squares_ = T(0);  // sum_s |p_s - c|^2, c = center_
  std::vector<std::uint32_t> words_;  // Philox words: Box-Muller first halves, then second halves
  const T* scores_ = nullptr;         // averaged scores used for selection
  const T* weight_scores_ = nullptr;  // averaged scores used for the weights
  Index noise_ = 0;                   // normals per sample (moment matching, draws across samples)
  std::vector<batch<T>, xsimd::aligned_allocator<batch<T>>> sample_lanes_;  // draw_across_samples' arrays
  std::vector<std::uint32_t, xsimd::aligned_allocator<std::uint32_t>> sample_words_;  // ... and Philox words
  Expansion expansion_ = Expansion::second_order;
  std::vector<T> factor_, sigma_, tempered_sigma_, ones_;
};

}  // namespace vmoer::cpu
