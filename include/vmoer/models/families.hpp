// Routing presets of the Hugging Face MoE families: for each, the convention its router
// follows in transformers 5.x, the checkpoint names of its router tensors and the knobs
// that config.json may set. The conventions are read from
// transformers/models/<family>/modeling_<family>.py (see docs/models.md and
// docs/models_research.md for the source lines behind each entry).
#pragma once

#include <array>
#include <cmath>
#include <optional>
#include <string>
#include <string_view>

#include "vmoer/error.hpp"
#include "vmoer/selector/convention.hpp"

namespace vmoer::models {

/// A Hugging Face MoE model family, named as transformers names its `model_type`.
enum class Family : int {
  mixtral,
  qwen2_moe,
  qwen3_moe,
  olmoe,
  granitemoe,
  granitemoeshared,
  granitemoehybrid,
  jetmoe,
  jamba,
  dbrx,
  deepseek_v2,
  deepseek_v3,
  glm4_moe,
  minimax_m2,
  ernie4_5_moe,
  hunyuan_v1_moe,
  gpt_oss,
  llama4,
  phimoe,
};

/// Number of families.
inline constexpr int family_count = 19;

/// The settings of a family's router that a config.json or a user may change. Each
/// family reads only some of them (FamilyInfo::knobs); the others keep their defaults.
struct Settings {
  Index top_k = 2;                     ///< experts per token
  bool norm_topk_prob = false;         ///< renormalise the K weights to sum 1
  Index n_group = 1;                   ///< expert groups of group-limited selection
  Index topk_group = 1;                ///< groups kept
  double scaling = 1.0;                ///< routed_scaling_factor
  std::optional<double> norm_p = 1.0;  ///< DBRX moe_normalize_expert_weights (none: no renormalisation)
  double norm_min = 1e-12;             ///< ERNIE moe_norm_min
  double jitter_eps = 0.01;            ///< PhiMoE router_jitter_noise
};

/// A setting of Settings, as a bit of FamilyInfo::knobs.
enum Knob : unsigned {
  knob_top_k = 1u << 0,           ///< Settings::top_k
  knob_norm_topk_prob = 1u << 1,  ///< Settings::norm_topk_prob
  knob_groups = 1u << 2,          ///< Settings::n_group and Settings::topk_group
  knob_scaling = 1u << 3,         ///< Settings::scaling
  knob_norm_p = 1u << 4,          ///< Settings::norm_p
  knob_norm_min = 1u << 5,        ///< Settings::norm_min
  knob_jitter_eps = 1u << 6,      ///< Settings::jitter_eps
};

/// Up to three checkpoint names of one tensor, with `{i}` for the layer index: the
/// transformers 5.x module name first, then older or hub names. Unused slots are empty.
using NamePatterns = std::array<std::string_view, 3>;

/// Up to three config.json keys of one setting, first found wins; a dot descends into
/// a nested object ("ffn_config.moe_top_k"). Unused slots are empty.
using ConfigKeys = std::array<std::string_view, 3>;

/// Everything vmoer knows about one family.
struct FamilyInfo {
  Family family;                  ///< the family
  std::string_view name;          ///< its transformers model_type
  NamePatterns weight;            ///< router weight [E, D]
  NamePatterns bias;              ///< router bias [E] (GPT-OSS only)
  NamePatterns correction_bias;   ///< selection-only bias [E] or [1, E]
  unsigned knobs;                 ///< the Knob bits the family reads
  ConfigKeys experts_keys;        ///< number of routed experts E
  ConfigKeys top_k_keys;          ///< K (none for PhiMoE, whose code ignores the key and routes 2)
  ConfigKeys layers_keys;         ///< number of decoder layers
  Settings defaults;              ///< the values of the family's configuration class
  std::string_view summary;       ///< the convention in words
};

namespace detail {

inline constexpr ConfigKeys hidden_layers{"num_hidden_layers"};
inline constexpr ConfigKeys per_tok{"num_experts_per_tok"};
inline constexpr ConfigKeys local_experts{"num_local_experts", "num_experts"};
inline constexpr ConfigKeys experts_first{"num_experts", "num_local_experts"};
inline constexpr ConfigKeys routed_experts{"n_routed_experts", "num_local_experts", "num_experts"};
inline constexpr NamePatterns granite_weight{"model.layers.{i}.block_sparse_moe.router.weight",
                                             "model.layers.{i}.block_sparse_moe.router.layer.weight"};
inline constexpr NamePatterns gate_weight{"model.layers.{i}.mlp.gate.weight"};
inline constexpr NamePatterns gate_correction{"model.layers.{i}.mlp.gate.e_score_correction_bias"};
inline constexpr const char* granite_summary = "softmax over the top-K logits";

inline constexpr std::array<FamilyInfo, family_count> families{{
    {Family::mixtral, "mixtral",
     {"model.layers.{i}.mlp.gate.weight", "model.layers.{i}.block_sparse_moe.gate.weight"}, {}, {}, knob_top_k,
     local_experts, per_tok, hidden_layers, {.top_k = 2}, "softmax, top-K, renormalised"},
    {Family::qwen2_moe, "qwen2_moe", gate_weight, {}, {}, knob_top_k | knob_norm_topk_prob, experts_first, per_tok,
     hidden_layers, {.top_k = 4}, "softmax, top-K, renormalised if norm_topk_prob"},
    {Family::qwen3_moe, "qwen3_moe", gate_weight, {}, {}, knob_top_k | knob_norm_topk_prob, experts_first, per_tok,
     hidden_layers, {.top_k = 8}, "softmax, top-K, renormalised if norm_topk_prob"},
    {Family::olmoe, "olmoe", gate_weight, {}, {}, knob_top_k | knob_norm_topk_prob, experts_first, per_tok,
     hidden_layers, {.top_k = 8}, "softmax, top-K, renormalised if norm_topk_prob"},
    {Family::granitemoe, "granitemoe", granite_weight, {}, {}, knob_top_k, local_experts, per_tok, hidden_layers,
     {.top_k = 2}, granite_summary},
    {Family::granitemoeshared, "granitemoeshared", granite_weight, {}, {}, knob_top_k, local_experts, per_tok,
     hidden_layers, {.top_k = 2}, granite_summary},
    {Family::granitemoehybrid, "granitemoehybrid", granite_weight, {}, {}, knob_top_k, local_experts, per_tok,
     hidden_layers, {.top_k = 2}, granite_summary},
    {Family::jetmoe, "jetmoe", {"model.layers.{i}.mlp.router.layer.weight"}, {}, {}, knob_top_k, local_experts,
     per_tok, hidden_layers, {.top_k = 2}, granite_summary},
    {Family::jamba, "jamba", {"model.layers.{i}.feed_forward.router.weight"}, {}, {}, knob_top_k, experts_first,
     per_tok, hidden_layers, {.top_k = 2}, "softmax, top-K, not renormalised"},
    {Family::dbrx, "dbrx", {"transformer.blocks.{i}.ffn.router.layer.weight"}, {}, {}, knob_top_k | knob_norm_p,
     {"ffn_config.moe_num_experts"}, {"ffn_config.moe_top_k"}, {"n_layers", "num_hidden_layers"}, {.top_k = 1},
     "softmax, top-K, divided by the Lp norm, p = moe_normalize_expert_weights"},
    {Family::deepseek_v2, "deepseek_v2", gate_weight, {}, {}, knob_top_k | knob_groups | knob_scaling,
     routed_experts, per_tok, hidden_layers, {.top_k = 6},
     "softmax, top-K (group_limited_greedy: groups by max, dropped groups 0), x routed_scaling_factor, "
     "norm_topk_prob ignored"},
    {Family::deepseek_v3, "deepseek_v3", gate_weight, {}, gate_correction,
     knob_top_k | knob_norm_topk_prob | knob_groups | knob_scaling, routed_experts, per_tok, hidden_layers,
     {.top_k = 8, .norm_topk_prob = true, .n_group = 8, .topk_group = 4, .scaling = 2.5},
     "sigmoid, correction bias for selection, groups by top-2 sum (dropped -inf), /(sum + 1e-20) if "
     "norm_topk_prob, x routed_scaling_factor"},
    {Family::glm4_moe, "glm4_moe", gate_weight, {}, gate_correction,
     knob_top_k | knob_norm_topk_prob | knob_groups | knob_scaling, routed_experts, per_tok, hidden_layers,
     {.top_k = 8, .norm_topk_prob = true}, "as deepseek_v3"},
    {Family::minimax_m2, "minimax_m2",
     {"model.layers.{i}.mlp.gate.weight", "model.layers.{i}.block_sparse_moe.gate.weight"}, {},
     {"model.layers.{i}.mlp.e_score_correction_bias", "model.layers.{i}.block_sparse_moe.e_score_correction_bias"},
     knob_top_k, local_experts, per_tok, hidden_layers, {.top_k = 8},
     "sigmoid, correction bias for selection, renormalised"},
    {Family::ernie4_5_moe, "ernie4_5_moe", gate_weight, {},
     {"model.layers.{i}.mlp.gate.moe_statics.e_score_correction_bias",
      "model.layers.{i}.mlp.moe_statics.e_score_correction_bias"},
     knob_top_k | knob_norm_min, {"moe_num_experts", "num_experts"}, {"moe_k", "num_experts_per_tok"},
     hidden_layers, {.top_k = 6}, "softmax, moe_statics bias for selection, / max(sum, moe_norm_min)"},
    {Family::hunyuan_v1_moe, "hunyuan_v1_moe", {"model.layers.{i}.mlp.gate.wg.weight"}, {}, {}, knob_top_k,
     experts_first, {"moe_topk", "num_experts_per_tok"}, hidden_layers, {.top_k = 1},
     "softmax, top-K, renormalised"},
    {Family::gpt_oss, "gpt_oss", {"model.layers.{i}.mlp.router.weight"}, {"model.layers.{i}.mlp.router.bias"}, {},
     knob_top_k, local_experts, per_tok, hidden_layers, {.top_k = 4}, "router bias, softmax over the top-K logits"},
    {Family::llama4, "llama4",
     {"model.layers.{i}.feed_forward.router.weight", "language_model.model.layers.{i}.feed_forward.router.weight"},
     {}, {}, knob_top_k, {"text_config.num_local_experts", "num_local_experts"},
     {"text_config.num_experts_per_tok", "num_experts_per_tok"},
     {"text_config.num_hidden_layers", "num_hidden_layers"}, {.top_k = 1}, "sigmoid of the top-K logits"},
    {Family::phimoe, "phimoe",
     {"model.layers.{i}.mlp.router.weight", "model.layers.{i}.block_sparse_moe.gate.weight"}, {}, {},
     knob_top_k | knob_jitter_eps, {"num_local_experts"}, {}, hidden_layers, {.top_k = 2},
     "sparsemixer (eval): top-2 by logit, each weight a softmax over its jitter window"},
}};

}  // namespace detail

/// The table of every family, in the order of Family.
inline constexpr const std::array<FamilyInfo, family_count>& all_families() { return detail::families; }

/// The entry of `family`.
inline constexpr const FamilyInfo& info(Family family) { return detail::families[std::size_t(family)]; }

/// The transformers model_type of `family`.
inline constexpr std::string_view name(Family family) { return info(family).name; }

/// The family called `model_type`, or nothing.
inline std::optional<Family> find_family(std::string_view model_type) {
  for (const FamilyInfo& f : detail::families)
    if (f.name == model_type) return f.family;
  return std::nullopt;
}

/// The family called `model_type`; throws vmoer::invalid_argument listing the known names.
inline Family family_from_name(std::string_view model_type) {
  if (const std::optional<Family> f = find_family(model_type)) return *f;
  std::string known;
  for (const FamilyInfo& f : detail::families) known += (known.empty() ? "" : ", ") + std::string(f.name);
  vmoer::detail::require(false, "family", "unknown family '", model_type, "'; known: ", known);
  return Family::mixtral;  // not reached
}

/// The default settings of `family`, those of its transformers configuration class.
inline Settings default_settings(Family family) { return info(family).defaults; }

/// `pattern` with `{i}` replaced by `layer`.
inline std::string tensor_name(std::string_view pattern, Index layer) {
  const std::size_t at = pattern.find("{i}");
  if (at == std::string_view::npos) return std::string(pattern);
  return std::string(pattern.substr(0, at)) + std::to_string(layer) + std::string(pattern.substr(at + 3));
}

/// The routing convention of `family` with `settings`. Throws vmoer::invalid_argument
/// on settings no convention can hold (K < 1, a non-positive p, ...); whether K and
/// the groups fit E is checked when a router is built.
inline Convention convention(Family family, const Settings& s) {
  const char* where = "convention";
  vmoer::detail::require(s.top_k >= 1, where, name(family), ": top_k = ", s.top_k, " must be >= 1");
  vmoer::detail::require(std::isfinite(s.scaling), where, name(family), ": routed_scaling_factor = ", s.scaling,
                         " must be finite");
  Convention c{.top_k = s.top_k};
  switch (family) {
    case Family::mixtral:
    case Family::hunyuan_v1_moe:
      c.normalize = Normalize::sum;
      break;
    case Family::qwen2_moe:
    case Family::qwen3_moe:
    case Family::olmoe:
      c.normalize = s.norm_topk_prob ? Normalize::sum : Normalize::none;
      break;
    case Family::granitemoe:
    case Family::granitemoeshared:
    case Family::granitemoehybrid:
    case Family::jetmoe:
    case Family::gpt_oss:
      c.order = Order::select_then_score;
      break;
    case Family::jamba:
      break;
    case Family::dbrx:
      if (s.norm_p) {
        c.normalize = Normalize::lp;
        c.norm_p = *s.norm_p;
      }
      break;
    case Family::deepseek_v2:
      c.n_group = s.n_group;
      c.topk_group = s.topk_group;
      c.group_score = GroupScore::max;
      c.group_mask = 0.0;
      c.scaling = s.scaling;
      break;
    case Family::deepseek_v3:
    case Family::glm4_moe:
      c.score = Score::sigmoid;
      c.normalize = s.norm_topk_prob ? Normalize::sum : Normalize::none;
      c.norm_eps = 1e-20;
      c.n_group = s.n_group;
      c.topk_group = s.topk_group;
      c.group_score = GroupScore::top2_sum;
      c.scaling = s.scaling;
      break;
    case Family::minimax_m2:
      c.score = Score::sigmoid;
      c.normalize = Normalize::sum;
      break;
    case Family::ernie4_5_moe:
      c.normalize = Normalize::sum_clamped;
      c.norm_min = s.norm_min;
      break;
    case Family::llama4:
      c.score = Score::sigmoid;
      c.order = Order::select_then_score;
      break;
    case Family::phimoe:
      vmoer::detail::require(s.top_k == 2, where, "phimoe: the sparsemixer routes exactly 2 experts, top_k = ",
                             s.top_k);
      c.score = Score::raw;
      c.normalize = Normalize::sparsemixer;
      c.jitter_eps = s.jitter_eps;
      break;
  }
  vmoer::detail::require(c.n_group >= 1 && c.topk_group >= 1 && c.topk_group <= c.n_group, where, name(family),
                         ": n_group = ", c.n_group, " and topk_group = ", c.topk_group,
                         " must satisfy 1 <= topk_group <= n_group");
  vmoer::detail::require(c.normalize != Normalize::lp || (std::isfinite(c.norm_p) && c.norm_p > 0), where,
                         name(family), ": moe_normalize_expert_weights = ", c.norm_p, " must be finite and > 0");
  vmoer::detail::require(std::isfinite(c.norm_min) && c.norm_min >= 0, where, name(family), ": moe_norm_min = ",
                         c.norm_min, " must be finite and >= 0");
  vmoer::detail::require(std::isfinite(c.jitter_eps) && c.jitter_eps >= 0, where, name(family),
                         ": router_jitter_noise = ", c.jitter_eps, " must be finite and >= 0");
  return c;
}

}  // namespace vmoer::models
