// Tutorial: the papers' analysis pipeline on one model, in a few calls.
//   1. find the routers whose top-K choice is least stable under input noise;
//   2. give those a Bayesian router (mean-field here) around the same weights;
//   3. score tokens for out-of-distribution detection by the routers' uncertainty;
//   4. count what it costs in FLOPs.
// The model is synthetic (random routers over clustered hidden states), so the program
// runs anywhere; with a real model, load the routers with vmoer/models/load.hpp and feed
// the hidden states the model's own forward pass produces.
#include <cstdio>
#include <vector>

#include <vmoer/analysis/flops.hpp>
#include <vmoer/analysis/ood.hpp>
#include <vmoer/analysis/stability.hpp>
#include <vmoer/vmoer.hpp>

int main() {
  using namespace vmoer;
  const Index layers = 4, tokens = 512, dim = 256, experts = 16;
  const Convention mixtral{.top_k = 2, .normalize = Normalize::sum};

  // Hidden states around 8 cluster centres; out-of-distribution tokens are isotropic.
  std::srand(3);
  const Matrix<float> centres = Matrix<float>::Random(8, dim);
  Matrix<float> in_dist = Matrix<float>::Random(tokens, dim) * 0.3f;
  for (Index t = 0; t < tokens; ++t) in_dist.row(t) += centres.row(t % 8);
  const Matrix<float> out_dist = Matrix<float>::Random(tokens, dim) * 1.2f;

  // One router weight per layer; the later layers are made less decisive (smaller logits).
  std::vector<Matrix<float>> weights;
  for (Index l = 0; l < layers; ++l)
    weights.push_back(Matrix<float>::Random(experts, dim) * float(2.0 / (1 + l) / std::sqrt(double(dim))));

  // 1. Stability of each deterministic router over the papers' noise levels.
  std::vector<double> mean_jaccard;
  for (Index l = 0; l < layers; ++l) {
    const Router det(Dirac<float>(weights[std::size_t(l)]), MeanOnly{}, TopK{mixtral}, rng::Stream{1, std::uint32_t(l)});
    const std::vector<double> curve = analysis::stability_curve(det, in_dist, analysis::default_gammas(), 11);
    double mean = 0;
    for (double j : curve) mean += j / double(curve.size());
    mean_jaccard.push_back(mean);
    std::printf("layer %lld: mean Jaccard over gamma %.3f (at gamma = 0.01: %.3f)\n", (long long)l, mean, curve[3]);
  }
  const std::vector<Index> susceptible = analysis::most_susceptible(mean_jaccard, 2);
  std::printf("susceptible layers: %lld, %lld\n", (long long)susceptible[0], (long long)susceptible[1]);

  // 2 and 3. A mean-field router on each susceptible layer; its signals score OoD tokens.
  // Untrained, its scale is the same for every token, so only the entropy of the mean
  // separates anything; fitting the encoder (docs/training.md) is what makes the
  // variance-based scores (mutual information, MC variance) informative.
  for (const Index l : susceptible) {
    const Router det{Dirac<float>(weights[std::size_t(l)]), MeanOnly{}, TopK{mixtral}};
    const Router bayes(MeanField<float>(weights[std::size_t(l)], {}, {.hidden = 32, .init_sigma = 0.5}),
                       MonteCarlo{.samples = 35}, TopK{mixtral}, rng::Stream{1, std::uint32_t(l)});
    const Routing<float> a = bayes.route(in_dist), b = bayes.route(out_dist);
    const auto by_entropy = analysis::detection(a.signals.entropy, b.signals.entropy);
    const auto by_mi = analysis::detection(a.signals.mutual_information, b.signals.mutual_information);
    std::printf("layer %lld, mean-field S = 35: Jaccard at 0.01 = %.3f; OoD AUROC by gate entropy %.3f, "
                "by mutual information %.3f\n",
                (long long)l, analysis::stability(bayes, in_dist, 0.01, 11), by_entropy.auroc, by_mi.auroc);
    // 4. The cost, counted from the shapes (docs/results.md measures it in a real model).
    std::printf("  FLOPs per token: deterministic %.0f, mean-field %.0f\n",
                analysis::router_flops(analysis::shape_of(det)).total(),
                analysis::router_flops(analysis::shape_of(bayes)).total());
  }
  return 0;
}
