// The routers of a Hugging Face checkpoint directory (one model.safetensors or shards
// with model.safetensors.index.json), loaded by family and layer: the router tensors
// under the family's checkpoint names, converted to T (F16/BF16 on load), and the
// convention its config.json sets. A LayerRouter then builds the deterministic router
// of that layer, or supplies the weights and selector for a Bayesian one.
#pragma once

#include <cctype>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "vmoer/backend/cpu.hpp"
#include "vmoer/error.hpp"
#include "vmoer/io/checkpoint.hpp"
#include "vmoer/models/config.hpp"
#include "vmoer/models/families.hpp"
#include "vmoer/posterior/dirac.hpp"
#include "vmoer/router.hpp"
#include "vmoer/sampler/mean_only.hpp"
#include "vmoer/selector/top_k.hpp"

namespace vmoer::models {

/// One layer's router as a checkpoint stores it, with the convention of its family.
template <class T = float>
struct LayerRouter {
  Index layer = 0;                     ///< decoder layer index
  Convention convention{};             ///< how the layer turns logits into experts and weights
  Matrix<T> weight;                    ///< [E, D] router projection, logits = hidden weight^T
  Vector<T> bias;                      ///< [E] router bias (GPT-OSS), or empty
  std::vector<float> correction_bias;  ///< [E] selection-only bias (DeepSeek-V3, GLM-4, MiniMax-M2, ERNIE), or empty

  /// E.
  Index experts() const { return weight.rows(); }
  /// D.
  Index dim() const { return weight.cols(); }
  /// The deterministic selector of this layer.
  TopK selector() const { return TopK{convention, correction_bias}; }
  /// The layer's own routing: its weights as a point mass, routed with its convention.
  Router<Dirac<T>, MeanOnly, TopK, Cpu> dirac(Cpu backend = {}) const {
    return Router<Dirac<T>, MeanOnly, TopK, Cpu>(Dirac<T>(weight, bias), MeanOnly{}, selector(),
                                                 rng::Stream{0, std::uint32_t(layer)}, backend);
  }
};

/// The name, for `layer`, of the first of `patterns` that `ck` holds, or nothing.
inline std::optional<std::string> find_tensor(const io::checkpoint& ck, const NamePatterns& patterns, Index layer) {
  for (const std::string_view p : patterns)
    if (!p.empty())
      if (std::string n = tensor_name(p, layer); ck.contains(n)) return n;
  return std::nullopt;
}

namespace detail {

// The layer index of `name` under `pattern`, or -1 when it does not match.
inline Index match_layer(std::string_view name, std::string_view pattern) {
  const std::size_t at = pattern.find("{i}");
  if (at == std::string_view::npos) return -1;
  const std::string_view prefix = pattern.substr(0, at), suffix = pattern.substr(at + 3);
  if (name.size() <= prefix.size() + suffix.size() || !name.starts_with(prefix) || !name.ends_with(suffix)) return -1;
  const std::string_view digits = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
  if (digits.size() > 9 || (digits.size() > 1 && digits[0] == '0')) return -1;
  Index layer = 0;
  for (const char c : digits) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return -1;
    layer = layer * 10 + (c - '0');
  }
  return layer;
}

}  // namespace detail

/// The layers of `ck` that hold a router weight of `family`, ascending.
inline std::vector<Index> router_layers(const io::checkpoint& ck, Family family) {
  std::set<Index> layers;
  for (const std::string_view name : ck.names())
    for (const std::string_view p : info(family).weight)
      if (!p.empty())
        if (const Index l = detail::match_layer(name, p); l >= 0) layers.insert(l);
  return {layers.begin(), layers.end()};
}

/// The settings of `family` for `layer` from the checkpoint's config.json, or the
/// family's defaults when the directory has none.
inline Settings checkpoint_settings(const io::checkpoint& ck, Family family, Index layer = 0) {
  return ck.config() ? read_settings(family, *ck.config(), layer) : default_settings(family);
}

/// Layer `layer`'s router of `family` in `ck`, routed with `settings`. Throws
/// vmoer::io_error when a tensor is missing or has the wrong shape or dtype, or when
/// config.json declares another number of experts than the weight has, and
/// vmoer::invalid_argument when the settings do not fit the layer (K > E, groups...).
template <class T = float>
LayerRouter<T> load_router(const io::checkpoint& ck, Family family, Index layer, const Settings& settings) {
  const FamilyInfo& f = info(family);
  const auto fail = [&](auto&&... message) -> void {
    throw io_error(vmoer::detail::concat("vmoer: ", ck.directory().string(), ": ", f.name, " layer ", layer, ": ",
                                         message...));
  };
  const std::optional<std::string> weight_name = find_tensor(ck, f.weight, layer);
  if (!weight_name) fail("no router weight (looked for '", tensor_name(f.weight[0], layer), "')");
  LayerRouter<T> r;
  r.layer = layer;
  r.convention = convention(family, settings);
  const io::tensor_view w = ck.get(*weight_name);
  r.weight = w.to_matrix<T>();
  if (r.weight.rows() < 1 || r.weight.cols() < 1) fail("router weight '", *weight_name, "' is empty");
  const Index experts = r.weight.rows();
  if (ck.config())
    if (const std::optional<Index> declared = config_experts(family, *ck.config(), layer); declared && *declared != experts)
      fail("config.json declares ", *declared, " experts, router weight '", *weight_name, "' has ", experts);
  // A vector of E entries, as [E] or (ERNIE's moe_statics) [1, E].
  const auto read_vector = [&](const std::string& name) {
    const io::tensor_view v = ck.get(name);
    const bool fits = (v.rank() == 1 && v.shape()[0] == experts) || (v.rank() == 2 && v.shape()[0] == 1 && v.shape()[1] == experts);
    if (!fits) fail("tensor '", name, "' has shape ", io::format_shape(v.shape()), ", expected [", experts, "]");
    return v.copy_to<T>();
  };
  if (const std::optional<std::string> b = find_tensor(ck, f.bias, layer)) {
    const std::vector<T> values = read_vector(*b);
    r.bias = Eigen::Map<const Vector<T>>(values.data(), experts);
  }
  if (const std::optional<std::string> b = find_tensor(ck, f.correction_bias, layer)) {
    for (const T v : read_vector(*b)) r.correction_bias.push_back(float(v));
  }
  try {
    validate(r.selector(), experts);
  } catch (const invalid_argument& e) {  // say which layer, keeping the type
    std::string_view what = e.what();
    if (what.starts_with("vmoer: ")) what.remove_prefix(7);
    throw invalid_argument(vmoer::detail::concat("vmoer: ", ck.directory().string(), ": ", f.name, " layer ", layer,
                                                 ": ", what));
  }
  return r;
}

/// Layer `layer`'s router of `family` in `ck`, routed as its config.json says.
template <class T = float>
LayerRouter<T> load_router(const io::checkpoint& ck, Family family, Index layer) {
  return load_router<T>(ck, family, layer, checkpoint_settings(ck, family, layer));
}

/// Every router of `family` in `ck`, by ascending layer, each routed as config.json says.
template <class T = float>
std::vector<LayerRouter<T>> load_routers(const io::checkpoint& ck, Family family) {
  std::vector<LayerRouter<T>> out;
  for (const Index layer : router_layers(ck, family)) out.push_back(load_router<T>(ck, family, layer));
  return out;
}

}  // namespace vmoer::models
