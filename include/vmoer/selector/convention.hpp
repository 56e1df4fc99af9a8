// A routing convention: how a model turns router scores into K experts and their
// combine weights. Every Hugging Face MoE family is one value of this struct
// (see models/families.hpp); it is plain data, so device code can take it too.
#pragma once

#include <cmath>

#include "vmoer/config.hpp"
#include "vmoer/error.hpp"

namespace vmoer {

/// The function that maps one logit sample to scores (averaged over samples).
enum class Score : int {
  softmax = 0,  ///< softmax over all experts
  sigmoid = 1,  ///< elementwise logistic (DeepSeek-V3, Llama 4)
  raw = 2,      ///< the logits themselves
};

/// Whether the score is taken before selection or only over the selected experts.
/// With a softmax score, select_then_score means a softmax over the K chosen logits
/// (GPT-OSS, Granite, JetMoE), i.e. the chosen full-softmax scores renormalised.
enum class Order : int {
  score_then_select = 0,
  select_then_score = 1,
};

/// Renormalisation of the K weights.
enum class Normalize : int {
  none = 0,
  sum = 1,          ///< w / (sum w + norm_eps)
  lp = 2,           ///< w / ||w||_p (DBRX)
  sum_clamped = 3,  ///< w / max(sum w, norm_min) (ERNIE 4.5)
  /// Not a renormalisation but PhiMoE's sparsemixer (eval mode), which needs Score::raw:
  /// the i-th weight is the softmax, at the i-th chosen expert, over the experts not
  /// chosen before it whose logits s lie within the relative window
  /// (m - s) / max(|s|, m) <= 2 jitter_eps of that expert's logit m.
  sparsemixer = 4,
};

/// Score of a group of experts in group-limited selection.
enum class GroupScore : int {
  max = 0,       ///< DeepSeek-V2
  top2_sum = 1,  ///< DeepSeek-V3, GLM-4 MoE
};

/// Every knob of top-K routing found in real models.
struct Convention {
  Index top_k = 2;                          ///< K experts per token
  Score score = Score::softmax;             ///< score function
  Order order = Order::score_then_select;   ///< score before or after selection
  Normalize normalize = Normalize::none;    ///< renormalisation of the K weights
  double norm_p = 1.0;                      ///< p of Normalize::lp
  double norm_eps = 0.0;                    ///< added to the sum of Normalize::sum (DeepSeek-V3: 1e-20)
  double norm_min = 0.0;                    ///< lower clamp of Normalize::sum_clamped
  Index n_group = 1;                        ///< expert groups (group-limited selection when > 1)
  Index topk_group = 1;                     ///< groups kept
  GroupScore group_score = GroupScore::max; ///< how a group is scored
  /// Selection key of experts in dropped groups: -inf never picks them (transformers
  /// >= 5.6); DeepSeek-V2 and older releases fill 0.0, so with negative keys a
  /// dropped expert can still win.
  double group_mask = -INFINITY;
  double scaling = 1.0;                     ///< routed scaling factor applied last
  double jitter_eps = 0.01;                 ///< window of Normalize::sparsemixer (PhiMoE router_jitter_noise)
};

/// Largest number of groups: kept groups are tracked in a 64-bit mask.
inline constexpr Index max_groups = 64;

/// Throws vmoer::invalid_argument unless the convention is valid for E experts.
inline void validate(const Convention& c, Index experts, const char* where) {
  using detail::require;
  require(experts >= 1, where, "number of experts E = ", experts, " must be >= 1");
  require(c.top_k >= 1 && c.top_k <= experts, where, "top_k K = ", c.top_k, " must be in [1, E = ", experts, "]");
  require(c.n_group >= 1 && c.n_group <= max_groups, where, "n_group = ", c.n_group, " must be in [1, ", max_groups,
          "]");
  require(experts % c.n_group == 0, where, "n_group = ", c.n_group, " does not divide E = ", experts);
  require(c.topk_group >= 1 && c.topk_group <= c.n_group, where, "topk_group = ", c.topk_group,
          " must be in [1, n_group = ", c.n_group, "]");
  require(c.n_group == 1 || c.topk_group * (experts / c.n_group) >= c.top_k, where, "topk_group = ", c.topk_group,
          " groups of ", experts / c.n_group, " experts hold fewer than top_k K = ", c.top_k, " experts");
  require(c.group_score != GroupScore::top2_sum || c.n_group == 1 || experts / c.n_group >= 2, where,
          "group_score top2_sum needs groups of at least 2 experts, got ", experts / c.n_group);
  require(c.normalize != Normalize::lp || (std::isfinite(c.norm_p) && c.norm_p > 0), where,
          "norm_p = ", c.norm_p, " must be finite and > 0");
  require(std::isfinite(c.norm_eps) && c.norm_eps >= 0, where, "norm_eps = ", c.norm_eps, " must be finite and >= 0");
  require(std::isfinite(c.norm_min) && c.norm_min >= 0, where, "norm_min = ", c.norm_min, " must be finite and >= 0");
  require(std::isfinite(c.scaling), where, "scaling = ", c.scaling, " must be finite");
  require(!std::isnan(c.group_mask), where, "group_mask must not be NaN");
  require(c.normalize != Normalize::sparsemixer || (c.score == Score::raw && c.order == Order::score_then_select),
          where, "normalize sparsemixer reads the logits: it needs score raw and order score_then_select");
  require(std::isfinite(c.jitter_eps) && c.jitter_eps >= 0, where, "jitter_eps = ", c.jitter_eps,
          " must be finite and >= 0");
}

}  // namespace vmoer
