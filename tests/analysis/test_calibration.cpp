// Calibration metrics against hand-computed values and a brute-force binning.
#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "vmoer/analysis/calibration.hpp"

using namespace vmoer;
using namespace vmoer::analysis;

namespace {

// Four inputs, three classes: confidences 0.7 (right), 0.6 (wrong), 0.5 (right), 0.9 (wrong).
Matrix<double> hand_probs() {
  Matrix<double> p(4, 3);
  p << 0.7, 0.2, 0.1,  //
      0.3, 0.6, 0.1,   //
      0.25, 0.25, 0.5, //
      0.05, 0.05, 0.9;
  return p;
}
Eigen::VectorXi hand_labels() { return (Eigen::VectorXi(4) << 0, 0, 2, 1).finished(); }

}  // namespace

TEST_CASE("accuracy, NLL and Brier on a hand example") {
  const auto p = hand_probs();
  const auto y = hand_labels();
  CHECK(accuracy(p, y) == doctest::Approx(0.5));
  CHECK(nll(p, y) == doctest::Approx(-(std::log(0.7) + std::log(0.3) + std::log(0.5) + std::log(0.05)) / 4));
  // Rows: 0.09 + 0.04 + 0.01, 0.49 + 0.36 + 0.01, 0.0625 + 0.0625 + 0.25, 0.0025 + 0.9025 + 0.81.
  CHECK(brier(p, y) == doctest::Approx(3.09 / 4));
}

TEST_CASE("ECE and MCE with 10 bins on a hand example") {
  const Reliability r = reliability(hand_probs(), hand_labels());
  REQUIRE(r.bins() == 10);
  // 0.5 closes bin 4 = (0.4, 0.5], 0.6 closes bin 5, 0.7 closes bin 6, 0.9 closes bin 8.
  const std::vector<Index> expected{0, 0, 0, 0, 1, 1, 1, 0, 1, 0};
  CHECK(r.count == expected);
  CHECK(r.accuracy[6] == 1.0);
  CHECK(r.confidence[8] == doctest::Approx(0.9));
  CHECK(r.ece() == doctest::Approx((0.3 + 0.6 + 0.5 + 0.9) / 4));
  CHECK(r.mce() == doctest::Approx(0.9));
  CHECK(ece(hand_probs(), hand_labels()) == doctest::Approx(0.575));
}

TEST_CASE("ECE with 2 bins averages within a bin") {
  // Bin (0, 0.5]: {0.5 right}; bin (0.5, 1]: {0.7 right, 0.6 wrong, 0.9 wrong}.
  const Reliability r = reliability(hand_probs(), hand_labels(), 2);
  CHECK(r.count == std::vector<Index>{1, 3});
  CHECK(r.confidence[1] == doctest::Approx(2.2 / 3));
  CHECK(r.accuracy[1] == doctest::Approx(1.0 / 3));
  CHECK(r.ece() == doctest::Approx(0.25 * 0.5 + 0.75 * (2.2 / 3 - 1.0 / 3)));
  CHECK(r.mce() == doctest::Approx(0.5));
}

TEST_CASE("a confidence on a bin edge belongs to the bin it closes") {
  Matrix<double> p(3, 4);
  p << 0.3, 0.3, 0.3, 0.1,  // ties: class 0 is predicted, confidence exactly 0.3
      0.1, 0.1, 0.1, 0.7,   //
      0.25, 0.25, 0.25, 0.25;
  const Eigen::VectorXi y = (Eigen::VectorXi(3) << 0, 3, 1).finished();
  const Reliability r = reliability(p, y);
  CHECK(r.count[2] == 2);  // 0.3 and 0.25 are both in (0.2, 0.3]
  CHECK(r.count[6] == 1);  // 0.7 closes (0.6, 0.7]
  CHECK(r.accuracy[2] == doctest::Approx(0.5));
  CHECK(accuracy(p, y) == doctest::Approx(2.0 / 3));  // the tie goes to class 0
}

TEST_CASE("reliability matches a brute-force binning of random predictions") {
  std::mt19937_64 g(3);
  std::uniform_real_distribution<double> u(0, 1);
  const Index n = 500, c = 5;
  Matrix<double> p(n, c);
  Eigen::VectorXi y(n);
  for (Index i = 0; i < n; ++i) {
    for (Index k = 0; k < c; ++k) p(i, k) = std::pow(u(g), 4.0);
    p.row(i) /= p.row(i).sum();
    y(i) = int(g() % c);
  }
  for (Index bins : {1, 7, 10, 15}) {
    CAPTURE(bins);
    double ece_ref = 0, mce_ref = 0;
    for (Index b = 0; b < bins; ++b) {
      const double lo = double(b) / double(bins), hi = double(b + 1) / double(bins);
      double conf = 0, right = 0, count = 0;
      for (Index i = 0; i < n; ++i) {
        Index arg = 0;
        p.row(i).maxCoeff(&arg);
        const double m = p(i, arg);
        if ((m > lo || (b == 0 && m >= lo)) && m <= hi) {
          conf += m;
          right += arg == y(i);
          count += 1;
        }
      }
      if (count > 0) {
        ece_ref += std::abs(right - conf) / double(n);
        mce_ref = std::max(mce_ref, std::abs(right - conf) / count);
      }
    }
    const Reliability r = reliability(p, y, bins);
    CHECK(r.ece() == doctest::Approx(ece_ref).epsilon(1e-12));
    CHECK(r.mce() == doctest::Approx(mce_ref).epsilon(1e-12));
  }
}

TEST_CASE("calibration() bundles the metrics and takes float probabilities") {
  // 0.6f rounds up past the edge 0.6, so the float values are binned as themselves.
  const Matrix<float> p = hand_probs().cast<float>();
  const Matrix<double> widened = p.cast<double>();
  const Eigen::Matrix<std::int64_t, Eigen::Dynamic, 1> y = hand_labels().cast<std::int64_t>();
  const Calibration m = calibration(p, y);
  CHECK(m.accuracy == accuracy(widened, hand_labels()));
  CHECK(m.nll == nll(widened, hand_labels()));
  CHECK(m.brier == brier(widened, hand_labels()));
  CHECK(m.ece == ece(widened, hand_labels()));
  CHECK(m.mce == mce(widened, hand_labels()));
  CHECK(reliability(p, y).count[6] == 2);  // 0.6f and 0.7f share (0.6, 0.7]
  CHECK(m.ece == doctest::Approx((0.5 + 2 * 0.15 + 0.9) / 4).epsilon(1e-6));
}

TEST_CASE("a zero probability on the label gives a large finite NLL") {
  Matrix<double> p(1, 2);
  p << 1.0, 0.0;
  const Eigen::VectorXi y = (Eigen::VectorXi(1) << 1).finished();
  CHECK(std::isfinite(nll(p, y)));
  CHECK(nll(p, y) > 700);
}

TEST_CASE("bad shapes and labels are rejected") {
  const auto p = hand_probs();
  CHECK_THROWS_AS(accuracy(p, Eigen::VectorXi::Zero(3)), vmoer::invalid_argument);
  CHECK_THROWS_AS(nll(p, (Eigen::VectorXi(4) << 0, 1, 2, 3).finished()), vmoer::invalid_argument);
  CHECK_THROWS_AS(brier(p, (Eigen::VectorXi(4) << 0, -1, 2, 0).finished()), vmoer::invalid_argument);
  CHECK_THROWS_AS(reliability(p, hand_labels(), 0), vmoer::invalid_argument);
}
