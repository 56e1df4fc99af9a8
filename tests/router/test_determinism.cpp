// The same seed gives bit-identical routing for any thread count, tile size and
// batch split (with the token offset carrying the global token index).
#include <thread>
#include <vector>

#include "router/compositions.hpp"

using namespace vmoer;
using test::Index;

namespace {

template <class T>
void require_identical(const Routing<T>& a, const Routing<T>& b, Index row_offset = 0) {
  const Index n = b.ids.rows();
  REQUIRE((a.ids.middleRows(row_offset, n).array() == b.ids.array()).all());
  REQUIRE((a.weights.middleRows(row_offset, n).array() == b.weights.array()).all());
  REQUIRE((a.signals.entropy.segment(row_offset, n).array() == b.signals.entropy.array()).all());
  REQUIRE((a.signals.mutual_information.segment(row_offset, n).array() == b.signals.mutual_information.array()).all());
  REQUIRE((a.signals.mc_variance.segment(row_offset, n).array() == b.signals.mc_variance.array()).all());
  REQUIRE((a.signals.logit_variance.segment(row_offset, n).array() == b.signals.logit_variance.array()).all());
}

template <class P, class Sel>
void check_invariance(const ref::Router& r, Sel selector) {
  const Matrix<float> x = test::to_matrix<float>(test::random_hidden<float>(61, r.w[0].size(), 9));
  auto make = [&](int threads, Index tile) {
    return Router<P, MonteCarlo, Sel, Cpu>(test::make_posterior<P>(r), MonteCarlo{.samples = 6}, selector,
                                           rng::Stream{99, 4}, Cpu{.threads = threads, .tile = tile});
  };
  const Routing<float> base = make(1, 16).route(x);
  for (int threads : {2, 3, 4})
    for (Index tile : {0, 1, 5, 64}) {  // 0: chosen per call
      CAPTURE(threads);
      CAPTURE(tile);
      require_identical(base, make(threads, tile).route(x));
    }
  const auto router = make(2, 8);
  for (Index split : {1, 13, 32, 60}) {
    CAPTURE(split);
    require_identical(base, router.route(x.topRows(split)));
    require_identical(base, router.route(x.bottomRows(x.rows() - split), {.token_offset = std::uint32_t(split)}),
                      split);
  }
  // A single token routed alone matches its row in the batch.
  require_identical(base, router.route(x.middleRows(17, 1), {.token_offset = 17}), 17);
  // So does routing into one reused Routing through batches of changing size, and its
  // optional outputs follow each call's options.
  Routing<float> reused;
  for (Index split : {60, 13, 32, 1}) {
    CAPTURE(split);
    router.route(x.topRows(split), reused, {.keep_logits = split == 13});
    require_identical(base, reused);
    REQUIRE(reused.logits.rows() == (split == 13 ? split : 0));
    REQUIRE(reused.probs.size() == 0);
  }
}

}  // namespace

TEST_CASE("routing is bit-identical across thread counts, tile sizes and batch splits") {
  check_invariance<MeanField<float>>(test::random_router<float>(ref::Cov::diagonal, 16, 40, 8, 0, 5),
                                     TopK{{.top_k = 4, .normalize = Normalize::sum}});
  check_invariance<FullCovariance<float>>(test::random_router<float>(ref::Cov::cholesky, 9, 40, 8, 0, 6),
                                          SampleK{{.top_k = 2}, 1.3});
  check_invariance<LowRank<float>>(test::random_router<float>(ref::Cov::low_rank, 20, 40, 8, 2, 7),
                                   TopK{{.top_k = 4, .score = Score::sigmoid, .n_group = 4, .topk_group = 2,
                                         .group_score = GroupScore::top2_sum}});
}

TEST_CASE("cpu::tile_for: 64 tokens, fewer for large tiles (not below 16) or to give every thread one (not below 8)") {
  constexpr Index KiB = 1024;
  CHECK(cpu::tile_for(Cpu{.threads = 1}, 4096, 1 * KiB) == 64);
  CHECK(cpu::tile_for(Cpu{.threads = 1, .tile = 7}, 4096, 1 * KiB) == 7);  // the caller's is kept
  CHECK(cpu::tile_for(Cpu{.threads = 1}, 4096, 16 * KiB) == 32);           // 512 KiB a tile
  CHECK(cpu::tile_for(Cpu{.threads = 1}, 4096, 1024 * KiB) == 16);
  CHECK(cpu::tile_for(Cpu{.threads = 1}, 5, 1 * KiB) == 8);  // one tile all the same
#if defined(_OPENMP)
  CHECK(cpu::tile_for(Cpu{.threads = 2}, 100, 1 * KiB) == 50);
  CHECK(cpu::tile_for(Cpu{.threads = 2}, 20, 1 * KiB) == 10);
  CHECK(cpu::tile_for(Cpu{.threads = 2}, 16, 1 * KiB) == 8);
  CHECK(cpu::tile_for(Cpu{.threads = 2}, 10, 1 * KiB) == 8);
  CHECK(cpu::tile_for(Cpu{.threads = 2}, 16, 1024 * KiB) == 8);
  CHECK(cpu::tile_for(Cpu{.threads = 2}, 64, 1024 * KiB) == 16);
  CHECK(cpu::tile_for(Cpu{.threads = 4}, 4096, 1 * KiB) == 64);
#endif
  // What a full-covariance tile writes per token: logits, trunk, mean residual and the E(E+1)/2 entries of L.
  const Router full(FullCovariance<float>(Matrix<float>::Random(8, 4), {}, {.hidden = 3}), MonteCarlo{}, TopK{{.top_k = 2}});
  CHECK(cpu::tile_bytes(full) == (8 + 3 + 8 + 36) * Index(sizeof(float)));
}

TEST_CASE("different seeds, layers and token offsets give different samples") {
  const ref::Router r = test::random_router<float>(ref::Cov::diagonal, 16, 40, 8, 0, 5);
  const Matrix<float> x = test::to_matrix<float>(test::random_hidden<float>(8, 40, 9));
  auto run = [&](std::uint64_t seed, std::uint32_t layer, std::uint32_t offset) {
    return Router(test::make_posterior<MeanField<float>>(r), MonteCarlo{.samples = 3}, TopK{{.top_k = 2}},
                  rng::Stream{seed, layer})
        .route(x, {.token_offset = offset})
        .signals.mc_variance;
  };
  const Vector<float> base = run(1, 0, 0);
  CHECK((base.array() != run(2, 0, 0).array()).all());
  CHECK((base.array() != run(1, 1, 0).array()).all());
  CHECK((base.array() != run(1, 0, 1).array()).all());
}

TEST_CASE("routers taking turns on one thread route as they do on a fresh thread") {
  // Cpu::route keeps one token pipeline per thread and router type between calls and
  // reconfigures it per call: sample counts (the draw across lanes or the per-sample
  // loop), expert counts, selection bias, temperature and convention must not leak
  // from one router into the next.
  using MF = Router<MeanField<float>, MonteCarlo, TopK, Cpu>;
  using DiracTopK = Router<Dirac<float>, MeanOnly, TopK, Cpu>;
  const ref::Router small = test::random_router<float>(ref::Cov::diagonal, 16, 40, 8, 0, 21);
  const ref::Router wide = test::random_router<float>(ref::Cov::diagonal, 40, 40, 8, 0, 22);
  std::vector<float> bias(40);
  for (std::size_t e = 0; e < bias.size(); ++e) bias[e] = 0.05f * float(e % 7);
  const Cpu one{.threads = 1};
  const MF a(test::make_posterior<MeanField<float>>(small), MonteCarlo{.samples = 32},
             TopK{{.top_k = 4, .normalize = Normalize::sum}}, rng::Stream{5, 1}, one);
  const MF b(test::make_posterior<MeanField<float>>(wide), MonteCarlo{.samples = 3},
             TopK{{.top_k = 2, .score = Score::sigmoid}, bias}, rng::Stream{6, 2}, one);
  const DiracTopK c(test::make_posterior<Dirac<float>>(wide), MeanOnly{}, TopK{{.top_k = 3}, bias}, rng::Stream{}, one);
  const DiracTopK d(test::make_posterior<Dirac<float>>(small), MeanOnly{}, TopK{{.top_k = 2}}, rng::Stream{}, one);
  const Matrix<float> x = test::to_matrix<float>(test::random_hidden<float>(19, 40, 23));

  std::vector<Routing<float>> fresh(4);
  auto route = [&](int i) { return i == 0 ? a.route(x) : i == 1 ? b.route(x) : i == 2 ? c.route(x) : d.route(x); };
  for (int i = 0; i < 4; ++i) std::thread([&, i] { fresh[std::size_t(i)] = route(i); }).join();
  for (int turn : {0, 1, 2, 3, 1, 0, 3, 2, 0}) {
    CAPTURE(turn);
    require_identical(fresh[std::size_t(turn)], route(turn));
  }
}

TEST_CASE("a call whose hidden states collide with W's rows in L1 routes as one whose do not") {
  // D = 1024 floats: rows of W and X start at the same page offset. With X at W's offset a
  // call of at least E + H = 16 tokens copies W with spread rows (cpu::spread_rows) and a
  // shorter one moves its hidden states (cpu::rows_clear_of).
  const ref::Router r = test::random_router<float>(ref::Cov::diagonal, 8, 1024, 8, 0, 11);
  const Router<MeanField<float>, MonteCarlo, TopK, Cpu> router(
      test::make_posterior<MeanField<float>>(r), MonteCarlo{.samples = 4}, TopK{{.top_k = 2}}, rng::Stream{5, 1},
      Cpu{.threads = 1});
  const Matrix<float> x = test::to_matrix<float>(test::random_hidden<float>(160, 1024, 12));
  const float* w = router.posterior().input_weight();
  std::vector<float> near(std::size_t(x.size() + 1024)), apart(std::size_t(x.size() + 1024));
  auto place = [&](std::vector<float>& buffer, std::uintptr_t offset) {  // x at `offset` bytes past W's page offset
    float* p = buffer.data();
    while ((reinterpret_cast<std::uintptr_t>(p) - reinterpret_cast<std::uintptr_t>(w) - offset) % 4096 != 0) ++p;
    Eigen::Map<Matrix<float>>(p, x.rows(), x.cols()) = x;
    return Eigen::Map<const Matrix<float>>(p, x.rows(), x.cols());
  };
  const auto colliding = place(near, 0), clear = place(apart, 2048);
  REQUIRE(cpu::rows_collide(colliding.data(), 1024, w, 1024));
  REQUIRE(!cpu::rows_collide(clear.data(), 1024, w, 1024));
  const Routing<float> spread = router.route(colliding);
  require_identical(spread, router.route(clear));
  for (Index n : {1, 5, 15}) {  // too few tokens to spread W: the hidden states move
    CAPTURE(n);
    require_identical(spread, router.route(colliding.topRows(n)));
    require_identical(spread, router.route(clear.topRows(n)));
  }
}

TEST_CASE("a call that transposes the encoder head routes as calls that do not") {
  // A call with at least 64 tokens a thread runs the encoder heads from a transposed copy,
  // one a thread (cpu::project_transposed); shorter calls use the weights as they are.
  auto check = [](const ref::Router& r, auto posterior) {
    for (int threads : {1, 2}) {
      CAPTURE(threads);
      const Router<decltype(posterior), MonteCarlo, TopK, Cpu> router(
          posterior, MonteCarlo{.samples = 4}, TopK{{.top_k = 2}}, rng::Stream{8, 2},
          Cpu{.threads = threads, .tile = 16});
      const Matrix<float> x = test::to_matrix<float>(test::random_hidden<float>(130, r.w[0].size(), 13));
      const Routing<float> all = router.route(x);  // transposed for one thread and for two
      require_identical(all, router.route(x.topRows(40)));
      require_identical(all, router.route(x.bottomRows(90), {.token_offset = 40}), 40);
    }
  };
  // H = 24: whole batches of the heads' k and a tail.
  const ref::Router mf = test::random_router<float>(ref::Cov::diagonal, 16, 40, 24, 0, 14);
  check(mf, test::make_posterior<MeanField<float>>(mf));
  const ref::Router fc = test::random_router<float>(ref::Cov::cholesky, 9, 40, 24, 0, 15);
  check(fc, test::make_posterior<FullCovariance<float>>(fc));
  const ref::Router lr = test::random_router<float>(ref::Cov::low_rank, 20, 40, 24, 2, 16);
  check(lr, test::make_posterior<LowRank<float>>(lr));
}
