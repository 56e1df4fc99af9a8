// config.json settings of each family, and the round trip: a sharded checkpoint
// directory (two shards, model.safetensors.index.json, config.json) written with the
// library's writer, its routers loaded by family and layer and routed, against a
// direct route of the same tensors under the settings the config spells out.
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "../io/io_test_support.hpp"
#include "vmoer/io/safetensors.hpp"
#include "vmoer/models/config.hpp"
#include "vmoer/models/load.hpp"

using namespace vmoer;
using models::Family;
using models::Settings;
using io::test::io_error_message;

namespace {

io::json::value parse(std::string_view text) { return io::json::parse(text, {.source = "config.json"}); }

/// A layer's router tensors: names and float values (stored as F32 or BF16).
struct Tensor {
  std::string name;
  std::vector<Index> shape;
  std::vector<float> values;
};

/// A model directory: tensors of even layers in shard 1, of odd layers (and the
/// unrelated tensors) in shard 2, the index, and config.json.
void write_checkpoint(const std::filesystem::path& dir, const std::vector<Tensor>& tensors, io::dtype type,
                      const std::string& config) {
  io::safetensors_writer shards[2];
  std::vector<std::vector<bfloat16>> halves;
  halves.reserve(tensors.size());
  std::string map;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    const int shard = int(i % 2);
    if (type == io::dtype::bf16) {
      halves.emplace_back(t.values.begin(), t.values.end());
      shards[shard].add(t.name, t.shape, halves.back());
    } else {
      shards[shard].add(t.name, t.shape, t.values);
    }
    if (!map.empty()) map += ',';
    map += io::json::quoted(t.name);
    map += shard == 0 ? ":\"model-00001-of-00002.safetensors\"" : ":\"model-00002-of-00002.safetensors\"";
  }
  shards[0].save(dir / "model-00001-of-00002.safetensors");
  shards[1].save(dir / "model-00002-of-00002.safetensors");
  std::ofstream(dir / "model.safetensors.index.json") << "{\"metadata\":{\"total_size\":0},\"weight_map\":{" << map
                                                      << "}}";
  std::ofstream(dir / "config.json") << config;
}

std::vector<float> random_values(std::size_t n, double scale, double mean, std::mt19937_64& g) {
  std::normal_distribution<double> d(mean, scale);
  std::vector<float> v(n);
  for (float& x : v) x = float(d(g));
  return v;
}

/// One family's checkpoint: which layers hold routers, under which names.
struct Model {
  Family family;
  Index experts, dim;
  std::vector<Index> layers;
  std::string weight, bias, correction;  ///< patterns with {i}; empty: none
  std::vector<Index> correction_shape;   ///< shape of the correction bias
  std::string config;
  std::vector<Settings> expected;        ///< the settings each layer's config spells out
  io::dtype type = io::dtype::f32;
};

std::vector<Model> models_to_write() {
  std::vector<Model> m;
  Settings v3 = models::default_settings(Family::deepseek_v3);
  v3.top_k = 4, v3.n_group = 4, v3.topk_group = 2, v3.scaling = 1.5, v3.norm_topk_prob = false;
  m.push_back({Family::deepseek_v3, 32, 24, {1, 2, 3}, "model.layers.{i}.mlp.gate.weight", "",
               "model.layers.{i}.mlp.gate.e_score_correction_bias", {32},
               R"({"model_type":"deepseek_v3","num_hidden_layers":4,"first_k_dense_replace":1,"n_routed_experts":32,
                   "num_experts_per_tok":4,"n_group":4,"topk_group":2,"routed_scaling_factor":1.5,
                   "norm_topk_prob":false,"topk_method":"noaux_tc"})",
               {v3, v3, v3}});
  Settings oss = models::default_settings(Family::gpt_oss);
  oss.top_k = 2;
  m.push_back({Family::gpt_oss, 8, 16, {0, 1, 2, 3}, "model.layers.{i}.mlp.router.weight",
               "model.layers.{i}.mlp.router.bias", "", {},
               R"({"model_type":"gpt_oss","num_hidden_layers":4,"num_local_experts":8,"num_experts_per_tok":2})",
               {oss, oss, oss, oss}});
  Settings ernie = models::default_settings(Family::ernie4_5_moe);
  ernie.top_k = 3, ernie.norm_min = 0.5;
  m.push_back({Family::ernie4_5_moe, 16, 16, {1, 2}, "model.layers.{i}.mlp.gate.weight", "",
               "model.layers.{i}.mlp.moe_statics.e_score_correction_bias", {1, 16},
               R"({"model_type":"ernie4_5_moe","moe_num_experts":16,"moe_k":3,"moe_norm_min":0.5})", {ernie, ernie},
               io::dtype::bf16});
  Settings dbrx = models::default_settings(Family::dbrx);
  dbrx.top_k = 2, dbrx.norm_p = 2.0;
  m.push_back({Family::dbrx, 8, 16, {0, 1}, "transformer.blocks.{i}.ffn.router.layer.weight", "", "", {},
               R"({"model_type":"dbrx","n_layers":2,"d_model":16,
                   "ffn_config":{"moe_num_experts":8,"moe_top_k":2,"moe_normalize_expert_weights":2}})",
               {dbrx, dbrx}});
  Settings hy = models::default_settings(Family::hunyuan_v1_moe);
  Settings hy0 = hy, hy1 = hy;
  hy0.top_k = 2, hy1.top_k = 3;
  m.push_back({Family::hunyuan_v1_moe, 8, 16, {0, 1}, "model.layers.{i}.mlp.gate.wg.weight", "", "", {},
               R"({"model_type":"hunyuan_v1_moe","num_experts":8,"moe_topk":[2,3]})", {hy0, hy1}});
  Settings mix = models::default_settings(Family::mixtral);
  m.push_back({Family::mixtral, 8, 16, {0, 1}, "model.layers.{i}.block_sparse_moe.gate.weight", "", "", {},
               R"({"model_type":"mixtral","num_local_experts":8})", {mix, mix}});
  Settings l4 = models::default_settings(Family::llama4);
  l4.top_k = 2;
  m.push_back({Family::llama4, 8, 16, {1, 3}, "language_model.model.layers.{i}.feed_forward.router.weight", "", "",
               {}, R"({"model_type":"llama4","text_config":{"num_local_experts":8,"num_experts_per_tok":2}})",
               {l4, l4}});
  return m;
}

}  // namespace

TEST_CASE("config.json sets each family's settings under its own keys") {
  const Settings v3 = models::read_settings(Family::deepseek_v3, parse(R"({"n_routed_experts":256,"num_experts_per_tok":8,
      "n_group":8,"topk_group":4,"routed_scaling_factor":2.5,"norm_topk_prob":true})"));
  CHECK(v3.top_k == 8);
  CHECK(v3.n_group == 8);
  CHECK(v3.topk_group == 4);
  CHECK(v3.scaling == 2.5);
  CHECK(v3.norm_topk_prob);
  // DeepSeek-V2 uses its groups only under group_limited_greedy.
  const Settings greedy = models::read_settings(Family::deepseek_v2, parse(R"({"num_experts_per_tok":6,"n_group":8,"topk_group":3})"));
  CHECK(greedy.n_group == 1);
  const Settings limited = models::read_settings(
      Family::deepseek_v2, parse(R"({"num_experts_per_tok":6,"topk_method":"group_limited_greedy","n_group":8,"topk_group":3})"));
  CHECK(limited.n_group == 8);
  CHECK(limited.topk_group == 3);
  CHECK(io_error_message([] { models::read_settings(Family::deepseek_v2, parse(R"({"topk_method":"noaux_tc"})")); })
            .find("/topk_method") != std::string::npos);
  // Keys a family does not read leave its settings alone.
  CHECK_FALSE(models::read_settings(Family::mixtral, parse(R"({"norm_topk_prob":true})")).norm_topk_prob);
  CHECK(models::read_settings(Family::qwen3_moe, parse(R"({"norm_topk_prob":true})")).norm_topk_prob);
  // DBRX: nested, and null turns the renormalisation off.
  CHECK(models::read_settings(Family::dbrx, parse(R"({"ffn_config":{"moe_top_k":4}})")).norm_p == 1.0);
  CHECK_FALSE(models::read_settings(Family::dbrx, parse(R"({"ffn_config":{"moe_normalize_expert_weights":null}})")).norm_p);
  CHECK(models::read_settings(Family::dbrx, parse(R"({"ffn_config":{"moe_top_k":4}})")).top_k == 4);
  // PhiMoE ignores num_experts_per_tok, as its sparsemixer does.
  const Settings phi = models::read_settings(Family::phimoe, parse(R"({"num_experts_per_tok":4,"router_jitter_noise":0.05})"));
  CHECK(phi.top_k == 2);
  CHECK(phi.jitter_eps == 0.05);
  CHECK(models::read_settings(Family::ernie4_5_moe, parse(R"({"moe_k":4,"moe_norm_min":0.25})")).norm_min == 0.25);
  CHECK(models::read_settings(Family::hunyuan_v1_moe, parse(R"({"moe_topk":[1,2,3]})"), 2).top_k == 3);
  CHECK(models::config_experts(Family::hunyuan_v1_moe, parse(R"({"num_experts":[4,8]})"), 1) == 8);
  CHECK(models::config_layers(Family::dbrx, parse(R"({"n_layers":40})")) == 40);
  // Wrong types name the key.
  CHECK(io_error_message([] { models::read_settings(Family::mixtral, parse(R"({"num_experts_per_tok":"2"})")); })
            .find("/num_experts_per_tok: expected an integer") != std::string::npos);
  CHECK(io_error_message([] { models::read_settings(Family::hunyuan_v1_moe, parse(R"({"moe_topk":[1]})"), 3); })
            .find("/moe_topk") != std::string::npos);
}

TEST_CASE("a sharded checkpoint round-trips: its routers, loaded by family and layer, route as the tensors do") {
  std::mt19937_64 g(11);
  for (const Model& m : models_to_write()) {
    CAPTURE(models::name(m.family));
    const io::test::temp_directory dir;
    std::vector<Tensor> tensors{{"model.embed_tokens.weight", {4, m.dim}, random_values(std::size_t(4 * m.dim), 1, 0, g)}};
    std::map<Index, std::map<std::string, std::vector<float>>> written;
    for (const Index layer : m.layers) {
      auto add = [&](const std::string& pattern, std::vector<Index> shape, double scale, double mean) {
        if (pattern.empty()) return;
        Index n = 1;
        for (Index d : shape) n *= d;
        Tensor t{models::tensor_name(pattern, layer), shape, random_values(std::size_t(n), scale, mean, g)};
        if (m.type == io::dtype::bf16)  // the values the file holds
          for (float& v : t.values) v = float(bfloat16(v));
        written[layer][pattern] = t.values;
        tensors.push_back(std::move(t));
      };
      add(m.weight, {m.experts, m.dim}, 1 / std::sqrt(double(m.dim)), 0);
      add(m.bias, {m.experts}, 0.5, 0);
      add(m.correction, m.correction_shape, 0.05, 0);
      tensors.push_back({"model.layers." + std::to_string(layer) + ".mlp.experts.0.up_proj.weight", {2, m.dim},
                         random_values(std::size_t(2 * m.dim), 1, 0, g)});
    }
    write_checkpoint(dir.path(), tensors, m.type, m.config);

    const io::checkpoint ck(dir.path());
    CHECK(models::router_layers(ck, m.family) == m.layers);
    const std::vector<models::LayerRouter<float>> routers = models::load_routers<float>(ck, m.family);
    REQUIRE(routers.size() == m.layers.size());
    Matrix<float> hidden(20, m.dim);
    for (float& v : std::span(hidden.data(), std::size_t(hidden.size()))) v = random_values(1, 1, 0, g)[0];
    for (std::size_t i = 0; i < routers.size(); ++i) {
      const Index layer = m.layers[i];
      CAPTURE(layer);
      const models::LayerRouter<float>& r = routers[i];
      CHECK(r.layer == layer);
      // The direct route: the written values, the settings the config spells out.
      const auto& w = written[layer];
      const Matrix<float> weight = Eigen::Map<const Matrix<float>>(w.at(m.weight).data(), m.experts, m.dim);
      Vector<float> bias;
      if (!m.bias.empty()) bias = Eigen::Map<const Vector<float>>(w.at(m.bias).data(), m.experts);
      const std::vector<float> correction = m.correction.empty() ? std::vector<float>{} : w.at(m.correction);
      const Convention c = models::convention(m.family, m.expected[i]);
      CHECK(r.convention.top_k == c.top_k);
      CHECK(r.convention.n_group == c.n_group);
      CHECK(r.convention.normalize == c.normalize);
      CHECK(r.convention.norm_p == c.norm_p);
      CHECK(r.convention.norm_min == c.norm_min);
      CHECK(r.convention.scaling == c.scaling);
      CHECK(r.weight == weight);
      CHECK(r.correction_bias == correction);
      const Router direct(Dirac<float>(weight, bias), MeanOnly{}, TopK{c, correction});
      const Routing<float> want = direct.route(hidden), got = r.dirac().route(hidden);
      CHECK(got.ids == want.ids);
      CHECK(got.weights == want.weights);
    }
  }
}

TEST_CASE("a checkpoint that does not fit its family fails with the layer and the problem") {
  const io::test::temp_directory dir;
  std::mt19937_64 g(5);
  write_checkpoint(dir.path(),
                   {{"model.layers.0.mlp.gate.weight", {8, 4}, random_values(32, 1, 0, g)},
                    {"model.layers.0.mlp.gate.e_score_correction_bias", {7}, random_values(7, 1, 0, g)},
                    {"model.layers.1.mlp.gate.weight", {8, 4}, random_values(32, 1, 0, g)}},
                   io::dtype::f32, R"({"n_routed_experts":8,"num_experts_per_tok":2})");
  const io::checkpoint ck(dir.path());
  CHECK(io_error_message([&] { models::load_router(ck, Family::deepseek_v3, 5); })
            .find("deepseek_v3 layer 5: no router weight (looked for 'model.layers.5.mlp.gate.weight')") !=
        std::string::npos);
  Settings s = models::default_settings(Family::deepseek_v3);
  s.n_group = 1, s.topk_group = 1;
  CHECK(io_error_message([&] { models::load_router(ck, Family::deepseek_v3, 0, s); })
            .find("'model.layers.0.mlp.gate.e_score_correction_bias' has shape [7], expected [8]") != std::string::npos);
  CHECK_THROWS_WITH_AS(models::load_router(ck, Family::deepseek_v3, 1, models::default_settings(Family::deepseek_v3)),
                       doctest::Contains("deepseek_v3 layer 1: TopK: topk_group = 4 groups of 1 experts hold fewer than top_k"), invalid_argument);

  const io::test::temp_directory other;
  write_checkpoint(other.path(), {{"model.layers.0.block_sparse_moe.gate.weight", {8, 4}, random_values(32, 1, 0, g)}},
                   io::dtype::f32, R"({"num_local_experts":6})");
  CHECK(io_error_message([&] { models::load_routers(io::checkpoint(other.path()), Family::mixtral); })
            .find("mixtral layer 0: config.json declares 6 experts, router weight "
                  "'model.layers.0.block_sparse_moe.gate.weight' has 8") != std::string::npos);
}
