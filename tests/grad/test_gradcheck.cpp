// Finite-difference checks of vmoer::backward in double precision: every parameter
// tensor of every posterior x sampler x selector composition, with the KL and -log T
// regularisers, a padding mask and the score-function term of sampled selection, at
// several random points. Relative error (largest difference over largest entry, per
// tensor) below 1e-6.
#include "grad/gradcheck.hpp"
#include "vmoer/posterior/mc_dropout.hpp"
#include "vmoer/posterior/swag.hpp"

using namespace vmoer;
using gradcheck::Index;
using gradcheck::Matrix;

namespace {

constexpr Index tokens = 5, experts = 6, dim = 5, top_k = 2;

gradcheck::Upstream upstream(std::uint64_t seed, bool probs, bool advantage, double beta, double gamma) {
  std::mt19937_64 g(seed);
  gradcheck::Upstream up;
  up.dweights = gradcheck::normal(g, tokens, top_k, 1.0);
  if (probs) up.dprobs = gradcheck::normal(g, tokens, experts, 1.0);
  if (advantage) {
    const Matrix<double> a = gradcheck::normal(g, tokens, 1, 1.0);
    up.advantage.assign(a.data(), a.data() + tokens);
  }
  up.valid = {1, 1, 0, 1, 1};  // token 2 is padding for the regularisers
  up.regularisers = {.kl_weight = beta, .prior_sigma = 0.8, .temperature_penalty = gamma,
                     .reduction = seed % 2 ? Reduction::mean : Reduction::sum};
  return up;
}

/// Every selector (except the learned temperature) against one posterior and sampler.
template <class P, class Sampler>
void check_selectors(const Sampler& sampler, std::uint64_t seed) {
  const P post = gradcheck::make_posterior<P>(experts, dim, seed);
  std::mt19937_64 g(seed + 1);
  const Matrix<double> x = gradcheck::normal(g, tokens, dim, 1.0);
  const double beta = grad::has_kl<P> ? 0.7 : 0.0;
  {
    INFO("TopK softmax, renormalised");
    gradcheck::check(post, sampler, TopK{{.top_k = top_k, .normalize = Normalize::sum}}, x,
                     upstream(seed, true, false, beta, 0));
  }
  {
    INFO("TopK sigmoid with selection bias and scaling");
    const TopK sel{{.top_k = top_k, .score = Score::sigmoid, .normalize = Normalize::sum, .norm_eps = 1e-3,
                    .scaling = 2.5},
                   {0.1f, -0.2f, 0.3f, 0.0f, 0.05f, -0.1f}};
    gradcheck::check(post, sampler, sel, x, upstream(seed + 2, true, false, beta, 0));
  }
  {
    INFO("TopK softmax over the chosen, lp norm");
    gradcheck::check(post, sampler,
                     TopK{{.top_k = top_k, .order = Order::select_then_score, .normalize = Normalize::lp,
                           .norm_p = 1.5}},
                     x, upstream(seed + 3, false, false, beta, 0));
  }
  {
    INFO("TopK raw scores with PhiMoE's sparsemixer");
    gradcheck::check(post, sampler,
                     TopK{{.top_k = top_k, .score = Score::raw, .normalize = Normalize::sparsemixer, .jitter_eps = 0.4}},
                     x, upstream(seed + 6, true, false, beta, 0));
  }
  {
    INFO("Temperature");
    gradcheck::check(post, sampler, Temperature{{.top_k = top_k, .normalize = Normalize::sum}, 0.7}, x,
                     upstream(seed + 4, true, false, beta, 0));
  }
  {
    INFO("SampleK with the score-function term");
    gradcheck::check(post, sampler, SampleK{{.top_k = top_k}, 1.6}, x, upstream(seed + 5, true, true, beta, 0));
  }
}

/// The learned temperature (shared and per expert, sampled and deterministic).
template <class P, class Sampler>
void check_learned(const Sampler& sampler, std::uint64_t seed) {
  const P post = gradcheck::make_posterior<P>(experts, dim, seed);
  std::mt19937_64 g(seed + 1);
  const Matrix<double> x = gradcheck::normal(g, tokens, dim, 1.0);
  const double beta = grad::has_kl<P> ? 0.3 : 0.0;
  for (const bool per_expert : {false, true})
    for (const bool sample : {false, true}) {
      CAPTURE(per_expert);
      CAPTURE(sample);
      LearnedTemperature<double> sel({.top_k = top_k, .normalize = Normalize::sum}, experts, dim,
                                     {.hidden = 3, .per_expert = per_expert, .sample = sample, .seed = seed});
      gradcheck::randomise_temperature(sel, g);
      gradcheck::check(post, sampler, sel, x, upstream(seed + 7, true, sample, beta, 0.4));
    }
}

}  // namespace

TEST_CASE_TEMPLATE("backward matches finite differences: posterior x sampler x selector", P, Dirac<double>,
                   MeanField<double>, FullCovariance<double>, LowRank<double>, McDropout<double>, Swag<double>) {
  for (const std::uint64_t seed : {11u, 29u}) {
    CAPTURE(seed);
    {
      INFO("MonteCarlo, averaged scores");
      check_selectors<P>(MonteCarlo{.samples = 3}, seed);
    }
    {
      INFO("MonteCarlo, averaged logits");
      check_selectors<P>(MonteCarlo{.samples = 3, .aggregate = Aggregate::logits}, seed);
    }
    {
      INFO("MeanOnly");
      check_selectors<P>(MeanOnly{}, seed);
    }
  }
}

TEST_CASE_TEMPLATE("backward matches finite differences: learned temperature (VTSR)", P, Dirac<double>,
                   MeanField<double>, FullCovariance<double>, LowRank<double>, McDropout<double>) {
  for (const std::uint64_t seed : {5u, 17u}) {
    CAPTURE(seed);
    check_learned<P>(MonteCarlo{.samples = 2}, seed);
  }
}
