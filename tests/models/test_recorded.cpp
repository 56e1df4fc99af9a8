// The presets against routing recorded from transformers 5.17 itself
// (tests/data/hf_routing, see its README): ids identical, weights within 1e-5 relative.
#include <algorithm>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <doctest/doctest.h>

#include "vmoer/io/safetensors.hpp"
#include "vmoer/models/families.hpp"
#include "vmoer/models/load.hpp"

using namespace vmoer;

namespace {

/// The settings the recording was made with, from its metadata.
models::Settings recorded_settings(models::Family family, const io::metadata_map& meta) {
  models::Settings s = models::default_settings(family);
  s.top_k = std::stol(meta.at("K"));
  if (meta.contains("renormalize")) s.norm_topk_prob = meta.at("renormalize") == "True";
  if (meta.contains("n_group")) s.n_group = std::stol(meta.at("n_group"));
  if (meta.contains("topk_group")) s.topk_group = std::stol(meta.at("topk_group"));
  if (meta.contains("scale")) s.scaling = std::stod(meta.at("scale"));
  return s;
}

}  // namespace

TEST_CASE("the presets reproduce the routing recorded from transformers") {
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(VMOER_TEST_DATA "/hf_routing")) {
    if (entry.path().extension() != ".safetensors") continue;
    ++files;
    const io::safetensors_reader file(entry.path());
    const std::string family_name = file.metadata().at("family");
    CAPTURE(family_name);
    const models::Family family = models::family_from_name(family_name);
    models::LayerRouter<float> r;
    r.convention = models::convention(family, recorded_settings(family, file.metadata()));
    r.weight = file.get("weight").to_matrix<float>();
    if (const auto b = file.find("bias")) r.bias = b->to_vector<float>();
    if (const auto b = file.find("correction_bias")) r.correction_bias = b->copy_to<float>();
    const Matrix<float> hidden = file.get("hidden").to_matrix<float>();
    const Matrix<float> logits = file.get("logits").to_matrix<float>();
    const IdMatrix ids = file.get("ids").to_matrix<std::int32_t>();
    const Matrix<float> weights = file.get("weights").to_matrix<float>();
    REQUIRE(ids.cols() == r.convention.top_k);

    const Routing<float> out = r.dirac().route(hidden, {.keep_logits = true});
    for (Index t = 0; t < hidden.rows(); ++t) {
      CAPTURE(t);
      for (Index e = 0; e < logits.cols(); ++e)
        CHECK(std::abs(out.logits(t, e) - logits(t, e)) <= 1e-5f * (1 + std::abs(logits(t, e))));
      std::vector<std::pair<int, float>> got;
      for (Index i = 0; i < ids.cols(); ++i) got.emplace_back(out.ids(t, i), out.weights(t, i));
      std::sort(got.begin(), got.end());
      for (Index i = 0; i < ids.cols(); ++i) {
        CAPTURE(i);
        REQUIRE(got[std::size_t(i)].first == ids(t, i));  // the recording's rows are sorted by id
        CHECK(std::abs(got[std::size_t(i)].second - weights(t, i)) <= 1e-5f * std::abs(weights(t, i)));
      }
    }
  }
  CHECK(files == 6);
}
