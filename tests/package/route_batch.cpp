// The program every packaging consumer builds: route one batch through a Bayesian
// router and check the result's shape and invariants. Exit status 0 on success.
#include <vmoer/vmoer.hpp>

#include <cmath>
#include <cstdio>
#include <set>

int main() {
  static_assert(VMOER_VERSION == VMOER_VERSION_MAJOR * 10000 + VMOER_VERSION_MINOR * 100 + VMOER_VERSION_PATCH);
#if defined(VMOER_EXPECT_OPENMP)
#if defined(_OPENMP)
  constexpr int has_openmp = 1;
#else
  constexpr int has_openmp = 0;
#endif
  if (has_openmp != VMOER_EXPECT_OPENMP) {
    std::fprintf(stderr, "OpenMP: compiled %s, expected %s\n", has_openmp ? "with" : "without",
                 VMOER_EXPECT_OPENMP ? "with" : "without");
    return 2;
  }
#endif

  const vmoer::Index D = 32, E = 8, T = 4, K = 2;
  vmoer::Matrix<float> W = vmoer::Matrix<float>::Random(E, D), H = vmoer::Matrix<float>::Random(T, D);
  vmoer::Router router(vmoer::MeanField<float>(W, vmoer::Vector<float>(), {.hidden = 16}),
                       vmoer::MonteCarlo{.samples = 8}, vmoer::TopK{{.top_k = K}}, vmoer::rng::Stream{42, 0},
                       vmoer::Cpu{});
  const auto r = router.route(H);

  int failures = 0;
  auto check = [&](bool ok, const char* what, vmoer::Index t) {
    if (!ok) {
      std::fprintf(stderr, "token %ld: %s\n", long(t), what);
      ++failures;
    }
  };
  check(r.ids.rows() == T && r.ids.cols() == K, "ids shape is not [T, K]", -1);
  check(r.weights.rows() == T && r.weights.cols() == K, "weights shape is not [T, K]", -1);
  check(r.signals.entropy.size() == T, "entropy has not T entries", -1);
  if (failures) return 1;
  for (vmoer::Index t = 0; t < T; ++t) {
    std::set<int> seen;
    for (vmoer::Index k = 0; k < K; ++k) {
      check(r.ids(t, k) >= 0 && r.ids(t, k) < E, "expert id out of range", t);
      check(std::isfinite(r.weights(t, k)) && r.weights(t, k) >= 0.0f, "weight not finite or negative", t);
      seen.insert(r.ids(t, k));
    }
    check(seen.size() == std::size_t(K), "expert chosen twice", t);
    const float h = r.signals.entropy(t);
    check(std::isfinite(h) && h >= 0.0f && h <= std::log(float(E)) + 1e-4f, "entropy outside [0, log E]", t);
    check(std::isfinite(r.signals.mutual_information(t)) && r.signals.mutual_information(t) >= 0.0f,
          "mutual information not finite or negative", t);
  }
  std::printf("vmoer %d.%d.%d routed %ld tokens to %ld of %ld experts: %s\n", VMOER_VERSION_MAJOR,
              VMOER_VERSION_MINOR, VMOER_VERSION_PATCH, long(T), long(K), long(E), failures ? "FAILED" : "ok");
  return failures ? 1 : 0;
}
