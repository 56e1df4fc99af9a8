// The routers compared in the experiment, each built around a MAP router (W, b) and
// bound to torch. One hyperparameter per method is chosen on the validation split.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "model.hpp"
#include "vmoer/posterior/mc_dropout.hpp"
#include "vmoer/posterior/swag.hpp"
#include "vmoer_torch.hpp"

namespace fmnist {

/// Builds a router with S samples per token from the MAP router W [E, D], b [E] and the method's hyperparameter.
using MakeRouter = std::function<std::unique_ptr<vmoer_torch::RouterModule>(
    const vmoer::Matrix<float>& weight, const vmoer::Vector<float>& bias, vmoer::Index samples, double hyper,
    vmoer::rng::Stream stream)>;

/// One row of the results table.
struct Method {
  std::string name;          ///< row name
  std::string hyper_name;    ///< what the hyperparameter is ("" for none)
  std::vector<double> grid;  ///< its candidates, chosen by validation NLL
  bool kl = false;           ///< the hyperparameter is the KL weight beta of the ELBO
  bool penalty = false;      ///< the hyperparameter is VTSR's -log T penalty
  bool sampled_selection = false;  ///< noise is in the selection: the predictive averages S full passes
  MakeRouter make;           ///< the router (none for SWAG, built by swag_router from snapshots)
  bool swag = false;         ///< a SWAG router: snapshots of an SGD phase, then sampled weights
};

/// Snapshots (W [E, D], b [E]) of one router's weights.
using Snapshots = std::vector<std::pair<vmoer::Matrix<float>, vmoer::Vector<float>>>;

/// A SWAG router over the snapshots with S samples per token; the hyperparameter is SWAG's scale.
inline std::unique_ptr<vmoer_torch::RouterModule> swag_router(const ModelConfig& c, const Snapshots& snapshots,
                                                              vmoer::Index samples, double scale,
                                                              vmoer::rng::Stream stream) {
  vmoer::detail::require(!snapshots.empty(), "swag_router", "needs at least one snapshot");
  vmoer::Swag<float> posterior(snapshots.front().first, snapshots.front().second, {.rank = 20, .scale = scale});
  for (std::size_t i = 1; i < snapshots.size(); ++i) posterior.collect(snapshots[i].first, snapshots[i].second);
  return vmoer_torch::bind(vmoer::Router(std::move(posterior), vmoer::MonteCarlo{samples},
                                         vmoer::TopK{{.top_k = c.top_k, .normalize = vmoer::Normalize::sum}}, stream));
}

/// Width of the Gaussian posteriors' encoder and of VTSR's temperature MLP.
inline constexpr vmoer::Index encoder_width = 16;

/// A Gaussian logit posterior around (W, b) with Monte-Carlo sampling and top-K.
template <class Posterior>
MakeRouter gaussian(vmoer::TopK top_k, vmoer::Index rank) {
  return [top_k, rank](const vmoer::Matrix<float>& w, const vmoer::Vector<float>& b, vmoer::Index samples, double,
                       vmoer::rng::Stream stream) -> std::unique_ptr<vmoer_torch::RouterModule> {
    Posterior posterior(w, b, {.hidden = encoder_width, .rank = rank, .init_sigma = 0.3, .seed = stream.seed + 17});
    return vmoer_torch::bind(vmoer::Router(std::move(posterior), vmoer::MonteCarlo{samples}, top_k, stream));
  };
}

/// The compared methods for a model of these shapes.
inline std::vector<Method> methods(const ModelConfig& c) {
  const vmoer::Convention conv{.top_k = c.top_k, .normalize = vmoer::Normalize::sum};
  const vmoer::TopK top_k{conv};
  const MakeRouter dirac = [top_k](const auto& w, const auto& b, vmoer::Index, double, vmoer::rng::Stream stream)
      -> std::unique_ptr<vmoer_torch::RouterModule> {
    return vmoer_torch::bind(vmoer::Router(vmoer::Dirac<float>(w, b), vmoer::MeanOnly{}, top_k, stream));
  };
  std::vector<Method> m;
  m.push_back({"deterministic (MAP)", "", {0.0}, false, false, false, dirac});
  // The control: the same deterministic router, fine-tuned like the Bayesian ones (task
  // loss only), so that their gains can be told apart from the extra router training.
  m.push_back({"MAP + fine-tune", "", {0.0}, false, false, false, dirac});
  m.push_back({"temperature sampling", "tau", {0.5, 1.0}, false, false, true,
               [conv](const auto& w, const auto& b, vmoer::Index, double tau, vmoer::rng::Stream stream)
                   -> std::unique_ptr<vmoer_torch::RouterModule> {
                 return vmoer_torch::bind(vmoer::Router(vmoer::Dirac<float>(w, b), vmoer::MeanOnly{},
                                                        vmoer::SampleK{conv, tau}, stream));
               }});
  m.push_back({"MC dropout", "p", {0.1, 0.3}, false, false, false,
               [top_k](const auto& w, const auto& b, vmoer::Index samples, double p, vmoer::rng::Stream stream)
                   -> std::unique_ptr<vmoer_torch::RouterModule> {
                 return vmoer_torch::bind(vmoer::Router(vmoer::McDropout<float>(w, b, p),
                                                        vmoer::MonteCarlo{samples, vmoer::Aggregate::logits}, top_k,
                                                        stream));
               }});
  m.push_back({"mean-field (MFVR)", "beta", {0.01, 0.1}, true, false, false, gaussian<vmoer::MeanField<float>>(top_k, 0)});
  m.push_back({"full-covariance (FCVR)", "beta", {0.01, 0.1}, true, false, false,
               gaussian<vmoer::FullCovariance<float>>(top_k, 0)});
  m.push_back({"low-rank r=2", "beta", {0.01, 0.1}, true, false, false,
               gaussian<vmoer::LowRank<float>>(top_k, 2)});
  m.push_back({"SWAG", "scale", {0.5, 1.0}, false, false, false, nullptr, true});
  m.push_back({"VTSR", "gamma", {0.01, 0.1}, false, true, true,
               [conv](const auto& w, const auto& b, vmoer::Index, double, vmoer::rng::Stream stream)
                   -> std::unique_ptr<vmoer_torch::RouterModule> {
                 vmoer::LearnedTemperature<float> tau(conv, w.rows(), w.cols(),
                                                      {.hidden = encoder_width, .sample = true, .seed = stream.seed + 29});
                 return vmoer_torch::bind(vmoer::Router(vmoer::Dirac<float>(w, b), vmoer::MeanOnly{}, std::move(tau),
                                                        stream));
               }});
  return m;
}

}  // namespace fmnist
