// Every family preset against the double-precision transcription of its transformers
// source (hf_reference.hpp), on random routers at D = 64 and D = 2048, and on the tie
// and edge cases: equal logits, zero logits, PhiMoE's jitter window, dropped groups
// under a negative correction bias, ERNIE's clamp, DBRX's p.
#include <algorithm>
#include <random>
#include <utility>
#include <vector>

#include <doctest/doctest.h>

#include "hf_reference.hpp"
#include "vmoer/models/families.hpp"
#include "vmoer/models/load.hpp"

using namespace vmoer;
using models::Family;
using models::Settings;

namespace {

/// A family with its settings and the sizes of a random router.
struct Case {
  Family family;
  Index experts;
  Settings settings;
  double correction_mean = 0.0;  ///< mean of the random correction bias, where the family has one
};

Settings with(Family f, auto&& change) {
  Settings s = models::default_settings(f);
  change(s);
  return s;
}

std::vector<Case> cases() {
  std::vector<Case> c;
  const auto k = [](Index top_k) { return [top_k](Settings& s) { s.top_k = top_k; }; };
  c.push_back({Family::mixtral, 8, with(Family::mixtral, k(2))});
  c.push_back({Family::qwen2_moe, 60, with(Family::qwen2_moe, k(4))});
  c.push_back({Family::qwen3_moe, 128, with(Family::qwen3_moe, [](Settings& s) { s.norm_topk_prob = true; })});
  c.push_back({Family::olmoe, 64, with(Family::olmoe, k(8))});
  c.push_back({Family::granitemoe, 40, with(Family::granitemoe, k(8))});
  c.push_back({Family::granitemoeshared, 32, with(Family::granitemoeshared, k(4))});
  c.push_back({Family::granitemoehybrid, 62, with(Family::granitemoehybrid, k(6))});
  c.push_back({Family::jetmoe, 8, with(Family::jetmoe, k(2))});
  c.push_back({Family::jamba, 16, with(Family::jamba, k(2))});
  c.push_back({Family::dbrx, 16, with(Family::dbrx, k(4))});
  c.push_back({Family::dbrx, 16, with(Family::dbrx, [](Settings& s) { s.top_k = 4, s.norm_p = 2.0; })});
  c.push_back({Family::dbrx, 16, with(Family::dbrx, [](Settings& s) { s.top_k = 4, s.norm_p = std::nullopt; })});
  c.push_back({Family::deepseek_v2, 64, with(Family::deepseek_v2, [](Settings& s) { s.scaling = 16.0; })});
  c.push_back({Family::deepseek_v2, 160, with(Family::deepseek_v2, [](Settings& s) {
                 s.n_group = 8, s.topk_group = 3, s.scaling = 16.0;
               })});
  c.push_back({Family::deepseek_v3, 256, models::default_settings(Family::deepseek_v3)});
  c.push_back({Family::deepseek_v3, 256, models::default_settings(Family::deepseek_v3), -2.0});  // -inf mask matters
  c.push_back({Family::deepseek_v3, 64, with(Family::deepseek_v3, [](Settings& s) {
                 s.norm_topk_prob = false, s.n_group = 4, s.topk_group = 2, s.top_k = 6;
               })});
  c.push_back({Family::glm4_moe, 128, models::default_settings(Family::glm4_moe)});
  c.push_back({Family::glm4_moe, 160, with(Family::glm4_moe, [](Settings& s) { s.n_group = 8, s.topk_group = 2, s.scaling = 2.5; })});
  c.push_back({Family::minimax_m2, 256, models::default_settings(Family::minimax_m2)});
  c.push_back({Family::ernie4_5_moe, 64, models::default_settings(Family::ernie4_5_moe)});
  c.push_back({Family::ernie4_5_moe, 64, with(Family::ernie4_5_moe, [](Settings& s) { s.top_k = 2, s.norm_min = 0.9; })});
  c.push_back({Family::hunyuan_v1_moe, 64, with(Family::hunyuan_v1_moe, k(8))});
  c.push_back({Family::gpt_oss, 32, models::default_settings(Family::gpt_oss)});
  c.push_back({Family::llama4, 16, models::default_settings(Family::llama4)});
  c.push_back({Family::llama4, 128, with(Family::llama4, k(4))});
  c.push_back({Family::phimoe, 16, models::default_settings(Family::phimoe)});
  c.push_back({Family::phimoe, 16, with(Family::phimoe, [](Settings& s) { s.jitter_eps = 0.2; })});  // wide windows
  c.push_back({Family::phimoe, 16, with(Family::phimoe, [](Settings& s) { s.jitter_eps = 0.0; })});
  return c;
}

bool has_correction(Family f) {
  return f == Family::deepseek_v3 || f == Family::glm4_moe || f == Family::minimax_m2 || f == Family::ernie4_5_moe;
}

/// (id, weight) pairs of a row, sorted by id: the order-free form both sides are compared in.
std::vector<std::pair<int, double>> by_id(const std::vector<int>& ids, const std::vector<double>& w) {
  std::vector<std::pair<int, double>> out;
  for (std::size_t i = 0; i < ids.size(); ++i) out.emplace_back(ids[i], w[i]);
  std::sort(out.begin(), out.end());
  return out;
}

/// A router of the case's family with random N(0, 1/D) weights (and biases), as T.
template <class T>
models::LayerRouter<T> random_router(const Case& c, Index dim, std::uint64_t seed) {
  std::mt19937_64 g(seed);
  std::normal_distribution<double> n(0, 1);
  models::LayerRouter<T> r;
  r.convention = models::convention(c.family, c.settings);
  r.weight.resize(c.experts, dim);
  for (Index i = 0; i < r.weight.size(); ++i) r.weight.data()[i] = T(n(g) / std::sqrt(double(dim)));
  if (c.family == Family::gpt_oss) {
    r.bias.resize(c.experts);
    for (Index i = 0; i < c.experts; ++i) r.bias[i] = T(0.5 * n(g));
  }
  if (has_correction(c.family))
    for (Index i = 0; i < c.experts; ++i) r.correction_bias.push_back(float(c.correction_mean + 0.05 * n(g)));
  return r;
}

Matrix<double> random_hidden(Index tokens, Index dim, std::uint64_t seed) {
  std::mt19937_64 g(seed);
  std::normal_distribution<double> n(0, 1);
  Matrix<double> x(tokens, dim);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = n(g);
  return x;
}

/// Routes `x` with the library in T and checks every token against the reference:
/// logits against the double projection, and ids (exactly) and weights (to `tol`
/// relative) against the reference routing of the library's own logits in T, and in
/// double also of the reference's own logits.
template <class T>
void check(const Case& c, const models::LayerRouter<T>& r, const Matrix<double>& x, double tol) {
  const Routing<T> out = r.dirac().route(x.cast<T>().eval(), {.keep_logits = true});
  const hf::vec correction(r.correction_bias.begin(), r.correction_bias.end());
  for (Index t = 0; t < x.rows(); ++t) {
    CAPTURE(t);
    hf::vec exact(std::size_t(c.experts)), library(std::size_t(c.experts));
    for (Index e = 0; e < c.experts; ++e) {
      double s = r.bias.size() ? double(r.bias[e]) : 0.0, magnitude = std::abs(s);
      for (Index d = 0; d < x.cols(); ++d) {
        const double term = double(r.weight(e, d)) * double(T(x(t, d)));
        s += term;
        magnitude += std::abs(term);
      }
      exact[std::size_t(e)] = s;
      library[std::size_t(e)] = double(out.logits(t, e));
      REQUIRE(std::abs(library[std::size_t(e)] - s) <= tol * magnitude);
    }
    std::vector<int> ids;
    std::vector<double> weights;
    for (Index i = 0; i < c.settings.top_k; ++i) {
      ids.push_back(out.ids(t, i));
      weights.push_back(double(out.weights(t, i)));
    }
    const auto got = by_id(ids, weights);
    std::vector<hf::vec> sources{library};
    if (std::is_same_v<T, double>) sources.push_back(exact);
    for (const hf::vec& logits : sources) {
      const hf::Routed want = hf::route(c.family, c.settings, logits, correction);
      const auto expected = by_id(want.ids, want.weights);
      REQUIRE(got.size() == expected.size());
      for (std::size_t i = 0; i < got.size(); ++i) {
        CAPTURE(i);
        REQUIRE(got[i].first == expected[i].first);
        CHECK(std::abs(got[i].second - expected[i].second) <= tol * std::abs(expected[i].second) + 1e-300);
      }
    }
  }
}

template <class T>
constexpr double tolerance() {
  return std::is_same_v<T, float> ? 1e-5 : 1e-12;
}

}  // namespace

TEST_CASE_TEMPLATE("every family matches its transformers source on random routers", T, float, double) {
  std::uint64_t seed = 1;
  for (const Case& c : cases()) {
    for (const Index dim : {Index(64), Index(2048)}) {
      CAPTURE(models::name(c.family));
      CAPTURE(dim);
      CAPTURE(c.settings.top_k);
      const models::LayerRouter<T> r = random_router<T>(c, dim, ++seed);
      check(c, r, random_hidden(64, dim, ++seed), tolerance<T>());
    }
  }
}

TEST_CASE_TEMPLATE("ties go to the lower expert id in every family, as torch.topk and Tensor.max break them", T, float,
                   double) {
  for (const Case& c : cases()) {
    CAPTURE(models::name(c.family));
    // Equal rows give equal logits: every selection and group choice is a tie.
    models::LayerRouter<T> r = random_router<T>(c, 16, 3);
    for (Index e = 1; e < c.experts; ++e) r.weight.row(e) = r.weight.row(0);
    r.bias.setZero();
    std::fill(r.correction_bias.begin(), r.correction_bias.end(), 0.0f);
    check(c, r, random_hidden(8, 16, 4), tolerance<T>());
    // Zero hidden states give logits of exactly 0: PhiMoE's window test divides 0 by 0.
    check(c, r, Matrix<double>::Zero(2, 16), tolerance<T>());
  }
}

TEST_CASE_TEMPLATE("PhiMoE's sparsemixer windows: negative maxima, the window edge and a lone maximum", T, float,
                   double) {
  // D = 1 and hidden = 1, so that the weight column is the logits.
  const std::vector<std::vector<double>> rows{
      {-1.0, -1.01, -1.03, -5.0, -1.02, -0.99},  // negative max: factor |s| > max
      {2.0, 1.97, 1.95, 1.90, 0.0, -3.0},        // window 0.02 relative to the max
      {8.0, 1.0, 0.5, 0.25, 0.125, 0.0},         // lone maximum: weight 1
      {0.0, 0.0, -0.01, 0.3, 0.3, 0.299},        // ties at the max, then the second pass
  };
  for (const double eps : {0.01, 0.02, 0.0}) {
    CAPTURE(eps);
    const Case c{Family::phimoe, 6, with(Family::phimoe, [eps](Settings& s) { s.jitter_eps = eps; })};
    for (const auto& row : rows) {
      models::LayerRouter<T> r;
      r.convention = models::convention(c.family, c.settings);
      r.weight.resize(6, 1);
      for (Index e = 0; e < 6; ++e) r.weight(e, 0) = T(row[std::size_t(e)]);
      check(c, r, Matrix<double>::Ones(1, 1), tolerance<T>());
    }
  }
}

TEST_CASE("family names round-trip and unknown settings are refused") {
  for (const models::FamilyInfo& f : models::all_families()) {
    CHECK(models::family_from_name(f.name) == f.family);
    CHECK(models::info(f.family).name == f.name);
    CHECK_FALSE(f.weight[0].empty());
  }
  CHECK_THROWS_WITH_AS(models::family_from_name("mixtral2"), doctest::Contains("unknown family 'mixtral2'"),
                       invalid_argument);
  CHECK_THROWS_WITH_AS(models::convention(Family::phimoe, with(Family::phimoe, [](Settings& s) { s.top_k = 3; })),
                       doctest::Contains("exactly 2 experts"), invalid_argument);
  CHECK_THROWS_WITH_AS(models::convention(Family::dbrx, with(Family::dbrx, [](Settings& s) { s.norm_p = 0.0; })),
                       doctest::Contains("moe_normalize_expert_weights"), invalid_argument);
  CHECK_THROWS_WITH_AS(models::convention(Family::deepseek_v3, with(Family::deepseek_v3, [](Settings& s) { s.topk_group = 9; })),
                       doctest::Contains("topk_group"), invalid_argument);
  CHECK_THROWS_AS(models::convention(Family::mixtral, with(Family::mixtral, [](Settings& s) { s.top_k = 0; })),
                  invalid_argument);
}
