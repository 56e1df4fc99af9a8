// Every composition Posterior x Sampler x Selector, in float and double, against the
// double-precision reference of tests/reference.
#include "router/compositions.hpp"

using namespace vmoer;
using test::Index;

namespace {

constexpr std::size_t D = 48, E = 12, H = 10, R = 3, T = 40;

/// The library router for the reference description, routed over x.
template <class P, class Sampler, class Selector>
void check(const ref::Router& r, Sampler sampler, Selector selector, const ref::mat& x) {
  using Tv = typename P::scalar;
  Router router(test::make_posterior<P>(r), sampler, selector, rng::Stream{r.seed, r.layer}, Cpu{.threads = 2, .tile = 7});
  const Routing<Tv> out = router.route(test::to_matrix<Tv>(x), {.token_offset = 5, .keep_probs = true});
  const int compared = test::compare(out, r, x, 5, test::tolerance<Tv>());
  CHECK(compared >= int(x.size()) * 9 / 10);  // near-ties are rare: most tokens have their ids checked
}

std::vector<Convention> conventions() {
  std::vector<Convention> c;
  c.push_back({.top_k = 2});                                                       // softmax, no renorm
  c.push_back({.top_k = 3, .normalize = Normalize::sum});                          // Mixtral / Qwen
  c.push_back({.top_k = 4, .order = Order::select_then_score});                    // GPT-OSS / Granite
  c.push_back({.top_k = 1, .score = Score::sigmoid, .order = Order::select_then_score});  // Llama 4
  c.push_back({.top_k = 4, .score = Score::sigmoid, .normalize = Normalize::sum, .norm_eps = 1e-20, .n_group = 4,
               .topk_group = 2, .group_score = GroupScore::top2_sum, .scaling = 2.5});  // DeepSeek-V3
  c.push_back({.top_k = 3, .n_group = 3, .topk_group = 2, .group_score = GroupScore::max, .group_mask = 0.0,
               .scaling = 1.5});                                                   // DeepSeek-V2
  c.push_back({.top_k = 3, .normalize = Normalize::lp, .norm_p = 2.0});            // DBRX
  c.push_back({.top_k = 2, .normalize = Normalize::sum_clamped, .norm_min = 0.9}); // ERNIE 4.5
  c.push_back({.top_k = 2, .score = Score::raw});
  return c;
}

std::vector<float> random_bias(std::uint64_t seed) {
  std::mt19937_64 g(seed);
  std::normal_distribution<double> n(0, 0.05);
  std::vector<float> b(E);
  for (float& v : b) v = float(n(g));
  return b;
}

}  // namespace

TEST_CASE_TEMPLATE("Dirac + MeanOnly + TopK reproduces every convention", Tv, float, double) {
  ref::Router r = test::random_router<Tv>(ref::Cov::none, E, D, 0, 0, 1);
  const ref::mat x = test::random_hidden<Tv>(T, D, 2);
  int i = 0;
  for (const Convention& c : conventions()) {
    for (bool with_bias : {false, true}) {
      CAPTURE(i);
      CAPTURE(with_bias);
      r.conv = c;
      r.bias = with_bias ? random_bias(std::uint64_t(i)) : std::vector<float>{};
      check<Dirac<Tv>>(r, MeanOnly{}, TopK{c, r.bias}, x);
      // A Monte-Carlo sampler over a point mass is the same router.
      check<Dirac<Tv>>(r, MonteCarlo{.samples = 4}, TopK{c, r.bias}, x);
    }
    ++i;
  }
}

TEST_CASE_TEMPLATE("Dirac + Temperature and SampleK follow the reference", Tv, float, double) {
  ref::Router r = test::random_router<Tv>(ref::Cov::none, E, D, 0, 0, 3);
  r.seed = 77;
  r.layer = 2;
  const ref::mat x = test::random_hidden<Tv>(T, D, 4);
  for (double tau : {0.5, 1.0, 2.0}) {
    CAPTURE(tau);
    r.tau = tau;
    r.conv = {.top_k = 3, .normalize = Normalize::sum};
    r.sampled = false;
    check<Dirac<Tv>>(r, MeanOnly{}, Temperature{r.conv, tau}, x);
    r.sampled = true;
    check<Dirac<Tv>>(r, MeanOnly{}, SampleK{r.conv, tau}, x);
  }
}

TEST_CASE_TEMPLATE("Gaussian posteriors x samplers x selectors follow the reference", Tv, float, double) {
  int seed = 10;
  for (ref::Cov cov : {ref::Cov::diagonal, ref::Cov::cholesky, ref::Cov::low_rank}) {
    ref::Router r = test::random_router<Tv>(cov, E, D, H, cov == ref::Cov::low_rank ? R : 0, std::uint64_t(seed++));
    r.seed = 1234;
    r.layer = 3;
    const ref::mat x = test::random_hidden<Tv>(T, D, std::uint64_t(seed++));
    for (std::size_t samples : {1, 7})
      for (bool logits : {false, true})
        for (int sel = 0; sel < 3; ++sel) {
          CAPTURE(int(cov));
          CAPTURE(samples);
          CAPTURE(logits);
          CAPTURE(sel);
          r.samples = samples;
          r.mean_only = false;
          r.average_logits = logits;
          r.conv = sel == 1 ? Convention{.top_k = 4, .score = Score::sigmoid, .normalize = Normalize::sum, .n_group = 4,
                                         .topk_group = 2, .group_score = GroupScore::top2_sum, .scaling = 2.0}
                            : Convention{.top_k = 3, .normalize = Normalize::sum};
          r.tau = sel == 0 ? 1.0 : 1.6;
          r.sampled = sel == 2;
          const MonteCarlo mc{.samples = Index(samples), .aggregate = logits ? Aggregate::logits : Aggregate::probs};
          auto run = [&](auto posterior_tag) {
            using P = typename decltype(posterior_tag)::type;
            if (sel == 0) check<P>(r, mc, TopK{r.conv}, x);
            if (sel == 1) check<P>(r, mc, Temperature{r.conv, r.tau}, x);
            if (sel == 2) check<P>(r, mc, SampleK{r.conv, r.tau}, x);
          };
          if (cov == ref::Cov::diagonal) run(std::type_identity<MeanField<Tv>>{});
          if (cov == ref::Cov::cholesky) run(std::type_identity<FullCovariance<Tv>>{});
          if (cov == ref::Cov::low_rank) run(std::type_identity<LowRank<Tv>>{});
        }
    // Softmax gates averaged at a temperature, with more samples than one SIMD batch holds
    // and a partial last batch (the CPU backend's draw across samples).
    for (std::size_t samples : {20, 33}) {
      CAPTURE(int(cov));
      CAPTURE(samples);
      r.samples = samples;
      r.mean_only = false;
      r.average_logits = false;
      r.sampled = false;
      r.tau = 1.6;
      r.conv = {.top_k = 3, .normalize = Normalize::sum};
      const MonteCarlo mc{.samples = Index(samples)};
      if (cov == ref::Cov::diagonal) check<MeanField<Tv>>(r, mc, Temperature{r.conv, r.tau}, x);
      if (cov == ref::Cov::cholesky) check<FullCovariance<Tv>>(r, mc, Temperature{r.conv, r.tau}, x);
      if (cov == ref::Cov::low_rank) check<LowRank<Tv>>(r, mc, Temperature{r.conv, r.tau}, x);
    }
    // MeanOnly routes the posterior mean.
    r.mean_only = true;
    r.samples = 1;
    r.average_logits = false;
    r.sampled = false;
    r.tau = 1;
    r.conv = {.top_k = 2};
    if (cov == ref::Cov::diagonal) check<MeanField<Tv>>(r, MeanOnly{}, TopK{r.conv}, x);
    if (cov == ref::Cov::cholesky) check<FullCovariance<Tv>>(r, MeanOnly{}, TopK{r.conv}, x);
    if (cov == ref::Cov::low_rank) check<LowRank<Tv>>(r, MeanOnly{}, TopK{r.conv}, x);
  }
}

TEST_CASE_TEMPLATE("the draw across samples handles expert counts that end in a partial Philox block", Tv, float,
                   double) {
  // Each Philox block gives four normals, and the mean-field draw forms z_e as they come:
  // E = 5 and 7 leave the last block partly unused.
  for (std::size_t experts : {5, 7}) {
    CAPTURE(experts);
    ref::Router r = test::random_router<Tv>(ref::Cov::diagonal, experts, D, H, 0, 90 + experts);
    const ref::mat x = test::random_hidden<Tv>(T, D, 91);
    r.samples = 33;
    r.mean_only = false;
    r.average_logits = false;
    r.sampled = false;
    r.conv = {.top_k = 2, .normalize = Normalize::sum};
    for (double tau : {1.0, 1.6}) {
      CAPTURE(tau);
      r.tau = tau;
      check<MeanField<Tv>>(r, MonteCarlo{.samples = 33}, Temperature{r.conv, tau}, x);
    }
  }
}

TEST_CASE("mc_variance keeps its relative accuracy when the samples barely differ") {
  // sigma = 1e-3: each p_s(e) moves by about 1e-3 of itself, so the variance is about
  // 1e-6 sum_e p(e)^2 while sum_s |p_s|^2 is S sum_e p(e)^2. Summing p_s(e)^2 in float
  // would leave a rounding error of about S 6e-8 sum_e p(e)^2, a tenth of the variance
  // or more; about the center softmax(mu) the terms are the deviations themselves, each
  // rounded to about 6e-8 / 1e-3 of itself, so a relative tolerance of 1e-3 has a
  // margin of 10 or more.
  ref::Router r = test::random_router<float>(ref::Cov::diagonal, E, D, H, 0, 77);
  for (std::size_t i = 0; i < E; ++i) r.bs[i] = double(float(2 * std::log(1e-3)));
  for (auto& row : r.ws)
    for (double& v : row) v = 0;
  r.seed = 99;
  r.layer = 2;
  r.mean_only = false;
  r.conv = {.top_k = 2};
  const ref::mat x = test::random_hidden<float>(T, D, 78);
  for (std::size_t samples : {4, 32}) {  // per-sample loop, and drawn across SIMD lanes
    CAPTURE(samples);
    r.samples = samples;
    Router router(test::make_posterior<MeanField<float>>(r), MonteCarlo{.samples = Index(samples)}, TopK{r.conv},
                  rng::Stream{r.seed, r.layer});
    const Routing<float> out = router.route(test::to_matrix<float>(x));
    for (std::size_t t = 0; t < x.size(); ++t) {
      CAPTURE(t);
      const double want = r.route(x[t], std::uint32_t(t)).mc_variance;
      REQUIRE(want > 0);
      CHECK(std::abs(double(out.signals.mc_variance(Index(t))) - want) <= 1e-3 * want);
    }
  }
}

TEST_CASE("bfloat16 and half inputs are routed with float accumulation") {
  ref::Router r = test::random_router<float>(ref::Cov::diagonal, E, D, H, 0, 40);
  r.samples = 5;
  r.mean_only = false;
  r.conv = {.top_k = 2, .normalize = Normalize::sum};
  Router router(test::make_posterior<MeanField<float>>(r), MonteCarlo{.samples = 5}, TopK{r.conv});
  const ref::mat xb = test::random_hidden<bfloat16>(T, D, 41), xh = test::random_hidden<half>(T, D, 42);
  test::compare(router.route(test::to_matrix<float>(xb).cast<bfloat16>()), r, xb, 0, test::tolerance<float>());
  test::compare(router.route(test::to_matrix<float>(xh).cast<half>()), r, xh, 0, test::tolerance<float>());
}

TEST_CASE("the untrained Gaussian posterior's mean is the deterministic router") {
  ref::Router r = test::random_router<double>(ref::Cov::none, E, D, 0, 0, 50);
  const ref::mat x = test::random_hidden<double>(T, D, 51);
  const Matrix<double> w = test::to_matrix<double>(r.w);
  const Vector<double> b = test::to_vector<double>(r.b);
  const Convention c{.top_k = 3, .normalize = Normalize::sum};
  const auto det = Router(Dirac<double>(w, b), MeanOnly{}, TopK{c}).route(test::to_matrix<double>(x), {.keep_logits = true});
  const auto mf = Router(MeanField<double>(w, b, {.hidden = 16, .seed = 3}), MeanOnly{}, TopK{c})
                      .route(test::to_matrix<double>(x), {.keep_logits = true});
  const auto fc = Router(FullCovariance<double>(w, b, {.hidden = 16}), MeanOnly{}, TopK{c})
                      .route(test::to_matrix<double>(x), {.keep_logits = true});
  CHECK((det.ids.array() == mf.ids.array()).all());
  CHECK((det.ids.array() == fc.ids.array()).all());
  CHECK((det.logits - mf.logits).cwiseAbs().maxCoeff() == 0.0);
  // Every logit starts with the documented standard deviation init_sigma = 0.1.
  CHECK(mf.signals.logit_variance(0) == doctest::Approx(double(E) * 0.01));
  CHECK(fc.signals.logit_variance(0) == doctest::Approx(double(E) * 0.01));
}

TEST_CASE_TEMPLATE("LearnedTemperature (VTSR) predicts per-token temperatures and samples with them", Tv, float, double) {
  for (bool per_expert : {false, true})
    for (bool sample : {true, false}) {
      CAPTURE(per_expert);
      CAPTURE(sample);
      ref::Router r = test::random_router<Tv>(ref::Cov::diagonal, E, D, H, 0, 70);
      r.seed = 5;
      r.samples = 4;
      r.mean_only = false;
      r.sampled = sample;
      r.conv = {.top_k = 3, .normalize = Normalize::sum};
      LearnedTemperature<Tv> sel(r.conv, Index(E), Index(D), {.hidden = 6, .per_expert = per_expert, .sample = sample});
      // Untrained: T(u) = 1 exactly for every token.
      const ref::mat x = test::random_hidden<Tv>(T, D, 71);
      std::mt19937_64 g(72);
      const std::size_t width = per_expert ? E : 1;
      r.wt1 = test::random_mat(g, 6, D, 1.0 / std::sqrt(double(D)));
      r.bt1 = test::random_vec(g, 6, 0.1);
      r.wt2 = test::random_mat(g, width, 6, 1.0);
      r.bt2 = test::random_vec(g, width, 0.5);
      r.floor = sel.options().floor;
      r.ceiling = sel.options().ceiling;
      {
        Router untrained(test::make_posterior<MeanField<Tv>>(r), MonteCarlo{.samples = 4}, sel, rng::Stream{5, 0});
        CHECK((untrained.route(test::to_matrix<Tv>(x)).signals.temperature.array() - Tv(1)).abs().maxCoeff() < 1e-6);
      }
      for (auto* m : {&r.wt1, &r.wt2})
        for (auto& row : *m)
          for (double& v : row) v = double(Tv(v));
      for (auto* v : {&r.bt1, &r.bt2})
        for (double& y : *v) y = double(Tv(y));
      sel.parameters()["temperature.trunk.weight"] = test::to_matrix<Tv>(r.wt1);
      sel.parameters()["temperature.trunk.bias"] = test::to_vector<Tv>(r.bt1).transpose();
      sel.parameters()["temperature.head.weight"] = test::to_matrix<Tv>(r.wt2);
      sel.parameters()["temperature.head.bias"] = test::to_vector<Tv>(r.bt2).transpose();
      check<MeanField<Tv>>(r, MonteCarlo{.samples = 4}, sel, x);
    }
}
