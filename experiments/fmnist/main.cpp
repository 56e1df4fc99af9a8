// The papers' pipeline on Fashion-MNIST, in libtorch with vmoer routers:
//   1. train the MAP MoE classifier from scratch;
//   2. per-layer routing stability (Jaccard vs gamma) and the susceptible layers;
//   3. replace those routers by each method, initialised from the MAP router, and
//      fine-tune only the router parameters (ELBO with beta, S_train = 1);
//   4. evaluate with S_test = 35: accuracy, NLL, ECE, MCE, Brier, Jaccard at gamma = 0.01;
//   5. OoD detection on MNIST and on inverted Fashion-MNIST by every signal;
//   6. FLOPs and wall-clock overhead against the deterministic router.
// Hyperparameters are chosen on a validation split of the training set (seed 0) and
// reused for the other seeds. Every method is evaluated on the whole Fashion-MNIST test set
// and both whole OoD sets (10,000 images each; --test and --ood take fewer), and every
// prediction runs the blocks below the first replaced layer once per image: only the
// blocks from there on are repeated for the S_test passes of sampled selection.
// Writes CSV files and a Markdown table to --out.
//
//   vmoer-fmnist [--quick] [--seeds N] [--out DIR] [--fmnist DIR] [--mnist DIR] [--threads N]
//                [--test N] [--ood N]
// --test, --ood: evaluate on the first N test images / N images of each OoD set instead.
// --quick: small subsets, one seed, and a check (exit status 1 on failure) that every
// method runs, every metric is finite and a router with S > 1 has non-zero variance.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "idx.hpp"
#include "methods.hpp"
#include "model.hpp"
#include "vmoer/analysis/calibration.hpp"
#include "vmoer/analysis/flops.hpp"
#include "vmoer/analysis/ood.hpp"
#include "vmoer/analysis/stability.hpp"

namespace {

using vmoer::Index;
using Clock = std::chrono::steady_clock;

struct Options {
  bool quick = false;
  int seeds = 3;
  std::string out = "fmnist-results";
  std::string fmnist = "/usr/share/datasets/fashion-mnist";
  std::string mnist = VMOER_MNIST_DIR;
  int threads = 1;  // 2 threads were 10x slower on the shared 2-core machine
  Index test = 0, ood = 0;  // evaluated images (0: the schedule's)
};

/// Sizes and schedule of a run.
struct Schedule {
  Index train, val;       // images of the training and validation splits (both from the training set)
  Index val_eval;         // validation images predicted to choose a hyperparameter
  Index test, ood;        // evaluated images: the first `test` test images, the first `ood` of each OoD set
  Index stability;        // validation images of the per-layer stability analysis
  int map_epochs;
  int finetune_steps;
  Index batch = 128;
  Index samples_test = 35;   // S_test: the router's samples, or full passes for sampled selection
  Index susceptible = 2;     // layers whose routers are replaced
};

Schedule schedule(bool quick) {
  if (quick) return {3000, 1000, 500, 1000, 1000, 500, 1, 20, 128, 35, 2};
  return {54000, 6000, 1000, 10000, 10000, 2000, 1, 100, 128, 35, 2};
}

/// Images (normalised with the Fashion-MNIST training statistics) and labels.
struct Split {
  torch::Tensor x, y;
  Index size() const { return x.size(0); }
};

Split make_split(const fmnist::Dataset& d, const torch::Tensor& index, bool invert = false) {
  auto x = torch::from_blob(const_cast<float*>(d.pixels.data()), {d.count, fmnist::Dataset::size}).index_select(0, index);
  auto y = torch::from_blob(const_cast<std::int64_t*>(d.labels.data()), {d.count}, torch::kInt64).index_select(0, index);
  if (invert) x = 1 - x;
  return {(x - 0.2860) / 0.3530, y.clone()};
}

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

fmnist::ModelConfig config;

/// Trains every parameter of the MAP model with cross-entropy plus load balancing.
void train_map(fmnist::Classifier& model, const Split& train, const Schedule& s) {
  torch::optim::Adam opt(model->parameters(), torch::optim::AdamOptions(2e-3));
  model->train();
  for (int epoch = 0; epoch < s.map_epochs; ++epoch) {
    const auto order = torch::randperm(train.size(), torch::kInt64);
    double total = 0;
    Index batches = 0;
    for (Index at = 0; at + s.batch <= train.size(); at += s.batch, ++batches) {
      const auto idx = order.narrow(0, at, s.batch);
      const auto logits = model->forward(train.x.index_select(0, idx));
      const auto loss = torch::cross_entropy_loss(logits, train.y.index_select(0, idx)) +
                        0.01 * model->sum_over_blocks([](auto& b) { return b.aux; });
      opt.zero_grad();
      loss.backward();
      opt.step();
      total += loss.item<double>();
    }
    std::printf("  MAP epoch %d: loss %.4f\n", epoch + 1, total / double(std::max<Index>(batches, 1)));
  }
}

/// The router inputs of every block for the images of `split` (first n), [n * tokens, D] each.
std::vector<vmoer::Matrix<float>> router_inputs(fmnist::Classifier& model, const Split& split, Index n) {
  torch::NoGradGuard no_grad;
  model->eval();
  for (auto& b : model->blocks) b->capture = true;
  model->forward(split.x.narrow(0, 0, n));
  std::vector<vmoer::Matrix<float>> out;
  for (auto& b : model->blocks) {
    const auto u = b->router_input.contiguous();
    out.emplace_back(Eigen::Map<const vmoer::Matrix<float>>(u.data_ptr<float>(), u.size(0), u.size(1)));
    b->capture = false;
  }
  return out;
}

/// The MAP router of a block as (W, b).
std::pair<vmoer::Matrix<float>, vmoer::Vector<float>> map_router(fmnist::MoeBlock& block) {
  const auto w = block->router->weight.detach().contiguous(), b = block->router->bias.detach().contiguous();
  return {Eigen::Map<const vmoer::Matrix<float>>(w.data_ptr<float>(), w.size(0), w.size(1)),
          Eigen::Map<const vmoer::Vector<float>>(b.data_ptr<float>(), b.size(0))};
}

/// Predictive distribution and per-image router signals of a split.
struct Prediction {
  torch::Tensor probs;    // [N, 10]
  torch::Tensor signals;  // [N, signal_count], mean over tokens and replaced layers
  double seconds = 0;     // wall-clock of the whole prediction
};

/// The first block with a plugged router: the blocks below it are deterministic.
std::size_t first_bayes_block(fmnist::Classifier& model) {
  for (std::size_t l = 0; l < model->blocks.size(); ++l)
    if (model->blocks[l]->bayes) return l;
  return 0;
}

/// Averages `passes` forward passes (for every method the blocks below the first
/// plugged router run once per image and are reused by all passes).
Prediction predict(fmnist::Classifier& model, const Split& split, Index passes, std::uint32_t offset_base) {
  torch::NoGradGuard no_grad;
  model->eval();
  const Index n = split.size(), chunk = 500, tokens = config.tokens();
  const std::size_t first = first_bayes_block(model);
  Prediction p{torch::zeros({n, 10}), torch::zeros({n, vmoer_torch::signal_count}), 0};
  const auto start = Clock::now();
  for (Index at = 0; at < n; at += chunk) {
    const Index m = std::min(chunk, n - at);
    const auto x = model->prefix(split.x.narrow(0, at, m), first);
    for (Index pass = 0; pass < passes; ++pass) {
      const auto offset = std::uint32_t(offset_base + (pass * n + at) * tokens);
      p.probs.narrow(0, at, m) += torch::softmax(model->forward_from(x, first, offset), -1);
      auto signals = torch::zeros({m, vmoer_torch::signal_count});
      Index layers = 0;
      for (auto& b : model->blocks)
        if (b->bayes) {
          signals += b->signals.view({m, tokens, vmoer_torch::signal_count}).mean(1);
          ++layers;
        }
      if (layers) p.signals.narrow(0, at, m) += signals / double(layers);
    }
  }
  p.seconds = seconds_since(start);
  p.probs /= double(passes);
  p.signals /= double(passes);
  return p;
}

/// Fine-tunes only the plugged routers: cross-entropy + beta * KL (+ gamma * VTSR penalty).
void finetune(fmnist::Classifier& model, std::vector<vmoer_torch::RouterModule*> routers, const Split& train,
              const Schedule& s, const fmnist::Method& method, double hyper) {
  std::vector<torch::Tensor> params;
  for (auto* r : routers)
    for (auto& t : r->parameters()) params.push_back(t);
  torch::optim::Adam opt(params, torch::optim::AdamOptions(1e-3));
  model->train();
  const double beta = method.kl ? hyper : 0.0, gamma = method.penalty ? hyper : 0.0;
  for (int step = 0; step < s.finetune_steps; ++step) {
    const auto idx = torch::randint(train.size(), {s.batch}, torch::kInt64);
    const auto offset = std::uint32_t((Index(step) * s.batch * config.tokens()) % (Index(1) << 31));
    const auto logits = model->forward(train.x.index_select(0, idx), offset);
    auto loss = torch::cross_entropy_loss(logits, train.y.index_select(0, idx));
    if (beta > 0) loss = loss + beta * model->sum_over_blocks([](auto& b) { return b.kl; });
    if (gamma > 0) loss = loss + gamma * model->sum_over_blocks([](auto& b) { return b.temperature_term; });
    opt.zero_grad();
    loss.backward();
    opt.step();
  }
}

/// SWAG's snapshots of the MAP routers of `layers`: SGD with a constant learning rate on
/// those routers' weights only (cross-entropy), one snapshot every few steps of the
/// second half. The MAP weights are restored afterwards.
std::vector<fmnist::Snapshots> swag_snapshots(fmnist::Classifier& model, const std::vector<Index>& layers,
                                              const Split& train, const Schedule& s) {
  std::vector<torch::Tensor> params, saved;
  for (Index l : layers)
    for (auto& t : model->blocks[std::size_t(l)]->router->parameters()) {
      saved.push_back(t.detach().clone());
      params.push_back(t.set_requires_grad(true));
    }
  torch::optim::SGD opt(params, torch::optim::SGDOptions(0.05).momentum(0.9));
  model->train();
  std::vector<fmnist::Snapshots> out(layers.size());
  const int burn_in = s.finetune_steps / 2, every = std::max(1, s.finetune_steps / 20);
  for (int step = 0; step < s.finetune_steps; ++step) {
    const auto idx = torch::randint(train.size(), {s.batch}, torch::kInt64);
    const auto loss = torch::cross_entropy_loss(model->forward(train.x.index_select(0, idx)), train.y.index_select(0, idx));
    opt.zero_grad();
    loss.backward();
    opt.step();
    if (step >= burn_in && (step - burn_in) % every == 0)
      for (std::size_t i = 0; i < layers.size(); ++i) out[i].push_back(map_router(model->blocks[std::size_t(layers[i])]));
  }
  torch::NoGradGuard no_grad;
  for (std::size_t i = 0; i < params.size(); ++i) params[i].set_requires_grad(false).copy_(saved[i]);
  return out;
}

/// Mean Jaccard similarity of the routers' expert sets on clean and noisy inputs (gamma), over the given layers.
double jaccard_at(const std::vector<vmoer_torch::RouterModule*>& routers, const std::vector<vmoer::Matrix<float>>& inputs,
                  double gamma) {
  torch::NoGradGuard no_grad;
  double total = 0;
  for (std::size_t l = 0; l < routers.size(); ++l) {
    auto ids = [&](vmoer::Matrix<float> x) {
      const auto t = torch::from_blob(x.data(), {x.rows(), x.cols()});
      const auto r = routers[l]->route(t);
      const auto c = r.ids.to(torch::kInt32).contiguous();
      return vmoer::IdMatrix(Eigen::Map<const vmoer::IdMatrix>(c.data_ptr<std::int32_t>(), c.size(0), c.size(1)));
    };
    total += vmoer::analysis::jaccard(ids(inputs[l]), ids(vmoer::analysis::perturb(inputs[l], gamma, 99))).mean();
  }
  return total / double(routers.size());
}

/// FLOPs per image of a prediction that runs the blocks from the first replaced layer
/// `passes` times (see predict()), with routers of shape `replaced` in the replaced layers.
double model_flops(const vmoer::analysis::RouterShape& replaced, const std::vector<Index>& replaced_layers,
                   Index passes) {
  using namespace vmoer::analysis;
  const double n = double(config.tokens()), d = double(config.dim);
  const RouterShape dirac{.dim = config.dim, .experts = config.experts, .top_k = config.top_k};
  auto moe = [&](const RouterShape& r) { return n * moe_layer_flops(r, config.dim, config.ffn, Ffn::mlp).total(); };
  const Index first = replaced_layers.empty() ? 0 : *std::min_element(replaced_layers.begin(), replaced_layers.end());
  double once = n * 2 * double(config.patch * config.patch) * d, repeated = 2 * d * 10;  // embedding; head
  for (Index l = 0; l < config.layers; ++l) {
    const bool replaced_here = std::find(replaced_layers.begin(), replaced_layers.end(), l) != replaced_layers.end();
    const double block = 2 * n * n * d + moe(replaced_here ? replaced : dirac);  // token mixing + MoE
    (l < first ? once : repeated) += block;
  }
  return once + double(passes) * repeated;
}

const char* const signal_names[] = {"logit variance", "MC variance", "gate entropy", "mutual information",
                                    "temperature"};

struct Row {
  std::string method;
  double hyper = 0;
  std::map<std::string, double> metric;
};

torch::Tensor entropy(const torch::Tensor& p) { return -(p * torch::log(p.clamp_min(1e-12))).sum(1); }

vmoer::Vector<double> vec(const torch::Tensor& t) {
  const auto c = t.to(torch::kFloat64).contiguous();
  return Eigen::Map<const vmoer::Vector<double>>(c.data_ptr<double>(), c.numel());
}

vmoer::Matrix<double> matrix(const torch::Tensor& t) {
  const auto c = t.to(torch::kFloat64).contiguous();
  return Eigen::Map<const vmoer::Matrix<double>>(c.data_ptr<double>(), c.size(0), c.size(1));
}

int run(const Options& opt) {
  Schedule s = schedule(opt.quick);
  if (opt.test > 0) s.test = opt.test;
  if (opt.ood > 0) s.ood = opt.ood;
  torch::set_num_threads(opt.threads);
  std::filesystem::create_directories(opt.out);
  const auto fm_train = fmnist::load(opt.fmnist, "train"), fm_test = fmnist::load(opt.fmnist, "t10k");
  const auto mnist = fmnist::load(opt.mnist, "t10k");
  const int seeds = opt.quick ? 1 : opt.seeds;
  std::printf("vmoer-fmnist: %s, %d seed(s), train %lld, val %lld, test %lld, OoD %lld x 2, S_test %lld\n",
              opt.quick ? "quick" : "full", seeds, (long long)s.train, (long long)s.val, (long long)s.test,
              (long long)s.ood, (long long)s.samples_test);

  std::ofstream stability_csv(opt.out + "/stability.csv"), results_csv(opt.out + "/results.csv"),
      reliability_csv(opt.out + "/reliability.csv"), scores_csv(opt.out + "/scores.csv");
  stability_csv << "seed,layer,gamma,jaccard\n";
  reliability_csv << "seed,method,bin,count,confidence,accuracy\n";
  scores_csv << "method,set,signal,score\n";
  std::vector<Row> rows;
  std::map<std::string, double> chosen;  // hyperparameter per method, from seed 0's validation
  bool ok = true;
  auto methods = fmnist::methods(config);

  for (int seed = 0; seed < seeds; ++seed) {
    const auto t_seed = Clock::now();
    torch::manual_seed(uint64_t(seed));
    const auto perm = torch::randperm(fm_train.count, torch::kInt64);
    const Split train = make_split(fm_train, perm.narrow(0, 0, s.train));
    const Split val = make_split(fm_train, perm.narrow(0, fm_train.count - s.val, s.val));
    const auto test_idx = torch::arange(s.test, torch::kInt64), ood_idx = torch::arange(s.ood, torch::kInt64);
    const Split test = make_split(fm_test, test_idx), ood_mnist = make_split(mnist, ood_idx),
                ood_inverted = make_split(fm_test, ood_idx, true);

    // 1. MAP model.
    fmnist::Classifier model(config);
    auto t0 = Clock::now();
    train_map(model, train, s);
    std::printf("seed %d: MAP trained in %.0f s\n", seed, seconds_since(t0));
    for (auto& p : model->parameters()) p.set_requires_grad(false);

    // 2. Per-layer stability of the MAP routers (vmoer Dirac routers with the trained weights).
    const auto val_inputs = router_inputs(model, val, s.stability);
    const Split val_eval{val.x.narrow(0, 0, s.val_eval), val.y.narrow(0, 0, s.val_eval)};
    std::vector<double> mean_jaccard;
    for (Index l = 0; l < config.layers; ++l) {
      const auto [w, b] = map_router(model->blocks[std::size_t(l)]);
      const vmoer::Router dirac(vmoer::Dirac<float>(w, b), vmoer::MeanOnly{},
                                vmoer::TopK{{.top_k = config.top_k, .normalize = vmoer::Normalize::sum}});
      const auto curve = vmoer::analysis::stability_curve(dirac, val_inputs[std::size_t(l)],
                                                          vmoer::analysis::default_gammas(), std::uint64_t(seed));
      double sum = 0;
      for (std::size_t g = 0; g < curve.size(); ++g) {
        stability_csv << seed << ',' << l << ',' << vmoer::analysis::default_gammas()[g] << ',' << curve[g] << '\n';
        sum += curve[g];
      }
      mean_jaccard.push_back(sum / double(curve.size()));
    }
    const auto susceptible = vmoer::analysis::most_susceptible(mean_jaccard, s.susceptible);
    std::printf("seed %d: mean Jaccard per layer", seed);
    for (double j : mean_jaccard) std::printf(" %.3f", j);
    std::printf("; susceptible layers");
    for (Index l : susceptible) std::printf(" %lld", (long long)l);
    std::printf("\n");
    const auto test_inputs_all = router_inputs(model, test, s.test);
    std::vector<vmoer::Matrix<float>> test_inputs;
    for (Index l : susceptible) test_inputs.push_back(test_inputs_all[std::size_t(l)]);

    // 3-6. Each method in the susceptible layers.
    double det_seconds = 0, det_flops = 0;
    for (auto& method : methods) {
      const auto t_method = Clock::now();
      auto build = [&](Index samples, double hyper) {
        std::vector<std::unique_ptr<vmoer_torch::RouterModule>> routers;
        for (Index l : susceptible) {
          const auto [w, b] = map_router(model->blocks[std::size_t(l)]);
          routers.push_back(method.make(w, b, samples, hyper, vmoer::rng::Stream{std::uint64_t(1000 + seed), std::uint32_t(l)}));
        }
        return routers;
      };
      auto plug = [&](std::vector<std::unique_ptr<vmoer_torch::RouterModule>>& routers) {
        std::vector<vmoer_torch::RouterModule*> raw;
        for (auto& b : model->blocks) b->bayes = nullptr;
        for (std::size_t i = 0; i < routers.size(); ++i) {
          model->blocks[std::size_t(susceptible[i])]->bayes = routers[i].get();
          raw.push_back(routers[i].get());
        }
        return raw;
      };
      const bool trains = method.name != methods.front().name;
      const Index passes = method.sampled_selection ? (opt.quick ? 4 : s.samples_test) : 1;
      // Train with S = 1, then copy into routers with S_test samples.
      std::vector<fmnist::Snapshots> snapshots;  // SWAG's, from one SGD phase per seed
      auto fit = [&](double hyper) {
        if (method.swag) {
          if (snapshots.empty()) snapshots = swag_snapshots(model, susceptible, train, s);
          std::vector<std::unique_ptr<vmoer_torch::RouterModule>> routers;
          for (std::size_t i = 0; i < susceptible.size(); ++i)
            routers.push_back(fmnist::swag_router(config, snapshots[i], s.samples_test, hyper,
                                                  vmoer::rng::Stream{std::uint64_t(1000 + seed), std::uint32_t(susceptible[i])}));
          return routers;
        }
        auto train_routers = build(1, hyper);
        if (trains) finetune(model, plug(train_routers), train, s, method, hyper);
        auto eval_routers = build(s.samples_test, hyper);
        for (std::size_t i = 0; i < eval_routers.size(); ++i) eval_routers[i]->load(*train_routers[i]);
        return eval_routers;
      };
      std::vector<std::unique_ptr<vmoer_torch::RouterModule>> routers;
      if (!chosen.count(method.name)) {  // seed 0: keep the routers of the best candidate
        double best = INFINITY;
        for (double h : opt.quick ? std::vector<double>{method.grid.front()} : method.grid) {
          auto candidate = fit(h);
          plug(candidate);
          const auto p = predict(model, val_eval, passes, 0);
          const double nll = vmoer::analysis::nll(matrix(p.probs), vec(val_eval.y));
          std::printf("  %s: %s = %g, validation NLL %.4f\n", method.name.c_str(), method.hyper_name.c_str(), h, nll);
          if (nll < best) best = nll, chosen[method.name] = h, routers = std::move(candidate);
        }
      } else {
        routers = fit(chosen[method.name]);
      }
      const double hyper = chosen[method.name];
      const auto raw = plug(routers);

      Row row{method.name, hyper, {}};
      const auto p = predict(model, test, passes, 0);
      const auto p_mnist = predict(model, ood_mnist, passes, 1u << 30);
      const auto p_inv = predict(model, ood_inverted, passes, 1u << 30);
      const vmoer::Matrix<double> probs = matrix(p.probs);
      const vmoer::Vector<double> labels = vec(test.y);
      const auto cal = vmoer::analysis::calibration(probs, labels);
      row.metric["accuracy"] = cal.accuracy;
      row.metric["NLL"] = cal.nll;
      row.metric["ECE"] = cal.ece;
      row.metric["MCE"] = cal.mce;
      row.metric["Brier"] = cal.brier;
      const auto rel = vmoer::analysis::reliability(probs, labels);
      for (Index b = 0; b < rel.bins(); ++b)
        reliability_csv << seed << ",\"" << method.name << "\"," << b << ',' << rel.count[std::size_t(b)] << ','
                        << rel.confidence[std::size_t(b)] << ',' << rel.accuracy[std::size_t(b)] << '\n';
      row.metric["Jaccard@0.01"] = jaccard_at(raw, test_inputs, 0.01);
      // OoD: higher score = more likely out of distribution.
      auto scores = [&](const Prediction& q) {
        std::vector<std::pair<std::string, torch::Tensor>> out{{"predictive entropy", entropy(q.probs)}};
        for (Index c = 0; c < vmoer_torch::signal_count; ++c) out.emplace_back(signal_names[c], q.signals.select(1, c));
        return out;
      };
      const auto s_in = scores(p), s_mnist = scores(p_mnist), s_inv = scores(p_inv);
      for (std::size_t k = 0; k < s_in.size(); ++k) {
        const auto& name = s_in[k].first;
        for (const auto& [set, out] : {std::pair{"MNIST", &s_mnist}, std::pair{"inverted", &s_inv}}) {
          const auto d = vmoer::analysis::detection(vec(s_in[k].second), vec((*out)[k].second));
          row.metric[std::string("AUROC ") + set + " " + name] = d.auroc;
          row.metric[std::string("AUPRC ") + set + " " + name] = d.auprc;
          row.metric[std::string("FPR95 ") + set + " " + name] = d.fpr95;
        }
        if (seed == 0)
          for (const auto& [set, t] : {std::pair{"FMNIST test", s_in[k].second}, std::pair{"MNIST", s_mnist[k].second},
                                       std::pair{"inverted", s_inv[k].second}})
            for (Index i = 0; i < std::min<Index>(t.size(0), 2000); ++i)
              scores_csv << '"' << method.name << "\"," << set << ',' << name << ',' << t[i].item<double>() << '\n';
      }
      const double flops = model_flops(raw.front()->shape(), susceptible, passes);
      if (!trains) det_seconds = p.seconds, det_flops = flops;
      row.metric["FLOPs overhead %"] = 100.0 * (flops / det_flops - 1.0);
      row.metric["time overhead %"] = 100.0 * (p.seconds / det_seconds - 1.0);
      const double mc_var = p.signals.select(1, vmoer_torch::mc_variance).mean().item<double>();
      row.metric["mean MC variance"] = mc_var;

      for (const auto& [k, v] : row.metric)
        if (!std::isfinite(v)) {
          std::printf("CHECK FAILED: %s: %s = %g is not finite\n", method.name.c_str(), k.c_str(), v);
          ok = false;
        }
      if ((method.kl || method.swag) && !(mc_var > 0)) {
        std::printf("CHECK FAILED: %s with S = %lld has MC variance %g\n", method.name.c_str(),
                    (long long)s.samples_test, mc_var);
        ok = false;
      }
      std::printf("seed %d: %-24s acc %.4f NLL %.4f ECE %.4f Jaccard %.3f AUROC(MNIST, pred. entropy) %.3f  "
                  "[%.0f s; evaluation %.2f ms/image]\n",
                  seed, method.name.c_str(), cal.accuracy, cal.nll, cal.ece, row.metric["Jaccard@0.01"],
                  row.metric["AUROC MNIST predictive entropy"], seconds_since(t_method),
                  1e3 * (p.seconds + p_mnist.seconds + p_inv.seconds) / double(s.test + 2 * s.ood));
      std::fflush(stdout);
      rows.push_back(std::move(row));
      for (auto& b : model->blocks) b->bayes = nullptr;
    }
    std::printf("seed %d done in %.0f s\n", seed, seconds_since(t_seed));
  }

  // Long-format CSV and a Markdown table of mean +- standard deviation over seeds.
  results_csv << "seed,method,hyper,metric,value\n";
  std::map<std::string, std::map<std::string, std::vector<double>>> by;
  std::vector<std::string> order;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const auto& r = rows[i];
    if (!by.count(r.method)) order.push_back(r.method);
    for (const auto& [k, v] : r.metric) {
      results_csv << i / methods.size() << ",\"" << r.method << "\"," << r.hyper << ",\"" << k << "\"," << v << '\n';
      by[r.method][k].push_back(v);
    }
  }
  auto cell = [](const std::vector<double>& v) {
    double m = 0, q = 0;
    for (double x : v) m += x;
    m /= double(v.size());
    for (double x : v) q += (x - m) * (x - m);
    std::ostringstream os;
    os.precision(4);
    os << m;
    if (v.size() > 1) os << " ± " << std::sqrt(q / double(v.size() - 1));
    return os.str();
  };
  auto table = [&](const std::vector<std::string>& columns) {
    std::ostringstream os;
    os << "| method | " ;
    for (const auto& c : columns) os << c << " | ";
    os << "\n|---|";
    for (std::size_t i = 0; i < columns.size(); ++i) os << "---|";
    os << '\n';
    for (const auto& m : order) {
      os << "| " << m << " (" << chosen[m] << ") | ";
      for (const auto& c : columns) os << cell(by[m][c]) << " | ";
      os << '\n';
    }
    return os.str();
  };
  std::ofstream md(opt.out + "/table.md");
  md << "### Calibration, stability and cost (Fashion-MNIST test)\n\n"
     << table({"accuracy", "NLL", "ECE", "MCE", "Brier", "Jaccard@0.01", "FLOPs overhead %", "time overhead %"});
  for (const char* set : {"MNIST", "inverted"})
    for (const char* metric : {"AUROC", "AUPRC", "FPR95"}) {
      std::vector<std::string> columns;
      for (const char* n : {"predictive entropy", "gate entropy", "logit variance", "MC variance", "mutual information",
                            "temperature"})
        columns.push_back(std::string(metric) + " " + set + " " + n);
      md << "\n### OoD " << metric << ", " << (std::string(set) == "MNIST" ? "MNIST" : "inverted Fashion-MNIST")
         << "\n\n" << table(columns);
    }
  md.close();
  std::ifstream in(opt.out + "/table.md");
  std::cout << '\n' << in.rdbuf() << std::endl;
  if (opt.quick) std::printf("quick check: %s\n", ok ? "passed" : "FAILED");
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw vmoer::invalid_argument("vmoer-fmnist: " + a + " needs a value");
      return argv[++i];
    };
    if (a == "--quick") opt.quick = true;
    else if (a == "--seeds") opt.seeds = std::stoi(next());
    else if (a == "--out") opt.out = next();
    else if (a == "--fmnist") opt.fmnist = next();
    else if (a == "--mnist") opt.mnist = next();
    else if (a == "--threads") opt.threads = std::stoi(next());
    else if (a == "--test") opt.test = std::stoll(next());
    else if (a == "--ood") opt.ood = std::stoll(next());
    else {
      std::fprintf(stderr, "usage: %s [--quick] [--seeds N] [--out DIR] [--fmnist DIR] [--mnist DIR] [--threads N] [--test N] [--ood N]\n",
                   argv[0]);
      return 2;
    }
  }
  try {
    if (opt.seeds < 1) throw vmoer::invalid_argument("vmoer-fmnist: --seeds must be >= 1");
    if (opt.test < 0 || opt.test > 10000 || opt.ood < 0 || opt.ood > 10000)
      throw vmoer::invalid_argument("vmoer-fmnist: --test and --ood must be between 0 (the default sizes) and 10000");
    return run(opt);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vmoer-fmnist: %s\n", e.what());
    return 1;
  }
}
