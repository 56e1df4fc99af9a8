// Out-of-distribution detection metrics for any per-input score where higher means
// "more likely out of distribution" (entropy, mutual information, logit variance...).
// Out-of-distribution inputs are the positive class.
//   AUROC  P(s_out > s_in) + P(s_out = s_in) / 2: the Mann-Whitney U statistic over
//          n_in n_out, computed from average ranks, so ties count one half;
//   AUPRC  average precision, sum over distinct thresholds t (descending) of
//          (R(t) - R(t_prev)) P(t) with P, R the precision and recall of "s >= t";
//          tied scores form one threshold, as in scikit-learn's average_precision_score;
//   FPR95  the false-positive rate at the highest threshold whose recall (TPR) reaches 95%.
#pragma once

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "vmoer/error.hpp"
#include "vmoer/types.hpp"

namespace vmoer::detail {

/// (score, is_out) of both sets, by descending score; throws on empty sets or NaN.
template <class A, class B>
std::vector<std::pair<double, bool>> labelled_scores(const Eigen::DenseBase<A>& in, const Eigen::DenseBase<B>& out,
                                                     const char* where) {
  require(in.size() >= 1 && out.size() >= 1, where, "needs at least one in- and one out-of-distribution score, got ",
          in.size(), " and ", out.size());
  std::vector<std::pair<double, bool>> all;
  all.reserve(std::size_t(in.size() + out.size()));
  for (Index i = 0; i < in.size(); ++i) all.emplace_back(double(in.derived().coeff(i)), false);
  for (Index i = 0; i < out.size(); ++i) all.emplace_back(double(out.derived().coeff(i)), true);
  for (const auto& [s, is_out] : all) require(!std::isnan(s), where, "a score is NaN");
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  return all;
}

/// Calls f(positives, negatives) once per group of equal scores, by descending score.
template <class F>
void for_each_threshold(const std::vector<std::pair<double, bool>>& sorted, F&& f) {
  for (std::size_t i = 0; i < sorted.size();) {
    Index pos = 0, neg = 0;
    std::size_t j = i;
    for (; j < sorted.size() && sorted[j].first == sorted[i].first; ++j) (sorted[j].second ? pos : neg) += 1;
    f(pos, neg);
    i = j;
  }
}

}  // namespace vmoer::detail

namespace vmoer::analysis {

/// Area under the ROC curve of separating `out` (positives) from `in` by score.
template <class A, class B>
double auroc(const Eigen::DenseBase<A>& in, const Eigen::DenseBase<B>& out) {
  const auto sorted = detail::labelled_scores(in, out, "auroc");
  // Ascending ranks 1..n; a group of tied scores shares the mean of the ranks it spans.
  const Index n = Index(sorted.size());
  double rank_sum = 0;  // of the positives
  Index higher = 0;     // inputs scored above the current group
  detail::for_each_threshold(sorted, [&](Index pos, Index neg) {
    const Index group = pos + neg;
    rank_sum += double(pos) * double((n - higher - group + 1) + (n - higher)) / 2.0;
    higher += group;
  });
  const double n_out = double(out.size()), n_in = double(in.size());
  return (rank_sum - n_out * (n_out + 1) / 2.0) / (n_out * n_in);
}

/// Average precision of detecting `out` (positives) among `in` by score.
template <class A, class B>
double auprc(const Eigen::DenseBase<A>& in, const Eigen::DenseBase<B>& out) {
  const auto sorted = detail::labelled_scores(in, out, "auprc");
  const double n_out = double(out.size());
  double ap = 0;
  Index tp = 0, fp = 0;
  detail::for_each_threshold(sorted, [&](Index pos, Index neg) {
    tp += pos;
    fp += neg;
    ap += double(pos) / n_out * double(tp) / double(tp + fp);
  });
  return ap;
}

/// False-positive rate at the highest threshold whose true-positive rate is >= `tpr`.
template <class A, class B>
double fpr_at_tpr(const Eigen::DenseBase<A>& in, const Eigen::DenseBase<B>& out, double tpr = 0.95) {
  detail::require(tpr > 0 && tpr <= 1, "fpr_at_tpr", "tpr = ", tpr, " must be in (0, 1]");
  const auto sorted = detail::labelled_scores(in, out, "fpr_at_tpr");
  const double n_out = double(out.size()), n_in = double(in.size());
  Index tp = 0, fp = 0;
  double result = 1.0;
  bool found = false;
  detail::for_each_threshold(sorted, [&](Index pos, Index neg) {
    tp += pos;
    fp += neg;
    if (!found && double(tp) / n_out >= tpr) {
      result = double(fp) / n_in;
      found = true;
    }
  });
  return result;
}

/// The three detection metrics of one score.
struct Detection {
  double auroc = 0;  ///< area under the ROC curve
  double auprc = 0;  ///< average precision, out-of-distribution as positives
  double fpr95 = 0;  ///< false-positive rate at 95% true-positive rate
};

/// AUROC, AUPRC and FPR at 95% TPR of separating `out` from `in`.
template <class A, class B>
Detection detection(const Eigen::DenseBase<A>& in, const Eigen::DenseBase<B>& out) {
  return {auroc(in, out), auprc(in, out), fpr_at_tpr(in, out, 0.95)};
}

}  // namespace vmoer::analysis
