// FLOP counts against hand-expanded sums of the documented rules, and shapes read
// from real routers.
#include <doctest/doctest.h>

#include "vmoer/analysis/flops.hpp"
#include "vmoer/vmoer.hpp"

using namespace vmoer;
using namespace vmoer::analysis;

namespace {
constexpr Index D = 4, E = 3, K = 2;
const Convention conv{.top_k = K};
Matrix<float> weight() { return Matrix<float>::Ones(E, D); }
}  // namespace

TEST_CASE("the deterministic router: projection, one softmax, top-K") {
  const Router r(Dirac<float>(weight()), MeanOnly{}, TopK{conv});
  const RouterShape s = shape_of(r);
  CHECK(s.dim == D);
  CHECK(s.experts == E);
  CHECK(s.samples == 1);
  CHECK(s.noise == 0);
  CHECK(!s.tempered);
  const RouterFlops f = router_flops(s);
  CHECK(f.projection == 2 * 4 * 3);
  CHECK(f.encoder == 0);
  CHECK(f.sampling == 10 * 3);     // softmax with entropy and moments of one sample
  CHECK(f.selection == 9 + 2 * 3);  // entropy of the mean, combine weights
  CHECK(f.total() == 24 + 30 + 15);
}

TEST_CASE("a Monte-Carlo sampler over a point mass draws one sample") {
  const Router r(Dirac<float>(weight()), MonteCarlo{.samples = 9}, TopK{conv});
  CHECK(shape_of(r).samples == 1);
}

TEST_CASE("mean-field with S = 5: encoder, noise and the scale of each sample") {
  const Router r(MeanField<float>(weight(), {}, {.hidden = 6}), MonteCarlo{.samples = 5}, TopK{conv});
  const RouterShape s = shape_of(r);
  CHECK(s.hidden == 6);
  CHECK(s.head == 3);
  CHECK(s.noise == 3);
  CHECK(s.samples == 5);
  const RouterFlops f = router_flops(s);
  CHECK(f.encoder == 2 * 4 * 6 + 2 * 6 * (3 + 3) + 3);  // 123
  CHECK(f.sampling == 5 * (4 * 3 + 2 * 3 + 10 * 3));   // 240
  CHECK(f.selection == 9 + 12 + 6);                    // with the MC variance
  CHECK(f.total() == 24 + 123 + 240 + 27);
}

TEST_CASE("full covariance and low rank: head and noise sizes") {
  const Router full(FullCovariance<float>(weight(), {}, {.hidden = 6}), MonteCarlo{.samples = 2}, TopK{conv});
  CHECK(shape_of(full).head == 6);  // E (E + 1) / 2
  CHECK(shape_of(full).noise == 3);
  const Router low(LowRank<float>(weight(), {}, {.hidden = 6, .rank = 2}), MonteCarlo{.samples = 2}, TopK{conv});
  CHECK(shape_of(low).head == 9);  // E (1 + r)
  CHECK(shape_of(low).noise == 5);  // E + r
  CHECK(router_flops(shape_of(low)).sampling == 2 * (4 * 5 + 2 * 9 + 10 * 3));
  // The posterior mean alone draws nothing.
  const Router mean(LowRank<float>(weight(), {}, {.hidden = 6, .rank = 2}), MeanOnly{}, TopK{conv});
  CHECK(shape_of(mean).noise == 0);
  CHECK(router_flops(shape_of(mean)).sampling == 2 * 9 + 10 * 3);
}

TEST_CASE("VTSR: temperature MLP, tempered logits, Gumbel keys") {
  const Router r(Dirac<float>(weight()), MeanOnly{}, LearnedTemperature<float>(conv, E, D, {.hidden = 5}));
  const RouterShape s = shape_of(r);
  CHECK(s.tempered);
  CHECK(s.gumbel);
  CHECK(s.temperature_hidden == 5);
  CHECK(s.temperature_width == 1);
  const RouterFlops f = router_flops(s);
  CHECK(f.temperature == 2 * 4 * 5 + 2 * 5 + 2);
  CHECK(f.sampling == 3 + 30);
  CHECK(f.selection == 9 + 9 + 6);
  const Router fixed(Dirac<float>(weight()), MeanOnly{}, Temperature{conv, 2.0});
  CHECK(shape_of(fixed).tempered);
  CHECK(!shape_of(fixed).gumbel);
  CHECK(shape_of(Router(Dirac<float>(weight()), MeanOnly{}, SampleK{conv, 1.0})).gumbel);
}

TEST_CASE("weight-space samples re-project the input; MC dropout also masks it") {
  RouterShape s{.dim = 4, .experts = 3, .top_k = 2, .samples = 7, .weight_samples = true, .input_dropout = true};
  CHECK(router_flops(s).sampling == 7 * (2 * 4 * 3 + 4 + 10 * 3));
}

TEST_CASE("MoE layer: SwiGLU experts dominate at model scale") {
  const RouterShape s = shape_of(Router(Dirac<float>(weight()), MeanOnly{}, TopK{conv}));
  const MoeLayerFlops f = moe_layer_flops(s, 4, 8);
  CHECK(f.experts == 2 * 3 * 4 * 8 * 2);
  CHECK(f.combine == 2 * 2 * 4);
  CHECK(f.total() == 69 + 384 + 16);
  CHECK(moe_layer_flops(s, 4, 8, Ffn::mlp).experts == 2 * 2 * 4 * 8 * 2);
  CHECK(f.router_share() == doctest::Approx(69.0 / 469.0));
  CHECK_THROWS_AS(moe_layer_flops(s, 0, 8), vmoer::invalid_argument);
  CHECK_THROWS_AS(router_flops(RouterShape{}), vmoer::invalid_argument);
}
