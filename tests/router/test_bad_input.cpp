// Every bad input raises vmoer::invalid_argument with a message that names the
// argument and its value; nothing is returned half-written.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "vmoer/vmoer.hpp"

using namespace vmoer;

namespace {

constexpr Index D = 8, E = 8;

Matrix<float> weight() { return Matrix<float>::Random(E, D); }
Matrix<float> hidden(Index t = 4) { return Matrix<float>::Random(t, D); }

/// The message of the vmoer::invalid_argument that f throws ("" if none).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const vmoer::invalid_argument& e) {
    return e.what();
  } catch (...) {
    return "<another exception type>";
  }
  return "";
}

#define CHECK_ERROR(expr, text) CHECK_MESSAGE(error_of([&] { (void)(expr); }).find(text) != std::string::npos, error_of([&] { (void)(expr); }))

}  // namespace

TEST_CASE("shapes") {
  const Router r(Dirac<float>(weight()), MeanOnly{}, TopK{{.top_k = 2}});
  CHECK_ERROR(r.route(Matrix<float>::Random(3, D + 1)), "hidden has 9 columns, expected the router's input dimension D = 8");
  CHECK_ERROR(Dirac<float>(weight(), Vector<float>::Zero(3)), "router bias has 3 entries, expected E = 8");
  CHECK_ERROR(MeanField<float>(weight(), Vector<float>::Zero(5)), "router bias has 5 entries, expected E = 8");
  CHECK_ERROR(Dirac<float>(Matrix<float>(0, D)), "router weight must be [E, D] with E, D >= 1, got [0, 8]");
  CHECK_ERROR(Router(Dirac<float>(weight()), MeanOnly{}, TopK{{.top_k = 2}, std::vector<float>(3, 0.f)}),
              "selection_bias has 3 entries, expected E = 8");
  CHECK_ERROR(r.route(hidden(2), {.token_offset = 0xFFFFFFFFu}), "exceeds 2^32 token indices");
  CHECK_ERROR(Router(Dirac<float>(weight()), MeanOnly{}, TopK{{.top_k = 2}}, rng::Stream{0, 1u << 24}),
              "layer = 16777216 exceeds 16777215");
  CHECK_ERROR(Router(Dirac<float>(weight()), MeanOnly{}, TopK{{.top_k = 2}}, rng::Stream{}, Cpu{.tile = -1}).route(hidden()),
              "tile = -1 must be >= 0");
}

TEST_CASE("sizes: K, S, groups, encoder") {
  CHECK_ERROR(Router(Dirac<float>(weight()), MeanOnly{}, TopK{{.top_k = 0}}), "top_k K = 0 must be in [1, E = 8]");
  CHECK_ERROR(Router(Dirac<float>(weight()), MeanOnly{}, TopK{{.top_k = 9}}), "top_k K = 9 must be in [1, E = 8]");
  CHECK_ERROR(Router(MeanField<float>(weight(), {}), MonteCarlo{.samples = 0}, TopK{{.top_k = 2}}),
              "samples S = 0 must be >= 1");
  CHECK_ERROR(Router(Dirac<float>(weight()), MeanOnly{}, TopK{{.top_k = 2, .n_group = 3}}), "n_group = 3 does not divide E = 8");
  CHECK_ERROR(Router(Dirac<float>(weight()), MeanOnly{}, TopK{{.top_k = 5, .n_group = 4, .topk_group = 2}}),
              "topk_group = 2 groups of 2 experts hold fewer than top_k K = 5 experts");
  CHECK_ERROR(Router(Dirac<float>(weight()), MeanOnly{}, TopK{{.top_k = 2, .n_group = 4, .topk_group = 5}}),
              "topk_group = 5 must be in [1, n_group = 4]");
  CHECK_ERROR(Router(Dirac<float>(weight()), MeanOnly{}, SampleK{{.top_k = 2, .n_group = 2}}),
              "group-limited selection (n_group = 2) is not defined for sampling");
  CHECK_ERROR(Router(Dirac<float>(weight()), MeanOnly{}, SampleK{{.top_k = 2, .score = Score::raw}}),
              "SampleK needs a softmax or sigmoid score");
  CHECK_ERROR(Router(Dirac<float>(weight()), MeanOnly{}, TopK{{.top_k = 2, .normalize = Normalize::lp, .norm_p = 0}}),
              "norm_p = 0 must be finite and > 0");
  CHECK_ERROR(MeanField<float>(weight(), {}, {.hidden = 0}), "encoder hidden width H = 0 must be >= 1");
  CHECK_ERROR(LowRank<float>(weight(), {}, {.rank = -1}), "rank r = -1 must be >= 0");
  CHECK_ERROR(MeanField<float>(weight(), {}, {.init_sigma = 0}), "init_sigma = 0 must be finite and > 0");
}

TEST_CASE("temperatures must be finite and positive") {
  for (double tau : {0.0, -1.0, std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity()}) {
    CAPTURE(tau);
    CHECK_ERROR(Router(Dirac<float>(weight()), MeanOnly{}, Temperature{{.top_k = 2}, tau}), "temperature T = ");
    CHECK_ERROR(Router(Dirac<float>(weight()), MeanOnly{}, SampleK{{.top_k = 2}, tau}), "must be finite and > 0");
  }
}

TEST_CASE("non-finite values") {
  const Router r(MeanField<float>(weight(), {}), MonteCarlo{.samples = 4}, TopK{{.top_k = 2}});
  Matrix<float> x = hidden(6);
  x(4, 3) = std::numeric_limits<float>::quiet_NaN();
  x(2, 5) = std::numeric_limits<float>::infinity();
  CHECK_ERROR(r.route(x), "hidden[2, 5] = inf is not finite");  // the first bad token is named
  // Finite inputs whose logits overflow: 8 * 1e38 > FLT_MAX.
  const Router ones(Dirac<float>(Matrix<float>::Ones(E, D)), MeanOnly{}, TopK{{.top_k = 2}});
  CHECK_ERROR(ones.route(Matrix<float>::Constant(3, D, 1e38f)), "the logits of token 0 are not finite");
  Matrix<float> w = weight();
  w(1, 2) = -std::numeric_limits<float>::infinity();
  CHECK_ERROR(Dirac<float>(w), "router weight[1, 2] = -inf is not finite");
  CHECK_ERROR(FullCovariance<float>(w, {}), "router weight[1, 2] = -inf is not finite");
  CHECK_ERROR(Router(Dirac<float>(weight()), MeanOnly{}, TopK{{.top_k = 2}, std::vector<float>(E, NAN)}),
              "selection_bias[0] = nan is not finite");
  // A scale head that overflows exp() is reported, not propagated as NaN.
  MeanField<float> post(weight(), {});
  post.parameters()["encoder.scale.bias"].setConstant(1000.f);
  CHECK_ERROR(Router(post, MonteCarlo{.samples = 2}, TopK{{.top_k = 2}}).route(hidden()),
              "the posterior scale of token 0 is not finite");
  // Finite entries of L whose squares overflow tr(Sigma) are reported as well.
  FullCovariance<float> full(weight(), {});
  float* scale_bias = full.parameters()["encoder.scale.bias"].data();
  std::fill(scale_bias + E, scale_bias + E * (E + 1) / 2, 1e30f);  // the strictly lower entries
  CHECK_ERROR(Router(full, MonteCarlo{.samples = 2}, TopK{{.top_k = 2}}).route(hidden()),
              "tr(Sigma) of token 0 overflows");
}

TEST_CASE("a failed route returns nothing and leaves the router usable") {
  const Router r(Dirac<float>(weight()), MeanOnly{}, TopK{{.top_k = 2}});
  Matrix<float> x = hidden(40);
  x(33, 0) = NAN;
  Routing<float> out;
  CHECK_THROWS_AS(out = r.route(x), vmoer::invalid_argument);
  CHECK(out.ids.size() == 0);  // never assigned
  x(33, 0) = 0.f;
  out = r.route(x);
  CHECK(out.ids.rows() == 40);
}

TEST_CASE("a failed route into a reused Routing leaves it empty") {
  const Router r(Dirac<float>(weight()), MeanOnly{}, TopK{{.top_k = 2}});
  Matrix<float> x = hidden(40);
  Routing<float> out;
  auto check_empty = [&] {
    CHECK(out.ids.size() == 0);
    CHECK(out.weights.size() == 0);
    CHECK(out.signals.entropy.size() == 0);
    CHECK(out.logits.size() == 0);
  };
  r.route(x, out, {.keep_logits = true});
  REQUIRE(out.ids.rows() == 40);
  x(33, 0) = NAN;  // fails inside the backend, after tiles before it were written
  CHECK_ERROR(r.route(x, out), "hidden[33, 0] = nan is not finite");
  check_empty();
  x(33, 0) = 0.f;
  r.route(x, out);
  REQUIRE(out.ids.rows() == 40);
  CHECK_ERROR(r.route(Matrix<float>::Random(3, D + 1), out), "hidden has 9 columns");  // fails before the backend
  check_empty();
}
