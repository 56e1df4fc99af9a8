// The experiment's model: 7x7 patch embedding (16 tokens), then MoE blocks (token
// mixing across patches, then a top-K mixture of small MLP experts), mean pooling and
// a linear classifier. Each block routes with its own torch linear router (the MAP
// model) unless a vmoer router has been plugged in, which then routes instead.
#pragma once

#include <cstdint>
#include <vector>

#include <torch/torch.h>

#include "vmoer_torch.hpp"

namespace fmnist {

/// Shapes of the model.
struct ModelConfig {
  std::int64_t dim = 32;      ///< d_model, the router's input width D
  std::int64_t ffn = 64;      ///< hidden width of an expert
  std::int64_t experts = 8;   ///< E
  std::int64_t top_k = 2;     ///< K
  std::int64_t layers = 4;    ///< MoE blocks
  std::int64_t patch = 7;     ///< patch side: (28 / 7)^2 = 16 tokens
  /// Tokens per image.
  std::int64_t tokens() const { return (28 / patch) * (28 / patch); }
};

/// One MoE block, x + mix(LN x) then x + MoE(LN x).
struct MoeBlockImpl : torch::nn::Module {
  MoeBlockImpl(const ModelConfig& c, std::int64_t index)
      : config(c),
        layer(index),
        norm_mix(register_module("norm_mix", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.dim})))),
        norm_moe(register_module("norm_moe", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.dim})))),
        mix(register_module("mix", torch::nn::Linear(c.tokens(), c.tokens()))),
        router(register_module("router", torch::nn::Linear(c.dim, c.experts))) {
    const double s1 = 1.0 / std::sqrt(double(c.dim)), s2 = 1.0 / std::sqrt(double(c.ffn));
    w1 = register_parameter("w1", torch::empty({c.experts, c.dim, c.ffn}).uniform_(-s1, s1));
    b1 = register_parameter("b1", torch::zeros({c.experts, 1, c.ffn}));
    w2 = register_parameter("w2", torch::empty({c.experts, c.ffn, c.dim}).uniform_(-s2, s2));
    b2 = register_parameter("b2", torch::zeros({c.experts, 1, c.dim}));
  }

  /// x [B, N, D]; `token_offset` is the global index of the batch's first token.
  torch::Tensor forward(torch::Tensor x, std::uint32_t token_offset) {
    x = x + mix(norm_mix(x).transpose(1, 2)).transpose(1, 2);
    const auto shape = x.sizes().vec();
    const auto u = norm_moe(x).reshape({-1, config.dim});
    torch::Tensor ids, weights;
    if (bayes) {
      const auto r = bayes->route(u, {.token_offset = token_offset, .kl = is_training() && bayes->has_kl()});
      ids = r.ids;
      weights = r.weights;
      kl = r.kl;
      temperature_term = r.temperature_term;
      signals = r.signals;
      aux = torch::zeros({});
    } else {
      const auto probs = torch::softmax(router(u), -1);
      auto [top, top_ids] = probs.topk(config.top_k, -1);
      ids = top_ids;
      weights = top / top.sum(-1, true);
      // Switch-style load balancing: E * sum_e (fraction routed to e) * (mean gate of e).
      const auto routed = torch::zeros_like(probs).scatter_(1, ids, 1.0).mean(0) / double(config.top_k);
      aux = double(config.experts) * (routed * probs.mean(0)).sum();
    }
    if (capture) router_input = u.detach();
    return x + experts(u, ids, weights).view(shape);
  }

  /// sum_k w_k expert_{ids_k}(u): each expert sees only the tokens routed to it.
  torch::Tensor experts(const torch::Tensor& u, const torch::Tensor& ids, const torch::Tensor& weights) {
    auto out = torch::zeros_like(u);
    for (std::int64_t e = 0; e < config.experts; ++e) {
      const auto hit = (ids == e).nonzero();
      if (hit.size(0) == 0) continue;
      const auto rows = hit.select(1, 0), slots = hit.select(1, 1);
      const auto h = torch::gelu(torch::baddbmm(b1[e], u.index_select(0, rows).unsqueeze(0), w1[e].unsqueeze(0)));
      const auto y = torch::baddbmm(b2[e], h, w2[e].unsqueeze(0)).squeeze(0);
      out = out.index_add(0, rows, y * weights.index({rows, slots}).unsqueeze(1));
    }
    return out;
  }

  ModelConfig config;                    ///< shapes
  std::int64_t layer;                    ///< index of this block
  torch::nn::LayerNorm norm_mix, norm_moe;
  torch::nn::Linear mix;                 ///< mixes the tokens of an image
  torch::nn::Linear router;              ///< the MAP router, [E, D]
  torch::Tensor w1, b1, w2, b2;          ///< the experts' MLPs
  vmoer_torch::RouterModule* bayes = nullptr;  ///< a vmoer router replacing `router` (not owned)
  bool capture = false;                  ///< keep the router input of the last forward
  torch::Tensor router_input;            ///< [B * N, D] when capture
  torch::Tensor aux, kl, temperature_term, signals;  ///< by-products of the last forward
};
TORCH_MODULE(MoeBlock);

/// Patch embedding, MoE blocks, mean pooling, classifier.
struct ClassifierImpl : torch::nn::Module {
  explicit ClassifierImpl(const ModelConfig& c)
      : config(c),
        embed(register_module("embed", torch::nn::Linear(c.patch * c.patch, c.dim))),
        norm(register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.dim})))),
        head(register_module("head", torch::nn::Linear(c.dim, 10))) {
    position = register_parameter("position", torch::randn({c.tokens(), c.dim}) * 0.02);
    for (std::int64_t l = 0; l < c.layers; ++l)
      blocks.push_back(register_module("block" + std::to_string(l), MoeBlock(c, l)));
  }

  /// images [B, 784] (normalised) -> logits [B, 10].
  torch::Tensor forward(const torch::Tensor& images, std::uint32_t token_offset = 0) {
    return forward_from(prefix(images, 0, token_offset), 0, token_offset);
  }

  /// The tokens entering block `first` [B, N, D]: patch embedding and blocks 0 .. first - 1.
  /// Predictions whose randomness starts at block `first` compute this once for all samples.
  torch::Tensor prefix(const torch::Tensor& images, std::size_t first, std::uint32_t token_offset = 0) {
    const auto b = images.size(0), g = 28 / config.patch, p = config.patch;
    auto x = images.view({b, g, p, g, p}).permute({0, 1, 3, 2, 4}).reshape({b, g * g, p * p});
    x = embed(x) + position;
    for (std::size_t l = 0; l < first; ++l) x = blocks[l]->forward(x, token_offset);
    return x;
  }

  /// Logits [B, 10] from the tokens entering block `first` (see prefix()).
  torch::Tensor forward_from(torch::Tensor x, std::size_t first, std::uint32_t token_offset = 0) {
    for (std::size_t l = first; l < blocks.size(); ++l) x = blocks[l]->forward(x, token_offset);
    return head(norm(x.mean(1)));
  }

  /// The mean of a per-block scalar by-product over the blocks that produced one.
  template <class Get>
  torch::Tensor sum_over_blocks(Get get) {
    torch::Tensor total = torch::zeros({});
    for (auto& block : blocks)
      if (get(*block).defined()) total = total + get(*block);
    return total;
  }

  ModelConfig config;  ///< shapes
  torch::nn::Linear embed;
  torch::nn::LayerNorm norm;
  torch::nn::Linear head;
  torch::Tensor position;
  std::vector<MoeBlock> blocks;  ///< the MoE blocks, in order
};
TORCH_MODULE(Classifier);

}  // namespace fmnist
