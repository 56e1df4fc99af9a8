// dtype names and sizes, and the exact F16/BF16 decoders against known bit patterns
// and against the value formula of each format, over all 65536 patterns.
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#include "vmoer/io/dtype.hpp"

using namespace vmoer::io;

namespace {

std::uint32_t bits(float x) { return std::bit_cast<std::uint32_t>(x); }

// (-1)^sign * value from the fields of a binary format with `mantissa_bits` and
// exponent bias `bias`, computed in double arithmetic rather than by moving bits.
double decode_by_formula(std::uint32_t sign, std::uint32_t exponent, std::uint32_t mantissa, int mantissa_bits,
                         int bias) {
  const double m = double(mantissa) / double(1u << mantissa_bits);
  const double magnitude = exponent == 0 ? std::ldexp(m, 1 - bias) : std::ldexp(1.0 + m, int(exponent) - bias);
  return sign ? -magnitude : magnitude;
}

}  // namespace

TEST_CASE("dtype names and item sizes follow the safetensors spelling") {
  for (const dtype_info& d : dtypes) {
    CAPTURE(d.name);
    CHECK(dtype_from_string(d.name) == d.type);
    CHECK(to_string(d.type) == d.name);
    CHECK(itemsize(d.type) == d.itemsize);
  }
  CHECK(itemsize(dtype::f32) == 4);
  CHECK(itemsize(dtype::bf16) == 2);
  CHECK(itemsize(dtype::i64) == 8);
  CHECK(to_string(dtype::boolean) == "BOOL");
  CHECK_FALSE(dtype_from_string("f32"));  // case matters
  CHECK_FALSE(dtype_from_string("F4"));   // sub-byte types are not supported
  CHECK_FALSE(dtype_from_string(""));
  static_assert(dtype_of<float> == dtype::f32 && dtype_of<double> == dtype::f64);
  static_assert(dtype_of<vmoer::half> == dtype::f16 && dtype_of<vmoer::bfloat16> == dtype::bf16);
  static_assert(dtype_of<std::int32_t> == dtype::i32 && dtype_of<std::int64_t> == dtype::i64);
  CHECK(is_floating(dtype::bf16));
  CHECK_FALSE(is_floating(dtype::f8_e4m3));
  CHECK(is_integer(dtype::boolean));
  CHECK_FALSE(is_integer(dtype::f32));
}

TEST_CASE("F16 known bit patterns decode exactly") {
  CHECK(f16_to_float(0x3C00) == 1.0f);
  CHECK(f16_to_float(0xC000) == -2.0f);
  CHECK(f16_to_float(0x3555) == 0.333251953125f);
  CHECK(f16_to_float(0x7BFF) == 65504.0f);                 // largest finite
  CHECK(f16_to_float(0x0400) == 0x1p-14f);                 // smallest normal
  CHECK(f16_to_float(0x0001) == 0x1p-24f);                 // smallest subnormal
  CHECK(f16_to_float(0x03FF) == 1023.0f * 0x1p-24f);       // largest subnormal
  CHECK(f16_to_float(0x8001) == -0x1p-24f);
  CHECK(bits(f16_to_float(0x0000)) == 0x00000000u);
  CHECK(bits(f16_to_float(0x8000)) == 0x80000000u);        // -0 keeps its sign
  CHECK(f16_to_float(0x7C00) == std::numeric_limits<float>::infinity());
  CHECK(f16_to_float(0xFC00) == -std::numeric_limits<float>::infinity());
  CHECK(bits(f16_to_float(0x7E00)) == 0x7FC00000u);        // quiet NaN
  CHECK(bits(f16_to_float(0x7C01)) == 0x7F802000u);        // signalling NaN, payload kept
  CHECK(bits(f16_to_float(0xFE01)) == 0xFFC02000u);
}

TEST_CASE("BF16 known bit patterns decode exactly") {
  CHECK(bf16_to_float(0x3F80) == 1.0f);
  CHECK(bf16_to_float(0xC000) == -2.0f);
  CHECK(bf16_to_float(0x3EAB) == 0.333984375f);
  CHECK(bf16_to_float(0x7F7F) == 0x1.FEp127f);             // largest finite
  CHECK(bf16_to_float(0x0080) == 0x1p-126f);               // smallest normal
  CHECK(bf16_to_float(0x0001) == 0x1p-133f);               // smallest subnormal
  CHECK(bits(bf16_to_float(0x8000)) == 0x80000000u);
  CHECK(bf16_to_float(0x7F80) == std::numeric_limits<float>::infinity());
  CHECK(bf16_to_float(0xFF80) == -std::numeric_limits<float>::infinity());
  CHECK(bits(bf16_to_float(0x7FC1)) == 0x7FC10000u);
}

TEST_CASE("F16 and BF16 decoders agree with the value formula on all 65536 patterns") {
  for (std::uint32_t h = 0; h <= 0xFFFF; ++h) {
    CAPTURE(h);
    const auto p = std::uint16_t(h);
    {
      const std::uint32_t sign = h >> 15, exponent = (h >> 10) & 0x1F, mantissa = h & 0x3FF;
      const float f = f16_to_float(p);
      if (exponent == 0x1F) {
        REQUIRE(bits(f) == ((sign << 31) | 0x7F800000u | (mantissa << 13)));  // inf or NaN, payload kept
      } else {
        REQUIRE(double(f) == decode_by_formula(sign, exponent, mantissa, 10, 15));
        REQUIRE(std::signbit(f) == bool(sign));
        REQUIRE(f == float(Eigen::numext::bit_cast<vmoer::half>(p)));  // Eigen's reading too
      }
    }
    {
      const std::uint32_t sign = h >> 15, exponent = (h >> 7) & 0xFF, mantissa = h & 0x7F;
      const float f = bf16_to_float(p);
      if (exponent == 0xFF) {
        REQUIRE(bits(f) == ((sign << 31) | 0x7F800000u | (mantissa << 16)));
      } else {
        REQUIRE(double(f) == decode_by_formula(sign, exponent, mantissa, 7, 127));
        REQUIRE(std::signbit(f) == bool(sign));
      }
    }
  }
}
