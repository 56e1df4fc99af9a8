// OoD metrics against scikit-learn's documented examples and O(n^2) brute force.
#include <doctest/doctest.h>

#include <random>
#include <set>

#include "vmoer/analysis/ood.hpp"

using namespace vmoer;
using namespace vmoer::analysis;

namespace {

Vector<double> vec(std::initializer_list<double> v) {
  Vector<double> out(Index(v.size()));
  Index i = 0;
  for (double x : v) out(i++) = x;
  return out;
}

// P(out > in) + P(out = in) / 2 by counting every pair.
double auroc_pairs(const Vector<double>& in, const Vector<double>& out) {
  double wins = 0;
  for (Index i = 0; i < out.size(); ++i)
    for (Index j = 0; j < in.size(); ++j) wins += out(i) > in(j) ? 1.0 : out(i) == in(j) ? 0.5 : 0.0;
  return wins / double(in.size() * out.size());
}

// Mean over positives of the precision of the threshold at their own score.
double ap_brute(const Vector<double>& in, const Vector<double>& out) {
  double total = 0;
  for (Index i = 0; i < out.size(); ++i) {
    const double t = out(i);
    const double tp = double((out.array() >= t).count()), fp = double((in.array() >= t).count());
    total += tp / (tp + fp);
  }
  return total / double(out.size());
}

// FPR of the largest candidate threshold whose TPR reaches 95%.
double fpr95_brute(const Vector<double>& in, const Vector<double>& out) {
  std::set<double> thresholds(in.data(), in.data() + in.size());
  thresholds.insert(out.data(), out.data() + out.size());
  for (auto t = thresholds.rbegin(); t != thresholds.rend(); ++t) {
    const double tpr = double((out.array() >= *t).count()) / double(out.size());
    if (tpr >= 0.95) return double((in.array() >= *t).count()) / double(in.size());
  }
  return 1.0;
}

}  // namespace

TEST_CASE("scikit-learn's documented example: y = [0, 0, 1, 1], s = [0.1, 0.4, 0.35, 0.8]") {
  const auto in = vec({0.1, 0.4}), out = vec({0.35, 0.8});
  CHECK(auroc(in, out) == doctest::Approx(0.75));
  CHECK(auprc(in, out) == doctest::Approx(0.8333333333333333));
  // TPR reaches 1 only at threshold 0.35, where 0.4 is a false positive.
  CHECK(fpr_at_tpr(in, out) == doctest::Approx(0.5));
}

TEST_CASE("separated, reversed and constant scores") {
  const auto low = vec({0, 1, 2}), high = vec({5, 6});
  CHECK(auroc(low, high) == 1.0);
  CHECK(auprc(low, high) == 1.0);
  CHECK(fpr_at_tpr(low, high) == 0.0);
  CHECK(auroc(high, low) == 0.0);
  CHECK(fpr_at_tpr(high, low) == 1.0);
  const Vector<double> same_in = Vector<double>::Constant(6, 2.0), same_out = Vector<double>::Constant(2, 2.0);
  CHECK(auroc(same_in, same_out) == 0.5);
  CHECK(auprc(same_in, same_out) == doctest::Approx(0.25));  // the base rate
  CHECK(fpr_at_tpr(same_in, same_out) == 1.0);
}

TEST_CASE("random scores with many ties match the brute-force definitions") {
  std::mt19937_64 g(11);
  for (int trial = 0; trial < 20; ++trial) {
    CAPTURE(trial);
    const Index n_in = 1 + Index(g() % 60), n_out = 1 + Index(g() % 60);
    const int levels = 2 + int(g() % 10);  // few levels: heavy ties
    Vector<double> in(n_in), out(n_out);
    for (Index i = 0; i < n_in; ++i) in(i) = double(g() % levels);
    for (Index i = 0; i < n_out; ++i) out(i) = double(g() % levels) + (trial % 2 ? 1.0 : 0.0);
    CHECK(auroc(in, out) == doctest::Approx(auroc_pairs(in, out)).epsilon(1e-12));
    CHECK(auprc(in, out) == doctest::Approx(ap_brute(in, out)).epsilon(1e-12));
    CHECK(fpr_at_tpr(in, out) == doctest::Approx(fpr95_brute(in, out)).epsilon(1e-12));
    const Detection d = detection(in.cast<float>(), out.cast<float>());
    CHECK(d.auroc == doctest::Approx(auroc_pairs(in, out)).epsilon(1e-12));
    CHECK(d.fpr95 == doctest::Approx(fpr95_brute(in, out)).epsilon(1e-12));
  }
}

TEST_CASE("continuous scores: AUROC is the pair count") {
  std::mt19937_64 g(5);
  std::normal_distribution<double> n(0, 1);
  Vector<double> in(300), out(200);
  for (auto& x : in) x = n(g);
  for (auto& x : out) x = n(g) + 0.7;
  CHECK(auroc(in, out) == doctest::Approx(auroc_pairs(in, out)).epsilon(1e-12));
  CHECK(auprc(in, out) == doctest::Approx(ap_brute(in, out)).epsilon(1e-12));
}

TEST_CASE("empty sets and NaN scores are rejected") {
  CHECK_THROWS_AS(auroc(Vector<double>(), vec({1})), vmoer::invalid_argument);
  CHECK_THROWS_AS(auprc(vec({1}), vec({NAN})), vmoer::invalid_argument);
  CHECK_THROWS_AS(fpr_at_tpr(vec({1}), vec({2}), 0.0), vmoer::invalid_argument);
}
