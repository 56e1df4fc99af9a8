// vmoer::backward beyond its values: bit-identical results for any thread count, tile
// size and kept projection, and named errors for bad arguments.
#include "grad/gradcheck.hpp"

using namespace vmoer;
using gradcheck::Index;
using gradcheck::Matrix;

namespace {

template <class P, class Sampler, class Sel>
void check_invariance(const P& post, const Sampler& sampler, const Sel& sel) {
  std::mt19937_64 g(4);
  const Index tokens = 300;  // more than one chunk of the gradient reduction
  const Matrix<double> x = gradcheck::normal(g, tokens, post.dim(), 1.0);
  const Matrix<double> dweights = gradcheck::normal(g, tokens, sel.convention.top_k, 1.0);
  BackwardOptions<double> options;
  if constexpr (grad::has_kl<P>) options.regularisers.kl_weight = 0.3;
  auto run = [&](int threads, Index tile) {
    const Router router(post, sampler, sel, rng::Stream{8, 1}, Cpu{.threads = threads, .tile = tile});
    return backward(router, x, router.route(x), dweights, options);
  };
  const auto base = run(1, 16);
  for (const int threads : {2, 3})
    for (const Index tile : {0, 1, 7, 64}) {  // 0: chosen per call
      CAPTURE(threads);
      CAPTURE(tile);
      const auto other = run(threads, tile);
      CHECK((other.posterior.flat().array() == base.posterior.flat().array()).all());
      CHECK((other.selector.flat().array() == base.selector.flat().array()).all());
      CHECK((other.hidden.array() == base.hidden.array()).all());
      CHECK(other.regularisers == base.regularisers);
    }
  // The projection kept by route() spares backward its recomputation and gives its bits.
  const Router router(post, sampler, sel, rng::Stream{8, 1}, Cpu{.threads = 2, .tile = 7});
  const auto kept = backward(router, x, router.route(x, {.keep_projection = true}), dweights, options);
  CHECK((kept.posterior.flat().array() == base.posterior.flat().array()).all());
  CHECK((kept.selector.flat().array() == base.selector.flat().array()).all());
  CHECK((kept.hidden.array() == base.hidden.array()).all());
  CHECK(kept.regularisers == base.regularisers);
}

}  // namespace

TEST_CASE("backward is bit-identical for any thread count and tile size, and with the projection kept") {
  const TopK top_k{{.top_k = 3, .normalize = Normalize::sum}};
  check_invariance(gradcheck::make_posterior<MeanField<double>>(8, 12, 1, 6), MonteCarlo{.samples = 2}, top_k);
  check_invariance(gradcheck::make_posterior<FullCovariance<double>>(8, 12, 6, 6), MonteCarlo{.samples = 2}, top_k);
  check_invariance(gradcheck::make_posterior<Dirac<double>>(8, 12, 7), MeanOnly{}, top_k);
  check_invariance(gradcheck::make_posterior<LowRank<double>>(8, 12, 2, 6, 2), MonteCarlo{.samples = 2}, top_k);
  check_invariance(gradcheck::make_posterior<McDropout<double>>(8, 12, 3), MonteCarlo{.samples = 3}, top_k);
  check_invariance(gradcheck::make_posterior<Swag<double>>(8, 12, 4), MonteCarlo{.samples = 3}, top_k);
  LearnedTemperature<double> vtsr(top_k.convention, 8, 12, {.hidden = 5, .per_expert = true, .sample = false});
  check_invariance(gradcheck::make_posterior<Dirac<double>>(8, 12, 5), MeanOnly{}, vtsr);
}

TEST_CASE("route keeps the D-wide projections (logits, encoder trunk, temperature trunk) before their relus") {
  using P = MeanField<double>;
  using S = LearnedTemperature<double>;
  const Index experts = 6, dim = 4, hidden = 5, temperature_hidden = 3, tokens = 9;
  const auto post = gradcheck::make_posterior<P>(experts, dim, 2, hidden);
  std::mt19937_64 g(3);
  S vtsr({.top_k = 2}, experts, dim, {.hidden = temperature_hidden, .per_expert = true, .sample = false});
  gradcheck::randomise_temperature(vtsr, g);
  const Router router(post, MonteCarlo{.samples = 2}, vtsr, rng::Stream{}, Cpu{.threads = 2, .tile = 4});
  const Matrix<double> x = gradcheck::normal(g, tokens, dim, 1.0);
  const auto r = router.route(x, {.keep_projection = true});
  const Index width = experts + hidden + temperature_hidden;
  REQUIRE(router.projection_width() == width);
  REQUIRE(r.projection.rows() == tokens);
  REQUIRE(r.projection.cols() == width);
  // Column j's weight row and bias: the router's, the encoder trunk's, the temperature trunk's.
  auto row = [&](Index j) -> std::pair<const double*, double> {
    const auto& p = router.posterior().parameters();
    const auto& q = router.selector().parameters();
    if (j < experts) return {p.data(P::router_weight) + j * dim, p.data(P::router_bias)[j]};
    if (j < experts + hidden)
      return {p.data(P::trunk_weight) + (j - experts) * dim, p.data(P::trunk_bias)[j - experts]};
    const Index i = j - experts - hidden;
    return {q.data(S::trunk_weight) + i * dim, q.data(S::trunk_bias)[i]};
  };
  Matrix<double> ref(tokens, width);
  for (Index t = 0; t < tokens; ++t)
    for (Index j = 0; j < width; ++j) {
      const auto [w, b] = row(j);
      double v = b;
      for (Index d = 0; d < dim; ++d) v += w[d] * x(t, d);
      ref(t, j) = v;
    }
  CHECK((ref.middleCols(experts, hidden).array() < 0).any());  // a relu would show
  CHECK((ref.rightCols(temperature_hidden).array() < 0).any());
  CHECK((r.projection - ref).cwiseAbs().maxCoeff() < 1e-12);
  CHECK(router.route(x).projection.size() == 0);  // only when asked for
}

TEST_CASE("a kept projection gives recomputation's bits in float, from float and bfloat16 inputs") {
  // Float takes the SIMD projection kernel; 40 tokens >= E + H rows may make route() move
  // W's rows apart, and bfloat16 rows are converted a tile at a time, where backward
  // converts the whole batch at once.
  std::mt19937_64 g(9);
  const Index experts = 16, dim = 64, hidden = 16, tokens = 40;
  const Matrix<float> w = gradcheck::normal(g, experts, dim, 0.125).cast<float>();
  MeanField<float> post(w, {}, {.hidden = hidden});
  post.parameters().flat() += (gradcheck::normal(g, post.parameters().size(), 1, 0.05).cast<float>());
  const Router router(post, MonteCarlo{.samples = 4}, TopK{{.top_k = 4, .normalize = Normalize::sum}},
                      rng::Stream{3, 2}, Cpu{.threads = 2});
  const Matrix<float> x = gradcheck::normal(g, tokens, dim, 1.0).cast<float>();
  const Matrix<float> dw = gradcheck::normal(g, tokens, 4, 1.0).cast<float>();
  const BackwardOptions<float> o{.regularisers = {.kl_weight = 0.2}};
  auto same = [](const Gradients<float>& a, const Gradients<float>& b) {
    CHECK((a.posterior.flat().array() == b.posterior.flat().array()).all());
    CHECK((a.hidden.array() == b.hidden.array()).all());
    CHECK(a.regularisers == b.regularisers);
  };
  same(backward(router, x, router.route(x, {.keep_projection = true}), dw, o),
       backward(router, x, router.route(x), dw, o));
  const Matrix<Eigen::bfloat16> xb = x.cast<Eigen::bfloat16>();
  same(backward(router, xb, router.route(xb, {.keep_projection = true}), dw, o),
       backward(router, xb, router.route(xb), dw, o));
}

TEST_CASE("backward rejects bad arguments with named errors") {
  const auto post = gradcheck::make_posterior<MeanField<double>>(6, 4, 1);
  const Router router(post, MonteCarlo{.samples = 2}, TopK{{.top_k = 2}});
  std::mt19937_64 g(1);
  const Matrix<double> x = gradcheck::normal(g, 3, 4, 1.0);
  const auto r = router.route(x);
  const Matrix<double> dw = Matrix<double>::Ones(3, 2);
  auto fails = [](auto&& call, const char* what) {
    CHECK_THROWS_WITH_AS(call(), doctest::Contains(what), vmoer::invalid_argument);
  };
  fails([&] { return backward(router, Matrix<double>::Ones(3, 5), r, dw); }, "hidden has 5 columns");
  fails([&] { return backward(router, x, r, Matrix<double>::Ones(3, 3)); }, "dweights is [3, 3]");
  fails([&] { return backward(router, x, r, dw, Matrix<double>::Ones(3, 2)); }, "dprobs is [3, 2]");
  fails([&] { return backward(router, x.topRows(2), r, Matrix<double>::Ones(2, 2)); }, "routing.ids is [3, 2]");
  auto bad_ids = r;
  bad_ids.ids(1, 0) = 6;
  fails([&] { return backward(router, x, bad_ids, dw); }, "routing.ids[1, 0] = 6");
  Matrix<double> nan_dw = dw;
  nan_dw(2, 1) = NAN;
  fails([&] { return backward(router, x, r, nan_dw); }, "dweights has a non-finite entry at flat index 5");
  Matrix<double> inf_x = x;
  inf_x(0, 1) = INFINITY;
  fails([&] { return backward(router, inf_x, r, dw); }, "hidden has a non-finite entry at flat index 1");
  const std::vector<double> advantage(3, 1.0);
  BackwardOptions<double> o;
  o.advantage = advantage;
  fails([&] { return backward(router, x, r, dw, o); }, "needs a sampled selection");
  const std::vector<std::uint8_t> valid(2, 1);
  BackwardOptions<double> v;
  v.valid = valid;
  fails([&] { return backward(router, x, r, dw, v); }, "valid has 2 entries");
  fails([&] { return backward(router, x, r, dw, {.regularisers = {.kl_weight = -1}}); }, "kl_weight = -1");
  fails([&] { return backward(router, x, r, dw, {.regularisers = {.prior_sigma = 0}}); }, "prior_sigma = 0");
  fails([&] { return backward(router, x, r, dw, {.regularisers = {.temperature_penalty = 1}}); },
        "needs a LearnedTemperature");
  const Router dirac(gradcheck::make_posterior<Dirac<double>>(6, 4, 1), MeanOnly{}, TopK{{.top_k = 2}});
  const auto rd = dirac.route(x);
  fails([&] { return backward(dirac, x, rd, dw, {.regularisers = {.kl_weight = 1}}); }, "needs a Gaussian");
  auto kept = router.route(x, {.keep_projection = true});
  REQUIRE(kept.projection.rows() == 3);
  REQUIRE(kept.projection.cols() == 6 + post.hidden());
  auto short_projection = kept;
  short_projection.projection.conservativeResize(3, 6);
  fails([&] { return backward(router, x, short_projection, dw); }, "routing.projection is [3, 6], expected empty or [T, projection_width()] = [3, 10]");
  kept.projection(1, 7) = NAN;
  fails([&] { return backward(router, x, kept, dw); }, "routing.projection has a non-finite entry at flat index 17");
  const Router bad_tile(post, MonteCarlo{.samples = 2}, TopK{{.top_k = 2}}, rng::Stream{}, Cpu{.tile = -1});
  fails([&] { return backward(bad_tile, x, r, dw); }, "tile = -1 must be >= 0");
}

TEST_CASE("backward into a reused Gradients gives a fresh call's bits, and is emptied by an error") {
  // The overload reuses out's buffers (and each thread keeps the per-token gradients of
  // the Gaussian posteriors between calls): nothing of one call may leak into the next,
  // whatever the router, the token count or the options of the call before.
  std::mt19937_64 g(6);
  const TopK top_k{{.top_k = 2, .normalize = Normalize::sum}};
  const Router full(gradcheck::make_posterior<FullCovariance<double>>(6, 5, 1, 3), MonteCarlo{.samples = 2}, top_k);
  const Router mc(gradcheck::make_posterior<McDropout<double>>(6, 5, 2), MonteCarlo{.samples = 3}, top_k);
  LearnedTemperature<double> vtsr(top_k.convention, 6, 5, {.hidden = 3, .per_expert = false, .sample = false});
  const Router learned(gradcheck::make_posterior<MeanField<double>>(6, 5, 3, 4), MonteCarlo{.samples = 2}, vtsr);
  const Matrix<double> none;
  Gradients<double> out;
  auto check = [&](const auto& router, Index tokens, bool hidden_gradient) {
    CAPTURE(tokens);
    const Matrix<double> x = gradcheck::normal(g, tokens, 5, 1.0);
    const Matrix<double> dw = gradcheck::normal(g, tokens, 2, 1.0);
    const auto r = router.route(x);
    BackwardOptions<double> o{.hidden_gradient = hidden_gradient};
    if constexpr (grad::has_kl<typename std::decay_t<decltype(router)>::posterior_type>)
      o.regularisers.kl_weight = 0.5;
    const auto fresh = backward(router, x, r, dw, o);
    backward(router, x, r, dw, MatrixView<double>(none), out, o);
    REQUIRE(out.posterior.size() == fresh.posterior.size());
    CHECK((out.posterior.flat().array() == fresh.posterior.flat().array()).all());
    REQUIRE(out.selector.size() == fresh.selector.size());
    CHECK((out.selector.flat().array() == fresh.selector.flat().array()).all());
    REQUIRE(out.hidden.rows() == (hidden_gradient ? tokens : 0));
    CHECK((out.hidden.array() == fresh.hidden.array()).all());
    CHECK(out.regularisers == fresh.regularisers);
  };
  check(full, 9, true);
  check(mc, 4, true);
  check(learned, 7, false);
  check(full, 3, true);
  check(learned, 11, true);
  check(full, 9, false);

  const Matrix<double> x = gradcheck::normal(g, 3, 5, 1.0);
  Matrix<double> nan_dw = Matrix<double>::Ones(3, 2);
  nan_dw(0, 0) = NAN;
  CHECK_THROWS_AS(backward(full, x, full.route(x), nan_dw, MatrixView<double>(none), out), vmoer::invalid_argument);
  CHECK(out.posterior.size() == 0);
  CHECK(out.hidden.size() == 0);
}
