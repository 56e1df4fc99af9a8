// Element types of safetensors files, and exact bit-level conversions of the two
// 16-bit float formats. The conversions are written out rather than borrowed from
// Eigen so that their result does not depend on which instructions the compiler
// picks (F16C rounds NaN payloads differently from software paths).
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <type_traits>

#include "vmoer/types.hpp"

namespace vmoer::io {

/// The element types of the safetensors format that have a whole number of bytes.
/// Every one can be read as metadata and raw bytes; F16, BF16, F32 and F64 convert
/// to floating-point types, the integer types and BOOL to integer types.
enum class dtype : std::uint8_t {
  boolean,  ///< BOOL, one byte
  u8,       ///< U8
  i8,       ///< I8
  f8_e5m2,  ///< F8_E5M2, read as raw bytes only
  f8_e4m3,  ///< F8_E4M3, read as raw bytes only
  f8_e8m0,  ///< F8_E8M0, read as raw bytes only
  i16,      ///< I16
  u16,      ///< U16
  f16,      ///< F16, IEEE binary16
  bf16,     ///< BF16, bfloat16
  i32,      ///< I32
  u32,      ///< U32
  f32,      ///< F32
  i64,      ///< I64
  u64,      ///< U64
  f64,      ///< F64
};

/// Name and size of a dtype as the safetensors header spells it.
struct dtype_info {
  dtype type;             ///< the dtype
  std::string_view name;  ///< e.g. "BF16"
  std::size_t itemsize;   ///< bytes per element
};

/// Every dtype, in enum order.
inline constexpr std::array<dtype_info, 16> dtypes{{
    {dtype::boolean, "BOOL", 1}, {dtype::u8, "U8", 1},    {dtype::i8, "I8", 1},     {dtype::f8_e5m2, "F8_E5M2", 1},
    {dtype::f8_e4m3, "F8_E4M3", 1}, {dtype::f8_e8m0, "F8_E8M0", 1}, {dtype::i16, "I16", 2}, {dtype::u16, "U16", 2},
    {dtype::f16, "F16", 2},      {dtype::bf16, "BF16", 2}, {dtype::i32, "I32", 4},  {dtype::u32, "U32", 4},
    {dtype::f32, "F32", 4},      {dtype::i64, "I64", 8},  {dtype::u64, "U64", 8},  {dtype::f64, "F64", 8},
}};

static_assert(
    [] {
      for (std::size_t i = 0; i < dtypes.size(); ++i)
        if (dtypes[i].type != static_cast<dtype>(i)) return false;
      return true;
    }(),
    "dtypes must list every dtype in enum order, as to_string and itemsize index it");

/// The header spelling of `t`, e.g. "F32".
constexpr std::string_view to_string(dtype t) noexcept { return dtypes[static_cast<std::size_t>(t)].name; }

/// Bytes per element of `t`.
constexpr std::size_t itemsize(dtype t) noexcept { return dtypes[static_cast<std::size_t>(t)].itemsize; }

/// The dtype spelled `name` in a header, or nothing when unknown.
constexpr std::optional<dtype> dtype_from_string(std::string_view name) noexcept {
  for (const dtype_info& d : dtypes)
    if (d.name == name) return d.type;
  return std::nullopt;
}

/// True for F16, BF16, F32 and F64, which convert to floating-point types.
constexpr bool is_floating(dtype t) noexcept {
  return t == dtype::f16 || t == dtype::bf16 || t == dtype::f32 || t == dtype::f64;
}

/// True for BOOL and the integer dtypes, which convert to integer types.
constexpr bool is_integer(dtype t) noexcept {
  switch (t) {
    case dtype::boolean:
    case dtype::u8:
    case dtype::i8:
    case dtype::i16:
    case dtype::u16:
    case dtype::i32:
    case dtype::u32:
    case dtype::i64:
    case dtype::u64: return true;
    default: return false;
  }
}

namespace detail {

/// False for every T, to fail a static_assert only when instantiated.
template <class>
inline constexpr bool no_dtype = false;

/// See dtype_of.
template <class T>
consteval dtype dtype_of_impl() {
  if constexpr (std::is_same_v<T, float>) return dtype::f32;
  else if constexpr (std::is_same_v<T, double>) return dtype::f64;
  else if constexpr (std::is_same_v<T, half>) return dtype::f16;
  else if constexpr (std::is_same_v<T, bfloat16>) return dtype::bf16;
  else if constexpr (std::is_same_v<T, std::int8_t>) return dtype::i8;
  else if constexpr (std::is_same_v<T, std::uint8_t>) return dtype::u8;
  else if constexpr (std::is_same_v<T, std::int16_t>) return dtype::i16;
  else if constexpr (std::is_same_v<T, std::uint16_t>) return dtype::u16;
  else if constexpr (std::is_same_v<T, std::int32_t>) return dtype::i32;
  else if constexpr (std::is_same_v<T, std::uint32_t>) return dtype::u32;
  else if constexpr (std::is_same_v<T, std::int64_t>) return dtype::i64;
  else if constexpr (std::is_same_v<T, std::uint64_t>) return dtype::u64;
  else static_assert(no_dtype<T>, "no safetensors dtype stores this C++ type");
}

}  // namespace detail

/// The dtype whose elements are the C++ type T: float is F32, vmoer::half F16,
/// vmoer::bfloat16 BF16, std::int32_t I32 and so on. bool has none: a byte other than
/// 0 or 1 is not a valid bool.
template <class T>
inline constexpr dtype dtype_of = detail::dtype_of_impl<T>();

/// The float that the bfloat16 bit pattern `bits` encodes: its upper 16 bits.
constexpr float bf16_to_float(std::uint16_t bits) noexcept {
  return std::bit_cast<float>(static_cast<std::uint32_t>(bits) << 16);
}

/// The float that the IEEE binary16 bit pattern `bits` encodes, exactly: zeros,
/// subnormals, infinities and NaNs (payload kept) included.
constexpr float f16_to_float(std::uint16_t bits) noexcept {
  const std::uint32_t sign = static_cast<std::uint32_t>(bits & 0x8000u) << 16;
  const std::uint32_t exponent = (bits >> 10) & 0x1Fu;
  const std::uint32_t mantissa = bits & 0x3FFu;
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^-24, exact in float.
    const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
    return std::bit_cast<float>(std::bit_cast<std::uint32_t>(magnitude) | sign);
  }
  if (exponent == 0x1F) return std::bit_cast<float>(sign | 0x7F800000u | (mantissa << 13));
  return std::bit_cast<float>(sign | ((exponent + 112) << 23) | (mantissa << 13));  // rebias 15 -> 127
}

}  // namespace vmoer::io
