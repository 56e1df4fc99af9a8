// Tutorial: route a batch on the CPU (docs/tutorials.md, "Route a batch").
//   1. a deterministic router: the model's own top-K routing, Mixtral's convention;
//   2. a mean-field Bayesian router around the same weights, same convention;
//   3. reading the result: r.ids, r.weights, r.signals;
//   4. seeds, layers and reproducibility: the same seed gives the same experts however
//      the batch is split, as long as RouteOptions::token_offset says where a piece starts.
// The router and the hidden states are synthetic, so the program runs anywhere. It
// returns non-zero when a check fails; ctest runs it as example.tutorial_route_batch.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <vector>

#include <vmoer/vmoer.hpp>

namespace {

using vmoer::Index;

// Prints the experts and weights of the first `n` tokens.
template <class T>
void print_tokens(const char* title, const vmoer::Routing<T>& r, Index n) {
  std::printf("%s\n", title);
  for (Index t = 0; t < n; ++t) {
    std::printf("  token %lld: experts", (long long)t);
    for (Index k = 0; k < r.ids.cols(); ++k) std::printf(" %d", r.ids(t, k));
    std::printf("  weights");
    for (Index k = 0; k < r.weights.cols(); ++k) std::printf(" %.4f", double(r.weights(t, k)));
    std::printf("  entropy %.3f  MI %.4f  tr(Sigma) %.3f\n", double(r.signals.entropy(t)),
                double(r.signals.mutual_information(t)), double(r.signals.logit_variance(t)));
  }
}

// The K largest logits of W h + b in double, the plain model's routing, as a check
// that the deterministic router is exactly that. Tokens whose K-th and (K+1)-th logits
// lie within float rounding of each other are skipped: float may order them either way.
bool matches_plain_top_k(const vmoer::Matrix<float>& hidden, const vmoer::Matrix<float>& weight,
                         const vmoer::Vector<float>& bias, const vmoer::IdMatrix& ids) {
  const Index experts = weight.rows(), k = ids.cols();
  for (Index t = 0; t < hidden.rows(); ++t) {
    std::vector<double> logit(static_cast<std::size_t>(experts));
    for (Index e = 0; e < experts; ++e)
      logit[std::size_t(e)] = hidden.row(t).cast<double>().dot(weight.row(e).cast<double>()) + double(bias(e));
    std::vector<int> order(static_cast<std::size_t>(experts));
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int a, int b) { return logit[std::size_t(a)] > logit[std::size_t(b)]; });
    if (logit[std::size_t(order[std::size_t(k - 1)])] - logit[std::size_t(order[std::size_t(k)])] < 1e-4) continue;
    for (Index j = 0; j < k; ++j)  // softmax is monotone, so the top logits are the top scores
      if (ids(t, j) != order[std::size_t(j)]) return false;
  }
  return true;
}

template <class T>
bool identical(const vmoer::Routing<T>& a, const vmoer::Routing<T>& b) {
  return a.ids == b.ids && a.weights == b.weights && a.signals.entropy == b.signals.entropy &&
         a.signals.mutual_information == b.signals.mutual_information;
}

}  // namespace

int main() try {
  using namespace vmoer;
  const Index tokens = 64, dim = 32, experts = 8;
  int failures = 0;
  const auto check = [&](bool ok, const char* what) {
    std::printf("check: %s: %s\n", what, ok ? "ok" : "FAILED");
    failures += ok ? 0 : 1;
  };

  // A layer's router, W [E, D] and b [E] (a loaded checkpoint gives these; see
  // tutorial_checkpoint.cpp), and a batch of hidden states [T, D], one token per row.
  std::srand(5);
  const Matrix<float> weight = Matrix<float>::Random(experts, dim) * (2.0f / std::sqrt(float(dim)));
  const Vector<float> bias = Vector<float>::Random(experts) * 0.1f;
  const Matrix<float> hidden = Matrix<float>::Random(tokens, dim);

  // Mixtral: softmax over all experts, the top 2, their weights renormalised to sum 1.
  const Convention mixtral{.top_k = 2, .normalize = Normalize::sum};

  // 1. Deterministic: the weights as a point mass (Dirac), no sampling (MeanOnly), top-K.
  const Router deterministic(Dirac<float>(weight, bias), MeanOnly{}, TopK{mixtral});
  const Routing<float> d = deterministic.route(hidden);
  print_tokens("deterministic router (Dirac, MeanOnly, TopK):", d, 3);
  check(matches_plain_top_k(hidden, weight, bias, d.ids), "deterministic ids are the top-2 logits of W h + b");

  // 2. Bayesian: a mean-field Gaussian over the logits around the same W and b, averaged
  //    over S = 32 Monte-Carlo samples. Untrained, its mean is the deterministic router and
  //    every logit has standard deviation init_sigma; training (docs/training.md) fits both.
  //    The stream names the seed of the run and the layer: every random number is a
  //    function of (seed, layer, token, sample), never of a running generator's state.
  const EncoderOptions encoder{.hidden = 16, .init_sigma = 0.5, .seed = 1};
  const rng::Stream layer3{.seed = 42, .layer = 3};
  const Router bayes(MeanField<float>(weight, bias, encoder), MonteCarlo{.samples = 32}, TopK{mixtral}, layer3);
  const Routing<float> b = bayes.route(hidden);
  print_tokens("mean-field Bayesian router (MeanField, MonteCarlo S = 32, TopK):", b, 3);

  // 3. The result: ids [T, K] (experts by descending score), weights [T, K] aligned with
  //    them, and per-token signals. Mixtral's weights sum to 1 for every token.
  check(b.ids.rows() == tokens && b.ids.cols() == mixtral.top_k && b.weights.cols() == mixtral.top_k,
        "ids and weights are [T, K]");
  check(((b.weights.rowwise().sum().array() - 1.0f).abs() < 1e-5f).all(), "each token's weights sum to 1");
  Index changed = 0;
  for (Index t = 0; t < tokens; ++t) changed += (b.ids.row(t) != d.ids.row(t)) ? 1 : 0;
  std::printf("the Bayesian router chose other experts than the deterministic one for %lld of %lld tokens\n",
              (long long)changed, (long long)tokens);
  std::printf("mean signals: entropy %.3f, mutual information %.4f, MC variance %.5f, tr(Sigma) %.3f\n",
              double(b.signals.entropy.mean()), double(b.signals.mutual_information.mean()),
              double(b.signals.mc_variance.mean()), double(b.signals.logit_variance.mean()));

  // 4. Reproducibility. Routing the batch again, or in two pieces (the second with
  //    token_offset = where it starts in the batch), or with other threads, gives
  //    bit-identical experts, weights and signals.
  check(identical(b, bayes.route(hidden)), "same seed, same batch: identical routing");
  const Index split = 23;
  const Routing<float> first = bayes.route(hidden.topRows(split));
  const Routing<float> second = bayes.route(hidden.bottomRows(tokens - split), {.token_offset = std::uint32_t(split)});
  Routing<float> joined;
  joined.ids.resize(tokens, mixtral.top_k);
  joined.ids << first.ids, second.ids;
  joined.weights.resize(tokens, mixtral.top_k);
  joined.weights << first.weights, second.weights;
  joined.signals.entropy.resize(tokens);
  joined.signals.entropy << first.signals.entropy, second.signals.entropy;
  joined.signals.mutual_information.resize(tokens);
  joined.signals.mutual_information << first.signals.mutual_information, second.signals.mutual_information;
  check(identical(b, joined), "same seed, batch split 23 + 41 with token_offset: identical routing");
  const Router one_thread(bayes.posterior(), bayes.sampler(), bayes.selector(), layer3, Cpu{.threads = 1});
  check(identical(b, one_thread.route(hidden)), "same seed, one thread: identical routing");

  // Another seed, or the same seed at another layer, draws other noise: the signals
  // differ (and, where a token is uncertain, its experts).
  const Router other_seed(bayes.posterior(), bayes.sampler(), bayes.selector(), rng::Stream{.seed = 43, .layer = 3});
  const Router other_layer(bayes.posterior(), bayes.sampler(), bayes.selector(), rng::Stream{.seed = 42, .layer = 4});
  check(other_seed.route(hidden).signals.mc_variance != b.signals.mc_variance, "another seed: other samples");
  check(other_layer.route(hidden).signals.mc_variance != b.signals.mc_variance, "another layer: other samples");

  std::printf("%s\n", failures ? "some checks FAILED" : "all checks passed");
  return failures ? 1 : 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "tutorial_route_batch: %s\n", e.what());
  return 1;
}
