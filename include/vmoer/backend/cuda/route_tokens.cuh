// The fused routing kernel: one warp per token runs the whole per-token path of
// backend/cpu/token_pipeline.hpp in registers: S samples z_s = mu + L eps_s from the
// Philox stream, softmax and score of each, their average, the uncertainty signals,
// top-K selection and the combine weights.
//
// Layout: lane l holds experts 128 j + 4 l + c (chunk j < Chunks, c < 4), so the four
// normals of one Philox block (rng::normals) land on the lane that adds them, and no
// draw is computed twice. E <= 128 Chunks <= 512.
//
// Shared per-token code reused here: Philox and Box-Muller (rng/), the diagonal noise
// (Diagonal::add_noise on a lane's four experts), Cholesky::column, the selection key
// (selection::biased, group masking by selection::kept_groups), the top-K insertion
// (selection::insert_top, per lane) and selection::combine_weights. The per-lane lists
// are merged by K rounds of a warp arg-max with the same order (key descending, lower
// id first), which yields exactly select_top_k's list.
#pragma once

#include <cstdint>
#include <type_traits>

#include "vmoer/backend/cuda/warp.cuh"
#include "vmoer/posterior/cholesky.hpp"
#include "vmoer/posterior/diagonal.hpp"
#include "vmoer/posterior/low_rank.hpp"
#include "vmoer/rng/normal.hpp"
#include "vmoer/sampler/aggregate.hpp"
#include "vmoer/selector/select.hpp"

namespace vmoer::cuda {

/// Where one route() call writes, all device memory. Row-major, token t's row first.
/// Optional outputs may be null; ids and weights are required.
struct DeviceRouting {
  std::int32_t* ids = nullptr;            ///< [T, K] chosen experts, by descending selection key
  float* weights = nullptr;               ///< [T, K] combine weights aligned with ids
  float* logit_variance = nullptr;        ///< [T] tr(Sigma), or null
  float* mc_variance = nullptr;           ///< [T] total MC variance of the gate, or null
  float* entropy = nullptr;               ///< [T] entropy of the averaged gate, or null
  float* mutual_information = nullptr;    ///< [T] epistemic part of the entropy, or null
  float* temperature = nullptr;           ///< [T] the token's temperature (1 for TopK), or null
  float* logits = nullptr;                ///< [T, E] mean logits; required with RouteOptions::keep_logits
  float* probs = nullptr;                 ///< [T, E] averaged scores; required with RouteOptions::keep_probs
  /// Count of tokens whose logits or posterior scale were not finite; set to 0 by route()
  /// and incremented by the kernel. Such a token's ids are -1 and its weights and
  /// signals NaN. May be null (then nothing counts them).
  unsigned int* non_finite = nullptr;
};

namespace detail {

/// The covariance policy of a point mass: no noise, no scale head.
struct NoNoise {};

/// Experts per chunk: 32 lanes of 4 consecutive experts, one Philox block per lane.
inline constexpr Index chunk_experts = 128;
/// Largest E: four chunks keep a lane's 16 experts (times six arrays) in registers.
inline constexpr Index max_experts = 4 * chunk_experts;
/// Largest K: the merged ids of one token fit one warp, a lane each.
inline constexpr Index max_top_k = 32;
/// Tokens (warps) per block of the routing kernel.
inline constexpr int route_warps = 4;

/// Shared floats one warp uses: the averaged scores and, for Cholesky, the normals.
VMOER_HOST_DEVICE constexpr Index shared_floats(Index experts, bool cholesky) {
  return (cholesky ? 2 : 1) * ((experts + 31) / 32 * 32);
}

/// One token group's inputs, sizes and outputs.
struct TokenBatch {
  const float* base = nullptr;  ///< [T, *] row t starts with W u + b, row stride ld_base
  Index ld_base = 0;            ///< row stride of base
  const float* head = nullptr;  ///< [T, E + P] mean residual and raw scale head (null for Dirac)
  Index ld_head = 0;            ///< row stride of head
  Index tokens = 0;             ///< T
  Index experts = 0;            ///< E
  Index rank = 0;               ///< r of a low-rank posterior
  Index samples = 1;            ///< S (1 without noise)
  std::uint32_t token_offset = 0;  ///< RNG coordinate of token 0
  rng::Stream stream{};         ///< seed and layer
  Convention conv{};            ///< selection convention
  Aggregate aggregate = Aggregate::probs;  ///< average of scores or of logits
  const float* bias = nullptr;  ///< [E] selection bias, or null
  bool keep_logits = false;     ///< write out.logits
  bool keep_probs = false;      ///< write out.probs
  DeviceRouting out{};          ///< results
};

__device__ inline Index lane_expert(int q, int lane) { return Index(q / 4) * chunk_experts + 4 * lane + q % 4; }

/// p = softmax(z) over a warp's N-per-lane entries (-inf beyond E); returns H(p).
template <int N>
__device__ inline float softmax_entropy(const float (&z)[N], float (&p)[N], int lane, Index experts) {
  float m = -INFINITY;
#pragma unroll
  for (int q = 0; q < N; ++q) m = fmaxf(m, z[q]);
  m = warp_max(m);
  float sum = 0.f;
#pragma unroll
  for (int q = 0; q < N; ++q) sum += (p[q] = expf(z[q] - m));
  const float total = warp_sum(sum), inv = 1.f / total;
  float weighted = 0.f;  // sum p (z - max) over the real experts (0 * -inf is NaN beyond E)
#pragma unroll
  for (int q = 0; q < N; ++q) {
    p[q] *= inv;
    if (lane_expert(q, lane) < experts) weighted += p[q] * (z[q] - m);
  }
  return logf(total) - warp_sum(weighted);
}

/// The convention's elementwise score (softmax is taken over the warp, not here).
__device__ inline float elementwise_score(Score s, float z) { return s == Score::sigmoid ? 1.f / (1.f + expf(-z)) : z; }

/// score(z) of one logit vector into q.
template <int N>
__device__ inline void score_vector(Score s, const float (&z)[N], float (&q)[N], int lane, Index experts) {
  if (s == Score::softmax) {
    softmax_entropy(z, q, lane, experts);
  } else {
#pragma unroll
    for (int i = 0; i < N; ++i) q[i] = lane_expert(i, lane) < experts ? elementwise_score(s, z[i]) : 0.f;
  }
}

/// Adds L eps_s to a lane's logits z for sample s of token `token`.
template <class Cov, int N>
__device__ inline void add_noise(const TokenBatch& b, const float* scale, const float (&sd)[N], float* eps_shared,
                                 std::uint32_t token, std::uint32_t s, int lane, float (&z)[N]) {
  const Index experts = b.experts;
#pragma unroll
  for (int j = 0; j < N / 4; ++j) {  // the diagonal part, one Philox block per lane and chunk
    const Index e0 = Index(j) * chunk_experts + 4 * lane;
    if (e0 >= experts) continue;
    float eps[4];
    rng::normals4(b.stream.block(rng::Purpose::logit_noise, token, s, std::uint32_t(e0 / 4)), eps);
    Diagonal::add_noise(sd + 4 * j, eps, z + 4 * j, 4, 0);  // beyond E: sd = 0 and z = -inf stays
    if constexpr (std::is_same_v<Cov, Cholesky>)
      for (int c = 0; c < 4 && e0 + c < experts; ++c) eps_shared[e0 + c] = eps[c];
  }
  if constexpr (std::is_same_v<Cov, LowRankDiagonal>) {  // V eps[E : E + r]; every lane draws the r normals
    const Index rank = b.rank;
    for (Index block = experts / 4; 4 * block < experts + rank; ++block) {
      float eps[4];
      rng::normals4(b.stream.block(rng::Purpose::logit_noise, token, s, std::uint32_t(block)), eps);
      for (int c = 0; c < 4; ++c) {
        const Index k = 4 * block + c - experts;
        if (k < 0 || k >= rank) continue;
        const float* column = scale + experts * (1 + k);  // V[:, k]
#pragma unroll
        for (int q = 0; q < N; ++q) {
          const Index e = lane_expert(q, lane);
          if (e < experts) z[q] = fmaf(column[e], eps[c], z[q]);
        }
      }
    }
  }
  if constexpr (std::is_same_v<Cov, Cholesky>) {  // the strictly lower part of L eps
    __syncwarp();
#pragma unroll
    for (int q = 0; q < N; ++q) {
      const Index i = lane_expert(q, lane);
      if (i >= experts) continue;
      for (Index j = 0; j < i; ++j) z[q] = fmaf(scale[Cholesky::column(experts, j) - (j + 1) + i], eps_shared[j], z[q]);
    }
    __syncwarp();  // the next sample overwrites eps_shared
  }
}

/// A token whose logits or scale are not finite: ids -1, everything else NaN, counted.
template <int N>
__device__ inline void fail_token(const TokenBatch& b, Index t, int lane) {
  const Index k = b.conv.top_k, experts = b.experts;
  const DeviceRouting& o = b.out;
  if (lane < k) {
    o.ids[t * k + lane] = -1;
    o.weights[t * k + lane] = NAN;
  }
  for (int q = 0; q < N; ++q) {
    const Index e = lane_expert(q, lane);
    if (e >= experts) continue;
    if (b.keep_logits) o.logits[t * experts + e] = NAN;
    if (b.keep_probs) o.probs[t * experts + e] = NAN;
  }
  if (lane == 0) {
    for (float* signal : {o.logit_variance, o.mc_variance, o.entropy, o.mutual_information, o.temperature})
      if (signal) signal[t] = NAN;
    if (o.non_finite) atomicAdd(o.non_finite, 1u);
  }
}

/// Routes the tokens of `b`, one per warp. Cov: NoNoise, Diagonal, LowRankDiagonal or
/// Cholesky; Draws: whether samples carry noise (MonteCarlo) or are the mean (MeanOnly).
template <class Cov, bool Draws, int Chunks>
__global__ void __launch_bounds__(route_warps * 32) route_tokens(TokenBatch b) {
  constexpr int N = 4 * Chunks;
  constexpr bool gaussian = !std::is_same_v<Cov, NoNoise>;
  extern __shared__ float shared[];
  const int lane = int(threadIdx.x) % 32, warp = int(threadIdx.x) / 32;
  const Index t = Index(blockIdx.x) * route_warps + warp;
  if (t >= b.tokens) return;  // whole warps leave; the kernel has no block-wide barrier
  const Index experts = b.experts, k = b.conv.top_k;
  float* scores = shared + warp * shared_floats(experts, std::is_same_v<Cov, Cholesky>);
  float* eps_shared = scores + shared_floats(experts, false);
  const std::uint32_t token = b.token_offset + std::uint32_t(t);
  const float* base = b.base + t * b.ld_base;
  const float* head = gaussian ? b.head + t * b.ld_head : nullptr;
  const float* scale = gaussian ? head + experts : nullptr;  // the scale head; its first E entries are log-variances

  // The posterior mean and standard deviations; checks that both are finite.
  float mu[N], sd[N];
  bool finite = true;
#pragma unroll
  for (int q = 0; q < N; ++q) {
    const Index e = lane_expert(q, lane);
    mu[q] = -INFINITY;
    sd[q] = 0.f;
    if (e < experts) {
      mu[q] = base[e] + (gaussian ? head[e] : 0.f);
      if constexpr (gaussian) sd[q] = expf(0.5f * scale[e]);
      finite = finite && isfinite(mu[q]);
    }
  }
  // tr(Sigma): for every covariance policy the squared Frobenius norm of its finalised
  // head (their trace()), summed across the warp here.
  float trace = 0.f;
  if constexpr (gaussian) {
    const Index head_size = Cov::head_size(experts, b.rank);
    for (Index i = lane; i < head_size; i += 32) {
      const float s = i < experts ? expf(0.5f * scale[i]) : scale[i];
      trace = fmaf(s, s, trace);
    }
    trace = warp_sum(trace);
    finite = finite && isfinite(trace);
  }
  if (!__all_sync(full_mask, finite)) {
    fail_token<N>(b, t, lane);
    return;
  }

  // The S samples: gate distributions, their sums and the aggregated scores.
  const Score score_kind = b.conv.score;
  const bool by_logits = b.aggregate == Aggregate::logits, separate = score_kind != Score::softmax;
  float acc_p[N], acc_q[N];  // acc_q: sum of scores (separate) or of logits (by_logits)
#pragma unroll
  for (int q = 0; q < N; ++q) acc_p[q] = acc_q[q] = 0.f;
  float entropy_sum = 0.f, squares = 0.f;  // squares: this lane's part of sum_s |p_s - c|^2
  const Index samples = Draws && gaussian ? b.samples : 1;
  float center[N] = {};  // c = softmax(mu), near the mean gate distribution (see mc_variance below)
  if (samples > 1) softmax_entropy(mu, center, lane, experts);  // warp-uniform: S is the batch's
  for (Index s = 0; s < samples; ++s) {
    float z[N], p[N];
#pragma unroll
    for (int q = 0; q < N; ++q) z[q] = mu[q];
    if constexpr (gaussian && Draws) add_noise<Cov>(b, scale, sd, eps_shared, token, std::uint32_t(s), lane, z);
    entropy_sum += softmax_entropy(z, p, lane, experts);
#pragma unroll
    for (int q = 0; q < N; ++q) {
      acc_p[q] += p[q];
      const float d = p[q] - center[q];
      squares = fmaf(d, d, squares);
      if (lane_expert(q, lane) < experts) {
        if (by_logits)
          acc_q[q] += z[q];
        else if (separate)
          acc_q[q] += elementwise_score(score_kind, z[q]);
      }
    }
  }
  const float inv_s = 1.f / float(samples);
  float score[N];
  if (by_logits) {
    float mean_z[N];
#pragma unroll
    for (int q = 0; q < N; ++q) mean_z[q] = lane_expert(q, lane) < experts ? acc_q[q] * inv_s : -INFINITY;
    score_vector(score_kind, mean_z, score, lane, experts);
  } else {
#pragma unroll
    for (int q = 0; q < N; ++q) score[q] = (separate ? acc_q[q] : acc_p[q]) * inv_s;
  }

  // Signals from the mean gate distribution.
  // mc_variance = sum_e Var_s p_s(e) = (sum_s |p_s - c|^2 - S |p - c|^2) / (S - 1), as on
  // the CPU: with c near p, little cancels.
  float h = 0.f, offset = 0.f;
#pragma unroll
  for (int q = 0; q < N; ++q) {
    if (lane_expert(q, lane) >= experts) continue;
    const float m = acc_p[q] * inv_s;
    if (m > 0.f) h -= m * logf(m);
    offset = fmaf(m - center[q], m - center[q], offset);
  }
  h = warp_sum(h);
  const float spread = warp_sum(squares) - float(samples) * warp_sum(offset);
  const float mc = samples > 1 && spread > 0.f ? spread / float(samples - 1) : 0.f;
  const DeviceRouting& o = b.out;
  if (lane == 0) {
    const float mi = h - entropy_sum * inv_s;
    if (o.logit_variance) o.logit_variance[t] = trace;
    if (o.mc_variance) o.mc_variance[t] = mc;
    if (o.entropy) o.entropy[t] = h;
    if (o.mutual_information) o.mutual_information[t] = mi > 0.f ? mi : 0.f;
    if (o.temperature) o.temperature[t] = 1.f;
  }

  // Selection: per-lane top lists by insert_top, merged across the warp.
#pragma unroll
  for (int q = 0; q < N; ++q) {
    const Index e = lane_expert(q, lane);
    if (e < experts) scores[e] = score[q];
  }
  __syncwarp();
  std::uint64_t kept = ~std::uint64_t(0);
  if (b.conv.n_group > 1) {
    if (lane == 0) kept = selection::kept_groups(scores, b.bias, experts, b.conv);
    kept = __shfl_sync(full_mask, static_cast<unsigned long long>(kept), 0);
  }
  const Index group = experts / b.conv.n_group;
  const float mask = float(b.conv.group_mask);
  float keys[N];
  std::int32_t ids[N];
  Index count = 0;
  const Index capacity = k < N ? k : N;
#pragma unroll
  for (int q = 0; q < N; ++q) {
    const Index e = lane_expert(q, lane);
    if (e >= experts) continue;
    const float key = (kept >> (e / group)) & 1u ? selection::biased(scores, b.bias, e) : mask;
    selection::insert_top(key, std::int32_t(e), keys, ids, count, capacity);
  }
  std::int32_t chosen[max_top_k];  // lane 0's copy of the merged ids, for combine_weights
  std::int32_t mine = -1;          // lane r keeps the r-th id
  Index next = 0;
  for (Index r = 0; r < k; ++r) {
    int has = next < count;
    float key = has ? keys[next] : 0.f;
    std::int32_t id = has ? ids[next] : INT32_MAX;
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) {
      const int other_has = __shfl_xor_sync(full_mask, has, offset);
      const float other_key = __shfl_xor_sync(full_mask, key, offset);
      const std::int32_t other_id = __shfl_xor_sync(full_mask, id, offset);
      if (other_has && (!has || other_key > key || (other_key == key && other_id < id))) {
        has = 1;
        key = other_key;
        id = other_id;
      }
    }
    if (next < count && ids[next] == id) ++next;
    if (lane == r) mine = id;
    if (lane == 0) chosen[r] = id;
  }
  if (lane < k) o.ids[t * k + lane] = mine;
  if (lane == 0) selection::combine_weights(scores, experts, chosen, b.conv, o.weights + t * k);

#pragma unroll
  for (int q = 0; q < N; ++q) {
    const Index e = lane_expert(q, lane);
    if (e >= experts) continue;
    if (b.keep_logits) o.logits[t * experts + e] = mu[q];
    if (b.keep_probs) o.probs[t * experts + e] = score[q];
  }
}

}  // namespace detail
}  // namespace vmoer::cuda
