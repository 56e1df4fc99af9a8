// The CPU's top-K with its SIMD pre-pass against the shared scalar selection.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <vector>

#include "vmoer/backend/cpu/top_k.hpp"

using namespace vmoer;

namespace {

// Scores at `levels` distinct values in [-0.5, 0.5) (few levels: ties everywhere) and a
// selection bias of 0, 0.25 or 0.5 plus `bias_shift`, both padded to whole batches with
// values above every real key, which must never be picked.
template <class T>
struct RandomKeys {
  Index experts, np;
  std::vector<T, xsimd::aligned_allocator<T>> scores;
  std::vector<float, xsimd::aligned_allocator<float>> bias;
  RandomKeys(Index n, int levels, float bias_shift)
      : experts(n), np(cpu::padded<T>(n)), scores(std::size_t(np), T(5)), bias(std::size_t(np), 7.0f) {
    for (Index e = 0; e < experts; ++e) {
      scores[std::size_t(e)] = T(std::rand() % levels) / T(levels) - T(0.5);
      bias[std::size_t(e)] = float(std::rand() % 3) * 0.25f + bias_shift;
    }
  }
};

// cpu::select_top_k against selection::select_top_k, without and with the bias.
template <class T>
void check_same_selection(const RandomKeys<T>& r, const Convention& c) {
  for (bool with_bias : {false, true}) {
    const float* b = with_bias ? r.bias.data() : nullptr;
    std::vector<std::int32_t> ids(std::size_t(c.top_k)), want_ids(std::size_t(c.top_k));
    std::vector<T> keys(std::size_t(c.top_k)), want_keys(std::size_t(c.top_k));
    cpu::select_top_k(r.scores.data(), b, r.experts, r.np, c, ids.data(), keys.data());
    selection::select_top_k(r.scores.data(), b, r.experts, c, want_ids.data(), want_keys.data());
    CAPTURE(with_bias);
    CHECK(ids == want_ids);
    CHECK(keys == want_keys);
  }
}

}  // namespace

// Both tests run in float only: in double cpu::select_top_k is the scalar selection itself.
TEST_CASE("cpu::select_top_k picks what selection::select_top_k picks, ties included") {
  std::srand(11);
  for (Index experts : {8, 16, 31, 32, 33, 40, 64, 100, 256})  // 8 and 16: one batch, ranked as it is
    for (Index k : {1, 2, 8, 16, 17})
      for (int levels : {4, 40, 1000000}) {  // 4 or 40 distinct values: ties everywhere, or a few
        if (k > experts) continue;
        CAPTURE(experts);
        CAPTURE(k);
        CAPTURE(levels);
        check_same_selection(RandomKeys<float>(experts, levels, 0.0f), Convention{.top_k = k});
      }
}

TEST_CASE("cpu::select_top_k with group-limited selection picks what the scalar selection picks") {
  std::srand(12);
  struct Groups {
    Index experts, n_group, topk_group, k;
  };
  // DeepSeek-V3 (groups of 32), DeepSeek-V2 (of 20, across batch edges), groups smaller than a
  // batch, in several batches or in one, the most groups over the most experts whose lanes the
  // SIMD path masks, and one expert past those (the scalar path).
  for (const Groups g : {Groups{256, 8, 4, 8}, Groups{160, 8, 3, 6}, Groups{64, 16, 3, 4}, Groups{40, 5, 2, 8},
                         Groups{16, 4, 2, 4}, Groups{1024, 64, 5, 8}, Groups{1025, 5, 2, 8}})
    for (int levels : {4, 40, 1000000})
      for (GroupScore score : {GroupScore::max, GroupScore::top2_sum})
        for (double mask : {-double(INFINITY), 0.0}) {  // 0: transformers' DeepSeek masks dropped groups with zeros
          CAPTURE(g.experts);
          CAPTURE(g.n_group);
          CAPTURE(levels);
          CAPTURE(int(score));
          CAPTURE(mask);
          check_same_selection(RandomKeys<float>(g.experts, levels, -0.25f),
                               Convention{.top_k = g.k, .n_group = g.n_group, .topk_group = g.topk_group,
                                          .group_score = score, .group_mask = mask});
        }
}
