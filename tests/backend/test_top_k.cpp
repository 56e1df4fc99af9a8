// The CPU's top-K with its SIMD pre-pass against the shared scalar selection.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <vector>

#include "vmoer/backend/cpu/top_k.hpp"

using namespace vmoer;

TEST_CASE_TEMPLATE("cpu::select_top_k picks what selection::select_top_k picks, ties included", T, float, double) {
  using buffer = std::vector<T, xsimd::aligned_allocator<T>>;
  std::srand(11);
  for (Index experts : {8, 31, 32, 33, 40, 64, 100, 256})
    for (Index k : {1, 2, 8, 16, 17})
      for (int levels : {4, 40, 1000000}) {  // 4 or 40 distinct values: ties everywhere, or a few
        if (k > experts) continue;
        const Index np = cpu::padded<T>(experts);
        // Padding deliberately above every real key: it must never be picked.
        buffer scores(static_cast<std::size_t>(np), T(5));
        std::vector<float, xsimd::aligned_allocator<float>> bias(static_cast<std::size_t>(np), 7.0f);
        for (Index e = 0; e < experts; ++e) {
          scores[std::size_t(e)] = T(std::rand() % levels) / T(levels) - T(0.5);
          bias[std::size_t(e)] = float(std::rand() % 3) * 0.25f;
        }
        for (bool with_bias : {false, true}) {
          const Convention c{.top_k = k};
          const float* b = with_bias ? bias.data() : nullptr;
          std::vector<std::int32_t> ids(static_cast<std::size_t>(k)), want_ids(static_cast<std::size_t>(k));
          std::vector<T> keys(static_cast<std::size_t>(k)), want_keys(static_cast<std::size_t>(k));
          cpu::select_top_k(scores.data(), b, experts, np, c, ids.data(), keys.data());
          selection::select_top_k(scores.data(), b, experts, c, want_ids.data(), want_keys.data());
          CAPTURE(experts);
          CAPTURE(k);
          CAPTURE(levels);
          CAPTURE(with_bias);
          CHECK(ids == want_ids);
          CHECK(keys == want_keys);
        }
      }
}

TEST_CASE_TEMPLATE("cpu::select_top_k with group-limited selection picks what the scalar selection picks", T, float,
                   double) {
  using buffer = std::vector<T, xsimd::aligned_allocator<T>>;
  std::srand(12);
  struct Groups {
    Index experts, n_group, topk_group, k;
  };
  // DeepSeek-V3 (groups of 32), DeepSeek-V2 (of 20, across batch edges), and groups smaller than a batch.
  for (const Groups g : {Groups{256, 8, 4, 8}, Groups{160, 8, 3, 6}, Groups{64, 16, 3, 4}, Groups{40, 5, 2, 8}})
    for (int levels : {4, 40, 1000000})
      for (GroupScore score : {GroupScore::max, GroupScore::top2_sum})
        for (double mask : {-double(INFINITY), 0.0}) {  // 0: transformers' DeepSeek masks dropped groups with zeros
          const Index np = cpu::padded<T>(g.experts);
          buffer scores(static_cast<std::size_t>(np), T(5));
          std::vector<float, xsimd::aligned_allocator<float>> bias(static_cast<std::size_t>(np), 7.0f);
          for (Index e = 0; e < g.experts; ++e) {
            scores[std::size_t(e)] = T(std::rand() % levels) / T(levels) - T(0.5);
            bias[std::size_t(e)] = float(std::rand() % 3) * 0.25f - 0.25f;
          }
          for (bool with_bias : {false, true}) {
            const Convention c{.top_k = g.k, .n_group = g.n_group, .topk_group = g.topk_group, .group_score = score,
                               .group_mask = mask};
            const float* b = with_bias ? bias.data() : nullptr;
            std::vector<std::int32_t> ids(static_cast<std::size_t>(g.k)), want_ids(static_cast<std::size_t>(g.k));
            std::vector<T> keys(static_cast<std::size_t>(g.k)), want_keys(static_cast<std::size_t>(g.k));
            cpu::select_top_k(scores.data(), b, g.experts, np, c, ids.data(), keys.data());
            selection::select_top_k(scores.data(), b, g.experts, c, want_ids.data(), want_keys.data());
            CAPTURE(g.experts);
            CAPTURE(g.n_group);
            CAPTURE(levels);
            CAPTURE(int(score));
            CAPTURE(mask);
            CAPTURE(with_bias);
            CHECK(ids == want_ids);
            CHECK(keys == want_keys);
          }
        }
}
