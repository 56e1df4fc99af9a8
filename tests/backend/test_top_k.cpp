// The CPU's top-K with its SIMD pre-pass against the shared scalar selection.
#include <doctest/doctest.h>

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
