// Calibration of a classifier's predictive distribution: accuracy, negative
// log-likelihood, Brier score, and the reliability diagram with its expected and
// maximum calibration errors (ECE, MCE).
//
// Inputs are class probabilities `probs` [N, C] (rows summing to 1) and integer labels
// [N] in [0, C). Conventions:
//   accuracy  the arg-max class (lowest index among ties) equals the label;
//   NLL       -mean log p(label), with p clamped below at the smallest normal double so
//             that a zero probability gives a large finite loss, not infinity;
//   Brier     mean over inputs of sum_c (p_c - [c = label])^2, so it lies in [0, 2];
//   ECE/MCE   confidence = max_c p_c, B equal-width bins (lo, hi] with edges b / B
//             (confidence 0 joins the first bin); ECE = sum_b n_b / N |acc_b - conf_b|,
//             MCE = max over non-empty bins of |acc_b - conf_b|.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "vmoer/error.hpp"
#include "vmoer/types.hpp"

namespace vmoer::detail {

/// Throws unless probs [N, C] and labels [N] fit together, N >= 1, labels in [0, C).
template <class P, class L>
void check_classification(const Eigen::MatrixBase<P>& probs, const Eigen::MatrixBase<L>& labels, const char* where) {
  require(probs.rows() >= 1 && probs.cols() >= 1, where, "probs must be [N, C] with N, C >= 1, got [",
                         probs.rows(), ", ", probs.cols(), "]");
  require(labels.size() == probs.rows(), where, "labels has ", labels.size(), " entries, probs ",
                         probs.rows(), " rows");
  for (Index i = 0; i < labels.size(); ++i)
    require(labels(i) >= 0 && Index(labels(i)) < probs.cols(), where, "labels[", i,
                           "] = ", Index(labels(i)), " is not a class in [0, ", probs.cols(), ")");
}

/// Arg-max of row i, the lowest index among ties.
template <class P>
Index predicted(const Eigen::MatrixBase<P>& probs, Index i) {
  Index best = 0;
  for (Index c = 1; c < probs.cols(); ++c)
    if (probs(i, c) > probs(i, best)) best = c;
  return best;
}

}  // namespace vmoer::detail

namespace vmoer::analysis {

/// Fraction of inputs whose arg-max class is the label.
template <class P, class L>
double accuracy(const Eigen::MatrixBase<P>& probs, const Eigen::MatrixBase<L>& labels) {
  detail::check_classification(probs, labels, "accuracy");
  Index correct = 0;
  for (Index i = 0; i < probs.rows(); ++i) correct += detail::predicted(probs, i) == Index(labels(i));
  return double(correct) / double(probs.rows());
}

/// Mean negative log-likelihood of the labels.
template <class P, class L>
double nll(const Eigen::MatrixBase<P>& probs, const Eigen::MatrixBase<L>& labels) {
  detail::check_classification(probs, labels, "nll");
  double total = 0;
  for (Index i = 0; i < probs.rows(); ++i)
    total -= std::log(std::max(double(probs(i, Index(labels(i)))), std::numeric_limits<double>::min()));
  return total / double(probs.rows());
}

/// Mean over inputs of the squared distance between probs and the one-hot label.
template <class P, class L>
double brier(const Eigen::MatrixBase<P>& probs, const Eigen::MatrixBase<L>& labels) {
  detail::check_classification(probs, labels, "brier");
  double total = 0;
  for (Index i = 0; i < probs.rows(); ++i)
    for (Index c = 0; c < probs.cols(); ++c) {
      const double d = double(probs(i, c)) - (c == Index(labels(i)) ? 1.0 : 0.0);
      total += d * d;
    }
  return total / double(probs.rows());
}

/// A reliability diagram: per confidence bin, how many inputs fell in it, their mean
/// confidence and their accuracy (both 0 for an empty bin).
struct Reliability {
  std::vector<Index> count;        ///< inputs per bin
  std::vector<double> confidence;  ///< mean max-probability per bin
  std::vector<double> accuracy;    ///< fraction correct per bin

  /// Number of bins B; bin b covers (b / B, (b + 1) / B].
  Index bins() const { return Index(count.size()); }
  /// Expected calibration error: the count-weighted mean of |accuracy - confidence|.
  double ece() const {
    Index n = 0;
    double total = 0;
    for (Index b = 0; b < bins(); ++b) {
      n += count[std::size_t(b)];
      total += double(count[std::size_t(b)]) * gap(b);
    }
    return n ? total / double(n) : 0.0;
  }
  /// Maximum calibration error: the largest |accuracy - confidence| of a non-empty bin.
  double mce() const {
    double worst = 0;
    for (Index b = 0; b < bins(); ++b)
      if (count[std::size_t(b)] > 0) worst = std::max(worst, gap(b));
    return worst;
  }

 private:
  double gap(Index b) const { return std::abs(accuracy[std::size_t(b)] - confidence[std::size_t(b)]); }
};

/// The reliability diagram of `probs` against `labels` with `bins` equal-width bins.
template <class P, class L>
Reliability reliability(const Eigen::MatrixBase<P>& probs, const Eigen::MatrixBase<L>& labels, Index bins = 10) {
  detail::check_classification(probs, labels, "reliability");
  detail::require(bins >= 1, "reliability", "bins = ", bins, " must be >= 1");
  // Edges as doubles b / B, compared directly, so that a confidence equal to an edge
  // (0.3, say) lands in the bin that edge closes, whatever the rounding of 0.3 * B.
  std::vector<double> upper(static_cast<std::size_t>(bins));
  for (Index b = 0; b < bins; ++b) upper[std::size_t(b)] = double(b + 1) / double(bins);
  Reliability r{std::vector<Index>(std::size_t(bins), 0), std::vector<double>(std::size_t(bins), 0.0),
                std::vector<double>(std::size_t(bins), 0.0)};
  for (Index i = 0; i < probs.rows(); ++i) {
    const Index top = detail::predicted(probs, i);
    const double conf = double(probs(i, top));
    const auto b = std::min<std::size_t>(std::size_t(std::lower_bound(upper.begin(), upper.end(), conf) - upper.begin()),
                                         std::size_t(bins - 1));
    ++r.count[b];
    r.confidence[b] += conf;
    r.accuracy[b] += top == Index(labels(i)) ? 1.0 : 0.0;
  }
  for (std::size_t b = 0; b < std::size_t(bins); ++b)
    if (r.count[b] > 0) {
      r.confidence[b] /= double(r.count[b]);
      r.accuracy[b] /= double(r.count[b]);
    }
  return r;
}

/// Expected calibration error with `bins` equal-width bins.
template <class P, class L>
double ece(const Eigen::MatrixBase<P>& probs, const Eigen::MatrixBase<L>& labels, Index bins = 10) {
  return reliability(probs, labels, bins).ece();
}

/// Maximum calibration error with `bins` equal-width bins.
template <class P, class L>
double mce(const Eigen::MatrixBase<P>& probs, const Eigen::MatrixBase<L>& labels, Index bins = 10) {
  return reliability(probs, labels, bins).mce();
}

/// Every calibration metric of one set of predictions.
struct Calibration {
  double accuracy = 0;  ///< fraction correct
  double nll = 0;       ///< mean negative log-likelihood
  double brier = 0;     ///< Brier score
  double ece = 0;       ///< expected calibration error (10 bins)
  double mce = 0;       ///< maximum calibration error (10 bins)
};

/// All metrics of `probs` against `labels`, with 10 bins for ECE and MCE.
template <class P, class L>
Calibration calibration(const Eigen::MatrixBase<P>& probs, const Eigen::MatrixBase<L>& labels) {
  const Reliability r = reliability(probs, labels);
  return {accuracy(probs, labels), nll(probs, labels), brier(probs, labels), r.ece(), r.mce()};
}

}  // namespace vmoer::analysis
