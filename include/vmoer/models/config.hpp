// A family's router settings from a Hugging Face config.json: each family reads the
// keys its configuration class defines, under the names and nesting transformers uses
// (DBRX's ffn_config, Llama 4's text_config), with the class defaults for absent or null
// keys. Wrongly typed values fail with the key's JSON path (vmoer::io_error).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "vmoer/error.hpp"
#include "vmoer/io/json.hpp"
#include "vmoer/models/families.hpp"

namespace vmoer::models {

/// The value at a dotted key path ("ffn_config.moe_top_k"), or null when a step is
/// missing, null or not an object.
inline const io::json::value* find_key(const io::json::value& config, std::string_view path) {
  const io::json::value* v = &config;
  while (v != nullptr) {
    if (!v->is_object()) return nullptr;
    const std::size_t dot = path.find('.');
    v = v->find(path.substr(0, dot));
    if (dot == std::string_view::npos) break;
    path.remove_prefix(dot + 1);
  }
  return v != nullptr && !v->is_null() ? v : nullptr;
}

/// The value of the first of `keys` that `config` holds, or null.
inline const io::json::value* find_key(const io::json::value& config, const ConfigKeys& keys) {
  for (const std::string_view key : keys)
    if (!key.empty())
      if (const io::json::value* v = find_key(config, key)) return v;
  return nullptr;
}

namespace detail {

// An integer setting, or layer `layer`'s entry of a per-layer list (HunYuan's moe_topk).
inline Index layer_integer(const io::json::value& v, Index layer) {
  return v.is_array() ? v.at(std::size_t(layer)).as_int() : v.as_int();
}

}  // namespace detail

/// The number of routed experts of layer `layer` that `config` declares, or nothing.
inline std::optional<Index> config_experts(Family family, const io::json::value& config, Index layer = 0) {
  if (const io::json::value* v = find_key(config, info(family).experts_keys)) return detail::layer_integer(*v, layer);
  return std::nullopt;
}

/// The number of decoder layers that `config` declares, or nothing.
inline std::optional<Index> config_layers(Family family, const io::json::value& config) {
  if (const io::json::value* v = find_key(config, info(family).layers_keys)) return v->as_int();
  return std::nullopt;
}

/// The settings of `family` for layer `layer` from a parsed config.json: the family's
/// defaults, replaced by every key of its configuration class that is present.
inline Settings read_settings(Family family, const io::json::value& config, Index layer = 0) {
  const FamilyInfo& f = info(family);
  Settings s = f.defaults;
  if (!config.is_object())
    throw io_error(vmoer::detail::concat("vmoer: ", config.source(), ": config is ",
                                         io::json::describe(config.type()), ", not an object"));
  const auto key = [&](std::string_view k) { return find_key(config, k); };
  if (const io::json::value* v = find_key(config, f.top_k_keys)) s.top_k = detail::layer_integer(*v, layer);
  if (f.knobs & knob_norm_topk_prob)
    if (const io::json::value* v = key("norm_topk_prob")) s.norm_topk_prob = v->as_bool();
  if (f.knobs & knob_scaling)
    if (const io::json::value* v = key("routed_scaling_factor")) s.scaling = v->as_double();
  if (family == Family::deepseek_v2) {
    // Groups only under topk_method "group_limited_greedy"; transformers has no other method.
    const io::json::value* method = key("topk_method");
    const std::string topk_method = method ? method->as_string() : "greedy";
    if (topk_method == "group_limited_greedy") {
      s.n_group = config.at("n_group").as_int();
      s.topk_group = config.at("topk_group").as_int();
    } else if (topk_method != "greedy") {
      throw io_error(vmoer::detail::concat("vmoer: ", config.source(), ": /topk_method: deepseek_v2 routes with \"greedy\" or "
                                           "\"group_limited_greedy\", not \"", topk_method, "\""));
    }
  } else if (f.knobs & knob_groups) {
    if (const io::json::value* v = key("n_group")) s.n_group = v->as_int();
    if (const io::json::value* v = key("topk_group")) s.topk_group = v->as_int();
  }
  if (f.knobs & knob_norm_p) {
    const io::json::value* v = key("ffn_config.moe_normalize_expert_weights");
    const io::json::value* ffn = key("ffn_config");
    // An explicit null turns the renormalisation off; an absent key keeps p = 1.
    const bool explicit_null = ffn && ffn->is_object() && ffn->find("moe_normalize_expert_weights") && !v;
    if (v) s.norm_p = v->as_double();
    else if (explicit_null) s.norm_p = std::nullopt;
  }
  if (f.knobs & knob_norm_min)
    if (const io::json::value* v = key("moe_norm_min")) s.norm_min = v->as_double();
  if (f.knobs & knob_jitter_eps)
    if (const io::json::value* v = key("router_jitter_noise")) s.jitter_eps = v->as_double();
  return s;
}

}  // namespace vmoer::models
