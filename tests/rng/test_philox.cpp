// Philox4x32-10 against Random123's published known-answer vectors and, where
// librandom123-dev is installed, against Random123 itself on many counters.
#include <doctest/doctest.h>

#include <cstdint>
#include <vector>

#include "vmoer/backend/cpu/normals.hpp"
#include "vmoer/rng/stream.hpp"

#if defined(VMOER_HAVE_RANDOM123)
#include <Random123/philox.h>
#endif

using vmoer::rng::philox4x32;
using vmoer::rng::u32x2;
using vmoer::rng::u32x4;

TEST_CASE("philox4x32-10 reproduces Random123's known-answer vectors") {
  // Random123 1.14, examples/kat_vectors: "philox4x32 10 <ctr> <key> <expected>".
  struct Kat {
    u32x4 ctr;
    u32x2 key;
    u32x4 expected;
  };
  const Kat kats[] = {
      {{{0, 0, 0, 0}}, {{0, 0}}, {{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}}},
      {{{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}},
       {{0xffffffffu, 0xffffffffu}},
       {{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}}},
      {{{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}},
       {{0xa4093822u, 0x299f31d0u}},
       {{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}}},
  };
  for (const Kat& k : kats) CHECK(philox4x32<10>(k.ctr, k.key) == k.expected);
}

TEST_CASE("the SIMD Philox reproduces the known-answer vectors in every lane of every batch") {
  // Two batches at once with different counters: a word of one batch leaking into the
  // other, or a round applied to one batch only, fails.
  using U = xsimd::batch<std::uint32_t>;
  const u32x2 key = {{0xa4093822u, 0x299f31d0u}};
  const u32x4 ctr[2] = {{{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}}, {{0, 0, 0, 0}}};
  const u32x4 want[2] = {{{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}},
                         philox4x32<10>(ctr[1], key)};  // the scalar reference, itself checked above
  vmoer::cpu::PhiloxLanes c[2];
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 4; ++j) c[i][std::size_t(j)] = U(ctr[i][j]);
  vmoer::cpu::philox4x32_lanes<2>(c, key);
  for (int i = 0; i < 2; ++i)
    for (std::size_t l = 0; l < U::size; ++l)
      CHECK(u32x4{{c[i][0].get(l), c[i][1].get(l), c[i][2].get(l), c[i][3].get(l)}} == want[i]);
}

TEST_CASE("cpu::philox_pairs gives the scalar stream's words for any block count") {
  const vmoer::rng::Stream s{0xfeedfacecafebeefull, 5};
  const vmoer::Index lanes = vmoer::Index(xsimd::batch<std::uint32_t>::size);
  for (vmoer::Index blocks = 1; blocks <= 2 * lanes + 3; ++blocks) {
    std::vector<std::uint32_t> x(std::size_t(2 * blocks + 1), 0xdeadu), y(std::size_t(2 * blocks + 1), 0xdeadu);
    vmoer::cpu::philox_pairs(s, vmoer::rng::Purpose::dropout, 9, 4, blocks, x.data(), y.data());
    for (vmoer::Index b = 0; b < blocks; ++b) {
      const u32x4 w = s.block(vmoer::rng::Purpose::dropout, 9, 4, std::uint32_t(b));
      REQUIRE(u32x4{{x[std::size_t(2 * b)], y[std::size_t(2 * b)], x[std::size_t(2 * b + 1)],
                     y[std::size_t(2 * b + 1)]}} == w);
    }
    CHECK(x.back() == 0xdeadu);  // nothing past the last block is written
    CHECK(y.back() == 0xdeadu);
  }
}

TEST_CASE("cpu::philox_batches gives the scalar stream's blocks stepping either counter word") {
  // Only the stepped word enters as a batch; the others stay scalars through the first
  // rounds. A word kept scalar one round too long, or the wrong word stepped, fails.
  using vmoer::cpu::Across;
  const vmoer::rng::Stream s{0x0123456789abcdefull, 7};
  const auto p = vmoer::rng::Purpose::logit_noise;
  const std::uint32_t token = 11, sample = 3, block = 5, lanes = std::uint32_t(xsimd::batch<std::uint32_t>::size);
  vmoer::cpu::PhiloxLanes by_block[2], by_sample[2];
  vmoer::cpu::philox_batches<2, Across::blocks>(s, p, token, sample, block, by_block);
  vmoer::cpu::philox_batches<2, Across::samples>(s, p, token, sample, block, by_sample);
  for (std::uint32_t i = 0; i < 2; ++i)
    for (std::uint32_t l = 0; l < lanes; ++l) {
      const u32x4 want_block = s.block(p, token, sample, block + i * lanes + l);
      const u32x4 want_sample = s.block(p, token, sample + l, block + i);
      const auto& b = by_block[i];
      const auto& t = by_sample[i];
      CHECK(u32x4{{b[0].get(l), b[1].get(l), b[2].get(l), b[3].get(l)}} == want_block);
      CHECK(u32x4{{t[0].get(l), t[1].get(l), t[2].get(l), t[3].get(l)}} == want_sample);
    }
}

#if defined(VMOER_HAVE_RANDOM123)
TEST_CASE("philox4x32-10 matches Random123 on a sweep of counters and keys") {
  std::uint32_t state = 12345;
  auto next = [&] { return state = state * 1664525u + 1013904223u; };
  for (int i = 0; i < 20000; ++i) {
    philox4x32_ctr_t c = {{next(), next(), next(), next()}};
    philox4x32_key_t k = {{next(), next()}};
    const philox4x32_ctr_t r = philox4x32_R(10, c, k);
    const u32x4 ours = philox4x32<10>({{c.v[0], c.v[1], c.v[2], c.v[3]}}, {{k.v[0], k.v[1]}});
    REQUIRE(ours == u32x4{{r.v[0], r.v[1], r.v[2], r.v[3]}});
  }
}
#endif

TEST_CASE("stream counters follow the documented (block, sample, token, layer << 8 | purpose) layout") {
  const vmoer::rng::Stream s{0x0123456789abcdefull, 7};
  const u32x2 key = s.key();
  CHECK(key[0] == 0x89abcdefu);
  CHECK(key[1] == 0x01234567u);
  const u32x4 c = s.counter(vmoer::rng::Purpose::gumbel, 11, 5, 3);
  CHECK(c == u32x4{{3u, 5u, 11u, (7u << 8) | 1u}});
  CHECK(s.block(vmoer::rng::Purpose::gumbel, 11, 5, 3) == philox4x32<10>(c, key));
  // Distinct purposes, tokens and samples give distinct streams.
  CHECK(!(s.block(vmoer::rng::Purpose::logit_noise, 11, 5, 3) == s.block(vmoer::rng::Purpose::gumbel, 11, 5, 3)));
  CHECK(!(s.block(vmoer::rng::Purpose::gumbel, 12, 5, 3) == s.block(vmoer::rng::Purpose::gumbel, 11, 5, 3)));
}
