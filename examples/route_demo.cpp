// vmoer-demo: routes one batch of hidden states through every router variant and
// prints, per variant, the experts of a few tokens, the uncertainty signals, the
// Jaccard stability of the top-K sets under input noise and the throughput.
//
//   vmoer-demo [--tokens T] [--dim D] [--experts E] [--top-k K] [--samples S]
//              [--threads N] [--seed SEED]
// With no arguments it uses a built-in synthetic router, so it runs anywhere.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <vmoer/analysis/stability.hpp>
#include <vmoer/vmoer.hpp>

namespace {

struct Settings {
  vmoer::Index tokens = 2048, dim = 512, experts = 32, top_k = 4, samples = 32;
  int threads = 0;
  std::uint64_t seed = 7;
};

Settings parse(int argc, char** argv) {
  Settings s;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) throw std::invalid_argument("missing value after " + a);
    const long long v = std::stoll(argv[++i]);
    if (a == "--tokens") s.tokens = v;
    else if (a == "--dim") s.dim = v;
    else if (a == "--experts") s.experts = v;
    else if (a == "--top-k") s.top_k = v;
    else if (a == "--samples") s.samples = v;
    else if (a == "--threads") s.threads = int(v);
    else if (a == "--seed") s.seed = std::uint64_t(v);
    else throw std::invalid_argument("unknown option " + a);
  }
  if (s.tokens < 1 || s.dim < 1 || s.experts < 1) throw std::invalid_argument("tokens, dim and experts must be >= 1");
  return s;
}

// A synthetic layer: tokens drawn around a few cluster centres, and a router whose
// logits separate the clusters only partly, as a trained router's do.
struct Synthetic {
  vmoer::Matrix<float> weight, hidden;
};

Synthetic make_synthetic(const Settings& s) {
  std::srand(unsigned(s.seed));
  Synthetic syn;
  syn.weight = vmoer::Matrix<float>::Random(s.experts, s.dim) * (2.0f / std::sqrt(float(s.dim)));
  const vmoer::Index clusters = 16;
  const vmoer::Matrix<float> centres = vmoer::Matrix<float>::Random(clusters, s.dim);
  syn.hidden = vmoer::Matrix<float>::Random(s.tokens, s.dim) * 0.5f;
  for (vmoer::Index t = 0; t < s.tokens; ++t) syn.hidden.row(t) += centres.row(t % clusters);
  return syn;
}

// Untrained posteriors start at the deterministic router with a constant scale and no
// correlations. As a stand-in for training, give the scale head small random weights
// so that variances and correlations depend on the token.
template <class Posterior>
Posterior spread(Posterior p) {
  auto w = p.parameters()["encoder.scale.weight"];
  const float experts = float(p.experts());  // keep tr(Sigma) comparable across head sizes
  w = vmoer::Matrix<float>::Random(w.rows(), w.cols()) * (0.3f * std::sqrt(experts / float(w.rows())));
  return p;
}

template <class Router>
void report(const char* name, const Router& router, const Synthetic& syn, const Settings& s) {
  using clock = std::chrono::steady_clock;
  router.route(syn.hidden.topRows(std::min<vmoer::Index>(16, s.tokens)));  // warm-up
  const auto t0 = clock::now();
  const auto out = router.route(syn.hidden);
  const double seconds = std::chrono::duration<double>(clock::now() - t0).count();
  const double jaccard = vmoer::analysis::stability(router, syn.hidden, 0.01, s.seed + 1);
  std::printf("%-34s", name);
  for (vmoer::Index t = 0; t < std::min<vmoer::Index>(2, s.tokens); ++t) {
    std::printf(" [");
    for (vmoer::Index k = 0; k < out.ids.cols(); ++k) std::printf(k ? " %2d" : "%2d", out.ids(t, k));
    std::printf("]");
  }
  const auto& g = out.signals;
  std::printf(" %7.3f %7.4f %8.5f %8.3f %5.2f %8.3f %10.0f\n", g.entropy.mean(), g.mutual_information.mean(),
              g.mc_variance.mean(), g.logit_variance.mean(), g.temperature.mean(), jaccard, double(s.tokens) / seconds);
}

}  // namespace

int main(int argc, char** argv) try {
  using namespace vmoer;
  const Settings s = parse(argc, argv);
  const Synthetic syn = make_synthetic(s);
  const Convention conv{.top_k = s.top_k, .normalize = Normalize::sum};  // Mixtral's convention
  const rng::Stream stream{s.seed, 0};
  const Cpu cpu{.threads = s.threads};
  // A wide initial scale (sigma = 0.5) makes the posteriors' uncertainty visible.
  const EncoderOptions enc{.hidden = 64, .init_sigma = 0.5, .seed = s.seed};
  const MonteCarlo mc{.samples = s.samples};

  std::printf("vmoer %d.%d.%d demo: T = %lld tokens, D = %lld, E = %lld, K = %lld, S = %lld\n", VMOER_VERSION_MAJOR,
              VMOER_VERSION_MINOR, VMOER_VERSION_PATCH, (long long)s.tokens, (long long)s.dim,
              (long long)s.experts, (long long)s.top_k, (long long)s.samples);
  std::printf("stability: mean Jaccard of top-K sets, clean vs input noise of 0.01 x mean hidden norm\n\n");
  std::printf("%-34s %-*s %7s %7s %8s %8s %5s %8s %10s\n", "router", int(2 * (3 * s.top_k + 2)),
              "experts (tokens 0, 1)", "entropy", "MI", "MC var", "tr(Sig)", "T", "Jaccard", "tokens/s");

  report("deterministic (Dirac + TopK)", Router(Dirac<float>(syn.weight), MeanOnly{}, TopK{conv}, stream, cpu), syn, s);
  report("temperature T = 2 (top-K)", Router(Dirac<float>(syn.weight), MeanOnly{}, Temperature{conv, 2.0}, stream, cpu),
         syn, s);
  report("temperature sampling (SampleK)", Router(Dirac<float>(syn.weight), MeanOnly{}, SampleK{conv, 1.0}, stream, cpu),
         syn, s);
  report("mean-field, posterior mean", Router(spread(MeanField<float>(syn.weight, {}, enc)), MeanOnly{}, TopK{conv}, stream, cpu),
         syn, s);
  report("MFVR mean-field (MC)", Router(spread(MeanField<float>(syn.weight, {}, enc)), mc, TopK{conv}, stream, cpu), syn, s);
  report("FCVR full covariance (MC)", Router(spread(FullCovariance<float>(syn.weight, {}, enc)), mc, TopK{conv}, stream, cpu),
         syn, s);
  EncoderOptions low = enc;
  low.rank = 8;
  report("low-rank r = 8 (MC)", Router(spread(LowRank<float>(syn.weight, {}, low)), mc, TopK{conv}, stream, cpu), syn, s);
  report("VTSR learned temperature",
         Router(Dirac<float>(syn.weight), MeanOnly{},
                LearnedTemperature<float>(conv, s.experts, s.dim, {.hidden = 32, .seed = s.seed}), stream, cpu),
         syn, s);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "vmoer-demo: %s\n", e.what());
  return 1;
}
