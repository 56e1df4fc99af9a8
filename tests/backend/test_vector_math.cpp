// The CPU's vectorised per-token loops against double references, padding included.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "vmoer/backend/cpu/vector_math.hpp"
#include "vmoer/types.hpp"

using namespace vmoer;

namespace {

template <class T>
using buffer = std::vector<T, xsimd::aligned_allocator<T>>;

template <class T>
buffer<T> padded_logits(Index n, unsigned seed) {
  const Index np = cpu::padded<T>(n);
  buffer<T> z(std::size_t(np), -std::numeric_limits<T>::infinity());
  std::srand(seed);
  for (Index i = 0; i < n; ++i) z[std::size_t(i)] = T(6.0 * std::rand() / RAND_MAX - 3.0);
  return z;
}

}  // namespace

TEST_CASE_TEMPLATE("softmax_entropy, sigmoid and entropy match double formulas on padded arrays", T, float, double) {
  const double tol = std::is_same_v<T, float> ? 2e-6 : 1e-13;
  for (Index n : {1, 3, 8, 17, 40, 64, 257}) {
    const Index np = cpu::padded<T>(n);
    const buffer<T> z = padded_logits<T>(n, unsigned(n));
    buffer<T> p(static_cast<std::size_t>(np)), q(static_cast<std::size_t>(np));
    const T h = cpu::softmax_entropy(z.data(), p.data(), n, np);
    cpu::sigmoid(z.data(), q.data(), np);
    double m = -1e300, total = 0;
    for (Index i = 0; i < n; ++i) m = std::max(m, double(z[std::size_t(i)]));
    for (Index i = 0; i < n; ++i) total += std::exp(double(z[std::size_t(i)]) - m);
    double href = 0;
    for (Index i = 0; i < n; ++i) {
      const double pi = std::exp(double(z[std::size_t(i)]) - m) / total;
      href -= pi * std::log(pi);
      CHECK(double(p[std::size_t(i)]) == doctest::Approx(pi).epsilon(tol));
      CHECK(double(q[std::size_t(i)]) == doctest::Approx(1 / (1 + std::exp(-double(z[std::size_t(i)])))).epsilon(tol));
    }
    for (Index i = n; i < np; ++i) {
      CHECK(p[std::size_t(i)] == T(0));
      CHECK(q[std::size_t(i)] == T(0));
    }
    CHECK(double(h) == doctest::Approx(href).epsilon(tol * 10).scale(1.0));
    CHECK(double(cpu::entropy(p.data(), n, np)) == doctest::Approx(href).epsilon(tol * 10).scale(1.0));
  }
}

TEST_CASE_TEMPLATE("pow2 matches exp2 over the whole range a softmax meets", T, float, double) {
  using B = cpu::batch<T>;
  // Float: the polynomial is good to 1.9e-9 relative and its float evaluation to 0.77 of
  // an ulp of [1, 2), so one ulp (2^-23) bounds the error. Below the normal range the result
  // may flush to 0 (xsimd's exp2 does).
  const double rel = std::is_same_v<T, float> ? 0x1p-23 : 1e-15;
  const double tiny = double(std::numeric_limits<T>::min());
  const double lowest = std::is_same_v<T, float> ? -160.0 : -1100.0;
  double worst = 0;
  for (double x = lowest; x <= 1; x += 1.0 / 4096) {  // every step: both sides of every integer
    const double got = double(cpu::pow2(B(T(x))).get(0));
    const double want = std::exp2(double(T(x)));
    worst = std::max(worst, std::abs(got - want) / (want * rel + tiny));
  }
  CHECK(worst <= 1.0);
  CHECK(cpu::pow2(B(T(0))).get(0) == T(1));
  CHECK(cpu::pow2(B(T(-3))).get(0) == T(0.125));
  CHECK(cpu::pow2(B(-std::numeric_limits<T>::infinity())).get(0) == T(0));
  CHECK(std::isnan(cpu::pow2(B(std::numeric_limits<T>::quiet_NaN())).get(0)));
}

// Whether this target's batches have fused multiply-adds: the library's AVX-512 intrinsics,
// x86 FMA3 or AArch64. x86-64 before v3 has none, and xsimd's batches multiply and then add.
#if defined(__AVX512F__) || defined(__FMA__) || defined(__aarch64__)
constexpr bool fused_target = true;
#else
constexpr bool fused_target = false;
#endif

TEST_CASE_TEMPLATE("fmadd, fmsub and fnmadd round once where the target has FMA, whatever the optimisation level",
                   T, float, double) {
  using B = cpu::batch<T>;
  constexpr std::size_t w = B::size;
  std::srand(3);
  auto draw = [] { return T(2.0 * std::rand() / RAND_MAX - 1.0); };
  int unfused_differs = 0;  // lanes where rounding the product first gives another value
  for (int round = 0; round < 200; ++round) {
    alignas(64) T x[w], y[w], z[w], add[w], sub[w], neg[w];
    for (std::size_t j = 0; j < w; ++j) x[j] = draw(), y[j] = draw(), z[j] = draw();
    const B bx = B::load_aligned(x), by = B::load_aligned(y), bz = B::load_aligned(z);
    cpu::fmadd(bx, by, bz).store_aligned(add);
    cpu::fmsub(bx, by, bz).store_aligned(sub);
    cpu::fnmadd(bx, by, bz).store_aligned(neg);
    for (std::size_t j = 0; j < w; ++j) {
      volatile T product = x[j] * y[j];  // volatile: no contraction into an fma
      if (fused_target) {
        CHECK(add[j] == std::fma(x[j], y[j], z[j]));
        CHECK(sub[j] == std::fma(x[j], y[j], -z[j]));
        CHECK(neg[j] == std::fma(-x[j], y[j], z[j]));
      } else {
        CHECK(add[j] == T(product + z[j]));
        CHECK(sub[j] == T(product - z[j]));
        CHECK(neg[j] == T(z[j] - product));
      }
      CHECK(cpu::fmadd(x[j], y[j], z[j]) == add[j]);  // the scalar form rounds as the lanes do
      unfused_differs += T(product + z[j]) != std::fma(x[j], y[j], z[j]);
    }
  }
  CHECK(unfused_differs > 0);  // the draws tell the two roundings apart
}

TEST_CASE("reduce_add_16 sums sixteen batches as reduce_add does, bit for bit") {
  using B = cpu::batch<float>;
  std::srand(5);
  B v[16];
  for (B& b : v) {  // magnitudes over 2^-20 .. 2^20, so that a different pairing rounds differently
    alignas(64) float lanes[B::size];
    for (float& l : lanes) l = std::ldexp(float(double(std::rand()) / RAND_MAX) - 0.5f, std::rand() % 41 - 20);
    b = B::load_aligned(lanes);
  }
  B sums;
  if (!cpu::reduce_add_16(v, sums)) return;  // no tree on this architecture: callers use reduce_add
  for (int j = 0; j < 16; ++j) CHECK(sums.get(std::size_t(j)) == cpu::reduce_add(v[j]));
}

TEST_CASE("entropy treats zero probabilities as contributing nothing") {
  const Index np = cpu::padded<float>(5);
  buffer<float> p(static_cast<std::size_t>(np), 0.f);
  p[0] = 0.5f;
  p[3] = 0.5f;
  CHECK(cpu::entropy(p.data(), 5, np) == doctest::Approx(std::log(2.0)));
}

TEST_CASE_TEMPLATE("exp_half maps log-variances to standard deviations", T, float, double) {
  for (Index n : {1, 7, 16, 33}) {
    std::vector<T> x(static_cast<std::size_t>(n));
    for (Index i = 0; i < n; ++i) x[std::size_t(i)] = T(-4 + 0.3 * double(i));
    std::vector<T> y = x;
    cpu::exp_half(y.data(), n);
    for (Index i = 0; i < n; ++i)
      CHECK(double(y[std::size_t(i)]) == doctest::Approx(std::exp(0.5 * double(x[std::size_t(i)]))).epsilon(1e-6));
  }
}
