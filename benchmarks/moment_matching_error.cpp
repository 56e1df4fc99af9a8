// Error of MomentMatched against S = 4096 Monte-Carlo samples, printed as the
// Markdown table of docs/moment_matching.md. An accuracy measurement, not a timing.
//   moment_matching_error [tokens]
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include <vmoer/vmoer.hpp>

namespace {

using namespace vmoer;

template <class P>
void row(const char* name, Index experts, double sigma, Index tokens) {
  const Index dim = 64;
  std::srand(unsigned(experts * 1000 + Index(sigma * 100)));
  const Matrix<double> w = Matrix<double>::Random(experts, dim) * (2.0 / std::sqrt(double(dim)));
  const Matrix<double> x = Matrix<double>::Random(tokens, dim);
  P post(w, {}, {.hidden = 32, .rank = 4, .init_sigma = sigma, .seed = 1});
  auto scale = post.parameters()["encoder.scale.weight"];
  scale = Matrix<double>::Random(scale.rows(), scale.cols()) * (0.2 * sigma * std::sqrt(double(experts) / double(scale.rows())));
  const Convention c{.top_k = 2};
  auto probs = [&](auto sampler, std::uint64_t seed) {
    return Router(post, sampler, TopK{c}, rng::Stream{seed, 0}).route(x, {.keep_probs = true});
  };
  const auto mc = probs(MonteCarlo{.samples = 4096}, 1);
  auto err = [&](const Routing<double>& r) { return (r.probs - mc.probs).cwiseAbs().mean(); };
  auto agree = [&](const Routing<double>& r) {
    Index same = 0;
    for (Index t = 0; t < tokens; ++t) same += (r.ids.row(t).array() == mc.ids.row(t).array()).all();
    return double(same) / double(tokens);
  };
  const auto second = probs(MomentMatched{}, 0), pairwise = probs(MomentMatched{.expansion = Expansion::pairwise_probit}, 0),
             mean = probs(MeanOnly{}, 0), mc8 = probs(MonteCarlo{.samples = 8}, 2), mc32 = probs(MonteCarlo{.samples = 32}, 3);
  std::printf("| %s | %lld | %.1f | %.2f | %.1e | %.1e | %.1e | %.1e | %.1e | %.2f / %.2f / %.2f / %.2f |\n", name,
              (long long)experts, sigma, std::sqrt(mc.signals.logit_variance.mean() / double(experts)), err(second),
              err(pairwise), err(mean), err(mc8), err(mc32), agree(second), agree(pairwise), agree(mean), agree(mc32));
}

}  // namespace

int main(int argc, char** argv) {
  const Index tokens = argc > 1 ? std::atoll(argv[1]) : 200;
  std::printf("| posterior | E | init sigma | rms sigma | second order | pairwise probit | plug-in mean | MC S=8 | MC S=32 | "
              "top-2 agreement (2nd / pairwise / mean / S=32) |\n|---|---|---|---|---|---|---|---|---|---|\n");
  for (Index e : {8, 64})
    for (double s : {0.1, 0.3, 1.0, 3.0}) {
      row<MeanField<double>>("mean-field", e, s, tokens);
      row<FullCovariance<double>>("full covariance", e, s, tokens);
      row<LowRank<double>>("low rank r=4", e, s, tokens);
    }
}
