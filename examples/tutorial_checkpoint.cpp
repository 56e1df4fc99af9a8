// Tutorial: load the routers of a Hugging Face checkpoint and reproduce its routing
// (docs/tutorials.md, "Load a Hugging Face checkpoint").
//   1. open a checkpoint directory (model.safetensors, or shards with their index);
//   2. find the layers that hold a router of the family and load each, with the
//      convention its config.json sets;
//   3. route, and check the result against a router built directly from the tensors;
//   4. swap one layer for a Bayesian router with the same convention.
//
//   tutorial_checkpoint                     writes a small qwen3_moe-style checkpoint to a
//                                           temporary directory and uses it (no network needed)
//   tutorial_checkpoint DIR [FAMILY]        uses a downloaded model; FAMILY defaults to the
//                                           model_type of DIR/config.json
// Returns non-zero when the loaded routing differs from the direct route.
#include <stdlib.h>  // mkdtemp (POSIX)

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <vmoer/io/checkpoint.hpp>
#include <vmoer/io/safetensors.hpp>
#include <vmoer/models/load.hpp>
#include <vmoer/vmoer.hpp>

namespace {

using namespace vmoer;
namespace fs = std::filesystem;

// A temporary directory, removed with everything in it when the program leaves.
class TemporaryDirectory {
 public:
  TemporaryDirectory() {
    std::string name = (fs::temp_directory_path() / "vmoer-tutorial-XXXXXX").string();
    if (mkdtemp(name.data()) == nullptr) throw io_error("vmoer: cannot create a temporary directory under " + name);
    path_ = name;
  }
  ~TemporaryDirectory() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  TemporaryDirectory(const TemporaryDirectory&) = delete;
  TemporaryDirectory& operator=(const TemporaryDirectory&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// The synthetic model: a qwen3_moe with 4 decoder layers of which layer 0 is dense
// (mlp_only_layers), so layers 1, 2 and 3 hold a router of E = 16 experts over D = 32.
constexpr Index synthetic_layers = 4, synthetic_experts = 16, synthetic_dim = 32, synthetic_top_k = 4;
constexpr const char* synthetic_config = R"({
  "model_type": "qwen3_moe", "hidden_size": 32, "num_hidden_layers": 4, "mlp_only_layers": [0],
  "num_experts": 16, "num_experts_per_tok": 4, "norm_topk_prob": true
})";

// Writes the synthetic model to `dir` as transformers would save it, sharded: tensors
// alternate between two safetensors files, model.safetensors.index.json maps each name
// to its file, config.json holds the settings. Returns the router weights it wrote.
std::vector<Matrix<float>> write_synthetic_checkpoint(const fs::path& dir) {
  const std::string shard_names[2] = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"};
  io::safetensors_writer shards[2];
  std::string weight_map;
  int next_shard = 0;
  std::vector<Matrix<float>> written;
  const auto add = [&](const std::string& name, const Matrix<float>& m) {
    shards[next_shard].add(name, m);
    if (!weight_map.empty()) weight_map += ',';
    weight_map += io::json::quoted(name);
    weight_map += ':';
    weight_map += io::json::quoted(shard_names[next_shard]);
    next_shard = 1 - next_shard;
  };
  std::srand(7);
  add("model.embed_tokens.weight", Matrix<float>::Random(100, synthetic_dim));
  for (Index layer = 0; layer < synthetic_layers; ++layer) {
    const std::string prefix = "model.layers." + std::to_string(layer) + ".mlp.";
    if (layer == 0) {  // dense: an MLP, no router
      add(prefix + "up_proj.weight", Matrix<float>::Random(64, synthetic_dim));
      continue;
    }
    // The router weight under the family's checkpoint name, and one expert's tensor that
    // the loader must leave alone.
    written.push_back(Matrix<float>::Random(synthetic_experts, synthetic_dim) * (2.0f / std::sqrt(float(synthetic_dim))));
    add(models::tensor_name(models::info(models::Family::qwen3_moe).weight[0], layer), written.back());
    add(prefix + "experts.0.up_proj.weight", Matrix<float>::Random(8, synthetic_dim));
  }
  shards[0].save(dir / shard_names[0]);
  shards[1].save(dir / shard_names[1]);
  std::ofstream(dir / "model.safetensors.index.json") << R"({"metadata":{"total_size":0},"weight_map":{)" << weight_map
                                                      << "}}\n";
  std::ofstream(dir / "config.json") << synthetic_config;
  return written;
}

bool same_routing(const Routing<float>& a, const Routing<float>& b) { return a.ids == b.ids && a.weights == b.weights; }

}  // namespace

int main(int argc, char** argv) try {
  if (argc > 3) throw invalid_argument("usage: tutorial_checkpoint [DIR [FAMILY]]");
  std::optional<TemporaryDirectory> temporary;
  std::vector<Matrix<float>> written;  // synthetic model only
  fs::path dir;
  if (argc >= 2) {
    dir = argv[1];
  } else {
    temporary.emplace();
    dir = temporary->path();
    written = write_synthetic_checkpoint(dir);
    std::printf("wrote a synthetic qwen3_moe checkpoint (2 shards, index, config.json) to %s\n", dir.c_str());
  }

  // 1. Open the directory. The index is checked against the shards here, so a missing
  //    shard fails now, naming the index; tensors are memory-mapped, not read.
  const io::checkpoint ck(dir);
  std::string model_type = argc == 3 ? argv[2] : "";
  if (model_type.empty() && ck.config())
    if (const io::json::value* v = models::find_key(*ck.config(), "model_type")) model_type = v->as_string();
  const models::Family family = models::family_from_name(model_type);

  // 2. The layers that hold a router (dense layers are absent), each loaded with the
  //    settings of config.json: for qwen3_moe, num_experts_per_tok and norm_topk_prob.
  const std::vector<models::LayerRouter<float>> layers = models::load_routers<float>(ck, family);
  if (layers.empty()) throw io_error("vmoer: " + dir.string() + ": no " + std::string(models::name(family)) + " router");
  std::printf("%s: %zu router layers, E = %lld, D = %lld, K = %lld (%s)\n", std::string(models::name(family)).c_str(),
              layers.size(), (long long)layers.front().experts(), (long long)layers.front().dim(),
              (long long)layers.front().convention.top_k, std::string(models::info(family).summary).c_str());

  // Hidden states to route. In a real run these are each layer's inputs from the model's
  // own forward pass (vmoer-route reads them from a safetensors file, docs/models.md);
  // here one random batch stands in for all layers.
  const Index tokens = 48, dim = layers.front().dim();
  std::srand(11);
  const Matrix<float> hidden = Matrix<float>::Random(tokens, dim);

  // 3. Route each layer with its own router, and check it against a router built
  //    directly: the synthetic model's weights as written and the convention its
  //    config spells out (softmax, top-4, renormalised), or, for a real model, the
  //    tensor read by name and the family's convention of config.json's settings.
  int failures = 0;
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const models::LayerRouter<float>& layer = layers[i];
    const Routing<float> loaded = layer.dirac().route(hidden);
    Matrix<float> weight;
    Convention convention;
    if (!written.empty()) {
      weight = written[i];
      convention = Convention{.top_k = synthetic_top_k, .normalize = Normalize::sum};
    } else {
      weight = ck.get(*models::find_tensor(ck, models::info(family).weight, layer.layer)).to_matrix<float>();
      convention = models::convention(family, models::checkpoint_settings(ck, family, layer.layer));
    }
    const Router direct(Dirac<float>(weight, layer.bias), MeanOnly{}, TopK{convention, layer.correction_bias});
    const bool same = same_routing(loaded, direct.route(hidden));
    failures += same ? 0 : 1;
    std::printf("layer %lld: token 0 -> experts", (long long)layer.layer);
    for (Index k = 0; k < loaded.ids.cols(); ++k) std::printf(" %d", loaded.ids(0, k));
    std::printf(", weights sum %.4f; same as the direct route: %s\n", double(loaded.weights.row(0).sum()),
                same ? "yes" : "NO");
  }

  // 4. Make one layer Bayesian: a mean-field posterior around the loaded weights, with
  //    the layer's own selector (its convention and any correction bias), and a stream
  //    whose layer is the decoder layer, so that every layer draws its own noise. The
  //    other layers keep their deterministic routers. Untrained, the posterior's mean is
  //    the loaded router; fine-tune it with docs/training.md or docs/tutorial_torch.md.
  const models::LayerRouter<float>& chosen = layers.back();
  const Router bayes(MeanField<float>(chosen.weight, chosen.bias, {.hidden = 32, .init_sigma = 0.5}),
                     MonteCarlo{.samples = 32}, chosen.selector(),
                     rng::Stream{.seed = 2024, .layer = std::uint32_t(chosen.layer)});
  const Routing<float> deterministic = chosen.dirac().route(hidden), bayesian = bayes.route(hidden);
  Index changed = 0;
  for (Index t = 0; t < tokens; ++t) changed += deterministic.ids.row(t) != bayesian.ids.row(t) ? 1 : 0;
  std::printf("layer %lld made Bayesian (mean-field, S = 32): %lld of %lld tokens change experts; mean entropy "
              "%.3f, mean mutual information %.4f\n",
              (long long)chosen.layer, (long long)changed, (long long)tokens, double(bayesian.signals.entropy.mean()),
              double(bayesian.signals.mutual_information.mean()));
  const bool sums_to_one = ((bayesian.weights.rowwise().sum().array() - 1.0f).abs() < 1e-5f).all();
  if (!written.empty() && !sums_to_one) {  // norm_topk_prob: the Bayesian router keeps the convention
    std::printf("the Bayesian router's weights do not sum to 1\n");
    ++failures;
  }

  std::printf("%s\n", failures ? "the loaded routing DIFFERS from the direct route" : "all checks passed");
  return failures ? 1 : 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "tutorial_checkpoint: %s\n", e.what());
  return 1;
}
