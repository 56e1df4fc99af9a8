// Writes one safetensors file per router composition for tests/torch/check_gradients.py:
// the inputs, every parameter, the noise the router drew (regenerated from the same
// Philox coordinates), the upstream gradients, and vmoer's forward and gradients.
// The Python script recomputes the same math with torch autograd and compares.
// Usage: vmoer_torch_export <output directory>
#include <cstdio>
#include <filesystem>
#include <random>
#include <span>
#include <string>

#include "vmoer/grad/backward.hpp"
#include "vmoer/posterior/mc_dropout.hpp"
#include "vmoer/train/save.hpp"
#include "vmoer/vmoer.hpp"

using namespace vmoer;

namespace {

constexpr Index tokens = 5, dim = 6, experts = 5, top_k = 2;
const rng::Stream stream{2024, 7};

Matrix<double> normal(std::mt19937_64& g, Index rows, Index cols, double sd) {
  std::normal_distribution<double> n(0, sd);
  Matrix<double> m(rows, cols);
  for (Index i = 0; i < m.size(); ++i) m.data()[i] = n(g);
  return m;
}

template <class P>
P posterior(std::mt19937_64& g, Index rank) {
  const Matrix<double> w = normal(g, experts, dim, 0.5);
  const Vector<double> b = normal(g, experts, 1, 0.3);
  if constexpr (requires { P::trunk_weight; }) {
    P post(w, b, {.hidden = 4, .rank = rank});
    for (Index s = 1; s < Index(post.parameters().layout().slots().size()); ++s)
      if (s != P::router_bias) post.parameters()[s] = normal(g, post.parameters()[s].rows(), post.parameters()[s].cols(), 0.4);
    post.parameters()[P::scale_bias].array() -= 1.0;
    return post;
  } else {
    return P(w, b, 0.3);
  }
}

std::string name(Score s) { return s == Score::softmax ? "softmax" : "sigmoid"; }

/// One case: writes <dir>/<name>.safetensors.
template <class P, class Sel>
void export_case(const std::filesystem::path& dir, const std::string& case_name, const P& post, MonteCarlo sampler,
                 const Sel& sel, double beta, double gamma, std::mt19937_64& g) {
  const Router router(post, sampler, sel, stream);
  const Matrix<double> x = normal(g, tokens, dim, 1.0);
  const auto r = router.route(x, {.keep_probs = true});
  const Matrix<double> dweights = normal(g, tokens, top_k, 1.0), dprobs = normal(g, tokens, experts, 1.0);
  const std::vector<std::uint8_t> valid = {1, 0, 1, 1, 1};
  BackwardOptions<double> options{.regularisers = {.kl_weight = beta, .prior_sigma = 0.9, .temperature_penalty = gamma}};
  options.valid = valid;
  const Matrix<double> advantage = normal(g, tokens, 1, 1.0);
  if (sel.sampled()) options.advantage = std::span<const double>(advantage.data(), std::size_t(tokens));
  const auto grads = backward(router, x, r, dweights, dprobs, options);

  io::safetensors_writer w;
  if constexpr (P::weight_space)
    w.add_metadata("posterior", "mc_dropout");
  else
    w.add_metadata("posterior", P::covariance::name);
  w.add_metadata("score", name(sel.convention.score));
  w.add_metadata("sampled", sel.sampled() ? "true" : "false");
  w.add("advantage", Matrix<double>(sel.sampled() ? advantage : Matrix<double>::Zero(tokens, 1)));
  w.add_metadata("aggregate", sampler.aggregate == Aggregate::logits ? "logits" : "probs");
  w.add("x", x);
  w.add("dweights", dweights);
  w.add("dprobs", dprobs);
  w.add("valid", {tokens}, valid);
  w.add("ids", r.ids);
  w.add("weights", r.weights);
  w.add("probs", r.probs);
  double fixed_tau = 0;  // the selector's temperature, when it is not learned
  if constexpr (!Sel::learned_tau) fixed_tau = sel.temperature();
  w.add("settings", Vector<double>((Vector<double>(5) << double(sampler.samples), beta, 0.9, gamma, fixed_tau).finished()));
  w.add("regularisers", Vector<double>::Constant(1, grads.regularisers));
  train::add(w, "posterior", post.parameters());
  train::add(w, "posterior", grads.posterior, ".grad");
  w.add("hidden.grad", grads.hidden);
  if constexpr (Sel::learned_tau) {
    train::add(w, "selector", sel.parameters());
    train::add(w, "selector", grads.selector, ".grad");
    w.add("tau_bounds", Vector<double>((Vector<double>(2) << sel.options().floor, sel.options().ceiling).finished()));
  }
  // The noise of every (token, sample): eps of a Gaussian, the scaled mask of MC dropout.
  const Index s_count = sampler.samples;
  if constexpr (P::weight_space) {
    Matrix<double> masks(tokens * s_count, dim);
    typename P::MaskWords words;
    const Vector<double> ones = Vector<double>::Ones(dim);
    for (Index t = 0; t < tokens; ++t)
      for (Index s = 0; s < s_count; ++s)
        post.dropout(ones.data(), std::uint32_t(t), std::uint32_t(s), stream, masks.data() + (t * s_count + s) * dim,
                     words);
    w.add("masks", masks);
  } else {
    const Index n = post.noise_size(), padded = cpu::padded<double>((n + 1) / 2) * 2;
    Matrix<double> eps(tokens * s_count, n);
    std::vector<double, xsimd::aligned_allocator<double>> buf(static_cast<std::size_t>(padded));
    std::vector<std::uint32_t> wx(static_cast<std::size_t>(padded / 2)), wy(static_cast<std::size_t>(padded / 2));
    for (Index t = 0; t < tokens; ++t)
      for (Index s = 0; s < s_count; ++s) {
        cpu::normals(stream, rng::Purpose::logit_noise, std::uint32_t(t), std::uint32_t(s), buf.data(), padded,
                     wx.data(), wy.data());
        for (Index j = 0; j < n; ++j) eps(t * s_count + s, j) = buf[std::size_t(j)];
      }
    w.add("eps", eps);
    w.add("rank", Vector<double>::Constant(1, double(post.rank())));
  }
  w.save(dir / (case_name + ".safetensors"));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <output directory>\n", argv[0]);
    return 2;
  }
  const std::filesystem::path dir = argv[1];
  std::filesystem::create_directories(dir);
  std::mt19937_64 g(5);
  const Convention sum{.top_k = top_k, .normalize = Normalize::sum};
  export_case(dir, "mean_field", posterior<MeanField<double>>(g, 0), MonteCarlo{.samples = 3}, TopK{sum}, 0.5, 0, g);
  export_case(dir, "full_covariance", posterior<FullCovariance<double>>(g, 0),
              MonteCarlo{.samples = 2, .aggregate = Aggregate::logits},
              Temperature{{.top_k = top_k, .score = Score::sigmoid, .normalize = Normalize::sum}, 0.8}, 0.3, 0, g);
  LearnedTemperature<double> vtsr(sum, experts, dim, {.hidden = 3, .per_expert = true, .sample = false});
  vtsr.parameters()[LearnedTemperature<double>::head_weight] = normal(g, experts, 3, 0.5);
  export_case(dir, "low_rank_vtsr", posterior<LowRank<double>>(g, 2), MonteCarlo{.samples = 3}, vtsr, 0.2, 0.3, g);
  LearnedTemperature<double> sampled(sum, experts, dim, {.hidden = 3, .per_expert = false, .sample = true});
  sampled.parameters()[LearnedTemperature<double>::head_weight] = normal(g, 1, 3, 0.5);
  export_case(dir, "mean_field_sampled_vtsr", posterior<MeanField<double>>(g, 0), MonteCarlo{.samples = 2}, sampled,
              0.4, 0.2, g);
  export_case(dir, "mc_dropout", posterior<McDropout<double>>(g, 0), MonteCarlo{.samples = 4}, TopK{sum}, 0, 0, g);
  return 0;
}
